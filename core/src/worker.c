/*
 * farm-worker: runs one attempt of one task.
 *
 *   farm-worker --serve              the fork server farmd keeps (below)
 *   farm-worker --run RUN_DIR        run RUN_DIR/task.json; events on fd 3
 *   farm-worker --describe NAME|PATH, --describe-all
 *                                    answered by farm-plugin-host
 *
 * A run has two processes. The supervisor (this process) is a child
 * subreaper: everything the task starts, even after setsid or a double fork,
 * stays below it. It starts the task's process, copies that process's stdout
 * and stderr into the log file under the size cap, and on SIGTERM (cancel,
 * timeout, farmd stopping) or when farmd goes away, it sends SIGTERM to every
 * descendant, waits the grace period, then SIGKILLs whatever is left. For an
 * exec task the task's process is the command itself; for any other plugin it
 * is the plugin process, which loads the plugin and calls run(): a crash
 * there ends only that process, and the supervisor reports it with the
 * signal's name.
 *
 * This file builds twice. farm-worker never loads a plugin, so that it can
 * be linked statically: it is forked for every exec task, and a static
 * process forks, runs and exits with fewer mappings to copy and tear down;
 * its plugin process is farm-plugin-host --task. farm-plugin-host (with
 * FARM_IN_PLUGIN_HOST) runs the same supervisor for the tasks of loaded
 * plugins and forks their plugin process itself.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "farm/plugin.h"
#include "farm/pluginload.h"
#include "exec_cmd.h"
#include "farm/util.h"
#include "worker-internal.h"

#define EVENT_FD 3

extern char **environ;

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* The variables every task's code sees (docs/spec.md). */
static void task_env(json_t *task)
{
    static const char *const vars[][2] = {{"FARM_RUN_DIR", "run_dir"},
                                           {"FARM_SCRATCH_DIR", "scratch_dir"},
                                           {"FARM_DEPS_DIR", "deps_dir"}};
    setenv("FARM_TASK_ID", jstr(task, "id_text") ? jstr(task, "id_text") : "0", 1);
    /* The task starts in its work directory: PWD says so (not where farmd
     * was started). */
    if (jstr(task, "work_dir"))
        setenv("PWD", jstr(task, "work_dir"), 1);
    /* A task given by hand (farm-worker --run) may lack some: then the
     * variable is not set, rather than inherited from whoever started us. */
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        if (jstr(task, vars[i][1]))
            setenv(vars[i][0], jstr(task, vars[i][1]), 1);
        else
            unsetenv(vars[i][0]);
    }
}

/* ---- the plugin process -------------------------------------------------- */

/* farm-plugin-host, beside this executable: the plugin process of a task
 * whose plugin is loaded (every plugin but the built-in exec). */
#ifndef FARM_IN_PLUGIN_HOST
static const char *plugin_host(void)
{
    static char path[PATH_MAX];
    if (!path[0]) {
        char dir[PATH_MAX];
        if (farm_exe_dir(dir, sizeof dir) == 0 &&
            (size_t)snprintf(path, sizeof path, "%s/farm-plugin-host", dir) >= sizeof path)
            path[0] = '\0'; /* too long a path: reported as not found */
    }
    return path;
}
#endif

/* In the forked child: hands the task (as prepared: with its deps_dir) to
 * farm-plugin-host on descriptor 4 and the result pipe on 5, and becomes
 * it. Never returns. */
static void plugin_process(json_t *task, int result_fd)
#ifdef FARM_IN_PLUGIN_HOST
{
    /* This binary loads plugins itself: the plugin process is this fork. */
    const char *home = jstr(task, "home");
    task_env(task);
    farm__plugin_main(task, home && *home ? home : NULL, result_fd);
}
#else
{
    char *text = json_dumps(task, JSON_COMPACT);
    int mfd = memfd_create("farm-task", MFD_CLOEXEC), tfd, rfd;
    const char *host = plugin_host();
    char why[PATH_MAX + 128];
    json_t *r;
    /* The plugin, and what it starts, see the task's variables. */
    task_env(task);
    if (text && mfd >= 0 && farm_write_all(mfd, text, strlen(text)) == 0 &&
        lseek(mfd, 0, SEEK_SET) == 0 && (tfd = fcntl(mfd, F_DUPFD_CLOEXEC, 10)) >= 0 &&
        (rfd = fcntl(result_fd, F_DUPFD_CLOEXEC, 10)) >= 0 && dup2(tfd, 4) == 4 &&
        dup2(rfd, 5) == 5) {
        char *argv[] = {"farm-plugin-host", "--task", NULL};
        if (host[0])
            execv(host, argv);
    }
    snprintf(why, sizeof why, "cannot start the plugin host %s: %s",
             host[0] ? host : "farm-plugin-host", strerror(host[0] ? errno : ENOENT));
    fprintf(stderr, "farm: %s\n", why);
    r = json_pack("{s:s,s:i,s:s}", "state", "failed", "exit_code", 127, "reason", why);
    farm_json_write_line(result_fd, r);
    _exit(0);
}
#endif

