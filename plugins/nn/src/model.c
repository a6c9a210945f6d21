/* Model descriptions: YAML through farm_base's yamljson, checked with
 * file:line:col messages. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/yamljson.h"
#include "nn-internal.h"

struct ctx {
    struct farm_yaml_doc *doc;
    struct farm_err *err;
};

#define FAIL(c, node, ...) farm_yaml_error((c)->doc, (node), (c)->err, FARM_EBADMODEL, __VA_ARGS__)

static void mark(const struct ctx *c, const json_t *node, int *line, int *col)
{
    if (farm_yaml_mark(c->doc, node, line, col) < 0) {
        *line = 1;
        *col = 1;
    }
}

/* Every key of `obj` must be in the NULL-terminated list `allowed`. */
static int check_keys(struct ctx *c, const json_t *obj, const char *what,
                      const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (!ok) {
            char list[512];
            size_t k = 0;
            for (size_t i = 0; allowed[i] && k < sizeof list; i++)
                k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", allowed[i]);
            return FAIL(c, val, "%s: unknown key '%s' (expected one of: %s)", what, key, list);
        }
    }
    return 0;
}

static int get_uint(struct ctx *c, const json_t *obj, const char *what, const char *key,
                    bool required, size_t dflt, size_t *out, const json_t **node)
{
    const json_t *v = json_object_get(obj, key);
    if (node)
        *node = v;
    if (!v) {
        if (required)
            return FAIL(c, obj, "%s: missing key '%s'", what, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return FAIL(c, v, "%s.%s: expected a positive integer", what, key);
    *out = (size_t)json_integer_value(v);
    return 0;
}

static int get_num(struct ctx *c, const json_t *obj, const char *what, const char *key, double dflt,
                   double lo, double hi, bool lo_open, double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v))
        return FAIL(c, v, "%s.%s: expected a number", what, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
        return FAIL(c, v, "%s.%s: %g is out of range (%s%g, %g]", what, key, x, lo_open ? "(" : "[",
                    lo, hi);
    *out = x;
    return 0;
}

static int get_str(struct ctx *c, const json_t *obj, const char *what, const char *key,
                   bool required, const char **out, const json_t **node)
{
    const json_t *v = json_object_get(obj, key);
    if (node)
        *node = v;
    if (!v) {
        if (required)
            return FAIL(c, obj, "%s: missing key '%s'", what, key);
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return FAIL(c, v, "%s.%s: expected a non-empty string", what, key);
    *out = json_string_value(v);
    return 0;
}

static int parse_optimizer(struct ctx *c, const json_t *o, struct farm_optim_config *cfg)
{
    if (!o) {
        farm_optim_config_default(cfg, FARM_OPTIM_SGD);
        return 0;
    }
    if (!json_is_object(o))
        return FAIL(c, o, "optimizer: expected a mapping with a 'type' (sgd or adam)");
    static const char *const keys[] = {"type", "lr",           "momentum", "betas",
                                       "eps",  "weight_decay", NULL};
    int rc = check_keys(c, o, "optimizer", keys);
    if (rc < 0)
        return rc;
    const char *type;
    const json_t *tn;
    if ((rc = get_str(c, o, "optimizer", "type", true, &type, &tn)) < 0)
        return rc;
    enum farm_optim_kind kind;
    if (farm_optim_parse(type, &kind) < 0)
        return FAIL(c, tn, "optimizer.type: unknown optimizer '%s' (expected sgd or adam)", type);
    farm_optim_config_default(cfg, kind);
    double lr, mom, eps, wd;
    if ((rc = get_num(c, o, "optimizer", "lr", cfg->lr, 0, 1e6, true, &lr)) < 0 ||
        (rc = get_num(c, o, "optimizer", "momentum", 0, 0, 0.999999, false, &mom)) < 0 ||
        (rc = get_num(c, o, "optimizer", "eps", cfg->eps, 0, 1, true, &eps)) < 0 ||
        (rc = get_num(c, o, "optimizer", "weight_decay", 0, 0, 1e6, false, &wd)) < 0)
        return rc;
    if (kind == FARM_OPTIM_ADAM && json_object_get(o, "momentum"))
        return FAIL(c, json_object_get(o, "momentum"),
                    "optimizer.momentum: adam takes 'betas', not 'momentum'");
    const json_t *b = json_object_get(o, "betas");
    if (b) {
        if (kind != FARM_OPTIM_ADAM)
            return FAIL(c, b, "optimizer.betas: only adam takes betas");
        if (!json_is_array(b) || json_array_size(b) != 2 || !json_is_number(json_array_get(b, 0)) ||
            !json_is_number(json_array_get(b, 1)))
            return FAIL(c, b, "optimizer.betas: expected a list of two numbers, like [0.9, 0.999]");
        double b1 = json_number_value(json_array_get(b, 0));
        double b2 = json_number_value(json_array_get(b, 1));
        if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1))
            return FAIL(c, b, "optimizer.betas: each must be in [0, 1)");
        cfg->beta1 = (float)b1;
        cfg->beta2 = (float)b2;
    }
    cfg->lr = (float)lr;
    cfg->momentum = (float)mom;
    cfg->eps = (float)eps;
    cfg->weight_decay = (float)wd;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int parse_data(struct ctx *c, const json_t *o, struct farm_data_desc *d)
{
    memset(d, 0, sizeof *d);
    d->label_column = -1;
    d->scale = 1.0;
    d->test_fraction = 0.2;
    if (!o)
        return 0;
    if (!json_is_object(o))
        return FAIL(c, o, "data: expected a mapping with a 'source'");
    mark(c, o, &d->line, &d->col);
    static const char *const keys[] = {
        "source",  "path",   "labels", "label_column", "scale",         "standardize", "n", "dim",
        "classes", "spread", "noise",  "turns",        "test_fraction", "seed",        NULL};
    int rc = check_keys(c, o, "data", keys);
    if (rc < 0)
        return rc;
    const char *src, *path = NULL, *labels = NULL; /* NULL: key not given */
    const json_t *sn;
    if ((rc = get_str(c, o, "data", "source", true, &src, &sn)) < 0)
        return rc;
    if (!strcmp(src, "csv"))
        d->source = FARM_DATA_CSV;
    else if (!strcmp(src, "npy"))
        d->source = FARM_DATA_NPY;
    else if (!strcmp(src, "blobs"))
        d->source = FARM_DATA_BLOBS;
    else if (!strcmp(src, "spirals"))
        d->source = FARM_DATA_SPIRALS;
    else
        return FAIL(c, sn, "data.source: unknown source '%s' (expected csv, npy, blobs or spirals)",
                    src);
    bool file = d->source == FARM_DATA_CSV || d->source == FARM_DATA_NPY;
    if ((rc = get_str(c, o, "data", "path", file, &path, NULL)) < 0 ||
        (rc = get_str(c, o, "data", "labels", false, &labels, NULL)) < 0)
        return rc;
    const json_t *lcn = json_object_get(o, "label_column");
    if (lcn) {
        if (!json_is_integer(lcn) || json_integer_value(lcn) < -1000 ||
            json_integer_value(lcn) > 100000)
            return FAIL(c, lcn, "data.label_column: expected a column index (-1 for the last)");
        d->label_column = (int)json_integer_value(lcn);
    }
    const json_t *st = json_object_get(o, "standardize");
    if (st && !json_is_boolean(st))
        return FAIL(c, st, "data.standardize: expected true or false");
    d->standardize = st && json_is_true(st);
    const json_t *seed = json_object_get(o, "seed");
    if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0))
        return FAIL(c, seed, "data.seed: expected an integer >= 0");
    d->seed = seed ? (uint64_t)json_integer_value(seed) : 0;
    bool gen = !file;
    if ((rc = get_uint(c, o, "data", "n", gen, 0, &d->n, NULL)) < 0 ||
        (rc = get_uint(c, o, "data", "dim", d->source == FARM_DATA_BLOBS, 2, &d->dim, NULL)) < 0 ||
        (rc = get_uint(c, o, "data", "classes", d->source == FARM_DATA_BLOBS, 2, &d->classes,
                       NULL)) < 0 ||
        (rc = get_num(c, o, "data", "scale", 1.0, -1e30, 1e30, false, &d->scale)) < 0 ||
        (rc = get_num(c, o, "data", "spread", 1.0, 0, 1e6, false, &d->spread)) < 0 ||
        (rc = get_num(c, o, "data", "noise", 0.1, 0, 1e6, false, &d->noise)) < 0 ||
        (rc = get_num(c, o, "data", "turns", 1.5, 0, 1e3, true, &d->turns)) < 0 ||
        (rc = get_num(c, o, "data", "test_fraction", 0.2, 0, 0.99, true, &d->test_fraction)) < 0)
        return rc;
    if ((path && !(d->path = strdup(path))) || (labels && !(d->labels_path = dup_or_null(labels))))
        return farm_err_set(c->err, -ENOMEM, "out of memory");
    return 0;
}

