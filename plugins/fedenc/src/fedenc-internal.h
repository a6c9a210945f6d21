/* fedenc internals shared by the master and the child loops: a framed
 * connection over a libuv TCP handle. Not part of the public API. */
#ifndef FARM_FEDENC_INTERNAL_H
#define FARM_FEDENC_INTERNAL_H

#include <uv.h>

#include "farm/fedenc.h"

/* A frame shared by several writes (one PARAMS frame to many children). */
struct farm__fedenc_sbuf {
    int refs;
    uint8_t *data;
    size_t len;
};

/* Wraps an encoded frame (taking ownership of data) with one reference. */
struct farm__fedenc_sbuf *farm__fedenc_sbuf_new(uint8_t *data, size_t len);
void farm__fedenc_sbuf_unref(struct farm__fedenc_sbuf *b);

struct farm__fedenc_conn;

/* Called for each whole, decoded frame (msg is the callee's to release)
 * and once when the connection fails or ends (code: UV_EOF, a libuv error
 * or a farm code for a bad frame; why says what). After on_error the
 * connection is closing: send nothing more. */
struct farm__fedenc_conn_ops {
    void (*on_msg)(struct farm__fedenc_conn *c, struct farm_fedenc_msg *msg, size_t frame_len);
    void (*on_error)(struct farm__fedenc_conn *c, int code, const char *why);
    void (*on_closed)(struct farm__fedenc_conn *c); /* the handle is gone: free c's owner */
};

struct farm__fedenc_conn {
    uv_tcp_t tcp;
    const struct farm__fedenc_conn_ops *ops;
    void *owner;
    uint8_t *buf;
    size_t len, cap;
    size_t max_frame;
    int failed;  /* on_error was called */
    int closing; /* uv_close was called */
    int close_after_write;
    size_t writes_pending;
};

/* Initialises c on `loop` (the TCP handle only; no reading yet). */
int farm__fedenc_conn_init(struct farm__fedenc_conn *c, uv_loop_t *loop,
                           const struct farm__fedenc_conn_ops *ops, void *owner, size_t max_frame);

/* Starts reading frames. */
int farm__fedenc_conn_start(struct farm__fedenc_conn *c);

/* Queues a frame; b gains a reference until the write completes. Returns 0
 * or a libuv error (the connection is then failed). */
int farm__fedenc_conn_send(struct farm__fedenc_conn *c, struct farm__fedenc_sbuf *b);

/* Encodes and queues one frame. */
int farm__fedenc_conn_send_msg(struct farm__fedenc_conn *c, int type, uint32_t round,
                               const json_t *json, const struct farm_fedenc_tensor_spec *specs,
                               size_t ntensors, const float *data, size_t *sent,
                               struct farm_err *err);

/* Closes the handle (idempotent); on_closed runs from the loop later. */
void farm__fedenc_conn_close(struct farm__fedenc_conn *c);

/* Closes once the queued writes have gone out. */
void farm__fedenc_conn_close_after_write(struct farm__fedenc_conn *c);

/* The peer address as "host:port" into buf. */
void farm__fedenc_conn_peer(struct farm__fedenc_conn *c, char *buf, size_t cap);

/* Logs through fn with printf formatting (fn may be NULL). */
void farm__fedenc_logf(farm_fedenc_log_fn fn, void *user, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
