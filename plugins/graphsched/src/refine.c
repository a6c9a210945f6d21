/* REFINE: a list schedule improved by bounded iterative search.
 *
 * 1. Seeds: HEFT, CPOP and PEFT (sched.c); the shortest is the incumbent
 *    (ties: HEFT, then CPOP, then PEFT).
 * 2. Forward-backward passes (after Li and Willis's iterative forward/backward
 *    scheduling for project scheduling): a list schedule of the reversed
 *    graph, tasks by decreasing finish time in the current schedule, each on
 *    its processor of least EFT in reverse time; mirrored, it is a schedule of
 *    the original graph; then a forward list schedule, tasks by start time in
 *    the mirrored one, each on its processor of least EFT. A pass thus ranks
 *    tasks by their real tails and heads in the previous schedule (real
 *    processors, real communication) rather than by mean costs. Passes go on
 *    until three in a row bring no shorter schedule.
 * 3. Critical-path moves from the best schedule: the critical path is walked
 *    back from the last task, through the input whose arrival set its start,
 *    else through the task before it on its processor. Each of its tasks, last
 *    first, is tried on the other processors on which it could finish earlier
 *    than now (from its inputs' current finish times alone), in order of
 *    that estimate; the schedule is re-evaluated by replaying the current
 *    task order (by start time) with the current processors but that one
 *    changed, insertion-based. The first move that shortens the schedule is
 *    kept and the path recomputed. Once no move on the path helps, a
 *    forward-backward pass with every processor fixed reorders the tasks
 *    (never lengthening the schedule), and the moves start again; this stops
 *    after two rounds without a new best.
 *
 * Every schedule considered comes from a forward pass of the list
 * evaluator, so it is valid under the model, and a schedule is only
 * replaced by a strictly shorter one: the result is never longer than the
 * HEFT, CPOP or PEFT schedule of the same graph.
 *
 * Budget: the work of the refinement (phases 2 and 3) is counted in
 * elementary steps (one per processor tried per input edge or task in a
 * list pass, one per input edge or task replayed) and stopped at
 * REFINE_PASSES * (n + m) * p, i.e. about REFINE_PASSES HEFT passes. The
 * count does not depend on the machine, so the result is deterministic. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/graphsched.h"
#include "sched-internal.h"

/* The refinement's work budget in HEFT passes (see above). */
#define REFINE_PASSES 10

/* A timeline: the tasks on one processor by start time. */
struct rtl {
    int len, cap;
    double *s, *f;
    int *t;
};

/* Sort key of the replay order: start time, then topological position. */
struct skey {
    double start;
    int pos, task;
};

/* Working state; the timelines hold n slots each, so they never grow. */
struct refine {
    const struct farm_gs_dag *d;
    int n, p;
    struct rtl *tl;
    struct rtl *btl;
    int *indeg, *heap, *rpos, *order, *rank, *proc, *cp, *cand;
    double *cest, *bl;
    struct skey *keys;
    struct farm__gs_heap ready;
    double *prio;
    long long work, budget;
};

static void rtl_insert(struct rtl *tl, int pos, double s, double f, int t)
{
    memmove(tl->s + pos + 1, tl->s + pos, (size_t)(tl->len - pos) * sizeof(double));
    memmove(tl->f + pos + 1, tl->f + pos, (size_t)(tl->len - pos) * sizeof(double));
    memmove(tl->t + pos + 1, tl->t + pos, (size_t)(tl->len - pos) * sizeof(int));
    tl->s[pos] = s;
    tl->f[pos] = f;
    tl->t[pos] = t;
    tl->len++;
}

/* List pass: forward (rev = 0) or on the reversed graph (rev = 1, result
 * mirrored back into a forward schedule). prio: larger first. fixed: the
 * processor of every task, or NULL for least EFT. */
