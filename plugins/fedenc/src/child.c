/* The fedenc child: connects to its master, proves it knows the secret,
 * then answers each request in turn. Training runs inside the read
 * callback: a child has nothing else to do meanwhile, and the master's next
 * frames simply wait in the socket. */
#include "fedenc-internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct child {
    const struct farm_fedenc_child_cfg *cfg;
    uv_loop_t loop;
    struct farm__fedenc_conn conn;
    uv_connect_t connect_req;
    int connected, connect_status;
    int authed, done;
    int rc;
    struct farm_err err;
    uint8_t nonce[FARM_FEDENC_NONCE];
    json_t *instruct;
    uint32_t instruct_round;
};

#define CLOG(c, lvl, ...) farm__fedenc_logf((c)->cfg->log, (c)->cfg->log_user, (lvl), __VA_ARGS__)

int farm_fedenc_faults_parse(const char *text, struct farm_fedenc_faults *out,
                             struct farm_err *err)
{
    struct farm_fedenc_faults f = {0};
    if (text == NULL || *text == '\0') {
        *out = f;
        return 0;
    }
    char *copy = strdup(text);
    if (copy == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        char *end = NULL;
        double v = eq ? strtod(eq + 1, &end) : 0;
        if (eq == NULL || end == eq + 1 || *end != '\0' || !isfinite(v) || v < 0) {
            int rc = farm_err_set(err, FARM_EBADPARAM,
                                  "fault: expected NAME=NUMBER, got \"%s\"", item);
            free(copy);
            return rc;
        }
        *eq = '\0';
        if (strcmp(item, "die") == 0)
            f.die_round = (uint32_t)v;
        else if (strcmp(item, "nan") == 0)
            f.nan_round = (uint32_t)v;
        else if (strcmp(item, "shape") == 0)
            f.shape_round = (uint32_t)v;
        else if (strcmp(item, "stale") == 0)
            f.stale_round = (uint32_t)v;
        else if (strcmp(item, "garbage") == 0)
            f.garbage = v;
        else if (strcmp(item, "delay") == 0)
            f.delay_ms = (uint32_t)v;
        else {
            int rc = farm_err_set(err, FARM_EBADPARAM,
                                  "fault: unknown \"%s\" (die, nan, shape, stale, garbage, delay)",
                                  item);
            free(copy);
            return rc;
        }
    }
    free(copy);
    *out = f;
    return 0;
}

static void stop(struct child *c, int rc)
{
    if (!c->done) {
        c->done = 1;
        c->rc = rc;
    }
    farm__fedenc_conn_close_after_write(&c->conn);
}

static void send_msg(struct child *c, int type, uint32_t round, json_t *j,
                     const struct farm_fedenc_tensor_spec *specs, size_t nt, const float *data)
{
    struct farm_err err;
    if (farm__fedenc_conn_send_msg(&c->conn, type, round, j, specs, nt, data, NULL, &err) != 0)
        CLOG(c, 3, "sending %s failed: %s", farm_fedenc_msg_type_name(type), err.msg);
    json_decref(j);
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_hello(struct child *c, struct farm_fedenc_msg *msg)
{
    const struct farm_fedenc_child_cfg *cfg = c->cfg;
    uint8_t mnonce[FARM_FEDENC_NONCE], mac[FARM_FEDENC_MAC];
    if (farm_fedenc_unhex(json_string_value(json_object_get(msg->json, "nonce")), mnonce,
                          sizeof mnonce) != 0) {
        farm_err_set(&c->err, FARM_EBADREQ, "malformed HELLO from the master");
        stop(c, FARM_EBADREQ);
        return;
    }
    uint32_t id = cfg->id;
    uint8_t idle[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16), (uint8_t)(id >> 24)};
    if (farm_fedenc_random(c->nonce, sizeof c->nonce) != 0 ||
        farm_fedenc_mac(cfg->secret, cfg->secret_len, "fedenc-child", mnonce, sizeof mnonce, idle,
                        4, mac) != 0) {
        farm_err_set(&c->err, -EIO, "no random bytes or HMAC");
        stop(c, -EIO);
        return;
    }
    char nh[2 * FARM_FEDENC_NONCE + 1], mh[2 * FARM_FEDENC_MAC + 1];
    farm_fedenc_hex(c->nonce, sizeof c->nonce, nh);
    farm_fedenc_hex(mac, sizeof mac, mh);
    send_msg(c, FARM_FEDENC_AUTH, 0,
             json_pack("{s:I, s:s, s:s}", "child", (json_int_t)id, "nonce", nh, "mac", mh), NULL,
             0, NULL);
}

