/* farmd's SQLite store: schema, migrations and small helpers. */
#ifndef FARM_DB_H
#define FARM_DB_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "farm/error.h"

#define FARM_SCHEMA_VERSION 2

/* The states of a task still to run or running, as tasks_live's condition:
 * a query on them writes this text so that it can use the index. */
#define FARM_LIVE_STATES "(state='queued' OR state='waiting' OR state='running')"

/* Opens (creating if needed) the database at `path` in WAL mode, migrates it
 * to FARM_SCHEMA_VERSION, and sets synchronous to FULL (`full`) or NORMAL. */
int farm__db_open(const char *path, int full, sqlite3 **out, struct farm_err *err);

/* Runs `sql` (no results). Returns 0 or FARM_EDB with err set. */
int farm__db_exec(sqlite3 *db, const char *sql, struct farm_err *err);

/* A cached prepared statement for `sql` (reset and with bindings cleared).
 * Borrowed: finalized by farm__db_close. NULL on error (message in db). */
sqlite3_stmt *farm__db_stmt(sqlite3 *db, const char *sql);

/* Binds the arguments described by `fmt` (i: int64, s: text or NULL,
 * d: double, n: NULL) and steps once. Returns SQLITE_ROW, SQLITE_DONE, or
 * an SQLite error. The statement stays positioned on the row. */
int farm__db_run(sqlite3_stmt *st, const char *fmt, ...);

/* meta table access. */
int farm__db_meta_get(sqlite3 *db, const char *key, char *buf, size_t len);
int farm__db_meta_set(sqlite3 *db, const char *key, const char *value);

void farm__db_close(sqlite3 *db);

#endif
