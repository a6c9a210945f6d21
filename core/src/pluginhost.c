/*
 * farm-plugin-host: the one farm process that loads plugins (dlopen).
 *
 *   farm-plugin-host --serve         the fork server for tasks of loaded
 *                                    plugins (the supervisor of worker.c)
 *   farm-plugin-host --run RUN_DIR   one attempt, as farm-worker --run
 *   farm-plugin-host --task          the plugin process of one attempt
 *   farm-plugin-host --describe NAME|PATH   print the plugin's table as JSON
 *   farm-plugin-host --describe-all  every plugin in the search path
 *
 * For --task the supervisor (farm-worker) has set up the descriptors: 0 is
 * /dev/null, 1 and 2 the attempt's output, 3 the event stream to farmd, 4
 * the task (its JSON text, read once), 5 where the result line goes. The
 * environment already holds the task's variables, and the supervisor watches
 * this process: it kills it after the grace period when the plugin does not
 * return after a cancel.
 *
 * farm-worker is forked for every exec task and linked statically, which a
 * process that calls dlopen cannot be: plugins load here, in a process
 * forked from this program's supervisor, or (when farm-worker supervises a
 * plugin's task) in farm-plugin-host --task.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "farm/plugin.h"
#include "farm/pluginload.h"
#include "farm/util.h"
#include "worker-internal.h"

#define EVENT_FD 3
#define TASK_FD 4
#define RESULT_FD 5

/* ---- the plugin process: the host table ---------------------------------- */

struct farm_ctx {
    json_t *task;
    json_t *params;
    char *params_text;
    const char *work_dir, *deps_dir, *scratch_dir, *artifacts_dir;
    int event_fd;
    int exit_code, exit_code_set;
    int64_t last_progress_ms;
    pthread_mutex_t lock;
    /* A progress update that came within 100 ms of the one before waits
     * here, for the flusher thread (started on the first such update) to
     * send once the 100 ms are over, unless a newer one replaces it. */
    pthread_mutex_t progress_lock;
    pthread_cond_t progress_cond;
    int progress_pending, flusher_started;
    double pending_fraction;
    char pending_what[256];
};

static volatile sig_atomic_t g_cancelled;

static void on_term(int sig)
{
    (void)sig;
    g_cancelled = 1;
}

static void emit(struct farm_ctx *ctx, json_t *ev)
{
    if (ctx->event_fd < 0) {
        json_decref(ev);
        return;
    }
    pthread_mutex_lock(&ctx->lock);
    farm_json_write_line(ctx->event_fd, ev);
    pthread_mutex_unlock(&ctx->lock);
    json_decref(ev);
}

static void host_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[4096];
    va_list ap;
    int n;
    (void)ctx;
    if (level < 0 || level > 3)
        level = FARM_LOG_INFO;
    n = snprintf(line, sizeof line, "[%s] ", names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    /* One line in the log, as the header promises: a newline inside the
     * message would start a line without the level, so it is shown as the
     * two characters \n. */
    {
        char out[2 * sizeof line];
        size_t o = 0;
        for (int i = 0; i < n && o < sizeof out - 3; i++) {
            if (line[i] == '\n') {
                out[o++] = '\\';
                out[o++] = 'n';
            } else {
                out[o++] = line[i];
            }
        }
        out[o++] = '\n';
        farm_write_all(STDERR_FILENO, out, o);
    }
}

/* `what` as one line of UTF-8 for a progress event: bytes that are not
 * UTF-8 and control characters become '?'; at most `len` - 1 bytes, cut at
 * a character's end. */
static void progress_text(const char *what, char *out, size_t len)
{
    size_t o = 0;
    while (what && *what) {
        unsigned cp;
        size_t n = farm_utf8_next(what, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7f) {
            if (o + 1 >= len)
                break;
            out[o++] = '?';
            what += n ? n : 1;
            continue;
        }
        if (o + n >= len)
            break;
        memcpy(out + o, what, n);
        o += n;
        what += n;
    }
    out[o] = '\0';
}

static void progress_send(struct farm_ctx *ctx, double fraction, const char *what)
{
    emit(ctx, json_pack("{s:s,s:f,s:s?}", "ev", "progress", "fraction", fraction, "what", what));
}

