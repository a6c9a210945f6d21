/* rnnexit.so: reads the task's params through the host and runs
 * farm_rx_run; metrics, logs, progress and artifacts go back through the
 * host. All logic lives in rnnexit_core. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "farm/plugin.h"
#include "farm/rnnexit.h"

static const struct farm_param params[] = {
    {.name = "model",
     .type = FARM_PARAM_STRING,
     .required = 1,
     .help = "model description (YAML), relative to the task's source dir or deps dir"},
    {.name = "task",
     .type = FARM_PARAM_STRING,
     .default_json = "\"varying\"",
     .help = "data: varying (classification, difficulty varies per sample), adding, or npy"},
    {.name = "n",
     .type = FARM_PARAM_INT,
     .default_json = "3000",
     .help = "synthetic tasks: number of sequences"},
    {.name = "steps",
     .type = FARM_PARAM_INT,
     .default_json = "24",
     .help = "synthetic tasks: time steps per sequence"},
    {.name = "classes",
     .type = FARM_PARAM_INT,
     .default_json = "4",
     .help = "varying: classes (the model's input is classes + 1 features)"},
    {.name = "signal",
     .type = FARM_PARAM_NUMBER,
     .default_json = "1.0",
     .help = "varying: strength of the class signal once it starts"},
    {.name = "noise",
     .type = FARM_PARAM_NUMBER,
     .default_json = "0.5",
     .help = "varying: standard deviation of the noise"},
    {.name = "min_len",
     .type = FARM_PARAM_INT,
     .default_json = "0",
     .help = "adding: shortest sequence, the rest is padding (0: steps / 2)"},
    {.name = "x",
     .type = FARM_PARAM_STRING,
     .help = "npy: inputs, shape (objects, steps, features)"},
    {.name = "labels", .type = FARM_PARAM_STRING, .help = "npy: integer class labels (objects,)"},
    {.name = "targets",
     .type = FARM_PARAM_STRING,
     .help = "npy: regression targets (objects, k), when there are no labels"},
    {.name = "lengths",
     .type = FARM_PARAM_STRING,
     .help = "npy: sequence lengths (objects,); default: all full length"},
    {.name = "test_fraction",
     .type = FARM_PARAM_NUMBER,
     .default_json = "0.25",
     .help = "share of the sequences held out for evaluation"},
    {.name = "epochs", .type = FARM_PARAM_INT, .default_json = "6", .help = "training epochs"},
    {.name = "batch", .type = FARM_PARAM_INT, .default_json = "32", .help = "training batch"},
    {.name = "lr", .type = FARM_PARAM_NUMBER, .default_json = "0.01", .help = "learning rate"},
    {.name = "optimizer",
     .type = FARM_PARAM_STRING,
     .default_json = "\"adam\"",
     .help = "adam or sgd"},
    {.name = "step_weight",
     .type = FARM_PARAM_NUMBER,
     .default_json = "1.0",
     .help = "weight of the per-step loss of every head (deep supervision; 0: off)"},
    {.name = "gate_cost",
     .type = FARM_PARAM_NUMBER,
     .default_json = "0",
     .help = "budget on gate conditions: cost x mean gate value added to the loss"},
    {.name = "train_mode",
     .type = FARM_PARAM_STRING,
     .default_json = "\"conditions\"",
     .help = "conditions (skip while training, as at inference) or never_skip"},
    {.name = "eval_batch",
     .type = FARM_PARAM_INT,
     .default_json = "64",
     .help = "objects per batch when evaluating (latency is per batch)"},
    {.name = "seed",
     .type = FARM_PARAM_INT,
     .default_json = "1",
     .help = "seed for parameters, data, split and batch order"},
    {.name = NULL},
};

struct glue {
    const struct farm_host *host;
    struct farm_ctx *ctx;
};

static void glue_log(void *ud, const char *line)
{
    struct glue *g = ud;
    g->host->log(g->ctx, FARM_LOG_INFO, "%s", line);
}

static void glue_metric(void *ud, const char *name, double v, int64_t step)
{
    struct glue *g = ud;
    g->host->metric(g->ctx, name, v, step);
}

static void glue_progress(void *ud, double f, const char *what)
{
    struct glue *g = ud;
    g->host->progress(g->ctx, f, what);
}

static int glue_cancelled(void *ud)
{
    struct glue *g = ud;
    return g->host->cancelled(g->ctx);
}

static int fail(const struct farm_host *host, struct farm_ctx *ctx, int code, const char *msg)
{
    host->log(ctx, FARM_LOG_ERROR, "%s", msg);
    return code;
}

/* A task file: absolute as given, else under work_dir, else deps_dir. */
static int resolve(const struct farm_host *host, struct farm_ctx *ctx, const char *name, char *out,
                   size_t cap)
{
    struct stat st;
    if (name[0] == '/') {
        snprintf(out, cap, "%s", name);
        return stat(out, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -ENOENT;
    }
    const char *dirs[2] = {host->work_dir(ctx), host->deps_dir(ctx)};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        snprintf(out, cap, "%s/%s", dirs[i], name);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
            return 0;
    }
    return -ENOENT;
}

static int get_file(const struct farm_host *host, struct farm_ctx *ctx, const char *param,
                    char *out, size_t cap, const char **result)
{
    const char *name = NULL;
    *result = NULL;
    if (host->param_string(ctx, param, &name) != 0 || !name || !name[0])
        return 0;
    if (resolve(host, ctx, name, out, cap) != 0) {
        char msg[1400];
        snprintf(msg, sizeof msg,
                 "%s: %s: no such file in the task's source dir (%s) or deps "
                 "dir (%s)",
                 param, name, host->work_dir(ctx) ? host->work_dir(ctx) : "none",
                 host->deps_dir(ctx) ? host->deps_dir(ctx) : "none");
        return fail(host, ctx, -ENOENT, msg);
    }
    *result = out;
    return 0;
}

