/*
 * The object store, its SQLite index, single flight, restore, build
 * commit, eviction, verification and explanations.
 */
#define _GNU_SOURCE /* O_CLOEXEC, flock */
#include "cache-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

struct farm_cache {
    char *dir, *objects, *trees, *locks, *stat;
    sqlite3 *db;
    uint64_t max_bytes;
    int level, threads;
    unsigned tmp_seq;
    volatile sig_atomic_t *stop;
};

struct farm_cache_lease {
    char key[FARM_CACHE_HEX_SIZE];
    int fd;
    enum farm_cache_outcome outcome; /* 0 once a restore dropped the entry */
    int building;
    char *source_dir;
    char *out_dir;
    char source_digest[FARM_CACHE_HEX_SIZE];
};

/* One index row. */
struct entry {
    uint64_t size;
    char checksum[FARM_CACHE_HEX_SIZE];
    int64_t created, build_ms;
    char builder[256];
    char *label, *inputs, *manifest;
};

static void entry_release(struct entry *e)
{
    free(e->label);
    free(e->inputs);
    free(e->manifest);
}

/* Temp files older than this were left by a process that died. */
#define STALE_TEMP_S 3600

static const char *const counter_names[] = {"hits",      "misses",  "bytes_restored",
                                            "build_ms_saved", "evictions", "damaged"};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS cache_entries("
    " key TEXT PRIMARY KEY, size INTEGER NOT NULL, checksum TEXT NOT NULL,"
    " created INTEGER NOT NULL, last_used INTEGER NOT NULL, use_seq INTEGER NOT NULL,"
    " hits INTEGER NOT NULL DEFAULT 0, build_ms INTEGER NOT NULL, builder TEXT,"
    " label TEXT, inputs TEXT NOT NULL, manifest TEXT);"
    "CREATE INDEX IF NOT EXISTS cache_entries_lru ON cache_entries(last_used, use_seq);"
    "CREATE INDEX IF NOT EXISTS cache_entries_label ON cache_entries(label, created);"
    "CREATE TABLE IF NOT EXISTS cache_counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO cache_counters VALUES('hits',0),('misses',0),('bytes_restored',0),"
    " ('build_ms_saved',0),('evictions',0),('damaged',0);";

static int db_fail(struct farm_cache *c, struct farm_err *err, const char *what)
{
    return farm_err_set(err, FARM_EDB, "cache index: %s: %s", what, sqlite3_errmsg(c->db));
}

static int db_exec(struct farm_cache *c, const char *sql, struct farm_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = farm_err_set(err, FARM_EDB, "cache index: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static int counter_add(struct farm_cache *c, const char *name, int64_t v)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "UPDATE cache_counters SET value = value + ? WHERE name = ?",
                           -1, &s, NULL) != SQLITE_OK)
        return FARM_EDB;
    sqlite3_bind_int64(s, 1, v);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : FARM_EDB;
    sqlite3_finalize(s);
    return rc;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

/* 1 found, 0 not, FARM_EDB */
static int entry_get(struct farm_cache *c, const char *key, struct entry *e)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT size, checksum, created, build_ms, builder, label, inputs,"
                           " manifest FROM cache_entries WHERE key = ?",
                           -1, &s, NULL) != SQLITE_OK)
        return FARM_EDB;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int r = sqlite3_step(s), rc;
    if (r == SQLITE_ROW) {
        memset(e, 0, sizeof *e);
        e->size = (uint64_t)sqlite3_column_int64(s, 0);
        snprintf(e->checksum, sizeof e->checksum, "%s",
                 sqlite3_column_text(s, 1) ? (const char *)sqlite3_column_text(s, 1) : "");
        e->created = sqlite3_column_int64(s, 2);
        e->build_ms = sqlite3_column_int64(s, 3);
        snprintf(e->builder, sizeof e->builder, "%s",
                 sqlite3_column_text(s, 4) ? (const char *)sqlite3_column_text(s, 4) : "");
        e->label = col_dup(s, 5);
        e->inputs = col_dup(s, 6);
        e->manifest = col_dup(s, 7);
        rc = 1;
    } else {
        rc = r == SQLITE_DONE ? 0 : FARM_EDB;
    }
    sqlite3_finalize(s);
    return rc;
}

static char *object_path(const struct farm_cache *c, const char *key)
{
    return farm__cache_asprintf("%s/%.2s/%s.tar.zst", c->objects, key, key);
}

static char *lock_path(const struct farm_cache *c, const char *key)
{
    return farm__cache_asprintf("%s/%s.lock", c->locks, key);
}

/* flock()s the key's lock file with `op`. The lock file may be unlinked by
 * whoever removes the entry (while holding it exclusively), so after the
 * lock is granted the open file must still be the one at the path. */
static int lock_key(struct farm_cache *c, const char *key, int op, int *out)
{
    char *path = lock_path(c, key);
    if (!path)
        return -ENOMEM;
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = -errno;
            free(path);
            return e;
        }
        int r;
        if (c->stop && !(op & LOCK_NB)) {
            /* A caller that may be told to stop: wait in short steps, so
             * that a stop that came before the wait began is seen too. */
            while ((r = flock(fd, op | LOCK_NB)) != 0 &&
                   (errno == EWOULDBLOCK || errno == EINTR)) {
                struct timespec ts = {0, 20 * 1000000};
                if (*c->stop) {
                    close(fd);
                    free(path);
                    return -ECANCELED;
                }
                nanosleep(&ts, NULL);
            }
        } else {
            while ((r = flock(fd, op)) != 0 && errno == EINTR)
                ;
        }
        if (r != 0) {
            int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
            close(fd);
            free(path);
            return e;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            free(path);
            *out = fd;
            return 0;
        }
        close(fd);
    }
}

/* Removes everything of `key` from disk and the index. The caller holds the
 * key's lock (shared or exclusive). */
static int drop_entry(struct farm_cache *c, const char *key, int damaged)
{
    char *obj = object_path(c, key);
    char *tree = farm__cache_asprintf("%s/%s", c->trees, key);
    if (obj)
        unlink(obj);
    if (tree)
        farm__cache_rm_rf(tree);
    free(obj);
    free(tree);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM cache_entries WHERE key = ?", -1, &s, NULL) !=
        SQLITE_OK)
        return FARM_EDB;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : FARM_EDB;
    sqlite3_finalize(s);
    if (damaged)
        counter_add(c, "damaged", 1);
    return rc;
}

