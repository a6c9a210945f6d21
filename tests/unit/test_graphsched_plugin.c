/* graphsched.so through the plugin ABI, with a stand-in host: params,
 * metrics, artifacts and error reporting as a user of `farm run` sees them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/plugin.h"

struct farm_ctx {
    json_t *params;
    const struct farm_plugin *pl;
    char work[1024], scratch[1024], artifacts[1024];
    char log[16384];
    size_t log_len;
    int nmetrics;
    char metric_name[64][128];
    double metric_value[64];
};

static char tmpdir[256];
static const struct farm_plugin *plugin;

static void h_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof ctx->log - ctx->log_len;
    int n = vsnprintf(ctx->log + ctx->log_len, room, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < room - 1) {
        ctx->log_len += (size_t)n;
        ctx->log[ctx->log_len++] = '\n';
        ctx->log[ctx->log_len] = 0;
    }
    (void)level;
}

static void h_progress(struct farm_ctx *ctx, double f, const char *what)
{
    (void)ctx;
    (void)f;
    (void)what;
}

static int h_metric(struct farm_ctx *ctx, const char *name, double v, int64_t step)
{
    (void)step;
    if (ctx->nmetrics == 64)
        return -ENOSPC;
    snprintf(ctx->metric_name[ctx->nmetrics], 128, "%s", name);
    ctx->metric_value[ctx->nmetrics++] = v;
    return 0;
}

static int h_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/%s'", path, ctx->artifacts, name);
    return system(cmd) == 0 ? 0 : -ENOENT;
}

static const char *h_params_json(struct farm_ctx *ctx)
{
    (void)ctx;
    return "{}";
}

static const char *h_work_dir(struct farm_ctx *ctx)
{
    return ctx->work;
}

static const char *h_deps_dir(struct farm_ctx *ctx)
{
    (void)ctx;
    return NULL;
}

static int h_cancelled(struct farm_ctx *ctx)
{
    (void)ctx;
    return 0;
}

/* The param value, or the table's default, as the worker applies it. */
static json_t *param(struct farm_ctx *ctx, const char *name, json_t **owned)
{
    *owned = NULL;
    json_t *v = json_object_get(ctx->params, name);
    if (v)
        return v;
    for (const struct farm_param *p = ctx->pl->params; p->name; p++)
        if (strcmp(p->name, name) == 0 && p->default_json)
            return *owned = json_loads(p->default_json, JSON_DECODE_ANY, NULL);
    return NULL;
}

static int h_param_string(struct farm_ctx *ctx, const char *name, const char **out)
{
    json_t *own, *v = param(ctx, name, &own);
    int rc = !v ? -ENOENT : !json_is_string(v) ? -EINVAL : 0;
    if (!rc) {
        /* Keep defaults alive for the run: park them in the params object. */
        if (own)
            json_object_set(ctx->params, name, own);
        *out = json_string_value(own ? json_object_get(ctx->params, name) : v);
    }
    json_decref(own);
    return rc;
}

static int h_param_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    json_t *own, *v = param(ctx, name, &own);
    int rc = !v ? -ENOENT : !json_is_integer(v) ? -EINVAL : 0;
    if (!rc)
        *out = json_integer_value(v);
    json_decref(own);
    return rc;
}

static int h_param_number(struct farm_ctx *ctx, const char *name, double *out)
{
    json_t *own, *v = param(ctx, name, &own);
    int rc = !v ? -ENOENT : !json_is_number(v) ? -EINVAL : 0;
    if (!rc)
        *out = json_number_value(v);
    json_decref(own);
    return rc;
}

static int h_param_bool(struct farm_ctx *ctx, const char *name, int *out)
{
    json_t *own, *v = param(ctx, name, &own);
    int rc = !v ? -ENOENT : !json_is_boolean(v) ? -EINVAL : 0;
    if (!rc)
        *out = json_is_true(v);
    json_decref(own);
    return rc;
}

static const char *h_scratch_dir(struct farm_ctx *ctx)
{
    return ctx->scratch;
}