static void list_pass(struct refine *c, int rev, const double *prio, const int *fixed,
                      struct farm_gs_sched *s)
{
    const struct farm_gs_dag *d = c->d;
    int n = c->n, p = c->p;
    for (int k = 0; k < p; k++)
        c->tl[k].len = 0;
    c->ready.task = c->heap;
    c->ready.prio = prio;
    c->ready.pos = rev ? c->rpos : d->topo_pos;
    c->ready.len = 0;
    const int *off = rev ? d->succ_off : d->pred_off, *adj = rev ? d->succ : d->pred;
    const int *ooff = rev ? d->pred_off : d->succ_off, *oadj = rev ? d->pred : d->succ;
    for (int i = 0; i < n; i++) {
        c->indeg[i] = off[i + 1] - off[i];
        if (!c->indeg[i])
            farm__gs_heap_push(&c->ready, i);
    }
    s->makespan = 0;
    while (c->ready.len) {
        int i = farm__gs_heap_pop(&c->ready), best = -1, bpos = 0;
        double beft = INFINITY, bst = 0;
        int k0 = fixed ? fixed[i] : 0, k1 = fixed ? fixed[i] + 1 : p;
        for (int k = k0; k < k1; k++) {
            double r = 0, dur = d->cost[i * p + k];
            for (int x = off[i]; x < off[i + 1]; x++) {
                int e = adj[x], j = rev ? d->edges[e].dst : d->edges[e].src;
                double cm =
                    rev ? farm_gs_comm(d, e, k, s->proc[j]) : farm_gs_comm(d, e, s->proc[j], k);
                r = fmax(r, s->finish[j] + cm);
            }
            int pos;
            double st = farm__gs_gap_find(c->tl[k].s, c->tl[k].f, c->tl[k].len, r, dur, &pos);
            if (st + dur < beft) {
                beft = st + dur;
                bst = st;
                best = k;
                bpos = pos;
            }
        }
        c->work += (long long)(k1 - k0) * (off[i + 1] - off[i] + 1);
        rtl_insert(&c->tl[best], bpos, bst, beft, i);
        s->proc[i] = best;
        s->start[i] = bst;
        s->finish[i] = beft;
        s->makespan = fmax(s->makespan, beft);
        for (int x = ooff[i]; x < ooff[i + 1]; x++) {
            int e = oadj[x], j = rev ? d->edges[e].src : d->edges[e].dst;
            if (--c->indeg[j] == 0)
                farm__gs_heap_push(&c->ready, j);
        }
    }
    if (rev) {
        double m = s->makespan;
        for (int i = 0; i < n; i++) {
            double st = m - s->finish[i];
            s->finish[i] = st + d->cost[i * p + s->proc[i]];
            s->start[i] = st;
        }
        s->makespan = 0;
        for (int i = 0; i < n; i++)
            s->makespan = fmax(s->makespan, s->finish[i]);
    }
}

static void copy_sched(struct farm_gs_sched *to, const struct farm_gs_sched *from)
{
    memcpy(to->proc, from->proc, (size_t)from->n * sizeof(int));
    memcpy(to->start, from->start, (size_t)from->n * sizeof(double));
    memcpy(to->finish, from->finish, (size_t)from->n * sizeof(double));
    to->makespan = from->makespan;
}

/* Forward list pass over s's tasks in order of start time (ties:
 * topological position), each on its processor in s. No task starts later
 * than in s: the tasks placed before one on its processor start earlier in
 * s and do not move later, so its slot in s is still free. */
static void justify(struct refine *c, const struct farm_gs_sched *s, struct farm_gs_sched *out)
{
    for (int i = 0; i < c->n; i++)
        c->prio[i] = -s->start[i];
    memcpy(c->proc, s->proc, (size_t)c->n * sizeof(int));
    list_pass(c, 0, c->prio, c->proc, out);
}

/* One forward-backward pass from s into out (tmp: scratch): the reversed
 * graph by decreasing finish time in s, mirrored, then forward by start
 * time in the mirror. fixed: keep s's processors (a pure reordering, never
 * longer than s), else least EFT in each direction. When the mirrored
 * schedule is the shorter, out is its forward justification. */