/* Sends the update that waits, under the progress lock (held by the
 * caller), so that no newer update can overtake it. */
static void send_pending(struct farm_ctx *ctx)
{
    ctx->progress_pending = 0;
    ctx->last_progress_ms = farm_mono_ms();
    progress_send(ctx, ctx->pending_fraction, ctx->pending_what[0] ? ctx->pending_what : NULL);
}

static void *progress_flusher(void *arg)
{
    struct farm_ctx *ctx = arg;
    pthread_mutex_lock(&ctx->progress_lock);
    for (;;) {
        int64_t left;
        while (!ctx->progress_pending)
            pthread_cond_wait(&ctx->progress_cond, &ctx->progress_lock);
        left = ctx->last_progress_ms + 100 - farm_mono_ms();
        if (left > 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
            pthread_mutex_unlock(&ctx->progress_lock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&ctx->progress_lock);
            continue;
        }
        send_pending(ctx);
    }
    return NULL;
}

static void host_progress(struct farm_ctx *ctx, double fraction, const char *what)
{
    char text[sizeof ctx->pending_what];
    int64_t now = farm_mono_ms();
    if (!(fraction >= 0))
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    progress_text(what, text, sizeof text);
    pthread_mutex_lock(&ctx->progress_lock);
    /* At most ten updates a second, but always the last one: an update
     * within 100 ms of the one before waits for them to pass. */
    if (fraction < 1 && now - ctx->last_progress_ms < 100) {
        ctx->progress_pending = 1;
        ctx->pending_fraction = fraction;
        memcpy(ctx->pending_what, text, sizeof text);
        if (!ctx->flusher_started) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            ctx->flusher_started = pthread_create(&t, &attr, progress_flusher, ctx) == 0;
            pthread_attr_destroy(&attr);
        }
        if (ctx->flusher_started)
            pthread_cond_signal(&ctx->progress_cond);
        pthread_mutex_unlock(&ctx->progress_lock);
        return;
    }
    ctx->progress_pending = 0;
    ctx->last_progress_ms = now;
    progress_send(ctx, fraction, what ? text : NULL);
    pthread_mutex_unlock(&ctx->progress_lock);
}

/* Sends a progress update still waiting (when the plugin returns). */
static void progress_flush(struct farm_ctx *ctx)
{
    pthread_mutex_lock(&ctx->progress_lock);
    if (ctx->progress_pending)
        send_pending(ctx);
    pthread_mutex_unlock(&ctx->progress_lock);
}

static int valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_./-", *s)))
            return 0;
    return 1;
}

static int host_metric(struct farm_ctx *ctx, const char *name, double value, int64_t step)
{
    json_t *ev;
    if (!name || !valid_metric_name(name))
        return -EINVAL;
    ev = json_pack("{s:s,s:s,s:I,s:I}", "ev", "metric", "name", name, "step", (json_int_t)step,
                   "t", (json_int_t)farm_now_ms());
    /* JSON has no NaN or infinity: a non-finite value travels as null. */
    json_object_set_new(ev, "value", isfinite(value) ? json_real(value) : json_null());
    emit(ctx, ev);
    return 0;
}

static int host_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct stat st;
    struct farm_err err;
    int in, out, rc = 0;
    int64_t copied = 0;
    if (!path)
        return -EINVAL;
    if (!name)
        name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (!farm_artifact_name_ok(name))
        return -EINVAL;
    if (path[0] == '/')
        snprintf(src, sizeof src, "%s", path);
    else
        snprintf(src, sizeof src, "%s/%s", ctx->work_dir, path);
    if (snprintf(dst, sizeof dst, "%s/%s", ctx->artifacts_dir, name) >= (int)sizeof dst)
        return -ENAMETOOLONG;
    if (stat(src, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    {
        /* The stored file itself, given again: it is stored already (a
         * copy onto itself would first empty it). */
        struct stat dst_st;
        if (stat(dst, &dst_st) == 0 && dst_st.st_dev == st.st_dev &&
            dst_st.st_ino == st.st_ino) {
            emit(ctx, json_pack("{s:s,s:s,s:I}", "ev", "artifact", "name", name, "size",
                                (json_int_t)st.st_size));
            return 0;
        }
    }
    farm_err_clear(&err);
    if ((rc = farm_mkdirs(ctx->artifacts_dir, 0755)) < 0)
        return rc;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = -errno;
        close(in);
        return rc;
    }
    for (;;) {
        char buf[65536];
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if ((rc = farm_write_all(out, buf, (size_t)n)) < 0)
            break;
        copied += n;
    }
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        unlink(dst);
        return rc;
    }
    /* The size of what was stored: a file that grew or shrank while it was
     * copied, or one of /proc (whose size says 0), is listed as stored. */
    emit(ctx, json_pack("{s:s,s:s,s:I}", "ev", "artifact", "name", name, "size",
                        (json_int_t)copied));
    return 0;
}

