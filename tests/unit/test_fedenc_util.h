/* Helpers for the fedenc tests: run a master with real child processes and
 * keep what a user would look at (per-round stats, the encoder after each
 * round, the log). */
#ifndef TEST_FEDENC_UTIL_H
#define TEST_FEDENC_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "farm/fedenc.h"
#include "farm/fedenc_model.h"

#define FED_MAX_CHILDREN 16

struct fed_run {
    /* inputs */
    size_t n;                              /* local children */
    char *data[FED_MAX_CHILDREN];          /* per child data spec (JSON text, owned) */
    const char *faults[FED_MAX_CHILDREN];  /* per child fault text or NULL */
    struct farm_fedenc_encoder_cfg enc;
    size_t classes;
    struct farm_fedenc_hp hp;
    uint32_t head_epochs;
    struct farm_fedenc_master_cfg cfg;     /* rounds, agg, min_children, ... set by the test */
    void (*on_listen)(struct fed_run *r, int port);
    /* outputs */
    float *params;                         /* the final encoder */
    size_t np;
    float *round_params[64];               /* the encoder after each round */
    struct farm_fedenc_round_stats stats[64];
    size_t nrounds;
    char *log;
    size_t log_len, log_cap;
    int rc;
    struct farm_err err;
};

/* Defaults: fedavg, server_lr 1, min_children 1, accept_failures, timeouts
 * of 20 s, eval after every round, respawn. */
void fed_run_init(struct fed_run *r, size_t n);
void fed_run_exec(struct fed_run *r);
void fed_run_free(struct fed_run *r);
int fed_log_has(const struct fed_run *r, const char *needle);

/* The child executable in the build tree. */
const char *fed_child_exe(void);
/* $FARM_SOURCE_DIR/examples/model-repo/data/digits.csv.gz */
const char *fed_digits_path(void);

/* JSON text of a synthetic shard spec / a digits spec (malloc'ed). */
char *fed_synth_spec(size_t clients, size_t index, size_t samples, uint64_t seed);
char *fed_digits_spec(const int *labels, size_t nlabels, const char *as, uint64_t seed);
/* Every m-th digit from the i-th on (all labels: an IID shard). */
char *fed_digits_shard_spec(size_t i, size_t m, uint64_t seed);

/* Loads the shards a spec text describes (asserts success). */
void fed_load(const char *spec, struct farm_fedenc_shard **out, size_t *n);

#endif
