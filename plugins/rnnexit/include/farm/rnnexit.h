/*
 * rnnexit runtime: parameters of a model, the skipping executor, the plain
 * unrolled reference, backward through executed nodes, training and
 * evaluation, and the reports (skips.svg).
 *
 * This header does not include farm/nn.h: plugin code uses it beside
 * farm/plugin.h without the numeric kit's declarations.
 *
 * Data layout: a batch of `batch` objects over `steps` time steps is one
 * float array x[t][b][f] (steps x batch x model->input, row-major). lengths
 * (int32, one per object, may be NULL = all full length) feed the `length`
 * condition.
 *
 * The executor runs the model step by step. At each step, for each unit in
 * layer order, it walks the unit's nodes: a start node evaluates its
 * condition for the objects active in its enclosing scope and pushes the
 * subset that passes; an end node pops; a compute node runs on the active
 * rows of the innermost scope only: when every row is active it runs on the
 * whole batch in place; otherwise it gathers the active rows into compact
 * buffers, runs through CBLAS on those rows alone and scatters the results
 * back, so skipped rows cost no FLOPs; skipped rows get the node's pass-on
 * value. Scopes are rebuilt from scratch at every step of every unit, so a
 * tag never reaches another step, unit or object. A gru/lstm of layer 0 that
 * reads the model input under `length` starts only gets its x Wx + b for
 * all steps' active rows from one product made before the first step (the
 * rows are known up front); the plain executor does the same for all rows,
 * so never-skip stays bitwise equal to it.
 *
 * Thread-safety: a net and its executors are used from one thread at a time.
 * OpenBLAS may use several threads inside one product; with one BLAS thread
 * every result is bitwise reproducible.
 */
#ifndef FARM_RNNEXIT_H
#define FARM_RNNEXIT_H

#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/rnnexit_model.h"

/* ---------------------------------------------------------------- net -- */

/* A model's parameters: one farm_dense per dense node and head, one
 * farm_gru/farm_lstm per cell, one gate (dense H -> 1) per `gate` start. */
struct farm_rx_net;

/* Builds the parameters for `model` (borrowed: it must outlive the net) and
 * initialises them from `seed` (PyTorch's defaults for cells, Xavier for
 * dense nodes and heads; gates start open: weights 0, bias 2). */
int farm_rx_net_new(const struct farm_rx_model *model, uint64_t seed, struct farm_rx_net **out,
                    struct farm_err *err);
void farm_rx_net_free(struct farm_rx_net *net);

const struct farm_rx_model *farm_rx_net_model(const struct farm_rx_net *net);

/* Number of parameter tensors and of floats in them. */
size_t farm_rx_net_n_tensors(const struct farm_rx_net *net);
size_t farm_rx_net_n_floats(const struct farm_rx_net *net);

/* Weights as safetensors, tensor names "<unit>.<node>.<name>" (nn's names:
 * weight/bias for dense and head, wx/wh/bx/bh for gru, wx/wh/b for lstm;
 * "<unit>.<start>.gate.weight|bias" for gates). load needs every tensor with
 * its exact shape. */
int farm_rx_net_save(struct farm_rx_net *net, const char *path, struct farm_err *err);
int farm_rx_net_load(struct farm_rx_net *net, const char *path, struct farm_err *err);

/* Raw access to a parameter tensor by name (for tests and tools): *data,
 * *n floats; borrowed for the net's life. -ENOENT when there is none. */
int farm_rx_net_tensor(struct farm_rx_net *net, const char *name, float **data, float **grad,
                       size_t *n);

/* The i-th parameter tensor (0 <= i < farm_rx_net_n_tensors): its name, data,
 * gradient and 2-D shape (rows x cols; a bias is 1 x n). Any out-pointer may
 * be NULL. Borrowed for the net's life. -ENOENT past the end. */
int farm_rx_net_tensor_at(struct farm_rx_net *net, size_t i, const char **name, float **data,
                          float **grad, size_t *rows, size_t *cols);

/* Analytic forward FLOPs of one execution of compute node `node` of `unit`
 * for one object (nn's conventions: multiply-add 2, bias 1 per element,
 * relu 1, sigmoid/tanh 4, softmax 4 per class). 0 for markers. */
