# Input the farm command must refuse or show safely: texts that are not
# UTF-8, NUL bytes in a batch, ids written oddly, option clashes, names that
# would garble a table, and a farmd that dies while farm talks to it.
. "$(dirname "$0")/lib.sh"
start_farmd --jobs 2
ff=$(printf '\377')
count() { farm list --limit 0 --json | jget - 'len(j)'; }

# --- Texts that are not UTF-8 are refused by name; nothing is queued. ---
expect_status "argument not UTF-8" 2 farm submit -- printf '%s\n' a "b${ff}c" d
expect_eq "argument not UTF-8: message" \
    'farm submit: argument 3 of the command "b\xffc" is not valid UTF-8 (farm passes commands to farmd as JSON text)' \
    "$(cat "$T/err")"
expect_status "command name not UTF-8" 2 farm submit -- "x${ff}"
expect_contains "command name not UTF-8: message" 'farm submit: the command name "x\xff" is not valid UTF-8' "$(cat "$T/err")"
expect_status "label not UTF-8" 2 farm submit --label "k=${ff}" -- true
expect_contains "label not UTF-8: message" 'farm submit: --label "k=\xff" is not valid UTF-8' "$(cat "$T/err")"
expect_status "task name not UTF-8" 2 farm submit --dir . --task "t${ff}"
expect_contains "task name not UTF-8: message" 'farm submit: --task "t\xff" is not valid UTF-8' "$(cat "$T/err")"
expect_status "commit not UTF-8" 2 farm list --commit "a${ff}"
expect_contains "commit not UTF-8: message" 'farm list: --commit "a\xff" is not valid UTF-8' "$(cat "$T/err")"
expect_status "run param not UTF-8" 2 farm run exec --param "run=${ff}"
expect_contains "run param not UTF-8: message" 'farm run: --param "run=\xff" is not valid UTF-8' "$(cat "$T/err")"
# A git hook never fails: one warning line, status 0.
expect_status "hook with a rev not UTF-8" 0 farm submit --git . --rev "r${ff}" --hook
expect_eq "hook warning" 'farm: warning: tests not submitted: --rev "r\xff" is not valid UTF-8' "$(cat "$T/err")"
expect_eq "hook prints nothing on stdout" "" "$(cat "$T/out")"
# The current directory goes into the request too (it was "lost the
# connection to farmd: Cannot allocate memory", status 3).
mkdir "$T/x${ff}"
cd "$T/x${ff}"
expect_status "cwd not UTF-8" 2 farm submit -- pwd
expect_contains "cwd not UTF-8: message" "farm submit: the current directory \"$T/x\\xff\" is not valid UTF-8" "$(cat "$T/err")"
printf '{"run":"pwd"}\n' >"$T/ok.jsonl"
expect_status "cwd not UTF-8 (batch)" 2 farm submit --batch "$T/ok.jsonl"
cd "$T"
expect_eq "nothing queued by refused input" 0 "$(count)"

# UTF-8 that is valid passes through unchanged.
id=$(farm submit -- printf '%s\n' a 'b€c' d)
farm wait "$id" >/dev/null
expect_eq "valid UTF-8 argument kept" "a
b€c
d" "$(farm logs "$id")"

# --- A NUL byte in a batch is an error at FILE:LINE:COLUMN; nothing queued. ---
printf '{"run":"echo 1"}\n\000{"run":"echo 2"}\n{"run":"echo 3"}\n' >"$T/n.jsonl"
expect_status "NUL at a line start" 2 farm submit --batch "$T/n.jsonl"
expect_eq "NUL at a line start: message" \
    "farm submit: $T/n.jsonl:2:1: a NUL byte; a batch is JSON text, one object a line" \
    "$(cat "$T/err")"
printf '{"run":"echo A"}\000garbage\n' >"$T/g.jsonl"
expect_status "NUL after an object" 2 farm submit --batch - <"$T/g.jsonl"
expect_contains "NUL after an object: message" "farm submit: <stdin>:1:17: a NUL byte" "$(cat "$T/err")"
printf '{"run":"echo \377"}\n' >"$T/u.jsonl"
expect_status "batch text not UTF-8" 2 farm submit --batch "$T/u.jsonl"
expect_contains "batch text not UTF-8: message" "farm submit: $T/u.jsonl:1:" "$(cat "$T/err")"
expect_status "batch from a directory" 2 farm submit --batch "$T"
expect_eq "batch from a directory: message" "farm submit: $T: is a directory" "$(cat "$T/err")"
# A line says each thing once: no key twice, one of cmd and run, and those
# exec shorthands with neither params nor another plugin.
bad_batch() { # NAME LINE MESSAGE
    printf '%s\n' "$2" >"$T/d.jsonl"
    expect_status "$1" 2 farm submit --batch "$T/d.jsonl"
    expect_contains "$1: message" "farm submit: $T/d.jsonl:1:" "$(cat "$T/err")"
    expect_contains "$1: what" "$3" "$(cat "$T/err")"
}
bad_batch "a key twice" '{"run": "true", "run": "false"}' "duplicate object key"
bad_batch "cmd and run" '{"cmd": ["true"], "run": "false"}' "give cmd or run, not both"
bad_batch "run and params" '{"run": "true", "params": {"run": "x"}}' "cmd and run replace params"
bad_batch "run of another plugin" '{"run": "true", "plugin": "hello"}' "they take no other plugin"
expect_eq "nothing queued by refused batches" 1 "$(count)"
# farm run checks an exec task's command as a submit does.
expect_status "farm run exec without a command" 2 farm run exec
expect_contains "farm run exec without a command: message" \
    "farm run: plugin exec: give \`run\` (a shell command) or \`argv\` (a list)" "$(cat "$T/err")"

