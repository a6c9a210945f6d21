/* Operator graphs and clusters: the YAML formats, shape inference. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched_ops.h"
#include "farm/yamljson.h"
#include "ops-internal.h"

static const char *const kind_names[FARM_GS_NOPKINDS] = {
    "input", "matmul", "add", "relu", "softmax", "layernorm", "rowsum", "concat", "split"};
static const int kind_class[FARM_GS_NOPKINDS] = {
    -1,
    FARM_GS_CLASS_MATMUL,
    FARM_GS_CLASS_ELEMWISE,
    FARM_GS_CLASS_ELEMWISE,
    FARM_GS_CLASS_REDUCTION,
    FARM_GS_CLASS_REDUCTION,
    FARM_GS_CLASS_REDUCTION,
    FARM_GS_CLASS_COPY,
    FARM_GS_CLASS_COPY};
static const char *const class_names[FARM_GS_NCLASSES] = {"matmul", "elementwise", "reduction",
                                                           "copy"};

const char *farm_gs_opkind_name(int kind)
{
    return kind >= 0 && kind < FARM_GS_NOPKINDS ? kind_names[kind] : NULL;
}

int farm_gs_opkind_class(int kind)
{
    return kind >= 0 && kind < FARM_GS_NOPKINDS ? kind_class[kind] : -1;
}

const char *farm_gs_class_name(int cls)
{
    return cls >= 0 && cls < FARM_GS_NCLASSES ? class_names[cls] : NULL;
}

void farm_gs_opgraph_release(struct farm_gs_opgraph *g)
{
    if (!g)
        return;
    free(g->ops);
    free(g->outputs);
    memset(g, 0, sizeof *g);
}

int farm__gs_opgraph_add(struct farm_gs_opgraph *g, const struct farm_gs_op *op)
{
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 32;
        struct farm_gs_op *p = realloc(g->ops, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        g->ops = p;
        g->cap = cap;
    }
    g->ops[g->n] = *op;
    return g->n++;
}

/* Output shape of op from its inputs; a message in why on failure. */
int farm__gs_infer(const struct farm_gs_opgraph *g, struct farm_gs_op *op, char *why,
                   size_t len)
{
    const struct farm_gs_op *a = op->nin > 0 ? &g->ops[op->in[0]] : NULL;
    switch (op->kind) {
    case FARM_GS_OP_MATMUL: {
        if (op->nin != 2)
            return snprintf(why, len, "matmul takes 2 inputs, got %d", op->nin), -1;
        const struct farm_gs_op *b = &g->ops[op->in[1]];
        if (a->cols != b->rows)
            return snprintf(why, len, "matmul: %s is [%d, %d] but %s is [%d, %d]", a->name,
                            a->rows, a->cols, b->name, b->rows, b->cols),
                   -1;
        op->rows = a->rows;
        op->cols = b->cols;
        return 0;
    }
    case FARM_GS_OP_ADD:
        if (op->nin < 2)
            return snprintf(why, len, "add takes at least 2 inputs, got %d", op->nin), -1;
        for (int i = 1; i < op->nin; i++) {
            const struct farm_gs_op *b = &g->ops[op->in[i]];
            if (b->rows != a->rows || b->cols != a->cols)
                return snprintf(why, len, "add: %s is [%d, %d] but %s is [%d, %d]", a->name,
                                a->rows, a->cols, b->name, b->rows, b->cols),
                       -1;
        }
        op->rows = a->rows;
        op->cols = a->cols;
        return 0;
    case FARM_GS_OP_RELU:
    case FARM_GS_OP_SOFTMAX:
    case FARM_GS_OP_LAYERNORM:
    case FARM_GS_OP_ROWSUM:
        if (op->nin != 1)
            return snprintf(why, len, "%s takes 1 input, got %d", kind_names[op->kind],
                            op->nin),
                   -1;
        op->rows = a->rows;
        op->cols = op->kind == FARM_GS_OP_ROWSUM ? 1 : a->cols;
        return 0;
    case FARM_GS_OP_CONCAT: {
        if (op->nin < 1)
            return snprintf(why, len, "concat takes at least 1 input"), -1;
        int sum = 0;
        for (int i = 0; i < op->nin; i++) {
            const struct farm_gs_op *b = &g->ops[op->in[i]];
            int other = op->axis ? b->rows : b->cols, first = op->axis ? a->rows : a->cols;
            if (other != first)
                return snprintf(why, len,
                                "concat along axis %d: %s is [%d, %d] but %s is [%d, %d]",
                                op->axis, a->name, a->rows, a->cols, b->name, b->rows, b->cols),
                       -1;
            sum += op->axis ? b->cols : b->rows;
        }
        op->rows = op->axis ? a->rows : sum;
        op->cols = op->axis ? sum : a->cols;
        return 0;
    }
    case FARM_GS_OP_SLICE: {
        if (op->nin != 1)
            return snprintf(why, len, "split takes 1 input, got %d", op->nin), -1;
        int dim = op->axis ? a->cols : a->rows;
        int l = op->axis ? op->cols : op->rows;
        if (op->off < 0 || l < 1 || op->off + l > dim)
            return snprintf(why, len, "split: part [%d, %d) outside %d", op->off, op->off + l,
                            dim),
                   -1;
        if (op->axis)
            op->rows = a->rows;
        else
            op->cols = a->cols;
        return 0;
    }
    default:
        return snprintf(why, len, "unknown operator"), -1;
    }
}

