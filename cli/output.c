#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "farm/util.h"

const char *cli_state_color(const struct cli *cli, const char *state)
{
    if (!cli->color || !state)
        return "";
    if (!strcmp(state, "succeeded"))
        return "\033[32m";
    if (!strcmp(state, "failed") || !strcmp(state, "timed_out"))
        return "\033[31m";
    if (!strcmp(state, "running"))
        return "\033[33m";
    if (!strcmp(state, "cancelled"))
        return "\033[35m";
    if (!strcmp(state, "interrupted"))
        return "\033[31m";
    return "\033[90m"; /* queued, waiting, skipped */
}

const char *cli_reset(const struct cli *cli)
{
    return cli->color ? "\033[0m" : "";
}

static int64_t parse_rfc3339(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void human_ms(int64_t ms, char *buf, size_t len)
{
    if (ms < 1000)
        snprintf(buf, len, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%.1fs", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else if (ms < 86400000)
        snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000),
                 (long long)(ms / 60000 % 60));
    else
        snprintf(buf, len, "%lldd%02lldh", (long long)(ms / 86400000),
                 (long long)(ms / 3600000 % 24));
}

void cli_reltime(const char *rfc3339, char *buf, size_t len)
{
    int64_t t = parse_rfc3339(rfc3339), d;
    char h[32];
    if (t < 0) {
        snprintf(buf, len, "-");
        return;
    }
    d = farm_now_ms() - t;
    if (d < 0)
        d = 0;
    if (d < 1000) {
        snprintf(buf, len, "just now");
        return;
    }
    human_ms(d - d % 1000, h, sizeof h);
    snprintf(buf, len, "%s ago", h);
}

void cli_duration(const json_t *task, char *buf, size_t len)
{
    int64_t s = parse_rfc3339(json_string_value(json_object_get(task, "started_at")));
    int64_t f = parse_rfc3339(json_string_value(json_object_get(task, "finished_at")));
    if (s < 0) {
        snprintf(buf, len, "-");
        return;
    }
    if (f < 0 || f < s)
        f = farm_now_ms();
    human_ms(f - s, buf, len);
}

void cli_print_tasks(struct cli *cli, json_t *tasks)
{
    size_t i, w_task = 4, w_state = 5, w_plugin = 6;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        const char *task = json_string_value(json_object_get(t, "task"));
        size_t l = task ? strlen(task) : 0;
        if (l > 40)
            l = 40;
        if (l > w_task)
            w_task = l;
        l = strlen(json_string_value(json_object_get(t, "state")));
        if (l > w_state)
            w_state = l;
        l = strlen(json_string_value(json_object_get(t, "plugin")));
        if (l > w_plugin)
            w_plugin = l;
    }
    printf("%-6s  %-*s  %-*s  %-*s  %4s  %-9s  %-12s  %s\n", "ID", (int)w_state, "STATE",
           (int)w_task, "TASK", (int)w_plugin, "PLUGIN", "EXIT", "DURATION", "CREATED", "NOTE");
    json_array_foreach(tasks, i, t)
    {
        const char *state = json_string_value(json_object_get(t, "state"));
        const char *task = json_string_value(json_object_get(t, "task"));
        json_t *ec = json_object_get(t, "exit_code");
        json_t *reason = json_object_get(t, "reason");
        json_t *deps = json_object_get(t, "deps");
        char exitbuf[16] = "-", dur[32], created[48], note[160] = "";
        if (json_is_integer(ec))
            snprintf(exitbuf, sizeof exitbuf, "%lld", (long long)json_integer_value(ec));
        cli_duration(t, dur, sizeof dur);
        cli_reltime(json_string_value(json_object_get(t, "created_at")), created, sizeof created);
        if (json_is_object(json_object_get(t, "progress")) && !strcmp(state, "running")) {
            json_t *p = json_object_get(t, "progress");
            snprintf(note, sizeof note, "%3.0f%% %s",
                     100 * json_number_value(json_object_get(p, "fraction")),
                     json_is_string(json_object_get(p, "what"))
                         ? json_string_value(json_object_get(p, "what"))
                         : "");
        } else if (json_is_string(reason)) {
            snprintf(note, sizeof note, "%s", json_string_value(reason));
        } else if (json_is_object(deps) && json_is_boolean(json_object_get(deps, "hit"))) {
            snprintf(note, sizeof note, "deps %s",
                     json_is_true(json_object_get(deps, "hit")) ? "hit" : "built");
        }
        printf("%-6lld  %s%-*s%s  %-*.*s  %-*s  %4s  %-9s  %-12s  %s\n",
               (long long)json_integer_value(json_object_get(t, "id")), cli_state_color(cli, state),
               (int)w_state, state, cli_reset(cli), (int)w_task, 40, task ? task : "",
               (int)w_plugin, json_string_value(json_object_get(t, "plugin")), exitbuf, dur,
               created, note);
    }
}
