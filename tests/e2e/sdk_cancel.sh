# Cancelling a running plugin: a plugin that polls cancelled() sees it turn
# true and returns well within the grace period; one that ignores it (hang)
# is killed once the grace period is over, not before. Also through
# `farm run --timeout`.
. "$(dirname "$0")/lib.sh"
FX="$FARM_BUILD_DIR/fixtures/plugins"
mkdir -p "$T/fx"
for f in hello hang; do
    cp "$FX/$f.so" "$T/fx/$f.so"
    chmod 0755 "$T/fx/$f.so"
done
now() { "$PY" -c 'import time; print(time.time())'; }
elapsed() { "$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$2"; }
# wait_log ID TEXT: until the task's log holds TEXT (10 s at most).
wait_log() {
    _i=0
    until farm logs "$1" 2>/dev/null | grep -qF "$2"; do
        _i=$((_i + 1))
        [ $_i -lt 100 ] || fail "task $1: log never showed [$2]"
        sleep 0.1
    done
}
grace=3
start_farmd --jobs 2 --grace $grace

# Cooperative: 1000 greetings, 50 ms apart (50 s); cancelled after the 3rd.
echo "{\"plugin\": \"$T/fx/hello.so\", \"params\": {\"name\": \"Ada\", \"count\": 1000}}" >"$T/batch"
id=$(farm submit --batch "$T/batch")
wait_state "$id" running 20
wait_log "$id" "greeting Ada 1000 times"
while [ "$(farm show "$id" --json | jget - 'j["metrics"].get("greetings", 0)')" = 0 ]; do sleep 0.05; done
t0=$(now)
farm cancel "$id" >/dev/null
wait_state "$id" cancelled 10
dt=$(elapsed "$t0" "$(now)")
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < $grace - 0.5 else 1)" "$dt" ||
    fail "cooperative plugin took $dt s to end, expected less than the $grace s grace"
# It returned (exit code 1 from its -ECANCELED), it was not killed (137).
expect_eq "cooperative exit code" 1 "$(farm show "$id" --json | jget - 'j["exit_code"]')"
log=$(farm logs "$id")
expect_contains "plugin saw cancelled()" "[warn] hello: cancelled after " "$log"
n=$(printf '%s\n' "$log" | sed -n 's/.*cancelled after \([0-9]*\) of 1000 greetings.*/\1/p')
[ -n "$n" ] && [ "$n" -ge 1 ] && [ "$n" -lt 1000 ] || fail "cancelled after [$n] greetings"
expect_eq "state" cancelled "$(state_of "$id")"

# Uncooperative: killed after the grace period.
id=$(echo "{\"plugin\": \"$T/fx/hang.so\", \"params\": {}}" | farm submit --batch -)
wait_state "$id" running 20
wait_log "$id" "hang: sleeping forever"
t0=$(now)
farm cancel "$id" >/dev/null
wait_state "$id" cancelled 15
dt=$(elapsed "$t0" "$(now)")
"$PY" -c "import sys; d=float(sys.argv[1]); sys.exit(0 if $grace - 0.2 <= d <= $grace + 3 else 1)" "$dt" ||
    fail "hang ended $dt s after the cancel, expected just after the $grace s grace"
expect_eq "hang exit code (SIGKILL)" 137 "$(farm show "$id" --json | jget - 'j["exit_code"]')"

# farm run --timeout: the plugin sees cancelled() and returns; state timed_out.
t0=$(now)
expect_status "farm run --timeout" 1 farm run "$T/fx/hello.so" --param name=Bo --param count=1000 --timeout 0.5 --json
dt=$(elapsed "$t0" "$(now)")
expect_eq "farm run state" timed_out "$(jget "$T/out" 'j["state"]')"
expect_contains "farm run: plugin saw cancelled()" "hello: cancelled after " "$(cat "$T/err")"
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < 4.0 else 1)" "$dt" ||
    fail "farm run --timeout 0.5 took $dt s"
echo "sdk_cancel: ok"
