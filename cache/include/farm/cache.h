/*
 * libfarmcache: the dependency-package cache.
 *
 * The cache maps a key (XXH3-128 over what a dependency package is built
 * from) to a stored package: one tar.zst object per key under
 * <cache_dir>/objects/<2 hex>/<key>.tar.zst, indexed in SQLite tables named
 * cache_* inside a database the caller names (farmd's farm.db).
 *
 * The library knows nothing of tasks or the daemon: everything comes in as
 * arguments. A typical worker does:
 *
 *   farm_cache_digest_dir(cache, "src/deps", hex, &manifest, NULL, &err);
 *   farm_cache_source_walk(hex, source)             -> "walk:<hex>"
 *   farm_cache_key(&inputs, key, &inputs_json, &err);
 *   farm_cache_acquire(cache, key, &lease, &err);   -> HIT or BUILD
 *   HIT:   farm_cache_restore(cache, lease, "runs/7/deps", mode, &info, &err)
 *          (FARM_ECHECKSUM or FARM_EBADARCHIVE: the entry was dropped;
 *           release the lease, then acquire again: now it says BUILD)
 *   BUILD: farm_cache_build_begin(cache, lease, "src/deps", "runs/7/deps", &err)
 *          run the build with FARM_DEPS_OUT=runs/7/deps
 *          farm_cache_build_commit(cache, lease, &commit, &err)
 *          (the package stays in runs/7/deps whatever commit returns)
 *   farm_cache_release(cache, lease);
 *
 * Processes and threads: a struct farm_cache is used by one thread at a
 * time; open one per process (or per thread). Any number of processes may
 * share one cache directory and database: single flight, eviction and
 * restore coordinate through flock() on <cache_dir>/locks/<key>.lock, which
 * the kernel releases when its holder dies, so no stale lock survives. A
 * process must not hold two leases on the same key at once (the second
 * acquire would wait for the first forever).
 *
 * Errors: every function returns 0 or a negative code (-errno, or FARM_E*
 * from farm/error.h) and, where an `err` is passed, a message naming the
 * path or key concerned. Out-parameters are written only on success.
 * Returned `char *` are the caller's to free(); JSON text is UTF-8.
 */
#ifndef FARM_CACHE_H
#define FARM_CACHE_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>

#include "farm/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format tag that enters every key. Bump it when the archive layout or
 * the key derivation changes: every old entry then simply misses. */
#define FARM_CACHE_FORMAT_TAG "farm-cache-v1"

/* A key or a walked digest: 32 lowercase hex digits (XXH3-128) + NUL. */
#define FARM_CACHE_HEX_SIZE 33

/* A source digest string: "walk:<32 hex>" or "git:<40 or 64 hex>" + NUL. */
#define FARM_CACHE_SOURCE_SIZE 72

#define FARM_CACHE_DEFAULT_MAX_BYTES (10ULL << 30)
#define FARM_CACHE_DEFAULT_LEVEL 3

/* ---------------------------------------------------------------------- */
/* Source digest                                                          */
/* ---------------------------------------------------------------------- */

/* Counters of one walk, for tests and benchmarks. */
struct farm_digest_stats {
    uint64_t files;      /* regular files seen */
    uint64_t dirs;       /* directories seen, the root excluded */
    uint64_t symlinks;   /* symbolic links seen */
    uint64_t files_read; /* regular files whose content was read */
    uint64_t bytes_read; /* bytes of content read */
};

