/* graphsched operator graphs: formats, kernels against numpy, candidates,
 * the chooser against brute force, execution and the cost model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "farm/graphsched_ops.h"
#include "farm/yamljson.h"

static const char *fixture(const char *name)
{
    static char buf[8][4096];
    static int slot;
    const char *src = getenv("FARM_SOURCE_DIR");
    char *b = buf[slot++ % 8];
    snprintf(b, sizeof buf[0], "%s/tests/unit/fixtures/graphsched/%s", src ? src : ".", name);
    return b;
}

static void load_graph(const char *name, struct farm_gs_opgraph *g)
{
    struct farm_err err = {0};
    if (farm_gs_opgraph_load(fixture(name), name, g, &err))
        fail_msg("%s", err.msg);
}

static void load_cluster(const char *name, struct farm_gs_cluster *c)
{
    struct farm_err err = {0};
    if (farm_gs_cluster_load(fixture(name), name, c, &err))
        fail_msg("%s", err.msg);
}

/* A fixed synthetic calibration: the chooser tests must not depend on how
 * fast this machine happens to be at the moment. */
static void fake_calib(struct farm_gs_calib *cal)
{
    memset(cal, 0, sizeof *cal);
    for (int k = 1; k < FARM_GS_NOPKINDS; k++)
        for (int i = 0; i < FARM_GS_CAL_POINTS; i++) {
            cal->size[k][i] = pow(16.0, i + 2);
            cal->spu[k][i] = (k == FARM_GS_OP_MATMUL ? 1e-10 : 1e-9) * (1.0 + 2.0 / (i + 1));
        }
}

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/farm-gs-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_raw(const char *path, const float *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(v, sizeof(float), n, f), n);
    fclose(f);
}

/* numpy evaluates the fixture (converted to JSON by farm_base's generic
 * YAML reader, not by the graph loader under test) on the same inputs and
 * compares with what the C kernels produced. */
static const char *const numpy_check =
    "import sys, json, numpy as np\n"
    "g = json.load(open(sys.argv[1])); d = sys.argv[2]\n"
    "v = {}\n"
    "for i, x in enumerate(g['inputs']):\n"
    "    v[x['name']] = np.fromfile(f'{d}/in{i}.f32', np.float32).reshape(x['shape']).astype(np.float64)\n"
    "for o in g['ops']:\n"
    "    a = [v[n] for n in o['in']]; k = o['op']\n"
    "    if k == 'matmul': r = a[0] @ a[1]\n"
    "    elif k == 'add': r = sum(a[1:], a[0])\n"
    "    elif k == 'relu': r = np.maximum(a[0], 0)\n"
    "    elif k == 'softmax':\n"
    "        e = np.exp(a[0] - a[0].max(axis=1, keepdims=True)); r = e / e.sum(axis=1, keepdims=True)\n"
    "    elif k == 'layernorm':\n"
    "        m = a[0].mean(axis=1, keepdims=True); r = (a[0] - m) / np.sqrt(a[0].var(axis=1, keepdims=True) + 1e-5)\n"
    "    elif k == 'rowsum': r = a[0].sum(axis=1, keepdims=True)\n"
    "    elif k == 'concat': r = np.concatenate(a, axis=o['axis'])\n"
    "    elif k == 'split':\n"
    "        dim = a[0].shape[o['axis']]; lo = o['index'] * dim // o['parts']; hi = (o['index'] + 1) * dim // o['parts']\n"
    "        r = a[0][lo:hi] if o['axis'] == 0 else a[0][:, lo:hi]\n"
    "    v[o['name']] = r\n"
    "worst = 0\n"
    "for i, n in enumerate(g['outputs']):\n"
    "    got = np.fromfile(f'{d}/out{i}.f32', np.float32).reshape(v[n].shape)\n"
    "    worst = max(worst, float((abs(got - v[n]) / (1 + abs(v[n]))).max()))\n"
    "print(worst)\n"
    "sys.exit(0 if worst < 1e-4 else 1)\n";

