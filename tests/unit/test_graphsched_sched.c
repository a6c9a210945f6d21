/* graphsched scheduling core: the published example, validity, bounds,
 * brute force, degenerate cases, determinism and input errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched.h"

static const char *fixture(const char *name)
{
    static char buf[4096];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/tests/unit/fixtures/graphsched/%s", src ? src : ".", name);
    return buf;
}

static void load_paper(struct farm_gs_dag *d)
{
    struct farm_err err = {0};
    int rc = farm_gs_dag_load(fixture("topcuoglu.yaml"), "topcuoglu.yaml", d, &err);
    if (rc)
        fail_msg("%s", err.msg);
}

static void sched_ok(const struct farm_gs_dag *d, int method, struct farm_gs_sched *s)
{
    struct farm_err err = {0};
    assert_int_equal(farm_gs_schedule(d, method, s), 0);
    if (farm_gs_check(d, s, &err))
        fail_msg("%s schedule invalid: %s", farm_gs_method_name(method), err.msg);
}

static void test_paper_ranks(void **state)
{
    (void)state;
    struct farm_gs_dag d;
    load_paper(&d);
    /* Table 2 of the paper: rank_u and rank_d. */
    static const double up[10] = {108.000, 77.000, 80.000, 80.000, 69.000,
                                  63.333,  42.667, 35.667, 44.333, 14.667};
    static const double down[10] = {0.000,  31.000, 25.000, 22.000, 24.000,
                                    27.000, 62.333, 66.667, 63.667, 93.333};
    double r[10];
    farm_gs_rank_upward(&d, r);
    for (int i = 0; i < 10; i++)
        assert_true(fabs(r[i] - up[i]) < 1e-3);
    farm_gs_rank_downward(&d, r);
    for (int i = 0; i < 10; i++)
        assert_true(fabs(r[i] - down[i]) < 1e-3);
    farm_gs_dag_release(&d);
}

static void test_paper_heft(void **state)
{
    (void)state;
    struct farm_gs_dag d;
    struct farm_gs_sched s;
    load_paper(&d);
    sched_ok(&d, FARM_GS_HEFT, &s);
    assert_true(s.makespan == 80.0);
    /* Figure 3(a): processor (0-based) and start time of n1..n10. */
    static const int proc[10] = {2, 0, 2, 1, 2, 1, 2, 0, 1, 1};
    static const double start[10] = {0, 27, 9, 18, 28, 26, 38, 57, 56, 73};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(s.proc[i], proc[i]);
        assert_true(s.start[i] == start[i]);
    }
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
}

static void test_paper_cpop(void **state)
{
    (void)state;
    struct farm_gs_dag d;
    struct farm_gs_sched s;
    load_paper(&d);
    sched_ok(&d, FARM_GS_CPOP, &s);
    assert_true(s.makespan == 86.0);
    /* The critical path n1 n2 n9 n10 runs on P2 (index 1). */
    assert_int_equal(s.proc[0], 1);
    assert_int_equal(s.proc[1], 1);
    assert_int_equal(s.proc[8], 1);
    assert_int_equal(s.proc[9], 1);
    farm_gs_sched_release(&s);
    sched_ok(&d, FARM_GS_PEFT, &s);
    assert_true(s.makespan >= farm_gs_cp_min(&d));
    farm_gs_sched_release(&s);
    sched_ok(&d, FARM_GS_LOOKAHEAD, &s);
    assert_true(s.makespan >= farm_gs_cp_min(&d));
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
}

static void expect_invalid(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                           const char *what)
{
    struct farm_err err = {0};
    assert_int_equal(farm_gs_check(d, s, &err), FARM_EBADDATA);
    if (!strstr(err.msg, what))
        fail_msg("expected \"%s\" in \"%s\"", what, err.msg);
}

