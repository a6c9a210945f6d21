/* Whole pipeline training runs (farm_pipe_run): bad input is refused with a
 * clear message before any step runs, and split models really learn (two
 * spirals, Gaussian blobs, and UCI digits to >= 95% held-out accuracy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/pipeline.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/farm-pipetrain-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_model(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

struct counter {
    int steps;
    double last_loss;
};

static int count_step(void *ud, const struct farm_pipe_step_info *info)
{
    struct counter *c = ud;
    c->steps++;
    c->last_loss = info->loss;
    return 0;
}

static void base_config(struct farm_pipe_run_config *c, const char *path, struct counter *cnt)
{
    memset(c, 0, sizeof(*c));
    c->model_path = path;
    c->display = "model.yaml";
    c->micro_batches = 4;
    c->kind = FARM_PIPE_1F1B;
    c->epochs = 1;
    c->target_loss = NAN;
    c->ud = cnt;
    c->on_step = count_step;
}

static const char *const BLOBS4 =
    "input: 4\n"
    "layers:\n"
    "  - {name: fc1, type: dense, out: 16, activation: relu}\n"
    "  - {name: fc2, type: dense, out: 16, activation: relu}\n"
    "  - {name: fc3, type: dense, out: 3}\n"
    "loss: softmax_cross_entropy\n"
    "optimizer: {type: sgd, lr: 0.05, momentum: 0.9}\n"
    "batch_size: 32\n"
    "data: {source: blobs, n: 600, dim: 4, classes: 3, spread: 1.0, seed: 4}\n";

static void expect_refused(const struct farm_pipe_run_config *c, int code, const char *needle)
{
    struct farm_pipe_run_result res;
    struct farm_err err;
    farm_err_clear(&err);
    int rc = farm_pipe_run(c, &res, &err);
    if (rc != code)
        fail_msg("expected %s, got %s: %s", farm_err_name(code), farm_err_name(rc), err.msg);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    struct counter *cnt = c->ud;
    assert_int_equal(cnt->steps, 0); /* refused before training */
}