static const char *host_params_json(struct farm_ctx *ctx)
{
    return ctx->params_text;
}
static const char *host_work_dir(struct farm_ctx *ctx)
{
    return ctx->work_dir;
}
static const char *host_deps_dir(struct farm_ctx *ctx)
{
    return ctx->deps_dir;
}
static const char *host_scratch_dir(struct farm_ctx *ctx)
{
    /* Made on first use. */
    if (ctx->scratch_dir)
        farm_mkdirs(ctx->scratch_dir, 0755);
    return ctx->scratch_dir;
}
static int host_cancelled(struct farm_ctx *ctx)
{
    (void)ctx;
    return g_cancelled != 0;
}

static int host_param_string(struct farm_ctx *ctx, const char *name, const char **out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_string(v))
        return -EINVAL;
    *out = json_string_value(v);
    return 0;
}

static int host_param_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_integer(v))
        return -EINVAL;
    *out = json_integer_value(v);
    return 0;
}

static int host_param_number(struct farm_ctx *ctx, const char *name, double *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_number(v))
        return -EINVAL;
    *out = json_number_value(v);
    return 0;
}

static int host_param_bool(struct farm_ctx *ctx, const char *name, int *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_boolean(v))
        return -EINVAL;
    *out = json_is_true(v);
    return 0;
}

static void host_set_exit_code(struct farm_ctx *ctx, int code)
{
    ctx->exit_code = code;
    ctx->exit_code_set = 1;
}

static const struct farm_host g_host = {
    .size = sizeof(struct farm_host),
    .abi_major = FARM_PLUGIN_ABI_MAJOR,
    .abi_minor = FARM_PLUGIN_ABI_MINOR,
    .log = host_log,
    .progress = host_progress,
    .metric = host_metric,
    .artifact = host_artifact,
    .params_json = host_params_json,
    .work_dir = host_work_dir,
    .deps_dir = host_deps_dir,
    .cancelled = host_cancelled,
    .param_string = host_param_string,
    .param_int = host_param_int,
    .param_number = host_param_number,
    .param_bool = host_param_bool,
    .scratch_dir = host_scratch_dir,
    .set_exit_code = host_set_exit_code,
};

/* Writes the plugin process's outcome to the supervisor: one JSON line. */
static void report(int fd, const char *state, int exit_code, const char *reason, int rc)
{
    json_t *r = json_pack("{s:s,s:i,s:i}", "state", state, "exit_code", exit_code, "rc", rc);
    if (reason)
        json_object_set_new(r, "reason", json_string(reason));
    farm_json_write_line(fd, r);
    json_decref(r);
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* How long a plugin may take to load and describe itself. */
#define DESCRIBE_MS 10000

/* While the plugin loads (its constructors run) in the plugin process, a
 * crash, or a load that takes longer than describing it may, ends the
 * process with the refusal describing it would give: the result line is
 * made before the load, and the handlers only append the cause. */
static int g_load_fd = -1;
static char g_load_head[2 * PATH_MAX + 160];
static size_t g_load_head_len;

static void load_refuse(const char *why)
{
    char line[sizeof g_load_head + 128];
    size_t n = g_load_head_len, w = strlen(why);
    memcpy(line, g_load_head, n);
    memcpy(line + n, why, w);
    n += w;
    memcpy(line + n, "\"}\n", 3);
    n += 3;
    if (write(g_load_fd, line, n) < 0)
        _exit(1);
}

static void on_load_crash(int sig)
{
    char why[96] = "crashed while loading (";
    const char *name = farm_signame(sig);
    size_t n = strlen(why), m = strlen(name);
    memcpy(why + n, name, m);
    why[n + m] = ')';
    why[n + m + 1] = '\0';
    load_refuse(why);
    _exit(0);
}

static void on_load_alarm(int sig)
{
    (void)sig;
    load_refuse("loading it took longer than 10 s (it was stopped)");
    _exit(0);
}

static const int g_load_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE,
                                     SIGABRT, SIGSYS, SIGTRAP, SIGALRM};
