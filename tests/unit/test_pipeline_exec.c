/* The pipeline executor against the unsplit model: bitwise equal forward
 * outputs, gradients and trained weights, for every S in {1..4}, M in
 * {1,2,4,8} and both schedules; and the measured events obey the
 * schedule's dependencies. BLAS is single-threaded (set before any
 * product), as bitwise equality requires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/pipeline.h"

/* Six layers with every kind of activation, one separate activation layer,
 * and widths that change at every cut. */
static const char *const MODEL_CE = "name: exec-test\n"
                                    "input: 7\n"
                                    "layers:\n"
                                    "  - {name: fc1, type: dense, out: 19, activation: relu}\n"
                                    "  - {name: fc2, type: dense, out: 13, activation: gelu}\n"
                                    "  - {name: act, type: activation, activation: tanh}\n"
                                    "  - {name: fc3, type: dense, out: 11, activation: sigmoid}\n"
                                    "  - {name: fc4, type: dense, out: 9, activation: relu}\n"
                                    "  - {name: head, type: dense, out: 5}\n"
                                    "loss: softmax_cross_entropy\n"
                                    "optimizer: {type: sgd, lr: 0.05, momentum: 0.9}\n"
                                    "batch_size: 30\n"
                                    "seed: 3\n";

static const char *const MODEL_MSE = "input: 4\n"
                                     "layers:\n"
                                     "  - {name: a, type: dense, out: 8, activation: tanh}\n"
                                     "  - {name: b, type: dense, out: 8, activation: relu}\n"
                                     "  - {name: c, type: dense, out: 6, activation: gelu}\n"
                                     "  - {name: d, type: dense, out: 3}\n"
                                     "loss: mse\n"
                                     "optimizer: {type: adam, lr: 0.01}\n"
                                     "batch_size: 17\n";

struct fixture {
    struct farm_model_desc *desc;
    struct farm_tensor x[3];
    int32_t labels[3][64];
    struct farm_tensor t[3];
};

static void make_fixture(struct fixture *f, const char *yaml, size_t rows)
{
    memset(f, 0, sizeof(*f));
    struct farm_err err;
    if (farm_model_desc_parse(yaml, strlen(yaml), "test.yaml", &f->desc, &err) != 0)
        fail_msg("%s", err.msg);
    struct farm_rng rng;
    farm_rng_seed(&rng, 99);
    size_t out = farm_model_desc_output(f->desc);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(farm_tensor_init(&f->x[k], rows, f->desc->input), 0);
        farm_tensor_fill_normal(&f->x[k], 0.0f, 1.0f, &rng);
        assert_int_equal(farm_tensor_init(&f->t[k], rows, out), 0);
        farm_tensor_fill_normal(&f->t[k], 0.0f, 1.0f, &rng);
        for (size_t i = 0; i < rows; i++)
            f->labels[k][i] = (int32_t)farm_rng_below(&rng, out);
    }
}

static void free_fixture(struct fixture *f)
{
    for (int k = 0; k < 3; k++) {
        farm_tensor_release(&f->x[k]);
        farm_tensor_release(&f->t[k]);
    }
    farm_model_desc_free(f->desc);
}

/* Number of parameter tensors that differ bitwise (values, or grads). */
static int params_differ(struct farm_mlp *a, struct farm_mlp *b, int grads)
{
    size_t L = farm_mlp_n_layers(a);
    size_t n = farm_mlp_params(a, 0, L, NULL, 0);
    assert_int_equal(n, farm_mlp_params(b, 0, L, NULL, 0));
    struct farm_nn_param *pa = calloc(n, sizeof(*pa)), *pb = calloc(n, sizeof(*pb));
    assert_non_null(pa);
    assert_non_null(pb);
    farm_mlp_params(a, 0, L, pa, n);
    farm_mlp_params(b, 0, L, pb, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(pa[i].name, pb[i].name);
        const struct farm_tensor *ta = grads ? pa[i].grad : pa[i].value;
        const struct farm_tensor *tb = grads ? pb[i].grad : pb[i].value;
        if (!farm_tensor_equal(ta, tb))
            bad++;
    }
    free(pa);
    free(pb);
    return bad;
}

