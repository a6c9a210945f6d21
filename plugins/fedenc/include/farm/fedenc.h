/*
 * fedenc: shared-encoder federation, master and child loops.
 *
 * The master listens on TCP (libuv), optionally spawns N local child
 * processes, authenticates each connection with the shared secret (see
 * farm/fedenc_proto.h), and runs rounds:
 *
 *   INSTRUCT(r, encoder type + hyper-parameters) to every joined child
 *   -> each child answers CONFIRM(samples of that type) or DECLINE
 *   -> fewer than min_children confirmations: the round is void
 *   -> PARAMS(global encoder) to the confirmed children only
 *   -> each trains locally and answers UPDATE(encoder, samples, loss)
 *   -> every update is checked (round id, shapes, finite values); stale
 *      rounds are ignored, bad updates rejected with a logged reason
 *   -> with at least min_children accepted updates (and no failure when
 *      accept_failures is off) the aggregator computes the new encoder;
 *      otherwise the global encoder stays as it was
 *   -> every eval_every rounds, EVAL(global encoder) to the confirmed
 *      children, who report loss and accuracy on their held-out sets.
 *
 * Children that die are left out; a child that reconnects with its id joins
 * again from the next round (local children are respawned when `respawn`).
 * Task heads never travel: only the tensors of the encoder schema are sent,
 * and an update with any other tensor list is rejected.
 *
 * This layer is independent of the numeric kit: the child's training and
 * evaluation come in through struct farm_fedenc_child_ops, the master's
 * initial encoder through the config. Both loops are single-threaded and
 * own their libuv loop; call them from one thread of a process.
 */
#ifndef FARM_FEDENC_H
#define FARM_FEDENC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/fedenc_agg.h"
#include "farm/fedenc_proto.h"

/* Log sink: level is 0 debug, 1 info, 2 warn, 3 error (as farm_log_level). */
typedef void (*farm_fedenc_log_fn)(void *user, int level, const char *msg);

/* ---------------------------------------------------------------- child */

/* What a child does with the master's requests; `self` is the ops' state.
 * Every function returns 0 or a negative code with a message in err.
 *   prepare   an INSTRUCT arrived (its JSON: "encoder", "hp", "classes").
 *             Set *samples to the training samples of that encoder type;
 *             0 declines the round (err->msg then says why).
 *   train     PARAMS arrived: start from `global` (the encoder, n floats
 *             laid out as specs), train the encoder with the child's own
 *             head, write the new encoder to out[n], the mean training
 *             loss and the sample count used.
 *   evaluate  EVAL arrived: the held-out loss sum, correct count and
 *             sample count of `global` with the child's head. */
struct farm_fedenc_child_ops {
    int (*prepare)(void *self, uint32_t round, const json_t *instruct, uint64_t *samples,
                   struct farm_err *err);
    int (*train)(void *self, uint32_t round, const json_t *instruct,
                 const struct farm_fedenc_tensor_spec *specs, size_t ntensors, const float *global,
                 size_t n, float *out, double *loss, uint64_t *samples, struct farm_err *err);
    int (*evaluate)(void *self, const json_t *instruct, const struct farm_fedenc_tensor_spec *specs,
                    size_t ntensors, const float *global, size_t n, double *loss_sum,
                    uint64_t *correct, uint64_t *count, struct farm_err *err);
};

/* Misbehaviour a child can be told to show, for tests and demonstrations
 * of the master's defences. 0 means off; a round field names the round in
 * which it happens. */
struct farm_fedenc_faults {
    uint32_t die_round;   /* SIGKILL itself after receiving PARAMS of that round */
    uint32_t nan_round;   /* the update carries a NaN */
    uint32_t shape_round; /* the update's first tensor has a wrong shape */
    uint32_t stale_round; /* first send an update stamped with round-1 (garbage) */
    double garbage;       /* every update is replaced by uniform noise in [-g, g] */
    uint32_t delay_ms;    /* sleep before sending each update */
};

/* Parses "die=2,nan=3,shape=1,stale=2,garbage=100,delay=30" (any subset,
 * "" for none) into *out. Returns 0 or FARM_EBADPARAM naming the item. */
int farm_fedenc_faults_parse(const char *text, struct farm_fedenc_faults *out,
                             struct farm_err *err);

struct farm_fedenc_child_cfg {
    const char *host;        /* the master's address (numeric IPv4/IPv6 or name) */
    int port;
    uint32_t id;             /* unique among the master's children */
    const void *secret;
    size_t secret_len;
    const struct farm_fedenc_child_ops *ops;
    void *self;
    struct farm_fedenc_faults faults;
    double connect_timeout;  /* seconds to keep retrying the connection */
    farm_fedenc_log_fn log;  /* may be NULL */
    void *log_user;
};

