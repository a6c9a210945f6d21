/* rnnexit backward and training: gradients of a GRU and an LSTM step
 * (with skipped objects) against a numpy reference, no gradient through
 * skipped nodes, a trained early-exit classifier, weights and skips.svg,
 * bad input. */
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

#include "farm/nn.h"
#include "farm/rnnexit.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_rnnexit_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void load(const char *yaml, uint64_t seed, struct farm_rx_model **m,
                 struct farm_rx_net **net)
{
    struct farm_err err = {0};
    if (farm_rx_model_load_string(yaml, strlen(yaml), "t.yaml", m, &err))
        fail_msg("model: %s", err.msg);
    if (farm_rx_net_new(*m, seed, net, &err))
        fail_msg("net: %s", err.msg);
}

static void fill(float *v, size_t n, uint64_t seed, float scale)
{
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((2.0 * farm_rng_uniform(&rng) - 1.0) * scale);
}

static void save_npy(const char *name, const float *v, int ndim, const size_t *shape)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.npy", tmpdir, name);
    struct farm_tensor t;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    farm_tensor_wrap(&t, (float *)(uintptr_t)v, 1, n);
    assert_int_equal(farm_tensor_reshape(&t, ndim, shape), 0);
    struct farm_err err = {0};
    if (farm_npy_write(path, &t, &err))
        fail_msg("%s", err.msg);
}

/* Runs forward + backward in C, the numpy oracle on the same numbers, and
 * compares the loss and every parameter gradient (max error relative to
 * the tensor's largest gradient, 1e-5). */
static void check_grads(const char *yaml, const char *kind, int hidden, const char *loss,
                        double step_weight, const int32_t *lengths)
{
    struct farm_rx_model *m;
    struct farm_rx_net *net;
    load(yaml, 42, &m, &net);
    const size_t T = 2, B = 3, I = 3;
    float x[2 * 3 * 3], targets[3 * 2];
    int32_t labels[3] = {2, 0, 1};
    fill(x, T * B * I, 5, 1.0f);
    fill(targets, B * 2, 6, 1.0f);
    int ce = strcmp(loss, "ce") == 0;
    struct farm_rx_exec *ex;
    struct farm_err err = {0};
    assert_int_equal(farm_rx_exec_new(net, B, T, 1, &ex, &err), 0);
    assert_int_equal(farm_rx_exec_forward(ex, x, T, B, lengths, FARM_RX_CONDITIONS, &err), 0);
    farm_rx_net_zero_grad(net);
    double c_loss = 0;
    if (farm_rx_exec_backward(ex, ce ? labels : NULL, ce ? NULL : targets, step_weight, &c_loss,
                              &err))
        fail_msg("backward: %s", err.msg);

    /* Hand everything to the oracle. */
    size_t sx[3] = {T, B, I}, sb[1] = {B}, st[2] = {B, 2};
    save_npy("x", x, 3, sx);
    float lf[3], yf[3];
    for (size_t b = 0; b < B; b++) {
        lf[b] = (float)lengths[b];
        yf[b] = (float)labels[b];
    }
    save_npy("lengths", lf, 1, sb);
    if (ce)
        save_npy("labels", yf, 1, sb);
    else
        save_npy("targets", targets, 2, st);
    char names[2048] = "";
    size_t nt = farm_rx_net_n_tensors(net);
    for (size_t i = 0; i < nt; i++) {
        const char *name;
        float *data;
        size_t rows, cols;
        assert_int_equal(farm_rx_net_tensor_at(net, i, &name, &data, NULL, &rows, &cols), 0);
        size_t shape[2] = {rows, cols};
        save_npy(name, data, 2, shape);
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s\"%s\"", i ? ", " : "",
                 name);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.json", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"kind\": \"%s\", \"unit\": \"u\", \"hidden\": %d, \"loss\": \"%s\", "
            "\"step_weight\": %.17g, \"tensors\": [%s]}\n",
            kind, hidden, loss, step_weight, names);
    fclose(f);
    const char *py = getenv("FARM_PYTHON") ? getenv("FARM_PYTHON") : "/usr/bin/python3";
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/unit/oracle/rnnexit_grad.py' '%s'", py, src, tmpdir);
    assert_int_equal(system(cmd), 0);

    struct farm_tensor ref = {0};
    snprintf(path, sizeof path, "%s/loss.npy", tmpdir);
    assert_int_equal(farm_npy_read(path, &ref, &err), 0);
    double want = ref.data[0];
    farm_tensor_release(&ref);
    if (fabs(c_loss - want) > 1e-5 * fabs(want))
        fail_msg("loss: C %.9g, numpy %.9g", c_loss, want);
    for (size_t i = 0; i < nt; i++) {
        const char *name;
        float *grad;
        size_t rows, cols;
        farm_rx_net_tensor_at(net, i, &name, NULL, &grad, &rows, &cols);
        snprintf(path, sizeof path, "%s/grad_%s.npy", tmpdir, name);
        if (farm_npy_read(path, &ref, &err))
            fail_msg("%s", err.msg);
        assert_int_equal(farm_tensor_size(&ref), rows * cols);
        double gmax = 0, emax = 0;
        for (size_t j = 0; j < rows * cols; j++) {
            gmax = fmax(gmax, fabs((double)ref.data[j]));
            emax = fmax(emax, fabs((double)grad[j] - ref.data[j]));
        }
        if (gmax > 0 ? emax > 1e-5 * gmax : emax > 1e-12)
            fail_msg("%s: max |C - numpy| = %g, largest gradient %g", name, emax, gmax);
        farm_tensor_release(&ref);
    }
    farm_rx_exec_free(ex);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
}

