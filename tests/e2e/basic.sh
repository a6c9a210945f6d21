# Submit, run, succeed; a failing command ends failed with its exit code; the
# log holds its output; JSON fields and exit statuses follow the contract.
. "$(dirname "$0")/lib.sh"

expect_status "status before start" 3 farm daemon status

id1=$(farm submit -- sh -c 'echo hello-out; echo hello-err >&2')
id2=$(farm submit -- sh -c 'echo failing; exit 7')
expect_status "wait for success" 0 farm wait "$id1"
expect_status "wait for failure" 1 farm wait "$id2"
expect_eq "state of ok task" succeeded "$(state_of "$id1")"
expect_eq "state of failing task" failed "$(state_of "$id2")"

farm show "$id2" --json >"$T/s.json"
expect_eq "exit code" 7 "$(jget "$T/s.json" 'j["exit_code"]')"
for f in id state exit_code plugin task priority attempts reason created_at started_at \
    finished_at deps metrics artifacts; do
    [ "$(jget "$T/s.json" "'$f' in j")" = True ] || fail "show --json lacks $f"
done
expect_eq "plugin" exec "$(jget "$T/s.json" 'j["plugin"]')"
jget "$T/s.json" 'j["finished_at"]' | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$' ||
    fail "finished_at is not RFC 3339"

log=$(farm logs "$id1")
expect_contains "log stdout" hello-out "$log"
expect_contains "log stderr" hello-err "$log"
expect_contains "failing log" failing "$(farm logs "$id2")"

# argv is passed without a shell: no re-quoting surprises.
id3=$(farm submit -- printf '%s|' 'a b' '$HOME' "it's")
farm wait "$id3" >/dev/null
expect_eq "argv passed verbatim" "a b|\$HOME|it's|" "$(farm logs "$id3")"

# The command runs in the directory it was submitted from.
mkdir "$T/wd"
id4=$(cd "$T/wd" && farm submit -- pwd)
farm wait "$id4" >/dev/null
expect_eq "work dir" "$T/wd" "$(farm logs "$id4")"

# submit prints only ids; --json prints an array of task objects.
out=$(farm submit --json -- true)
expect_eq "submit --json is an array" list "$(echo "$out" | jget - 'type(j).__name__')"

# list --json: an array; --state filters.
farm list --json --state failed >"$T/l.json"
expect_eq "list --state failed" "[$id2]" "$(jget "$T/l.json" '[t["id"] for t in j]' | tr -d ' ')"

# Bad input: exit 2 with a message.
expect_status "show unknown task" 2 farm show 99999
expect_contains "show unknown message" "no task 99999" "$(cat "$T/err")"
expect_status "unknown verb" 2 farm frobnicate
expect_status "submit without command" 2 farm submit --
expect_status "bad priority" 2 farm submit --priority high -- true
expect_contains "bad priority message" "--priority" "$(cat "$T/err")"
expect_status "after unknown task" 2 farm submit --after 424242 -- true
expect_status "cancel a finished task" 0 farm cancel "$id1"
expect_contains "cancel finished message" "already ended succeeded" "$(cat "$T/out")"
expect_eq "finished task unchanged" succeeded "$(state_of "$id1")"

# Help is complete: every verb answers --help.
for v in daemon submit list show logs wait cancel retry pause resume parallel metrics \
    artifacts artifact run plugins plugin; do
    farm "$v" --help | grep -q "usage: farm $v" || fail "farm $v --help"
done
farm daemon stop >/dev/null
expect_status "status after stop" 3 farm daemon status
echo "basic: ok"
