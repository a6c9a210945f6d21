/* The skipping executor and the plain unrolled reference (see rnnexit.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rnnexit-internal.h"

static float *falloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

static enum farm_act act_of(int fn)
{
    return fn == FARM_RX_FN_RELU   ? FARM_ACT_RELU
           : fn == FARM_RX_FN_TANH ? FARM_ACT_TANH
                                   : FARM_ACT_SIGMOID;
}

static void release_node(struct rx_node_rt *r, size_t steps)
{
    free(r->y);
    free(r->y2);
    free(r->c);
    free(r->c2);
    free(r->delta);
    free(r->idx);
    free(r->gate);
    free(r->h_n);
    free(r->h_idx);
    free(r->h_in);
    free(r->h_out);
    if (r->gc) {
        for (size_t t = 0; t < steps; t++)
            farm_gru_cache_release(&r->gc[t]);
        free(r->gc);
    }
    if (r->lc) {
        for (size_t t = 0; t < steps; t++)
            farm_lstm_cache_release(&r->lc[t]);
        free(r->lc);
    }
    free(r->G);
    free(r->Gc);
    free(r->gdot);
    free(r->gh_n);
    free(r->gh_idx);
    free(r->gh_in);
    free(r->gh_val);
    free(r->gh_u);
    free(r->acc);
    free(r->ranp);
    free(r->pre);
    free(r->pre_off);
}

void farm_rx_exec_free(struct farm_rx_exec *ex)
{
    if (!ex)
        return;
    const struct farm_rx_model *m = ex->model;
    if (ex->u) {
        for (int u = 0; u < m->n_units; u++) {
            if (!ex->u[u].n)
                continue;
            for (int i = 0; i < m->units[u].n_nodes; i++)
                release_node(&ex->u[u].n[i], ex->train ? ex->max_steps : 0);
            free(ex->u[u].n);
        }
        free(ex->u);
    }
    if (ex->layer_buf)
        for (int l = 0; l < m->n_layers; l++)
            free(ex->layer_buf[l]);
    if (ex->gl)
        for (int l = 0; l < m->n_layers; l++)
            free(ex->gl[l]);
    free(ex->gl);
    free(ex->layer_buf);
    free(ex->layer_out);
    free(ex->cx);
    free(ex->ch);
    free(ex->cc);
    free(ex->co);
    free(ex->co2);
    free(ex->tmp);
    free(ex->gate);
    free(ex->gr);
    free(ex->gz);
    free(ex->gn);
    free(ex->ghn);
    free(ex->gtc);
    free(ex->mark);
    free(ex->skipcnt);
    free(ex->lengths);
    free(ex->seen);
    free(ex->active);
    free(ex->gy);
    free(ex->gc);
    free(ex->gc2);
    free(ex->gk);
    free(ex->gk2);
    free(ex->gk3);
    free(ex);
}

static int init_node(struct farm_rx_exec *ex, const struct farm_rx_unit *unit, int i,
                     struct rx_node_rt *r)
{
    const struct farm_rx_node *n = &unit->nodes[i];
    size_t B = ex->max_batch, T = ex->max_steps;
    r->d = n;
    r->in = (size_t)n->in;
    r->width = (size_t)(n->type == FARM_RX_HEAD ? n->classes : n->out);
    if (n->type == FARM_RX_START) {
        r->idx = calloc(B, sizeof *r->idx);
        if (!r->idx)
            return -ENOMEM;
        if (n->cond == FARM_RX_COND_GATE &&
            (!(r->gate = falloc(B)) || !(r->acc = falloc(B)) || !(r->ranp = calloc(B, 1))))
            return -ENOMEM;
        if (n->cond == FARM_RX_COND_GATE && ex->train) {
            size_t hw = (size_t)unit->nodes[n->ref].out;
            if (!(r->gh_n = calloc(T, sizeof *r->gh_n)) ||
                !(r->gh_idx = calloc(T * B, sizeof *r->gh_idx)) ||
                !(r->gh_in = falloc(T * B * hw)) || !(r->gh_val = falloc(T * B)) ||
                !(r->gh_u = falloc(T * B)))
                return -ENOMEM;
        }
        if (n->cond == FARM_RX_COND_CONVERGED)
            ex->u[unit - ex->model->units].n[n->ref].need_delta = 1;
        return 0;
    }
    if (!farm_rx_node_computes(n->type))
        return 0;
    r->flops = farm_rx_node_flops(ex->model, (int)(unit - ex->model->units), i);
    if (!(r->y = falloc(B * r->width)) || !(r->delta = falloc(B)))
        return -ENOMEM;
    if ((n->type == FARM_RX_GRU || n->type == FARM_RX_LSTM) && !(r->y2 = falloc(B * r->width)))
        return -ENOMEM;
    if (n->type == FARM_RX_LSTM &&
        (!(r->c = falloc(B * r->width)) || !(r->c2 = falloc(B * r->width))))
        return -ENOMEM;
    if (!ex->train)
        return 0;
    r->h_n = calloc(T, sizeof *r->h_n);
    r->h_idx = calloc(T * B, sizeof *r->h_idx);
    r->G = falloc(B * r->width);
    r->gdot = falloc(B);
    if (!r->h_n || !r->h_idx || !r->G || !r->gdot)
        return -ENOMEM;
    int rc = 0;
    switch (n->type) {
    case FARM_RX_DENSE:
        if (!(r->h_in = falloc(T * B * r->in)))
            return -ENOMEM;
        break;
    case FARM_RX_ACT:
    case FARM_RX_HEAD:
        if (!(r->h_in = falloc(T * B * r->in)) || !(r->h_out = falloc(T * B * r->width)))
            return -ENOMEM;
        break;
    case FARM_RX_GRU:
        if (!(r->gc = calloc(T, sizeof *r->gc)))
            return -ENOMEM;
        for (size_t t = 0; t < T && !rc; t++)
            rc = farm_gru_cache_init(&r->gc[t], &r->p->gru, B);
        break;
    case FARM_RX_LSTM:
        if (!(r->lc = calloc(T, sizeof *r->lc)) || !(r->Gc = falloc(B * r->width)))
            return -ENOMEM;
        for (size_t t = 0; t < T && !rc; t++)
            rc = farm_lstm_cache_init(&r->lc[t], &r->p->lstm, B);
        break;
    default:
        break;
    }
    return rc;
}

int farm_rx_exec_new(struct farm_rx_net *net, size_t max_batch, size_t max_steps, int train,
                     struct farm_rx_exec **out, struct farm_err *err)
{
    const struct farm_rx_model *m = net->model;
    if (max_batch == 0 || max_batch > (1u << 20))
        return farm_err_set(err, -EINVAL, "rnnexit: batch size %zu out of range 1..%u", max_batch,
                            1u << 20);
    if (train && (max_steps == 0 || max_steps > 100000))
        return farm_err_set(err, -EINVAL, "rnnexit: max steps %zu out of range 1..100000",
                            max_steps);
    struct farm_rx_exec *ex = calloc(1, sizeof *ex);
    if (!ex)
        return farm_err_set(err, -ENOMEM, "out of memory");
    ex->net = net;
    ex->model = m;
    ex->max_batch = max_batch;
    ex->max_steps = train ? max_steps : 0;
    ex->train = train;
    size_t maxw = (size_t)m->input;
    for (int u = 0; u < m->n_units; u++)
        for (int i = 0; i < m->units[u].n_nodes; i++) {
            const struct farm_rx_node *n = &m->units[u].nodes[i];
            size_t w = (size_t)(n->in > n->out ? n->in : n->out);
            if (n->type == FARM_RX_HEAD && (size_t)n->classes > w)
                w = (size_t)n->classes;
            maxw = w > maxw ? w : maxw;
        }
    for (int l = 0; l < m->n_layers; l++)
        maxw = (size_t)m->layer_width[l] > maxw ? (size_t)m->layer_width[l] : maxw;
    ex->maxw = maxw;
    size_t B = max_batch;
    size_t nu = m->n_units > 0 ? (size_t)m->n_units : 1;
    size_t nl = m->n_layers > 0 ? (size_t)m->n_layers : 1;
    int rc = 0;
    ex->u = calloc(nu, sizeof *ex->u);
    ex->layer_buf = calloc(nl, sizeof *ex->layer_buf);
    ex->layer_out = calloc(nl, sizeof *ex->layer_out);
    ex->gl = calloc(nl, sizeof *ex->gl);
    if (!ex->u || !ex->layer_buf || !ex->layer_out || !ex->gl || !(ex->cx = falloc(B * maxw)) ||
        !(ex->ch = falloc(B * maxw)) || !(ex->cc = falloc(B * maxw)) ||
        !(ex->co = falloc(B * maxw)) || !(ex->co2 = falloc(B * maxw)) ||
        !(ex->tmp = falloc(B * maxw)) || !(ex->mark = calloc(B, 1)) ||
        !(ex->gate = falloc(B * 6 * maxw)) || !(ex->gr = falloc(B * maxw)) ||
        !(ex->gz = falloc(B * maxw)) || !(ex->gn = falloc(B * maxw)) ||
        !(ex->ghn = falloc(B * maxw)) || !(ex->gtc = falloc(B * maxw)) ||
        !(ex->skipcnt = calloc(B, sizeof *ex->skipcnt)) ||
        !(ex->lengths = calloc(B, sizeof *ex->lengths)))
        rc = -ENOMEM;
    for (int l = 0; l < m->n_layers && !rc; l++) {
        size_t w = (size_t)m->layer_width[l];
        if (m->layer_first[l + 1] - m->layer_first[l] > 1 && !(ex->layer_buf[l] = falloc(B * w)))
            rc = -ENOMEM;
        if (train && !rc && !(ex->gl[l] = falloc(B * w)))
            rc = -ENOMEM;
    }
    if (train && !rc &&
        (!(ex->gy = falloc(B * maxw)) || !(ex->gc = falloc(B * maxw)) ||
         !(ex->gc2 = falloc(B * maxw)) || !(ex->gk = falloc(B * maxw)) ||
         !(ex->gk2 = falloc(B * maxw)) || !(ex->gk3 = falloc(B * maxw))))
        rc = -ENOMEM;
    /* Nodes first get their parameters, then buffers (a converged start
     * marks the cell it reads, which may come later in the unit). */
    for (int u = 0; u < m->n_units && !rc; u++) {
        ex->u[u].n = calloc((size_t)m->units[u].n_nodes, sizeof *ex->u[u].n);
        if (!ex->u[u].n) {
            rc = -ENOMEM;
            break;
        }
        for (int i = 0; i < m->units[u].n_nodes; i++)
            ex->u[u].n[i].p = &net->p[u][i];
    }
    for (int u = 0; u < m->n_units && !rc; u++)
        for (int i = 0; i < m->units[u].n_nodes && !rc; i++)
            rc = init_node(ex, &m->units[u], i, &ex->u[u].n[i]);
    /* Cells whose input projection can be made for all steps at once: in
     * layer 0, no compute node before them (they read the model input), and
     * only `length` starts around them (which rows run is known up front). */
    for (int u = 0; u < m->layer_first[1] && !rc; u++) {
        const struct farm_rx_unit *unit = &m->units[u];
        for (int i = 0; i < unit->n_nodes; i++) {
            const struct farm_rx_node *n = &unit->nodes[i];
            if (farm_rx_node_computes(n->type) && n->type != FARM_RX_GRU && n->type != FARM_RX_LSTM)
                break;
            if (n->type != FARM_RX_GRU && n->type != FARM_RX_LSTM)
                continue;
            int ok = 1;
            for (int a = n->parent; a >= 0; a = unit->nodes[a].parent)
                ok &= unit->nodes[a].cond == FARM_RX_COND_LENGTH;
            ex->u[u].n[i].can_pre = ok;
            break;
        }
    }
    if (rc) {
        farm_rx_exec_free(ex);
        return farm_err_set(err, rc, "rnnexit: cannot allocate the executor: %s",
                            farm_strerror(rc));
    }
    *out = ex;
    return 0;
}

