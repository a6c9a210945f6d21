/*
 * graphsched scheduling core: task DAGs with a cost matrix, list schedulers
 * (HEFT, CPOP, PEFT, HEFT with lookahead), a list schedule refined by
 * iterative search (REFINE), a validity checker, a
 * brute-force optimum for tiny graphs, schedule metrics, and seeded graph
 * generators.
 *
 * Model. A DAG has n tasks and p processors. cost[i*p+k] is the execution
 * time of task i on processor k. An edge e = (src, dst, data) costs
 *     comm(e, k, l) = 0                                  when k == l
 *                   = lat[k*p+l] + data * inv_bw[k*p+l]  otherwise,
 * so the plain cost-matrix format (lat 0, inv_bw 1) makes `data` the
 * communication time itself, as in the literature. The mean communication
 * cost of an edge (used by the ranks) is the mean of comm(e, k, l) over the
 * ordered pairs k != l (0 when p == 1).
 *
 * Schedulers (Topcuoglu, Hariri, Wu, IEEE TPDS 13(3) 2002; Arabnejad,
 * Barbosa, IEEE TPDS 25(3) 2014). All of them use the insertion-based policy:
 * a task goes into the earliest idle gap of a processor, at or after its
 * data-ready time, that is long enough to hold it.
 *   HEFT  priority = upward rank with mean costs; processor = min EFT.
 *   CPOP  priority = upward + downward rank; the critical path (from the
 *         entry task of highest priority, following the successor of highest
 *         priority) runs on the one processor minimising the sum of its
 *         costs; other tasks go to the processor of min EFT.
 *   PEFT  optimistic cost table OCT(i,k); priority = mean over k of OCT;
 *         processor = min EFT + OCT.
 *   LOOKAHEAD  HEFT with one level of lookahead (Bittencourt, Sakellariou,
 *         Madeira, PDP 2010): priority = upward rank; for each processor the
 *         task is placed tentatively, then each of its children (in priority
 *         order, seeing only parents already placed) tentatively on its
 *         processor of min EFT; the processor minimising the latest of those
 *         children's EFTs (the task's own EFT when it has none) wins.
 *   REFINE  the shortest of the HEFT, CPOP and PEFT schedules, improved by
 *         forward-backward list passes (the reversed graph by decreasing
 *         finish time, then the graph by start time in the mirrored
 *         schedule, least EFT each way) and by moves of critical-path tasks
 *         to other processors, each re-evaluated by an insertion-based
 *         replay of the task order; only strictly shorter schedules are
 *         kept, so the result is never longer than HEFT's, CPOP's or PEFT's.
 *         Its work is bounded by about 10 HEFT passes beyond the three
 *         seeds (10 * (n + m) * p counted steps); details in refine.c and
 *         docs/plugins/graphsched.md.
 * Deterministic tie rules (documented in docs/plugins/graphsched.md):
 *   - tasks: equal priority goes to the earlier task in the reference
 *     topological order (Kahn's algorithm, smallest task index first);
 *   - processors: equal EFT (or O_EFT, then EFT, for PEFT; children's EFT,
 *     then EFT, for LOOKAHEAD) goes to the lower processor index; CPOP's
 *     critical-path processor likewise;
 *   - CPOP path: among successors of equal priority, the lowest task index;
 *   - REFINE: equal makespans keep the earlier schedule (seeds: HEFT, CPOP,
 *     PEFT); the critical path starts at the lowest-index task of latest
 *     finish and steps to the first input edge (edge order) whose arrival
 *     equals the start, else to the task before it on its processor;
 *     processors to try go by estimated finish, then lower index; replay
 *     order is by start time, then topological position.
 * The same DAG always gives the same schedule, bit for bit.
 *
 * Thread-safety: functions touch only their arguments; a finalized DAG may be
 * read by several threads at once.
 */
#ifndef FARM_GRAPHSCHED_H
#define FARM_GRAPHSCHED_H

#include <jansson.h>
#include <stdint.h>

#include "farm/error.h"

struct farm_gs_edge {
    int src, dst;
    double data;
};

