/* Finite-difference checks of every backward in plugins/nn: dense with each
 * activation (dW, db, dX), softmax cross-entropy, and two-step BPTT through
 * the GRU and LSTM cells (all weight gradients, dX, dH0, dC0). Central
 * differences of a double-accumulated scalar loss; tolerance 1e-2 relative
 * to the largest analytic gradient of the tensor (float32 arithmetic). */
#include <errno.h>
#include <math.h>
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

#define EPS 1e-3f
#define TOL 1e-2

typedef double (*loss_fn)(void *ctx);

static double dot(const struct farm_tensor *a, const struct farm_tensor *r)
{
    double s = 0;
    for (size_t i = 0; i < farm_tensor_size(a); i++)
        s += (double)a->data[i] * (double)r->data[i];
    return s;
}

/* Compares the analytic gradient `ana` of f with respect to t's values. */
static void check(const char *what, struct farm_tensor *t, const struct farm_tensor *ana, loss_fn f,
                  void *ctx)
{
    size_t n = farm_tensor_size(t);
    assert_int_equal(n, farm_tensor_size(ana));
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ana->data[i]));
    assert_true(scale > 0); /* a gradient that is all zero would prove nothing */
    for (size_t i = 0; i < n; i++) {
        float keep = t->data[i];
        t->data[i] = keep + EPS;
        double up = f(ctx);
        t->data[i] = keep - EPS;
        double down = f(ctx);
        t->data[i] = keep;
        /* Use the step actually represented in float32. */
        double h = (double)(keep + EPS) - (double)(keep - EPS);
        double num = (up - down) / h;
        double d = fabs(num - ana->data[i]);
        if (!(d <= TOL * scale))
            fail_msg("%s[%zu]: analytic %.6g, numeric %.6g (max|g| %.3g)", what, i,
                     (double)ana->data[i], num, scale);
    }
}

/* ---- dense + activation ------------------------------------------------ */

struct dense_ctx {
    struct farm_dense d;
    enum farm_act act;
    struct farm_tensor x, z, y, r;
};

static double dense_loss(void *p)
{
    struct dense_ctx *c = p;
    farm_dense_forward(&c->d, &c->x, &c->z);
    farm_act_forward(c->act, &c->z, &c->y);
    return dot(&c->y, &c->r);
}

static void run_dense(enum farm_act act)
{
    struct dense_ctx c;
    memset(&c, 0, sizeof c);
    c.act = act;
    assert_int_equal(farm_dense_init(&c.d, 5, 4), 0);
    struct farm_rng rng;
    farm_rng_seed(&rng, 100 + act);
    farm_dense_init_params(&c.d, FARM_INIT_XAVIER, &rng);
    nt_fill(&c.d.b, 7, 0.3f);
    assert_int_equal(farm_tensor_init(&c.x, 6, 5), 0);
    assert_int_equal(farm_tensor_init(&c.z, 6, 4), 0);
    assert_int_equal(farm_tensor_init(&c.y, 6, 4), 0);
    assert_int_equal(farm_tensor_init(&c.r, 6, 4), 0);
    nt_fill(&c.x, 8, 1.0f);
    nt_fill(&c.r, 9, 1.0f);
    dense_loss(&c);
    struct farm_tensor dz, dx;
    assert_int_equal(farm_tensor_init(&dz, 6, 4), 0);
    assert_int_equal(farm_tensor_init(&dx, 6, 5), 0);
    assert_int_equal(farm_act_backward(act, &c.z, &c.y, &c.r, &dz), 0);
    farm_dense_zero_grad(&c.d);
    assert_int_equal(farm_dense_backward(&c.d, &c.x, &dz, &dx), 0);
    char what[64];
    snprintf(what, sizeof what, "dense+%s dW", farm_act_name(act));
    check(what, &c.d.w, &c.d.dw, dense_loss, &c);
    snprintf(what, sizeof what, "dense+%s db", farm_act_name(act));
    check(what, &c.d.b, &c.d.db, dense_loss, &c);
    snprintf(what, sizeof what, "dense+%s dX", farm_act_name(act));
    check(what, &c.x, &dx, dense_loss, &c);
    /* Backward accumulates: a second call doubles dW exactly. */
    struct farm_tensor once;
    assert_int_equal(farm_tensor_clone(&once, &c.d.dw), 0);
    assert_int_equal(farm_dense_backward(&c.d, &c.x, &dz, NULL), 0);
    for (size_t i = 0; i < farm_tensor_size(&once); i++)
        assert_true(c.d.dw.data[i] == 2.0f * once.data[i]);
    farm_tensor_release(&once);
    farm_tensor_release(&dz);
    farm_tensor_release(&dx);
    farm_tensor_release(&c.x);
    farm_tensor_release(&c.z);
    farm_tensor_release(&c.y);
    farm_tensor_release(&c.r);
    farm_dense_release(&c.d);
}

