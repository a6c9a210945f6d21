/*
 * farmd's side of the protocol: connections, requests and replies.
 *
 * A request is one line of JSON: {"v": 1, "op": "...", ...}. A reply is one
 * line: {"ok": true, ...} or {"ok": false, "error": {"code", "message"}}.
 * Replies that report a change are sent only after the transaction holding
 * that change has committed (see farmd_commit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "farm/gitintake.h"
#include "farm/pluginload.h"
#include "farm/spec.h"
#include "farm/util.h"
#include "exec_cmd.h"
#include "farmd.h"

struct client {
    struct client *next;
    uv_pipe_t pipe;
    char *buf;
    size_t len, cap;
    json_t *pending; /* replies waiting for the commit */
    int64_t *wait_ids; /* sorted */
    char *wait_done;
    size_t n_wait, wait_left;
    int waiting, wait_progress, wait_full, pause_wait, closing;
};

static const char *terminal_states[] = {"succeeded", "failed", "timed_out", "cancelled",
                                        "skipped", NULL};

static int is_terminal(const char *s)
{
    for (int i = 0; terminal_states[i]; i++)
        if (!strcmp(s, terminal_states[i]))
            return 1;
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    char *data;
    int close_after;
};

static void client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    json_decref(c->pending);
    free(c->wait_ids);
    free(c->wait_done);
    free(c->buf);
    free(c);
}

static void client_close(struct client *c)
{
    struct client **pp;
    if (c->closing)
        return;
    c->closing = 1;
    for (pp = &farmd.clients; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct client *c = req->data;
    (void)status;
    free(w->data);
    if (w->close_after)
        client_close(c);
    free(w);
}

static void write_line(struct client *c, json_t *msg, int close_after)
{
    struct wreq *w;
    uv_buf_t b;
    size_t n;
    if (c->closing) {
        json_decref(msg);
        return;
    }
    w = calloc(1, sizeof *w);
    w->data = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    n = strlen(w->data);
    w->data = realloc(w->data, n + 2);
    w->data[n] = '\n';
    w->data[n + 1] = '\0';
    w->close_after = close_after;
    w->req.data = c;
    b = uv_buf_init(w->data, (unsigned)(n + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, write_done) < 0) {
        free(w->data);
        free(w);
        client_close(c);
    }
}

void farmd_client_send_now(struct client *c, json_t *msg)
{
    write_line(c, msg, 0);
}

void farmd_client_send(struct client *c, json_t *msg)
{
    if (!c->pending)
        c->pending = json_array();
    json_array_append_new(c->pending, msg);
}

void farmd_flush_clients(void)
{
    for (struct client *c = farmd.clients, *next; c; c = next) {
        next = c->next;
        if (c->pending) {
            json_t *p = c->pending;
            size_t i;
            json_t *m;
            c->pending = NULL;
            json_array_foreach(p, i, m) write_line(c, json_incref(m), 0);
            json_decref(p);
        }
    }
}

static json_t *error_reply(int code, const char *msg)
{
    return json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", farm_err_name(code),
                     "message", msg);
}

static void send_error(struct client *c, int code, const char *msg)
{
    farmd_client_send(c, error_reply(code, msg));
}

void farmd_fail_clients(const char *msg)
{
    json_t *e = error_reply(FARM_EDB, msg);
    char *line = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    for (struct client *c = farmd.clients; c && line; c = c->next) {
        uv_os_fd_t fd;
        if (!c->pending || uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
            continue;
        /* Best effort, as farmd is about to exit: one short line. */
        if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ||
            send(fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            /* the client learns from the closed connection */
        }
    }
    free(line);
}

/* ---- task objects -------------------------------------------------------- */

/* What the rows of one reply share, made once per reply rather than once per
 * task: the tasks of a batch mostly have the same params and labels text, and
 * their times fall within a few seconds. Zeroed before use, released by
 * rowmemo_release. */
struct rowmemo {
    struct jsonmemo {
        char *text;
        json_t *v;
    } json[2]; /* labels, params */
    struct timememo {
        int64_t sec, ms;
        size_t len; /* 0: nothing remembered */
        char text[40];
        json_t *v;   /* the text of ms */
    } time[3];       /* created_at, started_at, finished_at */
    json_t *text[3]; /* state, plugin, task */
};

static void rowmemo_release(struct rowmemo *m)
{
    for (size_t i = 0; i < sizeof m->json / sizeof m->json[0]; i++) {
        free(m->json[i].text);
        json_decref(m->json[i].v);
    }
    for (size_t i = 0; i < sizeof m->time / sizeof m->time[0]; i++)
        json_decref(m->time[i].v);
    for (size_t i = 0; i < sizeof m->text / sizeof m->text[0]; i++)
        json_decref(m->text[i]);
}

/* json_string(s), or with a memo the previous value again when equal. */
static json_t *text_json(const char *s, json_t **memo)
{
    json_t *j;
    if (memo && *memo && s && !strcmp(json_string_value(*memo), s))
        return json_incref(*memo);
    j = json_string(s);
    if (memo && j) {
        json_decref(*memo);
        *memo = json_incref(j);
    }
    return j;
}

/* farm_rfc3339 of `ms`. With a memo, the text of the previous time again
 * when equal; otherwise the date and the time of day are formatted once per
 * second and only the milliseconds are written after that, as long as the
 * text ends in ".mmmZ". */
static json_t *time_json(int64_t ms, struct timememo *m)
{
    char buf[40];
    if (!m || ms < 0)
        return json_string_nocheck(farm_rfc3339(ms, buf, sizeof buf));
    if (m->v && ms == m->ms)
        return json_incref(m->v);
    if (m->len && ms / 1000 == m->sec) {
        int f = (int)(ms % 1000);
        m->text[m->len - 4] = (char)('0' + f / 100);
        m->text[m->len - 3] = (char)('0' + f / 10 % 10);
        m->text[m->len - 2] = (char)('0' + f % 10);
    } else {
        farm_rfc3339(ms, m->text, sizeof m->text);
        m->sec = ms / 1000;
        m->len = strlen(m->text);
        if (m->len < 5 || m->text[m->len - 5] != '.' || m->text[m->len - 1] != 'Z')
            m->len = 0;
    }
    json_decref(m->v);
    m->v = json_string_nocheck(m->text);
    m->ms = ms;
    return json_incref(m->v);
}

static json_t *time_or_null(sqlite3_stmt *st, int col, struct timememo *m)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return time_json(sqlite3_column_int64(st, col), m);
}

/* The JSON value stored as text in column `col`. With a memo, a text equal
 * to the previous one gives the previous value again (shared, not copied). */
static json_t *json_col(sqlite3_stmt *st, int col, struct jsonmemo *m)
{
    const char *text;
    json_t *j;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    text = (const char *)sqlite3_column_text(st, col);
    if (m && m->text && !strcmp(m->text, text))
        return json_incref(m->v);
    j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!j)
        j = json_null();
    if (m) {
        char *copy = strdup(text);
        if (copy) {
            free(m->text);
            json_decref(m->v);
            m->text = copy;
            m->v = json_incref(j);
        }
    }
    return j;
}

/* Sets a key that is a literal of this file (ASCII, so not checked again). */
static void put(json_t *o, const char *key, json_t *v)
{
    json_object_set_new_nocheck(o, key, v);
}

#define TASK_COLS                                                                          \
    "t.id, t.state, t.exit_code, t.plugin, t.name, t.priority, t.attempts, t.reason, "      \
    "t.created_at, t.started_at, t.finished_at, t.deps, t.deps_result, t.labels, t.params, " \
    "t.timeout, t.retries, t.submission, s.git_repo, s.git_commit, s.git_ref, s.kind, "      \
    "s.source, t.pending_needs, t.run_pruned"
#define TASK_FROM " FROM tasks t LEFT JOIN submissions s ON s.id=t.submission "

/* Adds what costs a query each: metrics, artifacts, needs, the attempts
 * (with `history`) and the progress of a running task. */