/* The precomputed x Wx + b rows of step t, when this forward made them and
 * the step runs exactly the rows they were made for; else NULL. */
static const float *pre_rows(const struct rx_node_rt *r, size_t t, size_t k)
{
    if (!r->use_pre || t >= r->pre_steps || r->pre_off[t + 1] - r->pre_off[t] != k)
        return NULL;
    size_t G = (r->d->type == FARM_RX_LSTM ? 4 : 3) * r->width;
    return r->pre + r->pre_off[t] * G;
}

/* Runs compute node r on all `batch` rows of `in` (the fast path, and the
 * plain executor's only path). cache: the step's cache or NULL. */
static void run_full(struct farm_rx_exec *ex, struct rx_node_rt *r, const float *in, size_t batch,
                     size_t t, int record)
{
    struct farm_tensor x, y, z;
    farm__rx_wrap(&x, in, batch, r->in);
    farm__rx_wrap(&y, r->y, batch, r->width);
    switch (r->d->type) {
    case FARM_RX_DENSE:
        RX_CHECK(ex, farm_dense_forward(&r->p->dense, &x, &y));
        break;
    case FARM_RX_ACT:
        RX_CHECK(ex, farm_act_forward(act_of(r->d->fn), &x, &y));
        break;
    case FARM_RX_HEAD:
        farm__rx_wrap(&z, ex->co, batch, r->width);
        RX_CHECK(ex, farm_dense_forward(&r->p->dense, &x, &z));
        RX_CHECK(ex, farm_nn_softmax_rows(&z, &y));
        break;
    case FARM_RX_GRU: {
        RX_CHECK(ex, farm__rx_gru_step(ex, &r->p->gru, in, pre_rows(r, t, batch), r->y, r->y2,
                                       batch, record ? &r->gc[t] : NULL));
        float *s = r->y;
        r->y = r->y2;
        r->y2 = s;
        break;
    }
    case FARM_RX_LSTM: {
        RX_CHECK(ex, farm__rx_lstm_step(ex, &r->p->lstm, in, pre_rows(r, t, batch), r->y, r->c,
                                        r->y2, r->c2, batch, record ? &r->lc[t] : NULL));
        float *s = r->y;
        r->y = r->y2;
        r->y2 = s;
        s = r->c;
        r->c = r->c2;
        r->c2 = s;
        break;
    }
    default:
        break;
    }
}

