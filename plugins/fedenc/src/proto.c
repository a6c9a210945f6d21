#include "farm/fedenc_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

const char *farm_fedenc_msg_type_name(int type)
{
    static const char *const names[] = {
        [FARM_FEDENC_HELLO] = "HELLO",       [FARM_FEDENC_AUTH] = "AUTH",
        [FARM_FEDENC_WELCOME] = "WELCOME",   [FARM_FEDENC_REFUSE] = "REFUSE",
        [FARM_FEDENC_INSTRUCT] = "INSTRUCT", [FARM_FEDENC_CONFIRM] = "CONFIRM",
        [FARM_FEDENC_DECLINE] = "DECLINE",   [FARM_FEDENC_PARAMS] = "PARAMS",
        [FARM_FEDENC_UPDATE] = "UPDATE",     [FARM_FEDENC_EVAL] = "EVAL",
        [FARM_FEDENC_EVAL_RESULT] = "EVAL_RESULT", [FARM_FEDENC_BYE] = "BYE",
    };
    if (type < FARM_FEDENC_HELLO || type > FARM_FEDENC_BYE)
        return "?";
    return names[type];
}

void farm_fedenc_msg_release(struct farm_fedenc_msg *msg)
{
    if (msg == NULL)
        return;
    json_decref(msg->json);
    free(msg->specs);
    free(msg->data);
    memset(msg, 0, sizeof *msg);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* float32 to and from little endian: a plain copy on little-endian hosts. */
static void floats_to_le(uint8_t *dst, const float *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        put_u32(dst + 4 * i, u);
    }
#else
    memcpy(dst, src, n * sizeof(float));
#endif
}

static void floats_from_le(float *dst, const uint8_t *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_u32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
#else
    memcpy(dst, src, n * sizeof(float));
#endif
}

int farm_fedenc_encode(int type, uint32_t round, const json_t *json,
                       const struct farm_fedenc_tensor_spec *specs, size_t ntensors,
                       const float *data, uint8_t **out, size_t *out_len, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(farm_fedenc_msg_type_name(type)[0] == '?', err, -EINVAL,
                         "encode: unknown message type %d", type);
    FARM_RETURN_ERROR_IF(ntensors > FARM_FEDENC_TENSORS_MAX, err, -EINVAL,
                         "encode: %zu tensors, at most %d", ntensors, FARM_FEDENC_TENSORS_MAX);
    FARM_RETURN_ERROR_IF(json != NULL && !json_is_object(json), err, -EINVAL,
                         "encode: the header must be a JSON object");
    json_t *h = json ? json_deep_copy(json) : json_object();
    json_t *list = json_array();
    if (h == NULL || list == NULL) {
        json_decref(h);
        json_decref(list);
        return farm_err_set(err, -ENOMEM, "encode: out of memory");
    }
    size_t nfloats = 0;
    for (size_t i = 0; i < ntensors; i++) {
        const struct farm_fedenc_tensor_spec *t = &specs[i];
        size_t nl = strnlen(t->name, FARM_FEDENC_NAME_MAX);
        if (nl == 0 || nl >= FARM_FEDENC_NAME_MAX || t->ndim < 1 ||
            t->ndim > FARM_FEDENC_NDIM_MAX) {
            json_decref(h);
            json_decref(list);
            return farm_err_set(err, -EINVAL, "encode: bad tensor spec %zu", i);
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        json_array_append_new(list, json_pack("[s o]", t->name, shape));
        nfloats += farm_fedenc_tensor_numel(t);
    }
    json_object_set_new(h, "tensors", list);
    char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (text == NULL)
        return farm_err_set(err, -ENOMEM, "encode: out of memory");
    size_t jl = strlen(text);
    if (jl > FARM_FEDENC_JSON_MAX) {
        free(text);
        return farm_err_set(err, FARM_ETOOBIG, "encode: JSON header of %zu bytes, at most %d",
                            jl, FARM_FEDENC_JSON_MAX);
    }
    size_t body = jl + nfloats * sizeof(float);
    uint8_t *buf = malloc(FARM_FEDENC_HDR + body);
    if (buf == NULL) {
        free(text);
        return farm_err_set(err, -ENOMEM, "encode: out of memory");
    }
    memcpy(buf, FARM_FEDENC_MAGIC, 4);
    put_u16(buf + 4, FARM_FEDENC_VERSION);
    put_u16(buf + 6, (uint16_t)type);
    put_u32(buf + 8, round);
    put_u32(buf + 12, (uint32_t)jl);
    put_u64(buf + 16, (uint64_t)body);
    memcpy(buf + FARM_FEDENC_HDR, text, jl);
    free(text);
    if (nfloats)
        floats_to_le(buf + FARM_FEDENC_HDR + jl, data, nfloats);
    *out = buf;
    *out_len = FARM_FEDENC_HDR + body;
    return 0;
}

int farm_fedenc_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len,
                     struct farm_err *err)
{
    if (len < FARM_FEDENC_HDR)
        return -EAGAIN;
    FARM_RETURN_ERROR_IF(memcmp(buf, FARM_FEDENC_MAGIC, 4) != 0, err, FARM_EBADREQ,
                         "frame: bad magic (not a fedenc peer)");
    uint16_t ver = get_u16(buf + 4);
    FARM_RETURN_ERROR_IF(ver != FARM_FEDENC_VERSION, err, FARM_EBADVER,
                         "frame: protocol version %u, this side speaks %d", ver,
                         FARM_FEDENC_VERSION);
    uint16_t type = get_u16(buf + 6);
    FARM_RETURN_ERROR_IF(farm_fedenc_msg_type_name(type)[0] == '?', err, FARM_EBADREQ,
                         "frame: unknown message type %u", type);
    uint32_t jl = get_u32(buf + 12);
    uint64_t body = get_u64(buf + 16);
    FARM_RETURN_ERROR_IF(jl > FARM_FEDENC_JSON_MAX, err, FARM_EBADREQ,
                         "frame: JSON header of %u bytes, at most %d", jl, FARM_FEDENC_JSON_MAX);
    FARM_RETURN_ERROR_IF(jl > body, err, FARM_EBADREQ,
                         "frame: JSON header (%u bytes) longer than the body (%llu)", jl,
                         (unsigned long long)body);
    FARM_RETURN_ERROR_IF(max_frame < FARM_FEDENC_HDR || body > max_frame - FARM_FEDENC_HDR, err,
                         FARM_ETOOBIG, "frame: %llu bytes, at most %zu accepted",
                         (unsigned long long)body + FARM_FEDENC_HDR, max_frame);
    *frame_len = FARM_FEDENC_HDR + (size_t)body;
    return 0;
}

