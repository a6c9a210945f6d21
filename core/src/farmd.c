/*
 * farmd: the farm daemon. One libuv loop serves requests on farm.sock, keeps
 * every state change in SQLite, starts one farm-worker per attempt and reads
 * its event stream. See docs/daemon.md for durability and recovery.
 */
#define _GNU_SOURCE
#include "farmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "farm/gitintake.h"
#include "farm/pluginload.h"
#include "farm/util.h"

struct daemon farmd;

extern char **environ;

/* ---- transactions -------------------------------------------------------- */

void farmd_tx(void)
{
    if (!farmd.in_tx) {
        sqlite3_stmt *st = farm__db_stmt(farmd.db, "BEGIN IMMEDIATE");
        if (farm__db_run(st, "") != SQLITE_DONE) {
            fprintf(stderr, "farmd: cannot begin a transaction: %s\n", sqlite3_errmsg(farmd.db));
            return;
        }
        sqlite3_reset(st);
        farmd.in_tx = 1;
    }
}

/* Commits the iteration's transaction. If the commit fails nothing that
 * depended on it has been acknowledged: replies wait in the clients' queues,
 * and farmd exits so that a restart recovers from the last good state. */
int farmd_commit(void)
{
    sqlite3_stmt *st;
    if (!farmd.in_tx)
        return 0;
    farmd.in_tx = 0;
    st = farm__db_stmt(farmd.db, "COMMIT");
    if (farm__db_run(st, "") != SQLITE_DONE) {
        char msg[512];
        snprintf(msg, sizeof msg, "farmd: commit failed, stopping to protect the queue: %s",
                 sqlite3_errmsg(farmd.db));
        fprintf(stderr, "%s\n", msg);
        farmd_fail_clients(msg);
        exit(1);
    }
    sqlite3_reset(st);
    return 0;
}

void farmd_event(int64_t task, const char *kind, const char *data)
{
    farmd_tx();
    sqlite3_stmt *st =
        farm__db_stmt(farmd.db, "INSERT INTO events(task, t, kind, data) VALUES(?,?,?,?)");
    farm__db_run(st, "iiss", task, farm_now_ms(), kind, data);
}

/* ---- the ready heap ------------------------------------------------------ */

static int before(const struct ready *a, const struct ready *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->id < b->id);
}

void farmd_ready_push(int64_t id, int64_t prio)
{
    size_t i;
    if (farmd.heap_len == farmd.heap_cap) {
        size_t cap = farmd.heap_cap ? farmd.heap_cap * 2 : 1024;
        struct ready *h = realloc(farmd.heap, cap * sizeof *h);
        if (!h) {
            fprintf(stderr, "farmd: out of memory\n");
            exit(1);
        }
        farmd.heap = h;
        farmd.heap_cap = cap;
    }
    i = farmd.heap_len++;
    farmd.heap[i] = (struct ready){prio, id};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&farmd.heap[i], &farmd.heap[p]))
            break;
        struct ready t = farmd.heap[i];
        farmd.heap[i] = farmd.heap[p];
        farmd.heap[p] = t;
        i = p;
    }
}

static int ready_pop(int64_t *id)
{
    size_t i = 0;
    if (farmd.heap_len == 0)
        return 0;
    *id = farmd.heap[0].id;
    farmd.heap[0] = farmd.heap[--farmd.heap_len];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < farmd.heap_len && before(&farmd.heap[l], &farmd.heap[m]))
            m = l;
        if (r < farmd.heap_len && before(&farmd.heap[r], &farmd.heap[m]))
            m = r;
        if (m == i)
            break;
        struct ready t = farmd.heap[i];
        farmd.heap[i] = farmd.heap[m];
        farmd.heap[m] = t;
        i = m;
    }
    return 1;
}

/* ---- plugin descriptions ------------------------------------------------- */

/* Runs `farm-plugin-host --describe PATH` and parses its one line of JSON. The
 * plugin's code runs in that child only, never in farmd. */
