/* Store and restore round trips, damage, eviction, poisoning, full or
 * unwritable stores, rm and why. */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cache-internal.h"
#include "fixtures/cache/cache_test.h"

struct fx {
    char *base;
    struct farm_cache *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->base = ct_tempdir();
    f->c = ct_open(f->base, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    farm_cache_close(f->c);
    ct_rm(f->base);
    free(f->base);
    free(f);
    return 0;
}

/* A package with the shapes that matter: modes, exec bits, symlinks
 * (relative, absolute, dangling), empty files and directories, binaries. */
static void make_package(const char *root_in)
{
    char root[4096];
    snprintf(root, sizeof root, "%s", root_in);
    ct_write(ct_path(root, "lib/tool.sh"), "#!/bin/sh\necho tool\n", (size_t)-1, 0755);
    ct_write(ct_path(root, "lib/private.cfg"), "secret=1\n", (size_t)-1, 0640);
    ct_write(ct_path(root, "lib/empty"), "", 0, 0644);
    ct_write_random(ct_path(root, "lib/native.so"), 1 << 20, 7, 0755);
    ct_write(ct_path(root, "site/pkg/__init__.py"), "VERSION = '1.0'\n", (size_t)-1, 0644);
    ct_symlink("../lib/tool.sh", ct_path(root, "bin/tool"));
    ct_symlink("/nonexistent/elsewhere", ct_path(root, "bin/abs"));
    ct_mkdir(ct_path(root, "share/empty-dir"));
}

static void digest_of(const char *dir, char hex[33])
{
    struct farm_err err;
    if (farm_digest_dir(dir, NULL, hex, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

static struct farm_cache_lease *acquire(struct farm_cache *c, const char *key,
                                        enum farm_cache_outcome want)
{
    struct farm_cache_lease *l = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_acquire(c, key, &l, &err) != 0)
        fail_msg("acquire: %s", err.msg);
    assert_int_equal(farm_cache_lease_outcome(l), want);
    assert_string_equal(farm_cache_lease_key(l), key);
    return l;
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    char pkg[1024], dest[1024], dest2[1024], key[33], want[33], got[33];
    snprintf(pkg, sizeof pkg, "%s/pkg", f->base);
    snprintf(dest, sizeof dest, "%s/run1/deps", f->base);
    snprintf(dest2, sizeof dest2, "%s/run2/deps", f->base);
    make_package(pkg);
    char *inputs = ct_inputs("0123456789abcdef0123456789abcdef", "sh build.sh", "r:deps", key);
    ct_store_dir(f->c, key, inputs, pkg, "task-1", ct_path(f->base, "scratch"));

    /* GNU tar reads the object: it is a plain tar.zst. */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "tar -I zstd -tvf '%s/cache/objects/%.2s/%s.tar.zst' > '%s/list'",
             f->base, key, key, f->base);
    assert_int_equal(system(cmd), 0);
    char *list = ct_read(ct_path(f->base, "list"), NULL);
    assert_non_null(strstr(list, "bin/tool -> ../lib/tool.sh"));
    assert_non_null(strstr(list, "-rwxr-xr-x"));
    free(list);

    struct farm_cache_lease *l = acquire(f->c, key, FARM_CACHE_HIT);
    struct farm_cache_restore_info info;
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_restore(f->c, l, dest, FARM_CACHE_RESTORE_COPY, &info, &err) != 0)
        fail_msg("restore: %s", err.msg);
    farm_cache_release(f->c, l);
    assert_int_equal(info.files, 5);
    assert_int_equal(info.build_ms, 1500);
    assert_string_equal(info.builder, "task-1");
    digest_of(pkg, want);
    digest_of(dest, got);
    assert_string_equal(got, want);
    snprintf(cmd, sizeof cmd, "diff -r --no-dereference '%s' '%s'", pkg, dest);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mode_of(ct_path(dest, "lib/private.cfg")) & 07777, 0640);
    assert_int_equal(mode_of(ct_path(dest, "lib/tool.sh")) & 07777, 0755);
    assert_true(S_ISLNK(mode_of(ct_path(dest, "bin/abs"))));
    assert_true(S_ISDIR(mode_of(ct_path(dest, "share/empty-dir"))));
    char *tool = ct_read(ct_path(dest, "bin/tool"), NULL); /* through the link */
    assert_string_equal(tool, "#!/bin/sh\necho tool\n");
    free(tool);

