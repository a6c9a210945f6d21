/* Backward through time over the nodes that actually ran (see
 * farm_rx_exec_backward in rnnexit.h).
 *
 * Every compute node keeps a carry G (and Gc for an LSTM's cell): the
 * gradient reaching its value at step t from step t+1. Walking steps
 * backwards, layers top-down and each unit's nodes in reverse, a node adds
 * the chain gradient to its carry; the rows that ran at step t go through
 * nn's backward of the node on exactly those rows (gathered, as in the
 * forward); the rows that were skipped follow the pass-on rule instead:
 * state hands the gradient to the previous step's value, input to the
 * node's input, zeros drops it. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rnnexit-internal.h"

static enum farm_act act_of(int fn)
{
    return fn == FARM_RX_FN_RELU   ? FARM_ACT_RELU
           : fn == FARM_RX_FN_TANH ? FARM_ACT_TANH
                                   : FARM_ACT_SIGMOID;
}

static void gather(float *dst, const float *src, const size_t *idx, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++)
        memcpy(dst + i * w, src + idx[i] * w, w * sizeof(float));
}

static void scatter(float *dst, const float *src, const size_t *idx, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++)
        memcpy(dst + idx[i] * w, src + i * w, w * sizeof(float));
}

struct bctx {
    struct farm_rx_exec *ex;
    const int32_t *labels;
    const float *targets;
    double step_w; /* step_weight / executed head rows */
    double loss;
    size_t B, T;
};

/* The rows that ran node r at step t: all (returns NULL) or idx[0..*k). */
static const size_t *ran(const struct bctx *c, const struct rx_node_rt *r, size_t t, size_t *k)
{
    *k = (size_t)r->h_n[t];
    return *k == c->B ? NULL : r->h_idx + t * c->ex->max_batch;
}

static void mark_ran(struct farm_rx_exec *ex, const size_t *idx, size_t k, size_t B)
{
    memset(ex->mark, idx ? 0 : 1, B);
    if (idx)
        for (size_t i = 0; i < k; i++)
            ex->mark[idx[i]] = 1;
}

/* dense and act: gc (B x width) -> new chain gradient in *gcn (B x in). */
static void back_plain(struct bctx *c, struct rx_node_rt *r, size_t t, const float *gc, float *gcn,
                       int is_out)
{
    struct farm_rx_exec *ex = c->ex;
    size_t B = c->B, w = r->width, iw = r->in, k;
    const size_t *idx = ran(c, r, t, &k);
    float *gy = ex->gy;
    for (size_t j = 0; j < B * w; j++)
        gy[j] = gc[j] + r->G[j];
    if (is_out && t + 1 == c->T && c->targets) {
        /* MSE on the final value, mean over the batch (nn's convention). */
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < w; j++) {
                float d = r->y[b * w + j] - c->targets[b * w + j];
                gy[b * w + j] += 2.0f * d / (float)w / (float)B;
            }
    }
    memset(gcn, 0, B * iw * sizeof(float));
    if (k > 0) {
        struct farm_tensor x, y, dy, dx;
        const float *gyk = gy;
        float *dxk = gcn;
        if (idx) {
            gather(ex->gk, gy, idx, k, w);
            gyk = ex->gk;
            dxk = ex->gk2;
        }
        farm__rx_wrap(&x, r->h_in + t * ex->max_batch * iw, k, iw);
        farm__rx_wrap(&dy, gyk, k, w);
        farm__rx_wrap(&dx, dxk, k, iw);
        if (r->d->type == FARM_RX_DENSE) {
            RX_CHECK(ex, farm_dense_backward(&r->p->dense, &x, &dy, &dx));
        } else {
            farm__rx_wrap(&y, r->h_out + t * ex->max_batch * w, k, w);
            RX_CHECK(ex, farm_act_backward(act_of(r->d->fn), &x, &y, &dy, &dx));
        }
        if (idx)
            scatter(gcn, dxk, idx, k, iw);
    }
    mark_ran(ex, idx, k, B);
    for (size_t b = 0; b < B; b++) {
        float *G = r->G + b * w;
        if (ex->mark[b] || r->d->pass == FARM_RX_PASS_ZEROS) {
            memset(G, 0, w * sizeof(float));
        } else if (r->d->pass == FARM_RX_PASS_STATE) {
            memcpy(G, gy + b * w, w * sizeof(float));
        } else { /* input */
            memcpy(gcn + b * iw, gy + b * w, w * sizeof(float));
            memset(G, 0, w * sizeof(float));
        }
    }
}

