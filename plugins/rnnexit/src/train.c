/* Training (backward through executed nodes) and evaluation with latency,
 * accuracy and skip counters. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rnnexit-internal.h"

void farm_rx_train_opts_default(struct farm_rx_train_opts *o)
{
    *o = (struct farm_rx_train_opts){
        .epochs = 10,
        .batch = 32,
        .optimizer = 1,
        .lr = 0.01,
        .step_weight = 1.0,
        .mode = FARM_RX_CONDITIONS,
        .seed = 1,
        .clip = 5.0,
    };
}

static void clip_grads(struct farm_rx_net *net, double max_norm)
{
    double sq = 0;
    for (size_t i = 0; i < net->n_params; i++) {
        const struct farm_tensor *g = net->params[i].grad;
        size_t n = farm_tensor_size(g);
        for (size_t j = 0; j < n; j++)
            sq += (double)g->data[j] * g->data[j];
    }
    double norm = sqrt(sq);
    if (norm > max_norm)
        for (size_t i = 0; i < net->n_params; i++)
            farm_tensor_scale(net->params[i].grad, (float)(max_norm / norm));
}

int farm_rx_train(struct farm_rx_net *net, const struct farm_rx_data *d,
                  const struct farm_rx_train_opts *o, farm_rx_epoch_fn cb, void *arg,
                  double *final_loss, struct farm_err *err)
{
    const struct farm_rx_model *m = net->model;
    if ((size_t)m->input != d->dim)
        return farm_err_set(err, FARM_EBADDATA,
                            "%s: the model reads %d features per step, the data has %zu", m->file,
                            m->input, d->dim);
    if (m->loss == FARM_RX_LOSS_CE && !d->labels)
        return farm_err_set(err, FARM_EBADDATA, "%s: loss ce needs labelled data", m->file);
    if (m->loss == FARM_RX_LOSS_MSE && (!d->targets || d->tdim != (size_t)m->out_width))
        return farm_err_set(err, FARM_EBADDATA,
                            "%s: loss mse needs %d targets per object, the data has %zu", m->file,
                            m->out_width, d->targets ? d->tdim : 0);
    if (o->epochs < 0 || o->batch == 0 || !(o->lr > 0))
        return farm_err_set(err, FARM_EBADPARAM,
                            "rnnexit: bad training options (epochs %d, "
                            "batch %zu, lr %g)",
                            o->epochs, o->batch, o->lr);
    size_t bs = o->batch < d->n ? o->batch : d->n;
    struct farm_rx_exec *ex = NULL;
    struct farm_optim *opt = NULL;
    float *x = malloc(bs * d->steps * d->dim * sizeof *x);
    int32_t *lengths = malloc(bs * sizeof *lengths), *labels = malloc(bs * sizeof *labels);
    float *targets = malloc(bs * (d->tdim ? d->tdim : 1) * sizeof *targets);
    size_t *order = malloc(d->n * sizeof *order);
    int rc = 0;
    if (!x || !lengths || !labels || !targets || !order) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = farm_rx_exec_new(net, bs, d->steps, 1, &ex, err)))
        goto out;
    farm_rx_exec_set_gate_cost(ex, o->gate_cost);
    struct farm_optim_config cfg;
    farm_optim_config_default(&cfg, o->optimizer ? FARM_OPTIM_ADAM : FARM_OPTIM_SGD);
    cfg.lr = (float)o->lr;
    if ((rc = farm_optim_new(&cfg, net->params, net->n_params, &opt, err)))
        goto out;
    for (size_t i = 0; i < d->n; i++)
        order[i] = i;
    struct farm_rng rng;
    farm_rng_seed(&rng, o->seed);
    double epoch_loss = 0;
    for (int e = 0; e < o->epochs; e++) {
        farm_rng_shuffle(&rng, order, d->n);
        double sum = 0;
        size_t nb = 0;
        for (size_t first = 0; first + bs <= d->n; first += bs) {
            farm_rx_data_batch(d, order, first, bs, x, lengths, labels, targets);
            farm_rx_net_zero_grad(net);
            double loss = 0;
            if ((rc = farm_rx_exec_forward(ex, x, d->steps, bs, lengths, o->mode, err)) ||
                (rc = farm_rx_exec_backward(ex, d->labels ? labels : NULL,
                                            d->targets ? targets : NULL,
                                            d->labels ? o->step_weight : 0, &loss, err)))
                goto out;
            if (!isfinite(loss)) {
                rc = farm_err_set(err, FARM_ENUMERIC, "rnnexit: the loss diverged (epoch %d)",
                                  e + 1);
                goto out;
            }
            if (o->clip > 0)
                clip_grads(net, o->clip);
            farm_optim_step(opt);
            sum += loss;
            nb++;
        }
        epoch_loss = nb ? sum / (double)nb : 0;
        if (cb && cb(arg, e, epoch_loss))
            break;
    }
    if (final_loss)
        *final_loss = epoch_loss;
out:
    farm_optim_free(opt);
    farm_rx_exec_free(ex);
    free(x);
    free(lengths);
    free(labels);
    free(targets);
    free(order);
    return rc;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of sorted v[0..n), nearest rank. */
