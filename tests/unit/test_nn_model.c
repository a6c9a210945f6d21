/* YAML model descriptions: a good one parsed field by field, its data
 * loaded and split, and every kind of bad input refused with FILE:LINE:COL
 * and what was expected (fixtures in tests/unit/fixtures/nn). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "farm/nn.h"
#include "nn_test_util.h"

static const char *fixture(char *buf, size_t size, const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/unit/fixtures/nn/%s", name);
    return nt_source(buf, size, rel);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

static struct farm_model_desc *load_ok(const char *name)
{
    char p[1024];
    struct farm_err err;
    struct farm_model_desc *d = NULL;
    if (farm_model_desc_load(fixture(p, sizeof p, name), name, &d, &err) < 0)
        fail_msg("%s", err.msg);
    return d;
}

static void test_good_description(void **state)
{
    (void)state;
    struct farm_model_desc *d = load_ok("digits_mlp.yaml");
    assert_string_equal(d->name, "digits-mlp");
    assert_string_equal(d->file, "digits_mlp.yaml");
    assert_int_equal(d->input, 64);
    assert_int_equal(d->n_layers, 2);
    assert_string_equal(d->layers[0].name, "fc1");
    assert_int_equal(d->layers[0].kind, FARM_LAYER_DENSE);
    assert_int_equal(d->layers[0].in, 64);
    assert_int_equal(d->layers[0].out, 128);
    assert_int_equal(d->layers[0].act, FARM_ACT_RELU);
    assert_int_equal(d->layers[0].line, 5);
    assert_int_equal(d->layers[0].col, 5);
    assert_int_equal(d->layers[1].in, 128);
    assert_int_equal(d->layers[1].act, FARM_ACT_NONE);
    assert_int_equal(farm_model_desc_output(d), 10);
    assert_int_equal(farm_model_desc_find(d, "fc2"), 1);
    assert_int_equal(farm_model_desc_find(d, "fc3"), -1);
    assert_int_equal(d->loss, FARM_LOSS_SOFTMAX_CE);
    assert_int_equal(d->optim.kind, FARM_OPTIM_SGD);
    assert_true(d->optim.lr == 0.1f && d->optim.momentum == 0.9f);
    assert_int_equal(d->batch_size, 32);
    assert_int_equal(d->init, FARM_INIT_HE);
    assert_int_equal(d->seed, 7);
    assert_int_equal(d->data.source, FARM_DATA_CSV);
    assert_true(d->data.scale == 0.0625);
    /* The data: the digits copy, scaled to [0, 1], split 80/20. */
    struct farm_dataset tr, te;
    struct farm_err err;
    if (farm_model_desc_load_data(d, NULL, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(tr.n, 1438);
    assert_int_equal(te.n, 359);
    assert_int_equal(tr.x.cols, 64);
    float mx = 0;
    for (size_t i = 0; i < farm_tensor_size(&tr.x); i++)
        if (tr.x.data[i] > mx)
            mx = tr.x.data[i];
    assert_true(mx == 1.0f);
    /* The same seed splits the same way. */
    struct farm_dataset tr2, te2;
    assert_int_equal(farm_model_desc_load_data(d, NULL, &tr2, &te2, &err), 0);
    assert_true(farm_tensor_equal(&te.x, &te2.x));
    assert_memory_equal(te.labels, te2.labels, te.n * sizeof *te.labels);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_dataset_release(&tr2);
    farm_dataset_release(&te2);
    farm_model_desc_free(d);
}

static void test_adam_gelu_mse(void **state)
{
    (void)state;
    struct farm_model_desc *d = load_ok("adam_gelu.yaml");
    assert_int_equal(d->n_layers, 3);
    assert_int_equal(d->layers[0].act, FARM_ACT_GELU);
    assert_int_equal(d->layers[1].kind, FARM_LAYER_ACT);
    assert_int_equal(d->layers[1].in, 6);
    assert_int_equal(d->layers[1].out, 6);
    assert_int_equal(d->layers[2].in, 6);
    assert_int_equal(d->loss, FARM_LOSS_MSE);
    assert_int_equal(d->optim.kind, FARM_OPTIM_ADAM);
    assert_true(d->optim.beta1 == 0.8f && d->optim.beta2 == 0.99f);
    assert_true(d->optim.eps == 1.0e-7f && d->optim.weight_decay == 0.001f);
    assert_int_equal(d->init, FARM_INIT_XAVIER);
    assert_int_equal(d->batch_size, 32); /* the default */
    /* MSE over class labels: targets become one-hot rows. */
    struct farm_dataset tr, te;
    struct farm_err err;
    if (farm_model_desc_load_data(d, NULL, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(tr.y.cols, 2);
    for (size_t i = 0; i < tr.n; i++)
        assert_true(tr.y.data[i * 2 + (size_t)tr.labels[i]] == 1.0f &&
                    tr.y.data[i * 2 + 1 - (size_t)tr.labels[i]] == 0.0f);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_model_desc_free(d);
}

struct bad_case {
    const char *file;
    int code;
    const char *message;
};

static const struct bad_case bad_cases[] = {
    {"bad_type.yaml", FARM_EBADMODEL,
     "bad_type.yaml:8:11: layers[1] (pool).type: unknown layer type 'conv' (expected dense or "
     "activation)"},
    {"bad_shape.yaml", FARM_EBADMODEL,
     "bad_shape.yaml:10:9: layers[1] (fc2).in: shape mismatch: 16, but the previous layer (fc1) "
     "gives 8"},
    {"missing_key.yaml", FARM_EBADMODEL,
     "missing_key.yaml:3:5: layers[0] (fc1): missing key 'out'"},
    {"missing_layers.yaml", FARM_EBADMODEL, "missing_layers.yaml:1:1: model: missing key 'layers'"},
    {"unknown_key.yaml", FARM_EBADMODEL,
     "unknown_key.yaml:5:12: layers[0] (fc1): unknown key 'units' (expected one of: name, type, "
     "in, out, activation)"},
    {"bad_optimizer.yaml", FARM_EBADMODEL,
     "bad_optimizer.yaml:4:19: optimizer.type: unknown optimizer 'rmsprop' (expected sgd or adam)"},
    {"dup_name.yaml", FARM_EBADMODEL,
     "dup_name.yaml:4:12: layers[1].name: duplicate layer name 'fc1' (also layers[0])"},
    {"bad_act.yaml", FARM_EBADMODEL,
     "bad_act.yaml:3:50: layers[0] (fc1).activation: unknown activation 'swish'"},
    {"act_width.yaml", FARM_EBADMODEL,
     "act_width.yaml:4:56: layers[1] (a).out: shape mismatch: an activation keeps its width 3, "
     "not 5"},
    {"syntax.yaml", FARM_EBADSPEC, "syntax.yaml:"},
};

static void test_bad_descriptions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        char p[1024];
        struct farm_err err;
        struct farm_model_desc *d = NULL;
        int rc = farm_model_desc_load(fixture(p, sizeof p, c->file), c->file, &d, &err);
        if (rc != c->code)
            fail_msg("%s: code %d (%s), expected %d; message: %s", c->file, rc, farm_err_name(rc),
                     c->code, err.msg);
        assert_null(d);
        assert_int_equal(err.code, c->code);
        if (strncmp(err.msg, c->message, strlen(c->message)) != 0)
            fail_msg("%s:\n  got      %s\n  expected %s", c->file, err.msg, c->message);
    }
    /* A file that does not exist. */
    struct farm_err err;
    struct farm_model_desc *d = NULL;
    assert_true(farm_model_desc_load("/nonexistent/model.yaml", NULL, &d, &err) < 0);
    assert_contains(err.msg, "/nonexistent/model.yaml");
    /* Parsed from text: the display name is used. */
    static const char text[] = "input: 2\nlayers:\n  - {name: a, type: dense, out: 0}\n";
    assert_int_equal(farm_model_desc_parse(text, strlen(text), "inline.yaml", &d, &err),
                     FARM_EBADMODEL);
    assert_contains(err.msg, "inline.yaml:3:33: layers[0] (a).out: expected a positive integer");
}

struct text_case {
    const char *text;
    const char *message;
};

static const struct text_case text_cases[] = {
    {"input: 2\nlayers: 5\n", "t.yaml:2:9: layers: expected a non-empty list of layers"},
    {"input: 2\nlayers: []\n", "t.yaml:2:9: layers: expected a non-empty list of layers"},
    {"- 1\n- 2\n", "t.yaml:1:1: expected a mapping with 'layers'"},
    {"", "t.yaml:1:1: expected a mapping with 'layers'"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\noptimizer: sgd\n",
     "t.yaml:4:12: optimizer: expected a mapping with a 'type' (sgd or adam)"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\nbatch_size: -3\n",
     "t.yaml:4:13: model.batch_size: expected a positive integer"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\n"
     "optimizer: {type: adam, betas: [0.9]}\n",
     "t.yaml:4:32: optimizer.betas: expected a list of two numbers"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\n"
     "optimizer: {type: sgd, lr: 0}\n",
     "t.yaml:4:28: optimizer.lr: 0 is out of range"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\n"
     "optimizer: {type: sgd, momentum: 0.9, betas: [0.9, 0.99]}\n",
     "t.yaml:4:46: optimizer.betas: only adam takes betas"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\ndata: {source: parquet}\n",
     "t.yaml:4:16: data.source: unknown source 'parquet'"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 3}\ndata: {source: csv}\n",
     "t.yaml:4:7: data: missing key 'path'"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 1}\n",
     "t.yaml:3:33: loss: softmax_cross_entropy needs at least 2 outputs, the last layer gives 1"},
    {"layers:\n  - {name: a, type: activation, activation: relu}\n",
     "t.yaml:2:5: layers[0] (a): missing key 'in'"},
    {"input: 2\nlayers:\n  - {name: a, type: activation}\n",
     "t.yaml:3:5: layers[0] (a): missing key 'activation'"},
    {"input: 2\nlayers:\n  - {type: dense, out: 2}\n", "t.yaml:3:5: layers[0]: missing key 'name'"},
    {"input: 2\nlayers:\n  - {name: a, type: dense, out: 2}\ninit: lecun\n",
     "t.yaml:4:7: init: unknown initialisation 'lecun' (expected he or xavier)"},
};

