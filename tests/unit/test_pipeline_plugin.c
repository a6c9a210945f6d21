/* pipeline.so through the plugin ABI, with a fake host: the descriptor and
 * its parameter table, a real training run on the UCI digits with metrics
 * and the four artifacts, the weights checked by an independent numpy
 * reader, cancellation between steps, and bad params refused. */
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

#include "farm/error.h"
#include "farm/plugin.h"

struct farm_ctx {
    json_t *params;
    char work[256], scratch[256], artifacts[256];
    int cancel_after; /* cancel once this many "loss" points came (0: never) */
    int n_loss;
    json_t *metrics; /* name -> [values] */
    char log[65536];
    size_t log_len;
    int artifacts_n;
    double last_progress;
};

static void h_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ctx->log + ctx->log_len, sizeof(ctx->log) - ctx->log_len, fmt, ap);
    va_end(ap);
    if (n > 0 && ctx->log_len + (size_t)n + 1 < sizeof(ctx->log)) {
        ctx->log_len += (size_t)n;
        ctx->log[ctx->log_len++] = '\n';
        ctx->log[ctx->log_len] = '\0';
    }
}

static void h_progress(struct farm_ctx *ctx, double f, const char *what)
{
    (void)what;
    ctx->last_progress = f;
}

static int h_metric(struct farm_ctx *ctx, const char *name, double v, int64_t step)
{
    (void)step;
    json_t *a = json_object_get(ctx->metrics, name);
    if (a == NULL) {
        a = json_array();
        json_object_set_new(ctx->metrics, name, a);
    }
    json_array_append_new(a, json_real(v));
    if (strcmp(name, "loss") == 0)
        ctx->n_loss++;
    return 0;
}

static int h_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    char cmd[1024];
    struct stat st;
    if (stat(path, &st) != 0)
        return -ENOENT;
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s/%s'", path, ctx->artifacts, name);
    ctx->artifacts_n++;
    return system(cmd) == 0 ? 0 : -EIO;
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
    return ctx->cancel_after > 0 && ctx->n_loss >= ctx->cancel_after;
}

static int h_param_string(struct farm_ctx *ctx, const char *name, const char **out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (v == NULL)
        return -ENOENT;
    if (!json_is_string(v))
        return -EINVAL;
    *out = json_string_value(v);
    return 0;
}

static int h_param_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (v == NULL)
        return -ENOENT;
    if (!json_is_integer(v))
        return -EINVAL;
    *out = json_integer_value(v);
    return 0;
}

static int h_param_number(struct farm_ctx *ctx, const char *name, double *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (v == NULL)
        return -ENOENT;
    if (!json_is_number(v))
        return -EINVAL;
    *out = json_number_value(v);
    return 0;
}

static int h_param_bool(struct farm_ctx *ctx, const char *name, int *out)
{
    json_t *v = json_object_get(ctx->params, name);
    if (v == NULL)
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
    .param_string = h_param_string,
    .param_int = h_param_int,
    .param_number = h_param_number,
    .param_bool = h_param_bool,
    .scratch_dir = h_scratch,
};

static const struct farm_plugin *plugin;
static char root[64];

