/* HEFT, CPOP and PEFT list schedulers, the validity checker, the brute-force
 * optimum and schedule metrics. See farm/graphsched.h for the tie rules. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched.h"
#include "sched-internal.h"

static const char *const method_names[FARM_GS_NMETHODS] = {"heft", "cpop", "peft", "lookahead",
                                                           "refine"};

const char *farm_gs_method_name(int method)
{
    return method >= 0 && method < FARM_GS_NMETHODS ? method_names[method] : NULL;
}

int farm_gs_method_parse(const char *name)
{
    for (int i = 0; name && i < FARM_GS_NMETHODS; i++)
        if (strcmp(name, method_names[i]) == 0)
            return i;
    return -EINVAL;
}

static double mean_cost(const struct farm_gs_dag *d, int i)
{
    double s = 0;
    for (int k = 0; k < d->p; k++)
        s += d->cost[i * d->p + k];
    return s / d->p;
}

void farm_gs_rank_upward(const struct farm_gs_dag *d, double *rank)
{
    for (int t = d->n - 1; t >= 0; t--) {
        int i = d->topo[t];
        double best = 0;
        for (int k = d->succ_off[i]; k < d->succ_off[i + 1]; k++) {
            int e = d->succ[k];
            best = fmax(best, farm_gs_mean_comm(d, e) + rank[d->edges[e].dst]);
        }
        rank[i] = mean_cost(d, i) + best;
    }
}

void farm_gs_rank_downward(const struct farm_gs_dag *d, double *rank)
{
    for (int t = 0; t < d->n; t++) {
        int i = d->topo[t];
        double best = 0;
        for (int k = d->pred_off[i]; k < d->pred_off[i + 1]; k++) {
            int e = d->pred[k], j = d->edges[e].src;
            best = fmax(best, rank[j] + mean_cost(d, j) + farm_gs_mean_comm(d, e));
        }
        rank[i] = best;
    }
}

void farm_gs_oct(const struct farm_gs_dag *d, double *oct)
{
    int p = d->p;
    for (int t = d->n - 1; t >= 0; t--) {
        int i = d->topo[t];
        for (int k = 0; k < p; k++)
            oct[i * p + k] = 0;
        for (int s = d->succ_off[i]; s < d->succ_off[i + 1]; s++) {
            int e = d->succ[s], j = d->edges[e].dst;
            double c = farm_gs_mean_comm(d, e), mn = INFINITY;
            /* min over w of OCT(j,w) + w(j,w) + [w != k] c: the best w != k
             * is the overall best plus c, so one pass gives all k. */
            for (int w = 0; w < p; w++)
                mn = fmin(mn, oct[j * p + w] + d->cost[j * p + w]);
            for (int k = 0; k < p; k++) {
                double v = fmin(oct[j * p + k] + d->cost[j * p + k], mn + c);
                if (v > oct[i * p + k])
                    oct[i * p + k] = v;
            }
        }
    }
}

/* ---- processor timelines with insertion ---- */

struct timeline {
    int len, cap;
    double *s, *f;
};

static int tl_reserve(struct timeline *tl)
{
    if (tl->len < tl->cap)
        return 0;
    int cap = tl->cap ? tl->cap * 2 : 16;
    double *s = realloc(tl->s, (size_t)cap * sizeof *s);
    if (!s)
        return -ENOMEM;
    tl->s = s;
    double *f = realloc(tl->f, (size_t)cap * sizeof *f);
    if (!f)
        return -ENOMEM;
    tl->f = f;
    tl->cap = cap;
    return 0;
}

double farm__gs_gap_find(const double *s, const double *f, int len, double ready, double dur,
                         int *pos)
{
    /* Gaps before the first slot starting at or after ready + dur are too
     * short: binary search for it. */
    int lo = 0, hi = len;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s[mid] < ready + dur)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int j = lo; j < len; j++) {
        double st = fmax(j > 0 ? f[j - 1] : 0.0, ready);
        if (s[j] - st >= dur) {
            *pos = j;
            return st;
        }
    }
    *pos = len;
    return fmax(len > 0 ? f[len - 1] : 0.0, ready);
}

/* Earliest start >= ready of a gap holding dur; *pos is where to insert. */
static double tl_find(const struct timeline *tl, double ready, double dur, int *pos)
{
    return farm__gs_gap_find(tl->s, tl->f, tl->len, ready, dur, pos);
}