static void test_checker_rejects(void **state)
{
    (void)state;
    struct farm_gs_dag d;
    struct farm_gs_sched s;
    load_paper(&d);
    sched_ok(&d, FARM_GS_HEFT, &s);
    /* n4 on P2 at 18..26 and n6 at 26..42: move n6 earlier to overlap. */
    s.start[5] -= 1;
    s.finish[5] -= 1;
    expect_invalid(&d, &s, "overlap");
    s.start[5] += 1;
    s.finish[5] += 1;
    /* n2 on P1 at 27 needs n1's data (P3, finish 9, comm 18): 27 is tight. */
    s.start[1] -= 0.5;
    s.finish[1] -= 0.5;
    expect_invalid(&d, &s, "before its input");
    s.start[1] += 0.5;
    s.finish[1] += 0.5;
    s.finish[7] += 1;
    expect_invalid(&d, &s, "duration");
    s.finish[7] -= 1;
    s.proc[0] = 3;
    expect_invalid(&d, &s, "processor 3");
    s.proc[0] = 2;
    s.makespan = 79;
    expect_invalid(&d, &s, "makespan");
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
}

static void gen(int n, int p, double ccr, double beta, uint64_t seed, struct farm_gs_dag *d)
{
    struct farm_gs_gen_params gp = {.n = n,
                                    .fat = 0.2 + 0.6 * (double)(seed % 3) / 2.0,
                                    .density = 0.2 + 0.3 * (double)(seed % 2),
                                    .regularity = 0.5,
                                    .jump = 1 + (int)(seed % 3),
                                    .ccr = ccr,
                                    .beta = beta,
                                    .p = p,
                                    .mean_cost = 20};
    assert_int_equal(farm_gs_gen_random(&gp, seed, d), 0);
}

static void test_random_bounds(void **state)
{
    (void)state;
    static const double ccrs[] = {0.1, 1, 5}, betas[] = {0.1, 1, 2};
    for (uint64_t seed = 1; seed <= 120; seed++) {
        struct farm_gs_dag d;
        gen(5 + (int)(seed * 7 % 80), 2 + (int)(seed % 7), ccrs[seed % 3], betas[(seed / 3) % 3],
            seed, &d);
        double cp = farm_gs_cp_min(&d);
        for (int m = 0; m < FARM_GS_NMETHODS; m++) {
            struct farm_gs_sched s;
            sched_ok(&d, m, &s);
            assert_true(s.makespan >= cp * (1 - 1e-12));
            assert_true(farm_gs_slr(&d, &s) >= 1 - 1e-12);
            farm_gs_sched_release(&s);
        }
        farm_gs_dag_release(&d);
    }
}

/* An independent exhaustive reference for very small graphs: every
 * permutation that respects precedence, times every assignment, each task
 * appended at max(processor free, inputs arrived). */
struct naive {
    const struct farm_gs_dag *d;
    int order[8], used[8];
    double best;
};

static void naive_eval(struct naive *nv)
{
    const struct farm_gs_dag *d = nv->d;
    int n = d->n, p = d->p, total = 1;
    for (int i = 0; i < n; i++)
        total *= p;
    for (int a = 0; a < total; a++) {
        int proc[8], x = a;
        double fin[8], avail[8] = {0}, span = 0;
        for (int i = 0; i < n; i++) {
            proc[i] = x % p;
            x /= p;
        }
        for (int o = 0; o < n; o++) {
            int i = nv->order[o], k = proc[i];
            double r = avail[k];
            for (int q = d->pred_off[i]; q < d->pred_off[i + 1]; q++) {
                int e = d->pred[q], j = d->edges[e].src;
                r = fmax(r, fin[j] + farm_gs_comm(d, e, proc[j], k));
            }
            fin[i] = r + d->cost[i * p + k];
            avail[k] = fin[i];
            span = fmax(span, fin[i]);
        }
        nv->best = fmin(nv->best, span);
    }
}

static void naive_perm(struct naive *nv, int depth)
{
    const struct farm_gs_dag *d = nv->d;
    if (depth == d->n) {
        naive_eval(nv);
        return;
    }
    for (int i = 0; i < d->n; i++) {
        if (nv->used[i])
            continue;
        int ok = 1;
        for (int q = d->pred_off[i]; q < d->pred_off[i + 1]; q++)
            ok &= nv->used[d->edges[d->pred[q]].src];
        if (!ok)
            continue;
        nv->used[i] = 1;
        nv->order[depth] = i;
        naive_perm(nv, depth + 1);
        nv->used[i] = 0;
    }
}