/* Parses the "tensors" list into specs; returns the total float count
 * through *nfloats. */
static int parse_specs(json_t *list, struct farm_fedenc_tensor_spec **out, size_t *count,
                       size_t *nfloats, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!json_is_array(list), err, FARM_EBADREQ,
                         "frame: \"tensors\" must be an array");
    size_t n = json_array_size(list);
    FARM_RETURN_ERROR_IF(n > FARM_FEDENC_TENSORS_MAX, err, FARM_EBADREQ,
                         "frame: %zu tensors, at most %d", n, FARM_FEDENC_TENSORS_MAX);
    struct farm_fedenc_tensor_spec *specs = calloc(n ? n : 1, sizeof *specs);
    if (specs == NULL)
        return farm_err_set(err, -ENOMEM, "frame: out of memory");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        json_t *name = json_array_get(e, 0), *shape = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(name) ||
            !json_is_array(shape)) {
            free(specs);
            return farm_err_set(err, FARM_EBADREQ,
                                "frame: tensors[%zu]: expected [name, [dims...]]", i);
        }
        size_t nl = json_string_length(name);
        size_t nd = json_array_size(shape);
        if (nl == 0 || nl >= FARM_FEDENC_NAME_MAX || strlen(json_string_value(name)) != nl ||
            nd < 1 || nd > FARM_FEDENC_NDIM_MAX) {
            free(specs);
            return farm_err_set(err, FARM_EBADREQ,
                                "frame: tensors[%zu]: name of 1..%d bytes and 1..%d dims expected",
                                i, FARM_FEDENC_NAME_MAX - 1, FARM_FEDENC_NDIM_MAX);
        }
        memcpy(specs[i].name, json_string_value(name), nl + 1);
        specs[i].ndim = (int)nd;
        size_t numel = 1;
        for (size_t d = 0; d < nd; d++) {
            json_t *v = json_array_get(shape, d);
            json_int_t dim = json_is_integer(v) ? json_integer_value(v) : -1;
            /* Each dimension and the running product stay below 2^40 floats,
             * far beyond any frame we accept, so nothing overflows. */
            if (dim <= 0 || dim > ((json_int_t)1 << 40) ||
                numel > ((size_t)1 << 40) / (size_t)dim) {
                int rc = farm_err_set(err, FARM_EBADREQ,
                                      "frame: tensors[%zu] '%s': bad dimension %zu", i,
                                      specs[i].name, d);
                free(specs);
                return rc;
            }
            specs[i].shape[d] = dim;
            numel *= (size_t)dim;
        }
        total += numel;
        if (total > ((size_t)1 << 40)) {
            free(specs);
            return farm_err_set(err, FARM_EBADREQ, "frame: tensors too large");
        }
    }
    *out = specs;
    *count = n;
    *nfloats = total;
    return 0;
}

