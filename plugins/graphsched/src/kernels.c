/* Operator kernels on float32 row-major tensors, single-node execution,
 * seeded inputs and result comparison. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops-internal.h"

float *farm__gs_alloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

double farm__gs_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void farm__gs_kernel(const struct farm_gs_op *op, const struct farm_gs_opgraph *g,
                     const float *const *ins, float *out)
{
    int rows = op->rows, cols = op->cols;
    size_t n = (size_t)rows * (size_t)cols;
    const float *a = ins[0];
    switch (op->kind) {
    case FARM_GS_OP_MATMUL: {
        int k = g->ops[op->in[0]].cols;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, k, 1.0f, a, k, ins[1],
                    cols, 0.0f, out, cols);
        break;
    }
    case FARM_GS_OP_ADD:
        for (size_t i = 0; i < n; i++)
            out[i] = a[i] + ins[1][i];
        for (int j = 2; j < op->nin; j++)
            for (size_t i = 0; i < n; i++)
                out[i] += ins[j][i];
        break;
    case FARM_GS_OP_RELU:
        /* fmaxf, not a branch: signs of real data are unpredictable, and a
         * mispredicted branch per element costs ten times the work. */
        for (size_t i = 0; i < n; i++)
            out[i] = fmaxf(a[i], 0.0f);
        break;
    case FARM_GS_OP_SOFTMAX:
        for (int r = 0; r < rows; r++) {
            const float *x = a + (size_t)r * cols;
            float *y = out + (size_t)r * cols, mx = x[0], sum = 0;
            for (int c = 1; c < cols; c++)
                mx = x[c] > mx ? x[c] : mx;
            for (int c = 0; c < cols; c++)
                sum += (y[c] = expf(x[c] - mx));
            for (int c = 0; c < cols; c++)
                y[c] /= sum;
        }
        break;
    case FARM_GS_OP_LAYERNORM:
        for (int r = 0; r < rows; r++) {
            const float *x = a + (size_t)r * cols;
            float *y = out + (size_t)r * cols;
            double mean = 0, var = 0;
            for (int c = 0; c < cols; c++)
                mean += x[c];
            mean /= cols;
            for (int c = 0; c < cols; c++)
                var += (x[c] - mean) * (x[c] - mean);
            var /= cols;
            float inv = (float)(1.0 / sqrt(var + 1e-5));
            for (int c = 0; c < cols; c++)
                y[c] = (float)(x[c] - mean) * inv;
        }
        break;
    case FARM_GS_OP_ROWSUM: {
        int ac = g->ops[op->in[0]].cols;
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int c = 0; c < ac; c++)
                s += a[(size_t)r * ac + c];
            out[r] = (float)s;
        }
        break;
    }
    case FARM_GS_OP_CONCAT:
        if (op->axis == 0) {
            size_t at = 0;
            for (int j = 0; j < op->nin; j++) {
                size_t len = (size_t)g->ops[op->in[j]].rows * (size_t)cols;
                memcpy(out + at, ins[j], len * sizeof(float));
                at += len;
            }
        } else {
            for (int r = 0; r < rows; r++) {
                size_t at = (size_t)r * cols;
                for (int j = 0; j < op->nin; j++) {
                    int w = g->ops[op->in[j]].cols;
                    memcpy(out + at, ins[j] + (size_t)r * w, (size_t)w * sizeof(float));
                    at += (size_t)w;
                }
            }
        }
        break;
    case FARM_GS_OP_SLICE: {
        int ac = g->ops[op->in[0]].cols;
        if (op->axis == 0)
            memcpy(out, a + (size_t)op->off * ac, n * sizeof(float));
        else
            for (int r = 0; r < rows; r++)
                memcpy(out + (size_t)r * cols, a + (size_t)r * ac + op->off,
                       (size_t)cols * sizeof(float));
        break;
    }
    default:
        break;
    }
}

void farm_gs_free_buffers(float **bufs, int n)
{
    for (int i = 0; bufs && i < n; i++)
        free(bufs[i]);
    free(bufs);
}

int farm_gs_make_inputs(const struct farm_gs_opgraph *g, uint64_t seed, float ***out)
{
    float **b = calloc((size_t)g->ninputs, sizeof *b);
    if (!b)
        return -ENOMEM;
    for (int i = 0; i < g->ninputs; i++) {
        size_t n = (size_t)g->ops[i].rows * (size_t)g->ops[i].cols;
        if (!(b[i] = farm__gs_alloc(n))) {
            farm_gs_free_buffers(b, g->ninputs);
            return -ENOMEM;
        }
        /* splitmix64 from the seed and the input's position. */
        uint64_t s = seed * 0x100000001b3ULL + (uint64_t)i * 0x9e3779b97f4a7c15ULL;
        for (size_t j = 0; j < n; j++) {
            uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            z ^= z >> 31;
            b[i][j] = (float)(g->ops[i].scale * ((double)(z >> 40) / 8388608.0 - 1.0));
        }
    }
    *out = b;
    return 0;
}

int farm_gs_run_single(const struct farm_gs_opgraph *g, float *const *inputs, float ***outputs,
                       double *seconds)
{
    float **v = calloc((size_t)g->n, sizeof *v), **res = calloc((size_t)g->nout, sizeof *res);
    double spent = 0;
    int rc = -ENOMEM;
    if (!v || !res)
        goto out;
    for (int i = 0; i < g->n; i++) {
        const struct farm_gs_op *op = &g->ops[i];
        if (i < g->ninputs)
            continue;
        const float *ins[FARM_GS_MAXIN];
        for (int k = 0; k < op->nin; k++)
            ins[k] = op->in[k] < g->ninputs ? inputs[op->in[k]] : v[op->in[k]];
        if (!(v[i] = farm__gs_alloc((size_t)op->rows * (size_t)op->cols)))
            goto out;
        double t0 = farm__gs_cpu_now();
        farm__gs_kernel(op, g, ins, v[i]);
        spent += farm__gs_cpu_now() - t0;
    }
    for (int k = 0; k < g->nout; k++) {
        res[k] = v[g->outputs[k]];
        v[g->outputs[k]] = NULL;
    }
    *outputs = res;
    res = NULL;
    if (seconds)
        *seconds = spent;
    rc = 0;
out:
    farm_gs_free_buffers(v, g->n);
    farm_gs_free_buffers(res, g->nout);
    return rc;
}

int farm_gs_compare(const struct farm_gs_opgraph *g, float *const *got, float *const *ref,
                    double tol, double *max_err, struct farm_err *err)
{
    double worst = 0;
    int rc = 0;
    for (int k = 0; k < g->nout; k++) {
        const struct farm_gs_op *op = &g->ops[g->outputs[k]];
        size_t n = (size_t)op->rows * (size_t)op->cols;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)got[k][i] - ref[k][i]) / (1.0 + fabs((double)ref[k][i]));
            if (!(e <= tol) && !rc)
                rc = farm_err_set(err, FARM_ENUMERIC,
                                  "output %s[%zu, %zu] is %.9g, the single-node run gives %.9g",
                                  op->name, i / (size_t)op->cols, i % (size_t)op->cols,
                                  (double)got[k][i], (double)ref[k][i]);
            if (!(e <= worst))
                worst = e;
        }
    }
    if (max_err)
        *max_err = worst;
    return rc;
}
