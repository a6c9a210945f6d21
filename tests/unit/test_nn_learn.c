/* Real learning with plugins/nn: the 64-128-10 MLP on the UCI digits copy
 * (80/20 split, >= 95% held out), Gaussian blobs (>= 99%) and two spirals
 * (>= 95%), each within a few seconds on one core. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "farm/nn.h"
#include "nn_test_util.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Trains for `epochs` over shuffled mini-batches; returns the held-out
 * accuracy. */
static double train(struct farm_model_desc *d, const struct farm_dataset *tr,
                    const struct farm_dataset *te, size_t epochs, const char *what)
{
    struct farm_err err;
    struct farm_mlp *m;
    if (farm_mlp_new(d, d->seed, &m, &err) < 0)
        fail_msg("%s", err.msg);
    size_t np = farm_mlp_params(m, 0, farm_mlp_n_layers(m), NULL, 0);
    struct farm_nn_param *ps = calloc(np, sizeof *ps);
    assert_non_null(ps);
    farm_mlp_params(m, 0, farm_mlp_n_layers(m), ps, np);
    struct farm_optim *o;
    if (farm_optim_new(&d->optim, ps, np, &o, &err) < 0)
        fail_msg("%s", err.msg);
    size_t bs = d->batch_size;
    struct farm_tensor xb = {0}, yb = {0};
    assert_int_equal(farm_tensor_init(&xb, bs, tr->x.cols), 0);
    if (tr->y.rows)
        assert_int_equal(farm_tensor_init(&yb, bs, tr->y.cols), 0);
    int32_t *lb = calloc(bs, sizeof *lb);
    size_t *order = calloc(tr->n, sizeof *order);
    assert_non_null(lb);
    assert_non_null(order);
    for (size_t i = 0; i < tr->n; i++)
        order[i] = i;
    struct farm_rng rng;
    farm_rng_seed(&rng, 99);
    double t0 = now(), first_loss = -1, loss = 0;
    for (size_t e = 0; e < epochs; e++) {
        farm_rng_shuffle(&rng, order, tr->n);
        double sum = 0;
        for (size_t b = 0; b < tr->n; b += bs) {
            size_t count = tr->n - b < bs ? tr->n - b : bs;
            assert_int_equal(farm_data_batch(tr, order, b, count, &xb, lb, tr->y.rows ? &yb : NULL),
                             0);
            double l;
            assert_int_equal(
                farm_mlp_train_step(m, o, &xb, lb, tr->y.rows ? &yb : NULL, 1, &l, NULL), 0);
            sum += l;
        }
        loss = sum / (double)tr->n;
        if (first_loss < 0)
            first_loss = loss;
    }
    double secs = now() - t0, te_loss, acc;
    assert_int_equal(farm_mlp_evaluate(m, te, 256, &te_loss, &acc), 0);
    printf("%s: %zu epochs in %.2f s, train loss %.4f -> %.4f, held-out loss %.4f accuracy "
           "%.4f\n",
           what, epochs, secs, first_loss, loss, te_loss, acc);
    assert_true(loss < first_loss);
    assert_true(secs < 10.0);
    free(lb);
    free(order);
    free(ps);
    farm_tensor_release(&xb);
    farm_tensor_release(&yb);
    farm_optim_free(o);
    farm_mlp_free(m);
    return acc;
}

static void test_digits(void **state)
{
    (void)state;
    char p[1024];
    struct farm_err err;
    struct farm_model_desc *d;
    nt_source(p, sizeof p, "tests/unit/fixtures/nn/digits_mlp.yaml");
    if (farm_model_desc_load(p, NULL, &d, &err) < 0)
        fail_msg("%s", err.msg);
    struct farm_dataset tr, te;
    if (farm_model_desc_load_data(d, NULL, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(te.n, 359); /* 20% of 1797 */
    double acc = train(d, &tr, &te, 20, "digits 64-128-10");
    assert_true(acc >= 0.95);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_model_desc_free(d);
}

static void test_blobs(void **state)
{
    (void)state;
    static const char y[] = "input: 8\n"
                            "layers:\n"
                            "  - {name: h, type: dense, out: 32, activation: relu}\n"
                            "  - {name: out, type: dense, out: 5}\n"
                            "optimizer: {type: sgd, lr: 0.05, momentum: 0.9}\n"
                            "batch_size: 50\n"
                            "seed: 3\n"
                            "data: {source: blobs, n: 2000, dim: 8, classes: 5, spread: 2.0, "
                            "standardize: true, seed: 11}\n";
    struct farm_err err;
    struct farm_model_desc *d;
    if (farm_model_desc_parse(y, strlen(y), "blobs.yaml", &d, &err) < 0)
        fail_msg("%s", err.msg);
    struct farm_dataset tr, te;
    if (farm_model_desc_load_data(d, NULL, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    double acc = train(d, &tr, &te, 10, "blobs 8-32-5");
    assert_true(acc >= 0.99);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_model_desc_free(d);
}

static void test_spirals(void **state)
{
    (void)state;
    static const char y[] = "input: 2\n"
                            "layers:\n"
                            "  - {name: h1, type: dense, out: 64, activation: tanh}\n"
                            "  - {name: h2, type: dense, out: 64, activation: tanh}\n"
                            "  - {name: out, type: dense, out: 2}\n"
                            "optimizer: {type: adam, lr: 0.01}\n"
                            "init: xavier\n"
                            "batch_size: 32\n"
                            "seed: 5\n"
                            "data: {source: spirals, n: 2000, noise: 0.02, turns: 1.5, "
                            "seed: 12, scale: 4.0}\n";
    struct farm_err err;
    struct farm_model_desc *d;
    if (farm_model_desc_parse(y, strlen(y), "spirals.yaml", &d, &err) < 0)
        fail_msg("%s", err.msg);
    struct farm_dataset tr, te;
    if (farm_model_desc_load_data(d, NULL, &tr, &te, &err) < 0)
        fail_msg("%s", err.msg);
    double acc = train(d, &tr, &te, 60, "two spirals 2-64-64-2");
    assert_true(acc >= 0.95);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_model_desc_free(d);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_spirals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
