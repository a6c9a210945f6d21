/* Source digest, stat cache, git tree OID and key derivation. */
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
#include <jansson.h>

#include "fixtures/cache/cache_test.h"

struct fx {
    char *base;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->base = ct_tempdir();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ct_rm(f->base);
    free(f->base);
    free(f);
    return 0;
}

static void digest(const char *dir, const char *sc, char hex[33], struct farm_digest_stats *st)
{
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_digest_dir(dir, sc, hex, NULL, st, &err) != 0)
        fail_msg("digest %s: %s", dir, err.msg);
}

static void make_tree(const char *root_in, int reverse)
{
    char root[4096];
    snprintf(root, sizeof root, "%s", root_in);
    /* The same content written in opposite orders, so directory entries
     * land in different readdir orders and get different inode numbers. */
    const char *files[] = {"a.txt", "b/c.py", "b/d/e.bin", "z", "b/aa", "m/n/o/p"};
    size_t n = sizeof files / sizeof *files;
    for (size_t k = 0; k < n; k++) {
        size_t i = reverse ? n - 1 - k : k;
        char body[64];
        snprintf(body, sizeof body, "content of %s\n", files[i]);
        ct_write(ct_path(root, files[i]), body, (size_t)-1, 0644);
    }
    ct_mkdir(ct_path(root, "empty"));
    ct_symlink("../a.txt", ct_path(root, "b/link"));
}

static void test_order_independent(void **state)
{
    struct fx *f = *state;
    char a[33], b[33];
    char one[4096], two[4096];
    snprintf(one, sizeof one, "%s/one", f->base);
    snprintf(two, sizeof two, "%s/two", f->base);
    make_tree(one, 0);
    sleep(1); /* different mtimes too */
    make_tree(two, 1);
    digest(one, NULL, a, NULL);
    digest(two, NULL, b, NULL);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 32);
}

static void test_changes_change_it(void **state)
{
    struct fx *f = *state;
    char root[4096];
    snprintf(root, sizeof root, "%s/%s", f->base, "t");
    char base[33], h[33];
    make_tree(root, 0);
    digest(root, NULL, base, NULL);

    /* Content edit, same size. */
    ct_write(ct_path(root, "a.txt"), "content of a.tx!\n", (size_t)-1, 0644);
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
    ct_write(ct_path(root, "a.txt"), "content of a.txt\n", (size_t)-1, 0644);
    digest(root, NULL, h, NULL);
    assert_string_equal(h, base);

    /* Rename: hashFiles-style digests that ignore names miss this. */
    assert_int_equal(rename(ct_path(root, "z"), ct_path(root, "y")), 0);
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
    assert_int_equal(rename(ct_path(root, "y"), ct_path(root, "z")), 0);
    digest(root, NULL, h, NULL);
    assert_string_equal(h, base);

    /* chmod +x changes it; other permission bits and timestamps do not. */
    assert_int_equal(chmod(ct_path(root, "b/c.py"), 0755), 0);
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
    assert_int_equal(chmod(ct_path(root, "b/c.py"), 0600), 0);
    struct timespec ts[2] = {{.tv_sec = 1000000}, {.tv_sec = 1000000}};
    assert_int_equal(utimensat(AT_FDCWD, ct_path(root, "b/c.py"), ts, 0), 0);
    digest(root, NULL, h, NULL);
    assert_string_equal(h, base);

    /* Symlink retarget. */
    ct_symlink("../z", ct_path(root, "b/link"));
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
    ct_symlink("../a.txt", ct_path(root, "b/link"));
    digest(root, NULL, h, NULL);
    assert_string_equal(h, base);

    /* A new empty directory and a file moved across directories. */
    ct_mkdir(ct_path(root, "empty2"));
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
    assert_int_equal(rmdir(ct_path(root, "empty2")), 0);
    assert_int_equal(rename(ct_path(root, "b/aa"), ct_path(root, "b/d/aa")), 0);
    digest(root, NULL, h, NULL);
    assert_string_not_equal(h, base);
}

