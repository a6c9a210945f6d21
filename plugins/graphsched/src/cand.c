/* Candidate parallel graphs and the chooser. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops-internal.h"

static int supports(const struct farm_gs_opgraph *g, const struct farm_gs_op *op, int mode,
                    int *dim)
{
    switch (mode) {
    case FARM_GS_SPLIT_ROWS:
        *dim = op->rows;
        return op->kind == FARM_GS_OP_MATMUL || op->kind == FARM_GS_OP_ADD ||
               op->kind == FARM_GS_OP_RELU || op->kind == FARM_GS_OP_SOFTMAX ||
               op->kind == FARM_GS_OP_LAYERNORM || op->kind == FARM_GS_OP_ROWSUM ||
               ((op->kind == FARM_GS_OP_CONCAT || op->kind == FARM_GS_OP_SLICE) &&
                op->axis == 1);
    case FARM_GS_SPLIT_COLS:
        *dim = op->cols;
        return op->kind == FARM_GS_OP_MATMUL || op->kind == FARM_GS_OP_ADD ||
               op->kind == FARM_GS_OP_RELU ||
               ((op->kind == FARM_GS_OP_CONCAT || op->kind == FARM_GS_OP_SLICE) &&
                op->axis == 0);
    case FARM_GS_SPLIT_INNER:
        *dim = op->kind == FARM_GS_OP_MATMUL ? g->ops[op->in[0]].cols : 0;
        return op->kind == FARM_GS_OP_MATMUL;
    default:
        return 0;
    }
}

int farm_gs_options(const struct farm_gs_opgraph *g, int i, int kmax, struct farm_gs_choice *opts,
                    int max)
{
    int n = 0;
    if (n < max)
        opts[n] = (struct farm_gs_choice){FARM_GS_SPLIT_NONE, 1};
    n++;
    if (i < g->ninputs)
        return n;
    for (int mode = FARM_GS_SPLIT_ROWS; mode <= FARM_GS_SPLIT_INNER; mode++) {
        int dim;
        if (!supports(g, &g->ops[i], mode, &dim))
            continue;
        for (int k = 2; k <= kmax && k <= dim && k <= FARM_GS_MAXIN; k *= 2) {
            if (n < max)
                opts[n] = (struct farm_gs_choice){mode, k};
            n++;
        }
    }
    return n;
}

/* ---- expansion ---- */

struct val {
    int whole;
    int axis, k, part[FARM_GS_MAXIN];    /* native split, k = 0 when none */
    int alt_axis, alt_k, alt[FARM_GS_MAXIN]; /* one more split made on demand */
};

struct xctx {
    const struct farm_gs_opgraph *g;
    struct farm_gs_opgraph *out;
    struct val *v;
    struct farm_err *err;
};

static int emit(struct xctx *x, struct farm_gs_op *op)
{
    char why[256];
    if (farm__gs_infer(x->out, op, why, sizeof why))
        return farm_err_set(x->err, FARM_EBADMODEL, "candidate %s: %s", op->name, why);
    int r = farm__gs_opgraph_add(x->out, op);
    return r < 0 ? farm_err_set(x->err, r, "out of memory") : r;
}

static int get_whole(struct xctx *x, int o)
{
    struct val *v = &x->v[o];
    if (v->whole >= 0)
        return v->whole;
    struct farm_gs_op op = {.kind = FARM_GS_OP_CONCAT, .nin = v->k, .axis = v->axis, .origin = o};
    snprintf(op.name, sizeof op.name, "%.40s.cat", x->g->ops[o].name);
    memcpy(op.in, v->part, (size_t)v->k * sizeof(int));
    int r = emit(x, &op);
    if (r >= 0)
        v->whole = r;
    return r;
}

static int get_parts(struct xctx *x, int o, int axis, int k, int *parts)
{
    struct val *v = &x->v[o];
    if (v->k == k && v->axis == axis) {
        memcpy(parts, v->part, (size_t)k * sizeof(int));
        return 0;
    }
    if (v->alt_k == k && v->alt_axis == axis) {
        memcpy(parts, v->alt, (size_t)k * sizeof(int));
        return 0;
    }
    int w = get_whole(x, o);
    if (w < 0)
        return w;
    const struct farm_gs_op *src = &x->g->ops[o];
    int dim = axis ? src->cols : src->rows;
    for (int i = 0; i < k; i++) {
        struct farm_gs_op op = {.kind = FARM_GS_OP_SLICE, .nin = 1, .axis = axis, .origin = o};
        op.in[0] = w;
        op.off = (int)((long)i * dim / k);
        int len = (int)((long)(i + 1) * dim / k) - op.off;
        if (axis)
            op.cols = len;
        else
            op.rows = len;
        snprintf(op.name, sizeof op.name, "%.40s.s%c%d_%d", src->name, axis ? 'c' : 'r', k, i);
        int r = emit(x, &op);
        if (r < 0)
            return r;
        parts[i] = r;
    }
    v->alt_axis = axis;
    v->alt_k = k;
    memcpy(v->alt, parts, (size_t)k * sizeof(int));
    return 0;
}

