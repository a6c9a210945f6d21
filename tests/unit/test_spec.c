/* farm.yaml parsing: normalisation and messages with file:line:col. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "farm/spec.h"

static int parse(const char *text, struct farm_spec *spec, struct farm_err *err)
{
    farm_err_clear(err);
    return farm_spec_parse_string(text, strlen(text), "farm.yaml", spec, err);
}

static void test_normalised(void **state)
{
    struct farm_spec spec;
    struct farm_err err;
    json_t *t;
    (void)state;
    assert_int_equal(parse("deps:\n  dir: deps\n  build: sh deps/build.sh\n"
                           "tasks:\n  - name: unit\n    run: ./t.sh\n    timeout: 600\n"
                           "  - name: p\n    plugin: pipeline\n    needs: unit\n"
                           "    paths: [models/**]\n    params: {micro_batches: 8}\n",
                           &spec, &err),
                     0);
    assert_int_equal(spec.n_tasks, 2);
    t = json_array_get(spec.tasks, 0);
    assert_string_equal(json_string_value(json_object_get(t, "plugin")), "exec");
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "params"), "run")),
                        "./t.sh");
    assert_int_equal(json_integer_value(json_object_get(t, "timeout")), 600);
    t = json_array_get(spec.tasks, 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(t, "needs"), 0)), "unit");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "params"), "micro_batches")), 8);
    assert_string_equal(json_string_value(json_object_get(spec.deps, "restore")), "copy");
    assert_int_equal(json_array_size(json_object_get(spec.deps, "env")), 0);
    assert_int_equal(farm_spec_find(&spec, "p"), 1);
    assert_int_equal(farm_spec_find(&spec, "zz"), -1);
    assert_int_equal(spec.coalesce, 1);
    farm_spec_release(&spec);
}

static void expect_error(const char *text, const char *msg)
{
    struct farm_spec spec;
    struct farm_err err;
    assert_true(parse(text, &spec, &err) < 0);
    if (!strstr(err.msg, msg))
        fail_msg("expected \"%s\" in \"%s\"", msg, err.msg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("tasks:\n  - name: a\n    timeout: ten\n    run: x\n",
                 "farm.yaml:3:14: tasks[0].timeout: expected a number of seconds, got \"ten\"");
    expect_error("tasks:\n  - name: a\n    retries: -1\n    run: x\n",
                 "farm.yaml:3:14: tasks[0].retries: expected an integer from 0 to 100, got -1");
    expect_error("tasks:\n  - name: a\n    colour: red\n", "farm.yaml:3:13: tasks[0]: unknown key \"colour\"");
    expect_error("tasks: []\n", "farm.yaml:1:8: tasks: expected a non-empty list");
    expect_error("jobs: []\n", "farm.yaml:1:7: unknown top-level key \"jobs\"");
    expect_error("tasks:\n  - run: x\n", "farm.yaml:2:5: tasks[0]: missing name");
    expect_error("tasks:\n  - name: a b\n    run: x\n", "farm.yaml:2:11: tasks[0].name: expected a name");
    expect_error("tasks:\n  - name: a\n    plugin: pipeline\n    run: x\n",
                 "tasks[0].run: only exec tasks take run");
    expect_error("deps:\n  dir: /abs\n  build: b\ntasks:\n  - {name: a, run: x}\n",
                 "farm.yaml:2:8: deps.dir: expected a sub-directory of the repo");
    expect_error("deps:\n  dir: d\ntasks:\n  - {name: a, run: x}\n", "deps: expected both dir and build");
    expect_error("deps:\n  dir: d\n  build: b\n  restore: hardlink\ntasks:\n  - {name: a, run: x}\n",
                 "farm.yaml:4:12: deps.restore: expected copy or link");
    expect_error("tasks:\n  - {name: a, run: x, needs: [a]}\n", "cycle");
    expect_error("tasks:\n  - {name: a, run: x, paths: [1]}\n", "tasks[0].paths[0]: expected text, got 1");
    expect_error("coalesce: maybe\ntasks:\n  - {name: a, run: x}\n",
                 "farm.yaml:1:11: coalesce: expected true or false");
}

/* One task with KEY: VALUE on line 3; the value starts at column 5 + the
 * length of "KEY: ". */
static const char *one_task(const char *key, const char *value)
{
    static char text[256];
    snprintf(text, sizeof text, "tasks:\n  - name: a\n    %s: %s\n    run: x\n", key, value);
    return text;
}

static json_int_t parsed(const char *key, const char *value)
{
    struct farm_spec spec;
    struct farm_err err;
    json_int_t n;
    if (parse(one_task(key, value), &spec, &err) < 0)
        fail_msg("%s: %s: %s", key, value, err.msg);
    n = json_integer_value(json_object_get(json_array_get(spec.tasks, 0), key));
    farm_spec_release(&spec);
    return n;
}