/* ---- the supervisor ------------------------------------------------------ */

static int g_sigpipe[2] = {-1, -1};
volatile sig_atomic_t farm__worker_stop;
int farm__worker_event_fd_ok;

static void on_signal(int sig)
{
    unsigned char c = (unsigned char)sig;
    int e = errno;
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
        farm__worker_stop = 1;
    if (write(g_sigpipe[1], &c, 1) < 0) {
        /* nothing to do: the pipe is full, a wake-up is already pending */
    }
    errno = e;
}

/* Sends `sig` to every process below us (found through /proc). Returns how
 * many processes it signalled. */
static int signal_descendants(int sig)
{
    pid_t self = getpid();
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t *pids = NULL, *ppids = NULL;
    size_t n = 0, cap = 0;
    int count = 0;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name), ppid;
        if (pid <= 0 || farm_proc_ids(pid, &ppid, NULL) < 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            pids = realloc(pids, cap * sizeof *pids);
            ppids = realloc(ppids, cap * sizeof *ppids);
        }
        pids[n] = pid;
        ppids[n] = ppid;
        n++;
    }
    closedir(d);
    /* Mark descendants: repeat until no new process joins the set. */
    {
        char *mark = calloc(n ? n : 1, 1);
        int changed = 1;
        while (changed) {
            changed = 0;
            for (size_t i = 0; i < n; i++) {
                if (mark[i])
                    continue;
                int parent_marked = ppids[i] == self;
                for (size_t j = 0; !parent_marked && j < n; j++)
                    if (mark[j] && pids[j] == ppids[i])
                        parent_marked = 1;
                if (parent_marked) {
                    mark[i] = 1;
                    changed = 1;
                }
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (mark[i] && kill(pids[i], sig) == 0)
                count++;
        }
        free(mark);
    }
    free(pids);
    free(ppids);
    return count;
}

static int have_children(void);

/* Stops whatever still runs below us: SIGTERM, then SIGKILL once
 * `grace_ms` have passed, reaping as they go. */
