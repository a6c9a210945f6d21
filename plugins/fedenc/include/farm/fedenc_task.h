/*
 * fedenc task: the plugin's run() without the plugin ABI. Reads the task's
 * params (JSON), builds the children's data specs, runs the master (or a
 * child), trains the centralized baseline beside it, and writes the
 * artifacts. This header does not include the numeric kit, so the plugin
 * source can include it beside farm/plugin.h.
 *
 * Call from one thread; the master spawns its children as processes.
 */
#ifndef FARM_FEDENC_TASK_H
#define FARM_FEDENC_TASK_H

#include <jansson.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/fedenc.h"

/* What the task reports through; every member may be NULL. */
struct farm_fedenc_task_host {
    void *user;
    farm_fedenc_log_fn log;
    int (*metric)(void *user, const char *name, double value, int64_t step);
    int (*artifact)(void *user, const char *path, const char *name);
    void (*progress)(void *user, double fraction, const char *what);
    int (*cancelled)(void *user);
};

/* Where the task runs. work_dir resolves relative data paths; deps_dir
 * (may be NULL) holds .npy shards; scratch_dir receives the artifacts
 * before they are handed to host->artifact (and stays there when artifact
 * is NULL); child_exe is the farm-fedenc-child executable. */
struct farm_fedenc_task_env {
    const char *work_dir;
    const char *deps_dir;
    const char *scratch_dir;
    const char *child_exe;
};

/* Figures of a finished master run. */
struct farm_fedenc_task_result {
    uint32_t rounds, applied;
    double fed_accuracy, fed_loss;         /* last evaluated round */
    double central_accuracy, central_loss; /* NaN when the baseline was off */
    double median_round_seconds;
    double median_comm_agg_fraction;       /* (round - longest training) / round */
    double rounds_per_second;              /* rounds / federation wall time */
    double federation_seconds;             /* master run, children spawn to exit */
    double central_seconds;                /* the centralized baseline's training */
    size_t encoder_params;
};

/* Runs the task described by `params` (a JSON object; see
 * docs/plugins/fedenc.md for every key and its default). role "master"
 * (default) runs the federation and fills *res (may be NULL); role "child"
 * joins the master at params.connect. Returns 0 or a negative code with a
 * message: FARM_EBADPARAM naming the parameter, FARM_EBADDATA for data,
 * the master's and child's own errors otherwise. */
int farm_fedenc_task_run(const json_t *params, const struct farm_fedenc_task_env *env,
                         const struct farm_fedenc_task_host *host,
                         struct farm_fedenc_task_result *res, struct farm_err *err);

/* A child process's whole life (farm-fedenc-child and role=child). */
struct farm_fedenc_task_child_args {
    const char *connect;    /* HOST:PORT or [V6]:PORT */
    uint32_t id;
    const char *data;       /* a data spec as JSON text, or @FILE holding one */
    const char *base_dir;   /* resolves relative data paths (may be NULL) */
    const char *faults;     /* farm_fedenc_faults_parse() text, or NULL */
    const char *secret;
    double connect_timeout;
    farm_fedenc_log_fn log;
    void *log_user;
};

int farm_fedenc_task_child(const struct farm_fedenc_task_child_args *a, struct farm_err *err);

/* Splits "HOST:PORT" / "[V6]:PORT" into host (cap bytes) and port.
 * Returns 0 or FARM_EBADPARAM. */
int farm_fedenc_parse_hostport(const char *text, char *host, size_t cap, int *port,
                               struct farm_err *err);

#endif