static int nonzero_grads(struct farm_mlp *a)
{
    size_t L = farm_mlp_n_layers(a);
    size_t n = farm_mlp_params(a, 0, L, NULL, 0);
    struct farm_nn_param *pa = calloc(n, sizeof(*pa));
    assert_non_null(pa);
    farm_mlp_params(a, 0, L, pa, n);
    int nz = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = farm_tensor_size(pa[i].grad);
        for (size_t j = 0; j < k; j++) {
            if (pa[i].grad->data[j] != 0.0f) {
                nz++;
                break;
            }
        }
    }
    free(pa);
    return nz;
}

static void test_one_section_one_micro(void **state)
{
    (void)state;
    struct fixture f;
    make_fixture(&f, MODEL_CE, 30);
    struct farm_err err;
    struct farm_mlp *ref, *pm;
    assert_int_equal(farm_mlp_new(f.desc, 5, &ref, &err), 0);
    assert_int_equal(farm_mlp_new(f.desc, 5, &pm, &err), 0);
    size_t L = farm_mlp_n_layers(ref);

    /* Unsplit: forward output from a work over all layers, gradients from
     * the reference step. */
    struct farm_mlp_work *w;
    assert_int_equal(farm_mlp_work_new(ref, 0, L, 30, &w), 0);
    const struct farm_tensor *y;
    assert_int_equal(farm_mlp_forward(ref, w, &f.x[0], &y), 0);
    struct farm_tensor yref = {0};
    assert_int_equal(farm_tensor_clone(&yref, y), 0);
    farm_mlp_work_free(w);
    double lref;
    size_t cref;
    assert_int_equal(farm_mlp_train_step(ref, NULL, &f.x[0], f.labels[0], NULL, 1, &lref, &cref),
                     0);

    size_t starts[1] = {0};
    struct farm_pipe_options o = {
        .kind = FARM_PIPE_GPIPE, .micro_batches = 1, .stages = 1, .starts = starts, .pin = 0};
    struct farm_pipe *p;
    if (farm_pipe_new(pm, &f.desc->optim, &o, 30, &p, &err) != 0)
        fail_msg("%s", err.msg);
    struct farm_tensor out = {0};
    assert_int_equal(farm_tensor_init(&out, 30, 5), 0);
    double lp;
    size_t cp;
    if (farm_pipe_step(p, &f.x[0], f.labels[0], NULL, 0, &lp, &cp, &out, &err) != 0)
        fail_msg("%s", err.msg);
    assert_true(farm_tensor_equal(&out, &yref));
    assert_true(lp == lref);
    assert_int_equal(cp, cref);
    assert_int_equal(params_differ(ref, pm, 1), 0);
    assert_int_equal(params_differ(ref, pm, 0), 0); /* update = 0: no step taken */
    assert_int_equal(nonzero_grads(pm), 10);        /* 5 dense layers x (w, b) */

    farm_pipe_free(p);
    farm_tensor_release(&out);
    farm_tensor_release(&yref);
    farm_mlp_free(ref);
    farm_mlp_free(pm);
    free_fixture(&f);
}

/* K = 3 steps of the pipeline against 3 reference steps; returns the
 * number of parameter tensors that differ. ref_m is the reference's M. */
static unsigned jitter_us; /* set by the jitter test */

