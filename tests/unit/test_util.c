/* core helpers: RFC 3339 formatting against gmtime_r, mkdir -p, copytree,
 * emptying a directory. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "farm/util.h"

static void test_rfc3339(void **state)
{
    uint64_t x = 88172645463325252ull;
    (void)state;
    for (int i = 0; i < 200000; i++) {
        char got[64], want[64];
        struct tm tm;
        time_t s;
        int64_t ms;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* 1970 .. 2400, milliseconds */
        ms = (int64_t)(x % 13569465600000ull);
        s = (time_t)(ms / 1000);
        gmtime_r(&s, &tm);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        farm_rfc3339(ms, got, sizeof got);
        if (strcmp(got, want) != 0)
            fail_msg("%lld: got %s, want %s", (long long)ms, got, want);
    }
}

static void test_mkdirs_copytree(void **state)
{
    char base[] = "/tmp/farm-util.XXXXXX", p[256], q[256], link[64];
    struct stat st;
    struct farm_err err;
    (void)state;
    assert_non_null(mkdtemp(base));
    snprintf(p, sizeof p, "%s/a/b/c", base);
    assert_int_equal(farm_mkdirs(p, 0755), 0);
    assert_int_equal(farm_mkdirs(p, 0755), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(q, sizeof q, "%s/a/b/c/x.sh", base);
    assert_int_equal(farm_write_file(q, "echo\n", 5, 0), 0);
    assert_int_equal(chmod(q, 0755), 0);
    snprintf(q, sizeof q, "%s/a/b/link", base);
    assert_int_equal(symlink("c/x.sh", q), 0);
    snprintf(p, sizeof p, "%s/a", base);
    snprintf(q, sizeof q, "%s/copy", base);
    farm_err_clear(&err);
    assert_int_equal(farm_copytree(p, q, 0, &err), 0);
    snprintf(q, sizeof q, "%s/copy/b/c/x.sh", base);
    assert_int_equal(stat(q, &st), 0);
    assert_true(st.st_mode & S_IXUSR);
    snprintf(q, sizeof q, "%s/copy/b/link", base);
    assert_int_equal(readlink(q, link, sizeof link - 1), 6);
    assert_int_equal(farm_rmtree(base), 0);
    assert_int_equal(stat(base, &st), -1);
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void test_empty_dir(void **state)
{
    char base[] = "/tmp/farm-util.XXXXXX", s[256], p[320], keep[320];
    struct stat st;
    int fd;
    (void)state;
    assert_non_null(mkdtemp(base));
    snprintf(s, sizeof s, "%s/scratch", base);
    snprintf(keep, sizeof keep, "%s/outside", base);
    assert_int_equal(farm_write_file(keep, "keep\n", 5, 0), 0);
    snprintf(p, sizeof p, "%s/d/e/f", s);
    assert_int_equal(farm_mkdirs(p, 0755), 0);
    snprintf(p, sizeof p, "%s/d/e/f/file", s);
    assert_int_equal(farm_write_file(p, "x", 1, 0), 0);
    /* a directory without write or search permission, a link out, a link to
     * a directory out: all go, what they point to stays */
    snprintf(p, sizeof p, "%s/d/e", s);
    assert_int_equal(chmod(p, 0500), 0);
    snprintf(p, sizeof p, "%s/link", s);
    assert_int_equal(symlink(keep, p), 0);
    snprintf(p, sizeof p, "%s/dirlink", s);
    assert_int_equal(symlink(base, p), 0);
    snprintf(p, sizeof p, "%s/.hidden", s);
    assert_int_equal(farm_write_file(p, "h", 1, 0), 0);
    fd = open(s, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(farm_empty_dir(fd), 0);
    assert_int_equal(entries(s), 0);
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(entries(base), 2); /* scratch and outside */
    /* the descriptor still names the directory, and an empty one empties */
    assert_int_equal(farm_empty_dir(fd), 0);
    close(fd);
    assert_int_equal(farm_empty_dir(-1), -EBADF);
    assert_int_equal(farm_rmtree(base), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_mkdirs_copytree),
        cmocka_unit_test(test_empty_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
