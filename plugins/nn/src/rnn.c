/* GRU and LSTM cells: one time step forward and backward. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn-internal.h"

static float sig(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static float *scratch(size_t n)
{
    size_t bytes =
        (n * sizeof(float) + FARM_TENSOR_ALIGN - 1) / FARM_TENSOR_ALIGN * FARM_TENSOR_ALIGN;
    return aligned_alloc(FARM_TENSOR_ALIGN, bytes ? bytes : FARM_TENSOR_ALIGN);
}

/* ---- GRU ---------------------------------------------------------------- */

int farm_gru_init(struct farm_gru *g, size_t in, size_t hidden)
{
    struct farm_gru t;
    memset(&t, 0, sizeof t);
    t.in = in;
    t.hidden = hidden;
    size_t h3 = 3 * hidden;
    int rc;
    if ((rc = farm_tensor_init(&t.wx, in, h3)) < 0 ||
        (rc = farm_tensor_init(&t.wh, hidden, h3)) < 0 ||
        (rc = farm_tensor_init_1d(&t.bx, h3)) < 0 || (rc = farm_tensor_init_1d(&t.bh, h3)) < 0 ||
        (rc = farm_tensor_init(&t.dwx, in, h3)) < 0 ||
        (rc = farm_tensor_init(&t.dwh, hidden, h3)) < 0 ||
        (rc = farm_tensor_init_1d(&t.dbx, h3)) < 0 || (rc = farm_tensor_init_1d(&t.dbh, h3)) < 0) {
        farm_gru_release(&t);
        return rc;
    }
    *g = t;
    return 0;
}

void farm_gru_release(struct farm_gru *g)
{
    if (!g)
        return;
    struct farm_tensor *all[] = {&g->wx,  &g->wh,  &g->bx,  &g->bh,
                                 &g->dwx, &g->dwh, &g->dbx, &g->dbh};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        farm_tensor_release(all[i]);
}

void farm_gru_init_params(struct farm_gru *g, struct farm_rng *rng)
{
    float k = 1.0f / sqrtf((float)g->hidden);
    farm_tensor_fill_uniform(&g->wx, -k, k, rng);
    farm_tensor_fill_uniform(&g->wh, -k, k, rng);
    farm_tensor_fill_uniform(&g->bx, -k, k, rng);
    farm_tensor_fill_uniform(&g->bh, -k, k, rng);
}

int farm_gru_cache_init(struct farm_gru_cache *c, const struct farm_gru *g, size_t max_rows)
{
    struct farm_gru_cache t;
    memset(&t, 0, sizeof t);
    int rc;
    if ((rc = farm_tensor_init(&t.x, max_rows, g->in)) < 0 ||
        (rc = farm_tensor_init(&t.h, max_rows, g->hidden)) < 0 ||
        (rc = farm_tensor_init(&t.r, max_rows, g->hidden)) < 0 ||
        (rc = farm_tensor_init(&t.z, max_rows, g->hidden)) < 0 ||
        (rc = farm_tensor_init(&t.n, max_rows, g->hidden)) < 0 ||
        (rc = farm_tensor_init(&t.hn, max_rows, g->hidden)) < 0) {
        farm_gru_cache_release(&t);
        return rc;
    }
    *c = t;
    return 0;
}

void farm_gru_cache_release(struct farm_gru_cache *c)
{
    if (!c)
        return;
    struct farm_tensor *all[] = {&c->x, &c->h, &c->r, &c->z, &c->n, &c->hn};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        farm_tensor_release(all[i]);
}

static int cache_rows(struct farm_tensor *const *all, size_t n, size_t rows)
{
    for (size_t i = 0; i < n; i++)
        if (rows * all[i]->cols > all[i]->cap)
            return -EINVAL;
    for (size_t i = 0; i < n; i++)
        farm_tensor_resize_rows(all[i], rows);
    return 0;
}

