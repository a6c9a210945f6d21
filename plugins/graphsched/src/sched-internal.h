/* Internal to the graphsched scheduling core. */
#ifndef FARM_GRAPHSCHED_SCHED_INTERNAL_H
#define FARM_GRAPHSCHED_SCHED_INTERNAL_H

#include "farm/graphsched.h"

/* The REFINE method (refine.c): see farm/graphsched.h. Same contract as
 * farm_gs_schedule(). */
int farm__gs_refine(const struct farm_gs_dag *d, struct farm_gs_sched *out);

/* The earliest start >= `ready` of a gap that holds `dur` on a node whose
 * busy slots are [s[j], f[j]), j < len, sorted; *pos is where the new slot
 * goes. Insertion-based, as every method places tasks. */
double farm__gs_gap_find(const double *s, const double *f, int len, double ready, double dur,
                         int *pos);

/* The ready list of a list pass: a max-heap of tasks on (prio, then the
 * smaller pos first), `task` with room for every task. */
struct farm__gs_heap {
    int len;
    int *task;
    const double *prio;
    const int *pos;
};

void farm__gs_heap_push(struct farm__gs_heap *h, int v);
int farm__gs_heap_pop(struct farm__gs_heap *h);

#endif
