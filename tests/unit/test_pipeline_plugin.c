/* pipeline.so through the plugin ABI, with a fake host: the descriptor and
 * its parameter table, a real training run on the UCI digits with metrics
 * and the four artifacts, the weights checked by an independent numpy
 * reader, cancellation between steps, and bad params refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "farm/error.h"
#include "fixtures/fakehost/fakehost.h"

/* A context with the plugin's defaults under `params`, as the host applies
 * them, and a work directory holding models/mlp.yaml: the model used here,
 * pointing at the repository's copy of the digits. */
static struct fh_ctx *new_ctx(const char *params, const char *tag)
{
    struct fh_ctx *c = fh_ctx_new(tag, params, FH_DEFAULTS | FH_OWN_WORK);
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    char path[FH_PATH + 32];
    snprintf(path, sizeof(path), "%s/models", c->work);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/models/mlp.yaml", c->work);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "name: digits-mlp\n"
            "input: 64\n"
            "layers:\n"
            "  - {name: fc1, type: dense, out: 128, activation: relu}\n"
            "  - {name: fc2, type: dense, out: 64, activation: relu}\n"
            "  - {name: head, type: dense, out: 10}\n"
            "loss: softmax_cross_entropy\n"
            "optimizer: {type: adam, lr: 0.002}\n"
            "batch_size: 64\n"
            "seed: 1\n"
            "data: {source: csv, path: %s/examples/model-repo/data/digits.csv.gz,"
            " scale: 0.0625, test_fraction: 0.2, seed: 7}\n",
            src);
    fclose(f);
    return c;
}

static void test_descriptor(void **state)
{
    (void)state;
    fh_assert_descriptor("pipeline");
    const char *want[] = {"model",  "split",     "stages",      "micro_batches", "schedule",
                          "epochs", "max_steps", "target_loss", "seed"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (fh_param(want[i]) == NULL)
            fail_msg("param %s missing from the table", want[i]);
    assert_int_equal(fh_plugin->params[0].required, 1);
}

static void test_train_digits(void **state)
{
    (void)state;
    struct fh_ctx *c = new_ctx("{\"model\": \"models/mlp.yaml\", \"split\": [\"fc2\"],"
                               " \"micro_batches\": 4, \"schedule\": \"gpipe\", \"epochs\": 20}",
                               "digits");
    int rc = fh_run(c);
    if (rc != 0)
        fail_msg("run: %d\n%s", rc, c->log);
    /* 1438 training rows / 64 = 22 full batches + a tail of 30. */
    assert_int_equal(fh_metric_count(c, "loss"), 20 * 23);
    assert_int_equal(fh_metric_count(c, "accuracy"), 20 * 23);
    assert_true(fh_metric(c, "samples_per_s") > 0);
    double acc = fh_metric(c, "test_accuracy");
    assert_true(acc >= 0.95);
    assert_true(fabs(fh_metric(c, "bubble_formula") - 1.0 / 5.0) < 1e-12);
    double bm = fh_metric(c, "bubble_measured");
    assert_true(bm > 0.0 && bm < 1.0);
    assert_true(fh_metric(c, "pipeline_buffer_bytes") > 0);
    assert_true(fh_metric(c, "peak_rss_bytes") > 1e6);
    assert_true(c->progress == 1.0);
    assert_int_equal(c->nartifacts, 4);
    assert_non_null(strstr(c->log, "section 0: fc1"));
    assert_non_null(strstr(c->log, "section 1: fc2..head"));

    /* numpy reads the weights artifact and the digits on its own; its
     * count of correct predictions over all 1797 rows must match the
     * plugin's train and held-out accuracies (1438 + 359 rows). */
    const char *src = getenv("FARM_SOURCE_DIR");
    const char *py = getenv("FARM_PYTHON");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s %s/tests/unit/oracle/pipeline_weights.py %s/weights.safetensors "
             "%s/examples/model-repo/data/digits.csv.gz fc1:relu fc2:relu head:none",
             py ? py : "python3", src, c->artifacts, src);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t jerr;
    json_t *j = json_loadf(p, 0, &jerr);
    assert_int_equal(pclose(p), 0);
    assert_non_null(j);
    double np_correct = (double)json_integer_value(json_object_get(j, "correct"));
    double ours = fh_metric(c, "train_accuracy") * 1438 + acc * 359;
    fprintf(stderr, "digits via plugin: held-out %.4f; numpy counts %.0f correct, plugin %.1f\n",
            acc, np_correct, ours);
    assert_true(fabs(np_correct - ours) <= 2.0);
    json_decref(j);

    /* The timeline artifact is the last step's: 2 stages x 2 x 4 actions. */
    char tl[FH_PATH + 32];
    snprintf(tl, sizeof(tl), "%s/timeline.json", c->artifacts);
    j = json_load_file(tl, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 16);
    assert_string_equal(json_string_value(json_object_get(j, "schedule")), "gpipe");
    json_decref(j);
    fh_ctx_free(c);
}

static void test_cancel(void **state)
{
    (void)state;
    struct fh_ctx *c = new_ctx("{\"model\": \"models/mlp.yaml\", \"stages\": 2,"
                               " \"micro_batches\": 2, \"epochs\": 50}",
                               "cancel");
    c->cancel_metric = "loss";
    c->cancel_after = 3;
    int rc = fh_run(c);
    assert_int_equal(rc, FARM_ECANCELLED);
    assert_int_equal(fh_metric_count(c, "loss"), 3);
    assert_int_equal(c->nartifacts, 0);
    fh_ctx_free(c);
}

static void test_bad_params(void **state)
{
    (void)state;
    struct {
        const char *params;
        const char *needle;
    } cases[] = {
        {"{\"model\": \"models/mlp.yaml\", \"split\": [\"fc7\"]}",
         "no layer named \"fc7\"; valid names: fc1, fc2, head"},
        {"{\"model\": \"models/mlp.yaml\", \"split\": [\"fc2\", \"fc2\"]}", "would be empty"},
        {"{\"model\": \"models/mlp.yaml\", \"micro_batches\": 0}", "micro_batches"},
        {"{\"model\": \"models/mlp.yaml\", \"schedule\": \"zigzag\"}", "\"gpipe\" or \"1f1b\""},
        {"{\"model\": \"models/nope.yaml\"}", "models/nope.yaml: no such file"},
        {"{\"model\": \"models/mlp.yaml\", \"split\": 3}", "split: expected \"auto\" or a list"},
        {"{\"model\": \"models/mlp.yaml\", \"epochs\": -1}", "epochs: expected an integer >= 0"},
        {"{\"model\": \"models/mlp.yaml\", \"stages\": \"two\"}", "stages: expected an integer"},
        {"{\"model\": \"models/mlp.yaml\", \"epochs\": 0, \"max_steps\": 0}",
         "no completion condition"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "bad%zu", i);
        struct fh_ctx *c = new_ctx(cases[i].params, tag);
        int rc = fh_run(c);
        assert_true(rc < 0);
        if (strstr(c->log, cases[i].needle) == NULL)
            fail_msg("case %zu: log lacks \"%s\":\n%s", i, cases[i].needle, c->log);
        assert_int_equal(fh_metric_count(c, "loss"), 0);
        fh_ctx_free(c);
    }
}

int main(void)
{
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_train_digits),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_params),
    };
    if (fh_open("pipeline") != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, fh_close);
}
