/*
 * fedenc.so: shared-encoder federation as a farm plugin. The run is the
 * master (role=master, the default): it spawns `children` local child
 * processes (farm-fedenc-child, found next to this .so), waits for
 * `remote_children` more, and trains one encoder with them. With
 * role=child the run joins a master elsewhere (connect=HOST:PORT).
 * Everything happens in fedenc_core/fedenc_model; this file only maps the
 * host's services.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/fedenc_task.h"
#include "farm/plugin.h"

static const struct farm_param params[] = {
    {"role", FARM_PARAM_STRING, 0, "\"master\"", "master (runs the federation) or child"},
    {"children", FARM_PARAM_INT, 0, "4", "local child processes the master spawns"},
    {"remote_children", FARM_PARAM_INT, 0, "0", "children expected to connect from elsewhere"},
    {"rounds", FARM_PARAM_INT, 0, "10", "federated rounds"},
    {"aggregator", FARM_PARAM_STRING, 0, "\"fedavg\"", "fedavg, mean, median or trimmed_mean"},
    {"trim_beta", FARM_PARAM_NUMBER, 0, "0.2", "trimmed mean: fraction cut at each end"},
    {"server_lr", FARM_PARAM_NUMBER, 0, "1", "server step size on the aggregated update"},
    {"server_momentum", FARM_PARAM_NUMBER, 0, "0", "server momentum (FedAvgM), 0 for none"},
    {"encoder", FARM_PARAM_STRING, 0, "\"mlp\"", "shared encoder type: mlp (tabular) or gru"},
    {"hidden", FARM_PARAM_JSON, 0, NULL, "encoder widths: [128, 64] (mlp) or 64 (gru)"},
    {"steps", FARM_PARAM_INT, 0, NULL, "gru: time steps per sample (npy data)"},
    {"epochs", FARM_PARAM_INT, 0, "1", "local epochs per round"},
    {"batch", FARM_PARAM_INT, 0, "32", "local mini-batch size (0: full batch)"},
    {"lr", FARM_PARAM_NUMBER, 0, "0.05", "local SGD learning rate"},
    {"momentum", FARM_PARAM_NUMBER, 0, "0", "local SGD momentum"},
    {"mu", FARM_PARAM_NUMBER, 0, "0", "FedProx proximal weight (0: FedAvg)"},
    {"head_epochs", FARM_PARAM_INT, 0, "0", "head-only epochs before each evaluation"},
    {"seed", FARM_PARAM_INT, 0, "1", "initialisation and shuffling seed"},
    {"min_children", FARM_PARAM_INT, 0, "1", "fewest updates a round aggregates"},
    {"accept_failures", FARM_PARAM_BOOL, 0, "true", "aggregate rounds in which children failed"},
    {"round_timeout", FARM_PARAM_NUMBER, 0, "60", "seconds per round phase"},
    {"join_timeout", FARM_PARAM_NUMBER, 0, "30", "seconds to wait for the children to join"},
    {"eval_every", FARM_PARAM_INT, 0, "1", "evaluate every N rounds (and after the last)"},
    {"respawn", FARM_PARAM_BOOL, 0, "true", "restart dead local children between rounds"},
    {"centralized", FARM_PARAM_BOOL, 0, "true", "train the centralized baseline beside"},
    {"secret", FARM_PARAM_STRING, 0, NULL, "shared secret (required with remote children)"},
    {"bind", FARM_PARAM_STRING, 0, "\"127.0.0.1\"", "address the master listens on"},
    {"port", FARM_PARAM_INT, 0, "0", "port the master listens on (0: any)"},
    {"connect", FARM_PARAM_STRING, 0, NULL, "role=child: the master's HOST:PORT"},
    {"child_id", FARM_PARAM_INT, 0, NULL, "role=child: this child's id"},
    {"data", FARM_PARAM_JSON, 0, "\"synthetic\"",
     "synthetic, digits, npy, or a list of per-child specs (role=child: a spec or a directory)"},
    {"alpha", FARM_PARAM_NUMBER, 0, "1", "synthetic(alpha, beta): model heterogeneity"},
    {"beta", FARM_PARAM_NUMBER, 0, "1", "synthetic(alpha, beta): data heterogeneity"},
    {"samples", FARM_PARAM_INT, 0, NULL, "synthetic: samples per child (absent: lognormal)"},
    {"digits", FARM_PARAM_STRING, 0, "\"data/digits.csv.gz\"", "digits: CSV path in the repo"},
    {"npy_dir", FARM_PARAM_STRING, 0, "\"fedenc\"", "npy: directory in the deps package"},
    {"test_fraction", FARM_PARAM_NUMBER, 0, "0.2", "held-out fraction per child"},
    {"data_seed", FARM_PARAM_INT, 0, "1", "data generation and split seed"},
    {"classes", FARM_PARAM_INT, 0, NULL, "classes, when no local child has data"},
    {"input", FARM_PARAM_INT, 0, NULL, "encoder input width, when no local child has data"},
    {"child_faults", FARM_PARAM_JSON, 0, NULL, "demo/test: {\"2\": \"die=3\"} per local child"},
    {0},
};

struct bridge {
    const struct farm_host *host;
    struct farm_ctx *ctx;
};

static void b_log(void *user, int level, const char *msg)
{
    struct bridge *b = user;
    b->host->log(b->ctx, level, "%s", msg);
}

static int b_metric(void *user, const char *name, double value, int64_t step)
{
    struct bridge *b = user;
    return b->host->metric(b->ctx, name, value, step);
}

static int b_artifact(void *user, const char *path, const char *name)
{
    struct bridge *b = user;
    return b->host->artifact(b->ctx, path, name);
}

static void b_progress(void *user, double fraction, const char *what)
{
    struct bridge *b = user;
    b->host->progress(b->ctx, fraction, what);
}

static int b_cancelled(void *user)
{
    struct bridge *b = user;
    return b->host->cancelled(b->ctx);
}

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    struct bridge b = {host, ctx};
    json_error_t je;
    json_t *p = json_loads(host->params_json(ctx), 0, &je);
    if (p == NULL) {
        host->log(ctx, FARM_LOG_ERROR, "fedenc: params: %s", je.text);
        return FARM_EBADPARAM;
    }
    /* farm-fedenc-child lives next to this shared object. */
    Dl_info info;
    char so[PATH_MAX] = "./fedenc.so", exe[PATH_MAX + 32];
    if (dladdr((const void *)params, &info) && info.dli_fname)
        snprintf(so, sizeof so, "%s", info.dli_fname);
    snprintf(exe, sizeof exe, "%s/farm-fedenc-child", dirname(so));
    struct farm_fedenc_task_env env = {
        .work_dir = host->work_dir(ctx),
        .deps_dir = host->deps_dir(ctx),
        .scratch_dir = FARM_HOST_HAS(host, scratch_dir) ? host->scratch_dir(ctx) : NULL,
        .child_exe = exe,
    };
    struct farm_fedenc_task_host th = {
        .user = &b,
        .log = b_log,
        .metric = b_metric,
        .artifact = b_artifact,
        .progress = b_progress,
        .cancelled = b_cancelled,
    };
    struct farm_err err;
    int rc = farm_fedenc_task_run(p, &env, &th, NULL, &err);
    json_decref(p);
    if (rc != 0)
        host->log(ctx, FARM_LOG_ERROR, "fedenc: %s", err.msg);
    return rc;
}

FARM_PLUGIN_DEFINE(.name = "fedenc", .version = "1.0",
                   .summary = "shared-encoder federation: a master and child processes train one "
                              "encoder",
                   .params = params, .run = run)
