/* graphsched benchmark: HEFT (the peer), CPOP, PEFT, lookahead and refine on a seeded random
 * suite drawn from the parameter grid of Arabnejad and Barbosa (2014), on
 * Gaussian elimination and FFT graphs, and scheduler time on a 10,000-task
 * graph with 16 processors.
 *
 * usage: graphsched_bench [instances] [seed] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "farm/graphsched.h"

struct acc {
    double slr[FARM_GS_NMETHODS], speedup[FARM_GS_NMETHODS];
    double best_slr; /* SLR of the best method per instance: what the chooser gets */
    long best[FARM_GS_NMETHODS];
    long better[FARM_GS_NMETHODS], equal[FARM_GS_NMETHODS], worse[FARM_GS_NMETHODS];
    long count;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void add(struct acc *a, const double *span, const double *slr, const double *sp)
{
    double min = INFINITY, min_slr = INFINITY;
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        min = fmin(min, span[m]);
        min_slr = fmin(min_slr, slr[m]);
    }
    a->best_slr += min_slr;
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        a->slr[m] += slr[m];
        a->speedup[m] += sp[m];
        a->best[m] += span[m] <= min;
        /* Pairwise against HEFT, the peer. */
        a->better[m] += span[m] < span[FARM_GS_HEFT];
        a->equal[m] += span[m] == span[FARM_GS_HEFT];
        a->worse[m] += span[m] > span[FARM_GS_HEFT];
    }
    a->count++;
}

static int run_one(struct acc *a, struct acc *b, struct acc *c, struct farm_gs_dag *d)
{
    double span[FARM_GS_NMETHODS], slr[FARM_GS_NMETHODS], sp[FARM_GS_NMETHODS];
    struct farm_err err = {0};
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        struct farm_gs_sched s;
        if (farm_gs_schedule(d, m, &s))
            return -1;
        if (farm_gs_check(d, &s, &err)) {
            fprintf(stderr, "%s: invalid schedule: %s\n", farm_gs_method_name(m), err.msg);
            return -1;
        }
        span[m] = s.makespan;
        slr[m] = farm_gs_slr(d, &s);
        sp[m] = farm_gs_speedup(d, &s);
        farm_gs_sched_release(&s);
    }
    add(a, span, slr, sp);
    if (b)
        add(b, span, slr, sp);
    if (c)
        add(c, span, slr, sp);
    return 0;
}