static void test_kernels_vs_numpy(void **state)
{
    (void)state;
    struct farm_gs_opgraph g;
    load_graph("mlp.yaml", &g);
    assert_int_equal(g.ninputs, 4);
    assert_int_equal(g.nout, 3);
    /* Shapes as inferred: t = concat([48,21], [48,64]) and v its lower half. */
    assert_int_equal(g.ops[13].rows, 48);
    assert_int_equal(g.ops[13].cols, 85);
    assert_int_equal(g.ops[14].rows, 24);
    assert_int_equal(g.ops[14].cols, 85);
    float **in, **out;
    assert_int_equal(farm_gs_make_inputs(&g, 42, &in), 0);
    assert_int_equal(farm_gs_run_single(&g, in, &out, NULL), 0);
    char path[512], script[512], cmd[2048];
    for (int i = 0; i < g.ninputs; i++) {
        snprintf(path, sizeof path, "%s/in%d.f32", tmpdir, i);
        write_raw(path, in[i], (size_t)g.ops[i].rows * (size_t)g.ops[i].cols);
    }
    for (int i = 0; i < g.nout; i++) {
        const struct farm_gs_op *op = &g.ops[g.outputs[i]];
        snprintf(path, sizeof path, "%s/out%d.f32", tmpdir, i);
        write_raw(path, out[i], (size_t)op->rows * (size_t)op->cols);
    }
    struct farm_yaml_doc *doc;
    struct farm_err yerr = {0};
    char gjson[512];
    snprintf(gjson, sizeof gjson, "%s/graph.json", tmpdir);
    assert_int_equal(farm_yaml_load_file(fixture("mlp.yaml"), NULL, &doc, &yerr), 0);
    assert_int_equal(json_dump_file(farm_yaml_root(doc), gjson, 0), 0);
    farm_yaml_free(doc);
    snprintf(script, sizeof script, "%s/check.py", tmpdir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(numpy_check, f);
    fclose(f);
    const char *py = getenv("FARM_PYTHON");
    snprintf(cmd, sizeof cmd, "%s '%s' '%s' '%s'", py ? py : "/usr/bin/python3", script, gjson,
             tmpdir);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The comparison used by the plugin catches a wrong element. */
    struct farm_err err = {0};
    float **ref;
    double worst = 1;
    assert_int_equal(farm_gs_run_single(&g, in, &ref, NULL), 0);
    assert_int_equal(farm_gs_compare(&g, out, ref, 1e-5, &worst, &err), 0);
    assert_true(worst == 0);
    out[1][7] += 0.01f;
    assert_int_equal(farm_gs_compare(&g, out, ref, 1e-5, &worst, &err), FARM_ENUMERIC);
    assert_non_null(strstr(err.msg, "output v[0, 7]"));
    farm_gs_free_buffers(in, g.ninputs);
    farm_gs_free_buffers(out, g.nout);
    farm_gs_free_buffers(ref, g.nout);
    farm_gs_opgraph_release(&g);
}

static void expect_error(int graph, const char *file, const char *msg)
{
    struct farm_err err = {0};
    int rc;
    if (graph) {
        struct farm_gs_opgraph g;
        rc = farm_gs_opgraph_load(fixture(file), file, &g, &err);
    } else {
        struct farm_gs_cluster c;
        rc = farm_gs_cluster_load(fixture(file), file, &c, &err);
    }
    assert_int_equal(rc, FARM_EBADSPEC);
    if (!strstr(err.msg, msg))
        fail_msg("expected \"%s\" in \"%s\"", msg, err.msg);
}

static void test_format_errors(void **state)
{
    (void)state;
    expect_error(1, "bad_shape.yaml",
                 "bad_shape.yaml:5:5: ops[0]: matmul: x is [4, 5] but w is [6, 7]");
    expect_error(1, "bad_tensor.yaml", "bad_tensor.yaml:5:32: ops[1].in[1]: unknown tensor \"q\"");
    expect_error(0, "bad_cluster.yaml",
                 "bad_cluster.yaml:4:42: nodes[2].speed: unknown class \"gpu\"");
    expect_error(0, "bad_link.yaml", "bad_link.yaml:6:3: no link between n0 and n2");
    /* Input scales: weights of the example block are drawn in [-s, s). */
    struct farm_gs_opgraph g;
    struct farm_err err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/examples/model-repo/graphsched/block.yaml",
             getenv("FARM_SOURCE_DIR") ? getenv("FARM_SOURCE_DIR") : ".");
    if (farm_gs_opgraph_load(path, "block.yaml", &g, &err))
        fail_msg("%s", err.msg);
    assert_true(g.ops[0].scale == 1.0 && g.ops[1].scale == 0.0625);
    float **in;
    assert_int_equal(farm_gs_make_inputs(&g, 5, &in), 0);
    for (int i = 0; i < 2; i++) {
        float mx = 0;
        for (int j = 0; j < g.ops[i].rows * g.ops[i].cols; j++)
            mx = fmaxf(mx, fabsf(in[i][j]));
        assert_true(mx <= g.ops[i].scale && mx > 0.99 * g.ops[i].scale);
    }
    farm_gs_free_buffers(in, g.ninputs);
    farm_gs_opgraph_release(&g);
    expect_error(1, "bad_scale.yaml", "bad_scale.yaml:2:37: inputs[0].scale: expected a number > 0");

    struct farm_gs_cluster c;
    load_cluster("cluster3.yaml", &c);
    assert_int_equal(c.p, 3);
    assert_true(c.nodes[0].cores == 2 && c.nodes[0].speed[FARM_GS_CLASS_MATMUL] == 2.0);
    assert_true(c.nodes[2].speed[FARM_GS_CLASS_COPY] == 0.5);
    assert_true(c.lat[0 * 3 + 1] == 1e-5 && c.bw[1 * 3 + 0] == 8e9);
    assert_true(c.lat[0 * 3 + 2] == 5e-5 && c.bw[2 * 3 + 1] == 1e9);
    farm_gs_cluster_release(&c);
}