static void test_manifest_matches_xxh128sum(void **state)
{
    struct fx *f = *state;
    char root[4096];
    snprintf(root, sizeof root, "%s/%s", f->base, "m");
    make_tree(root, 0);
    assert_int_equal(chmod(ct_path(root, "b/c.py"), 0755), 0);
    char hex[33];
    char *man = NULL;
    assert_int_equal(farm_digest_dir(root, NULL, hex, &man, NULL, NULL), 0);
    json_t *j = json_loads(man, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "empty")), "dir");
    assert_string_equal(json_string_value(json_object_get(j, "b/link")), "link:../a.txt");
    const char *cpy = json_string_value(json_object_get(j, "b/c.py"));
    assert_non_null(cpy);
    assert_memory_equal(cpy, "exec:", 5);
    /* The per-file hash is XXH3-128 of the content, as xxh128sum prints. */
    if (access("/usr/bin/xxh128sum", X_OK) == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "/usr/bin/xxh128sum '%s' > '%s'", ct_path(root, "b/c.py"),
                 ct_path(f->base, "sum.txt"));
        assert_int_equal(system(cmd), 0);
        char *out = ct_read(ct_path(f->base, "sum.txt"), NULL);
        assert_non_null(out);
        assert_memory_equal(out, cpy + 5, 32);
        free(out);
    }
    const char *a = json_string_value(json_object_get(j, "a.txt"));
    assert_memory_equal(a, "file:", 5);
    assert_int_equal(json_object_size(j), 13); /* 6 files, 1 link, 6 dirs */
    json_decref(j);
    free(man);
}

static void test_stat_cache(void **state)
{
    struct fx *f = *state;
    char root[4096];
    snprintf(root, sizeof root, "%s/%s", f->base, "s");
    char sc[4096];
    snprintf(sc, sizeof sc, "%s", ct_path(f->base, "stat.sc"));
    for (int i = 0; i < 50; i++) {
        char rel[64], body[64];
        snprintf(rel, sizeof rel, "d%d/f%02d.py", i % 5, i);
        snprintf(body, sizeof body, "print(%d)\n", i);
        ct_write(ct_path(root, rel), body, (size_t)-1, 0644);
    }
    char ref[33], h[33];
    struct farm_digest_stats st;
    digest(root, NULL, ref, &st);
    assert_int_equal(st.files, 50);
    assert_int_equal(st.files_read, 50);

    /* Files written less than a timestamp tick before their content was
     * read are racy: the next walk must read them again. */
    digest(root, sc, h, &st);
    assert_string_equal(h, ref);
    assert_int_equal(st.files_read, 50);
    digest(root, sc, h, &st);
    assert_string_equal(h, ref);
    assert_int_equal(st.files_read, 50);

    usleep(1100 * 1000);
    digest(root, sc, h, &st); /* reads them once more, now long after */
    assert_int_equal(st.files_read, 50);
    digest(root, sc, h, &st);
    assert_string_equal(h, ref);
    assert_int_equal(st.files, 50);
    assert_int_equal(st.files_read, 0);
    assert_int_equal(st.bytes_read, 0);

    /* One edit, same size, mtime put back: ctime still moves, so exactly
     * that file is read and the digest changes. */
    struct stat before;
    assert_int_equal(stat(ct_path(root, "d3/f13.py"), &before), 0);
    ct_write(ct_path(root, "d3/f13.py"), "print(99)\n", (size_t)-1, 0644);
    struct timespec ts[2] = {before.st_atim, before.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, ct_path(root, "d3/f13.py"), ts, 0), 0);
    digest(root, sc, h, &st);
    assert_string_not_equal(h, ref);
    assert_int_equal(st.files_read, 1);
    char ref2[33];
    digest(root, NULL, ref2, NULL);
    assert_string_equal(h, ref2);

    /* A damaged stat cache is ignored, not trusted. */
    ct_write(ct_path(root, "d3/f13.py"), "print(13)\n", (size_t)-1, 0644);
    usleep(1100 * 1000);
    digest(root, sc, h, &st);
    assert_string_equal(h, ref);
    int fd = open(sc, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, 40), 4);
    close(fd);
    digest(root, sc, h, &st);
    assert_string_equal(h, ref);
    assert_int_equal(st.files_read, 50);
    digest(root, sc, h, &st);
    assert_int_equal(st.files_read, 0);
}

