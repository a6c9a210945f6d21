/* plugins/nn building blocks: tensors (alignment, views, gather/scatter for
 * row compaction), seeded generators and data sets, optimizers against
 * numpy, the MLP over layer ranges (bitwise equal to the unsplit model, as
 * pipeline sections need), micro-batch accumulation, weights round trip and
 * FLOP counts. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "farm/nn.h"
#include "nn_test_util.h"

#define M_PI_VALUE 3.14159265358979323846

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* ---- tensors --------------------------------------------------------------- */

static void test_tensor_basics(void **state)
{
    (void)state;
    struct farm_tensor t = {0}, v;
    assert_int_equal(farm_tensor_init(&t, 5, 3), 0);
    assert_int_equal((uintptr_t)t.data % FARM_TENSOR_ALIGN, 0);
    for (size_t i = 0; i < 15; i++)
        assert_true(t.data[i] == 0.0f);
    for (size_t i = 0; i < 15; i++)
        t.data[i] = (float)i;
    assert_int_equal(farm_tensor_view_rows(&t, 1, 3, &v), 0);
    assert_int_equal(v.rows, 3);
    assert_int_equal(v.cap, 0);
    assert_true(v.data[0] == 3.0f);
    assert_int_equal(farm_tensor_view_rows(&t, 3, 3, &v), -EINVAL);
    /* A view cannot grow; an owner reallocates and keeps its values. */
    assert_int_equal(farm_tensor_view_rows(&t, 0, 2, &v), 0);
    assert_int_equal(farm_tensor_resize_rows(&v, 2), 0);
    assert_int_equal(farm_tensor_resize_rows(&v, 20), -EINVAL);
    float *before = t.data;
    assert_int_equal(farm_tensor_resize_rows(&t, 2), 0);
    assert_ptr_equal(t.data, before); /* shrinking keeps the buffer */
    assert_int_equal(farm_tensor_resize_rows(&t, 5), 0);
    assert_ptr_equal(t.data, before); /* within capacity again */
    assert_int_equal(farm_tensor_resize_rows(&t, 40), 0);
    assert_int_equal(t.rows, 40);
    assert_int_equal((uintptr_t)t.data % FARM_TENSOR_ALIGN, 0);
    assert_true(t.data[14] == 14.0f && t.data[15] == 0.0f);
    assert_int_equal(farm_tensor_resize_rows(&t, 5), 0);
    const size_t sh[3] = {3, 5, 1};
    assert_int_equal(farm_tensor_reshape(&t, 3, sh), 0);
    assert_int_equal(t.rows, 3);
    assert_int_equal(t.cols, 5);
    const size_t bad[2] = {4, 4};
    assert_int_equal(farm_tensor_reshape(&t, 2, bad), -EINVAL);
    struct farm_tensor c;
    assert_int_equal(farm_tensor_clone(&c, &t), 0);
    assert_true(farm_tensor_equal(&c, &t));
    assert_true(farm_tensor_max_abs_diff(&c, &t) == 0.0);
    c.data[7] += 0.5f;
    assert_false(farm_tensor_equal(&c, &t));
    assert_true(farm_tensor_max_abs_diff(&c, &t) == 0.5);
    farm_tensor_scale(&c, 2.0f);
    assert_true(c.data[7] == 15.0f);
    assert_int_equal(farm_tensor_axpy(&c, -2.0f, &t), 0);
    assert_true(c.data[7] == 1.0f && c.data[3] == 0.0f);
    int32_t am[3];
    farm_tensor_argmax_rows(&t, am);
    assert_int_equal(am[0], 4);
    farm_tensor_release(&c);
    farm_tensor_release(&t);
    farm_tensor_release(NULL);
    /* A 1-D tensor (a bias) stays 1-D at one row, becomes 2-D with more. */
    struct farm_tensor b1;
    assert_int_equal(farm_tensor_init_1d(&b1, 4), 0);
    assert_int_equal(farm_tensor_resize_rows(&b1, 1), 0);
    assert_int_equal(b1.ndim, 1);
    struct farm_tensor bv = b1;
    bv.cap = 0;
    assert_int_equal(farm_tensor_resize_rows(&bv, 1), 0);
    assert_int_equal(farm_tensor_resize_rows(&bv, 2), -EINVAL);
    assert_int_equal(farm_tensor_resize_rows(&b1, 3), 0);
    assert_int_equal(b1.ndim, 2);
    assert_int_equal(b1.rows, 3);
    assert_int_equal(b1.cols, 4);
    farm_tensor_release(&b1);
    struct farm_tensor z = {0};
    farm_tensor_release(&z);
}

