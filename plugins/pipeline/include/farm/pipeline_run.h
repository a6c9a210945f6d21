/*
 * A whole pipeline training run, as the plugin and the benchmark driver
 * start it: model description in, trained weights and charts out.
 *
 * This header needs neither farm/nn.h nor farm/plugin.h: the plugin's
 * glue includes it beside farm/plugin.h, the driver beside farm/nn.h.
 */
#ifndef FARM_PIPELINE_RUN_H
#define FARM_PIPELINE_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/pipeline_sched.h"

/* What one finished step reports. */
struct farm_pipe_step_info {
    int64_t step;    /* 1-based */
    int epoch;       /* 1-based */
    double loss;     /* mean over the batch */
    double accuracy; /* fraction correct (softmax CE); NAN for MSE */
    double samples_per_s;
    int64_t planned_steps; /* steps the run will take at most, from epochs
                              and max_steps (0: unknown) */
};

struct farm_pipe_run_config {
    const char *model_path;   /* the model description (YAML) */
    const char *display;      /* its name in messages (NULL: model_path) */
    const char *data_dir;     /* base of the description's data paths (NULL:
                                 the model file's directory) */
    const char *const *split; /* layer names, each starting a section */
    size_t n_split;
    int split_auto; /* nonzero: balanced split into `stages` sections */
    int stages;     /* with split_auto */
    int micro_batches;
    int kind;           /* schedule */
    int epochs;         /* <= 0: no limit */
    int64_t max_steps;  /* <= 0: no limit */
    double target_loss; /* NAN: none; else stop when the mean loss of the
                           last 10 steps (fewer at the start) is <= it */
    int has_seed;
    uint64_t seed; /* init and shuffling; default the description's */
    int pin;
    const char *out_dir; /* where the artifacts are written (NULL: none) */

    /* Callbacks, each may be NULL; ud is passed back. on_step returns
     * nonzero to stop (as cancelled); cancelled() is polled between steps. */
    void *ud;
    void (*log)(void *ud, const char *line);
    int (*on_step)(void *ud, const struct farm_pipe_step_info *info);
    int (*cancelled)(void *ud);
};

struct farm_pipe_run_result {
    int64_t steps;
    int epochs;                      /* epochs started */
    const char *stopped_by;          /* "epochs", "max_steps", "target_loss", "cancelled" */
    double final_loss;               /* mean of the last step */
    double test_loss, test_accuracy; /* held-out set (NAN when none) */
    double train_accuracy;           /* whole training set after training */
    double samples_per_s;            /* all steps but the first (warm-up) */
    double bubble_measured;          /* 1 - sum busy / (S * sum makespan) over the
                                        same steps */
    double bubble_formula;           /* (S-1)/(M+S-1) */
    size_t buffer_bytes;             /* farm_pipe_buffer_bytes */
    size_t stages;
    size_t starts[64]; /* section starts (first `stages` entries) */
};

/* Loads the description and its data, resolves the split, checks every
 * parameter (all before training starts), trains until the first of
 * epochs / max_steps / target_loss / cancellation, evaluates, and when
 * out_dir is set writes weights.safetensors, timeline.json, timeline.svg
 * (both of the last full-sized step) and loss.svg there. Returns 0 (also
 * when cancelled: see stopped_by) or a negative code with a message naming
 * the input at fault. Runs on the calling thread plus one thread per
 * section; the callbacks are called on the calling thread. */
int farm_pipe_run(const struct farm_pipe_run_config *cfg, struct farm_pipe_run_result *res,
                  struct farm_err *err);

#endif
