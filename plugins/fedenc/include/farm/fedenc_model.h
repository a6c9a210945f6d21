/*
 * fedenc models and data: a shared encoder (MLP for tabular samples, GRU for
 * sequences) with a child-local linear head, local training (mini-batch SGD,
 * optional FedProx proximal term), evaluation, and the children's data
 * shards. Built on the numeric kit (farm/nn.h): every product is CBLAS.
 *
 * Determinism: with OPENBLAS_NUM_THREADS=1 the same inputs and seeds give
 * bitwise the same parameters (the children are started that way).
 * Objects are not locked: one thread per object.
 */
#ifndef FARM_FEDENC_MODEL_H
#define FARM_FEDENC_MODEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "farm/fedenc.h"
#include "farm/nn.h"

enum farm_fedenc_enc_type {
    FARM_FEDENC_ENC_MLP = 1, /* tabular: x is n x input */
    FARM_FEDENC_ENC_GRU = 2  /* sequences: x is n x (steps * input), step-major */
};

#define FARM_FEDENC_HIDDEN_MAX 8

/* The shared encoder's shape.
 *   mlp: input -> hidden[0] -> ... -> hidden[nhidden-1], ReLU after each;
 *        the embedding is the last hidden layer.
 *   gru: `steps` steps of `input` features through a GRU of hidden[0]
 *        units; the embedding is the last hidden state. */
struct farm_fedenc_encoder_cfg {
    int type;
    size_t input;
    size_t steps;
    size_t nhidden;
    size_t hidden[FARM_FEDENC_HIDDEN_MAX];
};

/* Reads {"type": "mlp"|"gru", "input": N, "hidden": [..] or N, "steps": T}
 * (steps for gru only; gru takes one hidden size). Errors: FARM_EBADPARAM
 * with "encoder.<key>: expected ..., got ...". */
int farm_fedenc_encoder_cfg_parse(const json_t *j, struct farm_fedenc_encoder_cfg *out,
                                  struct farm_err *err);
/* The inverse; a new reference. */
json_t *farm_fedenc_encoder_cfg_json(const struct farm_fedenc_encoder_cfg *cfg);

/* Width of a sample the encoder reads (input, or steps * input). */
size_t farm_fedenc_encoder_width(const struct farm_fedenc_encoder_cfg *cfg);

/* Local training hyper-parameters. batch 0 means full batch. */
struct farm_fedenc_hp {
    uint32_t epochs;
    size_t batch;
    double lr;
    double momentum; /* SGD momentum, reset every round */
    double mu;       /* FedProx proximal weight (0: plain FedAvg local training) */
    uint64_t seed;   /* head initialisation and shuffling */
};

/* Reads {"epochs","batch","lr","momentum","mu","seed"} (all optional:
 * defaults 1, 32, 0.05, 0, 0, 1). Errors name the key. */
int farm_fedenc_hp_parse(const json_t *j, struct farm_fedenc_hp *out, struct farm_err *err);
json_t *farm_fedenc_hp_json(const struct farm_fedenc_hp *hp);

/* An encoder with a head of `classes` outputs. */
struct farm_fedenc_model;

/* Builds the model; the encoder is initialised from `enc_seed` (He for the
 * MLP, PyTorch's default for the GRU), the head from `head_seed` (Xavier).
 * The caller owns *out (farm_fedenc_model_free). */
int farm_fedenc_model_new(const struct farm_fedenc_encoder_cfg *cfg, size_t classes,
                          uint64_t enc_seed, uint64_t head_seed, struct farm_fedenc_model **out,
                          struct farm_err *err);
void farm_fedenc_model_free(struct farm_fedenc_model *m);

/* The encoder's tensors, in order ("enc.fc1.weight", ...): writes up to cap
 * specs and returns how many there are. */
size_t farm_fedenc_model_specs(const struct farm_fedenc_model *m,
                               struct farm_fedenc_tensor_spec *out, size_t cap);
/* Floats in the encoder. */
size_t farm_fedenc_model_encoder_size(const struct farm_fedenc_model *m);
/* Copies the encoder out / in (n must equal the encoder size: -EINVAL). */
void farm_fedenc_model_get_encoder(const struct farm_fedenc_model *m, float *out);
int farm_fedenc_model_set_encoder(struct farm_fedenc_model *m, const float *in, size_t n);
/* Copies the head out / in (weight then bias). */
size_t farm_fedenc_model_head_size(const struct farm_fedenc_model *m);
void farm_fedenc_model_get_head(const struct farm_fedenc_model *m, float *out);
void farm_fedenc_model_set_head(struct farm_fedenc_model *m, const float *in);