static double quantile(const double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t r = (size_t)ceil(q * (double)n);
    return v[r ? r - 1 : 0];
}

int farm_rx_evaluate(struct farm_rx_exec *ex, const struct farm_rx_data *d, int mode,
                     struct farm_rx_eval *out, struct farm_err *err)
{
    const struct farm_rx_model *m = ex->model;
    if ((size_t)m->input != d->dim)
        return farm_err_set(err, FARM_EBADDATA,
                            "%s: the model reads %d features per step, the data has %zu", m->file,
                            m->input, d->dim);
    if (m->loss == FARM_RX_LOSS_CE && !d->labels)
        return farm_err_set(err, FARM_EBADDATA, "%s: evaluation needs labels", m->file);
    if (m->loss == FARM_RX_LOSS_MSE && (!d->targets || d->tdim != (size_t)m->out_width))
        return farm_err_set(err, FARM_EBADDATA, "%s: evaluation needs %d targets per object",
                            m->file, m->out_width);
    size_t bs = ex->max_batch, nb = (d->n + bs - 1) / bs, W = (size_t)m->out_width;
    float *x = malloc(bs * d->steps * d->dim * sizeof *x);
    int32_t *lengths = malloc(bs * sizeof *lengths);
    double *lat = malloc((nb ? nb : 1) * sizeof *lat);
    int rc = 0;
    if (!x || !lengths || !lat) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    farm_rx_exec_reset_stats(ex);
    struct farm_rx_eval ev = {0};
    size_t correct = 0;
    double sq = 0;
    for (size_t bi = 0; bi < nb; bi++) {
        size_t first = bi * bs, cnt = d->n - first < bs ? d->n - first : bs;
        farm_rx_data_batch(d, NULL, first, cnt, x, lengths, NULL, NULL);
        double t0 = now_ms();
        if ((rc = farm_rx_exec_forward(ex, x, d->steps, cnt, lengths, mode, err)))
            goto out;
        lat[bi] = now_ms() - t0;
        ev.total_ms += lat[bi];
        const float *y = farm_rx_exec_output(ex);
        for (size_t b = 0; b < cnt; b++) {
            const float *row = y + b * W;
            if (m->loss == FARM_RX_LOSS_CE) {
                size_t best = 0;
                for (size_t j = 1; j < W; j++)
                    best = row[j] > row[best] ? j : best;
                correct += (int32_t)best == d->labels[first + b];
            } else {
                for (size_t j = 0; j < W; j++) {
                    double e = (double)row[j] - d->targets[(first + b) * W + j];
                    sq += e * e / (double)W;
                }
            }
        }
    }
    qsort(lat, nb, sizeof *lat, cmp_double);
    ev.lat_p50_ms = quantile(lat, nb, 0.50);
    ev.lat_p99_ms = quantile(lat, nb, 0.99);
    ev.batches = nb;
    if (m->loss == FARM_RX_LOSS_CE)
        ev.accuracy = (double)correct / (double)d->n;
    else
        ev.mse = sq / (double)d->n;
    farm_rx_exec_stats(ex, -1, -1, &ev.stats);
    *out = ev;
out:
    free(x);
    free(lengths);
    free(lat);
    return rc;
}