static void tl_remove(struct timeline *tl, int pos)
{
    memmove(tl->s + pos, tl->s + pos + 1, (size_t)(tl->len - pos - 1) * sizeof(double));
    memmove(tl->f + pos, tl->f + pos + 1, (size_t)(tl->len - pos - 1) * sizeof(double));
    tl->len--;
}

static void tl_insert(struct timeline *tl, int pos, double s, double f)
{
    memmove(tl->s + pos + 1, tl->s + pos, (size_t)(tl->len - pos) * sizeof(double));
    memmove(tl->f + pos + 1, tl->f + pos, (size_t)(tl->len - pos) * sizeof(double));
    tl->s[pos] = s;
    tl->f[pos] = f;
    tl->len++;
}

/* ---- ready list: a max-heap on (priority, -topological position) ---- */

static int rh_before(const struct farm__gs_heap *h, int a, int b)
{
    if (h->prio[a] != h->prio[b])
        return h->prio[a] > h->prio[b];
    return h->pos[a] < h->pos[b];
}

void farm__gs_heap_push(struct farm__gs_heap *h, int v)
{
    int i = h->len++;
    h->task[i] = v;
    while (i > 0 && rh_before(h, h->task[i], h->task[(i - 1) / 2])) {
        int t = h->task[i];
        h->task[i] = h->task[(i - 1) / 2];
        h->task[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

int farm__gs_heap_pop(struct farm__gs_heap *h)
{
    int top = h->task[0];
    h->task[0] = h->task[--h->len];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < h->len && rh_before(h, h->task[l], h->task[s]))
            s = l;
        if (r < h->len && rh_before(h, h->task[r], h->task[s]))
            s = r;
        if (s == i)
            break;
        int t = h->task[i];
        h->task[i] = h->task[s];
        h->task[s] = t;
        i = s;
    }
    return top;
}

int farm_gs_sched_alloc(struct farm_gs_sched *s, int n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->proc = malloc((size_t)n * sizeof *s->proc);
    s->start = malloc((size_t)n * sizeof *s->start);
    s->finish = malloc((size_t)n * sizeof *s->finish);
    if (!s->proc || !s->start || !s->finish) {
        farm_gs_sched_release(s);
        return -ENOMEM;
    }
    return 0;
}

void farm_gs_sched_release(struct farm_gs_sched *s)
{
    if (!s)
        return;
    free(s->proc);
    free(s->start);
    free(s->finish);
    memset(s, 0, sizeof *s);
}

static double ready_time(const struct farm_gs_dag *d, const struct farm_gs_sched *s, int i,
                         int k)
{
    double r = 0;
    for (int x = d->pred_off[i]; x < d->pred_off[i + 1]; x++) {
        int e = d->pred[x], j = d->edges[e].src;
        r = fmax(r, s->finish[j] + farm_gs_comm(d, e, s->proc[j], k));
    }
    return r;
}

/* Data-ready time of task c on k from the parents already placed. */
static double ready_placed(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                          const char *placed, int c, int k)
{
    double r = 0;
    for (int x = d->pred_off[c]; x < d->pred_off[c + 1]; x++) {
        int e = d->pred[x], j = d->edges[e].src;
        if (placed[j])
            r = fmax(r, s->finish[j] + farm_gs_comm(d, e, s->proc[j], k));
    }
    return r;
}

struct look {
    char *placed;
    int nk;
    int *kids, *kid_edge, *undo_k, *undo_pos;
    double *base; /* [q * p + l]: child q's data-ready time on l from the
                   * parents already placed, the current task excepted */
};

/* Orders the children of task i by (priority desc, topological position)
 * and computes their data-ready times from the other placed parents, once
 * per task rather than once per candidate processor. */
static void lookahead_prepare(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                              struct look *lk, const double *prio, int i)
{
    int nk = 0, p = d->p;
    for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++) {
        int e = d->succ[x], c = d->edges[e].dst, at = nk++;
        while (at > 0 && (prio[lk->kids[at - 1]] < prio[c] ||
                          (prio[lk->kids[at - 1]] == prio[c] &&
                           d->topo_pos[lk->kids[at - 1]] > d->topo_pos[c]))) {
            lk->kids[at] = lk->kids[at - 1];
            lk->kid_edge[at] = lk->kid_edge[at - 1];
            at--;
        }
        lk->kids[at] = c;
        lk->kid_edge[at] = e;
    }
    lk->nk = nk;
    for (int q = 0; q < nk; q++)
        for (int l = 0; l < p; l++)
            lk->base[q * p + l] = ready_placed(d, s, lk->placed, lk->kids[q], l);
}