static void on_welcome(struct child *c, struct farm_fedenc_msg *msg)
{
    uint8_t mac[FARM_FEDENC_MAC], want[FARM_FEDENC_MAC];
    if (farm_fedenc_unhex(json_string_value(json_object_get(msg->json, "mac")), mac,
                          sizeof mac) != 0 ||
        farm_fedenc_mac(c->cfg->secret, c->cfg->secret_len, "fedenc-master", c->nonce,
                        sizeof c->nonce, NULL, 0, want) != 0 ||
        !farm_fedenc_mac_equal(mac, want, sizeof mac)) {
        farm_err_set(&c->err, FARM_EPERM, "the master failed to prove the shared secret");
        stop(c, FARM_EPERM);
        return;
    }
    c->authed = 1;
    /* From now on frames may carry a whole encoder. */
    c->conn.max_frame = (size_t)1 << 34;
    CLOG(c, 1, "joined the master as child %u", c->cfg->id);
}

static void on_instruct(struct child *c, struct farm_fedenc_msg *msg)
{
    json_decref(c->instruct);
    c->instruct = json_incref(msg->json);
    c->instruct_round = msg->round;
    uint64_t samples = 0;
    struct farm_err err;
    farm_err_clear(&err);
    int rc = c->cfg->ops->prepare(c->cfg->self, msg->round, msg->json, &samples, &err);
    if (rc != 0 || samples == 0) {
        const char *why = err.msg[0] ? err.msg : "no samples of this encoder type";
        CLOG(c, 1, "round %u: declining: %s", msg->round, why);
        send_msg(c, FARM_FEDENC_DECLINE, msg->round, json_pack("{s:s}", "reason", why), NULL, 0,
                 NULL);
        return;
    }
    send_msg(c, FARM_FEDENC_CONFIRM, msg->round,
             json_pack("{s:I}", "samples", (json_int_t)samples), NULL, 0, NULL);
}

