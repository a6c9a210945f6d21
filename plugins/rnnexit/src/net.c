/* The parameters of an rnnexit model: one nn layer per compute node, one
 * gate per `gate` start; naming, initialisation, safetensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnnexit-internal.h"

/* The most tensors one node contributes (a gru: wx, wh, bx, bh). */
#define MAX_PER_NODE 4

void farm__rx_wrap(struct farm_tensor *t, const float *data, size_t rows, size_t cols)
{
    /* nn's views are non-const; rnnexit never writes through a view made
     * from a const input. */
    farm_tensor_wrap(t, (float *)(uintptr_t)data, rows, cols);
}

static void release_params(struct farm_rx_net *net)
{
    const struct farm_rx_model *m = net->model;
    if (!net->p)
        return;
    for (int u = 0; u < m->n_units; u++) {
        if (!net->p[u])
            continue;
        for (int i = 0; i < m->units[u].n_nodes; i++) {
            farm_dense_release(&net->p[u][i].dense);
            farm_gru_release(&net->p[u][i].gru);
            farm_lstm_release(&net->p[u][i].lstm);
        }
        free(net->p[u]);
    }
    free(net->p);
}

void farm_rx_net_free(struct farm_rx_net *net)
{
    if (!net)
        return;
    release_params(net);
    free(net->params);
    free(net);
}

static int add_named(struct farm_rx_net *net, const char *unit, const char *node,
                     struct farm_nn_param *tmp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct farm_nn_param *p = &net->params[net->n_params++];
        *p = tmp[i];
        /* nn named it "<node>.<what>"; prefix the unit. */
        char full[FARM_PARAM_NAME_MAX];
        int w = snprintf(full, sizeof full, "%s.%s", unit, tmp[i].name);
        if (w < 0 || (size_t)w >= sizeof full)
            return -ENAMETOOLONG;
        memcpy(p->name, full, (size_t)w + 1);
    }
    (void)node;
    return 0;
}

