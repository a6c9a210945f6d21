# The dependency cache through real tasks: miss then hit (the build does not
# run again), edits miss and reverts hit, the build command and a named env
# value are in the key, 8 concurrent misses build once, a killed builder is
# taken over, a damaged object is rebuilt, a failed build stores nothing,
# link restores, and farm cache stats|ls|why|verify|gc|rm.
. "$(dirname "$0")/lib.sh"
start_farmd --jobs 8 --grace 1
repo="$T/repo"
mkdir -p "$repo/deps"
count="$T/builds"   # outside the repo: counts real builds
cat >"$repo/deps/build.sh" <<S
echo build >> "$count"
[ -e "$T/slow" ] && sleep 3
mkdir -p "\$FARM_DEPS_OUT/lib"
cat deps/version.txt > "\$FARM_DEPS_OUT/lib/version"
printf '#!/bin/sh\necho tool-\$(cat "\$FARM_DEPS_DIR/lib/version")\n' > "\$FARM_DEPS_OUT/tool"
chmod +x "\$FARM_DEPS_OUT/tool"
S
echo v1 >"$repo/deps/version.txt"
spec() { # BUILD-COMMAND [ENV-NAMES] [RESTORE]
    cat >"$repo/farm.yaml" <<Y
deps:
  dir: deps
  build: $1
  env: [${2:-}]
  restore: ${3:-copy}
tasks:
  - name: use
    run: \$FARM_DEPS_DIR/tool
Y
}
builds() { wc -l <"$count" 2>/dev/null | tr -d ' ' || echo 0; }
run_one() { # -> id; waits; fails the test when the task did not succeed
    _id=$(farm submit --dir "$repo")
    farm wait "$_id" >/dev/null || fail "task $_id: $(farm show "$_id" --json | jget - 'j["reason"]')"
    echo "$_id"
}
deps_of() { farm show "$1" --json | jget - "j['deps']['$2']"; }

spec "sh deps/build.sh"
a=$(run_one)
expect_eq "first task builds" 1 "$(builds)"
expect_eq "first: miss" False "$(deps_of "$a" hit)"
expect_eq "tool output" tool-v1 "$(farm logs "$a" | tail -n 1)"
b=$(run_one)
expect_eq "second task does not build" 1 "$(builds)"
expect_eq "second: hit" True "$(deps_of "$b" hit)"
expect_eq "source task" "$a" "$(deps_of "$b" source_task)"
expect_eq "same key" "$(deps_of "$a" key)" "$(deps_of "$b" key)"
for f in key hit source_task restore_ms build_ms; do
    [ "$(farm show "$b" --json | jget - "'$f' in j['deps']")" = True ] || fail "deps lacks $f"
done

echo v2 >"$repo/deps/version.txt"
c=$(run_one)
expect_eq "an edit misses" 2 "$(builds)"
expect_eq "edited package" tool-v2 "$(farm logs "$c" | tail -n 1)"
farm cache why "$c" >"$T/why"
expect_contains "why names the changed file" "changed version.txt" "$(cat "$T/why")"
expect_contains "why names the nearest key" "$(deps_of "$a" key)" "$(cat "$T/why")"
echo v1 >"$repo/deps/version.txt"
d=$(run_one)
expect_eq "a revert hits the old entry" 2 "$(builds)"
expect_eq "revert key" "$(deps_of "$a" key)" "$(deps_of "$d" key)"

spec "sh  deps/build.sh"
run_one >/dev/null
expect_eq "another build command misses" 3 "$(builds)"
spec "sh deps/build.sh" FARM_TEST_SALT
run_one >/dev/null
expect_eq "a named env value (unset) misses" 4 "$(builds)"
farm daemon stop >/dev/null
FARM_TEST_SALT=1 farm daemon start --jobs 8 --grace 1 >/dev/null
run_one >/dev/null
expect_eq "a named env value (set) misses" 5 "$(builds)"
run_one >/dev/null
expect_eq "same env value hits" 5 "$(builds)"

# 8 tasks missing one key at once: one build, 8 successes.
echo v3 >"$repo/deps/version.txt"
spec "sh deps/build.sh"
touch "$T/slow"
ids=""
for i in 1 2 3 4 5 6 7 8; do ids="$ids $(farm submit --dir "$repo")"; done
expect_status "8 concurrent tasks" 0 farm wait $ids
expect_eq "built once for 8" 6 "$(builds)"