static void test_gru_grads(void **state)
{
    (void)state;
    static const char yaml[] = "input: 3\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: u\n"
                               "        nodes:\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: gru, hidden: 4}\n"
                               "          - {name: e, type: end}\n"
                               "          - {name: out, type: dense, out: 2}\n"
                               "output: {unit: u, node: out, loss: mse}\n";
    int32_t full[3] = {2, 2, 2}, mixed[3] = {2, 1, 0};
    check_grads(yaml, "gru", 4, "mse", 0, full);
    check_grads(yaml, "gru", 4, "mse", 0, mixed);
}

static void test_lstm_grads(void **state)
{
    (void)state;
    static const char yaml[] = "input: 3\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: u\n"
                               "        nodes:\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: lstm, hidden: 5}\n"
                               "          - {name: h, type: head, classes: 3}\n"
                               "          - {name: e, type: end}\n"
                               "output: {unit: u, node: h}\n";
    int32_t full[3] = {2, 2, 2}, mixed[3] = {2, 1, 2};
    check_grads(yaml, "lstm", 5, "ce", 0, full);
    check_grads(yaml, "lstm", 5, "ce", 0.5, mixed);
}

/* A node skipped for every object gets no gradient at all. */
static void test_skipped_nodes_get_no_gradient(void **state)
{
    (void)state;
    static const char yaml[] = "input: 3\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: u\n"
                               "        nodes:\n"
                               "          - {name: pre, type: dense, out: 4}\n"
                               "          - {name: s, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: gru, hidden: 4}\n"
                               "          - {name: e, type: end}\n"
                               "          - {name: out, type: dense, out: 2}\n"
                               "output: {unit: u, node: out, loss: mse}\n";
    struct farm_rx_model *m;
    struct farm_rx_net *net;
    load(yaml, 3, &m, &net);
    float x[4 * 2 * 3], tg[2 * 2];
    fill(x, sizeof x / sizeof x[0], 1, 1.0f);
    fill(tg, 4, 2, 1.0f);
    struct farm_rx_exec *ex;
    struct farm_err err = {0};
    assert_int_equal(farm_rx_exec_new(net, 2, 4, 1, &ex, &err), 0);
    assert_int_equal(farm_rx_exec_forward(ex, x, 4, 2, NULL, FARM_RX_ALWAYS_SKIP, &err), 0);
    farm_rx_net_zero_grad(net);
    assert_int_equal(farm_rx_exec_backward(ex, NULL, tg, 0, NULL, &err), 0);
    const char *zero[] = {"u.cell.wx", "u.cell.wh",    "u.cell.bx",
                          "u.cell.bh", "u.pre.weight", "u.pre.bias"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        float *g;
        size_t n;
        assert_int_equal(farm_rx_net_tensor(net, zero[i], NULL, &g, &n), 0);
        for (size_t j = 0; j < n; j++)
            if (g[j] != 0.0f)
                fail_msg("%s[%zu] = %g, expected no gradient", zero[i], j, g[j]);
    }
    /* the output node ran: it has a gradient (its bias at least) */
    float *gb;
    assert_int_equal(farm_rx_net_tensor(net, "u.out.bias", NULL, &gb, NULL), 0);
    assert_true(gb[0] != 0.0f || gb[1] != 0.0f);
    farm_rx_exec_free(ex);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
}

