/* Shared internals of rnnexit_core: the net's parameters and the
 * executor's runtime state (exec.c runs forwards, backward.c backwards). */
#ifndef FARM_RNNEXIT_INTERNAL_H
#define FARM_RNNEXIT_INTERNAL_H

#include "farm/nn.h"
#include "farm/rnnexit.h"

/* Parameters of one node: dense for dense nodes, heads and gates. */
struct rx_nparams {
    struct farm_dense dense;
    struct farm_gru gru;
    struct farm_lstm lstm;
};

struct farm_rx_net {
    const struct farm_rx_model *model;
    struct rx_nparams **p; /* [unit][node] */
    struct farm_nn_param *params;
    size_t n_params;
};

/* A set of active rows: all of them, or idx[0..n). */
struct rx_set {
    const size_t *idx;
    size_t n;
    int all;
};

struct rx_node_rt {
    const struct farm_rx_node *d;
    struct rx_nparams *p;
    size_t in, width; /* input width; value width (classes for a head) */
    float *y, *y2;    /* batch x width: current value; spare for swaps */
    float *c, *c2;    /* lstm cell state */
    float *delta;     /* batch: last state change (converged) */
    int need_delta;
    uint64_t executed, skipped;
    double flops;
    size_t *idx;         /* start: its active rows */
    float *gate;         /* start with a gate: batch gate values */
    float *acc;          /* gate: per object, the accumulated update value U */
    unsigned char *ranp; /* gate: per object, did it run the region last step */
    /* training history, per step */
    int32_t *h_n;  /* rows that ran at step t */
    size_t *h_idx; /* steps x batch: which (when h_n[t] < batch) */
    float *h_in;   /* steps x batch x in: input rows (dense, act, head) */
    float *h_out;  /* steps x batch x width: act output, head probs */
    struct farm_gru_cache *gc;
    struct farm_lstm_cache *lc;
    float *G, *Gc; /* backward carries, batch x width */
    /* cells fed by the model input under length conditions only: x Wx + b of
     * every step's active rows, made in one product before the steps */
    int can_pre; /* eligible (see exec.c) */
    int use_pre; /* made for the current forward */
    float *pre;
    size_t pre_cap, pre_rows, pre_steps;
    size_t *pre_off; /* per step: first row of its block */
    float *gdot;     /* cells: per row, dL/dh' . (h' - h) at the step in backward */
    /* gate starts, training history per step: rows evaluated, which, the
     * gate's input rows and its values */
    int32_t *gh_n;
    size_t *gh_idx;
    float *gh_in, *gh_val, *gh_u;
};

struct rx_unit_rt {
    struct rx_node_rt *n;
    const float *out; /* the unit's output after the current step */
};

struct farm_rx_exec {
    struct farm_rx_net *net;
    const struct farm_rx_model *model;
    size_t max_batch, max_steps, maxw;
    int train;
    struct rx_unit_rt *u;
    float **layer_buf;                    /* per layer: concatenation when it has >1 unit */
    const float **layer_out;              /* per layer: its output at the current step */
    float *cx, *ch, *cc, *co, *co2, *tmp; /* batch x maxw compact buffers */
    unsigned char *mark;                  /* batch */
    int32_t *skipcnt;                     /* batch */
    /* last forward */
    size_t batch, steps;
    int mode;
    int32_t *lengths; /* batch, copied */
    /* activity: per step, objects seen; per step and unit, fully active */
    uint64_t *seen, *active;
    size_t act_cap, act_steps;
    float *gate;                     /* batch x 6 maxw: gate pre-activations */
    float *gr, *gz, *gn, *ghn, *gtc; /* batch x maxw: gates without a cache */
    int fail;                        /* the first error an nn call returned during a pass */
    double gate_cost;
    /* backward scratch */
    float **gl; /* per layer: batch x width */
    float *gy, *gc, *gc2, *gk, *gk2, *gk3;
};

/* Records the first failure of an nn call made during a pass; the pass
 * checks ex->fail when it ends. */
#define RX_CHECK(ex, call)                                                                         \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ && !(ex)->fail)                                                                    \
            (ex)->fail = rc_;                                                                      \
    } while (0)

/* Helpers shared by exec.c and backward.c. */
void farm__rx_wrap(struct farm_tensor *t, const float *data, size_t rows, size_t cols);

/* One cell step on `rows` rows (cell.c): h_next (and c_next) from x, h (and
 * c); fills nn's cache for its backward when cache is not NULL. Outputs must
 * not alias inputs. Returns 0 or -EINVAL (cache too small). */
int farm__rx_gru_step(struct farm_rx_exec *ex, const struct farm_gru *g, const float *x,
                      const float *pre, const float *h, float *hn, size_t rows,
                      struct farm_gru_cache *cache);
int farm__rx_lstm_step(struct farm_rx_exec *ex, const struct farm_lstm *l, const float *x,
                       const float *pre, const float *h, const float *c, float *hn, float *cn,
                       size_t rows, struct farm_lstm_cache *cache);

/* pre: rows x (3 or 4) H of x Wx + b made in advance, or NULL (then the
 * step makes them from x). farm__rx_precompute makes them for every step at
 * once: active[t * batch + b] says whether row b runs at step t; x is the
 * model input (steps x batch x in). Fills r->pre, r->pre_off, r->pre_rows. */
int farm__rx_precompute(struct rx_node_rt *r, const float *x, size_t steps, size_t batch,
                        const unsigned char *active);

#endif
