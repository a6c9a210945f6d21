/* plugins/nn against an independent numpy reference (tests/unit/oracle/
 * nn_oracle.py run by /usr/bin/python3): one MLP forward/backward step, the
 * activations and MSE, one GRU and one LSTM cell step with every gradient,
 * and the random generator's integer stream. Tolerance: 1e-5 relative to
 * the largest magnitude of each expected tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "farm/nn.h"
#include "nn_test_util.h"

#define REL 1e-5

static const char mlp_yaml[] = "name: oracle\n"
                               "input: 8\n"
                               "layers:\n"
                               "  - {name: fc1, type: dense, out: 16, activation: relu}\n"
                               "  - {name: fc2, type: dense, out: 4}\n"
                               "loss: softmax_cross_entropy\n";

static void run_mlp(size_t micro_batches)
{
    char dir[512];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct farm_model_desc *d;
    if (farm_model_desc_parse(mlp_yaml, strlen(mlp_yaml), "oracle.yaml", &d, &err) < 0)
        fail_msg("%s", err.msg);
    struct farm_mlp *m;
    assert_int_equal(farm_mlp_new(d, 3, &m, &err), 0);
    farm_model_desc_free(d);
    const size_t B = 12;
    struct farm_tensor x;
    assert_int_equal(farm_tensor_init(&x, B, 8), 0);
    nt_fill(&x, 11, 1.0f);
    int32_t labels[12];
    for (size_t i = 0; i < B; i++)
        labels[i] = (int32_t)((i * 7) % 4);
    /* Non-zero biases so that their forward path is exercised too. */
    nt_fill(&farm_mlp_dense(m, 0)->b, 12, 0.3f);
    nt_fill(&farm_mlp_dense(m, 1)->b, 13, 0.3f);
    nt_save(dir, "x", &x);
    nt_save(dir, "w1", &farm_mlp_dense(m, 0)->w);
    nt_save(dir, "b1", &farm_mlp_dense(m, 0)->b);
    nt_save(dir, "w2", &farm_mlp_dense(m, 1)->w);
    nt_save(dir, "b2", &farm_mlp_dense(m, 1)->b);
    char p[1024];
    assert_int_equal(farm_npy_write_i32(nt_path(p, sizeof p, dir, "labels.npy"), labels, B, &err),
                     0);
    assert_int_equal(nt_oracle("mlp", dir), 0);

    /* Logits through a forward over the whole range. */
    struct farm_mlp_work *w;
    assert_int_equal(farm_mlp_work_new(m, 0, 2, B, &w), 0);
    const struct farm_tensor *y;
    assert_int_equal(farm_mlp_forward(m, w, &x, &y), 0);
    nt_assert_close(y, dir, "logits", REL);

    /* dX through a backward with the loss gradient. */
    struct farm_tensor dy;
    assert_int_equal(farm_tensor_init(&dy, B, 4), 0);
    double loss_sum;
    size_t correct;
    assert_int_equal(farm_loss_softmax_ce(y, labels, 1.0f / (float)B, &dy, &loss_sum, &correct), 0);
    struct farm_tensor loss;
    farm_tensor_wrap(&loss, (float[]){(float)(loss_sum / (double)B)}, 1, 1);
    nt_assert_close(&loss, dir, "loss", REL);
    struct farm_tensor want_correct;
    nt_load_expect(dir, "correct", &want_correct);
    assert_int_equal((int)want_correct.data[0], (int)correct);
    farm_tensor_release(&want_correct);
    farm_mlp_zero_grad(m, 0, 2);
    const struct farm_tensor *dx;
    assert_int_equal(farm_mlp_backward(m, w, &dy, &dx), 0);
    nt_assert_close(dx, dir, "dx", REL);

    /* Parameter gradients through the training step, with the batch cut
     * into micro-batches whose gradients accumulate. */
    double ls;
    size_t c2;
    assert_int_equal(farm_mlp_train_step(m, NULL, &x, labels, NULL, micro_batches, &ls, &c2), 0);
    assert_int_equal(c2, correct);
    nt_assert_close(&farm_mlp_dense(m, 0)->dw, dir, "dw1", REL);
    nt_assert_close(&farm_mlp_dense(m, 0)->db, dir, "db1", REL);
    nt_assert_close(&farm_mlp_dense(m, 1)->dw, dir, "dw2", REL);
    nt_assert_close(&farm_mlp_dense(m, 1)->db, dir, "db2", REL);
    farm_tensor_wrap(&loss, (float[]){(float)(ls / (double)B)}, 1, 1);
    nt_assert_close(&loss, dir, "loss", REL);

    farm_mlp_work_free(w);
    farm_tensor_release(&dy);
    farm_tensor_release(&x);
    farm_mlp_free(m);
    nt_rmdir(dir);
}

static void test_mlp_step(void **state)
{
    (void)state;
    run_mlp(1);
}

static void test_mlp_step_micro_batches(void **state)
{
    (void)state;
    run_mlp(5); /* uneven slices: 3, 3, 2, 2, 2 */
}