/* Drop with the lock file removed too; the caller holds `fd` exclusively. */
static void drop_and_unlock(struct farm_cache *c, const char *key, int fd, int damaged)
{
    drop_entry(c, key, damaged);
    char *lp = lock_path(c, key);
    if (lp)
        unlink(lp);
    free(lp);
    close(fd);
}

int farm_cache_open(struct farm_cache **out, const struct farm_cache_config *cfg,
                    struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!cfg || !cfg->cache_dir || !cfg->db_path, err, -EINVAL,
                         "cache: cache_dir and db_path are required");
    struct farm_cache *c = calloc(1, sizeof *c);
    if (!c)
        return farm_err_set(err, -ENOMEM, "out of memory");
    c->max_bytes = cfg->max_bytes ? cfg->max_bytes : FARM_CACHE_DEFAULT_MAX_BYTES;
    c->level = cfg->level ? cfg->level : FARM_CACHE_DEFAULT_LEVEL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = cfg->threads > 0 ? cfg->threads : (cpus > 0 ? (int)cpus : 1);
    c->stop = cfg->stop;
    c->dir = strdup(cfg->cache_dir);
    c->objects = farm__cache_asprintf("%s/objects", cfg->cache_dir);
    c->trees = farm__cache_asprintf("%s/trees", cfg->cache_dir);
    c->locks = farm__cache_asprintf("%s/locks", cfg->cache_dir);
    c->stat = farm__cache_asprintf("%s/stat", cfg->cache_dir);
    if (!c->dir || !c->objects || !c->trees || !c->locks || !c->stat) {
        farm_cache_close(c);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    const char *dirs[] = {c->dir, c->objects, c->trees, c->locks, c->stat};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        int r = farm__cache_mkdirs(dirs[i], 0700);
        /* An unwritable objects dir still allows lookups and restores. */
        if (r != 0 && !(i == 1 && access(dirs[i], R_OK | X_OK) == 0)) {
            farm_err_set(err, r, "%s: %s", dirs[i], strerror(-r));
            farm_cache_close(c);
            return r;
        }
    }
    if (sqlite3_open_v2(cfg->db_path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        int rc = farm_err_set(err, FARM_EDB, "%s: %s", cfg->db_path,
                              c->db ? sqlite3_errmsg(c->db) : "cannot open");
        farm_cache_close(c);
        return rc;
    }
    sqlite3_busy_timeout(c->db, 30000);
    /* Processes that open a new index at the same moment would race to
     * switch it to WAL and to create the tables, and SQLite answers the
     * journal-mode switch with SQLITE_BUSY without waiting: the set-up is
     * done under an exclusive flock, held only for these few statements. */
    char initlock[PATH_MAX];
    int lockfd = -1;
    if (snprintf(initlock, sizeof initlock, "%s/index.lock", c->dir) < (int)sizeof initlock &&
        (lockfd = open(initlock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
        while (flock(lockfd, LOCK_EX) < 0 && errno == EINTR)
            ;
    }
    int rc = db_exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err);
    for (int pass = 0; pass < 2; pass++) {
        int bad = rc != 0 && ((sqlite3_errcode(c->db) & 0xff) == SQLITE_NOTADB ||
                              (sqlite3_errcode(c->db) & 0xff) == SQLITE_CORRUPT);
        if (rc == 0 && pass == 0) {
            /* A damaged index (cut short, say) often opens: read the last
             * entry, which lies where a cut would have been. */
            sqlite3_stmt *last;
            if (sqlite3_prepare_v2(c->db,
                                   "SELECT 1 FROM sqlite_master WHERE name = 'cache_entries'",
                                   -1, &last, NULL) == SQLITE_OK) {
                int have_entries = sqlite3_step(last) == SQLITE_ROW;
                sqlite3_finalize(last);
                if (have_entries &&
                    sqlite3_prepare_v2(c->db,
                                       "SELECT rowid FROM cache_entries ORDER BY rowid DESC "
                                       "LIMIT 1",
                                       -1, &last, NULL) == SQLITE_OK) {
                    int step = sqlite3_step(last);
                    sqlite3_finalize(last);
                    bad = step != SQLITE_ROW && step != SQLITE_DONE &&
                          ((sqlite3_errcode(c->db) & 0xff) == SQLITE_CORRUPT ||
                           (sqlite3_errcode(c->db) & 0xff) == SQLITE_NOTADB);
                }
            } else {
                bad = (sqlite3_errcode(c->db) & 0xff) == SQLITE_CORRUPT ||
                      (sqlite3_errcode(c->db) & 0xff) == SQLITE_NOTADB;
            }
        }
        if (!bad || pass == 1)
            break;
        /* The index is not a database, or a damaged one (overwritten, cut
         * short by hand). It indexes a cache: it is kept aside and a new
         * one begun, so tasks go on (missing, then storing again); `farm
         * cache verify` removes the objects only the old one knew. */
        char aside[PATH_MAX + 16], side[PATH_MAX + 16];
        sqlite3_close(c->db);
        c->db = NULL;
        snprintf(aside, sizeof aside, "%s.corrupt", cfg->db_path);
        if (rename(cfg->db_path, aside) == 0) {
            snprintf(side, sizeof side, "%s-wal", cfg->db_path);
            unlink(side);
            snprintf(side, sizeof side, "%s-shm", cfg->db_path);
            unlink(side);
            fprintf(stderr, "farm cache: %s was not a sound database; it is kept as %s and a new "
                            "index begun (farm cache verify removes what only the old one knew)\n",
                    cfg->db_path, aside);
        }
        if (sqlite3_open_v2(cfg->db_path, &c->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                            NULL) == SQLITE_OK) {
            sqlite3_busy_timeout(c->db, 30000);
            farm_err_clear(err);
            rc = db_exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err);
        } else {
            rc = farm_err_set(err, FARM_EDB, "%s: %s", cfg->db_path,
                              c->db ? sqlite3_errmsg(c->db) : "cannot open");
            break;
        }
    }
    /* Creating the tables is a write transaction: only when they are not
     * there yet (every worker opens the cache). */
    sqlite3_stmt *probe;
    int have = 0;
    if (rc == 0 && sqlite3_prepare_v2(c->db,
                                      "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                                      " AND name IN ('cache_entries', 'cache_counters')",
                                      -1, &probe, NULL) == SQLITE_OK) {
        if (sqlite3_step(probe) == SQLITE_ROW)
            have = sqlite3_column_int(probe, 0) == 2;
        sqlite3_finalize(probe);
    }
    if (rc == 0 && !have)
        rc = db_exec(c, schema, err);
    if (lockfd >= 0)
        close(lockfd); /* releases the flock */
    if (rc != 0) {
        farm_err_prefix(err, "%s: ", cfg->db_path);
        farm_cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void farm_cache_close(struct farm_cache *c)
{
    if (!c)
        return;
    if (c->db)
        sqlite3_close(c->db);
    free(c->dir);
    free(c->objects);
    free(c->trees);
    free(c->locks);
    free(c->stat);
    free(c);
}

const char *farm_cache_dir(const struct farm_cache *c)
{
    return c->dir;
}

int farm_cache_digest_dir(struct farm_cache *c, const char *dir, char hex[FARM_CACHE_HEX_SIZE],
                          char **manifest_json, struct farm_digest_stats *stats,
                          struct farm_err *err)
{
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return farm_err_set(err, -errno, "%s: %s", dir, strerror(errno));
    char *sc = farm__cache_asprintf("%s/%016llx.sc", c->stat,
                                    (unsigned long long)XXH3_64bits(real, strlen(real)));
    if (!sc)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = farm_digest_dir(dir, sc, hex, manifest_json, stats, err);
    /* Marks it used, for farm_cache_gc's sweep of stat caches of
     * directories nobody digests any more (run directories come and go). */
    if (rc == 0)
        utimensat(AT_FDCWD, sc, NULL, 0);
    free(sc);
    return rc;
}

/* ---- single flight ---------------------------------------------------- */

static int object_present(struct farm_cache *c, const char *key)
{
    char *p = object_path(c, key);
    int ok = p && access(p, R_OK) == 0;
    free(p);
    return ok;
}

/* 1 when `key` is indexed with its object present; 0 when not (a row
 * without an object is dropped); FARM_EDB. Caller holds the key's lock. */
static int lookup(struct farm_cache *c, const char *key)
{
    struct entry e;
    int r = entry_get(c, key, &e);
    if (r != 1)
        return r;
    entry_release(&e);
    if (object_present(c, key))
        return 1;
    drop_entry(c, key, 1);
    return 0;
}

static int record_hit(struct farm_cache *c, const char *key, struct farm_err *err)
{
    if (db_exec(c, "BEGIN IMMEDIATE", err) != 0)
        return err ? err->code : FARM_EDB;
    sqlite3_stmt *s;
    int rc = 0;
    if (sqlite3_prepare_v2(c->db,
                           "UPDATE cache_entries SET hits = hits + 1, last_used = ?,"
                           " use_seq = (SELECT COALESCE(MAX(use_seq), 0) + 1 FROM cache_entries)"
                           " WHERE key = ?",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(c, err, "record hit");
    } else {
        sqlite3_bind_int64(s, 1, farm__cache_now_ms());
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            rc = db_fail(c, err, "record hit");
        sqlite3_finalize(s);
    }
    struct entry e;
    if (rc == 0 && entry_get(c, key, &e) == 1) {
        counter_add(c, "hits", 1);
        counter_add(c, "build_ms_saved", e.build_ms);
        entry_release(&e);
    }
    if (rc == 0)
        rc = db_exec(c, "COMMIT", err);
    if (rc != 0)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int farm_cache_acquire(struct farm_cache *c, const char *key, struct farm_cache_lease **lease,
                       struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!farm__cache_is_hex(key, 32), err, -EINVAL,
                         "cache: \"%s\" is not a cache key (32 hex digits)", key ? key : "");
    struct farm_cache_lease *l = calloc(1, sizeof *l);
    if (!l)
        return farm_err_set(err, -ENOMEM, "out of memory");
    memcpy(l->key, key, FARM_CACHE_HEX_SIZE);
    /* Shared first: it waits for a builder holding the key exclusively,
     * and lets any number of restorers in at once. */
    int rc = lock_key(c, key, LOCK_SH, &l->fd);
    if (rc != 0) {
        free(l);
        return farm_err_set(err, rc, "cache: lock %s: %s", key, strerror(-rc));
    }
    int found = lookup(c, key);
    if (found == 1) {
        l->outcome = FARM_CACHE_HIT;
    } else {
        close(l->fd);
        rc = lock_key(c, key, LOCK_EX, &l->fd);
        if (rc != 0) {
            free(l);
            return farm_err_set(err, rc, "cache: lock %s: %s", key, strerror(-rc));
        }
        /* Someone may have built it between our two locks. */
        found = lookup(c, key);
        l->outcome = found == 1 ? FARM_CACHE_HIT : FARM_CACHE_BUILD;
    }
    if (found < 0) {
        rc = db_fail(c, err, "lookup");
        farm_cache_release(c, l);
        return rc;
    }
    if (l->outcome == FARM_CACHE_HIT)
        rc = record_hit(c, key, err);
    else
        rc = counter_add(c, "misses", 1) == 0 ? 0 : db_fail(c, err, "count miss");
    if (rc != 0) {
        farm_cache_release(c, l);
        return rc;
    }
    *lease = l;
    return 0;
}

enum farm_cache_outcome farm_cache_lease_outcome(const struct farm_cache_lease *lease)
{
    return lease->outcome;
}

const char *farm_cache_lease_key(const struct farm_cache_lease *lease)
{
    return lease->key;
}

void farm_cache_release(struct farm_cache *c, struct farm_cache_lease *l)
{
    (void)c;
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->source_dir);
    free(l->out_dir);
    free(l);
}

/* ---- restore ---------------------------------------------------------- */

/* Makes `dir` (and its parents) when missing; refuses a non-empty one. */
static int empty_target(const char *dir, struct farm_err *err)
{
    int rc = farm__cache_mkdirs(dir, 0755);
    if (rc != 0)
        return farm_err_set(err, rc, "%s: %s", dir, strerror(-rc));
    DIR *d = opendir(dir);
    if (!d)
        return farm_err_set(err, -errno, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int n = 0;
    while (!n && (de = readdir(d)) != NULL)
        n = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    FARM_RETURN_ERROR_IF(n != 0, err, -ENOTEMPTY, "%s: not empty", dir);
    return 0;
}

static int restore_link(struct farm_cache *c, struct farm_cache_lease *l, const struct entry *e,
                        const char *obj, const char *dest, uint64_t *files, uint64_t *bytes,
                        struct farm_err *err)
{
    char *tree = farm__cache_asprintf("%s/%s", c->trees, l->key);
    if (!tree)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = 0;
    struct stat st;
    if (lstat(tree, &st) != 0) {
        /* Unpack once, privately, then publish with rename: a concurrent
         * restorer that lost the race drops its copy and uses the winner's. */
        char *tmp = farm__cache_asprintf("%s/.%s.%ld.%u", c->trees, l->key, (long)getpid(),
                                         c->tmp_seq++);
        if (!tmp) {
            free(tree);
            return farm_err_set(err, -ENOMEM, "out of memory");
        }
        farm__cache_rm_rf(tmp);
        if (mkdir(tmp, 0700) != 0) {
            rc = farm_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
        } else {
            rc = farm__cache_extract(obj, tmp, e->checksum, NULL, err);
            if (rc == 0)
                rc = farm__cache_make_readonly(tmp);
            if (rc == 0 && rename(tmp, tree) != 0 && errno != EEXIST && errno != ENOTEMPTY)
                rc = farm_err_set(err, -errno, "%s: %s", tree, strerror(errno));
        }
        farm__cache_rm_rf(tmp);
        free(tmp);
    }
    if (rc == 0)
        rc = farm__cache_link_tree(tree, dest, files, bytes, err);
    free(tree);
    return rc;
}

int farm_cache_restore(struct farm_cache *c, struct farm_cache_lease *l, const char *dest_dir,
                       enum farm_cache_restore_mode mode, struct farm_cache_restore_info *info,
                       struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(l->outcome != FARM_CACHE_HIT, err, FARM_ESTATE,
                         "cache: restore of %s without a hit", l->key);
    struct entry e;
    int r = entry_get(c, l->key, &e);
    if (r < 0)
        return db_fail(c, err, "restore");
    FARM_RETURN_ERROR_IF(r == 0, err, FARM_ENOTFOUND, "cache: %s is no longer stored", l->key);
    char *obj = object_path(c, l->key);
    int rc = obj ? empty_target(dest_dir, err) : farm_err_set(err, -ENOMEM, "out of memory");
    uint64_t files = 0, bytes = e.size;
    if (rc == 0) {
        if (mode == FARM_CACHE_RESTORE_LINK)
            rc = restore_link(c, l, &e, obj, dest_dir, &files, &bytes, err);
        else
            rc = farm__cache_extract(obj, dest_dir, e.checksum, &files, err);
        if (rc == FARM_ECHECKSUM || rc == FARM_EBADARCHIVE) {
            /* Never hand out a damaged or unsafe package: undo, forget it. */
            farm__cache_empty_dir(dest_dir);
            drop_entry(c, l->key, 1);
            l->outcome = 0;
            farm_err_prefix(err, "cache entry %s dropped: ", l->key);
        } else if (rc != 0) {
            farm__cache_empty_dir(dest_dir);
        }
    }
    if (rc == 0) {
        counter_add(c, "bytes_restored", (int64_t)bytes);
        if (info) {
            info->bytes = bytes;
            info->files = files;
            info->build_ms = e.build_ms;
            snprintf(info->builder, sizeof info->builder, "%s", e.builder);
        }
    }
    free(obj);
    entry_release(&e);
    return rc;
}

/* ---- building and storing -------------------------------------------- */

int farm_cache_build_begin(struct farm_cache *c, struct farm_cache_lease *l,
                           const char *source_dir, const char *out_dir, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(l->outcome != FARM_CACHE_BUILD, err, FARM_ESTATE,
                         "cache: build of %s without holding it for building", l->key);
    FARM_RETURN_ERROR_IF(l->building, err, FARM_ESTATE, "cache: build of %s already begun",
                         l->key);
    int rc = empty_target(out_dir, err);
    if (rc != 0)
        return rc;
    if (source_dir && (rc = farm_cache_digest_dir(c, source_dir, l->source_digest, NULL, NULL,
                                                  err)) != 0)
        return rc;
    l->out_dir = strdup(out_dir);
    l->source_dir = source_dir ? strdup(source_dir) : NULL;
    if (!l->out_dir || (source_dir && !l->source_dir))
        return farm_err_set(err, -ENOMEM, "out of memory");
    l->building = 1;
    return 0;
}

/* Publishes a finished temp object and indexes it. */
static int publish(struct farm_cache *c, const char *key, const char *tmp, const char *checksum,
                   uint64_t size, const struct farm_cache_commit *ci, struct farm_err *err)
{
    char *obj = object_path(c, key);
    char *dir = farm__cache_asprintf("%s/%.2s", c->objects, key);
    int rc = 0;
    if (!obj || !dir) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    /* A link tree unpacked from an earlier object of this key goes. */
    char *tree = farm__cache_asprintf("%s/%s", c->trees, key);
    if (tree)
        farm__cache_rm_rf(tree);
    free(tree);
    if (rename(tmp, obj) != 0) {
        rc = farm_err_set(err, -errno, "%s: %s", obj, strerror(errno));
        goto out;
    }
    if ((rc = farm__cache_fsync_dir(dir)) != 0) {
        unlink(obj);
        farm_err_set(err, rc, "%s: fsync: %s", dir, strerror(-rc));
        goto out;
    }
    const char *label = NULL;
    json_t *in = json_loads(ci->inputs_json, 0, NULL);
    if (in)
        label = json_string_value(json_object_get(in, "label"));
    sqlite3_stmt *s;
    int64_t now = farm__cache_now_ms();
    if (sqlite3_prepare_v2(
            c->db,
            "INSERT OR REPLACE INTO cache_entries(key, size, checksum, created, last_used,"
            " use_seq, hits, build_ms, builder, label, inputs, manifest) VALUES(?, ?, ?, ?, ?,"
            " (SELECT COALESCE(MAX(use_seq), 0) + 1 FROM cache_entries), 0, ?, ?, ?, ?, ?)",
            -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(c, err, "store");
    } else {
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)size);
        sqlite3_bind_text(s, 3, checksum, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, now);
        sqlite3_bind_int64(s, 5, now);
        sqlite3_bind_int64(s, 6, ci->build_ms);
        sqlite3_bind_text(s, 7, ci->builder, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 8, label, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 9, ci->inputs_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 10, ci->manifest_json, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            rc = db_fail(c, err, "store");
        sqlite3_finalize(s);
    }
    json_decref(in);
    /* An object that could not be indexed is removed: the index and the
     * store never disagree in the direction that matters. */
    if (rc != 0)
        unlink(obj);
out:
    free(obj);
    free(dir);
    return rc;
}

static char *temp_object(struct farm_cache *c, const char *key, struct farm_err *err, int *rc)
{
    char *dir = farm__cache_asprintf("%s/%.2s", c->objects, key);
    if (!dir) {
        *rc = farm_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    int r = farm__cache_mkdirs(dir, 0700);
    if (r != 0) {
        *rc = farm_err_set(err, r, "%s: %s", dir, strerror(-r));
        free(dir);
        return NULL;
    }
    char *tmp = farm__cache_asprintf("%s/.%s.%ld.%u.tmp", dir, key, (long)getpid(), c->tmp_seq++);
    free(dir);
    if (!tmp)
        *rc = farm_err_set(err, -ENOMEM, "out of memory");
    return tmp;
}

static int check_commit(const struct farm_cache_commit *ci, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!ci || !ci->inputs_json, err, -EINVAL, "cache: commit without inputs");
    json_t *j = json_loads(ci->inputs_json, 0, NULL);
    int ok = json_is_object(j);
    json_decref(j);
    FARM_RETURN_ERROR_IF(!ok, err, -EINVAL, "cache: commit: inputs are not a JSON object");
    return 0;
}

int farm_cache_build_commit(struct farm_cache *c, struct farm_cache_lease *l,
                            const struct farm_cache_commit *ci, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!l->building, err, FARM_ESTATE,
                         "cache: commit of %s without farm_cache_build_begin", l->key);
    int rc = check_commit(ci, err);
    if (rc != 0)
        return rc;
    FARM_RETURN_ERROR_IF(ci->exit_status != 0, err, FARM_EBUILD,
                         "dependency build exited with status %d; nothing stored",
                         ci->exit_status);
    uint64_t n = 0;
    rc = farm__cache_count_files(l->out_dir, 1, &n);
    if (rc != 0)
        return farm_err_set(err, rc, "%s: %s", l->out_dir, strerror(-rc));
    FARM_RETURN_ERROR_IF(n == 0, err, FARM_EBUILD,
                         "dependency build wrote no file into %s; nothing stored", l->out_dir);
    if (l->source_dir) {
        char now[FARM_CACHE_HEX_SIZE];
        if ((rc = farm_cache_digest_dir(c, l->source_dir, now, NULL, NULL, err)) != 0)
            return rc;
        FARM_RETURN_ERROR_IF(strcmp(now, l->source_digest) != 0, err, FARM_EBUILD,
                             "dependency build changed its source directory %s (digest %s, "
                             "then %s); nothing stored",
                             l->source_dir, l->source_digest, now);
    }
    char *tmp = temp_object(c, l->key, err, &rc);
    if (!tmp) {
        farm_err_prefix(err, "cannot store %s (the built package in %s is intact): ", l->key,
                        l->out_dir);
        return rc;
    }
    char sum[FARM_CACHE_HEX_SIZE];
    uint64_t size = 0;
    struct farm__cache_pack_opts o = {.level = c->level, .threads = c->threads};
    rc = farm__cache_pack_dir(l->out_dir, tmp, &o, sum, &size, NULL, err);
    if (rc == 0)
        rc = publish(c, l->key, tmp, sum, size, ci, err);
    if (rc != 0) {
        unlink(tmp);
        farm_err_prefix(err, "cannot store %s (the built package in %s is intact): ", l->key,
                        l->out_dir);
    }
    free(tmp);
    if (rc == 0) {
        l->building = 0;
        farm_cache_gc(c, 0, NULL, NULL, NULL);
    }
    return rc;
}

int farm_cache_build_abort(struct farm_cache *c, struct farm_cache_lease *l, struct farm_err *err)
{
    (void)c;
    if (!l->building)
        return 0;
    l->building = 0;
    int rc = farm__cache_rm_rf(l->out_dir);
    return rc ? farm_err_set(err, rc, "%s: %s", l->out_dir, strerror(-rc)) : 0;
}

int farm_cache_put_archive(struct farm_cache *c, const char *key, const char *archive_path,
                           const struct farm_cache_commit *ci, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!farm__cache_is_hex(key, 32), err, -EINVAL,
                         "cache: \"%s\" is not a cache key", key ? key : "");
    int rc = check_commit(ci, err);
    if (rc != 0)
        return rc;
    int lfd;
    if ((rc = lock_key(c, key, LOCK_EX, &lfd)) != 0)
        return farm_err_set(err, rc, "cache: lock %s: %s", key, strerror(-rc));
    char *tmp = temp_object(c, key, err, &rc);
    int in = -1, out = -1;
    char *buf = malloc(1 << 20);
    XXH3_state_t *h = XXH3_createState();
    uint64_t size = 0;
    if (!tmp)
        goto done;
    if (!buf || !h) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto done;
    }
    XXH3_128bits_reset(h);
    if ((in = open(archive_path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = farm_err_set(err, -errno, "%s: %s", archive_path, strerror(errno));
        goto done;
    }
    if ((out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        rc = farm_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t k = read(in, buf, 1 << 20);
        if (k < 0) {
            rc = farm_err_set(err, -errno, "%s: %s", archive_path, strerror(errno));
            goto done;
        }
        if (k == 0)
            break;
        int hr = farm__cache_write_hook_fn ? farm__cache_write_hook_fn((size_t)size, (size_t)k)
                                           : 0;
        if (hr < 0 || write(out, buf, (size_t)k) != k) {
            int e = hr < 0 ? -hr : (errno ? errno : EIO);
            rc = farm_err_set(err, -e, "%s: write: %s", tmp, strerror(e));
            goto done;
        }
        XXH3_128bits_update(h, buf, (size_t)k);
        size += (uint64_t)k;
    }
    if (fsync(out) != 0) {
        rc = farm_err_set(err, -errno, "%s: fsync: %s", tmp, strerror(errno));
        goto done;
    }
    char sum[FARM_CACHE_HEX_SIZE];
    farm__cache_hex128(XXH3_128bits_digest(h), sum);
    rc = publish(c, key, tmp, sum, size, ci, err);
done:
    if (rc != 0)
        farm_err_prefix(err, "cannot store %s: ", key);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (tmp && rc != 0)
        unlink(tmp);
    free(tmp);
    free(buf);
    XXH3_freeState(h);
    close(lfd);
    return rc;
}

int farm_cache_pack(struct farm_cache *c, const char *src, const char *path,
                    char checksum[FARM_CACHE_HEX_SIZE], uint64_t *size, struct farm_err *err)
{
    struct farm__cache_pack_opts o = {.level = c->level, .threads = c->threads};
    return farm__cache_pack_dir(src, path, &o, checksum, size, NULL, err);
}

/* ---- maintenance ------------------------------------------------------ */

int farm_cache_stats(struct farm_cache *c, struct farm_cache_stats *out, struct farm_err *err)
{
    struct farm_cache_stats st = {.max_bytes = c->max_bytes};
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, err, "stats");
    if (sqlite3_step(s) == SQLITE_ROW) {
        st.entries = (uint64_t)sqlite3_column_int64(s, 0);
        st.bytes = (uint64_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(c->db, "SELECT name, value FROM cache_counters", -1, &s, NULL) !=
        SQLITE_OK)
        return db_fail(c, err, "stats");
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(s, 0);
        int64_t v = sqlite3_column_int64(s, 1);
        if (!n)
            continue;
        if (!strcmp(n, counter_names[0]))
            st.hits = (uint64_t)v;
        else if (!strcmp(n, counter_names[1]))
            st.misses = (uint64_t)v;
        else if (!strcmp(n, counter_names[2]))
            st.bytes_restored = (uint64_t)v;
        else if (!strcmp(n, counter_names[3]))
            st.build_ms_saved = v;
        else if (!strcmp(n, counter_names[4]))
            st.evictions = (uint64_t)v;
        else if (!strcmp(n, counter_names[5]))
            st.damaged = (uint64_t)v;
    }
    sqlite3_finalize(s);
    st.hit_rate = st.hits + st.misses ? (double)st.hits / (double)(st.hits + st.misses) : 0.0;
    *out = st;
    return 0;
}

int farm_cache_stats_json(struct farm_cache *c, char **json, struct farm_err *err)
{
    struct farm_cache_stats st;
    int rc = farm_cache_stats(c, &st, err);
    if (rc != 0)
        return rc;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "entries",
                          (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "max_bytes",
                          (json_int_t)st.max_bytes, "hits", (json_int_t)st.hits, "misses",
                          (json_int_t)st.misses, "hit_rate", st.hit_rate, "bytes_restored",
                          (json_int_t)st.bytes_restored, "build_ms_saved",
                          (json_int_t)st.build_ms_saved, "evictions", (json_int_t)st.evictions,
                          "damaged", (json_int_t)st.damaged);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!txt)
        return farm_err_set(err, -ENOMEM, "out of memory");
    *json = txt;
    return 0;
}

int farm_cache_ls(struct farm_cache *c, char **json, struct farm_err *err)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT key, size, checksum, created, last_used, hits, build_ms,"
                           " builder, label FROM cache_entries ORDER BY last_used DESC,"
                           " use_seq DESC",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, err, "ls");
    json_t *a = json_array();
    while (a && sqlite3_step(s) == SQLITE_ROW) {
        json_t *o = json_object();
        const char *builder = (const char *)sqlite3_column_text(s, 7);
        const char *label = (const char *)sqlite3_column_text(s, 8);
        json_object_set_new(o, "key", json_string((const char *)sqlite3_column_text(s, 0)));
        json_object_set_new(o, "size", json_integer(sqlite3_column_int64(s, 1)));
        json_object_set_new(o, "checksum", json_string((const char *)sqlite3_column_text(s, 2)));
        json_object_set_new(o, "created", json_integer(sqlite3_column_int64(s, 3)));
        json_object_set_new(o, "last_used", json_integer(sqlite3_column_int64(s, 4)));
        json_object_set_new(o, "hits", json_integer(sqlite3_column_int64(s, 5)));
        json_object_set_new(o, "build_ms", json_integer(sqlite3_column_int64(s, 6)));
        json_object_set_new(o, "builder", builder ? json_string(builder) : json_null());
        json_object_set_new(o, "label", label ? json_string(label) : json_null());
        json_array_append_new(a, o);
    }
    sqlite3_finalize(s);
    char *txt = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!txt)
        return farm_err_set(err, -ENOMEM, "out of memory");
    *json = txt;
    return 0;
}