static void test_gather_scatter(void **state)
{
    (void)state;
    /* Row compaction as rnnexit does it: keep rows 4, 1, 3 of 6, work on
     * them, scatter the results back; the others stay as they were. */
    struct farm_tensor all, some, back;
    assert_int_equal(farm_tensor_init(&all, 6, 2), 0);
    for (size_t i = 0; i < 12; i++)
        all.data[i] = (float)i;
    const size_t idx[3] = {4, 1, 3};
    assert_int_equal(farm_tensor_init(&some, 3, 2), 0);
    assert_int_equal(farm_tensor_gather_rows(&some, &all, idx, 3), 0);
    assert_true(some.data[0] == 8.0f && some.data[2] == 2.0f && some.data[5] == 7.0f);
    farm_tensor_scale(&some, 10.0f);
    assert_int_equal(farm_tensor_clone(&back, &all), 0);
    assert_int_equal(farm_tensor_scatter_rows(&back, &some, idx, 3), 0);
    assert_true(back.data[8] == 80.0f && back.data[2] == 20.0f && back.data[0] == 0.0f &&
                back.data[10] == 10.0f);
    assert_int_equal(farm_tensor_scatter_add_rows(&back, &some, idx, 3), 0);
    assert_true(back.data[8] == 160.0f && back.data[4] == 4.0f);
    const size_t out_of_range[2] = {0, 6};
    struct farm_tensor two;
    assert_int_equal(farm_tensor_init(&two, 2, 2), 0);
    assert_int_equal(farm_tensor_gather_rows(&two, &all, out_of_range, 2), -EINVAL);
    assert_int_equal(farm_tensor_scatter_rows(&all, &two, out_of_range, 2), -EINVAL);
    assert_int_equal(farm_tensor_gather_rows(&two, &all, idx, 3), -EINVAL); /* wrong rows */
    farm_tensor_release(&two);
    farm_tensor_release(&all);
    farm_tensor_release(&some);
    farm_tensor_release(&back);
}

static void test_gemm_shapes(void **state)
{
    (void)state;
    struct farm_tensor a, b, c;
    assert_int_equal(farm_tensor_init(&a, 2, 3), 0);
    assert_int_equal(farm_tensor_init(&b, 2, 4), 0);
    assert_int_equal(farm_tensor_init(&c, 3, 4), 0);
    const float av[6] = {1, 2, 3, 4, 5, 6}, bv[8] = {1, 0, 0, 1, 0, 1, 1, 0};
    memcpy(a.data, av, sizeof av);
    memcpy(b.data, bv, sizeof bv);
    /* C = A^T B: [[1,4,4,1],[2,5,5,2],[3,6,6,3]] */
    assert_int_equal(farm_nn_gemm(true, false, 1.0f, &a, &b, 0.0f, &c), 0);
    assert_true(c.data[0] == 1 && c.data[1] == 4 && c.data[4] == 2 && c.data[11] == 3);
    /* accumulate */
    assert_int_equal(farm_nn_gemm(true, false, 1.0f, &a, &b, 1.0f, &c), 0);
    assert_true(c.data[1] == 8);
    assert_int_equal(farm_nn_gemm(false, false, 1.0f, &a, &b, 0.0f, &c), -EINVAL);
    farm_tensor_release(&a);
    farm_tensor_release(&b);
    farm_tensor_release(&c);
}

/* ---- generators ---------------------------------------------------------- */

static void test_rng_determinism(void **state)
{
    (void)state;
    struct farm_rng a, b, c;
    farm_rng_seed(&a, 123);
    farm_rng_seed(&b, 123);
    farm_rng_seed(&c, 124);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = farm_rng_next(&a);
        assert_true(x == farm_rng_next(&b));
        differ += x != farm_rng_next(&c);
    }
    assert_int_equal(differ, 100);
    /* Uniform in [0,1), normal with mean 0 and variance 1 (loosely), and
     * below(n) within range and hitting every value. */
    double s = 0, s2 = 0;
    int seen[7] = {0};
    for (int i = 0; i < 20000; i++) {
        double u = farm_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        double z = farm_rng_normal(&a);
        s += z;
        s2 += z * z;
        uint64_t k = farm_rng_below(&a, 7);
        assert_true(k < 7);
        seen[k]++;
    }
    assert_true(fabs(s / 20000) < 0.05);
    assert_true(fabs(s2 / 20000 - 1.0) < 0.05);
    for (int k = 0; k < 7; k++)
        assert_true(seen[k] > 2500);
    size_t p[10];
    for (size_t i = 0; i < 10; i++)
        p[i] = i;
    farm_rng_shuffle(&a, p, 10);
    int sum = 0;
    for (size_t i = 0; i < 10; i++)
        sum += (int)p[i];
    assert_int_equal(sum, 45);
    struct farm_rng f1, f2;
    farm_rng_seed(&a, 5);
    farm_rng_seed(&b, 5);
    farm_rng_fork(&a, &f1);
    farm_rng_fork(&b, &f2);
    assert_true(farm_rng_next(&f1) == farm_rng_next(&f2));
}

static void assert_same_dataset(const struct farm_dataset *a, const struct farm_dataset *b)
{
    assert_int_equal(a->n, b->n);
    assert_true(farm_tensor_equal(&a->x, &b->x));
    assert_memory_equal(a->labels, b->labels, a->n * sizeof *a->labels);
}

