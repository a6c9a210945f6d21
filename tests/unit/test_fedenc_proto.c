/* fedenc frames: round trip, truncated, oversized and garbage input; HMAC. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "farm/fedenc_proto.h"

static const struct farm_fedenc_tensor_spec specs[2] = {
    {"enc.w1", 2, {3, 4}},
    {"enc.b1", 1, {4}},
};

static uint8_t *make_frame(size_t *len)
{
    float data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (float)i * 0.5f - 3.0f;
    json_t *h = json_pack("{s:I, s:f}", "samples", (json_int_t)42, "loss", 0.25);
    uint8_t *buf;
    struct farm_err err;
    int rc = farm_fedenc_encode(FARM_FEDENC_UPDATE, 7, h, specs, 2, data, &buf, len, &err);
    json_decref(h);
    if (rc != 0)
        fail_msg("encode: %s", err.msg);
    return buf;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_frame(&len);
    assert_memory_equal(buf, "FENC", 4);
    /* the first float of the body is -3.0f, little endian: 00 00 40 c0 */
    uint32_t jl = (uint32_t)buf[12] | (uint32_t)buf[13] << 8;
    assert_memory_equal(buf + FARM_FEDENC_HDR + jl, "\x00\x00\x40\xc0", 4);
    assert_int_equal(len, FARM_FEDENC_HDR + jl + 16 * 4);

    size_t flen = 0;
    struct farm_err err;
    assert_int_equal(farm_fedenc_peek(buf, len, 1 << 20, &flen, &err), 0);
    assert_int_equal(flen, len);
    struct farm_fedenc_msg msg = {0};
    assert_int_equal(farm_fedenc_decode(buf, len, &msg, &err), 0);
    assert_int_equal(msg.type, FARM_FEDENC_UPDATE);
    assert_int_equal(msg.round, 7);
    assert_int_equal(msg.ntensors, 2);
    assert_string_equal(msg.specs[0].name, "enc.w1");
    assert_int_equal(msg.specs[0].shape[1], 4);
    assert_int_equal(farm_fedenc_schema_check(specs, 2, msg.specs, msg.ntensors, &err), 0);
    assert_int_equal(msg.nfloats, 16);
    assert_true(msg.data[15] == 4.5f);
    assert_int_equal(json_integer_value(json_object_get(msg.json, "samples")), 42);
    assert_null(json_object_get(msg.json, "tensors"));
    farm_fedenc_msg_release(&msg);
    free(buf);
}

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_frame(&len);
    struct farm_err err;
    for (size_t cut = 0; cut < len; cut++) {
        size_t flen = 0;
        int rc = farm_fedenc_peek(buf, cut, 1 << 20, &flen, &err);
        assert_int_equal(rc, cut < FARM_FEDENC_HDR ? -EAGAIN : 0);
        struct farm_fedenc_msg msg = {0};
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        assert_int_equal(farm_fedenc_decode(copy, cut, &msg, &err), -EAGAIN);
        assert_null(msg.json);
        free(copy);
    }
    free(buf);
}

static void test_oversized(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_frame(&len);
    struct farm_err err;
    size_t flen = 0;
    assert_int_equal(farm_fedenc_peek(buf, FARM_FEDENC_HDR, len - 1, &flen, &err), FARM_ETOOBIG);
    assert_non_null(strstr(err.msg, "at most"));
    /* a body length near 2^64 must not wrap around */
    memset(buf + 16, 0xff, 8);
    assert_int_equal(farm_fedenc_peek(buf, len, 1 << 20, &flen, &err), FARM_ETOOBIG);
    /* trailing bytes beyond the header's length */
    free(buf);
    buf = make_frame(&len);
    uint8_t *longer = calloc(len + 4, 1);
    memcpy(longer, buf, len);
    struct farm_fedenc_msg msg = {0};
    assert_int_equal(farm_fedenc_decode(longer, len + 4, &msg, &err), FARM_EBADREQ);
    free(longer);
    /* JSON bigger than the limit is refused by the encoder */
    json_t *big = json_object();
    char *s = malloc(FARM_FEDENC_JSON_MAX + 10);
    memset(s, 'a', FARM_FEDENC_JSON_MAX + 9);
    s[FARM_FEDENC_JSON_MAX + 9] = 0;
    json_object_set_new(big, "pad", json_string(s));
    uint8_t *out;
    size_t olen;
    assert_int_equal(farm_fedenc_encode(FARM_FEDENC_INSTRUCT, 1, big, NULL, 0, NULL, &out, &olen,
                                        &err),
                     FARM_ETOOBIG);
    free(s);
    json_decref(big);
    free(buf);
}

/* Builds a frame by hand with the given JSON text and body padding. */
static uint8_t *raw_frame(const char *json, size_t data_bytes, size_t *len)
{
    size_t jl = strlen(json);
    *len = FARM_FEDENC_HDR + jl + data_bytes;
    uint8_t *b = calloc(*len, 1);
    memcpy(b, "FENC", 4);
    b[4] = FARM_FEDENC_VERSION;
    b[6] = FARM_FEDENC_UPDATE;
    b[8] = 3;
    b[12] = (uint8_t)jl;
    b[13] = (uint8_t)(jl >> 8);
    uint64_t body = jl + data_bytes;
    for (int i = 0; i < 8; i++)
        b[16 + i] = (uint8_t)(body >> (8 * i));
    memcpy(b + FARM_FEDENC_HDR, json, jl);
    return b;
}