    /* A second restore into a non-empty directory is refused. */
    l = acquire(f->c, key, FARM_CACHE_HIT);
    assert_int_equal(farm_cache_restore(f->c, l, dest, FARM_CACHE_RESTORE_COPY, NULL, &err),
                     -ENOTEMPTY);
    /* Link mode: one read-only tree, hard-linked. */
    if (farm_cache_restore(f->c, l, dest2, FARM_CACHE_RESTORE_LINK, &info, &err) != 0)
        fail_msg("restore link: %s", err.msg);
    farm_cache_release(f->c, l);
    digest_of(dest2, got);
    assert_string_equal(got, want);
    struct stat a, b;
    assert_int_equal(stat(ct_path(dest2, "lib/native.so"), &a), 0);
    snprintf(cmd, sizeof cmd, "%s/cache/trees/%s/lib/native.so", f->base, key);
    assert_int_equal(stat(cmd, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    assert_int_equal(a.st_mode & 0222, 0);
    assert_int_equal(a.st_mode & 0111, 0111);

    struct farm_cache_stats st;
    assert_int_equal(farm_cache_stats(f->c, &st, &err), 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.build_ms_saved, 3000);
    assert_true(st.bytes_restored > 1000000);
    assert_true(st.bytes > 1000000); /* 1 MiB of random bytes do not compress */
    assert_true(st.hit_rate > 0.66 && st.hit_rate < 0.67);
    assert_int_equal(st.max_bytes, FARM_CACHE_DEFAULT_MAX_BYTES);
    char *sj = NULL;
    assert_int_equal(farm_cache_stats_json(f->c, &sj, &err), 0);
    json_t *js = json_loads(sj, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(js, "hits")), 2);
    assert_int_equal(json_integer_value(json_object_get(js, "misses")), 1);
    assert_int_equal(json_integer_value(json_object_get(js, "build_ms_saved")), 3000);
    assert_int_equal(json_integer_value(json_object_get(js, "max_bytes")), 10LL << 30);
    assert_true(json_real_value(json_object_get(js, "hit_rate")) > 0.66);
    json_decref(js);
    free(sj);

    char *ls = NULL;
    assert_int_equal(farm_cache_ls(f->c, &ls, &err), 0);
    json_t *j = json_loads(ls, 0, NULL);
    assert_int_equal(json_array_size(j), 1);
    json_t *e = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(e, "key")), key);
    assert_string_equal(json_string_value(json_object_get(e, "builder")), "task-1");
    assert_string_equal(json_string_value(json_object_get(e, "label")), "r:deps");
    assert_int_equal(json_integer_value(json_object_get(e, "hits")), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "size")), (json_int_t)st.bytes);
    json_decref(j);
    free(ls);
    free(inputs);
}

