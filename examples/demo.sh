#!/bin/sh
# make demo: starts farm on a home inside the build tree, turns the example
# model repo into a git repository with farm's hook, commits twice and shows
# what farm did: the tasks, their results, the cache, the notes.
# Usage: sh examples/demo.sh BUILD_DIR
set -eu
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=$(cd "$build" && pwd)
bin="$bdir/bin"
export FARM_HOME="$bdir/demo-home"
export PATH="$bin:$PATH"
export NO_COLOR=${NO_COLOR:-}
repo="$bdir/demo-repo"
export GIT_AUTHOR_NAME="farm demo" GIT_AUTHOR_EMAIL=demo@example.org
export GIT_COMMITTER_NAME="farm demo" GIT_COMMITTER_EMAIL=demo@example.org

step() { printf '\n== %s\n' "$*"; }

step "farm on FARM_HOME=$FARM_HOME"
farm daemon stop >/dev/null 2>&1 || true
rm -rf "$FARM_HOME" "$repo"
farm daemon start
farm plugins

step "a git repository from examples/model-repo, with farm's hook"
mkdir -p "$repo"
cp -R "$top/examples/model-repo/." "$repo/"
cd "$repo"
git init -q -b main
git add -A
farm hook install
git commit -qm "model repo: first commit"
first=$(git rev-parse HEAD)
echo "commit 1: $(git log --oneline -1)"
ids=$(farm list --commit "$first" --json | sed -n 's/^    "id": \([0-9]*\),$/\1/p')
farm wait $ids || true

step "a second commit that leaves deps/ alone"
echo "# tuned" >>scripts/unit.sh
git commit -qam "unit: a comment"
second=$(git rev-parse HEAD)
echo "commit 2: $(git log --oneline -1)"
ids2=$(farm list --commit "$second" --json | sed -n 's/^    "id": \([0-9]*\),$/\1/p')
farm wait $ids2 || true   # tasks whose paths did not change are skipped

step "results"
farm list
for id in $ids $ids2; do
    arts=$(farm artifacts "$id")
    if [ -n "$arts" ]; then
        printf '\nartifacts of task %s:\n%s\n' "$id" "$arts"
    fi
done

echo
echo "charts: open the .svg artifacts above in a browser (timeline.svg is the pipeline's"
echo "schedule per stage and micro-batch, loss.svg its loss curve, gantt.svg the chosen"
echo "operator schedule, rounds.svg the federation, skips.svg the RNN's early exits)"

step "the dependency cache: the first commit built deps/ once, the second reused it"
farm cache stats
last=$(echo $ids2 | awk '{print $1}')
farm cache why "$last"

step "git log --notes=farm"
git log --notes=farm --format='%h %s%n%N'

echo
echo "farmd keeps running on $FARM_HOME; stop it with:"
echo "  FARM_HOME=$FARM_HOME $bin/farm daemon stop"
# The demo fails when a task failed or timed out (skipped ones are fine).
bad=$(farm list --state failed; farm list --state timed_out)
if echo "$bad" | grep -q '^[0-9]'; then
    echo "demo: some tasks did not succeed:" >&2
    echo "$bad" >&2
    exit 1
fi
