/* graphsched.so: reads the task graph and cluster, calibrates, chooses the
 * candidate graph and schedule, executes it, checks the result against a
 * single-node run, and reports metrics and artifacts. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched_ops.h"
#include "farm/plugin.h"

static const struct farm_param params[] = {
    {"graph", FARM_PARAM_STRING, 1, NULL, "operator task graph (YAML), relative to the work dir"},
    {"cluster", FARM_PARAM_STRING, 1, NULL, "cluster description (YAML), relative to the work dir"},
    {"methods", FARM_PARAM_STRING, 0, "\"heft,cpop,peft,lookahead,refine\"",
     "schedulers to try, comma-separated"},
    {"budget", FARM_PARAM_INT, 0, "64", "most candidate graphs evaluated"},
    {"kmax", FARM_PARAM_INT, 0, "4", "largest shard count (power of two, <= 16)"},
    {"seed", FARM_PARAM_INT, 0, "1", "seed of the input tensors"},
    {"repeats", FARM_PARAM_INT, 0, "3", "executions of the chosen schedule (median reported)"},
    {"tolerance", FARM_PARAM_NUMBER, 0, "1e-4", "allowed |x - ref| / (1 + |ref|) vs single node"},
    {"execute", FARM_PARAM_BOOL, 0, "true", "run the chosen schedule for real"},
    {"calibration_cache", FARM_PARAM_STRING, 0, "\"\"",
     "calibration cache file (empty: in the run's scratch dir)"},
    {NULL, 0, 0, NULL, NULL}};

struct run {
    const struct farm_host *host;
    struct farm_ctx *ctx;
};

static int is_cancelled(void *arg)
{
    struct run *r = arg;
    return FARM_HOST_HAS(r->host, cancelled) && r->host->cancelled(r->ctx);
}

static char *join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "%s/%s", dir, name);
    return s;
}

static char *resolve(const struct farm_host *h, struct farm_ctx *ctx, const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    return join(h->work_dir(ctx), path);
}

static int parse_methods(const char *text, unsigned *mask)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    *mask = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        int m = farm_gs_method_parse(tok);
        if (m < 0)
            return -1;
        *mask |= 1u << m;
    }
    return *mask ? 0 : -1;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void metric(struct run *r, const char *name, double v)
{
    r->host->metric(r->ctx, name, v, 0);
}

static int emit_artifact(struct run *r, const char *dir, const char *name,
                         struct farm_err *err)
{
    char *p = join(dir, name);
    if (!p)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = r->host->artifact(r->ctx, p, name);
    free(p);
    return rc ? farm_err_set(err, rc, "cannot store artifact %s", name) : 0;
}

static int run_task(struct run *run, struct farm_err *err)
{
    const struct farm_host *h = run->host;
    struct farm_ctx *ctx = run->ctx;
    const char *graph_p, *cluster_p, *methods_p, *cache_p;
    int64_t budget, kmax, seed, repeats;
    double tol;
    int execute, rc;
    if (h->param_string(ctx, "graph", &graph_p) || h->param_string(ctx, "cluster", &cluster_p) ||
        h->param_string(ctx, "methods", &methods_p) || h->param_int(ctx, "budget", &budget) ||
        h->param_int(ctx, "kmax", &kmax) || h->param_int(ctx, "seed", &seed) ||
        h->param_int(ctx, "repeats", &repeats) || h->param_number(ctx, "tolerance", &tol) ||
        h->param_bool(ctx, "execute", &execute) ||
        h->param_string(ctx, "calibration_cache", &cache_p))
        return farm_err_set(err, FARM_EBADPARAM, "missing or mistyped parameter");
    struct farm_gs_search so = {.kmax = (int)kmax, .budget = (int)budget};
    FARM_RETURN_ERROR_IF(parse_methods(methods_p, &so.methods), err, FARM_EBADPARAM,
                         "methods: \"%s\": expected a list of heft, cpop, peft, lookahead, refine",
                         methods_p);
    FARM_RETURN_ERROR_IF(budget < 1 || budget > 100000, err, FARM_EBADPARAM,
                         "budget: expected 1..100000, got %lld", (long long)budget);
    FARM_RETURN_ERROR_IF(kmax < 1 || kmax > FARM_GS_MAXIN || (kmax & (kmax - 1)), err,
                         FARM_EBADPARAM, "kmax: expected a power of two in 1..%d, got %lld",
                         FARM_GS_MAXIN, (long long)kmax);
    FARM_RETURN_ERROR_IF(repeats < 1 || repeats > 1000, err, FARM_EBADPARAM,
                         "repeats: expected 1..1000, got %lld", (long long)repeats);
    FARM_RETURN_ERROR_IF(!(tol > 0), err, FARM_EBADPARAM, "tolerance: expected > 0");

    const char *scratch = h->scratch_dir(ctx);
    char *gpath = resolve(h, ctx, graph_p), *cpath = resolve(h, ctx, cluster_p);
    char *cache = cache_p[0] ? resolve(h, ctx, cache_p)
                             : join(scratch, "graphsched-calibration.json");
    struct farm_gs_opgraph g = {0};
    struct farm_gs_cluster c = {0};
    struct farm_gs_result res = {0};
    struct farm_gs_exec_stats st = {0};
    struct farm_gs_dag orig_dag = {0};
    float **in = NULL, **ref = NULL;
    int have_st = 0;
    double *ms = NULL, *walls = NULL;
    if (!gpath || !cpath || !cache) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = farm_gs_opgraph_load(gpath, graph_p, &g, err)) ||
        (rc = farm_gs_cluster_load(cpath, cluster_p, &c, err)))
        goto out;
    h->progress(ctx, 0.05, "calibrating");
    struct farm_gs_calib cal;
    int from_cache = 0;
    if ((rc = farm_gs_calibrate(cache, &cal, &from_cache, err)))
        goto out;
    h->log(ctx, FARM_LOG_INFO, "calibration %s %s: sgemm %.2f GFLOP/s at 256^3, memcpy %.2f GB/s",
           from_cache ? "read from" : "measured, cached in", cache,
           1e-9 / cal.spu[FARM_GS_OP_MATMUL][FARM_GS_CAL_POINTS - 1], cal.mem_bw * 1e-9);
    h->progress(ctx, 0.2, "choosing the parallel graph and schedule");
    if ((rc = farm_gs_choose(&g, &c, &cal, &so, &res, err)))
        goto out;
    h->log(ctx, FARM_LOG_INFO, "%d candidates%s; chosen #%d \"%s\" with %s: %.6g s predicted",
           res.ncand, res.exhaustive ? " (all of them)" : "", res.best, res.cands[res.best].text,
           farm_gs_method_name(res.best_method), res.sched.makespan);
    if ((rc = farm_gs_opgraph_dag(&g, &c, &cal, &orig_dag, err)))
        goto out;
    double seq = farm_gs_seq_time(&orig_dag), pred = res.sched.makespan;
    metric(run, "predicted_makespan", pred);
    metric(run, "slr", farm_gs_slr(&res.dag, &res.sched));
    metric(run, "speedup", seq / pred);
    metric(run, "efficiency", seq / pred / c.p);
    metric(run, "candidates_examined", res.ncand);
    metric(run, "chosen_candidate", res.best);
    metric(run, "scheduler_time", res.sched_seconds);
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        double best = INFINITY;
        char name[64];
        for (int i = 0; i < res.ncand; i++)
            if (!isnan(res.cands[i].span[m]))
                best = fmin(best, res.cands[i].span[m]);
        snprintf(name, sizeof name, "predicted_makespan.%s", farm_gs_method_name(m));
        if (isfinite(best))
            metric(run, name, best);
    }
    if (execute) {
        h->progress(ctx, 0.4, "executing");
        ms = calloc((size_t)repeats, sizeof *ms);
        walls = calloc((size_t)repeats, sizeof *walls);
        if (!ms || !walls || farm_gs_make_inputs(&g, (uint64_t)seed, &in) ||
            farm_gs_run_single(&g, in, &ref, NULL)) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        double worst_err = 0;
        struct farm_gs_exec_stats *all = calloc((size_t)repeats, sizeof *all);
        int done = 0;
        if (!all) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        for (int rep = 0; rep < repeats; rep++) {
            float **out;
            double e;
            rc = farm_gs_exec(&res.graph, &c, &res.sched, in, &out, &all[rep], is_cancelled, run);
            if (rc) {
                farm_err_set(err, rc, "execution failed: %s", farm_strerror(rc));
                break;
            }
            done++;
            rc = farm_gs_compare(&g, out, ref, tol, &e, err);
            farm_gs_free_buffers(out, g.nout);
            worst_err = fmax(worst_err, e);
            ms[rep] = all[rep].makespan;
            walls[rep] = all[rep].wall;
            if (rc) {
                farm_err_prefix(err, "candidate \"%s\" differs from the single-node run: ",
                                res.cands[res.best].text);
                break;
            }
            h->progress(ctx, 0.4 + 0.5 * (rep + 1) / repeats, "executing");
        }
        /* The artifacts show the run whose makespan is the median. */
        int pick = -1;
        for (int i = 0; i < done; i++) {
            int below = 0, equal_before = 0;
            for (int j = 0; j < done; j++) {
                below += ms[j] < ms[i];
                equal_before += j < i && ms[j] == ms[i];
            }
            if (below + equal_before == done / 2)
                pick = i;
        }
        for (int i = 0; i < done; i++) {
            if (i == pick) {
                st = all[i];
                have_st = 1;
            } else {
                farm_gs_exec_stats_release(&all[i]);
            }
        }
        free(all);
        if (rc && !done)
            goto out;
        metric(run, "result_error", worst_err);
        if (!rc) {
            qsort(ms, (size_t)repeats, sizeof *ms, cmp_double);
            qsort(walls, (size_t)repeats, sizeof *walls, cmp_double);
            /* ms[repeats / 2] is the same median the picked run has. */
            double med = ms[repeats / 2];
            metric(run, "measured_makespan", med);
            metric(run, "wall_makespan", walls[repeats / 2]);
            metric(run, "cost_model_error", (med - pred) / pred);
            metric(run, "measured_speedup", seq / med);
            h->log(ctx, FARM_LOG_INFO,
                   "measured %.6g s (median of %lld; wall %.6g s), cost-model error %+.1f%%, "
                   "result within %.3g of the single-node run",
                   med, (long long)repeats, walls[repeats / 2], 100 * (med - pred) / pred,
                   worst_err);
        }
    }
    int rc2;
    char *p1 = join(scratch, "schedule.json"), *p2 = join(scratch, "candidates.json"),
         *p3 = join(scratch, "gantt.svg");
    if (!p1 || !p2 || !p3)
        rc2 = farm_err_set(rc ? NULL : err, -ENOMEM, "out of memory");
    else if (!(rc2 = farm_gs_write_schedule(p1, &g, &res, have_st ? &st : NULL,
                                            rc ? NULL : err)) &&
             !(rc2 = farm_gs_write_candidates(p2, &res, rc ? NULL : err)) &&
             !(rc2 = farm_gs_write_gantt(p3, &res, have_st ? &st : NULL, rc ? NULL : err)) &&
             !(rc2 = emit_artifact(run, scratch, "schedule.json", rc ? NULL : err)) &&
             !(rc2 = emit_artifact(run, scratch, "candidates.json", rc ? NULL : err)))
        rc2 = emit_artifact(run, scratch, "gantt.svg", rc ? NULL : err);
    free(p1);
    free(p2);
    free(p3);
    if (!rc)
        rc = rc2;
    if (!rc)
        h->progress(ctx, 1.0, "done");
out:
    free(gpath);
    free(cpath);
    free(cache);
    free(ms);
    free(walls);
    if (in)
        farm_gs_free_buffers(in, g.ninputs);
    if (ref)
        farm_gs_free_buffers(ref, g.nout);
    farm_gs_exec_stats_release(&st);
    farm_gs_result_release(&res);
    farm_gs_dag_release(&orig_dag);
    farm_gs_cluster_release(&c);
    farm_gs_opgraph_release(&g);
    return rc;
}

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    struct run r = {host, ctx};
    struct farm_err err = {0};
    if (!FARM_HOST_HAS(host, scratch_dir))
        return FARM_EBADPLUGIN;
    int rc = run_task(&r, &err);
    if (rc)
        host->log(ctx, FARM_LOG_ERROR, "%s", err.msg[0] ? err.msg : farm_strerror(rc));
    return rc;
}

FARM_PLUGIN_DEFINE(.name = "graphsched", .version = "1.0",
                   .summary = "chooses a parallel graph and operator schedule by cost, and runs it",
                   .params = params, .run = run)