static int expand_op(struct xctx *x, int o, struct farm_gs_choice ch)
{
    const struct farm_gs_op *src = &x->g->ops[o];
    struct val *v = &x->v[o];
    int rc, dim, k = ch.k;
    if (ch.mode == FARM_GS_SPLIT_NONE) {
        struct farm_gs_op op = *src;
        op.origin = o;
        for (int j = 0; j < src->nin; j++)
            if ((op.in[j] = get_whole(x, src->in[j])) < 0)
                return op.in[j];
        rc = emit(x, &op);
        v->whole = rc;
        return rc < 0 ? rc : 0;
    }
    if (!supports(x->g, src, ch.mode, &dim) || k < 2 || k > FARM_GS_MAXIN || k > dim)
        return farm_err_set(x->err, -EINVAL, "%s cannot be split %d ways that way", src->name, k);
    int parts[FARM_GS_MAXIN][FARM_GS_MAXIN]; /* [input][shard] */
    static const char mode_ch[] = "nrci";
    if (ch.mode == FARM_GS_SPLIT_INNER) {
        if ((rc = get_parts(x, src->in[0], 1, k, parts[0])) ||
            (rc = get_parts(x, src->in[1], 0, k, parts[1])))
            return rc;
        struct farm_gs_op sum = {.kind = FARM_GS_OP_ADD, .nin = k, .origin = o};
        for (int i = 0; i < k; i++) {
            struct farm_gs_op op = {.kind = FARM_GS_OP_MATMUL, .nin = 2, .origin = o};
            op.in[0] = parts[0][i];
            op.in[1] = parts[1][i];
            snprintf(op.name, sizeof op.name, "%.40s.i%d_%d", src->name, k, i);
            if ((sum.in[i] = emit(x, &op)) < 0)
                return sum.in[i];
        }
        snprintf(sum.name, sizeof sum.name, "%.40s.sum", src->name);
        rc = emit(x, &sum);
        v->whole = rc;
        return rc < 0 ? rc : 0;
    }
    int axis = ch.mode == FARM_GS_SPLIT_COLS;
    for (int j = 0; j < src->nin; j++) {
        /* matmul split by rows keeps b whole; by columns keeps a whole. */
        int keep = src->kind == FARM_GS_OP_MATMUL && (axis ? j == 0 : j == 1);
        if (keep) {
            int w = get_whole(x, src->in[j]);
            if (w < 0)
                return w;
            for (int i = 0; i < k; i++)
                parts[j][i] = w;
        } else if ((rc = get_parts(x, src->in[j], axis, k, parts[j]))) {
            return rc;
        }
    }
    v->axis = axis;
    for (int i = 0; i < k; i++) {
        struct farm_gs_op op = *src;
        op.origin = o;
        for (int j = 0; j < src->nin; j++)
            op.in[j] = parts[j][i];
        if (op.kind == FARM_GS_OP_SLICE) {
            /* The slice's own axis is the other one: its length stays. */
            if (src->axis)
                op.rows = 0;
            else
                op.cols = 0;
        }
        snprintf(op.name, sizeof op.name, "%.40s.%c%d_%d", src->name, mode_ch[ch.mode], k, i);
        if ((v->part[i] = emit(x, &op)) < 0)
            return v->part[i];
    }
    v->k = k;
    return 0;
}

int farm_gs_expand(const struct farm_gs_opgraph *g, const struct farm_gs_choice *choice,
                   struct farm_gs_opgraph *out, struct farm_err *err)
{
    memset(out, 0, sizeof *out);
    struct xctx x = {g, out, calloc((size_t)g->n, sizeof(struct val)), err};
    int rc = 0;
    if (!x.v || !(out->outputs = malloc((size_t)g->nout * sizeof(int)))) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < g->n; i++)
        x.v[i].whole = -1;
    for (int i = 0; i < g->ninputs && rc >= 0; i++) {
        rc = farm__gs_opgraph_add(out, &g->ops[i]);
        x.v[i].whole = i;
    }
    out->ninputs = g->ninputs;
    for (int i = g->ninputs; i < g->n && rc >= 0; i++)
        rc = expand_op(&x, i, choice[i]);
    for (int k = 0; k < g->nout && rc >= 0; k++)
        rc = out->outputs[k] = get_whole(&x, g->outputs[k]);
    out->nout = g->nout;
    rc = rc < 0 ? rc : 0;
