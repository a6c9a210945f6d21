/*
 * graphsched operator graphs: the task-graph and cluster formats, candidate
 * parallel graphs, the calibrated cost model, the chooser and the executor.
 *
 * Tensors are 2-D float32, row-major, [rows, cols]. An operator graph lists
 * its inputs (tensors resident on every node before the run: data and
 * weights) and its operators in dependency order; every operator has one
 * output named after it. Operators (see docs/plugins/graphsched.md):
 *   matmul(a[m,k], b[k,n]) -> [m,n]          class matmul
 *   add(a, b, ...) same shapes, relu(a)        class elementwise
 *   softmax(a), layernorm(a) row-wise; rowsum(a) -> [m,1]   class reduction
 *   concat(a, b, ..., axis), split(a, axis, parts, index)   class copy
 *
 * A candidate parallel graph applies to each operator one choice: none, or
 * a split into k shards (k = 2, 4, ... <= kmax) along rows (batch), columns
 * (output dimension) or, for matmul, the inner dimension (partial products
 * summed by an add: the reduce). Shards consume their inputs split the same
 * way (split operators inserted only where the producer was not already
 * split that way, so chains stay split) and produce a split output that is
 * concatenated only where a consumer needs it whole. Every candidate
 * computes the same result as the original graph (up to float rounding).
 *
 * Thread-safety: loaded graphs, clusters and calibrations are read-only and
 * may be shared by threads. farm_gs_exec() starts one thread per node.
 */
#ifndef FARM_GRAPHSCHED_OPS_H
#define FARM_GRAPHSCHED_OPS_H

#include <jansson.h>

#include "farm/error.h"
#include "farm/graphsched.h"

#define FARM_GS_MAXIN 16  /* inputs of one operator; also the largest kmax */
#define FARM_GS_NAMELEN 80

enum farm_gs_opkind {
    FARM_GS_OP_INPUT = 0,
    FARM_GS_OP_MATMUL,
    FARM_GS_OP_ADD,
    FARM_GS_OP_RELU,
    FARM_GS_OP_SOFTMAX,
    FARM_GS_OP_LAYERNORM,
    FARM_GS_OP_ROWSUM,
    FARM_GS_OP_CONCAT,
    FARM_GS_OP_SLICE, /* "split" in the file: parts/index become offset/length */
    FARM_GS_NOPKINDS
};

/* Operator classes: a node's relative speed is given per class. */
enum farm_gs_opclass {
    FARM_GS_CLASS_MATMUL = 0,
    FARM_GS_CLASS_ELEMWISE,
    FARM_GS_CLASS_REDUCTION,
    FARM_GS_CLASS_COPY,
    FARM_GS_NCLASSES
};

struct farm_gs_op {
    int kind;
    char name[FARM_GS_NAMELEN];
    int nin, in[FARM_GS_MAXIN]; /* producer operator indices */
    int rows, cols;             /* output shape */
    int axis, off;              /* concat: axis; slice: axis and offset */
    int origin;                 /* index of the original operator it derives from */
    double scale;               /* inputs: values are uniform in [-scale, scale) */
};

/* Operators 0..ninputs-1 are the inputs; the rest follow in dependency order
 * (every operator's inputs have smaller indices). */
struct farm_gs_opgraph {
    int n, cap, ninputs, nout;
    struct farm_gs_op *ops;
    int *outputs; /* nout operator indices */
};

struct farm_gs_node {
    char name[FARM_GS_NAMELEN];
    char kind[FARM_GS_NAMELEN];
    int cores;
    double speed[FARM_GS_NCLASSES]; /* relative to one core of this machine */
};

struct farm_gs_cluster {
    int p;
    struct farm_gs_node *nodes;
    double *lat, *bw; /* p*p seconds and bytes/second, symmetric */
};

/* Measured on this machine: seconds per unit for each kernel (unit = flop
 * for matmul, output element otherwise) at a few sizes, interpolated in
 * log(size) and clamped at the ends. */
#define FARM_GS_CAL_POINTS 4
struct farm_gs_calib {
    double size[FARM_GS_NOPKINDS][FARM_GS_CAL_POINTS];
    double spu[FARM_GS_NOPKINDS][FARM_GS_CAL_POINTS];
    double mem_bw; /* bytes/second of a large memcpy, for reporting */
};

/* The operator kind's name as written in files ("matmul", "split", ...). */
const char *farm_gs_opkind_name(int kind);
/* Its class (enum farm_gs_opclass); -1 for inputs. */
int farm_gs_opkind_class(int kind);
/* The class names used in cluster files ("matmul", "elementwise", ...). */
const char *farm_gs_class_name(int cls);

