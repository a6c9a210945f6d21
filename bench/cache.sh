#!/bin/sh
# Dependency cache benchmark, side by side with the command-line tools.
#   sh bench/cache.sh BUILD_DIR
# Generates a ~150 MB, ~6,000-file site-packages-like tree and a 100,000
# small-file tree under $BENCH_DIR (default BUILD_DIR/bench-cache; set it to
# a tmpfs such as /dev/shm/farm-bench to take the disk out), then runs each
# farm operation and its peer alternately, REPS (5) times each, and prints
# the medians of wall time and of CPU time (user + sys, the peer's helper
# processes included), and their ratios peer / farm: above 1 means farm is
# faster. CPU time is the steadier figure on a shared machine. Everything
# runs with a warm page cache: CPU and syscall costs, not disk seeks.
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

# pair LABEL PEERLABEL [--before CMD] -- FARM... :: PEER...
pair() {
    a=$1 b=$2
    shift 2
    set -- $("$BIN" time "$REPS" "$@")
    printf '%-30s %7.3f s (cpu %6.3f)   %-30s %7.3f s (cpu %6.3f)   ratio %5.2fx (cpu %5.2fx)\n' \
        "$a" "$1" "$2" "$b" "$3" "$4" \
        "$(awk -v x="$3" -v y="$1" 'BEGIN { print x / y }')" \
        "$(awk -v x="$4" -v y="$2" 'BEGIN { print x / y }')"
}

echo "== reference tree"
"$BIN" gen-tree "$W/tree"
echo "   in $W ($(df -T "$W" | awk 'NR==2 {print $2}')); cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg); zstd level 3; $REPS runs each, medians"

echo "== pack (tar + zstd -3)"
pair "farm pack" "tar -I 'zstd -3 -T0' -cf" -- \
    "$BIN" pack "$W/tree" "$W/ours.tar.zst" :: \
    tar -C "$W/tree" -I 'zstd -3 -T0' -cf "$W/peer.tar.zst" .
echo "   sizes: farm $(stat -c %s "$W/ours.tar.zst") bytes, tar $(stat -c %s "$W/peer.tar.zst") bytes"

KEY=00112233445566778899aabbccddeeff
"$BIN" store "$W/home" "$KEY" "$W/tree"
OBJ=$W/home/cache/objects/00/$KEY.tar.zst

echo "== restore (goals: copy not slower than tar; link at least 5x faster)"
pair "farm restore copy (+checksum)" "tar -I zstd -xf" \
    --before "rm -rf '$W/d' '$W/t' && mkdir '$W/d' '$W/t'" -- \
    "$BIN" restore "$W/home" "$KEY" "$W/d" copy :: \
    tar -I zstd -xf "$OBJ" -C "$W/t"
set -- $("$BIN" time 1 --before "rm -rf '$W/d' '$W/home/cache/trees'" -- "$BIN" restore "$W/home" "$KEY" "$W/d" link)
echo "   link, first restore of a key (unpacks the tree once): $1 s"
pair "farm restore link" "tar -I zstd -xf" \
    --before "rm -rf '$W/d' '$W/t' && mkdir '$W/t'" -- \
    "$BIN" restore "$W/home" "$KEY" "$W/d" link :: \
    tar -I zstd -xf "$OBJ" -C "$W/t"

echo "== digest of the reference tree, no stat cache (goal: not slower)"
pair "farm digest (cold)" "find|sort|xargs cat|xxh128sum" -- \
    "$BIN" digest "$W/tree" :: \
    sh -c "find '$W/tree' -type f -print0 | sort -z | xargs -0 cat | xxh128sum"

echo "== re-digest of 100,000 small files with the stat cache (goal: under 0.2 s)"
"$BIN" gen-small "$W/small" 100000
# Prime: the first walk records the hashes; files written less than a
# timestamp tick before they were read are racy and read once more after.
"$BIN" digest "$W/small" "$W/small.sc" >/dev/null
sleep 1.1
"$BIN" digest "$W/small" "$W/small.sc" >/dev/null
pair "farm digest (warm, stat cache)" "farm digest (no stat cache)" -- \
    "$BIN" digest "$W/small" "$W/small.sc" :: "$BIN" digest "$W/small"
"$BIN" digest "$W/small" "$W/small.sc" >"$W/warm.txt"
echo "   warm walk: $(sed 's/^[0-9a-f]* //' "$W/warm.txt")"
pair "farm digest (warm, stat cache)" "find|sort|xargs cat|xxh128sum" -- \
    "$BIN" digest "$W/small" "$W/small.sc" :: \
    sh -c "find '$W/small' -type f -print0 | sort -z | xargs -0 cat | xxh128sum"

echo "== a task's hit path: digest deps/ + key + acquire + restore, vs a task with no deps"
mkdir -p "$W/repo/deps"
for i in 1 2 3 4 5 6 7 8; do echo "pkg$i==1.$i" >> "$W/repo/deps/requirements.txt"; done
printf 'pip install -r requirements.txt --target "$FARM_DEPS_OUT"\n' > "$W/repo/deps/build.sh"
"$BIN" hit "$W/home" "$W/repo/deps" "$W/key.txt" - copy
HKEY=$(cat "$W/key.txt")
"$BIN" store "$W/home" "$HKEY" "$W/tree"
sleep 1.1 # past the racy window of deps/, like a checkout made earlier
"$BIN" time 1 --before "rm -rf '$W/d'" -- "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" link >/dev/null
pair "hit, restore link" "no deps (sh -c true)" --before "rm -rf '$W/d'" -- \
    "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" link :: sh -c true
pair "hit, restore copy" "no deps (sh -c true)" --before "rm -rf '$W/d'" -- \
    "$BIN" hit "$W/home" "$W/repo/deps" - "$W/d" copy :: sh -c true
