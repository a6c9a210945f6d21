/* The rnnexit executor against the plain unrolled reference: never-skip is
 * bitwise equal, always-skip runs no tagged node and follows the pass-on
 * rules, objects are isolated, tags keep their scope and reset every step,
 * counters and FLOPs add up. One BLAS thread, so results are reproducible. */
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
#include "farm/rnnexit.h"

struct fix {
    struct farm_rx_model *m;
    struct farm_rx_net *net;
};

static void load(struct fix *f, const char *yaml, uint64_t seed)
{
    struct farm_err err = {0};
    int rc = farm_rx_model_load_string(yaml, strlen(yaml), "t.yaml", &f->m, &err);
    if (rc)
        fail_msg("model: %s", err.msg);
    rc = farm_rx_net_new(f->m, seed, &f->net, &err);
    if (rc)
        fail_msg("net: %s", err.msg);
}

static void unload(struct fix *f)
{
    farm_rx_net_free(f->net);
    farm_rx_model_free(f->m);
}

static float *random_x(size_t n, uint64_t seed)
{
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(2.0 * farm_rng_uniform(&rng) - 1.0);
    return x;
}

static struct farm_rx_exec *new_exec(struct fix *f, size_t batch, size_t steps, int train)
{
    struct farm_rx_exec *ex = NULL;
    struct farm_err err = {0};
    if (farm_rx_exec_new(f->net, batch, steps, train, &ex, &err))
        fail_msg("exec: %s", err.msg);
    return ex;
}

static void forward(struct farm_rx_exec *ex, const float *x, size_t steps, size_t batch,
                    const int32_t *lengths, int mode)
{
    struct farm_err err = {0};
    if (farm_rx_exec_forward(ex, x, steps, batch, lengths, mode, &err))
        fail_msg("forward: %s", err.msg);
}

/* Two layers, two units in the first, every node type, nested regions and
 * every condition kind. */
static const char big[] =
    "input: 5\n"
    "layers:\n"
    "  - units:\n"
    "      - name: a\n"
    "        nodes:\n"
    "          - {name: proj, type: dense, out: 12}\n"
    "          - {name: pad, type: start, condition: {kind: length}}\n"
    "          - {name: cell, type: gru, hidden: 12}\n"
    "          - {name: conv, type: start, condition: {kind: converged, node: cell, eps: 0.05}}\n"
    "          - {name: fc, type: dense, out: 12, skip: input}\n"
    "          - {name: act, type: act, fn: tanh, skip: zeros}\n"
    "          - {name: convend, type: end}\n"
    "          - {name: padend, type: end}\n"
    "          - {name: post, type: act, fn: relu}\n"
    "      - name: b\n"
    "        nodes:\n"
    "          - {name: g, type: start, condition: {kind: gate, node: c, threshold: 0.5}}\n"
    "          - {name: c, type: lstm, hidden: 7}\n"
    "          - {name: ge, type: end}\n"
    "  - units:\n"
    "      - name: top\n"
    "        nodes:\n"
    "          - {name: exit, type: start, condition: {kind: confidence, head: clf, "
    "threshold: 0.6}}\n"
    "          - {name: cell, type: lstm, hidden: 9}\n"
    "          - {name: clf, type: head, classes: 3}\n"
    "          - {name: e, type: end}\n"
    "output: {unit: top, node: clf}\n";

/* Every compute node's value (and LSTM c) of two executors: bitwise when
 * tol is 0, else |a - b| <= tol (1 + |b|). */