struct keyrow {
    char key[FARM_CACHE_HEX_SIZE];
    uint64_t size;
    char checksum[FARM_CACHE_HEX_SIZE];
};

static int all_rows(struct farm_cache *c, const char *order, struct keyrow **out, size_t *n)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT key, size, checksum FROM cache_entries ORDER BY %s", order);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return FARM_EDB;
    struct keyrow *rows = NULL;
    size_t cnt = 0, cap = 0;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            struct keyrow *p = realloc(rows, cap * sizeof *p);
            if (!p) {
                free(rows);
                sqlite3_finalize(s);
                return -ENOMEM;
            }
            rows = p;
        }
        const char *k = (const char *)sqlite3_column_text(s, 0);
        const char *cs = (const char *)sqlite3_column_text(s, 2);
        snprintf(rows[cnt].key, sizeof rows[cnt].key, "%s", k ? k : "");
        snprintf(rows[cnt].checksum, sizeof rows[cnt].checksum, "%s", cs ? cs : "");
        rows[cnt].size = (uint64_t)sqlite3_column_int64(s, 1);
        cnt++;
    }
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) {
        free(rows);
        return FARM_EDB;
    }
    *out = rows;
    *n = cnt;
    return 0;
}

#define STAT_CACHE_UNUSED_S (7 * 24 * 3600)