static const char exit_yaml[] =
    "input: 5\n"
    "layers:\n"
    "  - units:\n"
    "      - name: clf\n"
    "        nodes:\n"
    "          - {name: exit, type: start, condition: {kind: confidence, head: head, "
    "threshold: 0.95}}\n"
    "          - {name: cell, type: gru, hidden: 24}\n"
    "          - {name: head, type: head, classes: 4}\n"
    "          - {name: end, type: end}\n"
    "output: {unit: clf, node: head}\n";

/* The trained early-exit classifier keeps its accuracy within 1 point of
 * never-skip while skipping at least 30% of node executions. */
static void test_early_exit_classifier(void **state)
{
    (void)state;
    struct farm_rx_model *m;
    struct farm_rx_net *net;
    load(exit_yaml, 1, &m, &net);
    struct farm_rx_data all = {0}, train = {0}, test = {0};
    struct farm_err err = {0};
    assert_int_equal(farm_rx_data_varying(&all, 3000, 24, 4, 1.0, 0.5, 9, &err), 0);
    assert_int_equal(farm_rx_data_split(&all, 1.0 / 3, 2, &train, &test, &err), 0);
    struct farm_rx_train_opts o;
    farm_rx_train_opts_default(&o);
    o.epochs = 6;
    o.batch = 32;
    o.lr = 0.01;
    double loss = 0;
    if (farm_rx_train(net, &train, &o, NULL, NULL, &loss, &err))
        fail_msg("train: %s", err.msg);
    struct farm_rx_exec *ex;
    assert_int_equal(farm_rx_exec_new(net, 64, 0, 0, &ex, &err), 0);
    struct farm_rx_eval never, early;
    assert_int_equal(farm_rx_evaluate(ex, &test, FARM_RX_NEVER_SKIP, &never, &err), 0);
    assert_int_equal(farm_rx_evaluate(ex, &test, FARM_RX_CONDITIONS, &early, &err), 0);
    double skipped =
        (double)early.stats.skipped / (double)(early.stats.skipped + early.stats.executed);
    print_message("loss %.4f; accuracy never-skip %.4f, early exit %.4f; skipped %.1f%%\n", loss,
                  never.accuracy, early.accuracy, 100 * skipped);
    assert_true(never.accuracy > 0.9);
    assert_true(fabs(never.accuracy - early.accuracy) <= 0.01);
    assert_true(skipped >= 0.30);
    assert_int_equal(never.stats.skipped, 0);
    assert_int_equal(early.stats.executed + early.stats.skipped, (uint64_t)2 * test.n * test.steps);
    /* skips.svg: one line per unit, from this evaluation's activity */
    char path[512];
    snprintf(path, sizeof path, "%s/skips.svg", tmpdir);
    assert_int_equal(farm_rx_write_skips_svg(ex, path, "early exit", &err), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "<svg"));
    assert_non_null(strstr(buf, "<polyline"));
    assert_non_null(strstr(buf, ">clf</text>"));
    /* the share active falls: the first step has everyone, the last fewer */
    uint64_t seen, a0, aL;
    farm_rx_exec_activity(ex, 0, 0, &seen, &a0);
    assert_int_equal(a0, test.n);
    farm_rx_exec_activity(ex, 0, test.steps - 1, &seen, &aL);
    assert_true(aL < test.n / 2);

    /* weights round trip: another seed, loaded, gives bitwise the same */
    snprintf(path, sizeof path, "%s/w.safetensors", tmpdir);
    assert_int_equal(farm_rx_net_save(net, path, &err), 0);
    struct farm_rx_net *net2;
    assert_int_equal(farm_rx_net_new(m, 99, &net2, &err), 0);
    assert_int_equal(farm_rx_net_load(net2, path, &err), 0);
    struct farm_rx_exec *ex2;
    assert_int_equal(farm_rx_exec_new(net2, 64, 0, 0, &ex2, &err), 0);
    struct farm_rx_eval again;
    assert_int_equal(farm_rx_evaluate(ex2, &test, FARM_RX_CONDITIONS, &again, &err), 0);
    assert_true(again.accuracy == early.accuracy);
    assert_int_equal(again.stats.skipped, early.stats.skipped);
    farm_rx_exec_free(ex2);
    farm_rx_net_free(net2);

    farm_rx_exec_free(ex);
    farm_rx_data_release(&all);
    farm_rx_data_release(&train);
    farm_rx_data_release(&test);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
}