/* LOOKAHEAD's measure of placing task i on k (already inserted there,
 * finishing at fin): the latest EFT of its children, each placed
 * tentatively in order on its processor of least EFT. Every tentative
 * insertion is undone. NAN when out of memory. */
static double lookahead_metric(const struct farm_gs_dag *d, struct timeline *tl, struct look *lk,
                               int k, double fin, double bound)
{
    int p = d->p, undone = 0;
    double worst = 0;
    /* The measure only grows with each child: once it exceeds `bound` (the
     * best found on another processor) this processor has lost. */
    for (int q = 0; q < lk->nk && !(worst > bound); q++) {
        int c = lk->kids[q], bk = 0, bpos = 0;
        double beft = INFINITY, bst = 0;
        for (int l = 0; l < p; l++) {
            int pos;
            double dur = d->cost[c * p + l];
            double r = fmax(lk->base[q * p + l], fin + farm_gs_comm(d, lk->kid_edge[q], k, l));
            if (r + dur >= beft)
                continue; /* cannot finish earlier than the best so far */
            double st = tl_find(&tl[l], r, dur, &pos);
            if (st + dur < beft) {
                beft = st + dur;
                bst = st;
                bk = l;
                bpos = pos;
            }
        }
        if (tl_reserve(&tl[bk])) {
            worst = NAN;
            break;
        }
        tl_insert(&tl[bk], bpos, bst, beft);
        lk->undo_k[undone] = bk;
        lk->undo_pos[undone++] = bpos;
        worst = fmax(worst, beft);
    }
    while (undone-- > 0)
        tl_remove(&tl[lk->undo_k[undone]], lk->undo_pos[undone]);
    return worst;
}

/* The list-scheduling loop shared by the methods. `cp` (CPOP) marks tasks
 * pinned to processor cp_proc; `oct` (PEFT) adds OCT to the EFT; `lk`
 * (LOOKAHEAD) ranks processors by the children's EFT. */
static int list_schedule(const struct farm_gs_dag *d, const double *prio, const char *cp,
                         int cp_proc, const double *oct, struct look *lk,
                         struct farm_gs_sched *s)
{
    int n = d->n, p = d->p, rc = -ENOMEM;
    struct timeline *tl = calloc((size_t)p, sizeof *tl);
    int *indeg = calloc((size_t)n, sizeof *indeg);
    struct farm__gs_heap h = {0, malloc((size_t)n * sizeof(int)), prio, d->topo_pos};
    if (!tl || !indeg || !h.task)
        goto out;
    for (int i = 0; i < n; i++) {
        indeg[i] = d->pred_off[i + 1] - d->pred_off[i];
        if (!indeg[i])
            farm__gs_heap_push(&h, i);
    }
    s->makespan = 0;
    while (h.len) {
        int i = farm__gs_heap_pop(&h), best = -1, best_pos = 0;
        double best_key = INFINITY, best_eft = INFINITY, best_st = 0;
        if (lk)
            lookahead_prepare(d, s, lk, prio, i);
        for (int k = 0; k < p; k++) {
            if (cp && cp[i] && k != cp_proc)
                continue;
            int pos;
            double dur = d->cost[i * p + k];
            double st = tl_find(&tl[k], ready_time(d, s, i, k), dur, &pos);
            double eft = st + dur, key = oct ? eft + oct[i * p + k] : eft;
            if (lk && lk->nk) {
                if (tl_reserve(&tl[k]))
                    goto out;
                tl_insert(&tl[k], pos, st, eft);
                key = lookahead_metric(d, tl, lk, k, eft, best_key);
                tl_remove(&tl[k], pos);
                if (isnan(key))
                    goto out;
            }
            if (best < 0 || key < best_key || (key == best_key && eft < best_eft)) {
                best = k;
                best_key = key;
                best_eft = eft;
                best_st = st;
                best_pos = pos;
            }
        }
        if (tl_reserve(&tl[best]))
            goto out;
        tl_insert(&tl[best], best_pos, best_st, best_eft);
        s->proc[i] = best;
        s->start[i] = best_st;
        s->finish[i] = best_eft;
        if (lk)
            lk->placed[i] = 1;
        s->makespan = fmax(s->makespan, best_eft);
        for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++) {
            int j = d->edges[d->succ[x]].dst;
            if (--indeg[j] == 0)
                farm__gs_heap_push(&h, j);
        }
    }
    rc = 0;
