/* The sequential MLP: layers from a description, run over ranges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nn-internal.h"

struct layer {
    struct farm_layer_desc d;
    struct farm_dense dense; /* only for FARM_LAYER_DENSE */
};

struct farm_mlp {
    size_t n;
    struct layer *layers;
    enum farm_loss_kind loss;
    size_t input;
    /* farm_mlp_train_step / evaluate scratch */
    struct farm_mlp_work *work;
    size_t work_rows;
    struct farm_tensor dout;
};

/* Per layer of the range: its output, and for a dense layer with a fused
 * gelu also the pre-activation (gelu's derivative needs its input). */
struct slot {
    struct farm_tensor out, pre;
};

struct farm_mlp_work {
    size_t first, last, max_rows, rows;
    struct farm_tensor x; /* a view of the caller's input (struct copied) */
    struct slot *slots;
    struct farm_tensor g[2]; /* gradient ping-pong, max_rows x widest */
    size_t widest;
    bool forwarded;
};

int farm_mlp_new(const struct farm_model_desc *d, uint64_t seed, struct farm_mlp **out,
                 struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(d->n_layers == 0, err, FARM_EBADMODEL, "%s: no layers", d->file);
    struct farm_mlp *m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc(d->n_layers, sizeof *m->layers))) {
        free(m);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    m->n = d->n_layers;
    m->loss = d->loss;
    m->input = d->input;
    struct farm_rng root;
    farm_rng_seed(&root, seed);
    for (size_t i = 0; i < m->n; i++) {
        struct layer *l = &m->layers[i];
        l->d = d->layers[i];
        struct farm_rng rng;
        farm_rng_fork(&root, &rng);
        if (l->d.kind != FARM_LAYER_DENSE)
            continue;
        int rc = farm_dense_init(&l->dense, l->d.in, l->d.out);
        if (rc < 0) {
            farm_mlp_free(m);
            return farm_err_set(err, rc, "layer %s: out of memory", l->d.name);
        }
        farm_dense_init_params(&l->dense, d->init, &rng);
    }
    *out = m;
    return 0;
}

void farm_mlp_free(struct farm_mlp *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        farm_dense_release(&m->layers[i].dense);
    free(m->layers);
    farm_mlp_work_free(m->work);
    farm_tensor_release(&m->dout);
    free(m);
}

size_t farm_mlp_n_layers(const struct farm_mlp *m)
{
    return m->n;
}

const struct farm_layer_desc *farm_mlp_layer(const struct farm_mlp *m, size_t i)
{
    return i < m->n ? &m->layers[i].d : NULL;
}

enum farm_loss_kind farm_mlp_loss_kind(const struct farm_mlp *m)
{
    return m->loss;
}

size_t farm_mlp_input(const struct farm_mlp *m)
{
    return m->input;
}

size_t farm_mlp_output(const struct farm_mlp *m)
{
    return m->layers[m->n - 1].d.out;
}

struct farm_dense *farm_mlp_dense(struct farm_mlp *m, size_t i)
{
    if (i >= m->n || m->layers[i].d.kind != FARM_LAYER_DENSE)
        return NULL;
    return &m->layers[i].dense;
}

size_t farm_mlp_params(struct farm_mlp *m, size_t first, size_t last, struct farm_nn_param *out,
                       size_t cap)
{
    size_t k = 0;
    if (last > m->n)
        last = m->n;
    for (size_t i = first; i < last; i++) {
        struct layer *l = &m->layers[i];
        if (l->d.kind != FARM_LAYER_DENSE)
            continue;
        struct farm_nn_param two[2];
        farm_dense_params(&l->dense, l->d.name, two);
        for (int j = 0; j < 2; j++, k++)
            if (k < cap)
                out[k] = two[j];
    }
    return k;
}

void farm_mlp_zero_grad(struct farm_mlp *m, size_t first, size_t last)
{
    for (size_t i = first; i < last && i < m->n; i++)
        if (m->layers[i].d.kind == FARM_LAYER_DENSE)
            farm_dense_zero_grad(&m->layers[i].dense);
}