/*
 * Digests the directory `dir` with a canonical walk and writes 32 hex digits
 * + NUL into `hex`.
 *
 * The digest is XXH3-128 over, for every entry below `dir` in depth-first
 * order with the names of each directory sorted bytewise: the relative path,
 * the type (directory, regular file, symlink), the executable bit and size of
 * a file with the XXH3-128 of its content, and the target of a symlink. So a
 * rename, an edit, a chmod +x or a retargeted symlink changes the digest;
 * readdir order, timestamps, owners and the other permission bits do not.
 * Symlinks are never followed. Sockets, fifos and devices are refused
 * (FARM_EBADDATA naming the path).
 *
 * statcache_path: NULL, or a file holding the stat cache of this directory
 * (created when missing, rewritten atomically when anything changed). A file
 * whose device, inode, size, mtime and ctime match its entry is not read,
 * unless its mtime or ctime falls within FARM_DIGEST_RACY_NS of the moment
 * its content was last read (the racy-git rule: it could have changed again
 * within the same timestamp tick); such a file is read again. A stat cache
 * that is unreadable or damaged is ignored, never trusted.
 *
 * manifest_json: NULL, or receives a JSON object mapping each relative path
 * to "dir", "file:<hash>", "exec:<hash>" or "link:<target>", for
 * farm_cache_why() to name the files that changed. Caller frees.
 *
 * stats: NULL, or receives the walk's counters (also on error, partially).
 *
 * The walk uses one thread per online CPU (at most 8; the environment
 * variable FARM_DIGEST_THREADS overrides, for benchmarks); the result does
 * not depend on it. May be called from any thread.
 */
#define FARM_DIGEST_RACY_NS 1000000000LL
int farm_digest_dir(const char *dir, const char *statcache_path, char hex[FARM_CACHE_HEX_SIZE],
                    char **manifest_json, struct farm_digest_stats *stats, struct farm_err *err);

/*
 * The git tree OID of `subdir` ("" or "." for the root) at `rev` (a commit
 * id, ref or any revision libgit2 parses) in the repository at `repo_path`.
 * Writes the OID in hex (40 digits for SHA-1) + NUL into `hex`, which must
 * hold FARM_CACHE_SOURCE_SIZE bytes. Errors: FARM_EGIT with libgit2's
 * message; FARM_ENOTFOUND when `subdir` is missing or not a directory.
 */
int farm_digest_git_tree(const char *repo_path, const char *rev, const char *subdir,
                         char hex[FARM_CACHE_SOURCE_SIZE], struct farm_err *err);

/* Source digest strings for farm_cache_key(): "walk:" or "git:" + hex.
 * `out` holds FARM_CACHE_SOURCE_SIZE bytes. Returns 0, or -EINVAL when hex is
 * not hexadecimal of the expected length. */
int farm_cache_source_walk(const char *hex, char out[FARM_CACHE_SOURCE_SIZE]);
int farm_cache_source_git(const char *oid_hex, char out[FARM_CACHE_SOURCE_SIZE]);

/* ---------------------------------------------------------------------- */
/* Key                                                                    */
/* ---------------------------------------------------------------------- */

/* One named environment value; value NULL means "unset" (which differs from
 * the empty string). */
struct farm_cache_env {
    const char *name;
    const char *value;
};

/* What a dependency package is built from. */
struct farm_cache_inputs {
    const char *source;   /* farm_cache_source_walk/git() string */
    const char *build;    /* the build command, verbatim */
    const struct farm_cache_env *env; /* deps.env values, any order */
    size_t n_env;
    const char *platform; /* NULL: this host's, from farm_cache_platform() */
    /* Not part of the key: names the dependency directory ("repo:deps") so
     * farm_cache_why() can find earlier keys of the same directory. */
    const char *label;
};

/* This host's platform as "os arch libc" ("Linux x86_64 glibc-2.36"), from
 * uname() and confstr(_CS_GNU_LIBC_VERSION). Static string, valid for the
 * process; any thread. */
const char *farm_cache_platform(void);

/*
 * Derives the key: XXH3-128 over FARM_CACHE_FORMAT_TAG, the source digest,
 * the build command, the platform and the env pairs sorted by name, each
 * field length-prefixed so no two different inputs serialise alike.
 * Writes 32 hex + NUL into `key`. inputs_json: NULL, or receives the inputs
 * as a JSON object (format, source, build, platform, env {name: value|null},
 * label), to be kept with the task and passed to farm_cache_build_commit()
 * and farm_cache_why(). Caller frees. Errors: -EINVAL (missing source or
 * build, duplicate env name) with a message.
 */