static void test_synthetic_sets(void **state)
{
    (void)state;
    struct farm_err err;
    struct farm_dataset a, b, c;
    assert_int_equal(farm_data_blobs(&a, 300, 4, 3, 1.0f, 9, &err), 0);
    assert_int_equal(farm_data_blobs(&b, 300, 4, 3, 1.0f, 9, &err), 0);
    assert_int_equal(farm_data_blobs(&c, 300, 4, 3, 1.0f, 10, &err), 0);
    assert_same_dataset(&a, &b);
    assert_false(farm_tensor_equal(&a.x, &c.x));
    assert_int_equal(a.classes, 3);
    assert_int_equal(a.labels[4], 1);
    farm_dataset_release(&a);
    farm_dataset_release(&b);
    farm_dataset_release(&c);
    assert_int_equal(farm_data_blobs(&a, 0, 4, 3, 1.0f, 9, &err), -EINVAL);

    assert_int_equal(farm_data_spirals(&a, 500, 0.0f, 1.5f, 4, &err), 0);
    assert_int_equal(farm_data_spirals(&b, 500, 0.0f, 1.5f, 4, &err), 0);
    assert_same_dataset(&a, &b);
    /* Noise-free points lie on r = t / tmax with angle t + c*pi. */
    for (size_t i = 0; i < a.n; i++) {
        double x = a.x.data[2 * i], y = a.x.data[2 * i + 1];
        double r = hypot(x, y);
        assert_true(r <= 1.0 + 1e-6);
        double t = r * 1.5 * 2 * M_PI_VALUE;
        double ang = t + (a.labels[i] ? M_PI_VALUE : 0.0);
        assert_true(fabs(x - r * cos(ang)) < 1e-4 && fabs(y - r * sin(ang)) < 1e-4);
    }
    farm_dataset_release(&a);
    farm_dataset_release(&b);

    /* FedProx synthetic(1, 1): per-client data of 60 features and 10
     * classes; reproducible; clients differ; feature j has variance j^-1.2
     * around the client's mean. */
    struct farm_dataset cl[3], cl2[3];
    const size_t counts[3] = {4000, 50, 70};
    assert_int_equal(farm_data_fedprox_synthetic(cl, 3, counts, 1.0, 1.0, 77, &err), 0);
    assert_int_equal(farm_data_fedprox_synthetic(cl2, 3, counts, 1.0, 1.0, 77, &err), 0);
    for (int k = 0; k < 3; k++) {
        assert_same_dataset(&cl[k], &cl2[k]);
        assert_int_equal(cl[k].x.cols, FARM_FEDPROX_DIM);
        assert_int_equal(cl[k].classes, FARM_FEDPROX_CLASSES);
        assert_int_equal(cl[k].n, counts[k]);
        for (size_t i = 0; i < cl[k].n; i++)
            assert_true(cl[k].labels[i] >= 0 && cl[k].labels[i] < 10);
    }
    const size_t cols[3] = {0, 9, 59};
    for (int q = 0; q < 3; q++) {
        size_t j = cols[q];
        double m = 0, v = 0;
        for (size_t i = 0; i < cl[0].n; i++)
            m += cl[0].x.data[i * 60 + j];
        m /= (double)cl[0].n;
        for (size_t i = 0; i < cl[0].n; i++) {
            double d = cl[0].x.data[i * 60 + j] - m;
            v += d * d;
        }
        v /= (double)(cl[0].n - 1);
        double want = pow((double)(j + 1), -1.2);
        if (fabs(v / want - 1.0) > 0.1)
            fail_msg("feature %zu: variance %g, expected %g", j, v, want);
    }
    assert_false(cl[1].x.data[0] == cl[2].x.data[0]);
    for (int k = 0; k < 3; k++) {
        farm_dataset_release(&cl[k]);
        farm_dataset_release(&cl2[k]);
    }
    /* Counts drawn like the reference (lognormal(4, 2) + 50). */
    assert_int_equal(farm_data_fedprox_synthetic(cl, 3, NULL, 0.5, 0.5, 1, &err), 0);
    for (int k = 0; k < 3; k++) {
        assert_true(cl[k].n >= 50);
        farm_dataset_release(&cl[k]);
    }
}