int farm_gru_forward(const struct farm_gru *g, const struct farm_tensor *x,
                     const struct farm_tensor *h_prev, struct farm_tensor *h_next,
                     struct farm_gru_cache *cache)
{
    size_t rows = x->rows, H = g->hidden, h3 = 3 * H;
    if (x->cols != g->in || h_prev->rows != rows || h_prev->cols != H || h_next->rows != rows ||
        h_next->cols != H || h_next->data == h_prev->data)
        return -EINVAL;
    if (cache) {
        struct farm_tensor *all[] = {&cache->x, &cache->h, &cache->r,
                                     &cache->z, &cache->n, &cache->hn};
        if (cache_rows(all, 6, rows) < 0)
            return -EINVAL;
        if (rows) {
            memcpy(cache->x.data, x->data, rows * g->in * sizeof(float));
            memcpy(cache->h.data, h_prev->data, rows * H * sizeof(float));
        }
    }
    float *gx = scratch(2 * rows * h3);
    if (!gx)
        return -ENOMEM;
    float *gh = gx + rows * h3;
    farm_nn_sgemm(false, false, rows, h3, g->in, 1.0f, x->data, g->in, g->wx.data, h3, 0.0f, gx,
                  h3);
    farm__nn_add_bias(gx, g->bx.data, rows, h3);
    farm_nn_sgemm(false, false, rows, h3, H, 1.0f, h_prev->data, H, g->wh.data, h3, 0.0f, gh, h3);
    farm__nn_add_bias(gh, g->bh.data, rows, h3);
    for (size_t i = 0; i < rows; i++) {
        const float *ax = gx + i * h3, *ah = gh + i * h3, *hp = h_prev->data + i * H;
        float *hn = h_next->data + i * H;
        for (size_t j = 0; j < H; j++) {
            float r = sig(ax[j] + ah[j]);
            float z = sig(ax[H + j] + ah[H + j]);
            float n = tanhf(ax[2 * H + j] + r * ah[2 * H + j]);
            hn[j] = (1.0f - z) * n + z * hp[j];
            if (cache) {
                cache->r.data[i * H + j] = r;
                cache->z.data[i * H + j] = z;
                cache->n.data[i * H + j] = n;
                cache->hn.data[i * H + j] = ah[2 * H + j];
            }
        }
    }
    free(gx);
    return 0;
}

int farm_gru_backward(struct farm_gru *g, const struct farm_gru_cache *cache,
                      const struct farm_tensor *dh_next, struct farm_tensor *dx,
                      struct farm_tensor *dh_prev)
{
    size_t rows = cache->x.rows, H = g->hidden, h3 = 3 * H, in = g->in;
    if (dh_next->rows != rows || dh_next->cols != H || cache->x.cols != in)
        return -EINVAL;
    if (dx && (dx->rows != rows || dx->cols != in))
        return -EINVAL;
    if (dh_prev && (dh_prev->rows != rows || dh_prev->cols != H || dh_prev->data == dh_next->data))
        return -EINVAL;
    float *dgx = scratch(2 * rows * h3);
    if (!dgx)
        return -ENOMEM;
    float *dgh = dgx + rows * h3;
    for (size_t i = 0; i < rows; i++) {
        const float *d = dh_next->data + i * H, *hp = cache->h.data + i * H;
        const float *r = cache->r.data + i * H, *z = cache->z.data + i * H;
        const float *n = cache->n.data + i * H, *hn = cache->hn.data + i * H;
        float *ax = dgx + i * h3, *ah = dgh + i * h3;
        for (size_t j = 0; j < H; j++) {
            float dn = d[j] * (1.0f - z[j]);
            float dz = d[j] * (hp[j] - n[j]);
            float dan = dn * (1.0f - n[j] * n[j]);
            float dr = dan * hn[j];
            float dar = dr * r[j] * (1.0f - r[j]);
            float daz = dz * z[j] * (1.0f - z[j]);
            ax[j] = dar;
            ax[H + j] = daz;
            ax[2 * H + j] = dan;
            ah[j] = dar;
            ah[H + j] = daz;
            ah[2 * H + j] = dan * r[j];
        }
    }
    farm_nn_sgemm(true, false, in, h3, rows, 1.0f, cache->x.data, in, dgx, h3, 1.0f, g->dwx.data,
                  h3);
    farm_nn_sgemm(true, false, H, h3, rows, 1.0f, cache->h.data, H, dgh, h3, 1.0f, g->dwh.data, h3);
    farm__nn_add_colsums(g->dbx.data, dgx, rows, h3);
    farm__nn_add_colsums(g->dbh.data, dgh, rows, h3);
    if (dx)
        farm_nn_sgemm(false, true, rows, in, h3, 1.0f, dgx, h3, g->wx.data, h3, 0.0f, dx->data, in);
    if (dh_prev) {
        farm_nn_sgemm(false, true, rows, H, h3, 1.0f, dgh, h3, g->wh.data, h3, 0.0f, dh_prev->data,
                      H);
        for (size_t i = 0; i < rows * H; i++)
            dh_prev->data[i] += dh_next->data[i] * cache->z.data[i];
    }
    free(dgx);
    return 0;
}