/* max_j |a[j] - b[j]| */
static float maxdiff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t j = 0; j < n; j++) {
        float d = fabsf(a[j] - b[j]);
        m = d > m ? d : m;
    }
    return m;
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

/* Runs compute node r for step t on the rows of `s`; skipped rows get the
 * pass-on value. */
static void run_node(struct farm_rx_exec *ex, struct rx_node_rt *r, const float *in,
                     const struct rx_set *s, size_t t)
{
    size_t B = ex->batch, k = s->all ? B : s->n, w = r->width, iw = r->in;
    int type = r->d->type, rec = ex->train;
    r->executed += k;
    r->skipped += B - k;
    if (rec) {
        r->h_n[t] = (int32_t)k;
        if (!s->all)
            memcpy(r->h_idx + t * ex->max_batch, s->idx, k * sizeof *s->idx);
    }
    if (k == B) {
        if (rec && r->h_in)
            memcpy(r->h_in + t * ex->max_batch * iw, in, B * iw * sizeof(float));
        run_full(ex, r, in, B, t, rec);
        /* Cells swap their buffers: y2 now holds the previous state. */
        if (r->need_delta)
            for (size_t i = 0; i < B; i++)
                r->delta[i] = maxdiff(r->y + i * w, r->y2 + i * w, w);
        if (rec && r->h_out)
            memcpy(r->h_out + t * ex->max_batch * w, r->y, B * w * sizeof(float));
        return;
    }
    if (k > 0) {
        struct farm_tensor x, o;
        gather(ex->cx, in, s->idx, k, iw);
        farm__rx_wrap(&x, ex->cx, k, iw);
        farm__rx_wrap(&o, ex->co, k, w);
        if (rec && r->h_in)
            memcpy(r->h_in + t * ex->max_batch * iw, ex->cx, k * iw * sizeof(float));
        switch (type) {
        case FARM_RX_DENSE:
            RX_CHECK(ex, farm_dense_forward(&r->p->dense, &x, &o));
            break;
        case FARM_RX_ACT:
            RX_CHECK(ex, farm_act_forward(act_of(r->d->fn), &x, &o));
            break;
        case FARM_RX_HEAD:
            RX_CHECK(ex, farm_dense_forward(&r->p->dense, &x, &o));
            RX_CHECK(ex, farm_nn_softmax_rows(&o, &o));
            break;
        case FARM_RX_GRU:
            gather(ex->ch, r->y, s->idx, k, w);
            RX_CHECK(ex, farm__rx_gru_step(ex, &r->p->gru, ex->cx, pre_rows(r, t, k), ex->ch,
                                           ex->co, k, rec ? &r->gc[t] : NULL));
            break;
        case FARM_RX_LSTM:
            gather(ex->ch, r->y, s->idx, k, w);
            gather(ex->cc, r->c, s->idx, k, w);
            RX_CHECK(ex, farm__rx_lstm_step(ex, &r->p->lstm, ex->cx, pre_rows(r, t, k), ex->ch,
                                            ex->cc, ex->co, ex->co2, k, rec ? &r->lc[t] : NULL));
            scatter(r->c, ex->co2, s->idx, k, w);
            break;
        default:
            break;
        }
        if (r->need_delta)
            for (size_t i = 0; i < k; i++)
                r->delta[s->idx[i]] = maxdiff(ex->co + i * w, ex->ch + i * w, w);
        if (rec && r->h_out)
            memcpy(r->h_out + t * ex->max_batch * w, ex->co, k * w * sizeof(float));
        scatter(r->y, ex->co, s->idx, k, w);
    }
    /* The rows left out: mark them, count them for the activity report and
     * give them the declared pass-on value. */
    memset(ex->mark, 0, B);
    for (size_t i = 0; i < k; i++)
        ex->mark[s->idx[i]] = 1;
    for (size_t b = 0; b < B; b++) {
        if (ex->mark[b])
            continue;
        ex->skipcnt[b]++;
        switch (r->d->pass) {
        case FARM_RX_PASS_INPUT:
            if (type != FARM_RX_HEAD)
                memcpy(r->y + b * w, in + b * iw, w * sizeof(float));
            break;
        case FARM_RX_PASS_ZEROS:
            memset(r->y + b * w, 0, w * sizeof(float));
            if (r->c)
                memset(r->c + b * w, 0, w * sizeof(float));
            break;
        default:
            break;
        }
    }
}