static void stop_leftovers(int64_t grace_ms)
{
    int64_t until;
    if (!have_children())
        return;
    until = farm_mono_ms() + grace_ms;
    signal_descendants(SIGTERM);
    while (farm_mono_ms() < until) {
        struct timespec ts = {0, 20 * 1000000};
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (!have_children())
            return;
        nanosleep(&ts, NULL);
    }
    signal_descendants(SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
}

struct logsink {
    int fd;
    const char *path; /* opened on the first byte: a silent task makes no file */
    int64_t written, cap;
    int truncated;
    int error; /* errno of a write that failed (the log ends there), or 0 */
};

static int sink_open(struct logsink *s)
{
    char dir[PATH_MAX];
    char *slash;
    if (s->fd >= 0)
        return 0;
    snprintf(dir, sizeof dir, "%s", s->path);
    if ((slash = strrchr(dir, '/')))
        *slash = '\0';
    farm_mkdirs(dir, 0755);
    /* The attempt's own log: farmd moved an earlier attempt's aside, and
     * anything left at this path is a lost attempt's that never got
     * recorded, which this attempt replaces. */
    s->fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        int e = errno;
        fprintf(stderr, "farm-worker: %s: %s\n", s->path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

/* A write to the log failed: the log ends here, the rest of the output is
 * discarded (the task is not blocked) and the task fails, saying why. On a
 * full disk the log gives back its last MiB first, so that farmd still has
 * room to record how the task ended. */
static void sink_failed(struct logsink *s, int err)
{
    char marker[200];
    struct stat st;
    int m;
    s->truncated = 1;
    s->error = err;
    if ((err == ENOSPC || err == EDQUOT) && fstat(s->fd, &st) == 0 &&
        ftruncate(s->fd, st.st_size > (1 << 20) ? st.st_size - (1 << 20) : 0) < 0) {
        /* nothing more to give back */
    }
    m = snprintf(marker, sizeof marker, "\n[farm: writing the log failed: %s; further output "
                                        "discarded]\n", strerror(err));
    if (farm_write_all(s->fd, marker, (size_t)m) < 0) {
        /* the marker may not fit either: the task's reason says it */
    }
}

static void sink_write(struct logsink *s, const char *buf, size_t n)
{
    int rc;
    if (s->truncated)
        return;
    if (sink_open(s) < 0) {
        s->truncated = 1;
        s->error = errno ? errno : EIO;
        return;
    }
    if (s->cap > 0 && s->written + (int64_t)n > s->cap) {
        char marker[160];
        size_t keep = (size_t)(s->cap - s->written);
        int m;
        if ((rc = farm_write_all(s->fd, buf, keep)) < 0) {
            sink_failed(s, -rc);
            return;
        }
        m = snprintf(marker, sizeof marker,
                     "\n[farm: log truncated at %lld bytes; further output discarded]\n",
                     (long long)s->cap);
        if ((rc = farm_write_all(s->fd, marker, (size_t)m)) < 0) {
            sink_failed(s, -rc);
            return;
        }
        s->written = s->cap;
        s->truncated = 1;
        return;
    }
    if ((rc = farm_write_all(s->fd, buf, n)) < 0) {
        sink_failed(s, -rc);
        return;
    }
    s->written += (int64_t)n;
}

static void sink_printf(struct logsink *s, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    if (n > 0)
        sink_write(s, line, (size_t)n);
}

/* Whether this farm has its built-in exec plugin (the fork server asks once,
 * before it forks). Tasks of that plugin have their command started by the
 * supervisor itself: exec's code, without a plugin process in between. */
static int g_builtin_exec = -1;

static int builtin_exec(void)
{
    if (g_builtin_exec < 0) {
        char path[PATH_MAX];
        g_builtin_exec = farm__plugin_find("exec", NULL, path, sizeof path, NULL) == 0;
    }
    return g_builtin_exec;
}

/* True while some process below us lives: as a subreaper we are an ancestor
 * of every live descendant, so that is "we have a child". */
static int have_children(void)
{
    siginfo_t si;
    return !(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD);
}

/* The result of an exec task whose command ended with wait status `st`, as
 * the exec plugin would report it (the log gets its line too). */
static json_t *exec_result(struct logsink *sink, int st)
{
    char msg[128];
    int code = farm_exec_cmd_code(st, msg, sizeof msg);
    if (msg[0])
        sink_printf(sink, "[error] %s\n", msg);
    if (code == 0)
        return json_pack("{s:s,s:i}", "state", "succeeded", "exit_code", 0);
    return json_pack("{s:s,s:i,s:s}", "state", "failed", "exit_code", code, "reason",
                     "the command exited with a non-zero status");
}

/* An exec task's command, started by the supervisor: the environment and
 * the work directory the plugin process would give it. Returns the pid, or
 * -1 with `*result` set. */
static pid_t exec_start(json_t *task, struct logsink *sink, int out_fd, json_t **result)
{
    struct farm_exec_cmd cmd;
    const char *wd = jstr(task, "work_dir");
    char msg[256], why[320];
    pid_t pid;
    int rc;

    task_env(task);
    if (!wd || chdir(wd) < 0) {
        sink_printf(sink, "farm: cannot enter work dir %s: %s\n", wd ? wd : "(none)",
                    strerror(wd ? errno : ENOENT));
        *result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed", "exit_code",
                            1, "reason", "cannot enter the work directory");
        return -1;
    }
    rc = farm_exec_cmd_parse(json_object_get(task, "params"), &cmd, msg, sizeof msg);
    if (rc == 0 && (rc = farm_exec_cmd_spawn(&cmd, out_fd, environ, &pid)) != 0) {
        snprintf(msg, sizeof msg, "exec: cannot start %s: %s", cmd.file, strerror(rc));
        rc = -rc;
        farm_exec_cmd_free(&cmd);
        snprintf(why, sizeof why, "plugin exec returned %d (%s)", rc, farm_strerror(rc));
        sink_printf(sink, "[error] %s\n", msg);
        *result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed", "exit_code",
                            127, "reason", why);
        return -1;
    }
    if (rc < 0) {
        snprintf(why, sizeof why, "plugin exec returned %d (%s)", rc, farm_strerror(rc));
        sink_printf(sink, "[error] %s\n", msg);
        *result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed", "exit_code",
                            1, "reason", why);
        return -1;
    }
    farm_exec_cmd_free(&cmd);
    return pid;
}

