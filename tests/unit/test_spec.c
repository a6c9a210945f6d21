/* farm.yaml parsing: normalisation and messages with file:line:col. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalised),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
