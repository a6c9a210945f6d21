/* Malicious and foreign archives planted in the store. Each malicious one
 * is crafted here with libarchive, stored with a valid checksum (so only
 * the content checks can stop it), and must be refused with nothing
 * written outside the destination. */
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

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "cache-internal.h"
#include "fixtures/cache/cache_test.h"

struct fx {
    char *base;
    struct farm_cache *c;
    char outside[1024]; /* a directory no restore may touch */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->base = ct_tempdir();
    f->c = ct_open(f->base, 0);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->base);
    ct_mkdir(f->outside);
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

/* One entry of a crafted archive. type 'f' file, 'd' dir, 'l' symlink,
 * 'h' hard link (target in `link`). */
struct ent {
    char type;
    const char *path;
    const char *link;
    const char *data;
};

static void craft(const char *path, const struct ent *e, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_zstd(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].path);
        archive_entry_set_perm(ae, 0644);
        switch (e[i].type) {
        case 'f':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_size(ae, (la_int64_t)strlen(e[i].data));
            break;
        case 'd':
            archive_entry_set_filetype(ae, AE_IFDIR);
            archive_entry_set_perm(ae, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_symlink(ae, e[i].link);
            break;
        case 'h':
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_hardlink(ae, e[i].link);
            break;
        case 'c':
            archive_entry_set_filetype(ae, AE_IFIFO);
            break;
        }
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (e[i].type == 'f')
            archive_write_data(a, e[i].data, strlen(e[i].data));
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static uint64_t files_below(const char *dir)
{
    uint64_t n = 0;
    assert_int_equal(farm__cache_count_files(dir, 1000, &n), 0);
    return n;
}

/* Plants the archive under a fresh key and restores it in `mode`.
 * Returns the restore's result; on refusal checks the aftermath. */
static int plant_and_restore(struct fx *f, const char *name, const struct ent *e, size_t n,
                             enum farm_cache_restore_mode mode, char *msg, size_t msglen)
{
    char arch[2048], dest[2048], key[33];
    snprintf(arch, sizeof arch, "%s/%s.tar.zst", f->base, name);
    snprintf(dest, sizeof dest, "%s/run-%s-%d/deps", f->base, name, (int)mode);
    craft(arch, e, n);
    char hex[33];
    farm__cache_hex128(XXH3_128bits(name, strlen(name)), hex);
    char *inputs = ct_inputs(hex, "b", "r:deps", key);
    struct farm_cache_commit ci = {.builder = "planted", .inputs_json = inputs};
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_put_archive(f->c, key, arch, &ci, &err) != 0)
        fail_msg("put: %s", err.msg);
    struct farm_cache_lease *l = NULL;
    assert_int_equal(farm_cache_acquire(f->c, key, &l, &err), 0);
    assert_int_equal(farm_cache_lease_outcome(l), FARM_CACHE_HIT);
    int rc = farm_cache_restore(f->c, l, dest, mode, NULL, &err);
    snprintf(msg, msglen, "%s", err.msg);
    farm_cache_release(f->c, l);
    if (rc != 0) {
        /* Nothing handed out, nothing outside, entry dropped. */
        assert_int_equal(files_below(dest), 0);
        assert_int_equal(files_below(f->outside), 0);
        char tree[2048];
        snprintf(tree, sizeof tree, "%s/cache/trees/%s", f->base, key);
        assert_false(ct_exists(tree));
        assert_int_equal(farm_cache_acquire(f->c, key, &l, &err), 0);
        assert_int_equal(farm_cache_lease_outcome(l), FARM_CACHE_BUILD);
        farm_cache_release(f->c, l);
    }
    free(inputs);
    return rc;
}

static void refused(struct fx *f, const char *name, const struct ent *e, size_t n)
{
    char msg[1024];
    for (int mode = 0; mode < 2; mode++) {
        int rc = plant_and_restore(f, name, e, n, (enum farm_cache_restore_mode)mode, msg,
                                   sizeof msg);
        if (rc != FARM_EBADARCHIVE)
            fail_msg("%s (mode %d): expected FARM_EBADARCHIVE, got %s: %s", name, mode,
                     farm_err_name(rc), msg);
        print_message("refused %s: %s\n", name, msg);
    }
}

static void test_absolute_path(void **state)
{
    struct fx *f = *state;
    char abs[2048];
    snprintf(abs, sizeof abs, "%s/abs.txt", f->outside);
    const struct ent e[] = {{'f', "ok.txt", NULL, "fine"}, {'f', abs, NULL, "pwned"}};
    refused(f, "absolute", e, 2);
    assert_false(ct_exists(abs));
}

