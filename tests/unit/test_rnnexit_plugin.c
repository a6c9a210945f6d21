/* rnnexit.so through the plugin ABI, with a fake host: the descriptor, a
 * run on the example model (metrics, artifacts), and bad params. */
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

#include <cmocka.h>

#include "farm/error.h"
#include "fixtures/fakehost/fakehost.h"

/* Runs the plugin on the example repository with `params` as given (the
 * plugin applies its own defaults) and checks that run() returned `want`
 * and that every progress fraction lay in [0, 1]. */
static struct fh_ctx *run(const char *params, const char *tag, int want)
{
    struct fh_ctx *c = fh_ctx_new(tag, params, 0);
    int rc = fh_run(c);
    if (rc != want)
        fail_msg("params %s: rc %d (wanted %d); log:\n%s", params, rc, want, c->log);
    assert_int_equal(c->progress_bad, 0);
    return c;
}

static void test_descriptor(void **state)
{
    (void)state;
    fh_assert_descriptor("rnnexit");
    assert_non_null(fh_param("model"));
    assert_true(fh_param("model")->required);
}

static void test_run_example(void **state)
{
    (void)state;
    struct fh_ctx *c = run("{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"varying\", "
                           "\"n\": 1200, \"steps\": 20, \"epochs\": 4, \"seed\": 3}",
                           "run", 0);
    double done = fh_metric(c, "node_executions_done"),
           skipped = fh_metric(c, "node_executions_skipped");
    /* 300 held-out objects x 20 steps x 4 compute nodes */
    if (done + skipped != 300.0 * 20 * 4)
        fail_msg("done %g + skipped %g != 300 x 20 x 4", done, skipped);
    assert_true(skipped > 0);
    assert_true(fh_metric(c, "flops_saved") > 0);
    assert_true(fh_metric(c, "accuracy_never_skip") > 0.8);
    assert_true(fh_metric(c, "accuracy_early_exit") > 0.8);
    assert_true(fh_metric(c, "speedup_vs_never_skip") > 0);
    assert_true(fh_metric(c, "latency_p99_ms") >= fh_metric(c, "latency_p50_ms"));
    fh_metric(c, "train_loss");
    char path[FH_PATH + 32];
    struct stat st;
    snprintf(path, sizeof path, "%s/skips.svg", c->artifacts);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 200);
    snprintf(path, sizeof path, "%s/weights.safetensors", c->artifacts);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 1000);
    fh_ctx_free(c);
}

static void test_run_adding(void **state)
{
    (void)state;
    struct fh_ctx *c = run("{\"model\": \"rnnexit/adding.yaml\", \"task\": \"adding\", "
                           "\"n\": 600, \"steps\": 10, \"min_len\": 4, \"epochs\": 2}",
                           "adding", 0);
    assert_true(fh_metric(c, "node_executions_skipped") > 0);
    assert_true(fh_metric(c, "mse_early_exit") >= 0);
    fh_ctx_free(c);
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
    char xp[FH_PATH + 16], lp[FH_PATH + 16], np[FH_PATH + 16], params[4 * FH_PATH];
    snprintf(xp, sizeof xp, "%s/x.npy", fh_root);
    snprintf(lp, sizeof lp, "%s/y.npy", fh_root);
    snprintf(np, sizeof np, "%s/len.npy", fh_root);
    write_npy(xp, "<f4", "(200, 8, 5)", x, sizeof x);
    write_npy(lp, "<i4", "(200,)", labels, sizeof labels);
    write_npy(np, "<i4", "(200,)", lengths, sizeof lengths);
    snprintf(params, sizeof params,
             "{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"npy\", \"x\": \"%s\", "
             "\"labels\": \"%s\", \"lengths\": \"%s\", \"epochs\": 2}",
             xp, lp, np);
    struct fh_ctx *c = run(params, "npy", 0);
    double done = fh_metric(c, "node_executions_done");
    double skipped = fh_metric(c, "node_executions_skipped");
    /* 50 held-out objects x 8 steps x 4 compute nodes; padding is skipped */
    assert_true(done + skipped == 50.0 * T * 4);
    assert_true(skipped > 0);
    fh_ctx_free(c);
    c = run("{\"model\": \"rnnexit/early-exit.yaml\", \"task\": \"npy\", \"x\": \"nope.npy\"}",
            "npy2", -ENOENT);
    assert_non_null(strstr(c->log, "x: nope.npy: no such file"));
    fh_ctx_free(c);
}

static void expect_fail(const char *params, int code, const char *what)
{
    struct fh_ctx *c = run(params, "bad", code);
    if (!strstr(c->log, what))
        fail_msg("params %s: log:\n%s\nwanted: %s", params, c->log, what);
    fh_ctx_free(c);
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
    char bad[FH_PATH + 128];
    snprintf(bad, sizeof bad, "%s/bad.yaml", fh_root);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("input: 5\nlayers:\n  - units:\n      - name: u\n        nodes:\n"
          "          - {name: e, type: end}\n          - {name: c, type: gru, hidden: 4}\n"
          "output: {unit: u, node: c}\n",
          f);
    fclose(f);
    char params[FH_PATH + 256];
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
    if (fh_open("rnnexit") != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, fh_close);
}