static void flip_byte(const char *path, double where)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    off_t off = (off_t)((double)st.st_size * where);
    if (off >= st.st_size)
        off = st.st_size - 1;
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void test_flipped_byte(void **state)
{
    struct fx *f = *state;
    char pkg[4096], dest[4096], key[33], obj[4096];
    snprintf(pkg, sizeof pkg, "%s/pkg", f->base);
    snprintf(dest, sizeof dest, "%s/run/deps", f->base);
    make_package(pkg);
    char *inputs = ct_inputs("0123456789abcdef0123456789abcdef", "b", "r:deps", key);
    /* Damage at the start, the middle and the very last byte. */
    const double where[] = {0.0, 0.5, 1.0};
    for (int i = 0; i < 3; i++) {
        ct_store_dir(f->c, key, inputs, pkg, "task-1", ct_path(f->base, "scratch"));
        snprintf(obj, sizeof obj, "%s/cache/objects/%.2s/%s.tar.zst", f->base, key, key);
        flip_byte(obj, where[i]);
        struct farm_cache_lease *l = acquire(f->c, key, FARM_CACHE_HIT);
        struct farm_err err;
        farm_err_clear(&err);
        int rc = farm_cache_restore(f->c, l, dest, i == 1 ? FARM_CACHE_RESTORE_LINK
                                                          : FARM_CACHE_RESTORE_COPY,
                                    NULL, &err);
        assert_int_equal(rc, FARM_ECHECKSUM);
        assert_non_null(strstr(err.msg, key));
        farm_cache_release(f->c, l);
        /* Nothing of it was handed out, and the entry is gone. */
        uint64_t n = 99;
        assert_int_equal(farm__cache_count_files(dest, 100, &n), 0);
        assert_int_equal(n, 0);
        assert_false(ct_exists(obj));
        char tree[4096];
        snprintf(tree, sizeof tree, "%s/cache/trees/%s", f->base, key);
        assert_false(ct_exists(tree));
        l = acquire(f->c, key, FARM_CACHE_BUILD); /* so it gets rebuilt */
        farm_cache_release(f->c, l);
    }
    struct farm_cache_stats st;
    assert_int_equal(farm_cache_stats(f->c, &st, NULL), 0);
    assert_int_equal(st.damaged, 3);
    assert_int_equal(st.entries, 0);

    /* verify finds and drops a damaged entry, reports which. */
    char key2[33];
    char *inputs2 = ct_inputs("0123456789abcdef0123456789abcdee", "b", "r:deps", key2);
    ct_store_dir(f->c, key, inputs, pkg, "task-1", ct_path(f->base, "scratch"));
    ct_store_dir(f->c, key2, inputs2, pkg, "task-2", ct_path(f->base, "scratch"));
    snprintf(obj, sizeof obj, "%s/cache/objects/%.2s/%s.tar.zst", f->base, key2, key2);
    flip_byte(obj, 0.3);
    char *report = NULL;
    assert_int_equal(farm_cache_verify(f->c, &report, NULL), 0);
    json_t *r = json_loads(report, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "checked")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "ok")), 1);
    json_t *d = json_object_get(r, "damaged");
    assert_int_equal(json_array_size(d), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "key")), key2);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(d, 0), "reason")),
                           "checksum mismatch"));
    json_decref(r);
    free(report);
    assert_false(ct_exists(obj));
    assert_int_equal(farm_cache_stats(f->c, &st, NULL), 0);
    assert_int_equal(st.entries, 1);
    /* A deleted object is reported missing. */
    snprintf(obj, sizeof obj, "%s/cache/objects/%.2s/%s.tar.zst", f->base, key, key);
    assert_int_equal(unlink(obj), 0);
    assert_int_equal(farm_cache_verify(f->c, &report, NULL), 0);
    assert_non_null(strstr(report, "object missing"));
    free(report);
    free(inputs);
    free(inputs2);
}