static void add_details(json_t *t, int64_t id, int history)
{
    sqlite3_stmt *q;
    json_t *m = json_object(), *a = json_array(), *needs = json_array(), *att = NULL;
    q = farm__db_stmt(farmd.db, "SELECT name, value FROM metrics WHERE task=? AND rowid IN "
                                "(SELECT max(rowid) FROM metrics WHERE task=? GROUP BY name)");
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, id);
    while (sqlite3_step(q) == SQLITE_ROW)
        json_object_set_new(m, (const char *)sqlite3_column_text(q, 0),
                            sqlite3_column_type(q, 1) == SQLITE_NULL
                                ? json_null()
                                : json_real(sqlite3_column_double(q, 1)));
    q = farm__db_stmt(farmd.db, "SELECT name FROM artifacts WHERE task=? ORDER BY name");
    sqlite3_bind_int64(q, 1, id);
    while (sqlite3_step(q) == SQLITE_ROW)
        json_array_append_new(a, json_string((const char *)sqlite3_column_text(q, 0)));
    q = farm__db_stmt(farmd.db, "SELECT needs FROM task_needs WHERE task=? ORDER BY needs");
    sqlite3_bind_int64(q, 1, id);
    while (sqlite3_step(q) == SQLITE_ROW)
        json_array_append_new(needs, json_integer(sqlite3_column_int64(q, 0)));
    if (history) {
        att = json_array();
        q = farm__db_stmt(farmd.db, "SELECT n, state, exit_code, reason, started_at, "
                                    "finished_at, log FROM attempts WHERE task=? ORDER BY n");
        sqlite3_bind_int64(q, 1, id);
        while (sqlite3_step(q) == SQLITE_ROW) {
            json_t *o = json_object();
            int n = sqlite3_column_int(q, 0);
            put(o, "n", json_integer(n));
            put(o, "state", json_string((const char *)sqlite3_column_text(q, 1)));
            put(o, "exit_code",
                sqlite3_column_type(q, 2) == SQLITE_NULL ? json_null()
                                                         : json_integer(sqlite3_column_int(q, 2)));
            put(o, "reason",
                sqlite3_column_type(q, 3) == SQLITE_NULL
                    ? json_null()
                    : json_string((const char *)sqlite3_column_text(q, 3)));
            put(o, "started_at", time_or_null(q, 4, NULL));
            put(o, "finished_at", time_or_null(q, 5, NULL));
            put(o, "log_removed", json_boolean(sqlite3_column_type(q, 6) == SQLITE_NULL));
            json_array_append_new(att, o);
        }
        /* Logs of earlier attempts were renamed log.N when the next began. */
        {
            size_t i, total = json_array_size(att);
            json_t *o;
            json_array_foreach(att, i, o)
            {
                char lp[PATH_MAX + 80];
                if (i + 1 == total)
                    snprintf(lp, sizeof lp, "%s/runs/%lld/log", farmd.home, (long long)id);
                else
                    snprintf(lp, sizeof lp, "%s/runs/%lld/log.%zu", farmd.home, (long long)id,
                             i + 1);
                put(o, "log", json_string(lp));
            }
        }
    }
    put(t, "metrics", m);
    put(t, "artifacts", a);
    put(t, "needs", needs);
    if (att)
        put(t, "attempt_history", att);
    {
        /* A run being finalized (its task's end is what is being
         * reported) has no progress to show any more. */
        struct run *r = farmd_find_run(id);
        if (r && !r->finalized)
            put(t, "progress",
                json_pack("{s:f,s:s?}", "fraction", r->progress, "what", r->progress_what));
    }
}

/* The task object of the current row of a TASK_COLS query: with `full` 1
 * its details too, with -1 only what a table of tasks shows (a brief wait
 * reply). `memo` may be NULL; with one, values can be shared with other
 * task objects built with it, so nothing may modify them. */
static json_t *task_from_row(sqlite3_stmt *st, int full, struct rowmemo *memo)
{
    json_t *t = json_object();
    int64_t id = sqlite3_column_int64(st, 0);
    const char *state = (const char *)sqlite3_column_text(st, 1);
    int paused_queued = farmd.paused && !strcmp(state, "queued");
    char path[PATH_MAX + 64];
    int n;
    put(t, "id", json_integer(id));
    put(t, "state", text_json(paused_queued ? "waiting" : state, memo ? &memo->text[0] : NULL));
    put(t, "exit_code",
        sqlite3_column_type(st, 2) == SQLITE_NULL ? json_null()
                                                  : json_integer(sqlite3_column_int(st, 2)));
    put(t, "plugin",
        text_json((const char *)sqlite3_column_text(st, 3), memo ? &memo->text[1] : NULL));
    put(t, "task",
        text_json((const char *)sqlite3_column_text(st, 4), memo ? &memo->text[2] : NULL));
    if (full >= 0) {
        put(t, "priority", json_integer(sqlite3_column_int64(st, 5)));
        put(t, "attempts", json_integer(sqlite3_column_int(st, 6)));
    }
    if (sqlite3_column_type(st, 7) != SQLITE_NULL)
        put(t, "reason", json_string((const char *)sqlite3_column_text(st, 7)));
    else if (paused_queued)
        put(t, "reason", json_string("queue paused"));
    else if (!strcmp(state, "waiting"))
        put(t, "reason", json_string("waiting for tasks it needs"));
    else
        put(t, "reason", json_null());
    put(t, "created_at", time_or_null(st, 8, memo ? &memo->time[0] : NULL));
    put(t, "started_at", time_or_null(st, 9, memo ? &memo->time[1] : NULL));
    put(t, "finished_at", time_or_null(st, 10, memo ? &memo->time[2] : NULL));
    {
        json_t *deps = json_col(st, 12, NULL);
        if (json_is_null(deps) && sqlite3_column_type(st, 11) != SQLITE_NULL) {
            json_decref(deps);
            deps = json_pack("{s:n,s:n,s:n,s:n,s:n}", "key", "hit", "source_task", "restore_ms",
                             "build_ms");
        }
        put(t, "deps", deps);
    }
    if (full < 0)
        return t; /* brief: what a table of tasks shows */
    put(t, "labels", json_col(st, 13, memo ? &memo->json[0] : NULL));
    put(t, "params", json_col(st, 14, memo ? &memo->json[1] : NULL));
    put(t, "timeout", json_integer(sqlite3_column_int64(st, 15)));
    put(t, "retries", json_integer(sqlite3_column_int64(st, 16)));
    put(t, "submission",
        sqlite3_column_type(st, 17) == SQLITE_NULL ? json_null()
                                                   : json_integer(sqlite3_column_int64(st, 17)));
    if (sqlite3_column_type(st, 18) != SQLITE_NULL)
        put(t, "git",
            json_pack("{s:s,s:s,s:s?}", "repo", sqlite3_column_text(st, 18), "commit",
                      sqlite3_column_text(st, 19), "ref", sqlite3_column_text(st, 20)));
    n = snprintf(path, sizeof path, "%s/runs/%lld", farmd.home, (long long)id);
    put(t, "run_dir", json_string(path));
    put(t, "run_pruned", json_boolean(sqlite3_column_int(st, 24)));
    if (n > 0 && (size_t)n + sizeof "/log" <= sizeof path)
        memcpy(path + n, "/log", sizeof "/log");
    else
        snprintf(path, sizeof path, "%s/runs/%lld/log", farmd.home, (long long)id);
    put(t, "log", json_string(path));
    if (full)
        add_details(t, id, 1);
    return t;
}

json_t *farmd_task_json(int64_t id, int full)
{
    sqlite3_stmt *st = farm__db_stmt(farmd.db, "SELECT " TASK_COLS TASK_FROM "WHERE t.id=?");
    json_t *t = NULL;
    if (farm__db_run(st, "i", id) == SQLITE_ROW)
        t = task_from_row(st, full, NULL);
    sqlite3_reset(st);
    return t;
}

/* Ids at most this far apart are read with one range query, stepping over
 * the rows between them: a row costs SQLite about 4k instructions, a new
 * lookup about 10k. */
#define RANGE_GAP 2

/* Appends the task objects of `ids` to `out`, in that order; an id without a
 * task is left out, a repeated one appears again. Ascending ids close to each
 * other (a batch's) are read with one range query instead of one lookup
 * each; any order works. */
static void append_tasks(json_t *out, const int64_t *ids, size_t n, int full)
{
    sqlite3_stmt *st =
        farm__db_stmt(farmd.db, "SELECT " TASK_COLS TASK_FROM "WHERE t.id BETWEEN ? AND ? "
                                "ORDER BY t.id");
    struct rowmemo memo;
    size_t i = 0;
    memset(&memo, 0, sizeof memo);
    while (st && i < n) {
        size_t j = i + 1, k = i;
        while (j < n && ids[j] >= ids[j - 1] &&
               (uint64_t)ids[j] - (uint64_t)ids[j - 1] <= RANGE_GAP)
            j++;
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, ids[j - 1]);
        while (k < j && sqlite3_step(st) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            json_t *t = NULL;
            while (k < j && ids[k] < id)
                k++;
            for (; k < j && ids[k] == id; k++) {
                if (!t)
                    t = task_from_row(st, full, &memo);
                json_array_append(out, t);
            }
            json_decref(t);
        }
        sqlite3_reset(st);
        i = j;
    }
    rowmemo_release(&memo);
}

/* ---- ops ----------------------------------------------------------------- */

static int64_t jint(json_t *o, const char *k, int64_t def)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

/* The request's "id": a positive integer, or an error reply and -1. */
static int64_t req_id(struct client *c, json_t *req)
{
    json_t *v = json_object_get(req, "id");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        send_error(c, FARM_EBADREQ, v ? "id: expected a task id (a positive integer)"
                                      : "id: missing (a task id)");
        return -1;
    }
    return json_integer_value(v);
}