static void test_refuses_special_files(void **state)
{
    struct fx *f = *state;
    char root[4096];
    snprintf(root, sizeof root, "%s/%s", f->base, "sp");
    ct_write(ct_path(root, "ok"), "x", (size_t)-1, 0644);
    assert_int_equal(mkfifo(ct_path(root, "pipe"), 0644), 0);
    char hex[33];
    struct farm_err err;
    farm_err_clear(&err);
    assert_int_equal(farm_digest_dir(root, NULL, hex, NULL, NULL, &err), FARM_EBADDATA);
    assert_non_null(strstr(err.msg, "pipe"));
    farm_err_clear(&err);
    assert_int_equal(farm_digest_dir(ct_path(f->base, "missing"), NULL, hex, NULL, NULL, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "missing"));
}

static void test_git_tree(void **state)
{
    struct fx *f = *state;
    if (access("/usr/bin/git", X_OK) != 0)
        skip();
    char repo[4096];
    snprintf(repo, sizeof repo, "%s/%s", f->base, "repo");
    ct_write(ct_path(repo, "deps/requirements.txt"), "numpy\n", (size_t)-1, 0644);
    ct_write(ct_path(repo, "deps/build.sh"), "echo hi\n", (size_t)-1, 0755);
    ct_write(ct_path(repo, "README"), "r\n", (size_t)-1, 0644);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && git init -q . && git add . && git -c user.name=t -c user.email=t@t "
             "commit -qm one && git rev-parse HEAD:deps > '%s'",
             repo, ct_path(f->base, "oid.txt"));
    assert_int_equal(system(cmd), 0);
    char *want = ct_read(ct_path(f->base, "oid.txt"), NULL);
    assert_non_null(want);
    want[40] = '\0';
    char hex[FARM_CACHE_SOURCE_SIZE];
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_digest_git_tree(repo, "HEAD", "deps", hex, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(hex, want);
    char src[FARM_CACHE_SOURCE_SIZE];
    assert_int_equal(farm_cache_source_git(hex, src), 0);
    assert_memory_equal(src, "git:", 4);
    assert_int_equal(farm_digest_git_tree(repo, "HEAD", "nope", hex, &err), FARM_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope"));
    assert_int_equal(farm_digest_git_tree(repo, "HEAD", "README", hex, &err), FARM_ENOTFOUND);
    assert_int_equal(farm_digest_git_tree(repo, "no-such-rev", "deps", hex, &err), FARM_EGIT);
    assert_int_equal(farm_digest_git_tree(ct_path(f->base, "none"), "HEAD", "deps", hex, &err),
                     FARM_EGIT);
    free(want);
}

static void key_of(const char *src, const char *build, const struct farm_cache_env *env, size_t n,
                   const char *platform, char key[33])
{
    struct farm_cache_inputs in = {
        .source = src, .build = build, .env = env, .n_env = n, .platform = platform};
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_key(&in, key, NULL, &err) != 0)
        fail_msg("%s", err.msg);
}

