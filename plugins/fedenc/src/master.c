/* The fedenc master: one libuv loop, driven phase by phase. Each phase sends
 * its requests, then runs the loop until every expected reply is in, a child
 * is gone, or the phase's deadline passes; the handlers only record what
 * arrived, so the order of arrival never changes what the master decides. */
#include "fedenc-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define MAX_CHILDREN 1024

enum phase { PH_JOIN, PH_INSTRUCT, PH_TRAIN, PH_EVAL, PH_DONE };

struct master;

struct mconn {
    struct farm__fedenc_conn conn;
    struct master *m;
    struct slot *slot; /* set once authenticated */
    uint8_t nonce[FARM_FEDENC_NONCE];
    char peer[80];
    double accepted_at;
    struct mconn *next;
};

/* A peer gets this long to complete the handshake. */
#define HANDSHAKE_SECONDS 10.0

struct slot {
    uint32_t id;
    struct mconn *mc; /* NULL when not connected */
    int local;        /* index into the local children, or -1 */
    /* the local process */
    uv_process_t proc;
    uv_pipe_t err_pipe;
    int proc_running, pipe_open;
    int proc_live, pipe_live; /* the handles exist (not yet closed) */
    char line[1024];
    size_t line_len;
    /* this round */
    int in_round, replied, confirmed, got_params, updated, lost;
    int eval_sent, eval_done;
    float *update;
    struct farm_fedenc_child_stats st;
};

struct master {
    const struct farm_fedenc_master_cfg *cfg;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t deadline, tick;
    int timed_out;
    int port;
    enum phase phase;
    uint32_t round;
    size_t nparams;
    size_t max_frame;
    struct slot *slots[MAX_CHILDREN];
    size_t nslots;
    struct mconn *conns;
    size_t stale;
    char hostport[96];
};

#define LOG(m, lvl, ...) farm__fedenc_logf((m)->cfg->log, (m)->cfg->user, (lvl), __VA_ARGS__)

const char *farm_fedenc_status_name(int status)
{
    switch (status) {
    case FARM_FEDENC_ABSENT:
        return "absent";
    case FARM_FEDENC_DECLINED:
        return "declined";
    case FARM_FEDENC_ACCEPTED:
        return "accepted";
    case FARM_FEDENC_REJECTED:
        return "rejected";
    case FARM_FEDENC_FAILED:
        return "failed";
    case FARM_FEDENC_IDLE:
        return "idle";
    default:
        return "?";
    }
}

static struct slot *slot_find(struct master *m, uint32_t id)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i]->id == id)
            return m->slots[i];
    return NULL;
}

/* Slots are kept sorted by id, so every walk over them is in id order. */
static struct slot *slot_add(struct master *m, uint32_t id)
{
    if (m->nslots == MAX_CHILDREN)
        return NULL;
    struct slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->id = id;
    s->local = -1;
    s->st.id = id;
    size_t pos = m->nslots;
    while (pos > 0 && m->slots[pos - 1]->id > id) {
        m->slots[pos] = m->slots[pos - 1];
        pos--;
    }
    m->slots[pos] = s;
    m->nslots++;
    return s;
}

static size_t joined(struct master *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nslots; i++)
        n += m->slots[i]->mc != NULL;
    return n;
}

/* ------------------------------------------------------------ connections */

static void mconn_on_closed(struct farm__fedenc_conn *c)
{
    struct mconn *mc = c->owner;
    struct master *m = mc->m;
    for (struct mconn **p = &m->conns; *p; p = &(*p)->next) {
        if (*p == mc) {
            *p = mc->next;
            break;
        }
    }
    free(mc);
}

static void mconn_on_error(struct farm__fedenc_conn *c, int code, const char *why)
{
    struct mconn *mc = c->owner;
    struct master *m = mc->m;
    struct slot *s = mc->slot;
    if (s == NULL) {
        if (code != UV_EOF)
            LOG(m, 2, "connection from %s dropped before the handshake: %s", mc->peer, why);
        return;
    }
    s->mc = NULL;
    mc->slot = NULL;
    if (s->in_round && m->phase != PH_DONE) {
        s->lost = 1;
        LOG(m, 2, "child %u: connection lost in round %u: %s", s->id, m->round, why);
    } else if (m->phase != PH_DONE) {
        LOG(m, 1, "child %u: disconnected: %s", s->id, why);
    }
}

static void send_json(struct mconn *mc, struct slot *s, int type, uint32_t round, json_t *j)
{
    size_t sent = 0;
    struct farm_err err;
    if (farm__fedenc_conn_send_msg(&mc->conn, type, round, j, NULL, 0, NULL, &sent, &err) == 0 &&
        s != NULL)
        s->st.bytes_down += sent;
    json_decref(j);
}

