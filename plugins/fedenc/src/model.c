/* fedenc models: an encoder (MLP or GRU) and a linear head, trained with
 * mini-batch SGD through the numeric kit. */
#include "farm/fedenc_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS (4 * FARM_FEDENC_HIDDEN_MAX + 8)

struct farm_fedenc_model {
    struct farm_fedenc_encoder_cfg cfg;
    size_t classes;
    size_t emb; /* embedding width */
    struct farm_dense fc[FARM_FEDENC_HIDDEN_MAX];
    size_t nfc;
    struct farm_gru gru;
    int has_gru;
    struct farm_dense head;
    struct farm_nn_param params[MAX_PARAMS];
    size_t nenc, nall;
    size_t enc_size;

    /* workspace for up to ws_rows rows */
    size_t ws_rows;
    struct farm_tensor z[FARM_FEDENC_HIDDEN_MAX], a[FARM_FEDENC_HIDDEN_MAX];
    struct farm_tensor g1, g2;      /* gradient ping-pong, max width */
    struct farm_tensor xt, h0, h1;  /* gru: one step's input, hidden ping-pong */
    struct farm_gru_cache *caches;  /* gru: one per step */
    struct farm_tensor logits, demb;
    struct farm_tensor xb;
    int32_t *lb;
    size_t *order;
    size_t order_n;
};

/* ------------------------------------------------------------- configs */

static int get_size(const json_t *j, const char *key, size_t *out, int required,
                    struct farm_err *err)
{
    json_t *v = json_object_get(j, key);
    if (v == NULL) {
        if (required)
            return farm_err_set(err, FARM_EBADPARAM, "encoder.%s: missing", key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24))
        return farm_err_set(err, FARM_EBADPARAM, "encoder.%s: expected a positive integer", key);
    *out = (size_t)json_integer_value(v);
    return 0;
}

int farm_fedenc_encoder_cfg_parse(const json_t *j, struct farm_fedenc_encoder_cfg *out,
                                  struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!json_is_object(j), err, FARM_EBADPARAM,
                         "encoder: expected an object {type, input, hidden}");
    struct farm_fedenc_encoder_cfg c = {0};
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && strcmp(type, "mlp") == 0)
        c.type = FARM_FEDENC_ENC_MLP;
    else if (type && strcmp(type, "gru") == 0)
        c.type = FARM_FEDENC_ENC_GRU;
    else
        return farm_err_set(err, FARM_EBADPARAM, "encoder.type: expected \"mlp\" or \"gru\", got %s",
                            type ? type : "nothing");
    int rc = get_size(j, "input", &c.input, 1, err);
    if (rc != 0)
        return rc;
    c.steps = 1;
    if (c.type == FARM_FEDENC_ENC_GRU && (rc = get_size(j, "steps", &c.steps, 1, err)) != 0)
        return rc;
    json_t *h = json_object_get(j, "hidden");
    if (json_is_integer(h)) {
        if ((rc = get_size(j, "hidden", &c.hidden[0], 1, err)) != 0)
            return rc;
        c.nhidden = 1;
    } else if (json_is_array(h) && json_array_size(h) >= 1 &&
               json_array_size(h) <= FARM_FEDENC_HIDDEN_MAX) {
        c.nhidden = json_array_size(h);
        for (size_t i = 0; i < c.nhidden; i++) {
            json_t *v = json_array_get(h, i);
            if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
                json_integer_value(v) > (1 << 24))
                return farm_err_set(err, FARM_EBADPARAM,
                                    "encoder.hidden[%zu]: expected a positive integer", i);
            c.hidden[i] = (size_t)json_integer_value(v);
        }
    } else {
        return farm_err_set(err, FARM_EBADPARAM,
                            "encoder.hidden: expected a size or a list of 1..%d sizes",
                            FARM_FEDENC_HIDDEN_MAX);
    }
    FARM_RETURN_ERROR_IF(c.type == FARM_FEDENC_ENC_GRU && c.nhidden != 1, err, FARM_EBADPARAM,
                         "encoder.hidden: a gru encoder takes one hidden size");
    *out = c;
    return 0;
}