#define N_LOAD_SIGNALS (sizeof g_load_signals / sizeof *g_load_signals)
static struct sigaction g_load_saved[N_LOAD_SIGNALS];

/* Arms (path given) or disarms (NULL) the guard around loading `path`.
 * Disarming gives each signal back what it had before, unless the plugin
 * set a handler of its own while it loaded (a language runtime's, say):
 * that one stays. */
static void load_guard(const char *path, int result_fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (!path) {
        alarm(0);
        for (size_t i = 0; i < N_LOAD_SIGNALS; i++) {
            struct sigaction now;
            if (sigaction(g_load_signals[i], NULL, &now) == 0 &&
                (now.sa_handler == on_load_crash || now.sa_handler == on_load_alarm))
                sigaction(g_load_signals[i], &g_load_saved[i], NULL);
        }
        return;
    }
    {
        char *quoted, prefix[PATH_MAX + 16];
        json_t *j;
        snprintf(prefix, sizeof prefix, "%s: refused: ", path);
        j = json_string(prefix);
        quoted = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (!quoted)
            return;
        /* Everything but the closing quote: the cause follows. */
        g_load_head_len = (size_t)snprintf(
            g_load_head, sizeof g_load_head, "{\"state\":\"failed\",\"exit_code\":1,\"rc\":%d,"
                                             "\"reason\":%.*s",
            FARM_EBADPLUGIN, (int)strlen(quoted) - 1, quoted);
        free(quoted);
        if (g_load_head_len >= sizeof g_load_head)
            return;
    }
    g_load_fd = result_fd;
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < N_LOAD_SIGNALS; i++) {
        sa.sa_handler = g_load_signals[i] == SIGALRM ? on_load_alarm : on_load_crash;
        sigaction(g_load_signals[i], &sa, &g_load_saved[i]);
    }
    alarm(DESCRIBE_MS / 1000);
}

