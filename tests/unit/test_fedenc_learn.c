/* fedenc numerics end to end: FedSGD equals centralized gradient descent,
 * one child equals local training, digits non-IID reach centralized
 * accuracy, and the task's artifacts. Real child processes throughout. */
#include <errno.h>
#include <math.h>
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

#include "farm/fedenc_task.h"
#include "test_fedenc_util.h"

static double rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/fedenc_test_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static void save_npy(const char *name, const float *v, size_t rows, size_t cols)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    struct farm_tensor t = {0};
    farm_tensor_wrap(&t, (float *)v, rows, cols);
    if (rows == 1) {
        size_t shape[1] = {cols};
        farm_tensor_reshape(&t, 1, shape);
    }
    struct farm_err err;
    if (farm_npy_write(path, &t, &err) != 0)
        fail_msg("%s", err.msg);
}

/* Three children with different sample counts (digits split by label into
 * 1, 2 and 4 labels), one full-batch local step each, FedAvg weighted by
 * sample count: equals one centralized gradient step on the union (float32
 * in C), and a float64 numpy step from the same start. */
static void test_fedsgd_equivalence(void **state)
{
    (void)state;
    static const int la[] = {0}, lb[] = {1, 2}, lc[] = {3, 4, 5, 6};
    struct fed_run r;
    fed_run_init(&r, 3);
    r.data[0] = fed_digits_spec(la, 1, "tabular", 4);
    r.data[1] = fed_digits_spec(lb, 2, "tabular", 4);
    r.data[2] = fed_digits_spec(lc, 4, "tabular", 4);
    r.enc = (struct farm_fedenc_encoder_cfg){
        .type = FARM_FEDENC_ENC_MLP, .input = 64, .steps = 1, .nhidden = 1, .hidden = {24}};
    r.hp = (struct farm_fedenc_hp){.epochs = 1, .batch = 0, .lr = 0.5, .seed = 9};
    r.cfg.rounds = 1;
    fed_run_exec(&r);
    if (r.rc != 0)
        fail_msg("master: %s", r.err.msg);
    assert_true(r.stats[0].applied);
    assert_int_equal(r.stats[0].accepted, 3);

    /* the union, in child order, and the same starting model */
    struct farm_dataset uni = {0};
    struct farm_err err;
    uint64_t counts[3];
    for (size_t k = 0; k < 3; k++) {
        struct farm_fedenc_shard *sh;
        size_t n;
        fed_load(r.data[k], &sh, &n);
        counts[k] = sh[0].train.n;
        assert_int_equal(r.stats[0].children[k].samples, counts[k]);
        assert_int_equal(farm_fedenc_dataset_append(&uni, &sh[0].train, &err), 0);
        farm_fedenc_shards_free(sh, n);
    }
    assert_true(counts[0] < counts[1] && counts[1] < counts[2]);
    struct farm_fedenc_model *m;
    assert_int_equal(farm_fedenc_model_new(&r.enc, 10, r.hp.seed, r.hp.seed, &m, &err), 0);
    size_t np = farm_fedenc_model_encoder_size(m);
    assert_int_equal(np, r.np);
    float *w0 = malloc(np * sizeof *w0), *central = malloc(np * sizeof *central);
    float *head = malloc(farm_fedenc_model_head_size(m) * sizeof *head);
    farm_fedenc_model_get_encoder(m, w0);
    farm_fedenc_model_get_head(m, head);
    assert_int_equal(farm_fedenc_model_train(m, &uni, &r.hp, NULL, 1, NULL, &err), 0);
    farm_fedenc_model_get_encoder(m, central);
    farm_fedenc_model_free(m);

    double rd = rel_diff(r.params, central, np);
    print_message("  FedSGD vs centralized step: relative difference %.3g\n", rd);
    assert_true(rd <= 1e-6);
    /* and the step was not a no-op */
    assert_true(rel_diff(w0, central, np) > 1e-3);

    /* numpy, float64, from the same start */
    make_tmpdir();
    save_npy("x.npy", uni.x.data, uni.n, 64);
    char path[512];
    snprintf(path, sizeof path, "%s/y.npy", tmpdir);
    assert_int_equal(farm_npy_write_i32(path, uni.labels, uni.n, &err), 0);
    save_npy("w1.npy", w0, 64, 24);
    save_npy("b1.npy", w0 + 64 * 24, 1, 24);
    save_npy("wh.npy", head, 24, 10);
    save_npy("bh.npy", head + 24 * 10, 1, 10);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/unit/oracle/fedenc_fedsgd.py %s %.17g",
             getenv("FARM_PYTHON") ? getenv("FARM_PYTHON") : "/usr/bin/python3",
             getenv("FARM_SOURCE_DIR"), tmpdir, r.hp.lr);
    assert_int_equal(system(cmd), 0);
    struct farm_tensor w1n = {0}, b1n = {0};
    snprintf(path, sizeof path, "%s/w1_new.npy", tmpdir);
    assert_int_equal(farm_npy_read(path, &w1n, &err), 0);
    snprintf(path, sizeof path, "%s/b1_new.npy", tmpdir);
    assert_int_equal(farm_npy_read(path, &b1n, &err), 0);
    float *ref = malloc(np * sizeof *ref);
    memcpy(ref, w1n.data, 64 * 24 * sizeof(float));
    memcpy(ref + 64 * 24, b1n.data, 24 * sizeof(float));
    /* against the float64 step, relative to the size of the step */
    double num = 0, den = 0;
    for (size_t i = 0; i < np; i++) {
        num += ((double)r.params[i] - ref[i]) * ((double)r.params[i] - ref[i]);
        den += ((double)ref[i] - w0[i]) * ((double)ref[i] - w0[i]);
    }
    print_message("  FedSGD vs numpy float64 step: error / step = %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-4);
    rm_tmpdir();
    farm_tensor_release(&w1n);
    farm_tensor_release(&b1n);
    free(ref);
    free(w0);
    free(central);
    free(head);
    farm_dataset_release(&uni);
    fed_run_free(&r);
}