out:
    for (int k = 0; tl && k < p; k++) {
        free(tl[k].s);
        free(tl[k].f);
    }
    free(tl);
    free(indeg);
    free(h.task);
    return rc;
}

int farm_gs_schedule(const struct farm_gs_dag *d, int method, struct farm_gs_sched *out)
{
    if (!d || !d->topo || method < 0 || method >= FARM_GS_NMETHODS)
        return -EINVAL;
    if (method == FARM_GS_REFINE)
        return farm__gs_refine(d, out);
    int n = d->n, p = d->p, rc = -ENOMEM;
    struct farm_gs_sched s;
    double *prio = calloc((size_t)n, sizeof *prio), *down = NULL, *oct = NULL;
    char *cp = NULL;
    struct look lk = {0};
    if (!prio || farm_gs_sched_alloc(&s, n)) {
        free(prio);
        return -ENOMEM;
    }
    farm_gs_rank_upward(d, prio);
    int cp_proc = 0;
    if (method == FARM_GS_CPOP) {
        down = malloc((size_t)n * sizeof *down);
        cp = calloc((size_t)n, 1);
        if (!down || !cp)
            goto out;
        farm_gs_rank_downward(d, down);
        for (int i = 0; i < n; i++)
            prio[i] += down[i];
        int v = -1;
        for (int i = 0; i < n; i++)
            if (d->pred_off[i] == d->pred_off[i + 1] && (v < 0 || prio[i] > prio[v]))
                v = i;
        while (v >= 0) {
            cp[v] = 1;
            int next = -1;
            for (int x = d->succ_off[v]; x < d->succ_off[v + 1]; x++) {
                int j = d->edges[d->succ[x]].dst;
                if (next < 0 || prio[j] > prio[next] || (prio[j] == prio[next] && j < next))
                    next = j;
            }
            v = next;
        }
        double best = INFINITY;
        for (int k = 0; k < p; k++) {
            double sum = 0;
            for (int i = 0; i < n; i++)
                if (cp[i])
                    sum += d->cost[i * p + k];
            if (sum < best) {
                best = sum;
                cp_proc = k;
            }
        }
    } else if (method == FARM_GS_PEFT) {
        oct = malloc((size_t)n * (size_t)p * sizeof *oct);
        if (!oct)
            goto out;
        farm_gs_oct(d, oct);
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int k = 0; k < p; k++)
                sum += oct[i * p + k];
            prio[i] = sum / p;
        }
    }
    if (method == FARM_GS_LOOKAHEAD) {
        size_t deg = 1;
        for (int i = 0; i < n; i++)
            if ((size_t)(d->succ_off[i + 1] - d->succ_off[i]) > deg)
                deg = (size_t)(d->succ_off[i + 1] - d->succ_off[i]);
        lk.placed = calloc((size_t)n, 1);
        lk.kids = malloc(deg * sizeof(int));
        lk.kid_edge = malloc(deg * sizeof(int));
        lk.base = malloc(deg * (size_t)p * sizeof(double));
        lk.undo_k = malloc(deg * sizeof(int));
        lk.undo_pos = malloc(deg * sizeof(int));
        if (!lk.placed || !lk.kids || !lk.kid_edge || !lk.base || !lk.undo_k || !lk.undo_pos)
            goto out;
    }
    rc = list_schedule(d, prio, cp, cp_proc, oct, method == FARM_GS_LOOKAHEAD ? &lk : NULL, &s);
out:
    free(lk.placed);
    free(lk.kids);
    free(lk.kid_edge);
    free(lk.base);
    free(lk.undo_k);
    free(lk.undo_pos);
    free(prio);
    free(down);
    free(oct);
    free(cp);
    if (rc)
        farm_gs_sched_release(&s);
    else
        *out = s;
    return rc;
}

