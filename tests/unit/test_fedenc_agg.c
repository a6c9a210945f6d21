/* fedenc aggregators against hand-computed vectors and a numpy reference. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "farm/fedenc_agg.h"

static void agg_run(int rule, double beta, const struct farm_fedenc_update *ups, size_t k,
                    float *out, size_t n)
{
    struct farm_fedenc_agg agg;
    struct farm_err err;
    struct farm_fedenc_agg_cfg cfg = {.rule = rule, .beta = beta, .server_lr = 1.0};
    assert_int_equal(farm_fedenc_agg_init(&agg, &cfg, n, &err), 0);
    int rc = farm_fedenc_agg_apply(&agg, out, ups, k, &err);
    if (rc != 0)
        fail_msg("aggregate: %s", err.msg);
    farm_fedenc_agg_release(&agg);
}

static void assert_close(const float *got, const double *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)got[i] - want[i]) > 1e-6 * (1 + fabs(want[i])))
            fail_msg("coordinate %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
    }
}

/* Five children, beta = 0.2: one value is cut at each end. The children are
 * listed out of id order on purpose. */
static void test_five_children(void **state)
{
    (void)state;
    static const float c0[] = {1, 2, 3}, c1[] = {2, 4, -10}, c2[] = {3, 3, 1}, c3[] = {100, 0, 2},
                       c4[] = {5, -1, 0.5f};
    struct farm_fedenc_update ups[] = {
        {4, 1, c4}, {0, 1, c0}, {3, 1, c3}, {1, 1, c1}, {2, 1, c2},
    };
    float out[3];
    /* sorted columns: {1,2,3,5,100} {-1,0,2,3,4} {-10,0.5,1,2,3} */
    agg_run(FARM_FEDENC_MEDIAN, 0, ups, 5, out, 3);
    assert_close(out, (const double[]){3, 2, 1}, 3);
    agg_run(FARM_FEDENC_TRIMMED, 0.2, ups, 5, out, 3);
    assert_close(out, (const double[]){10.0 / 3, 5.0 / 3, 3.5 / 3}, 3);
    agg_run(FARM_FEDENC_MEAN, 0, ups, 5, out, 3);
    assert_close(out, (const double[]){111.0 / 5, 8.0 / 5, -3.5 / 5}, 3);
}

/* Ten children, beta = 0.2: two values are cut at each end. */
static void test_ten_children(void **state)
{
    (void)state;
    static const float col0[10] = {1, 2, 3, 4, 5, 6, 7, 8, 1000, -1000};
    static const float col1[10] = {55, 1, 34, 2, 1, 3, 21, 5, 13, 8};
    float params[10][2];
    struct farm_fedenc_update ups[10];
    for (int i = 0; i < 10; i++) {
        params[i][0] = col0[i];
        params[i][1] = col1[i];
        ups[i] = (struct farm_fedenc_update){(uint32_t)(9 - i), 1, params[i]};
    }
    float out[2];
    /* col0 sorted: -1000,1..8,1000 -> median (4+5)/2; trimmed keeps 2..7.
     * col1 sorted: 1,1,2,3,5,8,13,21,34,55 -> median 6.5; trimmed keeps 2..21. */
    agg_run(FARM_FEDENC_MEDIAN, 0, ups, 10, out, 2);
    assert_close(out, (const double[]){4.5, 6.5}, 2);
    agg_run(FARM_FEDENC_TRIMMED, 0.2, ups, 10, out, 2);
    assert_close(out, (const double[]){27.0 / 6, 52.0 / 6}, 2);
}

static void test_weighted_fedavg(void **state)
{
    (void)state;
    static const float a[] = {1, 2}, b[] = {3, -2}, c[] = {0, 1};
    struct farm_fedenc_update ups[] = {{7, 60, c}, {2, 10, a}, {5, 30, b}};
    float out[2];
    agg_run(FARM_FEDENC_FEDAVG, 0, ups, 3, out, 2);
    assert_close(out, (const double[]){0.1 * 1 + 0.3 * 3, 0.1 * 2 - 0.3 * 2 + 0.6 * 1}, 2);
    agg_run(FARM_FEDENC_MEAN, 0, ups, 3, out, 2);
    assert_close(out, (const double[]){4.0 / 3, 1.0 / 3}, 2);

    /* Zero samples in total cannot weigh anything. */
    struct farm_fedenc_update zero[] = {{1, 0, a}, {2, 0, b}};
    struct farm_fedenc_agg agg;
    struct farm_err err;
    struct farm_fedenc_agg_cfg cfg = {.rule = FARM_FEDENC_FEDAVG, .server_lr = 1};
    assert_int_equal(farm_fedenc_agg_init(&agg, &cfg, 2, &err), 0);
    out[0] = 42;
    assert_int_equal(farm_fedenc_agg_apply(&agg, out, zero, 2, &err), FARM_EBADDATA);
    assert_true(out[0] == 42);
    /* Duplicate ids are refused, and the model is left alone. */
    struct farm_fedenc_update dup[] = {{1, 5, a}, {1, 5, b}};
    assert_int_equal(farm_fedenc_agg_apply(&agg, out, dup, 2, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "two updates from child 1"));
    assert_true(out[0] == 42);
    farm_fedenc_agg_release(&agg);
}

/* Server momentum by hand: w=1, a=0 each round, m=0.9, lr=1.
 * round 1: v = 1, w = 0; round 2: v = 0.9*1 + (0-0) = 0.9, w = -0.9. */
