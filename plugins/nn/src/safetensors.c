/* Weights as safetensors: u64 LE header length, JSON header, raw data. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn-internal.h"

int farm_safetensors_save(const char *path, const struct farm_nn_param *params, size_t n,
                          const json_t *metadata, struct farm_err *err)
{
    json_t *head = json_object();
    if (!head)
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    int rc = 0;
    size_t offset = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct farm_tensor *t = params[i].value;
        if (!strcmp(params[i].name, "__metadata__") || json_object_get(head, params[i].name)) {
            rc = farm_err_set(err, -EINVAL, "%s: duplicate or reserved tensor name \"%s\"", path,
                              params[i].name);
            break;
        }
        json_t *shape = json_array();
        int nd = t->ndim ? t->ndim : 2;
        size_t sh2[2] = {t->rows, t->cols};
        const size_t *sh = t->ndim ? t->shape : sh2;
        for (int k = 0; shape && k < nd; k++)
            json_array_append_new(shape, json_integer((json_int_t)sh[k]));
        size_t bytes = farm_tensor_size(t) * sizeof(float);
        json_t *entry = json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                  "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        if (!entry || json_object_set_new(head, params[i].name, entry) < 0)
            rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
        offset += bytes;
    }
    if (rc == 0 && metadata) {
        const char *k;
        json_t *v;
        if (!json_is_object(metadata))
            rc = farm_err_set(err, -EINVAL, "%s: metadata must be a JSON object", path);
        json_object_foreach((json_t *)metadata, k, v)
        {
            if (rc == 0 && !json_is_string(v))
                rc = farm_err_set(err, -EINVAL, "%s: metadata value \"%s\" is not a string", path,
                                  k);
        }
        if (rc == 0)
            json_object_set_new(head, "__metadata__", json_deep_copy(metadata));
    }
    char *text = NULL;
    if (rc == 0 && !(text = json_dumps(head, JSON_COMPACT | JSON_SORT_KEYS)))
        rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    json_decref(head);
    if (rc < 0)
        return rc;
    /* Pad the header with spaces so the data start 8-byte aligned. */
    size_t tlen = strlen(text);
    size_t hlen = (tlen + 7) / 8 * 8;
    unsigned char *pre = malloc(8 + hlen);
    if (!pre) {
        free(text);
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    for (int k = 0; k < 8; k++)
        pre[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    memcpy(pre + 8, text, tlen);
    memset(pre + 8 + tlen, ' ', hlen - tlen);
    free(text);
    size_t nb = n + 1;
    const void **bufs = calloc(nb, sizeof *bufs);
    size_t *lens = calloc(nb, sizeof *lens);
    if (!bufs || !lens) {
        free(bufs);
        free(lens);
        free(pre);
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    bufs[0] = pre;
    lens[0] = 8 + hlen;
    for (size_t i = 0; i < n; i++) {
        bufs[i + 1] = params[i].value->data;
        lens[i + 1] = farm_tensor_size(params[i].value) * sizeof(float);
    }
    rc = farm__nn_write_atomic(path, bufs, lens, nb, err);
    free(bufs);
    free(lens);
    free(pre);
    return rc;
}

static int bad(struct farm_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct farm_err *err, const char *path, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return farm_err_set(err, FARM_EBADDATA, "%s: %s", path, why);
}

int farm_safetensors_load(const char *path, const struct farm_nn_param *params, size_t n,
                          bool allow_extra, struct farm_err *err)
{
    unsigned char *buf;
    size_t len;
    int rc = farm__nn_read_file(path, &buf, &len, err);
    if (rc < 0)
        return rc;
    json_t *head = NULL;
    const unsigned char *data = NULL;
    size_t dlen = 0;
    if (len < 8) {
        rc = bad(err, path, "not a safetensors file: %s", "shorter than 8 bytes");
        goto out;
    }
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++)
        hlen |= (uint64_t)buf[k] << (8 * k);
    if (hlen > len - 8) {
        rc = bad(err, path, "not a safetensors file: %s", "header length beyond the end");
        goto out;
    }
    json_error_t jerr;
    head = json_loadb((const char *)buf + 8, (size_t)hlen, 0, &jerr);
    if (!head || !json_is_object(head)) {
        rc = farm_err_set(err, FARM_EBADDATA, "%s: bad safetensors header: %s", path,
                          head ? "not a JSON object" : jerr.text);
        goto out;
    }
    data = buf + 8 + hlen;
    dlen = len - 8 - (size_t)hlen;
    /* Check every entry first, so that a bad file leaves the tensors as
     * they were. */
    const char *key;
    json_t *val;
    json_object_foreach(head, key, val)
    {
        if (!strcmp(key, "__metadata__"))
            continue;
        size_t i;
        for (i = 0; i < n; i++)
            if (!strcmp(params[i].name, key))
                break;
        if (i == n) {
            if (!allow_extra) {
                rc = bad(err, path, "tensor \"%s\" is not a parameter of this model", key);
                goto out;
            }
            continue;
        }
        const char *dtype = NULL;
        json_t *shape = NULL;
        json_int_t b0 = -1, b1 = -1;
        if (json_unpack(val, "{s:s, s:o, s:[II]}", "dtype", &dtype, "shape", &shape, "data_offsets",
                        &b0, &b1) < 0 ||
            !json_is_array(shape)) {
            rc = bad(err, path, "tensor \"%s\": entry lacks dtype, shape or data_offsets", key);
            goto out;
        }
        if (strcmp(dtype, "F32") != 0) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s: tensor \"%s\": dtype %s, expected F32", path,
                              key, dtype);
            goto out;
        }
        const struct farm_tensor *t = params[i].value;
        int nd = t->ndim ? t->ndim : 2;
        size_t sh2[2] = {t->rows, t->cols};
        const size_t *sh = t->ndim ? t->shape : sh2;
        bool same = json_array_size(shape) == (size_t)nd;
        for (int k = 0; same && k < nd; k++) {
            json_t *d = json_array_get(shape, (size_t)k);
            same = json_is_integer(d) && json_integer_value(d) == (json_int_t)sh[k];
        }
        if (!same) {
            char *got = json_dumps(shape, JSON_COMPACT);
            char want[128];
            int w = 0;
            for (int k = 0; k < nd; k++)
                w += snprintf(want + w, sizeof want - (size_t)w, "%s%zu", k ? "," : "", sh[k]);
            rc = farm_err_set(err, FARM_EBADDATA,
                              "%s: tensor \"%s\": shape %s in the file, the model has [%s]", path,
                              key, got ? got : "?", want);
            free(got);
            goto out;
        }
        size_t bytes = farm_tensor_size(t) * sizeof(float);
        if (b0 < 0 || b1 < b0 || (uint64_t)b1 > dlen || (size_t)(b1 - b0) != bytes) {
            rc = bad(err, path, "tensor \"%s\": data_offsets out of range", key);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!json_object_get(head, params[i].name)) {
            rc = bad(err, path, "tensor \"%s\" is missing", params[i].name);
            goto out;
        }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object_get(head, params[i].name);
        json_int_t b0 = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
        size_t bytes = farm_tensor_size(params[i].value) * sizeof(float);
        if (bytes)
            memcpy(params[i].value->data, data + b0, bytes);
    }
out:
    json_decref(head);
    free(buf);
    return rc;
}