static void fb_pass(struct refine *c, const struct farm_gs_sched *s, int fixed,
                    struct farm_gs_sched *tmp, struct farm_gs_sched *out)
{
    for (int i = 0; i < c->n; i++)
        c->prio[i] = s->finish[i];
    memcpy(c->proc, s->proc, (size_t)c->n * sizeof(int));
    list_pass(c, 1, c->prio, fixed ? c->proc : NULL, tmp);
    for (int i = 0; i < c->n; i++)
        c->prio[i] = -tmp->start[i];
    memcpy(c->proc, tmp->proc, (size_t)c->n * sizeof(int));
    list_pass(c, 0, c->prio, fixed ? c->proc : NULL, out);
    if (tmp->makespan < out->makespan)
        justify(c, tmp, out);
}

/* Critical path of s (timelines c->tl hold s). */
static int crit_path(struct refine *c, const struct farm_gs_sched *s)
{
    const struct farm_gs_dag *d = c->d;
    int t = -1, len = 0;
    for (int i = 0; i < c->n; i++)
        if (t < 0 || s->finish[i] > s->finish[t])
            t = i;
    while (t >= 0) {
        c->cp[len++] = t;
        int next = -1;
        for (int x = d->pred_off[t]; x < d->pred_off[t + 1] && next < 0; x++) {
            int e = d->pred[x], j = d->edges[e].src;
            if (s->finish[j] + farm_gs_comm(d, e, s->proc[j], s->proc[t]) >= s->start[t])
                next = j;
        }
        if (next < 0 && s->start[t] > 0) {
            const struct rtl *tl = &c->btl[s->proc[t]];
            int lo = 0, hi = tl->len - 1;
            while (lo < hi) { /* the slot of t: the last starting at or before it */
                int mid = (lo + hi + 1) / 2;
                if (tl->s[mid] <= s->start[t])
                    lo = mid;
                else
                    hi = mid - 1;
            }
            while (lo > 0 && tl->t[lo] != t)
                lo--;
            if (lo > 0 && tl->t[lo] == t && tl->f[lo - 1] >= s->start[t])
                next = tl->t[lo - 1];
        }
        t = next;
    }
    return len;
}

static int cmp_skey(const void *a, const void *b)
{
    const struct skey *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Replays c->order from index `from` with processors `proc`, on top of
 * `base` (the replay of the same order, timelines in c->btl). Returns 1 when
 * a task's finish plus its minimum-cost tail reaches `bound` (the schedule
 * cannot be shorter than bound), 0 when done. */
static int replay(struct refine *c, int from, const int *proc, const struct farm_gs_sched *base,
                  double bound, struct farm_gs_sched *out)
{
    const struct farm_gs_dag *d = c->d;
    int n = c->n, p = c->p;
    for (int k = 0; k < p; k++) {
        struct rtl *tl = &c->tl[k];
        const struct rtl *b = &c->btl[k];
        tl->len = 0;
        for (int q = 0; q < b->len; q++)
            if (c->rank[b->t[q]] < from) {
                tl->s[tl->len] = b->s[q];
                tl->f[tl->len] = b->f[q];
                tl->t[tl->len++] = b->t[q];
            }
    }
    out->makespan = 0;
    for (int q = 0; q < from; q++) {
        int i = c->order[q];
        out->proc[i] = base->proc[i];
        out->start[i] = base->start[i];
        out->finish[i] = base->finish[i];
        out->makespan = fmax(out->makespan, base->finish[i]);
    }
    c->work += n;
    for (int q = from; q < n; q++) {
        int i = c->order[q], k = proc[i];
        double r = 0, dur = d->cost[i * p + k];
        for (int x = d->pred_off[i]; x < d->pred_off[i + 1]; x++) {
            int e = d->pred[x], j = d->edges[e].src;
            r = fmax(r, out->finish[j] + farm_gs_comm(d, e, out->proc[j], k));
        }
        c->work += d->pred_off[i + 1] - d->pred_off[i] + 1;
        int pos;
        double st = farm__gs_gap_find(c->tl[k].s, c->tl[k].f, c->tl[k].len, r, dur, &pos);
        if (st + dur + c->bl[i] >= bound)
            return 1;
        rtl_insert(&c->tl[k], pos, st, st + dur, i);
        out->proc[i] = k;
        out->start[i] = st;
        out->finish[i] = st + dur;
        out->makespan = fmax(out->makespan, st + dur);
    }
    return 0;
}