/* A Skip-RNN style gate learns to close: it starts open for everyone
 * (bias 2) and, trained with a budget, skips a good share of the steps
 * while the classifier stays accurate; without the budget it stays open.
 * (Measured: no budget 0% skipped, 98.3%; budget 0.15: 53% skipped, 94.3%.) */
static void test_gate_learns(void **state)
{
    (void)state;
    static const char yaml[] =
        "input: 5\n"
        "layers:\n"
        "  - units:\n"
        "      - name: u\n"
        "        nodes:\n"
        "          - {name: g, type: start, condition: {kind: gate, node: cell, threshold: 0.5}}\n"
        "          - {name: cell, type: gru, hidden: 24}\n"
        "          - {name: head, type: head, classes: 4}\n"
        "          - {name: e, type: end}\n"
        "output: {unit: u, node: head}\n";
    struct farm_rx_data all = {0}, train = {0}, test = {0};
    struct farm_err err = {0};
    assert_int_equal(farm_rx_data_varying(&all, 2400, 24, 4, 1.0, 0.5, 5, &err), 0);
    assert_int_equal(farm_rx_data_split(&all, 0.25, 2, &train, &test, &err), 0);
    double skip[2], acc[2];
    for (int budget = 0; budget < 2; budget++) {
        struct farm_rx_model *m;
        struct farm_rx_net *net;
        load(yaml, 4, &m, &net);
        struct farm_rx_train_opts o;
        farm_rx_train_opts_default(&o);
        o.epochs = 6;
        o.gate_cost = budget ? 0.15 : 0;
        if (farm_rx_train(net, &train, &o, NULL, NULL, NULL, &err))
            fail_msg("train: %s", err.msg);
        struct farm_rx_exec *ex;
        assert_int_equal(farm_rx_exec_new(net, 64, 0, 0, &ex, &err), 0);
        struct farm_rx_eval ev;
        assert_int_equal(farm_rx_evaluate(ex, &test, FARM_RX_CONDITIONS, &ev, &err), 0);
        skip[budget] = (double)ev.stats.skipped / (double)(ev.stats.skipped + ev.stats.executed);
        acc[budget] = ev.accuracy;
        farm_rx_exec_free(ex);
        farm_rx_net_free(net);
        farm_rx_model_free(m);
    }
    print_message("gate: no budget: skipped %.1f%%, accuracy %.4f; budget 0.15: skipped %.1f%%, "
                  "accuracy %.4f\n",
                  100 * skip[0], acc[0], 100 * skip[1], acc[1]);
    assert_true(skip[0] < 0.05);
    assert_true(skip[1] >= 0.3);
    assert_true(acc[1] >= 0.9);
    farm_rx_data_release(&all);
    farm_rx_data_release(&train);
    farm_rx_data_release(&test);
}

/* The adding problem with padding: training lowers the error well below
 * the variance of the target (~0.167), and padding steps are skipped. */
