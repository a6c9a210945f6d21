#include "farm/fedenc_agg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int farm_fedenc_rule_parse(const char *name, struct farm_err *err)
{
    if (name == NULL)
        return farm_err_set(err, FARM_EBADPARAM, "aggregator: missing name");
    if (strcmp(name, "fedavg") == 0)
        return FARM_FEDENC_FEDAVG;
    if (strcmp(name, "mean") == 0)
        return FARM_FEDENC_MEAN;
    if (strcmp(name, "median") == 0)
        return FARM_FEDENC_MEDIAN;
    if (strcmp(name, "trimmed_mean") == 0 || strcmp(name, "trimmed") == 0)
        return FARM_FEDENC_TRIMMED;
    return farm_err_set(err, FARM_EBADPARAM,
                        "aggregator: expected fedavg, mean, median or trimmed_mean, got \"%s\"",
                        name);
}

const char *farm_fedenc_rule_name(int rule)
{
    switch (rule) {
    case FARM_FEDENC_FEDAVG:
        return "fedavg";
    case FARM_FEDENC_MEAN:
        return "mean";
    case FARM_FEDENC_MEDIAN:
        return "median";
    case FARM_FEDENC_TRIMMED:
        return "trimmed_mean";
    default:
        return "?";
    }
}

int farm_fedenc_agg_init(struct farm_fedenc_agg *self, const struct farm_fedenc_agg_cfg *cfg,
                         size_t n, struct farm_err *err)
{
    if (farm_fedenc_rule_name(cfg->rule)[0] == '?')
        return farm_err_set(err, FARM_EBADPARAM, "aggregator: unknown rule %d", cfg->rule);
    FARM_RETURN_ERROR_IF(!(cfg->beta >= 0 && cfg->beta < 0.5), err, FARM_EBADPARAM,
                         "trim_beta: expected 0 <= beta < 0.5, got %g", cfg->beta);
    FARM_RETURN_ERROR_IF(!(cfg->momentum >= 0 && cfg->momentum < 1), err, FARM_EBADPARAM,
                         "server_momentum: expected 0 <= m < 1, got %g", cfg->momentum);
    FARM_RETURN_ERROR_IF(!(cfg->server_lr > 0 && isfinite(cfg->server_lr)), err, FARM_EBADPARAM,
                         "server_lr: expected a positive number, got %g", cfg->server_lr);
    FARM_RETURN_ERROR_IF(n == 0, err, FARM_EBADPARAM, "aggregator: empty model");
    memset(self, 0, sizeof *self);
    self->cfg = *cfg;
    self->n = n;
    self->scratch = malloc(n * sizeof(double));
    if (self->scratch == NULL)
        return farm_err_set(err, -ENOMEM, "aggregator: out of memory");
    if (cfg->momentum > 0) {
        self->velocity = calloc(n, sizeof(double));
        if (self->velocity == NULL) {
            free(self->scratch);
            self->scratch = NULL;
            return farm_err_set(err, -ENOMEM, "aggregator: out of memory");
        }
    }
    return 0;
}

void farm_fedenc_agg_release(struct farm_fedenc_agg *self)
{
    if (self == NULL)
        return;
    free(self->velocity);
    free(self->scratch);
    free(self->column);
    memset(self, 0, sizeof *self);
}

