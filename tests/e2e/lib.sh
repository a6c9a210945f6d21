# Shared set-up for end-to-end tests: a temporary FARM_HOME, the real
# binaries, and a few assertions. Sourced by each test script (POSIX sh).
set -eu
: "${FARM_BIN:?FARM_BIN must name the directory of farm, farmd and farm-worker}"
export NO_COLOR=1
T=$(mktemp -d /tmp/farm-e2e.XXXXXX)
export FARM_HOME="$T/home"
PY=${FARM_PYTHON:-/usr/bin/python3}

farm() { "$FARM_BIN/farm" "$@"; }

farmd_pid() { cat "$FARM_HOME/farmd.pid" 2>/dev/null || true; }

cleanup() {
    status=$?
    pid=$(farmd_pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ $status -ne 0 ] && [ ! -e "$T/failed" ]; then
        echo "FAIL: a command of $0 exited with status $status (see the trace with sh -x)" >&2
    fi
    if [ $status -ne 0 ] && [ -f "$FARM_HOME/farmd.log" ]; then
        echo "--- farmd.log (last 40 lines) ---" >&2
        tail -n 40 "$FARM_HOME/farmd.log" >&2
    fi
    # (A test may have mounted something below $T: see logs.sh.)
    grep -F " $T/" /proc/mounts | while read -r _ mnt _; do umount "$mnt" 2>/dev/null || true; done
    rm -rf "$T"
    exit $status
}
trap cleanup EXIT INT TERM

fail() {
    : >"$T/failed"
    echo "FAIL: $*" >&2
    exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
    case "$3" in
    *"$2"*) ;;
    *) fail "$1: expected to contain [$2], got [$3]" ;;
    esac
}

# expect_status WHAT EXPECTED_CODE CMD...: runs CMD, checks its exit status.
expect_status() {
    _what=$1 _want=$2
    shift 2
    set +e
    "$@" >"$T/out" 2>"$T/err"
    _got=$?
    set -e
    [ "$_got" = "$_want" ] || fail "$_what: exit status $_got, expected $_want (stderr: $(cat "$T/err"))"
}

# jget JSON_FILE_OR_- EXPR: evaluates a Python expression on the parsed JSON `j`.
jget() {
    "$PY" -c "import json,sys; j=json.load(open(sys.argv[1]) if sys.argv[1]!='-' else sys.stdin); print($2)" "$1"
}

state_of() { farm show "$1" --json | jget - 'j["state"]'; }

# wait_state ID STATE [SECONDS]
wait_state() {
    _wi=0 _wl=$(( ${3:-30} * 10 ))
    while [ $_wi -lt $_wl ]; do
        _ws=$(state_of "$1")
        [ "$_ws" = "$2" ] && return 0
        sleep 0.1
        _wi=$((_wi + 1))
    done
    fail "task $1: expected state $2 within ${3:-30}s, is $(state_of "$1")"
}

# Starts farmd in this FARM_HOME with the given options.
start_farmd() {
    farm daemon start "$@" >/dev/null
}
