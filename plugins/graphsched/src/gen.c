/* Seeded graph generators: DAGGEN-style random DAGs, Gaussian elimination
 * and FFT, with Topcuoglu et al.'s cost and communication model. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched.h"

/* splitmix64: small, fast, and fully determined by the seed. */
struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unif(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int rng_int(struct rng *r, int n)
{
    return (int)(rng_unif(r) * n);
}

static int check_params(const struct farm_gs_gen_params *gp)
{
    if (!gp || gp->p < 1 || !(gp->beta >= 0) || gp->beta > 2 || !(gp->ccr >= 0) ||
        !(gp->mean_cost > 0))
        return -EINVAL;
    return 0;
}

/* Costs for every task, then communication for every edge, from the model. */
static int fill_costs(struct farm_gs_dag *d, const struct farm_gs_gen_params *gp,
                      struct rng *r)
{
    for (int i = 0; i < d->n; i++) {
        /* w_i in (0, 2 mean]; avoid exact zero so every task has work. */
        double w = (1.0 - rng_unif(r)) * 2.0 * gp->mean_cost;
        for (int k = 0; k < d->p; k++)
            d->cost[i * d->p + k] = w * (1.0 - gp->beta / 2 + gp->beta * rng_unif(r));
    }
    for (int e = 0; e < d->m; e++)
        d->edges[e].data = rng_unif(r) * 2.0 * gp->ccr * gp->mean_cost;
    for (int k = 0; k < d->p; k++) {
        char b[24];
        snprintf(b, sizeof b, "p%d", k);
        if (!(d->proc_names[k] = strdup(b)))
            return -ENOMEM;
    }
    return farm_gs_dag_finalize(d, NULL);
}

int farm_gs_gen_random(const struct farm_gs_gen_params *gp, uint64_t seed,
                       struct farm_gs_dag *d)
{
    if (check_params(gp) || gp->n < 1 || gp->jump < 1 || !(gp->fat > 0) ||
        !(gp->density >= 0) || !(gp->regularity >= 0))
        return -EINVAL;
    struct rng r = {seed};
    int n = gp->n, rc = farm_gs_dag_init(d, n, gp->p);
    if (rc)
        return rc;
    int *level_start = malloc(((size_t)n + 2) * sizeof(int));
    char *pick = calloc((size_t)n, 1);
    if (!level_start || !pick) {
        rc = -ENOMEM;
        goto out;
    }
    double width = exp(gp->fat * log((double)n));
    double var = fmin(1.0, fmax(0.0, 1.0 - gp->regularity));
    int levels = 0, placed = 0;
    while (placed < n) {
        int w = (int)lround(width * (1.0 + var * (2.0 * rng_unif(&r) - 1.0)));
        if (w < 1)
            w = 1;
        if (w > n - placed)
            w = n - placed;
        level_start[levels++] = placed;
        placed += w;
    }
    level_start[levels] = n;
    for (int l = 1; l < levels; l++) {
        int lo = level_start[l - gp->jump >= 0 ? l - gp->jump : 0], prev = level_start[l - 1];
        int hi = level_start[l], cand = hi - lo;
        for (int t = level_start[l]; t < level_start[l + 1]; t++) {
            /* One parent in the level just above keeps the levels real; more
             * come from up to `jump` levels above with probability density. */
            memset(pick + lo, 0, (size_t)cand);
            pick[prev + rng_int(&r, hi - prev)] = 1;
            for (int j = lo; j < hi; j++)
                if (!pick[j] && rng_unif(&r) < gp->density)
                    pick[j] = 1;
            for (int j = lo; j < hi; j++)
                if (pick[j] && (rc = farm_gs_dag_add_edge(d, j, t, 0)))
                    goto out;
        }
    }
    rc = fill_costs(d, gp, &r);
out:
    free(level_start);
    free(pick);
    if (rc)
        farm_gs_dag_release(d);
    return rc;
}

int farm_gs_gen_gauss(int m, const struct farm_gs_gen_params *gp, uint64_t seed,
                      struct farm_gs_dag *d)
{
    if (m < 2 || check_params(gp))
        return -EINVAL;
    int n = (m * m + m - 2) / 2, rc = farm_gs_dag_init(d, n, gp->p);
    if (rc)
        return rc;
    struct rng r = {seed};
    /* Step k (1..m-1) has a pivot task and updates for columns k+1..m;
     * id[k][j] with j == k the pivot. */
    int *id = malloc((size_t)(m + 1) * (size_t)(m + 1) * sizeof(int)), next = 0;
    if (!id) {
        farm_gs_dag_release(d);
        return -ENOMEM;
    }
#define ID(k, j) id[(k) * (m + 1) + (j)]
    for (int k = 1; k < m; k++)
        for (int j = k; j <= m; j++)
            ID(k, j) = next++;
    for (int k = 1; k < m && !rc; k++)
        for (int j = k + 1; j <= m && !rc; j++) {
            rc = farm_gs_dag_add_edge(d, ID(k, k), ID(k, j), 0);
            if (!rc && k + 1 < m)
                rc = farm_gs_dag_add_edge(d, ID(k, j), ID(k + 1, j), 0);
        }
#undef ID
    free(id);
    if (!rc)
        rc = fill_costs(d, gp, &r);
    if (rc)
        farm_gs_dag_release(d);
    return rc;
}

int farm_gs_gen_fft(int points, const struct farm_gs_gen_params *gp, uint64_t seed,
                    struct farm_gs_dag *d)
{
    if (points < 2 || (points & (points - 1)) || check_params(gp))
        return -EINVAL;
    int lg = 0;
    while ((1 << lg) < points)
        lg++;
    int tree = 2 * points - 1, n = tree + points * lg, rc = farm_gs_dag_init(d, n, gp->p);
    if (rc)
        return rc;
    struct rng r = {seed};
    /* Recursive calls: a binary tree in heap order, leaves tree-points..tree-1. */
    for (int i = 1; i < tree && !rc; i++)
        rc = farm_gs_dag_add_edge(d, (i - 1) / 2, i, 0);
    int leaf0 = tree - points;
    for (int s = 0; s < lg && !rc; s++)
        for (int i = 0; i < points && !rc; i++) {
            int t = tree + s * points + i, partner = i ^ (1 << s);
            int a = s ? tree + (s - 1) * points + i : leaf0 + i;
            int b = s ? tree + (s - 1) * points + partner : leaf0 + partner;
            rc = farm_gs_dag_add_edge(d, a, t, 0);
            if (!rc)
                rc = farm_gs_dag_add_edge(d, b, t, 0);
        }
    if (!rc)
        rc = fill_costs(d, gp, &r);
    if (rc)
        farm_gs_dag_release(d);
    return rc;
}