static int run_equivalence(struct fixture *f, size_t S, const size_t *starts, int M, int ref_m,
                           int kind, size_t rows)
{
    struct farm_err err;
    struct farm_mlp *ref, *pm;
    assert_int_equal(farm_mlp_new(f->desc, 11, &ref, &err), 0);
    assert_int_equal(farm_mlp_new(f->desc, 11, &pm, &err), 0);
    size_t L = farm_mlp_n_layers(ref);
    size_t np = farm_mlp_params(ref, 0, L, NULL, 0);
    struct farm_nn_param *params = calloc(np, sizeof(*params));
    assert_non_null(params);
    farm_mlp_params(ref, 0, L, params, np);
    struct farm_optim *opt;
    assert_int_equal(farm_optim_new(&f->desc->optim, params, np, &opt, &err), 0);
    free(params);

    struct farm_pipe_options o = {.kind = kind,
                                  .micro_batches = M,
                                  .stages = S,
                                  .starts = starts,
                                  .pin = 1,
                                  .jitter_us = jitter_us};
    struct farm_pipe *p;
    if (farm_pipe_new(pm, &f->desc->optim, &o, rows, &p, &err) != 0)
        fail_msg("%s", err.msg);
    int ce = farm_mlp_loss_kind(ref) == FARM_LOSS_SOFTMAX_CE;
    struct farm_tensor out = {0};
    assert_int_equal(farm_tensor_init(&out, rows, farm_mlp_output(ref)), 0);
    for (int k = 0; k < 3; k++) {
        double lr, lp;
        size_t cr = 0, cp = 0;
        assert_int_equal(farm_mlp_train_step(ref, opt, &f->x[k], ce ? f->labels[k] : NULL,
                                             ce ? NULL : &f->t[k], (size_t)ref_m, &lr, &cr),
                         0);
        if (farm_pipe_step(p, &f->x[k], ce ? f->labels[k] : NULL, ce ? NULL : &f->t[k], 1, &lp, &cp,
                           &out, &err) != 0)
            fail_msg("%s", err.msg);
        if (ref_m == M) {
            assert_true(lp == lr);
            assert_int_equal(cp, cr);
        }
        /* What really ran respects the schedule's dependencies. */
        if (farm_pipe_events_check(farm_pipe_get_schedule(p), farm_pipe_events(p), &err) != 0)
            fail_msg("S=%zu M=%d %s: %s", S, M, farm_pipe_kind_name(kind), err.msg);
    }
    int bad = params_differ(ref, pm, 0);
    farm_pipe_free(p);
    farm_optim_free(opt);
    farm_tensor_release(&out);
    farm_mlp_free(ref);
    farm_mlp_free(pm);
    return bad;
}

static void test_weights_bitwise(void **state)
{
    (void)state;
    struct fixture f;
    make_fixture(&f, MODEL_CE, 30);
    /* Layers: fc1 fc2 act fc3 fc4 head. */
    const size_t cuts[5][4] = {{0}, {0}, {0, 3}, {0, 2, 4}, {0, 1, 3, 5}};
    const int ms[4] = {1, 2, 4, 8};
    const int kinds[2] = {FARM_PIPE_GPIPE, FARM_PIPE_1F1B};
    for (size_t S = 2; S <= 4; S++)
        for (int mi = 0; mi < 4; mi++)
            for (int k = 0; k < 2; k++) {
                int bad = run_equivalence(&f, S, cuts[S], ms[mi], ms[mi], kinds[k], 30);
                if (bad != 0)
                    fail_msg("S=%zu M=%d %s: %d parameter tensors differ", S, ms[mi],
                             farm_pipe_kind_name(kinds[k]), bad);
            }
    /* The comparison is sharp: a different accumulation (M=4 against the
     * reference's M=2) changes the weights. */
    assert_true(run_equivalence(&f, 2, cuts[2], 4, 2, FARM_PIPE_1F1B, 30) > 0);
    free_fixture(&f);
}

static void test_weights_bitwise_mse_adam(void **state)
{
    (void)state;
    struct fixture f;
    make_fixture(&f, MODEL_MSE, 17);
    const size_t c2[2] = {0, 2}, c4[4] = {0, 1, 2, 3};
    assert_int_equal(run_equivalence(&f, 2, c2, 4, 4, FARM_PIPE_GPIPE, 17), 0);
    assert_int_equal(run_equivalence(&f, 4, c4, 8, 8, FARM_PIPE_1F1B, 17), 0);
    assert_int_equal(run_equivalence(&f, 4, c4, 3, 3, FARM_PIPE_1F1B, 17), 0);
    free_fixture(&f);
}

/* Random sleeps before every action reorder how the threads interleave
 * (which stage waits, which queue fills first): the weights must not care. */
static void test_weights_bitwise_under_jitter(void **state)
{
    (void)state;
    struct fixture f;
    make_fixture(&f, MODEL_CE, 30);
    const size_t c3[3] = {0, 2, 4}, c4[4] = {0, 1, 3, 5};
    jitter_us = 300;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(run_equivalence(&f, 3, c3, 8, 8, FARM_PIPE_1F1B, 30), 0);
        assert_int_equal(run_equivalence(&f, 4, c4, 4, 4, FARM_PIPE_GPIPE, 30), 0);
    }
    jitter_us = 0;
    free_fixture(&f);
}

