# The installed SDK: `cmake --install` of this build into a temporary prefix
# (then moved, to prove it relocatable). The example plugin builds out of tree
# against it by pkg-config alone and by find_package, and runs under
# `farm run` and as a queued task with the same metrics and artifacts; the
# output of `farm plugin new` builds and runs unchanged. Uses the installed
# farm binaries throughout.
. "$(dirname "$0")/lib.sh"
SRC="$FARM_SOURCE_DIR"
cmake --install "$FARM_BUILD_DIR" --prefix "$T/stage" >/dev/null
mv "$T/stage" "$T/prefix"
P="$T/prefix"
FARM_BIN="$P/bin"
unset CMAKE_PREFIX_PATH PKG_CONFIG_LIBDIR
pc=$(find "$P" -name farm-plugin.pc)
[ -n "$pc" ] || fail "no farm-plugin.pc installed under $P"
export PKG_CONFIG_PATH="$(dirname "$pc")"
[ -f "$P/include/farm/plugin.h" ] || fail "plugin.h not installed"
cmp -s "$P/include/farm/plugin.h" "$SRC/include/farm/plugin.h" || fail "installed plugin.h differs"

# pkg-config: version is the ABI version; plugindir is where the installed
# farm finds its built-in plugins.
abi=$(sed -n 's/^#define FARM_PLUGIN_ABI_MAJOR \([0-9]*\)$/\1/p' "$SRC/include/farm/plugin.h").$(sed -n 's/^#define FARM_PLUGIN_ABI_MINOR \([0-9]*\)$/\1/p' "$SRC/include/farm/plugin.h")
expect_eq "pkg-config version" "$abi" "$(pkg-config --modversion farm-plugin)"
plugindir=$(pkg-config --variable=plugindir farm-plugin)
[ -f "$plugindir/exec.so" ] || fail "plugindir $plugindir holds no exec.so"
farm plugins --json >"$T/plugins.json"
exec_dir=$(jget "$T/plugins.json" '[p["path"] for p in j if p.get("name") == "exec"][0].rsplit("/", 1)[0]')
expect_eq "plugindir is the installed farm's" "$(cd "$plugindir" && pwd -P)" "$(cd "$exec_dir" && pwd -P)"
expect_contains "cflags point into the prefix" "$P/" "$(pkg-config --cflags farm-plugin)"

# The example, by pkg-config alone and by find_package.
mkdir -p "$T/pc"
cc $(pkg-config --cflags farm-plugin) -shared -fPIC -o "$T/pc/hello.so" "$SRC/examples/plugin-hello/hello.c"
cmake -S "$SRC/examples/plugin-hello" -B "$T/cm" -DCMAKE_PREFIX_PATH="$P" >"$T/cmake.log" 2>&1 ||
    fail "configuring the example with find_package failed: $(cat "$T/cmake.log")"
cmake --build "$T/cm" >>"$T/cmake.log" 2>&1 || fail "building the example failed: $(cat "$T/cmake.log")"
# SameMajorVersion: asking for the next major fails, an older minor is fine.
mkdir -p "$T/ver"
printf 'cmake_minimum_required(VERSION 3.18)\nproject(v LANGUAGES C)\nfind_package(farm-plugin %s REQUIRED)\n' \
    "$(( ${abi%.*} + 1 )).0" >"$T/ver/CMakeLists.txt"
if cmake -S "$T/ver" -B "$T/ver/b" -DCMAKE_PREFIX_PATH="$P" >"$T/ver.log" 2>&1; then
    fail "find_package(farm-plugin $(( ${abi%.*} + 1 )).0) accepted ABI $abi"
fi
expect_contains "version refusal" "compatible with requested version" "$(cat "$T/ver.log")"

# What hello must produce for name=Ada count=4, computed independently.
"$PY" -c 'import sys; open(sys.argv[1], "w").write("".join("hello, Ada (%d of 4)\n" % i for i in range(1, 5)))' "$T/want.txt"
want_bytes=$(wc -c <"$T/want.txt" | tr -d ' ')

mkdir -p "$T/work"
for b in pc cm; do
    so="$T/$b/hello.so"
    [ "$b" = cm ] && so="$T/cm/hello.so"
    (cd "$T/work" && farm run "$so" --param name=Ada --param count=4 --param delay=0 --json) >"$T/run-$b.json" 2>"$T/run-$b.err" ||
        fail "farm run $so: $(cat "$T/run-$b.err")"
    expect_eq "$b: state" succeeded "$(jget "$T/run-$b.json" 'j["state"]')"
    expect_eq "$b: metrics" "{'greetings': 4.0, 'bytes': $want_bytes.0}" "$(jget "$T/run-$b.json" 'dict(sorted(j["metrics"].items(), reverse=True))')"
    art=$(jget "$T/run-$b.json" 'j["artifacts"][0]')
    cmp -s "$art" "$T/want.txt" || fail "$b: farm run artifact differs: $(cat "$art")"
done

