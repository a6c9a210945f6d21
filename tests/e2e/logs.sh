# logs -f shows output while the task runs (not only at the end), waits for a
# queued task to start, and returns when the task ends; logs are capped.
. "$(dirname "$0")/lib.sh"
start_farmd --jobs 1 --log-cap 4096
blocker=$(farm submit -- sh -c "while [ ! -e $T/go ]; do sleep 0.05; done")
id=$(farm submit -- sh -c "echo tick-1; while [ ! -e $T/go2 ]; do sleep 0.05; done; echo tick-2")
farm logs -f "$id" >"$T/follow" 2>&1 &
fpid=$!
sleep 0.5
expect_eq "nothing before the task starts" "" "$(cat "$T/follow")"
touch "$T/go"
i=0
while ! grep -q tick-1 "$T/follow" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
grep -q tick-1 "$T/follow" || fail "logs -f did not show output while the task ran"
grep -q tick-2 "$T/follow" && fail "tick-2 before it was printed"
kill -0 $fpid 2>/dev/null || fail "logs -f returned while the task still ran"
touch "$T/go2"
wait $fpid || fail "logs -f exited non-zero"
expect_eq "followed log" "tick-1
tick-2" "$(cat "$T/follow")"
farm wait "$blocker" >/dev/null

# A flood is capped with a visible marker, and the task fails, saying why.
f=$(farm submit -- sh -c 'yes flood | head -c 100000; echo')
expect_status "a flooding task fails" 1 farm wait "$f"
size=$(wc -c <"$FARM_HOME/runs/$f/log")
[ "$size" -lt 4400 ] || fail "log not capped: $size bytes"
expect_contains "truncation marker" "log truncated at 4096 bytes" "$(farm logs "$f")"
expect_contains "reason says truncated" "output exceeded the log size cap (4096 bytes)" "$(farm show "$f" --json | jget - 'j["reason"]')"

# Attempts that begin and end between two looks of logs -f are printed
# whole, each after its marker.
farm pause >/dev/null
q=$(farm submit --retries 4 -- sh -c 'echo out-$FARM_TASK_ID; exit 1')
farm logs -f "$q" >"$T/quick" 2>&1 &
fpid=$!
sleep 0.3
farm resume >/dev/null
wait "$fpid" || fail "logs -f of quick retries failed"
expect_eq "every attempt of quick retries" "out-$q
--- attempt 2 ---
out-$q
--- attempt 3 ---
out-$q
--- attempt 4 ---
out-$q
--- attempt 5 ---
out-$q" "$(cat "$T/quick")"

# A full disk: the log ends where the write failed, with a marker, and gives
# back its last MiB so that farmd can still record the end; the task fails
# saying why, farmd stays up, and the next task runs. (Needs a tmpfs mount:
# skipped where the test may not mount.)
farm daemon stop >/dev/null
full="$T/full"
mkdir -p "$full"
if mount -t tmpfs -o size=3M tmpfs "$full" 2>/dev/null; then
    home_before=$FARM_HOME
    export FARM_HOME="$full/h"
    farm daemon start --jobs 1 >/dev/null
    p0=$(farmd_pid)
    d=$(farm submit -- sh -c 'yes | head -c 5000000; echo done')
    expect_status "a task that fills the disk fails" 1 farm wait "$d"
    expect_eq "its reason" "writing the log failed (No space left on device); log truncated" \
        "$(farm show "$d" --json | jget - 'j["reason"]')"
    expect_contains "its log says where it ends" \
        "[farm: writing the log failed: No space left on device; further output discarded]" \
        "$(farm logs "$d" | tail -c 200)"
    a=$(farm submit -- echo after)
    expect_status "farmd records the next task" 0 farm wait "$a"
    kill -0 "$p0" 2>/dev/null || fail "farmd died on the full disk"
    expect_eq "farmd is the same process" "$p0" "$(farmd_pid)"
    # A submit whose commit meets a full disk: farmd stops to protect the
    # queue, and the client is told why (exit 1, a database error).
    farm pause >/dev/null
    dd if=/dev/zero of="$full/fill" bs=64k 2>/dev/null || true
    i=0 rc=0
    while [ $i -lt 400 ]; do
        set +e
        farm submit -- true >/dev/null 2>"$T/sub.err"
        rc=$?
        set -e
        [ $rc = 0 ] || break
        i=$((i + 1))
    done
    expect_eq "a submit that met a full disk: exit status (a database error)" 1 "$rc"
    expect_contains "the client is told" \
        "commit failed, stopping to protect the queue: database or disk is full" "$(cat "$T/sub.err")"
    i=0
    while kill -0 "$p0" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    ! kill -0 "$p0" 2>/dev/null || fail "farmd did not stop on the failed commit"
    rm -f "$full/fill"
    # (farmd's fork server ends on its own once farmd is gone.)
    farm daemon start --jobs 1 >/dev/null
    farm daemon stop >/dev/null
    export FARM_HOME=$home_before
    # A finished stop leaves no farm process holding the file system.
    umount "$full" || fail "the home's file system is still busy after the stop"

else
    echo "logs.sh: cannot mount a tmpfs here; the full-disk check is skipped"
fi
echo "logs: ok"