/* The scratch directory is a slot that farmd hands from attempt to attempt:
 * made when missing, emptied when the attempt ends. Returns an open
 * descriptor of it (its identity in `*st`), or -1 with `*result` set (and
 * the slot reported unusable, so that farmd retires it). */
static int scratch_open(const char *path, struct stat *st, struct logsink *sink, json_t **result)
{
    int fd;
    if (mkdir(path, 0755) < 0 && errno == ENOENT)
        farm_mkdirs(path, 0755);
    /* Never through a symlink a task may have put in the slot's place. */
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, st) == 0) {
        /* A task may have changed the mode: every attempt starts alike. */
        if ((st->st_mode & 07777) != 0755)
            fchmod(fd, 0755);
        return fd;
    }
    {
        char why[PATH_MAX + 128];
        snprintf(why, sizeof why, "cannot make the scratch directory %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        sink_printf(sink, "farm: %s\n", why);
        *result = json_pack("{s:s,s:s,s:i,s:s,s:b}", "ev", "result", "state", "failed",
                            "exit_code", 1, "reason", why, "scratch_left", 1);
    }
    return -1;
}

/* Empties the scratch slot at the end of the attempt. 0, or -1 when the
 * slot must not be handed out again: something would not go, or the path
 * no longer names the directory the attempt started with (the task removed
 * it, or put a symlink or another directory there). */
static int scratch_close(int fd, const struct stat *was, const char *path)
{
    struct stat now;
    int rc = farm_empty_dir(fd);
    if (lstat(path, &now) < 0 || !S_ISDIR(now.st_mode) || now.st_dev != was->st_dev ||
        now.st_ino != was->st_ino)
        rc = -1;
    close(fd);
    return rc < 0 ? -1 : 0;
}

/* Runs one attempt. The task is `parsed` (the fork server parses its start
 * message before it forks: the worker then only reads those pages, it does
 * not copy them), or comes from `task_text`, or, when both are NULL, from
 * RUN_DIR/task.json. */