# --- Ids are plain decimal digits; clashes and extra arguments are named. ---
for bad in " $id" "+$id" "0$id" "$id " "${id}x"; do
    expect_status "id [$bad]" 2 farm show "$bad"
    expect_contains "id [$bad]: message" "farm show: expected one task id, got \"$bad\"" "$(cat "$T/err")"
done
expect_status "plain id" 0 farm show "$id"
expect_status "parallel with an extra argument" 2 farm parallel 2 3
expect_contains "parallel: message" 'farm parallel: unexpected extra argument "3"' "$(cat "$T/err")"
expect_status "metrics --csv --json" 2 farm metrics "$id" --csv --json
expect_contains "metrics: message" "farm metrics: --csv and --json cannot be combined" "$(cat "$T/err")"
expect_status "artifact get --json" 2 farm artifact get "$id" x --json
expect_contains "artifact get: message" 'farm artifact: unexpected argument "--json"' "$(cat "$T/err")"

# --- Tables: aligned by display columns, cut at characters, no controls. ---
long_e=$("$PY" -c 'print("é" * 45)')
long_w=$("$PY" -c 'print("日" * 25)')
{
    # printf, not echo: dash's echo would turn \n into a newline.
    printf '%s\n' '{"run":"true","name":"héllo wörld"}' '{"run":"true","name":"日本語のタスク名"}'
    printf '{"run":"true","name":"%s"}\n' "$long_e" "$long_w"
} >"$T/names.jsonl"
ids=$(farm submit --batch "$T/names.jsonl" | tr '\n' ' ')
# farmd refuses control characters in given names, but an unnamed task is
# named after its command line, which may hold any.
ctl=$(printf 'a\nb\033[2Jc\177d')
ids="$ids $(farm submit -- printf "$ctl")"
# shellcheck disable=SC2086
farm wait $ids >"$T/wait.txt"
farm list >"$T/list.txt"
for f in wait list; do
    "$PY" - "$T/$f.txt" "$f" <<'PYEOF' || fail "$f table: see above"
import sys, unicodedata
raw = open(sys.argv[1], "rb").read()
what = sys.argv[2]
def width(s):
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
text = raw.decode("utf-8")  # strict: a cut inside a character fails here
assert b"\x1b" not in raw and b"\x7f" not in raw, f"{what}: a control byte reached the terminal"
lines = text.rstrip("\n").split("\n")
head = lines[0]
col = width(head[:head.index("PLUGIN")])
for l in lines[1:]:
    assert "exec" in l, f"{what}: a row was split: {l!r}"
    assert width(l[:l.index("  exec") + 2]) == col, f"{what}: PLUGIN column misaligned: {l!r}"
t0 = head.index("TASK")  # ID and STATE are ASCII: index = column
names = [l[t0:].split("  exec")[0].rstrip() for l in lines[1:]]
assert "printf a?b?[2Jc?d" in names, f"{what}: control characters not shown as ?: {names!r}"
assert "é" * 39 + "…" in names, f"{what}: long name not cut to 40 columns with …: {names!r}"
assert "日" * 19 + "…" in names, f"{what}: wide name not cut at 40 columns: {names!r}"
assert "日本語のタスク名" in names and "héllo wörld" in names, names
print(f"{what} table: ok")
PYEOF
done
# --json keeps the names exactly.
expect_eq "--json keeps the exact name" "'printf a\\nb\\x1b[2Jc\\x7fd'" \
    "$(farm list --limit 0 --json | jget - 'repr([t["task"] for t in j if t["task"].startswith("printf a")][0])')"