static const struct farm_host host = {
    .size = sizeof(struct farm_host),
    .abi_major = FARM_PLUGIN_ABI_MAJOR,
    .abi_minor = FARM_PLUGIN_ABI_MINOR,
    .log = h_log,
    .progress = h_progress,
    .metric = h_metric,
    .artifact = h_artifact,
    .params_json = h_params_json,
    .work_dir = h_work_dir,
    .deps_dir = h_deps_dir,
    .cancelled = h_cancelled,
    .param_string = h_param_string,
    .param_int = h_param_int,
    .param_number = h_param_number,
    .param_bool = h_param_bool,
    .scratch_dir = h_scratch_dir,
};

static int setup(void **state)
{
    (void)state;
    char path[1024];
    const char *b = getenv("FARM_BUILD_DIR");
    snprintf(path, sizeof path, "%s/plugins/graphsched.so", b ? b : ".");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return -1;
    }
    farm_plugin_entry_fn fn = (farm_plugin_entry_fn)(uintptr_t)dlsym(h, FARM_PLUGIN_SYMBOL);
    if (!fn)
        return -1;
    plugin = fn();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/farm-gs-plugin-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct farm_ctx *new_ctx(const char *name, const char *params)
{
    struct farm_ctx *ctx = calloc(1, sizeof *ctx);
    const char *src = getenv("FARM_SOURCE_DIR");
    ctx->pl = plugin;
    ctx->params = json_loads(params, 0, NULL);
    assert_non_null(ctx->params);
    snprintf(ctx->work, sizeof ctx->work, "%s/examples/model-repo", src ? src : ".");
    snprintf(ctx->scratch, sizeof ctx->scratch, "%s/%s-scratch", tmpdir, name);
    snprintf(ctx->artifacts, sizeof ctx->artifacts, "%s/%s-artifacts", tmpdir, name);
    assert_int_equal(mkdir(ctx->scratch, 0700), 0);
    assert_int_equal(mkdir(ctx->artifacts, 0700), 0);
    return ctx;
}

static void free_ctx(struct farm_ctx *ctx)
{
    json_decref(ctx->params);
    free(ctx);
}

static double get_metric(const struct farm_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->nmetrics; i++)
        if (strcmp(ctx->metric_name[i], name) == 0)
            return ctx->metric_value[i];
    fail_msg("no metric %s", name);
    return NAN;
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_string_equal(plugin->name, "graphsched");
    assert_int_equal(plugin->abi_major, FARM_PLUGIN_ABI_MAJOR);
    int required = 0;
    for (const struct farm_param *p = plugin->params; p->name; p++)
        required += p->required;
    assert_int_equal(required, 2);
}

static void test_run_example(void **state)
{
    (void)state;
    char params[2048];
    snprintf(params, sizeof params,
             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
             "\"graphsched/cluster-hetero.yaml\", \"budget\": 24, \"repeats\": 3, "
             "\"calibration_cache\": \"%s/cal.json\"}",
             tmpdir);
    struct farm_ctx *ctx = new_ctx("ok", params);
    int rc = plugin->run(&host, ctx);
    if (rc)
        fail_msg("run failed (%d): %s", rc, ctx->log);
    print_message("%s", ctx->log);
    double pred = get_metric(ctx, "predicted_makespan");
    double meas = get_metric(ctx, "measured_makespan");
    assert_true(pred > 0 && meas > 0);
    assert_true(fabs(get_metric(ctx, "cost_model_error") - (meas - pred) / pred) < 1e-12);
    assert_true(get_metric(ctx, "slr") >= 1);
    assert_true(get_metric(ctx, "speedup") > 0);
    assert_true(fabs(get_metric(ctx, "efficiency") - get_metric(ctx, "speedup") / 4) < 1e-12);
    int ncand = (int)get_metric(ctx, "candidates_examined");
    assert_true(ncand >= 2 && ncand <= 24);
    assert_true(get_metric(ctx, "scheduler_time") > 0);
    assert_true(get_metric(ctx, "result_error") <= 1e-4);
    /* The chosen candidate's prediction is the best over every method. */
    for (int m = 0; m < 5; m++) {
        static const char *const names[] = {
            "predicted_makespan.heft", "predicted_makespan.cpop", "predicted_makespan.peft",
            "predicted_makespan.lookahead", "predicted_makespan.refine"};
        assert_true(pred <= get_metric(ctx, names[m]));
    }

    char path[2048];
    json_error_t je;
    snprintf(path, sizeof path, "%s/candidates.json", ctx->artifacts);
    json_t *cands = json_load_file(path, 0, &je);
    assert_non_null(cands);
    assert_int_equal((int)json_array_size(cands), ncand);
    int chosen = -1;
    for (size_t i = 0; i < json_array_size(cands); i++)
        if (json_is_true(json_object_get(json_array_get(cands, i), "chosen")))
            chosen = (int)i;
    assert_int_equal(chosen, (int)get_metric(ctx, "chosen_candidate"));
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
    free_ctx(ctx);
}

