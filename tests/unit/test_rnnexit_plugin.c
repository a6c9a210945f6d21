/* rnnexit.so through the plugin ABI, with a fake host: the descriptor, a
 * run on the example model (metrics, artifacts), and bad params. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "farm/error.h"
#include "farm/plugin.h"

struct farm_ctx {
    json_t *params;
    char work[512], scratch[512], artifacts[512];
    json_t *metrics; /* name -> last value */
    char log[65536];
};

static void h_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    size_t n = strlen(ctx->log);
    n += (size_t)snprintf(ctx->log + n, sizeof ctx->log - n, "[%d] ", level);
    va_start(ap, fmt);
    if (n < sizeof ctx->log)
        n += (size_t)vsnprintf(ctx->log + n, sizeof ctx->log - n, fmt, ap);
    va_end(ap);
    if (n + 1 < sizeof ctx->log)
        strcat(ctx->log, "\n");
}

static void h_progress(struct farm_ctx *ctx, double f, const char *what)
{
    (void)ctx;
    assert_true(f >= 0 && f <= 1);
    (void)what;
}

static int h_metric(struct farm_ctx *ctx, const char *name, double v, int64_t step)
{
    (void)step;
    json_object_set_new(ctx->metrics, name, json_real(v));
    return 0;
}

static int h_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    char dst[600], cmd[1400];
    snprintf(dst, sizeof dst, "%s/%s", ctx->artifacts, name);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, dst);
    return system(cmd) == 0 ? 0 : -ENOENT;
}

static const char *h_params_json(struct farm_ctx *ctx)
{
    static char *text;
    free(text);
    text = json_dumps(ctx->params, JSON_COMPACT);
    return text;
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

static int h_string(struct farm_ctx *ctx, const char *name, const char **out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v)
        return -ENOENT;
    if (!json_is_string(v))
        return -EINVAL;
    *out = json_string_value(v);
    return 0;
}

static int h_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v)
        return -ENOENT;
    if (!json_is_integer(v))
        return -EINVAL;
    *out = json_integer_value(v);
    return 0;
}

static int h_number(struct farm_ctx *ctx, const char *name, double *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v)
        return -ENOENT;
    if (!json_is_number(v))
        return -EINVAL;
    *out = json_number_value(v);
    return 0;
}

static int h_bool(struct farm_ctx *ctx, const char *name, int *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (!v)
        return -ENOENT;
    if (!json_is_boolean(v))
        return -EINVAL;
    *out = json_is_true(v);
    return 0;
}

static const char *h_scratch(struct farm_ctx *ctx)
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
    .param_string = h_string,
    .param_int = h_int,
    .param_number = h_number,
    .param_bool = h_bool,
    .scratch_dir = h_scratch,
};

static const struct farm_plugin *plugin;
static char base[256];

static int setup(void **state)
{
    (void)state;
    const char *bd = getenv("FARM_BUILD_DIR");
    if (!bd)
        return -1;
    char so[512];
    snprintf(so, sizeof so, "%s/plugins/rnnexit.so", bd);
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return -1;
    }
    /* POSIX guarantees a dlsym result converts to a function pointer;
     * ISO C does not, hence the copy through memcpy. */
    void *sym = dlsym(h, FARM_PLUGIN_SYMBOL);
    farm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    if (!entry)
        return -1;
    plugin = entry();
    snprintf(base, sizeof base, "/tmp/test_rnnexit_plugin_XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void ctx_init(struct farm_ctx *c, const char *params_json, const char *sub)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    c->params = json_loads(params_json, 0, &je);
    assert_non_null(c->params);
    c->metrics = json_object();
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    snprintf(c->work, sizeof c->work, "%s/examples/model-repo", src);
    snprintf(c->scratch, sizeof c->scratch, "%s/%s-scratch", base, sub);
    snprintf(c->artifacts, sizeof c->artifacts, "%s/%s-artifacts", base, sub);
    mkdir(c->scratch, 0700);
    mkdir(c->artifacts, 0700);
}

static void ctx_release(struct farm_ctx *c)
{
    json_decref(c->params);
    json_decref(c->metrics);
}

static double metric(struct farm_ctx *c, const char *name)
{
    json_t *v = json_object_get(c->metrics, name);
    if (!v)
        fail_msg("metric %s missing; log:\n%s", name, c->log);
    return json_number_value(v);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_non_null(plugin);
    assert_int_equal(plugin->abi_major, FARM_PLUGIN_ABI_MAJOR);
    assert_string_equal(plugin->name, "rnnexit");
    assert_true(plugin->size >= sizeof(struct farm_plugin));
    int has_model = 0;
    for (const struct farm_param *p = plugin->params; p->name; p++) {
        if (strcmp(p->name, "model") == 0)
            has_model = p->required;
        if (p->default_json) {
            json_error_t je;
            json_t *v = json_loads(p->default_json, JSON_DECODE_ANY, &je);
            if (!v)
                fail_msg("param %s: default %s is not JSON", p->name, p->default_json);
            json_decref(v);
        }
    }
    assert_true(has_model);
}