/* Connects (retrying for connect_timeout seconds), authenticates and serves
 * the master until BYE (returns 0) or until the connection fails or is
 * refused: FARM_EPERM for a refused handshake or a master without the
 * secret, -ECONNREFUSED and other -errno for the socket, -ECONNRESET when
 * the master goes away, FARM_EBADREQ for a protocol violation. */
int farm_fedenc_child_run(const struct farm_fedenc_child_cfg *cfg, struct farm_err *err);

/* --------------------------------------------------------------- master */

/* What happened to one child in one round. */
enum farm_fedenc_child_status {
    FARM_FEDENC_ABSENT = 0,   /* not connected when the round started */
    FARM_FEDENC_DECLINED = 1, /* no samples of the encoder type: got no parameters */
    FARM_FEDENC_ACCEPTED = 2, /* its update entered the aggregation */
    FARM_FEDENC_REJECTED = 3, /* its update was invalid (reason says why) */
    FARM_FEDENC_FAILED = 4,   /* died, or did not answer before the round timeout */
    FARM_FEDENC_IDLE = 5      /* confirmed, but the round was void before training */
};

/* The status's name ("accepted"), static. */
const char *farm_fedenc_status_name(int status);

struct farm_fedenc_child_stats {
    uint32_t id;
    int status;               /* enum farm_fedenc_child_status */
    int got_params;           /* 1 when PARAMS was sent to it this round */
    uint64_t samples;         /* confirmed training samples */
    double train_loss;        /* as reported in its update */
    double train_seconds;     /* as reported in its update */
    uint64_t bytes_up;        /* frame bytes received from it this round */
    uint64_t bytes_down;      /* frame bytes sent to it this round */
    uint64_t eval_n, eval_correct;
    double eval_loss_sum;
    char reason[256];         /* why it was rejected, declined or failed */
};

struct farm_fedenc_round_stats {
    uint32_t round;
    int applied;              /* 1: the global encoder changed; 0: void round */
    char void_reason[256];
    size_t n_children;        /* entries in children[], ascending id */
    struct farm_fedenc_child_stats *children;
    size_t confirmed, declined, accepted, rejected, failed, stale;
    double train_loss;        /* sample-weighted mean over accepted updates */
    int evaluated;            /* eval_* below are set */
    double eval_loss, eval_accuracy;
    uint64_t eval_n;
    uint64_t bytes_up, bytes_down;
    double round_seconds;     /* INSTRUCT sent to aggregation done (no eval) */
    double train_seconds;     /* the longest local training of the round */
    double aggregate_seconds; /* validation + aggregation */
    double eval_seconds;
};

struct farm_fedenc_master_cfg {
    const char *bind_host;       /* default "127.0.0.1" */
    int port;                    /* 0: any free port */
    const void *secret;
    size_t secret_len;

    /* Local children: n_local processes of child_exe, each started as
     *   child_exe --connect HOST:PORT --id K [child_args[K]...]
     * with the secret in the environment (FARM_FEDENC_SECRET) and
     * OPENBLAS_NUM_THREADS=1. Their stderr is forwarded to `log`. */
    const char *child_exe;
    size_t n_local;
    char *const *const *child_args; /* n_local NULL-terminated lists, or NULL */
    int respawn;                 /* restart a dead local child before the next round */

    size_t expect_children;      /* wait for this many before round 1 */
    double join_timeout;         /* seconds */

    uint32_t rounds;
    const json_t *instruct;      /* {"encoder": {...}, "hp": {...}, "classes": C} */
    struct farm_fedenc_agg_cfg agg;
    size_t min_children;
    int accept_failures;
    double round_timeout;        /* seconds, per phase */
    uint32_t eval_every;         /* 0: only after the last round */

    const struct farm_fedenc_tensor_spec *specs; /* the encoder schema */
    size_t ntensors;
    float *params;               /* in: initial encoder; out: final encoder */

    farm_fedenc_log_fn log;      /* may be NULL */
    void (*on_round)(void *user, const struct farm_fedenc_round_stats *st); /* may be NULL */
    void (*on_listen)(void *user, int port);                                /* may be NULL */
    int (*cancelled)(void *user);                                           /* may be NULL */
    void *user;
};

/* Runs the whole federation. Returns 0 when all rounds ran (void rounds
 * included); FARM_ETIMEOUT when fewer than min_children joined within
 * join_timeout; FARM_ECANCELLED; -errno for socket and spawn failures. On
 * return every local child has exited (killed after a grace period when
 * it does not leave after BYE). */
int farm_fedenc_master_run(const struct farm_fedenc_master_cfg *cfg, struct farm_err *err);

/* Monotonic seconds (for timing reports). */
double farm_fedenc_now(void);

#endif