json_t *farm_fedenc_encoder_cfg_json(const struct farm_fedenc_encoder_cfg *cfg)
{
    json_t *h = json_array();
    for (size_t i = 0; i < cfg->nhidden; i++)
        json_array_append_new(h, json_integer((json_int_t)cfg->hidden[i]));
    json_t *j = json_pack("{s:s, s:I, s:o}", "type",
                          cfg->type == FARM_FEDENC_ENC_GRU ? "gru" : "mlp", "input",
                          (json_int_t)cfg->input, "hidden", h);
    if (cfg->type == FARM_FEDENC_ENC_GRU)
        json_object_set_new(j, "steps", json_integer((json_int_t)cfg->steps));
    return j;
}

size_t farm_fedenc_encoder_width(const struct farm_fedenc_encoder_cfg *cfg)
{
    return cfg->type == FARM_FEDENC_ENC_GRU ? cfg->steps * cfg->input : cfg->input;
}

int farm_fedenc_hp_parse(const json_t *j, struct farm_fedenc_hp *out, struct farm_err *err)
{
    struct farm_fedenc_hp hp = {.epochs = 1, .batch = 32, .lr = 0.05, .seed = 1};
    if (j != NULL && !json_is_object(j))
        return farm_err_set(err, FARM_EBADPARAM, "hp: expected an object");
    json_t *v;
    if ((v = json_object_get(j, "epochs")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000)
            return farm_err_set(err, FARM_EBADPARAM, "epochs: expected an integer >= 1");
        hp.epochs = (uint32_t)json_integer_value(v);
    }
    if ((v = json_object_get(j, "batch")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return farm_err_set(err, FARM_EBADPARAM, "batch: expected an integer >= 0 (0: full)");
        hp.batch = (size_t)json_integer_value(v);
    }
    if ((v = json_object_get(j, "lr")) != NULL) {
        if (!json_is_number(v) || !(json_number_value(v) > 0))
            return farm_err_set(err, FARM_EBADPARAM, "lr: expected a positive number");
        hp.lr = json_number_value(v);
    }
    if ((v = json_object_get(j, "momentum")) != NULL) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) >= 1)
            return farm_err_set(err, FARM_EBADPARAM, "momentum: expected 0 <= m < 1");
        hp.momentum = json_number_value(v);
    }
    if ((v = json_object_get(j, "mu")) != NULL) {
        if (!json_is_number(v) || json_number_value(v) < 0)
            return farm_err_set(err, FARM_EBADPARAM, "mu: expected a number >= 0");
        hp.mu = json_number_value(v);
    }
    if ((v = json_object_get(j, "seed")) != NULL) {
        if (!json_is_integer(v))
            return farm_err_set(err, FARM_EBADPARAM, "seed: expected an integer");
        hp.seed = (uint64_t)json_integer_value(v);
    }
    *out = hp;
    return 0;
}

json_t *farm_fedenc_hp_json(const struct farm_fedenc_hp *hp)
{
    return json_pack("{s:I, s:I, s:f, s:f, s:f, s:I}", "epochs", (json_int_t)hp->epochs, "batch",
                     (json_int_t)hp->batch, "lr", hp->lr, "momentum", hp->momentum, "mu", hp->mu,
                     "seed", (json_int_t)hp->seed);
}

/* --------------------------------------------------------------- model */

static void ws_release(struct farm_fedenc_model *m)
{
    for (size_t i = 0; i < FARM_FEDENC_HIDDEN_MAX; i++) {
        farm_tensor_release(&m->z[i]);
        farm_tensor_release(&m->a[i]);
    }
    farm_tensor_release(&m->g1);
    farm_tensor_release(&m->g2);
    farm_tensor_release(&m->xt);
    farm_tensor_release(&m->h0);
    farm_tensor_release(&m->h1);
    if (m->caches) {
        for (size_t t = 0; t < m->cfg.steps; t++)
            farm_gru_cache_release(&m->caches[t]);
        free(m->caches);
        m->caches = NULL;
    }
    farm_tensor_release(&m->logits);
    farm_tensor_release(&m->demb);
    farm_tensor_release(&m->xb);
    free(m->lb);
    m->lb = NULL;
    m->ws_rows = 0;
}

