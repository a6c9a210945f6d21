/*
 * fedenc aggregation: how the master turns the children's parameter sets into
 * the shared encoder's next parameters.
 *
 * Pure functions over flat float32 vectors: no sockets, no threads, no
 * allocation beyond what each call documents. Every rule visits the updates in
 * ascending child-id order and accumulates in double, so the result depends on
 * the set of updates only, never on the order in which they arrived.
 *
 * Thread safety: a struct farm_fedenc_agg belongs to one thread at a time; the
 * free functions are reentrant.
 */
#ifndef FARM_FEDENC_AGG_H
#define FARM_FEDENC_AGG_H

#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"

/* The preset rules. */
enum farm_fedenc_rule {
    FARM_FEDENC_FEDAVG = 1,  /* weighted by sample count (McMahan et al. 2017) */
    FARM_FEDENC_MEAN = 2,    /* unweighted mean */
    FARM_FEDENC_MEDIAN = 3,  /* coordinate-wise median (mean of the two middle values for even k) */
    FARM_FEDENC_TRIMMED = 4  /* coordinate-wise trimmed mean: drop floor(beta*k) lowest and highest */
};

/* Parses "fedavg", "mean", "median", "trimmed_mean" (also "trimmed").
 * Returns the rule, or FARM_EBADPARAM with a message naming the accepted
 * values. */
int farm_fedenc_rule_parse(const char *name, struct farm_err *err);

/* The rule's canonical name; "?" for an unknown value. Static string. */
const char *farm_fedenc_rule_name(int rule);

/* One child's contribution to a round. `params` is borrowed for the call. */
struct farm_fedenc_update {
    uint32_t child_id;  /* unique within one call */
    uint64_t samples;   /* the child's training sample count (FedAvg weight) */
    const float *params;
};

/* Configuration of an aggregator.
 *   rule      an enum farm_fedenc_rule value
 *   beta      trimmed mean only: the fraction cut at each end, 0 <= beta < 0.5
 *   server_lr server step size (1 with momentum 0: the rule's result is the new model)
 *   momentum  server momentum in [0, 1): with m > 0 the master keeps a velocity
 *             v <- m*v + (w - a) and sets w <- w - server_lr*v, where a is the
 *             rule's result (FedAvgM, Hsu et al. 2019). */
struct farm_fedenc_agg_cfg {
    int rule;
    double beta;
    double server_lr;
    double momentum;
};

/* An aggregator: the configuration, the model size, the server velocity. */
struct farm_fedenc_agg {
    struct farm_fedenc_agg_cfg cfg;
    size_t n;
    double *velocity; /* n values when momentum is used, else NULL */
    double *scratch;  /* n values */
    float *column;    /* per-coordinate workspace, grown as needed */
    size_t column_cap;
};

/* Initialises `self` for models of `n` floats. Returns 0, FARM_EBADPARAM for a
 * bad configuration (message says which field), or -ENOMEM. `self` is the
 * caller's; release it with farm_fedenc_agg_release(). */
int farm_fedenc_agg_init(struct farm_fedenc_agg *self, const struct farm_fedenc_agg_cfg *cfg,
                         size_t n, struct farm_err *err);

/* Frees what init allocated. NULL is allowed. */
void farm_fedenc_agg_release(struct farm_fedenc_agg *self);

/* Combines `k` updates into `global` (n floats, read as the current model and
 * overwritten with the next one). The updates are taken in ascending child-id
 * order whatever their order in `ups`. Errors leave `global` untouched:
 * -EINVAL for k == 0 or a duplicate child id, FARM_EBADDATA when FedAvg's
 * total sample count is zero. Does not check finiteness: run
 * farm_fedenc_check_finite() on each update first. */
int farm_fedenc_agg_apply(struct farm_fedenc_agg *self, float *global,
                          const struct farm_fedenc_update *ups, size_t k, struct farm_err *err);

/* Returns 0 when the n values are all finite, else FARM_EBADDATA with a
 * message naming the first bad index ("params[12] is nan"). */
int farm_fedenc_check_finite(const float *v, size_t n, struct farm_err *err);

/* The description of one tensor of the encoder. */
#define FARM_FEDENC_NAME_MAX 64
#define FARM_FEDENC_NDIM_MAX 4
struct farm_fedenc_tensor_spec {
    char name[FARM_FEDENC_NAME_MAX];
    int ndim;
    int64_t shape[FARM_FEDENC_NDIM_MAX];
};

/* The number of elements of `t` (product of its shape). */
size_t farm_fedenc_tensor_numel(const struct farm_fedenc_tensor_spec *t);

/* Checks that `got` (ngot tensors, as a child sent them) matches `want`
 * exactly: same count, same names in the same order, same shapes. Returns 0
 * or FARM_EBADDATA with a message that says what differs ("tensor 1
 * 'enc.w1': shape [64,32], expected [64,16]"). */
int farm_fedenc_schema_check(const struct farm_fedenc_tensor_spec *want, size_t nwant,
                             const struct farm_fedenc_tensor_spec *got, size_t ngot,
                             struct farm_err *err);

#endif