static void test_verify_sweeps_orphans(void **state)
{
    struct fx *f = *state;
    char pkg[1024], key[33], obj[2048], orphan[2048], old_tmp[2048], young_tmp[2048];
    snprintf(pkg, sizeof pkg, "%s/pkg", f->base);
    ct_write(ct_path(pkg, "x"), "x\n", (size_t)-1, 0644);
    char *inputs = ct_inputs("0123456789abcdef0123456789abcdef", "b", "r:deps", key);
    ct_store_dir(f->c, key, inputs, pkg, "t", ct_path(f->base, "scratch"));
    snprintf(obj, sizeof obj, "%s/cache/objects/%.2s/%s.tar.zst", f->base, key, key);
    /* An object nobody indexed, a temp file from a store that died an hour
     * and more ago, and one being written right now. */
    snprintf(orphan, sizeof orphan, "%s/cache/objects/ab/abababababababababababababababab.tar.zst",
             f->base);
    snprintf(old_tmp, sizeof old_tmp, "%s/cache/objects/ab/.abab.123.0.tmp", f->base);
    snprintf(young_tmp, sizeof young_tmp, "%s/cache/objects/ab/.abab.124.0.tmp", f->base);
    size_t n = 0;
    char *bytes = ct_read(obj, &n);
    ct_write(orphan, bytes, n, 0644);
    ct_write(old_tmp, bytes, n, 0644);
    ct_write(young_tmp, bytes, n, 0644);
    free(bytes);
    struct timespec ts[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
    assert_int_equal(utimensat(AT_FDCWD, old_tmp, ts, 0), 0);
    char *report = NULL;
    assert_int_equal(farm_cache_verify(f->c, &report, NULL), 0);
    json_t *r = json_loads(report, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "orphans_removed")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "ok")), 1);
    json_decref(r);
    free(report);
    assert_false(ct_exists(orphan));
    assert_false(ct_exists(old_tmp));
    assert_true(ct_exists(young_tmp));
    assert_true(ct_exists(obj));
    free(inputs);
}

static void test_gc_sweeps_stat_caches(void **state)
{
    struct fx *f = *state;
    char a[1024], b[1024], hex[33];
    snprintf(a, sizeof a, "%s/old-run/deps", f->base);
    snprintf(b, sizeof b, "%s/new-run/deps", f->base);
    ct_write(ct_path(a, "x"), "x", (size_t)-1, 0644);
    ct_write(ct_path(b, "y"), "y", (size_t)-1, 0644);
    assert_int_equal(farm_cache_digest_dir(f->c, a, hex, NULL, NULL, NULL), 0);
    char stat_dir[1024];
    snprintf(stat_dir, sizeof stat_dir, "%s/cache/stat", f->base);
    uint64_t n = 0;
    assert_int_equal(farm__cache_count_files(stat_dir, 100, &n), 0);
    assert_int_equal(n, 1);
    /* The first one was last used 8 days ago. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "touch -d '8 days ago' '%s'/*.sc", stat_dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(farm_cache_digest_dir(f->c, b, hex, NULL, NULL, NULL), 0);
    assert_int_equal(farm__cache_count_files(stat_dir, 100, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(farm_cache_gc(f->c, 0, NULL, NULL, NULL), 0);
    assert_int_equal(farm__cache_count_files(stat_dir, 100, &n), 0);
    assert_int_equal(n, 1);
    /* The old run's cache was the one removed: digesting it makes a new
     * one, reading its file again. */
    struct farm_digest_stats st;
    assert_int_equal(farm_cache_digest_dir(f->c, a, hex, NULL, &st, NULL), 0);
    assert_int_equal(st.files_read, 1);
    assert_int_equal(farm__cache_count_files(stat_dir, 100, &n), 0);
    assert_int_equal(n, 2);
}