double farm_rx_node_flops(const struct farm_rx_model *model, int unit, int node);

/* ----------------------------------------------------------- executor -- */

enum farm_rx_mode {
    FARM_RX_CONDITIONS = 0,  /* evaluate every start node's condition */
    FARM_RX_NEVER_SKIP = 1,  /* every condition holds for every object */
    FARM_RX_ALWAYS_SKIP = 2, /* every condition fails for every object */
    FARM_RX_PLAIN = 3        /* the plain unrolled reference: no start/end
                                logic at all, every node on every row */
};

struct farm_rx_exec;

/* An executor for `net` with buffers for up to max_batch objects and, when
 * `train` is nonzero, the history of up to max_steps steps for backward
 * (max_steps is only an upper bound for training; inference takes any
 * number of steps). */
int farm_rx_exec_new(struct farm_rx_net *net, size_t max_batch, size_t max_steps, int train,
                     struct farm_rx_exec **out, struct farm_err *err);
void farm_rx_exec_free(struct farm_rx_exec *ex);

/* Runs `steps` steps on x (steps x batch x input) from zero states.
 * lengths: NULL or batch values in [0, steps]. Counters and activity add up
 * across calls until farm_rx_exec_reset_stats. Errors: -EINVAL (batch or
 * steps out of range, a bad length), with a message. */
int farm_rx_exec_forward(struct farm_rx_exec *ex, const float *x, size_t steps, size_t batch,
                         const int32_t *lengths, int mode, struct farm_err *err);

/* After a forward: the model's output node's value after the last step,
 * batch x model->out_width (probabilities for a head). Borrowed until the
 * next forward. */
const float *farm_rx_exec_output(const struct farm_rx_exec *ex);

/* After a forward: a compute node's current value, batch rows: its output
 * (h for cells, probabilities for heads) with which = 0, the LSTM cell c
 * with which = 1. NULL for a marker or a bad index. Borrowed until the next
 * forward. *width gets the row width. */
const float *farm_rx_exec_value(const struct farm_rx_exec *ex, int unit, int node, int which,
                                size_t *width);

struct farm_rx_stats {
    uint64_t executed;  /* node executions done (object x step x node) */
    uint64_t skipped;   /* node executions skipped */
    double flops_done;  /* analytic forward FLOPs of the executions done */
    double flops_saved; /* analytic forward FLOPs of the executions skipped */
};

/* Counters of one compute node, or (node < 0) of a whole unit, or (unit <
 * 0) of the whole model. Only FARM_RX_CONDITIONS, NEVER_SKIP and
 * ALWAYS_SKIP forwards count (PLAIN does not). */
void farm_rx_exec_stats(const struct farm_rx_exec *ex, int unit, int node,
                        struct farm_rx_stats *out);

/* Objects seen at `step` and how many of them ran every compute node of
 * `unit` there, summed over forwards since the last reset. */
void farm_rx_exec_activity(const struct farm_rx_exec *ex, int unit, size_t step, uint64_t *seen,
                           uint64_t *active);

/* Number of steps with activity recorded (the longest forward since reset). */
size_t farm_rx_exec_activity_steps(const struct farm_rx_exec *ex);

void farm_rx_exec_reset_stats(struct farm_rx_exec *ex);

/* ----------------------------------------------------------- backward -- */

/* Loss and gradients of the last forward (which must have been made by a
 * training executor, mode CONDITIONS, NEVER_SKIP or ALWAYS_SKIP):
 *   - the output node's value after the last step against labels (CE on a
 *     head's probabilities) or targets (batch x out_width, MSE);
 *   - plus step_weight x the mean over executed (object, step) pairs of the
 *     CE of every head at every step where it ran (deep supervision; needs
 *     labels; 0 turns it off).
 * Both terms are means over the batch. Backward runs through executed nodes
 * only: a skipped node adds no gradient for that object; its pass-on rule
 * carries the gradient on (state: to the previous step; input: to its
 * input; zeros: nowhere). Gradients ACCUMULATE into the net's grads (zero
 * them with farm_rx_net_zero_grad). *loss gets the loss (may be NULL). */
