/* One GRU / LSTM step for the rnnexit executors, with nn's parameters and
 * nn's cache layout, so nn's farm_gru_backward / farm_lstm_backward run on
 * what these forwards record.
 *
 * Why not farm_gru_forward / farm_lstm_forward: their gates call libm's
 * expf/tanhf per element, which took ~40% of a GRU step at hidden 256
 * (perf: __expm1f inside tanhf alone ~30%), and they allocate scratch on
 * every call. Here the products are the same single sgemm calls, the
 * scratch is the executor's, and sigmoid/tanh use an exp written so that
 * the compiler vectorises the gate loops (this file is built with -O3
 * -fno-trapping-math, which lets the clamps become vector selects).
 * Requested from plugins/nn: the same in its cells; this file goes away
 * then.
 *
 * A cell that reads the model's input directly and runs under `length`
 * conditions only knows before the first step which rows each step will
 * run; farm__rx_precompute then makes x Wx + b for all of them in one
 * product (as PyTorch and cuDNN do for whole sequences), and each step only
 * adds h Wh. That packs Wx once per forward instead of once per step.
 *
 * exp: x = k ln2 + r, |r| <= ln2/2, exp(r) by its Taylor polynomial to r^7
 * (relative error < 2e-7 on that interval), 2^k put in the exponent bits.
 * sigmoid(x) = 1 / (1 + exp(-x)); tanh(x) = 2 / (1 + exp(-2x)) - 1 (absolute
 * error ~1e-7 near 0, where tanhf would be exact to the last bit). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rnnexit-internal.h"

static inline float fexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick. */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float k = t - 12582912.0f;
    float r = x - k * 0.693145751953125f; /* ln2, high part: exact in k * hi */
    r = r - k * 1.42860682030941723e-6f;  /* ln2, low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)k + 127) * (1 << 23);
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float fsig(float x)
{
    return 1.0f / (1.0f + fexp(-x));
}

static inline float ftanh(float x)
{
    return 2.0f / (1.0f + fexp(-2.0f * x)) - 1.0f;
}

/* The gates of one row; separate functions with restrict pointers so the
 * loops vectorise, cloned for AVX2 where the CPU has it (chosen once, at
 * load time, by the dynamic linker). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RX_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RX_CLONES
#endif

RX_CLONES static void gru_gates(size_t H, const float *restrict ax, const float *restrict ah,
                                const float *restrict hp, float *restrict r, float *restrict z,
                                float *restrict n, float *restrict hh, float *restrict y)
{
    for (size_t j = 0; j < H; j++) {
        r[j] = fsig(ax[j] + ah[j]);
        z[j] = fsig(ax[H + j] + ah[H + j]);
        hh[j] = ah[2 * H + j];
        n[j] = ftanh(ax[2 * H + j] + r[j] * hh[j]);
        y[j] = (1.0f - z[j]) * n[j] + z[j] * hp[j];
    }
}

RX_CLONES static void lstm_gates(size_t H, const float *restrict a, const float *restrict cp,
                                 float *restrict i, float *restrict f, float *restrict g,
                                 float *restrict o, float *restrict tc, float *restrict y,
                                 float *restrict cc)
{
    for (size_t j = 0; j < H; j++) {
        i[j] = fsig(a[j]);
        f[j] = fsig(a[H + j]);
        g[j] = ftanh(a[2 * H + j]);
        o[j] = fsig(a[3 * H + j]);
        cc[j] = f[j] * cp[j] + i[j] * g[j];
        tc[j] = ftanh(cc[j]);
        y[j] = o[j] * tc[j];
    }
}

static void add_bias(float *y, const float *b, size_t rows, size_t cols)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            y[i * cols + j] += b[j];
}

int farm__rx_gru_step(struct farm_rx_exec *ex, const struct farm_gru *g, const float *x,
                      const float *pre, const float *h, float *hn, size_t rows,
                      struct farm_gru_cache *cache)
{
    size_t H = g->hidden, h3 = 3 * H, in = g->in;
    float *gx = ex->gate, *gh = ex->gate + rows * h3;
    const float *ax = pre ? pre : gx;
    float *R = ex->gr, *Z = ex->gz, *N = ex->gn, *HN = ex->ghn;
    if (cache) {
        struct farm_tensor *all[] = {&cache->x, &cache->h, &cache->r,
                                     &cache->z, &cache->n, &cache->hn};
        for (size_t i = 0; i < 6; i++)
            if (farm_tensor_resize_rows(all[i], rows))
                return -EINVAL;
        memcpy(cache->x.data, x, rows * in * sizeof(float));
        memcpy(cache->h.data, h, rows * H * sizeof(float));
        R = cache->r.data;
        Z = cache->z.data;
        N = cache->n.data;
        HN = cache->hn.data;
    }
    if (!pre) {
        farm_nn_sgemm(false, false, rows, h3, in, 1.0f, x, in, g->wx.data, h3, 0.0f, gx, h3);
        add_bias(gx, g->bx.data, rows, h3);
    }
    farm_nn_sgemm(false, false, rows, h3, H, 1.0f, h, H, g->wh.data, h3, 0.0f, gh, h3);
    add_bias(gh, g->bh.data, rows, h3);
    for (size_t i = 0; i < rows; i++)
        gru_gates(H, ax + i * h3, gh + i * h3, h + i * H, R + i * H, Z + i * H, N + i * H,
                  HN + i * H, hn + i * H);
    return 0;
}

int farm__rx_lstm_step(struct farm_rx_exec *ex, const struct farm_lstm *l, const float *x,
                       const float *pre, const float *h, const float *c, float *hn, float *cn,
                       size_t rows, struct farm_lstm_cache *cache)
{
    size_t H = l->hidden, h4 = 4 * H, in = l->in;
    float *a = ex->gate;
    float *I = ex->gr, *F = ex->gz, *G = ex->gn, *O = ex->ghn, *TC = ex->gtc;
    if (cache) {
        struct farm_tensor *all[] = {&cache->x, &cache->h, &cache->c, &cache->i,
                                     &cache->f, &cache->g, &cache->o, &cache->tc};
        for (size_t i = 0; i < 8; i++)
            if (farm_tensor_resize_rows(all[i], rows))
                return -EINVAL;
        memcpy(cache->x.data, x, rows * in * sizeof(float));
        memcpy(cache->h.data, h, rows * H * sizeof(float));
        memcpy(cache->c.data, c, rows * H * sizeof(float));
        I = cache->i.data;
        F = cache->f.data;
        G = cache->g.data;
        O = cache->o.data;
        TC = cache->tc.data;
    }
    if (pre) {
        /* x Wx + b was computed for all steps at once. */
        memcpy(a, pre, rows * h4 * sizeof(float));
        farm_nn_sgemm(false, false, rows, h4, H, 1.0f, h, H, l->wh.data, h4, 1.0f, a, h4);
    } else {
        farm_nn_sgemm(false, false, rows, h4, in, 1.0f, x, in, l->wx.data, h4, 0.0f, a, h4);
        farm_nn_sgemm(false, false, rows, h4, H, 1.0f, h, H, l->wh.data, h4, 1.0f, a, h4);
        add_bias(a, l->b.data, rows, h4);
    }
    for (size_t r = 0; r < rows; r++)
        lstm_gates(H, a + r * h4, c + r * H, I + r * H, F + r * H, G + r * H, O + r * H, TC + r * H,
                   hn + r * H, cn + r * H);
    return 0;
}

