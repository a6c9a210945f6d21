# Crashing plugins end their own task only: SIGSEGV, SIGABRT and exit() in
# run() end the task failed with the cause; a hang and a stdout flood end
# timed_out at the task's timeout, the flood's log held to the log cap;
# farmd and every other task go on. The same causes through `farm run`.
. "$(dirname "$0")/lib.sh"
FX="$FARM_BUILD_DIR/fixtures/plugins"
mkdir -p "$T/fx"
for f in segv abort exit hang flood ok; do
    cp "$FX/$f.so" "$T/fx/$f.so"
    chmod 0755 "$T/fx/$f.so"
done

# farm run: exit 1 and the cause in the result object.
for c in "segv|plugin crashed: SIGSEGV|139" "abort|plugin crashed: SIGABRT|134" \
         "exit|plugin exited without returning (exit status 7)|7"; do
    f=${c%%|*} rest=${c#*|}
    want=${rest%|*} code=${rest#*|}
    expect_status "farm run $f" 1 farm run "$T/fx/$f.so" --json
    expect_eq "farm run $f: state" failed "$(jget "$T/out" 'j["state"]')"
    expect_eq "farm run $f: reason" "$want" "$(jget "$T/out" 'j["reason"]')"
    expect_eq "farm run $f: exit code" "$code" "$(jget "$T/out" 'j["exit_code"]')"
done

cap=1048576
start_farmd --jobs 2 --grace 1 --log-cap $cap
pid=$(farmd_pid)
# A long task shares the farm with the crashing ones from start to end.
echo '{"run": "sleep 2; echo long-ok", "name": "long", "priority": 10}' >"$T/batch"
for f in segv abort exit; do
    echo "{\"plugin\": \"$T/fx/$f.so\", \"params\": {}, \"name\": \"$f\"}" >>"$T/batch"
    echo "{\"plugin\": \"$T/fx/ok.so\", \"params\": {}, \"name\": \"ok-after-$f\"}" >>"$T/batch"
done
for f in hang flood; do
    echo "{\"plugin\": \"$T/fx/$f.so\", \"params\": {}, \"name\": \"$f\", \"timeout\": 2}" >>"$T/batch"
    echo "{\"run\": \"echo fine\", \"name\": \"ok-after-$f\"}" >>"$T/batch"
done
farm submit --batch "$T/batch" >"$T/ids"
expect_status "wait all" 1 farm wait $(cat "$T/ids")
farm list --json >"$T/list.json"
field() { jget "$T/list.json" "[t['$2'] for t in j if t['task'] == '$1'][0]"; }
expect_eq "segv state" failed "$(field segv state)"
expect_eq "segv reason" "plugin crashed: SIGSEGV" "$(field segv reason)"
expect_eq "segv exit code" 139 "$(field segv exit_code)"
expect_eq "abort state" failed "$(field abort state)"
expect_eq "abort reason" "plugin crashed: SIGABRT" "$(field abort reason)"
expect_eq "exit state" failed "$(field exit state)"
expect_eq "exit reason" "plugin exited without returning (exit status 7)" "$(field exit reason)"
expect_eq "exit exit code" 7 "$(field exit exit_code)"
expect_eq "hang state" timed_out "$(field hang state)"
expect_eq "flood state" timed_out "$(field flood state)"
for f in segv abort exit hang flood; do
    expect_eq "ok-after-$f" succeeded "$(field "ok-after-$f" state)"
done
expect_eq "long task" succeeded "$(field long state)"
expect_contains "long task log" "long-ok" "$(farm logs "$(field long id)")"
# The crashing plugins' own log lines made it into their logs.
expect_contains "segv log" "[info] segv: about to crash" "$(farm logs "$(field segv id)")"
expect_contains "exit log" "[info] exit: about to exit(7)" "$(farm logs "$(field exit id)")"
# The flood's log stops at the cap, with the marker.
flood=$(field flood id)
size=$(farm logs "$flood" | wc -c)
[ "$size" -ge $cap ] || fail "flood log is $size bytes, expected at least the cap $cap"
[ "$size" -le $((cap + 200)) ] || fail "flood log is $size bytes, more than the cap $cap"
expect_contains "flood log marker" "[farm: log truncated at $cap bytes; further output discarded]" \
    "$(farm logs "$flood" | tail -c 200)"

expect_eq "farmd still the same process" "$pid" "$(farmd_pid)"
kill -0 "$pid" || fail "farmd died"
id=$(farm submit -- echo after)
expect_status "a task after the crashes" 0 farm wait "$id"
# An installation without its plugin host: describing a plugin (farm run,
# farm plugin info) fails and names the missing file; a worker whose plugin
# host has gone missing fails the task and says why.
mkdir -p "$T/inst/bin"
for b in farm farmd farm-worker farm-prepare; do cp "$FARM_BIN/$b" "$T/inst/bin/"; done
ln -s "$(cd "$FARM_BIN/../plugins" && pwd)" "$T/inst/plugins"
nohost="cannot start the plugin host $T/inst/bin/farm-plugin-host: No such file or directory"
expect_status "farm run without the plugin host" 2 "$T/inst/bin/farm" run "$T/fx/ok.so"
expect_contains "farm run without the plugin host" "$nohost" "$(cat "$T/err")"
expect_status "farm plugin without the plugin host" 2 "$T/inst/bin/farm" plugin info "$T/fx/ok.so"
expect_contains "farm plugin without the plugin host" "$nohost" "$(cat "$T/err")"
mkdir -p "$T/rd"
printf '{"id": 1, "id_text": "1", "attempt": 1, "plugin": "%s", "params": {}, "run_dir": "%s", "work_dir": "%s", "log": "-"}\n' \
    "$T/fx/ok.so" "$T/rd" "$T/rd" >"$T/rd/task.json"
# (Without an event channel on descriptor 3 the result goes to stderr.)
expect_status "worker without the plugin host" 1 sh -c 'exec 3>&-; exec "$0" "$@"' \
    "$T/inst/bin/farm-worker" --run "$T/rd"
expect_contains "worker without the plugin host: result" "\"reason\": \"$nohost\"" \
    "$(tail -n 1 "$T/err" | sed 's/":"/": "/g')"
echo "sdk_crash: ok"
