/* farmd's store: a new database gets the current schema, a database of
 * schema 1 is migrated with its rows kept, a newer one is refused, and the
 * statements farmd runs for every task build no temporary tables. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "farm/util.h"

static char g_dir[64], g_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/farm-test-db.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_path, sizeof g_path, "%s/farm.db", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    farm_rmtree(g_dir);
    return 0;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static char *one_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    char *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return s;
}

/* How many times the program of `sql` opens a temporary table. */
static int ephemeral_opens(sqlite3 *db, const char *sql)
{
    char *q;
    sqlite3_stmt *st;
    int n = 0;
    assert_true(asprintf(&q, "EXPLAIN %s", sql) > 0);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        n += strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
    sqlite3_finalize(st);
    free(q);
    return n;
}

/* The first line of the query plan of `sql`. */
static char *plan(sqlite3 *db, const char *sql)
{
    char *q, *p = NULL;
    sqlite3_stmt *st;
    assert_true(asprintf(&q, "EXPLAIN QUERY PLAN %s", sql) > 0);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        p = strdup((const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    free(q);
    return p;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

/* The statements farmd runs at every start and end of a task. */
static const char *const per_task[] = {
    "UPDATE tasks SET state='running', attempts=1, started_at=1, finished_at=NULL WHERE id=1",
    "UPDATE tasks SET state='succeeded', exit_code=0, reason=NULL, finished_at=2 WHERE id=1",
    "UPDATE attempts SET state='succeeded', exit_code=0, reason=NULL, finished_at=2 "
    "WHERE task=1 AND n=1",
    "UPDATE tasks SET state='queued', attempts=1 WHERE id=1",
};

/* Queries farmd runs that the index of live tasks must serve. */
static const char *const indexed[] = {
    "SELECT id, priority FROM tasks WHERE state='queued'",
    "SELECT id FROM tasks WHERE state='running'",
    "SELECT state, count(*) FROM tasks WHERE " FARM_LIVE_STATES " GROUP BY state",
};

static void test_new_database(void **state)
{
    sqlite3 *db;
    struct farm_err err;
    char *s;
    (void)state;
    farm_err_clear(&err);
    assert_int_equal(farm__db_open(g_path, 0, &db, &err), 0);
    assert_int_equal(user_version(db), FARM_SCHEMA_VERSION);
    s = one_text(db, "SELECT sql FROM sqlite_master WHERE name='tasks_live'");
    assert_non_null(s);
    assert_non_null(strstr(s, FARM_LIVE_STATES));
    free(s);
    for (size_t i = 0; i < sizeof per_task / sizeof *per_task; i++)
        assert_int_equal(ephemeral_opens(db, per_task[i]), 0);
    /* One state's lookup, as at a restart, and the live counts use the index. */
    for (size_t i = 0; i < sizeof indexed / sizeof *indexed; i++) {
        s = plan(db, indexed[i]);
        if (!strstr(s, "tasks_live"))
            fail_msg("%s: plan %s does not use tasks_live", indexed[i], s);
        free(s);
    }
    farm__db_close(db);
}

static void test_migrates_schema_1(void **state)
{
    sqlite3 *db;
    struct farm_err err;
    char *s;
    (void)state;
    farm_err_clear(&err);
    assert_int_equal(farm__db_open(g_path, 0, &db, &err), 0);
    /* Turn it back into what a farmd of schema 1 left: its index, its
     * version, and tasks in several states. */
    exec_ok(db, "DROP INDEX tasks_live;"
                "CREATE INDEX tasks_live ON tasks(state) WHERE state IN "
                "('queued','waiting','running');"
                "INSERT INTO tasks(id, name, plugin, state, params, created_at) VALUES"
                " (1,'a','exec','queued','{}',1),(2,'b','exec','succeeded','{}',1),"
                " (3,'c','exec','running','{}',1);"
                "PRAGMA user_version=1;");
    assert_int_equal(ephemeral_opens(db, per_task[0]), 2);
    farm__db_close(db);

    assert_int_equal(farm__db_open(g_path, 0, &db, &err), 0);
    assert_int_equal(user_version(db), 2);
    s = one_text(db, "SELECT sql FROM sqlite_master WHERE name='tasks_live'");
    assert_non_null(strstr(s, FARM_LIVE_STATES));
    free(s);
    s = one_text(db, "SELECT group_concat(id || ':' || state, ',') FROM (SELECT id, state "
                     "FROM tasks ORDER BY id)");
    assert_string_equal(s, "1:queued,2:succeeded,3:running");
    free(s);
    /* The rebuilt index holds exactly the live tasks. */
    s = one_text(db, "SELECT group_concat(id, ',') FROM (SELECT id FROM tasks INDEXED BY "
                     "tasks_live WHERE state='queued' OR state='running' ORDER BY id)");
    assert_string_equal(s, "1,3");
    free(s);
    assert_int_equal(ephemeral_opens(db, per_task[0]), 0);
    farm__db_close(db);
}

static void test_newer_schema_refused(void **state)
{
    sqlite3 *db;
    struct farm_err err;
    char want[64];
    (void)state;
    farm_err_clear(&err);
    assert_int_equal(farm__db_open(g_path, 0, &db, &err), 0);
    exec_ok(db, "PRAGMA user_version=99");
    farm__db_close(db);
    assert_int_equal(farm__db_open(g_path, 0, &db, &err), FARM_EDB);
    snprintf(want, sizeof want, "newer than this farmd knows (%d)", FARM_SCHEMA_VERSION);
    assert_non_null(strstr(err.msg, "database schema version 99"));
    assert_non_null(strstr(err.msg, want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_schema_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