static int get_count(const struct farm_host *host, struct farm_ctx *ctx, const char *name,
                     int64_t lo, int64_t hi, size_t *out)
{
    int64_t v = 0;
    if (host->param_int(ctx, name, &v) != 0)
        return 0;
    if (v < lo || v > hi) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: expected an integer in %lld..%lld, got %lld", name,
                 (long long)lo, (long long)hi, (long long)v);
        return fail(host, ctx, FARM_EBADPARAM, msg);
    }
    *out = (size_t)v;
    return 0;
}

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    char model_path[4096], x[4096], labels[4096], targets[4096], lengths[4096];
    const char *model = NULL, *task = "varying", *opt = "adam", *mode = "conditions";
    struct farm_rx_run_config c;
    memset(&c, 0, sizeof c);
    farm_rx_train_opts_default(&c.train);
    int rc;
    if (host->param_string(ctx, "model", &model) != 0 || !model || !model[0])
        return fail(host, ctx, FARM_EBADPARAM, "model: a model description path is required");
    if ((rc = get_file(host, ctx, "model", model_path, sizeof model_path, &c.model_path)))
        return rc;
    c.display = model;
    host->param_string(ctx, "task", &task);
    c.task = task;
    size_t epochs = 6, seed = 1;
    c.n = 3000;
    c.steps = 24;
    c.classes = 4;
    c.eval_batch = 64;
    c.train.batch = 32;
    if ((rc = get_count(host, ctx, "n", 2, 10000000, &c.n)) ||
        (rc = get_count(host, ctx, "steps", 1, 100000, &c.steps)) ||
        (rc = get_count(host, ctx, "classes", 2, 100000, &c.classes)) ||
        (rc = get_count(host, ctx, "min_len", 0, 100000, &c.min_len)) ||
        (rc = get_count(host, ctx, "epochs", 0, 1000000, &epochs)) ||
        (rc = get_count(host, ctx, "batch", 1, 65536, &c.train.batch)) ||
        (rc = get_count(host, ctx, "eval_batch", 1, 65536, &c.eval_batch)) ||
        (rc = get_count(host, ctx, "seed", 0, INT64_MAX, &seed)))
        return rc;
    if (strcmp(task, "adding") == 0 && c.min_len == 0)
        c.min_len = c.steps / 2 > 2 ? c.steps / 2 : 2;
    c.train.epochs = (int)epochs;
    c.seed = c.train.seed = (uint64_t)seed;
    c.signal = 1.0;
    c.noise = 0.5;
    c.test_fraction = 0.25;
    host->param_number(ctx, "signal", &c.signal);
    host->param_number(ctx, "noise", &c.noise);
    host->param_number(ctx, "test_fraction", &c.test_fraction);
    host->param_number(ctx, "lr", &c.train.lr);
    host->param_number(ctx, "step_weight", &c.train.step_weight);
    host->param_number(ctx, "gate_cost", &c.train.gate_cost);
    host->param_string(ctx, "optimizer", &opt);
    if (strcmp(opt, "adam") == 0 || strcmp(opt, "sgd") == 0)
        c.train.optimizer = strcmp(opt, "adam") == 0;
    else
        return fail(host, ctx, FARM_EBADPARAM, "optimizer: expected adam or sgd");
    host->param_string(ctx, "train_mode", &mode);
    if (strcmp(mode, "conditions") == 0)
        c.train.mode = FARM_RX_CONDITIONS;
    else if (strcmp(mode, "never_skip") == 0)
        c.train.mode = FARM_RX_NEVER_SKIP;
    else
        return fail(host, ctx, FARM_EBADPARAM, "train_mode: expected conditions or never_skip");
    if (!(c.train.lr > 0) || !(c.train.step_weight >= 0) || !(c.train.gate_cost >= 0))
        return fail(host, ctx, FARM_EBADPARAM, "lr must be > 0, step_weight and gate_cost >= 0");
    if ((rc = get_file(host, ctx, "x", x, sizeof x, &c.x_path)) ||
        (rc = get_file(host, ctx, "labels", labels, sizeof labels, &c.labels_path)) ||
        (rc = get_file(host, ctx, "targets", targets, sizeof targets, &c.targets_path)) ||
        (rc = get_file(host, ctx, "lengths", lengths, sizeof lengths, &c.lengths_path)))
        return rc;
    c.out_dir = FARM_HOST_HAS(host, scratch_dir) ? host->scratch_dir(ctx) : NULL;
    if (!c.out_dir)
        c.out_dir = host->work_dir(ctx);
    struct glue g = {.host = host, .ctx = ctx};
    c.ud = &g;
    c.log = glue_log;
    c.metric = glue_metric;
    c.progress = glue_progress;
    c.cancelled = glue_cancelled;
    struct farm_rx_run_result res;
    struct farm_err err;
    farm_err_clear(&err);
    if ((rc = farm_rx_run(&c, &res, &err)))
        return fail(host, ctx, rc, err.msg);
    const char *paths[2] = {res.svg_path, res.weights_path};
    const char *names[2] = {"skips.svg", "weights.safetensors"};
    for (int i = 0; i < 2; i++)
        if ((rc = host->artifact(ctx, paths[i], names[i]))) {
            char msg[4400];
            snprintf(msg, sizeof msg, "cannot store artifact %s: %s", names[i], farm_strerror(rc));
            return fail(host, ctx, rc, msg);
        }
    return 0;
}

FARM_PLUGIN_DEFINE(.name = "rnnexit", .version = "1.0",
                   .summary = "recurrent units whose start node skips nodes up to the end node "
                              "for objects failing its condition",
                   .params = params, .run = run)