out:
    free(x.v);
    if (rc)
        farm_gs_opgraph_release(out);
    return rc;
}

char *farm_gs_choice_text(const struct farm_gs_opgraph *g, const struct farm_gs_choice *choice)
{
    static const char *const modes[] = {"none", "rows", "cols", "inner"};
    size_t cap = 16 + (size_t)g->n * (FARM_GS_NAMELEN + 16), len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = g->ninputs; i < g->n; i++)
        if (choice[i].mode != FARM_GS_SPLIT_NONE)
            len += (size_t)snprintf(s + len, cap - len, "%s%s:%s%d", len ? " " : "",
                                    g->ops[i].name, modes[choice[i].mode], choice[i].k);
    if (!len)
        snprintf(s, cap, "baseline");
    return s;
}

/* ---- the chooser ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct chooser {
    const struct farm_gs_opgraph *g;
    const struct farm_gs_cluster *c;
    const struct farm_gs_calib *cal;
    const struct farm_gs_search *opts;
    struct farm_gs_result *r;
    double best_span;
    struct farm_err *err;
};

/* Evaluates one candidate unless already seen: 1 when it was new and beat
 * the best so far, 0 otherwise, or a negative code. */
static int evaluate(struct chooser *ch, const struct farm_gs_choice *choice)
{
    const struct farm_gs_opgraph *g = ch->g;
    struct farm_gs_result *r = ch->r;
    char *text = farm_gs_choice_text(g, choice);
    if (!text)
        return farm_err_set(ch->err, -ENOMEM, "out of memory");
    for (int i = 0; i < r->ncand; i++)
        if (strcmp(r->cands[i].text, text) == 0) {
            free(text);
            return 0;
        }
    struct farm_gs_candidate *cands = realloc(r->cands, (size_t)(r->ncand + 1) * sizeof *cands);
    if (!cands) {
        free(text);
        return farm_err_set(ch->err, -ENOMEM, "out of memory");
    }
    r->cands = cands;
    struct farm_gs_candidate *cd = &r->cands[r->ncand++];
    memset(cd, 0, sizeof *cd);
    cd->text = text;
    cd->choice = malloc((size_t)g->n * sizeof *cd->choice);
    if (!cd->choice)
        return farm_err_set(ch->err, -ENOMEM, "out of memory");
    memcpy(cd->choice, choice, (size_t)g->n * sizeof *choice);
    struct farm_gs_opgraph cg;
    struct farm_gs_dag d;
    int rc = farm_gs_expand(g, choice, &cg, ch->err);
    if (rc)
        return rc;
    rc = farm_gs_opgraph_dag(&cg, ch->c, ch->cal, &d, ch->err);
    cd->ntasks = cg.n - cg.ninputs;
    farm_gs_opgraph_release(&cg);
    if (rc)
        return rc;
    int better = 0;
    for (int m = 0; m < FARM_GS_NMETHODS; m++) {
        cd->span[m] = NAN;
        if (!(ch->opts->methods & (1u << m)))
            continue;
        struct farm_gs_sched s;
        double t0 = wall_now();
        rc = farm_gs_schedule(&d, m, &s);
        r->sched_seconds += wall_now() - t0;
        if (rc) {
            farm_gs_dag_release(&d);
            return farm_err_set(ch->err, rc, "scheduling failed");
        }
        cd->span[m] = s.makespan;
        if (s.makespan < ch->best_span) {
            ch->best_span = s.makespan;
            r->best = r->ncand - 1;
            r->best_method = m;
            better = 1;
        }
        farm_gs_sched_release(&s);
    }
    farm_gs_dag_release(&d);
    return better;
}

static int budget_left(const struct chooser *ch)
{
    return ch->r->ncand < ch->opts->budget;
}

