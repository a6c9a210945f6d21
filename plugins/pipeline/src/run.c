/* Split resolution, layer profiling, and a whole training run. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "farm/pipeline.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* "fc1, fc2, fc3" into buf (truncated with "..." when long). */
static void layer_list(const struct farm_mlp *m, char *buf, size_t cap)
{
    size_t at = 0, L = farm_mlp_n_layers(m);
    buf[0] = '\0';
    for (size_t i = 0; i < L; i++) {
        int n = snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", farm_mlp_layer(m, i)->name);
        if (n < 0 || (size_t)n >= cap - at) {
            if (cap > 4)
                strcpy(buf + cap - 4, "...");
            return;
        }
        at += (size_t)n;
    }
}

int farm_pipe_split_names(const struct farm_mlp *m, const char *const *names, size_t n_names,
                          const char *what, size_t *starts, struct farm_err *err)
{
    size_t L = farm_mlp_n_layers(m);
    char valid[512];
    starts[0] = 0;
    for (size_t k = 0; k < n_names; k++) {
        const char *nm = names[k] ? names[k] : "";
        size_t idx = L;
        for (size_t i = 0; i < L; i++) {
            if (strcmp(farm_mlp_layer(m, i)->name, nm) == 0) {
                idx = i;
                break;
            }
        }
        if (idx == L) {
            layer_list(m, valid, sizeof(valid));
            return farm_err_set(err, FARM_EBADPARAM,
                                "%s[%zu]: no layer named \"%s\"; valid names: %s", what, k, nm,
                                valid);
        }
        if (idx == 0)
            return farm_err_set(err, FARM_EBADPARAM,
                                "%s[%zu]: \"%s\" is the first layer, so section 0 would be "
                                "empty (name the layers that start sections 1, 2, ...)",
                                what, k, nm);
        if (idx <= starts[k])
            return farm_err_set(err, FARM_EBADPARAM,
                                "%s[%zu]: \"%s\" does not come after \"%s\", so section %zu "
                                "would be empty (split names must follow the layer order)",
                                what, k, nm, farm_mlp_layer(m, starts[k])->name, k);
        starts[k + 1] = idx;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int farm_pipe_profile_layers(struct farm_mlp *m, size_t rows, int reps, double *cost,
                             struct farm_err *err)
{
    size_t L = farm_mlp_n_layers(m);
    FARM_RETURN_ERROR_IF(rows < 1 || reps < 1, err, FARM_EBADPARAM,
                         "profiling needs rows >= 1 and reps >= 1");
    double *t = calloc((size_t)reps, sizeof(double));
    if (t == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    struct farm_rng rng;
    farm_rng_seed(&rng, 0x70726f66u);
    int rc = 0;
    for (size_t i = 0; i < L && rc == 0; i++) {
        const struct farm_layer_desc *ld = farm_mlp_layer(m, i);
        struct farm_tensor x = {0}, dy = {0};
        struct farm_mlp_work *w = NULL;
        rc = farm_tensor_init(&x, rows, ld->in);
        if (rc == 0)
            rc = farm_tensor_init(&dy, rows, ld->out);
        if (rc == 0)
            rc = farm_mlp_work_new(m, i, i + 1, rows, &w);
        if (rc == 0) {
            farm_tensor_fill_normal(&x, 0.0f, 1.0f, &rng);
            farm_tensor_fill_normal(&dy, 0.0f, 1.0f, &rng);
            for (int r = -1; r < reps && rc == 0; r++) {
                double t0 = now_s();
                const struct farm_tensor *y, *dx;
                rc = farm_mlp_forward(m, w, &x, &y);
                if (rc == 0)
                    rc = farm_mlp_backward(m, w, &dy, i == 0 ? NULL : &dx);
                if (r >= 0)
                    t[r] = now_s() - t0;
            }
        }
        if (rc == 0) {
            qsort(t, (size_t)reps, sizeof(double), cmp_double);
            cost[i] = t[reps / 2];
        } else {
            farm_err_set(err, rc, "profiling layer %s failed: %s", ld->name, farm_strerror(rc));
        }
        farm_mlp_work_free(w);
        farm_tensor_release(&x);
        farm_tensor_release(&dy);
    }
    farm_mlp_zero_grad(m, 0, L);
    free(t);
    return rc;
}

int farm_pipe_split_auto(const struct farm_mlp *m, const double *cost, int stages, size_t *starts,
                         struct farm_err *err)
{
    size_t L = farm_mlp_n_layers(m);
    FARM_RETURN_ERROR_IF(L > 100000, err, FARM_EBADPARAM, "too many layers");
    int *st = calloc((size_t)(stages > 0 ? stages : 1), sizeof(int));
    if (st == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = farm_pipe_split_balanced(cost, (int)L, stages, st, NULL, err);
    if (rc == 0)
        for (int s = 0; s < stages; s++)
            starts[s] = (size_t)st[s];
    free(st);
    return rc;
}

/* ------------------------------------------------------------------------
 * A training run
 * ------------------------------------------------------------------------ */

static void logf_(const struct farm_pipe_run_config *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(const struct farm_pipe_run_config *c, const char *fmt, ...)
{
    if (c->log == NULL)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->log(c->ud, line);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

struct run_state {
    struct farm_pipe_event *shown; /* the timeline artifact's step */
    int64_t shown_step;
    struct farm_model_desc *desc;
    struct farm_mlp *mlp;
    struct farm_pipe *pipe;
    struct farm_dataset train, test;
    double *losses;
    size_t n_losses, cap_losses;
    size_t *order;
    struct farm_tensor xb, yb;
    int32_t *lb;
    char **stage_names;
    size_t stages;
};

static void run_state_release(struct run_state *r)
{
    farm_pipe_free(r->pipe);
    farm_mlp_free(r->mlp);
    farm_model_desc_free(r->desc);
    farm_dataset_release(&r->train);
    farm_dataset_release(&r->test);
    free(r->losses);
    free(r->shown);
    free(r->order);
    free(r->lb);
    farm_tensor_release(&r->xb);
    farm_tensor_release(&r->yb);
    for (size_t s = 0; r->stage_names != NULL && s < r->stages; s++)
        free(r->stage_names[s]);
    free(r->stage_names);
}

static int write_artifacts(const struct farm_pipe_run_config *cfg, struct run_state *r,
                           struct farm_err *err)
{
    char path[4096];
    int rc;
    snprintf(path, sizeof(path), "%s/weights.safetensors", cfg->out_dir);
    if ((rc = farm_mlp_save(r->mlp, path, err)) != 0)
        return rc;
    const struct farm_pipe_schedule *sc = farm_pipe_get_schedule(r->pipe);
    const struct farm_pipe_event *ev = r->shown;
    const char *const *names = (const char *const *)r->stage_names;
    snprintf(path, sizeof(path), "%s/timeline.json", cfg->out_dir);
    if ((rc = farm_pipe_timeline_write_json(path, sc, ev, names, err)) != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/timeline.svg", cfg->out_dir);
    if ((rc = farm_pipe_timeline_write_svg(path, sc, ev, names, err)) != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/loss.svg", cfg->out_dir);
    char title[256];
    snprintf(title, sizeof(title), "training loss (%s%s%s, %zu stages, %s, M=%d)",
             r->desc->name && r->desc->name[0] ? r->desc->name : "model",
             farm_loss_name(r->desc->loss)[0] ? ": " : "", farm_loss_name(r->desc->loss), r->stages,
             farm_pipe_kind_name(sc->kind), sc->micro);
    return farm_pipe_loss_write_svg(path, r->losses, (int)r->n_losses, title, err);
}

/* Everything that can be checked before training: description, data,
 * split, micro-batches. Fills r and res->starts/stages. */
static int prepare(const struct farm_pipe_run_config *cfg, struct run_state *r,
                   struct farm_pipe_run_result *res, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(cfg->model_path == NULL || cfg->model_path[0] == '\0', err, FARM_EBADPARAM,
                         "model: a model description path is required");
    FARM_RETURN_ERROR_IF(cfg->micro_batches < 1, err, FARM_EBADPARAM,
                         "micro_batches: expected an integer >= 1, got %d", cfg->micro_batches);
    FARM_RETURN_ERROR_IF(cfg->kind != FARM_PIPE_GPIPE && cfg->kind != FARM_PIPE_1F1B, err,
                         FARM_EBADPARAM, "schedule: expected \"gpipe\" or \"1f1b\"");
    FARM_RETURN_ERROR_IF(cfg->split_auto && cfg->stages < 1, err, FARM_EBADPARAM,
                         "stages: expected an integer >= 1 with split: auto, got %d", cfg->stages);
    FARM_RETURN_ERROR_IF(!cfg->split_auto && cfg->n_split + 1 > 64, err, FARM_EBADPARAM,
                         "split: at most 63 split points");
    FARM_RETURN_ERROR_IF(cfg->split_auto && cfg->stages > 64, err, FARM_EBADPARAM,
                         "stages: at most 64");
    FARM_RETURN_ERROR_IF(cfg->epochs <= 0 && cfg->max_steps <= 0 && isnan(cfg->target_loss), err,
                         FARM_EBADPARAM,
                         "no completion condition: set epochs, max_steps or target_loss");

    int rc = farm_model_desc_load(cfg->model_path, cfg->display, &r->desc, err);
    if (rc != 0)
        return rc;
    const char *shown = cfg->display ? cfg->display : cfg->model_path;
    size_t batch = r->desc->batch_size;
    FARM_RETURN_ERROR_IF(batch < (size_t)cfg->micro_batches, err, FARM_EBADPARAM,
                         "micro_batches: %d micro-batches do not fit a batch of %zu rows "
                         "(batch_size in %s)",
                         cfg->micro_batches, batch, shown);
    FARM_RETURN_ERROR_IF(r->desc->data.source == FARM_DATA_NONE, err, FARM_EBADMODEL,
                         "%s: the model description has no data section to train on", shown);

    char *base = cfg->data_dir ? strdup(cfg->data_dir) : dir_of(cfg->model_path);
    if (base == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    rc = farm_model_desc_load_data(r->desc, base, &r->train, &r->test, err);
    free(base);
    if (rc != 0)
        return rc;
    if (r->desc->loss == FARM_LOSS_SOFTMAX_CE)
        FARM_RETURN_ERROR_IF(r->train.labels == NULL, err, FARM_EBADDATA,
                             "%s: softmax cross-entropy needs class labels, the data has none",
                             shown);
    else
        FARM_RETURN_ERROR_IF(r->train.y.rows != r->train.n, err, FARM_EBADDATA,
                             "%s: the mse loss needs regression targets, the data has none", shown);
    FARM_RETURN_ERROR_IF(r->train.n < (size_t)cfg->micro_batches, err, FARM_EBADDATA,
                         "%s: %zu training samples, fewer than the %d micro-batches", shown,
                         r->train.n, cfg->micro_batches);

    uint64_t seed = cfg->has_seed ? cfg->seed : r->desc->seed;
    rc = farm_mlp_new(r->desc, seed, &r->mlp, err);
    if (rc != 0)
        return rc;
    size_t L = farm_mlp_n_layers(r->mlp);

    if (cfg->split_auto && cfg->stages == 1) {
        res->starts[0] = 0;
        res->stages = 1;
    } else if (cfg->split_auto) {
        FARM_RETURN_ERROR_IF((size_t)cfg->stages > L, err, FARM_EBADPARAM,
                             "stages: %d sections need at least %d layers, %s has %zu", cfg->stages,
                             cfg->stages, shown, L);
        double *cost = calloc(L, sizeof(double));
        if (cost == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        farm_nn_blas_set_threads(1);
        size_t rows = (batch + (size_t)cfg->micro_batches - 1) / (size_t)cfg->micro_batches;
        rc = farm_pipe_profile_layers(r->mlp, rows, 5, cost, err);
        if (rc == 0)
            rc = farm_pipe_split_auto(r->mlp, cost, cfg->stages, res->starts, err);
        if (rc == 0) {
            char line[1024];
            size_t at = 0;
            for (size_t i = 0; i < L && at < sizeof(line); i++) {
                int n = snprintf(line + at, sizeof(line) - at, " %s=%.3fms",
                                 farm_mlp_layer(r->mlp, i)->name, cost[i] * 1e3);
                if (n < 0)
                    break;
                at += (size_t)n;
            }
            logf_(cfg, "split auto: profiled forward+backward at %zu rows:%s", rows, line);
        }
        free(cost);
        if (rc != 0)
            return rc;
        res->stages = (size_t)cfg->stages;
    } else {
        rc = farm_pipe_split_names(r->mlp, cfg->split, cfg->n_split, "split", res->starts, err);
        if (rc != 0)
            return rc;
        res->stages = cfg->n_split + 1;
    }
    r->stages = res->stages;
    r->stage_names = calloc(r->stages, sizeof(char *));
    if (r->stage_names == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (size_t s = 0; s < r->stages; s++) {
        size_t first = res->starts[s], last = s + 1 < r->stages ? res->starts[s + 1] : L;
        char nm[160];
        if (last - first == 1)
            snprintf(nm, sizeof(nm), "%zu: %s", s, farm_mlp_layer(r->mlp, first)->name);
        else
            snprintf(nm, sizeof(nm), "%zu: %s..%s", s, farm_mlp_layer(r->mlp, first)->name,
                     farm_mlp_layer(r->mlp, last - 1)->name);
        r->stage_names[s] = strdup(nm);
        if (r->stage_names[s] == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        logf_(cfg, "section %s", nm);
    }

    struct farm_pipe_options o = {
        .kind = cfg->kind,
        .micro_batches = cfg->micro_batches,
        .stages = r->stages,
        .starts = res->starts,
        .pin = cfg->pin,
    };
    rc = farm_pipe_new(r->mlp, &r->desc->optim, &o, batch, &r->pipe, err);
    if (rc != 0)
        return rc;

    /* Batch buffers. */
    rc = farm_tensor_init(&r->xb, batch, r->train.x.cols);
    if (rc == 0 && r->train.y.rows > 0)
        rc = farm_tensor_init(&r->yb, batch, r->train.y.cols);
    if (rc != 0)
        return farm_err_set(err, rc, "out of memory");
    r->shown =
        calloc(r->stages * (size_t)farm_pipe_get_schedule(r->pipe)->per_stage, sizeof(*r->shown));
    r->lb = calloc(batch, sizeof(int32_t));
    r->order = calloc(r->train.n, sizeof(size_t));
    if (r->lb == NULL || r->order == NULL || r->shown == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    return 0;
}

int farm_pipe_run(const struct farm_pipe_run_config *cfg, struct farm_pipe_run_result *res,
                  struct farm_err *err)
{
    struct run_state r;
    memset(&r, 0, sizeof(r));
    struct farm_pipe_run_result out;
    memset(&out, 0, sizeof(out));
    int rc = prepare(cfg, &r, &out, err);
    if (rc != 0) {
        run_state_release(&r);
        return rc;
    }
    size_t batch = r.desc->batch_size, n = r.train.n;
    size_t S = r.stages;
    int ce = r.desc->loss == FARM_LOSS_SOFTMAX_CE;
    logf_(cfg, "training: %zu samples, batch %zu, %d micro-batches, %zu stages, %s%s", n, batch,
          cfg->micro_batches, S, farm_pipe_kind_name(cfg->kind),
          farm_pipe_pinned(r.pipe) ? ", stage threads pinned" : "");

    struct farm_rng root, shuf;
    farm_rng_seed(&root, cfg->has_seed ? cfg->seed : r.desc->seed);
    farm_rng_fork(&root, &shuf);
    for (size_t i = 0; i < n; i++)
        r.order[i] = i;

    const char *stopped = NULL;
    int64_t step = 0;
    int epoch = 0;
    double busy = 0.0, span = 0.0, warm_time = 0.0, total_time = 0.0;
    size_t warm_samples = 0, total_samples = 0;
    const struct farm_pipe_schedule *sc = farm_pipe_get_schedule(r.pipe);
    int nev = (int)S * sc->per_stage;
    double last_loss = NAN;
    size_t per_epoch = n / batch + (n % batch >= (size_t)cfg->micro_batches ? 1 : 0);
    int64_t planned = cfg->epochs > 0 ? (int64_t)per_epoch * cfg->epochs : 0;
    if (cfg->max_steps > 0 && (planned == 0 || cfg->max_steps < planned))
        planned = cfg->max_steps;

    while (stopped == NULL) {
        if (cfg->epochs > 0 && epoch >= cfg->epochs) {
            stopped = "epochs";
            break;
        }
        epoch++;
        farm_rng_shuffle(&shuf, r.order, n);
        for (size_t first = 0; first < n && stopped == NULL; first += batch) {
            size_t count = n - first < batch ? n - first : batch;
            if (count < (size_t)cfg->micro_batches)
                break; /* a tail too short to cut into M slices */
            if (cfg->cancelled != NULL && cfg->cancelled(cfg->ud)) {
                stopped = "cancelled";
                break;
            }
            rc = farm_data_batch(&r.train, r.order, first, count, &r.xb, ce ? r.lb : NULL,
                                 ce ? NULL : &r.yb);
            if (rc != 0) {
                farm_err_set(err, rc, "cannot assemble batch %" PRId64, step + 1);
                goto fail;
            }
            double ls = 0.0, t0 = now_s();
            size_t correct = 0;
            rc = farm_pipe_step(r.pipe, &r.xb, ce ? r.lb : NULL, ce ? NULL : &r.yb, 1, &ls,
                                &correct, NULL, err);
            double dt = now_s() - t0;
            if (rc != 0)
                goto fail;
            step++;
            const struct farm_pipe_event *ev = farm_pipe_events(r.pipe);
            if (step == 1) {
                warm_time = dt;
                warm_samples = count;
            }
            total_time += dt;
            total_samples += count;
            double sp = farm_pipe_makespan(ev, nev), b = 0.0;
            for (int i = 0; i < nev; i++)
                b += ev[i].end - ev[i].start;
            /* The first step warms caches and BLAS buffers: leave it out of
             * the bubble once there are others. */
            if (step == 2) {
                busy = 0.0;
                span = 0.0;
            }
            busy += b;
            span += sp;
            last_loss = ls / (double)count;
            if (r.n_losses == r.cap_losses) {
                size_t nc = r.cap_losses ? 2 * r.cap_losses : 256;
                double *nl = realloc(r.losses, nc * sizeof(double));
                if (nl == NULL) {
                    rc = farm_err_set(err, -ENOMEM, "out of memory");
                    goto fail;
                }
                r.losses = nl;
                r.cap_losses = nc;
            }
            r.losses[r.n_losses++] = last_loss;
            /* The timeline shows the last full-sized batch (a short tail
             * batch would misrepresent the steady state). */
            if (count == batch || r.shown_step == 0) {
                memcpy(r.shown, ev, (size_t)nev * sizeof(*ev));
                r.shown_step = step;
            }
            if (!isfinite(last_loss)) {
                rc = farm_err_set(err, FARM_ENUMERIC,
                                  "step %" PRId64 ": the loss is %g (diverged; lower the "
                                  "learning rate in %s)",
                                  step, last_loss, cfg->display ? cfg->display : cfg->model_path);
                goto fail;
            }
            struct farm_pipe_step_info info = {
                .step = step,
                .epoch = epoch,
                .loss = last_loss,
                .accuracy = ce ? (double)correct / (double)count : NAN,
                .samples_per_s = dt > 0 ? (double)count / dt : 0.0,
                .planned_steps = planned,
            };
            if (cfg->on_step != NULL && cfg->on_step(cfg->ud, &info) != 0) {
                stopped = "cancelled";
                break;
            }
            if (cfg->max_steps > 0 && step >= cfg->max_steps) {
                stopped = "max_steps";
                break;
            }
            if (!isnan(cfg->target_loss)) {
                size_t k = r.n_losses < 10 ? r.n_losses : 10;
                double mean = 0.0;
                for (size_t i = r.n_losses - k; i < r.n_losses; i++)
                    mean += r.losses[i];
                mean /= (double)k;
                if (mean <= cfg->target_loss) {
                    stopped = "target_loss";
                    break;
                }
            }
        }
    }

    out.steps = step;
    out.epochs = epoch;
    out.stopped_by = stopped;
    out.final_loss = last_loss;
    out.bubble_measured = span > 0 ? 1.0 - busy / ((double)S * span) : 0.0;
    out.bubble_formula = farm_pipe_bubble_formula((int)S, cfg->micro_batches);
    out.buffer_bytes = farm_pipe_buffer_bytes(r.pipe);
    out.samples_per_s = step > 1 ? (double)(total_samples - warm_samples) / (total_time - warm_time)
                        : total_time > 0 ? (double)total_samples / total_time
                                         : 0.0;
    out.test_loss = out.test_accuracy = NAN;
    if (r.test.n > 0) {
        rc = farm_mlp_evaluate(r.mlp, &r.test, batch, &out.test_loss, &out.test_accuracy);
        if (rc != 0) {
            farm_err_set(err, rc, "evaluating the held-out set failed");
            goto fail;
        }
        if (!ce)
            out.test_accuracy = NAN;
    }
    double tl;
    rc = farm_mlp_evaluate(r.mlp, &r.train, batch, &tl, &out.train_accuracy);
    if (rc != 0) {
        farm_err_set(err, rc, "evaluating the training set failed");
        goto fail;
    }
    if (!ce)
        out.train_accuracy = NAN;
    logf_(cfg,
          "done after %" PRId64 " steps (%s): loss %.4f, held-out accuracy %.4f, %.1f samples/s, "
          "bubble %.3f (formula %.3f)",
          step, stopped, last_loss, out.test_accuracy, out.samples_per_s, out.bubble_measured,
          out.bubble_formula);
    if (cfg->out_dir != NULL && step > 0) {
        rc = write_artifacts(cfg, &r, err);
        if (rc != 0)
            goto fail;
    }
    *res = out;
    run_state_release(&r);
    return 0;
fail:
    run_state_release(&r);
    return rc;
}