/* The subset of `parent`'s rows that satisfy start node s's condition at
 * step t, written to s->idx. */
static void eval_cond(struct farm_rx_exec *ex, struct rx_unit_rt *ur, struct rx_node_rt *s,
                      const struct rx_set *parent, size_t t, struct rx_set *out)
{
    size_t B = ex->batch, n = parent->all ? B : parent->n, k = 0;
    const struct farm_rx_node *d = s->d;
    if (s->gh_n)
        s->gh_n[t] = 0;
    if (ex->mode == FARM_RX_NEVER_SKIP) {
        *out = *parent;
        return;
    }
    if (ex->mode != FARM_RX_ALWAYS_SKIP) {
        const struct rx_node_rt *ref = d->ref >= 0 ? &ur->n[d->ref] : NULL;
        if (d->cond == FARM_RX_COND_GATE && n > 0) {
            /* g = sigmoid(s . w + b) on the parent's rows, one product. */
            struct farm_tensor hx, g;
            const float *src = ref->y;
            if (!parent->all) {
                gather(ex->ch, ref->y, parent->idx, n, ref->width);
                src = ex->ch;
            }
            farm__rx_wrap(&hx, src, n, ref->width);
            farm__rx_wrap(&g, s->gate, n, 1);
            RX_CHECK(ex, farm_dense_forward(&s->p->dense, &hx, &g));
            RX_CHECK(ex, farm_act_forward(FARM_ACT_SIGMOID, &g, &g));
            if (s->gh_n) {
                /* What the gate's backward needs: its rows, input, values. */
                size_t mb = ex->max_batch, hw = ref->width;
                s->gh_n[t] = (int32_t)n;
                for (size_t i = 0; i < n; i++)
                    s->gh_idx[t * mb + i] = parent->all ? i : parent->idx[i];
                memcpy(s->gh_in + t * mb * hw, src, n * hw * sizeof(float));
                memcpy(s->gh_val + t * mb, s->gate, n * sizeof(float));
            }
        }
        for (size_t i = 0; i < n; i++) {
            size_t b = parent->all ? i : parent->idx[i];
            int keep = 1;
            switch (d->cond) {
            case FARM_RX_COND_LENGTH:
                keep = (int32_t)t < ex->lengths[b];
                break;
            case FARM_RX_COND_CONFIDENCE: {
                const float *p = ref->y + b * ref->width;
                float mx = 0;
                for (size_t j = 0; j < ref->width; j++)
                    mx = p[j] > mx ? p[j] : mx;
                keep = mx < (float)d->threshold;
                break;
            }
            case FARM_RX_COND_CONVERGED:
                keep = ref->delta[b] >= (float)d->threshold;
                break;
            case FARM_RX_COND_GATE: {
                /* Skip RNN's update rule: after a step that ran, U is the
                 * gate's value; after a skipped step U grows by it (capped
                 * at 1), so a closed gate reopens in time; step 0 runs. */
                float D = s->gate[i], U;
                if (t == 0)
                    U = 1.0f;
                else if (s->ranp[b])
                    U = D;
                else
                    U = s->acc[b] + (D < 1.0f - s->acc[b] ? D : 1.0f - s->acc[b]);
                keep = U > (float)d->threshold;
                s->acc[b] = U;
                s->ranp[b] = (unsigned char)keep;
                if (s->gh_n)
                    s->gh_u[t * ex->max_batch + i] = U;
                break;
            }
            default:
                break;
            }
            if (keep)
                s->idx[k++] = b;
        }
    }
    out->idx = s->idx;
    out->n = k;
    out->all = k == B;
}

