/* pipeline.so: reads the task's params through the host and runs
 * farm_pipe_run; metrics, logs and artifacts go back through the host. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/pipeline_run.h"
#include "farm/plugin.h"

static const struct farm_param params[] = {
    {.name = "model",
     .type = FARM_PARAM_STRING,
     .required = 1,
     .help = "model description (YAML), relative to the task's source dir or deps dir"},
    {.name = "split",
     .type = FARM_PARAM_JSON,
     .default_json = "\"auto\"",
     .help = "list of layer names, each starting a new section, or \"auto\" (balanced)"},
    {.name = "stages",
     .type = FARM_PARAM_INT,
     .default_json = "2",
     .help = "number of sections with split: auto"},
    {.name = "micro_batches",
     .type = FARM_PARAM_INT,
     .default_json = "4",
     .help = "micro-batches M per batch (>= 1); gradients accumulate over them"},
    {.name = "schedule",
     .type = FARM_PARAM_STRING,
     .default_json = "\"1f1b\"",
     .help = "gpipe or 1f1b"},
    {.name = "epochs",
     .type = FARM_PARAM_INT,
     .default_json = "10",
     .help = "stop after this many passes over the training set (0: no limit)"},
    {.name = "max_steps",
     .type = FARM_PARAM_INT,
     .default_json = "0",
     .help = "stop after this many optimizer steps (0: no limit)"},
    {.name = "target_loss",
     .type = FARM_PARAM_NUMBER,
     .help = "stop when the mean training loss of the last 10 steps is at most this"},
    {.name = "seed",
     .type = FARM_PARAM_INT,
     .help = "seed for initialisation and shuffling (default: the description's seed)"},
    {.name = "pin",
     .type = FARM_PARAM_BOOL,
     .default_json = "true",
     .help = "pin each section's thread to its own CPU where possible"},
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

static int glue_step(void *ud, const struct farm_pipe_step_info *info)
{
    struct glue *g = ud;
    g->host->metric(g->ctx, "loss", info->loss, info->step);
    if (!isnan(info->accuracy))
        g->host->metric(g->ctx, "accuracy", info->accuracy, info->step);
    g->host->metric(g->ctx, "samples_per_s", info->samples_per_s, info->step);
    if (info->planned_steps > 0) {
        char what[96];
        snprintf(what, sizeof(what), "step %lld/%lld, epoch %d, loss %.4f", (long long)info->step,
                 (long long)info->planned_steps, info->epoch, info->loss);
        g->host->progress(g->ctx, (double)info->step / (double)info->planned_steps, what);
    }
    return 0;
}

static int glue_cancelled(void *ud)
{
    struct glue *g = ud;
    return g->host->cancelled(g->ctx);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The model path: absolute as given, else under work_dir, else deps_dir. */
static int resolve_model(const struct farm_host *host, struct farm_ctx *ctx, const char *model,
                         char *out, size_t cap)
{
    if (model[0] == '/') {
        snprintf(out, cap, "%s", model);
        return is_file(out) ? 0 : -ENOENT;
    }
    const char *wd = host->work_dir(ctx);
    if (wd != NULL) {
        snprintf(out, cap, "%s/%s", wd, model);
        if (is_file(out))
            return 0;
    }
    const char *dd = host->deps_dir(ctx);
    if (dd != NULL) {
        snprintf(out, cap, "%s/%s", dd, model);
        if (is_file(out))
            return 0;
    }
    return -ENOENT;
}