static void op_status(struct client *c, json_t *req)
{
    sqlite3_stmt *st;
    json_t *counts = json_object();
    (void)req;
    st = farm__db_stmt(farmd.db, "SELECT state, count(*) FROM tasks WHERE " FARM_LIVE_STATES
                                 " GROUP BY state");
    while (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(counts, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
    farmd_client_send(
        c, json_pack("{s:b,s:i,s:s,s:i,s:i,s:b,s:b,s:I,s:s,s:o}", "ok", 1, "pid", (int)getpid(),
                     "home", farmd.home, "jobs", farmd.cfg.jobs, "running", farmd.n_running,
                     "paused", farmd.paused, "stopping", farmd.stopping, "uptime_ms",
                     (json_int_t)(farm_now_ms() - farmd.started_ms), "durability",
                     farmd.cfg.durability_full ? "full" : "normal", "counts", counts));
}

/* One task to insert, checked and normalised before anything is written.
 * The text and JSON values are borrowed: from the request, from `t` or from
 * what the task made itself (made_name, made_plugin). */
struct newtask {
    const char *name, *plugin;
    json_t *params, *labels, *paths; /* NULL: stored as NULL */
    int64_t priority, timeout, retries;
    json_t *t;         /* a farm.yaml task's own copy (submit --dir) */
    json_t *made_name; /* the name of an unnamed exec task */
    char *made_plugin; /* a relative plugin path, resolved */
    int64_t *after;
    size_t n_after;
    int *needs_idx; /* indexes into this submission (farm.yaml needs) */
    size_t n_needs;
    int64_t id;
    char *skip; /* recorded skipped at once, with this reason */
};

/* Points the fields of `w` into its task object `w->t`. */
static void borrow_fields(struct newtask *w)
{
    w->name = json_string_value(json_object_get(w->t, "name"));
    w->plugin = json_string_value(json_object_get(w->t, "plugin"));
    w->params = json_object_get(w->t, "params");
    w->labels = json_object_get(w->t, "labels");
    w->paths = json_object_get(w->t, "paths");
    w->priority = jint(w->t, "priority", 0);
    w->timeout = jint(w->t, "timeout", 0);
    w->retries = jint(w->t, "retries", 0);
}

/* Checks a task's params against its plugin's table. `descs` holds the
 * descriptions already looked up for this request, by plugin name: finding
 * and stating the plugin file once per request, not once per task, also
 * keeps a plugin that changes during the request from being judged by two
 * versions. */
/* What exec's table cannot say (one of two, a list of text): exec's own
 * check, the one its command start runs. Other plugins pass. */
/* Why `name` cannot name a task given by the CLI or --batch, or NULL.
 * (farm.yaml's names are stricter: see spec.c.) Names show in tables and
 * logs: no control characters, and no longer than an unnamed task's. */
static const char *name_check(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "expected a name, got empty text";
    if (n > 127)
        return "longer than 127 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return "holds a control character (a newline, a tab, ESC, ...)";
    return NULL;
}

static int exec_check(const char *plugin, json_t *params, struct farm_err *err)
{
    struct farm_exec_cmd cmd;
    char msg[256];
    if (strcmp(plugin, "exec") != 0)
        return 0;
    if (farm_exec_cmd_parse(params, &cmd, msg, sizeof msg) < 0)
        return farm_err_set(err, FARM_EBADPARAM, "plugin %s", msg);
    farm_exec_cmd_free(&cmd);
    return 0;
}

static int check_task(const char *plugin, json_t *params, json_t *descs, struct farm_err *err)
{
    json_t *desc = json_object_get(descs, plugin);
    int rc;
    if (!desc) {
        if ((rc = farmd_describe_plugin(plugin, &desc, err)) < 0)
            return rc;
        json_object_set(descs, plugin, desc);
    }
    if ((rc = farm__params_check(desc, params, err)) < 0)
        return rc;
    return exec_check(plugin, params, err);
}

/* Whether json_dumps writes `a` and `b` the same: json_equal, but with the
 * keys of objects in the same order and reals equal to the bit (0.0 and
 * -0.0 are written differently). Parsed keys hold no NUL, so strcmp is
 * enough for them. */
static int same_json(json_t *a, json_t *b)
{
    if (a == b)
        return 1;
    if (!a || !b || json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        void *i = json_object_iter(a), *j = json_object_iter(b);
        if (json_object_size(a) != json_object_size(b))
            return 0;
        for (; i && j; i = json_object_iter_next(a, i), j = json_object_iter_next(b, j))
            if (strcmp(json_object_iter_key(i), json_object_iter_key(j)) != 0 ||
                !same_json(json_object_iter_value(i), json_object_iter_value(j)))
                return 0;
        return !i && !j;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t k = 0; k < n; k++)
            if (!same_json(json_array_get(a, k), json_array_get(b, k)))
                return 0;
        return 1;
    }
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    default:
        return json_equal(a, b);
    }
}

/* json_dumps of `v` (NULL for NULL), made again only when `v` would be
 * written differently from the last value: the tasks of one request often
 * have the same params, and share the one empty labels object. */
struct dumped {
    json_t *v;
    char *text;
};

static const char *dump_once(struct dumped *d, json_t *v)
{
    if (!v)
        return NULL;
    if (!d->text || !same_json(v, d->v)) {
        free(d->text);
        d->text = json_dumps(v, JSON_COMPACT);
        d->v = v;
    }
    return d->text;
}

static int insert_tasks(struct newtask *nt, size_t n, int64_t submission, json_t *deps,
                        struct farm_err *err)
{
    int64_t now = farm_now_ms();
    sqlite3_stmt *st;
    char *deps_text = deps ? json_dumps(deps, JSON_COMPACT) : NULL;
    struct dumped params = {NULL, NULL}, labels = {NULL, NULL};
    int rc = 0;
    /* One statement for all: what is the same for every task is bound once,
     * and the text stays the caller's until the step (SQLITE_STATIC). */
    st = farm__db_stmt(farmd.db,
                       "INSERT INTO tasks(submission, name, plugin, state, priority, params, "
                       "timeout, retries, labels, deps, paths, created_at) "
                       "VALUES(?,?,?,'queued',?,?,?,?,?,?,?,?)");
    if (!st) {
        free(deps_text);
        return farm_err_set(err, FARM_EDB, "database: %s", sqlite3_errmsg(farmd.db));
    }
    if (submission > 0)
        sqlite3_bind_int64(st, 1, submission);
    sqlite3_bind_text(st, 9, deps_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, now);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct newtask *w = &nt[i];
        char *paths = w->paths ? json_dumps(w->paths, JSON_COMPACT) : NULL;
        sqlite3_bind_text(st, 2, w->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, w->plugin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, w->priority);
        sqlite3_bind_text(st, 5, dump_once(&params, w->params), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, w->timeout);
        sqlite3_bind_int64(st, 7, w->retries);
        sqlite3_bind_text(st, 8, dump_once(&labels, w->labels), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, paths, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = farm_err_set(err, FARM_EDB, "database: %s", sqlite3_errmsg(farmd.db));
        else
            nt[i].id = sqlite3_last_insert_rowid(farmd.db);
        sqlite3_reset(st);
        free(paths);
    }
    sqlite3_clear_bindings(st);
    free(deps_text);
    free(params.text);
    free(labels.text);
    if (rc < 0)
        return rc;
    /* Dependencies: --after ids and farm.yaml needs. */
    for (size_t i = 0; i < n; i++) {
        int pending = 0;
        char skip[512] = "";
        for (size_t k = 0; k < nt[i].n_after + nt[i].n_needs; k++) {
            int64_t dep = k < nt[i].n_after ? nt[i].after[k] : nt[nt[i].needs_idx[k - nt[i].n_after]].id;
            const char *state;
            st = farm__db_stmt(farmd.db, "INSERT OR IGNORE INTO task_needs(task, needs) VALUES(?,?)");
            farm__db_run(st, "ii", nt[i].id, dep);
            st = farm__db_stmt(farmd.db, "SELECT state, name FROM tasks WHERE id=?");
            if (farm__db_run(st, "i", dep) != SQLITE_ROW)
                continue;
            state = (const char *)sqlite3_column_text(st, 0);
            if (!strcmp(state, "succeeded"))
                continue;
            if (is_terminal(state)) {
                if (!skip[0])
                    snprintf(skip, sizeof skip, "needs task %lld (%s), which ended %s",
                             (long long)dep, sqlite3_column_text(st, 1), state);
            } else {
                pending++;
            }
            sqlite3_reset(st);
        }
        if (nt[i].skip) {
            farmd_set_terminal(nt[i].id, 0, "skipped", 0, 0, nt[i].skip);
            farmd_finish_dependents(nt[i].id, "skipped");
        } else if (skip[0]) {
            farmd_set_terminal(nt[i].id, 0, "skipped", 0, 0, skip);
            farmd_finish_dependents(nt[i].id, "skipped");
        } else if (pending) {
            st = farm__db_stmt(farmd.db, "UPDATE tasks SET state='waiting', pending_needs=? WHERE id=?");
            farm__db_run(st, "ii", (int64_t)pending, nt[i].id);
        } else {
            farmd_ready_push(nt[i].id, nt[i].priority);
        }
    }
    return 0;
}