static int setup(void **state)
{
    (void)state;
    const char *b = getenv("FARM_BUILD_DIR");
    if (b == NULL)
        return -1;
    char so[512];
    snprintf(so, sizeof(so), "%s/plugins/pipeline.so", b);
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return -1;
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function
     * pointer; ISO C does not, so copy the bits. */
    void *sym = dlsym(h, FARM_PLUGIN_SYMBOL);
    if (sym == NULL)
        return -1;
    farm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry));
    plugin = entry();
    strcpy(root, "/tmp/farm-pipeplug-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh context with the default params applied from the plugin's own
 * table, then `params` (JSON text) on top, as the host does. */
static struct farm_ctx *new_ctx(const char *params, const char *tag)
{
    struct farm_ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->params = json_object();
    for (const struct farm_param *p = plugin->params; p->name != NULL; p++) {
        if (p->default_json != NULL)
            json_object_set_new(c->params, p->name,
                                json_loads(p->default_json, JSON_DECODE_ANY, NULL));
    }
    json_t *over = json_loads(params, 0, NULL);
    assert_non_null(over);
    json_object_update(c->params, over);
    json_decref(over);
    c->metrics = json_object();
    snprintf(c->work, sizeof(c->work), "%s/%s-work", root, tag);
    snprintf(c->scratch, sizeof(c->scratch), "%s/%s-scratch", root, tag);
    snprintf(c->artifacts, sizeof(c->artifacts), "%s/%s-artifacts", root, tag);
    assert_int_equal(mkdir(c->work, 0700), 0);
    assert_int_equal(mkdir(c->scratch, 0700), 0);
    assert_int_equal(mkdir(c->artifacts, 0700), 0);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/models", c->work);
    assert_int_equal(mkdir(dir, 0700), 0);
    return c;
}

static void free_ctx(struct farm_ctx *c)
{
    json_decref(c->params);
    json_decref(c->metrics);
    free(c);
}

/* Writes the model used here into work/models/mlp.yaml, pointing at the
 * repository's copy of the digits. */
static void write_model(struct farm_ctx *c, int epochs_hint)
{
    (void)epochs_hint;
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    char path[400];
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
}

static double metric_last(struct farm_ctx *c, const char *name)
{
    json_t *a = json_object_get(c->metrics, name);
    if (a == NULL || json_array_size(a) == 0)
        return NAN;
    return json_real_value(json_array_get(a, json_array_size(a) - 1));
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_string_equal(plugin->name, "pipeline");
    assert_int_equal(plugin->abi_major, FARM_PLUGIN_ABI_MAJOR);
    const char *want[] = {"model",  "split",     "stages",      "micro_batches", "schedule",
                          "epochs", "max_steps", "target_loss", "seed"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int found = 0;
        for (const struct farm_param *p = plugin->params; p->name; p++)
            if (strcmp(p->name, want[i]) == 0)
                found = 1;
        if (!found)
            fail_msg("param %s missing from the table", want[i]);
    }
    assert_int_equal(plugin->params[0].required, 1);
}

static void test_train_digits(void **state)
{
    (void)state;
    struct farm_ctx *c = new_ctx("{\"model\": \"models/mlp.yaml\", \"split\": [\"fc2\"],"
                                 " \"micro_batches\": 4, \"schedule\": \"gpipe\", \"epochs\": 20}",
                                 "digits");
    write_model(c, 20);
    int rc = plugin->run(&host, c);
    if (rc != 0)
        fail_msg("run: %d\n%s", rc, c->log);
    /* 1438 training rows / 64 = 22 full batches + a tail of 30. */
    assert_int_equal(json_array_size(json_object_get(c->metrics, "loss")), 20 * 23);
    assert_int_equal(json_array_size(json_object_get(c->metrics, "accuracy")), 20 * 23);
    assert_true(metric_last(c, "samples_per_s") > 0);
    double acc = metric_last(c, "test_accuracy");
    assert_true(acc >= 0.95);
    assert_true(fabs(metric_last(c, "bubble_formula") - 1.0 / 5.0) < 1e-12);
    double bm = metric_last(c, "bubble_measured");
    assert_true(bm > 0.0 && bm < 1.0);
    assert_true(metric_last(c, "pipeline_buffer_bytes") > 0);
    assert_true(metric_last(c, "peak_rss_bytes") > 1e6);
    assert_true(c->last_progress == 1.0);
    assert_int_equal(c->artifacts_n, 4);
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
    double ours = metric_last(c, "train_accuracy") * 1438 + acc * 359;
    fprintf(stderr, "digits via plugin: held-out %.4f; numpy counts %.0f correct, plugin %.1f\n",
            acc, np_correct, ours);
    assert_true(fabs(np_correct - ours) <= 2.0);
    json_decref(j);

    /* The timeline artifact is the last step's: 2 stages x 2 x 4 actions. */
    char tl[400];
    snprintf(tl, sizeof(tl), "%s/timeline.json", c->artifacts);
    j = json_load_file(tl, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 16);
    assert_string_equal(json_string_value(json_object_get(j, "schedule")), "gpipe");
    json_decref(j);
    free_ctx(c);
}

static void test_cancel(void **state)
{
    (void)state;
    struct farm_ctx *c = new_ctx("{\"model\": \"models/mlp.yaml\", \"stages\": 2,"
                                 " \"micro_batches\": 2, \"epochs\": 50}",
                                 "cancel");
    write_model(c, 50);
    c->cancel_after = 3;
    int rc = plugin->run(&host, c);
    assert_int_equal(rc, FARM_ECANCELLED);
    assert_int_equal(c->n_loss, 3);
    assert_int_equal(c->artifacts_n, 0);
    free_ctx(c);
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
        struct farm_ctx *c = new_ctx(cases[i].params, tag);
        write_model(c, 1);
        int rc = plugin->run(&host, c);
        assert_true(rc < 0);
        if (strstr(c->log, cases[i].needle) == NULL)
            fail_msg("case %zu: log lacks \"%s\":\n%s", i, cases[i].needle, c->log);
        assert_int_equal(c->n_loss, 0);
        free_ctx(c);
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
    return cmocka_run_group_tests(tests, setup, teardown);
}