static void test_memory_and_errors(void **state)
{
    (void)state;
    struct fixture f;
    make_fixture(&f, MODEL_CE, 30);
    struct farm_err err;
    struct farm_mlp *m;
    assert_int_equal(farm_mlp_new(f.desc, 1, &m, &err), 0);
    const size_t st[2] = {0, 3};
    struct farm_pipe_options o = {
        .kind = FARM_PIPE_GPIPE, .micro_batches = 8, .stages = 2, .starts = st, .pin = 0};
    struct farm_pipe *g, *b;
    assert_int_equal(farm_pipe_new(m, NULL, &o, 30, &g, &err), 0);
    o.kind = FARM_PIPE_1F1B;
    assert_int_equal(farm_pipe_new(m, NULL, &o, 30, &b, &err), 0);
    /* GPipe keeps all 8 micro-batches' activations, 1F1B at most 2 and 1. */
    assert_true(farm_pipe_buffer_bytes(b) * 2 < farm_pipe_buffer_bytes(g));
    farm_pipe_free(g);
    farm_pipe_free(b);

    o.micro_batches = 0;
    assert_int_equal(farm_pipe_new(m, NULL, &o, 30, &g, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "micro_batches"));
    o.micro_batches = 31;
    assert_int_equal(farm_pipe_new(m, NULL, &o, 30, &g, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "31 micro-batches need a batch of at least 31 rows"));
    o.micro_batches = 2;
    const size_t empty[3] = {0, 3, 3};
    o.starts = empty;
    o.stages = 3;
    assert_int_equal(farm_pipe_new(m, NULL, &o, 30, &g, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "section 1 is empty"));

    const char *bad[] = {"fc3", "fc9"};
    size_t starts[3];
    assert_int_equal(farm_pipe_split_names(m, bad, 2, "split", starts, &err), FARM_EBADPARAM);
    assert_string_equal(err.msg, "split[1]: no layer named \"fc9\"; valid names: fc1, fc2, act, "
                                 "fc3, fc4, head");
    const char *first[] = {"fc1"};
    assert_int_equal(farm_pipe_split_names(m, first, 1, "split", starts, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "section 0 would be empty"));
    const char *back[] = {"fc4", "fc3"};
    assert_int_equal(farm_pipe_split_names(m, back, 2, "split", starts, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "split[1]: \"fc3\" does not come after \"fc4\""));
    const char *twice[] = {"fc3", "fc3"};
    assert_int_equal(farm_pipe_split_names(m, twice, 2, "split", starts, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "section 1 would be empty"));
    const char *good[] = {"act", "head"};
    assert_int_equal(farm_pipe_split_names(m, good, 2, "split", starts, &err), 0);
    assert_int_equal(starts[0], 0);
    assert_int_equal(starts[1], 2);
    assert_int_equal(starts[2], 5);

    /* The automatic split balances measured costs: with costs from the
     * profiler every section is non-empty and the bottleneck is minimal. */
    double cost[6];
    assert_int_equal(farm_pipe_profile_layers(m, 30, 3, cost, &err), 0);
    for (int i = 0; i < 6; i++)
        assert_true(cost[i] > 0.0);
    const double fixed[6] = {1, 5, 1, 1, 2, 2};
    size_t as[3];
    assert_int_equal(farm_pipe_split_auto(m, fixed, 3, as, &err), 0);
    assert_int_equal(as[0], 0); /* bottleneck 6: [fc1 fc2] [act fc3 fc4] [head] */
    assert_int_equal(as[1], 2);
    assert_int_equal(as[2], 5);
    assert_int_equal(farm_pipe_split_auto(m, fixed, 7, as, &err), FARM_EBADPARAM);
    farm_mlp_free(m);
    free_fixture(&f);
}

int main(void)
{
    /* Bitwise equality needs single-threaded BLAS. The variable covers a
     * BLAS that reads it lazily; the call covers one already initialised. */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_section_one_micro),
        cmocka_unit_test(test_weights_bitwise),
        cmocka_unit_test(test_weights_bitwise_mse_adam),
        cmocka_unit_test(test_weights_bitwise_under_jitter),
        cmocka_unit_test(test_memory_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