static int parse_layers(struct ctx *c, const json_t *layers, const json_t *input_node,
                        struct farm_model_desc *m)
{
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return FAIL(c, layers, "layers: expected a non-empty list of layers");
    size_t n = json_array_size(layers);
    m->layers = calloc(n, sizeof *m->layers);
    if (!m->layers)
        return farm_err_set(c->err, -ENOMEM, "out of memory");
    m->n_layers = n;
    size_t width = m->input; /* 0: not known yet */
    const char *prev = "input";
    for (size_t i = 0; i < n; i++) {
        const json_t *l = json_array_get(layers, i);
        struct farm_layer_desc *ld = &m->layers[i];
        char what[96];
        snprintf(what, sizeof what, "layers[%zu]", i);
        if (!json_is_object(l))
            return FAIL(c, l, "%s: expected a mapping with name and type", what);
        mark(c, l, &ld->line, &ld->col);
        const json_t *nv = json_object_get(l, "name");
        if (json_is_string(nv))
            snprintf(what, sizeof what, "layers[%zu] (%.60s)", i, json_string_value(nv));
        static const char *const keys[] = {"name", "type", "in", "out", "activation", NULL};
        int rc = check_keys(c, l, what, keys);
        if (rc < 0)
            return rc;
        snprintf(what, sizeof what, "layers[%zu]", i);
        const char *name, *type, *act = NULL;
        const json_t *nn, *tn, *an, *in_node;
        if ((rc = get_str(c, l, what, "name", true, &name, &nn)) < 0)
            return rc;
        if (strlen(name) >= FARM_LAYER_NAME_MAX)
            return FAIL(c, nn, "%s.name: longer than %d characters", what, FARM_LAYER_NAME_MAX - 1);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(m->layers[k].name, name))
                return FAIL(c, nn, "%s.name: duplicate layer name '%s' (also layers[%zu])", what,
                            name, k);
        snprintf(what, sizeof what, "layers[%zu] (%s)", i, name);
        memcpy(ld->name, name, strlen(name) + 1);
        if ((rc = get_str(c, l, what, "type", true, &type, &tn)) < 0 ||
            (rc = get_str(c, l, what, "activation", false, &act, &an)) < 0)
            return rc;
        ld->act = FARM_ACT_NONE;
        if (act && farm_act_parse(act, &ld->act) < 0)
            return FAIL(c, an,
                        "%s.activation: unknown activation '%s' (expected relu, tanh, sigmoid, "
                        "gelu or none)",
                        what, act);
        size_t in = 0;
        if ((rc = get_uint(c, l, what, "in", false, 0, &in, &in_node)) < 0)
            return rc;
        if (!strcmp(type, "dense")) {
            ld->kind = FARM_LAYER_DENSE;
            if ((rc = get_uint(c, l, what, "out", true, 0, &ld->out, NULL)) < 0)
                return rc;
            if (width == 0) {
                if (!in_node)
                    return FAIL(c, l,
                                "%s: missing key 'in' (the first dense layer needs it when the "
                                "model has no 'input')",
                                what);
                width = in;
            } else if (in_node && in != width) {
                return FAIL(c, in_node,
                            "%s.in: shape mismatch: %zu, but the previous layer (%s) gives %zu",
                            what, in, prev, width);
            }
            ld->in = width;
        } else if (!strcmp(type, "activation")) {
            ld->kind = FARM_LAYER_ACT;
            if (!act)
                return FAIL(c, l, "%s: missing key 'activation'", what);
            const json_t *on = json_object_get(l, "out");
            if (width == 0) {
                if (!in_node)
                    return FAIL(c, l,
                                "%s: missing key 'in' (a first activation layer needs it when "
                                "the model has no 'input')",
                                what);
                width = in;
            } else if (in_node && in != width) {
                return FAIL(c, in_node,
                            "%s.in: shape mismatch: %zu, but the previous layer (%s) gives %zu",
                            what, in, prev, width);
            }
            if (on) {
                size_t out = width; /* an activation keeps its width */
                if ((rc = get_uint(c, l, what, "out", false, 0, &out, NULL)) < 0)
                    return rc;
                if (out != width)
                    return FAIL(c, on,
                                "%s.out: shape mismatch: an activation keeps its width %zu, "
                                "not %zu",
                                what, width, out);
            }
            ld->in = ld->out = width;
        } else {
            return FAIL(c, tn, "%s.type: unknown layer type '%s' (expected dense or activation)",
                        what, type);
        }
        width = ld->out;
        prev = ld->name;
        if (i == 0 && m->input == 0)
            m->input = ld->in;
    }
    (void)input_node;
    return 0;
}