static int describe_with_host(const char *path, json_t **out, struct farm_err *err)
{
    int fds[2], st;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    char *argv[] = {farmd.host_path, "--describe", (char *)path, NULL};
    /* A description grows with the parameter table: read it whole, up to
     * a limit no sane table comes near. */
    enum { DESCRIBE_MAX = 16 << 20 };
    char *buf = NULL;
    size_t got = 0, cap = 0;
    int too_big = 0;
    json_t *j;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return farm_err_set(err, -errno, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    if (posix_spawn(&pid, farmd.host_path, &fa, NULL, argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        close(fds[0]);
        close(fds[1]);
        return farm_err_set(err, FARM_ENOPLUGIN, "cannot run %s", farmd.host_path);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    for (;;) {
        ssize_t n;
        if (cap - got < 65536) {
            char *more = cap < DESCRIBE_MAX ? realloc(buf, cap ? cap * 2 : 65536) : NULL;
            if (!more) {
                too_big = 1;
                break;
            }
            buf = more;
            cap = cap ? cap * 2 : 65536;
        }
        n = read(fds[0], buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (buf)
        buf[got] = '\0';
    j = buf && !too_big ? json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    free(buf);
    if (!j)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: describing it failed (%s)", path,
                            too_big             ? "its description is larger than 16 MiB"
                            : WIFSIGNALED(st) ? "crashed"
                                              : "no output");
    if (json_object_get(j, "error")) {
        farm_err_set(err, FARM_EBADPLUGIN, "%s",
                     json_string_value(json_object_get(json_object_get(j, "error"), "message")));
        json_decref(j);
        return FARM_EBADPLUGIN;
    }
    *out = j;
    return 0;
}

int farmd_describe_plugin(const char *name, json_t **desc, struct farm_err *err)
{
    char path[PATH_MAX];
    struct stat st;
    json_t *e;
    int rc;
    if ((rc = farm__plugin_find(name, farmd.home, path, sizeof path, err)) < 0)
        return rc;
    if (stat(path, &st) < 0)
        return farm_err_set(err, FARM_ENOPLUGIN, "%s: %s", path, strerror(errno));
    e = json_object_get(farmd.plugin_cache, name);
    if (e && !strcmp(json_string_value(json_object_get(e, "path")), path) &&
        json_integer_value(json_object_get(e, "size")) == (json_int_t)st.st_size &&
        json_integer_value(json_object_get(e, "mtime")) ==
            (json_int_t)(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec)) {
        *desc = json_object_get(e, "desc");
        return 0;
    }
    json_t *d = NULL;
    if ((rc = describe_with_host(path, &d, err)) < 0)
        return rc;
    json_object_set_new(farmd.plugin_cache, name,
                        json_pack("{s:s,s:I,s:I,s:o}", "path", path, "size", (json_int_t)st.st_size,
                                  "mtime",
                                  (json_int_t)(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec),
                                  "desc", d));
    *desc = d;
    return 0;
}

/* ---- runs ---------------------------------------------------------------- */

struct run *farmd_find_run(int64_t id)
{
    for (struct run *r = farmd.runs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* Event buffers of ended runs, kept for the next ones: a run reads a few
 * short lines, and a fresh 8 KiB block per run made malloc consolidate its
 * small free chunks every time (2-3% of farmd's time in a drain). */
#define EVBUF_SIZE 8192
static char *g_evbufs[32];
static int g_nevbufs;

static void evbuf_put(char *p, size_t cap)
{
    if (p && cap == EVBUF_SIZE && g_nevbufs < (int)(sizeof g_evbufs / sizeof *g_evbufs))
        g_evbufs[g_nevbufs++] = p;
    else
        free(p);
}

static void run_closed(uv_handle_t *h)
{
    struct run *r = h->data;
    if (++r->closed_handles < r->n_handles)
        return;
    json_decref(r->result);
    json_decref(r->deps);
    evbuf_put(r->buf, r->cap);
    free(r->progress_what);
    free(r);
}

/* When the last task of a git submission ends, its results go back to the
 * commit as a note under refs/notes/farm: `git log --notes=farm` shows them. */
static void maybe_note(int64_t task)
{
    sqlite3_stmt *st = farm__db_stmt(
        farmd.db, "SELECT s.id, s.git_repo, s.git_commit FROM tasks t JOIN submissions s ON "
                  "s.id=t.submission WHERE t.id=? AND s.kind='git'");
    int64_t sub;
    char repo[PATH_MAX], commit[64], *text = NULL;
    size_t len = 0, ok = 0, n = 0;
    FILE *f;
    struct farm_err err;
    if (farmd.git_submissions == 0)
        return; /* no commit to note on: nothing came from git */
    if (farm__db_run(st, "i", task) != SQLITE_ROW) {
        sqlite3_reset(st);
        return;
    }
    sub = sqlite3_column_int64(st, 0);
    snprintf(repo, sizeof repo, "%s", sqlite3_column_text(st, 1));
    snprintf(commit, sizeof commit, "%s", sqlite3_column_text(st, 2));
    sqlite3_reset(st);
    st = farm__db_stmt(farmd.db, "SELECT count(*) FROM tasks WHERE submission=? AND "
                                 FARM_LIVE_STATES);
    if (farm__db_run(st, "i", sub) != SQLITE_ROW || sqlite3_column_int(st, 0) > 0) {
        sqlite3_reset(st);
        return;
    }
    sqlite3_reset(st);
    f = open_memstream(&text, &len);
    st = farm__db_stmt(farmd.db, "SELECT id, name, state, exit_code, started_at, finished_at, "
                                 "reason FROM tasks WHERE submission=? ORDER BY id");
    sqlite3_bind_int64(st, 1, sub);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *state = (const char *)sqlite3_column_text(st, 2);
        sqlite3_stmt *m;
        n++;
        ok += !strcmp(state, "succeeded");
        fprintf(f, "%s: %s", sqlite3_column_text(st, 1), state);
        if (sqlite3_column_type(st, 4) != SQLITE_NULL && sqlite3_column_type(st, 5) != SQLITE_NULL)
            fprintf(f, " in %.1fs",
                    (double)(sqlite3_column_int64(st, 5) - sqlite3_column_int64(st, 4)) / 1000);
        if (sqlite3_column_type(st, 3) != SQLITE_NULL)
            fprintf(f, " (exit %d)", sqlite3_column_int(st, 3));
        m = farm__db_stmt(farmd.db, "SELECT name, value FROM metrics WHERE task=? AND rowid IN "
                                    "(SELECT max(rowid) FROM metrics WHERE task=? GROUP BY name) "
                                    "ORDER BY name LIMIT 6");
        sqlite3_bind_int64(m, 1, id);
        sqlite3_bind_int64(m, 2, id);
        while (sqlite3_step(m) == SQLITE_ROW)
            fprintf(f, " %s=%.4g", sqlite3_column_text(m, 0), sqlite3_column_double(m, 1));
        sqlite3_reset(m);
        if (strcmp(state, "succeeded") != 0 && sqlite3_column_type(st, 6) != SQLITE_NULL)
            fprintf(f, " [%s]", sqlite3_column_text(st, 6));
        fprintf(f, " (farm task %lld)\n", (long long)id);
    }
    sqlite3_reset(st);
    fprintf(f, "farm: %zu of %zu task(s) succeeded", ok, n);
    {
        sqlite3_stmt *c = farm__db_stmt(farmd.db, "SELECT state, count(*) FROM tasks WHERE "
                                                  "submission=? AND state!='succeeded' GROUP BY "
                                                  "state ORDER BY state");
        sqlite3_bind_int64(c, 1, sub);
        while (sqlite3_step(c) == SQLITE_ROW)
            fprintf(f, ", %d %s", sqlite3_column_int(c, 1), sqlite3_column_text(c, 0));
        sqlite3_reset(c);
    }
    fputc('\n', f);
    fclose(f);
    farm_err_clear(&err);
    if (farm__git_write_note(repo, commit, text, &err) < 0)
        fprintf(stderr, "farmd: note on %.12s in %s: %s\n", commit, repo, err.msg);
    free(text);
}

void farmd_set_terminal(int64_t id, int attempt, const char *state, int exit_code,
                        int has_exit, const char *reason)
{
    int64_t now = farm_now_ms();
    sqlite3_stmt *st;
    farmd_tx();
    st = farm__db_stmt(farmd.db, "UPDATE tasks SET state=?, exit_code=?, reason=?, "
                                 "finished_at=? WHERE id=?");
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    if (has_exit)
        sqlite3_bind_int(st, 2, exit_code);
    if (reason)
        sqlite3_bind_text(st, 3, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, id);
    sqlite3_step(st);
    if (attempt > 0) {
        st = farm__db_stmt(farmd.db, "UPDATE attempts SET state=?, exit_code=?, reason=?, "
                                     "finished_at=? WHERE task=? AND n=?");
        sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
        if (has_exit)
            sqlite3_bind_int(st, 2, exit_code);
        if (reason)
            sqlite3_bind_text(st, 3, reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_int64(st, 5, id);
        sqlite3_bind_int(st, 6, attempt);
        sqlite3_step(st);
    }
    farmd_task_ended(id);
    maybe_note(id);
}

/* Marks every task that needs `id` (transitively) skipped, or releases the
 * ones whose last need just succeeded. */
void farmd_finish_dependents(int64_t id, const char *state)
{
    sqlite3_stmt *st;
    int64_t *deps = NULL;
    size_t n = 0, cap = 0;
    char name[256] = "";
    farmd_tx();
    st = farm__db_stmt(farmd.db, "SELECT n.task FROM task_needs n JOIN tasks t ON t.id=n.task "
                                 "WHERE n.needs=? AND t.state IN ('waiting','queued')");
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            deps = realloc(deps, cap * sizeof *deps);
        }
        deps[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (n > 0 && strcmp(state, "succeeded") != 0) {
        /* Named in the reason of each task skipped for it. */
        st = farm__db_stmt(farmd.db, "SELECT name FROM tasks WHERE id=?");
        if (farm__db_run(st, "i", id) == SQLITE_ROW)
            snprintf(name, sizeof name, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
    }
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(state, "succeeded")) {
            st = farm__db_stmt(farmd.db,
                               "UPDATE tasks SET pending_needs=pending_needs-1, "
                               "state=CASE WHEN pending_needs<=1 THEN 'queued' ELSE state END "
                               "WHERE id=? AND state='waiting' RETURNING state, priority");
            sqlite3_bind_int64(st, 1, deps[i]);
            if (sqlite3_step(st) == SQLITE_ROW &&
                !strcmp((const char *)sqlite3_column_text(st, 0), "queued"))
                farmd_ready_push(deps[i], sqlite3_column_int64(st, 1));
            sqlite3_reset(st);
        } else {
            char reason[512];
            snprintf(reason, sizeof reason, "needs task %lld (%s), which ended %s",
                     (long long)id, name, state);
            farmd_set_terminal(deps[i], 0, "skipped", 0, 0, reason);
            farmd_finish_dependents(deps[i], "skipped");
        }
    }
    free(deps);
}

/* Scratch slots: $FARM_HOME/scratch/<this farmd's start time>/<slot>. A
 * new farmd never reuses an earlier one's paths, where a process that
 * outlived its attempt may still write; and a slot whose worker sent no
 * result, or could not empty it, is retired for good: retention removes
 * both. */
static unsigned char *g_retired;
static int g_nretired;

static int slot_retired(int k)
{
    return k < g_nretired && g_retired[k];
}

static void slot_retire(int k)
{
    if (k >= g_nretired) {
        int n = k + 64;
        unsigned char *p = realloc(g_retired, (size_t)n);
        if (!p)
            return;
        memset(p + g_nretired, 0, (size_t)(n - g_nretired));
        g_retired = p;
        g_nretired = n;
    }
    g_retired[k] = 1;
}

static void scratch_base(char *buf, size_t len)
{
    snprintf(buf, len, "%s/scratch/%lld", farmd.home, (long long)farmd.started_ms);
}

/* The lowest scratch slot that no running attempt holds and is not retired. */
static int free_slot(void)
{
    for (int k = 0;; k++) {
        struct run *r = farmd.runs;
        if (slot_retired(k))
            continue;
        while (r && r->slot != k)
            r = r->next;
        if (!r)
            return k;
    }
}

/* Retention's part: the scratch directories of earlier farmds, and this
 * one's retired slots. */
static void scratch_prune(void)
{
    char dir[PATH_MAX], mine[PATH_MAX];
    DIR *d;
    struct dirent *e;
    snprintf(dir, sizeof dir, "%.3000s/scratch", farmd.home);
    snprintf(mine, sizeof mine, "%lld", (long long)farmd.started_ms);
    if ((d = opendir(dir))) {
        while ((e = readdir(d))) {
            char path[PATH_MAX + 300];
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
                !strcmp(e->d_name, mine))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            farm_rmtree(path);
        }
        closedir(d);
    }
    scratch_base(dir, sizeof dir);
    for (int k = 0; k < g_nretired; k++) {
        char path[PATH_MAX + 32];
        if (!g_retired[k])
            continue;
        snprintf(path, sizeof path, "%s/%d", dir, k);
        farm_rmtree(path);
    }
}

static void finalize(struct run *r)
{
    struct run **pp;
    int64_t exit_status = r->exit_status;
    int term_signal = r->term_signal;
    const char *state = "failed";
    char reason[1024] = "";
    int exit_code = 1, has_exit = 1;
    sqlite3_stmt *st;
    int retries = 0, attempts = 0, interrupts = 0;
    int64_t prio = 0;

    if (r->result) {
        const char *s = json_string_value(json_object_get(r->result, "state"));
        json_t *rs = json_object_get(r->result, "reason");
        state = s ? s : "failed";
        exit_code = (int)json_integer_value(json_object_get(r->result, "exit_code"));
        if (json_is_string(rs))
            snprintf(reason, sizeof reason, "%s", json_string_value(rs));
        if (json_is_true(json_object_get(r->result, "log_truncated"))) {
            /* A task that floods its log past the cap, or whose log could
             * not be written (a full disk), fails, whatever its plugin
             * returned: its output was not kept whole. */
            const char *werr = json_string_value(json_object_get(r->result, "log_error"));
            char why[300];
            size_t l;
            if (werr)
                snprintf(why, sizeof why, "writing the log failed (%s); log truncated", werr);
            else
                snprintf(why, sizeof why,
                         "output exceeded the log size cap (%lld bytes); log truncated",
                         (long long)farmd.cfg.log_cap);
            if (s && !strcmp(s, "succeeded"))
                reason[0] = '\0';
            l = strlen(reason);
            snprintf(reason + l, sizeof reason - l, "%s%s", l ? "; " : "", why);
            state = "failed";
            if (exit_code == 0)
                exit_code = 1;
        }
    } else if (term_signal) {
        snprintf(reason, sizeof reason, "worker killed by signal %d", term_signal);
        exit_code = 128 + term_signal;
    } else if (r->start_errno) {
        snprintf(reason, sizeof reason, "the fork server could not start the worker: %s",
                 strerror(r->start_errno));
        exit_code = 127;
    } else if (!r->exited || r->exit_unknown) {
        snprintf(reason, sizeof reason, "worker ended without reporting, and how it ended "
                                        "was not heard");
    } else {
        snprintf(reason, sizeof reason, "worker exited with status %lld before reporting",
                 (long long)exit_status);
        exit_code = (int)exit_status;
    }
    if (r->result && !strcmp(state, "succeeded")) {
        /* The attempt succeeded before a signal could reach it: a timeout,
         * cancel or stop that came too late changes nothing. */
    } else if (r->timed_out) {
        state = "timed_out";
        snprintf(reason, sizeof reason, "timed out");
    } else if (r->cancel_requested) {
        state = "cancelled";
        if (!reason[0] || strstr(reason, "stopped (SIGTERM)") || !r->result)
            snprintf(reason, sizeof reason, "cancelled");
    } else if (r->stopping || (farmd.stopping && !strcmp(state, "cancelled"))) {
        /* Stopped by farmd, or by whoever stops farmd (a service manager
         * signalling the whole group) during the grace period. */
        state = "interrupted";
    }

    if (!r->result && r->pid > 0)
        /* The worker died without its result (killed from outside): what
         * it had started is still in its session, with no supervisor left
         * to stop it. (A process that called setsid() escapes.) */
        farm_signal_session(r->pid, SIGKILL);
    if (!r->result || json_is_true(json_object_get(r->result, "scratch_left")))
        /* The worker did not empty its scratch slot (it died, or a file
         * would not go, or the path is no longer its directory), or a
         * process of the task may still write there: no attempt gets it
         * again. */
        slot_retire(r->slot);

    farmd_tx();
    if (!strcmp(state, "failed") || !strcmp(state, "timed_out")) {
        /* Whether there is an attempt left: only a failure asks. */
        /* Interrupted attempts (a crash or a stop of farmd) do not count
         * against the retries. */
        st = farm__db_stmt(farmd.db,
                           "SELECT retries, attempts, (SELECT count(*) FROM attempts "
                           "WHERE task=tasks.id AND state='interrupted'), priority "
                           "FROM tasks WHERE id=?");
        if (farm__db_run(st, "i", r->id) == SQLITE_ROW) {
            retries = sqlite3_column_int(st, 0);
            attempts = sqlite3_column_int(st, 1);
            interrupts = sqlite3_column_int(st, 2);
            prio = sqlite3_column_int64(st, 3);
        }
        sqlite3_reset(st);
    }
    if (r->deps) {
        char *d = json_dumps(r->deps, JSON_COMPACT);
        st = farm__db_stmt(farmd.db, "UPDATE tasks SET deps_result=? WHERE id=?");
        farm__db_run(st, "si", d, r->id);
        free(d);
    }

    if (!strcmp(state, "interrupted")) {
        /* farmd is stopping: the attempt is recorded interrupted and the task
         * goes back to the queue for the next start. */
        st = farm__db_stmt(farmd.db, "UPDATE attempts SET state='interrupted', reason=?, "
                                     "finished_at=? WHERE task=? AND n=?");
        farm__db_run(st, "siii", "farmd stopped while it ran", farm_now_ms(), r->id,
                     (int64_t)r->attempt);
        /* (Not counted against the limit on interruptions, which is there
         * for attempts that a crash of farmd cut short.) */
        st = farm__db_stmt(farmd.db, "UPDATE tasks SET state='queued' WHERE id=?");
        farm__db_run(st, "i", r->id);
    } else if ((!strcmp(state, "failed") || !strcmp(state, "timed_out")) &&
               attempts - interrupts <= retries) {
        st = farm__db_stmt(farmd.db, "UPDATE attempts SET state=?, exit_code=?, reason=?, "
                                     "finished_at=? WHERE task=? AND n=?");
        farm__db_run(st, "sisiii", state, (int64_t)exit_code, reason[0] ? reason : NULL,
                     farm_now_ms(), r->id, (int64_t)r->attempt);
        st = farm__db_stmt(farmd.db, "UPDATE tasks SET state='queued', exit_code=?, reason=? "
                                     "WHERE id=?");
        char why[1100];
        snprintf(why, sizeof why, "attempt %d %s%s%s; retrying", r->attempt, state,
                 reason[0] ? ": " : "", reason);
        farm__db_run(st, "isi", (int64_t)exit_code, why, r->id);
        farmd_ready_push(r->id, prio);
    } else {
        farmd_set_terminal(r->id, r->attempt, state, exit_code, has_exit,
                          reason[0] ? reason : NULL);
        farmd_finish_dependents(r->id, state);
    }

    for (pp = &farmd.runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    farmd.n_running--;
    if (!r->via_server)
        uv_close((uv_handle_t *)&r->proc, run_closed);
    uv_close((uv_handle_t *)&r->events, run_closed);
    uv_close((uv_handle_t *)&r->timeout, run_closed);
    uv_close((uv_handle_t *)&r->kill, run_closed);
    if (farmd.n_running == 0)
        farmd_notify_idle();
    if (farmd.stopping && farmd.n_running == 0)
        uv_stop(farmd.loop);
    farmd_schedule();
}

static void handle_event(struct run *r, json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "ev"));
    sqlite3_stmt *st;
    if (!kind)
        return;
    if (!strcmp(kind, "result")) {
        json_decref(r->result);
        r->result = json_incref(ev);
    } else if (!strcmp(kind, "progress")) {
        r->progress = json_number_value(json_object_get(ev, "fraction"));
        free(r->progress_what);
        r->progress_what = json_is_string(json_object_get(ev, "what"))
                               ? strdup(json_string_value(json_object_get(ev, "what")))
                               : NULL;
        farmd_notify_progress(r->id, r->progress, r->progress_what);
    } else if (!strcmp(kind, "metric")) {
        json_t *v = json_object_get(ev, "value");
        farmd_tx();
        st = farm__db_stmt(farmd.db, "INSERT INTO metrics(task, attempt, name, step, value, t) "
                                     "VALUES(?,?,?,?,?,?)");
        sqlite3_bind_int64(st, 1, r->id);
        sqlite3_bind_int(st, 2, r->attempt);
        sqlite3_bind_text(st, 3, json_string_value(json_object_get(ev, "name")), -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, json_integer_value(json_object_get(ev, "step")));
        if (json_is_number(v))
            sqlite3_bind_double(st, 5, json_number_value(v));
        sqlite3_bind_int64(st, 6, json_integer_value(json_object_get(ev, "t")));
        sqlite3_step(st);
    } else if (!strcmp(kind, "artifact")) {
        /* Any process of the task can write to the event stream: a name
         * that is not a plain file name (a path out of the artifacts
         * directory, say) is not recorded. */
        if (!farm_artifact_name_ok(json_string_value(json_object_get(ev, "name"))))
            return;
        farmd_tx();
        st = farm__db_stmt(farmd.db, "INSERT OR REPLACE INTO artifacts(task, name, size, attempt) "
                                     "VALUES(?,?,?,?)");
        farm__db_run(st, "isii", r->id, json_string_value(json_object_get(ev, "name")),
                     (int64_t)json_integer_value(json_object_get(ev, "size")), (int64_t)r->attempt);
    } else if (!strcmp(kind, "deps")) {
        json_decref(r->deps);
        r->deps = json_incref(ev);
        json_object_del(r->deps, "ev");
    }
}

static void drain_timeout(uv_timer_t *t)
{
    struct run *r = t->data;
    if (!r->finalized) {
        r->finalized = 1;
        finalize(r);
    }
}

/* The worker has exited. Its result line may still be in the event socket:
 * finish when the stream reaches its end, or after a second at most (a
 * process that escaped could hold the socket open). */
static void run_exited(struct run *r, int64_t exit_status, int term_signal)
{
    if (r->exited)
        return;
    r->exited = 1;
    r->exit_status = exit_status;
    r->term_signal = term_signal;
    uv_timer_stop(&r->kill);
    if (r->eof) {
        r->finalized = 1;
        finalize(r);
    } else {
        uv_timer_start(&r->timeout, drain_timeout, 1000, 0);
    }
}

static void run_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    run_exited(proc->data, exit_status, term_signal);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct run *r = h->data;
    (void)suggested;
    if (!r->buf && g_nevbufs > 0) {
        r->buf = g_evbufs[--g_nevbufs];
        r->cap = EVBUF_SIZE;
    }
    if (r->cap - r->len < 4096) {
        size_t cap = r->cap ? r->cap * 2 : EVBUF_SIZE;
        char *p = realloc(r->buf, cap);
        if (!p) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        r->buf = p;
        r->cap = cap;
    }
    buf->base = r->buf + r->len;
    buf->len = r->cap - r->len;
}

static void events_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct run *r = s->data;
    char *start, *nl;
    (void)buf;
    if (n < 0) {
        uv_read_stop(s);
        r->eof = 1;
        if ((r->await_eof || (r->result && r->via_server)) && !r->finalized) {
            /* The worker closes its end right after its result, before it
             * exits: the attempt is over. (The fork server's word on the
             * exit comes later and finds no run.) */
            uv_timer_stop(&r->timeout);
            r->finalized = 1;
            finalize(r);
        } else if (r->exited && !r->finalized) {
            uv_timer_stop(&r->timeout);
            r->finalized = 1;
            finalize(r);
        } else if (!r->finalized) {
            /* The worker's end closed without a result: it died. How is
             * the fork server's to say, within milliseconds; should that
             * word never come, the attempt still ends. */
            uv_timer_start(&r->timeout, drain_timeout, 5000, 0);
        }
        return;
    }
    r->len += (size_t)n;
    start = r->buf;
    while ((nl = memchr(start, '\n', r->len - (size_t)(start - r->buf)))) {
        json_t *ev = json_loadb(start, (size_t)(nl - start), 0, NULL);
        if (ev) {
            handle_event(r, ev);
            json_decref(ev);
        }
        start = nl + 1;
    }
    r->len -= (size_t)(start - r->buf);
    memmove(r->buf, start, r->len);
    if (r->len > (1u << 20))
        r->len = 0; /* a worker that floods without newlines loses that line only */
}

static void kill_cb(uv_timer_t *t)
{
    struct run *r = t->data;
    /* The worker did not finish within its grace period after SIGTERM:
     * kill its whole session (it leads it; the task's processes sit in
     * process groups of their own inside it). */
    if (r->pid > 0 && !r->exited) {
        farm_signal_session(r->pid, SIGKILL);
        kill(r->pid, SIGKILL);
    }
}

static void signal_run(struct run *r)
{
    if (r->pid <= 0 && r->await_eof && !r->eof) {
        /* Its fork server died before saying which pid it forked (if it
         * forked at all). Ending our side of the event stream is what the
         * worker takes for farmd going away: it stops its task as for a
         * cancel, and its end of the stream closes. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&r->events, &fd) == 0)
            shutdown(fd, SHUT_WR);
        return;
    }
    if (r->exited || r->pid <= 0)
        return; /* not started yet: signalled when the fork server says */
    kill(r->pid, SIGTERM);
    if (!uv_is_active((uv_handle_t *)&r->kill))
        uv_timer_start(&r->kill, kill_cb, (uint64_t)farmd.cfg.grace_ms + 3000, 0);
}

static void timeout_cb(uv_timer_t *t)
{
    struct run *r = t->data;
    /* (A run whose fork server died unheard counts as exited, but its
     * worker may still run: it is stopped through its event stream.) */
    if ((r->exited && !(r->pid <= 0 && r->await_eof)) || r->result)
        return;
    if (!r->timeout_due) {
        /* Timers run before the loop reads its sockets: if farmd itself
         * was held up past the deadline (stopped, a slow disk), the result
         * of an attempt that ended in time may be waiting in the event
         * socket. Read what is there first: one more turn of the loop. */
        r->timeout_due = 1;
        uv_timer_start(t, timeout_cb, 0, 0);
        return;
    }
    r->timed_out = 1;
    signal_run(r);
}

int farmd_cancel(int64_t id, const char *reason, struct farm_err *err)
{
    struct run *r = farmd_find_run(id);
    sqlite3_stmt *st;
    if (r) {
        r->cancel_requested = 1;
        signal_run(r);
        return 1;
    }
    farmd_tx();
    st = farm__db_stmt(farmd.db, "SELECT state FROM tasks WHERE id=?");
    if (farm__db_run(st, "i", id) != SQLITE_ROW)
        return farm_err_set(err, FARM_ENOTASK, "no task %lld", (long long)id);
    {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (strcmp(s, "queued") != 0 && strcmp(s, "waiting") != 0) {
            farm_err_set(err, FARM_ESTATE, "task %lld already ended %s", (long long)id, s);
            sqlite3_reset(st);
            return 0;
        }
    }
    sqlite3_reset(st);
    {
        /* A task queued again for a retry keeps the exit code of its last
         * finished attempt (docs/cli.md: exit_code). */
        int code = 0, has = 0;
        st = farm__db_stmt(farmd.db, "SELECT exit_code FROM attempts WHERE task=? AND "
                                     "exit_code IS NOT NULL ORDER BY n DESC LIMIT 1");
        if (farm__db_run(st, "i", id) == SQLITE_ROW) {
            code = sqlite3_column_int(st, 0);
            has = 1;
        }
        sqlite3_reset(st);
        /* A queued task leaves the heap lazily: start_run skips rows that
         * are no longer queued. */
        farmd_set_terminal(id, 0, "cancelled", code, has, reason ? reason : "cancelled");
    }
    farmd_finish_dependents(id, "cancelled");
    return 0;
}

static json_t *load_task_for_run(int64_t id)
{
    sqlite3_stmt *st = farm__db_stmt(
        farmd.db, "SELECT t.state, t.plugin, t.params, t.timeout, t.attempts, t.deps, "
                  "s.snapshot, s.work_dir, t.name, s.git_repo, s.git_commit, s.source "
                  "FROM tasks t LEFT JOIN submissions s ON s.id=t.submission WHERE t.id=?");
    json_t *t = NULL;
    if (farm__db_run(st, "i", id) == SQLITE_ROW &&
        !strcmp((const char *)sqlite3_column_text(st, 0), "queued")) {
        json_t *params;
        json_error_t je;
        t = json_object();
        json_object_set_new(t, "plugin", json_string((const char *)sqlite3_column_text(st, 1)));
        params = json_loads((const char *)sqlite3_column_text(st, 2), 0, &je);
        if (!params) {
            /* Written by a farmd that let through what this one refuses:
             * the task fails, farmd goes on. */
            char why[300];
            snprintf(why, sizeof why, "its stored parameters cannot be read: %s", je.text);
            json_object_set_new(t, "load_error", json_string(why));
        }
        json_object_set_new(t, "params", params ? params : json_object());
        json_object_set_new(t, "timeout", json_integer(sqlite3_column_int64(st, 3)));
        json_object_set_new(t, "attempt", json_integer(sqlite3_column_int(st, 4) + 1));
        if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
            json_t *deps = json_loads((const char *)sqlite3_column_text(st, 5), 0, &je);
            if (deps)
                json_object_set_new(t, "deps", deps);
            else if (!json_object_get(t, "load_error")) {
                char why[300];
                snprintf(why, sizeof why, "its stored deps cannot be read: %s", je.text);
                json_object_set_new(t, "load_error", json_string(why));
            }
        }
        if (sqlite3_column_type(st, 6) != SQLITE_NULL)
            json_object_set_new(t, "snapshot",
                                json_string((const char *)sqlite3_column_text(st, 6)));
        if (sqlite3_column_type(st, 7) != SQLITE_NULL)
            json_object_set_new(t, "cwd", json_string((const char *)sqlite3_column_text(st, 7)));
        json_object_set_new(t, "name", json_string((const char *)sqlite3_column_text(st, 8)));
        if (sqlite3_column_type(st, 11) != SQLITE_NULL)
            json_object_set_new(t, "source_label",
                                json_string((const char *)sqlite3_column_text(st, 11)));
        if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
            json_object_set_new(t, "git_repo",
                                json_string((const char *)sqlite3_column_text(st, 9)));
            json_object_set_new(t, "git_commit",
                                json_string((const char *)sqlite3_column_text(st, 10)));
        }
    }
    sqlite3_reset(st);
    return t;
}

/* ---- the fork server ----------------------------------------------------- */

static void server_start(int k);

static struct run *run_by_token(uint64_t token)
{
    for (struct run *r = farmd.runs; r; r = r->next)
        if (r->via_server && r->token == token)
            return r;
    return NULL;
}

/* A run of fork server `k` (pids are matched with the server that forked
 * them: another may already have a new worker under a reused pid). */
static struct run *run_by_pid(int k, pid_t pid)
{
    for (struct run *r = farmd.runs; r; r = r->next)
        if (r->via_server && r->server == k && r->pid == pid)
            return r;
    return NULL;
}

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static const char *server_name(int k)
{
    return k == SRV_EXEC ? "farm-worker" : "farm-plugin-host";
}

static void server_lost(int k)
{
    struct server *sv = &farmd.srv[k];
    sv->alive = 0;
    /* Closed before its descriptor is: the number may come back at once,
     * for the next server's socket. */
    uv_close((uv_handle_t *)sv->poll, poll_closed);
    sv->poll = NULL;
    close(sv->fd);
    sv->fd = -1;
    /* It may not have exited yet (a read error rather than its end): it is
     * of no use to us any more, and it must not stay behind as a zombie. */
    kill(sv->pid, SIGKILL);
    while (waitpid(sv->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    /* Its tasks go on; their exit statuses are lost, so their end is the
     * end of their event stream. */
    for (struct run *r = farmd.runs; r; r = r->next) {
        if (r->via_server && r->server == k && !r->exited) {
            if (r->pid <= 0) {
                r->exited = 1;
                r->exit_unknown = 1;
            }
            r->await_eof = 1;
            if (r->eof && !r->finalized) {
                r->finalized = 1;
                finalize(r);
            }
        }
    }
    fprintf(stderr, "farmd: the fork server (%s) went away; starting a new one\n",
            server_name(k));
    if (!farmd.stopping)
        server_start(k);
}

/* One line of the fork server's report (see farm-worker's serve()). */
static void server_line(int k, const char *line)
{
    unsigned long long token;
    int pid, st;
    struct run *r;
    if (sscanf(line, "P %llu %d", &token, &pid) == 2 && (r = run_by_token(token))) {
        r->pid = pid;
        if (r->cancel_requested || r->timed_out || r->stopping)
            signal_run(r);
    } else if (sscanf(line, "E %llu %d", &token, &st) == 2 && (r = run_by_token(token))) {
        fprintf(stderr, "farmd: fork server could not start task %lld: %s\n",
                (long long)r->id, strerror(st));
        r->start_errno = st;
        run_exited(r, 127, 0);
    } else if (sscanf(line, "X %d %d", &pid, &st) == 2 && (r = run_by_pid(k, pid))) {
        if (WIFSIGNALED(st))
            run_exited(r, 0, WTERMSIG(st));
        else
            run_exited(r, WEXITSTATUS(st), 0);
    }
}

static void server_readable(uv_poll_t *h, int status, int events)
{
    int k = (int)((struct server *)h->data - farmd.srv);
    (void)events;
    for (;;) {
        char buf[4200], *line, *nl;
        ssize_t n = recv(farmd.srv[k].fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0)
            return;
        if (n <= 0) {
            server_lost(k);
            return;
        }
        buf[n] = '\0';
        for (line = buf; *line; line = nl + 1) {
            if ((nl = strchr(line, '\n')))
                *nl = '\0';
            server_line(k, line);
            if (!nl)
                break;
        }
    }
}

static void server_start(int k)
{
    int sv[2], rc;
    pid_t pid;
    char **envp = NULL;
    posix_spawn_file_actions_t fa;
    char *path = k == SRV_EXEC ? farmd.worker_path : farmd.host_path;
    char *argv[] = {path, "--serve", NULL};
    farmd.srv[k].tried = 1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    /* LD_BIND_NOW: the loader binds every symbol of every library at start,
     * so that no forked worker runs the lazy binder or copies the pages it
     * writes. The fork server takes the variable out of its environment
     * again, before any task could inherit it (unless farmd had it). */
    if (!getenv("LD_BIND_NOW")) {
        size_t n = 0;
        while (environ[n])
            n++;
        envp = calloc(n + 3, sizeof *envp);
        if (envp) {
            memcpy(envp, environ, n * sizeof *envp);
            envp[n] = "LD_BIND_NOW=1";
            envp[n + 1] = "FARM_UNSET_BIND_NOW=1";
        }
    }
    rc = posix_spawn(&pid, path, &fa, NULL, argv, envp ? envp : environ);
    free(envp);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        close(sv[0]);
        close(sv[1]);
        fprintf(stderr, "farmd: cannot start the fork server %s: %s; %s\n", path, strerror(rc),
                k == SRV_EXEC ? "spawning workers one by one" : "farm-worker starts them");
        return;
    }
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    farmd.srv[k].fd = sv[0];
    farmd.srv[k].pid = pid;
    farmd.srv[k].poll = malloc(sizeof *farmd.srv[k].poll);
    if (!farmd.srv[k].poll || uv_poll_init(farmd.loop, farmd.srv[k].poll, sv[0]) < 0) {
        fprintf(stderr, "farmd: cannot watch the fork server %s; %s\n", path,
                k == SRV_EXEC ? "spawning workers one by one" : "farm-worker starts them");
        free(farmd.srv[k].poll);
        farmd.srv[k].poll = NULL;
        close(sv[0]);
        farmd.srv[k].fd = -1;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return;
    }
    farmd.srv[k].alive = 1;
    farmd.srv[k].poll->data = &farmd.srv[k];
    uv_poll_start(farmd.srv[k].poll, UV_READABLE | UV_DISCONNECT, server_readable);
}

/* Hands the start of `r` to the fork server: the worker's end of a new event
 * socket and our stderr travel as SCM_RIGHTS. */
static int start_via_server(struct run *r, const char *run_dir, const char *task_text)
{
    uv_os_sock_t sv[2];
    char cbuf[CMSG_SPACE(2 * sizeof(int))];
    size_t cap = strlen(run_dir) + strlen(task_text) + 64;
    char *msg = malloc(cap);
    struct iovec iov;
    struct msghdr mh = {0};
    struct cmsghdr *cm;
    int fds[2], n;
    if (!msg || cap > (1u << 20) || uv_socketpair(SOCK_STREAM, 0, sv, 0, 0) < 0) {
        free(msg);
        return -1;
    }
    r->token = ++farmd.next_token;
    /* The task travels in the message: no task.json to create per task. */
    n = snprintf(msg, cap, "S %llu %s\n%s", (unsigned long long)r->token, run_dir, task_text);
    iov.iov_base = msg;
    iov.iov_len = (size_t)n;
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
    fds[0] = sv[1];
    fds[1] = STDERR_FILENO;
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    while ((n = (int)sendmsg(farmd.srv[r->server].fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    free(msg);
    close(sv[1]);
    if (n < 0) {
        close(sv[0]);
        return -1;
    }
    /* (uv_pipe_open makes our end non-blocking.) */
    uv_pipe_open(&r->events, sv[0]);
    return 0;
}

/* RUN_DIR/task.json, for a worker started by uv_spawn. 0 or -errno, with
 * the file's name in `path`. */
static int write_task_json(const char *run_dir, const char *text, char *path, size_t len)
{
    int fd, rc;
    farm_mkdirs(run_dir, 0755);
    snprintf(path, len, "%s/task.json", run_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    rc = fd < 0 ? -errno : farm_write_all(fd, text, strlen(text));
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int start_run(int64_t id)
{
    json_t *t = load_task_for_run(id), *spec;
    char run_dir[PATH_MAX], path[PATH_MAX + 64], log[PATH_MAX + 64], idtext[32];
    struct run *r;
    int attempt, rc, slot, k;
    uv_process_options_t opts = {0};
    uv_stdio_container_t stdio[4];
    char *args[4];
    char *text;
    int64_t now = farm_now_ms();

    if (!t)
        return 0; /* cancelled while queued: skip */
    attempt = (int)json_integer_value(json_object_get(t, "attempt"));
    snprintf(run_dir, sizeof run_dir, "%s/runs/%lld", farmd.home, (long long)id);
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    snprintf(log, sizeof log, "%s/log", run_dir);
    if (attempt > 1) {
        /* Earlier attempts keep their logs as log.N. (The worker truncates
         * the log it opens: a first attempt needs nothing here.) A task
         * may have taken the permissions off its run directory: every
         * attempt starts alike. */
        char old[PATH_MAX + 80];
        struct stat st;
        if (lstat(run_dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0700) != 0700)
            chmod(run_dir, (st.st_mode & 07777) | 0700);
        snprintf(old, sizeof old, "%s/log.%d", run_dir, attempt - 1);
        rename(log, old);
    }

    spec = json_pack("{s:I,s:s,s:i,s:s,s:O,s:s,s:I,s:I}", "id", (json_int_t)id, "id_text", idtext,
                     "attempt", attempt, "plugin",
                     json_string_value(json_object_get(t, "plugin")), "params",
                     json_object_get(t, "params"), "home", farmd.home, "grace_ms",
                     (json_int_t)farmd.cfg.grace_ms, "log_cap", (json_int_t)farmd.cfg.log_cap);
    json_object_set_new(spec, "run_dir", json_string(run_dir));
    json_object_set_new(spec, "log", json_string(log));
    snprintf(path, sizeof path, "%s/artifacts", run_dir);
    json_object_set_new(spec, "artifacts_dir", json_string(path));
    slot = free_slot();
    scratch_base(path, sizeof path);
    snprintf(path + strlen(path), sizeof path - strlen(path), "/%d", slot);
    json_object_set_new(spec, "scratch_dir", json_string(path));
    if (json_is_string(json_object_get(t, "snapshot"))) {
        json_object_set(spec, "src", json_object_get(t, "snapshot"));
        snprintf(path, sizeof path, "%s/src", run_dir);
        json_object_set_new(spec, "work_dir", json_string(path));
    } else if (json_is_string(json_object_get(t, "cwd"))) {
        json_object_set(spec, "work_dir", json_object_get(t, "cwd"));
    } else {
        snprintf(path, sizeof path, "%s/src", run_dir);
        farm_mkdirs(path, 0755);
        json_object_set_new(spec, "work_dir", json_string(path));
    }
    if (json_object_get(t, "source_label"))
        json_object_set(spec, "source_label", json_object_get(t, "source_label"));
    if (json_object_get(t, "deps")) {
        json_object_set(spec, "deps", json_object_get(t, "deps"));
        snprintf(path, sizeof path, "%s/deps", run_dir);
        json_object_set_new(spec, "deps_target", json_string(path));
    }
    if (json_object_get(t, "git_repo")) {
        json_object_set(spec, "git_repo", json_object_get(t, "git_repo"));
        json_object_set(spec, "git_commit", json_object_get(t, "git_commit"));
        snprintf(path, sizeof path, "%s/src", run_dir);
        json_object_set_new(spec, "work_dir", json_string(path));
    }
    text = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    if (!text || json_object_get(t, "load_error")) {
        char reason[400];
        snprintf(reason, sizeof reason, "%s",
                 json_object_get(t, "load_error")
                     ? json_string_value(json_object_get(t, "load_error"))
                     : "its start message cannot be written (out of memory)");
        free(text);
        farmd_set_terminal(id, 0, "failed", 1, 1, reason);
        farmd_finish_dependents(id, "failed");
        json_decref(t);
        return 0;
    }
    /* Exec tasks go to the static fork server; tasks of loaded plugins to
     * farm-plugin-host's, started when the first comes (farm-worker's runs
     * them too, through one more exec, if that one cannot run). */
    k = strcmp(json_string_value(json_object_get(t, "plugin")), "exec") == 0 ? SRV_EXEC
                                                                             : SRV_PLUGIN;
    if (k == SRV_PLUGIN && !farmd.srv[k].alive && !farmd.srv[k].tried)
        server_start(k);
    if (!farmd.srv[k].alive)
        k = SRV_EXEC;
    rc = farmd.srv[k].alive ? 0 : write_task_json(run_dir, text, path, sizeof path);
    if (rc < 0) {
        char reason[PATH_MAX + 128];
        free(text);
        snprintf(reason, sizeof reason, "cannot write %s: %s", path, farm_strerror(rc));
        farmd_set_terminal(id, 0, "failed", 1, 1, reason);
        farmd_finish_dependents(id, "failed");
        json_decref(t);
        return 0;
    }

    r = calloc(1, sizeof *r);
    r->id = id;
    r->attempt = attempt;
    r->slot = slot;
    r->started_mono = farm_mono_ms();
    uv_pipe_init(farmd.loop, &r->events, 0);
    r->events.data = r;
    r->server = k;
    if (farmd.srv[k].alive && start_via_server(r, run_dir, text) == 0) {
        r->via_server = 1;
        r->n_handles = 3;
    } else {
        if (farmd.srv[k].alive)
            /* The server would not take it: the worker reads task.json. */
            write_task_json(run_dir, text, path, sizeof path);
        args[0] = farmd.worker_path;
        args[1] = "--run";
        args[2] = run_dir;
        args[3] = NULL;
        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = STDERR_FILENO;
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = STDERR_FILENO;
        stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
        stdio[3].data.stream = (uv_stream_t *)&r->events;
        opts.file = farmd.worker_path;
        opts.args = args;
        opts.exit_cb = run_exit;
        opts.stdio = stdio;
        opts.stdio_count = 4;
        /* Own session and process group, so that a signal to the group
         * reaches the worker and what it started, and a terminal's signals
         * do not. */
        opts.flags = UV_PROCESS_DETACHED;
        r->proc.data = r;
        r->n_handles = 4;
        rc = uv_spawn(farmd.loop, &r->proc, &opts);
        if (rc < 0) {
            char reason[256];
            snprintf(reason, sizeof reason, "cannot start farm-worker: %s", uv_strerror(rc));
            farmd_set_terminal(id, 0, "failed", 1, 1, reason);
            farmd_finish_dependents(id, "failed");
            r->n_handles = 2;
            uv_close((uv_handle_t *)&r->events, run_closed);
            uv_close((uv_handle_t *)&r->proc, run_closed);
            json_decref(t);
            free(text);
            return 0;
        }
        r->pid = r->proc.pid;
    }
    free(text);
    uv_timer_init(farmd.loop, &r->timeout);
    uv_timer_init(farmd.loop, &r->kill);
    r->timeout.data = r->kill.data = r;
    if (json_integer_value(json_object_get(t, "timeout")) > 0)
        uv_timer_start(&r->timeout, timeout_cb,
                       (uint64_t)json_integer_value(json_object_get(t, "timeout")) * 1000, 0);
    uv_read_start((uv_stream_t *)&r->events, alloc_cb, events_read);
    r->next = farmd.runs;
    farmd.runs = r;
    farmd.n_running++;

    farmd_tx();
    {
        sqlite3_stmt *st = farm__db_stmt(
            farmd.db, "UPDATE tasks SET state='running', attempts=?, started_at=?, "
                      "finished_at=NULL WHERE id=?");
        farm__db_run(st, "iii", (int64_t)attempt, now, id);
        st = farm__db_stmt(farmd.db, "INSERT OR REPLACE INTO attempts(task, n, state, log, "
                                     "started_at) VALUES(?,?,'running',?,?)");
        farm__db_run(st, "iisi", id, (int64_t)attempt, log, now);
    }
    json_decref(t);
    return 1;
}

void farmd_schedule(void)
{
    int64_t id;
    while (!farmd.paused && !farmd.stopping && farmd.n_running < farmd.cfg.jobs &&
           ready_pop(&id))
        start_run(id);
}

/* ---- clients and the server ---------------------------------------------- */

void farmd_client_accept(uv_stream_t *server, int status);

static void commit_check_cb(uv_check_t *h)
{
    (void)h;
    farmd_commit();
    farmd_flush_clients();
}

/* ---- start-up, recovery, retention, shutdown ----------------------------- */

static int recover(struct farm_err *err)
{
    sqlite3_stmt *st;
    int64_t now = farm_now_ms();
    char v[64];
    int rc;
    if ((rc = farm__db_exec(farmd.db, "BEGIN IMMEDIATE", err)) < 0)
        return rc;
    /* Attempts that were running when farmd died: interrupted. The task goes
     * back to the queue, up to max_interrupts times, so a task that kills
     * farmd cannot loop forever. */
    st = farm__db_stmt(farmd.db, "UPDATE attempts SET state='interrupted', finished_at=?, "
                                 "reason='farmd died while it ran' WHERE task IN "
                                 "(SELECT id FROM tasks WHERE state='running') AND state='running'");
    farm__db_run(st, "i", now);
    st = farm__db_stmt(farmd.db, "UPDATE tasks SET interrupts=interrupts+1, state='queued' "
                                 "WHERE state='running'");
    farm__db_run(st, "");
    st = farm__db_stmt(farmd.db, "SELECT id FROM tasks WHERE state='queued' AND interrupts>?");
    sqlite3_bind_int(st, 1, farmd.cfg.max_interrupts);
    {
        int64_t *ids = NULL;
        size_t n = 0, cap = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                ids = realloc(ids, cap * sizeof *ids);
            }
            ids[n++] = sqlite3_column_int64(st, 0);
        }
        farmd.in_tx = 1;
        for (size_t i = 0; i < n; i++) {
            char reason[128];
            snprintf(reason, sizeof reason, "interrupted %d times (farmd died while it ran)",
                     farmd.cfg.max_interrupts + 1);
            farmd_set_terminal(ids[i], 0, "failed", 1, 0, reason);
            farmd_finish_dependents(ids[i], "failed");
        }
        free(ids);
    }
    st = farm__db_stmt(farmd.db, "SELECT id, priority FROM tasks WHERE state='queued'");
    while (sqlite3_step(st) == SQLITE_ROW)
        farmd_ready_push(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_reset(st);
    if (farm__db_meta_get(farmd.db, "paused", v, sizeof v) == 0)
        farmd.paused = atoi(v);
    if (farmd.cfg.jobs <= 0 && farm__db_meta_get(farmd.db, "jobs", v, sizeof v) == 0)
        farmd.cfg.jobs = atoi(v);
    if (farmd.cfg.jobs <= 0)
        farmd.cfg.jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
    farmd.in_tx = 1;
    return farmd_commit();
}

/* Retention: run directories and rows of tasks that ended long ago. */
static void retention(uv_timer_t *t)
{
    int64_t cutoff = farm_now_ms() - (int64_t)farmd.cfg.keep_days * 86400000;
    sqlite3_stmt *st;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    (void)t;
    farmd_tx();
    /* Run directories: beyond the keep_runs newest finished ones, or too
     * old; oldest first, each removed once (run_pruned). */
    st = farm__db_stmt(farmd.db,
                       "SELECT id FROM tasks WHERE finished_at IS NOT NULL AND run_pruned=0 AND "
                       "(finished_at < ? OR id NOT IN (SELECT id FROM tasks WHERE finished_at "
                       "IS NOT NULL ORDER BY finished_at DESC LIMIT ?)) "
                       "ORDER BY finished_at LIMIT 5000");
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_int(st, 2, farmd.cfg.keep_runs);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ids = realloc(ids, cap * sizeof *ids);
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    for (size_t i = 0; i < n; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.2000s/runs/%lld", farmd.home, (long long)ids[i]);
        farm_rmtree(dir);
        st = farm__db_stmt(farmd.db, "UPDATE tasks SET run_pruned=1 WHERE id=?");
        farm__db_run(st, "i", ids[i]);
        /* Each attempt remembers its log is gone (a retry starts the task
         * again, but not the logs of the attempts before it). */
        st = farm__db_stmt(farmd.db, "UPDATE attempts SET log=NULL WHERE task=?");
        farm__db_run(st, "i", ids[i]);
    }
    free(ids);
    scratch_prune();
    if (n == 5000) /* more to do: another pass soon, not in one long stall */
        uv_timer_start(&farmd.retention_timer, retention, 1000, 600000);
    /* Rows: tasks that ended before the cutoff go, with what hangs off them. */
    farm__db_exec(farmd.db,
                  "CREATE TEMP TABLE IF NOT EXISTS old_tasks(id INTEGER PRIMARY KEY);"
                  "DELETE FROM old_tasks;",
                  NULL);
    st = farm__db_stmt(farmd.db, "INSERT INTO old_tasks SELECT id FROM tasks WHERE "
                                 "finished_at IS NOT NULL AND finished_at < ? AND run_pruned=1");
    farm__db_run(st, "i", cutoff);
    farm__db_exec(farmd.db,
                  "DELETE FROM metrics WHERE task IN (SELECT id FROM old_tasks);"
                  "DELETE FROM artifacts WHERE task IN (SELECT id FROM old_tasks);"
                  "DELETE FROM attempts WHERE task IN (SELECT id FROM old_tasks);"
                  "DELETE FROM events WHERE task IN (SELECT id FROM old_tasks);"
                  "DELETE FROM task_needs WHERE task IN (SELECT id FROM old_tasks);"
                  "DELETE FROM tasks WHERE id IN (SELECT id FROM old_tasks);",
                  NULL);
    /* Snapshots no task refers to any more. */
    st = farm__db_stmt(farmd.db, "SELECT id, snapshot FROM submissions WHERE snapshot IS NOT "
                                 "NULL AND id NOT IN (SELECT submission FROM tasks WHERE "
                                 "submission IS NOT NULL)");
    while (sqlite3_step(st) == SQLITE_ROW)
        farm_rmtree((const char *)sqlite3_column_text(st, 1));
    farm__db_exec(farmd.db,
                  "DELETE FROM submissions WHERE id NOT IN (SELECT submission FROM tasks "
                  "WHERE submission IS NOT NULL)",
                  NULL);
    farmd_commit();
}

static void stop_timer_cb(uv_timer_t *t)
{
    (void)t;
    /* Grace is over: interrupt what is still running. */
    for (struct run *r = farmd.runs; r; r = r->next) {
        r->stopping = 1;
        signal_run(r);
    }
}

void farmd_begin_stop(void)
{
    if (farmd.stopping)
        return;
    farmd.stopping = 1;
    fprintf(stderr, "farmd: stopping: %d task(s) running, waiting up to %lld ms\n",
            farmd.n_running, (long long)farmd.cfg.grace_ms);
    uv_close((uv_handle_t *)&farmd.server, NULL);
    if (farmd.n_running == 0) {
        uv_stop(farmd.loop);
        return;
    }
    uv_timer_start(&farmd.stop_timer, stop_timer_cb, (uint64_t)farmd.cfg.grace_ms, 0);
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    farmd_begin_stop();
}

/* Options of `farm daemon start` are kept in the database, so that a farmd
 * started later without them (by any farm command, after a crash) runs the
 * same way. Options given now replace the kept ones. */
static void apply_settings(void)
{
    static const char *keys[] = {"durability", "grace", "log-cap", "keep-days", "keep-runs", NULL};
    char v[64], key[80];
    for (int i = 0; keys[i]; i++) {
        json_t *g = json_object_get(farmd.given, keys[i]);
        snprintf(key, sizeof key, "opt.%s", keys[i]);
        if (g) {
            farm__db_meta_set(farmd.db, key, json_string_value(g));
            continue;
        }
        if (farm__db_meta_get(farmd.db, key, v, sizeof v) < 0)
            continue;
        if (!strcmp(keys[i], "durability"))
            farmd.cfg.durability_full = !strcmp(v, "full");
        else if (!strcmp(keys[i], "grace")) {
            /* (An older farmd kept values that are refused now.) */
            double sec = atof(v);
            if (sec >= 0 && sec <= 86400)
                farmd.cfg.grace_ms = (int64_t)(sec * 1000);
        }
        else if (!strcmp(keys[i], "log-cap"))
            farmd.cfg.log_cap = atoll(v);
        else if (!strcmp(keys[i], "keep-days"))
            farmd.cfg.keep_days = atoi(v);
        else if (!strcmp(keys[i], "keep-runs"))
            farmd.cfg.keep_runs = atoi(v);
    }
    farm__db_exec(farmd.db,
                  farmd.cfg.durability_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                  NULL);
    if (farmd.cfg.jobs > 0) {
        snprintf(v, sizeof v, "%d", farmd.cfg.jobs);
        farm__db_meta_set(farmd.db, "jobs", v);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: farmd [--jobs N] [--durability normal|full] [--grace SEC]\n"
               "             [--log-cap BYTES] [--keep-days D] [--keep-runs N] [--foreground]\n"
               "farmd is started by `farm daemon start` (or by any farm command); see\n"
               "`farm daemon --help`.\n");
}

static int parse_args(int argc, char **argv)
{
    farmd.given = json_object();
    farmd.cfg.grace_ms = 10000;
    farmd.cfg.log_cap = 256LL << 20;
    farmd.cfg.keep_days = 30;
    farmd.cfg.keep_runs = 1000;
    farmd.cfg.max_interrupts = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--foreground")) {
            farmd.cfg.foreground = 1;
            continue;
        }
        if (!strcmp(a, "--check")) {
            farmd.cfg.check_only = 1;
            continue;
        }
        if (!strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "farmd: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--jobs") != 0) {
            /* remembered in the database, see apply_settings */
            char key[64];
            snprintf(key, sizeof key, "%s", a + 2);
            json_object_set_new(farmd.given, key, json_string(v));
        }
        if (!strcmp(a, "--jobs")) {
            farmd.cfg.jobs = (int)strtol(v, &end, 10);
            if (*end || farmd.cfg.jobs < 1 || farmd.cfg.jobs > 4096)
                goto bad;
        } else if (!strcmp(a, "--durability")) {
            if (!strcmp(v, "full"))
                farmd.cfg.durability_full = 1;
            else if (strcmp(v, "normal") != 0)
                goto bad;
        } else if (!strcmp(a, "--grace")) {
            /* Finite and at most a day: an infinite grace would never
             * reach the SIGKILL. */
            double s;
            errno = 0;
            s = strtod(v, &end);
            if (end == v || *end || errno || !(s >= 0 && s <= 86400))
                goto bad;
            farmd.cfg.grace_ms = (int64_t)(s * 1000);
        } else if (!strcmp(a, "--log-cap")) {
            errno = 0;
            farmd.cfg.log_cap = strtoll(v, &end, 10);
            if (end == v || *end || errno || farmd.cfg.log_cap < 1024)
                goto bad;
        } else if (!strcmp(a, "--keep-days") || !strcmp(a, "--keep-runs")) {
            long n;
            errno = 0;
            n = strtol(v, &end, 10);
            if (end == v || *end || errno || n < 0 || n > INT_MAX)
                goto bad;
            if (!strcmp(a, "--keep-days"))
                farmd.cfg.keep_days = (int)n;
            else
                farmd.cfg.keep_runs = (int)n;
        } else {
            fprintf(stderr, "farmd: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "farmd: %s: bad value \"%s\" (expected %s)\n", a, v,
                !strcmp(a, "--jobs")          ? "a number of jobs from 1 to 4096"
                : !strcmp(a, "--durability")  ? "normal or full"
                : !strcmp(a, "--grace")       ? "seconds from 0 to 86400"
                : !strcmp(a, "--log-cap")     ? "a number of bytes, at least 1024"
                                              : "a whole number, 0 or more");
        return -1;
    }
    return 0;
}

/* Descriptors farmd did not open itself (a shell's, a starter's) are not
 * its to hand on: closed at start, so that no worker and no task inherits
 * them. */
static void close_inherited(void)
{
    DIR *d;
    struct dirent *e;
    int fds[256], n = 0;
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return;
    /* (A kernel without close_range.) */
    if (!(d = opendir("/proc/self/fd")))
        return;
    while ((e = readdir(d)) && n < 256) {
        int fd = atoi(e->d_name);
        if (fd >= 3 && fd != dirfd(d))
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

int main(int argc, char **argv)
{
    struct farm_err err;
    char path[PATH_MAX + 64], exe[PATH_MAX];
    int lockfd, rc;

    farm_err_clear(&err);
    close_inherited();
    if (parse_args(argc, argv) < 0)
        return 2;
    if (farmd.cfg.check_only)
        return 0;
    if (farm_home_path(farmd.home, sizeof farmd.home) < 0) {
        fprintf(stderr, "farmd: cannot tell FARM_HOME (set FARM_HOME or HOME)\n");
        return 2;
    }
    {
        /* The home's path travels in JSON (replies, every task): it must
         * be text. */
        json_t *text = json_string(farmd.home);
        if (!text) {
            fprintf(stderr, "farmd: FARM_HOME %s is not valid UTF-8; farm keeps its paths as "
                            "JSON text\n", farmd.home);
            return 2;
        }
        json_decref(text);
    }
    if (farm_home_ensure(farmd.home, &err) < 0) {
        fprintf(stderr, "farmd: %s\n", err.msg);
        return 2;
    }
    {
        /* Absolute from here on: workers change directory before they
         * write into the home (a log, a scratch directory). */
        char real[PATH_MAX];
        struct sockaddr_un sa;
        if (realpath(farmd.home, real))
            snprintf(farmd.home, sizeof farmd.home, "%.2000s", real);
        /* The socket's path must fit a socket address (the kernel would
         * take a cut one, elsewhere). */
        if (strlen(farmd.home) + strlen("/farm.sock") >= sizeof sa.sun_path) {
            fprintf(stderr, "farmd: the socket path %s/farm.sock is too long (a socket path "
                            "must fit in %zu bytes); use a shorter FARM_HOME\n",
                    farmd.home, sizeof sa.sun_path - 1);
            return 2;
        }
    }
    umask(022);
    if (farm_exe_dir(exe, sizeof exe) < 0 ||
        snprintf(farmd.worker_path, sizeof farmd.worker_path, "%s/farm-worker", exe) >=
            (int)sizeof farmd.worker_path ||
        snprintf(farmd.host_path, sizeof farmd.host_path, "%s/farm-plugin-host", exe) >=
            (int)sizeof farmd.host_path) {
        fprintf(stderr, "farmd: cannot find farm-worker\n");
        return 2;
    }

    /* One farmd per home: the pid file is locked while we live. */
    snprintf(path, sizeof path, "%s/farmd.pid", farmd.home);
    lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "farmd: another farmd is running for %s\n", farmd.home);
        return 3;
    }
    {
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        if (ftruncate(lockfd, 0) < 0 || farm_write_all(lockfd, pid, (size_t)n) < 0)
            fprintf(stderr, "farmd: cannot write %s\n", path);
    }
    if (!farmd.cfg.foreground) {
        snprintf(path, sizeof path, "%s/farmd.log", farmd.home);
        int logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (logfd >= 0) {
            dup2(logfd, STDERR_FILENO);
            dup2(logfd, STDOUT_FILENO);
            close(logfd);
        }
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);

    snprintf(path, sizeof path, "%s/runs", farmd.home);
    farm_mkdirs(path, 0755);
    snprintf(path, sizeof path, "%s/snapshots", farmd.home);
    farm_mkdirs(path, 0700);
    snprintf(path, sizeof path, "%s/plugins", farmd.home);
    farm_mkdirs(path, 0700);

    snprintf(path, sizeof path, "%s/farm.db", farmd.home);
    if (farm__db_open(path, farmd.cfg.durability_full, &farmd.db, &err) < 0) {
        fprintf(stderr, "farmd: %s\n", err.msg);
        return 2;
    }
    {
        sqlite3_stmt *st =
            farm__db_stmt(farmd.db, "SELECT count(*) FROM submissions WHERE kind='git'");
        if (farm__db_run(st, "") == SQLITE_ROW)
            farmd.git_submissions = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    apply_settings();
    farmd.plugin_cache = json_object();
    farmd.started_ms = farm_now_ms();
    if (recover(&err) < 0) {
        fprintf(stderr, "farmd: recovery failed: %s\n", err.msg);
        return 2;
    }

    farmd.loop = uv_default_loop();
    uv_check_init(farmd.loop, &farmd.commit_check);
    uv_check_start(&farmd.commit_check, commit_check_cb);
    uv_timer_init(farmd.loop, &farmd.stop_timer);
    uv_timer_init(farmd.loop, &farmd.retention_timer);
    uv_timer_start(&farmd.retention_timer, retention, 2000, 600000);
    uv_unref((uv_handle_t *)&farmd.retention_timer);
    server_start(SRV_EXEC);
    uv_signal_init(farmd.loop, &farmd.sigterm);
    uv_signal_start(&farmd.sigterm, on_signal, SIGTERM);
    uv_signal_init(farmd.loop, &farmd.sigint);
    uv_signal_start(&farmd.sigint, on_signal, SIGINT);

    snprintf(path, sizeof path, "%s/farm.sock", farmd.home);
    unlink(path); /* stale: we hold the pid lock, so no live farmd owns it */
    uv_pipe_init(farmd.loop, &farmd.server, 0);
    {
        mode_t old = umask(0177); /* the socket is born 0600 */
        rc = uv_pipe_bind(&farmd.server, path);
        umask(old);
    }
    if (rc < 0 || (rc = uv_listen((uv_stream_t *)&farmd.server, 256, farmd_client_accept)) < 0) {
        fprintf(stderr, "farmd: cannot listen on %s: %s\n", path, uv_strerror(rc));
        return 2;
    }
    chmod(path, 0600);
    fprintf(stderr, "farmd: pid %d serving %s with %d job(s)%s\n", (int)getpid(), path,
            farmd.cfg.jobs, farmd.paused ? " (queue paused)" : "");
    farmd_schedule();
    farmd_commit();

    uv_run(farmd.loop, UV_RUN_DEFAULT);

    farmd_commit();
    /* The fork servers end when their control socket closes, once their
     * workers are gone: wait for them (10 s at most), so that a finished
     * stop leaves no process of the farm behind (a home on a file system to
     * unmount, say). */
    for (int k = 0; k < 2; k++)
        if (farmd.srv[k].alive)
            close(farmd.srv[k].fd);
    for (int k = 0; k < 2; k++) {
        int64_t until = farm_mono_ms() + 10000;
        if (!farmd.srv[k].alive)
            continue;
        while (waitpid(farmd.srv[k].pid, NULL, WNOHANG) == 0) {
            struct timespec ts = {0, 10 * 1000000};
            if (farm_mono_ms() > until) {
                kill(farmd.srv[k].pid, SIGKILL);
                waitpid(farmd.srv[k].pid, NULL, 0);
                break;
            }
            nanosleep(&ts, NULL);
        }
    }
    fprintf(stderr, "farmd: stopped\n");
    snprintf(path, sizeof path, "%s/farm.sock", farmd.home);
    unlink(path);
    farm__db_close(farmd.db);
    return 0;
}