static void test_dense(void **state)
{
    (void)state;
    run_dense(FARM_ACT_NONE);
    run_dense(FARM_ACT_RELU);
    run_dense(FARM_ACT_TANH);
    run_dense(FARM_ACT_SIGMOID);
    run_dense(FARM_ACT_GELU);
}

/* ---- softmax cross-entropy --------------------------------------------- */

struct ce_ctx {
    struct farm_tensor logits;
    int32_t labels[5];
};

static double ce_loss(void *p)
{
    struct ce_ctx *c = p;
    double l;
    farm_loss_softmax_ce(&c->logits, c->labels, 1.0f, NULL, &l, NULL);
    return l / 5.0;
}

static void test_softmax_ce(void **state)
{
    (void)state;
    struct ce_ctx c;
    assert_int_equal(farm_tensor_init(&c.logits, 5, 3), 0);
    nt_fill(&c.logits, 3, 2.0f);
    for (int i = 0; i < 5; i++)
        c.labels[i] = i % 3;
    struct farm_tensor g;
    assert_int_equal(farm_tensor_init(&g, 5, 3), 0);
    assert_int_equal(farm_loss_softmax_ce(&c.logits, c.labels, 1.0f / 5.0f, &g, NULL, NULL), 0);
    check("softmax_ce dlogits", &c.logits, &g, ce_loss, &c);
    /* A label outside [0, classes) is refused. */
    c.labels[2] = 3;
    assert_int_equal(farm_loss_softmax_ce(&c.logits, c.labels, 1.0f, &g, NULL, NULL), -EINVAL);
    farm_tensor_release(&g);
    farm_tensor_release(&c.logits);
}

/* ---- GRU, two steps ------------------------------------------------------ */

enum { B = 3, IN = 4, H = 5 };

struct gru_ctx {
    struct farm_gru g;
    struct farm_tensor x1, x2, h0, h1, h2, r1, r2;
};

static double gru_loss(void *p)
{
    struct gru_ctx *c = p;
    farm_gru_forward(&c->g, &c->x1, &c->h0, &c->h1, NULL);
    farm_gru_forward(&c->g, &c->x2, &c->h1, &c->h2, NULL);
    return dot(&c->h1, &c->r1) + dot(&c->h2, &c->r2);
}

static void test_gru_bptt(void **state)
{
    (void)state;
    struct gru_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(farm_gru_init(&c.g, IN, H), 0);
    struct farm_rng rng;
    farm_rng_seed(&rng, 5);
    farm_gru_init_params(&c.g, &rng);
    struct farm_tensor *xs[] = {&c.x1, &c.x2};
    struct farm_tensor *hs[] = {&c.h0, &c.h1, &c.h2, &c.r1, &c.r2};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(farm_tensor_init(xs[i], B, IN), 0);
        nt_fill(xs[i], 50 + (uint64_t)i, 1.0f);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(farm_tensor_init(hs[i], B, H), 0);
        nt_fill(hs[i], 60 + (uint64_t)i, 0.7f);
    }
    struct farm_gru_cache k1, k2;
    assert_int_equal(farm_gru_cache_init(&k1, &c.g, B), 0);
    assert_int_equal(farm_gru_cache_init(&k2, &c.g, B), 0);
    assert_int_equal(farm_gru_forward(&c.g, &c.x1, &c.h0, &c.h1, &k1), 0);
    assert_int_equal(farm_gru_forward(&c.g, &c.x2, &c.h1, &c.h2, &k2), 0);
    struct farm_tensor dh1, dh0, dx1, dx2, dh;
    assert_int_equal(farm_tensor_init(&dh1, B, H), 0);
    assert_int_equal(farm_tensor_init(&dh0, B, H), 0);
    assert_int_equal(farm_tensor_init(&dh, B, H), 0);
    assert_int_equal(farm_tensor_init(&dx1, B, IN), 0);
    assert_int_equal(farm_tensor_init(&dx2, B, IN), 0);
    farm_gru_zero_grad(&c.g);
    assert_int_equal(farm_gru_backward(&c.g, &k2, &c.r2, &dx2, &dh1), 0);
    assert_int_equal(farm_tensor_copy(&dh, &c.r1), 0);
    assert_int_equal(farm_tensor_axpy(&dh, 1.0f, &dh1), 0);
    assert_int_equal(farm_gru_backward(&c.g, &k1, &dh, &dx1, &dh0), 0);
    check("gru dWx", &c.g.wx, &c.g.dwx, gru_loss, &c);
    check("gru dWh", &c.g.wh, &c.g.dwh, gru_loss, &c);
    check("gru dbx", &c.g.bx, &c.g.dbx, gru_loss, &c);
    check("gru dbh", &c.g.bh, &c.g.dbh, gru_loss, &c);
    check("gru dx1", &c.x1, &dx1, gru_loss, &c);
    check("gru dx2", &c.x2, &dx2, gru_loss, &c);
    check("gru dh0", &c.h0, &dh0, gru_loss, &c);
    farm_gru_cache_release(&k1);
    farm_gru_cache_release(&k2);
    struct farm_tensor *rest[] = {&dh1, &dh0, &dx1, &dx2, &dh};
    for (int i = 0; i < 5; i++)
        farm_tensor_release(rest[i]);
    for (int i = 0; i < 2; i++)
        farm_tensor_release(xs[i]);
    for (int i = 0; i < 5; i++)
        farm_tensor_release(hs[i]);
    farm_gru_release(&c.g);
}