/* ---- validity ---- */

struct skey {
    double start, finish;
    int task;
};

static int cmp_skey(const void *a, const void *b)
{
    const struct skey *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->finish != y->finish)
        return x->finish < y->finish ? -1 : 1;
    return (x->task > y->task) - (x->task < y->task);
}

int farm_gs_check(const struct farm_gs_dag *d, const struct farm_gs_sched *s,
                  struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(s->n != d->n, err, FARM_EBADDATA, "schedule has %d tasks, graph %d",
                         s->n, d->n);
    int n = d->n, p = d->p;
    double last = 0;
    for (int i = 0; i < n; i++)
        last = fmax(last, s->finish[i]);
    double eps = 1e-9 * fmax(1.0, last);
    for (int i = 0; i < n; i++) {
        FARM_RETURN_ERROR_IF(s->proc[i] < 0 || s->proc[i] >= p, err, FARM_EBADDATA,
                             "task %d on processor %d of %d", i, s->proc[i], p);
        FARM_RETURN_ERROR_IF(!(s->start[i] >= -eps), err, FARM_EBADDATA,
                             "task %d starts at %g < 0", i, s->start[i]);
        double c = d->cost[i * p + s->proc[i]];
        FARM_RETURN_ERROR_IF(fabs(s->finish[i] - s->start[i] - c) > eps, err, FARM_EBADDATA,
                             "task %d: duration %g differs from its cost %g on processor %d",
                             i, s->finish[i] - s->start[i], c, s->proc[i]);
        for (int x = d->pred_off[i]; x < d->pred_off[i + 1]; x++) {
            int e = d->pred[x], j = d->edges[e].src;
            double need = s->finish[j] + farm_gs_comm(d, e, s->proc[j], s->proc[i]);
            FARM_RETURN_ERROR_IF(s->start[i] < need - eps, err, FARM_EBADDATA,
                                 "task %d starts at %g before its input from task %d "
                                 "arrives at %g",
                                 i, s->start[i], j, need);
        }
    }
    FARM_RETURN_ERROR_IF(fabs(s->makespan - last) > eps, err, FARM_EBADDATA,
                         "makespan %g differs from the last finish %g", s->makespan, last);
    struct skey *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return farm_err_set(err, -ENOMEM, "out of memory");
    int rc = 0;
    for (int k = 0; k < p && !rc; k++) {
        int len = 0;
        for (int i = 0; i < n; i++)
            if (s->proc[i] == k)
                v[len++] = (struct skey){s->start[i], s->finish[i], i};
        qsort(v, (size_t)len, sizeof *v, cmp_skey);
        for (int a = 1; a < len && !rc; a++)
            if (v[a].start < v[a - 1].finish - eps)
                rc = farm_err_set(err, FARM_EBADDATA,
                                  "tasks %d [%g, %g] and %d [%g, %g] overlap on processor %d",
                                  v[a - 1].task, v[a - 1].start, v[a - 1].finish, v[a].task,
                                  v[a].start, v[a].finish, k);
    }
    free(v);
    return rc;
}

/* ---- brute-force optimum ---- */

struct bb {
    const struct farm_gs_dag *d;
    int *proc, *indeg;
    double *start, *finish, *avail, *blevel;
    char *done;
    struct farm_gs_sched *best;
    long nodes, max_nodes;
    int aborted;
};

/* Depth-first search over (task, processor) choices in nondecreasing start
 * order, appending each task to its processor. Every schedule can be
 * replayed this way without getting longer (sort its tasks by start time),
 * so an optimal schedule is among the leaves. */
