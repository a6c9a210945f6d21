# Timeout ends timed_out; cancel of a running task whose command started
# background and setsid'd processes leaves no process alive after the grace
# period (checked by pid); cancel works in every state.
. "$(dirname "$0")/lib.sh"
start_farmd --grace 1 --jobs 2

# Timeout.
id=$(farm submit --timeout 1 -- sleep 30)
expect_status "wait timed-out task" 1 farm wait "$id"
expect_eq "timed out" timed_out "$(state_of "$id")"

# Cancel a running tree: a background child, a setsid'd child, and a process
# that ignores SIGTERM.
cat >"$T/tree.sh" <<'S'
sleep 300 & echo $! >> "$1"
setsid sleep 300 & echo $! >> "$1"
sh -c 'trap "" TERM; echo $$ >> "$1"; while :; do sleep 1; done' x "$1" &
echo started
wait
S
id=$(farm submit -- sh "$T/tree.sh" "$T/pids")
wait_state "$id" running 20
i=0
while [ "$(wc -l <"$T/pids" 2>/dev/null || echo 0)" -lt 3 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect_eq "three pids recorded" 3 "$(wc -l <"$T/pids" | tr -d ' ')"
for p in $(cat "$T/pids"); do kill -0 "$p" 2>/dev/null || fail "pid $p not running before cancel"; done
farm cancel "$id" >/dev/null
wait_state "$id" cancelled 15
sleep 0.5
for p in $(cat "$T/pids"); do
    if kill -0 "$p" 2>/dev/null; then
        fail "pid $p ($(cat /proc/$p/cmdline | tr '\0' ' ')) survived the cancel"
    fi
done

# Cancel a queued task and a waiting one; the dependent of a cancelled task
# is skipped with a reason naming it.
farm pause >/dev/null
q=$(farm submit -- true)
w=$(farm submit --after "$q" -- true)
farm cancel "$q" >/dev/null
expect_eq "queued cancelled" cancelled "$(state_of "$q")"
expect_eq "dependent skipped" skipped "$(state_of "$w")"
expect_contains "skip reason" "needs task $q" "$(farm show "$w" --json | jget - 'j["reason"]')"
farm resume >/dev/null

# A plugin process that ignores cancellation is killed after the grace.
id=$(farm submit -- sh -c 'trap "" TERM INT; sleep 300')
wait_state "$id" running 20
start=$(date +%s)
farm cancel "$id" >/dev/null
wait_state "$id" cancelled 20
[ $(( $(date +%s) - start )) -le 8 ] || fail "cancel took longer than grace + slack"
echo "cancel: ok"