static int has_metric(const struct farm_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->nmetrics; i++)
        if (strcmp(ctx->metric_name[i], name) == 0)
            return 1;
    return 0;
}

/* The example on two cores with the default budget: the result matches the
 * single-node run and both nodes get work. */
static void test_run_two_cores(void **state)
{
    (void)state;
    char params[2048];
    snprintf(params, sizeof params,
             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": \"graphsched/cluster.yaml\", "
             "\"repeats\": 1, \"calibration_cache\": \"%s/cal.json\"}",
             tmpdir);
    struct farm_ctx *ctx = new_ctx("two", params);
    int rc = plugin->run(&host, ctx);
    if (rc)
        fail_msg("run failed (%d): %s", rc, ctx->log);
    assert_true(get_metric(ctx, "result_error") <= 1e-4);
    assert_true(get_metric(ctx, "speedup") > 1.2);
    free_ctx(ctx);
}

/* Planning only: predictions and artifacts, no measured numbers. */
static void test_plan_only(void **state)
{
    (void)state;
    char params[2048];
    snprintf(params, sizeof params,
             "{\"graph\": \"graphsched/block.yaml\", \"cluster\": \"graphsched/cluster.yaml\", "
             "\"execute\": false, \"methods\": \"peft\", \"budget\": 5, "
             "\"calibration_cache\": \"%s/cal.json\"}",
             tmpdir);
    struct farm_ctx *ctx = new_ctx("plan", params);
    int rc = plugin->run(&host, ctx);
    if (rc)
        fail_msg("run failed (%d): %s", rc, ctx->log);
    assert_true(get_metric(ctx, "predicted_makespan") > 0);
    assert_true(get_metric(ctx, "candidates_examined") == 5);
    assert_false(has_metric(ctx, "measured_makespan"));
    assert_false(has_metric(ctx, "predicted_makespan.heft"));
    char path[2048];
    json_error_t je;
    snprintf(path, sizeof path, "%s/schedule.json", ctx->artifacts);
    json_t *sched = json_load_file(path, 0, &je);
    assert_non_null(sched);
    assert_true(json_is_null(json_object_get(sched, "measured_makespan")));
    assert_string_equal(json_string_value(json_object_get(sched, "method")), "peft");
    json_decref(sched);
    free_ctx(ctx);
}

static void test_run_errors(void **state)
{
    (void)state;
    char params[2048];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(params, sizeof params,
             "{\"graph\": \"%s/tests/unit/fixtures/graphsched/bad_shape.yaml\", \"cluster\": "
             "\"graphsched/cluster.yaml\", \"calibration_cache\": \"%s/cal.json\"}",
             src ? src : ".", tmpdir);
    struct farm_ctx *ctx = new_ctx("bad-graph", params);
    assert_int_equal(plugin->run(&host, ctx), -5006 /* FARM_EBADSPEC */);
    assert_non_null(strstr(ctx->log, "bad_shape.yaml:5:5: ops[0]: matmul"));
    free_ctx(ctx);

    ctx = new_ctx("bad-methods", "{\"graph\": \"graphsched/block.yaml\", \"cluster\": "
                                 "\"graphsched/cluster.yaml\", \"methods\": \"heft,magic\"}");
    assert_int_equal(plugin->run(&host, ctx), -5007 /* FARM_EBADPARAM */);
    assert_non_null(strstr(ctx->log, "methods: \"heft,magic\""));
    free_ctx(ctx);

    ctx = new_ctx("missing", "{\"graph\": \"graphsched/nope.yaml\", \"cluster\": "
                             "\"graphsched/cluster.yaml\"}");
    assert_int_equal(plugin->run(&host, ctx), -ENOENT);
    assert_non_null(strstr(ctx->log, "graphsched/nope.yaml"));
    free_ctx(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_run_example),
        cmocka_unit_test(test_plan_only),
        cmocka_unit_test(test_run_two_cores),
        cmocka_unit_test(test_run_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