static void test_brute_force(void **state)
{
    (void)state;
    struct farm_err err = {0};
    int strictly_better = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        struct farm_gs_dag d;
        int n = 3 + (int)(seed % 6); /* 3..8 tasks */
        gen(n, 3, seed % 2 ? 0.5 : 2.0, 1.0, seed * 31, &d);
        struct farm_gs_sched opt;
        if (farm_gs_optimal(&d, 0, &opt, &err))
            fail_msg("%s", err.msg);
        if (farm_gs_check(&d, &opt, &err))
            fail_msg("optimal schedule invalid: %s", err.msg);
        if (n <= 6) {
            struct naive nv = {.d = &d, .best = INFINITY};
            naive_perm(&nv, 0);
            assert_true(fabs(nv.best - opt.makespan) <= 1e-9 * nv.best);
        }
        for (int m = 0; m < FARM_GS_NMETHODS; m++) {
            struct farm_gs_sched s;
            sched_ok(&d, m, &s);
            assert_true(s.makespan >= opt.makespan * (1 - 1e-12));
            strictly_better += s.makespan > opt.makespan * (1 + 1e-9);
            farm_gs_sched_release(&s);
        }
        farm_gs_sched_release(&opt);
        farm_gs_dag_release(&d);
    }
    /* The heuristics are not optimal everywhere: the search finds better. */
    assert_true(strictly_better > 0);
}

static void test_degenerate(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        /* One processor: every method gives the sum of the costs. */
        struct farm_gs_dag d;
        gen(10 + (int)seed, 1, 2.0, 1.0, seed, &d);
        double sum = 0;
        for (int i = 0; i < d.n; i++)
            sum += d.cost[i];
        for (int m = 0; m < FARM_GS_NMETHODS; m++) {
            struct farm_gs_sched s;
            sched_ok(&d, m, &s);
            assert_true(fabs(s.makespan - sum) <= 1e-9 * sum);
            farm_gs_sched_release(&s);
        }
        farm_gs_dag_release(&d);

        /* A chain with zero communication: the sum of minimum costs for HEFT
         * and PEFT; CPOP pins the whole chain (its critical path) to the one
         * processor with the least total, as published. */
        int n = 5 + (int)seed, p = 4;
        assert_int_equal(farm_gs_dag_init(&d, n, p), 0);
        double summin = 0, colsum[4] = {0};
        for (int i = 0; i < n; i++) {
            double mn = INFINITY;
            for (int k = 0; k < p; k++) {
                d.cost[i * p + k] = 1 + (double)((i * 7 + k * 13 + (int)seed) % 17);
                mn = fmin(mn, d.cost[i * p + k]);
                colsum[k] += d.cost[i * p + k];
            }
            summin += mn;
            if (i)
                assert_int_equal(farm_gs_dag_add_edge(&d, i - 1, i, 0.0), 0);
        }
        assert_int_equal(farm_gs_dag_finalize(&d, NULL), 0);
        for (int m = 0; m < FARM_GS_NMETHODS; m++) {
            struct farm_gs_sched s;
            sched_ok(&d, m, &s);
            double want = summin;
            if (m == FARM_GS_CPOP)
                want = fmin(fmin(colsum[0], colsum[1]), fmin(colsum[2], colsum[3]));
            assert_true(fabs(s.makespan - want) <= 1e-9 * want);
            farm_gs_sched_release(&s);
        }
        farm_gs_dag_release(&d);
    }
}

static char *sched_text(const struct farm_gs_dag *d, int m)
{
    struct farm_gs_sched s;
    sched_ok(d, m, &s);
    json_t *j = farm_gs_sched_json(d, &s, farm_gs_method_name(m));
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    farm_gs_sched_release(&s);
    return t;
}