int farm_gs_choose(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                   const struct farm_gs_calib *cal, const struct farm_gs_search *opts,
                   struct farm_gs_result *out, struct farm_err *err)
{
    if (opts->budget < 1 || opts->kmax < 1 || opts->kmax > FARM_GS_MAXIN ||
        !(opts->methods & ((1u << FARM_GS_NMETHODS) - 1)))
        return farm_err_set(err, FARM_EBADPARAM,
                            "search: budget >= 1, kmax in [1, %d] and one method at least",
                            FARM_GS_MAXIN);
    struct farm_gs_result r = {0};
    struct chooser ch = {g, c, cal, opts, &r, INFINITY, err};
    int n = g->n, rc = 0;
    int *nopt = calloc((size_t)n, sizeof(int));
    struct farm_gs_choice *opt = malloc((size_t)n * 64 * sizeof *opt);
    struct farm_gs_choice *cur = calloc((size_t)n, sizeof *cur);
    struct farm_gs_choice *tmp = calloc((size_t)n, sizeof *tmp);
    int *digit = calloc((size_t)n, sizeof(int));
    if (!nopt || !opt || !cur || !tmp || !digit) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    double space = 1;
    for (int i = 0; i < n; i++) {
        nopt[i] = farm_gs_options(g, i, opts->kmax, opt + (size_t)i * 64, 64);
        space *= nopt[i];
        cur[i] = opt[(size_t)i * 64];
    }
    if (space <= opts->budget) {
        r.exhaustive = 1;
        for (;;) {
            for (int i = 0; i < n; i++)
                tmp[i] = opt[(size_t)i * 64 + digit[i]];
            if ((rc = evaluate(&ch, tmp)) < 0)
                goto out;
            int i = 0;
            while (i < n && ++digit[i] == nopt[i])
                digit[i++] = 0;
            if (i == n)
                break;
        }
    } else {
        if ((rc = evaluate(&ch, cur)) < 0)
            goto out;
        static const int modes[] = {FARM_GS_SPLIT_ROWS, FARM_GS_SPLIT_COLS, FARM_GS_SPLIT_INNER};
        for (int mi = 0; mi < 3; mi++)
            for (int k = 2; k <= opts->kmax && budget_left(&ch); k *= 2) {
                int any = 0;
                for (int i = 0; i < n; i++) {
                    tmp[i] = opt[(size_t)i * 64];
                    for (int o = 1; o < nopt[i]; o++)
                        if (opt[(size_t)i * 64 + o].mode == modes[mi] &&
                            opt[(size_t)i * 64 + o].k == k) {
                            tmp[i] = opt[(size_t)i * 64 + o];
                            any = 1;
                        }
                }
                if (any && (rc = evaluate(&ch, tmp)) < 0)
                    goto out;
            }
        memcpy(cur, r.cands[r.best].choice, (size_t)n * sizeof *cur);
        int improved = 1;
        while (improved && budget_left(&ch)) {
            improved = 0;
            for (int i = g->ninputs; i < n && budget_left(&ch); i++)
                for (int o = 0; o < nopt[i] && budget_left(&ch); o++) {
                    struct farm_gs_choice c1 = opt[(size_t)i * 64 + o];
                    if (c1.mode == cur[i].mode && c1.k == cur[i].k)
                        continue;
                    memcpy(tmp, cur, (size_t)n * sizeof *cur);
                    tmp[i] = c1;
                    if ((rc = evaluate(&ch, tmp)) < 0)
                        goto out;
                    if (rc == 1) {
                        cur[i] = c1;
                        improved = 1;
                    }
                }
        }
    }
    /* Rebuild the winner: expansion and scheduling are deterministic. */
    if ((rc = farm_gs_expand(g, r.cands[r.best].choice, &r.graph, err)) ||
        (rc = farm_gs_opgraph_dag(&r.graph, c, cal, &r.dag, err)))
        goto out;
    if ((rc = farm_gs_schedule(&r.dag, r.best_method, &r.sched))) {
        rc = farm_err_set(err, rc, "scheduling failed");
        goto out;
    }
    rc = 0;
out:
    free(nopt);
    free(opt);
    free(cur);
    free(tmp);
    free(digit);
    if (rc)
        farm_gs_result_release(&r);
    else
        *out = r;
    return rc;
}

void farm_gs_result_release(struct farm_gs_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->ncand; i++) {
        free(r->cands[i].text);
        free(r->cands[i].choice);
    }
    free(r->cands);
    farm_gs_opgraph_release(&r->graph);
    farm_gs_dag_release(&r->dag);
    farm_gs_sched_release(&r->sched);
    memset(r, 0, sizeof *r);
}

json_t *farm_gs_result_json(const struct farm_gs_result *r)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < r->ncand; i++) {
        const struct farm_gs_candidate *cd = &r->cands[i];
        json_t *ms = json_object();
        for (int m = 0; ms && m < FARM_GS_NMETHODS; m++)
            json_object_set_new(ms, farm_gs_method_name(m),
                                isnan(cd->span[m]) ? json_null() : json_real(cd->span[m]));
        json_t *o = json_pack("{s:i, s:s, s:i, s:o, s:b}", "index", i, "candidate", cd->text,
                              "tasks", cd->ntasks, "makespan", ms, "chosen", i == r->best);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