int farm_cache_key(const struct farm_cache_inputs *in, char key[FARM_CACHE_HEX_SIZE],
                   char **inputs_json, struct farm_err *err);

/* ---------------------------------------------------------------------- */
/* Store                                                                  */
/* ---------------------------------------------------------------------- */

struct farm_cache_config {
    const char *cache_dir; /* $FARM_HOME/cache; created (0700) when missing */
    const char *db_path;   /* SQLite database holding the cache_* tables */
    uint64_t max_bytes;    /* size cap; 0: FARM_CACHE_DEFAULT_MAX_BYTES */
    int level;             /* zstd level; 0: FARM_CACHE_DEFAULT_LEVEL */
    int threads;           /* zstd worker threads; 0: one per online CPU */
    /* When set: a wait for another process's build of the same key gives up
     * with -ECANCELED once *stop is nonzero (checked every 20 ms while it
     * waits). */
    volatile sig_atomic_t *stop;
};

struct farm_cache;       /* opaque: a cache directory + a database handle */
struct farm_cache_lease; /* opaque: a held per-key lock */

/* Opens the cache: creates the directories and the cache_* tables when
 * missing, puts the database in WAL mode with a busy timeout. *out is the
 * caller's, freed with farm_cache_close(). Errors: -errno (directory),
 * FARM_EDB (database) with a message. */
int farm_cache_open(struct farm_cache **out, const struct farm_cache_config *cfg,
                    struct farm_err *err);
/* Closes; NULL is allowed. Leases must have been released before. */
void farm_cache_close(struct farm_cache *c);

/* The cache directory (borrowed, valid until farm_cache_close). */
const char *farm_cache_dir(const struct farm_cache *c);

/* farm_digest_dir() with this cache's stat cache for `dir`:
 * <cache_dir>/stat/<XXH64 of realpath(dir)>.sc. */
int farm_cache_digest_dir(struct farm_cache *c, const char *dir, char hex[FARM_CACHE_HEX_SIZE],
                          char **manifest_json, struct farm_digest_stats *stats,
                          struct farm_err *err);

enum farm_cache_outcome {
    FARM_CACHE_HIT = 1,   /* the package is stored: restore it */
    FARM_CACHE_BUILD = 2, /* it is not: you build it, the others wait */
};

/*
 * Single flight. Returns with *lease held and its outcome in
 * farm_cache_lease_outcome():
 *   HIT    the entry is indexed and its object present; the lease holds a
 *          shared lock on the key, so gc() and rm() leave it alone while the
 *          caller restores. Counts a hit, updates last_used.
 *   BUILD  nobody has stored the key; the lease holds the key's exclusive
 *          lock. Every other acquirer of the key blocks until this lease is
 *          released (or its process dies, in which case one of them gets
 *          BUILD in turn). Counts a miss.
 * Blocks while another process builds the key. Release with
 * farm_cache_release().
 */
int farm_cache_acquire(struct farm_cache *c, const char *key, struct farm_cache_lease **lease,
                       struct farm_err *err);
enum farm_cache_outcome farm_cache_lease_outcome(const struct farm_cache_lease *lease);
/* The key of a lease (borrowed, valid until release). */
const char *farm_cache_lease_key(const struct farm_cache_lease *lease);

/* Releases the lock (a BUILD lease without a successful commit stores
 * nothing) and frees the lease. NULL is allowed. */
void farm_cache_release(struct farm_cache *c, struct farm_cache_lease *lease);