int farm_rx_net_new(const struct farm_rx_model *model, uint64_t seed, struct farm_rx_net **out,
                    struct farm_err *err)
{
    struct farm_rx_net *net = calloc(1, sizeof *net);
    if (!net)
        return farm_err_set(err, -ENOMEM, "out of memory");
    net->model = model;
    size_t cap = 0;
    for (int u = 0; u < model->n_units; u++)
        cap += (size_t)model->units[u].n_nodes * MAX_PER_NODE;
    net->p = calloc((size_t)model->n_units, sizeof *net->p);
    net->params = calloc(cap ? cap : 1, sizeof *net->params);
    if (!net->p || !net->params) {
        farm_rx_net_free(net);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    struct farm_rng root;
    farm_rng_seed(&root, seed);
    int rc = 0;
    for (int u = 0; u < model->n_units && !rc; u++) {
        const struct farm_rx_unit *unit = &model->units[u];
        net->p[u] = calloc((size_t)unit->n_nodes, sizeof *net->p[u]);
        if (!net->p[u]) {
            rc = -ENOMEM;
            break;
        }
        for (int i = 0; i < unit->n_nodes && !rc; i++) {
            const struct farm_rx_node *n = &unit->nodes[i];
            struct rx_nparams *p = &net->p[u][i];
            struct farm_nn_param tmp[MAX_PER_NODE];
            char prefix[2 * FARM_RX_NAME_MAX + 8];
            size_t k = 0;
            /* Every node draws from its own stream, so adding a node does
             * not change the others' initial values. */
            struct farm_rng rng;
            farm_rng_fork(&root, &rng);
            snprintf(prefix, sizeof prefix, "%s", n->name);
            switch (n->type) {
            case FARM_RX_DENSE:
            case FARM_RX_HEAD:
                rc = farm_dense_init(&p->dense, (size_t)n->in,
                                     (size_t)(n->type == FARM_RX_HEAD ? n->classes : n->out));
                if (!rc) {
                    farm_dense_init_params(&p->dense, FARM_INIT_XAVIER, &rng);
                    k = farm_dense_params(&p->dense, prefix, tmp);
                }
                break;
            case FARM_RX_GRU:
                rc = farm_gru_init(&p->gru, (size_t)n->in, (size_t)n->out);
                if (!rc) {
                    farm_gru_init_params(&p->gru, &rng);
                    k = farm_gru_params(&p->gru, prefix, tmp);
                }
                break;
            case FARM_RX_LSTM:
                rc = farm_lstm_init(&p->lstm, (size_t)n->in, (size_t)n->out);
                if (!rc) {
                    farm_lstm_init_params(&p->lstm, &rng);
                    k = farm_lstm_params(&p->lstm, prefix, tmp);
                }
                break;
            case FARM_RX_START:
                if (n->cond == FARM_RX_COND_GATE) {
                    rc = farm_dense_init(&p->dense, (size_t)unit->nodes[n->ref].out, 1);
                    if (!rc) {
                        /* Open at the start: sigmoid(2) = 0.88. */
                        farm_tensor_fill(&p->dense.b, 2.0f);
                        snprintf(prefix, sizeof prefix, "%s.gate", n->name);
                        k = farm_dense_params(&p->dense, prefix, tmp);
                    }
                }
                break;
            default:
                break;
            }
            if (!rc)
                rc = add_named(net, unit->name, n->name, tmp, k);
        }
    }
    if (rc) {
        farm_rx_net_free(net);
        return farm_err_set(err, rc, "rnnexit: cannot build the parameters: %s", farm_strerror(rc));
    }
    *out = net;
    return 0;
}

const struct farm_rx_model *farm_rx_net_model(const struct farm_rx_net *net)
{
    return net->model;
}

size_t farm_rx_net_n_tensors(const struct farm_rx_net *net)
{
    return net->n_params;
}

size_t farm_rx_net_n_floats(const struct farm_rx_net *net)
{
    return farm_params_count(net->params, net->n_params);
}

void farm_rx_net_zero_grad(struct farm_rx_net *net)
{
    farm_params_zero_grad(net->params, net->n_params);
}

int farm_rx_net_save(struct farm_rx_net *net, const char *path, struct farm_err *err)
{
    json_t *meta = json_pack("{s:s, s:s}", "format", "farm-rnnexit", "model", net->model->file);
    int rc = farm_safetensors_save(path, net->params, net->n_params, meta, err);
    json_decref(meta);
    return rc;
}

int farm_rx_net_load(struct farm_rx_net *net, const char *path, struct farm_err *err)
{
    return farm_safetensors_load(path, net->params, net->n_params, false, err);
}

int farm_rx_net_tensor(struct farm_rx_net *net, const char *name, float **data, float **grad,
                       size_t *n)
{
    for (size_t i = 0; i < net->n_params; i++)
        if (strcmp(net->params[i].name, name) == 0) {
            if (data)
                *data = net->params[i].value->data;
            if (grad)
                *grad = net->params[i].grad ? net->params[i].grad->data : NULL;
            if (n)
                *n = farm_tensor_size(net->params[i].value);
            return 0;
        }
    return -ENOENT;
}

int farm_rx_net_tensor_at(struct farm_rx_net *net, size_t i, const char **name, float **data,
                          float **grad, size_t *rows, size_t *cols)
{
    if (i >= net->n_params)
        return -ENOENT;
    const struct farm_nn_param *p = &net->params[i];
    if (name)
        *name = p->name;
    if (data)
        *data = p->value->data;
    if (grad)
        *grad = p->grad ? p->grad->data : NULL;
    if (rows)
        *rows = p->value->rows;
    if (cols)
        *cols = p->value->cols;
    return 0;
}

double farm_rx_node_flops(const struct farm_rx_model *model, int unit, int node)
{
    if (unit < 0 || unit >= model->n_units || node < 0 || node >= model->units[unit].n_nodes)
        return 0;
    const struct farm_rx_node *n = &model->units[unit].nodes[node];
    size_t in = (size_t)n->in, out = (size_t)n->out;
    switch (n->type) {
    case FARM_RX_DENSE:
        return farm_flops_dense_forward(1, in, out, FARM_ACT_NONE);
    case FARM_RX_ACT:
        return farm_flops_act(n->fn == FARM_RX_FN_RELU   ? FARM_ACT_RELU
                              : n->fn == FARM_RX_FN_TANH ? FARM_ACT_TANH
                                                         : FARM_ACT_SIGMOID,
                              out);
    case FARM_RX_GRU:
        return farm_flops_gru_forward(1, in, out);
    case FARM_RX_LSTM:
        return farm_flops_lstm_forward(1, in, out);
    case FARM_RX_HEAD:
        return farm_flops_dense_forward(1, in, (size_t)n->classes, FARM_ACT_NONE) +
               4.0 * n->classes;
    default:
        return 0;
    }
}
