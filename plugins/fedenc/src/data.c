/* fedenc data shards: FedProx synthetic, UCI digits split by label, .npy. */
#include "farm/fedenc_model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int subset(const struct farm_dataset *src, const size_t *idx, size_t n,
                  struct farm_dataset *out, struct farm_err *err)
{
    struct farm_dataset d = {0};
    FARM_RETURN_ERROR_IF(n == 0, err, FARM_EBADDATA, "the selection holds no samples");
    if (farm_tensor_init(&d.x, n, src->x.cols) != 0 ||
        (src->labels && (d.labels = malloc(n * sizeof *d.labels)) == NULL)) {
        farm_dataset_release(&d);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    farm_tensor_gather_rows(&d.x, &src->x, idx, n);
    for (size_t i = 0; src->labels && i < n; i++)
        d.labels[i] = src->labels[idx[i]];
    d.n = n;
    d.classes = src->classes;
    *out = d;
    return 0;
}

int farm_fedenc_dataset_append(struct farm_dataset *dst, const struct farm_dataset *src,
                               struct farm_err *err)
{
    if (dst->n == 0) {
        size_t *idx = malloc((src->n ? src->n : 1) * sizeof *idx);
        if (idx == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < src->n; i++)
            idx[i] = i;
        farm_dataset_release(dst);
        int rc = subset(src, idx, src->n, dst, err);
        free(idx);
        return rc;
    }
    FARM_RETURN_ERROR_IF(dst->x.cols != src->x.cols, err, FARM_EBADDATA,
                         "cannot join samples of %zu and %zu features", dst->x.cols, src->x.cols);
    struct farm_dataset d = {0};
    size_t n = dst->n + src->n;
    if (farm_tensor_init(&d.x, n, dst->x.cols) != 0 ||
        (d.labels = malloc(n * sizeof *d.labels)) == NULL) {
        farm_dataset_release(&d);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    memcpy(d.x.data, dst->x.data, dst->n * dst->x.cols * sizeof(float));
    memcpy(d.x.data + dst->n * dst->x.cols, src->x.data, src->n * src->x.cols * sizeof(float));
    memcpy(d.labels, dst->labels, dst->n * sizeof *d.labels);
    memcpy(d.labels + dst->n, src->labels, src->n * sizeof *d.labels);
    d.n = n;
    d.classes = dst->classes > src->classes ? dst->classes : src->classes;
    farm_dataset_release(dst);
    *dst = d;
    return 0;
}

static double num(const json_t *o, const char *key, double dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int path_of(const json_t *o, const char *key, const char *base, char *out, size_t cap,
                   int required, struct farm_err *err)
{
    const char *p = json_string_value(json_object_get(o, key));
    if (p == NULL) {
        out[0] = '\0';
        return required ? farm_err_set(err, FARM_EBADPARAM, "data.%s: expected a file path", key)
                        : 0;
    }
    if (p[0] == '/' || base == NULL || base[0] == '\0')
        snprintf(out, cap, "%s", p);
    else
        snprintf(out, cap, "%s/%s", base, p);
    return 0;
}

static int load_one(const json_t *s, const char *base, struct farm_fedenc_shard *out,
                    struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!json_is_object(s), err, FARM_EBADPARAM,
                         "data: expected an object with \"source\"");
    const char *src = json_string_value(json_object_get(s, "source"));
    double tf = num(s, "test_fraction", 0.2);
    FARM_RETURN_ERROR_IF(!(tf > 0 && tf < 1), err, FARM_EBADPARAM,
                         "data.test_fraction: expected a number in (0, 1)");
    uint64_t seed = (uint64_t)num(s, "seed", 1);
    const char *as = json_string_value(json_object_get(s, "as"));
    FARM_RETURN_ERROR_IF(as && strcmp(as, "tabular") != 0 && strcmp(as, "sequence") != 0, err,
                         FARM_EBADPARAM, "data.as: expected \"tabular\" or \"sequence\", got \"%s\"",
                         as);
    struct farm_fedenc_shard sh = {.type = FARM_FEDENC_ENC_MLP, .steps = 1};
    if (as && strcmp(as, "sequence") == 0)
        sh.type = FARM_FEDENC_ENC_GRU;
    struct farm_dataset all = {0};
    int rc = 0;
    int have_test = 0;
    if (src && strcmp(src, "synthetic") == 0) {
        double alpha = num(s, "alpha", 1), beta = num(s, "beta", 1);
        double clients = num(s, "clients", 0), index = num(s, "index", -1);
        FARM_RETURN_ERROR_IF(clients < 1 || clients > 10000 || index < 0 || index >= clients, err,
                             FARM_EBADPARAM,
                             "data: synthetic needs \"clients\" >= 1 and 0 <= \"index\" < clients");
        FARM_RETURN_ERROR_IF(sh.type != FARM_FEDENC_ENC_MLP, err, FARM_EBADPARAM,
                             "data.as: synthetic data are tabular");
        size_t nc = (size_t)clients;
        struct farm_dataset *sets = calloc(nc, sizeof *sets);
        size_t *counts = NULL;
        json_t *sv = json_object_get(s, "samples");
        if (sets == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        if (sv != NULL) {
            if (!json_is_integer(sv) || json_integer_value(sv) < 2) {
                free(sets);
                return farm_err_set(err, FARM_EBADPARAM, "data.samples: expected an integer >= 2");
            }
            counts = malloc(nc * sizeof *counts);
            for (size_t i = 0; counts && i < nc; i++)
                counts[i] = (size_t)json_integer_value(sv);
        }
        rc = farm_data_fedprox_synthetic(sets, nc, counts, alpha, beta, seed, err);
        free(counts);
        if (rc == 0) {
            all = sets[(size_t)index];
            memset(&sets[(size_t)index], 0, sizeof sets[0]);
            for (size_t i = 0; i < nc; i++)
                farm_dataset_release(&sets[i]);
        }
        free(sets);
    } else if (src && strcmp(src, "digits") == 0) {
        char path[4096];
        if ((rc = path_of(s, "path", base, path, sizeof path, 1, err)) != 0)
            return rc;
        struct farm_dataset raw = {0};
        if ((rc = farm_data_load_csv(path, -1, &raw, err)) != 0)
            return rc;
        FARM_RETURN_ERROR_IF(raw.x.cols != 64, err, FARM_EBADDATA,
                             "%s: digits rows have 64 pixels, this file has %zu", path, raw.x.cols);
        json_t *labels = json_object_get(s, "labels");
        json_t *shard = json_object_get(s, "shard");
        size_t sh_i = 0, sh_m = 1;
        if (shard != NULL) {
            json_t *a = json_array_get(shard, 0), *b = json_array_get(shard, 1);
            if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(b) < 1 ||
                json_integer_value(a) < 0 || json_integer_value(a) >= json_integer_value(b)) {
                farm_dataset_release(&raw);
                return farm_err_set(err, FARM_EBADPARAM, "data.shard: expected [i, m], 0 <= i < m");
            }
            sh_i = (size_t)json_integer_value(a);
            sh_m = (size_t)json_integer_value(b);
        }
        size_t *idx = malloc(raw.n * sizeof *idx), n = 0, seen = 0;
        for (size_t i = 0; idx && i < raw.n; i++) {
            int keep = labels == NULL;
            for (size_t k = 0; !keep && k < json_array_size(labels); k++)
                keep = json_integer_value(json_array_get(labels, k)) == raw.labels[i];
            if (keep && seen++ % sh_m == sh_i)
                idx[n++] = i;
        }
        rc = idx ? subset(&raw, idx, n, &all, err) : farm_err_set(err, -ENOMEM, "out of memory");
        free(idx);
        farm_dataset_release(&raw);
        if (rc == 0) {
            all.classes = 10;
            farm_tensor_scale(&all.x, (float)num(s, "scale", 1.0 / 16));
            if (sh.type == FARM_FEDENC_ENC_GRU)
                sh.steps = 8;
        }
    } else if (src && strcmp(src, "npy") == 0) {
        char x[4096], y[4096], xt[4096], yt[4096];
        if ((rc = path_of(s, "x", base, x, sizeof x, 1, err)) != 0 ||
            (rc = path_of(s, "y", base, y, sizeof y, 1, err)) != 0 ||
            (rc = path_of(s, "x_test", base, xt, sizeof xt, 0, err)) != 0 ||
            (rc = path_of(s, "y_test", base, yt, sizeof yt, 0, err)) != 0)
            return rc;
        if ((rc = farm_data_load_npy(x, y, &all, err)) != 0)
            return rc;
        if (xt[0]) {
            FARM_RETURN_ERROR_IF(yt[0] == '\0', err, FARM_EBADPARAM,
                                 "data.y_test: needed with x_test");
            if ((rc = farm_data_load_npy(xt, yt, &sh.test, err)) != 0) {
                farm_dataset_release(&all);
                return rc;
            }
            have_test = 1;
        }
        double scale = num(s, "scale", 1);
        if (scale != 1) {
            farm_tensor_scale(&all.x, (float)scale);
            if (have_test)
                farm_tensor_scale(&sh.test.x, (float)scale);
        }
        if (sh.type == FARM_FEDENC_ENC_GRU) {
            double steps = num(s, "steps", 0);
            if (steps < 1 || all.x.cols % (size_t)steps != 0) {
                farm_dataset_release(&all);
                farm_dataset_release(&sh.test);
                return farm_err_set(err, FARM_EBADPARAM,
                                    "data.steps: expected a divisor of the %zu features",
                                    all.x.cols);
            }
            sh.steps = (size_t)steps;
        }
    } else {
        return farm_err_set(err, FARM_EBADPARAM,
                            "data.source: expected \"synthetic\", \"digits\" or \"npy\", got %s",
                            src ? src : "nothing");
    }
    if (rc != 0)
        return rc;
    if (!have_test) {
        rc = farm_data_split(&all, tf, seed + 7, &sh.train, &sh.test, err);
        farm_dataset_release(&all);
        if (rc != 0)
            return rc;
    } else {
        sh.train = all;
    }
    if (sh.train.n == 0 || sh.test.n == 0) {
        farm_dataset_release(&sh.train);
        farm_dataset_release(&sh.test);
        return farm_err_set(err, FARM_EBADDATA, "data: too few samples to hold some out");
    }
    *out = sh;
    return 0;
}

int farm_fedenc_shards_load(const json_t *spec, const char *base_dir,
                            struct farm_fedenc_shard **out, size_t *n, struct farm_err *err)
{
    size_t count = json_is_array(spec) ? json_array_size(spec) : 1;
    FARM_RETURN_ERROR_IF(count == 0, err, FARM_EBADPARAM, "data: empty list");
    struct farm_fedenc_shard *s = calloc(count, sizeof *s);
    if (s == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const json_t *one = json_is_array(spec) ? json_array_get(spec, i) : spec;
        int rc = load_one(one, base_dir, &s[i], err);
        if (rc != 0) {
            if (json_is_array(spec))
                farm_err_prefix(err, "data[%zu]: ", i);
            farm_fedenc_shards_free(s, i);
            return rc;
        }
    }
    *out = s;
    *n = count;
    return 0;
}

void farm_fedenc_shards_free(struct farm_fedenc_shard *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        farm_dataset_release(&s[i].train);
        farm_dataset_release(&s[i].test);
    }
    free(s);
}

const struct farm_fedenc_shard *farm_fedenc_shards_find(const struct farm_fedenc_shard *s,
                                                        size_t n,
                                                        const struct farm_fedenc_encoder_cfg *cfg)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].type != cfg->type || s[i].train.x.cols != farm_fedenc_encoder_width(cfg))
            continue;
        if (cfg->type == FARM_FEDENC_ENC_GRU && s[i].steps != cfg->steps)
            continue;
        return &s[i];
    }
    return NULL;
}