static void free_newtasks(struct newtask *nt, size_t n)
{
    if (!nt)
        return;
    for (size_t i = 0; i < n; i++) {
        json_decref(nt[i].t);
        json_decref(nt[i].made_name);
        free(nt[i].made_plugin);
        free(nt[i].after);
        free(nt[i].needs_idx);
        free(nt[i].skip);
    }
    free(nt);
}

static void reply_submitted(struct client *c, struct newtask *nt, size_t n, int full)
{
    json_t *ids = json_array(), *tasks = full ? json_array() : json_null();
    int64_t *idv = full ? calloc(n, sizeof *idv) : NULL;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(ids, json_integer(nt[i].id));
        if (idv)
            idv[i] = nt[i].id;
    }
    if (idv)
        append_tasks(tasks, idv, n, 1);
    else if (full)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(tasks, farmd_task_json(nt[i].id, 1));
    free(idv);
    farmd_client_send(c, json_pack("{s:b,s:o,s:o}", "ok", 1, "ids", ids, "tasks", tasks));
}

/* A submission's rows go in together or not at all: they share the loop
 * iteration's transaction with other changes, so a failed insert rolls back
 * to this savepoint instead of leaving half a batch to be committed. */
static void submit_begin(void)
{
    farmd_tx();
    farm__db_exec(farmd.db, "SAVEPOINT submit", NULL);
}

static void submit_end(int ok)
{
    if (!ok)
        farm__db_exec(farmd.db, "ROLLBACK TO submit", NULL);
    farm__db_exec(farmd.db, "RELEASE submit", NULL);
}

static int submission_row(const char *kind, const char *source, const char *cwd,
                          json_t *git, int64_t *out)
{
    sqlite3_stmt *st = farm__db_stmt(
        farmd.db, "INSERT INTO submissions(kind, source, work_dir, git_repo, git_commit, "
                  "git_ref, info, created_at) VALUES(?,?,?,?,?,?,?,?)");
    char *info = git ? json_dumps(git, JSON_COMPACT) : NULL;
    int rc = farm__db_run(st, "sssssssi", kind, source, cwd,
                          git ? json_string_value(json_object_get(git, "repo")) : NULL,
                          git ? json_string_value(json_object_get(git, "commit")) : NULL,
                          git ? json_string_value(json_object_get(git, "ref")) : NULL, info,
                          farm_now_ms());
    free(info);
    if (rc != SQLITE_DONE)
        return FARM_EDB;
    *out = sqlite3_last_insert_rowid(farmd.db);
    return 0;
}

/* Appends `s` to the name being made in buf[cap] (`*len` bytes so far),
 * cut at the end of buf, but never inside a UTF-8 character. */
static void name_append(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s), room = cap - 1 - *len;
    if (n > room) {
        n = room;
        /* Never inside a UTF-8 character: back to the start of the one cut. */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

/* The fields of a task in a submit request. */
enum field {
    F_NAME,
    F_PLUGIN,
    F_PARAMS,
    F_PRIORITY,
    F_TIMEOUT,
    F_RETRIES,
    F_AFTER,
    F_LABELS,
    F_COUNT
};

static const char *const fields[F_COUNT] = {
    [F_NAME] = "name",         [F_PLUGIN] = "plugin",   [F_PARAMS] = "params",
    [F_PRIORITY] = "priority", [F_TIMEOUT] = "timeout", [F_RETRIES] = "retries",
    [F_AFTER] = "after",       [F_LABELS] = "labels",
};

/* submit with a list of tasks (CLI argv tasks, --batch). */
static void op_submit_tasks(struct client *c, json_t *req)
{
    json_t *tasks = json_object_get(req, "tasks"), *t;
    const char *cwd = json_string_value(json_object_get(req, "cwd"));
    struct newtask *nt;
    struct farm_err err;
    size_t n, i;
    int64_t sub = 0;
    /* The plugins described so far, and the {} of tasks without params or
     * labels: both shared by the tasks of this request. */
    json_t *descs, *empty;
    json_t *f[F_COUNT];                   /* a task's fields, by enum field */
    const struct newtask *checked = NULL; /* the last task check_task passed */
    farm_err_clear(&err);
    if (!json_is_array(tasks) || (n = json_array_size(tasks)) == 0)
        { send_error(c, FARM_EBADREQ, "submit: tasks must be a non-empty list"); return; }
    nt = calloc(n, sizeof *nt);
    descs = json_object();
    empty = json_object();
    json_array_foreach(tasks, i, t)
    {
        struct newtask *w = &nt[i];
        json_t *after, *v;
        const char *k, *why;
        if (!json_is_object(t)) {
            farm_err_set(&err, FARM_EBADREQ, "tasks[%zu]: expected an object", i);
            goto bad;
        }
        memset(f, 0, sizeof f);
        json_object_foreach(t, k, v)
        {
            int q = 0;
            while (q < F_COUNT && strcmp(k, fields[q]) != 0)
                q++;
            if (q == F_COUNT) {
                farm_err_set(&err, FARM_EBADREQ,
                             "tasks[%zu]: unknown field \"%s\" (expected name, plugin, params, "
                             "priority, timeout, retries, after, labels)",
                             i, k);
                goto bad;
            }
            f[q] = v;
        }
        w->plugin = json_is_string(f[F_PLUGIN]) ? json_string_value(f[F_PLUGIN]) : "exec";
        w->params = json_is_object(f[F_PARAMS]) ? f[F_PARAMS] : empty;
        w->priority = json_is_integer(f[F_PRIORITY]) ? json_integer_value(f[F_PRIORITY]) : 0;
        w->timeout = json_is_integer(f[F_TIMEOUT]) ? json_integer_value(f[F_TIMEOUT]) : 0;
        w->retries = json_is_integer(f[F_RETRIES]) ? json_integer_value(f[F_RETRIES]) : 0;
        /* A plugin named by a relative path is the submitter's, not
         * farmd's: resolve it against the request's cwd. */
        {
            const char *pl = w->plugin;
            size_t pn = strlen(pl);
            if (pl[0] != '/' && (strchr(pl, '/') || (pn > 3 && !strcmp(pl + pn - 3, ".so"))) &&
                cwd) {
                char abs[PATH_MAX * 2];
                snprintf(abs, sizeof abs, "%s/%s", cwd, pl);
                w->made_plugin = strdup(abs);
                if (w->made_plugin)
                    w->plugin = w->made_plugin;
            }
        }
        if ((v = f[F_PRIORITY]) &&
            (!json_is_integer(v) || json_integer_value(v) < -FARM_PRIORITY_MAX ||
             json_integer_value(v) > FARM_PRIORITY_MAX)) {
            farm_err_set(&err, FARM_EBADREQ,
                         "tasks[%zu].priority: expected an integer from %d to %d", i,
                         -FARM_PRIORITY_MAX, FARM_PRIORITY_MAX);
            goto bad;
        }
        if ((v = f[F_TIMEOUT]) && (!json_is_integer(v) || json_integer_value(v) < 0 ||
                                   json_integer_value(v) > FARM_TIMEOUT_MAX)) {
            farm_err_set(&err, FARM_EBADREQ,
                         "tasks[%zu].timeout: expected whole seconds from 0 to %d (31 days)", i,
                         FARM_TIMEOUT_MAX);
            goto bad;
        }
        if ((v = f[F_RETRIES]) &&
            (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100)) {
            farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].retries: expected 0 to 100", i);
            goto bad;
        }
        if ((v = f[F_LABELS]) && !json_is_object(v)) {
            farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].labels: expected an object", i);
            goto bad;
        }
        if (v) {
            const char *lk;
            json_t *lv;
            json_object_foreach(v, lk, lv)
            {
                if (!json_is_string(lv)) {
                    farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].labels.%s: expected text, got %s",
                                 i, lk, farm_json_kind(lv));
                    goto bad;
                }
            }
        }
        if ((v = f[F_NAME]) && !json_is_string(v)) {
            farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].name: expected text, got %s", i,
                         farm_json_kind(v));
            goto bad;
        }
        if (v && (why = name_check(json_string_value(v))) != NULL) {
            farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].name: %s", i, why);
            goto bad;
        }
        w->labels = f[F_LABELS] ? f[F_LABELS] : empty;
        if (json_is_string(f[F_NAME])) {
            w->name = json_string_value(f[F_NAME]);
        } else {
            /* An unnamed exec task is named after its command. */
            json_t *argv = json_object_get(w->params, "argv"), *run;
            char name[128] = "";
            size_t len = 0;
            if (json_is_array(argv)) {
                size_t q;
                json_t *a;
                json_array_foreach(argv, q, a)
                {
                    if (q)
                        name_append(name, sizeof name, &len, " ");
                    name_append(name, sizeof name, &len,
                                json_is_string(a) ? json_string_value(a) : "?");
                }
            } else if (json_is_string(run = json_object_get(w->params, "run"))) {
                name_append(name, sizeof name, &len, json_string_value(run));
            } else {
                name_append(name, sizeof name, &len, w->plugin);
            }
            w->made_name = json_string(name);
            w->name = json_string_value(w->made_name);
        }
        /* The check depends on the plugin and the params only: a task like
         * the one before it passes as that one did. */
        if (!checked || strcmp(w->plugin, checked->plugin) != 0 ||
            !same_json(w->params, checked->params)) {
            if (check_task(w->plugin, w->params, descs, &err) < 0) {
                farm_err_prefix(&err, "tasks[%zu]: ", i);
                goto bad;
            }
            checked = w;
        }
        after = f[F_AFTER];
        if (after) {
            size_t q;
            json_t *a;
            if (!json_is_array(after)) {
                farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].after: expected a list of task ids", i);
                goto bad;
            }
            w->after = calloc(json_array_size(after) + 1, sizeof *w->after);
            json_array_foreach(after, q, a)
            {
                sqlite3_stmt *st;
                int64_t dep = json_integer_value(a);
                if (!json_is_integer(a)) {
                    farm_err_set(&err, FARM_EBADREQ, "tasks[%zu].after[%zu]: expected a task id", i, q);
                    goto bad;
                }
                if (dep < 0) {
                    /* -N: the task N places earlier in this same request */
                    if ((size_t)(-dep) > i) {
                        farm_err_set(&err, FARM_EBADREQ,
                                     "tasks[%zu].after[%zu]: %lld points before the first task "
                                     "of this submission", i, q, (long long)dep);
                        goto bad;
                    }
                    if (!w->needs_idx)
                        w->needs_idx = calloc(json_array_size(after) + 1, sizeof(int));
                    w->needs_idx[w->n_needs++] = (int)((int64_t)i + dep);
                    continue;
                }
                st = farm__db_stmt(farmd.db, "SELECT 1 FROM tasks WHERE id=?");
                if (farm__db_run(st, "i", dep) != SQLITE_ROW) {
                    sqlite3_reset(st);
                    farm_err_set(&err, FARM_ENOTASK, "tasks[%zu].after: no task %lld", i, (long long)dep);
                    goto bad;
                }
                sqlite3_reset(st);
                w->after[w->n_after++] = dep;
            }
        }
    }
    submit_begin();
    if (submission_row("cli", NULL, cwd, NULL, &sub) < 0 ||
        insert_tasks(nt, n, sub, NULL, &err) < 0) {
        submit_end(0);
        send_error(c, err.code ? err.code : FARM_EDB, err.msg[0] ? err.msg : "database error");
    } else {
        submit_end(1);
        reply_submitted(c, nt, n, json_is_true(json_object_get(req, "full")));
        farmd_schedule();
    }
    free_newtasks(nt, n);
    json_decref(descs);
    json_decref(empty);
    return;