/* One child, E epochs of mini-batches: the federated encoder is bitwise the
 * encoder of plain local training on that child's data. */
static void test_one_child_is_local_training(void **state)
{
    (void)state;
    for (int type = 0; type < 2; type++) {
        struct fed_run r;
        fed_run_init(&r, 1);
        static const int labels[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
        r.data[0] = fed_digits_spec(labels, 10, type ? "sequence" : "tabular", 2);
        r.enc = type ? (struct farm_fedenc_encoder_cfg){.type = FARM_FEDENC_ENC_GRU, .input = 8,
                                                        .steps = 8, .nhidden = 1, .hidden = {16}}
                     : (struct farm_fedenc_encoder_cfg){.type = FARM_FEDENC_ENC_MLP, .input = 64,
                                                        .steps = 1, .nhidden = 2,
                                                        .hidden = {32, 16}};
        r.hp = (struct farm_fedenc_hp){.epochs = 3, .batch = 16, .lr = 0.05, .mu = 0.01, .seed = 4};
        r.cfg.rounds = 1;
        fed_run_exec(&r);
        if (r.rc != 0)
            fail_msg("master: %s", r.err.msg);
        assert_true(r.stats[0].applied);
        struct farm_fedenc_shard *sh;
        size_t n;
        fed_load(r.data[0], &sh, &n);
        struct farm_fedenc_model *m;
        struct farm_err err;
        assert_int_equal(farm_fedenc_model_new(&r.enc, 10, r.hp.seed, r.hp.seed, &m, &err), 0);
        float *w0 = malloc(r.np * sizeof *w0), *local = malloc(r.np * sizeof *local);
        farm_fedenc_model_get_encoder(m, w0);
        double loss;
        assert_int_equal(farm_fedenc_model_train(m, &sh[0].train, &r.hp, w0,
                                                 farm_fedenc_shuffle_seed(r.hp.seed, 0, 1), &loss,
                                                 &err),
                         0);
        farm_fedenc_model_get_encoder(m, local);
        assert_memory_equal(r.params, local, r.np * sizeof(float));
        assert_true(rel_diff(w0, local, r.np) > 1e-3);
        assert_true(fabs(r.stats[0].train_loss - loss) < 1e-9);
        free(w0);
        free(local);
        farm_fedenc_model_free(m);
        farm_fedenc_shards_free(sh, n);
        fed_run_free(&r);
    }
}

/* The task layer, as the plugin runs it: digits split by label across five
 * children; the federated encoder with local heads is within 3 points of
 * centralized training; the artifacts are there and readable. */
static void test_digits_non_iid_task(void **state)
{
    (void)state;
    make_tmpdir();
    json_t *p = json_pack("{s:s, s:I, s:s, s:s, s:[i], s:I, s:I, s:I, s:f}", "role", "master",
                          "children", (json_int_t)5, "data", "digits", "digits",
                          fed_digits_path(), "hidden", 64, "rounds", (json_int_t)10, "epochs",
                          (json_int_t)2, "batch", (json_int_t)16, "lr", 0.1);
    struct farm_fedenc_task_env env = {
        .work_dir = tmpdir, .scratch_dir = tmpdir, .child_exe = fed_child_exe()};
    struct farm_fedenc_task_result res;
    struct farm_err err;
    int rc = farm_fedenc_task_run(p, &env, NULL, &res, &err);
    json_decref(p);
    if (rc != 0)
        fail_msg("task: %s", err.msg);
    print_message("  digits non-IID, 5 children: federated %.4f, centralized %.4f\n",
                  res.fed_accuracy, res.central_accuracy);
    assert_int_equal(res.applied, 10);
    assert_true(res.central_accuracy > 0.85);
    assert_true(res.fed_accuracy >= res.central_accuracy - 0.03);

    /* encoder.safetensors loads into a model of the same shape */
    char path[512];
    snprintf(path, sizeof path, "%s/encoder.safetensors", tmpdir);
    struct farm_fedenc_model *m;
    struct farm_fedenc_encoder_cfg enc = {
        .type = FARM_FEDENC_ENC_MLP, .input = 64, .steps = 1, .nhidden = 1, .hidden = {64}};
    assert_int_equal(farm_fedenc_model_new(&enc, 10, 99, 99, &m, &err), 0);
    struct farm_nn_param params[2];
    struct farm_fedenc_tensor_spec specs[2];
    assert_int_equal(farm_fedenc_model_specs(m, specs, 2), 2);
    assert_string_equal(specs[0].name, "enc.fc1.weight");
    farm_fedenc_model_free(m);
    struct farm_tensor w = {0}, b = {0};
    assert_int_equal(farm_tensor_init(&w, 64, 64), 0);
    assert_int_equal(farm_tensor_init_1d(&b, 64), 0);
    memset(params, 0, sizeof params);
    strcpy(params[0].name, "enc.fc1.weight");
    params[0].value = &w;
    strcpy(params[1].name, "enc.fc1.bias");
    params[1].value = &b;
    if (farm_safetensors_load(path, params, 2, false, &err) != 0)
        fail_msg("%s", err.msg);
    farm_tensor_release(&w);
    farm_tensor_release(&b);

    /* rounds.json holds every round, and the centralized curve beside */
    snprintf(path, sizeof path, "%s/rounds.json", tmpdir);
    json_t *doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    json_t *rounds = json_object_get(doc, "rounds");
    assert_int_equal(json_array_size(rounds), 10);
    json_t *last = json_array_get(rounds, 9);
    assert_true(fabs(json_number_value(json_object_get(last, "accuracy")) - res.fed_accuracy) <
                1e-9);
    assert_int_equal(json_array_size(json_object_get(last, "children")), 5);
    assert_true(json_integer_value(json_object_get(last, "bytes_up")) > 5 * 64 * 65 * 4);
    assert_int_equal(json_array_size(json_object_get(doc, "centralized")), 10);
    json_decref(doc);
    snprintf(path, sizeof path, "%s/rounds.svg", tmpdir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[256] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "<svg"));
    rm_tmpdir();
}