/* Stat caches unused for a week (and temp files of ones being saved by a
 * process that died) go: they only save time, and run directories that
 * were digested once would otherwise accumulate them. */
static void sweep_stat_caches(struct farm_cache *c)
{
    DIR *d = opendir(c->stat);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        int temp = strstr(de->d_name, ".tmp.") != NULL;
        if (S_ISREG(st.st_mode) && now - st.st_mtime > (temp ? STALE_TEMP_S : STAT_CACHE_UNUSED_S))
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

int farm_cache_gc(struct farm_cache *c, uint64_t max_bytes, uint64_t *evicted, uint64_t *freed,
                  struct farm_err *err)
{
    uint64_t cap = max_bytes ? max_bytes : c->max_bytes;
    struct keyrow *rows;
    size_t n;
    int rc = all_rows(c, "last_used, use_seq", &rows, &n);
    if (rc != 0)
        return rc == FARM_EDB ? db_fail(c, err, "gc") : farm_err_set(err, rc, "out of memory");
    uint64_t total = 0, ev = 0, fr = 0;
    for (size_t i = 0; i < n; i++)
        total += rows[i].size;
    for (size_t i = 0; i < n && total > cap; i++) {
        int fd;
        /* Busy (being restored or built): skip, never wait. */
        if (lock_key(c, rows[i].key, LOCK_EX | LOCK_NB, &fd) != 0)
            continue;
        drop_and_unlock(c, rows[i].key, fd, 0);
        total -= rows[i].size;
        ev++;
        fr += rows[i].size;
    }
    free(rows);
    sweep_stat_caches(c);
    if (ev)
        counter_add(c, "evictions", (int64_t)ev);
    if (evicted)
        *evicted = ev;
    if (freed)
        *freed = fr;
    return 0;
}

/* 1 when `key` has an index row, 0 when not, <0 on error. */
static int indexed(struct farm_cache *c, const char *key)
{
    struct entry e;
    int r = entry_get(c, key, &e);
    if (r == 1)
        entry_release(&e);
    return r;
}

/* The key a store file name starts with ("<32 hex>" + suffix), or NULL. */
static int key_prefix(const char *name, const char *suffix, char key[FARM_CACHE_HEX_SIZE])
{
    size_t n = strlen(name), sl = strlen(suffix);
    if (n != 32 + sl || strcmp(name + 32, suffix) != 0)
        return 0;
    memcpy(key, name, 32);
    key[32] = '\0';
    return farm__cache_is_hex(key, 32);
}

/* Removes what no index row accounts for: objects, link trees and lock
 * files of unindexed keys (each under its key's lock, skipped when busy),
 * and temp files and directories older than an hour (left by a process that
 * died while storing or unpacking). Returns how many were removed. */
static uint64_t sweep_dir(struct farm_cache *c, const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t removed = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        char *path = farm__cache_asprintf("%s/%s", dir, n);
        if (!path)
            break;
        struct stat st;
        char key[FARM_CACHE_HEX_SIZE];
        int fd;
        if (n[0] == '.') {
            if (lstat(path, &st) == 0 && now - st.st_mtime > STALE_TEMP_S &&
                farm__cache_rm_rf(path) == 0)
                removed++;
        } else if (key_prefix(n, suffix, key) && indexed(c, key) == 0 &&
                   lock_key(c, key, LOCK_EX | LOCK_NB, &fd) == 0) {
            /* Rechecked under the lock: a builder may just have stored it. */
            if (indexed(c, key) == 0 && farm__cache_rm_rf(path) == 0)
                removed++;
            char *lp = lock_path(c, key);
            if (lp && indexed(c, key) == 0)
                unlink(lp);
            free(lp);
            close(fd);
        }
        free(path);
    }
    closedir(d);
    return removed;
}

