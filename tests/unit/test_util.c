/* core helpers: RFC 3339 formatting against gmtime_r, mkdir -p, copytree. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_mkdirs_copytree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