static void assert_close_values(const struct farm_rx_model *m, struct farm_rx_exec *a, size_t ra,
                                struct farm_rx_exec *b, size_t rb, size_t rows, double tol)
{
    for (int u = 0; u < m->n_units; u++)
        for (int i = 0; i < m->units[u].n_nodes; i++)
            for (int which = 0; which < 2; which++) {
                size_t w = 0;
                const float *va = farm_rx_exec_value(a, u, i, which, &w);
                const float *vb = farm_rx_exec_value(b, u, i, which, NULL);
                if (!va || !vb) {
                    assert_true(!va && !vb);
                    continue;
                }
                if (memcmp(va + ra * w, vb + rb * w, rows * w * sizeof(float)) != 0) {
                    double md = 0, excess = 0;
                    for (size_t j = 0; j < rows * w; j++) {
                        double d = fabs((double)va[ra * w + j] - vb[rb * w + j]);
                        md = d > md ? d : md;
                        double e = d - tol * (1 + fabs((double)vb[rb * w + j]));
                        excess = e > excess ? e : excess;
                    }
                    if (tol > 0 && excess <= 0)
                        continue;
                    fail_msg("unit %s node %s (%s): values differ (rows %zu vs %zu), max |diff| "
                             "%g",
                             m->units[u].name, m->units[u].nodes[i].name, which ? "c" : "y", ra, rb,
                             md);
                }
            }
}

static void assert_same_values(const struct farm_rx_model *m, struct farm_rx_exec *a, size_t ra,
                               struct farm_rx_exec *b, size_t rb, size_t rows)
{
    assert_close_values(m, a, ra, b, rb, rows, 0);
}