static void refuse(struct mconn *mc, const char *reason)
{
    struct master *m = mc->m;
    LOG(m, 2, "refused connection from %s: %s", mc->peer, reason);
    send_json(mc, NULL, FARM_FEDENC_REFUSE, 0, json_pack("{s:s}", "reason", reason));
    mc->conn.failed = 1;
    uv_read_stop((uv_stream_t *)&mc->conn.tcp);
    farm__fedenc_conn_close_after_write(&mc->conn);
}

static void handle_auth(struct mconn *mc, struct farm_fedenc_msg *msg)
{
    struct master *m = mc->m;
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    if (msg->type != FARM_FEDENC_AUTH) {
        refuse(mc, "expected AUTH first");
        return;
    }
    json_t *jid = json_object_get(msg->json, "child");
    const char *nonce_hex = json_string_value(json_object_get(msg->json, "nonce"));
    const char *mac_hex = json_string_value(json_object_get(msg->json, "mac"));
    uint8_t cnonce[FARM_FEDENC_NONCE], mac[FARM_FEDENC_MAC], want[FARM_FEDENC_MAC];
    if (!json_is_integer(jid) || json_integer_value(jid) < 0 ||
        json_integer_value(jid) > 0x7fffffff ||
        farm_fedenc_unhex(nonce_hex, cnonce, sizeof cnonce) != 0 ||
        farm_fedenc_unhex(mac_hex, mac, sizeof mac) != 0) {
        refuse(mc, "malformed AUTH");
        return;
    }
    uint32_t id = (uint32_t)json_integer_value(jid);
    uint8_t idle[4] = {(uint8_t)id, (uint8_t)(id >> 8), (uint8_t)(id >> 16), (uint8_t)(id >> 24)};
    if (farm_fedenc_mac(cfg->secret, cfg->secret_len, "fedenc-child", mc->nonce, sizeof mc->nonce,
                        idle, 4, want) != 0 ||
        !farm_fedenc_mac_equal(mac, want, sizeof mac)) {
        refuse(mc, "handshake failed: wrong shared secret");
        return;
    }
    struct slot *s = slot_find(m, id);
    if (s != NULL && s->mc != NULL) {
        refuse(mc, "a child with this id is already connected");
        return;
    }
    if (s == NULL && (s = slot_add(m, id)) == NULL) {
        refuse(mc, "too many children");
        return;
    }
    uint8_t reply[FARM_FEDENC_MAC];
    char hex[2 * FARM_FEDENC_MAC + 1];
    farm_fedenc_mac(cfg->secret, cfg->secret_len, "fedenc-master", cnonce, sizeof cnonce, NULL, 0,
                    reply);
    farm_fedenc_hex(reply, sizeof reply, hex);
    mc->slot = s;
    s->mc = mc;
    mc->conn.max_frame = m->max_frame;
    send_json(mc, NULL, FARM_FEDENC_WELCOME, 0, json_pack("{s:s}", "mac", hex));
    LOG(m, 1, "child %u joined from %s", id, mc->peer);
}

static int json_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Copies a message into a fixed field, cutting it when it does not fit. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void reject(struct master *m, struct slot *s, const char *why)
{
    s->st.status = FARM_FEDENC_REJECTED;
    copy_text(s->st.reason, sizeof s->st.reason, why);
    LOG(m, 2, "child %u: update of round %u rejected: %s", s->id, m->round, s->st.reason);
}

static void handle_update(struct master *m, struct slot *s, struct farm_fedenc_msg *msg)
{
    struct farm_err err;
    s->updated = 1;
    uint64_t samples = 0;
    json_t *loss = json_object_get(msg->json, "loss");
    json_t *secs = json_object_get(msg->json, "seconds");
    if (json_u64(msg->json, "samples", &samples) != 0 || samples == 0) {
        reject(m, s, "missing or zero \"samples\"");
        return;
    }
    if (samples != s->st.samples) {
        char d[128];
        snprintf(d, sizeof d, "sample count changed: %llu samples, %llu confirmed",
                 (unsigned long long)samples, (unsigned long long)s->st.samples);
        reject(m, s, d);
        return;
    }
    if (farm_fedenc_schema_check(m->cfg->specs, m->cfg->ntensors, msg->specs, msg->ntensors,
                                 &err) != 0) {
        reject(m, s, err.msg);
        return;
    }
    if (farm_fedenc_check_finite(msg->data, msg->nfloats, &err) != 0) {
        reject(m, s, err.msg);
        return;
    }
    s->update = msg->data;
    msg->data = NULL;
    s->st.status = FARM_FEDENC_ACCEPTED;
    s->st.train_loss = json_is_number(loss) ? json_number_value(loss) : 0;
    s->st.train_seconds = json_is_number(secs) ? json_number_value(secs) : 0;
}