static void test_dotdot(void **state)
{
    struct fx *f = *state;
    const struct ent e[] = {{'f', "ok.txt", NULL, "fine"},
                            {'f', "../../outside/dotdot.txt", NULL, "pwned"}};
    refused(f, "dotdot", e, 2);
    const struct ent e2[] = {{'d', "a", NULL, NULL},
                             {'f', "a/../../../outside/nested.txt", NULL, "pwned"}};
    refused(f, "nested-dotdot", e2, 2);
}

static void test_symlink_then_file(void **state)
{
    struct fx *f = *state;
    const struct ent e[] = {{'l', "evil", f->outside, NULL},
                            {'f', "evil/through.txt", NULL, "pwned"}};
    refused(f, "symlink-abs", e, 2);
    /* The same with a relative symlink and a deeper path. */
    const struct ent e2[] = {{'d', "lib", NULL, NULL},
                             {'l', "lib/up", "../../../outside", NULL},
                             {'d', "lib/up/sub", NULL, NULL},
                             {'f', "lib/up/sub/through.txt", NULL, "pwned"}};
    refused(f, "symlink-rel", e2, 4);
    /* A directory entry over a symlink to outside: libarchive would stat()
     * through it and chmod the target. */
    struct stat before, after;
    assert_int_equal(stat(f->outside, &before), 0);
    const struct ent e3[] = {{'l', "evil", f->outside, NULL}, {'d', "evil", NULL, NULL}};
    refused(f, "dir-over-symlink", e3, 2);
    assert_int_equal(stat(f->outside, &after), 0);
    assert_int_equal(before.st_mode, after.st_mode);
    /* A file entry repeated (would replace the first). */
    const struct ent e4[] = {{'f', "a", NULL, "one"}, {'f', "a", NULL, "two"}};
    refused(f, "duplicate", e4, 2);
}

static void test_hardlink_and_special(void **state)
{
    struct fx *f = *state;
    char target[2048];
    snprintf(target, sizeof target, "%s/victim", f->outside);
    const struct ent e[] = {{'h', "hl", target, NULL}};
    refused(f, "hardlink", e, 1);
    const struct ent e2[] = {{'c', "fifo", NULL, NULL}};
    refused(f, "fifo", e2, 1);
}

static void test_symlink_alone_is_fine(void **state)
{
    /* A symlink pointing outside is data, not an attack, as long as
     * nothing is written through it. */
    struct fx *f = *state;
    const struct ent e[] = {{'l', "python", "/usr/bin/python3", NULL},
                            {'f', "ok.txt", NULL, "fine"}};
    char msg[1024];
    assert_int_equal(plant_and_restore(f, "plain-link", e, 2, FARM_CACHE_RESTORE_COPY, msg,
                                       sizeof msg),
                     0);
}

static void test_gnu_tar_archive(void **state)
{
    /* An archive made by GNU tar (./ prefixes, its own header layout)
     * restores exactly. */
    struct fx *f = *state;
    char src[1024], arch[1024], dest[1024], cmd[4096], key[33], a[33], b[33];
    snprintf(src, sizeof src, "%s/src", f->base);
    snprintf(arch, sizeof arch, "%s/gnu.tar.zst", f->base);
    snprintf(dest, sizeof dest, "%s/dest", f->base);
    ct_write(ct_path(src, "bin/run"), "#!/bin/sh\n", (size_t)-1, 0755);
    ct_write(ct_path(src, "data/x.txt"), "x\n", (size_t)-1, 0644);
    ct_symlink("bin/run", ct_path(src, "run"));
    snprintf(cmd, sizeof cmd, "tar -C '%s' -I 'zstd -3' -cf '%s' .", src, arch);
    assert_int_equal(system(cmd), 0);
    char *inputs = ct_inputs("abababababababababababababababab", "b", "r:deps", key);
    struct farm_cache_commit ci = {.builder = "gnu", .inputs_json = inputs};
    struct farm_err err;
    assert_int_equal(farm_cache_put_archive(f->c, key, arch, &ci, &err), 0);
    struct farm_cache_lease *l = NULL;
    assert_int_equal(farm_cache_acquire(f->c, key, &l, &err), 0);
    if (farm_cache_restore(f->c, l, dest, FARM_CACHE_RESTORE_COPY, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    farm_cache_release(f->c, l);
    assert_int_equal(farm_digest_dir(src, NULL, a, NULL, NULL, NULL), 0);
    assert_int_equal(farm_digest_dir(dest, NULL, b, NULL, NULL, NULL), 0);
    assert_string_equal(a, b);
    free(inputs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_absolute_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotdot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_then_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hardlink_and_special, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_alone_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gnu_tar_archive, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