static int ws_ensure(struct farm_fedenc_model *m, size_t rows)
{
    if (rows <= m->ws_rows)
        return 0;
    ws_release(m);
    size_t width = farm_fedenc_encoder_width(&m->cfg);
    size_t maxw = width > m->emb ? width : m->emb;
    for (size_t i = 0; i < m->nfc; i++)
        if (m->cfg.hidden[i] > maxw)
            maxw = m->cfg.hidden[i];
    int rc = 0;
    for (size_t i = 0; i < m->nfc && rc == 0; i++) {
        rc = farm_tensor_init(&m->z[i], rows, m->cfg.hidden[i]);
        if (rc == 0)
            rc = farm_tensor_init(&m->a[i], rows, m->cfg.hidden[i]);
    }
    if (rc == 0)
        rc = farm_tensor_init(&m->g1, rows, maxw);
    if (rc == 0)
        rc = farm_tensor_init(&m->g2, rows, maxw);
    if (rc == 0 && m->has_gru) {
        rc = farm_tensor_init(&m->xt, rows, m->cfg.input);
        if (rc == 0)
            rc = farm_tensor_init(&m->h0, rows, m->emb);
        if (rc == 0)
            rc = farm_tensor_init(&m->h1, rows, m->emb);
        m->caches = calloc(m->cfg.steps, sizeof *m->caches);
        if (m->caches == NULL)
            rc = -ENOMEM;
        for (size_t t = 0; t < m->cfg.steps && rc == 0; t++)
            rc = farm_gru_cache_init(&m->caches[t], &m->gru, rows);
    }
    if (rc == 0)
        rc = farm_tensor_init(&m->logits, rows, m->classes);
    if (rc == 0)
        rc = farm_tensor_init(&m->demb, rows, m->emb);
    if (rc == 0)
        rc = farm_tensor_init(&m->xb, rows, width);
    if (rc == 0 && (m->lb = malloc(rows * sizeof *m->lb)) == NULL)
        rc = -ENOMEM;
    if (rc != 0) {
        ws_release(m);
        return rc;
    }
    m->ws_rows = rows;
    return 0;
}