# --- A lost connection is status 3 with a message, also while following. ---
big=$(farm submit -- sh -c 'yes hello | head -c 300000')
farm wait "$big" >/dev/null
first=$(farm logs "$big" 2>"$T/head.err" | head -n 1)
expect_eq "logs | head: first line" hello "$first"
expect_eq "logs | head: quiet" "" "$(cat "$T/head.err")"
slow=$(farm submit -- sh -c 'echo a; sleep 5')
wait_state "$slow" running
sleep 0.5
farm logs -f "$slow" >"$T/follow.out" 2>"$T/follow.err" &
fpid=$!
sleep 0.5
kill -9 "$(farmd_pid)"
set +e
wait $fpid
st=$?
set -e
expect_eq "logs -f after farmd was killed: status" 3 "$st"
expect_eq "logs -f after farmd was killed: message" "farm logs: lost the connection to farmd" \
    "$(cat "$T/follow.err")"
# (The task's own end may or may not be in the log by then.)
expect_eq "logs -f after farmd was killed: output so far" a "$(head -n 1 "$T/follow.out")"
# --- Standard descriptors, output errors, deadlines, odd directories. ---
start_farmd --jobs 2
# With standard output closed, the socket to farmd must not take its place:
# a log holding request lines is printed nowhere, not sent to farmd.
inj=$(farm submit -- sh -c "echo '{\"v\":1,\"op\":\"pause\"}'")
farm wait "$inj" >/dev/null
farm logs "$inj" >&- 2>/dev/null || true
expect_eq "a closed stdout: nothing reached farmd" false "$(farm daemon status --json | jget - 'str(j["paused"]).lower()')"
expect_status "a closed stdout: submit still works" 0 farm submit -- true 1>&-
# What cannot be written is an error, not a silent loss.
to_full() { "$@" >/dev/full; }
expect_status "submit to a full stdout" 1 to_full farm submit -- true
expect_contains "it says so" "farm: writing standard output: No space left on device" "$(cat "$T/err")"
expect_status "list --json to a full stdout" 1 to_full farm list --json
# A request over farmd's cap gets farmd's answer (exit 2), not a lost
# connection (exit 3), though farmd closes before reading it all.
"$PY" -c "import json;print(json.dumps({'run':'#'+'x'*6000000}))" >"$T/huge.batch"
expect_status "an oversized batch" 2 farm submit --batch "$T/huge.batch"
expect_contains "farmd's reason" "too large" "$(cat "$T/err")"
# wait --timeout 0 on tasks that have ended: their answer, exit 0.
expect_status "wait --timeout 0, all ended" 0 farm wait --timeout 0 "$inj"
expect_status "wait --timeout nan" 2 farm wait --timeout nan "$inj"
expect_status "wait --timeout huge" 2 farm wait --timeout 1e12 "$inj"
long=$(farm submit -- sleep 1)
expect_status "wait --timeout 0, one still running" 124 farm wait --timeout 0 "$long"
expect_status "wait --timeout 4294968 (past a 32-bit millisecond count)" 0 farm wait --timeout 4294968 "$long"
# A directory that is gone: refused, not replaced by /.
mkdir "$T/gone"
expect_status "submit from a removed directory" 2 sh -c "cd '$T/gone' && rmdir '$T/gone' && '$FARM_BIN/farm' submit -- pwd"
expect_contains "it says why" "cannot tell the current directory" "$(cat "$T/err")"
# A home longer than farm takes is named as such.
expect_status "a FARM_HOME too long" 2 env FARM_HOME="/tmp/$("$PY" -c 'print("h" * 3000)')" "$FARM_BIN/farm" list
expect_contains "it says so" "FARM_HOME is too long" "$(cat "$T/err")"
# A batch line that starts with a byte that is not UTF-8: column 1.
printf '{"cmd": ["true"]}\n\377{"cmd": ["true"]}\n' >"$T/badbyte.batch"
expect_status "a batch line starting with a bad byte" 2 farm submit --batch "$T/badbyte.batch"
expect_contains "line 2, column 1" "badbyte.batch:2:1:" "$(cat "$T/err")"
# help of an unknown verb: exit 2, like VERB --help.
expect_status "help nosuchverb" 2 farm help nosuchverb
expect_contains "it names it" 'unknown verb "nosuchverb"' "$(cat "$T/err")"
# farmd's messages quote task names: no control character reaches the
# terminal.
esc=$(farm submit -- sh -c "$(printf 'exit 1 #\033]0;pwned\007')")
after=$(farm submit --after "$esc" -- true)
farm wait "$esc" "$after" >/dev/null 2>&1 || true
expect_status "retry of a skipped task whose reason names an ESC" 2 farm retry "$after"
[ "$(grep -c "$(printf '\033')" "$T/err")" = 0 ] || fail "an ESC reached the terminal: $(od -c "$T/err" | head -3)"
# start with options while farmd runs: says they were not applied.
expect_status "start --grace while running" 0 farm daemon start --grace 3
expect_contains "it says the options were not applied" "the options given were not applied" "$(cat "$T/err")"
farm daemon stop >/dev/null
echo "cli_input: ok"