/* A head: the chain gradient gc (B x in) passes through and gets the
 * classifier's input gradient added. */
static void back_head(struct bctx *c, struct rx_node_rt *r, size_t t, float *gc, int is_out)
{
    struct farm_rx_exec *ex = c->ex;
    size_t B = c->B, K = r->width, iw = r->in, k;
    const size_t *idx = ran(c, r, t, &k);
    int final_ce = is_out && t + 1 == c->T;
    mark_ran(ex, idx, k, B);
    if (final_ce) {
        /* Rows that skipped the head at the last step output a value
         * computed earlier: their loss gradient travels back through the
         * carry, as dL/dp. */
        for (size_t b = 0; b < B; b++)
            if (!ex->mark[b]) {
                float p = r->y[b * K + (size_t)c->labels[b]];
                r->G[b * K + (size_t)c->labels[b]] += -1.0f / (p > 1e-30f ? p : 1e-30f) / (float)B;
            }
    }
    if (k > 0) {
        const float *P = r->h_out + t * ex->max_batch * K;
        float *dz = ex->gk, *dp = ex->gk3;
        if (idx)
            gather(dp, r->G, idx, k, K);
        else
            memcpy(dp, r->G, k * K * sizeof(float));
        for (size_t i = 0; i < k; i++) {
            const float *p = P + i * K;
            float *z = dz + i * K;
            const float *g = dp + i * K;
            double dot = 0;
            for (size_t j = 0; j < K; j++)
                dot += (double)g[j] * p[j];
            for (size_t j = 0; j < K; j++)
                z[j] = p[j] * (g[j] - (float)dot);
            size_t b = idx ? idx[i] : i;
            int32_t y = c->labels ? c->labels[b] : -1;
            if (final_ce)
                for (size_t j = 0; j < K; j++)
                    z[j] += (p[j] - (j == (size_t)y ? 1.0f : 0.0f)) / (float)B;
            if (c->step_w > 0) {
                for (size_t j = 0; j < K; j++)
                    z[j] += (float)c->step_w * (p[j] - (j == (size_t)y ? 1.0f : 0.0f));
                c->loss += c->step_w * -log(fmax(p[y], 1e-30));
            }
        }
        struct farm_tensor x, dy, dx;
        farm__rx_wrap(&x, r->h_in + t * ex->max_batch * iw, k, iw);
        farm__rx_wrap(&dy, dz, k, K);
        farm__rx_wrap(&dx, ex->gk2, k, iw);
        RX_CHECK(ex, farm_dense_backward(&r->p->dense, &x, &dy, &dx));
        for (size_t i = 0; i < k; i++) {
            float *dst = gc + (idx ? idx[i] : i) * iw;
            const float *src = ex->gk2 + i * iw;
            for (size_t j = 0; j < iw; j++)
                dst[j] += src[j];
        }
    }
    for (size_t b = 0; b < B; b++)
        if (ex->mark[b] || r->d->pass != FARM_RX_PASS_STATE)
            memset(r->G + b * K, 0, K * sizeof(float));
}

