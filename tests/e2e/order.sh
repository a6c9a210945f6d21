# Priorities (higher first) and FIFO within a priority; --after and needs
# order; a failed dependency gives skipped; pause/resume; retries record
# every attempt with its own log and exit code; parallel N changes the limit.
. "$(dirname "$0")/lib.sh"
start_farmd --jobs 1
farm pause >/dev/null
o="$T/order"
a=$(farm submit -- sh -c "echo a >> $o")
b=$(farm submit --priority 5 -- sh -c "echo b >> $o")
c=$(farm submit -- sh -c "echo c >> $o")
d=$(farm submit --priority 5 -- sh -c "echo d >> $o")
e=$(farm submit --priority -1 -- sh -c "echo e >> $o")
f=$(farm submit --priority 9 --after "$a" -- sh -c "echo f >> $o")
expect_eq "paused queued shows waiting" waiting "$(state_of "$a")"
expect_contains "paused reason" "queue paused" "$(farm show "$a" --json | jget - 'j["reason"]')"
sleep 0.3
[ ! -e "$o" ] || fail "a task ran while paused"
farm resume >/dev/null
farm wait "$a" "$b" "$c" "$d" "$e" "$f" >/dev/null
expect_eq "priority then FIFO, after respected" "b d a f c e" "$(tr '\n' ' ' <"$o" | sed 's/ $//')"

# needs-style dependency failing: the dependent is skipped, naming it.
x=$(farm submit -- sh -c 'exit 1')
y=$(farm submit --after "$x" -- true)
z=$(farm submit --after "$y" -- true)
farm wait "$x" "$y" "$z" >/dev/null || true
expect_eq "dependent of failed" skipped "$(state_of "$y")"
expect_eq "transitive dependent" skipped "$(state_of "$z")"
expect_contains "skip reason names the task" "needs task $x" "$(farm show "$y" --json | jget - 'j["reason"]')"
# after an already-failed task: skipped at once.
w=$(farm submit --after "$x" -- true)
expect_eq "after a failed task" skipped "$(state_of "$w")"

# Retries: fails twice, then succeeds; every attempt is recorded.
cnt="$T/count"
r=$(farm submit --retries 3 -- sh -c "n=\$(cat $cnt 2>/dev/null || echo 0); n=\$((n+1)); echo \$n > $cnt; echo attempt-\$n; [ \$n -ge 3 ]")
expect_status "retried task succeeds" 0 farm wait "$r"
farm show "$r" --json >"$T/r.json"
expect_eq "attempts" 3 "$(jget "$T/r.json" 'j["attempts"]')"
expect_eq "attempt states" "['failed', 'failed', 'succeeded']" "$(jget "$T/r.json" '[a["state"] for a in j["attempt_history"]]')"
expect_eq "attempt exit codes" "[1, 1, 0]" "$(jget "$T/r.json" '[a["exit_code"] for a in j["attempt_history"]]')"
expect_contains "first attempt log" attempt-1 "$(farm logs "$r" --attempt 1)"
expect_contains "last attempt log" attempt-3 "$(farm logs "$r")"
# retries exhausted
r2=$(farm submit --retries 1 -- sh -c 'exit 4')
expect_status "exhausted retries" 1 farm wait "$r2"
expect_eq "two attempts" 2 "$(farm show "$r2" --json | jget - 'j["attempts"]')"
# manual retry of a failed task
expect_status "retry" 0 farm retry "$x"
farm wait "$x" >/dev/null || true
expect_eq "retry adds an attempt" 2 "$(farm show "$x" --json | jget - 'j["attempts"]')"
expect_status "retry of a queued task is refused" 2 farm retry 999999

# parallel: 1 job runs one at a time; 3 jobs run three at once.
farm parallel 3 >/dev/null
ids=""
for i in 1 2 3; do ids="$ids $(farm submit -- sh -c "touch $T/p$i; while [ ! -e $T/go ]; do sleep 0.05; done")"; done
i=0
while [ $i -lt 100 ] && ! { [ -e "$T/p1" ] && [ -e "$T/p2" ] && [ -e "$T/p3" ]; }; do sleep 0.1; i=$((i+1)); done
[ -e "$T/p1" ] && [ -e "$T/p2" ] && [ -e "$T/p3" ] || fail "parallel 3 did not run 3 at once"
touch "$T/go"
farm wait $ids >/dev/null

# pause --wait returns once running tasks finished.
s=$(farm submit -- sleep 1)
wait_state "$s" running 10
farm pause --wait >/dev/null
expect_eq "pause --wait lets the task finish" succeeded "$(state_of "$s")"
farm resume >/dev/null
# A resume while pause --wait waits: the pause no longer holds, and the
# waiting client says so.
s=$(farm submit -- sleep 2)
wait_state "$s" running 10
farm pause --wait >"$T/pw.out" 2>"$T/pw.err" &
pw=$!
sleep 0.5
farm resume >/dev/null
set +e
wait "$pw"
pwrc=$?
set -e
expect_eq "pause --wait undone by a resume: exit status" 2 "$pwrc"
expect_contains "pause --wait undone by a resume: message" \
    "the queue was resumed before the running tasks ended" "$(cat "$T/pw.err")"
farm wait "$s" >/dev/null
# Relative --after in a batch (-1: the line before), and options as defaults.
cat >"$T/rel.jsonl" <<J
{"cmd": ["sh", "-c", "sleep 0.3; echo one >> $T/rel"]}
{"cmd": ["sh", "-c", "echo two >> $T/rel"], "after": [-1]}
{"cmd": ["true"], "priority": 3}
J
rel=$(farm submit --priority 7 --batch "$T/rel.jsonl")
farm wait $rel >/dev/null
expect_eq "relative after" "one two" "$(tr '\n' ' ' <"$T/rel" | sed 's/ $//')"
first=$(echo "$rel" | head -n 1)
expect_eq "needs of line 2" "[$first]" "$(farm show "$(echo "$rel" | sed -n 2p)" --json | jget - 'j["needs"]' | tr -d ' ')"
expect_eq "--priority fills in" 7 "$(farm show "$first" --json | jget - 'j["priority"]')"
expect_eq "a line's own priority wins" 3 "$(farm show "$(echo "$rel" | sed -n 3p)" --json | jget - 'j["priority"]')"
printf '{"cmd": ["true"], "after": [-1]}\n' >"$T/bad.jsonl"
expect_status "after before the first line" 2 farm submit --batch "$T/bad.jsonl"
expect_contains "names the line" "bad.jsonl:1:" "$(cat "$T/err")"

# Retrying a task skipped for a failed need is refused, naming the need.
expect_status "retry of a skipped dependent" 2 farm retry "$z"
expect_contains "retry names the need" "needs task $y" "$(cat "$T/err")"

# A task queued again for a retry, cancelled before it runs again, keeps the
# exit code of the attempt that failed. (The attempt pauses the queue itself,
# so that the retry waits.)
r=$(farm submit --retries 2 -- sh -c "'$FARM_BIN/farm' pause >/dev/null; exit 5")
i=0
until [ "$(farm show "$r" --json | jget - '"%s %d" % (j["state"], len(j["attempt_history"]))')" = "queued 1" ] || [ $i -ge 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
farm cancel "$r" >/dev/null
expect_eq "cancelled while queued for a retry" "cancelled 5" \
    "$(farm show "$r" --json | jget - '"%s %s" % (j["state"], j["exit_code"])')"
farm resume >/dev/null
echo "order: ok"
