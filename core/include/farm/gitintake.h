/*
 * Git intake: reading a submission from a commit, checking a commit out for a
 * task, matching changed paths, and writing results back as notes. All of it
 * goes through libgit2; no git process is started.
 *
 * Every function opens the repository itself and may be called from any
 * process; none keeps state between calls.
 */
#ifndef FARM_GITINTAKE_H
#define FARM_GITINTAKE_H

#include <jansson.h>

#include "farm/error.h"

/* The notes ref farm writes results under. */
#define FARM_GIT_NOTES_REF "refs/notes/farm"

/* Reads what a submission needs from `repo` (a work tree or a bare repo;
 * any path inside one) at `rev` (default HEAD): on success *out is a new
 * object {repo (absolute path of the repository), commit (hex), ref (the
 * given `ref`, else HEAD's branch when rev is HEAD, else null), author,
 * summary, changed: [paths changed against the first parent; every path for
 * a root commit], spec: the text of farm.yaml at the commit}. Errors: not a
 * repository, unknown revision, no farm.yaml in that commit. */
int farm__git_read(const char *repo, const char *rev, const char *ref, json_t **out,
                   struct farm_err *err);

/* Writes the tree of `commit` into `dir` (created if missing) without
 * touching the repository's index or work tree. Submodules and Git LFS
 * pointer files cannot be materialised: each is named in a line written to
 * `log_fd` (when >= 0). */
int farm__git_checkout(const char *repo, const char *commit, const char *dir, int log_fd,
                       struct farm_err *err);

/* 1 when `dir` (a path relative to the top) is a directory in the tree of
 * `commit`, 0 when it is missing or anything else (a file, a symbolic
 * link), <0 on error. */
int farm__git_is_dir(const char *repo, const char *commit, const char *dir, struct farm_err *err);

/* Whether any of `changed` (array of paths) matches one of `patterns` (git
 * pathspec rules, `**` included). An empty pattern list matches. */
int farm__git_paths_match(const json_t *patterns, const json_t *changed);

/* Writes (replacing) the note `text` on `commit` under FARM_GIT_NOTES_REF. */
int farm__git_write_note(const char *repo, const char *commit, const char *text,
                         struct farm_err *err);

#endif