# The builder is killed mid-build: a waiter takes over and succeeds.
echo v4 >"$repo/deps/version.txt"
first=$(farm submit --dir "$repo")
i=0
while [ "$(builds)" -lt 7 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
second=$(farm submit --dir "$repo")
sleep 0.5
farm cancel "$first" >/dev/null
expect_status "the waiter takes over" 0 farm wait "$second"
expect_eq "the waiter built it" 8 "$(builds)"
expect_eq "the waiter's package" tool-v4 "$(farm logs "$second" | tail -n 1)"
rm -f "$T/slow"

# A flipped byte in the stored object: detected, dropped, rebuilt.
key=$(deps_of "$second" key)
obj=$(ls "$FARM_HOME"/cache/objects/*/"$key".tar.zst)
"$PY" - "$obj" <<'P'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x40
open(p, "wb").write(bytes(b))
P
e=$(run_one)
expect_eq "damaged object rebuilt" 9 "$(builds)"
expect_contains "the log says why" "damaged" "$(farm logs "$e")"
# verify finds a damaged object too.
obj=$(ls "$FARM_HOME"/cache/objects/*/"$key".tar.zst)
printf 'x' | dd of="$obj" bs=1 seek=20 conv=notrunc 2>/dev/null
farm cache verify >"$T/verify"
expect_contains "verify reports it" "dropped $key" "$(cat "$T/verify")"

# A failing build fails the task with the build's log; nothing is stored.
spec "sh -c 'echo broken-build; exit 3'"
f=$(farm submit --dir "$repo")
expect_status "failed build" 1 farm wait "$f"
expect_contains "reason" "deps build failed" "$(farm show "$f" --json | jget - 'j["reason"]')"
expect_contains "build output in the log" broken-build "$(farm logs "$f")"
n_before=$(farm cache ls --json | jget - 'len(j)')
spec "sh -c 'echo broken-build; exit 3'"
farm submit --dir "$repo" >/dev/null
expect_eq "nothing stored by a failed build" "$n_before" "$(farm cache ls --json | jget - 'len(j)')"

# link restore: read-only files shared with the cache's tree.
spec "sh deps/build.sh" "" link
g=$(run_one)
h=$(run_one)
expect_eq "link hit" True "$(deps_of "$h" hit)"
expect_eq "link mode" link "$(deps_of "$h" restore)"

# stats, ls, gc, rm
farm cache stats --json >"$T/stats.json"
[ "$(jget "$T/stats.json" 'j["hits"] > 0 and j["misses"] > 0 and j["entries"] > 0')" = True ] || fail "stats: $(cat "$T/stats.json")"
k=$(farm cache ls --json | jget - 'j[0]["key"]')
farm cache rm "$k" >/dev/null
farm cache ls --json | jget - '[e["key"] for e in j]' | grep -q "$k" && fail "rm left $k"
farm cache gc --max-size 0 >/dev/null
expect_eq "gc to 0 empties the store" 0 "$(farm cache ls --json | jget - 'len(j)')"
# An index that is no longer a database is set aside and a new one begun:
# tasks with deps go on (a miss, then a hit), and verify removes what only
# the old index knew.
spec "sh deps/build.sh"
run_one >/dev/null
printf 'garbage' >"$FARM_HOME/cache/index.db"
rm -f "$FARM_HOME/cache/index.db-wal" "$FARM_HOME/cache/index.db-shm"
m=$(run_one)
expect_eq "a miss with the new index" False "$(deps_of "$m" hit)"
expect_contains "the log says the index was set aside" "was not a sound database; it is kept as" "$(farm logs "$m")$(cat "$FARM_HOME/farmd.log")"
[ -e "$FARM_HOME/cache/index.db.corrupt" ] || fail "the old index was not kept aside"
m2=$(run_one)
expect_eq "then a hit" True "$(deps_of "$m2" hit)"
expect_status "verify after it" 0 farm cache verify
# An index cut short (truncated by hand) is set aside the same way. Enough
# entries first, so that the cut removes pages the index needs.
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
    spec "sh deps/build.sh # variant $i $(printf 'x%.0s' $(seq 1 200))"
    run_one >/dev/null
done
size=$(wc -c <"$FARM_HOME/cache/index.db" | tr -d ' ')
[ "$size" -gt 8192 ] || fail "the index is too small ($size bytes) to cut short"
rm -f "$FARM_HOME/cache/index.db.corrupt"
truncate -s 4096 "$FARM_HOME/cache/index.db"
rm -f "$FARM_HOME/cache/index.db-wal" "$FARM_HOME/cache/index.db-shm"
m=$(run_one)
expect_eq "a cut index: a miss with a new one" False "$(deps_of "$m" hit)"
[ -e "$FARM_HOME/cache/index.db.corrupt" ] || fail "the cut index was not kept aside"
expect_status "stats after it" 0 farm cache stats
# File names are bytes: names that are not ASCII, or not UTF-8, and a link
# to one are stored and come back as they were (the package used to be
# left unstored: "Can't translate pathname").
cat >"$repo/deps/names.sh" <<'S'
mkdir -p "$FARM_DEPS_OUT/pkg"
echo x >"$FARM_DEPS_OUT/pkg/données.csv"
echo y >"$FARM_DEPS_OUT/pkg/$(printf 'b\377d')"
ln -s données.csv "$FARM_DEPS_OUT/pkg/lé"
S
cat >"$repo/farm.yaml" <<'Y'
deps: {dir: deps, build: sh deps/names.sh}
tasks:
  - name: names
    run: ls "$FARM_DEPS_DIR/pkg" | od -An -c | tr -s ' '; cat "$FARM_DEPS_DIR/pkg/lé"
Y
n1=$(run_one)
expect_contains "stored" "stored as" "$(farm logs "$n1")"
n2=$(run_one)
expect_eq "a hit" True "$(deps_of "$n2" hit)"
expect_eq "the names as built" "$(farm logs "$n1" | grep -v '^farm:')" "$(farm logs "$n2" | grep -v '^farm:')"
expect_contains "the link" "x" "$(farm logs "$n2" | tail -1)"
# A build that leaves a process behind (a compiler cache server, say) does
# not hold the task: nothing of farm's is open in it, and the process is
# stopped when the task ends.
cat >"$repo/deps/daemon.sh" <<'S'
nohup sleep 30 </dev/null >/dev/null 2>&1 &
echo $! >"$FARM_DEPS_OUT/daemon.pid"
ls -l /proc/self/fd/ >"$FARM_DEPS_OUT/fds" 2>&1
S
cat >"$repo/farm.yaml" <<'Y'
deps: {dir: deps, build: sh deps/daemon.sh}
tasks: [{name: quick, run: "true"}]
Y
t0=$(date +%s)
d=$(run_one)
elapsed=$(( $(date +%s) - t0 ))
[ "$elapsed" -lt 10 ] || fail "a build's background process held the task for $elapsed s"
dpid=$(cat "$FARM_HOME/runs/$d/deps/daemon.pid")
i=0
while kill -0 "$dpid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$dpid" 2>/dev/null && fail "the build's background process $dpid outlived the task"
expect_eq "only 0, 1 and 2 (and ls's own) open in the build" 0 \
    "$(grep -c -E ' (3|4) -> (socket|pipe)' "$FARM_HOME/runs/$d/deps/fds")"
# Directory modes come back as built, with hard links as with a copy.
cat >"$repo/deps/modes.sh" <<'S'
mkdir -p "$FARM_DEPS_OUT/ro" "$FARM_DEPS_OUT/shared"
echo x >"$FARM_DEPS_OUT/ro/f"
chmod 0555 "$FARM_DEPS_OUT/ro"
chmod 0775 "$FARM_DEPS_OUT/shared"
S
for mode in copy link; do
    cat >"$repo/farm.yaml" <<Y
deps: {dir: deps, build: sh deps/modes.sh, restore: $mode}
tasks: [{name: modes, run: 'stat -c %a \$FARM_DEPS_DIR/ro \$FARM_DEPS_DIR/shared | paste -sd" " -'}]
Y
    run_one >/dev/null
    mo=$(run_one)
    expect_eq "$mode restore: a hit" True "$(deps_of "$mo" hit)"
    expect_eq "$mode restore: directory modes" "555 775" "$(farm logs "$mo" | grep -v '^farm:' | tail -1)"
done
# A task that waits for another task's build of its package stops waiting
# when it times out (it used to wait on until the SIGKILL, grace + 3 s later).
spec "sh deps/build.sh" CACHE_SALT
export CACHE_SALT=waiter
touch "$T/slow"
wb=$(farm submit --dir "$repo")
sleep 0.5
cat >>"$repo/farm.yaml" <<'Y'
    timeout: 1
Y
ww=$(farm submit --dir "$repo")
farm wait "$ww" >/dev/null 2>&1 || true
expect_eq "the waiter timed out" timed_out "$(farm show "$ww" --json | jget - 'j["state"]')"
expect_contains "it stopped waiting (not killed later)" "stopped while waiting for another task's build" "$(farm logs "$ww")"
farm wait "$wb" >/dev/null || fail "the builder failed"
rm -f "$T/slow"
unset CACHE_SALT
# A build that removes its own output directory fails the task: there is
# no package to hand it.
cat >"$repo/farm.yaml" <<'Y'
deps: {dir: deps, build: 'rm -rf "$FARM_DEPS_OUT"'}
tasks: [{name: noout, run: "true"}]
Y
no=$(farm submit --dir "$repo")
expect_status "a build that removes its output" 1 farm wait "$no"
expect_contains "the reason" "the build removed its output directory" "$(farm show "$no" --json | jget - 'j["reason"]')"
# farm cache why explains a failed build's miss too (it has a key).
expect_status "why of a failed build" 0 farm cache why "$no"
expect_contains "it says the build failed" "miss (this task's build failed)" "$(cat "$T/out")"
# A build that ignores SIGTERM does not outlive its task's timeout: what is
# left of its process group is killed when the grace period ends, even after
# the shell that started it is gone.
cat >"$repo/deps/stubborn.sh" <<S
sh -c 'trap "" TERM; echo \$\$ >"$T/stubborn.pid"; sleep 20; echo late >"$T/late"' &
wait
S
cat >"$repo/farm.yaml" <<'Y'
deps: {dir: deps, build: sh deps/stubborn.sh}
tasks: [{name: stubborn, timeout: 1, run: "true"}]
Y
sb=$(farm submit --dir "$repo")
expect_status "the stubborn build's task" 1 farm wait "$sb"
expect_eq "it timed out" timed_out "$(farm show "$sb" --json | jget - 'j["state"]')"
i=0
while kill -0 "$(cat "$T/stubborn.pid")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$(cat "$T/stubborn.pid")" 2>/dev/null && fail "the build that ignores SIGTERM outlived its task"
[ -e "$T/late" ] && fail "the build wrote after its task ended"
# A cache whose index cannot be written (a full disk): the task still gets
# the package, built without the cache, and the log says why. (Needs a
# tmpfs mount: skipped where the test may not mount.)
spec "sh deps/build.sh"
if mount -t tmpfs -o size=1M tmpfs "$FARM_HOME/cache" 2>/dev/null; then
    run_one >/dev/null   # an index on the small file system
    dd if=/dev/zero of="$FARM_HOME/cache/filler" bs=4k 2>/dev/null || true
    echo v9 >"$repo/deps/version.txt"
    f=$(run_one)
    expect_contains "built without the cache" "the cache cannot be used" "$(farm logs "$f")"
    expect_contains "and used" "tool-v9" "$(farm logs "$f")"
    # Without the cache too, a build that removes its output fails the task.
    cp "$repo/farm.yaml" "$T/farm.yaml.keep"
    printf 'deps: {dir: deps, build: %s}\ntasks: [{name: noout2, run: "true"}]\n' "'rm -rf \"\$FARM_DEPS_OUT\"'" >"$repo/farm.yaml"
    no2=$(farm submit --dir "$repo")
    expect_status "uncached: a build that removes its output" 1 farm wait "$no2"
    expect_contains "the reason" "the build removed its output directory" "$(farm show "$no2" --json | jget - 'j["reason"]')"
    cp "$T/farm.yaml.keep" "$repo/farm.yaml"
    umount "$FARM_HOME/cache" || fail "the cache's file system is still busy"
else
    echo "cache.sh: cannot mount a tmpfs here; the full-index check is skipped"
fi
expect_status "bad size" 2 farm cache gc --max-size lots
expect_status "why of a task without deps" 2 farm cache why "$(farm submit -- true)"
echo "cache: ok"