/* Sorts s's tasks by start into c->order, replays them on s's processors
 * (never later than s) into out and keeps its timelines as the base. */
static void rebase(struct refine *c, const struct farm_gs_sched *s, struct farm_gs_sched *out)
{
    for (int i = 0; i < c->n; i++)
        c->keys[i] = (struct skey){s->start[i], c->d->topo_pos[i], i};
    qsort(c->keys, (size_t)c->n, sizeof *c->keys, cmp_skey);
    for (int q = 0; q < c->n; q++) {
        c->order[q] = c->keys[q].task;
        c->rank[c->keys[q].task] = q;
    }
    replay(c, 0, s->proc, s, INFINITY, out);
    for (int k = 0; k < c->p; k++) {
        struct rtl *b = &c->btl[k];
        b->len = c->tl[k].len;
        memcpy(b->s, c->tl[k].s, (size_t)b->len * sizeof(double));
        memcpy(b->f, c->tl[k].f, (size_t)b->len * sizeof(double));
        memcpy(b->t, c->tl[k].t, (size_t)b->len * sizeof(int));
    }
}

/* Moves critical tasks of cur to other processors while the makespan
 * drops. cur is rebased on return. */
static void local_search(struct refine *c, struct farm_gs_sched *cur, struct farm_gs_sched *a)
{
    const struct farm_gs_dag *d = c->d;
    int p = c->p;
    rebase(c, cur, a);
    copy_sched(cur, a);
    int improved = 1;
    while (improved && c->work < c->budget) {
        improved = 0;
        int len = crit_path(c, cur);
        for (int q = 0; q < len && !improved && c->work < c->budget; q++) {
            int t = c->cp[q], k0 = cur->proc[t], nc = 0;
            for (int l = 0; l < p; l++) {
                if (l == k0)
                    continue;
                double r = 0;
                for (int x = d->pred_off[t]; x < d->pred_off[t + 1]; x++) {
                    int e = d->pred[x], j = d->edges[e].src;
                    r = fmax(r, cur->finish[j] + farm_gs_comm(d, e, cur->proc[j], l));
                }
                double f = r + d->cost[t * p + l];
                if (!(f < cur->finish[t]))
                    continue;
                int at = nc++;
                while (at > 0 && (c->cest[at - 1] > f)) {
                    c->cest[at] = c->cest[at - 1];
                    c->cand[at] = c->cand[at - 1];
                    at--;
                }
                c->cest[at] = f;
                c->cand[at] = l;
            }
            c->work += (long long)p * (d->pred_off[t + 1] - d->pred_off[t] + 1);
            for (int w = 0; w < nc && !improved && c->work < c->budget; w++) {
                cur->proc[t] = c->cand[w];
                int r = replay(c, c->rank[t], cur->proc, cur, cur->makespan, a);
                cur->proc[t] = k0;
                if (r == 0 && a->makespan < cur->makespan) {
                    rebase(c, a, cur);
                    improved = 1;
                }
            }
        }
    }
}

