/* One rnnexit task from start to end (see farm_rx_run in rnnexit.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rnnexit-internal.h"

static void say(const struct farm_rx_run_config *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const struct farm_rx_run_config *c, const char *fmt, ...)
{
    if (!c->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->log(c->ud, line);
}

static void metric(const struct farm_rx_run_config *c, const char *name, double v, int64_t step)
{
    if (c->metric)
        c->metric(c->ud, name, v, step);
}

static int on_epoch(void *arg, int epoch, double loss)
{
    const struct farm_rx_run_config *c = arg;
    metric(c, "train_loss", loss, epoch + 1);
    say(c, "epoch %d/%d: loss %.5f", epoch + 1, c->train.epochs, loss);
    if (c->progress) {
        char what[96];
        snprintf(what, sizeof what, "training: epoch %d/%d", epoch + 1, c->train.epochs);
        c->progress(c->ud, 0.9 * (epoch + 1) / (c->train.epochs ? c->train.epochs : 1), what);
    }
    return c->cancelled && c->cancelled(c->ud);
}

static int make_data(const struct farm_rx_run_config *c, struct farm_rx_data *d,
                     struct farm_err *err)
{
    const char *task = c->task ? c->task : "varying";
    if (strcmp(task, "varying") == 0)
        return farm_rx_data_varying(d, c->n, c->steps, c->classes, c->signal, c->noise, c->seed,
                                    err);
    if (strcmp(task, "adding") == 0)
        return farm_rx_data_adding(d, c->n, c->steps, c->min_len ? c->min_len : c->steps, c->seed,
                                   err);
    if (strcmp(task, "npy") == 0) {
        if (!c->x_path)
            return farm_err_set(err, FARM_EBADPARAM,
                                "task npy: the x parameter (an .npy file "
                                "of shape (objects, steps, features)) is "
                                "required");
        return farm_rx_data_load_npy(d, c->x_path, c->labels_path, c->targets_path, c->lengths_path,
                                     err);
    }
    return farm_err_set(err, FARM_EBADPARAM,
                        "task: unknown task '%s' (expected varying, adding or npy)", task);
}

int farm_rx_run(const struct farm_rx_run_config *c, struct farm_rx_run_result *res,
                struct farm_err *err)
{
    struct farm_rx_model *m = NULL;
    struct farm_rx_net *net = NULL;
    struct farm_rx_exec *ex = NULL;
    struct farm_rx_data all = {0}, train = {0}, test = {0};
    struct farm_rx_run_result r;
    memset(&r, 0, sizeof r);
    int rc;
    if (c->eval_batch == 0 || c->eval_batch > (1u << 16))
        return farm_err_set(err, FARM_EBADPARAM, "eval_batch: expected 1..65536, got %zu",
                            c->eval_batch);
    if ((rc = farm_rx_model_load_file(c->model_path, c->display, &m, err)))
        return rc;
    if ((rc = make_data(c, &all, err)))
        goto out;
    if ((size_t)m->input != all.dim) {
        rc = farm_err_set(err, FARM_EBADDATA,
                          "%s: the model reads %d features per step, the %s data has %zu", m->file,
                          m->input, c->task ? c->task : "varying", all.dim);
        goto out;
    }
    if ((rc = farm_rx_data_split(&all, c->test_fraction, c->seed + 1, &train, &test, err)))
        goto out;
    say(c, "%s: %d layers, %d units; data: %zu train, %zu held-out objects of %zu steps", m->file,
        m->n_layers, m->n_units, train.n, test.n, all.steps);
    if ((rc = farm_rx_net_new(m, c->seed, &net, err)))
        goto out;
    if ((rc = farm_rx_train(net, &train, &c->train, on_epoch, (void *)c, &r.final_loss, err)))
        goto out;
    if (c->cancelled && c->cancelled(c->ud)) {
        r.cancelled = 1;
        rc = farm_err_set(err, FARM_ECANCELLED, "cancelled");
        goto out;
    }
    if ((rc = farm_rx_exec_new(net, c->eval_batch, 0, 0, &ex, err)))
        goto out;
    if (c->progress)
        c->progress(c->ud, 0.92, "evaluating: never-skip");
    if ((rc = farm_rx_evaluate(ex, &test, FARM_RX_NEVER_SKIP, &r.never, err)))
        goto out;
    if (c->progress)
        c->progress(c->ud, 0.96, "evaluating: with the conditions");
    if ((rc = farm_rx_evaluate(ex, &test, FARM_RX_CONDITIONS, &r.early, err)))
        goto out;
    const struct farm_rx_stats *s = &r.early.stats;
    double nodes = (double)(s->executed + s->skipped);
    double flops = s->flops_done + s->flops_saved;
    metric(c, "node_executions_done", (double)s->executed, 0);
    metric(c, "node_executions_skipped", (double)s->skipped, 0);
    metric(c, "skipped_share", nodes > 0 ? (double)s->skipped / nodes : 0, 0);
    metric(c, "flops_done", s->flops_done, 0);
    metric(c, "flops_saved", s->flops_saved, 0);
    metric(c, "flops_saved_share", flops > 0 ? s->flops_saved / flops : 0, 0);
    metric(c, "latency_p50_ms", r.early.lat_p50_ms, 0);
    metric(c, "latency_p99_ms", r.early.lat_p99_ms, 0);
    metric(c, "never_skip_latency_p50_ms", r.never.lat_p50_ms, 0);
    metric(c, "never_skip_latency_p99_ms", r.never.lat_p99_ms, 0);
    double speedup = r.early.total_ms > 0 ? r.never.total_ms / r.early.total_ms : 0;
    metric(c, "speedup_vs_never_skip", speedup, 0);
    if (m->loss == FARM_RX_LOSS_CE) {
        metric(c, "accuracy_early_exit", r.early.accuracy, 0);
        metric(c, "accuracy_never_skip", r.never.accuracy, 0);
        say(c, "held-out accuracy: %.4f never-skip, %.4f with the conditions", r.never.accuracy,
            r.early.accuracy);
    } else {
        metric(c, "mse_early_exit", r.early.mse, 0);
        metric(c, "mse_never_skip", r.never.mse, 0);
        say(c, "held-out MSE: %.5f never-skip, %.5f with the conditions", r.never.mse, r.early.mse);
    }
    say(c,
        "node executions: %llu done, %llu skipped (%.1f%%); FLOPs saved %.3g of %.3g; "
        "speedup vs never-skip %.2fx",
        (unsigned long long)s->executed, (unsigned long long)s->skipped,
        nodes > 0 ? 100.0 * (double)s->skipped / nodes : 0.0, s->flops_saved, flops, speedup);
    snprintf(r.svg_path, sizeof r.svg_path, "%s/skips.svg", c->out_dir ? c->out_dir : ".");
    snprintf(r.weights_path, sizeof r.weights_path, "%s/weights.safetensors",
             c->out_dir ? c->out_dir : ".");
    if ((rc = farm_rx_write_skips_svg(ex, r.svg_path, m->file, err)))
        goto out;
    if ((rc = farm_rx_net_save(net, r.weights_path, err)))
        goto out;
    if (c->progress)
        c->progress(c->ud, 1.0, "done");
out:
    farm_rx_exec_free(ex);
    farm_rx_data_release(&all);
    farm_rx_data_release(&train);
    farm_rx_data_release(&test);
    farm_rx_net_free(net);
    farm_rx_model_free(m);
    if (res && !rc)
        *res = r;
    return rc;
}
