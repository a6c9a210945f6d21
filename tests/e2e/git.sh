# Git intake: hooks, the committed content, bare repos and pushes, paths,
# coalescing, notes, the pre-push gate, an unreachable farm, hook files kept
# byte for byte, and submit --git errors.
. "$(dirname "$0")/lib.sh"
start_farmd --grace 1
export GIT_AUTHOR_NAME=T GIT_AUTHOR_EMAIL=t@example.org GIT_COMMITTER_NAME=T GIT_COMMITTER_EMAIL=t@example.org
ids_of_commit() { farm list --commit "$1" --json | jget - "' '.join(str(t['id']) for t in j)"; }

# A work tree with a hook.
r="$T/repo"
git init -q -b main "$r"
cd "$r"
cat >farm.yaml <<'Y'
tasks:
  - name: show
    run: cat version.txt
  - name: models
    paths: [models/**]
    run: ls models
Y
echo v1 >version.txt
mkdir models && echo a >models/a.yaml
git add -A && git commit -qm first
printf '#!/bin/sh\n# the team'"'"'s own hook\necho own-hook-ran >> "%s/own"\n' "$T" >.git/hooks/post-commit
chmod +x .git/hooks/post-commit
cp .git/hooks/post-commit "$T/own-hook.orig"
farm hook install >/dev/null
farm hook install >/dev/null   # idempotent
expect_eq "one farm block" 1 "$(grep -c '>>> farm hook' .git/hooks/post-commit)"
# The home is written into the hook as a word that the shell never expands:
# a $( ) or a quote in it runs nothing.
odd="$T/h\$(touch $T/pwned)'q"
FARM_HOME="$odd" "$FARM_BIN/farm" hook install >/dev/null
expect_eq "an odd home, as the hook sees it" "$odd" \
    "$(env -u FARM_HOME sh -c 'eval "$(grep "FARM_HOME=" "$1")"; printf %s "$FARM_HOME"' _ .git/hooks/post-commit)"
[ ! -e "$T/pwned" ] || fail "the hook ran a command from the home's name"
farm hook install >/dev/null
expect_eq "a reinstall writes the home again" 1 "$(grep -c "FARM_HOME='$FARM_HOME'" .git/hooks/post-commit)"

# A commit queues its tasks within 1 s; the task sees the committed content.
echo v2 >version.txt
git commit -qam second
echo dirty >version.txt   # an edit right after committing
c2=$(git rev-parse HEAD)
i=0
while [ -z "$(ids_of_commit "$c2")" ] && [ $i -lt 10 ]; do sleep 0.1; i=$((i + 1)); done
ids=$(ids_of_commit "$c2")
[ -n "$ids" ] || fail "no tasks queued within 1 s of the commit"
grep -q own-hook-ran "$T/own" || fail "the existing hook did not run"
farm wait $ids >/dev/null || true
show=$(echo "$ids" | cut -d' ' -f1)
expect_eq "committed content" v2 "$(farm logs "$show")"
farm show "$show" --json >"$T/s.json"
expect_eq "git commit field" "$c2" "$(jget "$T/s.json" 'j["git"]["commit"]')"
expect_eq "git ref field" refs/heads/main "$(jget "$T/s.json" 'j["git"]["ref"]')"
# paths: models/ did not change in the second commit: skipped, saying why.
models=$(echo "$ids" | cut -d' ' -f2)
expect_eq "paths skip" skipped "$(state_of "$models")"
expect_contains "skip reason" "paths: no path changed" "$(farm show "$models" --json | jget - 'j["reason"]')"
git checkout -q version.txt
echo b >models/b.yaml && git add -A && git commit -qm third
c3=$(git rev-parse HEAD)
farm wait $(ids_of_commit "$c3") >/dev/null
expect_eq "paths run" succeeded "$(state_of "$(ids_of_commit "$c3" | cut -d' ' -f2)")"

# Notes carry every task's result.
notes=$(git log --notes=farm -1 --format=%N "$c2")
expect_contains "note: show" "show: succeeded" "$notes"
expect_contains "note: models" "models: skipped" "$notes"

# The hook adds little to git commit (median of 7, hook vs no hook).
"$PY" - "$r" <<'P' || fail "hook too slow"
import os, statistics, subprocess, sys, time
os.chdir(sys.argv[1])
def t(n):
    out = []
    for i in range(n):
        open("stamp", "w").write(str(time.time()))
        subprocess.run(["git", "add", "stamp"], check=True)
        t0 = time.perf_counter()
        subprocess.run(["git", "commit", "-qm", f"s{i}"], check=True)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)
with_hook = t(7)
os.rename(".git/hooks/post-commit", ".git/hooks/off")
without = t(7)
os.rename(".git/hooks/off", ".git/hooks/post-commit")
extra = (with_hook - without) * 1000
print(f"hook adds {extra:.1f} ms to git commit (median of 7)")
sys.exit(0 if extra < 50 else 1)
P

# Uninstall leaves the team's hook byte for byte.
farm hook uninstall >/dev/null
cmp -s .git/hooks/post-commit "$T/own-hook.orig" || fail "existing hook changed by install/uninstall"
farm hook install --gate pre-push >/dev/null
farm hook uninstall >/dev/null
cmp -s .git/hooks/post-commit "$T/own-hook.orig" || fail "existing hook changed (second round)"
[ ! -e .git/hooks/pre-push ] || fail "pre-push left behind"

# Coalescing: 5 quick commits while paused; only the newest runs.
farm hook install >/dev/null
farm pause >/dev/null
for k in 1 2 3 4 5; do echo "c$k" >version.txt; git commit -qam "c$k"; done
newest=$(git rev-parse HEAD)
old=$(git rev-parse HEAD~1)
farm resume >/dev/null
farm wait $(ids_of_commit "$newest") >/dev/null || true
oldshow=$(ids_of_commit "$old" | cut -d' ' -f1)
expect_eq "older commit cancelled" cancelled "$(state_of "$oldshow")"
expect_contains "coalesce reason" "superseded by commit ${newest%"${newest#????????????}"}" "$(farm show "$oldshow" --json | jget - 'j["reason"]')"
expect_eq "newest ran" c5 "$(farm logs "$(ids_of_commit "$newest" | cut -d' ' -f1)")"

# The pre-push gate: refuses a push whose tasks fail, accepts one that passes.
git init -q --bare "$T/remote.git"
git remote add origin "$T/remote.git"
# The repo's own pre-push (git lfs, say) reads the refs too.
printf '#!/bin/sh\ncat >>"%s/own-push-refs"\n' "$T" >.git/hooks/pre-push
chmod +x .git/hooks/pre-push
farm hook install --gate pre-push >/dev/null
git push -q origin main 2>"$T/push.err" || fail "push of passing commit refused: $(cat "$T/push.err")"
expect_contains "the pre-push hook's own code read the ref" "refs/heads/main" "$(cat "$T/own-push-refs")"
printf 'tasks:\n  - name: show\n    run: "false"\n' >farm.yaml
git commit -qam failing
farm wait $(ids_of_commit "$(git rev-parse HEAD)") >/dev/null || true
if git push -q origin main 2>"$T/push.err"; then fail "push of failing commit accepted"; fi
expect_contains "gate names the task" "show: failed" "$(cat "$T/push.err")"
expect_contains "gate hints logs" "farm logs" "$(cat "$T/push.err")"
# A commit without farm.yaml has nothing to fail: the gate lets it pass.
git checkout -q --orphan docs-only
git rm -rq --cached . >/dev/null
echo notes >notes.txt
git add notes.txt
git commit -qm "no farm.yaml here"
git push -q origin docs-only 2>"$T/push.err" || fail "push of a commit without farm.yaml refused: $(cat "$T/push.err")"
expect_contains "the gate says why it passes" "nothing to check before the push" "$(cat "$T/push.err")"
git checkout -q -f main
rm -f notes.txt
farm hook uninstall >/dev/null

# A bare repo: a push of two refs submits for both; deleting a ref submits
# nothing.
b="$T/bare.git"
git init -q --bare "$b"
# The repo's own post-receive reads the refs too: farm's block, first in the
# file, hands them on.
printf '#!/bin/sh\ncat >>"%s/own-refs"\n' "$T" >"$b/hooks/post-receive"
chmod +x "$b/hooks/post-receive"
farm hook install --repo "$b" >/dev/null
[ -x "$b/hooks/post-receive" ] || fail "no post-receive hook"
printf 'tasks:\n  - name: show\n    run: cat version.txt\n' >farm.yaml
git commit -qam ok
git branch -q feature
git push -q "$b" main feature 2>/dev/null
before=$(farm list --limit 0 --json | jget - 'len(j)')
main_c=$(git rev-parse main)
ids=$(ids_of_commit "$main_c")
expect_eq "two refs, two submissions" 2 "$(echo $ids | wc -w | tr -d ' ')"
expect_eq "the hook's own code read both refs" 2 "$(wc -l <"$T/own-refs" | tr -d ' ')"
farm wait $ids >/dev/null
git push -q "$b" :feature 2>/dev/null
sleep 0.3
expect_eq "deleting a ref submits nothing" "$before" "$(farm list --limit 0 --json | jget - 'len(j)')"

# Unreachable farm: the commit succeeds with one warning line.
farm hook uninstall >/dev/null
FARM_HOME=/dev/null/nope farm hook install >/dev/null
echo x >>version.txt
FARM_HOME=/dev/null/nope git commit -qam unreachable 2>"$T/warn" || fail "commit failed with farm unreachable"
expect_eq "one warning line" 1 "$(wc -l <"$T/warn" | tr -d ' ')"
expect_contains "warning text" "farm: warning" "$(cat "$T/warn")"
farm hook uninstall >/dev/null

# submit --git errors: exit 2, nothing queued.
n0=$(farm list --limit 0 --json | jget - 'len(j)')
expect_status "not a repo" 2 farm submit --git "$T/nope"
expect_contains "not a repo message" "not a git repository" "$(cat "$T/err")"
expect_status "unknown rev" 2 farm submit --git "$r" --rev nosuchrev
expect_contains "unknown rev message" "unknown revision" "$(cat "$T/err")"
git rm -q farm.yaml && git commit -qm nospec
expect_status "no farm.yaml" 2 farm submit --git "$r"
expect_contains "no farm.yaml message" "no farm.yaml in commit" "$(cat "$T/err")"
printf 'tasks:\n  - name: a\n    run: "true"\n' >real.yaml
ln -s real.yaml farm.yaml
git add real.yaml farm.yaml && git commit -qm "farm.yaml as a link"
expect_status "farm.yaml a symbolic link" 2 farm submit --git "$r"
expect_contains "farm.yaml a symbolic link: message" "farm.yaml is a symbolic link in commit" "$(cat "$T/err")"
git rm -q farm.yaml real.yaml && git commit -qm "no link"
# A deps directory the commit holds as a symbolic link is refused at submit,
# not when the task runs.
mkdir -p "$T/realdeps" && echo dep >"$T/realdeps/f"
ln -s "$T/realdeps" depslink
printf 'deps:\n  dir: depslink\n  build: "true"\ntasks:\n  - name: a\n    run: "true"\n' >farm.yaml
git add farm.yaml depslink && git commit -qm "deps as a link"
expect_status "deps.dir a symbolic link" 2 farm submit --git "$r"
expect_contains "deps.dir a symbolic link: message" \
    "deps.dir \"depslink\" is not a directory in commit" "$(cat "$T/err")"
git rm -q farm.yaml depslink && git commit -qm "no deps link"
printf 'tasks:\n  - name: a\n    timeout: soon\n    run: "true"\n' >farm.yaml
git add farm.yaml && git commit -qm badspec
short=$(git rev-parse --short=7 HEAD)
expect_status "bad farm.yaml" 2 farm submit --git "$r"
expect_contains "bad spec names commit:file:line:col" "$short:farm.yaml:3:14:" "$(cat "$T/err")"
printf 'tasks:\n  - name: a\n    run: "true"\n' >farm.yaml
git commit -qam goodspec
expect_status "unknown task" 2 farm submit --git "$r" --task nope
expect_contains "unknown task message" 'no task named "nope"' "$(cat "$T/err")"
expect_eq "nothing queued by errors" "$n0" "$(farm list --limit 0 --json | jget - 'len(j)')"
# Two commits with the same deps/ tree: the second hits the cache, keyed on
# the tree OID, without reading a file of deps/.
d="$T/deprepo"
git init -q -b main "$d"
cd "$d"
mkdir deps
printf 'mkdir -p "$FARM_DEPS_OUT"; echo built >> "%s/depbuilds"; echo pkg > "$FARM_DEPS_OUT/pkg"\n' "$T" >deps/build.sh
printf 'deps:\n  dir: deps\n  build: sh deps/build.sh\ntasks:\n  - name: use\n    run: cat $FARM_DEPS_DIR/pkg\n' >farm.yaml
echo one >readme
git add -A && git commit -qm d1
i1=$(farm submit --git .)
farm wait "$i1" >/dev/null
echo two >readme
git commit -qam d2
i2=$(farm submit --git .)
farm wait "$i2" >/dev/null
farm show "$i2" --json >"$T/d2.json"
expect_eq "second commit hits" True "$(jget "$T/d2.json" 'j["deps"]["hit"]')"
expect_eq "keyed on the tree OID" "git:$(git rev-parse HEAD:deps)" "$(jget "$T/d2.json" 'j["deps"]["source"]')"
expect_eq "no file of deps/ read" 0 "$(jget "$T/d2.json" 'j["deps"]["files_read"]')"
expect_eq "built once" 1 "$(wc -l <"$T/depbuilds" | tr -d ' ')"
expect_eq "package used" pkg "$(farm logs "$i2" | tail -n 1)"
# The first git submission a farmd sees, all of whose tasks end at submit
# (skipped by paths:), still gets its note.
farm daemon stop >/dev/null
export FARM_HOME="$T/home2"
farm daemon start >/dev/null
d3="$T/skiprepo"
git init -q -b main "$d3"
cd "$d3"
printf 'tasks:\n  - name: models\n    run: echo hi\n    paths: [models/**]\n' >farm.yaml
git add farm.yaml && git commit -qm s1
echo x >other && git add other && git commit -qm s2
sid=$(farm submit --git .)
expect_eq "all skipped at submit" skipped "$(state_of "$sid")"
expect_contains "note of an all-skipped first submission" "models: skipped" \
    "$(git log --notes=farm -1 --format=%N HEAD)"
# A build that changes its own source directory stores nothing, for a
# commit as for a directory (the key is the commit's tree, but the build
# reads the checkout).
m="$T/mutate-repo"
git init -q -b main "$m"
cd "$m"
mkdir deps && echo v1 >deps/req.txt
printf 'deps: {dir: deps, build: "echo junk >> deps/req.txt; cp deps/req.txt $FARM_DEPS_OUT/"}\ntasks:\n  - name: t\n    run: "true"\n' >farm.yaml
git add -A && git commit -qm mutate
mt=$(farm submit --git .)
expect_status "a build that changes its source, from a commit" 1 farm wait "$mt"
expect_contains "the reason" "changed its source directory" "$(farm show "$mt" --json | jget - 'j["reason"]')"
expect_eq "nothing stored" 0 "$(farm cache ls --json | jget - 'len([e for e in j if e.get("builder") == "'"$mt"'"])')"

# deps.dir written "./deps/" names the same directory as "deps".
printf 'deps: {dir: ./deps/, build: "cp deps/req.txt $FARM_DEPS_OUT/"}\ntasks:\n  - name: t\n    run: "cat $FARM_DEPS_DIR/req.txt"\n' >farm.yaml
git add -A && git commit -qm "dot dir"
dd=$(farm submit --git .)
expect_status "deps.dir ./deps/ from a commit" 0 farm wait "$dd"
expect_eq "its package" v1 "$(farm logs "$dd" | tail -1)"

# Hooks farm cannot or must not add its lines to, and where git looks for
# hooks.
h="$T/hooks-repo"
git init -q -b main "$h"
cd "$h"
printf 'tasks:\n  - name: t\n    run: "true"\n' >farm.yaml
git add -A && git commit -qm first
# A hook in another language is refused, and left alone.
printf '#!/usr/bin/env python3\nprint("pre-push ok")\n' >.git/hooks/post-commit
chmod +x .git/hooks/post-commit
cp .git/hooks/post-commit "$T/py-hook"
expect_status "a python hook" 2 farm hook install
expect_contains "it says why" "is not a shell script (#!/usr/bin/env python3)" "$(cat "$T/err")"
cmp -s .git/hooks/post-commit "$T/py-hook" || fail "the python hook was changed"
# A shell hook that ends with `exit 0`: farm's lines go after the "#!" line,
# so that they run; uninstall gives the file back byte for byte (no newline
# at its end either).
printf '#!/bin/sh\necho own >>"%s/own2"\nexit 0' "$T" >.git/hooks/post-commit
cp .git/hooks/post-commit "$T/exit-hook"
farm hook install >/dev/null
git commit -q --allow-empty -m second
i=0
until [ -n "$(ids_of_commit "$(git rev-parse HEAD)")" ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -n "$(ids_of_commit "$(git rev-parse HEAD)")" ] || fail "farm's lines did not run in a hook that ends with exit 0"
grep -q own "$T/own2" || fail "the hook's own lines did not run"
farm hook uninstall >/dev/null
cmp -s .git/hooks/post-commit "$T/exit-hook" || fail "uninstall changed the hook: $(od -c .git/hooks/post-commit | tail -3)"
# A hook that is a symbolic link is not written through.
mkdir -p tools && printf '#!/bin/sh\necho tool\n' >tools/post-commit && chmod +x tools/post-commit
rm .git/hooks/post-commit && ln -s ../../tools/post-commit .git/hooks/post-commit
expect_status "a symlinked hook" 2 farm hook install
expect_contains "it says why" "is a symbolic link" "$(cat "$T/err")"
[ -L .git/hooks/post-commit ] || fail "the link was replaced"
expect_eq "its target untouched" 0 "$(grep -c 'farm hook' tools/post-commit)"
rm .git/hooks/post-commit
# core.hooksPath (husky-style set-ups): the hook goes where git runs it from.
git config core.hooksPath .githooks
farm hook install >/dev/null
[ -x .githooks/post-commit ] || fail "no hook in core.hooksPath"
[ ! -e .git/hooks/post-commit ] || fail "the hook went to .git/hooks, which git does not run"
git commit -q --allow-empty -m third
i=0
until [ -n "$(ids_of_commit "$(git rev-parse HEAD)")" ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -n "$(ids_of_commit "$(git rev-parse HEAD)")" ] || fail "the hook in core.hooksPath did not submit"
farm hook uninstall >/dev/null
echo "git: ok"
