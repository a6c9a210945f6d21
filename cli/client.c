#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

/* The directory of this program, looked up when first needed: most verbs
 * start no other program. */
void cli_sibling(const struct cli *cli, const char *name, char *buf, size_t len)
{
    static char dir[PATH_MAX];
    int rc;
    (void)cli;
    if (!dir[0] && (rc = farm_exe_dir(dir, sizeof dir)) < 0) {
        fprintf(stderr, "farm: cannot find my own directory (/proc/self/exe): %s\n",
                strerror(-rc));
        exit(CLI_USAGE);
    }
    snprintf(buf, len, "%.4000s/%s", dir, name);
}

static int try_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;
    if (strlen(path) >= sizeof a.sun_path)
        return -ENAMETOOLONG;
    memcpy(a.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Starts farmd detached from us: its own session, no terminal, stdio to
 * /dev/null (farmd writes farmd.log itself). */
static int start_farmd(struct cli *cli)
{
    char path[PATH_MAX];
    pid_t pid;
    int st;
    cli_sibling(cli, "farmd", path, sizeof path);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        setsid();
        if (fork() != 0)
            _exit(0);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(path, "farmd", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    return 0;
}

int cli_farmd_holds_home(struct cli *cli)
{
    char path[2200];
    int fd, held;
    snprintf(path, sizeof path, "%s/farmd.pid", cli->home);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    /* farmd holds an exclusive lock on it for as long as it lives. */
    held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int cli_wait_farmd_gone(struct cli *cli, const char *sock, int *fd)
{
    int said = 0;
    int64_t start = farm_mono_ms();
    /* Up to 10 minutes: a stop takes about twice the grace period. */
    while (farm_mono_ms() - start < 600 * 1000) {
        struct timespec ts = {0, 50 * 1000000};
        if ((*fd = try_connect(sock)) >= 0)
            return 1; /* a farmd serves (one that was starting) */
        if (!cli_farmd_holds_home(cli))
            return 0;
        if (!said && !cli->quiet && farm_mono_ms() - start > 500) {
            fprintf(stderr, "farm: farmd is stopping (or starting); waiting for it\n");
            said = 1;
        }
        nanosleep(&ts, NULL);
    }
    return 0;
}

int cli_probe(struct cli *cli)
{
    char sock[2200];
    snprintf(sock, sizeof sock, "%s/farm.sock", cli->home);
    return try_connect(sock);
}

int cli_connect(struct cli *cli, int autostart)
{
    char sock[2200];
    int fd;
    snprintf(sock, sizeof sock, "%s/farm.sock", cli->home);
    fd = try_connect(sock);
    if (fd >= 0)
        return fd;
    if (fd == -ENAMETOOLONG) {
        if (cli->quiet)
            return -1;
        fprintf(stderr, "farm: socket path %s is too long for a unix socket (108 bytes); use a "
                        "shorter FARM_HOME\n", sock);
        return -1;
    }
    if (autostart && (fd == -ENOENT || fd == -ECONNREFUSED)) {
        struct farm_err err;
        if (farm_home_ensure(cli->home, &err) < 0) {
            if (!cli->quiet)
                fprintf(stderr, "farm: %s\n", err.msg);
            return -1;
        }
        /* A farmd that is stopping has closed its socket but holds the
         * home: wait until it is gone (or serves) before starting one. */
        if (cli_wait_farmd_gone(cli, sock, &fd))
            return fd;
        start_farmd(cli);
        for (int i = 0; i < 200; i++) {
            struct timespec ts = {0, 25 * 1000000};
            fd = try_connect(sock);
            if (fd >= 0)
                return fd;
            nanosleep(&ts, NULL);
        }
    }
    if (cli->quiet)
        return -1;
    fprintf(stderr, "farm: farmd unreachable at %s: %s%s\n", sock, strerror(-fd),
            autostart ? " (and starting it failed; see farmd.log in FARM_HOME)" : "");
    return -1;
}

int cli_read_json(int fd, json_t **out, int timeout_ms)
{
    static char *buf;
    static size_t len, cap;
    json_error_t je;
    int64_t deadline = timeout_ms >= 0 ? farm_mono_ms() + timeout_ms : -1;
    for (;;) {
        char *nl = len ? memchr(buf, '\n', len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - buf);
            json_t *j = json_loadb(buf, n, 0, &je);
            memmove(buf, nl + 1, len - n - 1);
            len -= n + 1;
            if (!j)
                return FARM_EBADREQ;
            *out = j;
            return 0;
        }
        /* Most replies are a line of a few hundred bytes: start small
         * (a large first buffer is a mapping of its own to make, touch and
         * remove), and double while a reply grows. */
        if (cap - len < cap / 4 || cap - len < 4096) {
            char *more = realloc(buf, cap ? cap * 2 : 16384);
            if (!more)
                return -ENOMEM;
            buf = more;
            cap = cap ? cap * 2 : 16384;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int wait = -1;
        if (deadline >= 0) {
            /* At the deadline, what has arrived is still read (a wait
             * --timeout 0 on tasks that have ended gets its answer). */
            int64_t left = deadline - farm_mono_ms();
            wait = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int r = poll(&p, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -ECONNRESET : -errno;
        len += (size_t)n;
    }
}

/* Writes `req` as one line. send() with MSG_NOSIGNAL, not write(): when
 * farmd died, a write to its socket must fail with EPIPE (reported as a
 * lost connection, exit 3) instead of raising SIGPIPE, whose default action
 * would end farm silently. SIGPIPE keeps its default for standard output,
 * so that `farm logs ID | head -1` still ends quietly. */
int cli_write_json(int fd, const json_t *req)
{
    char *s = json_dumps(req, JSON_COMPACT);
    size_t n, off = 0;
    if (!s)
        return -ENOMEM;
    n = strlen(s);
    s[n++] = '\n'; /* overwrite the terminator: send n+1 bytes */
    while (off < n) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            free(s);
            return -e;
        }
        off += (size_t)w;
    }
    free(s);
    return 0;
}

int cli_call_fd(int fd, json_t *req, json_t **reply, int timeout_ms)
{
    int rc;
    if (!req)
        return -EINVAL;
    json_object_set_new(req, "v", json_integer(FARM_PROTO_VERSION));
    rc = cli_write_json(fd, req);
    json_decref(req);
    /* farmd refuses a request larger than its cap with a reply, then closes:
     * our send fails, but its answer waits to be read. */
    if ((rc == -EPIPE || rc == -ECONNRESET) && cli_read_json(fd, reply, 1000) == 0)
        return 0;
    if (rc < 0)
        return rc;
    return cli_read_json(fd, reply, timeout_ms);
}

int cli_call(struct cli *cli, json_t *req, json_t **reply)
{
    int fd, rc;
    /* json_pack() returns NULL when a text is not valid UTF-8. The verbs
     * check what the user gave before building a request; this catches
     * what they missed, rather than sending nothing and reporting a lost
     * connection. */
    if (!req) {
        if (!cli->quiet)
            fprintf(stderr, "farm: the request to farmd could not be encoded as JSON (a text "
                            "that is not valid UTF-8?)\n");
        return CLI_USAGE;
    }
    fd = cli_connect(cli, 1);
    if (fd < 0) {
        json_decref(req);
        return CLI_UNREACHABLE;
    }
    rc = cli_call_fd(fd, req, reply, -1);
    close(fd);
    if (rc < 0) {
        if (!cli->quiet)
            fprintf(stderr, "farm: lost the connection to farmd: %s\n", farm_strerror(rc));
        return CLI_UNREACHABLE;
    }
    return 0;
}

int cli_exit_for_name(const char *name)
{
    if (!name)
        return CLI_USAGE;
    if (!strcmp(name, "FARM_EUNREACH"))
        return CLI_UNREACHABLE;
    if (!strcmp(name, "FARM_ETIMEOUT"))
        return CLI_TIMEOUT;
    if (!strcmp(name, "FARM_ESHUTDOWN"))
        return CLI_UNREACHABLE;
    if (!strcmp(name, "FARM_EDB"))
        return CLI_TASK_FAILED; /* docs/cli.md: 1 for a database error */
    return CLI_USAGE;
}

int cli_exit_for(int code)
{
    return cli_exit_for_name(farm_err_name(code));
}

int cli_reply_error(const char *verb, json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    /* The message may quote a task's name or command: no control
     * character of those reaches the terminal. */
    char *shown = msg ? farm_escape_text(msg) : NULL;
    fprintf(stderr, "farm %s: %s\n", verb,
            shown ? shown : msg ? msg : "farmd refused the request");
    free(shown);
    return cli_exit_for_name(json_string_value(json_object_get(e, "code")));
}

void cli_print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

int cli_usage(const char *verb, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "farm %s: ", verb);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'farm %s --help'.\n", verb);
    return CLI_USAGE;
}

int cli_parse_id(const char *s, long long *out)
{
    long long v = 0;
    /* Plain decimal digits only: no sign, space or leading zero, so that an
     * id is written one way ("1", never " 1", "+1" or "01"). */
    if (*s < '1' || *s > '9')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (LLONG_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

int cli_text_ok(const char *s)
{
    /* The test is jansson's own: exactly what json_string() refuses. */
    json_t *j = s ? json_string(s) : NULL;
    if (!s || j) {
        json_decref(j);
        return 1;
    }
    return 0;
}

int cli_check_text(const char *verb, const char *what, const char *s, const char *why)
{
    char *esc;
    if (cli_text_ok(s))
        return 0;
    esc = farm_escape_text(s);
    fprintf(stderr, "farm %s: %s \"%s\" is not valid UTF-8 (%s)\n", verb, what, esc ? esc : "?",
            why ? why : "farm talks to farmd in JSON text, which must be UTF-8");
    free(esc);
    return CLI_USAGE;
}

int cli_worker_json(struct cli *cli, const char *const *args, json_t **out)
{
    return cli_helper_json(cli, "farm-worker", args, out);
}

int cli_helper_json(struct cli *cli, const char *prog, const char *const *args, json_t **out)
{
    char path[PATH_MAX], *argv[8];
    int fds[2], st, n = 0;
    pid_t pid;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cli_sibling(cli, prog, path, sizeof path);
    argv[n++] = path;
    for (; *args && n < 7; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fds[0], buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fds[0]);
    waitpid(pid, &st, 0);
    if (!buf) {
        fprintf(stderr, "farm: %s gave no answer\n", path);
        return -1;
    }
    buf[len] = '\0';
    *out = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
    free(buf);
    if (!*out) {
        fprintf(stderr, "farm: %s gave no answer%s\n", path,
                WIFSIGNALED(st) ? " (it crashed)" : "");
        return -1;
    }
    return 0;
}
