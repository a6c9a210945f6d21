/* exec.so through the plugin ABI, as a plugin process would run it (queued
 * exec tasks have their command started by farm-worker itself, with the same
 * exec_cmd.c; this covers the plugin's own run): exit codes, a command
 * killed by a signal, a command that cannot start, bad parameters, and
 * argv passed without a shell. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures/fakehost/fakehost.h"

static void test_descriptor(void **state)
{
    (void)state;
    fh_assert_descriptor("exec");
    assert_non_null(fh_param("run"));
    assert_non_null(fh_param("argv"));
}

static void read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

static void test_exit_codes(void **state)
{
    (void)state;
    char params[FH_PATH * 3], out[FH_PATH + 16], got[256];
    struct fh_ctx *c = fh_ctx_new("ok", "{\"run\": \"exit 0\"}", 0);
    assert_int_equal(fh_run(c), 0);
    assert_true(c->exit_code_set);
    assert_int_equal(c->exit_code, 0);
    fh_ctx_free(c);

    c = fh_ctx_new("three", "{\"run\": \"exit 3\"}", 0);
    assert_int_equal(fh_run(c), 0);
    assert_int_equal(c->exit_code, 3);
    assert_int_equal(c->log_count[FARM_LOG_ERROR], 0);
    fh_ctx_free(c);

    /* killed by a signal: 128 + the signal, and the log says so */
    c = fh_ctx_new("kill", "{\"argv\": [\"sh\", \"-c\", \"kill -KILL $$\"]}", 0);
    assert_int_equal(fh_run(c), 0);
    assert_int_equal(c->exit_code, 128 + 9);
    assert_non_null(strstr(c->log, "command killed by signal 9"));
    fh_ctx_free(c);

    /* argv goes to the command as it is, with no shell in between */
    snprintf(out, sizeof out, "%s/argv.txt", fh_root);
    snprintf(params, sizeof params,
             "{\"argv\": [\"sh\", \"-c\", \"printf '%%s|' \\\"$@\\\" >%s\", \"sh\", \"a b\", "
             "\"$HOME\", \"it's\"]}",
             out);
    c = fh_ctx_new("argv", params, 0);
    assert_int_equal(fh_run(c), 0);
    assert_int_equal(c->exit_code, 0);
    read_file(out, got, sizeof got);
    assert_string_equal(got, "a b|$HOME|it's|");
    fh_ctx_free(c);
}

static void test_refused(void **state)
{
    (void)state;
    struct fh_ctx *c = fh_ctx_new("missing", "{\"argv\": [\"/nonexistent/cmd-xyz\"]}", 0);
    assert_int_equal(fh_run(c), -ENOENT);
    assert_int_equal(c->exit_code, 127);
    assert_non_null(strstr(c->log, "cannot start /nonexistent/cmd-xyz"));
    fh_ctx_free(c);

    c = fh_ctx_new("none", "{}", 0);
    assert_int_equal(fh_run(c), -EINVAL);
    assert_non_null(strstr(c->log, "give `run` (a shell command) or `argv` (a list)"));
    fh_ctx_free(c);

    c = fh_ctx_new("notlist", "{\"argv\": 5}", 0);
    assert_int_equal(fh_run(c), -EINVAL);
    fh_ctx_free(c);

    c = fh_ctx_new("nottext", "{\"argv\": [\"true\", 3]}", 0);
    assert_int_equal(fh_run(c), -EINVAL);
    assert_non_null(strstr(c->log, "argv[1] is not text"));
    fh_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_refused),
    };
    if (fh_open("exec") != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, fh_close);
}