/* Every candidate of mlp.yaml with at most two operators split (kmax 4),
 * executed on three threads under its HEFT schedule, equals the
 * single-node run of the original graph. */
static void test_candidates_execute(void **state)
{
    (void)state;
    struct farm_gs_opgraph g;
    struct farm_gs_cluster c;
    struct farm_gs_calib cal;
    struct farm_err err = {0};
    load_graph("mlp.yaml", &g);
    load_cluster("cluster3.yaml", &c);
    fake_calib(&cal);
    float **in, **ref;
    assert_int_equal(farm_gs_make_inputs(&g, 7, &in), 0);
    assert_int_equal(farm_gs_run_single(&g, in, &ref, NULL), 0);
    struct farm_gs_choice opts[64], *choice = calloc((size_t)g.n, sizeof *choice);
    int executed = 0, max_tasks = 0;
    for (int i = g.ninputs; i < g.n; i++) {
        int ni = farm_gs_options(&g, i, 4, opts, 64);
        for (int a = 0; a < ni; a++)
            for (int j = i; j < g.n; j++) {
                int nj = j == i ? 1 : farm_gs_options(&g, j, 4, opts + 32, 32);
                for (int b = 0; b < nj; b++) {
                    for (int q = 0; q < g.n; q++)
                        choice[q] = (struct farm_gs_choice){FARM_GS_SPLIT_NONE, 1};
                    farm_gs_options(&g, i, 4, opts, 64);
                    choice[i] = opts[a];
                    if (j != i) {
                        farm_gs_options(&g, j, 4, opts + 32, 32);
                        choice[j] = opts[32 + b];
                    }
                    struct farm_gs_opgraph cg;
                    struct farm_gs_dag d;
                    struct farm_gs_sched s;
                    struct farm_gs_exec_stats st;
                    float **out;
                    if (farm_gs_expand(&g, choice, &cg, &err) ||
                        farm_gs_opgraph_dag(&cg, &c, &cal, &d, &err))
                        fail_msg("%s", err.msg);
                    assert_int_equal(farm_gs_schedule(&d, FARM_GS_HEFT, &s), 0);
                    if (farm_gs_check(&d, &s, &err))
                        fail_msg("%s", err.msg);
                    assert_int_equal(farm_gs_exec(&cg, &c, &s, in, &out, &st, NULL, NULL), 0);
                    if (farm_gs_compare(&g, out, ref, 1e-4, NULL, &err)) {
                        char *t = farm_gs_choice_text(&g, choice);
                        fail_msg("%s: %s", t, err.msg);
                    }
                    assert_true(st.makespan > 0);
                    executed++;
                    max_tasks = cg.n - cg.ninputs > max_tasks ? cg.n - cg.ninputs : max_tasks;
                    farm_gs_free_buffers(out, g.nout);
                    farm_gs_exec_stats_release(&st);
                    farm_gs_sched_release(&s);
                    farm_gs_dag_release(&d);
                    farm_gs_opgraph_release(&cg);
                }
            }
    }
    assert_true(executed > 200);
    assert_true(max_tasks > 20);
    free(choice);
    farm_gs_free_buffers(in, g.ninputs);
    farm_gs_free_buffers(ref, g.nout);
    farm_gs_cluster_release(&c);
    farm_gs_opgraph_release(&g);
}

