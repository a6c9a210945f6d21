/*
 * fedenc wire protocol: framed binary messages between the master and its
 * children, and the shared-secret handshake.
 *
 * A frame is a fixed 24-byte header, all integers little endian:
 *
 *   offset  size  field
 *   0       4     magic "FENC"
 *   4       2     version (FARM_FEDENC_VERSION)
 *   6       2     type (enum farm_fedenc_msg_type)
 *   8       4     round id
 *   12      4     json_len: bytes of the JSON header that follows
 *   16      8     body_len: json_len + bytes of tensor data
 *
 * then json_len bytes of a JSON object (UTF-8, no NUL), then the tensors as
 * raw little-endian float32, one after the other, in the order and with the
 * shapes the JSON's "tensors" member lists: [["enc.w1",[60,128]], ...].
 * Weights are never text-encoded. The receiver checks everything before
 * trusting it: magic, version, type, the frame size against its own limit
 * (before buffering the body), the JSON (an object, at most
 * FARM_FEDENC_JSON_MAX bytes, no duplicate keys), each tensor entry (a name
 * of 1..63 bytes, 1..4 positive dimensions) and that the tensor bytes add up
 * exactly to the body, without overflow.
 *
 * Handshake (mutual): the master sends HELLO {"nonce": hex}; the child sends
 * AUTH {"child": id, "nonce": hex, "mac": hex} with mac = HMAC-SHA256(secret,
 * "fedenc-child" | master nonce | child id as 4 LE bytes); the master
 * checks it in constant time and answers WELCOME {"mac": HMAC-SHA256(secret,
 * "fedenc-master" | child nonce)} or REFUSE {"reason": ...} and closes. A
 * child checks WELCOME the same way, so neither side talks to a stranger.
 * Nonces are 32 bytes from OpenSSL's RAND_bytes.
 *
 * Everything here is reentrant and may be called from any thread.
 */
#ifndef FARM_FEDENC_PROTO_H
#define FARM_FEDENC_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "farm/error.h"
#include "farm/fedenc_agg.h"

#define FARM_FEDENC_MAGIC "FENC"
#define FARM_FEDENC_VERSION 1
#define FARM_FEDENC_HDR 24
#define FARM_FEDENC_JSON_MAX 65536
#define FARM_FEDENC_TENSORS_MAX 64
#define FARM_FEDENC_NONCE 32
#define FARM_FEDENC_MAC 32

enum farm_fedenc_msg_type {
    FARM_FEDENC_HELLO = 1,       /* master -> child: {"nonce"} */
    FARM_FEDENC_AUTH = 2,        /* child -> master: {"child","nonce","mac","types"} */
    FARM_FEDENC_WELCOME = 3,     /* master -> child: {"mac"} */
    FARM_FEDENC_REFUSE = 4,      /* master -> child: {"reason"}, then close */
    FARM_FEDENC_INSTRUCT = 5,    /* master -> child: {"encoder", hyper-parameters} */
    FARM_FEDENC_CONFIRM = 6,     /* child -> master: {"samples"} */
    FARM_FEDENC_DECLINE = 7,     /* child -> master: {"reason"} */
    FARM_FEDENC_PARAMS = 8,      /* master -> child: global encoder tensors */
    FARM_FEDENC_UPDATE = 9,      /* child -> master: {"samples","loss"} + encoder tensors */
    FARM_FEDENC_EVAL = 10,       /* master -> child: global encoder tensors to evaluate */
    FARM_FEDENC_EVAL_RESULT = 11, /* child -> master: {"loss","correct","n"} */
    FARM_FEDENC_BYE = 12         /* master -> child: the federation is over */
};

/* The type's name ("UPDATE"), or "?" (static string). */
const char *farm_fedenc_msg_type_name(int type);

/* A decoded message. Everything is owned by the message: release it with
 * farm_fedenc_msg_release(). A zeroed struct is an empty message. */
struct farm_fedenc_msg {
    int type;
    uint32_t round;
    json_t *json;                      /* the header object ("tensors" removed) */
    size_t ntensors;
    struct farm_fedenc_tensor_spec *specs; /* ntensors entries */
    float *data;                       /* all tensors, concatenated */
    size_t nfloats;
};

void farm_fedenc_msg_release(struct farm_fedenc_msg *msg);

/* Encodes one frame. `json` (an object, or NULL for {}) is not modified;
 * the tensors specs[0..ntensors) are taken from data (their numel summed).
 * On success *out is a malloc'ed buffer of *out_len bytes, the caller's.
 * Errors: -EINVAL (bad spec, too many tensors), FARM_ETOOBIG (JSON over
 * FARM_FEDENC_JSON_MAX), -ENOMEM. */
int farm_fedenc_encode(int type, uint32_t round, const json_t *json,
                       const struct farm_fedenc_tensor_spec *specs, size_t ntensors,
                       const float *data, uint8_t **out, size_t *out_len, struct farm_err *err);

/* Looks at the first `len` bytes received. Returns -EAGAIN while fewer than
 * FARM_FEDENC_HDR bytes are there; otherwise checks the header (magic,
 * version, type, json_len <= FARM_FEDENC_JSON_MAX, json_len <= body_len,
 * HDR + body_len <= max_frame) and writes the whole frame's size to
 * *frame_len. Errors: FARM_EBADREQ (bad magic, type, lengths), FARM_EBADVER,
 * FARM_ETOOBIG, each with a message. */
int farm_fedenc_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len,
                     struct farm_err *err);

/* Decodes exactly one whole frame of `len` bytes (as farm_fedenc_peek
 * measured it) into *msg. Errors: those of peek, -EAGAIN when len is short
 * of the frame, FARM_EBADREQ for a frame longer than its header says, bad
 * JSON, a bad tensor list, or tensor bytes that do not add up to the body.
 * On error *msg is untouched. */
int farm_fedenc_decode(const uint8_t *buf, size_t len, struct farm_fedenc_msg *msg,
                       struct farm_err *err);

/* HMAC-SHA256(key, label | a | b) into out[FARM_FEDENC_MAC]. Returns 0 or
 * FARM_EBADREQ when OpenSSL fails. */
int farm_fedenc_mac(const void *key, size_t key_len, const char *label, const uint8_t *a,
                    size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[FARM_FEDENC_MAC]);

/* Fills n bytes with cryptographically random data (OpenSSL RAND_bytes).
 * Returns 0 or -EIO. */
int farm_fedenc_random(uint8_t *out, size_t n);

/* Constant-time comparison of n bytes; 1 when equal. */
int farm_fedenc_mac_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* Lower-case hex of n bytes into out (2n+1 bytes with the NUL). */
void farm_fedenc_hex(const uint8_t *in, size_t n, char *out);

/* Parses exactly 2n hex digits into out[n]. Returns 0 or -EINVAL. */
int farm_fedenc_unhex(const char *hex, uint8_t *out, size_t n);

#endif
