/* SGD with momentum and Adam over a list of parameters. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "farm/nn.h"

struct farm_optim {
    struct farm_optim_config cfg;
    size_t n;
    struct farm_nn_param *params;
    struct farm_tensor *m, *v; /* velocity (sgd: m only) / moments (adam) */
    uint64_t steps;
};

void farm_optim_config_default(struct farm_optim_config *cfg, enum farm_optim_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->lr = kind == FARM_OPTIM_ADAM ? 0.001f : 0.01f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
}

int farm_optim_parse(const char *name, enum farm_optim_kind *out)
{
    if (!strcmp(name, "sgd")) {
        *out = FARM_OPTIM_SGD;
        return 0;
    }
    if (!strcmp(name, "adam")) {
        *out = FARM_OPTIM_ADAM;
        return 0;
    }
    return -EINVAL;
}

int farm_optim_new(const struct farm_optim_config *cfg, const struct farm_nn_param *params, size_t n,
                   struct farm_optim **out, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!(cfg->lr > 0.0f) || !isfinite(cfg->lr), err, -EINVAL,
                         "optimizer: lr must be a positive number, got %g", (double)cfg->lr);
    FARM_RETURN_ERROR_IF(!(cfg->weight_decay >= 0.0f), err, -EINVAL,
                         "optimizer: weight_decay must be >= 0, got %g", (double)cfg->weight_decay);
    if (cfg->kind == FARM_OPTIM_SGD) {
        FARM_RETURN_ERROR_IF(!(cfg->momentum >= 0.0f && cfg->momentum < 1.0f), err, -EINVAL,
                             "optimizer: momentum must be in [0, 1), got %g",
                             (double)cfg->momentum);
    } else if (cfg->kind == FARM_OPTIM_ADAM) {
        FARM_RETURN_ERROR_IF(
            !(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f && cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f),
            err, -EINVAL, "optimizer: betas must be in [0, 1), got %g, %g", (double)cfg->beta1,
            (double)cfg->beta2);
        FARM_RETURN_ERROR_IF(!(cfg->eps > 0.0f), err, -EINVAL, "optimizer: eps must be > 0, got %g",
                             (double)cfg->eps);
    } else {
        return farm_err_set(err, -EINVAL, "optimizer: unknown kind %d", (int)cfg->kind);
    }
    for (size_t i = 0; i < n; i++)
        FARM_RETURN_ERROR_IF(
            !params[i].grad || !params[i].value || params[i].grad->rows != params[i].value->rows ||
                params[i].grad->cols != params[i].value->cols,
            err, -EINVAL, "optimizer: parameter %s has no gradient of its shape", params[i].name);
    struct farm_optim *o = calloc(1, sizeof *o);
    if (!o)
        return farm_err_set(err, -ENOMEM, "optimizer: out of memory");
    o->cfg = *cfg;
    o->n = n;
    o->params = calloc(n ? n : 1, sizeof *o->params);
    o->m = calloc(n ? n : 1, sizeof *o->m);
    o->v = calloc(n ? n : 1, sizeof *o->v);
    int rc = (o->params && o->m && o->v) ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        o->params[i] = params[i];
        const struct farm_tensor *t = params[i].value;
        rc = farm_tensor_init(&o->m[i], t->rows, t->cols);
        if (rc == 0 && cfg->kind == FARM_OPTIM_ADAM)
            rc = farm_tensor_init(&o->v[i], t->rows, t->cols);
    }
    if (rc < 0) {
        farm_optim_free(o);
        return farm_err_set(err, rc, "optimizer: out of memory");
    }
    *out = o;
    return 0;
}

static void sgd_step(const struct farm_optim_config *c, float *restrict p, const float *restrict g,
                     float *restrict v, size_t n)
{
    float lr = c->lr, mu = c->momentum, wd = c->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        v[i] = mu * v[i] + gi;
        p[i] -= lr * v[i];
    }
}

static void adam_step(const struct farm_optim_config *c, uint64_t t, float *restrict p,
                      const float *restrict g, float *restrict m, float *restrict v, size_t n)
{
    float b1 = c->beta1, b2 = c->beta2, wd = c->weight_decay, eps = c->eps;
    float bc1 = (float)(1.0 - pow((double)b1, (double)t));
    float bc2 = (float)(1.0 - pow((double)b2, (double)t));
    float lr = c->lr;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] / bc1;
        float vh = v[i] / bc2;
        p[i] -= lr * mh / (sqrtf(vh) + eps);
    }
}

void farm_optim_step(struct farm_optim *o)
{
    o->steps++;
    for (size_t k = 0; k < o->n; k++) {
        struct farm_tensor *p = o->params[k].value;
        const struct farm_tensor *g = o->params[k].grad;
        size_t n = farm_tensor_size(p);
        if (o->cfg.kind == FARM_OPTIM_SGD)
            sgd_step(&o->cfg, p->data, g->data, o->m[k].data, n);
        else
            adam_step(&o->cfg, o->steps, p->data, g->data, o->m[k].data, o->v[k].data, n);
    }
}

uint64_t farm_optim_steps(const struct farm_optim *o)
{
    return o->steps;
}

void farm_optim_free(struct farm_optim *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        if (o->m)
            farm_tensor_release(&o->m[i]);
        if (o->v)
            farm_tensor_release(&o->v[i]);
    }
    free(o->params);
    free(o->m);
    free(o->v);
    free(o);
}
