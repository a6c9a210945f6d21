# The exec plugin's behaviour as a user sees it, whichever process starts the
# command: environment, stdin, scratch directory, exit codes, signals, bad
# parameters, and processes left behind by a command that has ended.
. "$(dirname "$0")/lib.sh"

reason_of() { farm show "$1" --json | jget - 'j["reason"]'; }
code_of() { farm show "$1" --json | jget - 'j["exit_code"]'; }

# Environment, stdin from /dev/null, and a scratch directory that exists,
# starts empty and is emptied when the attempt ends.
farm daemon start --jobs 1 >/dev/null
id=$(farm submit -- sh -c '
    echo "task=$FARM_TASK_ID"; echo "run=$FARM_RUN_DIR"; echo "scratch=$FARM_SCRATCH_DIR"
    echo "bind=${LD_BIND_NOW-unset}${FARM_UNSET_BIND_NOW-}"
    test -d "$FARM_SCRATCH_DIR" && echo scratch-is-dir
    echo "entries=$(ls -A "$FARM_SCRATCH_DIR" | wc -l)"
    mkdir -p "$FARM_SCRATCH_DIR/a/b" && echo x >"$FARM_SCRATCH_DIR/a/b/f"
    ln -s /etc/hostname "$FARM_SCRATCH_DIR/link"
    cat; echo stdin-done')
farm wait "$id" >/dev/null || fail "env task: $(reason_of "$id")"
log=$(farm logs "$id")
expect_contains "FARM_TASK_ID" "task=$id" "$log"
expect_contains "FARM_RUN_DIR" "run=$FARM_HOME/runs/$id" "$log"
expect_contains "scratch exists" scratch-is-dir "$log"
expect_contains "scratch starts empty" "entries=0" "$log"
expect_contains "stdin is /dev/null" stdin-done "$log"
expect_contains "the fork server's loader setting stays its own" "bind=unset" "$log"
scratch=$(printf '%s\n' "$log" | sed -n 's/^scratch=//p')
[ -d "$scratch" ] || fail "scratch dir $scratch is gone (it is kept, empty)"
expect_eq "scratch emptied after the attempt" "" "$(ls -A "$scratch")"
[ -e /etc/hostname ] || fail "emptying the scratch dir followed a symlink"

# The next attempt in the same slot sees it empty.
id=$(farm submit -- sh -c 'echo "n=$(ls -A "$FARM_SCRATCH_DIR" | wc -l) $FARM_SCRATCH_DIR"')
farm wait "$id" >/dev/null
expect_eq "same slot, empty" "n=0 $scratch" "$(farm logs "$id")"

# A task that puts a symlink where its scratch directory was: what the link
# points to is left alone, and that slot is not handed out again.
mkdir "$T/outside"
echo keep >"$T/outside/file"
id=$(farm submit -- sh -c 'rm -rf "$FARM_SCRATCH_DIR" && ln -s '"$T"'/outside "$FARM_SCRATCH_DIR"')
farm wait "$id" >/dev/null || fail "symlink task: $(reason_of "$id")"
expect_contains "the slot is given up" "is not used again" "$(farm logs "$id")"
id=$(farm submit -- sh -c 'test -d "$FARM_SCRATCH_DIR" && test ! -L "$FARM_SCRATCH_DIR" &&
    echo "next=$FARM_SCRATCH_DIR $(ls -A "$FARM_SCRATCH_DIR" | wc -l)"')
farm wait "$id" >/dev/null || fail "after the symlink task: $(reason_of "$id")"
expect_eq "the symlink's target is untouched" keep "$(cat "$T/outside/file")"
next=$(farm logs "$id")
case "$next" in "next=$scratch "*) fail "the replaced slot was handed out again: $next" ;; esac
expect_contains "a fresh, empty slot" " 0" "$next"

# A task that changes its scratch directory's mode: the next attempt in the
# slot starts with the usual one.
id=$(farm submit -- sh -c 'chmod 0500 "$FARM_SCRATCH_DIR"; echo "$FARM_SCRATCH_DIR"')
farm wait "$id" >/dev/null
slot=$(farm logs "$id")
id=$(farm submit -- sh -c 'echo "$FARM_SCRATCH_DIR $(stat -c %a "$FARM_SCRATCH_DIR")"')
farm wait "$id" >/dev/null
expect_eq "mode restored" "$slot 755" "$(farm logs "$id")"

# A silent attempt shows no log left at its path by an earlier, unrecorded run.
farm pause >/dev/null
id=$(farm submit -- true)
mkdir -p "$FARM_HOME/runs/$id"
echo stale >"$FARM_HOME/runs/$id/log"
farm resume >/dev/null
farm wait "$id" >/dev/null
expect_eq "no stale log" "" "$(farm logs "$id")"

# Exit codes: the command's status; a signal gives 128 + the signal and a
# line in the log.
id=$(farm submit -- sh -c 'exit 42')
expect_status "non-zero exit" 1 farm wait "$id"
expect_eq "exit code 42" 42 "$(code_of "$id")"
expect_eq "non-zero reason" "the command exited with a non-zero status" "$(reason_of "$id")"
id=$(farm submit -- sh -c 'kill -KILL $$')
expect_status "killed command" 1 farm wait "$id"
expect_eq "exit code 137" 137 "$(code_of "$id")"
expect_contains "signal in log" "command killed by signal 9" "$(farm logs "$id")"

# The same variables for a task whose plugin loads in farm-plugin-host
# (exec.so named by its path), and under farm run.
so="$FARM_BIN/../plugins/exec.so"
printf '{"plugin": "%s", "params": {"run": "echo task=$FARM_TASK_ID run=$FARM_RUN_DIR scratch=$FARM_SCRATCH_DIR"}}\n' \
    "$so" >"$T/host.batch"
id=$(farm submit --batch "$T/host.batch")
farm wait "$id" >/dev/null || fail "plugin-host task: $(reason_of "$id")"
expect_contains "variables in the plugin host" \
    "task=$id run=$FARM_HOME/runs/$id scratch=$FARM_HOME/scratch/" "$(farm logs "$id")"
farm run "$so" --param run='echo task=$FARM_TASK_ID run=${FARM_RUN_DIR:+set} scratch=${FARM_SCRATCH_DIR:+set}' \
    >"$T/hostrun.out" 2>/dev/null || fail "farm run of exec.so failed"
expect_contains "variables under farm run" "task=local run=set scratch=set" "$(cat "$T/hostrun.out")"

# An executable file that is not a program is not handed to a shell: argv
# runs without one (127, and the log says why).
printf 'echo ran-by-a-shell\n' >"$T/noshebang"
chmod +x "$T/noshebang"
id=$(farm submit -- "$T/noshebang")
expect_status "not a program" 1 farm wait "$id"
expect_eq "not a program: exit code 127" 127 "$(code_of "$id")"
expect_contains "not a program: log" "Exec format error" "$(farm logs "$id")"

# A command that does not exist: 127, and the log says why.
id=$(farm submit -- /nonexistent/cmd-xyz arg)
expect_status "missing command" 1 farm wait "$id"
expect_eq "exit code 127" 127 "$(code_of "$id")"
expect_contains "missing command in log" "cannot start /nonexistent/cmd-xyz" "$(farm logs "$id")"
expect_contains "missing command reason" "plugin exec returned" "$(reason_of "$id")"

# Bad parameters are refused at submit time, naming the line.
printf '%s\n' '{"cmd": ["true"]}' '{"plugin": "exec", "params": {"argv": 5}}' >"$T/bad.jsonl"
expect_status "argv not a list" 2 farm submit --batch "$T/bad.jsonl"
expect_contains "argv not a list: message" "bad.jsonl:2:" "$(cat "$T/err")"
expect_contains "argv not a list: what" "\`argv\` (a list)" "$(cat "$T/err")"
printf '%s\n' '{"plugin": "exec", "params": {"argv": ["ok", 3]}}' >"$T/bad.jsonl"
expect_status "argv item not text" 2 farm submit --batch "$T/bad.jsonl"
expect_contains "argv item: message" "bad.jsonl:1:" "$(cat "$T/err")"
printf '%s\n' '{"plugin": "exec", "params": {"argv": [""]}}' >"$T/bad.jsonl"
expect_status "empty program" 2 farm submit --batch "$T/bad.jsonl"
expect_contains "empty program: message" "argv[0], the program, is empty" "$(cat "$T/err")"
printf '%s\n' '{"plugin": "exec", "params": {}}' >"$T/bad.jsonl"
expect_status "no command" 2 farm submit --batch "$T/bad.jsonl"
# The rest of a task given by the CLI or --batch: names fit a table row,
# labels are text to text, priority and timeout within farm.yaml's ranges.
bad_line() { # NAME LINE EXPECTED
    printf '%s\n' "$2" >"$T/bad.jsonl"
    expect_status "$1" 2 farm submit --batch "$T/bad.jsonl"
    expect_contains "$1: message" "bad.jsonl:1: $3" "$(cat "$T/err")"
}
bad_line "empty name" '{"cmd": ["true"], "name": ""}' "tasks[0].name: expected a name"
bad_line "newline in name" '{"cmd": ["true"], "name": "a\nb"}' "tasks[0].name: holds a control character"
bad_line "ESC in name" '{"cmd": ["true"], "name": "\u001b[2J"}' "tasks[0].name: holds a control character"
bad_line "long name" "{\"cmd\": [\"true\"], \"name\": \"$(printf '%0200d' 0)\"}" \
    "tasks[0].name: longer than 127 bytes"
bad_line "label not text" '{"cmd": ["true"], "labels": {"a": 1}}' \
    "tasks[0].labels.a: expected text, got an integer"
bad_line "priority range" '{"cmd": ["true"], "priority": 1000001}' \
    "tasks[0].priority: expected an integer from -1000000 to 1000000"
bad_line "timeout range" '{"cmd": ["true"], "timeout": 2678401}' \
    "tasks[0].timeout: expected whole seconds from 0 to 2678400 (31 days)"
# Labels given on the command line and in a batch line are kept.
lb=$(farm submit --label team=vision -- true)
expect_eq "--label kept" "{'team': 'vision'}" "$(farm show "$lb" --json | jget - 'j["labels"]')"
printf '%s\n' '{"cmd": ["true"], "name": "nm", "labels": {"x": "y"}}' >"$T/lab.jsonl"
lb=$(farm submit --batch "$T/lab.jsonl")
expect_eq "batch labels kept" "{'x': 'y'}" "$(farm show "$lb" --json | jget - 'j["labels"]')"
expect_status "--priority beyond the range" 2 farm submit --priority 9223372036854775807 -- true
expect_status "--timeout beyond the range" 2 farm submit --timeout 99999999999 -- true

# A command that leaves a process behind which ignores SIGTERM and closed
# its output: the task still ends, and that process is killed.
id=$(farm submit -- sh -c '
    sh -c "trap \"\" TERM; exec >/dev/null 2>&1 </dev/null; echo \$\$ >'"$T"'/left.pid; sleep 300" &
    while [ ! -s '"$T"'/left.pid ]; do sleep 0.05; done; echo parent-done')
farm wait "$id" >/dev/null || fail "leftover task: $(reason_of "$id")"
left=$(cat "$T/left.pid")
i=0
while kill -0 "$left" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$left" 2>/dev/null && fail "process $left left by a finished task is still alive"
expect_eq "leftover task state" succeeded "$(state_of "$id")"

# farmd killed while a task had files in its scratch slot: after the
# restart, the interrupted task's new attempt finds the slot empty.
id=$(farm submit -- sh -c '
    if [ -e '"$T"'/once ]; then echo "again: $(ls -A "$FARM_SCRATCH_DIR" | wc -l)"; exit 0; fi
    echo stale >"$FARM_SCRATCH_DIR/stale"; touch '"$T"'/once; sleep 300')
i=0
while [ ! -e "$T/once" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e "$T/once" ] || fail "the scratch task did not start"
kill -KILL "$(farmd_pid)"
sleep 0.2
farm daemon start --jobs 1 >/dev/null
farm wait "$id" >/dev/null || fail "re-run after farmd's death: $(reason_of "$id")"
expect_contains "slot empty after restart" "again: 0" "$(farm logs "$id")"

# An unnamed exec task is named after its command, cut at 127 bytes but
# never inside a character; a batch with such a task goes in whole.
long=$("$PY" -c 'print("é" * 80)')
printf '{"cmd": ["echo", "first"]}\n{"cmd": ["echo", "%s"]}\n' "$long" >"$T/utf8.batch"
farm submit --batch "$T/utf8.batch" >"$T/utf8.ids" || fail "utf-8 batch refused"
expect_eq "utf-8 batch: two ids" 2 "$(wc -l <"$T/utf8.ids")"
farm wait $(cat "$T/utf8.ids") >/dev/null || fail "utf-8 batch did not succeed"
name=$(farm show "$(tail -n 1 "$T/utf8.ids")" --json | jget - 'j["task"]')
"$PY" -c 'import sys; n = sys.argv[1]; b = n.encode(); assert len(b) <= 127 and len(b) >= 120 and n == "echo " + "é" * ((len(b) - 5) // 2), (len(b), n)' "$name" ||
    fail "utf-8 name cut badly: [$name]"

# The supervisor itself killed: the task fails, and says by which signal,
# both while the fork server is collecting exits at each start (a burst of
# starts) and once it is idle again.
# A process is running: it exists and is not a zombie left to a parent that
# does not reap.
running() { [ -e "/proc/$1" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }
farm parallel 4 >/dev/null
i=0
while [ $i -lt 2000 ]; do echo '{"cmd": ["true"]}'; i=$((i + 1)); done >"$T/nop.batch"
for when in burst idle; do
    id=$(farm submit -- sh -c 'echo $$ >'"$T"'/sv.pid; echo up >'"$T"'/sv.up; exec sleep 300')
    i=0
    while [ ! -e "$T/sv.up" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ -e "$T/sv.up" ] || fail "$when: the task did not start"
    rm -f "$T/sv.up"
    if [ "$when" = burst ]; then
        # Other tasks start one after another while the supervisor dies.
        farm submit --batch "$T/nop.batch" >"$T/nop.ids"
    fi
    srv=$(pgrep -f -P "$(farmd_pid)" 'farm-worker --serve' | head -n 1)
    # The command (sh, then sleep in its place) is the supervisor's child.
    sleeper=$(cat "$T/sv.pid")
    sv=$(ps -o ppid= -p "$sleeper" | tr -d ' ')
    expect_eq "$when: the supervisor is the fork server's child" "$srv" \
        "$(ps -o ppid= -p "$sv" | tr -d ' ')"
    kill -KILL "$sv"
    wait_state "$id" failed 5
    expect_eq "$when: reason" "worker killed by signal 9" "$(reason_of "$id")"
    # What the dead supervisor had started goes too.
    i=0
    while running "$sleeper" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    running "$sleeper" && fail "$when: the command of a killed supervisor lives on"
    if [ "$when" = burst ]; then
        farm wait $(cat "$T/nop.ids") >/dev/null || fail "burst: the other tasks did not all succeed"
    fi
done

farm daemon stop >/dev/null

# A command starts with every signal at its default and none blocked, even
# when farmd was started with signals ignored (nohup, a shell's trap ''),
# through the worker and through the exec plugin itself (farm run). (Signals
# 32 and 33 are glibc's own, which its sigaction refuses to touch.)
sigs() {
    "$PY" -c 'import sys
f = dict(l.split(":\t") for l in open(sys.argv[1]).read().splitlines() if l.startswith("Sig"))
print("blocked %x ignored %x" % (int(f["SigBlk"], 16), int(f["SigIgn"], 16) & 0x7fffffff))' "$1"
}
mkdir -p "$T/pbin"
cp "$T/noshebang" "$T/pbin/noshebang-xyz"
(trap '' HUP USR1 PIPE TERM; PATH="$T/pbin:$PATH" farm daemon start --jobs 1 >/dev/null)
# (Through the PATH search too: still no shell.)
id=$(farm submit -- noshebang-xyz)
expect_status "not a program in PATH" 1 farm wait "$id"
expect_contains "not a program in PATH: log" "Exec format error" "$(farm logs "$id")"
id=$(farm submit -- grep -E '^Sig(Ign|Blk)' /proc/self/status)
farm wait "$id" >/dev/null || fail "signal task: $(reason_of "$id")"
farm logs "$id" >"$T/sig.out"
expect_eq "signals of a command" "blocked 0 ignored 0" "$(sigs "$T/sig.out")"
(trap '' HUP USR1 PIPE TERM; farm run exec --param run="grep -E '^Sig(Ign|Blk)' /proc/self/status" \
    >"$T/run.out" 2>/dev/null) || fail "farm run of the signal check failed"
expect_eq "signals of a command of farm run" "blocked 0 ignored 0" "$(sigs "$T/run.out")"
# And the shell's own trap '' did take (the check can fail).
(trap '' HUP USR1 PIPE TERM; grep -E '^Sig(Ign|Blk)' /proc/self/status >"$T/sh.out")
ign=$(sigs "$T/sh.out" | sed 's/.*ignored //')
expect_eq "signals ignored by the shell's trap (HUP USR1 PIPE TERM)" 5201 \
    "$(printf '%x' $((0x$ign & 0x5201)))"

farm daemon stop >/dev/null

# Descriptors open in the shell that started farmd reach no task: farmd
# closes what it inherits.
(exec 7</dev/null 9>"$T/fd9"; farm daemon start --jobs 1 >/dev/null)
id=$(farm submit -- sh -c 'ls /proc/$$/fd')
farm wait "$id" >/dev/null || fail "fd listing failed"
expect_eq "a task's descriptors" "0 1 2" "$(farm logs "$id" | tr '\n' ' ' | sed 's/ $//')"
# PWD is the task's work directory, not farmd's.
mkdir -p "$T/pwd-here"
pw=$(cd "$T/pwd-here" && farm submit -- env)
farm wait "$pw" >/dev/null
expect_eq "PWD" "PWD=$T/pwd-here" "$(farm logs "$pw" | grep '^PWD=')"
# A command's `kill 0` (a test script's cleanup trap) reaches the command's
# own processes only: the worker goes on and records how the command ended,
# rather than taking the signal for a cancel; under `farm run`, the calling
# script lives on.
id=$(farm submit -- bash -c 'trap "kill 0" EXIT; sleep 30 & echo tests passed')
farm wait "$id" >/dev/null 2>&1 || true
expect_eq "kill 0: the command's end, not a cancel" "failed 143" \
    "$(farm show "$id" --json | jget - '"%s %s" % (j["state"], j["exit_code"])')"
expect_contains "kill 0: its output" "tests passed" "$(farm logs "$id")"
expect_eq "kill 0 under farm run: the caller lives on" "alive" \
    "$(setsid sh -c "'$FARM_BIN/farm' run exec --param run='trap \"kill 0\" EXIT; sleep 30 & echo hi' >/dev/null 2>&1; echo alive")"
# farm run on a terminal: farm is its foreground job, and the command stays
# in farm's process group, so that it may use the terminal (a background
# group would be stopped by SIGTTOU here, and farm run would hang).
if command -v script >/dev/null 2>&1; then
    expect_status "farm run of a command that uses the terminal" 0 \
        timeout 20 script -qec "'$FARM_BIN/farm' run exec --param run='stty -echo </dev/tty; stty echo </dev/tty; echo tty-ok'" /dev/null
    expect_contains "it ran to its end" "tty-ok" "$(cat "$T/out")"
fi
farm daemon stop >/dev/null
echo "ok exec"