static void test_deterministic(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        struct farm_gs_dag a, b, c;
        gen(200, 8, 1.0, 1.0, seed, &a);
        gen(200, 8, 1.0, 1.0, seed, &b);
        /* The same graph with its edges added in reverse order. */
        assert_int_equal(farm_gs_dag_init(&c, a.n, a.p), 0);
        memcpy(c.cost, a.cost, (size_t)a.n * (size_t)a.p * sizeof(double));
        for (int e = a.m - 1; e >= 0; e--)
            assert_int_equal(
                farm_gs_dag_add_edge(&c, a.edges[e].src, a.edges[e].dst, a.edges[e].data), 0);
        for (int k = 0; k < a.p; k++)
            c.proc_names[k] = strdup(a.proc_names[k]);
        assert_int_equal(farm_gs_dag_finalize(&c, NULL), 0);
        for (int m = 0; m < FARM_GS_NMETHODS; m++) {
            char *x = sched_text(&a, m), *y = sched_text(&b, m), *z = sched_text(&c, m);
            assert_string_equal(x, y);
            assert_string_equal(x, z);
            free(x);
            free(y);
            free(z);
        }
        farm_gs_dag_release(&a);
        farm_gs_dag_release(&b);
        farm_gs_dag_release(&c);
    }
}

static void expect_load_error(const char *file, int code, const char *msg)
{
    struct farm_gs_dag d;
    struct farm_err err = {0};
    assert_int_equal(farm_gs_dag_load(fixture(file), file, &d, &err), code);
    if (!strstr(err.msg, msg))
        fail_msg("expected \"%s\" in \"%s\"", msg, err.msg);
}

static void test_load_errors(void **state)
{
    (void)state;
    expect_load_error("bad_unknown_task.yaml", FARM_EBADSPEC,
                      "bad_unknown_task.yaml:6:9: edges[0]: unknown task \"c\"");
    expect_load_error("bad_cost_len.yaml", FARM_EBADSPEC,
                      "bad_cost_len.yaml:4:21: tasks[1].cost: expected a list of 2 numbers");
    expect_load_error("bad_negative.yaml", FARM_EBADSPEC,
                      "bad_negative.yaml:3:25: tasks[0].cost[1]: expected a number >= 0");
    expect_load_error("bad_cycle.yaml", FARM_ECYCLE, "bad_cycle.yaml: the graph has a cycle");
    expect_load_error("no_such_file.yaml", -ENOENT, "no_such_file.yaml");
}

static void test_generators(void **state)
{
    (void)state;
    struct farm_gs_gen_params gp = {.ccr = 1, .beta = 0.5, .p = 4, .mean_cost = 10};
    struct farm_gs_dag d;
    assert_int_equal(farm_gs_gen_gauss(5, &gp, 7, &d), 0);
    assert_int_equal(d.n, 14); /* (25 + 5 - 2) / 2 */
    /* m = 5: pivot fan-outs 4 + 3 + 2 + 1, update edges to the next step 4 + 3 + 2 */
    assert_int_equal(d.m, 19);
    farm_gs_dag_release(&d);
    assert_int_equal(farm_gs_gen_fft(8, &gp, 7, &d), 0);
    assert_int_equal(d.n, 15 + 24);
    assert_int_equal(d.m, 14 + 2 * 24);
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        struct farm_gs_sched s;
        sched_ok(&d, m, &s);
        farm_gs_sched_release(&s);
    }
    farm_gs_dag_release(&d);
    /* Realised CCR of a large random graph is near the requested one. */
    struct farm_gs_gen_params rp = {.n = 2000, .fat = 0.5, .density = 0.3, .regularity = 0.5,
                                    .jump = 2, .ccr = 2.0, .beta = 1.0, .p = 4,
                                    .mean_cost = 10};
    assert_int_equal(farm_gs_gen_random(&rp, 3, &d), 0);
    double comm = 0, comp = 0;
    for (int e = 0; e < d.m; e++)
        comm += d.edges[e].data;
    for (int i = 0; i < d.n * d.p; i++)
        comp += d.cost[i];
    double ccr = (comm / d.m) / (comp / (d.n * d.p));
    assert_true(ccr > 1.8 && ccr < 2.2);
    farm_gs_dag_release(&d);
}

/* ---- refine: the list schedule improved by bounded search ---- */