static void test_split_and_batch(void **state)
{
    (void)state;
    struct farm_err err;
    struct farm_dataset d, tr, te, tr2, te2;
    assert_int_equal(farm_data_blobs(&d, 101, 3, 2, 1.0f, 1, &err), 0);
    assert_int_equal(farm_data_split(&d, 0.2, 8, &tr, &te, &err), 0);
    assert_int_equal(te.n, 20);
    assert_int_equal(tr.n, 81);
    assert_int_equal(farm_data_split(&d, 0.2, 8, &tr2, &te2, &err), 0);
    assert_same_dataset(&te, &te2);
    /* Train and test partition the set: every row lands in exactly one. */
    double sum_all = 0, sum_parts = 0;
    for (size_t i = 0; i < farm_tensor_size(&d.x); i++)
        sum_all += d.x.data[i];
    for (size_t i = 0; i < farm_tensor_size(&tr.x); i++)
        sum_parts += tr.x.data[i];
    for (size_t i = 0; i < farm_tensor_size(&te.x); i++)
        sum_parts += te.x.data[i];
    assert_true(fabs(sum_all - sum_parts) < 1e-3);
    assert_int_equal(farm_data_split(&d, 1.5, 8, &tr2, &te2, &err), -EINVAL);
    assert_contains(err.msg, "(0, 1)");
    /* Standardize: train columns get mean 0, sd 1. */
    assert_int_equal(farm_data_standardize(&tr, &te), 0);
    double m = 0;
    for (size_t i = 0; i < tr.n; i++)
        m += tr.x.data[i * 3 + 1];
    assert_true(fabs(m / (double)tr.n) < 1e-5);
    /* Batches in a given order. */
    struct farm_tensor xb;
    assert_int_equal(farm_tensor_init(&xb, 4, 3), 0);
    int32_t lb[4];
    const size_t order[5] = {7, 3, 0, 9, 2};
    assert_int_equal(farm_data_batch(&d, order, 1, 4, &xb, lb, NULL), 0);
    assert_int_equal(xb.rows, 4);
    assert_true(xb.data[0] == d.x.data[9] && lb[2] == d.labels[9]);
    assert_int_equal(farm_data_batch(&d, NULL, 100, 2, &xb, lb, NULL), -EINVAL);
    farm_tensor_release(&xb);
    farm_dataset_release(&d);
    farm_dataset_release(&tr);
    farm_dataset_release(&te);
    farm_dataset_release(&tr2);
    farm_dataset_release(&te2);
}

/* ---- optimizers ------------------------------------------------------------ */

static void test_optimizers_vs_numpy(void **state)
{
    (void)state;
    char dir[512];
    nt_tmpdir(dir, sizeof dir);
    struct farm_tensor p0, grads, cfgt;
    assert_int_equal(farm_tensor_init(&p0, 2, 5), 0);
    assert_int_equal(farm_tensor_init(&grads, 3, 10), 0);
    assert_int_equal(farm_tensor_init(&cfgt, 1, 6), 0);
    nt_fill(&p0, 1, 1.0f);
    nt_fill(&grads, 2, 1.0f);
    const float cv[6] = {0.05f, 0.9f, 0.8f, 0.95f, 1e-6f, 0.01f};
    memcpy(cfgt.data, cv, sizeof cv);
    nt_save(dir, "p0", &p0);
    nt_save(dir, "grads", &grads);
    nt_save(dir, "config", &cfgt);
    assert_int_equal(nt_oracle("optim", dir), 0);
    for (int kind = 0; kind < 2; kind++) {
        struct farm_optim_config cfg;
        farm_optim_config_default(&cfg, kind ? FARM_OPTIM_ADAM : FARM_OPTIM_SGD);
        cfg.lr = cv[0];
        cfg.momentum = kind ? 0.0f : cv[1];
        cfg.beta1 = cv[2];
        cfg.beta2 = cv[3];
        cfg.eps = cv[4];
        cfg.weight_decay = cv[5];
        /* Two parameters of one optimizer: a 1x5 and a 1x5 row. */
        struct farm_tensor a, b, ga, gb;
        assert_int_equal(farm_tensor_init(&a, 1, 5), 0);
        assert_int_equal(farm_tensor_init(&b, 1, 5), 0);
        assert_int_equal(farm_tensor_init(&ga, 1, 5), 0);
        assert_int_equal(farm_tensor_init(&gb, 1, 5), 0);
        memcpy(a.data, p0.data, 5 * sizeof(float));
        memcpy(b.data, p0.data + 5, 5 * sizeof(float));
        struct farm_nn_param ps[2] = {{.name = "a", .value = &a, .grad = &ga},
                                   {.name = "b", .value = &b, .grad = &gb}};
        struct farm_optim *o;
        struct farm_err err;
        assert_int_equal(farm_optim_new(&cfg, ps, 2, &o, &err), 0);
        for (int s = 0; s < 3; s++) {
            memcpy(ga.data, grads.data + s * 10, 5 * sizeof(float));
            memcpy(gb.data, grads.data + s * 10 + 5, 5 * sizeof(float));
            farm_optim_step(o);
        }
        assert_int_equal(farm_optim_steps(o), 3);
        struct farm_tensor all;
        assert_int_equal(farm_tensor_init(&all, 2, 5), 0);
        memcpy(all.data, a.data, 5 * sizeof(float));
        memcpy(all.data + 5, b.data, 5 * sizeof(float));
        nt_assert_close(&all, dir, kind ? "adam" : "sgd", 1e-5);
        farm_optim_free(o);
        farm_tensor_release(&all);
        farm_tensor_release(&a);
        farm_tensor_release(&b);
        farm_tensor_release(&ga);
        farm_tensor_release(&gb);
    }
    /* Bad configurations are refused with a message. */
    struct farm_optim_config bad;
    farm_optim_config_default(&bad, FARM_OPTIM_SGD);
    bad.lr = -1;
    struct farm_optim *o = NULL;
    struct farm_err err;
    assert_int_equal(farm_optim_new(&bad, NULL, 0, &o, &err), -EINVAL);
    assert_contains(err.msg, "lr");
    farm_optim_config_default(&bad, FARM_OPTIM_SGD);
    bad.momentum = 1.0f;
    assert_int_equal(farm_optim_new(&bad, NULL, 0, &o, &err), -EINVAL);
    assert_contains(err.msg, "momentum");
    assert_null(o);
    farm_tensor_release(&p0);
    farm_tensor_release(&grads);
    farm_tensor_release(&cfgt);
    nt_rmdir(dir);
}

