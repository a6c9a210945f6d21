# farm submit --dir: the tasks of farm.yaml run on a snapshot taken at submit
# time; spec errors name file:line:column and queue nothing.
. "$(dirname "$0")/lib.sh"
start_farmd
repo="$T/repo"
mkdir -p "$repo"
cat >"$repo/farm.yaml" <<'Y'
tasks:
  - name: first
    run: cat version.txt
  - name: second
    needs: [first]
    run: echo second-ran
  - name: lonely
    run: "true"
Y
echo v1 >"$repo/version.txt"
ids=$(farm submit --dir "$repo" --task second)
expect_eq "--task second brings what it needs" 2 "$(echo "$ids" | wc -l | tr -d ' ')"
# Edit after submitting: the queued task must still see the snapshot.
echo v2 >"$repo/version.txt"
farm wait $ids >/dev/null
first=$(echo "$ids" | head -n 1)
expect_eq "snapshot content" v1 "$(farm logs "$first")"
expect_eq "task name" first "$(farm show "$first" --json | jget - 'j["task"]')"

bad() { # NAME EXPECTED-POSITION-AND-TEXT: writes farm.yaml from stdin, submits
    cat >"$repo/farm.yaml"
    expect_status "$1" 2 farm submit --dir "$repo"
    expect_contains "$1" "$2" "$(cat "$T/err")"
}
bad "exec task without a command" "$repo/farm.yaml:2:5: tasks[0].params: plugin exec: give \`run\` (a shell command) or \`argv\` (a list)" <<'Y'
tasks:
  - name: a
    plugin: exec
Y
bad "wrong type" "$repo/farm.yaml:3:14: tasks[0].timeout: expected a number of seconds, got \"ten\"" <<'Y'
tasks:
  - name: a
    timeout: ten
    run: "true"
Y
bad "unknown key" "$repo/farm.yaml:3:13: tasks[0]: unknown key \"colour\"" <<'Y'
tasks:
  - name: a
    colour: red
    run: "true"
Y
bad "missing plugin" "$repo/farm.yaml:2:5: tasks[0]: missing plugin" <<'Y'
tasks:
  - name: a
    timeout: 5
Y
bad "unknown plugin" "$repo/farm.yaml:3:13: tasks[0].plugin: no plugin named \"warp\"" <<'Y'
tasks:
  - name: a
    plugin: warp
Y
bad "bad params" "$repo/farm.yaml:4:13: tasks[0].params: plugin exec: param argv2: unknown parameter" <<'Y'
tasks:
  - name: a
    plugin: exec
    params: {argv2: [x]}
Y
bad "cycle in needs" "farm.yaml:6:12: tasks[1].needs: cycle: b needs a" <<'Y'
tasks:
  - name: a
    needs: [b]
    run: "true"
  - name: b
    needs: [a]
    run: "true"
Y
bad "unknown need" "$repo/farm.yaml:3:13: tasks[0].needs: no task named \"zz\"" <<'Y'
tasks:
  - name: a
    needs: [zz]
    run: "true"