/* .npy shards from the task's deps dir: <deps>/fedenc/child<k>/{x,y}.npy
 * (child 1 with its own x_test/y_test), written here from two label groups
 * of the digits. */
static void test_npy_shards_from_deps(void **state)
{
    (void)state;
    make_tmpdir();
    static const int groups[2][5] = {{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}};
    size_t test_n[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char *spec = fed_digits_spec(groups[k], 5, "tabular", 3);
        struct farm_fedenc_shard *sh;
        size_t n;
        fed_load(spec, &sh, &n);
        free(spec);
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/fedenc", tmpdir);
        mkdir(dir, 0700);
        snprintf(dir, sizeof dir, "%s/fedenc/child%d", tmpdir, k);
        assert_int_equal(mkdir(dir, 0700), 0);
        struct farm_err err;
        snprintf(path, sizeof path, "%s/x.npy", dir);
        assert_int_equal(farm_npy_write(path, &sh[0].train.x, &err), 0);
        snprintf(path, sizeof path, "%s/y.npy", dir);
        assert_int_equal(farm_npy_write_i32(path, sh[0].train.labels, sh[0].train.n, &err), 0);
        if (k == 1) {
            snprintf(path, sizeof path, "%s/x_test.npy", dir);
            assert_int_equal(farm_npy_write(path, &sh[0].test.x, &err), 0);
            snprintf(path, sizeof path, "%s/y_test.npy", dir);
            assert_int_equal(farm_npy_write_i32(path, sh[0].test.labels, sh[0].test.n, &err), 0);
            test_n[k] = sh[0].test.n;
        } else {
            /* held out from x.npy itself: 20% of the training part */
            test_n[k] = (size_t)((double)sh[0].train.n * 0.2 + 0.5);
        }
        farm_fedenc_shards_free(sh, n);
    }
    json_t *p = json_pack("{s:I, s:s, s:[i], s:I, s:I, s:f}", "children", (json_int_t)2, "data",
                          "npy", "hidden", 32, "rounds", (json_int_t)4, "epochs", (json_int_t)2,
                          "lr", 0.1);
    struct farm_fedenc_task_env env = {
        .work_dir = tmpdir, .deps_dir = tmpdir, .scratch_dir = tmpdir,
        .child_exe = fed_child_exe()};
    struct farm_fedenc_task_result res;
    struct farm_err err;
    int rc = farm_fedenc_task_run(p, &env, NULL, &res, &err);
    json_decref(p);
    if (rc != 0)
        fail_msg("task: %s", err.msg);
    assert_int_equal(res.applied, 4);
    assert_true(res.fed_accuracy > 0.85);
    char path[600];
    snprintf(path, sizeof path, "%s/rounds.json", tmpdir);
    json_t *doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    json_t *kids = json_object_get(json_array_get(json_object_get(doc, "rounds"), 3), "children");
    assert_int_equal(json_array_size(kids), 2);
    for (size_t k = 0; k < 2; k++) {
        json_t *c = json_array_get(kids, k);
        assert_int_equal(json_integer_value(json_object_get(c, "eval_n")), test_n[k]);
    }
    json_decref(doc);
    rm_tmpdir();
}