static void handle_msg(struct farm__fedenc_conn *c, struct farm_fedenc_msg *msg, size_t flen)
{
    struct mconn *mc = c->owner;
    struct master *m = mc->m;
    struct slot *s = mc->slot;
    if (s == NULL) {
        handle_auth(mc, msg);
        farm_fedenc_msg_release(msg);
        return;
    }
    s->st.bytes_up += flen;
    const char *tname = farm_fedenc_msg_type_name(msg->type);
    if (!s->in_round || msg->round != m->round) {
        m->stale++;
        LOG(m, 2, "child %u: stale %s for round %u ignored (current round %u)", s->id, tname,
            msg->round, m->round);
        farm_fedenc_msg_release(msg);
        return;
    }
    switch (msg->type) {
    case FARM_FEDENC_CONFIRM:
    case FARM_FEDENC_DECLINE:
        if (m->phase != PH_INSTRUCT || s->replied)
            goto unexpected;
        s->replied = 1;
        if (msg->type == FARM_FEDENC_CONFIRM && json_u64(msg->json, "samples", &s->st.samples) == 0 &&
            s->st.samples > 0) {
            s->confirmed = 1;
        } else {
            const char *why = json_string_value(json_object_get(msg->json, "reason"));
            s->st.status = FARM_FEDENC_DECLINED;
            copy_text(s->st.reason, sizeof s->st.reason,
                      why ? why : "no samples of this encoder type");
            LOG(m, 1, "child %u declined round %u: %s", s->id, m->round, s->st.reason);
        }
        break;
    case FARM_FEDENC_UPDATE:
        if (m->phase != PH_TRAIN || !s->got_params || s->updated)
            goto unexpected;
        handle_update(m, s, msg);
        break;
    case FARM_FEDENC_EVAL_RESULT:
        if (m->phase != PH_EVAL || !s->eval_sent || s->eval_done)
            goto unexpected;
        s->eval_done = 1;
        json_t *ls = json_object_get(msg->json, "loss_sum");
        if (json_u64(msg->json, "n", &s->st.eval_n) != 0 ||
            json_u64(msg->json, "correct", &s->st.eval_correct) != 0 || !json_is_number(ls) ||
            s->st.eval_correct > s->st.eval_n) {
            s->st.eval_n = s->st.eval_correct = 0;
            LOG(m, 2, "child %u: malformed EVAL_RESULT ignored", s->id);
        } else {
            s->st.eval_loss_sum = json_number_value(ls);
        }
        break;
    default:
        goto unexpected;
    }
    farm_fedenc_msg_release(msg);
    return;
unexpected:
    LOG(m, 2, "child %u: unexpected %s in round %u ignored", s->id, tname, m->round);
    farm_fedenc_msg_release(msg);
}

static const struct farm__fedenc_conn_ops mconn_ops = {
    .on_msg = handle_msg,
    .on_error = mconn_on_error,
    .on_closed = mconn_on_closed,
};

static void on_connection(uv_stream_t *server, int status)
{
    struct master *m = server->data;
    if (status < 0)
        return;
    struct mconn *mc = calloc(1, sizeof *mc);
    if (mc == NULL)
        return;
    mc->m = m;
    mc->accepted_at = farm_fedenc_now();
    /* Before the handshake only small frames are read. */
    if (farm__fedenc_conn_init(&mc->conn, &m->loop, &mconn_ops, mc,
                               FARM_FEDENC_HDR + FARM_FEDENC_JSON_MAX) != 0) {
        free(mc);
        return;
    }
    mc->next = m->conns;
    m->conns = mc;
    if (uv_accept(server, (uv_stream_t *)&mc->conn.tcp) != 0) {
        farm__fedenc_conn_close(&mc->conn);
        return;
    }
    farm__fedenc_conn_peer(&mc->conn, mc->peer, sizeof mc->peer);
    char hex[2 * FARM_FEDENC_NONCE + 1];
    if (farm_fedenc_random(mc->nonce, sizeof mc->nonce) != 0) {
        farm__fedenc_conn_close(&mc->conn);
        return;
    }
    farm_fedenc_hex(mc->nonce, sizeof mc->nonce, hex);
    send_json(mc, NULL, FARM_FEDENC_HELLO, 0, json_pack("{s:s}", "nonce", hex));
    farm__fedenc_conn_start(&mc->conn);
}

