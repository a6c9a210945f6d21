/* Tensors, initialisers and the CBLAS wrappers. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "farm/nn.h"

static float *alloc_floats(size_t n)
{
    size_t bytes = n * sizeof(float);
    if (n && bytes / sizeof(float) != n)
        return NULL;
    /* aligned_alloc wants a multiple of the alignment. */
    bytes = (bytes + FARM_TENSOR_ALIGN - 1) / FARM_TENSOR_ALIGN * FARM_TENSOR_ALIGN;
    if (bytes == 0)
        bytes = FARM_TENSOR_ALIGN;
    float *p = aligned_alloc(FARM_TENSOR_ALIGN, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static void set_shape(struct farm_tensor *t, int ndim, const size_t *shape)
{
    t->ndim = ndim;
    for (int i = 0; i < FARM_TENSOR_MAXDIM; i++)
        t->shape[i] = i < ndim ? shape[i] : 0;
    if (ndim == 1) {
        t->rows = 1;
        t->cols = shape[0];
    } else {
        t->rows = shape[0];
        t->cols = 1;
        for (int i = 1; i < ndim; i++)
            t->cols *= shape[i];
    }
}

static int checked_count(int ndim, const size_t *shape, size_t *count)
{
    if (ndim < 1 || ndim > FARM_TENSOR_MAXDIM)
        return -EINVAL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && n > SIZE_MAX / sizeof(float) / shape[i])
            return -EOVERFLOW;
        n *= shape[i];
    }
    *count = n;
    return 0;
}

int farm_tensor_init_shape(struct farm_tensor *t, int ndim, const size_t *shape)
{
    size_t n;
    int rc = checked_count(ndim, shape, &n);
    if (rc < 0)
        return rc;
    float *p = alloc_floats(n);
    if (!p)
        return -ENOMEM;
    memset(t, 0, sizeof *t);
    t->data = p;
    t->cap = n ? n : 1;
    set_shape(t, ndim, shape);
    return 0;
}

int farm_tensor_init(struct farm_tensor *t, size_t rows, size_t cols)
{
    size_t shape[2] = {rows, cols};
    return farm_tensor_init_shape(t, 2, shape);
}

int farm_tensor_init_1d(struct farm_tensor *t, size_t n)
{
    return farm_tensor_init_shape(t, 1, &n);
}

int farm_tensor_clone(struct farm_tensor *dst, const struct farm_tensor *src)
{
    struct farm_tensor t;
    int rc = farm_tensor_init_shape(&t, src->ndim ? src->ndim : 2,
                                    src->ndim ? src->shape : (const size_t[]){0, 0});
    if (rc < 0)
        return rc;
    if (farm_tensor_size(src))
        memcpy(t.data, src->data, farm_tensor_size(src) * sizeof(float));
    *dst = t;
    return 0;
}

void farm_tensor_release(struct farm_tensor *t)
{
    if (!t)
        return;
    if (t->cap)
        free(t->data);
    memset(t, 0, sizeof *t);
}

size_t farm_tensor_size(const struct farm_tensor *t)
{
    return t->rows * t->cols;
}

void farm_tensor_zero(struct farm_tensor *t)
{
    if (farm_tensor_size(t))
        memset(t->data, 0, farm_tensor_size(t) * sizeof(float));
}

void farm_tensor_fill(struct farm_tensor *t, float v)
{
    size_t n = farm_tensor_size(t);
    for (size_t i = 0; i < n; i++)
        t->data[i] = v;
}

int farm_tensor_copy(struct farm_tensor *dst, const struct farm_tensor *src)
{
    if (dst->rows != src->rows || dst->cols != src->cols)
        return -EINVAL;
    if (dst->data != src->data && farm_tensor_size(src))
        memmove(dst->data, src->data, farm_tensor_size(src) * sizeof(float));
    return 0;
}

int farm_tensor_resize_rows(struct farm_tensor *t, size_t rows)
{
    if (t->ndim == 0) {
        /* An empty tensor has no columns to keep. */
        if (t->cap || t->data)
            return -EINVAL;
        size_t shape[2] = {rows, 0};
        set_shape(t, 2, shape);
        return 0;
    }
    if (t->cols && rows > SIZE_MAX / sizeof(float) / t->cols)
        return -EOVERFLOW;
    size_t need = rows * t->cols;
    if (t->cap == 0) {
        /* A view cannot know what lies beyond it: it may only shrink. */
        if (rows > t->rows)
            return -EINVAL;
    } else if (need > t->cap) {
        float *p = alloc_floats(need);
        if (!p)
            return -ENOMEM;
        memcpy(p, t->data, farm_tensor_size(t) * sizeof(float));
        free(t->data);
        t->data = p;
        t->cap = need;
    }
    if (t->ndim == 1) {
        /* A 1-D tensor's only dimension is its columns: one row keeps it
         * 1-D, more rows make it 2-D. */
        if (rows != 1) {
            size_t shape[2] = {rows, t->cols};
            set_shape(t, 2, shape);
        }
        return 0;
    }
    t->shape[0] = rows;
    t->rows = rows;
    return 0;
}

int farm_tensor_reshape(struct farm_tensor *t, int ndim, const size_t *shape)
{
    size_t n;
    int rc = checked_count(ndim, shape, &n);
    if (rc < 0)
        return rc;
    if (n != farm_tensor_size(t))
        return -EINVAL;
    set_shape(t, ndim, shape);
    return 0;
}