struct farm_gs_dag {
    int n, p, m;
    double *cost;   /* n*p */
    double *lat;    /* p*p, diagonal unused */
    double *inv_bw; /* p*p, diagonal unused */
    struct farm_gs_edge *edges;
    char **task_names; /* n entries, each NULL or owned */
    char **proc_names; /* p entries, each NULL or owned */
    /* Filled by farm_gs_dag_finalize(): edge indices by source and by
     * destination (CSR), and the reference topological order with each
     * task's position in it. */
    int *succ_off, *succ, *pred_off, *pred, *topo, *topo_pos;
    int cap_edges;
    /* Means of lat and inv_bw over ordered pairs k != l, also set by
     * farm_gs_dag_finalize(): change lat or inv_bw only before it. */
    double mean_lat, mean_inv_bw;
};

enum farm_gs_method {
    FARM_GS_HEFT = 0,
    FARM_GS_CPOP = 1,
    FARM_GS_PEFT = 2,
    FARM_GS_LOOKAHEAD = 3,
    FARM_GS_REFINE = 4,
    FARM_GS_NMETHODS = 5
};

struct farm_gs_sched {
    int n;
    int *proc;
    double *start, *finish;
    double makespan;
};

/* Sets up `d` for n tasks on p processors: costs 0, latency 0, inverse
 * bandwidth 1, no edges, no names. Returns 0, -EINVAL (n < 1 or p < 1) or
 * -ENOMEM. Release with farm_gs_dag_release(). */
int farm_gs_dag_init(struct farm_gs_dag *d, int n, int p);

/* Frees everything `d` owns and zeroes it. NULL is allowed. */
void farm_gs_dag_release(struct farm_gs_dag *d);

/* Appends edge src -> dst carrying `data` (>= 0). Returns 0, -EINVAL for an
 * index out of range, a self loop or negative data, or -ENOMEM. */
int farm_gs_dag_add_edge(struct farm_gs_dag *d, int src, int dst, double data);

/* Builds the adjacency and the reference topological order. Must be called
 * after the last edge and before any scheduling call. Returns 0, or
 * FARM_ECYCLE (naming a task on the cycle) / FARM_EBADSPEC (duplicate edge,
 * negative or non-finite cost) with a message in `err`. */
int farm_gs_dag_finalize(struct farm_gs_dag *d, struct farm_err *err);

/* Loads a cost-matrix DAG from YAML (see docs/plugins/graphsched.md):
 *   processors: [P1, P2, P3]
 *   tasks: [{name: n1, cost: [14, 16, 9]}, ...]
 *   edges: [[n1, n2, 18], ...]          (from, to, communication cost)
 * `display` names the file in messages (NULL: path). On success `d` is
 * finalized and the caller's; on error `d` is left released and `err` holds
 * "file:line:col: what". */
int farm_gs_dag_load(const char *path, const char *display, struct farm_gs_dag *d,
                     struct farm_err *err);

/* Communication time of edge e from processor k to l (0 when k == l). */
double farm_gs_comm(const struct farm_gs_dag *d, int e, int k, int l);

/* Mean communication time of edge e over ordered processor pairs k != l:
 * mean_lat + data * mean_inv_bw (0 when p == 1). */
double farm_gs_mean_comm(const struct farm_gs_dag *d, int e);

/* Ranks of a finalized DAG into caller arrays: upward (n), downward (n),
 * optimistic cost table (n*p, [i*p+k]). */
void farm_gs_rank_upward(const struct farm_gs_dag *d, double *rank);
void farm_gs_rank_downward(const struct farm_gs_dag *d, double *rank);
void farm_gs_oct(const struct farm_gs_dag *d, double *oct);

/* Schedules `d` with `method`. On success *out is the caller's (release with
 * farm_gs_sched_release). Returns 0, -EINVAL or -ENOMEM. */
int farm_gs_schedule(const struct farm_gs_dag *d, int method, struct farm_gs_sched *out);

/* The method's name ("heft", "cpop", "peft", "lookahead", "refine"), or
 * NULL. */
