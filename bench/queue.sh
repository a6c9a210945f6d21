#!/bin/sh
# Queue benchmark: farm beside task-spooler (tsp), nq and a bare shell loop,
# in one invocation. Usage: sh bench/queue.sh [BUILD_DIR] [REPEATS]
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
sh "$here/../scripts/deps.sh" --bench
exec /usr/bin/python3 "$here/queue.py" "$(cd "$build" && pwd)/bin" "${2:-5}"