static int run_task(const char *run_dir, const char *task_text, json_t *parsed)
{
    char path[PATH_MAX], home[PATH_MAX];
    char *text = NULL;
    json_t *task;
    json_error_t je;
    int out_pipe[2], res_pipe[2] = {-1, -1};
    pid_t child;
    int direct, scratch_fd = -1;
    struct stat scratch_st;
    struct logsink sink = {.fd = -1};
    int64_t grace_ms, deadline = -1;
    int cancelled = 0, farmd_gone = 0, child_status = 0, child_done = 0;
    char reason[1024] = "";
    json_t *result = NULL;
    int rc;
    char resbuf[8192];
    size_t reslen = 0;
    int event_ok = fcntl(EVENT_FD, F_GETFD) >= 0;

    snprintf(path, sizeof path, "%s/task.json", run_dir);
    if (parsed) {
        task = parsed;
    } else if (task_text) {
        task = json_loads(task_text, 0, &je);
    } else {
        if ((rc = farm_read_file(path, &text, NULL)) < 0) {
            fprintf(stderr, "farm-worker: %s: %s\n", path, farm_strerror(rc));
            return 2;
        }
        task = json_loads(text, 0, &je);
        free(text);
    }
    if (!task) {
        fprintf(stderr, "farm-worker: %s:%d:%d: %s\n", path, je.line, je.column, je.text);
        return 2;
    }
    snprintf(home, sizeof home, "%s", jstr(task, "home") ? jstr(task, "home") : "");
    grace_ms = json_integer_value(json_object_get(task, "grace_ms"));
    if (grace_ms <= 0)
        grace_ms = 10000;

    prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* If farmd (our parent) dies, we hear it on the event socket; a worker
     * of `farm run` has a terminal instead, and SIGHUP reaches it. */

    direct = jstr(task, "plugin") && !strcmp(jstr(task, "plugin"), "exec") && builtin_exec();
    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0 ||
        (!direct && pipe2(res_pipe, O_CLOEXEC) < 0)) {
        perror("farm-worker: pipe");
        return 2;
    }
    {
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGCHLD, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
    }

    /* The run directory and what is in it (log, artifacts, scratch) are
     * made when first needed: a task that writes nothing creates no file. */
    if (jstr(task, "log") && strcmp(jstr(task, "log"), "-") != 0)
        sink.path = jstr(task, "log");
    else
        sink.fd = STDOUT_FILENO;
    sink.cap = json_integer_value(json_object_get(task, "log_cap"));

    /* Source snapshot into work_dir, and the dependency package. */
    {
        struct farm_err err;
        farm_err_clear(&err);
        if (event_ok)
            farm__worker_event_fd_ok = 1;
        /* Preparing may write to the log (a deps build): open it now when
         * there is something to prepare. */
        if ((json_object_get(task, "deps") || jstr(task, "src") || jstr(task, "git_repo")) &&
            sink_open(&sink) < 0)
            return 2;
        if ((rc = farm__worker_prepare(task, home, sink.fd, EVENT_FD, &err)) < 0) {
            /* What the preparation left running (a build's background
             * process) must not outlive the attempt either. */
            stop_leftovers(grace_ms < 2000 ? grace_ms : 2000);
            char line[1200];
            int m = snprintf(line, sizeof line, "farm: %s\n", err.msg);
            if (sink_open(&sink) == 0)
                farm_write_all(sink.fd, line, (size_t)m);
            result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed",
                               "exit_code", 1, "reason", err.msg);
            goto finish;
        }
    }
    if (jstr(task, "scratch_dir") &&
        (scratch_fd = scratch_open(jstr(task, "scratch_dir"), &scratch_st, &sink, &result)) < 0)
        goto finish;

    if (direct) {
        /* The command is our child; the supervision below is the same. */
        if (event_ok)
            fcntl(EVENT_FD, F_SETFD, FD_CLOEXEC);
        child = exec_start(task, &sink, out_pipe[1], &result);
        if (child < 0)
            goto finish;
    } else if ((child = fork()) < 0) {
        perror("farm-worker: fork");
        return 2;
    }
    if (child == 0) {
        /* The plugin process leads a process group of its own (so does a
         * command it starts through exec): its `kill 0` stays inside it. */
        if (farm_exec_cmd_own_group())
            setpgid(0, 0);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(out_pipe[1], STDERR_FILENO);
        close(out_pipe[0]);
        close(res_pipe[0]);
        {
            int devnull = open("/dev/null", O_RDONLY);
            if (devnull >= 0) {
                dup2(devnull, STDIN_FILENO);
                close(devnull);
            }
        }
        if (!event_ok) {
            /* No event channel (a worker started by hand): send events
             * nowhere rather than to a random descriptor. */
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, EVENT_FD);
        }
        plugin_process(task, res_pipe[1]);
    }
    close(out_pipe[1]);
    if (!direct)
        close(res_pipe[1]);

    /* The supervision loop. */
    {
        int out_open = 1, res_open = !direct, leftovers_checked = 0;
        /* Until the command's output ends and it is gone, and, once a kill
         * is under way, until nothing below us lives. */
        while (out_open || !child_done || (deadline >= 0 && have_children())) {
            struct pollfd p[4];
            int np = 0, timeout = -1, i_out = -1, i_res = -1, i_sig, i_ev = -1;
            int64_t now = farm_mono_ms();
            p[np] = (struct pollfd){.fd = g_sigpipe[0], .events = POLLIN};
            i_sig = np++;
            if (out_open) {
                p[np] = (struct pollfd){.fd = out_pipe[0], .events = POLLIN};
                i_out = np++;
            }
            if (res_open) {
                p[np] = (struct pollfd){.fd = res_pipe[0], .events = POLLIN};
                i_res = np++;
            }
            if (event_ok && !farmd_gone) {
                p[np] = (struct pollfd){.fd = EVENT_FD, .events = POLLRDHUP};
                i_ev = np++;
            }
            if (deadline >= 0)
                timeout = deadline > now ? (int)(deadline - now) : 0;
            if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR)
                break;
            if (p[i_sig].revents & POLLIN) {
                unsigned char sigs[64];
                ssize_t n = read(g_sigpipe[0], sigs, sizeof sigs);
                for (ssize_t k = 0; k < n; k++) {
                    if ((sigs[k] == SIGTERM || sigs[k] == SIGINT || sigs[k] == SIGHUP) &&
                        !cancelled) {
                        cancelled = 1;
                        snprintf(reason, sizeof reason, "%s",
                                 sigs[k] == SIGTERM ? "stopped (SIGTERM)" : "interrupted");
                        signal_descendants(SIGTERM);
                        deadline = farm_mono_ms() + grace_ms;
                    }
                }
                for (;;) {
                    int st;
                    pid_t w = waitpid(-1, &st, WNOHANG);
                    if (w <= 0)
                        break;
                    if (w == child) {
                        child_done = 1;
                        child_status = st;
                    }
                }
            }
            if (i_ev >= 0 && (p[i_ev].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                farmd_gone = 1;
                if (!cancelled) {
                    cancelled = 1;
                    snprintf(reason, sizeof reason, "farmd went away");
                    signal_descendants(SIGTERM);
                    deadline = farm_mono_ms() + grace_ms;
                }
            }
            if (i_out >= 0 && (p[i_out].revents & (POLLIN | POLLHUP))) {
                char buf[65536];
                ssize_t n = read(out_pipe[0], buf, sizeof buf);
                if (n > 0) {
                    sink_write(&sink, buf, (size_t)n);
                } else if (n == 0 || errno != EINTR) {
                    out_open = 0;
                    /* The output ends when the command exits, as a rule:
                     * collect it now rather than after another wake-up. */
                    if (!child_done) {
                        int st;
                        if (waitpid(child, &st, WNOHANG) == child) {
                            child_done = 1;
                            child_status = st;
                        }
                    }
                }
            }
            if (i_res >= 0 && (p[i_res].revents & (POLLIN | POLLHUP))) {
                ssize_t n = read(res_pipe[0], resbuf + reslen, sizeof resbuf - 1 - reslen);
                if (n > 0)
                    reslen += (size_t)n;
                else if (n == 0 || errno != EINTR)
                    res_open = 0;
            }
            now = farm_mono_ms();
            if (deadline >= 0 && now >= deadline) {
                /* Grace is over: kill everything below us, again every 100
                 * ms, since a dying parent may still be forking. */
                if (signal_descendants(SIGKILL) == 0 && child_done)
                    deadline = -1;
                else
                    deadline = now + 100;
            }
            if (child_done && !leftovers_checked) {
                /* The plugin is done: whatever it left running must not
                 * outlive the task. As a subreaper we are an ancestor of
                 * every live descendant, so having no child at all means
                 * there is nothing to look for in /proc. */
                leftovers_checked = 1;
                if (deadline < 0 && !(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) &&
                    signal_descendants(SIGTERM) > 0)
                    deadline = farm_mono_ms() + (grace_ms < 2000 ? grace_ms : 2000);
            }
        }
        /* Reap everything that is left. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }

    resbuf[reslen] = '\0';
    {
        json_t *r = direct ? (child_done ? exec_result(&sink, child_status) : NULL)
                    : reslen ? json_loads(resbuf, JSON_DISABLE_EOF_CHECK, NULL)
                             : NULL;
        if (WIFSIGNALED(child_status) && !cancelled && !direct) {
            char why[128];
            snprintf(why, sizeof why, "plugin crashed: %s", farm_signame(WTERMSIG(child_status)));
            result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed",
                               "exit_code", 128 + WTERMSIG(child_status), "reason", why);
        } else if (cancelled) {
            result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "cancelled",
                               "exit_code",
                               r ? (int)json_integer_value(json_object_get(r, "exit_code"))
                                 : (WIFSIGNALED(child_status) ? 128 + WTERMSIG(child_status) : 143),
                               "reason", reason);
        } else if (!r) {
            char why[160];
            snprintf(why, sizeof why, "plugin exited without returning (exit status %d)",
                     WIFEXITED(child_status) ? WEXITSTATUS(child_status) : -1);
            result = json_pack("{s:s,s:s,s:i,s:s}", "ev", "result", "state", "failed",
                               "exit_code",
                               WIFEXITED(child_status) && WEXITSTATUS(child_status)
                                   ? WEXITSTATUS(child_status)
                                   : 1,
                               "reason", why);
        } else {
            result = json_deep_copy(r);
            json_object_set_new(result, "ev", json_string("result"));
        }
        json_decref(r);
    }
    if (sink.truncated)
        json_object_set_new(result, "log_truncated", json_true());
    if (sink.error)
        json_object_set_new(result, "log_error", json_string(strerror(sink.error)));

finish:
    if (scratch_fd >= 0 && scratch_close(scratch_fd, &scratch_st, jstr(task, "scratch_dir")) < 0) {
        /* Every process of the attempt is gone: nothing writes there now. */
        sink_printf(&sink, "farm: the scratch directory %s could not be emptied or was replaced; "
                           "it is not used again\n",
                    jstr(task, "scratch_dir"));
        json_object_set_new(result, "scratch_left", json_true());
    }
    if (sink.fd < 0 && sink.path)
        /* A silent attempt: no log of an earlier, unrecorded run of it may
         * pass for this one's. */
        unlink(sink.path);
    if (event_ok && !farmd_gone) {
        farm_json_write_line(EVENT_FD, result);
        /* Our end of the stream: farmd goes on while this process exits. */
        close(EVENT_FD);
    } else if (!event_ok) {
        farm_json_write_line(STDERR_FILENO, result);
    }
    rc = strcmp(jstr(result, "state"), "succeeded") == 0 ? 0 : 1;
    json_decref(result);
    if (!parsed)
        json_decref(task);
    if (sink.fd >= 0 && sink.fd != STDOUT_FILENO)
        close(sink.fd);
    return rc;
}