static uint64_t sweep(struct farm_cache *c)
{
    uint64_t removed = sweep_dir(c, c->trees, "") + sweep_dir(c, c->locks, ".lock");
    for (int i = 0; i < 256; i++) {
        char *sub = farm__cache_asprintf("%s/%02x", c->objects, i);
        if (!sub)
            break;
        removed += sweep_dir(c, sub, ".tar.zst");
        free(sub);
    }
    return removed;
}

int farm_cache_verify(struct farm_cache *c, char **report, struct farm_err *err)
{
    struct keyrow *rows;
    size_t n;
    int rc = all_rows(c, "key", &rows, &n);
    if (rc != 0)
        return rc == FARM_EDB ? db_fail(c, err, "verify") : farm_err_set(err, rc, "out of memory");
    json_t *damaged = json_array();
    uint64_t ok = 0, busy = 0;
    for (size_t i = 0; i < n; i++) {
        int fd;
        if (lock_key(c, rows[i].key, LOCK_EX | LOCK_NB, &fd) != 0) {
            busy++;
            continue;
        }
        char *obj = object_path(c, rows[i].key);
        char sum[FARM_CACHE_HEX_SIZE];
        uint64_t size = 0;
        int hr = obj ? farm__cache_hash_file(obj, sum, &size) : -ENOMEM;
        free(obj);
        const char *why = NULL;
        char buf[160];
        if (hr == -ENOENT)
            why = "object missing";
        else if (hr != 0)
            why = strerror(-hr);
        else if (strcmp(sum, rows[i].checksum) != 0 || size != rows[i].size) {
            snprintf(buf, sizeof buf, "checksum mismatch: stored %s, object hashes to %s",
                     rows[i].checksum, sum);
            why = buf;
        }
        if (!why) {
            ok++;
            close(fd);
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(rows[i].key));
        json_object_set_new(o, "reason", json_string(why));
        json_array_append_new(damaged, o);
        drop_and_unlock(c, rows[i].key, fd, 1);
    }
    free(rows);
    uint64_t orphans = sweep(c);
    if (report) {
        json_t *r = json_object();
        json_object_set_new(r, "orphans_removed", json_integer((json_int_t)orphans));
        json_object_set_new(r, "checked", json_integer((json_int_t)n));
        json_object_set_new(r, "ok", json_integer((json_int_t)ok));
        json_object_set_new(r, "busy", json_integer((json_int_t)busy));
        json_object_set(r, "damaged", damaged);
        *report = json_dumps(r, JSON_COMPACT);
        json_decref(r);
        if (!*report) {
            json_decref(damaged);
            return farm_err_set(err, -ENOMEM, "out of memory");
        }
    }
    json_decref(damaged);
    return 0;
}

