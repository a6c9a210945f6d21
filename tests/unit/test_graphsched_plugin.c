/* graphsched.so through the plugin ABI, with a stand-in host: params,
 * metrics, artifacts and error reporting as a user of `farm run` sees them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/fakehost/fakehost.h"

/* Runs the plugin on the example repository with the table's defaults
 * under `params` and a calibration cache in fh_root; fails the test,
 * showing the log, unless run() returns `want`. */
static struct fh_ctx *run(const char *tag, const char *params, int want)
{
    char cache[FH_PATH + 16];
    snprintf(cache, sizeof cache, "%s/cal.json", fh_root);
    struct fh_ctx *ctx = fh_ctx_new(tag, params, FH_DEFAULTS);
    json_object_set_new(ctx->params, "calibration_cache", json_string(cache));
    int rc = fh_run(ctx);
    if (rc != want)
        fail_msg("run returned %d, not %d: %s", rc, want, ctx->log);
    return ctx;
}

static void test_descriptor(void **state)
{
    (void)state;
    fh_assert_descriptor("graphsched");
    int required = 0;
    for (const struct farm_param *p = fh_plugin->params; p->name; p++)
        required += p->required;
    assert_int_equal(required, 2);
}

static void test_run_example(void **state)
{
    (void)state;
    struct fh_ctx *ctx = run("ok",
                             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
                             "\"graphsched/cluster-hetero.yaml\", \"budget\": 24, \"repeats\": 3}",
                             0);
    print_message("%s", ctx->log);
    double pred = fh_metric(ctx, "predicted_makespan");
    double meas = fh_metric(ctx, "measured_makespan");
    assert_true(pred > 0 && meas > 0);
    assert_true(fabs(fh_metric(ctx, "cost_model_error") - (meas - pred) / pred) < 1e-12);
    assert_true(fh_metric(ctx, "slr") >= 1);
    assert_true(fh_metric(ctx, "speedup") > 0);
    assert_true(fabs(fh_metric(ctx, "efficiency") - fh_metric(ctx, "speedup") / 4) < 1e-12);
    int ncand = (int)fh_metric(ctx, "candidates_examined");
    assert_true(ncand >= 2 && ncand <= 24);
    assert_true(fh_metric(ctx, "scheduler_time") > 0);
    assert_true(fh_metric(ctx, "result_error") <= 1e-4);
    /* The chosen candidate's prediction is the best over every method. */
    for (int m = 0; m < 5; m++) {
        static const char *const names[] = {
            "predicted_makespan.heft", "predicted_makespan.cpop", "predicted_makespan.peft",
            "predicted_makespan.lookahead", "predicted_makespan.refine"};
        assert_true(pred <= fh_metric(ctx, names[m]));
    }

    char path[FH_PATH + 32];
    json_error_t je;
    snprintf(path, sizeof path, "%s/candidates.json", ctx->artifacts);
    json_t *cands = json_load_file(path, 0, &je);
    assert_non_null(cands);
    assert_int_equal((int)json_array_size(cands), ncand);
    int chosen = -1;
    for (size_t i = 0; i < json_array_size(cands); i++)
        if (json_is_true(json_object_get(json_array_get(cands, i), "chosen")))
            chosen = (int)i;
    assert_int_equal(chosen, (int)fh_metric(ctx, "chosen_candidate"));
    json_decref(cands);

    snprintf(path, sizeof path, "%s/schedule.json", ctx->artifacts);
    json_t *sched = json_load_file(path, 0, &je);
    assert_non_null(sched);
    assert_true(json_real_value(json_object_get(sched, "predicted_makespan")) == pred);
    json_t *tasks = json_object_get(sched, "tasks");
    size_t nt = json_array_size(tasks);
    assert_true(nt >= 12);
    double last = 0;
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(tasks, i);
        const char *node = json_string_value(json_object_get(t, "node"));
        assert_true(strcmp(node, "accel") == 0 || strcmp(node, "cpu0") == 0 ||
                    strcmp(node, "cpu1") == 0 || strcmp(node, "small") == 0);
        last = fmax(last, json_real_value(json_object_get(t, "finish")));
        assert_true(json_real_value(json_object_get(t, "measured_finish")) >=
                    json_real_value(json_object_get(t, "measured_start")));
    }
    assert_true(fabs(last - pred) <= 1e-9 * pred);
    json_decref(sched);

    snprintf(path, sizeof path, "%s/gantt.svg", ctx->artifacts);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char svg[1 << 20];
    size_t len = fread(svg, 1, sizeof svg - 1, f);
    fclose(f);
    svg[len] = 0;
    assert_true(strncmp(svg, "<svg", 4) == 0);
    size_t bars = 0;
    for (const char *p = svg; (p = strstr(p, "<title>")); p++)
        bars++;
    assert_int_equal(bars, 2 * nt); /* predicted and measured bars, one tooltip each */
    assert_non_null(strstr(svg, "</svg>"));
    fh_ctx_free(ctx);
}