static void test_lru(void **state)
{
    struct fx *f = *state;
    farm_cache_close(f->c);
    f->c = ct_open(f->base, 250 * 1024); /* room for two 100 KiB packages */
    char keys[4][33], pkg[4096];
    char *inputs[4];
    for (int i = 0; i < 4; i++) {
        char src[33];
        snprintf(src, sizeof src, "%032x", i + 1);
        inputs[i] = ct_inputs(src, "b", "r:deps", keys[i]);
    }
    snprintf(pkg, sizeof pkg, "%s/pkg", f->base);
    ct_write_random(ct_path(pkg, "blob"), 100 * 1024, 3, 0644);
    ct_store_dir(f->c, keys[0], inputs[0], pkg, "t0", ct_path(f->base, "scratch"));
    ct_store_dir(f->c, keys[1], inputs[1], pkg, "t1", ct_path(f->base, "scratch"));
    /* Use the older one: the other becomes least recently used. */
    farm_cache_release(f->c, acquire(f->c, keys[0], FARM_CACHE_HIT));
    ct_store_dir(f->c, keys[2], inputs[2], pkg, "t2", ct_path(f->base, "scratch"));
    struct farm_cache_stats st;
    assert_int_equal(farm_cache_stats(f->c, &st, NULL), 0);
    assert_int_equal(st.entries, 2);
    assert_true(st.bytes <= 250 * 1024);
    assert_int_equal(st.evictions, 1);
    farm_cache_release(f->c, acquire(f->c, keys[0], FARM_CACHE_HIT));
    farm_cache_release(f->c, acquire(f->c, keys[2], FARM_CACHE_HIT));
    farm_cache_release(f->c, acquire(f->c, keys[1], FARM_CACHE_BUILD));

    /* An entry being restored is never evicted, even by gc to zero. */
    struct farm_cache_lease *held = acquire(f->c, keys[0], FARM_CACHE_HIT);
    uint64_t ev = 0, freed = 0;
    assert_int_equal(farm_cache_gc(f->c, 1, &ev, &freed, NULL), 0);
    assert_int_equal(ev, 1);
    assert_true(freed >= 100 * 1024);
    char *ls = NULL;
    assert_int_equal(farm_cache_ls(f->c, &ls, NULL), 0);
    assert_non_null(strstr(ls, keys[0]));
    assert_null(strstr(ls, keys[2]));
    free(ls);
    farm_cache_release(f->c, held);
    /* rm: busy while held, gone after, not found twice. */
    held = acquire(f->c, keys[0], FARM_CACHE_HIT);
    struct farm_err err;
    assert_int_equal(farm_cache_rm(f->c, keys[0], &err), -EBUSY);
    farm_cache_release(f->c, held);
    assert_int_equal(farm_cache_rm(f->c, keys[0], &err), 0);
    assert_int_equal(farm_cache_rm(f->c, keys[0], &err), FARM_ENOTFOUND);
    assert_int_equal(farm_cache_rm(f->c, "nothex", &err), -EINVAL);
    assert_int_equal(farm_cache_stats(f->c, &st, NULL), 0);
    assert_int_equal(st.entries, 0);
    for (int i = 0; i < 4; i++)
        free(inputs[i]);
}

