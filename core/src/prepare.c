/*
 * farm-prepare: the parts of preparing a run that need the heavy libraries
 * (libgit2 for a commit's checkout, libfarmcache for the dependency
 * package), kept out of farm-worker so that the worker, which is forked for
 * every task, stays small.
 *
 *   farm-prepare --task       task JSON on stdin; the log on stdout/stderr;
 *                             events on fd 3 (when open); the outcome as one
 *                             JSON line on fd 4: {"ok": true, "deps_dir": ...}
 *                             or {"ok": false, "code": ..., "message": ...}
 *   farm-prepare --cache VERB ...   the `farm cache` verbs (JSON on stdout)
 *
 * SIGTERM stops it: a running deps build gets SIGTERM, then SIGKILL after
 * the task's grace period.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/gitintake.h"
#include "farm/util.h"
#include "worker-internal.h"

#define EVENT_FD 3
#define RESULT_FD 4

volatile sig_atomic_t farm__worker_stop;
int farm__worker_event_fd_ok;

static void on_term(int sig)
{
    (void)sig;
    farm__worker_stop = 1;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int prepare(void)
{
    json_error_t je;
    json_t *task = json_loadf(stdin, 0, &je), *out;
    struct farm_err err;
    int rc = 0;
    const char *work;
    struct sigaction sa = {.sa_handler = on_term};

    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    farm_err_clear(&err);
    if (!task) {
        rc = farm_err_set(&err, FARM_EBADREQ, "farm-prepare: task on stdin: line %d: %s", je.line,
                          je.text);
        goto done;
    }
    farm__worker_event_fd_ok = fcntl(EVENT_FD, F_GETFD) >= 0;
    work = jstr(task, "work_dir");
    if (jstr(task, "git_repo") && jstr(task, "git_commit") && work) {
        /* The commit's tree, never the repository's work tree: what was
         * committed is what is tested. */
        farm_rmtree(work);
        if ((rc = farm__git_checkout(jstr(task, "git_repo"), jstr(task, "git_commit"), work,
                                     STDOUT_FILENO, &err)) < 0) {
            farm_err_prefix(&err, "checking out %.12s from %s: ", jstr(task, "git_commit"),
                            jstr(task, "git_repo"));
            goto done;
        }
    }
    if (json_is_object(json_object_get(task, "deps")))
        rc = farm__worker_deps(task, jstr(task, "home"), STDOUT_FILENO, EVENT_FD, &err);
done:
    if (rc == 0)
        out = json_pack("{s:b,s:s?}", "ok", 1, "deps_dir", jstr(task, "deps_dir"));
    else
        out = json_pack("{s:b,s:i,s:s}", "ok", 0, "code", rc, "message", err.msg);
    farm_json_write_line(RESULT_FD, out);
    json_decref(out);
    json_decref(task);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--task"))
        return prepare();
    if (argc >= 3 && !strcmp(argv[1], "--cache"))
        return farm__worker_cache_cmd(argc - 2, argv + 2);
    fprintf(stderr, "usage: farm-prepare --task | --cache VERB ...\n"
                    "farm-prepare is run by farm-worker and farm cache; see `farm --help`.\n");
    return 2;
}