/* The plugin process: never returns. */
void farm__plugin_main(json_t *task, const char *home, int result_fd)
{
    struct farm_ctx ctx = {.task = task, .event_fd = EVENT_FD};
    const struct farm_plugin *plugin;
    struct farm_err err;
    char path[PATH_MAX];
    json_t *desc;
    struct sigaction sa = {.sa_handler = on_term};
    int rc;

    pthread_mutex_init(&ctx.lock, NULL);
    pthread_mutex_init(&ctx.progress_lock, NULL);
    pthread_cond_init(&ctx.progress_cond, NULL);
    /* Standard output goes to a pipe or the log: line by line, as on a
     * terminal, so that it stays in order with standard error and the
     * host's log lines, and a plugin that crashes loses no finished line. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Commands the plugin starts must not inherit the event channel. */
    fcntl(EVENT_FD, F_SETFD, FD_CLOEXEC);
    /* Cancellation is cooperative here: the handler only sets the flag that
     * cancelled() returns; the supervisor kills the process after the grace
     * period if the plugin does not return. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    ctx.work_dir = jstr(task, "work_dir");
    ctx.deps_dir = jstr(task, "deps_dir");
    ctx.scratch_dir = jstr(task, "scratch_dir");
    ctx.artifacts_dir = jstr(task, "artifacts_dir");
    if (chdir(ctx.work_dir) < 0) {
        fprintf(stderr, "farm: cannot enter work dir %s: %s\n", ctx.work_dir, strerror(errno));
        report(result_fd, "failed", 1, "cannot enter the work directory", -errno);
        _exit(0);
    }
    farm_err_clear(&err);
    if ((rc = farm__plugin_find(jstr(task, "plugin"), home, path, sizeof path, &err)) == 0) {
        load_guard(path, result_fd);
        rc = farm__plugin_load(path, home, &plugin, &err);
        load_guard(NULL, -1);
    }
    if (rc < 0) {
        fprintf(stderr, "farm: %s\n", err.msg);
        report(result_fd, "failed", 1, err.msg, rc);
        _exit(0);
    }
    desc = farm__plugin_describe(plugin, path);
    if ((rc = farm__params_check(desc, json_object_get(task, "params"), &err)) < 0) {
        fprintf(stderr, "farm: %s\n", err.msg);
        report(result_fd, "failed", 2, err.msg, rc);
        _exit(0);
    }
    ctx.params = farm__params_with_defaults(desc, json_object_get(task, "params"));
    ctx.params_text = json_dumps(ctx.params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(desc);

    rc = plugin->run(&g_host, &ctx);
    progress_flush(&ctx);
    fflush(stdout);
    fflush(stderr);
    if (rc == 0 && !g_cancelled) {
        int code = ctx.exit_code_set ? ctx.exit_code : 0;
        report(result_fd, code == 0 ? "succeeded" : "failed", code,
               code == 0 ? NULL : "the command exited with a non-zero status", 0);
    } else {
        char why[256];
        snprintf(why, sizeof why, "plugin %s returned %d (%s)", plugin->name, rc,
                 rc < 0 ? farm_strerror(rc) : "not a negative code");
        report(result_fd, "failed", ctx.exit_code_set ? ctx.exit_code : 1,
               rc == 0 ? NULL : why, rc);
    }
    _exit(0);
}

/* ---- describe ------------------------------------------------------------ */

/* The description of the plugin at `path`, or an error object (with "path"
 * when `with_path`). The plugin is loaded in a child of its own, so that its
 * constructors can neither print into our answer (their standard output
 * goes to our standard error), nor crash or hang this process: a child that
 * gives no line within DESCRIBE_MS is killed with its process group. Only
 * the first line is read, so that a process the plugin left behind holding
 * the pipe does not hold us either. */
static json_t *describe_in_child(const char *path, const char *home, int with_path)
{
    int fds[2], st = 0, timed_out = 0;
    pid_t pid;
    char *buf = NULL, why[PATH_MAX + 512];
    size_t cap = 0, got = 0;
    int64_t deadline = farm_mono_ms() + DESCRIBE_MS;
    json_t *desc = NULL;
    if (pipe2(fds, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
        snprintf(why, sizeof why, "%s: cannot describe it: %s", path, strerror(errno));
        goto error;
    }
    if (pid == 0) {
        const struct farm_plugin *p;
        struct farm_err err;
        setpgid(0, 0);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        farm_err_clear(&err);
        if (farm__plugin_load(path, home, &p, &err) < 0)
            desc = json_pack("{s:{s:s,s:s}}", "error", "code", farm_err_name(err.code),
                             "message", err.msg);
        else
            desc = farm__plugin_describe(p, path);
        farm_json_write_line(fds[1], desc);
        _exit(0);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        int64_t left = deadline - farm_mono_ms();
        ssize_t r;
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (poll(&pf, 1, (int)left) <= 0)
            continue; /* EINTR, or the deadline: checked above */
        if (got + 4096 > cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!nb)
                break;
            buf = nb;
        }
        r = read(fds[0], buf + got, cap - got - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(buf + got - (size_t)r, '\n', (size_t)r))
            break;
    }
    close(fds[0]);
    /* It exits right after its line; one that does not (a destructor that
     * hangs) is stopped. */
    if (!timed_out)
        deadline = farm_mono_ms() + 1000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        struct timespec ts = {0, 5 * 1000000};
        if (farm_mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        nanosleep(&ts, NULL);
    }
    if (buf) {
        buf[got] = '\0';
        desc = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
        free(buf);
    }
    if (desc && !timed_out) {
        if (with_path && json_object_get(desc, "error"))
            json_object_set_new(desc, "path", json_string(path));
        return desc;
    }
    json_decref(desc);
    if (timed_out)
        snprintf(why, sizeof why,
                 "%s: refused: loading it took longer than %d s (it was stopped)", path,
                 DESCRIBE_MS / 1000);
    else if (WIFSIGNALED(st))
        snprintf(why, sizeof why, "%s: refused: crashed while loading (%s)", path,
                 farm_signame(WTERMSIG(st)));
    else
        snprintf(why, sizeof why, "%s: refused: it gave no description (exit status %d)", path,
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
error:
    return with_path ? json_pack("{s:s,s:{s:s,s:s}}", "path", path, "error", "code",
                                 "FARM_EBADPLUGIN", "message", why)
                     : json_pack("{s:{s:s,s:s}}", "error", "code", "FARM_EBADPLUGIN", "message",
                                 why);
}

static int describe(const char *name)
{
    char path[PATH_MAX], home[PATH_MAX];
    struct farm_err err;
    const char *h = farm_home_path(home, sizeof home) == 0 ? home : NULL;
    json_t *d;
    farm_err_clear(&err);
    if (farm__plugin_find(name, h, path, sizeof path, &err) < 0)
        d = json_pack("{s:{s:s,s:s}}", "error", "code", farm_err_name(err.code), "message",
                      err.msg);
    else
        d = describe_in_child(path, h, 0);
    farm_json_write_line(STDOUT_FILENO, d);
    {
        int bad = json_object_get(d, "error") != NULL;
        json_decref(d);
        return bad ? 2 : 0;
    }
}

/* Every plugin of the search path, each described in a child of its own. */
static int describe_all(void)
{
    char dirs[FARM_PLUGIN_MAX_DIRS][PATH_MAX], home[PATH_MAX];
    const char *h = farm_home_path(home, sizeof home) == 0 ? home : NULL;
    int n = farm__plugin_dirs(h, dirs, FARM_PLUGIN_MAX_DIRS);
    json_t *all = json_array();
    for (int i = 0; i < n; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        if (!d)
            continue;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            char path[PATH_MAX + 256];
            if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0)
                continue;
            snprintf(path, sizeof path, "%.4000s/%.255s", dirs[i], e->d_name);
            json_array_append_new(all, describe_in_child(path, h, 1));
        }
        closedir(d);
    }
    farm_json_write_line(STDOUT_FILENO, all);
    json_decref(all);
    return 0;
}