const char *farm_gs_method_name(int method);

/* The method whose name is `name` (case-sensitive), or -EINVAL. */
int farm_gs_method_parse(const char *name);

/* Allocates a schedule for n tasks (contents unset). 0 or -ENOMEM. */
int farm_gs_sched_alloc(struct farm_gs_sched *s, int n);

/* Frees the schedule's arrays and zeroes it. NULL is allowed. */
void farm_gs_sched_release(struct farm_gs_sched *s);

/* Checks `s` against `d`: every task scheduled once on a valid processor;
 * duration equals cost on that processor; no two tasks overlap on a
 * processor; every task starts at or after each predecessor's finish plus
 * the communication time when on another processor; makespan equals the
 * last finish. Comparisons allow 1e-9 relative slack. Returns 0 or
 * FARM_EBADDATA with the first violation in `err`. */
int farm_gs_check(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                  struct farm_err *err);

/* An optimal schedule by exhaustive branch and bound (start-time-ordered
 * enumeration of task and processor choices, which contains an optimal
 * schedule). For tiny graphs only: refuses n > 12 with -E2BIG, and returns
 * FARM_ETIMEOUT after `max_nodes` search nodes (<= 0: no limit). */
int farm_gs_optimal(const struct farm_gs_dag *d, long max_nodes, struct farm_gs_sched *out,
                    struct farm_err *err);

/* Length of the critical path when every task takes its minimum cost and
 * communication is free: the lower bound in the SLR denominator. */
double farm_gs_cp_min(const struct farm_gs_dag *d);

/* Sequential time: the minimum over processors of the sum of all costs. */
double farm_gs_seq_time(const struct farm_gs_dag *d);

/* Schedule length ratio makespan / cp_min, and speedup seq_time / makespan. */
double farm_gs_slr(const struct farm_gs_dag *d, const struct farm_gs_sched *s);
double farm_gs_speedup(const struct farm_gs_dag *d, const struct farm_gs_sched *s);

/* The schedule as JSON: {"method", "makespan", "tasks": [{"task", "node",
 * "start", "finish"}, ...]} in task order, names from the DAG when present.
 * New reference, or NULL on allocation failure. */
json_t *farm_gs_sched_json(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                           const char *method);

/* ---- generators (seeded; the same arguments give the same DAG) ---- */

/* DAGGEN-style random graph parameters (Suter's daggen; Topcuoglu et al.'s
 * CCR and heterogeneity):
 *   n            number of tasks
 *   fat          width: a level holds about n^fat tasks (daggen)
 *   density      probability of each candidate edge (at least one parent)
 *   regularity   level widths vary by +-(1 - regularity) around n^fat
 *   jump         an edge spans at most `jump` levels
 *   ccr          mean communication / mean computation
 *   beta         heterogeneity: cost(i,k) ~ U[w_i (1 - beta/2), w_i (1 + beta/2)]
 *   p            processors
 *   mean_cost    mean of the per-task mean cost w_i ~ U[0, 2 mean_cost] */
struct farm_gs_gen_params {
    int n;
    double fat, density, regularity;
    int jump;
    double ccr, beta;
    int p;
    double mean_cost;
};

/* Builds a random DAG into `d` (initialized and finalized here). */
int farm_gs_gen_random(const struct farm_gs_gen_params *gp, uint64_t seed,
                       struct farm_gs_dag *d);

/* Gaussian elimination on an m x m matrix: (m^2 + m - 2) / 2 tasks
 * (Topcuoglu et al., section 6.2). Costs and communication as in gp (gp->n,
 * fat, density, regularity, jump are ignored). m >= 2. */
int farm_gs_gen_gauss(int m, const struct farm_gs_gen_params *gp, uint64_t seed,
                      struct farm_gs_dag *d);

/* FFT on `points` (a power of two >= 2) input points: 2*points - 1 recursive
 * call tasks plus points * log2(points) butterfly tasks. */
int farm_gs_gen_fft(int points, const struct farm_gs_gen_params *gp, uint64_t seed,
                    struct farm_gs_dag *d);

#endif