/* ---- MLP over ranges ------------------------------------------------------ */

static const char deep_yaml[] = "input: 12\n"
                                "layers:\n"
                                "  - {name: fc1, type: dense, out: 32, activation: relu}\n"
                                "  - {name: fc2, type: dense, out: 24, activation: gelu}\n"
                                "  - {name: act, type: activation, activation: tanh}\n"
                                "  - {name: fc3, type: dense, out: 16, activation: sigmoid}\n"
                                "  - {name: fc4, type: dense, out: 5}\n"
                                "optimizer: {type: adam, lr: 0.01}\n";

static struct farm_mlp *deep_model(uint64_t seed)
{
    struct farm_err err;
    struct farm_model_desc *d;
    if (farm_model_desc_parse(deep_yaml, strlen(deep_yaml), "deep.yaml", &d, &err) < 0)
        fail_msg("%s", err.msg);
    struct farm_mlp *m;
    assert_int_equal(farm_mlp_new(d, seed, &m, &err), 0);
    farm_model_desc_free(d);
    return m;
}

static void assert_grads_equal(struct farm_mlp *a, struct farm_mlp *b)
{
    struct farm_nn_param pa[16], pb[16];
    size_t n = farm_mlp_params(a, 0, farm_mlp_n_layers(a), pa, 16);
    assert_int_equal(n, farm_mlp_params(b, 0, farm_mlp_n_layers(b), pb, 16));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(pa[i].name, pb[i].name);
        if (!farm_tensor_equal(pa[i].grad, pb[i].grad))
            fail_msg("%s: gradients differ", pa[i].name);
        if (!farm_tensor_equal(pa[i].value, pb[i].value))
            fail_msg("%s: values differ", pa[i].name);
    }
}

static void test_mlp_split_is_bitwise_equal(void **state)
{
    (void)state;
    struct farm_mlp *whole = deep_model(1), *parts = deep_model(1);
    assert_int_equal(farm_mlp_n_layers(whole), 5);
    assert_string_equal(farm_mlp_layer(whole, 2)->name, "act");
    assert_null(farm_mlp_dense(whole, 2));
    assert_int_equal(farm_mlp_params(whole, 0, 5, NULL, 0), 8);
    assert_int_equal(farm_mlp_params(whole, 2, 4, NULL, 0), 2);
    const size_t B = 19;
    struct farm_tensor x, dy;
    assert_int_equal(farm_tensor_init(&x, B, 12), 0);
    assert_int_equal(farm_tensor_init(&dy, B, 5), 0);
    nt_fill(&x, 4, 1.0f);
    nt_fill(&dy, 5, 0.1f);
    /* Whole range. */
    struct farm_mlp_work *w;
    const struct farm_tensor *y_whole, *dx_whole;
    assert_int_equal(farm_mlp_work_new(whole, 0, 5, B, &w), 0);
    assert_true(farm_mlp_work_bytes(w) > 0);
    farm_mlp_zero_grad(whole, 0, 5);
    assert_int_equal(farm_mlp_forward(whole, w, &x, &y_whole), 0);
    assert_int_equal(farm_mlp_backward(whole, w, &dy, &dx_whole), 0);
    /* Three sections, cut before "act" and before "fc4"; the context that
     * crosses a cut is copied, as it would be between stages. */
    const size_t cuts[4] = {0, 2, 4, 5};
    struct farm_mlp_work *ws[3];
    struct farm_tensor ctx[3], grad[3];
    farm_mlp_zero_grad(parts, 0, 5);
    const struct farm_tensor *in = &x, *y = NULL;
    for (int s = 0; s < 3; s++) {
        assert_int_equal(farm_mlp_work_new(parts, cuts[s], cuts[s + 1], B, &ws[s]), 0);
        assert_int_equal(farm_mlp_forward(parts, ws[s], in, &y), 0);
        assert_int_equal(farm_tensor_clone(&ctx[s], y), 0);
        in = &ctx[s];
    }
    assert_true(farm_tensor_equal(&ctx[2], y_whole));
    const struct farm_tensor *g = &dy, *dx = NULL;
    for (int s = 2; s >= 0; s--) {
        assert_int_equal(farm_mlp_backward(parts, ws[s], g, &dx), 0);
        assert_int_equal(farm_tensor_clone(&grad[s], dx), 0);
        g = &grad[s];
    }
    assert_true(farm_tensor_equal(&grad[0], dx_whole));
    assert_grads_equal(whole, parts);
    for (int s = 0; s < 3; s++) {
        farm_mlp_work_free(ws[s]);
        farm_tensor_release(&ctx[s]);
        farm_tensor_release(&grad[s]);
    }
    /* Bad ranges and shapes. */
    struct farm_mlp_work *bad;
    assert_int_equal(farm_mlp_work_new(whole, 3, 3, B, &bad), -EINVAL);
    assert_int_equal(farm_mlp_work_new(whole, 0, 6, B, &bad), -EINVAL);
    const struct farm_tensor *yy;
    assert_int_equal(farm_mlp_forward(whole, w, &dy, &yy), -EINVAL);
    farm_mlp_work_free(w);
    farm_tensor_release(&x);
    farm_tensor_release(&dy);
    farm_mlp_free(whole);
    farm_mlp_free(parts);
}