int farm_tensor_view_rows(const struct farm_tensor *src, size_t first, size_t count,
                          struct farm_tensor *view)
{
    if (first > src->rows || count > src->rows - first)
        return -EINVAL;
    struct farm_tensor v = *src;
    v.cap = 0;
    v.data = src->data ? src->data + first * src->cols : NULL;
    if (v.ndim <= 1) {
        size_t shape[2] = {count, src->cols};
        set_shape(&v, 2, shape);
    } else {
        v.shape[0] = count;
        v.rows = count;
    }
    *view = v;
    return 0;
}

void farm_tensor_wrap(struct farm_tensor *view, float *data, size_t rows, size_t cols)
{
    size_t shape[2] = {rows, cols};
    memset(view, 0, sizeof *view);
    view->data = data;
    set_shape(view, 2, shape);
}

int farm_tensor_gather_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                            const size_t *idx, size_t n)
{
    if (dst->rows != n || dst->cols != src->cols)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= src->rows)
            return -EINVAL;
    size_t c = src->cols;
    for (size_t i = 0; i < n; i++)
        memcpy(dst->data + i * c, src->data + idx[i] * c, c * sizeof(float));
    return 0;
}

static int scatter(struct farm_tensor *dst, const struct farm_tensor *src, const size_t *idx,
                   size_t n, bool add)
{
    if (src->rows != n || dst->cols != src->cols)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= dst->rows)
            return -EINVAL;
    size_t c = src->cols;
    for (size_t i = 0; i < n; i++) {
        float *d = dst->data + idx[i] * c;
        const float *s = src->data + i * c;
        if (add)
            for (size_t j = 0; j < c; j++)
                d[j] += s[j];
        else
            memcpy(d, s, c * sizeof(float));
    }
    return 0;
}

int farm_tensor_scatter_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                             const size_t *idx, size_t n)
{
    return scatter(dst, src, idx, n, false);
}

int farm_tensor_scatter_add_rows(struct farm_tensor *dst, const struct farm_tensor *src,
                                 const size_t *idx, size_t n)
{
    return scatter(dst, src, idx, n, true);
}

int farm_tensor_axpy(struct farm_tensor *y, float alpha, const struct farm_tensor *x)
{
    if (y->rows != x->rows || y->cols != x->cols)
        return -EINVAL;
    size_t n = farm_tensor_size(x);
    if (n)
        cblas_saxpy((blasint)n, alpha, x->data, 1, y->data, 1);
    return 0;
}

void farm_tensor_scale(struct farm_tensor *t, float alpha)
{
    size_t n = farm_tensor_size(t);
    if (n)
        cblas_sscal((blasint)n, alpha, t->data, 1);
}

void farm_tensor_argmax_rows(const struct farm_tensor *t, int32_t *out)
{
    for (size_t i = 0; i < t->rows; i++) {
        const float *r = t->data + i * t->cols;
        size_t best = 0;
        for (size_t j = 1; j < t->cols; j++)
            if (r[j] > r[best])
                best = j;
        out[i] = (int32_t)best;
    }
}

bool farm_tensor_equal(const struct farm_tensor *a, const struct farm_tensor *b)
{
    if (a->rows != b->rows || a->cols != b->cols)
        return false;
    size_t n = farm_tensor_size(a);
    return n == 0 || memcmp(a->data, b->data, n * sizeof(float)) == 0;
}

double farm_tensor_max_abs_diff(const struct farm_tensor *a, const struct farm_tensor *b)
{
    if (a->rows != b->rows || a->cols != b->cols)
        return INFINITY;
    double m = 0;
    size_t n = farm_tensor_size(a);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a->data[i] - (double)b->data[i]);
        if (!(d <= m))
            m = d; /* NaN propagates */
    }
    return m;
}

void farm_tensor_fill_uniform(struct farm_tensor *t, float lo, float hi, struct farm_rng *rng)
{
    size_t n = farm_tensor_size(t);
    for (size_t i = 0; i < n; i++)
        t->data[i] = (float)(lo + (hi - lo) * farm_rng_uniform(rng));
}

void farm_tensor_fill_normal(struct farm_tensor *t, float mean, float std, struct farm_rng *rng)
{
    size_t n = farm_tensor_size(t);
    for (size_t i = 0; i < n; i++)
        t->data[i] = (float)(mean + std * farm_rng_normal(rng));
}

void farm_tensor_init_xavier(struct farm_tensor *t, size_t fan_in, size_t fan_out,
                             struct farm_rng *rng)
{
    float a = (float)sqrt(6.0 / (double)(fan_in + fan_out));
    farm_tensor_fill_uniform(t, -a, a, rng);
}

void farm_tensor_init_he(struct farm_tensor *t, size_t fan_in, struct farm_rng *rng)
{
    farm_tensor_fill_normal(t, 0.0f, (float)sqrt(2.0 / (double)fan_in), rng);
}

void farm_nn_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                   size_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /* BLAS leaves C untouched for k == 0 only when beta == 1. */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

int farm_nn_gemm(bool trans_a, bool trans_b, float alpha, const struct farm_tensor *a,
                 const struct farm_tensor *b, float beta, struct farm_tensor *c)
{
    size_t m = trans_a ? a->cols : a->rows;
    size_t k = trans_a ? a->rows : a->cols;
    size_t kb = trans_b ? b->cols : b->rows;
    size_t n = trans_b ? b->rows : b->cols;
    if (k != kb || c->rows != m || c->cols != n)
        return -EINVAL;
    farm_nn_sgemm(trans_a, trans_b, m, n, k, alpha, a->data, a->cols, b->data, b->cols, beta,
                  c->data, c->cols);
    return 0;
}

void farm_nn_blas_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int farm_nn_blas_threads(void)
{
    return openblas_get_num_threads();
}
