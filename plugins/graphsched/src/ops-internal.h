/* graphsched internals shared between its source files. */
#ifndef FARM_GRAPHSCHED_OPS_INTERNAL_H
#define FARM_GRAPHSCHED_OPS_INTERNAL_H

#include <stddef.h>

#include "farm/graphsched_ops.h"

/* Appends a copy of op; returns its index or -ENOMEM. */
int farm__gs_opgraph_add(struct farm_gs_opgraph *g, const struct farm_gs_op *op);

/* Infers op's output shape from its inputs in g (slice: the sliced length is
 * already set). 0, or -1 with a reason in why. */
int farm__gs_infer(const struct farm_gs_opgraph *g, struct farm_gs_op *op, char *why,
                   size_t len);

/* Runs one operator: out = op(ins). `out` holds rows*cols floats. */
void farm__gs_kernel(const struct farm_gs_op *op, const struct farm_gs_opgraph *g,
                     const float *const *ins, float *out);

/* A 64-byte aligned float buffer of n elements, or NULL. */
float *farm__gs_alloc(size_t n);

/* Thread CPU time in seconds. */
double farm__gs_cpu_now(void);

#endif