int farm_fedenc_decode(const uint8_t *buf, size_t len, struct farm_fedenc_msg *msg,
                       struct farm_err *err)
{
    size_t frame_len = 0;
    int rc = farm_fedenc_peek(buf, len, (size_t)-1, &frame_len, err);
    if (rc != 0)
        return rc == -EAGAIN ? farm_err_set(err, -EAGAIN, "frame: truncated header") : rc;
    FARM_RETURN_ERROR_IF(len < frame_len, err, -EAGAIN,
                         "frame: truncated (%zu of %zu bytes)", len, frame_len);
    FARM_RETURN_ERROR_IF(len > frame_len, err, FARM_EBADREQ,
                         "frame: %zu bytes, its header says %zu", len, frame_len);
    uint32_t jl = get_u32(buf + 12);
    json_error_t jerr;
    json_t *h = json_loadb((const char *)buf + FARM_FEDENC_HDR, jl, JSON_REJECT_DUPLICATES, &jerr);
    FARM_RETURN_ERROR_IF(h == NULL, err, FARM_EBADREQ, "frame: bad JSON header: %s", jerr.text);
    if (!json_is_object(h)) {
        json_decref(h);
        return farm_err_set(err, FARM_EBADREQ, "frame: JSON header is not an object");
    }
    struct farm_fedenc_tensor_spec *specs = NULL;
    size_t ntensors = 0, nfloats = 0;
    json_t *list = json_object_get(h, "tensors");
    if (list != NULL) {
        rc = parse_specs(list, &specs, &ntensors, &nfloats, err);
        if (rc != 0) {
            json_decref(h);
            return rc;
        }
        json_object_del(h, "tensors");
    }
    size_t data_bytes = frame_len - FARM_FEDENC_HDR - jl;
    if (nfloats > data_bytes / sizeof(float) || nfloats * sizeof(float) != data_bytes) {
        free(specs);
        json_decref(h);
        return farm_err_set(err, FARM_EBADREQ,
                            "frame: tensors need %zu bytes, the body carries %zu",
                            nfloats * sizeof(float), data_bytes);
    }
    float *data = NULL;
    if (nfloats) {
        data = malloc(nfloats * sizeof(float));
        if (data == NULL) {
            free(specs);
            json_decref(h);
            return farm_err_set(err, -ENOMEM, "frame: out of memory");
        }
        floats_from_le(data, buf + FARM_FEDENC_HDR + jl, nfloats);
    }
    msg->type = get_u16(buf + 6);
    msg->round = get_u32(buf + 8);
    msg->json = h;
    msg->ntensors = ntensors;
    msg->specs = specs;
    msg->data = data;
    msg->nfloats = nfloats;
    return 0;
}

int farm_fedenc_mac(const void *key, size_t key_len, const char *label, const uint8_t *a,
                    size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[FARM_FEDENC_MAC])
{
    size_t ll = strlen(label);
    size_t n = ll + a_len + b_len;
    uint8_t *msg = malloc(n ? n : 1);
    if (msg == NULL)
        return -ENOMEM;
    memcpy(msg, label, ll);
    if (a_len)
        memcpy(msg + ll, a, a_len);
    if (b_len)
        memcpy(msg + ll + a_len, b, b_len);
    unsigned int out_len = 0;
    /* An empty key is legal HMAC, but OpenSSL wants a non-NULL pointer. */
    static const uint8_t empty = 0;
    unsigned char *r = HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len, msg, n, out,
                            &out_len);
    free(msg);
    return r != NULL && out_len == FARM_FEDENC_MAC ? 0 : FARM_EBADREQ;
}

int farm_fedenc_random(uint8_t *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1 ? 0 : -EIO;
}

int farm_fedenc_mac_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void farm_fedenc_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int farm_fedenc_unhex(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL || strlen(hex) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
