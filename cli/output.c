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

int cli_cp_width(unsigned cp)
{
    /* The main East Asian wide and fullwidth blocks, and emoji. */
    static const unsigned wide[][2] = {
        {0x1100, 0x115f},   {0x2e80, 0xa4cf},   {0xac00, 0xd7a3}, {0xf900, 0xfaff},
        {0xfe30, 0xfe4f},   {0xff00, 0xff60},   {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x3fffd},
    };
    /* Combining marks, and the zero-width space, joiners and marks. */
    static const unsigned zero[][2] = {
        {0x0300, 0x036f}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200f},
        {0x20d0, 0x20ff}, {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f},
    };
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (cp >= zero[i][0] && cp <= zero[i][1])
            return 0;
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    return 1;
}

/* One character of a cell: its bytes (or "?") and its width. Returns the
 * number of input bytes it stands for. */
static size_t cell_char(const char *s, const char **bytes, size_t *len, int *width)
{
    unsigned cp;
    size_t n = farm_utf8_next(s, &cp);
    if (n == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
        *bytes = "?";
        *len = 1;
        *width = 1;
        return n ? n : 1;
    }
    *bytes = s;
    *len = n;
    *width = cli_cp_width(cp);
    return n;
}

char *cli_cell(const char *s, size_t maxcols, size_t *cols)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */
    size_t total = 0, used = 0, o = 0, len;
    const char *p, *b;
    int w;
    char *out;
    if (!s)
        s = "";
    /* Each byte gives at most one output byte ('?' for one, or itself), plus
     * the ellipsis. */
    out = malloc(strlen(s) + sizeof ellipsis);
    if (!out)
        return NULL;
    for (p = s; *p;) {
        p += cell_char(p, &b, &len, &w);
        total += (size_t)w;
    }
    for (p = s; *p;) {
        size_t step = cell_char(p, &b, &len, &w);
        /* When cut, keep one column for the ellipsis. */
        if (maxcols && total > maxcols && used + (size_t)w > maxcols - 1)
            break;
        memcpy(out + o, b, len);
        o += len;
        used += (size_t)w;
        p += step;
    }
    if (maxcols && total > maxcols) {
        memcpy(out + o, ellipsis, sizeof ellipsis - 1);
        o += sizeof ellipsis - 1;
        used++;
    }
    out[o] = '\0';
    *cols = used;
    return out;
}

void cli_print_cell(FILE *f, const char *s, size_t maxcols, size_t width)
{
    size_t cols;
    char *c = cli_cell(s, maxcols, &cols);
    fputs(c ? c : "?", f);
    for (; c && cols < width; cols++)
        fputc(' ', f);
    free(c);
}

static size_t cell_width(const char *s, size_t maxcols)
{
    size_t cols = 0;
    free(cli_cell(s, maxcols, &cols));
    return cols;
}

/* The task name column is cut at this many columns. */
#define TASK_COLS 40

void cli_print_tasks(struct cli *cli, json_t *tasks)
{
    size_t i, w_task = 4, w_state = 5, w_plugin = 6, l;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        l = cell_width(json_string_value(json_object_get(t, "task")), TASK_COLS);
        if (l > w_task)
            w_task = l;
        l = cell_width(json_string_value(json_object_get(t, "state")), 0);
        if (l > w_state)
            w_state = l;
        l = cell_width(json_string_value(json_object_get(t, "plugin")), 0);
        if (l > w_plugin)
            w_plugin = l;
    }
    printf("%-6s  %-*s  %-*s  %-*s  %4s  %-9s  %-12s  %s\n", "ID", (int)w_state, "STATE",
           (int)w_task, "TASK", (int)w_plugin, "PLUGIN", "EXIT", "DURATION", "CREATED", "NOTE");
    json_array_foreach(tasks, i, t)
    {
        const char *state = json_string_value(json_object_get(t, "state"));
        json_t *ec = json_object_get(t, "exit_code");
        json_t *reason = json_object_get(t, "reason");
        json_t *deps = json_object_get(t, "deps");
        char exitbuf[16] = "-", dur[32], created[48];
        if (json_is_integer(ec))
            snprintf(exitbuf, sizeof exitbuf, "%lld", (long long)json_integer_value(ec));
        cli_duration(t, dur, sizeof dur);
        cli_reltime(json_string_value(json_object_get(t, "created_at")), created, sizeof created);
        printf("%-6lld  %s", (long long)json_integer_value(json_object_get(t, "id")),
               cli_state_color(cli, state));
        cli_print_cell(stdout, state, 0, w_state);
        printf("%s  ", cli_reset(cli));
        cli_print_cell(stdout, json_string_value(json_object_get(t, "task")), TASK_COLS, w_task);
        printf("  ");
        cli_print_cell(stdout, json_string_value(json_object_get(t, "plugin")), 0, w_plugin);
        printf("  %4s  %-9s  %-12s  ", exitbuf, dur, created);
        /* The note is the last column: made safe, not padded. */
        if (json_is_object(json_object_get(t, "progress")) && state && !strcmp(state, "running")) {
            json_t *p = json_object_get(t, "progress");
            printf("%3.0f%% ", 100 * json_number_value(json_object_get(p, "fraction")));
            cli_print_cell(stdout, json_string_value(json_object_get(p, "what")), 0, 0);
        } else if (json_is_string(reason)) {
            cli_print_cell(stdout, json_string_value(reason), 0, 0);
        } else if (json_is_object(deps) && json_is_boolean(json_object_get(deps, "hit"))) {
            printf("deps %s", json_is_true(json_object_get(deps, "hit")) ? "hit" : "built");
        }
        printf("\n");
    }
}
