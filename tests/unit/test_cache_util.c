#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache-internal.h"
#include "fixtures/cache/cache_test.h"

char *ct_tempdir(void)
{
    const char *t = getenv("TMPDIR");
    char *p = farm__cache_asprintf("%s/farm-cache-test-XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(p);
    assert_non_null(mkdtemp(p));
    return p;
}

const char *ct_path(const char *base, const char *rel)
{
    static char bufs[8][4096];
    static int i;
    char *b = bufs[i++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", base, rel);
    return b;
}

static void mkparents(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *s = strrchr(tmp, '/');
    if (s && s != tmp) {
        *s = '\0';
        assert_int_equal(farm__cache_mkdirs(tmp, 0755), 0);
    }
}

void ct_write(const char *path, const char *data, size_t len, mode_t mode)
{
    mkparents(path);
    if (len == (size_t)-1)
        len = strlen(data);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

void ct_write_random(const char *path, size_t n, uint32_t seed, mode_t mode)
{
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (char)(x >> 24);
    }
    ct_write(path, b, n, mode);
    free(b);
}

void ct_mkdir(const char *path)
{
    assert_int_equal(farm__cache_mkdirs(path, 0755), 0);
}

void ct_symlink(const char *target, const char *path)
{
    mkparents(path);
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
}

char *ct_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    size_t k;
    while ((k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap)
            b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

void ct_rm(const char *path)
{
    farm__cache_rm_rf(path);
}

int ct_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

struct farm_cache *ct_open(const char *base, uint64_t max_bytes)
{
    struct farm_cache_config cfg = {
        .cache_dir = ct_path(base, "cache"),
        .db_path = ct_path(base, "farm.db"),
        .max_bytes = max_bytes,
        .threads = 1,
    };
    struct farm_cache *c = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    int rc = farm_cache_open(&c, &cfg, &err);
    if (rc != 0)
        fail_msg("farm_cache_open: %s", err.msg);
    return c;
}

char *ct_inputs(const char *source_hex, const char *build, const char *label, char key[33])
{
    char src[FARM_CACHE_SOURCE_SIZE];
    assert_int_equal(farm_cache_source_walk(source_hex, src), 0);
    struct farm_cache_inputs in = {.source = src, .build = build, .label = label};
    char *json = NULL;
    assert_int_equal(farm_cache_key(&in, key, &json, NULL), 0);
    return json;
}

void ct_store_dir(struct farm_cache *c, const char *key, const char *inputs, const char *src,
                  const char *builder, const char *scratch)
{
    struct farm_cache_lease *l = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    assert_int_equal(farm_cache_acquire(c, key, &l, &err), 0);
    assert_int_equal(farm_cache_lease_outcome(l), FARM_CACHE_BUILD);
    ct_rm(scratch);
    if (farm_cache_build_begin(c, l, NULL, scratch, &err) != 0)
        fail_msg("begin: %s", err.msg);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -a '%s'/. '%s'/", src, scratch);
    assert_int_equal(system(cmd), 0);
    struct farm_cache_commit ci = {.exit_status = 0, .build_ms = 1500, .builder = builder,
                                   .inputs_json = inputs};
    if (farm_cache_build_commit(c, l, &ci, &err) != 0)
        fail_msg("commit: %s", err.msg);
    farm_cache_release(c, l);
    ct_rm(scratch);
}