/* One step of one unit. */
static void step_unit(struct farm_rx_exec *ex, int u, const float *in, size_t t)
{
    const struct farm_rx_unit *unit = &ex->model->units[u];
    struct rx_unit_rt *ur = &ex->u[u];
    struct rx_set stack[66];
    int depth = 0;
    stack[0] = (struct rx_set){.idx = NULL, .n = ex->batch, .all = 1};
    const float *chain = in;
    memset(ex->skipcnt, 0, ex->batch * sizeof *ex->skipcnt);
    for (int i = 0; i < unit->n_nodes; i++) {
        struct rx_node_rt *r = &ur->n[i];
        switch (r->d->type) {
        case FARM_RX_START:
            eval_cond(ex, ur, r, &stack[depth], t, &stack[depth + 1]);
            depth++;
            break;
        case FARM_RX_END:
            depth--;
            break;
        default:
            run_node(ex, r, chain, &stack[depth], t);
            if (r->d->type != FARM_RX_HEAD)
                chain = r->y;
            break;
        }
    }
    ur->out = chain;
    size_t active = 0;
    for (size_t b = 0; b < ex->batch; b++)
        active += ex->skipcnt[b] == 0;
    ex->active[t * (size_t)ex->model->n_units + (size_t)u] += active;
}

/* The plain unrolled reference: every compute node on every row, in
 * order, start and end nodes ignored. */