static void test_chain_stays_split(void **state)
{
    (void)state;
    struct farm_gs_opgraph g, cg;
    struct farm_err err = {0};
    load_graph("small.yaml", &g);
    struct farm_gs_choice ch[6] = {{0, 1}, {0, 1}, {0, 1}, {FARM_GS_SPLIT_ROWS, 2},
                                   {FARM_GS_SPLIT_ROWS, 2}, {FARM_GS_SPLIT_ROWS, 2}};
    assert_int_equal(farm_gs_expand(&g, ch, &cg, &err), 0);
    /* x split once (2 slices), 2 x (matmul, relu, matmul), one final concat. */
    assert_int_equal(cg.n - cg.ninputs, 2 + 6 + 1);
    char *t = farm_gs_choice_text(&g, ch);
    assert_string_equal(t, "h:rows2 a:rows2 y:rows2");
    free(t);
    farm_gs_opgraph_release(&cg);
    ch[3] = (struct farm_gs_choice){FARM_GS_SPLIT_INNER, 4};
    ch[4] = ch[5] = (struct farm_gs_choice){FARM_GS_SPLIT_NONE, 1};
    assert_int_equal(farm_gs_expand(&g, ch, &cg, &err), 0);
    /* x and w1 split 4 ways, 4 partial products, their sum, relu, matmul. */
    assert_int_equal(cg.n - cg.ninputs, 8 + 4 + 1 + 2);
    farm_gs_opgraph_release(&cg);
    farm_gs_opgraph_release(&g);
}

/* The chooser, run exhaustively, picks the cheapest candidate under the
 * model: checked against an independent enumeration, and no method beats
 * the brute-force optimum on candidates of up to 8 tasks. */
