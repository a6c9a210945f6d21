#include "fedenc-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double farm_fedenc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void farm__fedenc_logf(farm_fedenc_log_fn fn, void *user, int level, const char *fmt, ...)
{
    if (fn == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(user, level, msg);
}

struct farm__fedenc_sbuf *farm__fedenc_sbuf_new(uint8_t *data, size_t len)
{
    struct farm__fedenc_sbuf *b = malloc(sizeof *b);
    if (b == NULL) {
        free(data);
        return NULL;
    }
    b->refs = 1;
    b->data = data;
    b->len = len;
    return b;
}

void farm__fedenc_sbuf_unref(struct farm__fedenc_sbuf *b)
{
    if (b != NULL && --b->refs == 0) {
        free(b->data);
        free(b);
    }
}

static void on_close(uv_handle_t *h)
{
    struct farm__fedenc_conn *c = h->data;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    if (c->ops->on_closed)
        c->ops->on_closed(c);
}

void farm__fedenc_conn_close(struct farm__fedenc_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void farm__fedenc_conn_close_after_write(struct farm__fedenc_conn *c)
{
    if (c->writes_pending == 0)
        farm__fedenc_conn_close(c);
    else
        c->close_after_write = 1;
}

static void fail(struct farm__fedenc_conn *c, int code, const char *why)
{
    if (c->failed)
        return;
    c->failed = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->ops->on_error)
        c->ops->on_error(c, code, why);
    farm__fedenc_conn_close(c);
}

int farm__fedenc_conn_init(struct farm__fedenc_conn *c, uv_loop_t *loop,
                           const struct farm__fedenc_conn_ops *ops, void *owner, size_t max_frame)
{
    memset(c, 0, sizeof *c);
    c->ops = ops;
    c->owner = owner;
    c->max_frame = max_frame;
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc == 0) {
        c->tcp.data = c;
        uv_tcp_nodelay(&c->tcp, 1);
    }
    return rc;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct farm__fedenc_conn *c = h->data;
    (void)suggested;
    /* Read straight into the frame buffer, at least 64 KiB at a time; once a
     * frame's header is in, make room for the whole frame at once rather
     * than growing (and copying) step by step. */
    size_t want = c->len + 65536;
    size_t flen = 0;
    if (c->len >= FARM_FEDENC_HDR &&
        farm_fedenc_peek(c->buf, c->len, c->max_frame, &flen, NULL) == 0 && flen > want)
        want = flen;
    if (want > c->cap) {
        size_t cap = c->cap ? c->cap : 65536;
        while (cap < want)
            cap *= 2;
        uint8_t *nb = realloc(c->buf, cap);
        if (nb == NULL) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    buf->base = (char *)c->buf + c->len;
    buf->len = c->cap - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct farm__fedenc_conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        fail(c, (int)nread, nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (buf->base == NULL) {
        fail(c, -ENOMEM, "out of memory");
        return;
    }
    c->len += (size_t)nread;
    size_t off = 0;
    while (!c->failed && !c->closing) {
        size_t flen = 0;
        struct farm_err err;
        int rc = farm_fedenc_peek(c->buf + off, c->len - off, c->max_frame, &flen, &err);
        if (rc == -EAGAIN)
            break;
        if (rc != 0) {
            fail(c, rc, err.msg);
            return;
        }
        if (c->len - off < flen)
            break;
        struct farm_fedenc_msg msg = {0};
        rc = farm_fedenc_decode(c->buf + off, flen, &msg, &err);
        if (rc != 0) {
            fail(c, rc, err.msg);
            return;
        }
        off += flen;
        c->ops->on_msg(c, &msg, flen);
    }
    if (off > 0 && c->buf != NULL) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

int farm__fedenc_conn_start(struct farm__fedenc_conn *c)
{
    return uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

struct write_req {
    uv_write_t req;
    struct farm__fedenc_sbuf *b;
    struct farm__fedenc_conn *c;
};

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct farm__fedenc_conn *c = w->c;
    farm__fedenc_sbuf_unref(w->b);
    free(w);
    c->writes_pending--;
    if (status < 0 && status != UV_ECANCELED)
        fail(c, status, uv_strerror(status));
    else if (c->close_after_write && c->writes_pending == 0)
        farm__fedenc_conn_close(c);
}

int farm__fedenc_conn_send(struct farm__fedenc_conn *c, struct farm__fedenc_sbuf *b)
{
    if (c->failed || c->closing)
        return UV_EPIPE;
    struct write_req *w = malloc(sizeof *w);
    if (w == NULL)
        return UV_ENOMEM;
    w->b = b;
    w->c = c;
    b->refs++;
    uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned int)b->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rc != 0) {
        b->refs--;
        free(w);
        fail(c, rc, uv_strerror(rc));
        return rc;
    }
    c->writes_pending++;
    return 0;
}

int farm__fedenc_conn_send_msg(struct farm__fedenc_conn *c, int type, uint32_t round,
                               const json_t *json, const struct farm_fedenc_tensor_spec *specs,
                               size_t ntensors, const float *data, size_t *sent,
                               struct farm_err *err)
{
    uint8_t *frame;
    size_t len;
    int rc = farm_fedenc_encode(type, round, json, specs, ntensors, data, &frame, &len, err);
    if (rc != 0)
        return rc;
    struct farm__fedenc_sbuf *b = farm__fedenc_sbuf_new(frame, len);
    if (b == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    rc = farm__fedenc_conn_send(c, b);
    farm__fedenc_sbuf_unref(b);
    if (rc != 0)
        return farm_err_set(err, rc, "send %s: %s", farm_fedenc_msg_type_name(type),
                            uv_strerror(rc));
    if (sent)
        *sent = len;
    return 0;
}

void farm__fedenc_conn_peer(struct farm__fedenc_conn *c, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(buf, cap, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    char host[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(buf, cap, "%s:%d", host, port);
}
