/* Helpers shared by the unit tests of plugins/nn (tests/unit/test_nn_*.c):
 * temporary directories, the numpy oracle, .npy exchange and comparisons.
 * Test-only code: failures abort the test through cmocka. */
#ifndef FARM_NN_TEST_UTIL_H
#define FARM_NN_TEST_UTIL_H

#include <stddef.h>

#include "farm/nn.h"

/* Makes a fresh temporary directory; writes its path into buf. */
void nt_tmpdir(char *buf, size_t size);

/* Removes the files in the (flat) directory and the directory. */
void nt_rmdir(const char *dir);

/* DIR/NAME into buf. */
const char *nt_path(char *buf, size_t size, const char *dir, const char *name);

/* $FARM_SOURCE_DIR/REL into buf (the test fails when the variable is unset). */
const char *nt_source(char *buf, size_t size, const char *rel);

/* Runs tests/unit/oracle/nn_oracle.py COMMAND DIR with $FARM_PYTHON
 * (default /usr/bin/python3); returns its exit status. */
int nt_oracle(const char *command, const char *dir);

/* Writes t as DIR/NAME.npy. */
void nt_save(const char *dir, const char *name, const struct farm_tensor *t);

/* Reads DIR/expect_NAME.npy into *out (caller releases). */
void nt_load_expect(const char *dir, const char *name, struct farm_tensor *out);

/* Asserts got equals DIR/expect_NAME.npy in shape, and in value within
 * rel * max|expected| (plus 1e-30) elementwise. */
void nt_assert_close(const struct farm_tensor *got, const char *dir, const char *name, double rel);

/* Fills t with values from N(0, std) using a fixed seed. */
void nt_fill(struct farm_tensor *t, uint64_t seed, float std);

#endif