int farm_fedenc_model_new(const struct farm_fedenc_encoder_cfg *cfg, size_t classes,
                          uint64_t enc_seed, uint64_t head_seed, struct farm_fedenc_model **out,
                          struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(classes < 2, err, FARM_EBADPARAM, "classes: expected at least 2");
    struct farm_fedenc_model *m = calloc(1, sizeof *m);
    if (m == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    m->cfg = *cfg;
    m->classes = classes;
    struct farm_rng rng, sub;
    farm_rng_seed(&rng, enc_seed);
    int rc = 0;
    size_t np = 0;
    if (cfg->type == FARM_FEDENC_ENC_MLP) {
        size_t in = cfg->input;
        for (size_t i = 0; i < cfg->nhidden && rc == 0; i++) {
            rc = farm_dense_init(&m->fc[i], in, cfg->hidden[i]);
            if (rc != 0)
                break;
            m->nfc = i + 1;
            farm_rng_fork(&rng, &sub);
            farm_dense_init_params(&m->fc[i], FARM_INIT_HE, &sub);
            char prefix[32];
            snprintf(prefix, sizeof prefix, "enc.fc%zu", i + 1);
            np += farm_dense_params(&m->fc[i], prefix, &m->params[np]);
            in = cfg->hidden[i];
        }
        m->emb = in;
    } else {
        rc = farm_gru_init(&m->gru, cfg->input, cfg->hidden[0]);
        if (rc == 0) {
            m->has_gru = 1;
            farm_rng_fork(&rng, &sub);
            farm_gru_init_params(&m->gru, &sub);
            np += farm_gru_params(&m->gru, "enc.gru", &m->params[np]);
        }
        m->emb = cfg->hidden[0];
    }
    m->nenc = np;
    if (rc == 0)
        rc = farm_dense_init(&m->head, m->emb, classes);
    if (rc != 0) {
        farm_fedenc_model_free(m);
        return farm_err_set(err, rc, "model: %s", farm_strerror(rc));
    }
    struct farm_rng hr;
    farm_rng_seed(&hr, head_seed);
    farm_dense_init_params(&m->head, FARM_INIT_XAVIER, &hr);
    np += farm_dense_params(&m->head, "head", &m->params[np]);
    m->nall = np;
    m->enc_size = farm_params_count(m->params, m->nenc);
    *out = m;
    return 0;
}

void farm_fedenc_model_free(struct farm_fedenc_model *m)
{
    if (m == NULL)
        return;
    ws_release(m);
    for (size_t i = 0; i < m->nfc; i++)
        farm_dense_release(&m->fc[i]);
    if (m->has_gru)
        farm_gru_release(&m->gru);
    farm_dense_release(&m->head);
    free(m->order);
    free(m);
}

size_t farm_fedenc_model_specs(const struct farm_fedenc_model *m,
                               struct farm_fedenc_tensor_spec *out, size_t cap)
{
    for (size_t i = 0; i < m->nenc && i < cap; i++) {
        const struct farm_tensor *t = m->params[i].value;
        memset(&out[i], 0, sizeof out[i]);
        size_t nl = strnlen(m->params[i].name, sizeof out[i].name - 1);
        memcpy(out[i].name, m->params[i].name, nl);
        out[i].name[nl] = '\0';
        out[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            out[i].shape[d] = (int64_t)t->shape[d];
    }
    return m->nenc;
}

size_t farm_fedenc_model_encoder_size(const struct farm_fedenc_model *m)
{
    return m->enc_size;
}

void farm_fedenc_model_get_encoder(const struct farm_fedenc_model *m, float *out)
{
    size_t off = 0;
    for (size_t i = 0; i < m->nenc; i++) {
        size_t n = farm_tensor_size(m->params[i].value);
        memcpy(out + off, m->params[i].value->data, n * sizeof *out);
        off += n;
    }
}

int farm_fedenc_model_set_encoder(struct farm_fedenc_model *m, const float *in, size_t n)
{
    if (n != m->enc_size)
        return -EINVAL;
    size_t off = 0;
    for (size_t i = 0; i < m->nenc; i++) {
        size_t k = farm_tensor_size(m->params[i].value);
        memcpy(m->params[i].value->data, in + off, k * sizeof *in);
        off += k;
    }
    return 0;
}

size_t farm_fedenc_model_head_size(const struct farm_fedenc_model *m)
{
    return farm_params_count(m->params + m->nenc, m->nall - m->nenc);
}

void farm_fedenc_model_get_head(const struct farm_fedenc_model *m, float *out)
{
    size_t off = 0;
    for (size_t i = m->nenc; i < m->nall; i++) {
        size_t n = farm_tensor_size(m->params[i].value);
        memcpy(out + off, m->params[i].value->data, n * sizeof *out);
        off += n;
    }
}

void farm_fedenc_model_set_head(struct farm_fedenc_model *m, const float *in)
{
    size_t off = 0;
    for (size_t i = m->nenc; i < m->nall; i++) {
        size_t n = farm_tensor_size(m->params[i].value);
        memcpy(m->params[i].value->data, in + off, n * sizeof *in);
        off += n;
    }
}

static struct farm_tensor rows_of(const struct farm_tensor *t, size_t rows)
{
    struct farm_tensor v = {0};
    farm_tensor_view_rows(t, 0, rows, &v);
    return v;
}

/* Forward of the encoder on x (rows x width); *emb is a view of the
 * embedding in the workspace. */
static int encoder_forward(struct farm_fedenc_model *m, const struct farm_tensor *x,
                           int keep_cache, struct farm_tensor *emb)
{
    size_t rows = x->rows;
    int rc = 0;
    if (!m->has_gru) {
        struct farm_tensor in = *x;
        for (size_t i = 0; i < m->nfc && rc == 0; i++) {
            struct farm_tensor z = rows_of(&m->z[i], rows), a = rows_of(&m->a[i], rows);
            rc = farm_dense_forward(&m->fc[i], &in, &z);
            if (rc == 0)
                rc = farm_act_forward(FARM_ACT_RELU, &z, &a);
            in = a;
        }
        *emb = in;
        return rc;
    }
    size_t d = m->cfg.input, w = farm_fedenc_encoder_width(&m->cfg);
    struct farm_tensor xt = rows_of(&m->xt, rows);
    struct farm_tensor h[2] = {rows_of(&m->h0, rows), rows_of(&m->h1, rows)};
    farm_tensor_zero(&h[0]);
    for (size_t t = 0; t < m->cfg.steps && rc == 0; t++) {
        for (size_t r = 0; r < rows; r++)
            memcpy(xt.data + r * d, x->data + r * w + t * d, d * sizeof(float));
        rc = farm_gru_forward(&m->gru, &xt, &h[t % 2], &h[(t + 1) % 2],
                              keep_cache ? &m->caches[t] : NULL);
    }
    *emb = h[m->cfg.steps % 2];
    return rc;
}

/* Backward of the encoder given demb (rows x emb, clobbered). */
static int encoder_backward(struct farm_fedenc_model *m, const struct farm_tensor *x,
                            struct farm_tensor *demb)
{
    size_t rows = x->rows;
    int rc = 0;
    if (!m->has_gru) {
        struct farm_tensor g = *demb;
        struct farm_tensor *bufs[2] = {&m->g1, &m->g2};
        for (size_t k = m->nfc; k-- > 0 && rc == 0;) {
            struct farm_tensor z = rows_of(&m->z[k], rows), a = rows_of(&m->a[k], rows);
            rc = farm_act_backward(FARM_ACT_RELU, &z, &a, &g, &g);
            if (rc != 0)
                break;
            const struct farm_tensor *in = k ? &m->a[k - 1] : x;
            struct farm_tensor inv = rows_of(in, rows);
            if (k == 0) {
                rc = farm_dense_backward(&m->fc[k], &inv, &g, NULL);
            } else {
                struct farm_tensor dx = {0};
                farm_tensor_wrap(&dx, bufs[k % 2]->data, rows, m->fc[k].in);
                rc = farm_dense_backward(&m->fc[k], &inv, &g, &dx);
                g = dx;
            }
        }
        return rc;
    }
    struct farm_tensor dh[2];
    farm_tensor_wrap(&dh[0], m->g1.data, rows, m->emb);
    farm_tensor_wrap(&dh[1], m->g2.data, rows, m->emb);
    memcpy(dh[0].data, demb->data, rows * m->emb * sizeof(float));
    for (size_t t = m->cfg.steps; t-- > 0 && rc == 0;) {
        size_t cur = (m->cfg.steps - 1 - t) % 2;
        rc = farm_gru_backward(&m->gru, &m->caches[t], &dh[cur], NULL, t ? &dh[1 - cur] : NULL);
    }
    return rc;
}

static int ensure_order(struct farm_fedenc_model *m, size_t n)
{
    if (m->order_n < n) {
        size_t *o = realloc(m->order, n * sizeof *o);
        if (o == NULL)
            return -ENOMEM;
        m->order = o;
        m->order_n = n;
    }
    for (size_t i = 0; i < n; i++)
        m->order[i] = i;
    return 0;
}

static int check_data(const struct farm_fedenc_model *m, const struct farm_dataset *d,
                      struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(d->n == 0, err, FARM_EBADDATA, "no samples");
    FARM_RETURN_ERROR_IF(d->x.cols != farm_fedenc_encoder_width(&m->cfg), err, FARM_EBADDATA,
                         "samples have %zu features, the encoder reads %zu", d->x.cols,
                         farm_fedenc_encoder_width(&m->cfg));
    FARM_RETURN_ERROR_IF(d->labels == NULL, err, FARM_EBADDATA, "samples have no labels");
    for (size_t i = 0; i < d->n; i++)
        FARM_RETURN_ERROR_IF(d->labels[i] < 0 || (size_t)d->labels[i] >= m->classes, err,
                             FARM_EBADDATA, "label %d of sample %zu is not below %zu classes",
                             d->labels[i], i, m->classes);
    return 0;
}

/* Head-only training: the encoder is frozen, so the embeddings are computed
 * once and the head's epochs run over them. */
static int train_head_cached(struct farm_fedenc_model *m, const struct farm_dataset *d,
                             size_t bs, uint32_t epochs, struct farm_optim *opt,
                             struct farm_rng *rng)
{
    struct farm_tensor emb_all = {0}, eb = {0};
    int rc = farm_tensor_init(&emb_all, d->n, m->emb);
    if (rc == 0)
        rc = farm_tensor_init(&eb, bs, m->emb);
    for (size_t first = 0; first < d->n && rc == 0; first += m->ws_rows) {
        size_t count = d->n - first < m->ws_rows ? d->n - first : m->ws_rows;
        struct farm_tensor emb;
        if ((rc = farm_tensor_resize_rows(&m->xb, count)) == 0)
            rc = farm_data_batch(d, NULL, first, count, &m->xb, NULL, NULL);
        if (rc == 0)
            rc = encoder_forward(m, &m->xb, 0, &emb);
        if (rc == 0)
            memcpy(emb_all.data + first * m->emb, emb.data, count * m->emb * sizeof(float));
    }
    for (uint32_t e = 0; e < epochs && rc == 0; e++) {
        if (bs < d->n)
            farm_rng_shuffle(rng, m->order, d->n);
        for (size_t first = 0; first < d->n && rc == 0; first += bs) {
            size_t count = d->n - first < bs ? d->n - first : bs;
            struct farm_tensor ev = rows_of(&eb, count), logits = rows_of(&m->logits, count);
            rc = farm_tensor_gather_rows(&ev, &emb_all, m->order + first, count);
            for (size_t i = 0; i < count; i++)
                m->lb[i] = d->labels[m->order[first + i]];
            farm_params_zero_grad(m->params + m->nenc, m->nall - m->nenc);
            if (rc == 0)
                rc = farm_dense_forward(&m->head, &ev, &logits);
            if (rc == 0)
                rc = farm_loss_softmax_ce(&logits, m->lb, 1.0f / (float)count, &logits, NULL,
                                          NULL);
            if (rc == 0)
                rc = farm_dense_backward(&m->head, &ev, &logits, NULL);
            if (rc == 0)
                farm_optim_step(opt);
        }
    }
    farm_tensor_release(&emb_all);
    farm_tensor_release(&eb);
    return rc;
}

static int train(struct farm_fedenc_model *m, const struct farm_dataset *d,
                 const struct farm_fedenc_hp *hp, uint32_t epochs, int head_only,
                 const float *center, uint64_t shuffle_seed, double *mean_loss,
                 struct farm_err *err)
{
    int rc = check_data(m, d, err);
    if (rc != 0)
        return rc;
    size_t bs = hp->batch == 0 || hp->batch > d->n ? d->n : hp->batch;
    if ((rc = ws_ensure(m, bs)) != 0 || (rc = ensure_order(m, d->n)) != 0)
        return farm_err_set(err, rc, "out of memory");
    struct farm_optim_config oc;
    farm_optim_config_default(&oc, FARM_OPTIM_SGD);
    oc.lr = (float)hp->lr;
    oc.momentum = (float)hp->momentum;
    struct farm_optim *opt = NULL;
    const struct farm_nn_param *plist = head_only ? m->params + m->nenc : m->params;
    size_t pn = head_only ? m->nall - m->nenc : m->nall;
    if ((rc = farm_optim_new(&oc, plist, pn, &opt, err)) != 0)
        return rc;
    struct farm_rng rng;
    farm_rng_seed(&rng, shuffle_seed);
    if (head_only) {
        rc = train_head_cached(m, d, bs, epochs, opt, &rng);
        farm_optim_free(opt);
        if (rc != 0)
            return farm_err_set(err, rc, "head training failed: %s", farm_strerror(rc));
        return 0;
    }
    double last = 0;
    for (uint32_t e = 0; e < epochs && rc == 0; e++) {
        if (bs < d->n)
            farm_rng_shuffle(&rng, m->order, d->n);
        double lsum = 0;
        for (size_t first = 0; first < d->n && rc == 0; first += bs) {
            size_t count = d->n - first < bs ? d->n - first : bs;
            if ((rc = farm_tensor_resize_rows(&m->xb, count)) != 0)
                break;
            rc = farm_data_batch(d, m->order, first, count, &m->xb, m->lb, NULL);
            farm_params_zero_grad(m->params, m->nall);
            struct farm_tensor emb, logits = rows_of(&m->logits, count),
                                    demb = rows_of(&m->demb, count);
            if (rc == 0)
                rc = encoder_forward(m, &m->xb, !head_only, &emb);
            if (rc == 0)
                rc = farm_dense_forward(&m->head, &emb, &logits);
            double ls = 0;
            if (rc == 0)
                rc = farm_loss_softmax_ce(&logits, m->lb, 1.0f / (float)count, &logits, &ls, NULL);
            lsum += ls;
            if (rc == 0)
                rc = farm_dense_backward(&m->head, &emb, &logits, head_only ? NULL : &demb);
            if (rc == 0 && !head_only)
                rc = encoder_backward(m, &m->xb, &demb);
            if (rc == 0 && !head_only && hp->mu > 0) {
                /* FedProx: the gradient of mu/2 |w - center|^2. */
                size_t off = 0;
                float mu = (float)hp->mu;
                for (size_t i = 0; i < m->nenc; i++) {
                    size_t n = farm_tensor_size(m->params[i].value);
                    const float *w = m->params[i].value->data;
                    float *g = m->params[i].grad->data;
                    for (size_t k = 0; k < n; k++)
                        g[k] += mu * (w[k] - center[off + k]);
                    off += n;
                }
            }
            if (rc == 0)
                farm_optim_step(opt);
        }
        last = lsum / (double)d->n;
        if (rc == 0 && !isfinite(last))
            rc = farm_err_set(err, FARM_ENUMERIC, "training loss is not finite (lr too high?)");
    }
    farm_optim_free(opt);
    if (rc != 0) {
        if (err && err->code != rc)
            farm_err_set(err, rc, "training failed: %s", farm_strerror(rc));
        return rc;
    }
    if (mean_loss)
        *mean_loss = last;
    return 0;
}

int farm_fedenc_model_train(struct farm_fedenc_model *m, const struct farm_dataset *d,
                            const struct farm_fedenc_hp *hp, const float *center,
                            uint64_t shuffle_seed, double *mean_loss, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(hp->mu > 0 && center == NULL, err, -EINVAL,
                         "FedProx needs the round's starting encoder");
    if (err)
        err->code = 0;
    return train(m, d, hp, hp->epochs, 0, center, shuffle_seed, mean_loss, err);
}

int farm_fedenc_model_train_head(struct farm_fedenc_model *m, const struct farm_dataset *d,
                                 const struct farm_fedenc_hp *hp, uint32_t epochs,
                                 uint64_t shuffle_seed, struct farm_err *err)
{
    if (err)
        err->code = 0;
    return train(m, d, hp, epochs, 1, NULL, shuffle_seed, NULL, err);
}

int farm_fedenc_model_evaluate(struct farm_fedenc_model *m, const struct farm_dataset *d,
                               double *loss_sum, uint64_t *correct, struct farm_err *err)
{
    int rc = check_data(m, d, err);
    if (rc != 0)
        return rc;
    size_t bs = d->n < 256 ? d->n : 256;
    if (m->ws_rows > bs)
        bs = m->ws_rows < d->n ? m->ws_rows : d->n;
    if ((rc = ws_ensure(m, bs)) != 0)
        return farm_err_set(err, rc, "out of memory");
    double lsum = 0;
    size_t corr = 0;
    for (size_t first = 0; first < d->n && rc == 0; first += bs) {
        size_t count = d->n - first < bs ? d->n - first : bs;
        if ((rc = farm_tensor_resize_rows(&m->xb, count)) != 0)
            break;
        rc = farm_data_batch(d, NULL, first, count, &m->xb, m->lb, NULL);
        struct farm_tensor emb, logits = rows_of(&m->logits, count);
        if (rc == 0)
            rc = encoder_forward(m, &m->xb, 0, &emb);
        if (rc == 0)
            rc = farm_dense_forward(&m->head, &emb, &logits);
        double ls = 0;
        size_t c = 0;
        if (rc == 0)
            rc = farm_loss_softmax_ce(&logits, m->lb, 1.0f, NULL, &ls, &c);
        lsum += ls;
        corr += c;
    }
    if (rc != 0)
        return farm_err_set(err, rc, "evaluation failed: %s", farm_strerror(rc));
    *loss_sum = lsum;
    *correct = corr;
    return 0;
}

int farm_fedenc_model_save_encoder(struct farm_fedenc_model *m, const char *path,
                                   const json_t *meta, struct farm_err *err)
{
    return farm_safetensors_save(path, m->params, m->nenc, meta, err);
}