static void test_adding_problem(void **state)
{
    (void)state;
    static const char yaml[] = "input: 2\n"
                               "layers:\n"
                               "  - units:\n"
                               "      - name: u\n"
                               "        nodes:\n"
                               "          - {name: pad, type: start, condition: {kind: length}}\n"
                               "          - {name: cell, type: gru, hidden: 16}\n"
                               "          - {name: e, type: end}\n"
                               "          - {name: out, type: dense, out: 1}\n"
                               "output: {unit: u, node: out, loss: mse}\n";
    struct farm_rx_model *m;
    struct farm_rx_net *net;
    load(yaml, 2, &m, &net);
    struct farm_rx_data all = {0}, train = {0}, test = {0};
    struct farm_err err = {0};
    assert_int_equal(farm_rx_data_adding(&all, 2400, 12, 6, 4, &err), 0);
    assert_int_equal(farm_rx_data_split(&all, 0.25, 1, &train, &test, &err), 0);
    struct farm_rx_train_opts o;
    farm_rx_train_opts_default(&o);
    o.epochs = 12;
    o.lr = 0.01;
    assert_int_equal(farm_rx_train(net, &train, &o, NULL, NULL, NULL, &err), 0);
    struct farm_rx_exec *ex;
    assert_int_equal(farm_rx_exec_new(net, 50, 0, 0, &ex, &err), 0);
    struct farm_rx_eval ev;
    assert_int_equal(farm_rx_evaluate(ex, &test, FARM_RX_CONDITIONS, &ev, &err), 0);
    uint64_t pad = 0;
    for (size_t i = 0; i < test.n; i++)
        pad += test.steps - (uint64_t)test.lengths[i];
    print_message("adding problem: test MSE %.4f\n", ev.mse);
    assert_true(ev.mse < 0.05);
    assert_int_equal(ev.stats.skipped, pad); /* the gru skips exactly the padding */
    farm_rx_exec_free(ex);
    farm_rx_data_release(&all);
    farm_rx_data_release(&train);
    farm_rx_data_release(&test);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
}

/* .npy data: (objects, steps, features) inputs with labels and lengths, or
 * with regression targets. */