static void test_no_poisoning(void **state)
{
    struct fx *f = *state;
    char src[4096], out[4096], key[33], hex[33];
    snprintf(src, sizeof src, "%s/deps", f->base);
    snprintf(out, sizeof out, "%s/out", f->base);
    ct_write(ct_path(src, "requirements.txt"), "numpy\n", (size_t)-1, 0644);
    assert_int_equal(farm_cache_digest_dir(f->c, src, hex, NULL, NULL, NULL), 0);
    char *inputs = ct_inputs(hex, "b", "r:deps", key);
    struct farm_cache_commit ci = {.exit_status = 0, .builder = "t", .inputs_json = inputs};
    struct farm_err err;

    /* The build failed. */
    struct farm_cache_lease *l = acquire(f->c, key, FARM_CACHE_BUILD);
    assert_int_equal(farm_cache_build_commit(f->c, l, &ci, &err), FARM_ESTATE);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, out, &err), 0);
    ct_write(ct_path(out, "lib.so"), "x", (size_t)-1, 0644);
    ci.exit_status = 2;
    assert_int_equal(farm_cache_build_commit(f->c, l, &ci, &err), FARM_EBUILD);
    assert_non_null(strstr(err.msg, "status 2"));
    assert_int_equal(farm_cache_build_abort(f->c, l, &err), 0);
    assert_false(ct_exists(out));
    farm_cache_release(f->c, l);

    /* The build wrote nothing (an empty directory is not a package). */
    l = acquire(f->c, key, FARM_CACHE_BUILD);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, out, &err), 0);
    ct_mkdir(ct_path(out, "empty"));
    ci.exit_status = 0;
    assert_int_equal(farm_cache_build_commit(f->c, l, &ci, &err), FARM_EBUILD);
    assert_non_null(strstr(err.msg, "no file"));
    farm_cache_release(f->c, l);
    ct_rm(out);

    /* The build changed its own source directory. */
    l = acquire(f->c, key, FARM_CACHE_BUILD);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, out, &err), 0);
    ct_write(ct_path(out, "lib.so"), "x", (size_t)-1, 0644);
    ct_write(ct_path(src, "generated.lock"), "pinned\n", (size_t)-1, 0644);
    assert_int_equal(farm_cache_build_commit(f->c, l, &ci, &err), FARM_EBUILD);
    assert_non_null(strstr(err.msg, "changed its source"));
    /* The package the build made is still there for the task. */
    assert_true(ct_exists(ct_path(out, "lib.so")));
    farm_cache_release(f->c, l);
    ct_rm(out);
    unlink(ct_path(src, "generated.lock"));

    /* Out dir not empty at begin. */
    l = acquire(f->c, key, FARM_CACHE_BUILD);
    ct_write(ct_path(out, "stale"), "x", (size_t)-1, 0644);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, out, &err), -ENOTEMPTY);
    ct_rm(out);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, out, &err), 0);
    ct_write(ct_path(out, "lib.so"), "x", (size_t)-1, 0644);
    if (farm_cache_build_commit(f->c, l, &ci, &err) != 0)
        fail_msg("%s", err.msg);
    farm_cache_release(f->c, l);

    struct farm_cache_stats st;
    assert_int_equal(farm_cache_stats(f->c, &st, NULL), 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.misses, 4);
    free(inputs);
}

/* ---- full or unwritable store --------------------------------------- */

static int enospc_hook(size_t so_far, size_t len)
{
    return so_far + len > 64 * 1024 ? -ENOSPC : 0;
}

/* Builds a 1 MiB package for a fresh key; checks the store failure is
 * clear, the package intact, nothing indexed, no object left behind.
 * Returns 0 when all holds, or the number of the failed check. */
static int store_must_fail(const char *base, int want_rc)
{
    struct farm_cache *c = ct_open(base, 0);
    char out[4096], key[33];
    snprintf(out, sizeof out, "%s/run/deps", base);
    char *inputs = ct_inputs("ffffffffffffffffffffffffffffffff", "b", "r:deps", key);
    struct farm_cache_lease *l = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_acquire(c, key, &l, &err) != 0 ||
        farm_cache_lease_outcome(l) != FARM_CACHE_BUILD)
        return 1;
    if (farm_cache_build_begin(c, l, NULL, out, &err) != 0)
        return 2;
    ct_write_random(ct_path(out, "lib/big.so"), 1 << 20, 11, 0755);
    struct farm_cache_commit ci = {.exit_status = 0, .builder = "t", .inputs_json = inputs};
    int rc = farm_cache_build_commit(c, l, &ci, &err);
    fprintf(stderr, "store failure as expected: %s\n", err.msg);
    if (rc != want_rc)
        return 3;
    if (!strstr(err.msg, "intact") || !strstr(err.msg, key))
        return 4;
    farm_cache_release(c, l);
    size_t n = 0;
    char *data = ct_read(ct_path(out, "lib/big.so"), &n);
    free(data);
    if (n != 1 << 20)
        return 5;
    struct farm_cache_stats st;
    if (farm_cache_stats(c, &st, NULL) != 0 || st.entries != 0)
        return 6;
    char objects[4096];
    snprintf(objects, sizeof objects, "%s/cache/objects", base);
    uint64_t files = 0;
    farm__cache_count_files(objects, 100, &files);
    if (files != 0)
        return 7;
    /* The next task builds it again rather than finding a partial entry. */
    if (farm_cache_acquire(c, key, &l, &err) != 0 ||
        farm_cache_lease_outcome(l) != FARM_CACHE_BUILD)
        return 8;
    farm_cache_release(c, l);
    farm_cache_close(c);
    free(inputs);
    return 0;
}

