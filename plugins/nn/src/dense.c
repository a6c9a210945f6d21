/* Dense layer, parameter lists and the FLOP counts of layers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nn-internal.h"

void farm_params_zero_grad(const struct farm_nn_param *params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (params[i].grad)
            farm_tensor_zero(params[i].grad);
}

size_t farm_params_count(const struct farm_nn_param *params, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += farm_tensor_size(params[i].value);
    return total;
}

void farm__nn_set_param(struct farm_nn_param *p, const char *prefix, const char *suffix,
                        struct farm_tensor *value, struct farm_tensor *grad)
{
    snprintf(p->name, sizeof p->name, "%s.%s", prefix, suffix);
    p->value = value;
    p->grad = grad;
}

void farm__nn_add_bias(float *restrict y, const float *restrict b, size_t rows, size_t cols)
{
    for (size_t i = 0; i < rows; i++) {
        float *restrict r = y + i * cols;
        for (size_t j = 0; j < cols; j++)
            r[j] += b[j];
    }
}

void farm__nn_add_colsums(float *restrict acc, const float *restrict g, size_t rows, size_t cols)
{
    for (size_t i = 0; i < rows; i++) {
        const float *restrict r = g + i * cols;
        for (size_t j = 0; j < cols; j++)
            acc[j] += r[j];
    }
}

int farm_dense_init(struct farm_dense *d, size_t in, size_t out)
{
    struct farm_dense t;
    memset(&t, 0, sizeof t);
    t.in = in;
    t.out = out;
    int rc;
    if ((rc = farm_tensor_init(&t.w, in, out)) < 0 || (rc = farm_tensor_init_1d(&t.b, out)) < 0 ||
        (rc = farm_tensor_init(&t.dw, in, out)) < 0 || (rc = farm_tensor_init_1d(&t.db, out)) < 0) {
        farm_dense_release(&t);
        return rc;
    }
    *d = t;
    return 0;
}

void farm_dense_release(struct farm_dense *d)
{
    if (!d)
        return;
    farm_tensor_release(&d->w);
    farm_tensor_release(&d->b);
    farm_tensor_release(&d->dw);
    farm_tensor_release(&d->db);
}

void farm_dense_init_params(struct farm_dense *d, enum farm_init init, struct farm_rng *rng)
{
    if (init == FARM_INIT_XAVIER)
        farm_tensor_init_xavier(&d->w, d->in, d->out, rng);
    else
        farm_tensor_init_he(&d->w, d->in, rng);
    farm_tensor_zero(&d->b);
}

int farm_dense_forward(const struct farm_dense *d, const struct farm_tensor *x,
                       struct farm_tensor *y)
{
    if (x->cols != d->in || y->cols != d->out || y->rows != x->rows || x->data == y->data)
        return -EINVAL;
    size_t rows = x->rows, out = d->out;
    farm_nn_sgemm(false, false, rows, out, d->in, 1.0f, x->data, d->in, d->w.data, out, 0.0f,
                  y->data, out);
    farm__nn_add_bias(y->data, d->b.data, rows, out);
    return 0;
}

int farm_dense_backward(struct farm_dense *d, const struct farm_tensor *x,
                        const struct farm_tensor *dy, struct farm_tensor *dx)
{
    if (x->cols != d->in || dy->cols != d->out || dy->rows != x->rows)
        return -EINVAL;
    if (dx && (dx->rows != x->rows || dx->cols != d->in))
        return -EINVAL;
    size_t rows = x->rows, in = d->in, out = d->out;
    /* dW += X^T dY */
    farm_nn_sgemm(true, false, in, out, rows, 1.0f, x->data, in, dy->data, out, 1.0f, d->dw.data,
                  out);
    /* db += column sums of dY, row by row, so the order is fixed. */
    farm__nn_add_colsums(d->db.data, dy->data, rows, out);
    /* dX = dY W^T */
    if (dx)
        farm_nn_sgemm(false, true, rows, in, out, 1.0f, dy->data, out, d->w.data, out, 0.0f,
                      dx->data, in);
    return 0;
}

void farm_dense_zero_grad(struct farm_dense *d)
{
    farm_tensor_zero(&d->dw);
    farm_tensor_zero(&d->db);
}

size_t farm_dense_params(struct farm_dense *d, const char *prefix, struct farm_nn_param *out)
{
    farm__nn_set_param(&out[0], prefix, "weight", &d->w, &d->dw);
    farm__nn_set_param(&out[1], prefix, "bias", &d->b, &d->db);
    return 2;
}

double farm_flops_dense_forward(size_t rows, size_t in, size_t out, enum farm_act act)
{
    double r = (double)rows, o = (double)out;
    return 2.0 * r * (double)in * o + r * o + farm_flops_act(act, rows * out);
}

double farm_flops_dense_backward(size_t rows, size_t in, size_t out, enum farm_act act)
{
    double r = (double)rows, o = (double)out;
    return 4.0 * r * (double)in * o + r * o + farm_flops_act(act, rows * out);
}
