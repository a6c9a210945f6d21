#include "test_fedenc_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

const char *fed_child_exe(void)
{
    static char path[4096];
    const char *b = getenv("FARM_BUILD_DIR");
    assert_non_null(b);
    snprintf(path, sizeof path, "%s/plugins/farm-fedenc-child", b);
    return path;
}

const char *fed_digits_path(void)
{
    static char path[4096];
    const char *s = getenv("FARM_SOURCE_DIR");
    assert_non_null(s);
    snprintf(path, sizeof path, "%s/examples/model-repo/data/digits.csv.gz", s);
    return path;
}

char *fed_synth_spec(size_t clients, size_t index, size_t samples, uint64_t seed)
{
    json_t *o = json_pack("{s:s, s:f, s:f, s:I, s:I, s:I, s:I}", "source", "synthetic", "alpha",
                          1.0, "beta", 1.0, "clients", (json_int_t)clients, "index",
                          (json_int_t)index, "samples", (json_int_t)samples, "seed",
                          (json_int_t)seed);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *fed_digits_spec(const int *labels, size_t nlabels, const char *as, uint64_t seed)
{
    json_t *l = json_array();
    for (size_t i = 0; i < nlabels; i++)
        json_array_append_new(l, json_integer(labels[i]));
    json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:I}", "source", "digits", "path",
                          fed_digits_path(), "labels", l, "as", as, "seed", (json_int_t)seed);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *fed_digits_shard_spec(size_t i, size_t m, uint64_t seed)
{
    json_t *o = json_pack("{s:s, s:s, s:[I,I], s:s, s:I}", "source", "digits", "path",
                          fed_digits_path(), "shard", (json_int_t)i, (json_int_t)m, "as",
                          "tabular", "seed", (json_int_t)seed);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

void fed_load(const char *spec, struct farm_fedenc_shard **out, size_t *n)
{
    json_t *j = json_loads(spec, 0, NULL);
    assert_non_null(j);
    struct farm_err err;
    int rc = farm_fedenc_shards_load(j, NULL, out, n, &err);
    json_decref(j);
    if (rc != 0)
        fail_msg("load %s: %s", spec, err.msg);
}

static void on_log(void *user, int level, const char *msg)
{
    struct fed_run *r = user;
    size_t len = strlen(msg);
    if (r->log_len + len + 2 > r->log_cap) {
        size_t cap = (r->log_cap + len + 2) * 2;
        char *nl = realloc(r->log, cap);
        assert_non_null(nl);
        r->log = nl;
        r->log_cap = cap;
    }
    memcpy(r->log + r->log_len, msg, len);
    r->log_len += len;
    r->log[r->log_len++] = '\n';
    r->log[r->log_len] = '\0';
    if (getenv("FEDENC_TEST_VERBOSE") || level >= 3)
        fprintf(stderr, "  | %s\n", msg);
}

static void on_round(void *user, const struct farm_fedenc_round_stats *st)
{
    struct fed_run *r = user;
    assert_true(r->nrounds < 64);
    struct farm_fedenc_round_stats *c = &r->stats[r->nrounds];
    *c = *st;
    c->children = malloc((st->n_children ? st->n_children : 1) * sizeof *c->children);
    assert_non_null(c->children);
    memcpy(c->children, st->children, st->n_children * sizeof *c->children);
    r->round_params[r->nrounds] = malloc(r->np * sizeof(float));
    memcpy(r->round_params[r->nrounds], r->params, r->np * sizeof(float));
    r->nrounds++;
}

static void on_listen_cb(void *user, int port)
{
    struct fed_run *r = user;
    if (r->on_listen)
        r->on_listen(r, port);
}

void fed_run_init(struct fed_run *r, size_t n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->classes = 10;
    r->enc = (struct farm_fedenc_encoder_cfg){
        .type = FARM_FEDENC_ENC_MLP, .input = 60, .steps = 1, .nhidden = 1, .hidden = {32}};
    r->hp = (struct farm_fedenc_hp){.epochs = 1, .batch = 16, .lr = 0.05, .seed = 3};
    r->cfg = (struct farm_fedenc_master_cfg){
        .secret = "test-secret",
        .secret_len = 11,
        .respawn = 1,
        .join_timeout = 20,
        .rounds = 2,
        .agg = {.rule = FARM_FEDENC_FEDAVG, .beta = 0.2, .server_lr = 1},
        .min_children = 1,
        .accept_failures = 1,
        .round_timeout = 20,
        .eval_every = 1,
    };
}

void fed_run_exec(struct fed_run *r)
{
    struct farm_fedenc_model *m = NULL;
    struct farm_err err;
    if (farm_fedenc_model_new(&r->enc, r->classes, r->hp.seed, r->hp.seed, &m, &err) != 0)
        fail_msg("model: %s", err.msg);
    static struct farm_fedenc_tensor_spec specs[FARM_FEDENC_TENSORS_MAX];
    size_t nt = farm_fedenc_model_specs(m, specs, FARM_FEDENC_TENSORS_MAX);
    r->np = farm_fedenc_model_encoder_size(m);
    r->params = malloc(r->np * sizeof(float));
    farm_fedenc_model_get_encoder(m, r->params);
    farm_fedenc_model_free(m);

    char **args[FED_MAX_CHILDREN];
    for (size_t k = 0; k < r->n; k++) {
        args[k] = calloc(5, sizeof(char *));
        args[k][0] = "--data";
        args[k][1] = r->data[k];
        if (r->faults[k]) {
            args[k][2] = "--fault";
            args[k][3] = (char *)r->faults[k];
        }
    }
    json_t *instruct = json_pack("{s:o, s:o, s:I, s:I}", "encoder",
                                 farm_fedenc_encoder_cfg_json(&r->enc), "hp",
                                 farm_fedenc_hp_json(&r->hp), "classes", (json_int_t)r->classes,
                                 "head_epochs", (json_int_t)r->head_epochs);
    r->cfg.child_exe = fed_child_exe();
    r->cfg.n_local = r->n;
    if (r->cfg.expect_children == 0)
        r->cfg.expect_children = r->n;
    r->cfg.child_args = (char *const *const *)args;
    r->cfg.instruct = instruct;
    r->cfg.specs = specs;
    r->cfg.ntensors = nt;
    r->cfg.params = r->params;
    r->cfg.log = on_log;
    r->cfg.on_round = on_round;
    r->cfg.on_listen = on_listen_cb;
    r->cfg.user = r;
    r->rc = farm_fedenc_master_run(&r->cfg, &r->err);
    json_decref(instruct);
    for (size_t k = 0; k < r->n; k++)
        free(args[k]);
    if (r->rc != 0 && getenv("FEDENC_TEST_VERBOSE"))
        fprintf(stderr, "master: %s\n", r->err.msg);
}

void fed_run_free(struct fed_run *r)
{
    for (size_t k = 0; k < r->n; k++)
        free(r->data[k]);
    for (size_t i = 0; i < r->nrounds; i++) {
        free(r->stats[i].children);
        free(r->round_params[i]);
    }
    free(r->params);
    free(r->log);
    memset(r, 0, sizeof *r);
}

int fed_log_has(const struct fed_run *r, const char *needle)
{
    return r->log != NULL && strstr(r->log, needle) != NULL;
}