Y
bad "syntax" "$repo/farm.yaml:3:" <<'Y'
tasks:
  - name: a
  run: [unclosed
Y
bad "duplicate name" "duplicate task name" <<'Y'
tasks:
  - {name: a, run: "true"}
  - {name: a, run: "true"}
Y
# Numbers farm cannot take: infinity, NaN, beyond a double, beyond int64,
# beyond the 31-day bound, negative; each named by file:line:column.
for v in .inf -.inf .nan 1e400; do
    bad "timeout $v" "$repo/farm.yaml:3:14: tasks[0].timeout: expected a number of seconds, got \"$v\"" <<Y
tasks:
  - name: a
    timeout: $v
    run: "true"
Y
done
for v in 9223372036854775807 2678401 -1 -0.5; do
    bad "timeout $v" "$repo/farm.yaml:3:14: tasks[0].timeout: expected a number of seconds from 0 to 2678400 (31 days), got $v" <<Y
tasks:
  - name: a
    timeout: $v
    run: "true"
Y
done
bad "timeout 99999999999999999999" "$repo/farm.yaml:3:14: tasks[0].timeout: expected a number of seconds from 0 to 2678400 (31 days), got 1e+20" <<'Y'
tasks:
  - name: a
    timeout: 99999999999999999999
    run: "true"
Y
bad "retries .inf" "$repo/farm.yaml:3:14: tasks[0].retries: expected an integer from 0 to 100, got \".inf\"" <<'Y'
tasks:
  - name: a
    retries: .inf
    run: "true"
Y
bad "retries 1.5" "$repo/farm.yaml:3:14: tasks[0].retries: expected an integer from 0 to 100, got 1.5" <<'Y'
tasks:
  - name: a
    retries: 1.5
    run: "true"
Y
bad "priority .nan" "$repo/farm.yaml:3:15: tasks[0].priority: expected an integer from -1000000 to 1000000, got \".nan\"" <<'Y'
tasks:
  - name: a
    priority: .nan
    run: "true"
Y
bad "priority huge" "$repo/farm.yaml:3:15: tasks[0].priority: expected an integer from -1000000 to 1000000, got 9223372036854775807" <<'Y'
tasks:
  - name: a
    priority: 9223372036854775807
    run: "true"
Y
expect_status "no farm.yaml" 2 farm submit --dir "$T"
expect_status "unknown --task" 2 farm submit --dir "$FARM_SOURCE_DIR/examples/model-repo" --task nope
# Nothing was queued by any of the bad submissions, and no snapshot leaked.
expect_eq "only the good tasks exist" 2 "$(farm list --json | jget - 'len(j)')"

expect_eq "no incoming snapshot left" "" "$(ls "$FARM_HOME/snapshots" | grep incoming || true)"

# A snapshot directory that belongs to no submission (one that was rolled
# back, or a farmd that died before its commit) does not stand in the way of
# the next submissions, which get its id.
last=$(farm list --json | jget - 'max(t["submission"] for t in j if t["submission"] is not None)')
for k in 1 2; do
    mkdir -p "$FARM_HOME/snapshots/$((last + k))"
    echo stale >"$FARM_HOME/snapshots/$((last + k))/stale"
done
mkdir -p "$T/lrepo"
printf 'tasks:\n  - name: t\n    run: cat data.txt\n' >"$T/lrepo/farm.yaml"
echo fresh >"$T/lrepo/data.txt"
for k in 1 2; do
    ids=$(farm submit --dir "$T/lrepo") || fail "submit over a leftover snapshot $k"
    farm wait $ids >/dev/null || fail "task over a leftover snapshot $k"
    expect_eq "task over a leftover snapshot $k" fresh "$(farm logs "$ids")"
    [ ! -e "$FARM_HOME/snapshots/$((last + k))/stale" ] || fail "leftover snapshot $k kept"
done

# Command-line options override farm.yaml's values.
cat >"$repo/farm.yaml" <<'Y'
tasks:
  - name: a
    priority: 1
    run: "true"
Y
o=$(farm submit --dir "$repo" --priority 9 --retries 2 --label team=ml)
farm show "$o" --json >"$T/o.json"
expect_eq "--priority overrides" 9 "$(jget "$T/o.json" 'j["priority"]')"
expect_eq "--retries overrides" 2 "$(jget "$T/o.json" 'j["retries"]')"
expect_eq "--label adds" ml "$(jget "$T/o.json" 'j["labels"]["team"]')"
farm wait "$o" >/dev/null

# A fractional timeout is rounded up to whole seconds: never down to 0 (none).
cat >"$repo/farm.yaml" <<'Y'
tasks:
  - {name: tiny, timeout: 0.0001, run: "true"}
  - {name: over, timeout: 1.0001, run: "true"}
  - {name: most, timeout: 2678400, run: "true"}
Y
ids=$(farm submit --dir "$repo")
tid() { echo "$ids" | sed -n "$1p"; }
expect_eq "timeout 0.0001 becomes 1" 1 "$(farm show "$(tid 1)" --json | jget - 'j["timeout"]')"
expect_eq "timeout 1.0001 becomes 2" 2 "$(farm show "$(tid 2)" --json | jget - 'j["timeout"]')"
expect_eq "timeout 31 days kept" 2678400 "$(farm show "$(tid 3)" --json | jget - 'j["timeout"]')"
farm wait $ids >/dev/null

bad "deps.env: not a variable name" "$repo/farm.yaml:1:41: deps.env: expected names of environment variables" <<'Y'
deps: {dir: ., build: "true", env: [CC, "A=B"]}
tasks:
  - {name: a, run: "true"}
Y
bad "deps.env: a name twice" "$repo/farm.yaml:1:41: deps.env: \"CC\" is named twice" <<'Y'
deps: {dir: ., build: "true", env: [CC, CC]}
tasks:
  - {name: a, run: "true"}
Y
# A NUL in a text (valid YAML: "\0") is refused where it stands; farmd used
# to store it and then crash at every start of the task.
bad "a NUL in a text" "$repo/farm.yaml:4:12: a NUL character (\\0) is not allowed in text" <<'Y'
tasks:
  - name: a
    params:
      run: "echo a\0b"
Y
# The whole file is read: what follows the first document is an error.
bad "a syntax error after the first document" "$repo/farm.yaml:4:1: did not find expected <document start>" <<'Y'
tasks:
  - {name: a, run: "true"}
...
garbage: [
Y
bad "a second document" "$repo/farm.yaml:3:1: a second YAML document" <<'Y'
tasks:
  - {name: a, run: "true"}
---
tasks: []
Y
expect_eq "nothing queued by them" 0 "$(farm list --limit 0 --json | jget - 'len([t for t in j if t["state"] in ("queued", "running")])')"

# The example repo runs end to end.
ids=$(farm submit --dir "$FARM_SOURCE_DIR/examples/model-repo" --task lint --task unit --task data-check)
expect_status "example repo tasks" 0 farm wait $ids
echo "spec: ok"