static void test_key(void **state)
{
    (void)state;
    const char *src = "walk:00112233445566778899aabbccddeeff";
    struct farm_cache_env e1[] = {{"CC", "gcc"}, {"CFLAGS", "-O2"}};
    struct farm_cache_env e2[] = {{"CFLAGS", "-O2"}, {"CC", "gcc"}};
    struct farm_cache_env e3[] = {{"CFLAGS", "-O2"}, {"CC", "clang"}};
    struct farm_cache_env e4[] = {{"CFLAGS", "-O2"}, {"CC", NULL}};
    struct farm_cache_env e5[] = {{"CFLAGS", "-O2"}, {"CC", ""}};
    char k1[33], k2[33], k[33];
    key_of(src, "sh build.sh", e1, 2, NULL, k1);
    key_of(src, "sh build.sh", e2, 2, NULL, k2);
    assert_string_equal(k1, k2);
    key_of(src, "sh build.sh", e3, 2, NULL, k);
    assert_string_not_equal(k, k1);
    key_of(src, "sh build.sh", e4, 2, NULL, k);
    key_of(src, "sh build.sh", e5, 2, NULL, k2);
    assert_string_not_equal(k, k2); /* unset differs from empty */
    key_of(src, "sh build.sh ", e1, 2, NULL, k);
    assert_string_not_equal(k, k1);
    key_of(src, "sh build.sh", e1, 2, "Linux aarch64 glibc-2.36", k);
    assert_string_not_equal(k, k1);
    key_of("walk:00112233445566778899aabbccddeef0", "sh build.sh", e1, 2, NULL, k);
    assert_string_not_equal(k, k1);
    key_of(src, "sh build.sh", e1, 1, NULL, k);
    assert_string_not_equal(k, k1);
    /* Field boundaries are length-prefixed: moving text between fields
     * gives another key. */
    struct farm_cache_env s1[] = {{"A", "BC"}}, s2[] = {{"AB", "C"}};
    key_of(src, "x", s1, 1, NULL, k);
    key_of(src, "x", s2, 1, NULL, k2);
    assert_string_not_equal(k, k2);

    const char *plat = farm_cache_platform();
    assert_non_null(strstr(plat, "Linux"));
    assert_non_null(strstr(plat, "glibc-"));

    struct farm_cache_env dup[] = {{"CC", "a"}, {"CC", "b"}};
    struct farm_cache_inputs in = {.source = src, .build = "b", .env = dup, .n_env = 2};
    struct farm_err err;
    assert_int_equal(farm_cache_key(&in, k, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "CC"));
    in.source = "md5:abc";
    in.n_env = 0;
    assert_int_equal(farm_cache_key(&in, k, NULL, &err), -EINVAL);
    in.source = src;
    char *json = NULL;
    in.env = e4;
    in.n_env = 2;
    in.label = "repo:deps";
    assert_int_equal(farm_cache_key(&in, k, &json, &err), 0);
    json_t *j = json_loads(json, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "source")), src);
    assert_string_equal(json_string_value(json_object_get(j, "build")), "b");
    assert_string_equal(json_string_value(json_object_get(j, "label")), "repo:deps");
    assert_string_equal(json_string_value(json_object_get(j, "format")), FARM_CACHE_FORMAT_TAG);
    assert_true(json_is_null(json_object_get(json_object_get(j, "env"), "CC")));
    json_decref(j);
    free(json);
    char out[FARM_CACHE_SOURCE_SIZE];
    assert_int_equal(farm_cache_source_walk("xyz", out), -EINVAL);
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t b = 0;
    struct farm_err err;
    assert_int_equal(farm_cache_parse_size("10G", &b, &err), 0);
    assert_int_equal(b, 10ULL << 30);
    assert_int_equal(farm_cache_parse_size("512MiB", &b, &err), 0);
    assert_int_equal(b, 512ULL << 20);
    assert_int_equal(farm_cache_parse_size("1500", &b, &err), 0);
    assert_int_equal(b, 1500);
    assert_int_equal(farm_cache_parse_size("2k", &b, &err), 0);
    assert_int_equal(b, 2048);
    assert_int_equal(farm_cache_parse_size("ten", &b, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "\"ten\""));
    assert_int_equal(farm_cache_parse_size("10X", &b, &err), -EINVAL);
    assert_int_equal(farm_cache_parse_size("", &b, &err), -EINVAL);
    assert_int_equal(farm_cache_parse_size("99999999999999999999", &b, &err), -EINVAL);
    assert_int_equal(farm_cache_parse_size("20000000T", &b, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_change_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_matches_xxh128sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stat_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_git_tree, setup, teardown),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_parse_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