static int fail(const struct farm_host *host, struct farm_ctx *ctx, int code, const char *msg)
{
    host->log(ctx, FARM_LOG_ERROR, "%s", msg);
    return code;
}

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    char msg[1200];
    const char *model = NULL, *schedule = NULL;
    int64_t stages = 2, micro = 4, epochs = 10, max_steps = 0, seed = 0;
    double target = NAN;
    int pin = 1, has_seed = 0, rc;

    if (host->param_string(ctx, "model", &model) != 0 || model[0] == '\0')
        return fail(host, ctx, FARM_EBADPARAM, "model: a model description path is required");
    if (host->param_string(ctx, "schedule", &schedule) != 0)
        schedule = "1f1b";
    int kind;
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_pipe_kind_parse(schedule, &kind, &err) != 0)
        return fail(host, ctx, err.code, err.msg);
    /* Absent params keep the defaults above; a param of the wrong type
     * (which the host's table check should already have refused) is an
     * error, not a silent default. */
    struct {
        const char *name;
        int64_t *out;
    } ints[] = {{"stages", &stages},
                {"micro_batches", &micro},
                {"epochs", &epochs},
                {"max_steps", &max_steps}};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (host->param_int(ctx, ints[i].name, ints[i].out) == -EINVAL) {
            snprintf(msg, sizeof(msg), "%s: expected an integer", ints[i].name);
            return fail(host, ctx, FARM_EBADPARAM, msg);
        }
    }
    rc = host->param_number(ctx, "target_loss", &target);
    if (rc == -EINVAL)
        return fail(host, ctx, FARM_EBADPARAM, "target_loss: expected a number");
    if (rc != 0)
        target = NAN;
    rc = host->param_int(ctx, "seed", &seed);
    if (rc == -EINVAL)
        return fail(host, ctx, FARM_EBADPARAM, "seed: expected an integer");
    has_seed = rc == 0;
    if (host->param_bool(ctx, "pin", &pin) == -EINVAL)
        return fail(host, ctx, FARM_EBADPARAM, "pin: expected true or false");
    if (epochs < 0 || max_steps < 0) {
        snprintf(msg, sizeof(msg), "%s: expected an integer >= 0 (0: no limit), got %lld",
                 epochs < 0 ? "epochs" : "max_steps", (long long)(epochs < 0 ? epochs : max_steps));
        return fail(host, ctx, FARM_EBADPARAM, msg);
    }
    if (micro < 1 || micro > 1 << 20) {
        snprintf(msg, sizeof(msg), "micro_batches: expected an integer >= 1, got %lld",
                 (long long)micro);
        return fail(host, ctx, FARM_EBADPARAM, msg);
    }
    if (stages < 1 || stages > 64) {
        snprintf(msg, sizeof(msg), "stages: expected an integer in 1..64, got %lld",
                 (long long)stages);
        return fail(host, ctx, FARM_EBADPARAM, msg);
    }

    /* split: "auto" or a list of layer names. */
    json_error_t jerr;
    json_t *all = json_loads(host->params_json(ctx), 0, &jerr);
    json_t *split = all ? json_object_get(all, "split") : NULL;
    const char **names = NULL;
    size_t n_names = 0;
    int split_auto = 0;
    if (split == NULL || (json_is_string(split) && strcmp(json_string_value(split), "auto") == 0)) {
        split_auto = 1;
    } else if (json_is_array(split)) {
        n_names = json_array_size(split);
        names = calloc(n_names ? n_names : 1, sizeof(char *));
        if (names == NULL) {
            json_decref(all);
            return fail(host, ctx, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n_names; i++) {
            json_t *v = json_array_get(split, i);
            if (!json_is_string(v)) {
                snprintf(msg, sizeof(msg), "split[%zu]: expected a layer name (string)", i);
                free(names);
                json_decref(all);
                return fail(host, ctx, FARM_EBADPARAM, msg);
            }
            names[i] = json_string_value(v);
        }
    } else {
        json_decref(all);
        return fail(host, ctx, FARM_EBADPARAM,
                    "split: expected \"auto\" or a list of layer names, e.g. [fc3]");
    }

    char path[4096];
    rc = resolve_model(host, ctx, model, path, sizeof(path));
    if (rc != 0) {
        snprintf(msg, sizeof(msg),
                 "model: %s: no such file in the task's source dir (%s) or deps dir (%s)", model,
                 host->work_dir(ctx) ? host->work_dir(ctx) : "none",
                 host->deps_dir(ctx) ? host->deps_dir(ctx) : "none");
        free(names);
        json_decref(all);
        return fail(host, ctx, -ENOENT, msg);
    }
    const char *out_dir = FARM_HOST_HAS(host, scratch_dir) ? host->scratch_dir(ctx) : NULL;
    if (out_dir == NULL)
        out_dir = host->work_dir(ctx);

    struct glue g = {.host = host, .ctx = ctx};
    struct farm_pipe_run_config cfg = {
        .model_path = path,
        .display = model,
        .split = names,
        .n_split = n_names,
        .split_auto = split_auto,
        .stages = (int)stages,
        .micro_batches = (int)micro,
        .kind = kind,
        .epochs = epochs > 0x7fffffff ? 0x7fffffff : (int)epochs,
        .max_steps = max_steps,
        .target_loss = target,
        .has_seed = has_seed,
        .seed = (uint64_t)seed,
        .pin = pin,
        .out_dir = out_dir,
        .ud = &g,
        .log = glue_log,
        .on_step = glue_step,
        .cancelled = glue_cancelled,
    };
    struct farm_pipe_run_result res;
    rc = farm_pipe_run(&cfg, &res, &err);
    free(names);
    json_decref(all);
    if (rc != 0)
        return fail(host, ctx, rc, err.msg);

    int64_t last = res.steps;
    host->metric(ctx, "bubble_measured", res.bubble_measured, last);
    host->metric(ctx, "bubble_formula", res.bubble_formula, last);
    host->metric(ctx, "pipeline_buffer_bytes", (double)res.buffer_bytes, last);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        host->metric(ctx, "peak_rss_bytes", (double)ru.ru_maxrss * 1024.0, last);
    host->metric(ctx, "samples_per_s_mean", res.samples_per_s, last);
    host->metric(ctx, "final_loss", res.final_loss, last);
    if (!isnan(res.train_accuracy))
        host->metric(ctx, "train_accuracy", res.train_accuracy, last);
    if (!isnan(res.test_loss))
        host->metric(ctx, "test_loss", res.test_loss, last);
    if (!isnan(res.test_accuracy))
        host->metric(ctx, "test_accuracy", res.test_accuracy, last);
    host->metric(ctx, "steps", (double)res.steps, last);
    host->log(ctx, FARM_LOG_INFO, "stopped by %s after %lld steps", res.stopped_by,
              (long long)res.steps);
    if (strcmp(res.stopped_by, "cancelled") == 0)
        return FARM_ECANCELLED;

    static const char *const files[] = {"weights.safetensors", "timeline.json", "timeline.svg",
                                        "loss.svg"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && res.steps > 0; i++) {
        char ap[4200];
        snprintf(ap, sizeof(ap), "%s/%s", out_dir, files[i]);
        rc = host->artifact(ctx, ap, files[i]);
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "cannot store artifact %s: %s", files[i], farm_strerror(rc));
            return fail(host, ctx, rc, msg);
        }
    }
    host->progress(ctx, 1.0, "done");
    return 0;
}

FARM_PLUGIN_DEFINE(.name = "pipeline", .version = "1.0",
                   .summary = "pipeline-parallel training: model sections on their own threads, "
                              "GPipe or 1F1B micro-batch schedules",
                   .params = params, .run = run)