static void test_never_skip_equals_plain(void **state)
{
    (void)state;
    struct fix f;
    load(&f, big, 7);
    size_t B = 16, T = 12;
    float *x = random_x(T * B * 5, 3);
    struct farm_rx_exec *plain = new_exec(&f, B, T, 0), *ex = new_exec(&f, B, T, 0);
    forward(plain, x, T, B, NULL, FARM_RX_PLAIN);
    forward(ex, x, T, B, NULL, FARM_RX_NEVER_SKIP);
    assert_same_values(f.m, plain, 0, ex, 0, B);
    assert_memory_equal(farm_rx_exec_output(plain), farm_rx_exec_output(ex), B * 3 * sizeof(float));
    struct farm_rx_stats st;
    farm_rx_exec_stats(ex, -1, -1, &st);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(st.executed, (uint64_t)(5 + 1 + 2) * T * B);
    /* A training executor (which also records history) gives the same. */
    struct farm_rx_exec *tr = new_exec(&f, B, T, 1);
    forward(tr, x, T, B, NULL, FARM_RX_NEVER_SKIP);
    assert_same_values(f.m, plain, 0, tr, 0, B);
    farm_rx_exec_free(tr);
    farm_rx_exec_free(plain);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

/* Conditions evaluated but never firing take the same path as never-skip:
 * bitwise equal to the plain executor too. */
static void test_conditions_that_never_fire(void **state)
{
    (void)state;
    static const char yaml[] =
        "input: 4\n"
        "layers:\n"
        "  - units:\n"
        "      - name: u\n"
        "        nodes:\n"
        "          - {name: pad, type: start, condition: {kind: length}}\n"
        "          - {name: cell, type: gru, hidden: 10}\n"
        "          - {name: conv, type: start, condition: {kind: converged, node: cell, eps: 0}}\n"
        "          - {name: clf, type: head, classes: 4}\n"
        "          - {name: e2, type: end}\n"
        "          - {name: e1, type: end}\n"
        "output: {unit: u, node: clf}\n";
    struct fix f;
    load(&f, yaml, 11);
    size_t B = 9, T = 8;
    float *x = random_x(T * B * 4, 5);
    struct farm_rx_exec *plain = new_exec(&f, B, T, 0), *ex = new_exec(&f, B, T, 0);
    forward(plain, x, T, B, NULL, FARM_RX_PLAIN);
    forward(ex, x, T, B, NULL, FARM_RX_CONDITIONS);
    assert_same_values(f.m, plain, 0, ex, 0, B);
    struct farm_rx_stats st;
    farm_rx_exec_stats(ex, -1, -1, &st);
    assert_int_equal(st.skipped, 0);
    farm_rx_exec_free(plain);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

/* Always-skip from step 0: nodes inside regions never run; the nodes
 * before and after run every step; skipped nodes pass on their declared
 * value. */
static void test_always_skip(void **state)
{
    (void)state;
    static const char yaml[] = "input: 4\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: u\n"
                               "        nodes:\n"
                               "          - {name: pre, type: dense, out: 6}\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: a, type: act, fn: tanh, skip: input}\n"
                               "          - {name: g, type: gru, hidden: 6, skip: state}\n"
                               "          - {name: l, type: lstm, hidden: 6, skip: input}\n"
                               "          - {name: h, type: head, classes: 3}\n"
                               "          - {name: z, type: dense, out: 6, skip: zeros}\n"
                               "          - {name: e, type: end}\n"
                               "          - {name: post, type: dense, out: 2}\n"
                               "output: {unit: u, node: post}\n";
    struct fix f;
    load(&f, yaml, 3);
    size_t B = 5, T = 7;
    float *x = random_x(T * B * 4, 9);
    struct farm_rx_exec *ex = new_exec(&f, B, T, 0), *plain = new_exec(&f, B, T, 0);
    forward(ex, x, T, B, NULL, FARM_RX_ALWAYS_SKIP);
    const struct farm_rx_unit *u = &f.m->units[0];
    for (int i = 0; i < u->n_nodes; i++) {
        if (!farm_rx_node_computes(u->nodes[i].type))
            continue;
        struct farm_rx_stats st;
        farm_rx_exec_stats(ex, 0, i, &st);
        int tagged = i > 1 && i < 7;
        assert_int_equal(st.executed, tagged ? 0 : T * B);
        assert_int_equal(st.skipped, tagged ? T * B : 0);
    }
    size_t w;
    const float *pre = farm_rx_exec_value(ex, 0, 0, 0, &w);
    /* a passes its input: pre's output of the last step */
    assert_memory_equal(farm_rx_exec_value(ex, 0, 2, 0, NULL), pre, B * w * sizeof(float));
    /* g keeps its state: the initial zeros */
    const float *g = farm_rx_exec_value(ex, 0, 3, 0, NULL);
    for (size_t j = 0; j < B * 6; j++)
        assert_true(g[j] == 0.0f);
    /* l passes its input (g's zeros) as h, keeps c at zero */
    const float *lh = farm_rx_exec_value(ex, 0, 4, 0, NULL),
                *lc = farm_rx_exec_value(ex, 0, 4, 1, NULL);
    for (size_t j = 0; j < B * 6; j++)
        assert_true(lh[j] == 0.0f && lc[j] == 0.0f);
    /* the head keeps its (zero) probabilities; z gives zeros */
    const float *h = farm_rx_exec_value(ex, 0, 5, 0, NULL),
                *z = farm_rx_exec_value(ex, 0, 6, 0, NULL);
    for (size_t j = 0; j < B * 3; j++)
        assert_true(h[j] == 0.0f);
    for (size_t j = 0; j < B * 6; j++)
        assert_true(z[j] == 0.0f);
    /* post ran on zeros: its output is its bias, for every object */
    float *bias;
    size_t nb;
    assert_int_equal(farm_rx_net_tensor(f.net, "u.post.bias", &bias, NULL, &nb), 0);
    bias[0] = 0.25f;
    bias[1] = -0.5f;
    forward(ex, x, T, B, NULL, FARM_RX_ALWAYS_SKIP);
    const float *post = farm_rx_exec_output(ex);
    for (size_t b = 0; b < B; b++)
        assert_true(post[b * 2] == 0.25f && post[b * 2 + 1] == -0.5f);
    /* a zero length is the same as always-skip under the length condition */
    int32_t zero[5] = {0};
    struct farm_rx_exec *ex2 = new_exec(&f, B, T, 0);
    forward(ex2, x, T, B, zero, FARM_RX_CONDITIONS);
    assert_same_values(f.m, ex, 0, ex2, 0, B);
    farm_rx_exec_free(ex2);
    farm_rx_exec_free(ex);
    farm_rx_exec_free(plain);
    free(x);
    unload(&f);
}

/* A mixed batch gives, row by row, what each object gives alone: the same
 * nodes run and are skipped for it (counters, exactly) and the same values
 * up to the rounding of a product with a different number of rows (OpenBLAS
 * sums a 1-row sgemm differently from an 8-row one: ~1e-8 here). */
static void test_isolation(void **state)
{
    (void)state;
    struct fix f;
    load(&f, big, 21);
    size_t B = 8, T = 10, D = 5;
    float *x = random_x(T * B * D, 17);
    int32_t lengths[8] = {10, 0, 3, 7, 10, 1, 5, 9};
    /* Make the gate close for some objects: a strong weight on c's state. */
    float *gw, *gb;
    size_t n;
    assert_int_equal(farm_rx_net_tensor(f.net, "b.g.gate.weight", &gw, NULL, &n), 0);
    assert_int_equal(farm_rx_net_tensor(f.net, "b.g.gate.bias", &gb, NULL, NULL), 0);
    for (size_t j = 0; j < n; j++)
        gw[j] = (j % 2 ? 6.0f : -6.0f);
    gb[0] = 0.1f;
    /* Sharpen the head so that some objects exit early. */
    float *hw;
    assert_int_equal(farm_rx_net_tensor(f.net, "top.clf.weight", &hw, NULL, &n), 0);
    for (size_t j = 0; j < n; j++)
        hw[j] *= 10.0f;
    struct farm_rx_exec *ex = new_exec(&f, B, T, 0), *one = new_exec(&f, 1, T, 0);
    forward(ex, x, T, B, lengths, FARM_RX_CONDITIONS);
    struct farm_rx_stats st;
    farm_rx_exec_stats(ex, -1, -1, &st);
    assert_true(st.skipped > 0 && st.executed > 0);
    /* every unit skipped something and ran something */
    for (int u = 0; u < f.m->n_units; u++) {
        farm_rx_exec_stats(ex, u, -1, &st);
        if (!(st.skipped > 0 && st.executed > 0))
            fail_msg("unit %s: executed %llu skipped %llu", f.m->units[u].name,
                     (unsigned long long)st.executed, (unsigned long long)st.skipped);
    }
    float *x1 = malloc(T * D * sizeof *x1);
    assert_non_null(x1);
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++)
            memcpy(x1 + t * D, x + (t * B + b) * D, D * sizeof(float));
        forward(one, x1, T, 1, &lengths[b], FARM_RX_CONDITIONS);
        assert_close_values(f.m, ex, b, one, 0, 1, 1e-6);
    }
    for (int u = 0; u < f.m->n_units; u++)
        for (int i = 0; i < f.m->units[u].n_nodes; i++) {
            struct farm_rx_stats sb, so;
            farm_rx_exec_stats(ex, u, i, &sb);
            farm_rx_exec_stats(one, u, i, &so);
            assert_int_equal(sb.executed, so.executed);
            assert_int_equal(sb.skipped, so.skipped);
        }
    free(x1);
    farm_rx_exec_free(one);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

/* The same for cells whose input projection is made for all steps at once
 * (layer 0, reading the input, under length conditions only): a mixed batch
 * row by row equals each object alone, and the rows past an object's length
 * keep the state of its last step. */
static void test_isolation_precomputed(void **state)
{
    (void)state;
    static const char yaml[] = "input: 3\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: g\n"
                               "        nodes:\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: gru, hidden: 6}\n"
                               "          - {name: e, type: end}\n"
                               "      - name: l\n"
                               "        nodes:\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: s2, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: lstm, hidden: 5}\n"
                               "          - {name: e2, type: end}\n"
                               "          - {name: out, type: dense, out: 2}\n"
                               "output: {unit: l, node: out}\n";
    struct fix f;
    load(&f, yaml, 8);
    size_t B = 6, T = 7, D = 3;
    float *x = random_x(T * B * D, 4);
    int32_t lengths[6] = {7, 0, 3, 1, 7, 5};
    struct farm_rx_exec *ex = new_exec(&f, B, T, 0), *one = new_exec(&f, 1, T, 0);
    forward(ex, x, T, B, lengths, FARM_RX_CONDITIONS);
    float *x1 = malloc(T * D * sizeof *x1);
    assert_non_null(x1);
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++)
            memcpy(x1 + t * D, x + (t * B + b) * D, D * sizeof(float));
        forward(one, x1, T, 1, &lengths[b], FARM_RX_CONDITIONS);
        assert_close_values(f.m, ex, b, one, 0, 1, 1e-6);
        /* the same object cut to its length, run to the end: its state */
        if (lengths[b] > 0) {
            forward(one, x1, (size_t)lengths[b], 1, NULL, FARM_RX_CONDITIONS);
            size_t w;
            const float *a = farm_rx_exec_value(ex, 0, 1, 0, &w);
            const float *c = farm_rx_exec_value(one, 0, 1, 0, NULL);
            for (size_t j = 0; j < w; j++)
                assert_true(fabs((double)a[b * w + j] - c[j]) <= 1e-6);
        }
    }
    /* a zero-length object never ran its cells: zero states */
    size_t w;
    const float *h = farm_rx_exec_value(ex, 1, 2, 0, &w);
    for (size_t j = 0; j < w; j++)
        assert_true(h[1 * w + j] == 0.0f);
    free(x1);
    farm_rx_exec_free(one);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