static void test_micro_batches_match_staged_schedule(void **state)
{
    (void)state;
    /* farm_mlp_train_step with M micro-batches against a GPipe-like run of
     * two sections: all forwards, then the backwards in micro-batch order,
     * one optimizer per section. Weights after 3 steps: bitwise equal. */
    const size_t B = 23, M = 4;
    struct farm_mlp *ref = deep_model(2), *pip = deep_model(2);
    struct farm_err err;
    struct farm_optim_config cfg;
    farm_optim_config_default(&cfg, FARM_OPTIM_ADAM);
    cfg.lr = 0.01f;
    struct farm_nn_param pr[16], p1[16], p2[16];
    size_t nr = farm_mlp_params(ref, 0, 5, pr, 16);
    size_t n1 = farm_mlp_params(pip, 0, 3, p1, 16);
    size_t n2 = farm_mlp_params(pip, 3, 5, p2, 16);
    struct farm_optim *oref, *o1, *o2;
    assert_int_equal(farm_optim_new(&cfg, pr, nr, &oref, &err), 0);
    assert_int_equal(farm_optim_new(&cfg, p1, n1, &o1, &err), 0);
    assert_int_equal(farm_optim_new(&cfg, p2, n2, &o2, &err), 0);
    struct farm_tensor x, dy;
    int32_t labels[23];
    assert_int_equal(farm_tensor_init(&x, B, 12), 0);
    assert_int_equal(farm_tensor_init(&dy, 6, 5), 0);
    struct farm_mlp_work *w1[4], *w2[4];
    struct farm_tensor ctx[4];
    for (size_t k = 0; k < M; k++) {
        assert_int_equal(farm_mlp_work_new(pip, 0, 3, 6, &w1[k]), 0);
        assert_int_equal(farm_mlp_work_new(pip, 3, 5, 6, &w2[k]), 0);
        assert_int_equal(farm_tensor_init(&ctx[k], 6, 24), 0);
    }
    for (int step = 0; step < 3; step++) {
        nt_fill(&x, 100 + (uint64_t)step, 1.0f);
        for (size_t i = 0; i < B; i++)
            labels[i] = (int32_t)((i * 3 + (size_t)step) % 5);
        double lref;
        assert_int_equal(farm_mlp_train_step(ref, oref, &x, labels, NULL, M, &lref, NULL), 0);
        farm_mlp_zero_grad(pip, 0, 5);
        double lsum = 0;
        const struct farm_tensor *y;
        for (size_t k = 0; k < M; k++) {
            size_t first, count;
            farm_mlp_micro_slice(B, M, k, &first, &count);
            struct farm_tensor xs;
            assert_int_equal(farm_tensor_view_rows(&x, first, count, &xs), 0);
            assert_int_equal(farm_mlp_forward(pip, w1[k], &xs, &y), 0);
            assert_int_equal(farm_tensor_resize_rows(&ctx[k], count), 0);
            assert_int_equal(farm_tensor_copy(&ctx[k], y), 0);
            assert_int_equal(farm_mlp_forward(pip, w2[k], &ctx[k], &y), 0);
        }
        for (size_t k = 0; k < M; k++) {
            size_t first, count;
            farm_mlp_micro_slice(B, M, k, &first, &count);
            /* The loss needs this micro-batch's output again: recompute
             * nothing, it is still in its work (re-run forward of the last
             * section only to get the pointer; same inputs, same bits). */
            assert_int_equal(farm_mlp_forward(pip, w2[k], &ctx[k], &y), 0);
            assert_int_equal(farm_tensor_resize_rows(&dy, count), 0);
            double l;
            assert_int_equal(
                farm_loss_softmax_ce(y, labels + first, 1.0f / (float)B, &dy, &l, NULL), 0);
            lsum += l;
            const struct farm_tensor *g;
            assert_int_equal(farm_mlp_backward(pip, w2[k], &dy, &g), 0);
            assert_int_equal(farm_mlp_backward(pip, w1[k], g, NULL), 0);
        }
        farm_optim_step(o1);
        farm_optim_step(o2);
        assert_true(lsum == lref);
        assert_grads_equal(ref, pip);
    }
    size_t first, count, total = 0;
    for (size_t k = 0; k < M; k++) {
        farm_mlp_micro_slice(B, M, k, &first, &count);
        assert_int_equal(first, total);
        assert_int_equal(count, k < 3 ? 6 : 5);
        total += count;
    }
    assert_int_equal(total, B);
    assert_int_equal(farm_mlp_train_step(ref, NULL, &x, labels, NULL, 0, NULL, NULL), -EINVAL);
    assert_int_equal(farm_mlp_train_step(ref, NULL, &x, labels, NULL, B + 1, NULL, NULL), -EINVAL);
    for (size_t k = 0; k < M; k++) {
        farm_mlp_work_free(w1[k]);
        farm_mlp_work_free(w2[k]);
        farm_tensor_release(&ctx[k]);
    }
    farm_optim_free(oref);
    farm_optim_free(o1);
    farm_optim_free(o2);
    farm_tensor_release(&x);
    farm_tensor_release(&dy);
    farm_mlp_free(ref);
    farm_mlp_free(pip);
}

