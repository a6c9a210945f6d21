/* Internal helpers shared by the files of plugins/nn. */
#ifndef FARM_NN_INTERNAL_H
#define FARM_NN_INTERNAL_H

#include "farm/nn.h"

/* .npy and safetensors store little-endian floats; this kit copies them
 * as they lie in memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "plugins/nn assumes a little-endian host"
#endif

/* Fills p with "<prefix>.<suffix>", value and grad. */
void farm__nn_set_param(struct farm_nn_param *p, const char *prefix, const char *suffix,
                        struct farm_tensor *value, struct farm_tensor *grad);

/* Column sums of the rows x cols matrix g added into acc[cols], row by row
 * (acc must not overlap g). */
void farm__nn_add_colsums(float *restrict acc, const float *restrict g, size_t rows, size_t cols);

/* y[i][j] += b[j] for a rows x cols y (b must not overlap y). */
void farm__nn_add_bias(float *restrict y, const float *restrict b, size_t rows, size_t cols);

/* Writes the n byte ranges bufs[i] (lens[i] bytes) to `path` atomically:
 * a temporary file beside it, fsync, rename. Errors name the path. */
int farm__nn_write_atomic(const char *path, const void *const *bufs, const size_t *lens, size_t n,
                          struct farm_err *err);

/* Reads the whole file into a malloc'ed buffer (*len bytes). */
int farm__nn_read_file(const char *path, unsigned char **out, size_t *len, struct farm_err *err);

#endif