static void bb_dfs(struct bb *b, int placed, double last_start, double span)
{
    const struct farm_gs_dag *d = b->d;
    int n = d->n, p = d->p;
    if (b->aborted)
        return;
    if (b->max_nodes > 0 && ++b->nodes > b->max_nodes) {
        b->aborted = 1;
        return;
    }
    if (placed == n) {
        if (span < b->best->makespan) {
            memcpy(b->best->proc, b->proc, (size_t)n * sizeof(int));
            memcpy(b->best->start, b->start, (size_t)n * sizeof(double));
            memcpy(b->best->finish, b->finish, (size_t)n * sizeof(double));
            b->best->makespan = span;
        }
        return;
    }
    /* Lower bound: every ready task still needs its minimum-cost path to an
     * exit, starting no earlier than last_start and its inputs. */
    double lb = span;
    for (int i = 0; i < n; i++) {
        if (b->done[i] || b->indeg[i])
            continue;
        double r = last_start;
        for (int x = d->pred_off[i]; x < d->pred_off[i + 1]; x++)
            r = fmax(r, b->finish[d->edges[d->pred[x]].src]);
        lb = fmax(lb, r + b->blevel[i]);
    }
    if (lb >= b->best->makespan)
        return;
    for (int i = 0; i < n; i++) {
        if (b->done[i] || b->indeg[i])
            continue;
        for (int k = 0; k < p; k++) {
            double r = b->avail[k];
            for (int x = d->pred_off[i]; x < d->pred_off[i + 1]; x++) {
                int e = d->pred[x], j = d->edges[e].src;
                r = fmax(r, b->finish[j] + farm_gs_comm(d, e, b->proc[j], k));
            }
            if (r < last_start)
                continue;
            double f = r + d->cost[i * p + k], saved = b->avail[k];
            if (f >= b->best->makespan)
                continue;
            b->done[i] = 1;
            b->proc[i] = k;
            b->start[i] = r;
            b->finish[i] = f;
            b->avail[k] = f;
            for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++)
                b->indeg[d->edges[d->succ[x]].dst]--;
            bb_dfs(b, placed + 1, r, fmax(span, f));
            for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++)
                b->indeg[d->edges[d->succ[x]].dst]++;
            b->avail[k] = saved;
            b->done[i] = 0;
        }
    }
}

int farm_gs_optimal(const struct farm_gs_dag *d, long max_nodes, struct farm_gs_sched *out,
                    struct farm_err *err)
{
    int n = d->n, p = d->p;
    FARM_RETURN_ERROR_IF(n > 12, err, -E2BIG, "brute force is limited to 12 tasks, got %d", n);
    struct farm_gs_sched best;
    if (farm_gs_sched_alloc(&best, n))
        return farm_err_set(err, -ENOMEM, "out of memory");
    best.makespan = INFINITY;
    struct bb b = {.d = d, .best = &best, .max_nodes = max_nodes};
    b.proc = calloc((size_t)n, sizeof(int));
    b.indeg = calloc((size_t)n, sizeof(int));
    b.start = calloc((size_t)n, sizeof(double));
    b.finish = calloc((size_t)n, sizeof(double));
    b.blevel = calloc((size_t)n, sizeof(double));
    b.avail = calloc((size_t)p, sizeof(double));
    b.done = calloc((size_t)n, 1);
    int rc = 0;
    if (!b.proc || !b.indeg || !b.start || !b.finish || !b.blevel || !b.avail || !b.done) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (int t = n - 1; t >= 0; t--) {
        int i = d->topo[t];
        double w = INFINITY, m = 0;
        for (int k = 0; k < p; k++)
            w = fmin(w, d->cost[i * p + k]);
        for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++)
            m = fmax(m, b.blevel[d->edges[d->succ[x]].dst]);
        b.blevel[i] = w + m;
    }
    for (int i = 0; i < n; i++)
        b.indeg[i] = d->pred_off[i + 1] - d->pred_off[i];
    bb_dfs(&b, 0, 0.0, 0.0);
    if (b.aborted)
        rc = farm_err_set(err, FARM_ETIMEOUT, "brute force gave up after %ld nodes", max_nodes);
out:
    free(b.proc);
    free(b.indeg);
    free(b.start);
    free(b.finish);
    free(b.blevel);
    free(b.avail);
    free(b.done);
    if (rc)
        farm_gs_sched_release(&best);
    else
        *out = best;
    return rc;
}

double farm_gs_slr(const struct farm_gs_dag *d, const struct farm_gs_sched *s)
{
    double cp = farm_gs_cp_min(d);
    return cp > 0 ? s->makespan / cp : 1.0;
}

double farm_gs_speedup(const struct farm_gs_dag *d, const struct farm_gs_sched *s)
{
    return s->makespan > 0 ? farm_gs_seq_time(d) / s->makespan : 1.0;
}
