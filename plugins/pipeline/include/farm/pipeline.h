/*
 * The pipeline executor: a farm_mlp cut into sections, one thread per
 * section, micro-batches flowing stage to stage through bounded queues.
 *
 * A step takes one batch, cuts it into M consecutive row slices (the first
 * rows % M slices one row longer, exactly as farm_mlp_train_step does),
 * and runs the schedule (GPipe or 1F1B, see farm/pipeline_sched.h): stage
 * s forwards slice m when stage s-1 has handed it the activation, and
 * backwards it when stage s+1 has handed back the gradient at the cut. A
 * queue carries exactly the tensor the next section consumes: the
 * activation at the cut going forward, its gradient going back, each
 * copied into a slot of the queue so that neither side's buffers are
 * shared. Every stage runs its backwards in increasing micro-batch order,
 * so gradients accumulate in the same order as in the unsplit reference
 * whatever the timing; with single-threaded BLAS the weights after K steps
 * are bitwise those of farm_mlp_train_step with the same M.
 *
 * Threads: farm_pipe_new starts one thread per stage (pinned to one CPU
 * each when asked and possible) and sets BLAS to one thread, process-wide;
 * the threads sleep between steps and end in farm_pipe_free. A farm_pipe
 * is driven from one thread at a time.
 */
#ifndef FARM_PIPELINE_H
#define FARM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/nn.h"
#include "farm/pipeline_run.h"
#include "farm/pipeline_sched.h"

/* ------------------------------------------------------------------------
 * Split points
 * ------------------------------------------------------------------------ */

/* Turns split names into section starts. Each name is a layer of `m` that
 * starts a new section; section 0 starts at layer 0. Writes n_names + 1
 * starts (starts[0] = 0). Errors, FARM_EBADPARAM: an unknown name (the
 * message lists the valid names), a name that is the first layer or that
 * does not come after the previous split (an empty section). `what` names
 * the parameter in messages ("split"). */
int farm_pipe_split_names(const struct farm_mlp *m, const char *const *names, size_t n_names,
                          const char *what, size_t *starts, struct farm_err *err);

/* Measures each layer's forward+backward time on `rows` random rows: one
 * warm-up, then the median of `reps` runs. Writes n_layers costs (seconds)
 * into cost. Parameters are unchanged (gradients are zeroed afterwards). */
int farm_pipe_profile_layers(struct farm_mlp *m, size_t rows, int reps, double *cost,
                             struct farm_err *err);

/* The automatic split: the exact balanced partition of `cost` (one per
 * layer) into `stages` sections (farm_pipe_split_balanced), as starts. */
int farm_pipe_split_auto(const struct farm_mlp *m, const double *cost, int stages, size_t *starts,
                         struct farm_err *err);

/* ------------------------------------------------------------------------
 * Executor
 * ------------------------------------------------------------------------ */

struct farm_pipe_options {
    int kind;             /* FARM_PIPE_GPIPE or FARM_PIPE_1F1B */
    int micro_batches;    /* M >= 1 */
    size_t stages;        /* S >= 1 */
    const size_t *starts; /* S section starts: starts[0] == 0, increasing */
    int pin;              /* nonzero: pin stage s to an allowed CPU (s mod count) */
    unsigned jitter_us;   /* 0, or for tests: each stage sleeps a random
                             0..jitter_us microseconds before every action,
                             to vary the threads' interleaving */
};

struct farm_pipe;

/* Builds the executor over `m` (borrowed; must outlive it) for batches of
 * at most max_rows rows (>= M). `optim` (copied; NULL: steps never update)
 * configures one optimizer per stage over that stage's parameters. Work
 * areas and queue slots are allocated here for the schedule's peak number
 * of micro-batches in flight per stage (M under GPipe, S-s under 1F1B).
 * Errors FARM_EBADPARAM (with a message): M < 1, max_rows < M, bad starts,
 * a section whose input width does not match the previous one's output. */
int farm_pipe_new(struct farm_mlp *m, const struct farm_optim_config *optim,
                  const struct farm_pipe_options *o, size_t max_rows, struct farm_pipe **out,
                  struct farm_err *err);

/* Stops the stage threads and frees everything. NULL is allowed. */
void farm_pipe_free(struct farm_pipe *p);

/* One step over the batch x (rows x input, M <= rows <= max_rows) with
 * class labels (softmax CE) or targets (MSE): zero the gradients, run the
 * schedule with loss gradients scaled by 1/rows, then, when `update` is
 * nonzero and an optimizer was configured, one optimizer update per stage.
 * loss_sum and correct are summed over the batch (NULL to skip). When out
 * is not NULL (rows x output), the last stage copies the model output of
 * every slice into it. The step's events are kept (farm_pipe_events).
 * Returns 0 or a negative code with a message. */
int farm_pipe_step(struct farm_pipe *p, const struct farm_tensor *x, const int32_t *labels,
                   const struct farm_tensor *targets, int update, double *loss_sum, size_t *correct,
                   struct farm_tensor *out, struct farm_err *err);

/* The schedule the executor runs (borrowed until farm_pipe_free). */
const struct farm_pipe_schedule *farm_pipe_get_schedule(const struct farm_pipe *p);

/* The events of the last step, laid out as farm_pipe_simulate writes them,
 * times in seconds from the step's start (borrowed until the next step). */
const struct farm_pipe_event *farm_pipe_events(const struct farm_pipe *p);

/* Bytes the executor holds for activations, gradients and queue slots
 * (the part that depends on the schedule). */
size_t farm_pipe_buffer_bytes(const struct farm_pipe *p);

/* Nonzero when stage threads were pinned to CPUs. */
int farm_pipe_pinned(const struct farm_pipe *p);

#endif