/* --------------------------------------------------------- local children */

static void on_pipe_closed(uv_handle_t *h)
{
    struct slot *s = h->data;
    s->pipe_live = 0;
}

static void on_proc_closed(uv_handle_t *h)
{
    struct slot *s = h->data;
    s->proc_live = 0;
}

static void on_err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct slot *s = h->data;
    (void)suggested;
    buf->base = s->line + s->line_len;
    buf->len = sizeof s->line - 1 - s->line_len;
}

static void flush_lines(struct master *m, struct slot *s, int all)
{
    size_t start = 0;
    for (size_t i = 0; i < s->line_len; i++) {
        if (s->line[i] == '\n') {
            s->line[i] = '\0';
            LOG(m, 1, "child %u: %s", s->id, s->line + start);
            start = i + 1;
        }
    }
    if (all || (start == 0 && s->line_len >= sizeof s->line - 1)) {
        if (start < s->line_len) {
            s->line[s->line_len] = '\0';
            LOG(m, 1, "child %u: %s", s->id, s->line + start);
        }
        start = s->line_len;
    }
    memmove(s->line, s->line + start, s->line_len - start);
    s->line_len -= start;
}

static void on_err_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct slot *s = st->data;
    struct master *m = (struct master *)st->loop->data;
    (void)buf;
    if (nread < 0) {
        flush_lines(m, s, 1);
        if (s->pipe_open) {
            s->pipe_open = 0;
            uv_close((uv_handle_t *)&s->err_pipe, on_pipe_closed);
        }
        return;
    }
    s->line_len += (size_t)nread;
    flush_lines(m, s, 0);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct slot *s = p->data;
    struct master *m = (struct master *)p->loop->data;
    s->proc_running = 0;
    if (m->phase != PH_DONE && (status != 0 || sig != 0))
        LOG(m, 2, "child %u: process exited with status %lld%s%s", s->id, (long long)status,
            sig ? ", signal " : "", sig ? strsignal(sig) : "");
    uv_close((uv_handle_t *)p, on_proc_closed);
}

static int spawn_child(struct master *m, struct slot *s, struct farm_err *err)
{
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    char idbuf[16];
    snprintf(idbuf, sizeof idbuf, "%u", s->id);
    char *const *extra = cfg->child_args ? cfg->child_args[s->local] : NULL;
    size_t nextra = 0;
    while (extra && extra[nextra])
        nextra++;
    char **argv = calloc(6 + nextra, sizeof *argv);
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + 3, sizeof *env);
    char *secret_env = malloc(strlen("FARM_FEDENC_SECRET=") + cfg->secret_len + 1);
    if (argv == NULL || env == NULL || secret_env == NULL) {
        free(argv);
        free(env);
        free(secret_env);
        return farm_err_set(err, -ENOMEM, "spawn: out of memory");
    }
    argv[0] = (char *)cfg->child_exe;
    argv[1] = "--connect";
    argv[2] = m->hostport;
    argv[3] = "--id";
    argv[4] = idbuf;
    for (size_t i = 0; i < nextra; i++)
        argv[5 + i] = extra[i];
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        if (strncmp(environ[i], "FARM_FEDENC_SECRET=", 19) != 0 &&
            strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) != 0)
            env[k++] = environ[i];
    }
    strcpy(secret_env, "FARM_FEDENC_SECRET=");
    memcpy(secret_env + 19, cfg->secret, cfg->secret_len);
    secret_env[19 + cfg->secret_len] = '\0';
    env[k++] = secret_env;
    env[k++] = "OPENBLAS_NUM_THREADS=1";

    uv_pipe_init(&m->loop, &s->err_pipe, 0);
    s->err_pipe.data = s;
    s->line_len = 0;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&s->err_pipe},
    };
    uv_process_options_t opt = {
        .file = cfg->child_exe,
        .args = argv,
        .env = env,
        .exit_cb = on_exit_cb,
        .stdio_count = 3,
        .stdio = stdio,
    };
    s->proc.data = s;
    s->pipe_live = 1;
    s->proc_live = 1;
    int rc = uv_spawn(&m->loop, &s->proc, &opt);
    free(argv);
    free(env);
    free(secret_env);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->err_pipe, on_pipe_closed);
        uv_close((uv_handle_t *)&s->proc, on_proc_closed);
        return farm_err_set(err, rc, "spawn %s: %s", cfg->child_exe, uv_strerror(rc));
    }
    s->proc_running = 1;
    s->pipe_open = 1;
    uv_read_start((uv_stream_t *)&s->err_pipe, on_err_alloc, on_err_read);
    return 0;
}