static void on_params(struct child *c, struct farm_fedenc_msg *msg)
{
    const struct farm_fedenc_faults *f = &c->cfg->faults;
    uint32_t r = msg->round;
    if (c->instruct == NULL || r != c->instruct_round) {
        CLOG(c, 2, "PARAMS for round %u without its instruction ignored", r);
        return;
    }
    if (f->die_round == r) {
        CLOG(c, 2, "fault injection: dying in round %u", r);
        raise(SIGKILL);
        _exit(3);
    }
    float *out = malloc((msg->nfloats + 1) * sizeof *out);
    if (out == NULL) {
        CLOG(c, 3, "out of memory");
        return;
    }
    double loss = 0, t0 = farm_fedenc_now();
    uint64_t samples = 0;
    struct farm_err err;
    int rc = c->cfg->ops->train(c->cfg->self, r, c->instruct, msg->specs, msg->ntensors,
                                msg->data, msg->nfloats, out, &loss, &samples, &err);
    double secs = farm_fedenc_now() - t0;
    if (rc != 0) {
        /* Saying nothing lets the master count us failed at its timeout;
         * closing tells it at once. */
        CLOG(c, 3, "round %u: training failed: %s", r, err.msg);
        free(out);
        farm_err_set(&c->err, rc, "training failed: %s", err.msg);
        stop(c, rc);
        return;
    }
    if (f->garbage != 0) {
        /* Large noise instead of a model: what a broken or hostile child
         * might send. A fixed stream, so runs repeat. */
        uint64_t x = 0x243F6A8885A308D3ULL ^ ((uint64_t)c->cfg->id << 32) ^ r;
        for (size_t i = 0; i < msg->nfloats; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            double u = (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;
            out[i] = (float)(u * f->garbage);
        }
    }
    if (f->delay_ms)
        sleep_ms(f->delay_ms);
    if (f->stale_round == r) {
        /* An update stamped with the previous round, full of garbage. */
        float *junk = malloc(msg->nfloats * sizeof *junk);
        if (junk != NULL) {
            for (size_t i = 0; i < msg->nfloats; i++)
                junk[i] = 1e6f;
            send_msg(c, FARM_FEDENC_UPDATE, r - 1,
                     json_pack("{s:I, s:f, s:f}", "samples", (json_int_t)samples, "loss", loss,
                               "seconds", secs),
                     msg->specs, msg->ntensors, junk);
            free(junk);
        }
    }
    if (f->nan_round == r)
        out[msg->nfloats / 2] = NAN;
    struct farm_fedenc_tensor_spec *specs = msg->specs;
    struct farm_fedenc_tensor_spec bad[FARM_FEDENC_TENSORS_MAX];
    if (f->shape_round == r && msg->ntensors > 0) {
        /* The first tensor loses its last row; the last float is dropped. */
        memcpy(bad, msg->specs, msg->ntensors * sizeof *bad);
        size_t lastdim = farm_fedenc_tensor_numel(&bad[0]) / (size_t)bad[0].shape[0];
        if (bad[0].shape[0] > 1) {
            bad[0].shape[0] -= 1;
            memmove(out + farm_fedenc_tensor_numel(&bad[0]),
                    out + farm_fedenc_tensor_numel(&bad[0]) + lastdim,
                    (msg->nfloats - farm_fedenc_tensor_numel(&bad[0]) - lastdim) * sizeof *out);
        } else {
            bad[0].shape[0] += 1;
        }
        specs = bad;
    }
    send_msg(c, FARM_FEDENC_UPDATE, r,
             json_pack("{s:I, s:f, s:f}", "samples", (json_int_t)samples, "loss", loss, "seconds",
                       secs),
             specs, msg->ntensors, out);
    free(out);
}

static void on_eval(struct child *c, struct farm_fedenc_msg *msg)
{
    if (c->instruct == NULL || msg->round != c->instruct_round) {
        CLOG(c, 2, "EVAL for round %u without its instruction ignored", msg->round);
        return;
    }
    double loss_sum = 0;
    uint64_t correct = 0, n = 0;
    struct farm_err err;
    int rc = c->cfg->ops->evaluate(c->cfg->self, c->instruct, msg->specs, msg->ntensors, msg->data,
                                   msg->nfloats, &loss_sum, &correct, &n, &err);
    if (rc != 0) {
        CLOG(c, 2, "round %u: evaluation failed: %s", msg->round, err.msg);
        loss_sum = 0;
        correct = n = 0;
    }
    send_msg(c, FARM_FEDENC_EVAL_RESULT, msg->round,
             json_pack("{s:f, s:I, s:I}", "loss_sum", loss_sum, "correct", (json_int_t)correct,
                       "n", (json_int_t)n),
             NULL, 0, NULL);
}

static void child_on_msg(struct farm__fedenc_conn *conn, struct farm_fedenc_msg *msg, size_t flen)
{
    struct child *c = conn->owner;
    (void)flen;
    if (c->done) {
        farm_fedenc_msg_release(msg);
        return;
    }
    if (!c->authed) {
        switch (msg->type) {
        case FARM_FEDENC_HELLO:
            on_hello(c, msg);
            break;
        case FARM_FEDENC_WELCOME:
            on_welcome(c, msg);
            break;
        case FARM_FEDENC_REFUSE: {
            const char *why = json_string_value(json_object_get(msg->json, "reason"));
            farm_err_set(&c->err, FARM_EPERM, "the master refused us: %s", why ? why : "?");
            stop(c, FARM_EPERM);
            break;
        }
        default:
            farm_err_set(&c->err, FARM_EBADREQ, "unexpected %s before the handshake",
                         farm_fedenc_msg_type_name(msg->type));
            stop(c, FARM_EBADREQ);
        }
        farm_fedenc_msg_release(msg);
        return;
    }
    switch (msg->type) {
    case FARM_FEDENC_INSTRUCT:
        on_instruct(c, msg);
        break;
    case FARM_FEDENC_PARAMS:
        on_params(c, msg);
        break;
    case FARM_FEDENC_EVAL:
        on_eval(c, msg);
        break;
    case FARM_FEDENC_BYE:
        CLOG(c, 1, "the master says the federation is over");
        stop(c, 0);
        break;
    default:
        CLOG(c, 2, "unexpected %s ignored", farm_fedenc_msg_type_name(msg->type));
    }
    farm_fedenc_msg_release(msg);
}

static void child_on_error(struct farm__fedenc_conn *conn, int code, const char *why)
{
    struct child *c = conn->owner;
    if (!c->done) {
        farm_err_set(&c->err, code == UV_EOF ? -ECONNRESET : code, "connection to the master: %s",
                     why);
        c->done = 1;
        c->rc = code == UV_EOF ? -ECONNRESET : code;
    }
}

static void child_on_closed(struct farm__fedenc_conn *conn)
{
    (void)conn;
}

static const struct farm__fedenc_conn_ops child_ops = {
    .on_msg = child_on_msg,
    .on_error = child_on_error,
    .on_closed = child_on_closed,
};

static void on_connect(uv_connect_t *req, int status)
{
    struct child *c = req->data;
    c->connected = 1;
    c->connect_status = status;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int farm_fedenc_child_run(const struct farm_fedenc_child_cfg *cfg, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(cfg->ops == NULL || cfg->host == NULL, err, FARM_EBADPARAM,
                         "child: no master address or no trainer");
    signal(SIGPIPE, SIG_IGN);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct child *c = calloc(1, sizeof *c);
    if (c == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    c->cfg = cfg;
    uv_loop_init(&c->loop);
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(&c->loop, &gai, NULL, cfg->host, port, &hints);
    if (rc != 0) {
        uv_loop_close(&c->loop);
        free(c);
        return farm_err_set(err, rc, "child: cannot resolve %s: %s", cfg->host, uv_strerror(rc));
    }
    double deadline = farm_fedenc_now() + (cfg->connect_timeout > 0 ? cfg->connect_timeout : 10);
    for (;;) {
        farm__fedenc_conn_init(&c->conn, &c->loop, &child_ops, c,
                               FARM_FEDENC_HDR + FARM_FEDENC_JSON_MAX);
        c->connected = 0;
        c->connect_req.data = c;
        rc = uv_tcp_connect(&c->connect_req, &c->conn.tcp, gai.addrinfo->ai_addr, on_connect);
        if (rc == 0) {
            while (!c->connected)
                uv_run(&c->loop, UV_RUN_ONCE);
            rc = c->connect_status;
        }
        if (rc == 0)
            break;
        farm__fedenc_conn_close(&c->conn);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        if (farm_fedenc_now() > deadline) {
            uv_freeaddrinfo(gai.addrinfo);
            uv_loop_close(&c->loop);
            free(c);
            return farm_err_set(err, rc, "child: cannot connect to %s:%d: %s", cfg->host,
                                cfg->port, uv_strerror(rc));
        }
        sleep_ms(100);
    }
    uv_freeaddrinfo(gai.addrinfo);
    farm_err_clear(&c->err);
    farm__fedenc_conn_start(&c->conn);
    while (!c->done && uv_run(&c->loop, UV_RUN_ONCE))
        ;
    if (!c->done) {
        c->rc = -ECONNRESET;
        farm_err_set(&c->err, -ECONNRESET, "connection to the master ended");
    }
    farm__fedenc_conn_close_after_write(&c->conn);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_walk(&c->loop, close_walk, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    json_decref(c->instruct);
    rc = c->rc;
    if (rc != 0 && err != NULL)
        *err = c->err;
    free(c);
    return rc;
}
