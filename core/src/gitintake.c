#define _GNU_SOURCE
#include "farm/gitintake.h"

#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/util.h"

static void init_once(void)
{
    static int done;
    if (!done) {
        git_libgit2_init();
        done = 1;
    }
}

/* Translates libgit2's last error where it enters farm. */
static int gerr(struct farm_err *err, const char *what)
{
    const git_error *e = git_error_last();
    return farm_err_set(err, FARM_EGIT, "%s: %s", what, e && e->message ? e->message : "git error");
}

static int open_repo(const char *path, git_repository **repo, struct farm_err *err)
{
    init_once();
    if (git_repository_open_ext(repo, path, 0, NULL) < 0)
        return farm_err_set(err, FARM_EGIT, "%s: not a git repository", path);
    return 0;
}

static int lookup_commit(git_repository *repo, const char *rev, git_commit **out,
                         struct farm_err *err)
{
    git_object *obj = NULL, *peeled = NULL;
    if (git_revparse_single(&obj, repo, rev) < 0)
        return farm_err_set(err, FARM_EGIT, "unknown revision \"%s\"", rev);
    if (git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) < 0) {
        git_object_free(obj);
        return farm_err_set(err, FARM_EGIT, "\"%s\" does not name a commit", rev);
    }
    git_object_free(obj);
    *out = (git_commit *)peeled;
    return 0;
}

static int add_delta(const git_diff_delta *d, float progress, void *payload)
{
    json_t *changed = payload;
    (void)progress;
    if (d->new_file.path)
        json_array_append_new(changed, json_string(d->new_file.path));
    if (d->old_file.path && (!d->new_file.path || strcmp(d->old_file.path, d->new_file.path)))
        json_array_append_new(changed, json_string(d->old_file.path));
    return 0;
}

int farm__git_read(const char *path, const char *rev, const char *ref, json_t **out,
                   struct farm_err *err)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL, *parent = NULL;
    git_tree *tree = NULL, *ptree = NULL;
    git_tree_entry *entry = NULL;
    git_blob *blob = NULL;
    git_diff *diff = NULL;
    json_t *o = NULL, *changed;
    char hex[GIT_OID_HEXSZ + 1];
    const char *root;
    int rc;

    if ((rc = open_repo(path, &repo, err)) < 0)
        return rc;
    if ((rc = lookup_commit(repo, rev ? rev : "HEAD", &commit, err)) < 0)
        goto done;
    git_oid_tostr(hex, sizeof hex, git_commit_id(commit));
    if ((rc = git_commit_tree(&tree, commit)) < 0) {
        rc = gerr(err, "reading the commit's tree");
        goto done;
    }
    if (git_tree_entry_bypath(&entry, tree, "farm.yaml") < 0 ||
        git_tree_entry_type(entry) != GIT_OBJECT_BLOB) {
        /* (FARM_ENOTFOUND: the pre-push gate lets such a commit pass.) */
        rc = farm_err_set(err, FARM_ENOTFOUND, "%.7s:farm.yaml: no farm.yaml in commit %s", hex,
                          hex);
        goto done;
    }
    if (git_tree_entry_filemode(entry) == GIT_FILEMODE_LINK) {
        /* Its blob is the link's target text, not a spec. */
        rc = farm_err_set(err, FARM_EBADSPEC,
                          "%.7s:farm.yaml: farm.yaml is a symbolic link in commit %s; farm reads "
                          "the spec from the commit itself, so commit the file, not a link",
                          hex, hex);
        goto done;
    }
    if (git_blob_lookup(&blob, repo, git_tree_entry_id(entry)) < 0) {
        rc = gerr(err, "reading farm.yaml");
        goto done;
    }
    changed = json_array();
    if (git_commit_parentcount(commit) > 0 && git_commit_parent(&parent, commit, 0) == 0 &&
        git_commit_tree(&ptree, parent) == 0) {
        rc = git_diff_tree_to_tree(&diff, repo, ptree, tree, NULL);
    } else {
        rc = git_diff_tree_to_tree(&diff, repo, NULL, tree, NULL);
    }
    if (rc < 0) {
        json_decref(changed);
        rc = gerr(err, "comparing with the parent commit");
        goto done;
    }
    git_diff_foreach(diff, add_delta, NULL, NULL, NULL, changed);
    root = git_repository_is_bare(repo) ? git_repository_path(repo) : git_repository_workdir(repo);
    o = json_object();
    {
        char abs[PATH_MAX], *copy = strdup(root);
        size_t n = strlen(copy);
        while (n > 1 && copy[n - 1] == '/')
            copy[--n] = '\0';
        json_object_set_new(o, "repo", json_string(realpath(copy, abs) ? abs : copy));
        free(copy);
    }
    json_object_set_new(o, "commit", json_string(hex));
    if (ref) {
        json_object_set_new(o, "ref", json_string(ref));
    } else if (!rev || !strcmp(rev, "HEAD")) {
        git_reference *head = NULL;
        if (git_repository_head(&head, repo) == 0 && git_reference_is_branch(head))
            json_object_set_new(o, "ref", json_string(git_reference_name(head)));
        else
            json_object_set_new(o, "ref", json_null());
        git_reference_free(head);
    } else {
        git_reference *r = NULL;
        if (git_reference_dwim(&r, repo, rev) == 0 && git_reference_is_branch(r))
            json_object_set_new(o, "ref", json_string(git_reference_name(r)));
        else
            json_object_set_new(o, "ref", json_null());
        git_reference_free(r);
    }
    {
        const git_signature *a = git_commit_author(commit);
        char who[512];
        snprintf(who, sizeof who, "%s <%s>", a->name, a->email);
        json_object_set_new(o, "author", json_string(who));
        json_object_set_new(o, "summary", json_string(git_commit_summary(commit) ? git_commit_summary(commit) : ""));
    }
    json_object_set_new(o, "changed", changed);
    json_object_set_new(o, "spec", json_stringn(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob)));
    *out = o;
    rc = 0;