int farm_rx_exec_backward(struct farm_rx_exec *ex, const int32_t *labels, const float *targets,
                          double step_weight, double *loss, struct farm_err *err);

void farm_rx_net_zero_grad(struct farm_rx_net *net);

/* Gates (condition `gate`, Skip-RNN style) learn in backward by the
 * straight-through estimator: the binary "run the region" u = [g > threshold]
 * is taken as g itself in the backward, so dL/dg = dL/du = the gradient
 * reaching the named cell's new state dotted with (new state - previous
 * state), for the objects that ran it (a skipped object has no new state,
 * so no gradient). The gate's input (the cell's state) is treated as a
 * constant. `cost` adds cost x the mean gate value over the (object, step)
 * pairs where the gate was evaluated to the loss: a budget that pushes gates
 * to close (0, the default, is no budget). */
void farm_rx_exec_set_gate_cost(struct farm_rx_exec *ex, double cost);

/* -------------------------------------------------------------- tasks -- */

/* A sequence data set: n objects, x[n][steps][dim], per-object lengths,
 * labels (classification) or targets[n][tdim] (regression). */
struct farm_rx_data {
    size_t n, steps, dim;
    float *x;         /* n x steps x dim */
    int32_t *lengths; /* n */
    int32_t *labels;  /* n, or NULL */
    float *targets;   /* n x tdim, or NULL */
    size_t tdim, classes;
    int32_t *difficulty; /* n: the step from which the label is decidable, or NULL */
};

void farm_rx_data_release(struct farm_rx_data *d);

/* The adding problem (Hochreiter and Schmidhuber, 1997): dim 2; channel 0
 * uniform in [0, 1), channel 1 marks two positions, one in each half of
 * the sequence; target = the sum of the two marked values. Lengths vary
 * uniformly in [min_len, steps] (min_len = steps gives fixed lengths); the
 * marks lie within each object's length. */
int farm_rx_data_adding(struct farm_rx_data *d, size_t n, size_t steps, size_t min_len,
                        uint64_t seed, struct farm_err *err);

/* Sequence classification whose difficulty varies per sample: `classes`
 * classes, dim = classes + 1. Every step carries noise N(0, noise^2) on the
 * class channels; from step k_i on (k_i drawn per sample, a quarter of them
 * early in [1, steps/4], the rest spread over the whole sequence) the channel
 * of the label gets +signal and the last channel flags 1. An easy sample is
 * decidable early, a hard one only late. */
int farm_rx_data_varying(struct farm_rx_data *d, size_t n, size_t steps, size_t classes,
                         double signal, double noise, uint64_t seed, struct farm_err *err);

/* x from an .npy of shape (n, steps, dim) and labels from a 1-D integer .npy
 * (labels_path, or NULL with targets_path: an (n, k) or (n,) float .npy);
 * lengths_path NULL means full length. Errors name the file. */
int farm_rx_data_load_npy(struct farm_rx_data *d, const char *x_path, const char *labels_path,
                          const char *targets_path, const char *lengths_path, struct farm_err *err);

/* Splits off the last round(n * test_fraction) objects (after a seeded
 * shuffle) into `test`. */
int farm_rx_data_split(const struct farm_rx_data *d, double test_fraction, uint64_t seed,
                       struct farm_rx_data *train, struct farm_rx_data *test, struct farm_err *err);

/* ------------------------------------------------------ train / evaluate -- */

struct farm_rx_train_opts {
    int epochs;    /* passes over the training set */
    size_t batch;  /* objects per batch */
    int optimizer; /* 0 sgd, 1 adam */
    double lr;
    double step_weight; /* deep supervision weight, see backward */
    int mode;           /* enum farm_rx_mode used while training */
    uint64_t seed;      /* batch order */
    double clip;        /* gradient clipping by global norm; 0 = none */
    double gate_cost;   /* budget on gate conditions, see farm_rx_exec_set_gate_cost */
};

void farm_rx_train_opts_default(struct farm_rx_train_opts *o);

/* Called after every epoch with its mean loss; return nonzero to stop. */
typedef int (*farm_rx_epoch_fn)(void *arg, int epoch, double loss);