static void test_text_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof text_cases / sizeof text_cases[0]; i++) {
        const struct text_case *c = &text_cases[i];
        struct farm_err err;
        struct farm_model_desc *d = NULL;
        int rc = farm_model_desc_parse(c->text, strlen(c->text), "t.yaml", &d, &err);
        if (rc != FARM_EBADMODEL || strncmp(err.msg, c->message, strlen(c->message)) != 0)
            fail_msg("case %zu: rc %d\n  got      %s\n  expected %s", i, rc, err.msg, c->message);
        assert_null(d);
    }
}

static void test_data_errors(void **state)
{
    (void)state;
    struct farm_dataset tr, te;
    struct farm_err err;
    struct farm_model_desc *d = load_ok("data_missing.yaml");
    int rc = farm_model_desc_load_data(d, NULL, &tr, &te, &err);
    assert_true(rc < 0);
    assert_contains(err.msg, "data_missing.yaml:5:3: data: ");
    assert_contains(err.msg, "no/such/file.csv.gz");
    farm_model_desc_free(d);
    d = load_ok("data_width.yaml");
    assert_int_equal(farm_model_desc_load_data(d, NULL, &tr, &te, &err), FARM_EBADMODEL);
    assert_contains(err.msg,
                    "data_width.yaml:5:3: data: samples have 64 features, the model's input is 10");
    farm_model_desc_free(d);
    /* No data section at all. */
    static const char text[] = "input: 2\nlayers:\n  - {name: a, type: dense, out: 2}\n";
    assert_int_equal(farm_model_desc_parse(text, strlen(text), "t.yaml", &d, &err), 0);
    assert_int_equal(farm_model_desc_load_data(d, NULL, &tr, &te, &err), FARM_EBADMODEL);
    assert_contains(err.msg, "no 'data'");
    farm_model_desc_free(d);
}

