/* The nn-backed child: answers the master's requests with its own shards
 * and its own head, which never leaves this process. */
#include "farm/fedenc_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t farm_fedenc_shuffle_seed(uint64_t seed, uint32_t child_id, uint32_t round)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL;
    x ^= ((uint64_t)child_id + 1) * 0xBF58476D1CE4E5B9ULL;
    x ^= ((uint64_t)round + 1) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

void farm_fedenc_trainer_init(struct farm_fedenc_trainer *t, uint32_t child_id,
                              struct farm_fedenc_shard *shards, size_t nshards)
{
    memset(t, 0, sizeof *t);
    t->child_id = child_id;
    t->shards = shards;
    t->nshards = nshards;
}

void farm_fedenc_trainer_release(struct farm_fedenc_trainer *t)
{
    if (t == NULL)
        return;
    farm_fedenc_model_free(t->model);
    farm_fedenc_shards_free(t->shards, t->nshards);
    free(t->head_copy);
    memset(t, 0, sizeof *t);
}

static int same_cfg(const struct farm_fedenc_encoder_cfg *a, const struct farm_fedenc_encoder_cfg *b)
{
    if (a->type != b->type || a->input != b->input || a->steps != b->steps ||
        a->nhidden != b->nhidden)
        return 0;
    for (size_t i = 0; i < a->nhidden; i++)
        if (a->hidden[i] != b->hidden[i])
            return 0;
    return 1;
}

static int tr_prepare(void *self, uint32_t round, const json_t *instruct, uint64_t *samples,
                      struct farm_err *err)
{
    struct farm_fedenc_trainer *t = self;
    (void)round;
    struct farm_fedenc_encoder_cfg cfg;
    struct farm_fedenc_hp hp;
    int rc = farm_fedenc_encoder_cfg_parse(json_object_get(instruct, "encoder"), &cfg, err);
    if (rc == 0)
        rc = farm_fedenc_hp_parse(json_object_get(instruct, "hp"), &hp, err);
    if (rc != 0)
        return rc;
    json_t *jc = json_object_get(instruct, "classes");
    FARM_RETURN_ERROR_IF(!json_is_integer(jc) || json_integer_value(jc) < 2, err, FARM_EBADPARAM,
                         "instruction: \"classes\" missing");
    size_t classes = (size_t)json_integer_value(jc);
    json_t *he = json_object_get(instruct, "head_epochs");
    t->head_epochs = json_is_integer(he) && json_integer_value(he) > 0
                         ? (uint32_t)json_integer_value(he) : 0;
    t->active = farm_fedenc_shards_find(t->shards, t->nshards, &cfg);
    if (t->active == NULL) {
        *samples = 0;
        return farm_err_set(err, 0, "no %s samples of width %zu here",
                            cfg.type == FARM_FEDENC_ENC_GRU ? "sequence" : "tabular",
                            farm_fedenc_encoder_width(&cfg));
    }
    if (t->model == NULL || !same_cfg(&cfg, &t->model_cfg) || classes != t->model_classes) {
        /* A new encoder type means a new head; the encoder itself always
         * comes from the master. */
        farm_fedenc_model_free(t->model);
        t->model = NULL;
        rc = farm_fedenc_model_new(&cfg, classes, 0, hp.seed, &t->model, err);
        if (rc != 0)
            return rc;
        t->model_cfg = cfg;
        t->model_classes = classes;
    }
    *samples = t->active->train.n;
    return 0;
}

static int check_specs(struct farm_fedenc_trainer *t, const struct farm_fedenc_tensor_spec *specs,
                       size_t ntensors, size_t n, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(t->model == NULL || t->active == NULL, err, FARM_ESTATE,
                         "parameters before an accepted instruction");
    struct farm_fedenc_tensor_spec mine[FARM_FEDENC_TENSORS_MAX];
    size_t k = farm_fedenc_model_specs(t->model, mine, FARM_FEDENC_TENSORS_MAX);
    int rc = farm_fedenc_schema_check(mine, k, specs, ntensors, err);
    if (rc == 0 && n != farm_fedenc_model_encoder_size(t->model))
        rc = farm_err_set(err, FARM_EBADDATA, "parameter count mismatch");
    return rc;
}

static int tr_train(void *self, uint32_t round, const json_t *instruct,
                    const struct farm_fedenc_tensor_spec *specs, size_t ntensors,
                    const float *global, size_t n, float *out, double *loss, uint64_t *samples,
                    struct farm_err *err)
{
    struct farm_fedenc_trainer *t = self;
    struct farm_fedenc_hp hp;
    int rc = check_specs(t, specs, ntensors, n, err);
    if (rc == 0)
        rc = farm_fedenc_hp_parse(json_object_get(instruct, "hp"), &hp, err);
    if (rc != 0)
        return rc;
    farm_fedenc_model_set_encoder(t->model, global, n);
    rc = farm_fedenc_model_train(t->model, &t->active->train, &hp, global,
                                 farm_fedenc_shuffle_seed(hp.seed, t->child_id, round), loss, err);
    if (rc != 0)
        return rc;
    farm_fedenc_model_get_encoder(t->model, out);
    *samples = t->active->train.n;
    return 0;
}

static int tr_evaluate(void *self, const json_t *instruct,
                       const struct farm_fedenc_tensor_spec *specs, size_t ntensors,
                       const float *global, size_t n, double *loss_sum, uint64_t *correct,
                       uint64_t *count, struct farm_err *err)
{
    struct farm_fedenc_trainer *t = self;
    struct farm_fedenc_hp hp;
    int rc = check_specs(t, specs, ntensors, n, err);
    if (rc == 0)
        rc = farm_fedenc_hp_parse(json_object_get(instruct, "hp"), &hp, err);
    if (rc != 0)
        return rc;
    farm_fedenc_model_set_encoder(t->model, global, n);
    if (t->head_epochs > 0) {
        /* Fit a copy of the local head to the new shared encoder before
         * measuring; the head the child trains with is put back after, so
         * evaluating never changes the course of training. */
        size_t hn = farm_fedenc_model_head_size(t->model);
        float *copy = realloc(t->head_copy, hn * sizeof *copy);
        if (copy == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        t->head_copy = copy;
        farm_fedenc_model_get_head(t->model, copy);
        rc = farm_fedenc_model_train_head(t->model, &t->active->train, &hp, t->head_epochs,
                                          farm_fedenc_shuffle_seed(hp.seed ^ 0x5a5a, t->child_id,
                                                                   0),
                                          err);
    }
    if (rc == 0)
        rc = farm_fedenc_model_evaluate(t->model, &t->active->test, loss_sum, correct, err);
    if (t->head_epochs > 0)
        farm_fedenc_model_set_head(t->model, t->head_copy);
    if (rc == 0)
        *count = t->active->test.n;
    return rc;
}

const struct farm_fedenc_child_ops farm_fedenc_trainer_ops = {
    .prepare = tr_prepare,
    .train = tr_train,
    .evaluate = tr_evaluate,
};
