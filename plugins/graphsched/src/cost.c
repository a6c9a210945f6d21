/* The cost model: kernels timed on this machine at start-up (cached), scaled
 * per node; and the scheduling DAG of an operator graph on a cluster. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ops-internal.h"

#define CAL_VERSION 1

/* Work units of an operator: flops for matmul, elements touched otherwise. */
static double op_units(const struct farm_gs_opgraph *g, const struct farm_gs_op *op)
{
    double out = (double)op->rows * (double)op->cols;
    switch (op->kind) {
    case FARM_GS_OP_MATMUL:
        return 2.0 * out * (double)g->ops[op->in[0]].cols;
    case FARM_GS_OP_ADD:
        return out * (op->nin - 1);
    case FARM_GS_OP_ROWSUM:
        return (double)op->rows * (double)g->ops[op->in[0]].cols;
    default:
        return out;
    }
}

static double interp(const struct farm_gs_calib *cal, int kind, double units)
{
    const double *s = cal->size[kind], *v = cal->spu[kind];
    if (units <= s[0])
        return v[0];
    for (int i = 1; i < FARM_GS_CAL_POINTS; i++)
        if (units <= s[i]) {
            double t = (log(units) - log(s[i - 1])) / (log(s[i]) - log(s[i - 1]));
            return v[i - 1] + t * (v[i] - v[i - 1]);
        }
    return v[FARM_GS_CAL_POINTS - 1];
}

/* The kernel's own time only: operators in candidate graphs and in the
 * original graph are costed by the same rule, so the comparison is fair. */
static double base_seconds(const struct farm_gs_calib *cal, const struct farm_gs_opgraph *g,
                           const struct farm_gs_op *op)
{
    double u = op_units(g, op);
    return u * interp(cal, op->kind, u);
}

double farm_gs_op_seconds(const struct farm_gs_calib *cal, const struct farm_gs_opgraph *g,
                          int i, const struct farm_gs_node *node)
{
    const struct farm_gs_op *op = &g->ops[i];
    int cls = farm_gs_opkind_class(op->kind);
    return base_seconds(cal, g, op) / (node->speed[cls] * node->cores);
}

int farm_gs_opgraph_dag(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                        const struct farm_gs_calib *cal, struct farm_gs_dag *d,
                        struct farm_err *err)
{
    int ni = g->ninputs, n = g->n - ni, p = c->p, rc = farm_gs_dag_init(d, n, p);
    if (rc)
        return farm_err_set(err, rc, "out of memory");
    for (int t = 0; t < n; t++) {
        const struct farm_gs_op *op = &g->ops[t + ni];
        for (int k = 0; k < p; k++)
            d->cost[t * p + k] = farm_gs_op_seconds(cal, g, t + ni, &c->nodes[k]);
        if (!(d->task_names[t] = strdup(op->name)))
            goto nomem;
        for (int j = 0; j < op->nin; j++) {
            int src = op->in[j], dup = 0;
            for (int q = 0; q < j; q++)
                dup |= op->in[q] == src;
            if (src < ni || dup)
                continue;
            double bytes = 4.0 * g->ops[src].rows * (double)g->ops[src].cols;
            if ((rc = farm_gs_dag_add_edge(d, src - ni, t, bytes)))
                goto nomem;
        }
    }
    for (int k = 0; k < p; k++) {
        if (!(d->proc_names[k] = strdup(c->nodes[k].name)))
            goto nomem;
        for (int l = 0; l < p; l++) {
            d->lat[k * p + l] = k == l ? 0 : c->lat[k * p + l];
            d->inv_bw[k * p + l] = k == l ? 0 : 1.0 / c->bw[k * p + l];
        }
    }
    if ((rc = farm_gs_dag_finalize(d, err)))
        goto fail;
    return 0;
nomem:
    rc = farm_err_set(err, -ENOMEM, "out of memory");
fail:
    farm_gs_dag_release(d);
    return rc;
}

/* ---- calibration ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds of one run of the last operator of g: the best of three batches,
 * each repeated until it has taken 5 ms of thread CPU time. */
static double time_op(const struct farm_gs_opgraph *g, float *const *bufs)
{
    const struct farm_gs_op *op = &g->ops[g->n - 1];
    const float *ins[FARM_GS_MAXIN];
    for (int k = 0; k < op->nin; k++)
        ins[k] = bufs[op->in[k]];
    float *out = bufs[g->n - 1];
    farm__gs_kernel(op, g, ins, out); /* warm up */
    double best = INFINITY;
    for (int trial = 0; trial < 3; trial++) {
        long reps = 0;
        double t0 = farm__gs_cpu_now(), t;
        do {
            farm__gs_kernel(op, g, ins, out);
            reps++;
            t = farm__gs_cpu_now() - t0;
        } while (t < 5e-3);
        best = fmin(best, t / (double)reps);
    }
    return best;
}