/* Trains `net` on `d` with backward through executed nodes. *final_loss
 * gets the last epoch's mean loss (may be NULL). */
int farm_rx_train(struct farm_rx_net *net, const struct farm_rx_data *d,
                  const struct farm_rx_train_opts *o, farm_rx_epoch_fn cb, void *arg,
                  double *final_loss, struct farm_err *err);

struct farm_rx_eval {
    double accuracy; /* classification: share correct (0 for regression) */
    double mse;      /* regression: mean squared error (0 for classification) */
    struct farm_rx_stats stats;
    double lat_p50_ms, lat_p99_ms; /* wall time per batch forward */
    double total_ms;               /* sum of batch forwards */
    size_t batches;
};

/* Runs `d` through `ex` in batches of ex's max_batch with `mode` and scores
 * the output. The executor's counters and activity are reset first and hold
 * this evaluation's afterwards. */
int farm_rx_evaluate(struct farm_rx_exec *ex, const struct farm_rx_data *d, int mode,
                     struct farm_rx_eval *out, struct farm_err *err);

/* Copies objects order[first .. first+count) of d into x (steps x count x
 * dim layout), lengths, labels and targets (any of the last three NULL to
 * skip). order NULL = identity. */
void farm_rx_data_batch(const struct farm_rx_data *d, const size_t *order, size_t first,
                        size_t count, float *x, int32_t *lengths, int32_t *labels, float *targets);

/* ------------------------------------------------------------ reports -- */

/* Writes skips.svg: per step, the share of objects still active in each
 * unit (one line per unit), from ex's activity. Atomic (temp + rename). */
int farm_rx_write_skips_svg(const struct farm_rx_exec *ex, const char *path, const char *title,
                            struct farm_err *err);

/* ---------------------------------------------------------------- run -- */

/* One rnnexit task, as the plugin runs it: load the model, make or load the
 * data, train (backward through executed nodes), then evaluate the held-out
 * part twice (never-skip, then with the conditions), write skips.svg and
 * weights.safetensors into out_dir, and report metrics through `metric`. */
struct farm_rx_run_config {
    const char *model_path; /* the model description */
    const char *display;    /* its name in messages (NULL: model_path) */
    const char *task;       /* "varying", "adding" or "npy" */
    size_t n, steps;        /* synthetic: objects and steps */
    size_t classes;         /* varying: classes */
    double signal, noise;   /* varying */
    size_t min_len;         /* adding: shortest length (padding beyond) */
    const char *x_path, *labels_path, *targets_path, *lengths_path; /* npy */
    double test_fraction;
    struct farm_rx_train_opts train;
    size_t eval_batch;
    uint64_t seed;       /* parameters, data and split */
    const char *out_dir; /* where skips.svg and weights.safetensors go */
    void *ud;            /* passed to the callbacks, each may be NULL */
    void (*log)(void *ud, const char *line);
    void (*metric)(void *ud, const char *name, double value, int64_t step);
    void (*progress)(void *ud, double fraction, const char *what);
    int (*cancelled)(void *ud);
};

struct farm_rx_run_result {
    struct farm_rx_eval never; /* held-out, never-skip */
    struct farm_rx_eval early; /* held-out, with the conditions */
    double final_loss;
    int cancelled;
    char svg_path[4200], weights_path[4200];
};

/* Runs the task. Metrics reported (step = epoch for train_loss, else 0):
 * train_loss, node_executions_done, node_executions_skipped,
 * skipped_share, flops_done, flops_saved, flops_saved_share,
 * latency_p50_ms, latency_p99_ms (with the conditions),
 * never_skip_latency_p50_ms, never_skip_latency_p99_ms,
 * speedup_vs_never_skip, accuracy_early_exit and accuracy_never_skip
 * (classification) or mse_early_exit and mse_never_skip (regression).
 * Errors: the model's (file:line:col), the data's, FARM_EBADPARAM for bad
 * settings; FARM_ECANCELLED when cancelled. */
int farm_rx_run(const struct farm_rx_run_config *cfg, struct farm_rx_run_result *res,
                struct farm_err *err);

#endif