static double span_of(const struct farm_gs_dag *d, int m)
{
    struct farm_gs_sched s;
    sched_ok(d, m, &s);
    double v = s.makespan;
    farm_gs_sched_release(&s);
    return v;
}

static void test_refine_paper(void **state)
{
    (void)state;
    struct farm_gs_dag d;
    struct farm_gs_sched s, opt;
    struct farm_err err = {0};
    load_paper(&d);
    sched_ok(&d, FARM_GS_REFINE, &s);
    if (farm_gs_optimal(&d, 0, &opt, &err))
        fail_msg("%s", err.msg);
    print_message("topcuoglu: refine %g, optimum %g (HEFT 80, CPOP 86)\n", s.makespan,
                  opt.makespan);
    /* Shorter than HEFT's 80 on the paper's example, and not below the optimum. */
    assert_true(s.makespan < 80.0);
    assert_true(s.makespan >= opt.makespan * (1 - 1e-12));
    farm_gs_sched_release(&opt);
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
}

static void test_refine_random(void **state)
{
    (void)state;
    static const double ccrs[] = {0.1, 1, 5}, betas[] = {0.1, 1, 2};
    int shorter = 0, total = 0;
    double ratio = 0;
    for (uint64_t seed = 1; seed <= 90; seed++) {
        struct farm_gs_dag d;
        gen(10 + (int)(seed * 13 % 190), 2 + (int)(seed % 15), ccrs[seed % 3],
            betas[(seed / 3) % 3], seed + 1000, &d);
        struct farm_gs_sched s;
        sched_ok(&d, FARM_GS_REFINE, &s);
        double cp = farm_gs_cp_min(&d);
        assert_true(s.makespan >= cp * (1 - 1e-12));
        assert_true(farm_gs_slr(&d, &s) >= 1 - 1e-12);
        /* It starts from the shortest seed and keeps only improvements. */
        double heft = span_of(&d, FARM_GS_HEFT), cpop = span_of(&d, FARM_GS_CPOP),
               peft = span_of(&d, FARM_GS_PEFT);
        double seedspan = fmin(heft, fmin(cpop, peft));
        assert_true(s.makespan <= seedspan);
        shorter += s.makespan < seedspan * (1 - 1e-9);
        ratio += s.makespan / heft;
        total++;
        farm_gs_sched_release(&s);
        farm_gs_dag_release(&d);
    }
    print_message("refine: shorter than its best seed on %d of %d graphs, mean makespan "
                  "%.4f x HEFT's\n",
                  shorter, total, ratio / total);
    /* The search itself does the work, not the choice among the seeds. */
    assert_true(shorter * 2 > total);
    assert_true(ratio / total < 0.97);
}

static void test_refine_brute_force(void **state)
{
    (void)state;
    struct farm_err err = {0};
    int refine_opt = 0, heft_opt = 0;
    for (uint64_t seed = 1; seed <= 80; seed++) {
        struct farm_gs_dag d;
        int n = 3 + (int)(seed % 6); /* 3..8 tasks */
        gen(n, 2 + (int)(seed % 2), seed % 3 ? 1.0 : 3.0, 1.5, seed * 17 + 5, &d);
        struct farm_gs_sched opt, s;
        if (farm_gs_optimal(&d, 0, &opt, &err))
            fail_msg("%s", err.msg);
        sched_ok(&d, FARM_GS_REFINE, &s);
        assert_true(s.makespan >= opt.makespan * (1 - 1e-12));
        refine_opt += s.makespan <= opt.makespan * (1 + 1e-9);
        heft_opt += span_of(&d, FARM_GS_HEFT) <= opt.makespan * (1 + 1e-9);
        farm_gs_sched_release(&s);
        farm_gs_sched_release(&opt);
        farm_gs_dag_release(&d);
    }
    print_message("optimal on 80 tiny graphs: refine %d, HEFT %d\n", refine_opt, heft_opt);
    assert_true(refine_opt > heft_opt);
}

