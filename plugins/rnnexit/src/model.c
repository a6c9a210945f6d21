/* Parsing and validation of rnnexit model descriptions (see rnnexit_model.h). */
#include "farm/rnnexit_model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/yamljson.h"

/* Largest width accepted for any node: keeps products of widths in int. */
#define MAX_WIDTH 65536

struct parser {
    const struct farm_yaml_doc *doc;
    struct farm_err *err;
    struct farm_rx_model *model;
};

static const char *const type_names[] = {
    [FARM_RX_DENSE] = "dense", [FARM_RX_ACT] = "act",   [FARM_RX_GRU] = "gru",
    [FARM_RX_LSTM] = "lstm",   [FARM_RX_HEAD] = "head", [FARM_RX_START] = "start",
    [FARM_RX_END] = "end",
};
static const char *const pass_names[] = {
    [FARM_RX_PASS_STATE] = "state",
    [FARM_RX_PASS_INPUT] = "input",
    [FARM_RX_PASS_ZEROS] = "zeros",
};
static const char *const cond_names[] = {
    [FARM_RX_COND_LENGTH] = "length",
    [FARM_RX_COND_CONFIDENCE] = "confidence",
    [FARM_RX_COND_CONVERGED] = "converged",
    [FARM_RX_COND_GATE] = "gate",
};
static const char *const fn_names[] = {
    [FARM_RX_FN_RELU] = "relu",
    [FARM_RX_FN_TANH] = "tanh",
    [FARM_RX_FN_SIGMOID] = "sigmoid",
};
static const char *const loss_names[] = {
    [FARM_RX_LOSS_CE] = "ce",
    [FARM_RX_LOSS_MSE] = "mse",
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *name_of(const char *const *names, int n, int v)
{
    return v > 0 && v < n && names[v] ? names[v] : "?";
}

const char *farm_rx_node_type_name(int type)
{
    return name_of(type_names, COUNT(type_names), type);
}

const char *farm_rx_pass_name(int pass)
{
    return name_of(pass_names, COUNT(pass_names), pass);
}

const char *farm_rx_cond_name(int cond)
{
    return name_of(cond_names, COUNT(cond_names), cond);
}

int farm_rx_node_computes(int type)
{
    return type >= FARM_RX_DENSE && type <= FARM_RX_HEAD;
}

static int bad(struct parser *p, const json_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct parser *p, const json_t *node, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return farm_yaml_error(p->doc, node, p->err, FARM_EBADMODEL, "%s", msg);
}

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Refuses keys of `obj` that are not in the NULL-terminated `allowed`. */
static int only_keys(struct parser *p, const json_t *obj, const char *what,
                     const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char list[256] = "";
            for (int i = 0; allowed[i]; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, allowed[i], sizeof list - strlen(list) - 1);
            }
            return bad(p, val, "%s: unknown key '%s' (expected one of: %s)", what, key, list);
        }
    }
    return 0;
}