/* ---- the fork server ----------------------------------------------------- */

/* `farm-worker --serve`: started once by farmd, with a SOCK_SEQPACKET control
 * socket on fd 3. Each start request carries a run directory and, as
 * SCM_RIGHTS, the task's event socket and the stderr to use; the server forks,
 * and the child runs exactly what `farm-worker --run RUN_DIR` would run, in a
 * session of its own. Process start-up (exec, dynamic linking) is paid once
 * instead of once per task; every task still gets its own process.
 *
 * Protocol:
 *   farmd -> server  "S TOKEN RUN_DIR\nTASK_JSON" + fds [event, stderr], one
 *                    datagram per start
 *   server -> farmd  lines, several to a datagram:
 *                    "P TOKEN PID" (started) or "E TOKEN ERRNO" (fork failed),
 *                    "X PID STATUS" (a child ended; STATUS as from waitpid)
 * "P" and "E" go out at once; "X" lines wait up to REPORT_MS and go out
 * together (or with the next "P"): farmd needs them only to learn how a
 * worker that sent no result died, and one wake-up of farmd for many tasks
 * costs less than one each. For the same reason, while starts arrive less
 * than BURST_MS apart, exits are collected at each start rather than on
 * SIGCHLD; an "X" line then comes at most BURST_MS + REPORT_MS late. */