static void test_chooser_brute_force(void **state)
{
    (void)state;
    struct farm_gs_opgraph g;
    struct farm_gs_cluster c;
    struct farm_gs_calib cal;
    struct farm_err err = {0};
    load_graph("small.yaml", &g);
    load_cluster("cluster3_fastlinks.yaml", &c);
    fake_calib(&cal);
    /* Every method, refine included. */
    struct farm_gs_search so = {.kmax = 4, .budget = 1000, .methods = (1u << FARM_GS_NMETHODS) - 1};
    struct farm_gs_result r;
    if (farm_gs_choose(&g, &c, &cal, &so, &r, &err))
        fail_msg("%s", err.msg);
    assert_true(r.exhaustive);
    int space = 1;
    struct farm_gs_choice opts[3][64];
    int nopt[3];
    for (int i = 0; i < 3; i++)
        space *= nopt[i] = farm_gs_options(&g, 3 + i, 4, opts[i], 64);
    assert_int_equal(nopt[0], 7); /* none, rows 2/4, cols 2/4, inner 2/4 */
    assert_int_equal(nopt[1], 5);
    assert_int_equal(r.ncand, space);
    double best = INFINITY;
    int checked_opt = 0;
    for (int a = 0; a < nopt[0]; a++)
        for (int b = 0; b < nopt[1]; b++)
            for (int e = 0; e < nopt[2]; e++) {
                struct farm_gs_choice ch[6] = {{0, 1}, {0, 1}, {0, 1},
                                               opts[0][a], opts[1][b], opts[2][e]};
                struct farm_gs_opgraph cg;
                struct farm_gs_dag d;
                if (farm_gs_expand(&g, ch, &cg, &err) ||
                    farm_gs_opgraph_dag(&cg, &c, &cal, &d, &err))
                    fail_msg("%s", err.msg);
                struct farm_gs_sched opt;
                int tiny = d.n <= 8;
                if (tiny) {
                    assert_int_equal(farm_gs_optimal(&d, 0, &opt, &err), 0);
                    checked_opt++;
                }
                for (int m = 0; m < FARM_GS_NMETHODS; m++) {
                    struct farm_gs_sched s;
                    assert_int_equal(farm_gs_schedule(&d, m, &s), 0);
                    if (farm_gs_check(&d, &s, &err))
                        fail_msg("%s", err.msg);
                    best = fmin(best, s.makespan);
                    if (tiny)
                        assert_true(s.makespan >= opt.makespan * (1 - 1e-12));
                    farm_gs_sched_release(&s);
                }
                if (tiny)
                    farm_gs_sched_release(&opt);
                farm_gs_dag_release(&d);
                farm_gs_opgraph_release(&cg);
            }
    print_message("%d candidates of <= 8 tasks checked against the optimum\n", checked_opt);
    assert_true(checked_opt >= 5);
    assert_true(r.sched.makespan == best);
    assert_true(r.cands[r.best].span[r.best_method] == best);
    /* The baseline is not the winner here: splitting pays on this cluster. */
    assert_string_not_equal(r.cands[r.best].text, "baseline");
    json_t *j = farm_gs_result_json(&r);
    assert_int_equal(json_array_size(j), (size_t)space);
    /* Same input, same calibration: the same candidates and schedule, byte
     * for byte. */
    struct farm_gs_result r2;
    assert_int_equal(farm_gs_choose(&g, &c, &cal, &so, &r2, &err), 0);
    json_t *j2 = farm_gs_result_json(&r2);
    json_t *s1 = farm_gs_sched_json(&r.dag, &r.sched, "x");
    json_t *s2 = farm_gs_sched_json(&r2.dag, &r2.sched, "x");
    char *t1 = json_dumps(j, JSON_REAL_PRECISION(17)), *t2 = json_dumps(j2, JSON_REAL_PRECISION(17));
    char *u1 = json_dumps(s1, JSON_REAL_PRECISION(17)), *u2 = json_dumps(s2, JSON_REAL_PRECISION(17));
    assert_string_equal(t1, t2);
    assert_string_equal(u1, u2);
    free(t1);
    free(t2);
    free(u1);
    free(u2);
    json_decref(j2);
    json_decref(s1);
    json_decref(s2);
    farm_gs_result_release(&r2);
    json_decref(j);
    farm_gs_result_release(&r);

    /* With a small budget the search stays within it and never loses to the
     * baseline. */
    so.budget = 12;
    assert_int_equal(farm_gs_choose(&g, &c, &cal, &so, &r, &err), 0);
    assert_false(r.exhaustive);
    assert_true(r.ncand <= 12);
    assert_string_equal(r.cands[0].text, "baseline");
    for (int m = 0; m < FARM_GS_NMETHODS; m++)
        assert_true(r.sched.makespan <= r.cands[0].span[m]);
    farm_gs_result_release(&r);
    farm_gs_cluster_release(&c);
    farm_gs_opgraph_release(&g);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* On two nodes made of this machine's cores, the emulated makespan of a
 * graph of matmuls is within 25% of the prediction (median of 5), and the
 * calibration cache round-trips. */
static void test_cost_model(void **state)
{
    (void)state;
    struct farm_gs_opgraph g;
    struct farm_gs_cluster c;
    struct farm_gs_calib cal, cal2;
    struct farm_err err = {0};
    char cache[512];
    int from_cache = -1;
    snprintf(cache, sizeof cache, "%s/calib.json", tmpdir);
    if (farm_gs_calibrate(cache, &cal, &from_cache, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(from_cache, 0);
    assert_int_equal(farm_gs_calibrate(cache, &cal2, &from_cache, &err), 0);
    assert_int_equal(from_cache, 1);
    assert_memory_equal(cal.spu, cal2.spu, sizeof cal.spu);
    load_graph("matmuls.yaml", &g);
    load_cluster("cluster2.yaml", &c);
    struct farm_gs_search so = {.kmax = 2, .budget = 8, .methods = 15};
    struct farm_gs_result r;
    if (farm_gs_choose(&g, &c, &cal, &so, &r, &err))
        fail_msg("%s", err.msg);
    if (farm_gs_check(&r.dag, &r.sched, &err))
        fail_msg("%s", err.msg);
    float **in, **ref;
    assert_int_equal(farm_gs_make_inputs(&g, 1, &in), 0);
    assert_int_equal(farm_gs_run_single(&g, in, &ref, NULL), 0);
    double ms[5];
    for (int rep = 0; rep < 5; rep++) {
        float **out;
        struct farm_gs_exec_stats st;
        assert_int_equal(farm_gs_exec(&r.graph, &c, &r.sched, in, &out, &st, NULL, NULL), 0);
        assert_int_equal(farm_gs_compare(&g, out, ref, 1e-4, NULL, &err), 0);
        ms[rep] = st.makespan;
        farm_gs_free_buffers(out, g.nout);
        farm_gs_exec_stats_release(&st);
    }
    qsort(ms, 5, sizeof ms[0], cmp_double);
    double pred = r.sched.makespan, ratio = ms[2] / pred;
    print_message("predicted %.6f s, measured median %.6f s (ratio %.3f), %s\n", pred, ms[2],
                  ratio, r.cands[r.best].text);
#if defined(__SANITIZE_ADDRESS__)
    /* Under AddressSanitizer every memory access is instrumented, the
     * calibrated kernels are not what runs here, and the prediction is not
     * meant to hold: the ratio is checked in the normal build only. */
    (void)ratio;
#else
    assert_true(ratio > 0.75 && ratio < 1.25);
#endif
    /* Both nodes work: the two chains run side by side. */
    int used[2] = {0, 0};
    for (int t = 0; t < r.sched.n; t++)
        used[r.sched.proc[t]] = 1;
    assert_true(used[0] && used[1]);
    farm_gs_free_buffers(in, g.ninputs);
    farm_gs_free_buffers(ref, g.nout);
    farm_gs_result_release(&r);
    farm_gs_cluster_release(&c);
    farm_gs_opgraph_release(&g);
}

/* Called from every node thread: the count is atomic. */
static int cancel_now(void *arg)
{
    atomic_int *calls = arg;
    return atomic_fetch_add(calls, 1) + 1 >= 3;
}

/* A cancelled execution stops between operators and says so. */
static void test_exec_cancel(void **state)
{
    (void)state;
    struct farm_gs_opgraph g;
    struct farm_gs_cluster c;
    struct farm_gs_calib cal;
    struct farm_gs_dag d;
    struct farm_gs_sched s;
    struct farm_gs_exec_stats st = {0};
    struct farm_err err = {0};
    load_graph("mlp.yaml", &g);
    load_cluster("cluster2.yaml", &c);
    fake_calib(&cal);
    assert_int_equal(farm_gs_opgraph_dag(&g, &c, &cal, &d, &err), 0);
    assert_int_equal(farm_gs_schedule(&d, FARM_GS_PEFT, &s), 0);
    float **in, **out = NULL;
    atomic_int calls = 0;
    assert_int_equal(farm_gs_make_inputs(&g, 3, &in), 0);
    assert_int_equal(farm_gs_exec(&g, &c, &s, in, &out, &st, cancel_now, &calls),
                     FARM_ECANCELLED);
    assert_null(out);
    assert_true(atomic_load(&calls) >= 3 && atomic_load(&calls) < g.n);
    farm_gs_free_buffers(in, g.ninputs);
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
    farm_gs_cluster_release(&c);
    farm_gs_opgraph_release(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_vs_numpy),   cmocka_unit_test(test_format_errors),
        cmocka_unit_test(test_chain_stays_split),  cmocka_unit_test(test_candidates_execute),
        cmocka_unit_test(test_chooser_brute_force), cmocka_unit_test(test_cost_model),
        cmocka_unit_test(test_exec_cancel),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