bad:
    {
        json_t *e = error_reply(err.code, err.msg);
        json_object_set_new(json_object_get(e, "error"), "index", json_integer((json_int_t)i));
        farmd_client_send(c, e);
    }
    free_newtasks(nt, n);
    json_decref(descs);
    json_decref(empty);
}

/* submit --dir: the CLI has copied the directory to snapshots/incoming-*;
 * farmd parses its farm.yaml, checks every task, and adopts the snapshot. */
/* For the pre-push gate: when the commit already has tasks that were not
 * cancelled, reply with their ids instead of submitting again. */
static int reuse_commit(struct client *c, json_t *git)
{
    sqlite3_stmt *st = farm__db_stmt(
        farmd.db, "SELECT t.id FROM tasks t JOIN submissions s ON s.id=t.submission WHERE "
                  "s.git_commit=? AND s.git_repo=? AND t.state!='cancelled' ORDER BY t.id");
    json_t *ids = json_array();
    sqlite3_bind_text(st, 1, json_string_value(json_object_get(git, "commit")), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, json_string_value(json_object_get(git, "repo")), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(ids, json_integer(sqlite3_column_int64(st, 0)));
    sqlite3_reset(st);
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return 0;
    }
    farmd_client_send(c, json_pack("{s:b,s:o,s:n,s:s}", "ok", 1, "ids", ids, "tasks", "commit",
                                   json_string_value(json_object_get(git, "commit"))));
    return 1;
}

/* Cancels the queued tasks of older submissions of the same repo and ref
 * that share a name with a task of `sub`: a push of 20 commits runs the
 * newest, not 20. */
static void coalesce(int64_t sub, json_t *git, struct newtask *nt, size_t n)
{
    const char *repo = json_string_value(json_object_get(git, "repo"));
    const char *ref = json_string_value(json_object_get(git, "ref"));
    const char *commit = json_string_value(json_object_get(git, "commit"));
    if (!repo || !ref)
        return;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = farm__db_stmt(
            farmd.db, "SELECT t.id FROM tasks t JOIN submissions s ON s.id=t.submission WHERE "
                      "s.git_repo=? AND s.git_ref=? AND t.name=? AND t.submission<? AND "
                      "t.state IN ('queued','waiting')");
        int64_t ids[256];
        size_t k = 0;
        sqlite3_bind_text(st, 1, repo, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, ref, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, nt[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, sub);
        while (k < 256 && sqlite3_step(st) == SQLITE_ROW)
            ids[k++] = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        for (size_t q = 0; q < k; q++) {
            char why[256];
            snprintf(why, sizeof why, "coalesced: superseded by commit %.12s (task %lld)", commit,
                     (long long)nt[i].id);
            farmd_set_terminal(ids[q], 0, "cancelled", 0, 0, why);
            farmd_finish_dependents(ids[q], "cancelled");
        }
    }
}

/* submit --dir (an incoming snapshot) or --git (farm.yaml's text and the
 * commit's facts, read by the CLI through libgit2). */