/* ------------------------------------------------------------ the phases */

static void on_deadline(uv_timer_t *t)
{
    struct master *m = t->data;
    m->timed_out = 1;
}

static void on_tick(uv_timer_t *t)
{
    struct master *m = t->data;
    double now = farm_fedenc_now();
    for (struct mconn *mc = m->conns; mc; mc = mc->next) {
        if (mc->slot == NULL && !mc->conn.closing && now - mc->accepted_at > HANDSHAKE_SECONDS) {
            LOG(m, 2, "connection from %s closed: no handshake within %.0f s", mc->peer,
                HANDSHAKE_SECONDS);
            mc->conn.failed = 1;
            farm__fedenc_conn_close(&mc->conn);
        }
    }
}

typedef int (*done_fn)(struct master *m);

/* Runs the loop until done(m), the deadline, or cancellation. Returns 0 when
 * done, FARM_ETIMEOUT, or FARM_ECANCELLED. */
static int wait_for(struct master *m, done_fn done, double seconds)
{
    m->timed_out = 0;
    uv_timer_start(&m->deadline, on_deadline, (uint64_t)(seconds * 1000 + 0.5), 0);
    int rc = 0;
    while (!done(m)) {
        if (m->timed_out) {
            rc = FARM_ETIMEOUT;
            break;
        }
        if (m->cfg->cancelled && m->cfg->cancelled(m->cfg->user)) {
            rc = FARM_ECANCELLED;
            break;
        }
        uv_run(&m->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&m->deadline);
    return rc;
}

static int all_joined(struct master *m)
{
    if (joined(m) >= m->cfg->expect_children)
        return 1;
    /* Without remote children to wait for, stop waiting once every local
     * child has either joined or exited (a child that cannot load its data
     * says why on stderr and exits). */
    if (m->cfg->expect_children > m->cfg->n_local)
        return 0;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->local >= 0 && s->mc == NULL && s->proc_running)
            return 0;
    }
    return 1;
}

static int locals_joined(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->local >= 0 && s->proc_running && s->mc == NULL)
            return 0;
    }
    return 1;
}

static int instruct_done(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->in_round && !s->replied && s->mc != NULL)
            return 0;
    }
    return 1;
}

static int train_done(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->got_params && !s->updated && s->mc != NULL)
            return 0;
    }
    return 1;
}

static int eval_done(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->eval_sent && !s->eval_done && s->mc != NULL)
            return 0;
    }
    return 1;
}

static int lost_locals_exited(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->local >= 0 && s->mc == NULL && s->proc_running)
            return 0;
    }
    return 1;
}

static int all_exited(struct master *m)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i]->proc_running)
            return 0;
    return 1;
}

/* Sends one tensor frame to every slot that passes `pick`, encoding once. */
static int broadcast_params(struct master *m, int type, int (*pick)(struct slot *),
                            void (*mark)(struct slot *), struct farm_err *err)
{
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    uint8_t *frame;
    size_t len;
    int rc = farm_fedenc_encode(type, m->round, NULL, cfg->specs, cfg->ntensors, cfg->params,
                                &frame, &len, err);
    if (rc != 0)
        return rc;
    struct farm__fedenc_sbuf *b = farm__fedenc_sbuf_new(frame, len);
    if (b == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->mc == NULL || !pick(s))
            continue;
        if (farm__fedenc_conn_send(&s->mc->conn, b) == 0) {
            s->st.bytes_down += len;
            mark(s);
        }
    }
    farm__fedenc_sbuf_unref(b);
    return 0;
}

static int pick_confirmed(struct slot *s)
{
    return s->confirmed;
}

static void mark_params(struct slot *s)
{
    s->got_params = 1;
}

static void mark_eval(struct slot *s)
{
    s->eval_sent = 1;
}

static void round_reset(struct master *m)
{
    m->stale = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        free(s->update);
        s->update = NULL;
        s->in_round = s->replied = s->confirmed = s->got_params = s->updated = s->lost = 0;
        s->eval_sent = s->eval_done = 0;
        memset(&s->st, 0, sizeof s->st);
        s->st.id = s->id;
        s->st.status = FARM_FEDENC_ABSENT;
    }
}

