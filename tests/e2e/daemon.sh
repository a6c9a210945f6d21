# farmd's life: graceful stop waits for running tasks, then interrupts what
# outlives the grace period (requeued at the next start); workers stop their
# task when farmd dies; wait --timeout gives 124; retention prunes old runs.
. "$(dirname "$0")/lib.sh"
start_farmd --grace 2 --durability full
expect_eq "durability" full "$(farm daemon status --json | jget - 'j["durability"]')"

# A short task finishes during the stop's grace period.
s=$(farm submit -- sleep 1)
wait_state "$s" running 10
farm daemon stop >/dev/null
expect_status "farmd is gone" 3 farm daemon status
"$PY" - "$FARM_HOME/farm.db" "$s" <<'P' || fail "short task did not finish during the stop"
import sqlite3, sys
st = sqlite3.connect(sys.argv[1]).execute("select state from tasks where id=?", (int(sys.argv[2]),)).fetchone()[0]
sys.exit(0 if st == "succeeded" else 1)
P

# A client that comes while farmd stops (socket closed, the home still
# held) waits for the stop to end, then starts a new farmd.
start_farmd --grace 3
s2=$(farm submit -- sleep 2)
wait_state "$s2" running 10
farm daemon stop >/dev/null &
stopper=$!
i=0
while [ -S "$FARM_HOME/farm.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
expect_status "a client during a stop" 0 farm list
expect_contains "it said it waits" "farmd is stopping (or starting); waiting for it" "$(cat "$T/err")"
expect_eq "the task that ran during the stop" succeeded "$(farm show "$s2" --json | jget - 'j["state"]')"
wait "$stopper" || true
farm daemon stop >/dev/null

# A long task is interrupted after the grace period and runs again later;
# the interruption does not use up its one retry.
start_farmd --grace 1
l=$(farm submit --retries 1 -- sh -c "echo run >> $T/long; sleep 3")
wait_state "$l" running 10
farm daemon stop >/dev/null
start_farmd --grace 1
expect_status "interrupted task re-runs and succeeds" 0 farm wait "$l"
farm show "$l" --json >"$T/l.json"
expect_eq "attempt history" "['interrupted', 'succeeded']" "$(jget "$T/l.json" '[a["state"] for a in j["attempt_history"]]')"
expect_eq "ran twice" 2 "$(wc -l <"$T/long" | tr -d ' ')"
expect_eq "retries left intact" 1 "$(jget "$T/l.json" 'j["retries"]')"
# Stops are not crashes: a task cut short by more stops than the limit on
# interruptions (3) is still queued for the next start.
st=$(farm submit -- sleep 60)
for i in 1 2 3 4; do
    wait_state "$st" running 10
    farm daemon stop >/dev/null
    start_farmd --grace 1
done
wait_state "$st" running 10
expect_eq "4 stops, 4 interrupted attempts" 4 \
    "$(farm show "$st" --json | jget - 'sum(a["state"] == "interrupted" for a in j["attempt_history"])')"
farm cancel "$st" >/dev/null
wait_state "$st" cancelled 10
# A task that ended within its timeout while farmd was stopped (SIGSTOP)
# past the deadline is recorded as it ended, not timed out.
to=$(farm submit --timeout 2 -- sh -c 'sleep 1; echo in-time')
wait_state "$to" running 10
kill -STOP "$(farmd_pid)"
sleep 3
kill -CONT "$(farmd_pid)"
expect_status "ended in time while farmd was stopped" 0 farm wait "$to"
expect_eq "its state" succeeded "$(farm show "$to" --json | jget - 'j["state"]')"

# Options of daemon start are kept for a farmd started later without them.
pid=$(farmd_pid)
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
farm list >/dev/null   # starts farmd with no options
expect_eq "durability kept" full "$(farm daemon status --json | jget - 'j["durability"]')"
expect_status "a bad option is refused even while farmd runs" 2 farm daemon start --jobs 0
# A home whose socket path would not fit a socket address, or whose path is
# not text, is refused, and no farmd is left behind (nor a socket bound at a
# cut path beside the home).
long="$T/$(printf 'c%.0s' $(seq 110))"
expect_status "a home too long for its socket" 3 env FARM_HOME="$long" "$FARM_BIN/farm" daemon start
expect_contains "a home too long: message" "is too long (a socket path must fit in 107 bytes)" \
    "$(cat "$long/farmd.log" "$T/err" 2>/dev/null)"
[ -z "$(pgrep -f "farmd" -a | grep -F "$long")" ] || fail "a farmd runs for the long home"
[ "$(ls "$T" | grep -c '^c')" = 1 ] || fail "something was bound beside the long home"
bad=$(printf '%s/bad\377' "$T")
expect_status "a home that is not UTF-8" 3 env FARM_HOME="$bad" "$FARM_BIN/farm" daemon start
expect_contains "a home that is not UTF-8: message" "is not valid UTF-8" \
    "$(cat "$bad/farmd.log" "$T/err" 2>/dev/null)"
# A grace period that would never reach the SIGKILL, and numbers past their
# type, are refused, saying what is expected.
for g in inf nan -1 1e9 ""; do
    expect_status "--grace '$g' refused" 2 farm daemon start --grace "$g"
    expect_contains "--grace '$g': message" "expected seconds from 0 to 86400" "$(cat "$T/err")"
done
expect_status "--log-cap past int64 refused" 2 farm daemon start --log-cap 99999999999999999999
expect_status "--keep-days past int refused" 2 farm daemon start --keep-days 99999999999

# farmd killed: the worker notices and stops its task within the grace.
k=$(farm submit -- sh -c "echo \$\$ > $T/kpid; exec sleep 300")
wait_state "$k" running 10
i=0
while [ ! -s "$T/kpid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kpid=$(cat "$T/kpid")
kill -0 "$kpid" || fail "task process not running"
kill -9 "$(farmd_pid)"
i=0
while kill -0 "$kpid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$kpid" 2>/dev/null && fail "task survived farmd's death"
start_farmd --grace 1
farm cancel "$k" >/dev/null
wait_state "$k" cancelled 10

# The fork server dies: the task it started still ends normally, and new
# tasks start through a new server.
fs=$(farm submit -- sh -c "sleep 1; echo survived")
wait_state "$fs" running 10
srv=$(pgrep -f -P "$(farmd_pid)" 'farm-worker --serve' | head -n 1)
[ -n "$srv" ] || fail "no fork server below farmd"
kill -9 "$srv"
expect_status "task of a dead fork server" 0 farm wait "$fs"
expect_eq "its log" survived "$(farm logs "$fs")"
n=$(farm submit -- echo after)
expect_status "a task after the server died" 0 farm wait "$n"
srv2=$(pgrep -f -P "$(farmd_pid)" 'farm-worker --serve' | head -n 1)
[ -n "$srv2" ] && [ "$srv2" != "$srv" ] || fail "no new fork server"
# A fork server out of descriptors cannot take a start's sockets (the
# kernel drops them): it says so, and the task fails with the reason
# instead of staying "running" for good.
if command -v prlimit >/dev/null 2>&1; then
    prlimit --pid "$srv2" --nofile=4:4
    e=$(farm submit -- echo never)
    expect_status "a start the server cannot take" 1 farm wait "$e"
    expect_eq "its reason" "the fork server could not start the worker: Too many open files" \
        "$(farm show "$e" --json | jget - 'j["reason"]')"
    kill -9 "$srv2"
    n=$(farm submit -- echo again)
    expect_status "a task once that server is replaced" 0 farm wait "$n"
fi

# The fork server dies between forking a worker and saying its pid: farmd
# cannot signal that worker, so a cancel ends farmd's side of its event
# stream, which the worker takes for farmd going away: it stops its task.
# (gdb stops the server at its "P" line and kills it there; skipped where
# gdb cannot attach.)
srv3=$(pgrep -f -P "$(farmd_pid)" 'farm-worker --serve' | head -n 1)
if [ -n "$srv3" ] && command -v gdb >/dev/null 2>&1; then
    printf '%s\n' 'set pagination off' 'break server_send' "shell touch $T/gdb.ready" \
        'continue' "shell kill -9 $srv3" 'detach' 'quit' >"$T/gdb.cmds"
    timeout 60 gdb -q -batch -p "$srv3" -x "$T/gdb.cmds" >"$T/gdb.out" 2>&1 &
    gdbpid=$!
    i=0
    while [ ! -e "$T/gdb.ready" ] && kill -0 "$gdbpid" 2>/dev/null && [ $i -lt 300 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ -e "$T/gdb.ready" ]; then
        u=$(farm submit -- sh -c 'echo $$ >'"$T/unheard.pid"'; exec sleep 60')
        wait "$gdbpid" || true
        wait_state "$u" running 10
        i=0
        while [ ! -s "$T/unheard.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        farm cancel "$u" >/dev/null
        wait_state "$u" cancelled 15
        sleep 0.5
        ! kill -0 "$(cat "$T/unheard.pid")" 2>/dev/null || fail "the unheard worker's command still runs"
        expect_eq "its reason" cancelled "$(farm show "$u" --json | jget - 'j["reason"]')"
    else
        wait "$gdbpid" 2>/dev/null || true
        echo "daemon.sh: gdb cannot attach here; the unheard-worker check is skipped"
    fi
fi

# Tasks of a loaded plugin go to a fork server of their own, farm-plugin-host
# --serve, started with the first of them; it too is replaced when it dies,
# and its task still ends normally.
so="$FARM_BIN/../plugins/exec.so"
[ -z "$(pgrep -f -P "$(farmd_pid)" 'farm-plugin-host --serve')" ] ||
    fail "plugin fork server started before any plugin task"
printf '{"plugin": "%s", "params": {"run": "sleep 1; echo plugin-survived $FARM_TASK_ID"}}\n' \
    "$so" >"$T/pl.batch"
ps1=$(farm submit --batch "$T/pl.batch")
wait_state "$ps1" running 10
psrv=$(pgrep -f -P "$(farmd_pid)" 'farm-plugin-host --serve' | head -n 1)
[ -n "$psrv" ] || fail "no plugin fork server below farmd"
kill -9 "$psrv"
expect_status "task of a dead plugin fork server" 0 farm wait "$ps1"
expect_eq "its log" "plugin-survived $ps1" "$(farm logs "$ps1")"
ps2=$(farm submit --batch "$T/pl.batch")
expect_status "a plugin task after its server died" 0 farm wait "$ps2"
psrv2=$(pgrep -f -P "$(farmd_pid)" 'farm-plugin-host --serve' | head -n 1)
[ -n "$psrv2" ] && [ "$psrv2" != "$psrv" ] || fail "no new plugin fork server"
expect_contains "farmd says which server went away" \
    "the fork server (farm-plugin-host) went away" "$(cat "$FARM_HOME/farmd.log")"

# wait --timeout
w=$(farm submit -- sleep 30)
expect_status "wait --timeout" 124 farm wait "$w" --timeout 0.5
farm cancel "$w" >/dev/null
wait_state "$w" cancelled 10

# Retention: keep the run directories of the newest 2 finished tasks only,
# and no rows older than 0 days.
farm daemon stop >/dev/null
n_before=$(ls "$FARM_HOME/runs" | wc -l)
[ "$n_before" -gt 2 ] || fail "expected several run directories, got $n_before"
start_farmd --keep-runs 2
sleep 3
expect_eq "run dirs kept" 2 "$(ls "$FARM_HOME/runs" | wc -l | tr -d ' ')"
# The log of a pruned task is gone, with or without -f.
expect_status "logs of a pruned task" 2 farm logs "$l"
expect_contains "logs of a pruned task: message" "removed by retention" "$(cat "$T/err")"
expect_status "logs -f of a pruned task" 2 farm logs -f "$l"
expect_contains "logs -f of a pruned task: message" "removed by retention" "$(cat "$T/err")"
# Retried, it runs again, but the logs of its earlier attempts stay gone.
farm retry "$l" >/dev/null
farm wait "$l" >/dev/null 2>&1 || true
n_att=$(farm show "$l" --json | jget - 'len(j["attempt_history"])')
expect_status "logs --attempt 1 of a pruned, retried task" 2 farm logs "$l" --attempt 1
expect_contains "it says so" "the log of attempt 1 of task $l was removed by retention" "$(cat "$T/err")"
expect_eq "the new attempt's log is not" False \
    "$(farm show "$l" --json | jget - "j['attempt_history'][$n_att - 1]['log_removed']")"
farm daemon stop >/dev/null
start_farmd --keep-days 0
sleep 3
expect_eq "old rows pruned" 0 "$(farm list --json | jget - 'len(j)')"
expect_eq "no orphan snapshots or metrics" 0 "$("$PY" -c 'import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); print(d.execute("select (select count(*) from attempts)+(select count(*) from metrics)+(select count(*) from submissions)").fetchone()[0])' "$FARM_HOME/farm.db")"
last=$(farm submit -- true)
[ "$last" -gt "$w" ] || fail "task id $last reused after pruning (had $w)"

# A queued task whose stored parameters this farmd cannot read (written by
# one that let a NUL through) fails naming why; farmd stays up and runs the
# next one (it used to crash at every start of such a task).
farm pause >/dev/null
odd=$(farm submit -- true)
next=$(farm submit -- true)
farm daemon stop >/dev/null
"$PY" -c 'import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute("update tasks set params=? where id=?", ("{\"run\": \"a\\u0000b\"}", int(sys.argv[2]))); d.commit()' "$FARM_HOME/farm.db" "$odd"
start_farmd --grace 2
farm resume >/dev/null
expect_status "the task with unreadable parameters" 1 farm wait "$odd"
expect_contains "its reason" "its stored parameters cannot be read" "$(farm show "$odd" --json | jget - 'j["reason"]')"
expect_status "the next one" 0 farm wait "$next"
farm daemon stop >/dev/null
echo "daemon: ok"