static int get_int(struct parser *p, const json_t *obj, const char *key, const char *what,
                   int required, int lo, int hi, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return bad(p, obj, "%s: missing '%s' (an integer %d..%d)", what, key, lo, hi);
        return 0;
    }
    if (!json_is_integer(v))
        return bad(p, v, "%s.%s: expected an integer %d..%d, got %s", what, key, lo, hi,
                   kind_of(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return bad(p, v, "%s.%s: expected an integer %d..%d, got %lld", what, key, lo, hi,
                   (long long)x);
    *out = (int)x;
    return 0;
}

static int get_number(struct parser *p, const json_t *obj, const char *key, const char *what,
                      double lo, double hi, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return bad(p, obj, "%s: missing '%s' (a number in [%g, %g])", what, key, lo, hi);
    if (!json_is_number(v))
        return bad(p, v, "%s.%s: expected a number in [%g, %g], got %s", what, key, lo, hi,
                   kind_of(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return bad(p, v, "%s.%s: expected a number in [%g, %g], got %g", what, key, lo, hi, x);
    *out = x;
    return 0;
}

/* Reads a string member that must be one of names[1..n-1]; absent leaves
 * *out alone unless required. */
static int get_enum(struct parser *p, const json_t *obj, const char *key, const char *what,
                    int required, const char *const *names, int n, int *out)
{
    json_t *v = json_object_get(obj, key);
    char list[256] = "";
    for (int i = 1; i < n; i++) {
        strncat(list, i > 1 ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    if (!v) {
        if (required)
            return bad(p, obj, "%s: missing '%s' (one of: %s)", what, key, list);
        return 0;
    }
    if (!json_is_string(v))
        return bad(p, v, "%s.%s: expected one of %s, got %s", what, key, list, kind_of(v));
    for (int i = 1; i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0) {
            *out = i;
            return 0;
        }
    return bad(p, v, "%s.%s: unknown %s '%s' (expected one of: %s)", what, key, key,
               json_string_value(v), list);
}

static int get_name(struct parser *p, const json_t *obj, const char *what, char *out)
{
    json_t *v = json_object_get(obj, "name");
    if (!v)
        return bad(p, obj, "%s: missing 'name'", what);
    if (!json_is_string(v))
        return bad(p, v, "%s.name: expected a string, got %s", what, kind_of(v));
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n == 0 || n >= FARM_RX_NAME_MAX)
        return bad(p, v, "%s.name: expected 1..%d characters", what, FARM_RX_NAME_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return bad(p, v, "%s.name: '%s' may hold only letters, digits, '_' and '-'", what, s);
    }
    memcpy(out, s, n + 1);
    return 0;
}

static const char *const node_keys[] = {"name",    "type", "out",       "hidden", "fn",
                                        "classes", "skip", "condition", NULL};
static const char *const cond_keys[] = {"kind", "head", "node", "threshold", "eps", NULL};

/* Parses one node; widths are filled in later, once the chain is known. */
static int parse_node(struct parser *p, const json_t *jn, const char *where, struct farm_rx_node *n)
{
    int rc;
    char what[256];
    if (!json_is_object(jn))
        return bad(p, jn, "%s: expected a mapping with name and type, got %s", where, kind_of(jn));
    if ((rc = get_name(p, jn, where, n->name)))
        return rc;
    snprintf(what, sizeof what, "%s '%s'", where, n->name);
    farm_yaml_mark(p->doc, jn, &n->line, &n->col);
    if ((rc = only_keys(p, jn, what, node_keys)))
        return rc;
    if ((rc = get_enum(p, jn, "type", what, 1, type_names, COUNT(type_names), &n->type)))
        return rc;
    n->ref = -1;
    n->match = -1;
    n->parent = -1;
    n->slot = -1;
    n->pass = FARM_RX_PASS_STATE;

    /* Keys that belong to other node types are refused, so that a typo in
     * the type does not silently drop a setting. */
    static const struct {
        const char *key;
        int type, type2;
    } owner[] = {
        {"out", FARM_RX_DENSE, 0},    {"hidden", FARM_RX_GRU, FARM_RX_LSTM}, {"fn", FARM_RX_ACT, 0},
        {"classes", FARM_RX_HEAD, 0}, {"condition", FARM_RX_START, 0},
    };
    for (int i = 0; i < COUNT(owner); i++) {
        json_t *v = json_object_get(jn, owner[i].key);
        if (v && n->type != owner[i].type && n->type != owner[i].type2)
            return bad(p, v, "%s: '%s' does not apply to a %s node", what, owner[i].key,
                       farm_rx_node_type_name(n->type));
    }
    json_t *skip = json_object_get(jn, "skip");
    if (skip && !farm_rx_node_computes(n->type))
        return bad(p, skip, "%s: 'skip' does not apply to a %s node", what,
                   farm_rx_node_type_name(n->type));

    switch (n->type) {
    case FARM_RX_DENSE:
        rc = get_int(p, jn, "out", what, 1, 1, MAX_WIDTH, &n->out);
        break;
    case FARM_RX_GRU:
    case FARM_RX_LSTM:
        rc = get_int(p, jn, "hidden", what, 1, 1, MAX_WIDTH, &n->out);
        break;
    case FARM_RX_ACT:
        rc = get_enum(p, jn, "fn", what, 1, fn_names, COUNT(fn_names), &n->fn);
        break;
    case FARM_RX_HEAD:
        rc = get_int(p, jn, "classes", what, 1, 2, MAX_WIDTH, &n->classes);
        break;
    case FARM_RX_START: {
        json_t *c = json_object_get(jn, "condition");
        char cw[320];
        snprintf(cw, sizeof cw, "%s.condition", what);
        if (!c)
            return bad(p, jn, "%s: missing 'condition' (a mapping with kind: %s)", what,
                       "length, confidence, converged or gate");
        if (!json_is_object(c))
            return bad(p, c, "%s: expected a mapping, got %s", cw, kind_of(c));
        if ((rc = only_keys(p, c, cw, cond_keys)))
            return rc;
        if ((rc = get_enum(p, c, "kind", cw, 1, cond_names, COUNT(cond_names), &n->cond)))
            return rc;
        static const char *const need[][3] = {
            [FARM_RX_COND_LENGTH] = {NULL, NULL, NULL},
            [FARM_RX_COND_CONFIDENCE] = {"head", "threshold", NULL},
            [FARM_RX_COND_CONVERGED] = {"node", "eps", NULL},
            [FARM_RX_COND_GATE] = {"node", "threshold", NULL},
        };
        const char *keys[] = {"head", "node", "threshold", "eps"};
        for (int i = 0; i < 4; i++) {
            json_t *v = json_object_get(c, keys[i]);
            int wanted = 0;
            for (int j = 0; j < 2; j++)
                wanted |= need[n->cond][j] && strcmp(need[n->cond][j], keys[i]) == 0;
            if (v && !wanted)
                return bad(p, v, "%s: '%s' does not apply to condition '%s'", cw, keys[i],
                           farm_rx_cond_name(n->cond));
        }
        if (n->cond == FARM_RX_COND_CONFIDENCE)
            rc = get_number(p, c, "threshold", cw, 0.0, 1.0, &n->threshold);
        else if (n->cond == FARM_RX_COND_GATE)
            rc = get_number(p, c, "threshold", cw, 0.0, 1.0, &n->threshold);
        else if (n->cond == FARM_RX_COND_CONVERGED)
            rc = get_number(p, c, "eps", cw, 0.0, 1e30, &n->threshold);
        if (rc)
            return rc;
        /* The referenced node is resolved once the whole unit is read. */
        const char *refkey = n->cond == FARM_RX_COND_CONFIDENCE ? "head" : "node";
        if (n->cond != FARM_RX_COND_LENGTH) {
            json_t *r = json_object_get(c, refkey);
            if (!r)
                return bad(p, c, "%s: missing '%s' (the name of a %s node of this unit)", cw,
                           refkey, n->cond == FARM_RX_COND_CONFIDENCE ? "head" : "gru or lstm");
            if (!json_is_string(r))
                return bad(p, r, "%s.%s: expected a node name, got %s", cw, refkey, kind_of(r));
        }
        break;
    }
    default:
        break;
    }
    if (rc)
        return rc;
    if (skip && (rc = get_enum(p, jn, "skip", what, 0, pass_names, COUNT(pass_names), &n->pass)))
        return rc;
    if (n->type == FARM_RX_HEAD && n->pass == FARM_RX_PASS_INPUT)
        return bad(p, skip,
                   "%s: a head passes its input on anyway; 'skip' decides its "
                   "probabilities: state or zeros",
                   what);
    return 0;
}

/* Matches regions, resolves condition references and computes widths. */
static int check_unit(struct parser *p, const json_t *junit, const json_t *jnodes,
                      struct farm_rx_unit *u)
{
    int stack[64], depth = 0, slot = 0;
    int w = u->in;
    for (int i = 0; i < u->n_nodes; i++) {
        struct farm_rx_node *n = &u->nodes[i];
        const json_t *jn = json_array_get(jnodes, (size_t)i);
        for (int j = 0; j < i; j++)
            if (strcmp(u->nodes[j].name, n->name) == 0)
                return bad(p, json_object_get(jn, "name"),
                           "unit '%s': node name '%s' is already used at line %d", u->name, n->name,
                           u->nodes[j].line);
        n->parent = depth ? stack[depth - 1] : -1;
        n->in = w;
        switch (n->type) {
        case FARM_RX_START:
            if (depth == (int)(sizeof stack / sizeof stack[0]))
                return bad(p, jn, "unit '%s': regions nested too deep", u->name);
            stack[depth++] = i;
            n->out = w;
            break;
        case FARM_RX_END:
            if (depth == 0)
                return bad(p, jn,
                           "unit '%s': end node '%s' comes before any start node "
                           "(an end closes the innermost open start above it)",
                           u->name, n->name);
            n->match = stack[--depth];
            n->parent = depth ? stack[depth - 1] : -1;
            u->nodes[n->match].match = i;
            n->out = w;
            break;
        case FARM_RX_DENSE:
        case FARM_RX_GRU:
        case FARM_RX_LSTM:
            break;
        default:
            n->out = w;
            break;
        }
        if (farm_rx_node_computes(n->type)) {
            n->slot = slot++;
            if (n->pass == FARM_RX_PASS_INPUT && n->in != n->out)
                return bad(p, json_object_get(jn, "skip"),
                           "unit '%s' node '%s': skip: input needs equal widths, but the input "
                           "is %d wide and the output %d",
                           u->name, n->name, n->in, n->out);
            if (n->type == FARM_RX_HEAD)
                n->out = n->in;
        }
        w = n->out;
    }
    u->n_compute = slot;
    u->out = w;
    /* Open regions at the end of the unit: only the outermost may stay open;
     * an inner one would cross its outer region's end. */
    if (depth > 1) {
        const struct farm_rx_node *inner = &u->nodes[stack[depth - 1]];
        return bad(p, json_array_get(jnodes, (size_t)stack[depth - 1]),
                   "unit '%s': start node '%s' has no end, but it is nested in region '%s', "
                   "which needs it closed before the unit ends",
                   u->name, inner->name, u->nodes[stack[depth - 2]].name);
    }
    if (depth == 1)
        u->nodes[stack[0]].match = u->n_nodes;
    if (u->n_compute == 0)
        return bad(p, junit, "unit '%s': no compute node (dense, act, gru, lstm or head)", u->name);
    for (int i = 0; i < u->n_nodes; i++) {
        struct farm_rx_node *n = &u->nodes[i];
        if (n->type != FARM_RX_START || n->cond == FARM_RX_COND_LENGTH)
            continue;
        const json_t *c = json_object_get(json_array_get(jnodes, (size_t)i), "condition");
        const char *key = n->cond == FARM_RX_COND_CONFIDENCE ? "head" : "node";
        const json_t *r = json_object_get(c, key);
        int k = farm_rx_unit_node(u, json_string_value(r));
        if (k < 0)
            return bad(p, r,
                       "unit '%s' start '%s': condition %s names node '%s', which is not "
                       "in this unit",
                       u->name, n->name, farm_rx_cond_name(n->cond), json_string_value(r));
        int t = u->nodes[k].type;
        if (n->cond == FARM_RX_COND_CONFIDENCE && t != FARM_RX_HEAD)
            return bad(p, r,
                       "unit '%s' start '%s': condition confidence needs a head node, "
                       "'%s' is a %s",
                       u->name, n->name, u->nodes[k].name, farm_rx_node_type_name(t));
        if (n->cond != FARM_RX_COND_CONFIDENCE && t != FARM_RX_GRU && t != FARM_RX_LSTM)
            return bad(p, r,
                       "unit '%s' start '%s': condition %s needs a gru or lstm node, "
                       "'%s' is a %s",
                       u->name, n->name, farm_rx_cond_name(n->cond), u->nodes[k].name,
                       farm_rx_node_type_name(t));
        n->ref = k;
    }
    return 0;
}

static const char *const unit_keys[] = {"name", "nodes", NULL};
static const char *const top_keys[] = {"input", "layers", "output", NULL};
static const char *const out_keys[] = {"unit", "node", "loss", NULL};

static int parse(struct parser *p)
{
    struct farm_rx_model *m = p->model;
    const json_t *root = farm_yaml_root(p->doc);
    int rc;
    if (!json_is_object(root))
        return bad(p, root, "expected a mapping with input, layers and output, got %s",
                   kind_of(root));
    if ((rc = only_keys(p, root, "model", top_keys)))
        return rc;
    if ((rc = get_int(p, root, "input", "model", 1, 1, MAX_WIDTH, &m->input)))
        return rc;
    const json_t *layers = json_object_get(root, "layers");
    if (!layers)
        return bad(p, root, "model: missing 'layers' (a list of {units: [...]})");
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return bad(p, layers, "model.layers: expected a non-empty list, got %s", kind_of(layers));
    m->n_layers = (int)json_array_size(layers);
    m->layer_width = calloc((size_t)m->n_layers, sizeof *m->layer_width);
    m->layer_first = calloc((size_t)m->n_layers + 1, sizeof *m->layer_first);
    if (!m->layer_width || !m->layer_first)
        return farm_err_set(p->err, -ENOMEM, "out of memory");
    size_t total = 0;
    for (size_t l = 0; l < json_array_size(layers); l++) {
        const json_t *jl = json_array_get(layers, l);
        char what[64];
        snprintf(what, sizeof what, "layers[%zu]", l);
        if (!json_is_object(jl))
            return bad(p, jl, "%s: expected a mapping with 'units', got %s", what, kind_of(jl));
        static const char *const lk[] = {"units", NULL};
        if ((rc = only_keys(p, jl, what, lk)))
            return rc;
        const json_t *ju = json_object_get(jl, "units");
        if (!ju || !json_is_array(ju) || json_array_size(ju) == 0)
            return bad(p, ju ? ju : jl, "%s.units: expected a non-empty list of units", what);
        total += json_array_size(ju);
    }
    m->units = calloc(total, sizeof *m->units);
    if (!m->units)
        return farm_err_set(p->err, -ENOMEM, "out of memory");
    int in = m->input;
    for (int l = 0; l < m->n_layers; l++) {
        const json_t *ju = json_object_get(json_array_get(layers, (size_t)l), "units");
        m->layer_first[l] = m->n_units;
        int width = 0;
        for (size_t k = 0; k < json_array_size(ju); k++) {
            const json_t *junit = json_array_get(ju, k);
            struct farm_rx_unit *u = &m->units[m->n_units];
            char what[96];
            snprintf(what, sizeof what, "layers[%d].units[%zu]", l, k);
            if (!json_is_object(junit))
                return bad(p, junit, "%s: expected a mapping with name and nodes, got %s", what,
                           kind_of(junit));
            if ((rc = get_name(p, junit, what, u->name)))
                return rc;
            if ((rc = only_keys(p, junit, what, unit_keys)))
                return rc;
            for (int j = 0; j < m->n_units; j++)
                if (strcmp(m->units[j].name, u->name) == 0)
                    return bad(p, json_object_get(junit, "name"),
                               "%s: unit name '%s' is already used", what, u->name);
            m->n_units++;
            u->layer = l;
            u->in = in;
            u->offset = width;
            const json_t *jnodes = json_object_get(junit, "nodes");
            if (!jnodes || !json_is_array(jnodes) || json_array_size(jnodes) == 0)
                return bad(p, jnodes ? jnodes : junit,
                           "unit '%s': 'nodes' must be a non-empty list", u->name);
            u->n_nodes = (int)json_array_size(jnodes);
            u->nodes = calloc((size_t)u->n_nodes, sizeof *u->nodes);
            if (!u->nodes)
                return farm_err_set(p->err, -ENOMEM, "out of memory");
            for (int i = 0; i < u->n_nodes; i++) {
                char nw[160];
                snprintf(nw, sizeof nw, "unit '%s' nodes[%d]", u->name, i);
                if ((rc = parse_node(p, json_array_get(jnodes, (size_t)i), nw, &u->nodes[i])))
                    return rc;
            }
            if ((rc = check_unit(p, junit, jnodes, u)))
                return rc;
            width += u->out;
        }
        m->layer_width[l] = width;
        in = width;
    }
    m->layer_first[m->n_layers] = m->n_units;

    const json_t *jo = json_object_get(root, "output");
    if (!jo)
        return bad(p, root, "model: missing 'output' ({unit: NAME, node: NAME, loss: ce|mse})");
    if (!json_is_object(jo))
        return bad(p, jo, "model.output: expected a mapping, got %s", kind_of(jo));
    if ((rc = only_keys(p, jo, "model.output", out_keys)))
        return rc;
    const json_t *ju = json_object_get(jo, "unit"), *jn = json_object_get(jo, "node");
    if (!ju || !json_is_string(ju))
        return bad(p, ju ? ju : jo, "model.output.unit: expected the name of a unit");
    if (!jn || !json_is_string(jn))
        return bad(p, jn ? jn : jo, "model.output.node: expected the name of a node");
    m->out_unit = farm_rx_model_unit(m, json_string_value(ju));
    if (m->out_unit < 0)
        return bad(p, ju, "model.output.unit: no unit named '%s'", json_string_value(ju));
    const struct farm_rx_unit *ou = &m->units[m->out_unit];
    m->out_node = farm_rx_unit_node(ou, json_string_value(jn));
    if (m->out_node < 0 || !farm_rx_node_computes(ou->nodes[m->out_node].type))
        return bad(p, jn, "model.output.node: unit '%s' has no compute node named '%s'", ou->name,
                   json_string_value(jn));
    const struct farm_rx_node *on = &ou->nodes[m->out_node];
    m->loss = on->type == FARM_RX_HEAD ? FARM_RX_LOSS_CE : FARM_RX_LOSS_MSE;
    if ((rc = get_enum(p, jo, "loss", "model.output", 0, loss_names, COUNT(loss_names), &m->loss)))
        return rc;
    if (m->loss == FARM_RX_LOSS_CE && on->type != FARM_RX_HEAD)
        return bad(p, json_object_get(jo, "loss"),
                   "model.output: loss ce needs a head node, '%s' is a %s", on->name,
                   farm_rx_node_type_name(on->type));
    if (m->loss == FARM_RX_LOSS_MSE && on->type == FARM_RX_HEAD)
        return bad(p, json_object_get(jo, "loss"),
                   "model.output: loss mse needs a node with a plain output, '%s' is a head",
                   on->name);
    m->out_width = on->type == FARM_RX_HEAD ? on->classes : on->out;
    return 0;
}

static int finish(struct farm_yaml_doc *doc, int rc, struct farm_rx_model **out,
                  struct farm_err *err)
{
    if (rc)
        return rc;
    struct farm_rx_model *m = calloc(1, sizeof *m);
    if (!m) {
        farm_yaml_free(doc);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    snprintf(m->file, sizeof m->file, "%s", farm_yaml_name(doc));
    struct parser p = {.doc = doc, .err = err, .model = m};
    rc = parse(&p);
    farm_yaml_free(doc);
    if (rc) {
        farm_rx_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int farm_rx_model_load_file(const char *path, const char *display, struct farm_rx_model **out,
                            struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    int rc = farm_yaml_load_file(path, display, &doc, err);
    if (rc == FARM_EBADSPEC) {
        rc = FARM_EBADMODEL;
        if (err)
            err->code = rc;
    }
    return finish(doc, rc, out, err);
}

int farm_rx_model_load_string(const char *text, size_t len, const char *display,
                              struct farm_rx_model **out, struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    int rc = farm_yaml_load_string(text, len, display, &doc, err);
    if (rc == FARM_EBADSPEC) {
        rc = FARM_EBADMODEL;
        if (err)
            err->code = rc;
    }
    return finish(doc, rc, out, err);
}

void farm_rx_model_free(struct farm_rx_model *model)
{
    if (!model)
        return;
    for (int i = 0; i < model->n_units; i++)
        free(model->units[i].nodes);
    free(model->units);
    free(model->layer_width);
    free(model->layer_first);
    free(model);
}

int farm_rx_model_unit(const struct farm_rx_model *model, const char *name)
{
    for (int i = 0; i < model->n_units; i++)
        if (strcmp(model->units[i].name, name) == 0)
            return i;
    return -1;
}

int farm_rx_unit_node(const struct farm_rx_unit *unit, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < unit->n_nodes; i++)
        if (strcmp(unit->nodes[i].name, name) == 0)
            return i;
    return -1;
}