static void report(const char *title, const struct acc *a)
{
    printf("\n%s (%ld instances)\n", title, a->count);
    printf("  method    mean SLR  mean speedup  best (ties count for each)  vs HEFT "
           "better/equal/worse\n");
    for (int m = 0; m < FARM_GS_NMETHODS; m++)
        printf("  %-9s %8.4f  %12.4f  %25.1f%%  %5.1f%% / %5.1f%% / %5.1f%%\n",
               farm_gs_method_name(m), a->slr[m] / a->count, a->speedup[m] / a->count,
               100.0 * a->best[m] / a->count, 100.0 * a->better[m] / a->count,
               100.0 * a->equal[m] / a->count, 100.0 * a->worse[m] / a->count);
    printf("  best of all methods per instance (the plugin's choice): mean SLR %.4f, ratio to HEFT "
           "%.4f\n",
           a->best_slr / a->count, a->best_slr / a->slr[FARM_GS_HEFT]);
    printf("  ratio of mean SLR to HEFT's:");
    for (int m = 1; m < FARM_GS_NMETHODS; m++)
        printf(" %s %.4f%s", farm_gs_method_name(m), a->slr[m] / a->slr[FARM_GS_HEFT],
               m + 1 < FARM_GS_NMETHODS ? "," : "\n");
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
    long instances = argc > 1 ? atol(argv[1]) : 2000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    /* The grid of Arabnejad and Barbosa (2014), section 5.1. */
    static const int ns[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500};
    static const double ccrs[] = {0.1, 0.5, 1, 2, 5}, fats[] = {0.1, 0.4, 0.8},
                        regs[] = {0.2, 0.8}, dens[] = {0.2, 0.8}, betas[] = {0.1, 0.2, 0.5, 1, 2};
    static const int jumps[] = {1, 2, 4}, ps[] = {4, 8, 16, 32};
#define PICK(arr, r) arr[(r) % (sizeof arr / sizeof arr[0])]
    struct acc rnd = {0}, gauss = {0}, fft = {0}, by_ccr[5], by_beta[5];
    memset(by_ccr, 0, sizeof by_ccr);
    memset(by_beta, 0, sizeof by_beta);
    for (long i = 0; i < instances; i++) {
        uint64_t r = mix(seed * 1000003ULL + (uint64_t)i);
        struct farm_gs_gen_params gp = {.n = PICK(ns, r),
                                        .ccr = PICK(ccrs, r >> 8),
                                        .fat = PICK(fats, r >> 16),
                                        .regularity = PICK(regs, r >> 24),
                                        .density = PICK(dens, r >> 32),
                                        .beta = PICK(betas, r >> 40),
                                        .jump = PICK(jumps, r >> 48),
                                        .p = PICK(ps, r >> 56),
                                        .mean_cost = 50};
        struct farm_gs_dag d;
        if (farm_gs_gen_random(&gp, r, &d) ||
            run_one(&rnd, &by_ccr[(r >> 8) % 5], &by_beta[(r >> 40) % 5], &d))
            return 1;
        farm_gs_dag_release(&d);
    }
    report("random DAGs", &rnd);
    printf("  SLR ratio to HEFT by CCR:");
    for (int i = 0; i < 5; i++)
        printf(" %g: peft %.3f lookahead %.3f refine %.3f;", ccrs[i],
               by_ccr[i].slr[FARM_GS_PEFT] / by_ccr[i].slr[FARM_GS_HEFT],
               by_ccr[i].slr[FARM_GS_LOOKAHEAD] / by_ccr[i].slr[FARM_GS_HEFT],
               by_ccr[i].slr[FARM_GS_REFINE] / by_ccr[i].slr[FARM_GS_HEFT]);
    printf("\n  SLR ratio to HEFT by beta:");
    for (int i = 0; i < 5; i++)
        printf(" %g: peft %.3f lookahead %.3f refine %.3f;", betas[i],
               by_beta[i].slr[FARM_GS_PEFT] / by_beta[i].slr[FARM_GS_HEFT],
               by_beta[i].slr[FARM_GS_LOOKAHEAD] / by_beta[i].slr[FARM_GS_HEFT],
               by_beta[i].slr[FARM_GS_REFINE] / by_beta[i].slr[FARM_GS_HEFT]);
    printf("\n");
    double goal = rnd.slr[FARM_GS_REFINE] / rnd.slr[FARM_GS_HEFT];
    printf("  refine: mean SLR %.4f x HEFT's (goal <= 0.95: %s)\n", goal,
           goal <= 0.95 ? "met" : "MISSED");
    for (int m = 5; m <= 20; m++)
        for (int c = 0; c < 5; c++)
            for (int b = 0; b < 5; b++) {
                struct farm_gs_gen_params gp = {
                    .ccr = ccrs[c], .beta = betas[b], .p = 4 + 4 * (m % 3), .mean_cost = 50};
                struct farm_gs_dag d;
                if (farm_gs_gen_gauss(m, &gp, seed + (uint64_t)(m * 25 + c * 5 + b), &d) ||
                    run_one(&gauss, NULL, NULL, &d))
                    return 1;
                farm_gs_dag_release(&d);
            }
    report("Gaussian elimination, m = 5..20", &gauss);
    for (int pts = 4; pts <= 128; pts *= 2)
        for (int c = 0; c < 5; c++)
            for (int b = 0; b < 5; b++) {
                struct farm_gs_gen_params gp = {
                    .ccr = ccrs[c], .beta = betas[b], .p = 4 + 4 * (pts % 3), .mean_cost = 50};
                struct farm_gs_dag d;
                if (farm_gs_gen_fft(pts, &gp, seed + (uint64_t)(pts * 25 + c * 5 + b), &d) ||
                    run_one(&fft, NULL, NULL, &d))
                    return 1;
                farm_gs_dag_release(&d);
            }
    report("FFT, 4..128 points", &fft);

    struct farm_gs_gen_params big = {.n = 10000, .fat = 0.5, .density = 0.1, .regularity = 0.5,
                                     .jump = 2, .ccr = 1, .beta = 1, .p = 16, .mean_cost = 50};
    struct farm_gs_dag d;
    if (farm_gs_gen_random(&big, seed, &d))
        return 1;
    printf("\nscheduler time, %d tasks, %d edges, %d processors (median of 5)\n", d.n, d.m, d.p);
    double heft_t = 0, heft_span = 0;
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        double t[5], c[5], span = 0;
        struct farm_err err = {0};
        for (int rep = 0; rep < 5; rep++) {
            struct farm_gs_sched s;
            double t0 = now(), c0 = cpu_now();
            if (farm_gs_schedule(&d, m, &s))
                return 1;
            t[rep] = now() - t0;
            c[rep] = cpu_now() - c0;
            if (rep == 0 && farm_gs_check(&d, &s, &err)) {
                fprintf(stderr, "%s: invalid schedule: %s\n", farm_gs_method_name(m), err.msg);
                return 1;
            }
            span = s.makespan;
            farm_gs_sched_release(&s);
        }
        qsort(t, 5, sizeof t[0], cmp_double);
        qsort(c, 5, sizeof c[0], cmp_double);
        if (m == FARM_GS_HEFT) {
            heft_t = t[2];
            heft_span = span;
        }
        printf("  %-9s %8.4f s wall, %8.4f s cpu  (ratio to heft %.2f)  goal < 1 s: %s  "
               "makespan ratio to heft %.4f\n",
               farm_gs_method_name(m), t[2], c[2], t[2] / heft_t, t[2] < 1.0 ? "met" : "MISSED",
               span / heft_span);
    }
    farm_gs_dag_release(&d);
    return 0;
}