/* Trains encoder and head on `d` (x of the encoder's width, labels below
 * classes) for hp->epochs epochs of mini-batches in an order shuffled with
 * `shuffle_seed`. With hp->mu > 0 the encoder's gradient gains
 * mu * (w - center), center being the encoder the round started from
 * (center may be NULL only when mu is 0). *mean_loss is the mean training
 * loss of the last epoch. */
int farm_fedenc_model_train(struct farm_fedenc_model *m, const struct farm_dataset *d,
                            const struct farm_fedenc_hp *hp, const float *center,
                            uint64_t shuffle_seed, double *mean_loss, struct farm_err *err);

/* Trains the head only (encoder frozen) for `epochs` epochs. */
int farm_fedenc_model_train_head(struct farm_fedenc_model *m, const struct farm_dataset *d,
                                 const struct farm_fedenc_hp *hp, uint32_t epochs,
                                 uint64_t shuffle_seed, struct farm_err *err);

/* Loss sum and correct count over `d` (no parameter changes). */
int farm_fedenc_model_evaluate(struct farm_fedenc_model *m, const struct farm_dataset *d,
                               double *loss_sum, uint64_t *correct, struct farm_err *err);

/* Saves the encoder as safetensors (tensor names as in the specs), with
 * string metadata from `meta` (may be NULL). */
int farm_fedenc_model_save_encoder(struct farm_fedenc_model *m, const char *path,
                                   const json_t *meta, struct farm_err *err);

/* ------------------------------------------------------------------ data */

/* One of a child's data sets: tabular or sequence samples, split into a
 * training part and a held-out part. */
struct farm_fedenc_shard {
    int type;    /* enum farm_fedenc_enc_type it feeds */
    size_t steps; /* sequences: steps per sample (x width = steps * features) */
    struct farm_dataset train, test;
};

/* Loads the shards a data spec describes: a JSON object or an array of
 * them, each one of
 *   {"source": "synthetic", "alpha": A, "beta": B, "clients": N, "index": K,
 *    "samples": S (per client; absent: the FedProx lognormal counts),
 *    "seed": s}
 *   {"source": "digits", "path": "digits.csv.gz", "labels": [0, 1],
 *    "shard": [i, m] (keep every m-th matching sample from the i-th),
 *    "as": "tabular"|"sequence" (8 steps of 8 pixels), "seed": s}
 *   {"source": "npy", "x": "x.npy", "y": "y.npy", "x_test": ..., "y_test":
 *    ..., "as": "tabular"|"sequence", "steps": T}
 * each with optional "test_fraction" (default 0.2; npy with x_test uses
 * that file instead) and "scale" (multiplies x; digits default 1/16).
 * Relative paths are resolved against base_dir (may be NULL). On success
 * *out is a malloc'ed array of *n shards (release with
 * farm_fedenc_shards_free). Errors: FARM_EBADPARAM naming the key, or the
 * loader's error (file:line:col for CSV). */
int farm_fedenc_shards_load(const json_t *spec, const char *base_dir,
                            struct farm_fedenc_shard **out, size_t *n, struct farm_err *err);
void farm_fedenc_shards_free(struct farm_fedenc_shard *s, size_t n);

/* The first shard that feeds `cfg` (type and width match), or NULL. */
const struct farm_fedenc_shard *farm_fedenc_shards_find(const struct farm_fedenc_shard *s,
                                                        size_t n,
                                                        const struct farm_fedenc_encoder_cfg *cfg);

/* Appends src's samples to dst (same width; labels kept). */
int farm_fedenc_dataset_append(struct farm_dataset *dst, const struct farm_dataset *src,
                               struct farm_err *err);

/* The seed a child shuffles its samples with in a round: a mix of the
 * task seed, the child id and the round, so runs repeat exactly. */
uint64_t farm_fedenc_shuffle_seed(uint64_t seed, uint32_t child_id, uint32_t round);

/* ------------------------------------------------------- child trainer */

/* The nn-backed child: its shards, one model per encoder config (the head
 * stays here across rounds), and the farm_fedenc_child_ops over them. */
struct farm_fedenc_trainer {
    uint32_t child_id;
    struct farm_fedenc_shard *shards;
    size_t nshards;
    struct farm_fedenc_model *model;
    struct farm_fedenc_encoder_cfg model_cfg;
    size_t model_classes;
    const struct farm_fedenc_shard *active;
    uint32_t head_epochs; /* head-only fine-tuning before each evaluation (on a copy) */
    float *head_copy;
};

/* Takes ownership of shards. */
void farm_fedenc_trainer_init(struct farm_fedenc_trainer *t, uint32_t child_id,
                              struct farm_fedenc_shard *shards, size_t nshards);
void farm_fedenc_trainer_release(struct farm_fedenc_trainer *t);

/* The ops to put in struct farm_fedenc_child_cfg (self = the trainer). */
extern const struct farm_fedenc_child_ops farm_fedenc_trainer_ops;

#endif
