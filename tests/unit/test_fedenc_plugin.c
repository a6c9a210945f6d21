/* fedenc.so through the plugin ABI, as farm-worker loads it: the
 * descriptor, the parameter table, and a whole run with a stub host (it
 * finds farm-fedenc-child next to the .so, reports metrics and artifacts). */
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "farm/plugin.h"

struct farm_ctx {
    const char *params;
    char work[512], scratch[512];
    char metrics[64][64];
    size_t nmetrics;
    char artifacts[8][64];
    size_t nartifacts;
    double last_acc;
    int log_errors;
};

static void h_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (level >= FARM_LOG_ERROR || getenv("FEDENC_TEST_VERBOSE")) {
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
    ctx->log_errors += level >= FARM_LOG_ERROR;
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
    for (size_t i = 0; i < ctx->nmetrics; i++)
        if (strcmp(ctx->metrics[i], name) == 0)
            goto seen;
    if (ctx->nmetrics < 64)
        snprintf(ctx->metrics[ctx->nmetrics++], 64, "%s", name);
seen:
    if (strcmp(name, "fed/accuracy") == 0)
        ctx->last_acc = v;
    return 0;
}

static int h_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    if (access(path, R_OK) != 0)
        return -ENOENT;
    if (ctx->nartifacts < 8)
        snprintf(ctx->artifacts[ctx->nartifacts++], 64, "%s", name);
    return 0;
}

static const char *h_params(struct farm_ctx *ctx)
{
    return ctx->params;
}

static const char *h_work(struct farm_ctx *ctx)
{
    return ctx->work;
}

static const char *h_deps(struct farm_ctx *ctx)
{
    (void)ctx;
    return NULL;
}

static int h_cancelled(struct farm_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static const char *h_scratch(struct farm_ctx *ctx)
{
    return ctx->scratch;
}

static const struct farm_plugin *load(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/plugins/fedenc.so", getenv("FARM_BUILD_DIR"));
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        fail_msg("dlopen: %s", dlerror());
    farm_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, FARM_PLUGIN_SYMBOL);
    assert_non_null(entry);
    return entry();
}

static void test_descriptor(void **state)
{
    (void)state;
    const struct farm_plugin *p = load();
    assert_int_equal(p->abi_major, FARM_PLUGIN_ABI_MAJOR);
    assert_string_equal(p->name, "fedenc");
    assert_non_null(p->run);
    static const char *const want[] = {"role", "children", "rounds", "aggregator", "encoder",
                                       "epochs", "batch", "lr", "mu", "min_children",
                                       "accept_failures", "round_timeout", "secret", "connect",
                                       "data"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        const struct farm_param *q = p->params;
        while (q->name && strcmp(q->name, want[w]) != 0)
            q++;
        if (q->name == NULL)
            fail_msg("no parameter %s", want[w]);
        /* every default is valid JSON */
        if (q->default_json) {
            json_t *j = json_loads(q->default_json, JSON_DECODE_ANY, NULL);
            assert_non_null(j);
            json_decref(j);
        }
    }
}

static void test_run(void **state)
{
    (void)state;
    const struct farm_plugin *p = load();
    struct farm_ctx ctx = {
        .params = "{\"children\": 3, \"data\": \"digits\", \"hidden\": [32], \"rounds\": 3, "
                  "\"epochs\": 1, \"batch\": 16, \"lr\": 0.1, \"aggregator\": \"median\"}",
    };
    snprintf(ctx.work, sizeof ctx.work, "%s/examples/model-repo", getenv("FARM_SOURCE_DIR"));
    snprintf(ctx.scratch, sizeof ctx.scratch, "%s/fedenc_plugin_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(ctx.scratch));
    struct farm_host host = {
        .size = sizeof host,
        .abi_major = FARM_PLUGIN_ABI_MAJOR,
        .abi_minor = FARM_PLUGIN_ABI_MINOR,
        .log = h_log,
        .progress = h_progress,
        .metric = h_metric,
        .artifact = h_artifact,
        .params_json = h_params,
        .work_dir = h_work,
        .deps_dir = h_deps,
        .cancelled = h_cancelled,
        .scratch_dir = h_scratch,
    };
    int rc = p->run(&host, &ctx);
    assert_int_equal(rc, 0);
    assert_int_equal(ctx.log_errors, 0);
    assert_true(ctx.last_acc > 0.5);
    static const char *const metrics[] = {"fed/accuracy", "fed/loss", "central/accuracy",
                                          "round/bytes_up", "round/bytes_down", "round/seconds",
                                          "round/accepted", "round/rejected", "child/2/samples"};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        size_t k = 0;
        while (k < ctx.nmetrics && strcmp(ctx.metrics[k], metrics[i]) != 0)
            k++;
        if (k == ctx.nmetrics)
            fail_msg("metric %s was not reported", metrics[i]);
    }
    assert_int_equal(ctx.nartifacts, 3);
    assert_string_equal(ctx.artifacts[0], "encoder.safetensors");
    assert_string_equal(ctx.artifacts[1], "rounds.json");
    assert_string_equal(ctx.artifacts[2], "rounds.svg");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ctx.scratch);
    assert_int_equal(system(cmd), 0);

    /* a bad parameter fails the run with the parameter named */
    struct farm_ctx bad = {.params = "{\"aggregator\": \"avg\"}"};
    snprintf(bad.work, sizeof bad.work, "%s", ctx.work);
    snprintf(bad.scratch, sizeof bad.scratch, "/nonexistent");
    assert_int_equal(p->run(&host, &bad), -5007 /* FARM_EBADPARAM */);
    assert_int_equal(bad.log_errors, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