int farm_cache_rm(struct farm_cache *c, const char *key, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!farm__cache_is_hex(key, 32), err, -EINVAL,
                         "cache: \"%s\" is not a cache key (32 hex digits)", key ? key : "");
    int fd;
    int rc = lock_key(c, key, LOCK_EX | LOCK_NB, &fd);
    if (rc == -EBUSY)
        return farm_err_set(err, rc, "cache: %s is being restored or built", key);
    if (rc != 0)
        return farm_err_set(err, rc, "cache: lock %s: %s", key, strerror(-rc));
    struct entry e;
    int r = entry_get(c, key, &e);
    if (r != 1) {
        close(fd);
        return r == 0 ? farm_err_set(err, FARM_ENOTFOUND, "cache: no entry %s", key)
                      : db_fail(c, err, "rm");
    }
    entry_release(&e);
    drop_and_unlock(c, key, fd, 0);
    return 0;
}

/* ---- why -------------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static void diff_manifests(json_t *files, json_t *was, json_t *now)
{
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(now, k, v)
    {
        json_t *o = json_object_get(was, k);
        if (!o)
            json_array_append_new(added, json_string(k));
        else if (!json_equal(o, v))
            json_array_append_new(changed, json_string(k));
    }
    json_object_foreach(was, k, v)
    {
        if (!json_object_get(now, k))
            json_array_append_new(removed, json_string(k));
    }
    json_object_set_new(files, "added", added);
    json_object_set_new(files, "removed", removed);
    json_object_set_new(files, "changed", changed);
}

static void diff_field(json_t *differs, const char *name, json_t *was, json_t *now)
{
    if (json_equal(was, now) || (!was && !now))
        return;
    json_t *d = json_object();
    json_object_set_new(d, "input", json_string(name));
    json_object_set(d, "was", was ? was : json_null());
    json_object_set(d, "now", now ? now : json_null());
    json_array_append_new(differs, d);
}

static json_t *diff_inputs(json_t *was, json_t *now, json_t *man_was, json_t *man_now)
{
    json_t *differs = json_array();
    static const char *const fields[] = {"format", "source", "build", "platform"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        json_t *a = json_object_get(was, fields[i]), *b = json_object_get(now, fields[i]);
        size_t before = json_array_size(differs);
        diff_field(differs, fields[i], a, b);
        if (i == 1 && json_array_size(differs) > before && json_is_object(man_was) &&
            json_is_object(man_now)) {
            json_t *files = json_object();
            diff_manifests(files, man_was, man_now);
            json_object_set_new(json_array_get(differs, before), "files", files);
        }
    }
    json_t *ea = json_object_get(was, "env"), *eb = json_object_get(now, "env");
    const char *k;
    json_t *v;
    char name[300];
    json_object_foreach(eb, k, v)
    {
        snprintf(name, sizeof name, "env.%s", k);
        json_t *o = json_object_get(ea, k);
        if (!o) {
            json_t *d = json_object();
            json_object_set_new(d, "input", json_string(name));
            json_object_set_new(d, "was", json_string("(not in deps.env)"));
            json_object_set(d, "now", v);
            json_array_append_new(differs, d);
        } else {
            diff_field(differs, name, o, v);
        }
    }
    json_object_foreach(ea, k, v)
    {
        if (json_object_get(eb, k))
            continue;
        snprintf(name, sizeof name, "env.%s", k);
        json_t *d = json_object();
        json_object_set_new(d, "input", json_string(name));
        json_object_set(d, "was", v);
        json_object_set_new(d, "now", json_string("(not in deps.env)"));
        json_array_append_new(differs, d);
    }
    return differs;
}

int farm_cache_why(struct farm_cache *c, const char *key, const char *inputs_json,
                   const char *manifest_json, char **report, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!farm__cache_is_hex(key, 32), err, -EINVAL,
                         "cache: \"%s\" is not a cache key (32 hex digits)", key ? key : "");
    struct entry e;
    int stored = entry_get(c, key, &e);
    if (stored < 0)
        return db_fail(c, err, "why");
    const char *in_txt = inputs_json ? inputs_json : stored ? e.inputs : NULL;
    const char *man_txt = manifest_json ? manifest_json : stored ? e.manifest : NULL;
    if (!in_txt) {
        return farm_err_set(err, FARM_ENOTFOUND,
                            "cache: %s is not stored and no inputs were given to explain it",
                            key);
    }
    json_error_t je;
    json_t *inputs = json_loads(in_txt, 0, &je);
    if (!json_is_object(inputs)) {
        json_decref(inputs);
        if (stored)
            entry_release(&e);
        return farm_err_set(err, -EINVAL, "cache: inputs of %s: %s", key,
                            inputs ? "not an object" : je.text);
    }
    json_t *manifest = man_txt ? json_loads(man_txt, 0, NULL) : NULL;
    json_t *r = json_object();
    json_object_set_new(r, "key", json_string(key));
    json_object_set_new(r, "stored", json_boolean(stored == 1));
    json_object_set_new(r, "builder", stored == 1 && e.builder[0] ? json_string(e.builder)
                                                                  : json_null());
    json_object_set_new(r, "created", stored == 1 ? json_integer(e.created) : json_null());
    json_object_set(r, "inputs", inputs);
    json_t *nearest = json_null();
    const char *label = json_string_value(json_object_get(inputs, "label"));
    int rc = 0;
    if (label) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(c->db,
                               "SELECT key, builder, created, inputs, manifest FROM cache_entries"
                               " WHERE label = ? AND key != ? AND (? IS NULL OR created < ?"
                               " OR (created = ? AND key < ?))"
                               " ORDER BY created DESC, key DESC LIMIT 1",
                               -1, &s, NULL) != SQLITE_OK) {
            rc = db_fail(c, err, "why");
        } else {
            sqlite3_bind_text(s, 1, label, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
            if (stored == 1) {
                sqlite3_bind_int64(s, 3, e.created);
                sqlite3_bind_int64(s, 4, e.created);
                sqlite3_bind_int64(s, 5, e.created);
            }
            sqlite3_bind_text(s, 6, key, -1, SQLITE_STATIC);
            int step = sqlite3_step(s);
            if (step == SQLITE_ROW) {
                const char *b = (const char *)sqlite3_column_text(s, 1);
                const char *oi = (const char *)sqlite3_column_text(s, 3);
                const char *om = (const char *)sqlite3_column_text(s, 4);
                json_t *was = oi ? json_loads(oi, 0, NULL) : NULL;
                json_t *man_was = om ? json_loads(om, 0, NULL) : NULL;
                json_decref(nearest);
                nearest = json_object();
                json_object_set_new(nearest, "key",
                                    json_string((const char *)sqlite3_column_text(s, 0)));
                json_object_set_new(nearest, "builder", str_or_null(b));
                json_object_set_new(nearest, "created", json_integer(sqlite3_column_int64(s, 2)));
                json_object_set_new(nearest, "differs",
                                    diff_inputs(was, inputs, man_was, manifest));
                json_decref(was);
                json_decref(man_was);
            } else if (step != SQLITE_DONE) {
                rc = db_fail(c, err, "why");
            }
            sqlite3_finalize(s);
        }
    }
    json_object_set_new(r, "nearest", nearest);
    if (rc == 0) {
        *report = json_dumps(r, JSON_COMPACT);
        if (!*report)
            rc = farm_err_set(err, -ENOMEM, "out of memory");
    }
    json_decref(r);
    json_decref(inputs);
    json_decref(manifest);
    if (stored == 1)
        entry_release(&e);
    return rc;
}