/* Loads an operator graph from YAML:
 *   inputs: [{name: x, shape: [64, 128]}, {name: w, shape: [128, 32],
 *             scale: 0.088}, ...]     (scale: values in [-scale, scale), default 1)
 *   ops: [{name: h, op: matmul, in: [x, w]}, {name: s, op: split, in: [h],
 *          axis: 1, parts: 2, index: 0}, ...]     (optional shape: checked)
 *   outputs: [y]                 (optional: default, ops nobody consumes)
 * Shapes are inferred and checked. On error `g` is released and `err` says
 * "file:line:col: what". Release with farm_gs_opgraph_release(). */
int farm_gs_opgraph_load(const char *path, const char *display, struct farm_gs_opgraph *g,
                         struct farm_err *err);
void farm_gs_opgraph_release(struct farm_gs_opgraph *g);

/* Loads a cluster from YAML:
 *   nodes: [{name: n0, kind: cpu, cores: 1,
 *            speed: {matmul: 1, elementwise: 1, reduction: 1, copy: 1}}, ...]
 *   default_link: {latency: 2.0e-5, bandwidth: 1.0e9}      (optional)
 *   links: [{between: [n0, n1], latency: 1.0e-5, bandwidth: 5.0e9}, ...]
 * Every pair of distinct nodes needs a link or the default. */
int farm_gs_cluster_load(const char *path, const char *display, struct farm_gs_cluster *c,
                         struct farm_err *err);
void farm_gs_cluster_release(struct farm_gs_cluster *c);

/* Measures the kernels on this machine (OpenBLAS set to one thread), about a
 * second. When `cache_path` is not NULL and holds a calibration written by
 * this version, it is read instead; otherwise the fresh one is written there
 * (atomically). *from_cache tells which happened (may be NULL). */
int farm_gs_calibrate(const char *cache_path, struct farm_gs_calib *cal, int *from_cache,
                      struct farm_err *err);

/* Predicted seconds of operator i of g (not an input) on `node`: the
 * calibrated time on this machine divided by the node's speed for the
 * operator's class times its cores. */
double farm_gs_op_seconds(const struct farm_gs_calib *cal, const struct farm_gs_opgraph *g,
                          int i, const struct farm_gs_node *node);

/* The scheduling DAG of `g` on cluster `c`: one task per non-input operator
 * (task t is operator t + g->ninputs), costs from the model, one edge per
 * producer-consumer pair carrying the producer's bytes, latency and inverse
 * bandwidth from the links. Finalized; release with farm_gs_dag_release. */
int farm_gs_opgraph_dag(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                        const struct farm_gs_calib *cal, struct farm_gs_dag *d,
                        struct farm_err *err);

/* ---- candidates ---- */

enum farm_gs_split { FARM_GS_SPLIT_NONE = 0, FARM_GS_SPLIT_ROWS, FARM_GS_SPLIT_COLS,
                     FARM_GS_SPLIT_INNER };

struct farm_gs_choice {
    int mode, k; /* mode NONE has k = 1 */
};

/* The options of operator i of the original graph, in the documented order:
 * none, then rows k = 2, 4, ..., cols k = 2, 4, ..., inner k = 2, 4, ...,
 * each where the operator supports the mode and k <= the split dimension.
 * Writes up to `max` into opts and returns how many there are. */
int farm_gs_options(const struct farm_gs_opgraph *g, int i, int kmax, struct farm_gs_choice *opts,
                    int max);

/* Builds the candidate graph of `g` under `choice` (one per operator of g;
 * inputs must be none). `out` is the caller's. */
int farm_gs_expand(const struct farm_gs_opgraph *g, const struct farm_gs_choice *choice,
                   struct farm_gs_opgraph *out, struct farm_err *err);

/* A short description of `choice`: "baseline" or "h1:rows2 a1:rows2". The
 * caller frees it. */
char *farm_gs_choice_text(const struct farm_gs_opgraph *g, const struct farm_gs_choice *choice);

struct farm_gs_search {
    int kmax;             /* largest shard count (power of two, <= FARM_GS_MAXIN) */
    int budget;           /* most candidates evaluated (>= 1) */
    unsigned methods;     /* bit m set: schedule with method m */
};

struct farm_gs_candidate {
    char *text;                         /* farm_gs_choice_text */
    struct farm_gs_choice *choice;      /* per original operator */
    int ntasks;
    double span[FARM_GS_NMETHODS];      /* predicted makespan; NAN when not run */
};

struct farm_gs_result {
    int ncand, exhaustive;
    struct farm_gs_candidate *cands;    /* in evaluation order */
    int best, best_method;              /* indices of the winner */
    struct farm_gs_opgraph graph;       /* the winner's graph */
    struct farm_gs_dag dag;             /* and its DAG */
    struct farm_gs_sched sched;         /* and schedule */
    double sched_seconds;               /* time spent in the schedulers */
};

