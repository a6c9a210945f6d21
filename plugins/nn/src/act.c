/* Activations, softmax and the losses. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "farm/nn.h"

static float sigmoidf(float x)
{
    /* Split by sign so exp never overflows. */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* The relu loops sit in the hot path of every MLP. They are written with
 * restrict pointers, one variant for in place, so the compiler can
 * vectorize them without run-time alias checks. */
static void relu_copy(const float *restrict a, float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

static void relu_inplace(float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = b[i] > 0.0f ? b[i] : 0.0f;
}

static void relu_mask(const float *restrict y, const float *restrict g, float *restrict d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

static void relu_mask_inplace(const float *restrict y, float *restrict d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = y[i] > 0.0f ? d[i] : 0.0f;
}

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

int farm_act_forward(enum farm_act act, const struct farm_tensor *x, struct farm_tensor *y)
{
    if (x->rows != y->rows || x->cols != y->cols)
        return -EINVAL;
    size_t n = farm_tensor_size(x);
    const float *a = x->data;
    float *b = y->data;
    switch (act) {
    case FARM_ACT_NONE:
        if (a != b && n)
            memcpy(b, a, n * sizeof(float));
        break;
    case FARM_ACT_RELU:
        if (a == b)
            relu_inplace(b, n);
        else
            relu_copy(a, b, n);
        break;
    case FARM_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            b[i] = tanhf(a[i]);
        break;
    case FARM_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            b[i] = sigmoidf(a[i]);
        break;
    case FARM_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            b[i] = 0.5f * a[i] * (1.0f + erff(a[i] * INV_SQRT2));
        break;
    default:
        return -EINVAL;
    }
    return 0;
}

int farm_act_backward(enum farm_act act, const struct farm_tensor *x, const struct farm_tensor *y,
                      const struct farm_tensor *dy, struct farm_tensor *dx)
{
    if (dy->rows != dx->rows || dy->cols != dx->cols)
        return -EINVAL;
    size_t n = farm_tensor_size(dy);
    const float *g = dy->data;
    float *d = dx->data;
    if (act != FARM_ACT_NONE && act != FARM_ACT_GELU &&
        (y->rows != dy->rows || y->cols != dy->cols))
        return -EINVAL;
    if (act == FARM_ACT_GELU && (x->rows != dy->rows || x->cols != dy->cols))
        return -EINVAL;
    switch (act) {
    case FARM_ACT_NONE:
        if (g != d && n)
            memcpy(d, g, n * sizeof(float));
        break;
    case FARM_ACT_RELU:
        if (g == d)
            relu_mask_inplace(y->data, d, n);
        else
            relu_mask(y->data, g, d, n);
        break;
    case FARM_ACT_TANH: {
        const float *o = y->data;
        for (size_t i = 0; i < n; i++)
            d[i] = g[i] * (1.0f - o[i] * o[i]);
        break;
    }
    case FARM_ACT_SIGMOID: {
        const float *o = y->data;
        for (size_t i = 0; i < n; i++)
            d[i] = g[i] * o[i] * (1.0f - o[i]);
        break;
    }
    case FARM_ACT_GELU: {
        const float *a = x->data;
        for (size_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + erff(a[i] * INV_SQRT2));
            float pdf = INV_SQRT2PI * expf(-0.5f * a[i] * a[i]);
            d[i] = g[i] * (cdf + a[i] * pdf);
        }
        break;
    }
    default:
        return -EINVAL;
    }
    return 0;
}

static const char *const act_names[] = {
    [FARM_ACT_NONE] = "none",       [FARM_ACT_RELU] = "relu", [FARM_ACT_TANH] = "tanh",
    [FARM_ACT_SIGMOID] = "sigmoid", [FARM_ACT_GELU] = "gelu",
};

int farm_act_parse(const char *name, enum farm_act *out)
{
    if (!strcmp(name, "identity") || !strcmp(name, "linear")) {
        *out = FARM_ACT_NONE;
        return 0;
    }
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (!strcmp(name, act_names[i])) {
            *out = (enum farm_act)i;
            return 0;
        }
    return -EINVAL;
}

const char *farm_act_name(enum farm_act act)
{
    if ((size_t)act < sizeof act_names / sizeof act_names[0])
        return act_names[act];
    return "?";
}

int farm_nn_softmax_rows(const struct farm_tensor *x, struct farm_tensor *y)
{
    if (x->rows != y->rows || x->cols != y->cols)
        return -EINVAL;
    size_t c = x->cols;
    for (size_t i = 0; i < x->rows; i++) {
        const float *a = x->data + i * c;
        float *b = y->data + i * c;
        float mx = -INFINITY;
        for (size_t j = 0; j < c; j++)
            if (a[j] > mx)
                mx = a[j];
        double sum = 0;
        for (size_t j = 0; j < c; j++) {
            b[j] = expf(a[j] - mx);
            sum += b[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < c; j++)
            b[j] *= inv;
    }
    return 0;
}

int farm_loss_softmax_ce(const struct farm_tensor *logits, const int32_t *labels, float grad_scale,
                         struct farm_tensor *dlogits, double *loss_sum, size_t *correct)
{
    size_t c = logits->cols;
    if (dlogits && (dlogits->rows != logits->rows || dlogits->cols != c))
        return -EINVAL;
    if (c == 0)
        return -EINVAL;
    for (size_t i = 0; i < logits->rows; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= c)
            return -EINVAL;
    double total = 0;
    size_t ok = 0;
    for (size_t i = 0; i < logits->rows; i++) {
        const float *a = logits->data + i * c;
        size_t best = 0;
        float mx = a[0];
        for (size_t j = 1; j < c; j++)
            if (a[j] > mx) {
                mx = a[j];
                best = j;
            }
        if ((int32_t)best == labels[i])
            ok++;
        double sum = 0;
        for (size_t j = 0; j < c; j++)
            sum += expf(a[j] - mx);
        double lse = (double)mx + log(sum);
        total += lse - (double)a[labels[i]];
        if (dlogits) {
            float *g = dlogits->data + i * c;
            float inv = (float)(1.0 / sum);
            for (size_t j = 0; j < c; j++)
                g[j] = expf(a[j] - mx) * inv;
            g[labels[i]] -= 1.0f;
            for (size_t j = 0; j < c; j++)
                g[j] *= grad_scale;
        }
    }
    if (loss_sum)
        *loss_sum = total;
    if (correct)
        *correct = ok;
    return 0;
}

int farm_loss_mse(const struct farm_tensor *pred, const struct farm_tensor *target,
                  float grad_scale, struct farm_tensor *dpred, double *loss_sum)
{
    if (pred->rows != target->rows || pred->cols != target->cols || pred->cols == 0)
        return -EINVAL;
    if (dpred && (dpred->rows != pred->rows || dpred->cols != pred->cols))
        return -EINVAL;
    size_t c = pred->cols;
    double total = 0;
    float k = 2.0f / (float)c * grad_scale;
    for (size_t i = 0; i < pred->rows; i++) {
        const float *p = pred->data + i * c;
        const float *t = target->data + i * c;
        double row = 0;
        for (size_t j = 0; j < c; j++) {
            double d = (double)p[j] - (double)t[j];
            row += d * d;
        }
        total += row / (double)c;
        if (dpred) {
            float *g = dpred->data + i * c;
            for (size_t j = 0; j < c; j++)
                g[j] = (p[j] - t[j]) * k;
        }
    }
    if (loss_sum)
        *loss_sum = total;
    return 0;
}

int farm_loss_parse(const char *name, enum farm_loss_kind *out)
{
    if (!strcmp(name, "softmax_cross_entropy") || !strcmp(name, "cross_entropy") ||
        !strcmp(name, "softmax_ce")) {
        *out = FARM_LOSS_SOFTMAX_CE;
        return 0;
    }
    if (!strcmp(name, "mse")) {
        *out = FARM_LOSS_MSE;
        return 0;
    }
    return -EINVAL;
}

const char *farm_loss_name(enum farm_loss_kind kind)
{
    return kind == FARM_LOSS_MSE ? "mse" : "softmax_cross_entropy";
}

double farm_flops_act(enum farm_act act, size_t elements)
{
    double per = 0;
    switch (act) {
    case FARM_ACT_NONE:
        per = 0;
        break;
    case FARM_ACT_RELU:
        per = 1;
        break;
    case FARM_ACT_TANH:
    case FARM_ACT_SIGMOID:
        per = 4;
        break;
    case FARM_ACT_GELU:
        per = 8;
        break;
    }
    return per * (double)elements;
}