static void finish_statuses(struct master *m, struct farm_fedenc_round_stats *st)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        s->st.got_params = s->got_params;
        if (!s->in_round)
            continue;
        if (s->st.status == FARM_FEDENC_ABSENT) {
            if (s->confirmed && s->got_params && !s->updated) {
                s->st.status = FARM_FEDENC_FAILED;
                snprintf(s->st.reason, sizeof s->st.reason, "%s",
                         s->lost ? "connection lost during training"
                                 : "no update before the round timeout");
            } else if (s->confirmed && !s->got_params) {
                s->st.status = FARM_FEDENC_IDLE;
            } else if (!s->replied) {
                s->st.status = FARM_FEDENC_FAILED;
                snprintf(s->st.reason, sizeof s->st.reason, "%s",
                         s->lost ? "connection lost before confirming"
                                 : "no answer to the instruction before the round timeout");
            }
        }
        if (s->st.status == FARM_FEDENC_FAILED && !s->lost)
            LOG(m, 2, "child %u: round %u: %s", s->id, m->round, s->st.reason);
    }
    for (size_t i = 0; i < m->nslots; i++) {
        const struct farm_fedenc_child_stats *c = &m->slots[i]->st;
        st->confirmed += m->slots[i]->confirmed;
        st->declined += c->status == FARM_FEDENC_DECLINED;
        st->accepted += c->status == FARM_FEDENC_ACCEPTED;
        st->rejected += c->status == FARM_FEDENC_REJECTED;
        st->failed += c->status == FARM_FEDENC_FAILED;
    }
}

static int run_round(struct master *m, struct farm_fedenc_round_stats *st, int do_eval,
                     struct farm_fedenc_agg *agg, struct farm_err *err)
{
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    round_reset(m);
    memset(st, 0, sizeof *st);
    st->round = m->round;
    double t0 = farm_fedenc_now();

    /* 1. the instruction, to every joined child */
    m->phase = PH_INSTRUCT;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->mc == NULL)
            continue;
        s->in_round = 1;
        json_t *j = json_deep_copy(cfg->instruct);
        if (j == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        send_json(s->mc, s, FARM_FEDENC_INSTRUCT, m->round, j);
    }
    int rc = wait_for(m, instruct_done, cfg->round_timeout);
    if (rc == FARM_ECANCELLED)
        return farm_err_set(err, rc, "cancelled");
    size_t confirmed = 0;
    for (size_t i = 0; i < m->nslots; i++)
        confirmed += m->slots[i]->confirmed && m->slots[i]->mc != NULL;

    /* 2. parameters to the confirmed children only, then their updates */
    if (confirmed < cfg->min_children) {
        snprintf(st->void_reason, sizeof st->void_reason,
                 "%zu children confirmed, min_children is %zu", confirmed, cfg->min_children);
    } else {
        m->phase = PH_TRAIN;
        rc = broadcast_params(m, FARM_FEDENC_PARAMS, pick_confirmed, mark_params, err);
        if (rc != 0)
            return rc;
        rc = wait_for(m, train_done, cfg->round_timeout);
        if (rc == FARM_ECANCELLED)
            return farm_err_set(err, rc, "cancelled");
    }
    finish_statuses(m, st);
    st->stale = m->stale;

    /* 3. aggregation, in child-id order (the slots are sorted) */
    double ta = farm_fedenc_now();
    if (st->void_reason[0] == '\0') {
        if (!cfg->accept_failures && st->failed + st->rejected > 0) {
            snprintf(st->void_reason, sizeof st->void_reason,
                     "%zu failed or rejected children and accept_failures is off",
                     st->failed + st->rejected);
        } else if (st->accepted < cfg->min_children) {
            snprintf(st->void_reason, sizeof st->void_reason,
                     "%zu valid updates, min_children is %zu", st->accepted, cfg->min_children);
        }
    }
    if (st->void_reason[0] == '\0') {
        struct farm_fedenc_update *ups = calloc(st->accepted, sizeof *ups);
        if (ups == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        size_t k = 0;
        double wsum = 0, lsum = 0;
        for (size_t i = 0; i < m->nslots; i++) {
            struct slot *s = m->slots[i];
            if (s->st.status != FARM_FEDENC_ACCEPTED)
                continue;
            ups[k++] = (struct farm_fedenc_update){s->id, s->st.samples, s->update};
            wsum += (double)s->st.samples;
            lsum += (double)s->st.samples * s->st.train_loss;
        }
        struct farm_err aerr;
        rc = farm_fedenc_agg_apply(agg, cfg->params, ups, k, &aerr);
        free(ups);
        if (rc != 0)
            copy_text(st->void_reason, sizeof st->void_reason, aerr.msg);
        else
            st->applied = 1;
        st->train_loss = wsum > 0 ? lsum / wsum : 0;
    }
    double tend = farm_fedenc_now();
    st->aggregate_seconds = tend - ta;
    st->round_seconds = tend - t0;
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i]->st.train_seconds > st->train_seconds)
            st->train_seconds = m->slots[i]->st.train_seconds;
    if (!st->applied)
        LOG(m, 2, "round %u is void, the encoder is unchanged: %s", m->round, st->void_reason);

    /* 4. evaluation of the global encoder on the children's held-out sets */
    if (do_eval) {
        m->phase = PH_EVAL;
        double te = farm_fedenc_now();
        rc = broadcast_params(m, FARM_FEDENC_EVAL, pick_confirmed, mark_eval, err);
        if (rc != 0)
            return rc;
        rc = wait_for(m, eval_done, cfg->round_timeout);
        if (rc == FARM_ECANCELLED)
            return farm_err_set(err, rc, "cancelled");
        double lsum = 0;
        uint64_t n = 0, correct = 0;
        for (size_t i = 0; i < m->nslots; i++) {
            struct slot *s = m->slots[i];
            if (!s->eval_done)
                continue;
            lsum += s->st.eval_loss_sum;
            n += s->st.eval_n;
            correct += s->st.eval_correct;
        }
        if (n > 0) {
            st->evaluated = 1;
            st->eval_n = n;
            st->eval_loss = lsum / (double)n;
            st->eval_accuracy = (double)correct / (double)n;
        }
        st->eval_seconds = farm_fedenc_now() - te;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        st->bytes_up += m->slots[i]->st.bytes_up;
        st->bytes_down += m->slots[i]->st.bytes_down;
    }
    m->phase = PH_DONE;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int setup_listener(struct master *m, struct farm_err *err)
{
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    const char *host = cfg->bind_host && cfg->bind_host[0] ? cfg->bind_host : "127.0.0.1";
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, cfg->port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        return farm_err_set(err, FARM_EBADPARAM, "bind: \"%s\" is not a numeric address", host);
    uv_tcp_init(&m->loop, &m->listener);
    m->listener.data = m;
    rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->listener, 128, on_connection);
    if (rc != 0)
        return farm_err_set(err, rc, "listen on %s:%d: %s", host, cfg->port, uv_strerror(rc));
    int len = sizeof addr;
    uv_tcp_getsockname(&m->listener, (struct sockaddr *)&addr, &len);
    m->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                               : ((struct sockaddr_in *)&addr)->sin_port);
    /* Local children connect to the address we listen on; "any" means here. */
    const char *target = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
                         : strcmp(host, "::") == 0    ? "::1"
                                                      : host;
    snprintf(m->hostport, sizeof m->hostport, strchr(target, ':') ? "[%s]:%d" : "%s:%d", target,
             m->port);
    LOG(m, 1, "master listening on %s", m->hostport);
    if (cfg->on_listen)
        cfg->on_listen(cfg->user, m->port);
    return 0;
}