/* Tag scope: an inner region's tags stop at its end; an outer tag covers the
 * inner region; tags are rebuilt every step. */
static void test_tag_scope(void **state)
{
    (void)state;
    /* outer: length; inner: confidence of a head whose probabilities go to
     * zero when skipped, so the inner region runs at steps 0, 2, 4, ...
     * (confident after running, unconfident after being skipped). */
    static const char yaml[] =
        "input: 3\n"
        "layers:\n"
        "  - units:\n"
        "      - name: u\n"
        "        nodes:\n"
        "          - {name: pre, type: dense, out: 4}\n"
        "          - {name: outer, type: start, condition: {kind: length}}\n"
        "          - {name: a, type: gru, hidden: 4}\n"
        "          - {name: inner, type: start, condition: {kind: confidence, head: h, "
        "threshold: 0.3}}\n"
        "          - {name: b, type: dense, out: 4}\n"
        "          - {name: h, type: head, classes: 2, skip: zeros}\n"
        "          - {name: ie, type: end}\n"
        "          - {name: c, type: act, fn: relu}\n"
        "          - {name: oe, type: end}\n"
        "          - {name: post, type: dense, out: 2}\n"
        "      - name: v\n"
        "        nodes:\n"
        "          - {name: s, type: start, condition: {kind: length}}\n"
        "          - {name: d, type: dense, out: 2}\n"
        "          - {name: e, type: end}\n"
        "output: {unit: u, node: post}\n";
    struct fix f;
    load(&f, yaml, 5);
    size_t B = 4, T = 9;
    float *x = random_x(T * B * 3, 2);
    int32_t lengths[4] = {9, 4, 0, 9};
    struct farm_rx_exec *ex = new_exec(&f, B, T, 0);
    forward(ex, x, T, B, lengths, FARM_RX_CONDITIONS);
    struct farm_rx_stats st;
    uint64_t in_len = 9 + 4 + 0 + 9; /* object-steps inside the outer region */
    /* pre and post: always */
    farm_rx_exec_stats(ex, 0, 0, &st);
    assert_int_equal(st.executed, T * B);
    farm_rx_exec_stats(ex, 0, 9, &st);
    assert_int_equal(st.executed, T * B);
    /* a and c: only the length */
    farm_rx_exec_stats(ex, 0, 2, &st);
    assert_int_equal(st.executed, in_len);
    farm_rx_exec_stats(ex, 0, 7, &st);
    assert_int_equal(st.executed, in_len);
    /* b and h: even steps within the length: 5 + 2 + 0 + 5 */
    farm_rx_exec_stats(ex, 0, 4, &st);
    assert_int_equal(st.executed, 12);
    assert_int_equal(st.skipped, T * B - 12);
    farm_rx_exec_stats(ex, 0, 5, &st);
    assert_int_equal(st.executed, 12);
    /* the second unit's tags are its own: its length region only */
    farm_rx_exec_stats(ex, 1, 1, &st);
    assert_int_equal(st.executed, in_len);
    /* activity: at step 1 only the inner region skips, so no object of u
     * ran everything; at step 0 objects 0, 1, 3 did; v follows lengths */
    uint64_t seen, active;
    farm_rx_exec_activity(ex, 0, 0, &seen, &active);
    assert_int_equal(seen, B);
    assert_int_equal(active, 3);
    farm_rx_exec_activity(ex, 0, 1, &seen, &active);
    assert_int_equal(active, 0);
    farm_rx_exec_activity(ex, 1, 5, &seen, &active);
    assert_int_equal(active, 2);
    /* never-skip of the same model runs all of it */
    farm_rx_exec_reset_stats(ex);
    forward(ex, x, T, B, lengths, FARM_RX_NEVER_SKIP);
    farm_rx_exec_stats(ex, -1, -1, &st);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(st.executed, 7 * T * B);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

/* converged: an object stops once its cell's state changed by less than
 * eps at its last run, and stays stopped (its state no longer moves). */
static void test_converged(void **state)
{
    (void)state;
    static const char tmpl[] =
        "input: 2\n"
        "layers:\n"
        "  - units:\n"
        "      - name: u\n"
        "        nodes:\n"
        "          - {name: s, type: start, condition: {kind: converged, node: cell, eps: %s}}\n"
        "          - {name: cell, type: gru, hidden: 4}\n"
        "          - {name: e, type: end}\n"
        "output: {unit: u, node: cell}\n";
    const char *eps[3] = {"10", "0", "0.02"};
    uint64_t executed[3];
    size_t B = 5, T = 30;
    float *x = malloc(T * B * 2 * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < T * B * 2; i++)
        x[i] = 0.5f; /* a constant input: the state settles */
    for (int k = 0; k < 3; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, tmpl, eps[k]);
        struct fix f;
        load(&f, yaml, 2);
        struct farm_rx_exec *ex = new_exec(&f, B, T, 0);
        forward(ex, x, T, B, NULL, FARM_RX_CONDITIONS);
        struct farm_rx_stats st;
        farm_rx_exec_stats(ex, 0, 1, &st);
        executed[k] = st.executed;
        farm_rx_exec_free(ex);
        unload(&f);
    }
    assert_int_equal(executed[0], B);     /* runs at step 0 only */
    assert_int_equal(executed[1], T * B); /* a change is never below 0 */
    assert_true(executed[2] > B && executed[2] < T * B);
    assert_int_equal(executed[2] % B, 0); /* identical objects stop together */
    free(x);
}