static int measure_kind(int kind, int point, struct farm_gs_calib *cal)
{
    static const int cube[FARM_GS_CAL_POINTS] = {32, 64, 128, 256};
    static const int side[FARM_GS_CAL_POINTS] = {64, 256, 512, 1024};
    struct farm_gs_opgraph g = {0};
    struct farm_gs_op a = {.kind = FARM_GS_OP_INPUT}, b = a, op = {.kind = kind, .nin = 1};
    int s = kind == FARM_GS_OP_MATMUL ? cube[point] : side[point];
    a.rows = a.cols = b.rows = b.cols = s;
    snprintf(a.name, sizeof a.name, "a");
    snprintf(b.name, sizeof b.name, "b");
    op.in[0] = 0;
    if (kind == FARM_GS_OP_MATMUL || kind == FARM_GS_OP_ADD || kind == FARM_GS_OP_CONCAT) {
        op.nin = 2;
        op.in[1] = 1;
    }
    if (kind == FARM_GS_OP_CONCAT) {
        /* Two halves joined along columns: a strided copy of s x s. */
        a.cols = b.cols = s / 2;
        op.axis = 1;
    }
    if (kind == FARM_GS_OP_SLICE) {
        /* The right half of an s x 2s tensor: a strided copy of s x s. */
        a.cols = 2 * s;
        op.axis = 1;
        op.off = s;
        op.cols = s;
    }
    char why[128];
    int rc = -ENOMEM;
    float *bufs[3] = {NULL, NULL, NULL};
    if (farm__gs_opgraph_add(&g, &a) < 0 || farm__gs_opgraph_add(&g, &b) < 0)
        goto out;
    g.ninputs = 2;
    if (farm__gs_infer(&g, &op, why, sizeof why)) {
        rc = -EINVAL;
        goto out;
    }
    if (farm__gs_opgraph_add(&g, &op) < 0)
        goto out;
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)g.ops[i].rows * (size_t)g.ops[i].cols;
        if (!(bufs[i] = farm__gs_alloc(n)))
            goto out;
        /* Data like the run's: uniform in [-1, 1), signs unpredictable. */
        uint64_t z = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        for (size_t j = 0; j < n; j++) {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            bufs[i][j] = (float)((double)(z >> 40) / 8388608.0 - 1.0);
        }
    }
    double t = time_op(&g, bufs), u = op_units(&g, &g.ops[2]);
    cal->size[kind][point] = u;
    cal->spu[kind][point] = t / u;
    rc = 0;
out:
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    farm_gs_opgraph_release(&g);
    return rc;
}

static double measure_bw(void)
{
    size_t n = (size_t)16 << 20;
    char *a = malloc(n), *b = malloc(n);
    double best = 0;
    if (a && b) {
        memset(a, 1, n);
        memset(b, 2, n);
        for (int i = 0; i < 3; i++) {
            double t0 = wall_now();
            memcpy(b, a, n);
            double t = wall_now() - t0;
            if (t > 0 && (double)n / t > best)
                best = (double)n / t;
            a[i] = b[n - 1 - (size_t)i];
        }
    }
    free(a);
    free(b);
    return best;
}

static int cal_read(const char *path, struct farm_gs_calib *cal)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    int ok = json_is_object(root) &&
             json_integer_value(json_object_get(root, "version")) == CAL_VERSION;
    json_t *kinds = json_object_get(root, "kinds");
    struct farm_gs_calib c = {0};
    for (int k = 1; ok && k < FARM_GS_NOPKINDS; k++) {
        json_t *pts = json_object_get(kinds, farm_gs_opkind_name(k));
        ok = json_is_array(pts) && json_array_size(pts) == FARM_GS_CAL_POINTS;
        for (int i = 0; ok && i < FARM_GS_CAL_POINTS; i++) {
            json_t *pt = json_array_get(pts, (size_t)i);
            c.size[k][i] = json_number_value(json_array_get(pt, 0));
            c.spu[k][i] = json_number_value(json_array_get(pt, 1));
            ok = c.size[k][i] > 0 && c.spu[k][i] > 0 && isfinite(c.spu[k][i]) &&
                 (i == 0 || c.size[k][i] > c.size[k][i - 1]);
        }
    }
    c.mem_bw = json_number_value(json_object_get(root, "mem_bw"));
    json_decref(root);
    if (!ok)
        return -1;
    *cal = c;
    return 0;
}

static int cal_write(const char *path, const struct farm_gs_calib *cal, struct farm_err *err)
{
    json_t *kinds = json_object();
    json_t *root = json_pack("{s:i, s:f, s:o}", "version", CAL_VERSION, "mem_bw", cal->mem_bw,
                             "kinds", kinds);
    for (int k = 1; root && k < FARM_GS_NOPKINDS; k++) {
        json_t *pts = json_array();
        json_object_set_new(kinds, farm_gs_opkind_name(k), pts);
        for (int i = 0; i < FARM_GS_CAL_POINTS; i++)
            json_array_append_new(pts, json_pack("[f, f]", cal->size[k][i], cal->spu[k][i]));
    }
    if (!root)
        return farm_err_set(err, -ENOMEM, "out of memory");
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    int rc = 0;
    if (!tmp)
        rc = farm_err_set(err, -ENOMEM, "out of memory");
    else {
        snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
        if (json_dump_file(root, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) ||
            rename(tmp, path)) {
            rc = farm_err_set(err, errno ? -errno : -EIO, "%s: cannot write the calibration cache",
                              path);
            unlink(tmp);
        }
    }
    free(tmp);
    json_decref(root);
    return rc;
}

int farm_gs_calibrate(const char *cache_path, struct farm_gs_calib *cal, int *from_cache,
                      struct farm_err *err)
{
    if (cache_path && cal_read(cache_path, cal) == 0) {
        if (from_cache)
            *from_cache = 1;
        return 0;
    }
    struct farm_gs_calib c = {0};
    openblas_set_num_threads(1);
    for (int k = 1; k < FARM_GS_NOPKINDS; k++)
        for (int i = 0; i < FARM_GS_CAL_POINTS; i++) {
            int rc = measure_kind(k, i, &c);
            if (rc)
                return farm_err_set(err, rc, "calibrating %s failed", farm_gs_opkind_name(k));
        }
    c.mem_bw = measure_bw();
    if (cache_path) {
        int rc = cal_write(cache_path, &c, err);
        if (rc)
            return rc;
    }
    *cal = c;
    if (from_cache)
        *from_cache = 0;
    return 0;
}
