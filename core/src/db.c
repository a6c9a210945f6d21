#include "db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Migrations, applied in order; migration i brings the schema to version
 * i + 1. Never edit one that has shipped: append a new one. */
static const char *migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE submissions("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, source TEXT, snapshot TEXT, work_dir TEXT,"
    "  spec TEXT, git_repo TEXT, git_commit TEXT, git_ref TEXT, info TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE tasks("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, submission INTEGER, name TEXT NOT NULL, plugin TEXT NOT NULL,"
    "  state TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, params TEXT NOT NULL,"
    "  timeout INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0, interrupts INTEGER NOT NULL DEFAULT 0,"
    "  pending_needs INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, reason TEXT,"
    "  labels TEXT, deps TEXT, deps_result TEXT, paths TEXT,"
    "  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,"
    "  run_pruned INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX tasks_live ON tasks(state) WHERE state IN ('queued','waiting','running');"
    "CREATE INDEX tasks_submission ON tasks(submission);"
    "CREATE INDEX tasks_finished ON tasks(finished_at) WHERE finished_at IS NOT NULL;"
    "CREATE INDEX tasks_unpruned ON tasks(finished_at) WHERE finished_at IS NOT NULL "
    "  AND run_pruned = 0;"
    "CREATE TABLE task_needs(task INTEGER NOT NULL, needs INTEGER NOT NULL,"
    "  PRIMARY KEY(task, needs)) WITHOUT ROWID;"
    "CREATE INDEX task_needs_rev ON task_needs(needs, task);"
    "CREATE TABLE attempts(task INTEGER NOT NULL, n INTEGER NOT NULL, state TEXT NOT NULL,"
    "  exit_code INTEGER, reason TEXT, log TEXT, started_at INTEGER, finished_at INTEGER,"
    "  PRIMARY KEY(task, n)) WITHOUT ROWID;"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, task INTEGER NOT NULL, t INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, data TEXT);"
    "CREATE INDEX events_task ON events(task);"
    "CREATE TABLE metrics(task INTEGER NOT NULL, attempt INTEGER NOT NULL, name TEXT NOT NULL,"
    "  step INTEGER NOT NULL, value REAL, t INTEGER NOT NULL);"
    "CREATE INDEX metrics_task ON metrics(task, name, step);"
    "CREATE TABLE artifacts(task INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER,"
    "  attempt INTEGER, PRIMARY KEY(task, name)) WITHOUT ROWID;",
    /* 2: tasks_live's condition as comparisons. SQLite checks a partial
     * index's condition for the old and the new row of every UPDATE of a
     * task, and a list of three values after IN costs it a temporary table
     * each time (about half of farmd's instructions per task); an equality
     * on one state also implies this form, so lookups by one state use the
     * index. */
    "DROP INDEX tasks_live;"
    "CREATE INDEX tasks_live ON tasks(state) WHERE " FARM_LIVE_STATES ";",
};

struct cached {
    const char *key; /* the caller's pointer, usually a literal's */
    char *sql;
    sqlite3_stmt *st;
};

static struct cached *g_cache;
static size_t g_ncache;

int farm__db_exec(sqlite3 *db, const char *sql, struct farm_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        farm_err_set(err, FARM_EDB, "database: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FARM_EDB;
    }
    return 0;
}

int farm__db_open(const char *path, int full, sqlite3 **out, struct farm_err *err)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int version = 0, rc;
    /* One thread uses the connection (farmd's loop; the statement cache
     * below assumes it too): no mutex around every SQLite call. */
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) !=
        SQLITE_OK) {
        farm_err_set(err, FARM_EDB, "%s: cannot open database: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return FARM_EDB;
    }
    sqlite3_busy_timeout(db, 10000);
    if ((rc = farm__db_exec(db, "PRAGMA journal_mode=WAL", err)) < 0 ||
        (rc = farm__db_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                            err)) < 0 ||
        (rc = farm__db_exec(db, "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
                                "PRAGMA cache_size=-8000",
                            err)) < 0) {
        sqlite3_close(db);
        return rc;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (version > FARM_SCHEMA_VERSION) {
        farm_err_set(err, FARM_EDB,
                     "%s: database schema version %d is newer than this farmd knows (%d)", path,
                     version, FARM_SCHEMA_VERSION);
        sqlite3_close(db);
        return FARM_EDB;
    }
    for (; version < FARM_SCHEMA_VERSION; version++) {
        char setv[64];
        snprintf(setv, sizeof setv, "PRAGMA user_version=%d", version + 1);
        if ((rc = farm__db_exec(db, "BEGIN IMMEDIATE", err)) < 0 ||
            (rc = farm__db_exec(db, migrations[version], err)) < 0 ||
            (rc = farm__db_exec(db, setv, err)) < 0 || (rc = farm__db_exec(db, "COMMIT", err)) < 0) {
            farm_err_prefix(err, "%s: migrating to schema %d: ", path, version + 1);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            sqlite3_close(db);
            return rc;
        }
    }
    *out = db;
    return 0;
}

sqlite3_stmt *farm__db_stmt(sqlite3 *db, const char *sql)
{
    size_t i;
    /* Callers pass string literals: the address finds the statement, and
     * one comparison confirms it; other text is looked for by content. */
    for (i = 0; i < g_ncache; i++)
        if (g_cache[i].key == sql && strcmp(g_cache[i].sql, sql) == 0)
            break;
    if (i == g_ncache)
        for (i = 0; i < g_ncache; i++)
            if (strcmp(g_cache[i].sql, sql) == 0)
                break;
    if (i < g_ncache) {
        sqlite3_reset(g_cache[i].st);
        sqlite3_clear_bindings(g_cache[i].st);
        return g_cache[i].st;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        return NULL;
    struct cached *c = realloc(g_cache, (g_ncache + 1) * sizeof *c);
    if (!c) {
        sqlite3_finalize(st);
        return NULL;
    }
    g_cache = c;
    g_cache[g_ncache].key = sql;
    g_cache[g_ncache].sql = strdup(sql);
    g_cache[g_ncache].st = st;
    g_ncache++;
    return st;
}

int farm__db_run(sqlite3_stmt *st, const char *fmt, ...)
{
    va_list ap;
    int i = 1;
    if (!st)
        return SQLITE_ERROR;
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++, i++) {
        switch (*f) {
        case 'i':
            sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s)
                sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i);
            break;
        }
        case 'd':
            sqlite3_bind_double(st, i, va_arg(ap, double));
            break;
        default:
            sqlite3_bind_null(st, i);
            break;
        }
    }
    va_end(ap);
    return sqlite3_step(st);
}

int farm__db_meta_get(sqlite3 *db, const char *key, char *buf, size_t len)
{
    sqlite3_stmt *st = farm__db_stmt(db, "SELECT value FROM meta WHERE key=?");
    if (farm__db_run(st, "s", key) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    return -1;
}

int farm__db_meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st = farm__db_stmt(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)");
    int rc = farm__db_run(st, "ss", key, value);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : FARM_EDB;
}

void farm__db_close(sqlite3 *db)
{
    for (size_t i = 0; i < g_ncache; i++) {
        sqlite3_finalize(g_cache[i].st);
        free(g_cache[i].sql);
    }
    free(g_cache);
    g_cache = NULL;
    g_ncache = 0;
    sqlite3_close(db);
}
