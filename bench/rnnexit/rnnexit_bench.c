/* rnnexit benchmark driver (run by bench/rnnexit.sh beside PyTorch).
 *
 * One recurrent unit [start(length), gru|lstm, end] with input = hidden,
 * batch B, T steps. Per-object lengths make the length condition fire for a
 * given share of the (object, step) pairs: 0%, 10%, ..., 90%, in two
 * patterns (see make_lengths): ramp (lengths spread evenly: the active rows
 * shrink step by step) and rows (the same share of the rows is skipped at
 * every step). Each round times, in turn, the plain unrolled executor,
 * never-skip, and every firing level of both patterns once; the medians over
 * the rounds are printed, with the skip share measured by the executor's
 * counters.
 *
 * usage: rnnexit_bench --cell gru|lstm --hidden H [--batch 64] [--steps 100]
 *                      [--reps 5] [--threads 1]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "farm/nn.h"
#include "farm/rnnexit.h"

/* Wall time, and the process's CPU time: on a machine shared with other
 * work the CPU time is the steadier figure (with one BLAS thread it is the
 * time this process actually computed). */
static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct timing {
    double wall, cpu;
};

static struct timing now(void)
{
    return (struct timing){clock_ms(CLOCK_MONOTONIC), clock_ms(CLOCK_PROCESS_CPUTIME_ID)};
}