# Queued: by path (both builds); then, installed with cmake --install into
# $FARM_HOME/plugins, by name. (Installed, it would clash with the same name
# given by path: a path may not pose as a plugin of the search path.)
start_farmd --jobs 2
{
    echo "{\"plugin\": \"$T/pc/hello.so\", \"name\": \"pc\", \"params\": {\"name\": \"Ada\", \"count\": 4, \"delay\": 0}}"
    echo "{\"plugin\": \"$T/cm/hello.so\", \"name\": \"cm\", \"params\": {\"name\": \"Ada\", \"count\": 4, \"delay\": 0}}"
} | farm submit --batch - >"$T/ids"
farm wait $(cat "$T/ids") >/dev/null || fail "queued hello tasks did not succeed"
cmake --install "$T/cm" >/dev/null
[ -f "$FARM_HOME/plugins/hello.so" ] || fail "cmake --install did not put hello.so into \$FARM_HOME/plugins"
echo '{"plugin": "hello", "name": "byname", "params": {"name": "Ada", "count": 4, "delay": 0}}' |
    farm submit --batch - >>"$T/ids"
farm wait $(cat "$T/ids") >/dev/null || fail "queued hello by name did not succeed"
expect_eq "three queued" 3 "$(wc -l <"$T/ids" | tr -d ' ')"
for id in $(cat "$T/ids"); do
    farm show "$id" --json >"$T/show.json"
    name=$(jget "$T/show.json" 'j["task"]')
    src=pc
    [ "$name" = cm ] && src=cm
    expect_eq "queued $name: metrics as under farm run" \
        "$(jget "$T/run-$src.json" 'sorted(j["metrics"].items())')" "$(jget "$T/show.json" 'sorted(j["metrics"].items())')"
    expect_eq "queued $name: artifacts" "['greeting.txt']" "$(jget "$T/show.json" 'j["artifacts"]')"
    (cd "$T" && farm artifact get "$id" greeting.txt -o "$T/got.txt")
    cmp -s "$T/got.txt" "$T/want.txt" || fail "queued $name: artifact differs: $(cat "$T/got.txt")"
done
expect_contains "by name: the installed file" "$FARM_HOME/plugins/hello.so" "$(farm plugin info hello)"

# farm plugin new: builds and runs as generated, both ways.
(cd "$T" && farm plugin new mytool) >"$T/new.out"
expect_contains "plugin new output" "created mytool/mytool.c" "$(cat "$T/new.out")"
for f in mytool.c CMakeLists.txt README.md; do [ -f "$T/mytool/$f" ] || fail "plugin new made no $f"; done
expect_status "plugin new into a non-empty dir" 2 farm plugin new other "$T/mytool"
expect_contains "non-empty dir message" "exists and is not empty" "$(cat "$T/err")"
expect_status "plugin new with a bad name" 2 farm plugin new My.Tool "$T/x"
expect_contains "bad name message" '"My.Tool" is not a plugin name: 1 to 64 of a-z, 0-9, _ and -, starting with a letter' "$(cat "$T/err")"
[ ! -e "$T/x" ] || fail "plugin new with a bad name made $T/x"
expect_status "plugin new with a built-in's name" 2 farm plugin new exec "$T/x"
expect_contains "built-in name message" "is taken by the built-in plugin" "$(cat "$T/err")"
cmake -S "$T/mytool" -B "$T/mytool/build" -DCMAKE_PREFIX_PATH="$P" >"$T/cmake.log" 2>&1 ||
    fail "configuring the new plugin failed: $(cat "$T/cmake.log")"
cmake --build "$T/mytool/build" >>"$T/cmake.log" 2>&1 || fail "building the new plugin failed: $(cat "$T/cmake.log")"
(cd "$T/mytool" && cc $(pkg-config --cflags farm-plugin) -Wall -Wextra -Werror -shared -fPIC -o mytool.so mytool.c) ||
    fail "the new plugin does not build with pkg-config"
for so in "$T/mytool/build/mytool.so" "$T/mytool/mytool.so"; do
    (cd "$T/work" && farm run "$so" --json) >"$T/new.json" 2>"$T/new.err" || fail "farm run $so: $(cat "$T/new.err")"
    expect_eq "new plugin: lines" 3.0 "$(jget "$T/new.json" 'j["metrics"]["lines"]')"
    expect_eq "new plugin: artifact" "hello hello hello " "$(tr '\n' ' ' <"$(jget "$T/new.json" 'j["artifacts"][0]')")"
done
cmake --install "$T/mytool/build" >/dev/null
id=$(echo '{"plugin": "mytool", "params": {"message": "hi", "repeat": 2}}' | farm submit --batch -)
expect_status "queued mytool" 0 farm wait "$id"
(cd "$T" && farm artifact get "$id" output.txt -o "$T/got.txt")
expect_eq "queued mytool: artifact" "hi hi " "$(tr '\n' ' ' <"$T/got.txt")"
expect_eq "queued mytool: metric" 2.0 "$(farm show "$id" --json | jget - 'j["metrics"]["lines"]')"
echo "sdk_install: ok"