/* The chooser. When the candidate space (product of the operators' option
 * counts) is at most `budget`, every candidate is evaluated in index order;
 * otherwise the baseline, then each uniform strategy (every operator that
 * supports it split the same way), then greedy coordinate descent from the
 * best so far (operators in order, options in order, accepting strict
 * improvements) until no move improves or the budget is spent. Each
 * candidate is scheduled with every method in `methods`; the winner is the
 * lowest predicted makespan, ties to the earlier candidate, then the lower
 * method index. `out` is the caller's: farm_gs_result_release(). */
int farm_gs_choose(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                   const struct farm_gs_calib *cal, const struct farm_gs_search *opts,
                   struct farm_gs_result *out, struct farm_err *err);
void farm_gs_result_release(struct farm_gs_result *r);

/* candidates.json content: [{"index", "candidate", "tasks", "makespan":
 * {"heft": s, ...}, "chosen": bool}, ...]. New reference or NULL. */
json_t *farm_gs_result_json(const struct farm_gs_result *r);

/* ---- execution ---- */

/* Seeded input tensors for g (one buffer per input operator, 64-byte
 * aligned, values uniform in [-scale, scale) from seed and the input's
 * position). The
 * caller frees each with free() and the array too. */
int farm_gs_make_inputs(const struct farm_gs_opgraph *g, uint64_t seed, float ***out);

/* Runs g on the calling thread in operator order; *outputs gets one buffer
 * per graph output (caller frees each and the array). *seconds (may be
 * NULL): thread CPU time spent in kernels. */
int farm_gs_run_single(const struct farm_gs_opgraph *g, float *const *inputs, float ***outputs,
                       double *seconds);

struct farm_gs_exec_stats {
    double *start, *finish; /* per task (g->n - g->ninputs), emulated seconds */
    double makespan;        /* emulated: measured kernel times / node speed, links modelled */
    double wall;            /* wall-clock seconds of the whole run */
    double copy_seconds;    /* real time spent copying tensors between nodes */
    long copies;
};

/* Executes candidate graph g with schedule s (tasks as in
 * farm_gs_opgraph_dag) on one thread per node of c. Every output and copy
 * buffer is allocated and touched before the threads start. Each node runs its
 * operators in order of scheduled start once their inputs have arrived; a
 * tensor consumed on another node is copied into that node's buffer.
 * Emulated time: an operator starts at max(node clock, arrival of its
 * inputs) and lasts its measured thread CPU time divided by the node's
 * speed x cores; a copy arrives latency + bytes / bandwidth after the
 * producer finishes. Outputs as in farm_gs_run_single. `cancelled` (may be
 * NULL) is polled between operators; a cancelled run returns FARM_ECANCELLED.
 * stats->start/finish are allocated here; free them with
 * farm_gs_exec_stats_release(). */
int farm_gs_exec(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                 const struct farm_gs_sched *s, float *const *inputs, float ***outputs,
                 struct farm_gs_exec_stats *stats, int (*cancelled)(void *), void *arg);
void farm_gs_exec_stats_release(struct farm_gs_exec_stats *st);

/* Compares outputs of two runs of graphs with the same outputs: passes when
 * every element has |x - r| <= tol * (1 + |r|). Returns 0 or FARM_ENUMERIC
 * naming the output, element and values; *max_err gets the largest
 * |x - r| / (1 + |r|) (may be NULL). */
int farm_gs_compare(const struct farm_gs_opgraph *g, float *const *got, float *const *ref,
                    double tol, double *max_err, struct farm_err *err);

/* ---- artifacts ---- */

/* Writes schedule.json: {"candidate", "method", "predicted_makespan",
 * "measured_makespan" (null without st), "tasks": [{"task", "op" (the
 * original operator), "kind", "node", "start", "finish", "measured_start",
 * "measured_finish"}]} for the winner in r; st may be NULL. */
int farm_gs_write_schedule(const char *path, const struct farm_gs_opgraph *orig,
                           const struct farm_gs_result *r, const struct farm_gs_exec_stats *st,
                           struct farm_err *err);

/* Writes candidates.json (farm_gs_result_json). */
int farm_gs_write_candidates(const char *path, const struct farm_gs_result *r,
                             struct farm_err *err);

/* Writes gantt.svg: one row per node; in each row the predicted schedule
 * (upper lane) beside the measured one (lower lane, when st is not NULL),
 * operators as bars coloured by class, named in a tooltip. */
int farm_gs_write_gantt(const char *path, const struct farm_gs_result *r,
                        const struct farm_gs_exec_stats *st, struct farm_err *err);

/* Frees an array of n buffers (as returned above) and the array. */
void farm_gs_free_buffers(float **bufs, int n);

#endif