/* gru and lstm. */
static void back_cell(struct bctx *c, struct rx_node_rt *r, size_t t, const float *gc, float *gcn,
                      int is_out)
{
    struct farm_rx_exec *ex = c->ex;
    size_t B = c->B, H = r->width, iw = r->in, k;
    const size_t *idx = ran(c, r, t, &k);
    int lstm = r->d->type == FARM_RX_LSTM;
    float *gy = ex->gy;
    for (size_t j = 0; j < B * H; j++)
        gy[j] = gc[j] + r->G[j];
    if (is_out && t + 1 == c->T && c->targets)
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < H; j++) {
                float d = r->y[b * H + j] - c->targets[b * H + j];
                gy[b * H + j] += 2.0f * d / (float)H / (float)B;
            }
    memset(gcn, 0, B * iw * sizeof(float));
    /* Compact gradients of the rows that ran: dh_next in gk, dc_next in cx,
     * dx out in gk2, dh_prev out in gk3, dc_prev out in co. */
    if (k > 0) {
        struct farm_tensor dh, dcn, dx, dhp, dcp;
        if (idx) {
            gather(ex->gk, gy, idx, k, H);
            if (lstm)
                gather(ex->cx, r->Gc, idx, k, H);
        } else {
            memcpy(ex->gk, gy, B * H * sizeof(float));
            if (lstm)
                memcpy(ex->cx, r->Gc, B * H * sizeof(float));
        }
        farm__rx_wrap(&dh, ex->gk, k, H);
        farm__rx_wrap(&dx, ex->gk2, k, iw);
        farm__rx_wrap(&dhp, ex->gk3, k, H);
        if (lstm) {
            farm__rx_wrap(&dcn, ex->cx, k, H);
            farm__rx_wrap(&dcp, ex->co, k, H);
            RX_CHECK(ex, farm_lstm_backward(&r->p->lstm, &r->lc[t], &dh, &dcn, &dx, &dhp, &dcp));
        } else {
            RX_CHECK(ex, farm_gru_backward(&r->p->gru, &r->gc[t], &dh, &dx, &dhp));
        }
    }
    mark_ran(ex, idx, k, B);
    /* For a gate reading this cell: dL/dh' . (h' - h) per row that ran. */
    memset(r->gdot, 0, B * sizeof(float));
    for (size_t i = 0; i < k; i++) {
        size_t b = idx ? idx[i] : i;
        double dot = 0;
        const float *gyr = gy + b * H;
        if (lstm) {
            const struct farm_lstm_cache *lc = &r->lc[t];
            for (size_t j = 0; j < H; j++) {
                size_t q = i * H + j;
                dot += (double)gyr[j] * (lc->o.data[q] * lc->tc.data[q] - lc->h.data[q]);
            }
        } else {
            const struct farm_gru_cache *cg = &r->gc[t];
            for (size_t j = 0; j < H; j++) {
                size_t q = i * H + j;
                float hn = (1.0f - cg->z.data[q]) * cg->n.data[q] + cg->z.data[q] * cg->h.data[q];
                dot += (double)gyr[j] * (hn - cg->h.data[q]);
            }
        }
        r->gdot[b] = (float)dot;
    }
    /* New carries: the rows that ran get dh_prev (dc_prev); the others
     * follow their pass-on rule. */
    size_t i = 0;
    for (size_t b = 0; b < B; b++) {
        float *G = r->G + b * H, *Gc = lstm ? r->Gc + b * H : NULL;
        if (ex->mark[b]) {
            memcpy(gcn + b * iw, ex->gk2 + i * iw, iw * sizeof(float));
            memcpy(G, ex->gk3 + i * H, H * sizeof(float));
            if (lstm)
                memcpy(Gc, ex->co + i * H, H * sizeof(float));
            i++;
        } else if (r->d->pass == FARM_RX_PASS_STATE) {
            memcpy(G, gy + b * H, H * sizeof(float));
        } else if (r->d->pass == FARM_RX_PASS_INPUT) {
            memcpy(gcn + b * iw, gy + b * H, H * sizeof(float));
            memset(G, 0, H * sizeof(float));
        } else {
            memset(G, 0, H * sizeof(float));
            if (lstm)
                memset(Gc, 0, H * sizeof(float));
        }
    }
}

