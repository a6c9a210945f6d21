/*
 * rnnexit model descriptions: recurrent units whose start node tags the
 * nodes up to its end node for skipping.
 *
 * A model is a stack of layers; a layer holds one or more units that all read
 * the layer's input (layer 0 reads the data, layer l > 0 reads the
 * concatenated outputs of layer l-1's units, in order). A unit is a chain of
 * nodes run in order at every time step: each node reads the previous node's
 * output (the first node reads the unit's input) and the unit's output is its
 * last node's output.
 *
 * Node types (YAML `type:`):
 *   dense  y = W u + b                       (`out:` width)
 *   act    y = f(u), f in relu, tanh, sigmoid (`fn:`)
 *   gru    y = h_t = GRU(u, h_{t-1})          (`hidden:`)
 *   lstm   y = h_t, (h_t, c_t) = LSTM(u, h_{t-1}, c_{t-1}) (`hidden:`)
 *   head   an intermediate classifier: p = softmax(W u + b) (`classes:`);
 *          its chain output is its input unchanged, p is its side output
 *   start  opens a region; `condition:` says which objects run it
 *   end    closes the innermost open region
 *
 * Regions nest like parentheses and each has its own tag scope: at every
 * step, an object that fails a start node's condition has the nodes between
 * that start and its end tagged; tagged nodes do no work for that object and
 * instead pass on what their `skip:` says:
 *   state  the node's own previous output (for gru/lstm: the state is
 *          unchanged; for head: the previous probabilities). The default.
 *   input  the node's input (widths must match; lstm keeps c)
 *   zeros  zeros (lstm: h and c)
 * Tags are recomputed at every step for every object; nodes before a start
 * and after its end always run (unless an outer region tags them). A start
 * with no end runs to the end of its unit; that is allowed only for a region
 * that is not nested inside another one (an inner region must be closed
 * before its outer one ends, or the unit "needs" the end).
 *
 * Conditions (`condition: {kind: ...}`), evaluated per object per step; the
 * object runs the region while the condition holds:
 *   length      t < length of the object (padding steps are skipped)
 *   confidence  the named head's latest max probability < threshold
 *               (`head:`, `threshold:`); exit once confident
 *   converged   the named gru/lstm node's last state change (max |dh|)
 *               >= eps (`node:`, `eps:`); stop once converged
 *   gate        a learned gate sigmoid(w . s + b) > threshold, s being the
 *               named gru/lstm node's current state (`node:`, `threshold:`,
 *               Skip-RNN style; w, b are model parameters)
 * The referenced head or node must be a compute node of the same unit.
 *
 * YAML layout:
 *   input: 4                  # features per step
 *   layers:
 *     - units:
 *         - name: enc
 *           nodes:
 *             - {name: s, type: start, condition: {kind: length}}
 *             - {name: cell, type: gru, hidden: 32}
 *             - {name: e, type: end}
 *   output: {unit: enc, node: clf, loss: ce}   # or loss: mse on a dense node
 *
 * Every error names file:line:col and what was expected; all checks happen
 * at load time, before anything runs.
 *
 * Thread-safety: a loaded model is read-only and may be shared.
 */
#ifndef FARM_RNNEXIT_MODEL_H
#define FARM_RNNEXIT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"

#define FARM_RX_NAME_MAX 64

enum farm_rx_node_type {
    FARM_RX_DENSE = 1,
    FARM_RX_ACT = 2,
    FARM_RX_GRU = 3,
    FARM_RX_LSTM = 4,
    FARM_RX_HEAD = 5,
    FARM_RX_START = 6,
    FARM_RX_END = 7
};

enum farm_rx_pass { FARM_RX_PASS_STATE = 1, FARM_RX_PASS_INPUT = 2, FARM_RX_PASS_ZEROS = 3 };

enum farm_rx_cond {
    FARM_RX_COND_LENGTH = 1,
    FARM_RX_COND_CONFIDENCE = 2,
    FARM_RX_COND_CONVERGED = 3,
    FARM_RX_COND_GATE = 4
};

enum farm_rx_fn { FARM_RX_FN_RELU = 1, FARM_RX_FN_TANH = 2, FARM_RX_FN_SIGMOID = 3 };

enum farm_rx_loss { FARM_RX_LOSS_CE = 1, FARM_RX_LOSS_MSE = 2 };

struct farm_rx_node {
    char name[FARM_RX_NAME_MAX];
    int type;    /* enum farm_rx_node_type */
    int in, out; /* widths of the node's input and chain output */
    int pass;    /* enum farm_rx_pass (compute nodes) */
    int fn;      /* enum farm_rx_fn (act) */
    int classes; /* head: number of classes */
    /* start nodes */
    int cond;         /* enum farm_rx_cond */
    double threshold; /* confidence and gate threshold; converged eps */
    int ref;          /* index in the unit of the head/cell the condition reads; -1 */
    int match;        /* start: index of its end, or n_nodes when open; end: its start */
    int parent;       /* index of the innermost enclosing start, or -1 */
    /* compute nodes: position among the unit's compute nodes (0..), or -1 */
    int slot;
    int line, col; /* where the node is declared */
};

struct farm_rx_unit {
    char name[FARM_RX_NAME_MAX];
    int layer;
    int in, out;                /* widths of the unit's input and output */
    int offset;                 /* column of this unit's output in its layer's output */
    int n_nodes;                /* all nodes, markers included */
    int n_compute;              /* nodes that do work (not start/end) */
    struct farm_rx_node *nodes; /* n_nodes, owned */
};

struct farm_rx_model {
    char file[256]; /* the display name given at load time */
    int input;      /* features per step */
    int n_layers;
    int *layer_width; /* n_layers: width of each layer's output, owned */
    int *layer_first; /* n_layers + 1: index of each layer's first unit, owned */
    int n_units;
    struct farm_rx_unit *units; /* n_units in layer order, owned */
    int out_unit, out_node;     /* the node whose output is the prediction */
    int out_width;              /* its width (classes for a head) */
    int loss;                   /* enum farm_rx_loss */
};

/* Loads and validates the model description at `path` (`display` names it in
 * messages; NULL: the path). On success *out is the caller's, to release with
 * farm_rx_model_free(). Errors: FARM_EBADMODEL with "file:line:col: what was
 * expected", or a -errno for an unreadable file. */
int farm_rx_model_load_file(const char *path, const char *display, struct farm_rx_model **out,
                            struct farm_err *err);

/* The same from YAML text in memory (`len` bytes). */
int farm_rx_model_load_string(const char *text, size_t len, const char *display,
                              struct farm_rx_model **out, struct farm_err *err);

/* Releases a model. NULL is allowed. */
void farm_rx_model_free(struct farm_rx_model *model);

/* Looks up a unit by name: its index, or -1. */
int farm_rx_model_unit(const struct farm_rx_model *model, const char *name);

/* Looks up a node of unit `unit` by name: its index, or -1. */
int farm_rx_unit_node(const struct farm_rx_unit *unit, const char *name);

/* Static names: "dense", "gru", ...; "state", "input", "zeros"; "length", ... */
const char *farm_rx_node_type_name(int type);
const char *farm_rx_pass_name(int pass);
const char *farm_rx_cond_name(int cond);

/* Nonzero for node types that do work (everything but start and end). */
int farm_rx_node_computes(int type);

#endif