static int federate(struct master *m, struct farm_err *err)
{
    const struct farm_fedenc_master_cfg *cfg = m->cfg;
    int rc = setup_listener(m, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < cfg->n_local; i++) {
        struct slot *s = slot_find(m, (uint32_t)i);
        if (s == NULL && (s = slot_add(m, (uint32_t)i)) == NULL)
            return farm_err_set(err, -ENOMEM, "out of memory");
        s->local = (int)i;
        if ((rc = spawn_child(m, s, err)) != 0)
            return rc;
    }
    m->phase = PH_JOIN;
    rc = wait_for(m, all_joined, cfg->join_timeout);
    if (rc == FARM_ECANCELLED)
        return farm_err_set(err, rc, "cancelled");
    size_t n = joined(m);
    if (n < cfg->expect_children && n < (cfg->min_children ? cfg->min_children : 1))
        return farm_err_set(err, FARM_ETIMEOUT,
                            "%zu of %zu children joined (min_children %zu); see the children's "
                            "messages above",
                            n, cfg->expect_children, cfg->min_children);
    if (n < cfg->expect_children)
        LOG(m, 2, "%zu of %zu children joined; starting anyway", n, cfg->expect_children);

    struct farm_fedenc_agg agg;
    rc = farm_fedenc_agg_init(&agg, &cfg->agg, m->nparams, err);
    if (rc != 0)
        return rc;
    for (uint32_t r = 1; r <= cfg->rounds; r++) {
        if (cfg->respawn && r > 1) {
            /* A child that dropped its connection is about to exit: let the
             * exit arrive, so it can be started again for this round. */
            wait_for(m, lost_locals_exited, 5.0);
            int spawned = 0;
            for (size_t i = 0; i < m->nslots; i++) {
                struct slot *s = m->slots[i];
                if (s->local >= 0 && !s->proc_running && s->mc == NULL) {
                    /* The old handles must be closed before the structs are reused. */
                    while (s->proc_live || s->pipe_live)
                        uv_run(&m->loop, UV_RUN_ONCE);
                    LOG(m, 1, "child %u: respawning", s->id);
                    if (spawn_child(m, s, err) == 0)
                        spawned = 1;
                }
            }
            if (spawned && wait_for(m, locals_joined, cfg->join_timeout) == FARM_ECANCELLED) {
                farm_fedenc_agg_release(&agg);
                return farm_err_set(err, FARM_ECANCELLED, "cancelled");
            }
        }
        m->round = r;
        struct farm_fedenc_round_stats st;
        int do_eval = r == cfg->rounds || (cfg->eval_every && r % cfg->eval_every == 0);
        rc = run_round(m, &st, do_eval, &agg, err);
        if (rc != 0) {
            farm_fedenc_agg_release(&agg);
            return rc;
        }
        struct farm_fedenc_child_stats *cs = calloc(m->nslots ? m->nslots : 1, sizeof *cs);
        if (cs == NULL) {
            farm_fedenc_agg_release(&agg);
            return farm_err_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < m->nslots; i++)
            cs[i] = m->slots[i]->st;
        st.children = cs;
        st.n_children = m->nslots;
        char evaltxt[96] = "";
        if (st.evaluated)
            snprintf(evaltxt, sizeof evaltxt, ", held-out loss %.4f, accuracy %.4f", st.eval_loss,
                     st.eval_accuracy);
        LOG(m, 1,
            "round %u: %s, %zu accepted, %zu rejected, %zu failed, %zu declined; "
            "train loss %.4f%s; %.3f s",
            r, st.applied ? "aggregated" : "void", st.accepted, st.rejected, st.failed,
            st.declined, st.train_loss, evaltxt, st.round_seconds);
        if (cfg->on_round)
            cfg->on_round(cfg->user, &st);
        free(cs);
    }
    farm_fedenc_agg_release(&agg);
    return 0;
}