static void test_activations_and_mse(void **state)
{
    (void)state;
    char dir[512];
    nt_tmpdir(dir, sizeof dir);
    struct farm_tensor x, dy, t, y, dx;
    assert_int_equal(farm_tensor_init(&x, 7, 9), 0);
    assert_int_equal(farm_tensor_init(&dy, 7, 9), 0);
    assert_int_equal(farm_tensor_init(&t, 7, 9), 0);
    assert_int_equal(farm_tensor_init(&y, 7, 9), 0);
    assert_int_equal(farm_tensor_init(&dx, 7, 9), 0);
    nt_fill(&x, 21, 2.0f);
    nt_fill(&dy, 22, 1.0f);
    nt_fill(&t, 23, 1.0f);
    nt_save(dir, "x", &x);
    nt_save(dir, "dy", &dy);
    nt_save(dir, "target", &t);
    assert_int_equal(nt_oracle("act", dir), 0);
    static const char *const names[] = {"relu", "tanh", "sigmoid", "gelu"};
    for (size_t k = 0; k < 4; k++) {
        enum farm_act a;
        assert_int_equal(farm_act_parse(names[k], &a), 0);
        assert_string_equal(farm_act_name(a), names[k]);
        char n[64];
        assert_int_equal(farm_act_forward(a, &x, &y), 0);
        snprintf(n, sizeof n, "%s_fwd", names[k]);
        nt_assert_close(&y, dir, n, REL);
        assert_int_equal(farm_act_backward(a, &x, &y, &dy, &dx), 0);
        snprintf(n, sizeof n, "%s_bwd", names[k]);
        nt_assert_close(&dx, dir, n, REL);
    }
    /* MSE: loss_sum / rows is the mean over all elements; with
     * grad_scale 1/rows the gradient is d(mean)/dx. */
    double ls;
    assert_int_equal(farm_loss_mse(&x, &t, 1.0f / 7.0f, &dx, &ls), 0);
    struct farm_tensor l;
    farm_tensor_wrap(&l, (float[]){(float)(ls / 7.0)}, 1, 1);
    nt_assert_close(&l, dir, "mse_loss", REL);
    nt_assert_close(&dx, dir, "mse_grad", REL);
    struct farm_tensor *all[] = {&x, &dy, &t, &y, &dx};
    for (size_t i = 0; i < 5; i++)
        farm_tensor_release(all[i]);
    nt_rmdir(dir);
}

static void test_gru_step(void **state)
{
    (void)state;
    char dir[512];
    nt_tmpdir(dir, sizeof dir);
    const size_t B = 5, IN = 6, H = 7;
    struct farm_gru g;
    assert_int_equal(farm_gru_init(&g, IN, H), 0);
    struct farm_rng rng;
    farm_rng_seed(&rng, 31);
    farm_gru_init_params(&g, &rng);
    struct farm_tensor x, h, hn, dh, dx, dhp;
    assert_int_equal(farm_tensor_init(&x, B, IN), 0);
    assert_int_equal(farm_tensor_init(&h, B, H), 0);
    assert_int_equal(farm_tensor_init(&hn, B, H), 0);
    assert_int_equal(farm_tensor_init(&dh, B, H), 0);
    assert_int_equal(farm_tensor_init(&dx, B, IN), 0);
    assert_int_equal(farm_tensor_init(&dhp, B, H), 0);
    nt_fill(&x, 32, 1.0f);
    nt_fill(&h, 33, 0.5f);
    nt_fill(&dh, 34, 1.0f);
    nt_save(dir, "x", &x);
    nt_save(dir, "h", &h);
    nt_save(dir, "wx", &g.wx);
    nt_save(dir, "wh", &g.wh);
    nt_save(dir, "bx", &g.bx);
    nt_save(dir, "bh", &g.bh);
    nt_save(dir, "dh", &dh);
    assert_int_equal(nt_oracle("gru", dir), 0);
    struct farm_gru_cache cache;
    assert_int_equal(farm_gru_cache_init(&cache, &g, 8), 0);
    assert_int_equal(farm_gru_forward(&g, &x, &h, &hn, &cache), 0);
    nt_assert_close(&hn, dir, "h_next", REL);
    /* Inference without a cache gives the same bits. */
    struct farm_tensor hn2;
    assert_int_equal(farm_tensor_init(&hn2, B, H), 0);
    assert_int_equal(farm_gru_forward(&g, &x, &h, &hn2, NULL), 0);
    assert_true(farm_tensor_equal(&hn, &hn2));
    farm_gru_zero_grad(&g);
    assert_int_equal(farm_gru_backward(&g, &cache, &dh, &dx, &dhp), 0);
    nt_assert_close(&dx, dir, "dx", REL);
    nt_assert_close(&dhp, dir, "dh_prev", REL);
    nt_assert_close(&g.dwx, dir, "dwx", REL);
    nt_assert_close(&g.dwh, dir, "dwh", REL);
    nt_assert_close(&g.dbx, dir, "dbx", REL);
    nt_assert_close(&g.dbh, dir, "dbh", REL);
    struct farm_nn_param ps[4];
    assert_int_equal(farm_gru_params(&g, "enc", ps), 4);
    assert_string_equal(ps[0].name, "enc.wx");
    assert_ptr_equal(ps[3].grad, &g.dbh);
    farm_gru_cache_release(&cache);
    struct farm_tensor *all[] = {&x, &h, &hn, &dh, &dx, &dhp, &hn2};
    for (size_t i = 0; i < 7; i++)
        farm_tensor_release(all[i]);
    farm_gru_release(&g);
    nt_rmdir(dir);
}