done:
    git_diff_free(diff);
    git_blob_free(blob);
    git_tree_entry_free(entry);
    git_tree_free(ptree);
    git_tree_free(tree);
    git_commit_free(parent);
    git_commit_free(commit);
    git_repository_free(repo);
    return rc;
}

struct scan {
    git_repository *repo;
    int log_fd;
};

/* Names what checkout cannot materialise: submodules (tree entries that are
 * commits) and Git LFS pointers (small blobs with the LFS header). */
static int scan_entry(const char *root, const git_tree_entry *e, void *payload)
{
    struct scan *s = payload;
    char line[PATH_MAX + 160];
    int n = 0;
    if (s->log_fd < 0)
        return 0;
    if (git_tree_entry_type(e) == GIT_OBJECT_COMMIT) {
        n = snprintf(line, sizeof line,
                     "farm: submodule %s%s not materialised (farm checks out the commit's own "
                     "tree only)\n",
                     root, git_tree_entry_name(e));
    } else if (git_tree_entry_type(e) == GIT_OBJECT_BLOB) {
        git_blob *b;
        if (git_blob_lookup(&b, s->repo, git_tree_entry_id(e)) == 0) {
            static const char lfs[] = "version https://git-lfs.github.com/spec/v1";
            if (git_blob_rawsize(b) < 1024 && git_blob_rawsize(b) >= (git_object_size_t)sizeof lfs - 1 &&
                memcmp(git_blob_rawcontent(b), lfs, sizeof lfs - 1) == 0)
                n = snprintf(line, sizeof line,
                             "farm: %s%s is a Git LFS pointer; its content was not fetched\n", root,
                             git_tree_entry_name(e));
            git_blob_free(b);
        }
    }
    if (n > 0)
        farm_write_all(s->log_fd, line, (size_t)n);
    return 0;
}

int farm__git_checkout(const char *path, const char *rev, const char *dir, int log_fd,
                       struct farm_err *err)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_checkout_options opts;
    int rc;
    git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
    if ((rc = farm_mkdirs(dir, 0755)) < 0)
        return farm_err_set(err, rc, "%s: %s", dir, farm_strerror(rc));
    if ((rc = open_repo(path, &repo, err)) < 0)
        return rc;
    if ((rc = lookup_commit(repo, rev, &commit, err)) < 0)
        goto done;
    opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX |
                             GIT_CHECKOUT_DONT_WRITE_INDEX;
    opts.target_directory = dir;
    if (git_checkout_tree(repo, (git_object *)commit, &opts) < 0) {
        rc = gerr(err, "checking out the commit");
        goto done;
    }
    if (git_commit_tree(&tree, commit) == 0) {
        struct scan s = {repo, log_fd};
        git_tree_walk(tree, GIT_TREEWALK_PRE, scan_entry, &s);
    }
    rc = 0;
done:
    git_tree_free(tree);
    git_commit_free(commit);
    git_repository_free(repo);
    return rc;
}

int farm__git_is_dir(const char *path, const char *commit, const char *dir, struct farm_err *err)
{
    git_repository *repo = NULL;
    git_commit *c = NULL;
    git_tree *tree = NULL;
    git_tree_entry *entry = NULL;
    int rc;
    if ((rc = open_repo(path, &repo, err)) < 0)
        return rc;
    if ((rc = lookup_commit(repo, commit, &c, err)) < 0)
        goto done;
    if (git_commit_tree(&tree, c) < 0) {
        rc = gerr(err, "reading the commit's tree");
        goto done;
    }
    /* "." and "" are the tree itself. */
    rc = !*dir || !strcmp(dir, ".") ||
         (git_tree_entry_bypath(&entry, tree, dir) == 0 &&
          git_tree_entry_type(entry) == GIT_OBJECT_TREE);
done:
    git_tree_entry_free(entry);
    git_tree_free(tree);
    git_commit_free(c);
    git_repository_free(repo);
    return rc;
}

int farm__git_paths_match(const json_t *patterns, const json_t *changed)
{
    size_t n = json_array_size(patterns), i;
    char **pats;
    git_strarray sa;
    git_pathspec *ps = NULL;
    json_t *c;
    int match = 0;
    if (n == 0)
        return 1;
    init_once();
    pats = calloc(n, sizeof *pats);
    for (i = 0; i < n; i++)
        pats[i] = (char *)json_string_value(json_array_get(patterns, i));
    sa.strings = pats;
    sa.count = n;
    if (git_pathspec_new(&ps, &sa) == 0) {
        json_array_foreach(changed, i, c)
        {
            if (git_pathspec_matches_path(ps, 0, json_string_value(c))) {
                match = 1;
                break;
            }
        }
        git_pathspec_free(ps);
    }
    free(pats);
    return match;
}

int farm__git_write_note(const char *path, const char *rev, const char *text,
                         struct farm_err *err)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    git_signature *sig = NULL;
    git_oid note;
    int rc;
    if ((rc = open_repo(path, &repo, err)) < 0)
        return rc;
    if ((rc = lookup_commit(repo, rev, &commit, err)) < 0)
        goto done;
    if (git_signature_now(&sig, "farm", "farm@localhost") < 0 ||
        git_note_create(&note, repo, FARM_GIT_NOTES_REF, sig, sig, git_commit_id(commit), text, 1) < 0) {
        rc = gerr(err, "writing the note");
        goto done;
    }
    rc = 0;
done:
    git_signature_free(sig);
    git_commit_free(commit);
    git_repository_free(repo);
    return rc;
}