static void test_npy_data_source(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct farm_tensor x;
    assert_int_equal(farm_tensor_init(&x, 10, 3), 0);
    for (size_t i = 0; i < 30; i++)
        x.data[i] = (float)i;
    int32_t y[10] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    assert_int_equal(farm_npy_write(nt_path(p, sizeof p, dir, "x.npy"), &x, &err), 0);
    assert_int_equal(farm_npy_write_i32(nt_path(p, sizeof p, dir, "y.npy"), y, 10, &err), 0);
    static const char text[] = "input: 3\n"
                               "layers:\n"
                               "  - {name: a, type: dense, out: 3}\n"
                               "data: {source: npy, path: x.npy, labels: y.npy, "
                               "test_fraction: 0.3, scale: 2}\n";
    struct farm_model_desc *d;
    assert_int_equal(farm_model_desc_parse(text, strlen(text), "npy.yaml", &d, &err), 0);
    struct farm_dataset tr, te;
    if (farm_model_desc_load_data(d, dir, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(tr.n, 7);
    assert_int_equal(te.n, 3);
    assert_int_equal(tr.classes, 3);
    /* Every sample keeps its label: row r holds 2*(3r, 3r+1, 3r+2). */
    for (size_t i = 0; i < te.n; i++) {
        size_t r = (size_t)(te.x.data[i * 3] / 6.0f);
        assert_true(te.x.data[i * 3 + 2] == 2.0f * (float)(3 * r + 2));
        assert_int_equal(te.labels[i], y[r]);
    }
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_model_desc_free(d);
    /* Labels beyond the model's outputs are refused before training. */
    static const char narrow[] = "input: 3\n"
                                 "layers:\n"
                                 "  - {name: a, type: dense, out: 2}\n"
                                 "data: {source: npy, path: x.npy, labels: y.npy}\n";
    assert_int_equal(farm_model_desc_parse(narrow, strlen(narrow), "narrow.yaml", &d, &err), 0);
    assert_int_equal(farm_model_desc_load_data(d, dir, &tr, &te, &err), FARM_EBADMODEL);
    assert_contains(err.msg, "narrow.yaml:4:7: data: labels go up to 2, the model has 2 outputs");
    farm_model_desc_free(d);
    farm_tensor_release(&x);
    nt_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_description), cmocka_unit_test(test_adam_gelu_mse),
        cmocka_unit_test(test_bad_descriptions), cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_npy_data_source),  cmocka_unit_test(test_text_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