/* executed + skipped = nodes x steps x objects; FLOPs saved = skipped x the
 * analytic table, written out here from the conventions. */
static void test_accounting(void **state)
{
    (void)state;
    struct fix f;
    load(&f, big, 4);
    size_t B = 12, T = 15;
    float *x = random_x(T * B * 5, 8);
    int32_t lengths[12];
    for (size_t b = 0; b < B; b++)
        lengths[b] = (int32_t)(b % 16);
    struct farm_rx_exec *ex = new_exec(&f, B, T, 0);
    forward(ex, x, T, B, lengths, FARM_RX_CONDITIONS);
    forward(ex, x, T, B, NULL, FARM_RX_CONDITIONS);
    double saved = 0, done = 0;
    uint64_t exec_total = 0, skip_total = 0;
    int nodes = 0;
    for (int u = 0; u < f.m->n_units; u++) {
        const struct farm_rx_unit *unit = &f.m->units[u];
        for (int i = 0; i < unit->n_nodes; i++) {
            const struct farm_rx_node *n = &unit->nodes[i];
            if (!farm_rx_node_computes(n->type))
                continue;
            nodes++;
            double in = n->in, out = n->out, H = n->out, K = n->classes, fl = 0;
            switch (n->type) {
            case FARM_RX_DENSE:
                fl = 2 * in * out + out;
                break;
            case FARM_RX_ACT:
                fl = n->fn == FARM_RX_FN_RELU ? out : 4 * out;
                break;
            case FARM_RX_HEAD:
                fl = 2 * in * K + K + 4 * K;
                break;
            case FARM_RX_GRU:
                fl = 2 * (in + H) * 3 * H + 6 * H + 20 * H;
                break;
            case FARM_RX_LSTM:
                fl = 2 * (in + H) * 4 * H + 4 * H + 24 * H;
                break;
            }
            assert_true(farm_rx_node_flops(f.m, u, i) == fl);
            struct farm_rx_stats st;
            farm_rx_exec_stats(ex, u, i, &st);
            assert_int_equal(st.executed + st.skipped, 2 * T * B);
            exec_total += st.executed;
            skip_total += st.skipped;
            saved += (double)st.skipped * fl;
            done += (double)st.executed * fl;
        }
    }
    struct farm_rx_stats all;
    farm_rx_exec_stats(ex, -1, -1, &all);
    assert_int_equal(all.executed, exec_total);
    assert_int_equal(all.skipped, skip_total);
    assert_int_equal(all.executed + all.skipped, (uint64_t)nodes * 2 * T * B);
    assert_true(all.skipped > 0);
    assert_true(all.flops_saved == saved);
    assert_true(all.flops_done == done);
    farm_rx_exec_free(ex);
    free(x);
    unload(&f);
}