static int find_op(const struct farm_gs_opgraph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->ops[i].name, name) == 0)
            return i;
    return -1;
}

static int check_keys(struct farm_yaml_doc *doc, json_t *obj, const char *const *keys,
                      const char *where, struct farm_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        int ok = 0;
        for (int i = 0; keys[i]; i++)
            ok |= strcmp(key, keys[i]) == 0;
        if (!ok)
            return farm_yaml_error(doc, val, err, FARM_EBADSPEC, "%s: unknown key \"%s\"", where,
                                   key);
    }
    return 0;
}

static int get_int(struct farm_yaml_doc *doc, json_t *parent, json_t *v, const char *where,
                   int lo, int hi, int *out, struct farm_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return farm_yaml_error(doc, v ? v : parent, err, FARM_EBADSPEC,
                               "%s: expected an integer in [%d, %d]", where, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_name(struct farm_yaml_doc *doc, json_t *parent, json_t *v, const char *where,
                    char *out, struct farm_err *err)
{
    if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 40)
        return farm_yaml_error(doc, v ? v : parent, err, FARM_EBADSPEC,
                               "%s: expected a name of 1 to 40 characters", where);
    const char *s = json_string_value(v);
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-'))
            return farm_yaml_error(doc, v, err, FARM_EBADSPEC,
                                   "%s: \"%s\": names use letters, digits, _ and -", where, s);
    snprintf(out, FARM_GS_NAMELEN, "%s", s);
    return 0;
}

static int load_graph(struct farm_yaml_doc *doc, struct farm_gs_opgraph *g, struct farm_err *err)
{
    static const char *const top[] = {"name", "inputs", "ops", "outputs", NULL};
    static const char *const in_keys[] = {"name", "shape", "scale", NULL};
    static const char *const op_keys[] = {"name", "op",    "in",    "axis",
                                          "parts", "index", "shape", NULL};
    char where[128], why[256];
    json_t *root = farm_yaml_root(doc);
    int rc;
    if (!json_is_object(root))
        return farm_yaml_error(doc, root, err, FARM_EBADSPEC,
                               "expected a mapping with inputs, ops and outputs");
    if ((rc = check_keys(doc, root, top, "graph", err)))
        return rc;
    json_t *inputs = json_object_get(root, "inputs"), *ops = json_object_get(root, "ops");
    json_t *outs = json_object_get(root, "outputs");
    if (!json_is_array(inputs) || !json_array_size(inputs))
        return farm_yaml_error(doc, inputs ? inputs : root, err, FARM_EBADSPEC,
                               "inputs: expected a non-empty list of {name, shape}");
    if (!json_is_array(ops) || !json_array_size(ops))
        return farm_yaml_error(doc, ops ? ops : root, err, FARM_EBADSPEC,
                               "ops: expected a non-empty list of operators");
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        json_t *x = json_array_get(inputs, i), *sh;
        struct farm_gs_op op = {.kind = FARM_GS_OP_INPUT, .origin = g->n, .scale = 1.0};
        snprintf(where, sizeof where, "inputs[%zu]", i);
        if (!json_is_object(x))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC, "%s: expected {name, shape}",
                                   where);
        if ((rc = check_keys(doc, x, in_keys, where, err)) ||
            (rc = get_name(doc, x, json_object_get(x, "name"), where, op.name, err)))
            return rc;
        if (find_op(g, op.name) >= 0)
            return farm_yaml_error(doc, json_object_get(x, "name"), err, FARM_EBADSPEC,
                                   "%s: duplicate name \"%s\"", where, op.name);
        sh = json_object_get(x, "shape");
        if (!json_is_array(sh) || json_array_size(sh) != 2)
            return farm_yaml_error(doc, sh ? sh : x, err, FARM_EBADSPEC,
                                   "%s.shape: expected [rows, cols]", where);
        if ((rc = get_int(doc, sh, json_array_get(sh, 0), where, 1, 1 << 16, &op.rows, err)) ||
            (rc = get_int(doc, sh, json_array_get(sh, 1), where, 1, 1 << 16, &op.cols, err)))
            return rc;
        json_t *sc = json_object_get(x, "scale");
        if (sc) {
            double v = json_is_number(sc) ? json_number_value(sc) : NAN;
            if (!(v > 0) || !isfinite(v))
                return farm_yaml_error(doc, sc, err, FARM_EBADSPEC,
                                       "%s.scale: expected a number > 0", where);
            op.scale = v;
        }
        if ((rc = farm__gs_opgraph_add(g, &op)) < 0)
            return farm_err_set(err, rc, "out of memory");
    }
    g->ninputs = g->n;
    for (size_t i = 0; i < json_array_size(ops); i++) {
        json_t *x = json_array_get(ops, i), *kind, *in, *v;
        struct farm_gs_op op = {.origin = g->n};
        snprintf(where, sizeof where, "ops[%zu]", i);
        if (!json_is_object(x))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                   "%s: expected {name, op, in, ...}", where);
        if ((rc = check_keys(doc, x, op_keys, where, err)) ||
            (rc = get_name(doc, x, json_object_get(x, "name"), where, op.name, err)))
            return rc;
        if (find_op(g, op.name) >= 0)
            return farm_yaml_error(doc, json_object_get(x, "name"), err, FARM_EBADSPEC,
                                   "%s: duplicate name \"%s\"", where, op.name);
        kind = json_object_get(x, "op");
        op.kind = -1;
        for (int k = 1; json_is_string(kind) && k < FARM_GS_NOPKINDS; k++)
            if (strcmp(json_string_value(kind), kind_names[k]) == 0)
                op.kind = k;
        if (op.kind < 0)
            return farm_yaml_error(doc, kind ? kind : x, err, FARM_EBADSPEC,
                                   "%s.op: expected one of matmul, add, relu, softmax, "
                                   "layernorm, rowsum, concat, split",
                                   where);
        in = json_object_get(x, "in");
        if (!json_is_array(in) || !json_array_size(in) || json_array_size(in) > FARM_GS_MAXIN)
            return farm_yaml_error(doc, in ? in : x, err, FARM_EBADSPEC,
                                   "%s.in: expected a list of 1 to %d names", where,
                                   FARM_GS_MAXIN);
        op.nin = (int)json_array_size(in);
        for (int k = 0; k < op.nin; k++) {
            json_t *nm = json_array_get(in, (size_t)k);
            int j = json_is_string(nm) ? find_op(g, json_string_value(nm)) : -1;
            if (j < 0)
                return farm_yaml_error(doc, nm, err, FARM_EBADSPEC,
                                       "%s.in[%d]: unknown tensor %s%s%s (inputs and earlier "
                                       "ops only)",
                                       where, k, json_is_string(nm) ? "\"" : "",
                                       json_is_string(nm) ? json_string_value(nm) : "(not a name)",
                                       json_is_string(nm) ? "\"" : "");
            op.in[k] = j;
        }
        v = json_object_get(x, "axis");
        if (op.kind == FARM_GS_OP_CONCAT || op.kind == FARM_GS_OP_SLICE) {
            if ((rc = get_int(doc, x, v, where, 0, 1, &op.axis, err)))
                return rc;
        } else if (v || json_object_get(x, "parts") || json_object_get(x, "index")) {
            return farm_yaml_error(doc, v ? v : x, err, FARM_EBADSPEC,
                                   "%s: axis, parts and index are for concat and split only",
                                   where);
        }
        if (op.kind == FARM_GS_OP_SLICE) {
            int parts, index;
            const struct farm_gs_op *a = &g->ops[op.in[0]];
            int dim = op.axis ? a->cols : a->rows;
            if ((rc = get_int(doc, x, json_object_get(x, "parts"), where, 1, dim, &parts, err)) ||
                (rc = get_int(doc, x, json_object_get(x, "index"), where, 0, parts - 1, &index,
                              err)))
                return rc;
            op.off = (int)((long)index * dim / parts);
            int l = (int)((long)(index + 1) * dim / parts) - op.off;
            if (op.axis)
                op.cols = l;
            else
                op.rows = l;
        }
        if (farm__gs_infer(g, &op, why, sizeof why))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC, "%s: %s", where, why);
        json_t *sh = json_object_get(x, "shape");
        if (sh && (!json_is_array(sh) || json_array_size(sh) != 2 ||
                   json_integer_value(json_array_get(sh, 0)) != op.rows ||
                   json_integer_value(json_array_get(sh, 1)) != op.cols))
            return farm_yaml_error(doc, sh, err, FARM_EBADSPEC,
                                   "%s.shape: the output is [%d, %d]", where, op.rows, op.cols);
        if ((rc = farm__gs_opgraph_add(g, &op)) < 0)
            return farm_err_set(err, rc, "out of memory");
    }
    char *used = calloc((size_t)g->n, 1);
    if (!used)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->ops[i].nin; k++)
            used[g->ops[i].in[k]] = 1;
    g->outputs = malloc((size_t)g->n * sizeof(int));
    if (!g->outputs) {
        free(used);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    if (outs) {
        free(used);
        if (!json_is_array(outs) || !json_array_size(outs))
            return farm_yaml_error(doc, outs, err, FARM_EBADSPEC,
                                   "outputs: expected a non-empty list of op names");
        for (size_t k = 0; k < json_array_size(outs); k++) {
            json_t *nm = json_array_get(outs, k);
            int j = json_is_string(nm) ? find_op(g, json_string_value(nm)) : -1;
            if (j < g->ninputs)
                return farm_yaml_error(doc, nm, err, FARM_EBADSPEC,
                                       "outputs[%zu]: expected the name of an op", k);
            for (int q = 0; q < g->nout; q++)
                if (g->outputs[q] == j)
                    return farm_yaml_error(doc, nm, err, FARM_EBADSPEC,
                                           "outputs[%zu]: \"%s\" listed twice", k,
                                           g->ops[j].name);
            g->outputs[g->nout++] = j;
        }
    } else {
        for (int i = g->ninputs; i < g->n; i++)
            if (!used[i])
                g->outputs[g->nout++] = i;
        free(used);
    }
    return 0;
}