int farm_fedenc_master_run(const struct farm_fedenc_master_cfg *cfg, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(cfg->ntensors == 0 || cfg->params == NULL, err, FARM_EBADPARAM,
                         "master: no encoder parameters");
    FARM_RETURN_ERROR_IF(cfg->n_local > 0 && cfg->child_exe == NULL, err, FARM_EBADPARAM,
                         "master: local children need the child executable");
    FARM_RETURN_ERROR_IF(cfg->n_local > MAX_CHILDREN, err, FARM_EBADPARAM,
                         "master: at most %d children", MAX_CHILDREN);
    struct master *m = calloc(1, sizeof *m);
    if (m == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    m->cfg = cfg;
    for (size_t i = 0; i < cfg->ntensors; i++)
        m->nparams += farm_fedenc_tensor_numel(&cfg->specs[i]);
    m->max_frame = FARM_FEDENC_HDR + FARM_FEDENC_JSON_MAX + m->nparams * sizeof(float) + 4096;
    /* A child dying while we write to it must not kill the master. */
    signal(SIGPIPE, SIG_IGN);
    int rc = uv_loop_init(&m->loop);
    if (rc != 0) {
        free(m);
        return farm_err_set(err, rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    m->loop.data = m;
    uv_timer_init(&m->loop, &m->deadline);
    uv_timer_init(&m->loop, &m->tick);
    m->deadline.data = m->tick.data = m;
    uv_timer_start(&m->tick, on_tick, 200, 200);

    rc = federate(m, err);

    /* Say goodbye, give the children a moment to leave, then make sure. */
    m->phase = PH_DONE;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = m->slots[i];
        if (s->mc != NULL) {
            send_json(s->mc, NULL, FARM_FEDENC_BYE, m->round, json_object());
            farm__fedenc_conn_close_after_write(&s->mc->conn);
        }
    }
    wait_for(m, all_exited, 5.0);
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i]->proc_running)
            uv_process_kill(&m->slots[i]->proc, SIGKILL);
    wait_for(m, all_exited, 5.0);
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i]->pipe_open)
            flush_lines(m, m->slots[i], 1);
    for (struct mconn *mc = m->conns; mc; mc = mc->next)
        farm__fedenc_conn_close(&mc->conn);
    uv_walk(&m->loop, close_walk, NULL);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    uv_loop_close(&m->loop);
    for (size_t i = 0; i < m->nslots; i++) {
        free(m->slots[i]->update);
        free(m->slots[i]);
    }
    free(m);
    return rc;
}