static void expect_bad(const char *json, size_t data_bytes, int code, const char *needle)
{
    size_t len;
    uint8_t *b = raw_frame(json, data_bytes, &len);
    struct farm_fedenc_msg msg = {0};
    struct farm_err err;
    int rc = farm_fedenc_decode(b, len, &msg, &err);
    if (rc != code || strstr(err.msg, needle) == NULL)
        fail_msg("%s: got %d '%s', want %d containing '%s'", json, rc, rc ? err.msg : "", code,
                 needle);
    assert_null(msg.json);
    free(b);
}

static void test_garbage(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_frame(&len);
    struct farm_err err;
    struct farm_fedenc_msg msg = {0};
    size_t flen;
    buf[0] = 'G';
    assert_int_equal(farm_fedenc_peek(buf, len, 1 << 20, &flen, &err), FARM_EBADREQ);
    assert_non_null(strstr(err.msg, "magic"));
    buf[0] = 'F';
    buf[4] = 9;
    assert_int_equal(farm_fedenc_decode(buf, len, &msg, &err), FARM_EBADVER);
    buf[4] = FARM_FEDENC_VERSION;
    buf[6] = 99;
    assert_int_equal(farm_fedenc_decode(buf, len, &msg, &err), FARM_EBADREQ);
    assert_non_null(strstr(err.msg, "type 99"));
    free(buf);

    expect_bad("{\"tensors\":[[\"w\",[2,2]]]}", 12, FARM_EBADREQ, "need 16 bytes, the body carries 12");
    expect_bad("{\"tensors\":[[\"w\",[2,2]]]}", 20, FARM_EBADREQ, "need 16 bytes");
    expect_bad("{\"a\":1,\"a\":2}", 0, FARM_EBADREQ, "bad JSON");
    expect_bad("[1,2]", 0, FARM_EBADREQ, "not an object");
    expect_bad("{\"tensors\":5}", 0, FARM_EBADREQ, "must be an array");
    expect_bad("{\"tensors\":[[\"w\",[0]]]}", 0, FARM_EBADREQ, "bad dimension");
    expect_bad("{\"tensors\":[[\"w\",[-4]]]}", 0, FARM_EBADREQ, "bad dimension");
    expect_bad("{\"tensors\":[[\"w\",[1099511627776,1099511627776]]]}", 0, FARM_EBADREQ,
               "bad dimension");
    expect_bad("{\"tensors\":[[\"\",[1]]]}", 4, FARM_EBADREQ, "name of 1..63 bytes");
    expect_bad("{\"tensors\":[[\"w\",[1,1,1,1,1]]]}", 4, FARM_EBADREQ, "1..4 dims");
    expect_bad("{\"tensors\":[[\"w\"]]}", 4, FARM_EBADREQ, "expected [name, [dims...]]");
    expect_bad("{not json", 0, FARM_EBADREQ, "bad JSON");

    /* Random byte flips of a valid frame: every outcome is a clean success
     * or a clean error (the sanitizer build checks the memory side). */
    buf = make_frame(&len);
    uint64_t x = 99;
    for (int trial = 0; trial < 2000; trial++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        for (int f = 0; f < 3; f++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            copy[(x >> 33) % len] ^= (uint8_t)(x >> 17);
        }
        size_t cut = (x >> 40) % 4 == 0 ? (x >> 20) % len : len;
        struct farm_fedenc_msg m = {0};
        if (farm_fedenc_decode(copy, cut, &m, &err) == 0) {
            assert_true(m.nfloats * 4 <= cut);
            farm_fedenc_msg_release(&m);
        }
        free(copy);
    }
    free(buf);
}

/* RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?"). */
static void test_hmac(void **state)
{
    (void)state;
    uint8_t mac[FARM_FEDENC_MAC];
    const char *a = "for nothing?";
    assert_int_equal(farm_fedenc_mac("Jefe", 4, "what do ya want ", (const uint8_t *)a, strlen(a),
                                     NULL, 0, mac),
                     0);
    char hex[2 * FARM_FEDENC_MAC + 1];
    farm_fedenc_hex(mac, sizeof mac, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    uint8_t back[FARM_FEDENC_MAC];
    assert_int_equal(farm_fedenc_unhex(hex, back, sizeof back), 0);
    assert_true(farm_fedenc_mac_equal(mac, back, sizeof mac));
    back[31] ^= 1;
    assert_false(farm_fedenc_mac_equal(mac, back, sizeof mac));
    assert_int_equal(farm_fedenc_unhex("zz", back, 1), -EINVAL);
    assert_int_equal(farm_fedenc_unhex("abc", back, 1), -EINVAL);
    uint8_t n1[32], n2[32];
    assert_int_equal(farm_fedenc_random(n1, 32), 0);
    assert_int_equal(farm_fedenc_random(n2, 32), 0);
    assert_memory_not_equal(n1, n2, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_oversized),  cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_hmac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
