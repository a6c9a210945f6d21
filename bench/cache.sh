#!/bin/sh
# Dependency cache benchmark, side by side with the command-line tools.
#   sh bench/cache.sh BUILD_DIR
# Generates a ~150 MB, ~6,000-file site-packages-like tree and a 100,000
# small-file tree under $BENCH_DIR (default BUILD_DIR/bench-cache; set it to
# a tmpfs such as /dev/shm/farm-bench to take the disk out), then prints the median of 5
# runs of each operation next to its peer, and the ratio (peer / farm: above
# 1 means farm is faster). Everything runs with a warm page cache: these are
# CPU and syscall costs, not disk seeks.
set -eu
BUILD=${1:?usage: sh bench/cache.sh BUILD_DIR}
BIN=$BUILD/bin/farm-cache-bench
if [ ! -x "$BIN" ]; then
    cmake --build "$BUILD" --target farm-cache-bench >/dev/null
fi
for tool in tar zstd xxh128sum; do
    command -v $tool >/dev/null || { echo "bench/cache.sh: needs $tool (Debian: tar zstd xxhash)" >&2; exit 2; }
done
W=${BENCH_DIR:-$(cd "$BUILD" && pwd)/bench-cache}
REPS=${REPS:-5}
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

T() { "$BIN" time "$REPS" "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { printf '%-34s %9s s   %-30s %9s s   ratio %5sx\n' "$1" "$2" "$3" "$4" "$(ratio "$4" "$2")"; }

echo "== reference tree"
"$BIN" gen-tree "$W/tree"
echo "   in $W ($(df -T "$W" | awk 'NR==2 {print $2}')); cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg); zstd level 3; $REPS runs each, medians"
echo

echo "== pack (tar + zstd -3)"
ours=$(T --before "rm -f '$W/ours.tar.zst'" -- "$BIN" pack "$W/tree" "$W/ours.tar.zst")
peer=$(T --before "rm -f '$W/peer.tar.zst'" -- tar -C "$W/tree" -I 'zstd -3 -T0' -cf "$W/peer.tar.zst" .)
row "farm pack" "$ours" "tar -I 'zstd -3 -T0' -cf" "$peer"
echo "   sizes: farm $(stat -c %s "$W/ours.tar.zst") bytes, tar $(stat -c %s "$W/peer.tar.zst") bytes"

KEY=00112233445566778899aabbccddeeff
"$BIN" store "$W/home" "$KEY" "$W/tree"
OBJ=$W/home/cache/objects/00/$KEY.tar.zst

echo "== restore"
ours=$(T --before "rm -rf '$W/d' && mkdir '$W/d'" -- "$BIN" restore "$W/home" "$KEY" "$W/d" copy)
peer=$(T --before "rm -rf '$W/d' && mkdir '$W/d'" -- tar -I zstd -xf "$OBJ" -C "$W/d")
row "farm restore copy (+checksum)" "$ours" "tar -I zstd -xf" "$peer"
tarx=$peer
rm -rf "$W/d"
first=$("$BIN" time 1 --before "rm -rf '$W/d' '$W/home/cache/trees'" -- "$BIN" restore "$W/home" "$KEY" "$W/d" link)
ours=$(T --before "rm -rf '$W/d'" -- "$BIN" restore "$W/home" "$KEY" "$W/d" link)
row "farm restore link" "$ours" "tar -I zstd -xf" "$tarx"
echo "   link: first restore of a key (unpacks the tree once): $first s; goal >= 5x faster than tar"

echo "== digest of the reference tree (no stat cache)"
ours=$(T -- "$BIN" digest "$W/tree")
peer=$(T -- sh -c "find '$W/tree' -type f -print0 | sort -z | xargs -0 cat | xxh128sum")
row "farm digest (cold)" "$ours" "find|sort|xargs cat|xxh128sum" "$peer"

echo "== re-digest of 100,000 small files with the stat cache"
"$BIN" gen-small "$W/small" 100000
cold=$(T -- "$BIN" digest "$W/small")
# Prime: the first walk records the hashes; files written less than a
# timestamp tick before were read are racy and read once more after it.
"$BIN" digest "$W/small" "$W/small.sc" >/dev/null
sleep 1.1
"$BIN" digest "$W/small" "$W/small.sc" >/dev/null
warm=$(T -- "$BIN" digest "$W/small" "$W/small.sc")
"$BIN" digest "$W/small" "$W/small.sc" >"$W/warm.txt"
peer=$(T -- sh -c "find '$W/small' -type f -print0 | sort -z | xargs -0 cat | xxh128sum")
row "farm digest (warm, stat cache)" "$warm" "farm digest (no stat cache)" "$cold"
row "farm digest (warm, stat cache)" "$warm" "find|sort|xargs cat|xxh128sum" "$peer"
echo "   warm walk: $(sed 's/^[0-9a-f]* //' "$W/warm.txt") (goal: under 0.2 s)"

echo "== a task's hit path: digest deps/ + key + acquire + restore"
mkdir -p "$W/repo/deps"
for i in 1 2 3 4 5 6 7 8; do echo "pkg$i==1.$i" >> "$W/repo/deps/requirements.txt"; done
printf 'pip install -r requirements.txt --target "$FARM_DEPS_OUT"\n' > "$W/repo/deps/build.sh"
"$BIN" hit "$W/home" "$W/repo/deps" "$W/key.txt" - copy
HKEY=$(cat "$W/key.txt")
"$BIN" store "$W/home" "$HKEY" "$W/tree"
"$BIN" time 1 --before "rm -rf '$W/d'" -- "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" link >/dev/null
sleep 1.1 # past the racy window of deps/, as a repo checked out earlier is
none=$(T -- sh -c true)
link=$(T --before "rm -rf '$W/d'" -- "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" link)
copy=$(T --before "rm -rf '$W/d'" -- "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" copy)
printf '%-34s %9s s\n' "task with no deps (sh -c true)" "$none"
printf '%-34s %9s s   overhead %s s\n' "hit, restore link" "$link" "$(awk -v a="$link" -v b="$none" 'BEGIN{printf "%.4f", a-b}')"
printf '%-34s %9s s   overhead %s s\n' "hit, restore copy" "$copy" "$(awk -v a="$copy" -v b="$none" 'BEGIN{printf "%.4f", a-b}')"