static void test_bad_input(void **state)
{
    (void)state;
    const char *path = write_model("model.yaml", BLOBS4);
    struct counter cnt = {0};
    struct farm_pipe_run_config c;

    const char *unknown[] = {"fc9"};
    base_config(&c, path, &cnt);
    c.split = unknown;
    c.n_split = 1;
    expect_refused(&c, FARM_EBADPARAM,
                   "split[0]: no layer named \"fc9\"; valid names: fc1, fc2, fc3");

    const char *empty[] = {"fc2", "fc2"};
    c.split = empty;
    c.n_split = 2;
    expect_refused(&c, FARM_EBADPARAM, "section 1 would be empty");
    const char *first[] = {"fc1"};
    c.split = first;
    c.n_split = 1;
    expect_refused(&c, FARM_EBADPARAM, "section 0 would be empty");

    const char *good[] = {"fc2"};
    c.split = good;
    c.micro_batches = 0;
    expect_refused(&c, FARM_EBADPARAM, "micro_batches: expected an integer >= 1, got 0");
    c.micro_batches = 33;
    expect_refused(&c, FARM_EBADPARAM,
                   "micro_batches: 33 micro-batches do not fit a batch of 32 rows");
    c.micro_batches = 2;
    c.split_auto = 1;
    c.stages = 4;
    expect_refused(&c, FARM_EBADPARAM,
                   "stages: 4 sections need at least 4 layers, model.yaml has 3");
    c.split_auto = 0;
    c.epochs = 0;
    expect_refused(&c, FARM_EBADPARAM, "no completion condition");
    c.epochs = 1;

    /* A shape mismatch between layers, named at its file position. */
    const char *mism =
        write_model("model.yaml", "input: 2\n"
                                  "layers:\n"
                                  "  - {name: fc1, type: dense, out: 16, activation: relu}\n"
                                  "  - {name: fc2, type: dense, in: 12, out: 3}\n"
                                  "loss: softmax_cross_entropy\n"
                                  "optimizer: {type: sgd, lr: 0.1}\n"
                                  "batch_size: 32\n"
                                  "data: {source: blobs, n: 100, classes: 3}\n");
    c.model_path = mism;
    expect_refused(&c, FARM_EBADMODEL, "model.yaml:4:");
    expect_refused(&c, FARM_EBADMODEL, "shape mismatch: 12, but the previous layer (fc1) gives 16");

    /* Missing file and missing data. */
    c.model_path = "/nonexistent/model.yaml";
    c.display = NULL;
    struct farm_pipe_run_result res;
    struct farm_err err;
    assert_true(farm_pipe_run(&c, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/model.yaml"));
    c.display = "model.yaml";
    c.model_path = write_model("model.yaml", "input: 2\n"
                                             "layers:\n"
                                             "  - {name: fc1, type: dense, out: 4}\n"
                                             "  - {name: fc2, type: dense, out: 3}\n"
                                             "loss: softmax_cross_entropy\n"
                                             "optimizer: {type: sgd, lr: 0.1}\n"
                                             "batch_size: 8\n");
    expect_refused(&c, FARM_EBADMODEL, "model.yaml: the model description has no data section");
    c.model_path = write_model("model.yaml", "input: 2\n"
                                             "layers:\n"
                                             "  - {name: fc1, type: dense, out: 4}\n"
                                             "  - {name: fc2, type: dense, out: 3}\n"
                                             "loss: softmax_cross_entropy\n"
                                             "optimizer: {type: sgd, lr: 0.1}\n"
                                             "batch_size: 8\n"
                                             "data: {source: csv, path: missing.csv}\n");
    assert_true(farm_pipe_run(&c, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "missing.csv"));
    assert_int_equal(cnt.steps, 0);

    /* Features without labels cannot train a classifier. */
    struct farm_tensor x = {0};
    assert_int_equal(farm_tensor_init(&x, 40, 2), 0);
    char npy[256];
    snprintf(npy, sizeof(npy), "%s/x.npy", tmpdir);
    assert_int_equal(farm_npy_write(npy, &x, &err), 0);
    farm_tensor_release(&x);
    c.model_path = write_model("model.yaml", "input: 2\n"
                                             "layers:\n"
                                             "  - {name: fc1, type: dense, out: 4}\n"
                                             "  - {name: fc2, type: dense, out: 3}\n"
                                             "loss: softmax_cross_entropy\n"
                                             "optimizer: {type: sgd, lr: 0.1}\n"
                                             "batch_size: 8\n"
                                             "data: {source: npy, path: x.npy}\n");
    int rc = farm_pipe_run(&c, &res, &err);
    assert_true(rc == FARM_EBADDATA || rc == FARM_EBADMODEL);
    assert_non_null(strstr(err.msg, "label"));
    assert_int_equal(cnt.steps, 0);
}

static struct farm_pipe_run_result train(const char *path, const char *const *split, size_t n_split,
                                         int stages, int M, int kind, int epochs,
                                         const char *data_dir, const char *out_dir)
{
    struct counter cnt = {0};
    struct farm_pipe_run_config c;
    base_config(&c, path, &cnt);
    c.split = split;
    c.n_split = n_split;
    c.split_auto = split == NULL;
    c.stages = stages;
    c.micro_batches = M;
    c.kind = kind;
    c.epochs = epochs;
    c.data_dir = data_dir;
    c.out_dir = out_dir;
    c.pin = 1;
    struct farm_pipe_run_result res;
    struct farm_err err;
    if (farm_pipe_run(&c, &res, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cnt.steps, (int)res.steps);
    fprintf(stderr, "%s: %zu stages, %lld steps (%s), held-out accuracy %.4f, loss %.4f\n", path,
            res.stages, (long long)res.steps, res.stopped_by, res.test_accuracy, res.final_loss);
    return res;
}

static void test_blobs(void **state)
{
    (void)state;
    const char *path = write_model("blobs.yaml", BLOBS4);
    const char *split[] = {"fc2"};
    struct farm_pipe_run_result r = train(path, split, 1, 0, 4, FARM_PIPE_GPIPE, 5, NULL, NULL);
    assert_string_equal(r.stopped_by, "epochs");
    assert_int_equal(r.epochs, 5);
    assert_int_equal(r.steps, 5 * 15);    /* 480 training samples / 32 */
    assert_true(r.test_accuracy >= 0.98); /* chance is 1/3 */
}

static void test_spirals(void **state)
{
    (void)state;
    const char *path =
        write_model("spirals.yaml", "input: 2\n"
                                    "layers:\n"
                                    "  - {name: fc1, type: dense, out: 64, activation: tanh}\n"
                                    "  - {name: fc2, type: dense, out: 64, activation: tanh}\n"
                                    "  - {name: fc3, type: dense, out: 64, activation: tanh}\n"
                                    "  - {name: out, type: dense, out: 2}\n"
                                    "loss: softmax_cross_entropy\n"
                                    "optimizer: {type: adam, lr: 0.01}\n"
                                    "batch_size: 64\n"
                                    "data: {source: spirals, n: 1000, noise: 0.02, turns: 1.5,"
                                    " seed: 2}\n");
    /* Three stages chosen by the balanced split. */
    struct farm_pipe_run_result r = train(path, NULL, 0, 3, 4, FARM_PIPE_1F1B, 40, NULL, NULL);
    assert_int_equal(r.stages, 3);
    assert_true(r.test_accuracy >= 0.97); /* a linear model gets about 0.6 */
}

static void test_digits(void **state)
{
    (void)state;
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    char data_dir[512];
    snprintf(data_dir, sizeof(data_dir), "%s/examples/model-repo/data", src);
    const char *path =
        write_model("digits.yaml", "name: digits-mlp\n"
                                   "input: 64\n"
                                   "layers:\n"
                                   "  - {name: fc1, type: dense, out: 128, activation: relu}\n"
                                   "  - {name: fc2, type: dense, out: 64, activation: relu}\n"
                                   "  - {name: head, type: dense, out: 10}\n"
                                   "loss: softmax_cross_entropy\n"
                                   "optimizer: {type: adam, lr: 0.002}\n"
                                   "batch_size: 64\n"
                                   "seed: 1\n"
                                   "data: {source: csv, path: digits.csv.gz, scale: 0.0625,"
                                   " test_fraction: 0.2, seed: 7}\n");
    char out_dir[128];
    snprintf(out_dir, sizeof(out_dir), "%s/out", tmpdir);
    assert_int_equal(mkdir(out_dir, 0700), 0);
    const char *split[] = {"fc2"};
    struct farm_pipe_run_result r =
        train(path, split, 1, 0, 4, FARM_PIPE_1F1B, 25, data_dir, out_dir);
    assert_int_equal(r.stages, 2);
    assert_int_equal(r.starts[1], 1);
    fprintf(stderr, "digits: held-out accuracy %.4f after %lld steps\n", r.test_accuracy,
            (long long)r.steps);
    assert_true(r.test_accuracy >= 0.95);
    assert_true(r.bubble_formula == 1.0 / 5.0);
    assert_true(r.bubble_measured > 0.0 && r.bubble_measured < 1.0);
    const char *files[] = {"weights.safetensors", "timeline.json", "timeline.svg", "loss.svg"};
    for (int i = 0; i < 4; i++) {
        char p[256];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", out_dir, files[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 100);
    }
}

/* The example repository's model, as its mlp-pipeline task runs it: data
 * path relative to the model file, split [fc3]. */
static void test_example_model(void **state)
{
    (void)state;
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    char path[512];
    snprintf(path, sizeof(path), "%s/examples/model-repo/models/mlp.yaml", src);
    const char *split[] = {"fc3"};
    struct farm_pipe_run_result r = train(path, split, 1, 0, 4, FARM_PIPE_1F1B, 10, NULL, NULL);
    assert_int_equal(r.stages, 2);
    assert_int_equal(r.starts[1], 2);
    assert_true(r.test_accuracy >= 0.95);
}

int main(void)
{
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),     cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_spirals),       cmocka_unit_test(test_digits),
        cmocka_unit_test(test_example_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
