#!/bin/sh
# make demo: starts farm on a home inside the build tree and runs the example
# model repo end to end, then prints the results.
# Usage: sh examples/demo.sh BUILD_DIR
set -eu
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$(cd "$build" && pwd)/bin"
export FARM_HOME="$(cd "$build" && pwd)/demo-home"
export PATH="$bin:$PATH"

echo "== farm demo: FARM_HOME=$FARM_HOME"
farm daemon stop >/dev/null 2>&1 || true
rm -rf "$FARM_HOME"
farm daemon start >/dev/null
farm daemon status

echo
echo "== plugins"
farm plugins

echo
echo "== submitting examples/model-repo (farm submit --dir)"
ids=$(farm submit --dir "$top/examples/model-repo")
echo "queued tasks:" $ids
set +e
farm wait $ids
status=$?
set -e

echo
echo "== results"
farm list
for id in $ids; do
    arts=$(farm artifacts "$id")
    if [ -n "$arts" ]; then
        echo
        echo "== artifacts of task $id ($(farm show "$id" --json | sed -n 's/.*"task": "\([^"]*\)".*/\1/p' | head -n 1))"
        echo "$arts"
    fi
done
echo
echo "farmd keeps running on $FARM_HOME; stop it with:"
echo "  FARM_HOME=$FARM_HOME $bin/farm daemon stop"
exit $status