void farm_gru_zero_grad(struct farm_gru *g)
{
    farm_tensor_zero(&g->dwx);
    farm_tensor_zero(&g->dwh);
    farm_tensor_zero(&g->dbx);
    farm_tensor_zero(&g->dbh);
}

size_t farm_gru_params(struct farm_gru *g, const char *prefix, struct farm_nn_param *out)
{
    farm__nn_set_param(&out[0], prefix, "wx", &g->wx, &g->dwx);
    farm__nn_set_param(&out[1], prefix, "wh", &g->wh, &g->dwh);
    farm__nn_set_param(&out[2], prefix, "bx", &g->bx, &g->dbx);
    farm__nn_set_param(&out[3], prefix, "bh", &g->bh, &g->dbh);
    return 4;
}

/* ---- LSTM --------------------------------------------------------------- */

int farm_lstm_init(struct farm_lstm *l, size_t in, size_t hidden)
{
    struct farm_lstm t;
    memset(&t, 0, sizeof t);
    t.in = in;
    t.hidden = hidden;
    size_t h4 = 4 * hidden;
    int rc;
    if ((rc = farm_tensor_init(&t.wx, in, h4)) < 0 ||
        (rc = farm_tensor_init(&t.wh, hidden, h4)) < 0 ||
        (rc = farm_tensor_init_1d(&t.b, h4)) < 0 || (rc = farm_tensor_init(&t.dwx, in, h4)) < 0 ||
        (rc = farm_tensor_init(&t.dwh, hidden, h4)) < 0 ||
        (rc = farm_tensor_init_1d(&t.db, h4)) < 0) {
        farm_lstm_release(&t);
        return rc;
    }
    *l = t;
    return 0;
}