/* The example on two cores with the default budget: the result matches the
 * single-node run and both nodes get work. */
static void test_run_two_cores(void **state)
{
    (void)state;
    struct fh_ctx *ctx = run("two",
                             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
                             "\"graphsched/cluster.yaml\", \"repeats\": 1}",
                             0);
    assert_true(fh_metric(ctx, "result_error") <= 1e-4);
    assert_true(fh_metric(ctx, "speedup") > 1.2);
    fh_ctx_free(ctx);
}

/* Planning only: predictions and artifacts, no measured numbers. */
static void test_plan_only(void **state)
{
    (void)state;
    struct fh_ctx *ctx = run("plan",
                             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
                             "\"graphsched/cluster.yaml\", \"execute\": false, "
                             "\"methods\": \"peft\", \"budget\": 5}",
                             0);
    assert_true(fh_metric(ctx, "predicted_makespan") > 0);
    assert_true(fh_metric(ctx, "candidates_examined") == 5);
    assert_int_equal(fh_metric_count(ctx, "measured_makespan"), 0);
    assert_int_equal(fh_metric_count(ctx, "predicted_makespan.heft"), 0);
    char path[FH_PATH + 32];
    json_error_t je;
    snprintf(path, sizeof path, "%s/schedule.json", ctx->artifacts);
    json_t *sched = json_load_file(path, 0, &je);
    assert_non_null(sched);
    assert_true(json_is_null(json_object_get(sched, "measured_makespan")));
    assert_string_equal(json_string_value(json_object_get(sched, "method")), "peft");
    json_decref(sched);
    fh_ctx_free(ctx);
}

static void test_run_errors(void **state)
{
    (void)state;
    char params[2 * FH_PATH];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(params, sizeof params,
             "{\"graph\": \"%s/tests/unit/fixtures/graphsched/bad_shape.yaml\", \"cluster\": "
             "\"graphsched/cluster.yaml\"}",
             src ? src : ".");
    struct fh_ctx *ctx = run("bad-graph", params, -5006 /* FARM_EBADSPEC */);
    assert_non_null(strstr(ctx->log, "bad_shape.yaml:5:5: ops[0]: matmul"));
    fh_ctx_free(ctx);

    ctx = run("bad-methods",
              "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
              "\"graphsched/cluster.yaml\", \"methods\": \"heft,magic\"}",
              -5007 /* FARM_EBADPARAM */);
    assert_non_null(strstr(ctx->log, "methods: \"heft,magic\""));
    fh_ctx_free(ctx);

    ctx = run("missing",
              "{\"graph\": \"graphsched/nope.yaml\", \"cluster\": \"graphsched/cluster.yaml\"}",
              -ENOENT);
    assert_non_null(strstr(ctx->log, "graphsched/nope.yaml"));
    fh_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor), cmocka_unit_test(test_run_example),
        cmocka_unit_test(test_plan_only),  cmocka_unit_test(test_run_two_cores),
        cmocka_unit_test(test_run_errors),
    };
    if (fh_open("graphsched") != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, fh_close);
}