static void test_lstm_step(void **state)
{
    (void)state;
    char dir[512];
    nt_tmpdir(dir, sizeof dir);
    const size_t B = 4, IN = 5, H = 6;
    struct farm_lstm l;
    assert_int_equal(farm_lstm_init(&l, IN, H), 0);
    struct farm_rng rng;
    farm_rng_seed(&rng, 41);
    farm_lstm_init_params(&l, &rng);
    nt_fill(&l.b, 49, 0.5f);
    struct farm_tensor x, h, c, hn, cn, dh, dc, dx, dhp, dcp;
    struct farm_tensor *bh[] = {&h, &c, &hn, &cn, &dh, &dc, &dhp, &dcp};
    assert_int_equal(farm_tensor_init(&x, B, IN), 0);
    assert_int_equal(farm_tensor_init(&dx, B, IN), 0);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(farm_tensor_init(bh[i], B, H), 0);
    nt_fill(&x, 42, 1.0f);
    nt_fill(&h, 43, 0.5f);
    nt_fill(&c, 44, 1.0f);
    nt_fill(&dh, 45, 1.0f);
    nt_fill(&dc, 46, 1.0f);
    nt_save(dir, "x", &x);
    nt_save(dir, "h", &h);
    nt_save(dir, "c", &c);
    nt_save(dir, "wx", &l.wx);
    nt_save(dir, "wh", &l.wh);
    nt_save(dir, "b", &l.b);
    nt_save(dir, "dh", &dh);
    nt_save(dir, "dc", &dc);
    assert_int_equal(nt_oracle("lstm", dir), 0);
    struct farm_lstm_cache cache;
    assert_int_equal(farm_lstm_cache_init(&cache, &l, B), 0);
    assert_int_equal(farm_lstm_forward(&l, &x, &h, &c, &hn, &cn, &cache), 0);
    nt_assert_close(&hn, dir, "h_next", REL);
    nt_assert_close(&cn, dir, "c_next", REL);
    farm_lstm_zero_grad(&l);
    assert_int_equal(farm_lstm_backward(&l, &cache, &dh, &dc, &dx, &dhp, &dcp), 0);
    nt_assert_close(&dx, dir, "dx", REL);
    nt_assert_close(&dhp, dir, "dh_prev", REL);
    nt_assert_close(&dcp, dir, "dc_prev", REL);
    nt_assert_close(&l.dwx, dir, "dwx", REL);
    nt_assert_close(&l.dwh, dir, "dwh", REL);
    nt_assert_close(&l.db, dir, "db", REL);
    farm_lstm_cache_release(&cache);
    farm_tensor_release(&x);
    farm_tensor_release(&dx);
    for (size_t i = 0; i < 8; i++)
        farm_tensor_release(bh[i]);
    farm_lstm_release(&l);
    nt_rmdir(dir);
}

static void test_rng_stream(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    assert_int_equal(nt_oracle("rng", dir), 0);
    /* The expected stream is uint64: read the raw bytes after the .npy
     * header rather than through the float32 reader. */
    FILE *f = fopen(nt_path(p, sizeof p, dir, "expect_rng.npy"), "rb");
    assert_non_null(f);
    unsigned char head[10];
    assert_int_equal(fread(head, 1, 10, f), 10);
    size_t hlen = (size_t)head[8] | (size_t)head[9] << 8;
    assert_int_equal(fseek(f, (long)(10 + hlen), SEEK_SET), 0);
    uint64_t want[24];
    assert_int_equal(fread(want, 8, 24, f), 24);
    fclose(f);
    const uint64_t seeds[3] = {0, 42, UINT64_MAX};
    for (size_t s = 0; s < 3; s++) {
        struct farm_rng r;
        farm_rng_seed(&r, seeds[s]);
        for (size_t i = 0; i < 8; i++) {
            uint64_t got = farm_rng_next(&r);
            if (got != want[s * 8 + i])
                fail_msg("seed %zu output %zu: %llx, python %llx", s, i, (unsigned long long)got,
                         (unsigned long long)want[s * 8 + i]);
        }
    }
    nt_rmdir(dir);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_step),
        cmocka_unit_test(test_mlp_step_micro_batches),
        cmocka_unit_test(test_activations_and_mse),
        cmocka_unit_test(test_gru_step),
        cmocka_unit_test(test_lstm_step),
        cmocka_unit_test(test_rng_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