/* A gate start at step t: straight-through gradient into the gate's dense
 * (see farm_rx_exec_set_gate_cost). `cell` is the named cell when it lies
 * inside the gate's region (its gdot holds step t), else NULL. */
static void back_gate(struct bctx *c, struct rx_node_rt *s, const struct rx_node_rt *cell, size_t t,
                      double cost_w)
{
    struct farm_rx_exec *ex = c->ex;
    size_t n = (size_t)s->gh_n[t], B = ex->max_batch, hw = s->p->dense.in;
    if (n == 0)
        return;
    float thr = (float)s->d->threshold;
    float *dpre = ex->gk;
    for (size_t i = 0; i < n; i++) {
        size_t b = s->gh_idx[t * B + i];
        float g = s->gh_val[t * B + i], U = s->gh_u[t * B + i];
        double du = (double)cost_w;
        if (cell && U > thr)
            du += cell->gdot[b];
        c->loss += cost_w * U;
        /* U does not depend on the gate at step 0 (it is 1 there). */
        dpre[i] = t == 0 ? 0.0f : (float)(du * g * (1.0f - g));
    }
    struct farm_tensor x, dy;
    farm__rx_wrap(&x, s->gh_in + t * B * hw, n, hw);
    farm__rx_wrap(&dy, dpre, n, 1);
    RX_CHECK(ex, farm_dense_backward(&s->p->dense, &x, &dy, NULL));
}