static void plain_unit(struct farm_rx_exec *ex, int u, const float *in, size_t t)
{
    const struct farm_rx_unit *unit = &ex->model->units[u];
    const float *chain = in;
    for (int i = 0; i < unit->n_nodes; i++) {
        struct rx_node_rt *r = &ex->u[u].n[i];
        if (!farm_rx_node_computes(r->d->type))
            continue;
        run_full(ex, r, chain, ex->batch, t, 0);
        if (r->d->type != FARM_RX_HEAD)
            chain = r->y;
    }
    ex->u[u].out = chain;
}

/* The most floats of precomputed projections one node may hold (256 MiB);
 * beyond, its steps make their own. */
#define PRE_MAX_FLOATS ((size_t)64 << 20)

/* Makes the input projections of the eligible cells for this forward. */
static int precompute(struct farm_rx_exec *ex, const float *x, size_t steps, size_t batch, int mode)
{
    const struct farm_rx_model *m = ex->model;
    unsigned char *active = NULL;
    int rc = 0;
    for (int u = 0; u < m->layer_first[1] && !rc; u++)
        for (int i = 0; i < m->units[u].n_nodes && !rc; i++) {
            struct rx_node_rt *r = &ex->u[u].n[i];
            r->use_pre = 0;
            if (!r->can_pre)
                continue;
            size_t G = (r->d->type == FARM_RX_LSTM ? 4 : 3) * r->width;
            if (steps * batch * G > PRE_MAX_FLOATS)
                continue;
            if (!active && !(active = malloc(steps * batch))) {
                rc = -ENOMEM;
                break;
            }
            int inside = r->d->parent >= 0;
            for (size_t t = 0; t < steps; t++)
                for (size_t b = 0; b < batch; b++) {
                    int on = 1;
                    if (inside && mode == FARM_RX_ALWAYS_SKIP)
                        on = 0;
                    else if (inside && mode == FARM_RX_CONDITIONS)
                        on = (int32_t)t < ex->lengths[b];
                    active[t * batch + b] = (unsigned char)on;
                }
            size_t *off = realloc(r->pre_off, (steps + 1) * sizeof *off);
            if (!off) {
                rc = -ENOMEM;
                break;
            }
            r->pre_off = off;
            if ((rc = farm__rx_precompute(r, x, steps, batch, active)))
                break;
            r->pre_off[steps] = r->pre_rows;
            r->pre_steps = steps;
            r->use_pre = 1;
        }
    free(active);
    return rc;
}