void farm_lstm_release(struct farm_lstm *l)
{
    if (!l)
        return;
    struct farm_tensor *all[] = {&l->wx, &l->wh, &l->b, &l->dwx, &l->dwh, &l->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        farm_tensor_release(all[i]);
}

void farm_lstm_init_params(struct farm_lstm *l, struct farm_rng *rng)
{
    float k = 1.0f / sqrtf((float)l->hidden);
    farm_tensor_fill_uniform(&l->wx, -k, k, rng);
    farm_tensor_fill_uniform(&l->wh, -k, k, rng);
    farm_tensor_zero(&l->b);
    for (size_t j = 0; j < l->hidden; j++)
        l->b.data[l->hidden + j] = 1.0f;
}

int farm_lstm_cache_init(struct farm_lstm_cache *c, const struct farm_lstm *l, size_t max_rows)
{
    struct farm_lstm_cache t;
    memset(&t, 0, sizeof t);
    int rc = farm_tensor_init(&t.x, max_rows, l->in);
    struct farm_tensor *hs[] = {&t.h, &t.c, &t.i, &t.f, &t.g, &t.o, &t.tc};
    for (size_t k = 0; rc == 0 && k < sizeof hs / sizeof hs[0]; k++)
        rc = farm_tensor_init(hs[k], max_rows, l->hidden);
    if (rc < 0) {
        farm_lstm_cache_release(&t);
        return rc;
    }
    *c = t;
    return 0;
}

void farm_lstm_cache_release(struct farm_lstm_cache *c)
{
    if (!c)
        return;
    struct farm_tensor *all[] = {&c->x, &c->h, &c->c, &c->i, &c->f, &c->g, &c->o, &c->tc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        farm_tensor_release(all[i]);
}

int farm_lstm_forward(const struct farm_lstm *l, const struct farm_tensor *x,
                      const struct farm_tensor *h_prev, const struct farm_tensor *c_prev,
                      struct farm_tensor *h_next, struct farm_tensor *c_next,
                      struct farm_lstm_cache *cache)
{
    size_t rows = x->rows, H = l->hidden, h4 = 4 * H;
    const struct farm_tensor *hs[] = {h_prev, c_prev, h_next, c_next};
    if (x->cols != l->in)
        return -EINVAL;
    for (size_t k = 0; k < 4; k++)
        if (hs[k]->rows != rows || hs[k]->cols != H)
            return -EINVAL;
    if (h_next->data == h_prev->data || c_next->data == c_prev->data ||
        h_next->data == c_next->data)
        return -EINVAL;
    if (cache) {
        struct farm_tensor *all[] = {&cache->x, &cache->h, &cache->c, &cache->i,
                                     &cache->f, &cache->g, &cache->o, &cache->tc};
        if (cache_rows(all, 8, rows) < 0)
            return -EINVAL;
        if (rows) {
            memcpy(cache->x.data, x->data, rows * l->in * sizeof(float));
            memcpy(cache->h.data, h_prev->data, rows * H * sizeof(float));
            memcpy(cache->c.data, c_prev->data, rows * H * sizeof(float));
        }
    }
    float *a = scratch(rows * h4);
    if (!a)
        return -ENOMEM;
    farm_nn_sgemm(false, false, rows, h4, l->in, 1.0f, x->data, l->in, l->wx.data, h4, 0.0f, a, h4);
    farm_nn_sgemm(false, false, rows, h4, H, 1.0f, h_prev->data, H, l->wh.data, h4, 1.0f, a, h4);
    farm__nn_add_bias(a, l->b.data, rows, h4);
    for (size_t r = 0; r < rows; r++) {
        const float *ar = a + r * h4, *cp = c_prev->data + r * H;
        float *hn = h_next->data + r * H, *cn = c_next->data + r * H;
        for (size_t j = 0; j < H; j++) {
            float i = sig(ar[j]);
            float f = sig(ar[H + j]);
            float gg = tanhf(ar[2 * H + j]);
            float o = sig(ar[3 * H + j]);
            float c = f * cp[j] + i * gg;
            float tc = tanhf(c);
            cn[j] = c;
            hn[j] = o * tc;
            if (cache) {
                size_t k = r * H + j;
                cache->i.data[k] = i;
                cache->f.data[k] = f;
                cache->g.data[k] = gg;
                cache->o.data[k] = o;
                cache->tc.data[k] = tc;
            }
        }
    }
    free(a);
    return 0;
}

int farm_lstm_backward(struct farm_lstm *l, const struct farm_lstm_cache *cache,
                       const struct farm_tensor *dh_next, const struct farm_tensor *dc_next,
                       struct farm_tensor *dx, struct farm_tensor *dh_prev,
                       struct farm_tensor *dc_prev)
{
    size_t rows = cache->x.rows, H = l->hidden, h4 = 4 * H, in = l->in;
    if (dh_next->rows != rows || dh_next->cols != H || cache->x.cols != in)
        return -EINVAL;
    if (dc_next && (dc_next->rows != rows || dc_next->cols != H))
        return -EINVAL;
    if (dx && (dx->rows != rows || dx->cols != in))
        return -EINVAL;
    if (dh_prev && (dh_prev->rows != rows || dh_prev->cols != H))
        return -EINVAL;
    if (dc_prev && (dc_prev->rows != rows || dc_prev->cols != H))
        return -EINVAL;
    float *da = scratch(rows * h4);
    if (!da)
        return -ENOMEM;
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < H; j++) {
            size_t k = r * H + j;
            float i = cache->i.data[k], f = cache->f.data[k], gg = cache->g.data[k];
            float o = cache->o.data[k], tc = cache->tc.data[k];
            float dh = dh_next->data[k];
            float dc = (dc_next ? dc_next->data[k] : 0.0f) + dh * o * (1.0f - tc * tc);
            float *ar = da + r * h4;
            ar[j] = dc * gg * i * (1.0f - i);
            ar[H + j] = dc * cache->c.data[k] * f * (1.0f - f);
            ar[2 * H + j] = dc * i * (1.0f - gg * gg);
            ar[3 * H + j] = dh * tc * o * (1.0f - o);
            if (dc_prev)
                dc_prev->data[k] = dc * f;
        }
    }
    farm_nn_sgemm(true, false, in, h4, rows, 1.0f, cache->x.data, in, da, h4, 1.0f, l->dwx.data,
                  h4);
    farm_nn_sgemm(true, false, H, h4, rows, 1.0f, cache->h.data, H, da, h4, 1.0f, l->dwh.data, h4);
    farm__nn_add_colsums(l->db.data, da, rows, h4);
    if (dx)
        farm_nn_sgemm(false, true, rows, in, h4, 1.0f, da, h4, l->wx.data, h4, 0.0f, dx->data, in);
    if (dh_prev)
        farm_nn_sgemm(false, true, rows, H, h4, 1.0f, da, h4, l->wh.data, h4, 0.0f, dh_prev->data,
                      H);
    free(da);
    return 0;
}