static void expect_value_error(const char *key, const char *value, const char *msg)
{
    char want[256];
    snprintf(want, sizeof want, "farm.yaml:3:%zu: tasks[0].%s: %s", 5 + strlen(key) + 2, key, msg);
    expect_error(one_task(key, value), want);
}

/* timeout is whole seconds from 0 (none) to 31 days; a fraction rounds up. */
static void test_timeout_values(void **state)
{
    (void)state;
    assert_int_equal(parsed("timeout", "0"), 0);
    assert_int_equal(parsed("timeout", "0.0"), 0);
    assert_int_equal(parsed("timeout", "0.0001"), 1);
    assert_int_equal(parsed("timeout", "1.0001"), 2);
    assert_int_equal(parsed("timeout", "1.5"), 2);
    assert_int_equal(parsed("timeout", "2.0"), 2);
    assert_int_equal(parsed("timeout", "1e3"), 1000);
    assert_int_equal(parsed("timeout", "2678400"), 2678400);
    assert_int_equal(parsed("timeout", "2678399.5"), 2678400);
}

static void test_timeout_errors(void **state)
{
    const char *range = "expected a number of seconds from 0 to 2678400 (31 days), got ";
    char want[256];
    (void)state;
    /* Infinity, NaN and numbers beyond a double. */
    expect_value_error("timeout", ".inf", "expected a number of seconds, got \".inf\"");
    expect_value_error("timeout", "+.inf", "expected a number of seconds, got \"+.inf\"");
    expect_value_error("timeout", "-.inf", "expected a number of seconds, got \"-.inf\"");
    expect_value_error("timeout", ".Inf", "expected a number of seconds, got \".Inf\"");
    expect_value_error("timeout", ".nan", "expected a number of seconds, got \".nan\"");
    expect_value_error("timeout", ".NaN", "expected a number of seconds, got \".NaN\"");
    expect_value_error("timeout", "1e400", "expected a number of seconds, got \"1e400\"");
    expect_value_error("timeout", "-1e400", "expected a number of seconds, got \"-1e400\"");
    /* Beyond the bound, and beyond int64. */
#define RANGE(value, shown)                                                                        \
    snprintf(want, sizeof want, "%s%s", range, shown);                                            \
    expect_value_error("timeout", value, want)
    RANGE("2678401", "2678401");
    RANGE("2678400.5", "2678400.5");
    RANGE("9223372036854775807", "9223372036854775807");
    RANGE("99999999999999999999", "1e+20");
    RANGE("1e300", "1e+300");
    /* Negative. */
    RANGE("-1", "-1");
    RANGE("-0.5", "-0.5");
    RANGE("-9223372036854775808", "-9223372036854775808");
#undef RANGE
}

/* retries (0 to 100) and priority (-1000000 to 1000000) take integers only. */
static void test_retries_priority(void **state)
{
    static const char *bad[] = {".inf",  "-.inf", ".nan", "1e400", "99999999999999999999",
                                "9223372036854775807", "-9223372036854775808", "1.5", "0.0001"};
    static const char *shown[] = {"\".inf\"", "\"-.inf\"", "\".nan\"", "\"1e400\"", "1e+20",
                                  "9223372036854775807", "-9223372036854775808", "1.5", "0.0001"};
    char want[256];
    (void)state;
    assert_int_equal(parsed("retries", "0"), 0);
    assert_int_equal(parsed("retries", "100"), 100);
    assert_int_equal(parsed("priority", "-1000000"), -1000000);
    assert_int_equal(parsed("priority", "1000000"), 1000000);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(want, sizeof want, "expected an integer from 0 to 100, got %s", shown[i]);
        expect_value_error("retries", bad[i], want);
        snprintf(want, sizeof want, "expected an integer from -1000000 to 1000000, got %s",
                 shown[i]);
        expect_value_error("priority", bad[i], want);
    }
    expect_value_error("retries", "2.0", "expected an integer from 0 to 100, got 2.0");
    expect_value_error("retries", "101", "expected an integer from 0 to 100, got 101");
    expect_value_error("retries", "-1", "expected an integer from 0 to 100, got -1");
    expect_value_error("priority", "1000001",
                       "expected an integer from -1000000 to 1000000, got 1000001");
    expect_value_error("priority", "-1000001",
                       "expected an integer from -1000000 to 1000000, got -1000001");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalised),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_timeout_values),
        cmocka_unit_test(test_timeout_errors),
        cmocka_unit_test(test_retries_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