static int grow_activity(struct farm_rx_exec *ex, size_t steps)
{
    if (steps <= ex->act_cap)
        return 0;
    size_t nu = (size_t)ex->model->n_units;
    uint64_t *seen = realloc(ex->seen, steps * sizeof *seen);
    if (!seen)
        return -ENOMEM;
    ex->seen = seen;
    uint64_t *active = realloc(ex->active, steps * nu * sizeof *active);
    if (!active)
        return -ENOMEM;
    ex->active = active;
    memset(ex->seen + ex->act_cap, 0, (steps - ex->act_cap) * sizeof *seen);
    memset(ex->active + ex->act_cap * nu, 0, (steps - ex->act_cap) * nu * sizeof *active);
    ex->act_cap = steps;
    return 0;
}

int farm_rx_exec_forward(struct farm_rx_exec *ex, const float *x, size_t steps, size_t batch,
                         const int32_t *lengths, int mode, struct farm_err *err)
{
    const struct farm_rx_model *m = ex->model;
    if (batch == 0 || batch > ex->max_batch)
        return farm_err_set(err, -EINVAL, "rnnexit: batch %zu out of range 1..%zu", batch,
                            ex->max_batch);
    if (steps == 0 || (ex->train && steps > ex->max_steps))
        return farm_err_set(err, -EINVAL, "rnnexit: %zu steps out of range 1..%zu", steps,
                            ex->train ? ex->max_steps : (size_t)-1);
    if (mode < FARM_RX_CONDITIONS || mode > FARM_RX_PLAIN)
        return farm_err_set(err, -EINVAL, "rnnexit: unknown executor mode %d", mode);
    if (ex->train && mode == FARM_RX_PLAIN)
        return farm_err_set(err, -EINVAL,
                            "rnnexit: the plain executor keeps no history for "
                            "training");
    for (size_t b = 0; b < batch; b++) {
        int32_t len = lengths ? lengths[b] : (int32_t)steps;
        if (len < 0 || (size_t)len > steps)
            return farm_err_set(err, -EINVAL,
                                "rnnexit: object %zu has length %d, outside "
                                "0..%zu",
                                b, (int)len, steps);
        ex->lengths[b] = len;
    }
    if (mode != FARM_RX_PLAIN && grow_activity(ex, steps))
        return farm_err_set(err, -ENOMEM, "out of memory");
    ex->batch = batch;
    ex->steps = steps;
    ex->mode = mode;
    ex->fail = 0;
    /* Zero states; the converged condition starts "still changing". */
    for (int u = 0; u < m->n_units; u++)
        for (int i = 0; i < m->units[u].n_nodes; i++) {
            struct rx_node_rt *r = &ex->u[u].n[i];
            if (r->acc) {
                /* A gate's first evaluation of an object gives U = 1: it runs. */
                for (size_t b = 0; b < batch; b++)
                    r->acc[b] = 1.0f;
                memset(r->ranp, 0, batch);
            }
            if (!r->y)
                continue;
            memset(r->y, 0, batch * r->width * sizeof(float));
            if (r->c)
                memset(r->c, 0, batch * r->width * sizeof(float));
            for (size_t b = 0; b < batch; b++)
                r->delta[b] = INFINITY;
        }
    if (precompute(ex, x, steps, batch, mode))
        return farm_err_set(err, -ENOMEM, "out of memory");
    size_t in0 = (size_t)m->input;
    for (size_t t = 0; t < steps; t++) {
        const float *lin = x + t * batch * in0;
        if (mode != FARM_RX_PLAIN)
            ex->seen[t] += batch;
        for (int l = 0; l < m->n_layers; l++) {
            int first = m->layer_first[l], last = m->layer_first[l + 1];
            for (int u = first; u < last; u++) {
                if (mode == FARM_RX_PLAIN)
                    plain_unit(ex, u, lin, t);
                else
                    step_unit(ex, u, lin, t);
            }
            if (last - first == 1) {
                ex->layer_out[l] = ex->u[first].out;
            } else {
                /* Concatenate the units' outputs, row by row. */
                size_t w = (size_t)m->layer_width[l];
                for (int u = first; u < last; u++) {
                    size_t uw = (size_t)m->units[u].out, off = (size_t)m->units[u].offset;
                    for (size_t b = 0; b < batch; b++)
                        memcpy(ex->layer_buf[l] + b * w + off, ex->u[u].out + b * uw,
                               uw * sizeof(float));
                }
                ex->layer_out[l] = ex->layer_buf[l];
            }
            lin = ex->layer_out[l];
        }
    }
    if (mode != FARM_RX_PLAIN && steps > ex->act_steps)
        ex->act_steps = steps;
    if (ex->fail) {
        int rc = ex->fail;
        ex->batch = 0; /* no backward over a failed forward */
        return farm_err_set(err, rc, "rnnexit: a node failed during the forward: %s",
                            farm_strerror(rc));
    }
    return 0;
}