/* In a child with a private mount namespace, mounts a tmpfs over the
 * objects directory (read-only, or tiny) and runs store_must_fail. */
static int in_namespace(const char *base, const char *opts, unsigned long flags, int want_rc)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            _exit(77);
        char objects[4096];
        snprintf(objects, sizeof objects, "%s/cache/objects", base);
        ct_mkdir(objects);
        if (mount("tmpfs", objects, "tmpfs", flags, opts) != 0)
            _exit(77);
        _exit(store_must_fail(base, want_rc));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_unwritable_store(void **state)
{
    struct fx *f = *state;
    farm_cache_close(f->c);
    f->c = NULL;
    char base[4096];

    /* Disk full, by fault injection: works everywhere. */
    snprintf(base, sizeof base, "%s/hook", f->base);
    ct_mkdir(base);
    farm__cache_set_write_hook(enospc_hook);
    int r = store_must_fail(base, -ENOSPC);
    farm__cache_set_write_hook(NULL);
    assert_int_equal(r, 0);

    /* A real full filesystem: a 256 KiB tmpfs. */
    snprintf(base, sizeof base, "%s/tiny", f->base);
    ct_mkdir(base);
    r = in_namespace(base, "size=256k", 0, -ENOSPC);
    if (r == 77) {
        print_message("no mount namespace here: tmpfs variants skipped\n");
    } else {
        assert_int_equal(r, 0);
        /* A read-only objects directory. */
        snprintf(base, sizeof base, "%s/ro", f->base);
        ct_mkdir(base);
        assert_int_equal(in_namespace(base, "size=1m", MS_RDONLY, -EROFS), 0);
    }
    if (geteuid() != 0) {
        /* Without privileges a mode bit is enough. */
        snprintf(base, sizeof base, "%s/mode", f->base);
        ct_mkdir(ct_path(base, "cache/objects"));
        assert_int_equal(chmod(ct_path(base, "cache/objects"), 0555), 0);
        assert_int_equal(store_must_fail(base, -EACCES), 0);
        chmod(ct_path(base, "cache/objects"), 0755);
    }
}