int farm_gs_opgraph_load(const char *path, const char *display, struct farm_gs_opgraph *g,
                         struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    memset(g, 0, sizeof *g);
    int rc = farm_yaml_load_file(path, display, &doc, err);
    if (rc)
        return rc;
    rc = load_graph(doc, g, err);
    if (rc)
        farm_gs_opgraph_release(g);
    farm_yaml_free(doc);
    return rc;
}

/* ---- clusters ---- */

void farm_gs_cluster_release(struct farm_gs_cluster *c)
{
    if (!c)
        return;
    free(c->nodes);
    free(c->lat);
    free(c->bw);
    memset(c, 0, sizeof *c);
}

static int get_pos(struct farm_yaml_doc *doc, json_t *parent, json_t *v, const char *where,
                   int zero_ok, double *out, struct farm_err *err)
{
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!isfinite(x) || x < 0 || (!zero_ok && x == 0))
        return farm_yaml_error(doc, v ? v : parent, err, FARM_EBADSPEC, "%s: expected a number %s",
                               where, zero_ok ? ">= 0" : "> 0");
    *out = x;
    return 0;
}

static int find_node(const struct farm_gs_cluster *c, const char *name)
{
    for (int i = 0; i < c->p; i++)
        if (strcmp(c->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static int load_link(struct farm_yaml_doc *doc, json_t *x, const char *where, double *lat,
                     double *bw, struct farm_err *err)
{
    int rc;
    if ((rc = get_pos(doc, x, json_object_get(x, "latency"), where, 1, lat, err)) ||
        (rc = get_pos(doc, x, json_object_get(x, "bandwidth"), where, 0, bw, err)))
        return rc;
    return 0;
}

static int load_cluster(struct farm_yaml_doc *doc, struct farm_gs_cluster *c,
                        struct farm_err *err)
{
    static const char *const top[] = {"name", "nodes", "links", "default_link", NULL};
    static const char *const node_keys[] = {"name", "kind", "cores", "speed", NULL};
    static const char *const link_keys[] = {"between", "latency", "bandwidth", NULL};
    static const char *const dl_keys[] = {"latency", "bandwidth", NULL};
    char where[128];
    int rc;
    json_t *root = farm_yaml_root(doc);
    if (!json_is_object(root))
        return farm_yaml_error(doc, root, err, FARM_EBADSPEC,
                               "expected a mapping with nodes and links");
    if ((rc = check_keys(doc, root, top, "cluster", err)))
        return rc;
    json_t *nodes = json_object_get(root, "nodes"), *links = json_object_get(root, "links");
    json_t *dl = json_object_get(root, "default_link");
    if (!json_is_array(nodes) || !json_array_size(nodes) || json_array_size(nodes) > 256)
        return farm_yaml_error(doc, nodes ? nodes : root, err, FARM_EBADSPEC,
                               "nodes: expected a list of 1 to 256 nodes");
    int p = (int)json_array_size(nodes);
    c->p = p;
    c->nodes = calloc((size_t)p, sizeof *c->nodes);
    c->lat = malloc((size_t)p * (size_t)p * sizeof(double));
    c->bw = malloc((size_t)p * (size_t)p * sizeof(double));
    if (!c->nodes || !c->lat || !c->bw)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < p * p; i++)
        c->lat[i] = c->bw[i] = -1;
    for (int i = 0; i < p; i++) {
        json_t *x = json_array_get(nodes, (size_t)i), *v;
        struct farm_gs_node *nd = &c->nodes[i];
        snprintf(where, sizeof where, "nodes[%d]", i);
        if (!json_is_object(x))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                   "%s: expected {name, kind, cores, speed}", where);
        if ((rc = check_keys(doc, x, node_keys, where, err)) ||
            (rc = get_name(doc, x, json_object_get(x, "name"), where, nd->name, err)))
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(c->nodes[j].name, nd->name) == 0)
                return farm_yaml_error(doc, json_object_get(x, "name"), err, FARM_EBADSPEC,
                                       "%s: duplicate node \"%s\"", where, nd->name);
        v = json_object_get(x, "kind");
        if (v && (rc = get_name(doc, x, v, where, nd->kind, err)))
            return rc;
        if (!v)
            snprintf(nd->kind, sizeof nd->kind, "cpu");
        nd->cores = 1;
        v = json_object_get(x, "cores");
        if (v && (rc = get_int(doc, x, v, where, 1, 4096, &nd->cores, err)))
            return rc;
        for (int k = 0; k < FARM_GS_NCLASSES; k++)
            nd->speed[k] = 1.0;
        v = json_object_get(x, "speed");
        if (json_is_number(v)) {
            double s = 1.0; /* the default speed, as above */
            if ((rc = get_pos(doc, x, v, where, 0, &s, err)))
                return rc;
            for (int k = 0; k < FARM_GS_NCLASSES; k++)
                nd->speed[k] = s;
        } else if (json_is_object(v)) {
            const char *key;
            json_t *sv;
            json_object_foreach(v, key, sv)
            {
                int k = 0;
                while (k < FARM_GS_NCLASSES && strcmp(key, class_names[k]))
                    k++;
                if (k == FARM_GS_NCLASSES)
                    return farm_yaml_error(doc, sv, err, FARM_EBADSPEC,
                                           "%s.speed: unknown class \"%s\" (expected matmul, "
                                           "elementwise, reduction, copy)",
                                           where, key);
                if ((rc = get_pos(doc, v, sv, where, 0, &nd->speed[k], err)))
                    return rc;
            }
        } else if (v) {
            return farm_yaml_error(doc, v, err, FARM_EBADSPEC,
                                   "%s.speed: expected a number or {class: number}", where);
        }
    }
    double dlat = -1, dbw = -1;
    if (dl) {
        if (!json_is_object(dl))
            return farm_yaml_error(doc, dl, err, FARM_EBADSPEC,
                                   "default_link: expected {latency, bandwidth}");
        if ((rc = check_keys(doc, dl, dl_keys, "default_link", err)) ||
            (rc = load_link(doc, dl, "default_link", &dlat, &dbw, err)))
            return rc;
    }
    if (links && !json_is_array(links))
        return farm_yaml_error(doc, links, err, FARM_EBADSPEC, "links: expected a list");
    for (size_t i = 0; links && i < json_array_size(links); i++) {
        json_t *x = json_array_get(links, i), *bt;
        snprintf(where, sizeof where, "links[%zu]", i);
        if (!json_is_object(x))
            return farm_yaml_error(doc, x, err, FARM_EBADSPEC,
                                   "%s: expected {between, latency, bandwidth}", where);
        if ((rc = check_keys(doc, x, link_keys, where, err)))
            return rc;
        bt = json_object_get(x, "between");
        if (!json_is_array(bt) || json_array_size(bt) != 2)
            return farm_yaml_error(doc, bt ? bt : x, err, FARM_EBADSPEC,
                                   "%s.between: expected [node, node]", where);
        int a[2];
        for (int k = 0; k < 2; k++) {
            json_t *nm = json_array_get(bt, (size_t)k);
            a[k] = json_is_string(nm) ? find_node(c, json_string_value(nm)) : -1;
            if (a[k] < 0)
                return farm_yaml_error(doc, nm, err, FARM_EBADSPEC,
                                       "%s.between[%d]: unknown node", where, k);
        }
        if (a[0] == a[1])
            return farm_yaml_error(doc, bt, err, FARM_EBADSPEC,
                                   "%s: a link joins two different nodes", where);
        if (c->lat[a[0] * p + a[1]] >= 0)
            return farm_yaml_error(doc, bt, err, FARM_EBADSPEC,
                                   "%s: %s and %s are already linked", where,
                                   c->nodes[a[0]].name, c->nodes[a[1]].name);
        double lat, bw;
        if ((rc = load_link(doc, x, where, &lat, &bw, err)))
            return rc;
        c->lat[a[0] * p + a[1]] = c->lat[a[1] * p + a[0]] = lat;
        c->bw[a[0] * p + a[1]] = c->bw[a[1] * p + a[0]] = bw;
    }
    for (int i = 0; i < p; i++)
        for (int j = 0; j < p; j++) {
            if (i == j) {
                c->lat[i * p + j] = 0;
                c->bw[i * p + j] = INFINITY;
            } else if (c->lat[i * p + j] < 0) {
                if (dlat < 0)
                    return farm_yaml_error(doc, links ? links : root, err, FARM_EBADSPEC,
                                           "no link between %s and %s, and no default_link",
                                           c->nodes[i].name, c->nodes[j].name);
                c->lat[i * p + j] = dlat;
                c->bw[i * p + j] = dbw;
            }
        }
    return 0;
}

int farm_gs_cluster_load(const char *path, const char *display, struct farm_gs_cluster *c,
                         struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    memset(c, 0, sizeof *c);
    int rc = farm_yaml_load_file(path, display, &doc, err);
    if (rc)
        return rc;
    rc = load_cluster(doc, c, err);
    if (rc)
        farm_gs_cluster_release(c);
    farm_yaml_free(doc);
    return rc;
}