static int build(struct farm_yaml_doc *doc, const char *dir, struct farm_model_desc **out,
                 struct farm_err *err)
{
    struct ctx c = {doc, err};
    const json_t *root = farm_yaml_root(doc);
    if (!json_is_object(root))
        return FAIL(&c, root, "expected a mapping with 'layers' (a model description)");
    static const char *const keys[] = {"name",       "input", "layers", "loss", "optimizer",
                                       "batch_size", "init",  "seed",   "data", NULL};
    int rc = check_keys(&c, root, "model", keys);
    if (rc < 0)
        return rc;
    struct farm_model_desc *m = calloc(1, sizeof *m);
    if (!m)
        return farm_err_set(err, -ENOMEM, "out of memory");
    const char *name = NULL, *loss = NULL, *init = NULL; /* NULL: key not given */
    const json_t *input_node, *ln, *in_n;
    if ((rc = get_str(&c, root, "model", "name", false, &name, NULL)) < 0)
        goto fail;
    m->name = strdup(name ? name : "");
    m->file = strdup(farm_yaml_name(doc));
    m->dir = strdup(dir);
    if (!m->name || !m->file || !m->dir) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = get_uint(&c, root, "model", "input", false, 0, &m->input, &input_node)) < 0)
        goto fail;
    const json_t *layers = json_object_get(root, "layers");
    if (!layers) {
        rc = FAIL(&c, root, "model: missing key 'layers'");
        goto fail;
    }
    if ((rc = parse_layers(&c, layers, input_node, m)) < 0)
        goto fail;
    if ((rc = get_str(&c, root, "model", "loss", false, &loss, &ln)) < 0)
        goto fail;
    m->loss = FARM_LOSS_SOFTMAX_CE;
    if (loss && farm_loss_parse(loss, &m->loss) < 0) {
        rc = FAIL(&c, ln, "loss: unknown loss '%s' (expected softmax_cross_entropy or mse)", loss);
        goto fail;
    }
    if (m->loss == FARM_LOSS_SOFTMAX_CE && farm_model_desc_output(m) < 2) {
        const json_t *last = json_array_get(layers, json_array_size(layers) - 1);
        rc = FAIL(&c, ln ? ln : json_object_get(last, "out"),
                  "loss: softmax_cross_entropy needs at least 2 outputs, the last layer gives %zu",
                  farm_model_desc_output(m));
        goto fail;
    }
    if ((rc = parse_optimizer(&c, json_object_get(root, "optimizer"), &m->optim)) < 0)
        goto fail;
    if ((rc = get_uint(&c, root, "model", "batch_size", false, 32, &m->batch_size, NULL)) < 0)
        goto fail;
    if ((rc = get_str(&c, root, "model", "init", false, &init, &in_n)) < 0)
        goto fail;
    m->init = FARM_INIT_HE;
    if (init) {
        if (!strcmp(init, "xavier") || !strcmp(init, "glorot"))
            m->init = FARM_INIT_XAVIER;
        else if (strcmp(init, "he") != 0 && strcmp(init, "kaiming") != 0) {
            rc = FAIL(&c, in_n, "init: unknown initialisation '%s' (expected he or xavier)", init);
            goto fail;
        }
    }
    const json_t *seed = json_object_get(root, "seed");
    if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0)) {
        rc = FAIL(&c, seed, "seed: expected an integer >= 0");
        goto fail;
    }
    m->seed = seed ? (uint64_t)json_integer_value(seed) : 0;
    if ((rc = parse_data(&c, json_object_get(root, "data"), &m->data)) < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    farm_model_desc_free(m);
    return rc;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

int farm_model_desc_load(const char *path, const char *display, struct farm_model_desc **out,
                         struct farm_err *err)
{
    struct farm_yaml_doc *doc;
    int rc = farm_yaml_load_file(path, display, &doc, err);
    if (rc < 0)
        return rc;
    char *dir = dir_of(path);
    if (!dir) {
        farm_yaml_free(doc);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    rc = build(doc, dir, out, err);
    free(dir);
    farm_yaml_free(doc);
    return rc;
}

int farm_model_desc_parse(const char *text, size_t len, const char *display,
                          struct farm_model_desc **out, struct farm_err *err)
{
    struct farm_yaml_doc *doc;
    int rc = farm_yaml_load_string(text, len, display, &doc, err);
    if (rc < 0)
        return rc;
    rc = build(doc, ".", out, err);
    farm_yaml_free(doc);
    return rc;
}

void farm_model_desc_free(struct farm_model_desc *d)
{
    if (!d)
        return;
    free(d->name);
    free(d->file);
    free(d->dir);
    free(d->layers);
    free(d->data.path);
    free(d->data.labels_path);
    free(d);
}

int farm_model_desc_find(const struct farm_model_desc *d, const char *name)
{
    for (size_t i = 0; i < d->n_layers; i++)
        if (!strcmp(d->layers[i].name, name))
            return (int)i;
    return -1;
}

size_t farm_model_desc_output(const struct farm_model_desc *d)
{
    return d->n_layers ? d->layers[d->n_layers - 1].out : 0;
}

static char *resolve(const char *base, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    size_t n = strlen(base) + strlen(p) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", base, p);
    return s;
}

static int one_hot(struct farm_dataset *d, size_t width)
{
    int rc = farm_tensor_init(&d->y, d->n, width);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < d->n; i++)
        d->y.data[i * width + (size_t)d->labels[i]] = 1.0f;
    return 0;
}

int farm_model_desc_load_data(const struct farm_model_desc *m, const char *base_dir,
                              struct farm_dataset *train, struct farm_dataset *test,
                              struct farm_err *err)
{
    const struct farm_data_desc *dd = &m->data;
    const char *base = base_dir ? base_dir : m->dir;
    int line = dd->line, col = dd->col;
    if (dd->source == FARM_DATA_NONE)
        return farm_err_set(err, FARM_EBADMODEL, "%s: the model description has no 'data'",
                            m->file);
    struct farm_dataset all;
    memset(&all, 0, sizeof all);
    struct farm_err sub;
    farm_err_clear(&sub);
    int rc = 0;
    char *p1 = NULL, *p2 = NULL;
    switch (dd->source) {
    case FARM_DATA_CSV:
        if (!(p1 = resolve(base, dd->path)))
            rc = farm_err_set(&sub, -ENOMEM, "out of memory");
        else
            rc = farm_data_load_csv(p1, dd->label_column, &all, &sub);
        break;
    case FARM_DATA_NPY:
        if (!(p1 = resolve(base, dd->path)) ||
            (dd->labels_path && !(p2 = resolve(base, dd->labels_path))))
            rc = farm_err_set(&sub, -ENOMEM, "out of memory");
        else
            rc = farm_data_load_npy(p1, p2, &all, &sub);
        break;
    case FARM_DATA_BLOBS:
        rc = farm_data_blobs(&all, dd->n, dd->dim, dd->classes, (float)dd->spread, dd->seed, &sub);
        break;
    case FARM_DATA_SPIRALS:
        rc = farm_data_spirals(&all, dd->n, (float)dd->noise, (float)dd->turns, dd->seed, &sub);
        break;
    default:
        rc = farm_err_set(&sub, -EINVAL, "no data source");
    }
    free(p1);
    free(p2);
    if (rc < 0)
        return farm_err_set(err, rc, "%s:%d:%d: data: %s", m->file, line, col, sub.msg);
    if (all.x.cols != m->input) {
        rc = farm_err_set(err, FARM_EBADMODEL,
                          "%s:%d:%d: data: samples have %zu features, the model's input is %zu",
                          m->file, line, col, all.x.cols, m->input);
        goto out;
    }
    size_t outw = farm_model_desc_output(m);
    if (!all.labels && (m->loss == FARM_LOSS_SOFTMAX_CE || all.y.rows == 0)) {
        rc = farm_err_set(err, FARM_EBADMODEL, "%s:%d:%d: data: the samples have no labels",
                          m->file, line, col);
        goto out;
    }
    if (all.labels && all.classes > outw) {
        rc = farm_err_set(err, FARM_EBADMODEL,
                          "%s:%d:%d: data: labels go up to %zu, the model has %zu outputs", m->file,
                          line, col, all.classes - 1, outw);
        goto out;
    }
    if (m->loss == FARM_LOSS_MSE && all.y.rows == 0 && (rc = one_hot(&all, outw)) < 0) {
        farm_err_set(err, rc, "out of memory");
        goto out;
    }
    if (dd->scale != 1.0)
        farm_tensor_scale(&all.x, (float)dd->scale);
    rc = farm_data_split(&all, dd->test_fraction, dd->seed, train, test, &sub);
    if (rc < 0) {
        farm_err_set(err, rc, "%s:%d:%d: data: %s", m->file, line, col, sub.msg);
        goto out;
    }
    if (dd->standardize)
        farm_data_standardize(train, test);
out:
    farm_dataset_release(&all);
    return rc;
}