/* --task: reads the task the supervisor wrote, then runs it. */
static int run_plugin_task(void)
{
    char *text = NULL;
    size_t cap = 0, got = 0;
    json_error_t je;
    json_t *task;
    int rerr = 0;
    /* What the plugin starts inherits none of these. */
    fcntl(TASK_FD, F_SETFD, FD_CLOEXEC);
    fcntl(RESULT_FD, F_SETFD, FD_CLOEXEC);
    for (;;) {
        ssize_t n;
        if (got + 4096 > cap) {
            char *t = realloc(text, cap = cap ? cap * 2 : 16384);
            if (!t) {
                report(RESULT_FD, "failed", 1, "farm-plugin-host: out of memory", -ENOMEM);
                return 0;
            }
            text = t;
        }
        n = read(TASK_FD, text + got, cap - got - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rerr = errno;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(TASK_FD);
    if (rerr) {
        char why[256];
        snprintf(why, sizeof why, "farm-plugin-host: cannot read the task on fd %d: %s", TASK_FD,
                 strerror(rerr));
        fprintf(stderr, "farm: %s\n", why);
        report(RESULT_FD, "failed", 1, why, -rerr);
        free(text);
        return 0;
    }
    if (!text || !(text[got] = '\0', task = json_loads(text, 0, &je))) {
        char why[256];
        snprintf(why, sizeof why, "farm-plugin-host: the task on fd %d is not JSON (%s)", TASK_FD,
                 text ? je.text : "empty");
        fprintf(stderr, "farm: %s\n", why);
        report(RESULT_FD, "failed", 1, why, -EINVAL);
        free(text);
        return 0;
    }
    free(text);
    farm__plugin_main(task, jstr(task, "home") && *jstr(task, "home") ? jstr(task, "home") : NULL,
                      RESULT_FD);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--serve"))
        return farm__worker_serve();
    if (argc == 3 && !strcmp(argv[1], "--run"))
        return farm__worker_run(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--task"))
        return run_plugin_task();
    if (argc == 3 && !strcmp(argv[1], "--describe"))
        return describe(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--describe-all"))
        return describe_all();
    fprintf(stderr, "usage: farm-plugin-host --serve | --run RUN_DIR | --task | --describe PLUGIN | "
                    "--describe-all\n"
                    "farm-plugin-host is started by farm-worker; see `farm --help`.\n");
    return 2;
}