enum farm_cache_restore_mode {
    /* Extract the object into the directory: private, writable files. */
    FARM_CACHE_RESTORE_COPY = 0,
    /* Hard-link the files of <cache_dir>/trees/<key>/ (unpacked once per
     * key, files read-only); falls back to a copy across filesystems. The
     * restored files are shared with every other link restore of the key:
     * for read-only use. Directories and symlinks are the task's own. */
    FARM_CACHE_RESTORE_LINK = 1,
};

struct farm_cache_restore_info {
    uint64_t bytes;    /* object size (copy) or file bytes linked (link) */
    uint64_t files;    /* regular files restored */
    int64_t build_ms;  /* what building it took, as stored */
    char builder[256]; /* the builder label stored with it (a task id) */
};

/*
 * Restores the package of a HIT lease into `dest_dir` (created when missing;
 * must be empty). Copy mode streams the object through libarchive, hashing
 * every byte read; entries with an absolute path, a ".." component, a path
 * through a symlink, a hard link or a special file are refused, and so is
 * any other type of damage. On a checksum mismatch (FARM_ECHECKSUM) or an
 * unsafe/damaged archive (FARM_EBADARCHIVE): what was extracted is removed,
 * the entry is dropped from the index and the store, the lease becomes a
 * plain lock holder; release it and acquire again (you get BUILD).
 * info: NULL, or filled on success.
 */
int farm_cache_restore(struct farm_cache *c, struct farm_cache_lease *lease, const char *dest_dir,
                       enum farm_cache_restore_mode mode, struct farm_cache_restore_info *info,
                       struct farm_err *err);

/*
 * Starts a build on a BUILD lease. out_dir: where the build writes the
 * package ($FARM_DEPS_OUT); created when missing, must be empty (-ENOTEMPTY
 * otherwise). source_dir: the directory the package is built from, digested
 * now (stat cache as farm_cache_digest_dir) and again at commit, or NULL to
 * skip that check (a git tree OID key built from a pristine checkout).
 */
int farm_cache_build_begin(struct farm_cache *c, struct farm_cache_lease *lease,
                           const char *source_dir, const char *out_dir, struct farm_err *err);

struct farm_cache_commit {
    int exit_status;          /* the build's exit status: only 0 is stored */
    int64_t build_ms;         /* how long the build took */
    const char *builder;      /* opaque label stored with it (the task id) */
    const char *inputs_json;  /* from farm_cache_key(); required */
    const char *manifest_json; /* from the digest, or NULL (git sources) */
};

/*
 * Checks and stores the package in out_dir. Stores nothing and returns
 * FARM_EBUILD (message says why) when the build exited non-zero, produced no
 * file, or the source directory's digest changed during the build. Else
 * packs out_dir (tar.zst, pax restricted), writes it to a temp file in the
 * object's directory, fsyncs, renames it into place, fsyncs the directory and
 * only then indexes it. A failure there (-ENOSPC, -EROFS, -EACCES, FARM_EDB)
 * leaves no object and no index row behind, and is returned with a message.
 * In every case out_dir is left as it was: the caller uses it as the
 * package. After storing, evicts least recently used entries over the cap.
 */
int farm_cache_build_commit(struct farm_cache *c, struct farm_cache_lease *lease,
                            const struct farm_cache_commit *commit, struct farm_err *err);

/* Abandons a build: removes out_dir and what is in it. Nothing is stored;
 * the lease stays held until farm_cache_release(). */
int farm_cache_build_abort(struct farm_cache *c, struct farm_cache_lease *lease,
                           struct farm_err *err);

/* Stores an existing tar.zst (as written by farm_cache_pack) under `key`
 * with `commit` (exit_status ignored) as an object: copied to a temp file,
 * fsynced, renamed, indexed. For import and tests. Takes the key's exclusive
 * lock itself (blocks while it is restored or built). */
int farm_cache_put_archive(struct farm_cache *c, const char *key, const char *archive_path,
                           const struct farm_cache_commit *commit, struct farm_err *err);