static void test_npy_data(void **state)
{
    (void)state;
    struct farm_err err = {0};
    struct farm_tensor x = {0}, y = {0};
    size_t shape[3] = {4, 3, 2}, tshape[2] = {4, 1};
    assert_int_equal(farm_tensor_init_shape(&x, 3, shape), 0);
    for (size_t i = 0; i < 24; i++)
        x.data[i] = (float)i * 0.5f;
    assert_int_equal(farm_tensor_init_shape(&y, 2, tshape), 0);
    for (size_t i = 0; i < 4; i++)
        y.data[i] = (float)i - 1.5f;
    char xp[512], lp[512], np[512], tp[512];
    snprintf(xp, sizeof xp, "%s/seq_x.npy", tmpdir);
    snprintf(lp, sizeof lp, "%s/seq_y.npy", tmpdir);
    snprintf(np, sizeof np, "%s/seq_len.npy", tmpdir);
    snprintf(tp, sizeof tp, "%s/seq_t.npy", tmpdir);
    int32_t labels[4] = {2, 0, 1, 2}, lengths[4] = {3, 1, 0, 2};
    assert_int_equal(farm_npy_write(xp, &x, &err), 0);
    assert_int_equal(farm_npy_write_i32(lp, labels, 4, &err), 0);
    assert_int_equal(farm_npy_write_i32(np, lengths, 4, &err), 0);
    assert_int_equal(farm_npy_write(tp, &y, &err), 0);
    struct farm_rx_data d = {0};
    if (farm_rx_data_load_npy(&d, xp, lp, NULL, np, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.steps, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 3);
    assert_memory_equal(d.x, x.data, 24 * sizeof(float));
    assert_memory_equal(d.labels, labels, sizeof labels);
    assert_memory_equal(d.lengths, lengths, sizeof lengths);
    assert_null(d.targets);
    /* a batch puts object i of step t at x[t][i] */
    float xb[3 * 2 * 2];
    int32_t lb[2], yb[2];
    size_t order[4] = {3, 1, 0, 2};
    farm_rx_data_batch(&d, order, 0, 2, xb, lb, yb, NULL);
    assert_true(xb[0] == x.data[3 * 6] && xb[2] == x.data[1 * 6]); /* step 0 */
    assert_true(xb[2 * 2 * 2 + 2] == x.data[1 * 6 + 2 * 2]);       /* step 2, object 1 */
    assert_int_equal(lb[0], 2);
    assert_int_equal(yb[1], 0);
    farm_rx_data_release(&d);
    if (farm_rx_data_load_npy(&d, xp, NULL, tp, NULL, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(d.tdim, 1);
    assert_null(d.labels);
    assert_true(d.targets[3] == 1.5f);
    assert_int_equal(d.lengths[2], 3); /* no lengths file: full length */
    farm_rx_data_release(&d);
    /* lengths beyond the steps are refused, naming the file */
    int32_t bad[4] = {3, 4, 0, 1};
    assert_int_equal(farm_npy_write_i32(np, bad, 4, &err), 0);
    assert_int_equal(farm_rx_data_load_npy(&d, xp, lp, NULL, np, &err), FARM_EBADDATA);
    assert_non_null(strstr(err.msg, "seq_len.npy: length 4 of object 1 outside 0..3"));
    farm_tensor_release(&x);
    farm_tensor_release(&y);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct farm_rx_model *m;
    struct farm_rx_net *net;
    load(exit_yaml, 1, &m, &net);
    struct farm_rx_data d = {0};
    struct farm_err err = {0};
    assert_int_equal(farm_rx_data_adding(&d, 10, 8, 8, 1, &err), 0);
    struct farm_rx_train_opts o;
    farm_rx_train_opts_default(&o);
    assert_int_equal(farm_rx_train(net, &d, &o, NULL, NULL, NULL, &err), FARM_EBADDATA);
    assert_non_null(strstr(err.msg, "t.yaml: the model reads 5 features per step, the data has 2"));
    farm_rx_data_release(&d);
    assert_int_equal(farm_rx_data_varying(&d, 10, 2, 4, 1, 0.5, 1, &err), FARM_EBADPARAM);
    assert_int_equal(farm_rx_data_adding(&d, 10, 8, 9, 1, &err), FARM_EBADPARAM);
    /* labels out of range are refused by backward */
    struct farm_rx_exec *ex;
    float x[2 * 1 * 5] = {0};
    int32_t bad[1] = {7};
    assert_int_equal(farm_rx_exec_new(net, 1, 2, 1, &ex, &err), 0);
    assert_int_equal(farm_rx_exec_forward(ex, x, 2, 1, NULL, FARM_RX_CONDITIONS, &err), 0);
    assert_int_equal(farm_rx_exec_backward(ex, bad, NULL, 0, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "label 7 of object 0 is outside 0..3"));
    /* npy data: a missing file names itself; wrong rank is refused */
    assert_true(farm_rx_data_load_npy(&d, "/nonexistent/x.npy", "/nonexistent/y.npy", NULL, NULL,
                                      &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/x.npy"));
    char path[512];
    snprintf(path, sizeof path, "%s/flat.npy", tmpdir);
    size_t shape[2] = {2, 5};
    save_npy("flat", x, 2, shape);
    assert_int_equal(farm_rx_data_load_npy(&d, path, path, NULL, NULL, &err), FARM_EBADDATA);
    assert_non_null(strstr(err.msg, "expected an array of shape (objects, steps, features)"));
    /* weights of another model are refused, naming the tensor */
    snprintf(path, sizeof path, "%s/other.safetensors", tmpdir);
    static const char other[] = "input: 5\nlayers:\n  - units:\n      - name: clf\n        nodes:\n"
                                "          - {name: cell, type: gru, hidden: 8}\n"
                                "          - {name: head, type: head, classes: 4}\n"
                                "output: {unit: clf, node: head}\n";
    struct farm_rx_model *m2;
    struct farm_rx_net *net2;
    load(other, 1, &m2, &net2);
    assert_int_equal(farm_rx_net_save(net2, path, &err), 0);
    assert_true(farm_rx_net_load(net, path, &err) < 0);
    assert_non_null(strstr(err.msg, "clf.cell"));
    farm_rx_net_free(net2);
    farm_rx_model_free(m2);
    farm_rx_exec_free(ex);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
}

int main(void)
{
    farm_nn_blas_set_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gru_grads),
        cmocka_unit_test(test_lstm_grads),
        cmocka_unit_test(test_skipped_nodes_get_no_gradient),
        cmocka_unit_test(test_early_exit_classifier),
        cmocka_unit_test(test_gate_learns),
        cmocka_unit_test(test_adding_problem),
        cmocka_unit_test(test_npy_data),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