static void test_run_example(void **state)
{
    (void)state;
    struct farm_ctx c;
    ctx_init(&c,
             "{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"varying\", \"n\": 1200, "
             "\"steps\": 20, \"epochs\": 4, \"seed\": 3}",
             "run");
    int rc = plugin->run(&host, &c);
    if (rc)
        fail_msg("run: %d; log:\n%s", rc, c.log);
    double done = metric(&c, "node_executions_done"),
           skipped = metric(&c, "node_executions_skipped");
    /* 300 held-out objects x 20 steps x 4 compute nodes */
    if (done + skipped != 300.0 * 20 * 4)
        fail_msg("done %g + skipped %g != 300 x 20 x 4", done, skipped);
    assert_true(skipped > 0);
    assert_true(metric(&c, "flops_saved") > 0);
    assert_true(metric(&c, "accuracy_never_skip") > 0.8);
    assert_true(metric(&c, "accuracy_early_exit") > 0.8);
    assert_true(metric(&c, "speedup_vs_never_skip") > 0);
    assert_true(metric(&c, "latency_p99_ms") >= metric(&c, "latency_p50_ms"));
    metric(&c, "train_loss");
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/skips.svg", c.artifacts);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 200);
    snprintf(path, sizeof path, "%s/weights.safetensors", c.artifacts);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 1000);
    ctx_release(&c);
}

static void test_run_adding(void **state)
{
    (void)state;
    struct farm_ctx c;
    ctx_init(&c,
             "{\"model\": \"rnnexit/adding.yaml\", \"task\": \"adding\", \"n\": 600, "
             "\"steps\": 10, \"min_len\": 4, \"epochs\": 2}",
             "adding");
    int rc = plugin->run(&host, &c);
    if (rc)
        fail_msg("run: %d; log:\n%s", rc, c.log);
    assert_true(metric(&c, "node_executions_skipped") > 0);
    assert_true(metric(&c, "mse_early_exit") >= 0);
    ctx_release(&c);
}

/* A minimal .npy writer (format 1.0, little endian) for the test's data. */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      size_t bytes)
{
    char header[256];
    int n = snprintf(header, sizeof header,
                     "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned short hl = (unsigned short)((size_t)n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(header, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

static void test_run_npy(void **state)
{
    (void)state;
    enum { N = 200, T = 8, D = 5 };
    static float x[N * T * D];
    int32_t labels[N], lengths[N];
    unsigned s = 7;
    for (size_t i = 0; i < N * T * D; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) % 1000) / 1000.0f - 0.5f;
    }
    for (int i = 0; i < N; i++) {
        labels[i] = i % 4;
        lengths[i] = i % (T + 1);
        x[(size_t)i * T * D + (size_t)(i % 4)] += 2.0f; /* the label, at step 0 */
    }
    char xp[600], lp[600], np[600], params[2400];
    snprintf(xp, sizeof xp, "%s/x.npy", base);
    snprintf(lp, sizeof lp, "%s/y.npy", base);
    snprintf(np, sizeof np, "%s/len.npy", base);
    write_npy(xp, "<f4", "(200, 8, 5)", x, sizeof x);
    write_npy(lp, "<i4", "(200,)", labels, sizeof labels);
    write_npy(np, "<i4", "(200,)", lengths, sizeof lengths);
    snprintf(params, sizeof params,
             "{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"npy\", \"x\": \"%s\", "
             "\"labels\": \"%s\", \"lengths\": \"%s\", \"epochs\": 2}",
             xp, lp, np);
    struct farm_ctx c;
    ctx_init(&c, params, "npy");
    int rc = plugin->run(&host, &c);
    if (rc)
        fail_msg("run: %d; log:\n%s", rc, c.log);
    double done = metric(&c, "node_executions_done");
    double skipped = metric(&c, "node_executions_skipped");
    /* 50 held-out objects x 8 steps x 4 compute nodes; padding is skipped */
    assert_true(done + skipped == 50.0 * T * 4);
    assert_true(skipped > 0);
    ctx_release(&c);
    snprintf(params, sizeof params,
             "{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"npy\", \"x\": "
             "\"nope.npy\"}");
    ctx_init(&c, params, "npy2");
    assert_int_equal(plugin->run(&host, &c), -ENOENT);
    assert_non_null(strstr(c.log, "x: nope.npy: no such file"));
    ctx_release(&c);
}

static void expect_fail(const char *params, int code, const char *what)
{
    struct farm_ctx c;
    ctx_init(&c, params, "bad");
    int rc = plugin->run(&host, &c);
    if (rc != code || !strstr(c.log, what))
        fail_msg("params %s: rc %d (wanted %d), log:\n%s\nwanted: %s", params, rc, code, c.log,
                 what);
    ctx_release(&c);
}

static void test_bad_params(void **state)
{
    (void)state;
    expect_fail("{}", FARM_EBADPARAM, "model: a model description path is required");
    expect_fail("{\"model\": \"rnnexit/nope.yaml\"}", -ENOENT,
                "model: rnnexit/nope.yaml: no such file");
    expect_fail("{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"mnist\"}", FARM_EBADPARAM,
                "task: unknown task 'mnist'");
    expect_fail("{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"adding\"}", FARM_EBADDATA,
                "the model reads 5 features per step, the adding data has 2");
    expect_fail("{\"model\": \"rnnexit/early-exit.yaml\", \"steps\": 0}", FARM_EBADPARAM,
                "steps: expected an integer in 1..100000, got 0");
    expect_fail("{\"model\": \"rnnexit/early-exit.yaml\", \"optimizer\": \"lbfgs\"}",
                FARM_EBADPARAM, "optimizer: expected adam or sgd");
    /* a bad model file names file:line:col */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.yaml", base);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("input: 5\nlayers:\n  - units:\n      - name: u\n        nodes:\n"
          "          - {name: e, type: end}\n          - {name: c, type: gru, hidden: 4}\n"
          "output: {unit: u, node: c}\n",
          f);
    fclose(f);
    char params[800];
    snprintf(params, sizeof params, "{\"model\": \"%s\"}", bad);
    snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
             ":6:13: unit 'u': end node 'e' comes "
             "before any start node");
    expect_fail(params, FARM_EBADMODEL, bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor), cmocka_unit_test(test_run_example),
        cmocka_unit_test(test_run_adding), cmocka_unit_test(test_run_npy),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