/* Two sections on two threads at once, as pipeline stages run: section 1
 * does B(t-2) and F(t) while section 2 does F and B of micro-batch t-1.
 * The contract says calls on disjoint ranges may run concurrently; the
 * gradients must equal the single-threaded reference bit for bit. */
enum { TB = 24, TM = 4, TS = 6 };

struct conc {
    struct farm_mlp *m;
    struct farm_tensor *x;
    int32_t *labels;
    struct farm_mlp_work *w1[TM], *w2[TM];
    struct farm_tensor ctx[TM], back[TM], dy[TM];
    int tick, rc1, rc2;
};

static void *section1(void *arg)
{
    struct conc *c = arg;
    int t = c->tick, rc = 0;
    const struct farm_tensor *y;
    if (t >= 2 && rc == 0)
        rc = farm_mlp_backward(c->m, c->w1[t - 2], &c->back[t - 2], NULL);
    if (t < TM && rc == 0) {
        struct farm_tensor xs;
        farm_tensor_view_rows(c->x, (size_t)t * TS, TS, &xs);
        rc = farm_mlp_forward(c->m, c->w1[t], &xs, &y);
        if (rc == 0)
            rc = farm_tensor_copy(&c->ctx[t], y);
    }
    c->rc1 = rc;
    return NULL;
}

static void *section2(void *arg)
{
    struct conc *c = arg;
    int k = c->tick - 1, rc = 0;
    if (k >= 0 && k < TM) {
        const struct farm_tensor *y, *dx;
        rc = farm_mlp_forward(c->m, c->w2[k], &c->ctx[k], &y);
        if (rc == 0)
            rc = farm_loss_softmax_ce(y, c->labels + k * TS, 1.0f / TB, &c->dy[k], NULL, NULL);
        if (rc == 0)
            rc = farm_mlp_backward(c->m, c->w2[k], &c->dy[k], &dx);
        if (rc == 0)
            rc = farm_tensor_copy(&c->back[k], dx);
    }
    c->rc2 = rc;
    return NULL;
}

static void test_sections_on_two_threads(void **state)
{
    (void)state;
    struct farm_mlp *ref = deep_model(9), *par = deep_model(9);
    struct farm_tensor x;
    int32_t labels[TB];
    assert_int_equal(farm_tensor_init(&x, TB, 12), 0);
    nt_fill(&x, 77, 1.0f);
    for (int i = 0; i < TB; i++)
        labels[i] = i % 5;
    assert_int_equal(farm_mlp_train_step(ref, NULL, &x, labels, NULL, TM, NULL, NULL), 0);
    struct conc c = {.m = par, .x = &x, .labels = labels};
    for (int k = 0; k < TM; k++) {
        assert_int_equal(farm_mlp_work_new(par, 0, 3, TS, &c.w1[k]), 0);
        assert_int_equal(farm_mlp_work_new(par, 3, 5, TS, &c.w2[k]), 0);
        assert_int_equal(farm_tensor_init(&c.ctx[k], TS, 24), 0);
        assert_int_equal(farm_tensor_init(&c.back[k], TS, 24), 0);
        assert_int_equal(farm_tensor_init(&c.dy[k], TS, 5), 0);
    }
    farm_mlp_zero_grad(par, 0, 5);
    for (c.tick = 0; c.tick <= TM + 1; c.tick++) {
        pthread_t t1, t2;
        assert_int_equal(pthread_create(&t1, NULL, section1, &c), 0);
        assert_int_equal(pthread_create(&t2, NULL, section2, &c), 0);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        assert_int_equal(c.rc1, 0);
        assert_int_equal(c.rc2, 0);
    }
    assert_grads_equal(ref, par);
    for (int k = 0; k < TM; k++) {
        farm_mlp_work_free(c.w1[k]);
        farm_mlp_work_free(c.w2[k]);
        farm_tensor_release(&c.ctx[k]);
        farm_tensor_release(&c.back[k]);
        farm_tensor_release(&c.dy[k]);
    }
    farm_tensor_release(&x);
    farm_mlp_free(ref);
    farm_mlp_free(par);
}