int farm_rx_exec_backward(struct farm_rx_exec *ex, const int32_t *labels, const float *targets,
                          double step_weight, double *loss, struct farm_err *err)
{
    const struct farm_rx_model *m = ex->model;
    if (!ex->train || ex->batch == 0 || ex->mode == FARM_RX_PLAIN)
        return farm_err_set(err, -EINVAL,
                            "rnnexit: backward needs a forward on a training "
                            "executor first");
    if (m->loss == FARM_RX_LOSS_CE && !labels)
        return farm_err_set(err, -EINVAL, "rnnexit: loss ce needs labels");
    if (m->loss == FARM_RX_LOSS_MSE && !targets)
        return farm_err_set(err, -EINVAL, "rnnexit: loss mse needs targets");
    if (step_weight > 0 && !labels)
        return farm_err_set(err, -EINVAL, "rnnexit: per-step head losses need labels");
    size_t B = ex->batch, T = ex->steps;
    ex->fail = 0;
    struct bctx c = {.ex = ex, .labels = labels, .B = B, .T = T};
    c.targets = m->loss == FARM_RX_LOSS_MSE ? targets : NULL;
    const struct rx_node_rt *on = &ex->u[m->out_unit].n[m->out_node];
    if (labels) {
        size_t classes = 0;
        for (int u = 0; u < m->n_units; u++)
            for (int i = 0; i < m->units[u].n_nodes; i++)
                if (m->units[u].nodes[i].type == FARM_RX_HEAD)
                    classes = classes > (size_t)m->units[u].nodes[i].classes
                                  ? classes
                                  : (size_t)m->units[u].nodes[i].classes;
        for (size_t b = 0; b < B; b++)
            if (labels[b] < 0 || (size_t)labels[b] >= classes)
                return farm_err_set(err, -EINVAL,
                                    "rnnexit: label %d of object %zu is outside "
                                    "0..%zu",
                                    (int)labels[b], b, classes ? classes - 1 : 0);
    }
    /* The final-step loss, from the output node's value after the last
     * step (frozen at an earlier step for rows that skipped it). */
    if (m->loss == FARM_RX_LOSS_CE) {
        for (size_t b = 0; b < B; b++)
            c.loss += -log(fmax(on->y[b * on->width + (size_t)labels[b]], 1e-30)) / (double)B;
    } else {
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < on->width; j++) {
                double d = (double)on->y[b * on->width + j] - targets[b * on->width + j];
                c.loss += d * d / (double)on->width / (double)B;
            }
    }
    if (step_weight > 0) {
        uint64_t n = 0;
        for (int u = 0; u < m->n_units; u++)
            for (int i = 0; i < m->units[u].n_nodes; i++)
                if (m->units[u].nodes[i].type == FARM_RX_HEAD)
                    for (size_t t = 0; t < T; t++)
                        n += (uint64_t)ex->u[u].n[i].h_n[t];
        c.step_w = n ? step_weight / (double)n : 0;
    }
    /* The gate budget: cost x the mean gate value over evaluated pairs. */
    double gate_w = 0;
    if (ex->gate_cost > 0) {
        uint64_t n = 0;
        for (int u = 0; u < m->n_units; u++)
            for (int i = 0; i < m->units[u].n_nodes; i++)
                if (ex->u[u].n[i].gh_n)
                    for (size_t t = 0; t < T; t++)
                        n += (uint64_t)ex->u[u].n[i].gh_n[t];
        gate_w = n ? ex->gate_cost / (double)n : 0;
    }
    for (int u = 0; u < m->n_units; u++)
        for (int i = 0; i < m->units[u].n_nodes; i++) {
            struct rx_node_rt *r = &ex->u[u].n[i];
            if (r->G)
                memset(r->G, 0, B * r->width * sizeof(float));
            if (r->Gc)
                memset(r->Gc, 0, B * r->width * sizeof(float));
        }
    for (size_t t = T; t-- > 0;) {
        for (int l = m->n_layers - 1; l >= 0; l--) {
            if (l > 0)
                memset(ex->gl[l - 1], 0, B * (size_t)m->layer_width[l - 1] * sizeof(float));
            for (int u = m->layer_first[l]; u < m->layer_first[l + 1]; u++) {
                const struct farm_rx_unit *unit = &m->units[u];
                size_t lw = (size_t)m->layer_width[l], uw = (size_t)unit->out;
                float *gc = ex->gc, *gcn = ex->gc2;
                /* The gradient reaching this unit's output from the layer
                 * above (zero for the top layer). */
                if (l + 1 < m->n_layers) {
                    for (size_t b = 0; b < B; b++)
                        memcpy(gc + b * uw, ex->gl[l] + b * lw + (size_t)unit->offset,
                               uw * sizeof(float));
                } else {
                    memset(gc, 0, B * uw * sizeof(float));
                }
                for (int i = unit->n_nodes - 1; i >= 0; i--) {
                    struct rx_node_rt *r = &ex->u[u].n[i];
                    int is_out = u == m->out_unit && i == m->out_node;
                    switch (r->d->type) {
                    case FARM_RX_DENSE:
                    case FARM_RX_ACT:
                        back_plain(&c, r, t, gc, gcn, is_out);
                        break;
                    case FARM_RX_GRU:
                    case FARM_RX_LSTM:
                        back_cell(&c, r, t, gc, gcn, is_out);
                        break;
                    case FARM_RX_HEAD:
                        back_head(&c, r, t, gc, is_out);
                        continue;
                    case FARM_RX_START:
                        if (r->gh_n) {
                            int k = r->d->ref, inside = k > i && k < r->d->match;
                            back_gate(&c, r, inside ? &ex->u[u].n[k] : NULL, t, gate_w);
                        }
                        continue;
                    default:
                        continue;
                    }
                    float *s = gc;
                    gc = gcn;
                    gcn = s;
                }
                if (l > 0) {
                    float *dst = ex->gl[l - 1];
                    for (size_t j = 0; j < B * (size_t)unit->in; j++)
                        dst[j] += gc[j];
                }
            }
        }
    }
    if (ex->fail)
        return farm_err_set(err, ex->fail, "rnnexit: a node failed during the backward: %s",
                            farm_strerror(ex->fail));
    if (loss)
        *loss = c.loss;
    return 0;
}