static void op_submit_dir(struct client *c, json_t *req)
{
    const char *incoming = json_string_value(json_object_get(req, "dir"));
    json_t *git = json_object_get(req, "git"), *readgit = NULL;
    char shown[96]; /* "1a2b3c4:farm.yaml", named in messages after parsing */
    const char *display = json_string_value(json_object_get(req, "display"));
    const char *source = json_string_value(json_object_get(req, "source"));
    json_t *select = json_object_get(req, "select");
    struct farm_spec spec;
    struct farm_err err;
    char path[PATH_MAX + 32], final[PATH_MAX + 64], prefix[PATH_MAX + 32];
    char *want = NULL;
    struct newtask *nt = NULL;
    size_t n = 0;
    int64_t sub;
    int rc, in_savepoint = 0, adopted = 0;

    farm_err_clear(&err);
    snprintf(prefix, sizeof prefix, "%s/snapshots/incoming-", farmd.home);
    if (git) {
        const char *text;
        if (!json_is_object(git) || !json_is_string(json_object_get(git, "repo"))) {
            send_error(c, FARM_EBADREQ, "submit: git needs repo (and rev, ref)");
            return;
        }
        /* farmd reads the commit itself, through libgit2: the CLI stays
         * light, and what is tested is what the repository holds now. */
        if ((rc = farm__git_read(json_string_value(json_object_get(git, "repo")),
                                 json_string_value(json_object_get(git, "rev")),
                                 json_string_value(json_object_get(git, "ref")), &readgit,
                                 &err)) < 0) {
            send_error(c, err.code, err.msg);
            return;
        }
        git = readgit;
        if (json_is_true(json_object_get(req, "reuse")) && reuse_commit(c, git)) {
            json_decref(readgit);
            return;
        }
        text = json_string_value(json_object_get(git, "spec"));
        snprintf(shown, sizeof shown, "%.7s:farm.yaml",
                 json_string_value(json_object_get(git, "commit")));
        display = shown;
        incoming = NULL;
        rc = farm_spec_parse_string(text, strlen(text), shown, &spec, &err);
        json_object_del(git, "spec");
        if (rc == 0 && spec.deps) {
            /* The package is built from that directory of the commit: one
             * that is not there (or is a link, a file) is said now, not when
             * the task runs. */
            const char *dd = json_string_value(json_object_get(spec.deps, "dir"));
            int isdir = dd ? farm__git_is_dir(json_string_value(json_object_get(git, "repo")),
                                              json_string_value(json_object_get(git, "commit")),
                                              dd, &err)
                           : 1;
            if (isdir == 0)
                rc = farm_err_set(&err, FARM_EBADSPEC,
                                  "%s: deps.dir \"%s\" is not a directory in commit %.12s (a "
                                  "symbolic link or a file is not followed)",
                                  shown, dd, json_string_value(json_object_get(git, "commit")));
            else if (isdir < 0)
                rc = isdir;
            if (rc < 0)
                farm_spec_release(&spec);
        }
        if (rc < 0) {
            send_error(c, err.code, err.msg);
            json_decref(readgit);
            return;
        }
        source = json_string_value(json_object_get(git, "repo"));
    } else if (!incoming || strncmp(incoming, prefix, strlen(prefix)) != 0 ||
               strstr(incoming, "..")) {
        send_error(c, FARM_EBADREQ, "submit: dir must be an incoming snapshot under FARM_HOME");
        return;
    } else if (snprintf(path, sizeof path, "%s/farm.yaml", incoming),
               (rc = farm_spec_parse_file(path, display ? display : "farm.yaml", &spec, &err)) < 0) {
        if (rc == -ENOENT)
            farm_err_set(&err, FARM_EBADSPEC, "%s: no farm.yaml in %s", display ? display : "farm.yaml",
                         source ? source : "the directory");
        send_error(c, err.code, err.msg);
        farm_rmtree(incoming);
        return;
    }
    /* Which tasks: all, or the selected ones and what they need. */
    want = calloc(spec.n_tasks, 1);
    if (json_is_array(select) && json_array_size(select) > 0) {
        size_t k;
        json_t *s;
        json_array_foreach(select, k, s)
        {
            int idx = json_is_string(s) ? farm_spec_find(&spec, json_string_value(s)) : -1;
            if (idx < 0) {
                farm_err_set(&err, FARM_EBADREQ, "%s: no task named \"%s\"",
                             display ? display : "farm.yaml", json_is_string(s) ? json_string_value(s) : "?");
                goto bad;
            }
            want[idx] = 1;
        }
        for (int changed = 1; changed;) {
            changed = 0;
            for (size_t i = 0; i < spec.n_tasks; i++) {
                json_t *needs, *nd;
                size_t k2;
                if (!want[i])
                    continue;
                needs = json_object_get(json_array_get(spec.tasks, i), "needs");
                json_array_foreach(needs, k2, nd)
                {
                    int j = farm_spec_find(&spec, json_string_value(nd));
                    if (!want[j])
                        want[j] = changed = 1;
                }
            }
        }
    } else {
        memset(want, 1, spec.n_tasks);
    }
    nt = calloc(spec.n_tasks, sizeof *nt);
    {
        int *map = calloc(spec.n_tasks, sizeof *map);
        for (size_t i = 0; i < spec.n_tasks; i++) {
            json_t *t = json_array_get(spec.tasks, i), *desc;
            if (!want[i])
                continue;
            map[i] = (int)n;
            if ((rc = farmd_describe_plugin(json_string_value(json_object_get(t, "plugin")), &desc,
                                            &err)) < 0) {
                farm_spec_error(&spec, spec.plugin_nodes[i], &err, rc, "tasks[%zu].plugin: %s", i,
                                err.msg);
                free(map);
                goto bad;
            }
            if ((rc = farm__params_check(desc, json_object_get(t, "params"), &err)) < 0 ||
                (rc = exec_check(json_string_value(json_object_get(t, "plugin")),
                                 json_object_get(t, "params"), &err)) < 0) {
                farm_spec_error(&spec, spec.params_nodes[i], &err, rc, "tasks[%zu].params: %s", i,
                                err.msg);
                free(map);
                goto bad;
            }
            nt[n].t = json_deep_copy(t);
            n++;
        }
        for (size_t i = 0, k = 0; i < spec.n_tasks; i++) {
            json_t *needs, *nd;
            size_t q;
            if (!want[i])
                continue;
            needs = json_object_get(json_array_get(spec.tasks, i), "needs");
            nt[k].needs_idx = calloc(json_array_size(needs) + 1, sizeof(int));
            json_array_foreach(needs, q, nd)
                nt[k].needs_idx[nt[k].n_needs++] = map[farm_spec_find(&spec, json_string_value(nd))];
            k++;
        }
        free(map);
    }
    /* Options given on the command line override farm.yaml's values. */
    {
        json_t *ov = json_object_get(req, "override"), *v;
        for (size_t i = 0; i < n && json_is_object(ov); i++) {
            if ((v = json_object_get(ov, "priority")) && json_is_integer(v))
                json_object_set(nt[i].t, "priority", v);
            if ((v = json_object_get(ov, "timeout")) && json_is_integer(v))
                json_object_set(nt[i].t, "timeout", v);
            if ((v = json_object_get(ov, "retries")) && json_is_integer(v))
                json_object_set(nt[i].t, "retries", v);
            if ((v = json_object_get(ov, "labels")) && json_is_object(v))
                json_object_update(json_object_get(nt[i].t, "labels"), v);
            if ((v = json_object_get(ov, "after")) && json_is_array(v)) {
                size_t q;
                json_t *a;
                nt[i].after = calloc(json_array_size(v) + 1, sizeof *nt[i].after);
                json_array_foreach(v, q, a)
                {
                    sqlite3_stmt *st = farm__db_stmt(farmd.db, "SELECT 1 FROM tasks WHERE id=?");
                    if (!json_is_integer(a) || farm__db_run(st, "i", json_integer_value(a)) != SQLITE_ROW) {
                        sqlite3_reset(st);
                        farm_err_set(&err, FARM_ENOTASK, "--after: no task %lld",
                                     (long long)json_integer_value(a));
                        goto bad;
                    }
                    sqlite3_reset(st);
                    nt[i].after[nt[i].n_after++] = json_integer_value(a);
                }
            }
        }
    }
    /* paths: a task of a git submission runs only when a changed path
     * matches; otherwise it is recorded skipped, saying why. */
    if (git) {
        json_t *changed = json_object_get(git, "changed");
        for (size_t i = 0; i < n; i++) {
            json_t *paths = json_object_get(nt[i].t, "paths");
            if (json_array_size(paths) > 0 && !farm__git_paths_match(paths, changed)) {
                char *pl = json_dumps(paths, JSON_COMPACT);
                char why[512];
                snprintf(why, sizeof why, "paths: no path changed in commit %.12s matches %s",
                         json_string_value(json_object_get(git, "commit")), pl);
                free(pl);
                nt[i].skip = strdup(why);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        borrow_fields(&nt[i]);
    submit_begin();
    in_savepoint = 1;
    if (submission_row(git ? "git" : "dir", source, NULL, git, &sub) < 0) {
        farm_err_set(&err, FARM_EDB, "database: %s", sqlite3_errmsg(farmd.db));
        goto bad;
    }
    if (git)
        /* Before the tasks go in: one that ends at once (skipped) may need
         * its note. (One too many after a rollback does no harm.) */
        farmd.git_submissions++;
    if (incoming) {
        snprintf(final, sizeof final, "%s/snapshots/%lld", farmd.home, (long long)sub);
        /* A directory of that name belongs to no submission: left by one
         * that was rolled back, or by a farmd that died before its commit
         * (the id is handed out again). */
        farm_rmtree(final);
        if (rename(incoming, final) < 0) {
            farm_err_set(&err, -errno, "cannot adopt snapshot %s: %s", incoming, strerror(errno));
            goto bad;
        }
        adopted = 1;
    }
    {
        sqlite3_stmt *st = farm__db_stmt(farmd.db, "UPDATE submissions SET snapshot=?, spec=? WHERE id=?");
        char *spectext = json_dumps(spec.tasks, JSON_COMPACT);
        farm__db_run(st, "ssi", incoming ? final : NULL, spectext, sub);
        free(spectext);
    }
    if (insert_tasks(nt, n, sub, spec.deps, &err) < 0)
        goto bad;
    if (git && spec.coalesce)
        coalesce(sub, git, nt, n);
    submit_end(1);
    reply_submitted(c, nt, n, json_is_true(json_object_get(req, "full")));
    free_newtasks(nt, n);
    free(want);
    farm_spec_release(&spec);
    json_decref(readgit);
    farmd_schedule();
    return;
bad:
    if (in_savepoint)
        submit_end(0);
    send_error(c, err.code ? err.code : FARM_EBADSPEC, err.msg);
    if (adopted)
        farm_rmtree(final);
    else if (incoming)
        farm_rmtree(incoming);
    free_newtasks(nt, n);
    free(want);
    farm_spec_release(&spec);
    json_decref(readgit);
}

static void op_show(struct client *c, json_t *req)
{
    int64_t id = req_id(c, req);
    json_t *t;
    char msg[64];
    if (id < 0)
        return;
    t = farmd_task_json(id, 1);
    if (!t) {
        snprintf(msg, sizeof msg, "no task %lld", (long long)id);
        { send_error(c, FARM_ENOTASK, msg); return; }
    }
    farmd_client_send(c, json_pack("{s:b,s:o}", "ok", 1, "task", t));
}

static void op_list(struct client *c, json_t *req)
{
    const char *state = json_string_value(json_object_get(req, "state"));
    const char *commit = json_string_value(json_object_get(req, "commit"));
    int64_t limit = jint(req, "limit", 0);
    char sql[1024];
    sqlite3_stmt *st;
    json_t *out = json_array();
    struct rowmemo memo;
    int paused_waiting = state && farmd.paused && !strcmp(state, "waiting");
    snprintf(sql, sizeof sql,
             "SELECT * FROM (SELECT " TASK_COLS " FROM tasks t LEFT JOIN submissions s ON "
             "s.id=t.submission WHERE (?1 IS NULL OR t.state=?1 %s) AND (?2 IS NULL OR "
             "s.git_commit LIKE ?2 || '%%') ORDER BY t.id DESC LIMIT ?3) ORDER BY 1",
             paused_waiting ? "OR t.state='queued'" : "");
    st = farm__db_stmt(farmd.db, sql);
    if (state)
        sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
    if (commit)
        sqlite3_bind_text(st, 2, commit, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
    memset(&memo, 0, sizeof memo);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *t = task_from_row(st, 0, &memo);
        if (state && strcmp(json_string_value(json_object_get(t, "state")), state) != 0) {
            json_decref(t);
            continue;
        }
        json_array_append_new(out, t);
    }
    sqlite3_reset(st);
    rowmemo_release(&memo);
    /* metrics, artifacts and needs for each (the contract's fields) */
    {
        size_t i;
        json_t *t;
        json_array_foreach(out, i, t)
            add_details(t, json_integer_value(json_object_get(t, "id")), 0);
    }
    farmd_client_send(c, json_pack("{s:b,s:o}", "ok", 1, "tasks", out));
}

static int ids_of(json_t *req, int64_t **ids, size_t *n)
{
    json_t *a = json_object_get(req, "ids"), *v;
    size_t i;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return -1;
    *ids = calloc(json_array_size(a), sizeof **ids);
    *n = 0;
    json_array_foreach(a, i, v)
    {
        if (!json_is_integer(v)) {
            free(*ids);
            return -1;
        }
        (*ids)[(*n)++] = json_integer_value(v);
    }
    return 0;
}

static void op_cancel(struct client *c, json_t *req)
{
    int64_t *ids;
    size_t n;
    json_t *res = json_array();
    if (ids_of(req, &ids, &n) < 0) {
        json_decref(res);
        { send_error(c, FARM_EBADREQ, "cancel: ids must be a non-empty list of task ids"); return; }
    }
    for (size_t i = 0; i < n; i++) {
        struct farm_err err;
        int rc;
        farm_err_clear(&err);
        rc = farmd_cancel(ids[i], "cancelled", &err);
        if (rc < 0)
            json_array_append_new(res, json_pack("{s:I,s:b,s:s,s:s}", "id", (json_int_t)ids[i], "ok", 0,
                                                 "code", farm_err_name(err.code), "message", err.msg));
        else
            json_array_append_new(res, json_pack("{s:I,s:b,s:s}", "id", (json_int_t)ids[i], "ok", 1,
                                                 "result",
                                                 rc == 1 ? "cancelling" : err.msg[0] ? err.msg : "cancelled"));
        if (rc >= 0)
            farmd_event(ids[i], "cancel", NULL);
    }
    free(ids);
    farmd_client_send(c, json_pack("{s:b,s:o}", "ok", 1, "results", res));
}

static void op_retry(struct client *c, json_t *req)
{
    int64_t id = req_id(c, req);
    sqlite3_stmt *st;
    char msg[256];
    if (id < 0)
        return;
    st = farm__db_stmt(farmd.db, "SELECT state, priority FROM tasks WHERE id=?");
    if (farm__db_run(st, "i", id) != SQLITE_ROW) {
        sqlite3_reset(st);
        snprintf(msg, sizeof msg, "no task %lld", (long long)id);
        { send_error(c, FARM_ENOTASK, msg); return; }
    }
    if (!is_terminal((const char *)sqlite3_column_text(st, 0))) {
        snprintf(msg, sizeof msg, "task %lld is %s; only a task that ended can be retried",
                 (long long)id, sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        { send_error(c, FARM_ESTATE, msg); return; }
    }
    int64_t prio = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    /* What the task needs must still hold: a need that ended without
     * success is named; needs still running make the task wait again. */
    {
        int pending = 0;
        st = farm__db_stmt(farmd.db, "SELECT t.id, t.name, t.state FROM task_needs n JOIN tasks t "
                                     "ON t.id=n.needs WHERE n.task=? ORDER BY t.id");
        sqlite3_bind_int64(st, 1, id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *ns = (const char *)sqlite3_column_text(st, 2);
            if (!strcmp(ns, "succeeded"))
                continue;
            if (is_terminal(ns)) {
                snprintf(msg, sizeof msg, "task %lld needs task %lld (%s), which ended %s; retry "
                                          "that one first",
                         (long long)id, (long long)sqlite3_column_int64(st, 0),
                         sqlite3_column_text(st, 1), ns);
                sqlite3_reset(st);
                send_error(c, FARM_ESTATE, msg);
                return;
            }
            pending++;
        }
        farmd_tx();
        /* A manual retry gets one more attempt on top of the ones it had. */
        st = farm__db_stmt(farmd.db, "UPDATE tasks SET state=?, reason=NULL, exit_code=NULL, "
                                     "finished_at=NULL, retries=max(retries, attempts-(SELECT count(*) "
                                     "FROM attempts WHERE task=tasks.id AND "
                                     "state='interrupted')), "
                                     "pending_needs=?, run_pruned=0 WHERE id=?");
        farm__db_run(st, "sii", pending ? "waiting" : "queued", (int64_t)pending, id);
        farmd_event(id, "retry", NULL);
        if (!pending)
            farmd_ready_push(id, prio);
    }
    farmd_client_send(c, json_pack("{s:b,s:I}", "ok", 1, "id", (json_int_t)id));
    farmd_schedule();
}

static void op_pause(struct client *c, json_t *req)
{
    farmd_tx();
    farmd.paused = 1;
    farm__db_meta_set(farmd.db, "paused", "1");
    if (json_is_true(json_object_get(req, "wait")) && farmd.n_running > 0) {
        c->pause_wait = 1;
        return;
    }
    farmd_client_send(c, json_pack("{s:b,s:i}", "ok", 1, "running", farmd.n_running));
}

void farmd_notify_idle(void)
{
    for (struct client *c = farmd.clients; c; c = c->next) {
        if (c->pause_wait) {
            c->pause_wait = 0;
            farmd_client_send(c, json_pack("{s:b,s:i}", "ok", 1, "running", 0));
        }
    }
}

static void op_resume(struct client *c, json_t *req)
{
    (void)req;
    farmd_tx();
    farmd.paused = 0;
    farm__db_meta_set(farmd.db, "paused", "0");
    /* A `pause --wait` still waiting for running tasks waited for a pause
     * that no longer holds: say so rather than "paused". */
    for (struct client *w = farmd.clients; w; w = w->next) {
        if (w->pause_wait) {
            w->pause_wait = 0;
            send_error(w, FARM_ESTATE, "the queue was resumed before the running tasks ended");
        }
    }
    farmd_client_send(c, json_pack("{s:b}", "ok", 1));
    farmd_schedule();
}

static void op_parallel(struct client *c, json_t *req)
{
    int64_t n = jint(req, "jobs", 0);
    char v[32];
    if (n < 1 || n > 4096)
        { send_error(c, FARM_EBADREQ, "parallel: jobs must be from 1 to 4096"); return; }
    farmd_tx();
    farmd.cfg.jobs = (int)n;
    snprintf(v, sizeof v, "%d", (int)n);
    farm__db_meta_set(farmd.db, "jobs", v);
    farmd_client_send(c, json_pack("{s:b,s:i}", "ok", 1, "jobs", (int)n));
    farmd_schedule();
}

static void wait_reply(struct client *c)
{
    json_t *tasks = json_array();
    append_tasks(tasks, c->wait_ids, c->n_wait, c->wait_full);
    c->waiting = 0;
    farmd_client_send(c, json_pack("{s:b,s:o}", "ok", 1, "tasks", tasks));
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Called whenever a task reaches a terminal state: each waiting client
 * crosses it off, and gets its reply when nothing is left. */
void farmd_task_ended(int64_t id)
{
    for (struct client *c = farmd.clients; c; c = c->next) {
        int64_t *hit;
        if (!c->waiting)
            continue;
        hit = bsearch(&id, c->wait_ids, c->n_wait, sizeof id, cmp_id);
        while (hit && hit > c->wait_ids && hit[-1] == id)
            hit--;
        for (; hit && hit < c->wait_ids + c->n_wait && *hit == id; hit++) {
            size_t k = (size_t)(hit - c->wait_ids);
            if (!c->wait_done[k]) {
                c->wait_done[k] = 1;
                c->wait_left--;
            }
        }
        if (c->wait_left == 0)
            wait_reply(c);
    }
}

void farmd_notify_progress(int64_t id, double fraction, const char *what)
{
    for (struct client *c = farmd.clients; c; c = c->next) {
        if (!c->waiting || !c->wait_progress)
            continue;
        for (size_t i = 0; i < c->n_wait; i++) {
            if (c->wait_ids[i] == id) {
                farmd_client_send_now(c, json_pack("{s:s,s:I,s:f,s:s?}", "event", "progress", "id",
                                                   (json_int_t)id, "fraction", fraction, "what", what));
                break;
            }
        }
    }
}

static void op_wait(struct client *c, json_t *req)
{
    int64_t *ids;
    size_t n;
    sqlite3_stmt *st;
    if (ids_of(req, &ids, &n) < 0) {
        send_error(c, FARM_EBADREQ, "wait: ids must be a non-empty list of task ids");
        return;
    }
    qsort(ids, n, sizeof *ids, cmp_id);
    free(c->wait_ids);
    free(c->wait_done);
    c->wait_ids = ids;
    c->n_wait = n;
    c->wait_done = calloc(n, 1);
    c->wait_left = n;
    st = farm__db_stmt(farmd.db, "SELECT state FROM tasks WHERE id=?");
    for (size_t i = 0; i < n; i++) {
        if (farm__db_run(st, "i", ids[i]) != SQLITE_ROW) {
            char msg[64];
            sqlite3_reset(st);
            snprintf(msg, sizeof msg, "no task %lld", (long long)ids[i]);
            send_error(c, FARM_ENOTASK, msg);
            return;
        }
        if (is_terminal((const char *)sqlite3_column_text(st, 0)) && !c->wait_done[i]) {
            c->wait_done[i] = 1;
            c->wait_left--;
        }
        sqlite3_reset(st);
    }
    c->wait_progress = json_is_true(json_object_get(req, "progress"));
    /* Metrics, artifacts and attempts cost queries per task: only for
     * callers that print JSON. */
    c->wait_full = json_is_true(json_object_get(req, "brief")) ? -1
                   : !json_is_false(json_object_get(req, "full"));
    c->waiting = 1;
    if (c->wait_left == 0)
        wait_reply(c);
}

/* Whether task `id` exists; when not, replies "no task ID" and returns 0. */
static int task_exists(struct client *c, int64_t id)
{
    sqlite3_stmt *st = farm__db_stmt(farmd.db, "SELECT 1 FROM tasks WHERE id=?");
    int found = farm__db_run(st, "i", id) == SQLITE_ROW;
    sqlite3_reset(st);
    if (!found) {
        char msg[64];
        snprintf(msg, sizeof msg, "no task %lld", (long long)id);
        send_error(c, FARM_ENOTASK, msg);
    }
    return found;
}

static void op_metrics(struct client *c, json_t *req)
{
    int64_t id = req_id(c, req);
    sqlite3_stmt *st;
    json_t *rows;
    if (id < 0 || !task_exists(c, id))
        return;
    rows = json_array();
    st = farm__db_stmt(farmd.db, "SELECT name, step, value, t, attempt FROM metrics WHERE task=? "
                                 "ORDER BY name, attempt, step, rowid");
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char ts[40];
        json_array_append_new(
            rows, json_pack("{s:s,s:I,s:o,s:s,s:i}", "name", sqlite3_column_text(st, 0), "step",
                            (json_int_t)sqlite3_column_int64(st, 1), "value",
                            sqlite3_column_type(st, 2) == SQLITE_NULL ? json_null()
                                                                      : json_real(sqlite3_column_double(st, 2)),
                            "time", farm_rfc3339(sqlite3_column_int64(st, 3), ts, sizeof ts),
                            "attempt", sqlite3_column_int(st, 4)));
    }
    farmd_client_send(c, json_pack("{s:b,s:I,s:o}", "ok", 1, "id", (json_int_t)id, "metrics", rows));
}

static void op_artifacts(struct client *c, json_t *req)
{
    int64_t id = req_id(c, req);
    sqlite3_stmt *st;
    json_t *rows;
    if (id < 0 || !task_exists(c, id))
        return;
    rows = json_array();
    st = farm__db_stmt(farmd.db, "SELECT name, size FROM artifacts WHERE task=? ORDER BY name");
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/runs/%lld/artifacts/%s", farmd.home, (long long)id,
                 sqlite3_column_text(st, 0));
        json_array_append_new(rows, json_pack("{s:s,s:I,s:s}", "name", sqlite3_column_text(st, 0),
                                              "size", (json_int_t)sqlite3_column_int64(st, 1),
                                              "path", path));
    }
    farmd_client_send(c, json_pack("{s:b,s:I,s:o}", "ok", 1, "id", (json_int_t)id, "artifacts", rows));
}

static void op_stop(struct client *c, json_t *req)
{
    (void)req;
    farmd_client_send(c, json_pack("{s:b,s:i}", "ok", 1, "running", farmd.n_running));
    farmd_flush_clients();
    farmd_begin_stop();
}

static const struct {
    const char *name;
    void (*fn)(struct client *c, json_t *req);
} ops[] = {
    {"status", op_status},     {"ping", op_status},     {"show", op_show},
    {"list", op_list},         {"cancel", op_cancel},   {"retry", op_retry},
    {"pause", op_pause},       {"resume", op_resume},   {"parallel", op_parallel},
    {"wait", op_wait},         {"metrics", op_metrics}, {"artifacts", op_artifacts},
    {"stop", op_stop},
};

void farmd_handle(struct client *c, json_t *req)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    json_t *v = json_object_get(req, "v");
    char msg[256];
    if (!json_is_object(req))
        { send_error(c, FARM_EBADREQ, "request must be a JSON object"); return; }
    if (!json_is_integer(v) || json_integer_value(v) != FARM_PROTO_VERSION) {
        snprintf(msg, sizeof msg, "protocol version %s not supported (this farmd speaks %d)",
                 json_is_integer(v) ? "given" : "missing", FARM_PROTO_VERSION);
        { send_error(c, FARM_EBADVER, msg); return; }
    }
    if (!op)
        { send_error(c, FARM_EBADREQ, "request has no op"); return; }
    if (farmd.stopping && strcmp(op, "status") != 0)
        { send_error(c, FARM_ESHUTDOWN, "farmd is shutting down"); return; }
    if (!strcmp(op, "submit")) {
        if (json_object_get(req, "dir") || json_object_get(req, "git"))
            op_submit_dir(c, req);
        else
            op_submit_tasks(c, req);
        return;
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (!strcmp(op, ops[i].name)) {
            ops[i].fn(c, req);
            return;
        }
    }
    snprintf(msg, sizeof msg, "unknown op \"%.64s\"", op);
    send_error(c, FARM_EBADOP, msg);
}

/* ---- reading ------------------------------------------------------------- */

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *c = h->data;
    (void)suggested;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 65536 * 2;
        char *p = realloc(c->buf, cap);
        if (!p) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->buf = p;
        c->cap = cap;
    }
    buf->base = c->buf + c->len;
    buf->len = c->cap - c->len;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct client *c = s->data;
    char *start, *nl;
    (void)buf;
    if (n < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    start = c->buf;
    while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
        json_error_t je;
        size_t linelen = (size_t)(nl - start);
        if (linelen > FARM_MAX_REQUEST) {
            write_line(c, error_reply(FARM_ETOOBIG, "request too large"), 1);
            uv_read_stop(s);
            return;
        }
        json_t *req = json_loadb(start, linelen, 0, &je);
        start = nl + 1;
        if (!req) {
            char msg[300];
            snprintf(msg, sizeof msg, "malformed request: line 1, column %d: %s", je.column, je.text);
            send_error(c, FARM_EBADREQ, msg);
            continue;
        }
        farmd_handle(c, req);
        json_decref(req);
    }
    c->len -= (size_t)(start - c->buf);
    memmove(c->buf, start, c->len);
    if (c->len > FARM_MAX_REQUEST) {
        /* An oversized line: answer once and hang up, without buffering
         * more of it. */
        write_line(c, error_reply(FARM_ETOOBIG, "request too large"), 1);
        uv_read_stop(s);
        c->len = 0;
        return;
    }
    /* Send what this batch of requests produced: replies to reads go out at
     * once, replies after writes go with the commit (farmd_commit). */
    if (!farmd.in_tx)
        farmd_flush_clients();
}

void farmd_client_accept(uv_stream_t *server, int status);
void farmd_client_accept(uv_stream_t *server, int status)
{
    struct client *c;
    struct ucred cred;
    socklen_t len = sizeof cred;
    uv_os_fd_t fd;
    if (status < 0)
        return;
    c = calloc(1, sizeof *c);
    uv_pipe_init(farmd.loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
        uv_close((uv_handle_t *)&c->pipe, client_closed);
        return;
    }
    c->next = farmd.clients;
    farmd.clients = c;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != getuid()) {
        fprintf(stderr, "farmd: refused a connection from uid %d\n", (int)cred.uid);
        write_line(c, error_reply(FARM_EPERM, "connection refused: farmd serves its own user only"), 1);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, client_alloc, client_read);
}