static void test_refine_degenerate(void **state)
{
    (void)state;
    /* One task, one processor. */
    struct farm_gs_dag d;
    struct farm_gs_sched s;
    assert_int_equal(farm_gs_dag_init(&d, 1, 1), 0);
    d.cost[0] = 3.5;
    assert_int_equal(farm_gs_dag_finalize(&d, NULL), 0);
    sched_ok(&d, FARM_GS_REFINE, &s);
    assert_true(s.makespan == 3.5 && s.start[0] == 0 && s.proc[0] == 0);
    farm_gs_sched_release(&s);
    farm_gs_dag_release(&d);
    for (uint64_t seed = 1; seed <= 10; seed++) {
        /* One processor: the sum of the costs, whatever the order. */
        gen(30 + 7 * (int)seed, 1, 5.0, 1.0, seed + 77, &d);
        double sum = 0;
        for (int i = 0; i < d.n; i++)
            sum += d.cost[i];
        sched_ok(&d, FARM_GS_REFINE, &s);
        assert_true(fabs(s.makespan - sum) <= 1e-9 * sum);
        farm_gs_sched_release(&s);
        farm_gs_dag_release(&d);
        /* A chain without communication cost: each task on its cheapest
         * processor, the sum of the minimum costs. */
        int n = 8 + (int)seed, p = 5;
        assert_int_equal(farm_gs_dag_init(&d, n, p), 0);
        double summin = 0;
        for (int i = 0; i < n; i++) {
            double mn = INFINITY;
            for (int k = 0; k < p; k++) {
                d.cost[i * p + k] = 1 + (double)((i * 11 + k * 5 + (int)seed * 3) % 13);
                mn = fmin(mn, d.cost[i * p + k]);
            }
            summin += mn;
            if (i)
                assert_int_equal(farm_gs_dag_add_edge(&d, i - 1, i, 0.0), 0);
        }
        assert_int_equal(farm_gs_dag_finalize(&d, NULL), 0);
        sched_ok(&d, FARM_GS_REFINE, &s);
        assert_true(fabs(s.makespan - summin) <= 1e-9 * summin);
        farm_gs_sched_release(&s);
        farm_gs_dag_release(&d);
    }
}

/* A graph large enough that the work budget, not a local optimum, ends the
 * search: the result is still the same byte for byte. */
static void test_refine_deterministic_budget(void **state)
{
    (void)state;
    struct farm_gs_gen_params gp = {.n = 1500,
                                    .fat = 0.5,
                                    .density = 0.2,
                                    .regularity = 0.5,
                                    .jump = 2,
                                    .ccr = 2,
                                    .beta = 1,
                                    .p = 16,
                                    .mean_cost = 50};
    struct farm_gs_dag a, b;
    assert_int_equal(farm_gs_gen_random(&gp, 9, &a), 0);
    assert_int_equal(farm_gs_gen_random(&gp, 9, &b), 0);
    char *x = sched_text(&a, FARM_GS_REFINE), *y = sched_text(&b, FARM_GS_REFINE);
    assert_string_equal(x, y);
    assert_true(span_of(&a, FARM_GS_REFINE) < span_of(&a, FARM_GS_HEFT));
    free(x);
    free(y);
    farm_gs_dag_release(&a);
    farm_gs_dag_release(&b);
}

static void test_method_names(void **state)
{
    (void)state;
    for (int m = 0; m < FARM_GS_NMETHODS; m++)
        assert_int_equal(farm_gs_method_parse(farm_gs_method_name(m)), m);
    assert_string_equal(farm_gs_method_name(FARM_GS_REFINE), "refine");
    assert_int_equal(farm_gs_method_parse("Refine"), -EINVAL);
    assert_null(farm_gs_method_name(FARM_GS_NMETHODS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paper_ranks),
        cmocka_unit_test(test_paper_heft),
        cmocka_unit_test(test_paper_cpop),
        cmocka_unit_test(test_checker_rejects),
        cmocka_unit_test(test_random_bounds),
        cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_refine_paper),
        cmocka_unit_test(test_refine_random),
        cmocka_unit_test(test_refine_brute_force),
        cmocka_unit_test(test_refine_degenerate),
        cmocka_unit_test(test_refine_deterministic_budget),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