static int cmp_update_ptr(const void *a, const void *b)
{
    const struct farm_fedenc_update *x = *(const struct farm_fedenc_update *const *)a;
    const struct farm_fedenc_update *y = *(const struct farm_fedenc_update *const *)b;
    return (x->child_id > y->child_id) - (x->child_id < y->child_id);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Sorts k floats in place. Insertion sort for the small k a federation has,
 * qsort beyond; both give the same order for finite values. */
static void sort_floats(float *v, size_t k)
{
    if (k > 32) {
        qsort(v, k, sizeof *v, cmp_float);
        return;
    }
    for (size_t i = 1; i < k; i++) {
        float x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

int farm_fedenc_agg_apply(struct farm_fedenc_agg *self, float *global,
                          const struct farm_fedenc_update *ups, size_t k, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(k == 0, err, -EINVAL, "aggregate: no updates");
    const struct farm_fedenc_update **order = malloc(k * sizeof *order);
    if (order == NULL)
        return farm_err_set(err, -ENOMEM, "aggregate: out of memory");
    for (size_t i = 0; i < k; i++)
        order[i] = &ups[i];
    qsort(order, k, sizeof *order, cmp_update_ptr);
    for (size_t i = 1; i < k; i++) {
        if (order[i]->child_id == order[i - 1]->child_id) {
            uint32_t id = order[i]->child_id;
            free(order);
            return farm_err_set(err, -EINVAL, "aggregate: two updates from child %u", id);
        }
    }

    size_t n = self->n;
    double *a = self->scratch;
    int rule = self->cfg.rule;
    if (rule == FARM_FEDENC_FEDAVG || rule == FARM_FEDENC_MEAN) {
        double total = 0;
        for (size_t i = 0; i < k; i++)
            total += rule == FARM_FEDENC_FEDAVG ? (double)order[i]->samples : 1.0;
        if (!(total > 0)) {
            free(order);
            return farm_err_set(err, FARM_EBADDATA, "aggregate: total sample count is zero");
        }
        memset(a, 0, n * sizeof *a);
        for (size_t i = 0; i < k; i++) {
            double wgt = (rule == FARM_FEDENC_FEDAVG ? (double)order[i]->samples : 1.0) / total;
            const float *p = order[i]->params;
            for (size_t j = 0; j < n; j++)
                a[j] += wgt * (double)p[j];
        }
    } else {
        if (self->column_cap < k) {
            float *c = realloc(self->column, k * sizeof *c);
            if (c == NULL) {
                free(order);
                return farm_err_set(err, -ENOMEM, "aggregate: out of memory");
            }
            self->column = c;
            self->column_cap = k;
        }
        float *col = self->column;
        size_t cut = rule == FARM_FEDENC_TRIMMED ? (size_t)floor(self->cfg.beta * (double)k) : 0;
        if (2 * cut >= k)
            cut = (k - 1) / 2;
        for (size_t j = 0; j < n; j++) {
            for (size_t i = 0; i < k; i++)
                col[i] = order[i]->params[j];
            sort_floats(col, k);
            if (rule == FARM_FEDENC_MEDIAN) {
                a[j] = k % 2 ? (double)col[k / 2]
                             : 0.5 * ((double)col[k / 2 - 1] + (double)col[k / 2]);
            } else {
                double s = 0;
                for (size_t i = cut; i < k - cut; i++)
                    s += (double)col[i];
                a[j] = s / (double)(k - 2 * cut);
            }
        }
    }
    free(order);

    if (self->velocity == NULL && self->cfg.server_lr == 1.0) {
        for (size_t j = 0; j < n; j++)
            global[j] = (float)a[j];
        return 0;
    }
    double m = self->cfg.momentum, lr = self->cfg.server_lr;
    for (size_t j = 0; j < n; j++) {
        double delta = (double)global[j] - a[j];
        if (self->velocity) {
            self->velocity[j] = m * self->velocity[j] + delta;
            delta = self->velocity[j];
        }
        global[j] = (float)((double)global[j] - lr * delta);
    }
    return 0;
}

int farm_fedenc_check_finite(const float *v, size_t n, struct farm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return farm_err_set(err, FARM_EBADDATA, "params[%zu] is %s", i,
                                isnan(v[i]) ? "nan" : "inf");
    }
    return 0;
}

size_t farm_fedenc_tensor_numel(const struct farm_fedenc_tensor_spec *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static void shape_str(const struct farm_fedenc_tensor_spec *t, char *buf, size_t cap)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "[");
    for (int i = 0; i < t->ndim && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? "," : "",
                                (long long)t->shape[i]);
    if (off < cap)
        snprintf(buf + off, cap - off, "]");
}

int farm_fedenc_schema_check(const struct farm_fedenc_tensor_spec *want, size_t nwant,
                             const struct farm_fedenc_tensor_spec *got, size_t ngot,
                             struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(ngot != nwant, err, FARM_EBADDATA,
                         "update has %zu tensors, expected %zu", ngot, nwant);
    for (size_t i = 0; i < nwant; i++) {
        FARM_RETURN_ERROR_IF(strcmp(want[i].name, got[i].name) != 0, err, FARM_EBADDATA,
                             "tensor %zu is '%s', expected '%s'", i, got[i].name, want[i].name);
        int same = want[i].ndim == got[i].ndim;
        for (int d = 0; same && d < want[i].ndim; d++)
            same = want[i].shape[d] == got[i].shape[d];
        if (!same) {
            char a[96], b[96];
            shape_str(&got[i], a, sizeof a);
            shape_str(&want[i], b, sizeof b);
            return farm_err_set(err, FARM_EBADDATA, "tensor %zu '%s': shape %s, expected %s", i,
                                want[i].name, a, b);
        }
    }
    return 0;
}