static void test_why(void **state)
{
    struct fx *f = *state;
    char src[4096], pkg[4096], k1[33], k2[33], k3[33], hex[33];
    snprintf(src, sizeof src, "%s/deps", f->base);
    snprintf(pkg, sizeof pkg, "%s/pkg", f->base);
    ct_write(ct_path(pkg, "x"), "x", (size_t)-1, 0644);
    ct_write(ct_path(src, "a.py"), "a = 1\n", (size_t)-1, 0644);
    ct_write(ct_path(src, "gone.py"), "g\n", (size_t)-1, 0644);
    char *m1 = NULL, *m2 = NULL;
    assert_int_equal(farm_digest_dir(src, NULL, hex, &m1, NULL, NULL), 0);
    char s1[FARM_CACHE_SOURCE_SIZE], s2[FARM_CACHE_SOURCE_SIZE];
    farm_cache_source_walk(hex, s1);
    struct farm_cache_env env1[] = {{"CC", "gcc"}}, env2[] = {{"CC", "clang"}};
    struct farm_cache_inputs in = {
        .source = s1, .build = "sh build.sh", .env = env1, .n_env = 1, .label = "repo:deps"};
    char *j1 = NULL, *j2 = NULL, *j3 = NULL;
    assert_int_equal(farm_cache_key(&in, k1, &j1, NULL), 0);
    struct farm_cache_lease *l = acquire(f->c, k1, FARM_CACHE_BUILD);
    assert_int_equal(farm_cache_build_begin(f->c, l, src, ct_path(f->base, "o1"), NULL), 0);
    ct_write(ct_path(f->base, "o1/lib"), "1", (size_t)-1, 0644);
    struct farm_cache_commit ci = {
        .builder = "task-1", .build_ms = 10, .inputs_json = j1, .manifest_json = m1};
    assert_int_equal(farm_cache_build_commit(f->c, l, &ci, NULL), 0);
    farm_cache_release(f->c, l);

    /* Second version: one file edited, one removed, one added; and CC. */
    ct_write(ct_path(src, "a.py"), "a = 2\n", (size_t)-1, 0644);
    unlink(ct_path(src, "gone.py"));
    ct_write(ct_path(src, "new.py"), "n\n", (size_t)-1, 0644);
    assert_int_equal(farm_digest_dir(src, NULL, hex, &m2, NULL, NULL), 0);
    farm_cache_source_walk(hex, s2);
    in.source = s2;
    in.env = env2;
    assert_int_equal(farm_cache_key(&in, k2, &j2, NULL), 0);
    usleep(5000);
    ct_store_dir(f->c, k2, j2, pkg, "task-2", ct_path(f->base, "scratch"));

    char *rep = NULL;
    struct farm_err err;
    /* k2 is stored without a manifest: pass the task's own. */
    if (farm_cache_why(f->c, k2, NULL, m2, &rep, &err) != 0)
        fail_msg("%s", err.msg);
    json_t *r = json_loads(rep, 0, NULL);
    assert_true(json_is_true(json_object_get(r, "stored")));
    assert_string_equal(json_string_value(json_object_get(r, "builder")), "task-2");
    json_t *n = json_object_get(r, "nearest");
    assert_string_equal(json_string_value(json_object_get(n, "key")), k1);
    assert_string_equal(json_string_value(json_object_get(n, "builder")), "task-1");
    json_t *d = json_object_get(n, "differs");
    assert_int_equal(json_array_size(d), 2);
    json_t *d0 = json_array_get(d, 0), *d1 = json_array_get(d, 1);
    assert_string_equal(json_string_value(json_object_get(d0, "input")), "source");
    json_t *files = json_object_get(d0, "files");
    assert_string_equal(json_string_value(json_array_get(json_object_get(files, "changed"), 0)),
                        "a.py");
    assert_string_equal(json_string_value(json_array_get(json_object_get(files, "added"), 0)),
                        "new.py");
    assert_string_equal(json_string_value(json_array_get(json_object_get(files, "removed"), 0)),
                        "gone.py");
    assert_string_equal(json_string_value(json_object_get(d1, "input")), "env.CC");
    assert_string_equal(json_string_value(json_object_get(d1, "was")), "gcc");
    assert_string_equal(json_string_value(json_object_get(d1, "now")), "clang");
    json_decref(r);
    free(rep);

    /* A key never stored, explained from its inputs: nearest is the latest. */
    in.build = "sh build.sh --fast";
    assert_int_equal(farm_cache_key(&in, k3, &j3, NULL), 0);
    assert_int_equal(farm_cache_why(f->c, k3, j3, m2, &rep, &err), 0);
    r = json_loads(rep, 0, NULL);
    assert_true(json_is_false(json_object_get(r, "stored")));
    n = json_object_get(r, "nearest");
    assert_string_equal(json_string_value(json_object_get(n, "key")), k2);
    d = json_object_get(n, "differs");
    assert_int_equal(json_array_size(d), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "input")),
                        "build");
    json_decref(r);
    free(rep);
    assert_int_equal(farm_cache_why(f->c, k3, NULL, NULL, &rep, &err), FARM_ENOTFOUND);
    free(j1);
    free(j2);
    free(j3);
    free(m1);
    free(m2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_sweeps_orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_sweeps_stat_caches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_poisoning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_why, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