int farm__gs_refine(const struct farm_gs_dag *d, struct farm_gs_sched *out)
{
    int n = d->n, p = d->p, rc = -ENOMEM;
    struct refine c = {.d = d, .n = n, .p = p};
    struct farm_gs_sched best = {0}, cur = {0}, a = {0}, b = {0};
    c.tl = calloc((size_t)p, sizeof *c.tl);
    c.btl = calloc((size_t)p, sizeof *c.btl);
    c.indeg = malloc((size_t)n * sizeof(int));
    c.heap = malloc((size_t)n * sizeof(int));
    c.rpos = malloc((size_t)n * sizeof(int));
    c.order = malloc((size_t)n * sizeof(int));
    c.rank = malloc((size_t)n * sizeof(int));
    c.proc = malloc((size_t)n * sizeof(int));
    c.cp = malloc((size_t)n * sizeof(int));
    c.cand = malloc((size_t)p * sizeof(int));
    c.cest = malloc((size_t)p * sizeof(double));
    c.prio = malloc((size_t)n * sizeof(double));
    c.bl = malloc((size_t)n * sizeof(double));
    c.keys = malloc((size_t)n * sizeof *c.keys);
    if (!c.tl || !c.btl || !c.indeg || !c.heap || !c.rpos || !c.order || !c.rank || !c.proc ||
        !c.cp || !c.cand || !c.cest || !c.prio || !c.bl || !c.keys ||
        farm_gs_sched_alloc(&cur, n) || farm_gs_sched_alloc(&a, n) || farm_gs_sched_alloc(&b, n))
        goto out;
    for (int k = 0; k < p; k++) {
        struct rtl *t2[2] = {&c.tl[k], &c.btl[k]};
        for (int z = 0; z < 2; z++) {
            t2[z]->s = malloc((size_t)n * sizeof(double));
            t2[z]->f = malloc((size_t)n * sizeof(double));
            t2[z]->t = malloc((size_t)n * sizeof(int));
            t2[z]->cap = n;
            if (!t2[z]->s || !t2[z]->f || !t2[z]->t)
                goto out;
        }
    }
    for (int i = 0; i < n; i++)
        c.rpos[i] = n - 1 - d->topo_pos[i];
    for (int t = n - 1; t >= 0; t--) {
        int i = d->topo[t];
        double m = 0;
        for (int x = d->succ_off[i]; x < d->succ_off[i + 1]; x++) {
            int j = d->edges[d->succ[x]].dst;
            double w = INFINITY;
            for (int k = 0; k < p; k++)
                w = fmin(w, d->cost[j * p + k]);
            m = fmax(m, w + c.bl[j]);
        }
        c.bl[i] = m;
    }
    long long unit = (long long)(n + d->m) * p;
    c.budget = unit * REFINE_PASSES;
    /* The seeds: the shortest of HEFT, CPOP and PEFT (ties: that order). */
    for (int m = 0; m < 3; m++) {
        static const int seeds[3] = {FARM_GS_HEFT, FARM_GS_CPOP, FARM_GS_PEFT};
        struct farm_gs_sched q;
        if ((rc = farm_gs_schedule(d, seeds[m], &q)))
            goto out;
        if (!m || q.makespan < best.makespan) {
            farm_gs_sched_release(&best);
            best = q;
        } else
            farm_gs_sched_release(&q);
    }
    /* Phase 2: forward-backward passes with free processors. */
    copy_sched(&cur, &best);
    for (int stale = 0; stale < 3 && c.work + 2 * unit <= c.budget;) {
        fb_pass(&c, &cur, 0, &a, &b);
        copy_sched(&cur, &b);
        if (b.makespan < best.makespan) {
            copy_sched(&best, &b);
            stale = 0;
        } else
            stale++;
    }
    /* Phase 3: critical-path moves, then a reordering pass, and again. */
    copy_sched(&cur, &best);
    for (int stale = 0; stale < 2 && c.work < c.budget;) {
        local_search(&c, &cur, &a);
        if (cur.makespan < best.makespan) {
            copy_sched(&best, &cur);
            stale = 0;
        } else
            stale++;
        fb_pass(&c, &cur, 1, &a, &b);
        copy_sched(&cur, &b);
        if (cur.makespan < best.makespan)
            copy_sched(&best, &cur);
    }
    *out = best;
    best = (struct farm_gs_sched){0};
    rc = 0;
out:
    for (int k = 0; c.tl && k < p; k++) {
        free(c.tl[k].s);
        free(c.tl[k].f);
        free(c.tl[k].t);
    }
    for (int k = 0; c.btl && k < p; k++) {
        free(c.btl[k].s);
        free(c.btl[k].f);
        free(c.btl[k].t);
    }
    free(c.tl);
    free(c.btl);
    free(c.indeg);
    free(c.heap);
    free(c.rpos);
    free(c.order);
    free(c.rank);
    free(c.proc);
    free(c.cp);
    free(c.cand);
    free(c.cest);
    free(c.prio);
    free(c.bl);
    free(c.keys);
    farm_gs_sched_release(&best);
    farm_gs_sched_release(&cur);
    farm_gs_sched_release(&a);
    farm_gs_sched_release(&b);
    return rc;
}
