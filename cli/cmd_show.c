#include <stdio.h>
#include <string.h>

#include "cli.h"

/* One "key value" line. Both may come from users (a task name, a metric
 * name), so they are printed as table cells: no control characters. */
static void kv(const char *k, const char *v)
{
    cli_print_cell(stdout, k, 0, 12);
    putchar(' ');
    cli_print_cell(stdout, v, 0, 0);
    putchar('\n');
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
    long long id = 0;
    json_t *reply, *t, *v;
    int rc;
    char buf[512];
    const char *key;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            continue;
        if (id)
            return cli_usage("show", "unexpected extra argument \"%s\"", argv[i]);
        if (cli_parse_id(argv[i], &id) < 0)
            return cli_usage("show", "expected one task id, got \"%s\"", argv[i]);
    }
    if (!id)
        return cli_usage("show", "expected a task id");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "show", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("show", reply);
        json_decref(reply);
        return rc;
    }
    t = json_object_get(reply, "task");
    if (cli->json) {
        cli_print_json(t);
        json_decref(reply);
        return CLI_OK;
    }
    {
        const char *state = json_string_value(json_object_get(t, "state"));
        printf("%-12s %lld\n", "id", (long long)json_integer_value(json_object_get(t, "id")));
        kv("task", json_string_value(json_object_get(t, "task")));
        printf("%-12s %s%s%s\n", "state", cli_state_color(cli, state), state, cli_reset(cli));
        if (json_is_string(json_object_get(t, "reason")))
            kv("reason", json_string_value(json_object_get(t, "reason")));
        v = json_object_get(t, "exit_code");
        if (json_is_integer(v)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
            kv("exit code", buf);
        }
        kv("plugin", json_string_value(json_object_get(t, "plugin")));
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(json_object_get(t, "priority")));
        kv("priority", buf);
        snprintf(buf, sizeof buf, "%lld (retries allowed: %lld)",
                 (long long)json_integer_value(json_object_get(t, "attempts")),
                 (long long)json_integer_value(json_object_get(t, "retries")));
        kv("attempts", buf);
        kv("created", json_string_value(json_object_get(t, "created_at")));
        if (json_is_string(json_object_get(t, "started_at")))
            kv("started", json_string_value(json_object_get(t, "started_at")));
        if (json_is_string(json_object_get(t, "finished_at")))
            kv("finished", json_string_value(json_object_get(t, "finished_at")));
        cli_duration(t, buf, sizeof buf);
        kv("duration", buf);
        v = json_object_get(t, "git");
        if (json_is_object(v)) {
            snprintf(buf, sizeof buf, "%s %s %s", json_string_value(json_object_get(v, "repo")),
                     json_string_value(json_object_get(v, "commit")),
                     json_is_string(json_object_get(v, "ref")) ? json_string_value(json_object_get(v, "ref")) : "");
            kv("git", buf);
        }
        v = json_object_get(t, "deps");
        if (json_is_object(v) && json_is_string(json_object_get(v, "key"))) {
            json_t *src = json_object_get(v, "source_task");
            int l = snprintf(buf, sizeof buf, "%s %s (restore %lld ms, build %lld ms)",
                             json_is_true(json_object_get(v, "hit")) ? "hit" : "miss",
                             json_string_value(json_object_get(v, "key")),
                             (long long)json_integer_value(json_object_get(v, "restore_ms")),
                             (long long)json_integer_value(json_object_get(v, "build_ms")));
            if (json_is_integer(src) && l > 0 && (size_t)l < sizeof buf)
                snprintf(buf + l, sizeof buf - (size_t)l, ", built by task %lld",
                         (long long)json_integer_value(src));
            kv("deps", buf);
        }
        v = json_object_get(t, "needs");
        if (json_array_size(v) > 0) {
            size_t i;
            json_t *n;
            buf[0] = '\0';
            json_array_foreach(v, i, n)
            {
                size_t l = strlen(buf);
                snprintf(buf + l, sizeof buf - l, "%s%lld", i ? " " : "", (long long)json_integer_value(n));
            }
            kv("needs", buf);
        }
        v = json_object_get(t, "metrics");
        json_object_foreach(v, key, t)
        {
            char name[200];
            snprintf(name, sizeof name, "metric %s", key);
            if (json_is_number(t))
                snprintf(buf, sizeof buf, "%.6g", json_number_value(t));
            else
                snprintf(buf, sizeof buf, "nan");
            kv(name, buf);
        }
        t = json_object_get(reply, "task");
        v = json_object_get(t, "artifacts");
        if (json_array_size(v) > 0) {
            size_t i;
            json_t *n;
            buf[0] = '\0';
            json_array_foreach(v, i, n)
            {
                size_t l = strlen(buf);
                snprintf(buf + l, sizeof buf - l, "%s%s", i ? " " : "", json_string_value(n));
            }
            kv("artifacts", buf);
        }
        kv("log", json_string_value(json_object_get(t, "log")));
        v = json_object_get(t, "attempt_history");
        if (json_array_size(v) > 1) {
            size_t i;
            json_t *a;
            json_array_foreach(v, i, a)
            {
                json_t *ec = json_object_get(a, "exit_code");
                printf("attempt %-4lld %-10s exit %-4s ",
                       (long long)json_integer_value(json_object_get(a, "n")),
                       json_string_value(json_object_get(a, "state")),
                       json_is_integer(ec) ? (snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(ec)), buf) : "-");
                cli_print_cell(stdout, json_string_value(json_object_get(a, "reason")), 0, 0);
                putchar('\n');
            }
        }
    }
    json_decref(reply);
    return CLI_OK;
}