int farm__rx_precompute(struct rx_node_rt *r, const float *x, size_t steps, size_t batch,
                        const unsigned char *active)
{
    int lstm = r->d->type == FARM_RX_LSTM;
    size_t in = r->in, G = (lstm ? 4 : 3) * r->width, total = 0;
    const float *w = lstm ? r->p->lstm.wx.data : r->p->gru.wx.data;
    const float *b = lstm ? r->p->lstm.b.data : r->p->gru.bx.data;
    for (size_t t = 0; t < steps; t++) {
        r->pre_off[t] = total;
        for (size_t i = 0; i < batch; i++)
            total += active[t * batch + i];
    }
    r->pre_rows = total;
    if (total == 0)
        return 0;
    if (total * G > r->pre_cap) {
        float *p = realloc(r->pre, total * G * sizeof(float));
        if (!p)
            return -ENOMEM;
        r->pre = p;
        r->pre_cap = total * G;
    }
    const float *src = x;
    float *packed = NULL;
    if (total != steps * batch) {
        /* Only the rows that will run, in the order the steps use them. */
        packed = malloc(total * in * sizeof(float));
        if (!packed)
            return -ENOMEM;
        size_t k = 0;
        for (size_t t = 0; t < steps; t++)
            for (size_t i = 0; i < batch; i++)
                if (active[t * batch + i])
                    memcpy(packed + k++ * in, x + (t * batch + i) * in, in * sizeof(float));
        src = packed;
    }
    farm_nn_sgemm(false, false, total, G, in, 1.0f, src, in, w, G, 0.0f, r->pre, G);
    add_bias(r->pre, b, total, G);
    free(packed);
    return 0;
}