/* Packs directory `src` into a tar.zst at `path` (level and threads as in
 * the config), the canonical walk order, owners dropped. checksum: NULL or
 * receives the XXH3-128 hex of the written bytes; size likewise. */
int farm_cache_pack(struct farm_cache *c, const char *src, const char *path,
                    char checksum[FARM_CACHE_HEX_SIZE], uint64_t *size, struct farm_err *err);

/* ---------------------------------------------------------------------- */
/* Maintenance and statistics                                             */
/* ---------------------------------------------------------------------- */

/* Parses a size for `gc --max-size`: a number with an optional suffix K, M,
 * G or T (powers of 1024; "KiB", "MB" and the like are accepted and mean the
 * same) into bytes. -EINVAL with a message naming the text otherwise. */
int farm_cache_parse_size(const char *text, uint64_t *bytes, struct farm_err *err);

struct farm_cache_stats {
    uint64_t entries;
    uint64_t bytes;          /* sum of object sizes */
    uint64_t max_bytes;      /* the cap in effect */
    uint64_t hits;
    uint64_t misses;
    double hit_rate;         /* hits / (hits + misses), 0 when none */
    uint64_t bytes_restored;
    int64_t build_ms_saved;  /* sum of build_ms over hits */
    uint64_t evictions;
    uint64_t damaged;        /* entries dropped by restore or verify */
};

int farm_cache_stats(struct farm_cache *c, struct farm_cache_stats *out, struct farm_err *err);

/* The same as a JSON object with the member names of struct
 * farm_cache_stats, for `farm cache stats --json`. Caller frees. */
int farm_cache_stats_json(struct farm_cache *c, char **json, struct farm_err *err);

/* Every entry as a JSON array, most recently used first: {key, size,
 * checksum, created, last_used (ms since the epoch), hits, build_ms,
 * builder, label}. Caller frees. */
int farm_cache_ls(struct farm_cache *c, char **json, struct farm_err *err);

/* Evicts least recently used entries until the store holds at most
 * max_bytes (0: the configured cap), skipping entries being restored or
 * built. Also removes stat caches (<cache_dir>/stat) of directories not
 * digested for a week. evicted/freed: NULL or receive the count and bytes
 * removed. */
int farm_cache_gc(struct farm_cache *c, uint64_t max_bytes, uint64_t *evicted, uint64_t *freed,
                  struct farm_err *err);

/* Re-hashes every object against its stored checksum and drops damaged or
 * missing ones (skipping, and counting as busy, entries in use). Then
 * removes what no index row accounts for: objects, link trees and lock files
 * of unindexed keys, and temp files over an hour old left by processes that
 * died mid-store. report: NULL or receives a JSON object {checked, ok, busy,
 * orphans_removed, damaged: [{key, reason}]}. Caller frees. */
int farm_cache_verify(struct farm_cache *c, char **report, struct farm_err *err);

/* Removes one entry (object, link tree, index row). FARM_ENOTFOUND when not
 * indexed; -EBUSY when it is being restored or built. */
int farm_cache_rm(struct farm_cache *c, const char *key, struct farm_err *err);

/*
 * Explains a key. inputs_json: the inputs from farm_cache_key() (NULL: the
 * ones indexed with the key); manifest_json likewise (NULL: indexed one).
 * report receives a JSON object:
 *   {key, stored (bool), builder, created, inputs,
 *    nearest: null | {key, builder, created,
 *                     differs: [{input: "source"|"build"|"platform"|"env.X"|
 *                                "format", was, now,
 *                                files?: {added: [], removed: [], changed: []}}]}}
 * nearest is the most recently created other entry with the same label
 * (created before this key's entry, when it is stored). Caller frees.
 */
int farm_cache_why(struct farm_cache *c, const char *key, const char *inputs_json,
                   const char *manifest_json, char **report, struct farm_err *err);

#ifdef __cplusplus
}
#endif

#endif
