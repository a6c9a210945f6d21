#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

static const char *terminal[] = {"succeeded", "failed", "timed_out", "cancelled", "skipped", NULL};

static int is_terminal(const char *s)
{
    for (int i = 0; terminal[i]; i++)
        if (!strcmp(s, terminal[i]))
            return 1;
    return 0;
}

static json_t *show(struct cli *cli, int fd, long long id, int *rc)
{
    json_t *reply;
    if (cli_call_fd(fd, json_pack("{s:s,s:I}", "op", "show", "id", (json_int_t)id), &reply, 30000) < 0) {
        fprintf(stderr, "farm logs: lost the connection to farmd\n");
        *rc = CLI_UNREACHABLE;
        return NULL;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        *rc = cli_reply_error("logs", reply);
        json_decref(reply);
        return NULL;
    }
    (void)cli;
    return reply;
}

static int copy_from(int in, off_t *off)
{
    char buf[65536];
    ssize_t n;
    int any = 0;
    while ((n = pread(in, buf, sizeof buf, *off)) > 0) {
        int rc = farm_write_all(STDOUT_FILENO, buf, (size_t)n);
        if (rc < 0) {
            /* Nobody reads any more (`| head`, with SIGPIPE ignored), or the
             * output cannot be written: following on would be for nothing. */
            if (rc != -EPIPE)
                fprintf(stderr, "farm logs: writing standard output: %s\n", strerror(-rc));
            exit(CLI_TASK_FAILED);
        }
        *off += n;
        any = 1;
    }
    return any;
}

int cmd_logs(struct cli *cli, int argc, char **argv)
{
    long long id = 0, attempt = 0;
    int follow = 0, fd, rc = 0, in = -1;
    const char *v;
    json_t *reply, *t;
    char path[PATH_MAX + 32];
    off_t off = 0;

    for (int i = 1; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow")) {
            follow = 1;
        } else if (!strcmp(argv[i], "--json")) {
            continue;
        } else if ((r = cli_opt("logs", argc, argv, &i, "--attempt", &v)) != 0) {
            if (r < 0 || cli_parse_id(v, &attempt) < 0)
                return cli_usage("logs", "--attempt: expected an attempt number");
        } else if (id) {
            return cli_usage("logs", "unexpected extra argument \"%s\"", argv[i]);
        } else if (cli_parse_id(argv[i], &id) < 0) {
            return cli_usage("logs", "expected one task id, got \"%s\"", argv[i]);
        }
    }
    if (!id)
        return cli_usage("logs", "expected a task id");
    if ((fd = cli_connect(cli, 1)) < 0)
        return CLI_UNREACHABLE;
    if (!(reply = show(cli, fd, id, &rc))) {
        close(fd);
        return rc;
    }
    t = json_object_get(reply, "task");
    if (attempt) {
        json_t *a = json_array_get(json_object_get(t, "attempt_history"), (size_t)(attempt - 1));
        if (!a) {
            fprintf(stderr, "farm logs: task %lld has no attempt %lld\n", id, attempt);
            json_decref(reply);
            close(fd);
            return CLI_USAGE;
        }
        if (json_is_true(json_object_get(a, "log_removed"))) {
            fprintf(stderr, "farm logs: the log of attempt %lld of task %lld was removed by "
                            "retention (see farm daemon --help: --keep-runs, --keep-days)\n",
                    attempt, id);
            json_decref(reply);
            close(fd);
            return CLI_USAGE;
        }
        snprintf(path, sizeof path, "%s", json_string_value(json_object_get(a, "log")));
        follow = follow && !json_is_string(json_object_get(a, "finished_at"));
    } else {
        snprintf(path, sizeof path, "%s", json_string_value(json_object_get(t, "log")));
    }
    if (follow && json_is_true(json_object_get(t, "run_pruned")))
        follow = 0; /* an ended task whose log is gone: said below, as without -f */
    if (!follow) {
        in = open(path, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            const char *state = json_string_value(json_object_get(t, "state"));
            if (errno == ENOENT && json_is_true(json_object_get(t, "run_pruned"))) {
                fprintf(stderr, "farm logs: the log of task %lld was removed by retention (see "
                                "farm daemon --help: --keep-runs, --keep-days)\n", id);
                json_decref(reply);
                close(fd);
                return CLI_USAGE;
            }
            if (errno == ENOENT && is_terminal(state)) {
                /* A task that wrote nothing has no log file: its log is empty. */
                json_decref(reply);
                close(fd);
                return CLI_OK;
            }
            if (errno == ENOENT) {
                fprintf(stderr, "farm logs: task %lld has no log yet (it is %s)\n", id, state);
                json_decref(reply);
                close(fd);
                return CLI_OK;
            }
            fprintf(stderr, "farm logs: %s: %s\n", path, strerror(errno));
            json_decref(reply);
            close(fd);
            return CLI_USAGE;
        }
        copy_from(in, &off);
        close(in);
        json_decref(reply);
        close(fd);
        return CLI_OK;
    }
    /* Follow: wait for the log to appear (a queued task), print what is
     * added, and stop once the task ended and everything is printed. A new
     * attempt renames the log to log.N: an open log stays the attempt's
     * own, and attempts that began and ended between two looks are printed
     * whole from their log.N, each after its marker. */
    {
        int cur = (int)json_integer_value(json_object_get(t, "attempts"));
        json_decref(reply);
        for (;;) {
            struct timespec ts = {0, 100 * 1000000};
            const char *state;
            int done, n;
            if (!(reply = show(cli, fd, id, &rc)))
                break;
            t = json_object_get(reply, "task");
            state = json_string_value(json_object_get(t, "state"));
            n = (int)json_integer_value(json_object_get(t, "attempts"));
            done = is_terminal(state);
            if (cur == 0 && n > 0)
                cur = 1; /* it was queued: its first attempt needs no marker */
            if (!attempt && n > cur) {
                json_t *hist = json_object_get(t, "attempt_history");
                const char *old = json_string_value(
                    json_object_get(json_array_get(hist, (size_t)(cur - 1)), "log"));
                /* The attempt followed so far has ended: the rest of its log. */
                if (in < 0 && old) {
                    in = open(old, O_RDONLY | O_CLOEXEC);
                    off = 0;
                }
                if (in >= 0) {
                    copy_from(in, &off);
                    close(in);
                }
                for (int k = cur + 1; k <= n; k++) {
                    printf("--- attempt %d ---\n", k);
                    if (k < n) {
                        const char *p = json_string_value(
                            json_object_get(json_array_get(hist, (size_t)(k - 1)), "log"));
                        int whole = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
                        off_t o = 0;
                        fflush(stdout);
                        if (whole >= 0) {
                            copy_from(whole, &o);
                            close(whole);
                        }
                    }
                }
                fflush(stdout);
                in = -1;
                off = 0;
                cur = n;
            }
            json_decref(reply);
            /* The log at `path` is attempt `cur`'s as of the look above. */
            if (in < 0)
                in = open(path, O_RDONLY | O_CLOEXEC);
            if (in >= 0)
                copy_from(in, &off);
            if (done)
                break;
            nanosleep(&ts, NULL);
        }
    }
    if (in >= 0)
        close(in);
    close(fd);
    return rc;
}