/* ---- LSTM, two steps ----------------------------------------------------- */

struct lstm_ctx {
    struct farm_lstm l;
    struct farm_tensor x1, x2, h0, c0, h1, c1, h2, c2, r1, r2, q2;
};

static double lstm_loss(void *p)
{
    struct lstm_ctx *c = p;
    farm_lstm_forward(&c->l, &c->x1, &c->h0, &c->c0, &c->h1, &c->c1, NULL);
    farm_lstm_forward(&c->l, &c->x2, &c->h1, &c->c1, &c->h2, &c->c2, NULL);
    return dot(&c->h1, &c->r1) + dot(&c->h2, &c->r2) + dot(&c->c2, &c->q2);
}

static void test_lstm_bptt(void **state)
{
    (void)state;
    struct lstm_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(farm_lstm_init(&c.l, IN, H), 0);
    struct farm_rng rng;
    farm_rng_seed(&rng, 6);
    farm_lstm_init_params(&c.l, &rng);
    nt_fill(&c.l.b, 70, 0.5f);
    struct farm_tensor *xs[] = {&c.x1, &c.x2};
    struct farm_tensor *hs[] = {&c.h0, &c.c0, &c.h1, &c.c1, &c.h2, &c.c2, &c.r1, &c.r2, &c.q2};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(farm_tensor_init(xs[i], B, IN), 0);
        nt_fill(xs[i], 80 + (uint64_t)i, 1.0f);
    }
    for (int i = 0; i < 9; i++) {
        assert_int_equal(farm_tensor_init(hs[i], B, H), 0);
        nt_fill(hs[i], 90 + (uint64_t)i, 0.7f);
    }
    struct farm_lstm_cache k1, k2;
    assert_int_equal(farm_lstm_cache_init(&k1, &c.l, B), 0);
    assert_int_equal(farm_lstm_cache_init(&k2, &c.l, B), 0);
    assert_int_equal(farm_lstm_forward(&c.l, &c.x1, &c.h0, &c.c0, &c.h1, &c.c1, &k1), 0);
    assert_int_equal(farm_lstm_forward(&c.l, &c.x2, &c.h1, &c.c1, &c.h2, &c.c2, &k2), 0);
    struct farm_tensor dh1, dc1, dh0, dc0, dx1, dx2, dh;
    struct farm_tensor *bh[] = {&dh1, &dc1, &dh0, &dc0, &dh};
    for (int i = 0; i < 5; i++)
        assert_int_equal(farm_tensor_init(bh[i], B, H), 0);
    assert_int_equal(farm_tensor_init(&dx1, B, IN), 0);
    assert_int_equal(farm_tensor_init(&dx2, B, IN), 0);
    farm_lstm_zero_grad(&c.l);
    assert_int_equal(farm_lstm_backward(&c.l, &k2, &c.r2, &c.q2, &dx2, &dh1, &dc1), 0);
    assert_int_equal(farm_tensor_copy(&dh, &c.r1), 0);
    assert_int_equal(farm_tensor_axpy(&dh, 1.0f, &dh1), 0);
    assert_int_equal(farm_lstm_backward(&c.l, &k1, &dh, &dc1, &dx1, &dh0, &dc0), 0);
    check("lstm dWx", &c.l.wx, &c.l.dwx, lstm_loss, &c);
    check("lstm dWh", &c.l.wh, &c.l.dwh, lstm_loss, &c);
    check("lstm db", &c.l.b, &c.l.db, lstm_loss, &c);
    check("lstm dx1", &c.x1, &dx1, lstm_loss, &c);
    check("lstm dx2", &c.x2, &dx2, lstm_loss, &c);
    check("lstm dh0", &c.h0, &dh0, lstm_loss, &c);
    check("lstm dc0", &c.c0, &dc0, lstm_loss, &c);
    farm_lstm_cache_release(&k1);
    farm_lstm_cache_release(&k2);
    for (int i = 0; i < 5; i++)
        farm_tensor_release(bh[i]);
    farm_tensor_release(&dx1);
    farm_tensor_release(&dx2);
    for (int i = 0; i < 2; i++)
        farm_tensor_release(xs[i]);
    for (int i = 0; i < 9; i++)
        farm_tensor_release(hs[i]);
    farm_lstm_release(&c.l);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_softmax_ce),
        cmocka_unit_test(test_gru_bptt),
        cmocka_unit_test(test_lstm_bptt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
