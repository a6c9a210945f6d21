# Crash recovery: with 200 tasks queued and 2 running, kill -9 farmd and
# start it again: all 200 end succeeded, the 2 interrupted ones re-run, and
# no task is recorded succeeding twice. Then the same with a kill at a random
# moment during a 1,000-task run (CRASH_BIG=1, label slow).
. "$(dirname "$0")/lib.sh"

check_all() { # N: every task succeeded exactly once
    n=$1
    farm list --limit 0 --json >"$T/all.json"
    expect_eq "task count" "$n" "$(jget "$T/all.json" 'len(j)')"
    bad=$(jget "$T/all.json" '[t["id"] for t in j if t["state"] != "succeeded"]')
    expect_eq "tasks not succeeded" "[]" "$bad"
    twice=$("$PY" - "$FARM_HOME/farm.db" <<'P'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("select count(*) from (select task from attempts where state='succeeded' group by task having count(*) > 1)").fetchone()[0])
P
)
    expect_eq "tasks that succeeded twice" 0 "$twice"
}

start_farmd --jobs 2 --grace 1
printf '' >"$T/batch"
for i in $(seq 1 200); do
    echo "{\"cmd\": [\"sh\", \"-c\", \"sleep 0.02; echo \$FARM_TASK_ID >> $T/done\"]}" >>"$T/batch"
done
# The first two block until released, so that exactly two run at the kill.
first=$(farm submit -- sh -c "echo \$FARM_TASK_ID >> $T/started; while [ ! -e $T/release ]; do sleep 0.05; done")
second=$(farm submit -- sh -c "echo \$FARM_TASK_ID >> $T/started; while [ ! -e $T/release ]; do sleep 0.05; done")
farm submit --batch "$T/batch" >/dev/null
wait_state "$first" running 20
wait_state "$second" running 20
pid=$(farmd_pid)
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
touch "$T/release"
start_farmd --jobs 2 --grace 1
ids=$(farm list --limit 0 --json | jget - "' '.join(str(t['id']) for t in j)")
farm wait $ids >/dev/null
check_all 202
expect_eq "first re-ran" 2 "$(farm show "$first" --json | jget - 'j["attempts"]')"
expect_eq "interrupted attempt recorded" interrupted "$(farm show "$first" --json | jget - 'j["attempt_history"][0]["state"]')"
expect_eq "started twice" 2 "$(grep -c "^$first\$" "$T/started")"

if [ "${CRASH_BIG:-0}" = 1 ]; then
    farm daemon stop >/dev/null
    rm -rf "$FARM_HOME"
    start_farmd --jobs 2 --grace 1
    printf '' >"$T/batch"
    for i in $(seq 1 1000); do echo '{"cmd": ["sh", "-c", "sleep 0.005"]}' >>"$T/batch"; done
    farm submit --batch "$T/batch" >/dev/null
    sleep "$("$PY" -c 'import random; print(round(random.uniform(0.2, 3.0), 2))')"
    kill -9 "$(farmd_pid)"
    sleep 0.2
    start_farmd --jobs 2 --grace 1
    ids=$(farm list --limit 0 --json | jget - "' '.join(str(t['id']) for t in j)")
    farm wait $ids >/dev/null
    check_all 1000
fi
echo "crash: ok"
