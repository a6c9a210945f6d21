#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

int cmd_wait(struct cli *cli, int argc, char **argv)
{
    json_t *ids = json_array(), *reply = NULL, *progress = json_object();
    double timeout = -1;
    const char *v;
    int fd, rc = CLI_OK, tty = isatty(STDERR_FILENO) && !cli->json;
    int64_t deadline;
    for (int i = 1; i < argc; i++) {
        long long id;
        int r;
        if (!strcmp(argv[i], "--json"))
            continue;
        if ((r = cli_opt("wait", argc, argv, &i, "--timeout", &v)) != 0) {
            char *end;
            if (r < 0) {
                rc = CLI_USAGE;
                goto early;
            }
            timeout = strtod(v, &end);
            /* (A wait of more than ten years is no wait: refused with NaN
             * and infinity, so that the deadline stays a number.) */
            if (*end || !*v || !(timeout >= 0 && timeout <= 315360000.0)) {
                rc = cli_usage("wait", "--timeout: expected seconds, got \"%s\"", v);
                goto early;
            }
            continue;
        }
        if (cli_parse_id(argv[i], &id) < 0) {
            rc = cli_usage("wait", "expected task ids, got \"%s\"", argv[i]);
            goto early;
        }
        json_array_append_new(ids, json_integer(id));
    }
    if (json_array_size(ids) == 0) {
        rc = cli_usage("wait", "expected at least one task id");
        goto early;
    }
    if ((fd = cli_connect(cli, 1)) < 0) {
        rc = CLI_UNREACHABLE;
        goto early;
    }
    /* The table needs a few fields of each task; --json prints them all. */
    json_t *req = json_pack("{s:s,s:O,s:b,s:b,s:b,s:i}", "op", "wait", "ids", ids, "progress", tty,
                            "full", cli->json, "brief", !cli->json, "v", FARM_PROTO_VERSION);
    if (cli_write_json(fd, req) < 0) {
        json_decref(req);
        close(fd);
        fprintf(stderr, "farm wait: lost the connection to farmd\n");
        rc = CLI_UNREACHABLE;
        goto early;
    }
    json_decref(req);
    /* At least half a second, so that farmd's answer for tasks that have
     * ended can arrive (--timeout 0 asks whether they have). */
    deadline = timeout >= 0 ? farm_mono_ms() + (timeout < 0.5 ? 500 : (int64_t)(timeout * 1000))
                            : -1;
    for (;;) {
        int left = -1, r;
        json_t *msg;
        if (deadline >= 0) {
            int64_t l = deadline - farm_mono_ms();
            left = l > 0 ? (l > INT32_MAX ? INT32_MAX : (int)l) : 0;
        }
        r = cli_read_json(fd, &msg, left);
        if (r == -ETIMEDOUT) {
            if (tty)
                fprintf(stderr, "\r\033[K");
            fprintf(stderr, "farm wait: timed out after %g s\n", timeout);
            rc = CLI_TIMEOUT;
            break;
        }
        if (r < 0) {
            fprintf(stderr, "farm wait: lost the connection to farmd\n");
            rc = CLI_UNREACHABLE;
            break;
        }
        if (json_is_string(json_object_get(msg, "event"))) {
            /* A live progress line: the mean over the tasks that report. */
            char key[32], *what;
            const char *k;
            json_t *p;
            double sum = 0;
            size_t n = 0, cols;
            snprintf(key, sizeof key, "%lld", (long long)json_integer_value(json_object_get(msg, "id")));
            json_object_set(progress, key, msg);
            json_object_foreach(progress, k, p)
            {
                sum += json_number_value(json_object_get(p, "fraction"));
                n++;
            }
            /* `what` comes from a plugin: one line on the terminal, no
             * control characters, cut at a character boundary. */
            what = cli_cell(json_string_value(json_object_get(msg, "what")), 60, &cols);
            fprintf(stderr, "\r\033[Kwaiting for %zu task(s): %3.0f%% %s (task %s)",
                    json_array_size(ids), n ? 100 * sum / (double)json_array_size(ids) : 0.0,
                    what ? what : "", key);
            free(what);
            json_decref(msg);
            continue;
        }
        reply = msg;
        break;
    }
    close(fd);
    json_decref(progress);
    json_decref(ids);
    if (!reply)
        return rc;
    if (tty)
        fprintf(stderr, "\r\033[K");
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("wait", reply);
        json_decref(reply);
        return rc;
    }
    {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(reply, "tasks"), i, t)
        {
            if (strcmp(json_string_value(json_object_get(t, "state")), "succeeded") != 0)
                rc = CLI_TASK_FAILED;
        }
    }
    if (cli->json)
        cli_print_json(json_object_get(reply, "tasks"));
    else
        cli_print_tasks(cli, json_object_get(reply, "tasks"));
    json_decref(reply);
    return rc;
early:
    json_decref(progress);
    json_decref(ids);
    return rc;
}