void farm_rx_exec_set_gate_cost(struct farm_rx_exec *ex, double cost)
{
    ex->gate_cost = cost > 0 ? cost : 0;
}

const float *farm_rx_exec_output(const struct farm_rx_exec *ex)
{
    return ex->u[ex->model->out_unit].n[ex->model->out_node].y;
}

const float *farm_rx_exec_value(const struct farm_rx_exec *ex, int unit, int node, int which,
                                size_t *width)
{
    if (unit < 0 || unit >= ex->model->n_units || node < 0 ||
        node >= ex->model->units[unit].n_nodes)
        return NULL;
    const struct rx_node_rt *r = &ex->u[unit].n[node];
    if (width)
        *width = r->width;
    return which ? r->c : r->y;
}

void farm_rx_exec_stats(const struct farm_rx_exec *ex, int unit, int node,
                        struct farm_rx_stats *out)
{
    memset(out, 0, sizeof *out);
    const struct farm_rx_model *m = ex->model;
    for (int u = 0; u < m->n_units; u++) {
        if (unit >= 0 && u != unit)
            continue;
        for (int i = 0; i < m->units[u].n_nodes; i++) {
            if (node >= 0 && i != node)
                continue;
            const struct rx_node_rt *r = &ex->u[u].n[i];
            if (!farm_rx_node_computes(r->d->type))
                continue;
            out->executed += r->executed;
            out->skipped += r->skipped;
            out->flops_done += (double)r->executed * r->flops;
            out->flops_saved += (double)r->skipped * r->flops;
        }
    }
}

void farm_rx_exec_activity(const struct farm_rx_exec *ex, int unit, size_t step, uint64_t *seen,
                           uint64_t *active)
{
    if (step >= ex->act_steps || unit < 0 || unit >= ex->model->n_units) {
        *seen = *active = 0;
        return;
    }
    *seen = ex->seen[step];
    *active = ex->active[step * (size_t)ex->model->n_units + (size_t)unit];
}

size_t farm_rx_exec_activity_steps(const struct farm_rx_exec *ex)
{
    return ex->act_steps;
}

void farm_rx_exec_reset_stats(struct farm_rx_exec *ex)
{
    const struct farm_rx_model *m = ex->model;
    for (int u = 0; u < m->n_units; u++)
        for (int i = 0; i < m->units[u].n_nodes; i++)
            ex->u[u].n[i].executed = ex->u[u].n[i].skipped = 0;
    if (ex->act_cap) {
        memset(ex->seen, 0, ex->act_cap * sizeof *ex->seen);
        memset(ex->active, 0, ex->act_cap * (size_t)m->n_units * sizeof *ex->active);
    }
    ex->act_steps = 0;
}
