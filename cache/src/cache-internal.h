/* Private to libfarmcache: helpers shared by its source files. */
#ifndef FARM_CACHE_INTERNAL_H
#define FARM_CACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xxhash.h>

#include "farm/cache.h"

/* 32 lowercase hex digits + NUL from an XXH3-128 value. */
void farm__cache_hex128(XXH128_hash_t h, char out[FARM_CACHE_HEX_SIZE]);

/* Nonzero when `s` is exactly `len` lowercase hex digits. */
int farm__cache_is_hex(const char *s, size_t len);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t farm__cache_now_ms(void);

/* mkdir -p with `mode` for the directories it creates; 0 or -errno. */
int farm__cache_mkdirs(const char *path, mode_t mode);

/* Removes `path` and everything below it (never following symlinks); a
 * missing path is success. Makes read-only directories writable as it goes.
 * 0 or -errno. */
int farm__cache_rm_rf(const char *path);

/* Removes everything below directory `path`, keeping `path`. */
int farm__cache_empty_dir(const char *path);

/* malloc'd printf; NULL when out of memory. */
char *farm__cache_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* fsync() the directory at `path`; 0 or -errno. */
int farm__cache_fsync_dir(const char *path);

/* Write-fault injection for tests: when set, every write of an object's
 * bytes calls it first; a negative return (-ENOSPC) fails that write as the
 * disk would. NULL (the default) disables it. Not thread-safe; tests only. */
typedef int (*farm__cache_write_hook)(size_t bytes_so_far, size_t len);
void farm__cache_set_write_hook(farm__cache_write_hook hook);
extern farm__cache_write_hook farm__cache_write_hook_fn;

/* The archive side (archive.c). */
struct farm__cache_pack_opts {
    int level;
    int threads;
};
int farm__cache_pack_dir(const char *src, const char *path, const struct farm__cache_pack_opts *o,
                         char checksum[FARM_CACHE_HEX_SIZE], uint64_t *size, uint64_t *files,
                         struct farm_err *err);

/* Extracts the archive at `path` into the existing, empty `dest` with every
 * safety check, hashing the archive's bytes as they are read. Returns 0,
 * FARM_ECHECKSUM (the bytes do not hash to `checksum`), FARM_EBADARCHIVE
 * (unsafe entry or undecodable data), or -errno for local trouble (the
 * destination). files: NULL or the count of regular files written. */
int farm__cache_extract(const char *path, const char *dest, const char *checksum, uint64_t *files,
                        struct farm_err *err);

/* Hard-links (or copies, across filesystems) the tree `src` into the
 * existing empty `dest`: directories made, symlinks recreated. */
int farm__cache_link_tree(const char *src, const char *dest, uint64_t *files, uint64_t *bytes,
                          struct farm_err *err);

/* Clears the write bits of every regular file below `dir`. */
int farm__cache_make_readonly(const char *dir);

/* XXH3-128 hex of a file's bytes; 0 or -errno. */
int farm__cache_hash_file(const char *path, char hex[FARM_CACHE_HEX_SIZE], uint64_t *size);

/* Counts the non-directory entries below `dir` (stops counting at `stop`). */
int farm__cache_count_files(const char *dir, uint64_t stop, uint64_t *count);

#endif