#define CTL_FD 3

/* SIGCHLD only has to interrupt ppoll: the loop reaps at every turn. */
static void server_on_chld(int sig)
{
    (void)sig;
}

#define REPORT_MS 5
#define BURST_MS 20

static char g_report[4096];
static size_t g_report_len;
static int64_t g_report_since;

static void server_flush(void)
{
    if (!g_report_len)
        return;
    while (send(CTL_FD, g_report, g_report_len, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
    g_report_len = 0;
}

static void server_send(const char *msg)
{
    size_t n = strlen(msg);
    if (g_report_len + n + 1 > sizeof g_report)
        server_flush();
    if (!g_report_len)
        g_report_since = farm_mono_ms();
    memcpy(g_report + g_report_len, msg, n);
    g_report[g_report_len + n] = '\n';
    g_report_len += n + 1;
    /* A start goes out at once (with what waits): farmd needs the pid to
     * signal the worker, and must not lose it if we die. */
    if (msg[0] != 'X')
        server_flush();
}

static void server_reap(void)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "X %d %d", (int)pid, st);
        server_send(msg);
    }
}

int farm__worker_serve(void)
{
    struct sigaction sa = {.sa_handler = server_on_chld};
    sigset_t chld, old, blocked;
    int nul;
    int64_t last_start = INT64_MIN / 2;
    /* Whether exec tasks start their command here: asked once, before any
     * fork. (No plugin's code is ever loaded into the server.) */
    builtin_exec();
    /* farmd starts us with LD_BIND_NOW (every symbol bound now, none in a
     * worker); tasks must not inherit it unless farmd's own environment had
     * it. */
    if (getenv("FARM_UNSET_BIND_NOW")) {
        unsetenv("LD_BIND_NOW");
        unsetenv("FARM_UNSET_BIND_NOW");
    }
    /* jansson's hash seed, read from /dev/urandom on first use: once here,
     * not in every worker. */
    json_object_seed(0);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    /* SIGCHLD is delivered only inside ppoll, so that none is missed
     * between a check and the wait. */
    sigprocmask(SIG_BLOCK, &chld, &old);
    blocked = old;
    sigaddset(&blocked, SIGCHLD);
    /* Every worker's stdin, opened once. */
    nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* Which signals a command must get back at their defaults: asked once
     * here rather than about every signal at every start. */
    farm_exec_cmd_prepare();
    for (;;) {
        static char buf[1 << 20];
        char cbuf[CMSG_SPACE(2 * sizeof(int))];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                            .msg_controllen = sizeof cbuf};
        struct cmsghdr *cm;
        int fds[2] = {-1, -1}, nfds = 0;
        unsigned long long token;
        char run_dir[PATH_MAX];
        json_t *parsed;
        ssize_t n;
        pid_t pid;

        struct pollfd pf = {.fd = CTL_FD, .events = POLLIN};
        struct timespec wait_ts, *wait = NULL;
        int64_t now = farm_mono_ms(), left = -1;
        /* While starts keep coming (a queue draining), exits are collected
         * here, at each start, instead of waking up for every SIGCHLD: one
         * wake-up per task instead of two. Once starts stop for BURST_MS,
         * SIGCHLD wakes us again. */
        int burst = now - last_start < BURST_MS;
        server_reap();
        if (g_report_len) {
            left = g_report_since + REPORT_MS - now;
            if (left <= 0) {
                server_flush();
                left = -1;
            }
        }
        if (burst && (left < 0 || last_start + BURST_MS - now < left))
            left = last_start + BURST_MS - now;
        if (left >= 0) {
            wait_ts.tv_sec = 0;
            wait_ts.tv_nsec = (long)left * 1000000L;
            wait = &wait_ts;
        }
        if ((n = ppoll(&pf, 1, wait, burst ? &blocked : &old)) <= 0) {
            if (n == 0 || errno == EINTR)
                continue;
            break;
        }
        n = recvmsg(CTL_FD, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* farmd went away: our children notice on their own */
        buf[n] = '\0';
        for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    if (nfds < 2)
                        fds[nfds++] = fd;
                    else
                        close(fd);
                }
            }
        }
        char *json = strchr(buf, '\n');
        if (json)
            *json++ = '\0';
        {
            int got = sscanf(buf, "S %llu %4095[^\n]", &token, run_dir);
            if (got != 2 || nfds != 2 || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
                /* A start we cannot make: say so, or farmd would wait for
                 * the worker forever (without descriptors to spare, the
                 * kernel drops the ones passed: MSG_CTRUNC). */
                for (int i = 0; i < nfds; i++)
                    close(fds[i]);
                if (got >= 1) {
                    char msg[96];
                    snprintf(msg, sizeof msg, "E %llu %d", token,
                             (mh.msg_flags & MSG_CTRUNC) ? EMFILE : EINVAL);
                    server_send(msg);
                }
                continue;
            }
        }
        last_start = farm_mono_ms();
        parsed = json && *json ? json_loads(json, 0, NULL) : NULL;
        /* SIGCHLD is blocked here, so the reaper cannot report the child
         * before its "P" line has gone out. */
        pid = fork();
        if (pid == 0) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            signal(SIGCHLD, SIG_DFL);
            setsid();
            dup2(nul, STDIN_FILENO);
            dup2(fds[1], STDOUT_FILENO);
            dup2(fds[1], STDERR_FILENO);
            dup2(fds[0], EVENT_FD); /* replaces the control socket */
            close(fds[0]);
            close(fds[1]);
            _exit(run_task(run_dir, json && *json ? json : NULL, parsed));
        }
        {
            char msg[96];
            if (pid < 0)
                snprintf(msg, sizeof msg, "E %llu %d", token, errno);
            else
                snprintf(msg, sizeof msg, "P %llu %d", token, (int)pid);
            server_send(msg);
        }
        json_decref(parsed);
        close(fds[0]);
        close(fds[1]);
    }
    /* farmd went away. After a stop our workers have ended their tasks and
     * are exiting: wait for them, so that when farmd has waited for us no
     * process of the farm is left. (After a crash of farmd they stop their
     * tasks first, within their grace period; nobody waits for us then.) */
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    return 0;
}

int farm__worker_run(const char *run_dir)
{
    return run_task(run_dir, NULL, NULL);
}

#ifndef FARM_IN_PLUGIN_HOST
int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--serve"))
        return farm__worker_serve();

    if (argc == 3 && !strcmp(argv[1], "--run"))
        return farm__worker_run(argv[2]);
    if ((argc == 3 && !strcmp(argv[1], "--describe")) ||
        (argc == 2 && !strcmp(argv[1], "--describe-all"))) {
        /* Describing loads plugins: that is farm-plugin-host's. */
        const char *host = plugin_host();
        argv[0] = "farm-plugin-host";
        if (host[0])
            execv(host, argv);
        fprintf(stderr, "farm-worker: cannot start the plugin host %s: %s\n",
                host[0] ? host : "farm-plugin-host", strerror(host[0] ? errno : ENOENT));
        return 2;
    }
    fprintf(stderr, "usage: farm-worker --run RUN_DIR | --describe PLUGIN | --describe-all\n"
                    "farm-worker is started by farmd and `farm run`; see `farm --help`.\n");
    return 2;
}
#endif
