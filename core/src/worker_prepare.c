#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "farm/util.h"
#include "worker-internal.h"

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Runs farm-prepare for what needs its libraries (a git checkout, the
 * dependency package): the task on its stdin, the log as its stdout and
 * stderr, the events on fd 3, its outcome on fd 4. While it runs, a stop
 * request (farm__worker_stop) is passed on to it. */
static int run_prepare(json_t *task, int log_fd, int event_fd, struct farm_err *err)
{
    char exe[PATH_MAX], path[PATH_MAX + 32], buf[4096];
    int in[2], res[2], st = 0, sent = 0, reaped = 0;
    size_t got = 0;
    pid_t pid;
    char *text;
    json_t *out;
    if (farm_exe_dir(exe, sizeof exe) < 0)
        return farm_err_set(err, -ENOENT, "cannot find farm-prepare");
    snprintf(path, sizeof path, "%s/farm-prepare", exe);
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0)
        return farm_err_set(err, -errno, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        return farm_err_set(err, -errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        if (event_fd != 3)
            close(3);
        else
            fcntl(3, F_SETFD, 0);
        dup2(res[1], 4);
        execl(path, "farm-prepare", "--task", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(res[1]);
    text = json_dumps(task, JSON_COMPACT);
    farm_write_all(in[1], text, strlen(text));
    free(text);
    close(in[1]);
    for (;;) {
        struct pollfd p = {.fd = res[0], .events = POLLIN};
        pid_t w;
        int ws;
        if (farm__worker_stop && !sent) {
            kill(pid, SIGTERM);
            sent = 1;
        }
        /* We are the task's subreaper: what a build left running comes to
         * us when its parent ends, and is reaped here as it exits (so that
         * farm-prepare, waiting for the build's process group to be gone,
         * does not wait on zombies). */
        while ((w = waitpid(-1, &ws, WNOHANG)) > 0)
            if (w == pid) {
                st = ws;
                reaped = 1;
            }
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = read(res[0], buf + got, sizeof buf - 1 - got);
            if (n > 0) {
                got += (size_t)n;
                continue;
            }
            if (n == 0 || (errno != EINTR && errno != EAGAIN))
                break;
        }
    }
    close(res[0]);
    while (!reaped && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    buf[got] = '\0';
    out = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
    if (!out) {
        return farm_err_set(err, FARM_ECRASHED, "farm-prepare ended without a result (%s %d)",
                            WIFSIGNALED(st) ? "signal" : "status",
                            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    if (!json_is_true(json_object_get(out, "ok"))) {
        int code = (int)json_integer_value(json_object_get(out, "code"));
        farm_err_set(err, code ? code : FARM_EBUILD, "%s",
                     json_string_value(json_object_get(out, "message")));
        json_decref(out);
        return err->code;
    }
    if (json_is_string(json_object_get(out, "deps_dir")))
        json_object_set(task, "deps_dir", json_object_get(out, "deps_dir"));
    json_decref(out);
    return 0;
}

int farm__worker_prepare(json_t *task, const char *home, int log_fd, int event_fd,
                         struct farm_err *err)
{
    const char *src = jstr(task, "src"), *work = jstr(task, "work_dir");
    int rc;
    (void)home;
    if (src && work && !jstr(task, "git_repo")) {
        /* A fresh copy for every attempt: a retry never sees what an earlier
         * attempt left in its tree. */
        farm_rmtree(work);
        if ((rc = farm_copytree(src, work, 1, err)) < 0) {
            farm_err_prefix(err, "preparing the source snapshot: ");
            return rc;
        }
    } else if (work && !jstr(task, "git_repo")) {
        struct stat st;
        if (stat(work, &st) < 0 || !S_ISDIR(st.st_mode))
            return farm_err_set(err, -ENOENT, "work directory %s is gone", work);
    }
    if ((jstr(task, "git_repo") && jstr(task, "git_commit") && work) ||
        json_is_object(json_object_get(task, "deps")))
        return run_prepare(task, log_fd, event_fd, err);
    return 0;
}