static void test_server_momentum(void **state)
{
    (void)state;
    static const float zero[] = {0};
    struct farm_fedenc_update up = {0, 3, zero};
    struct farm_fedenc_agg agg;
    struct farm_err err;
    struct farm_fedenc_agg_cfg cfg = {.rule = FARM_FEDENC_FEDAVG, .server_lr = 1, .momentum = 0.9};
    assert_int_equal(farm_fedenc_agg_init(&agg, &cfg, 1, &err), 0);
    float w = 1;
    assert_int_equal(farm_fedenc_agg_apply(&agg, &w, &up, 1, &err), 0);
    assert_true(fabsf(w - 0.0f) < 1e-7f);
    assert_int_equal(farm_fedenc_agg_apply(&agg, &w, &up, 1, &err), 0);
    assert_true(fabsf(w + 0.9f) < 1e-6f);
    farm_fedenc_agg_release(&agg);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct farm_fedenc_agg agg;
    struct farm_err err;
    struct farm_fedenc_agg_cfg cfg = {.rule = FARM_FEDENC_TRIMMED, .beta = 0.5, .server_lr = 1};
    assert_int_equal(farm_fedenc_agg_init(&agg, &cfg, 4, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "trim_beta"));
    assert_int_equal(farm_fedenc_rule_parse("medain", &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "\"medain\""));
    assert_int_equal(farm_fedenc_rule_parse("trimmed_mean", &err), FARM_FEDENC_TRIMMED);
}

static void test_finite_and_schema(void **state)
{
    (void)state;
    struct farm_err err;
    float v[4] = {1, 2, NAN, 3};
    assert_int_equal(farm_fedenc_check_finite(v, 4, &err), FARM_EBADDATA);
    assert_string_equal(err.msg, "params[2] is nan");
    v[2] = INFINITY;
    assert_int_equal(farm_fedenc_check_finite(v, 4, &err), FARM_EBADDATA);
    assert_string_equal(err.msg, "params[2] is inf");
    v[2] = 0;
    assert_int_equal(farm_fedenc_check_finite(v, 4, &err), 0);

    struct farm_fedenc_tensor_spec want[2] = {{"enc.w1", 2, {64, 16}}, {"enc.b1", 1, {16}}};
    struct farm_fedenc_tensor_spec got[2] = {{"enc.w1", 2, {64, 32}}, {"enc.b1", 1, {16}}};
    assert_int_equal(farm_fedenc_schema_check(want, 2, want, 2, &err), 0);
    assert_int_equal(farm_fedenc_schema_check(want, 2, got, 2, &err), FARM_EBADDATA);
    assert_string_equal(err.msg, "tensor 0 'enc.w1': shape [64,32], expected [64,16]");
    assert_int_equal(farm_fedenc_schema_check(want, 2, got, 1, &err), FARM_EBADDATA);
    assert_string_equal(err.msg, "update has 1 tensors, expected 2");
    strcpy(got[0].name, "head.w");
    assert_int_equal(farm_fedenc_schema_check(want, 2, got, 2, &err), FARM_EBADDATA);
    assert_string_equal(err.msg, "tensor 0 is 'head.w', expected 'enc.w1'");
}

/* Random updates, every rule against numpy; and the result is bitwise the
 * same whatever the order of the updates. */
static void test_against_numpy(void **state)
{
    (void)state;
    enum { K = 7, N = 1000 };
    static float w[K][N];
    double counts[K];
    uint64_t x = 12345;
    for (int i = 0; i < K; i++) {
        counts[i] = (double)(10 + 13 * i);
        for (int j = 0; j < N; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            w[i][j] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0);
        }
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char in[512], outp[512], cmd[2048];
    snprintf(in, sizeof in, "%s/fedenc_agg_in.%d", tmp, (int)getpid());
    snprintf(outp, sizeof outp, "%s/fedenc_agg_out.%d", tmp, (int)getpid());
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    int32_t hdr[2] = {K, N};
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(counts, sizeof counts, 1, f);
    fwrite(w, sizeof w, 1, f);
    fclose(f);
    const char *py = getenv("FARM_PYTHON") ? getenv("FARM_PYTHON") : "/usr/bin/python3";
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    snprintf(cmd, sizeof cmd, "%s %s/tests/unit/oracle/fedenc_agg.py %s %s 0.2", py, src, in,
             outp);
    assert_int_equal(system(cmd), 0);
    static double ref[4][N];
    f = fopen(outp, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof ref, 1, f), 1);
    fclose(f);
    remove(in);
    remove(outp);

    static const int rules[4] = {FARM_FEDENC_FEDAVG, FARM_FEDENC_MEAN, FARM_FEDENC_MEDIAN,
                                 FARM_FEDENC_TRIMMED};
    struct farm_fedenc_update ups[K], rev[K];
    for (int i = 0; i < K; i++) {
        ups[i] = (struct farm_fedenc_update){(uint32_t)i, (uint64_t)counts[i], w[i]};
        rev[K - 1 - i] = ups[i];
    }
    static float out[N], out2[N];
    for (int r = 0; r < 4; r++) {
        agg_run(rules[r], 0.2, ups, K, out, N);
        assert_close(out, ref[r], N);
        agg_run(rules[r], 0.2, rev, K, out2, N);
        assert_memory_equal(out, out2, sizeof out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_five_children),     cmocka_unit_test(test_ten_children),
        cmocka_unit_test(test_weighted_fedavg),   cmocka_unit_test(test_server_momentum),
        cmocka_unit_test(test_bad_config),        cmocka_unit_test(test_finite_and_schema),
        cmocka_unit_test(test_against_numpy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