int farm_mlp_work_new(const struct farm_mlp *m, size_t first, size_t last, size_t max_rows,
                      struct farm_mlp_work **out)
{
    if (first >= last || last > m->n || max_rows == 0)
        return -EINVAL;
    struct farm_mlp_work *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->first = first;
    w->last = last;
    w->max_rows = max_rows;
    w->slots = calloc(last - first, sizeof *w->slots);
    int rc = w->slots ? 0 : -ENOMEM;
    size_t widest = 0;
    for (size_t i = first; rc == 0 && i < last; i++) {
        const struct farm_layer_desc *d = &m->layers[i].d;
        struct slot *s = &w->slots[i - first];
        if (d->in > widest)
            widest = d->in;
        if (d->out > widest)
            widest = d->out;
        rc = farm_tensor_init(&s->out, max_rows, d->out);
        if (rc == 0 && d->kind == FARM_LAYER_DENSE && d->act == FARM_ACT_GELU)
            rc = farm_tensor_init(&s->pre, max_rows, d->out);
    }
    w->widest = widest;
    for (int k = 0; rc == 0 && k < 2; k++)
        rc = farm_tensor_init(&w->g[k], max_rows, widest);
    if (rc < 0) {
        farm_mlp_work_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void farm_mlp_work_free(struct farm_mlp_work *w)
{
    if (!w)
        return;
    for (size_t i = 0; w->slots && i < w->last - w->first; i++) {
        farm_tensor_release(&w->slots[i].out);
        farm_tensor_release(&w->slots[i].pre);
    }
    free(w->slots);
    farm_tensor_release(&w->g[0]);
    farm_tensor_release(&w->g[1]);
    free(w);
}

size_t farm_mlp_work_bytes(const struct farm_mlp_work *w)
{
    size_t floats = w->g[0].cap + w->g[1].cap;
    for (size_t i = 0; i < w->last - w->first; i++)
        floats += w->slots[i].out.cap + w->slots[i].pre.cap;
    return floats * sizeof(float);
}

int farm_mlp_forward(const struct farm_mlp *m, struct farm_mlp_work *w, const struct farm_tensor *x,
                     const struct farm_tensor **y)
{
    size_t rows = x->rows;
    if (rows > w->max_rows || x->cols != m->layers[w->first].d.in)
        return -EINVAL;
    /* Keep a view rather than the caller's pointer, so the struct may be a
     * temporary; the data must stay put until backward. */
    w->x = *x;
    w->x.cap = 0;
    w->rows = rows;
    const struct farm_tensor *in = x;
    for (size_t i = w->first; i < w->last; i++) {
        const struct layer *l = &m->layers[i];
        struct slot *s = &w->slots[i - w->first];
        farm_tensor_resize_rows(&s->out, rows);
        int rc;
        if (l->d.kind == FARM_LAYER_DENSE) {
            if (l->d.act == FARM_ACT_GELU) {
                farm_tensor_resize_rows(&s->pre, rows);
                rc = farm_dense_forward(&l->dense, in, &s->pre);
                if (rc == 0)
                    rc = farm_act_forward(l->d.act, &s->pre, &s->out);
            } else {
                /* relu/tanh/sigmoid backward only need the output: apply
                 * them in place. */
                rc = farm_dense_forward(&l->dense, in, &s->out);
                if (rc == 0 && l->d.act != FARM_ACT_NONE)
                    rc = farm_act_forward(l->d.act, &s->out, &s->out);
            }
        } else {
            rc = farm_act_forward(l->d.act, in, &s->out);
        }
        if (rc < 0)
            return rc;
        in = &s->out;
    }
    w->forwarded = true;
    *y = in;
    return 0;
}

/* A rows x cols view of ping-pong buffer k. */
static struct farm_tensor gview(struct farm_mlp_work *w, int k, size_t cols)
{
    struct farm_tensor t;
    farm_tensor_wrap(&t, w->g[k].data, w->rows, cols);
    return t;
}

int farm_mlp_backward(struct farm_mlp *m, struct farm_mlp_work *w, const struct farm_tensor *dy,
                      const struct farm_tensor **dx)
{
    if (!w->forwarded)
        return -EINVAL;
    const struct layer *lastl = &m->layers[w->last - 1];
    if (dy->rows != w->rows || dy->cols != lastl->d.out)
        return -EINVAL;
    /* cur: the gradient at the current layer's output; it lives either in
     * the caller's dy (cur_buf -1) or in ping-pong buffer cur_buf. */
    struct farm_tensor cur = *dy;
    int cur_buf = -1;
    for (size_t i = w->last; i-- > w->first;) {
        struct layer *l = &m->layers[i];
        struct slot *s = &w->slots[i - w->first];
        const struct farm_tensor *in = i == w->first ? &w->x : &w->slots[i - 1 - w->first].out;
        bool need_dx = i > w->first || dx != NULL;
        int rc;
        if (l->d.kind == FARM_LAYER_DENSE) {
            struct farm_tensor dz = cur;
            int dz_buf = cur_buf;
            if (l->d.act != FARM_ACT_NONE) {
                dz_buf = cur_buf < 0 ? 0 : cur_buf;
                dz = gview(w, dz_buf, l->d.out);
                const struct farm_tensor *pre = l->d.act == FARM_ACT_GELU ? &s->pre : &s->out;
                rc = farm_act_backward(l->d.act, pre, &s->out, &cur, &dz);
                if (rc < 0)
                    return rc;
            }
            int nb = dz_buf == 0 ? 1 : 0;
            struct farm_tensor g = gview(w, nb, l->d.in);
            rc = farm_dense_backward(&l->dense, in, &dz, need_dx ? &g : NULL);
            if (rc < 0)
                return rc;
            cur = g;
            cur_buf = nb;
        } else {
            int nb = cur_buf < 0 ? 0 : cur_buf; /* in place is fine */
            struct farm_tensor g = gview(w, nb, l->d.in);
            rc = farm_act_backward(l->d.act, in, &s->out, &cur, &g);
            if (rc < 0)
                return rc;
            cur = g;
            cur_buf = nb;
        }
    }
    if (dx) {
        /* The result lives in ping-pong buffer cur_buf: hand out a tensor
         * that stays valid in the work. */
        w->g[cur_buf].rows = w->rows;
        w->g[cur_buf].cols = cur.cols;
        w->g[cur_buf].ndim = 2;
        w->g[cur_buf].shape[0] = w->rows;
        w->g[cur_buf].shape[1] = cur.cols;
        *dx = &w->g[cur_buf];
    }
    return 0;
}

void farm_mlp_micro_slice(size_t rows, size_t mb, size_t k, size_t *first, size_t *count)
{
    size_t base = rows / mb, extra = rows % mb;
    *first = k * base + (k < extra ? k : extra);
    *count = base + (k < extra ? 1 : 0);
}

static int ensure_scratch(struct farm_mlp *m, size_t rows)
{
    if (m->work && m->work_rows >= rows) {
        return farm_tensor_resize_rows(&m->dout, rows);
    }
    farm_mlp_work_free(m->work);
    m->work = NULL;
    farm_tensor_release(&m->dout);
    int rc = farm_mlp_work_new(m, 0, m->n, rows, &m->work);
    if (rc < 0)
        return rc;
    m->work_rows = rows;
    return farm_tensor_init(&m->dout, rows, farm_mlp_output(m));
}

static int loss_of(struct farm_mlp *m, const struct farm_tensor *y, const int32_t *labels,
                   const struct farm_tensor *targets, float scale, struct farm_tensor *dy,
                   double *loss, size_t *correct)
{
    if (m->loss == FARM_LOSS_SOFTMAX_CE) {
        if (!labels)
            return -EINVAL;
        return farm_loss_softmax_ce(y, labels, scale, dy, loss, correct);
    }
    if (!targets)
        return -EINVAL;
    int rc = farm_loss_mse(y, targets, scale, dy, loss);
    if (rc == 0 && correct) {
        *correct = 0;
        if (labels) {
            for (size_t i = 0; i < y->rows; i++) {
                const float *r = y->data + i * y->cols;
                size_t best = 0;
                for (size_t j = 1; j < y->cols; j++)
                    if (r[j] > r[best])
                        best = j;
                *correct += (int32_t)best == labels[i];
            }
        }
    }
    return rc;
}

int farm_mlp_train_step(struct farm_mlp *m, struct farm_optim *optim, const struct farm_tensor *x,
                        const int32_t *labels, const struct farm_tensor *targets,
                        size_t micro_batches, double *loss_sum, size_t *correct)
{
    size_t rows = x->rows;
    if (micro_batches == 0 || micro_batches > rows || x->cols != m->input)
        return -EINVAL;
    if (targets && (targets->rows != rows || targets->cols != farm_mlp_output(m)))
        return -EINVAL;
    size_t biggest = rows / micro_batches + (rows % micro_batches ? 1 : 0);
    int rc = ensure_scratch(m, biggest);
    if (rc < 0)
        return rc;
    farm_mlp_zero_grad(m, 0, m->n);
    float scale = 1.0f / (float)rows;
    double total = 0;
    size_t ok = 0;
    for (size_t k = 0; k < micro_batches; k++) {
        size_t first, count;
        farm_mlp_micro_slice(rows, micro_batches, k, &first, &count);
        struct farm_tensor xs, ts, dy;
        farm_tensor_view_rows(x, first, count, &xs);
        if (targets)
            farm_tensor_view_rows(targets, first, count, &ts);
        const struct farm_tensor *y;
        if ((rc = farm_mlp_forward(m, m->work, &xs, &y)) < 0)
            return rc;
        farm_tensor_wrap(&dy, m->dout.data, count, farm_mlp_output(m));
        double l = 0;
        size_t c = 0;
        rc =
            loss_of(m, y, labels ? labels + first : NULL, targets ? &ts : NULL, scale, &dy, &l, &c);
        if (rc < 0)
            return rc;
        total += l;
        ok += c;
        if ((rc = farm_mlp_backward(m, m->work, &dy, NULL)) < 0)
            return rc;
    }
    if (optim)
        farm_optim_step(optim);
    if (loss_sum)
        *loss_sum = total;
    if (correct)
        *correct = ok;
    return 0;
}

int farm_mlp_evaluate(struct farm_mlp *m, const struct farm_dataset *d, size_t batch_size,
                      double *mean_loss, double *accuracy)
{
    if (batch_size == 0 || d->n == 0 || d->x.cols != m->input)
        return -EINVAL;
    size_t bs = batch_size < d->n ? batch_size : d->n;
    int rc = ensure_scratch(m, bs);
    if (rc < 0)
        return rc;
    double total = 0;
    size_t ok = 0;
    for (size_t first = 0; first < d->n; first += bs) {
        size_t count = d->n - first < bs ? d->n - first : bs;
        struct farm_tensor xs, ts;
        farm_tensor_view_rows(&d->x, first, count, &xs);
        if (d->y.rows)
            farm_tensor_view_rows(&d->y, first, count, &ts);
        const struct farm_tensor *y;
        if ((rc = farm_mlp_forward(m, m->work, &xs, &y)) < 0)
            return rc;
        double l = 0;
        size_t c = 0;
        rc = loss_of(m, y, d->labels ? d->labels + first : NULL, d->y.rows ? &ts : NULL, 1.0f, NULL,
                     &l, &c);
        if (rc < 0)
            return rc;
        total += l;
        ok += c;
    }
    if (mean_loss)
        *mean_loss = total / (double)d->n;
    if (accuracy)
        *accuracy = (double)ok / (double)d->n;
    return 0;
}

double farm_mlp_layer_flops(const struct farm_mlp *m, size_t i, size_t rows, bool backward)
{
    if (i >= m->n)
        return 0;
    const struct farm_layer_desc *d = &m->layers[i].d;
    if (d->kind == FARM_LAYER_DENSE)
        return backward ? farm_flops_dense_backward(rows, d->in, d->out, d->act)
                        : farm_flops_dense_forward(rows, d->in, d->out, d->act);
    return farm_flops_act(d->act, rows * d->out);
}

static int all_params(struct farm_mlp *m, struct farm_nn_param **out, size_t *n)
{
    size_t k = farm_mlp_params(m, 0, m->n, NULL, 0);
    struct farm_nn_param *p = calloc(k ? k : 1, sizeof *p);
    if (!p)
        return -ENOMEM;
    farm_mlp_params(m, 0, m->n, p, k);
    *out = p;
    *n = k;
    return 0;
}

int farm_mlp_save(struct farm_mlp *m, const char *path, struct farm_err *err)
{
    struct farm_nn_param *p;
    size_t n;
    if (all_params(m, &p, &n) < 0)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = farm_safetensors_save(path, p, n, NULL, err);
    free(p);
    return rc;
}

int farm_mlp_load(struct farm_mlp *m, const char *path, struct farm_err *err)
{
    struct farm_nn_param *p;
    size_t n;
    if (all_params(m, &p, &n) < 0)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = farm_safetensors_load(path, p, n, false, err);
    free(p);
    return rc;
}