void farm_lstm_zero_grad(struct farm_lstm *l)
{
    farm_tensor_zero(&l->dwx);
    farm_tensor_zero(&l->dwh);
    farm_tensor_zero(&l->db);
}

size_t farm_lstm_params(struct farm_lstm *l, const char *prefix, struct farm_nn_param *out)
{
    farm__nn_set_param(&out[0], prefix, "wx", &l->wx, &l->dwx);
    farm__nn_set_param(&out[1], prefix, "wh", &l->wh, &l->dwh);
    farm__nn_set_param(&out[2], prefix, "b", &l->b, &l->db);
    return 3;
}

/* Products count 2 per multiply-add; gates: sigmoid/tanh 4 each, other
 * elementwise operations 1 each. */
double farm_flops_gru_forward(size_t rows, size_t in, size_t hidden)
{
    double r = (double)rows, H = (double)hidden;
    double products = 2.0 * r * ((double)in + H) * 3.0 * H;
    double bias = 2.0 * r * 3.0 * H;
    /* r, z: add + sigmoid; n: mul, add, tanh; h': 4 ops. */
    double gates = r * H * (5.0 + 5.0 + 6.0 + 4.0);
    return products + bias + gates;
}

double farm_flops_gru_backward(size_t rows, size_t in, size_t hidden)
{
    double r = (double)rows, H = (double)hidden;
    double products = 4.0 * r * ((double)in + H) * 3.0 * H;
    double bias = 2.0 * r * 3.0 * H;
    double gates = r * H * 16.0 + 2.0 * r * H;
    return products + bias + gates;
}

double farm_flops_lstm_forward(size_t rows, size_t in, size_t hidden)
{
    double r = (double)rows, H = (double)hidden;
    double products = 2.0 * r * ((double)in + H) * 4.0 * H;
    double bias = r * 4.0 * H;
    /* four gate nonlinearities, c' (3), tanh(c') (4), h' (1). */
    double gates = r * H * (16.0 + 3.0 + 4.0 + 1.0);
    return products + bias + gates;
}

double farm_flops_lstm_backward(size_t rows, size_t in, size_t hidden)
{
    double r = (double)rows, H = (double)hidden;
    double products = 4.0 * r * ((double)in + H) * 4.0 * H;
    double bias = r * 4.0 * H;
    double gates = r * H * 20.0;
    return products + bias + gates;
}