static void test_bad_calls(void **state)
{
    (void)state;
    struct fix f;
    load(&f, big, 1);
    struct farm_rx_exec *ex = new_exec(&f, 4, 5, 1), *bad = NULL;
    float x[5 * 8 * 5] = {0};
    struct farm_err err = {0};
    assert_int_equal(farm_rx_exec_forward(ex, x, 5, 8, NULL, FARM_RX_CONDITIONS, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "batch 8 out of range 1..4"));
    assert_int_equal(farm_rx_exec_forward(ex, x, 6, 4, NULL, FARM_RX_CONDITIONS, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "6 steps out of range"));
    int32_t len[4] = {1, 2, 9, 0};
    assert_int_equal(farm_rx_exec_forward(ex, x, 5, 4, len, FARM_RX_CONDITIONS, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "object 2 has length 9"));
    assert_int_equal(farm_rx_exec_forward(ex, x, 5, 4, NULL, FARM_RX_PLAIN, &err), -EINVAL);
    assert_int_equal(farm_rx_exec_backward(ex, NULL, NULL, 0, NULL, &err), -EINVAL);
    assert_int_equal(farm_rx_exec_new(f.net, 0, 5, 0, &bad, &err), -EINVAL);
    assert_null(bad);
    farm_rx_exec_free(ex);
    unload(&f);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_skip_equals_plain),
        cmocka_unit_test(test_conditions_that_never_fire),
        cmocka_unit_test(test_always_skip),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_isolation_precomputed),
        cmocka_unit_test(test_tag_scope),
        cmocka_unit_test(test_converged),
        cmocka_unit_test(test_accounting),
        cmocka_unit_test(test_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