static void test_mlp_weights_and_flops(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct farm_mlp *a = deep_model(7), *b = deep_model(8);
    /* Different seeds, different weights; the same seed, the same ones. */
    assert_false(farm_tensor_equal(&farm_mlp_dense(a, 0)->w, &farm_mlp_dense(b, 0)->w));
    struct farm_mlp *a2 = deep_model(7);
    assert_true(farm_tensor_equal(&farm_mlp_dense(a, 3)->w, &farm_mlp_dense(a2, 3)->w));
    farm_mlp_free(a2);
    assert_int_equal(farm_mlp_save(a, nt_path(p, sizeof p, dir, "w.safetensors"), &err), 0);
    assert_int_equal(farm_mlp_load(b, p, &err), 0);
    for (size_t i = 0; i < 5; i++)
        if (farm_mlp_dense(a, i)) {
            assert_true(farm_tensor_equal(&farm_mlp_dense(a, i)->w, &farm_mlp_dense(b, i)->w));
            assert_true(farm_tensor_equal(&farm_mlp_dense(a, i)->b, &farm_mlp_dense(b, i)->b));
        }
    /* Another architecture cannot load them. */
    static const char small[] = "input: 12\nlayers:\n  - {name: fc1, type: dense, out: 31}\n";
    struct farm_model_desc *d;
    assert_int_equal(farm_model_desc_parse(small, strlen(small), "s.yaml", &d, &err), 0);
    struct farm_mlp *s;
    assert_int_equal(farm_mlp_new(d, 1, &s, &err), 0);
    assert_int_equal(farm_mlp_load(s, p, &err), FARM_EBADDATA);
    assert_contains(err.msg, "w.safetensors: tensor \"fc1.");
    assert_contains(err.msg, "the model has [");
    farm_mlp_free(s);
    farm_model_desc_free(d);
    /* FLOPs: 2*rows*in*out for the product, rows*out for the bias, and the
     * activation (relu 1, sigmoid/tanh 4, gelu 8 per element). */
    assert_true(farm_mlp_layer_flops(a, 0, 10, false) == 2.0 * 10 * 12 * 32 + 320 + 320);
    assert_true(farm_mlp_layer_flops(a, 0, 10, true) == 4.0 * 10 * 12 * 32 + 320 + 320);
    assert_true(farm_mlp_layer_flops(a, 1, 10, false) == 2.0 * 10 * 32 * 24 + 240 + 8 * 240);
    assert_true(farm_mlp_layer_flops(a, 2, 10, false) == 4.0 * 240);
    assert_true(farm_mlp_layer_flops(a, 4, 10, false) == 2.0 * 10 * 16 * 5 + 50);
    assert_true(farm_flops_dense_forward(256, 1024, 1024, FARM_ACT_RELU) ==
                2.0 * 256 * 1024 * 1024 + 2.0 * 256 * 1024);
    /* The recurrent cells are dominated by their products. */
    double gf = farm_flops_gru_forward(8, 10, 20), lf = farm_flops_lstm_forward(8, 10, 20);
    assert_true(gf > 2.0 * 8 * 30 * 60 && gf < 1.3 * 2.0 * 8 * 30 * 60);
    assert_true(lf > 2.0 * 8 * 30 * 80 && lf < 1.3 * 2.0 * 8 * 30 * 80);
    assert_true(farm_flops_gru_backward(8, 10, 20) > 1.8 * gf);
    assert_true(farm_flops_lstm_backward(8, 10, 20) > 1.8 * lf);
    farm_mlp_free(a);
    farm_mlp_free(b);
    nt_rmdir(dir);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_basics),
        cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_gemm_shapes),
        cmocka_unit_test(test_rng_determinism),
        cmocka_unit_test(test_synthetic_sets),
        cmocka_unit_test(test_split_and_batch),
        cmocka_unit_test(test_optimizers_vs_numpy),
        cmocka_unit_test(test_mlp_split_is_bitwise_equal),
        cmocka_unit_test(test_micro_batches_match_staged_schedule),
        cmocka_unit_test(test_sections_on_two_threads),
        cmocka_unit_test(test_mlp_weights_and_flops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