/* Bad parameters are refused with the parameter's name. */
static void test_task_bad_params(void **state)
{
    (void)state;
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"aggregator\": \"avg\"}", "aggregator: expected fedavg"},
        {"{\"encoder\": \"cnn\"}", "encoder: expected \"mlp\" or \"gru\""},
        {"{\"rounds\": 0}", "rounds: expected an integer"},
        {"{\"children\": 2, \"min_children\": 3}", "min_children: 3, but only 2 children"},
        {"{\"children\": 1, \"remote_children\": 1}", "secret: required"},
        {"{\"data\": \"mnist\"}", "data: expected \"synthetic\""},
        {"{\"role\": \"boss\"}", "role: expected \"master\" or \"child\""},
        {"{\"role\": \"child\", \"secret\": \"s\", \"data\": {}}", "connect: required"},
        {"{\"lr\": \"fast\"}", "lr: expected a number"},
        {"{\"children\": 2, \"data\": [{\"source\": \"synthetic\"}]}", "2 children"},
    };
    struct farm_fedenc_task_env env = {.child_exe = fed_child_exe()};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *p = json_loads(cases[i].json, 0, NULL);
        assert_non_null(p);
        struct farm_err err;
        int rc = farm_fedenc_task_run(p, &env, NULL, NULL, &err);
        json_decref(p);
        if (rc != FARM_EBADPARAM || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("%s: got %d '%s'", cases[i].json, rc, err.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fedsgd_equivalence),
        cmocka_unit_test(test_one_child_is_local_training),
        cmocka_unit_test(test_digits_non_iid_task),
        cmocka_unit_test(test_npy_shards_from_deps),
        cmocka_unit_test(test_task_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