/* Times one forward into wall[i] and cpu[i]. */
static int timed(struct farm_rx_exec *ex, const float *x, size_t T, size_t B, const int32_t *len,
                 int mode, double *wall, double *cpu, struct farm_err *err)
{
    struct timing a = now();
    int rc = farm_rx_exec_forward(ex, x, T, B, len, mode, err);
    struct timing b = now();
    *wall = b.wall - a.wall;
    *cpu = b.cpu - a.cpu;
    return rc;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Lengths whose mean skip share is `share`.
 * ramp: spread evenly over the batch, so the active rows shrink step by step
 *       (sorted padding: early steps run almost every row, late ones few);
 * rows: round(share x B) objects have length 0 and the others the full T,
 *       so at every step the same share of the rows is skipped. */
static void make_lengths(int32_t *len, size_t B, size_t T, double share, int rows)
{
    if (rows) {
        size_t off = (size_t)lround(share * (double)B);
        /* Interleave the skipped objects through the batch. */
        for (size_t b = 0; b < B; b++)
            len[b] = (int32_t)T;
        for (size_t i = 0; i < off; i++)
            len[(i * B) / off] = 0;
        return;
    }
    double lo, hi;
    if (share <= 0.5) {
        lo = (double)T * (1 - 2 * share);
        hi = (double)T;
    } else {
        lo = 0;
        hi = 2.0 * (double)T * (1 - share);
    }
    for (size_t b = 0; b < B; b++) {
        double f = B > 1 ? (double)b / (double)(B - 1) : 0.5;
        long v = lround(lo + f * (hi - lo));
        len[b] = (int32_t)(v < 0 ? 0 : v > (long)T ? (long)T : v);
    }
}

int main(int argc, char **argv)
{
    const char *cell = "gru";
    size_t H = 256, B = 64, T = 100;
    int reps = 5, threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cell"))
            cell = argv[i + 1];
        else if (!strcmp(argv[i], "--hidden"))
            H = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            T = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "rnnexit_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if ((strcmp(cell, "gru") && strcmp(cell, "lstm")) || H == 0 || B == 0 || T == 0 || reps < 1 ||
        reps > 1000 || threads < 1) {
        fprintf(stderr, "usage: rnnexit_bench --cell gru|lstm --hidden H [--batch B] "
                        "[--steps T] [--reps R] [--threads N]\n");
        return 2;
    }
    farm_nn_blas_set_threads(threads);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "input: %zu\n"
             "layers:\n"
             "  - units:\n"
             "      - name: u\n"
             "        nodes:\n"
             "          - {name: s, type: start, condition: {kind: length}}\n"
             "          - {name: cell, type: %s, hidden: %zu}\n"
             "          - {name: e, type: end}\n"
             "output: {unit: u, node: cell, loss: mse}\n",
             H, cell, H);
    struct farm_err err = {0};
    struct farm_rx_model *m = NULL;
    struct farm_rx_net *net = NULL;
    struct farm_rx_exec *ex = NULL;
    if (farm_rx_model_load_string(yaml, strlen(yaml), "bench.yaml", &m, &err) ||
        farm_rx_net_new(m, 1, &net, &err) || farm_rx_exec_new(net, B, 0, 0, &ex, &err)) {
        fprintf(stderr, "rnnexit_bench: %s\n", err.msg);
        return 1;
    }
    float *x = malloc(T * B * H * sizeof *x);
    int32_t *len = malloc(B * sizeof *len);
    if (!x || !len)
        return 1;
    struct farm_rng rng;
    farm_rng_seed(&rng, 7);
    for (size_t i = 0; i < T * B * H; i++)
        x[i] = (float)(2 * farm_rng_uniform(&rng) - 1);
    enum { LEVELS = 10, SLOTS = 2 + 2 * LEVELS };
    /* Slot 0 plain, 1 never-skip, 2 + p * LEVELS + l pattern p (0 ramp, 1
     * rows) at level l; level 0 (nothing fires) is measured once and shared. */
    double *tw = calloc((size_t)reps * SLOTS, sizeof(double));
    double *tc = calloc((size_t)reps * SLOTS, sizeof(double));
    double share[SLOTS];
    if (!tw || !tc)
        return 1;
    /* One warm-up pass of each kind. */
    farm_rx_exec_forward(ex, x, T, B, NULL, FARM_RX_PLAIN, &err);
    farm_rx_exec_forward(ex, x, T, B, NULL, FARM_RX_NEVER_SKIP, &err);
    for (int r = 0; r < reps; r++) {
        if (timed(ex, x, T, B, NULL, FARM_RX_PLAIN, &tw[r], &tc[r], &err) ||
            timed(ex, x, T, B, NULL, FARM_RX_NEVER_SKIP, &tw[reps + r], &tc[reps + r], &err))
            goto fail;
        for (int p = 0; p < 2; p++)
            for (int l = p; l < LEVELS; l++) {
                make_lengths(len, B, T, l / 10.0, p);
                farm_rx_exec_reset_stats(ex);
                size_t slot = 2 + (size_t)(p * LEVELS + l), k = slot * (size_t)reps + (size_t)r;
                if (timed(ex, x, T, B, len, FARM_RX_CONDITIONS, &tw[k], &tc[k], &err))
                    goto fail;
                struct farm_rx_stats st;
                farm_rx_exec_stats(ex, -1, -1, &st);
                share[slot] = (double)st.skipped / (double)(st.skipped + st.executed);
            }
    }
    double plain = median(tw, reps), never = median(tw + reps, reps);
    double plain_c = median(tc, reps), never_c = median(tc + reps, reps);
    printf("rnnexit %s hidden=%zu batch=%zu steps=%zu threads=%d reps=%d\n", cell, H, B, T, threads,
           reps);
    printf("plain_ms %.3f cpu %.3f\nnever_skip_ms %.3f cpu %.3f\n", plain, plain_c, never, never_c);
    printf("%-7s %-5s %-8s %-10s %-9s %-9s %-10s %-9s %-9s\n", "pattern", "fire", "skipped",
           "wall_ms", "vs_never", "vs_plain", "cpu_ms", "vs_never", "vs_plain");
    for (int p = 0; p < 2; p++)
        for (int l = 0; l < LEVELS; l++) {
            size_t slot = 2 + (size_t)((l == 0 ? 0 : p) * LEVELS + l);
            double t = median(tw + slot * (size_t)reps, reps);
            double c = median(tc + slot * (size_t)reps, reps);
            printf("%-7s %-5d %-8.3f %-10.3f %-9.3f %-9.3f %-10.3f %-9.3f %-9.3f\n",
                   p ? "rows" : "ramp", l * 10, share[slot], t, t / never, t / plain, c,
                   c / never_c, c / plain_c);
        }
    free(tw);
    free(tc);
    farm_rx_exec_free(ex);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
    free(x);
    free(len);
    return 0;
fail:
    fprintf(stderr, "rnnexit_bench: %s\n", err.msg);
    return 1;
}
