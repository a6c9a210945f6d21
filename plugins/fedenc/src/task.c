/* fedenc task: params -> children's data specs -> master run -> centralized
 * baseline -> metrics and artifacts. */
#include "farm/fedenc_task.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/fedenc_model.h"

#define TLOG(h, lvl, ...) farm__fedenc_task_logf((h), (lvl), __VA_ARGS__)

static void farm__fedenc_task_logf(const struct farm_fedenc_task_host *h, int level,
                                   const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void farm__fedenc_task_logf(const struct farm_fedenc_task_host *h, int level,
                                   const char *fmt, ...)
{
    if (h == NULL || h->log == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->log(h->user, level, msg);
}

int farm_fedenc_parse_hostport(const char *text, char *host, size_t cap, int *port,
                               struct farm_err *err)
{
    const char *colon = NULL;
    const char *h = text;
    size_t hl;
    if (text == NULL || *text == '\0')
        return farm_err_set(err, FARM_EBADPARAM, "connect: expected HOST:PORT, got nothing");
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return farm_err_set(err, FARM_EBADPARAM, "connect: expected [V6ADDR]:PORT, got \"%s\"",
                                text);
        h = text + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return farm_err_set(err, FARM_EBADPARAM, "connect: expected HOST:PORT, got \"%s\"",
                                text);
        hl = (size_t)(colon - text);
    }
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= cap || *end != '\0' || p < 1 || p > 65535)
        return farm_err_set(err, FARM_EBADPARAM, "connect: expected HOST:PORT, got \"%s\"", text);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static char *read_file(const char *path, struct farm_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        farm_err_set(err, -errno, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL) {
        farm_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

int farm_fedenc_task_child(const struct farm_fedenc_task_child_args *a, struct farm_err *err)
{
    char host[256];
    int port = 0;
    int rc = farm_fedenc_parse_hostport(a->connect, host, sizeof host, &port, err);
    if (rc != 0)
        return rc;
    struct farm_fedenc_faults faults;
    if ((rc = farm_fedenc_faults_parse(a->faults, &faults, err)) != 0)
        return rc;
    FARM_RETURN_ERROR_IF(a->data == NULL, err, FARM_EBADPARAM, "data: missing");
    char *text = a->data[0] == '@' ? read_file(a->data + 1, err) : strdup(a->data);
    if (text == NULL)
        return err && err->code ? err->code : -ENOMEM;
    json_error_t je;
    json_t *spec = json_loads(text, 0, &je);
    free(text);
    FARM_RETURN_ERROR_IF(spec == NULL, err, FARM_EBADPARAM, "data:%d:%d: %s", je.line, je.column,
                         je.text);
    struct farm_fedenc_shard *shards = NULL;
    size_t nshards = 0;
    rc = farm_fedenc_shards_load(spec, a->base_dir, &shards, &nshards, err);
    json_decref(spec);
    if (rc != 0)
        return rc;
    struct farm_fedenc_trainer tr;
    farm_fedenc_trainer_init(&tr, a->id, shards, nshards);
    struct farm_fedenc_child_cfg cfg = {
        .host = host,
        .port = port,
        .id = a->id,
        .secret = a->secret,
        .secret_len = a->secret ? strlen(a->secret) : 0,
        .ops = &farm_fedenc_trainer_ops,
        .self = &tr,
        .faults = faults,
        .connect_timeout = a->connect_timeout,
        .log = a->log,
        .log_user = a->log_user,
    };
    rc = farm_fedenc_child_run(&cfg, err);
    farm_fedenc_trainer_release(&tr);
    return rc;
}

/* ------------------------------------------------------------- params */

struct params {
    const json_t *j;
    struct farm_err *err;
    int rc;
};

static const char *pstr(struct params *p, const char *key, const char *dflt)
{
    json_t *v = json_object_get(p->j, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    if (!json_is_string(v)) {
        if (p->rc == 0)
            p->rc = farm_err_set(p->err, FARM_EBADPARAM, "%s: expected a string", key);
        return dflt;
    }
    return json_string_value(v);
}

static double pnum(struct params *p, const char *key, double dflt, double lo, double hi)
{
    json_t *v = json_object_get(p->j, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= lo && x <= hi)) {
        if (p->rc == 0)
            p->rc = farm_err_set(p->err, FARM_EBADPARAM, "%s: expected a number in [%g, %g]", key,
                                 lo, hi);
        return dflt;
    }
    return x;
}

static long pint(struct params *p, const char *key, long dflt, long lo, long hi)
{
    json_t *v = json_object_get(p->j, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        if (p->rc == 0)
            p->rc = farm_err_set(p->err, FARM_EBADPARAM, "%s: expected an integer in [%ld, %ld]",
                                 key, lo, hi);
        return dflt;
    }
    return (long)json_integer_value(v);
}

static int pbool(struct params *p, const char *key, int dflt)
{
    json_t *v = json_object_get(p->j, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    if (!json_is_boolean(v)) {
        if (p->rc == 0)
            p->rc = farm_err_set(p->err, FARM_EBADPARAM, "%s: expected true or false", key);
        return dflt;
    }
    return json_is_true(v);
}

/* The data spec of local child k, a new reference. */
static json_t *child_data(struct params *p, const char *data, size_t k, size_t n,
                          const char *enc_type, const char *deps_dir)
{
    json_t *explicit = json_object_get(p->j, "data");
    if (json_is_array(explicit)) {
        if (json_array_size(explicit) != n) {
            if (p->rc == 0)
                p->rc = farm_err_set(p->err, FARM_EBADPARAM,
                                     "data: %zu per-child specs for %zu children",
                                     json_array_size(explicit), n);
            return NULL;
        }
        return json_incref(json_array_get(explicit, k));
    }
    long seed = pint(p, "data_seed", 1, 0, 1L << 40);
    if (strcmp(data, "synthetic") == 0) {
        json_t *o = json_pack("{s:s, s:f, s:f, s:I, s:I, s:I, s:f}", "source", "synthetic",
                              "alpha", pnum(p, "alpha", 1, 0, 100), "beta",
                              pnum(p, "beta", 1, 0, 100), "clients", (json_int_t)n, "index",
                              (json_int_t)k, "seed", (json_int_t)seed, "test_fraction",
                              pnum(p, "test_fraction", 0.2, 0.01, 0.99));
        long s = pint(p, "samples", 0, 0, 10000000);
        if (s > 0)
            json_object_set_new(o, "samples", json_integer(s));
        return o;
    }
    if (strcmp(data, "digits") == 0) {
        /* Non-IID by label: label L goes to child floor(L * n / 10). */
        if (n > 10) {
            if (p->rc == 0)
                p->rc = farm_err_set(p->err, FARM_EBADPARAM, "data=digits: at most 10 children");
            return NULL;
        }
        json_t *labels = json_array();
        for (int l = 0; l < 10; l++)
            if ((size_t)l * n / 10 == k)
                json_array_append_new(labels, json_integer(l));
        return json_pack("{s:s, s:s, s:o, s:s, s:I, s:f}", "source", "digits", "path",
                         pstr(p, "digits", "data/digits.csv.gz"), "labels", labels, "as",
                         strcmp(enc_type, "gru") == 0 ? "sequence" : "tabular", "seed",
                         (json_int_t)seed, "test_fraction",
                         pnum(p, "test_fraction", 0.2, 0.01, 0.99));
    }
    if (strcmp(data, "npy") == 0) {
        const char *dir = pstr(p, "npy_dir", "fedenc");
        char base[4096];
        snprintf(base, sizeof base, "%s%s%s/child%zu", deps_dir ? deps_dir : "",
                 deps_dir ? "/" : "", dir, k);
        char x[4200], y[4200], xt[4200], yt[4200];
        snprintf(x, sizeof x, "%s/x.npy", base);
        snprintf(y, sizeof y, "%s/y.npy", base);
        snprintf(xt, sizeof xt, "%s/x_test.npy", base);
        snprintf(yt, sizeof yt, "%s/y_test.npy", base);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "source", "npy", "x", x, "y", y, "as",
                              strcmp(enc_type, "gru") == 0 ? "sequence" : "tabular");
        if (access(xt, R_OK) == 0) {
            json_object_set_new(o, "x_test", json_string(xt));
            json_object_set_new(o, "y_test", json_string(yt));
        }
        if (strcmp(enc_type, "gru") == 0)
            json_object_set_new(o, "steps", json_integer(pint(p, "steps", 8, 1, 100000)));
        return o;
    }
    if (p->rc == 0)
        p->rc = farm_err_set(p->err, FARM_EBADPARAM,
                             "data: expected \"synthetic\", \"digits\", \"npy\" or a list of "
                             "per-child specs, got \"%s\"",
                             data);
    return NULL;
}

/* --------------------------------------------------------------- run */

struct run {
    const struct farm_fedenc_task_host *host;
    json_t *rounds; /* array of per-round objects */
    uint32_t total;
    double *round_secs, *fractions;
    size_t nrounds;
};

static void emit(struct run *r, const char *name, double v, int64_t step)
{
    if (r->host && r->host->metric)
        r->host->metric(r->host->user, name, v, step);
}

static void on_round(void *user, const struct farm_fedenc_round_stats *st)
{
    struct run *r = user;
    json_t *children = json_array();
    for (size_t i = 0; i < st->n_children; i++) {
        const struct farm_fedenc_child_stats *c = &st->children[i];
        json_t *o = json_pack("{s:I, s:s, s:b, s:I, s:f, s:f, s:I, s:I}", "id", (json_int_t)c->id,
                              "status", farm_fedenc_status_name(c->status), "got_params",
                              c->got_params, "samples", (json_int_t)c->samples, "train_loss",
                              c->train_loss, "train_seconds", c->train_seconds, "bytes_up",
                              (json_int_t)c->bytes_up, "bytes_down", (json_int_t)c->bytes_down);
        if (c->reason[0])
            json_object_set_new(o, "reason", json_string(c->reason));
        if (c->eval_n) {
            json_object_set_new(o, "eval_n", json_integer((json_int_t)c->eval_n));
            json_object_set_new(o, "eval_accuracy",
                                json_real((double)c->eval_correct / (double)c->eval_n));
        }
        json_array_append_new(children, o);
        char name[96];
        snprintf(name, sizeof name, "child/%u/samples", c->id);
        emit(r, name, (double)c->samples, st->round);
    }
    double comm = st->round_seconds - st->train_seconds;
    json_t *o = json_pack("{s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:f, s:f, s:f, "
                          "s:f, s:f, s:o}",
                          "round", (json_int_t)st->round, "applied", st->applied, "confirmed",
                          (json_int_t)st->confirmed, "declined", (json_int_t)st->declined,
                          "accepted", (json_int_t)st->accepted, "rejected",
                          (json_int_t)st->rejected, "failed", (json_int_t)st->failed, "stale",
                          (json_int_t)st->stale, "train_loss", st->train_loss, "bytes_up",
                          (json_int_t)st->bytes_up, "bytes_down", (json_int_t)st->bytes_down,
                          "round_seconds", st->round_seconds, "train_seconds", st->train_seconds,
                          "aggregate_seconds", st->aggregate_seconds, "comm_agg_seconds", comm,
                          "eval_seconds", st->eval_seconds, "children", children);
    if (!st->applied)
        json_object_set_new(o, "void_reason", json_string(st->void_reason));
    if (st->evaluated) {
        json_object_set_new(o, "loss", json_real(st->eval_loss));
        json_object_set_new(o, "accuracy", json_real(st->eval_accuracy));
        emit(r, "fed/loss", st->eval_loss, st->round);
        emit(r, "fed/accuracy", st->eval_accuracy, st->round);
    }
    json_array_append_new(r->rounds, o);
    emit(r, "fed/train_loss", st->train_loss, st->round);
    emit(r, "round/seconds", st->round_seconds, st->round);
    emit(r, "round/comm_agg_seconds", comm, st->round);
    emit(r, "round/aggregate_seconds", st->aggregate_seconds, st->round);
    emit(r, "round/bytes_up", (double)st->bytes_up, st->round);
    emit(r, "round/bytes_down", (double)st->bytes_down, st->round);
    emit(r, "round/accepted", (double)st->accepted, st->round);
    emit(r, "round/rejected", (double)st->rejected, st->round);
    emit(r, "round/failed", (double)st->failed, st->round);
    emit(r, "round/declined", (double)st->declined, st->round);
    emit(r, "round/applied", st->applied, st->round);
    if (st->applied && st->round_seconds > 0 && r->nrounds < r->total) {
        r->round_secs[r->nrounds] = st->round_seconds;
        r->fractions[r->nrounds] = comm / st->round_seconds;
        r->nrounds++;
    }
    if (r->host && r->host->progress) {
        char what[64];
        snprintf(what, sizeof what, "round %u of %u", st->round, r->total);
        r->host->progress(r->host->user, (double)st->round / (double)r->total, what);
    }
}

static int cancelled_cb(void *user)
{
    struct run *r = user;
    return r->host && r->host->cancelled ? r->host->cancelled(r->host->user) : 0;
}

static void log_cb(void *user, int level, const char *msg)
{
    struct run *r = user;
    if (r->host && r->host->log)
        r->host->log(r->host->user, level, msg);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* rounds.svg: accuracy and loss per round, federated (solid) beside
 * centralized (dashed). */
static int write_svg(const char *path, json_t *rounds, const double *cacc, const double *closs,
                     size_t R, struct farm_err *err)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return farm_err_set(err, -errno, "%s: %s", path, strerror(errno));
    const int W = 900, H = 370, pw = 380, ph = 240, top = 50, left[2] = {60, 510};
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    double lmax = 0;
    for (size_t i = 0; i < json_array_size(rounds); i++) {
        double l = json_number_value(json_object_get(json_array_get(rounds, i), "loss"));
        if (isfinite(l) && l > lmax)
            lmax = l;
    }
    for (size_t i = 0; i < R; i++)
        if (isfinite(closs[i]) && closs[i] > lmax)
            lmax = closs[i];
    if (lmax <= 0)
        lmax = 1;
    const char *titles[2] = {"held-out accuracy", "held-out loss"};
    for (int p = 0; p < 2; p++) {
        double ymax = p == 0 ? 1.0 : lmax;
        int x0 = left[p];
        fprintf(f,
                "<text x=\"%d\" y=\"%d\" font-size=\"14\">%s per round</text>\n"
                "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                "stroke=\"#888\"/>\n",
                x0, top - 15, titles[p], x0, top, pw, ph);
        for (int t = 0; t <= 4; t++) {
            double v = ymax * t / 4;
            int y = top + ph - (int)(ph * t / 4);
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f</text>\n", x0 - 5, y + 4,
                    v);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">round (1..%zu)</text>\n",
                x0 + pw / 2, top + ph + 20, R);
        for (int series = 0; series < 2; series++) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                    series == 0 ? "#1f77b4" : "#d62728",
                    series == 0 ? "" : " stroke-dasharray=\"6,4\"");
            for (size_t i = 0; i < R; i++) {
                double v;
                if (series == 0) {
                    json_t *o = json_array_get(rounds, i);
                    json_t *jv = json_object_get(o, p == 0 ? "accuracy" : "loss");
                    if (!json_is_number(jv))
                        continue;
                    v = json_number_value(jv);
                } else {
                    v = p == 0 ? cacc[i] : closs[i];
                    if (!isfinite(v))
                        continue;
                }
                double x = R > 1 ? (double)x0 + (double)pw * (double)i / (double)(R - 1)
                                 : (double)x0 + pw / 2.0;
                double y = top + ph - ph * (v / ymax);
                fprintf(f, "%.1f,%.1f ", x, y);
            }
            fprintf(f, "\"/>\n");
        }
    }
    fprintf(f,
            "<line x1=\"60\" y1=\"350\" x2=\"90\" y2=\"350\" stroke=\"#1f77b4\" "
            "stroke-width=\"2\"/><text x=\"95\" y=\"354\">federated (shared encoder, local "
            "heads)</text>\n"
            "<line x1=\"400\" y1=\"350\" x2=\"430\" y2=\"350\" stroke=\"#d62728\" "
            "stroke-width=\"2\" stroke-dasharray=\"6,4\"/><text x=\"435\" y=\"354\">centralized "
            "(union of the children's data)</text>\n</svg>\n");
    if (fclose(f) != 0)
        return farm_err_set(err, -EIO, "%s: write failed", path);
    return 0;
}

static int master(const json_t *pj, const struct farm_fedenc_task_env *env,
                  const struct farm_fedenc_task_host *host, struct farm_fedenc_task_result *res,
                  struct farm_err *err)
{
    struct params P = {.j = pj, .err = err};
    struct params *p = &P;
    size_t n = (size_t)pint(p, "children", 4, 0, 1024);
    size_t remote = (size_t)pint(p, "remote_children", 0, 0, 1024);
    uint32_t rounds = (uint32_t)pint(p, "rounds", 10, 1, 1000000);
    const char *aggname = pstr(p, "aggregator", "fedavg");
    const char *enc_type = pstr(p, "encoder", "mlp");
    json_t *jd = json_object_get(pj, "data");
    const char *data = json_is_string(jd) ? json_string_value(jd) : "synthetic";
    const char *bind = pstr(p, "bind", "127.0.0.1");
    const char *secret_param = pstr(p, "secret", NULL);
    int central = pbool(p, "centralized", 1);
    struct farm_fedenc_hp hp = {
        .epochs = (uint32_t)pint(p, "epochs", 1, 1, 100000),
        .batch = (size_t)pint(p, "batch", 32, 0, 1L << 30),
        .lr = pnum(p, "lr", 0.05, 1e-12, 1e6),
        .momentum = pnum(p, "momentum", 0, 0, 0.999),
        .mu = pnum(p, "mu", 0, 0, 1e6),
        .seed = (uint64_t)pint(p, "seed", 1, 0, 1L << 40),
    };
    struct farm_fedenc_master_cfg mc = {
        .bind_host = bind,
        .port = (int)pint(p, "port", 0, 0, 65535),
        .n_local = n,
        .respawn = pbool(p, "respawn", 1),
        .expect_children = n + remote,
        .join_timeout = pnum(p, "join_timeout", 30, 0.1, 86400),
        .rounds = rounds,
        .min_children = (size_t)pint(p, "min_children", 1, 1, 1024),
        .accept_failures = pbool(p, "accept_failures", 1),
        .round_timeout = pnum(p, "round_timeout", 60, 0.05, 86400),
        .eval_every = (uint32_t)pint(p, "eval_every", 1, 0, 1000000),
        .agg = {.beta = pnum(p, "trim_beta", 0.2, 0, 0.49),
                .server_lr = pnum(p, "server_lr", 1, 1e-9, 1e6),
                .momentum = pnum(p, "server_momentum", 0, 0, 0.999)},
        .log = log_cb,
        .on_round = on_round,
        .cancelled = cancelled_cb,
        .child_exe = env->child_exe,
    };
    long head_epochs = pint(p, "head_epochs", 0, 0, 100000);
    json_t *faults = json_object_get(pj, "child_faults");
    if (P.rc != 0)
        return P.rc;
    if (jd != NULL && !json_is_string(jd) && !json_is_array(jd))
        return farm_err_set(err, FARM_EBADPARAM,
                            "data: expected a name or a list of per-child specs");
    if (json_is_array(jd))
        data = "list";
    int rule = farm_fedenc_rule_parse(aggname, err);
    if (rule < 0)
        return rule;
    mc.agg.rule = rule;
    FARM_RETURN_ERROR_IF(strcmp(enc_type, "mlp") != 0 && strcmp(enc_type, "gru") != 0, err,
                         FARM_EBADPARAM, "encoder: expected \"mlp\" or \"gru\", got \"%s\"",
                         enc_type);
    FARM_RETURN_ERROR_IF(n + remote == 0, err, FARM_EBADPARAM,
                         "children: no local and no remote children");
    FARM_RETURN_ERROR_IF(mc.min_children > n + remote, err, FARM_EBADPARAM,
                         "min_children: %zu, but only %zu children", mc.min_children, n + remote);
    FARM_RETURN_ERROR_IF(faults != NULL && !json_is_object(faults), err, FARM_EBADPARAM,
                         "child_faults: expected an object {\"CHILD\": \"die=2,...\"}");
    int loopback = strncmp(bind, "127.", 4) == 0 || strcmp(bind, "::1") == 0;
    FARM_RETURN_ERROR_IF((remote > 0 || !loopback) && secret_param == NULL, err, FARM_EBADPARAM,
                         "secret: required when children may connect from elsewhere");
    char secret[2 * 32 + 1];
    if (secret_param == NULL) {
        /* Local children only: a fresh secret that nobody else ever sees. */
        uint8_t raw[32];
        if (farm_fedenc_random(raw, sizeof raw) != 0)
            return farm_err_set(err, -EIO, "no random bytes for the secret");
        farm_fedenc_hex(raw, sizeof raw, secret);
        secret_param = secret;
    }
    mc.secret = secret_param;
    mc.secret_len = strlen(secret_param);

    /* The children's data: their specs, and the master's own copy of the
     * local shards for the encoder's width, the classes and the baseline. */
    int rc = 0;
    json_t **specs = calloc(n ? n : 1, sizeof *specs);
    char ***args = calloc(n ? n : 1, sizeof *args);
    struct farm_dataset union_train = {0}, union_test = {0};
    struct farm_fedenc_model *model = NULL, *cmodel = NULL;
    float *params = NULL;
    double *cacc = NULL, *closs = NULL;
    struct run run = {.host = host, .rounds = json_array(), .total = rounds};
    run.round_secs = calloc(rounds, sizeof(double));
    run.fractions = calloc(rounds, sizeof(double));
    struct farm_fedenc_encoder_cfg ecfg = {0};
    size_t classes = (size_t)pint(p, "classes", 0, 0, 100000);
    size_t width = 0;
    if (specs == NULL || args == NULL || run.rounds == NULL || run.round_secs == NULL ||
        run.fractions == NULL) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n && rc == 0; k++) {
        specs[k] = child_data(p, data, k, n, enc_type, env->deps_dir);
        if (P.rc != 0) {
            rc = P.rc;
            break;
        }
        struct farm_fedenc_shard *sh = NULL;
        size_t nsh = 0;
        rc = farm_fedenc_shards_load(specs[k], env->work_dir, &sh, &nsh, err);
        if (rc != 0) {
            farm_err_prefix(err, "child %zu: ", k);
            break;
        }
        for (size_t i = 0; i < nsh; i++) {
            int want = strcmp(enc_type, "gru") == 0 ? FARM_FEDENC_ENC_GRU : FARM_FEDENC_ENC_MLP;
            if (sh[i].type != want)
                continue;
            if (width == 0) {
                width = sh[i].train.x.cols;
                ecfg.steps = sh[i].steps;
            }
            if (sh[i].train.x.cols == width) {
                if (sh[i].train.classes > classes)
                    classes = sh[i].train.classes;
                if ((rc = farm_fedenc_dataset_append(&union_train, &sh[i].train, err)) == 0)
                    rc = farm_fedenc_dataset_append(&union_test, &sh[i].test, err);
            }
        }
        farm_fedenc_shards_free(sh, nsh);
        char *txt = json_dumps(specs[k], JSON_COMPACT);
        char key[32];
        snprintf(key, sizeof key, "%zu", k);
        const char *fault = faults ? json_string_value(json_object_get(faults, key)) : NULL;
        args[k] = calloc(9, sizeof(char *));
        if (txt == NULL || args[k] == NULL) {
            free(txt);
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        int a = 0;
        args[k][a++] = strdup("--data");
        args[k][a++] = txt;
        if (env->work_dir) {
            args[k][a++] = strdup("--base");
            args[k][a++] = strdup(env->work_dir);
        }
        if (fault) {
            args[k][a++] = strdup("--fault");
            args[k][a++] = strdup(fault);
        }
    }
    if (rc != 0)
        goto out;
    if (width == 0) {
        width = (size_t)pint(p, "input", 0, 0, 1L << 24) *
                (strcmp(enc_type, "gru") == 0 ? (size_t)pint(p, "steps", 1, 1, 100000) : 1);
        ecfg.steps = (size_t)pint(p, "steps", 1, 1, 100000);
    }
    if (width == 0 || classes < 2) {
        rc = farm_err_set(err, FARM_EBADPARAM,
                          "no local %s data: give \"input\" (and \"steps\") and \"classes\"",
                          enc_type);
        goto out;
    }
    {
        json_t *hidden = json_object_get(pj, "hidden");
        hidden = hidden != NULL && !json_is_null(hidden) ? json_incref(hidden)
                 : strcmp(enc_type, "gru") == 0          ? json_integer(64)
                                                         : json_pack("[i,i]", 128, 64);
        json_t *ej = json_pack("{s:s, s:I, s:o}", "type", enc_type, "input",
                               (json_int_t)(strcmp(enc_type, "gru") == 0 ? width / ecfg.steps
                                                                          : width),
                               "hidden", hidden);
        if (strcmp(enc_type, "gru") == 0)
            json_object_set_new(ej, "steps", json_integer((json_int_t)ecfg.steps));
        rc = farm_fedenc_encoder_cfg_parse(ej, &ecfg, err);
        json_decref(ej);
        if (rc != 0)
            goto out;
    }
    if ((rc = farm_fedenc_model_new(&ecfg, classes, hp.seed, hp.seed, &model, err)) != 0)
        goto out;
    struct farm_fedenc_tensor_spec tspecs[FARM_FEDENC_TENSORS_MAX];
    size_t nt = farm_fedenc_model_specs(model, tspecs, FARM_FEDENC_TENSORS_MAX);
    size_t np = farm_fedenc_model_encoder_size(model);
    params = malloc(np * sizeof *params);
    if (params == NULL) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    farm_fedenc_model_get_encoder(model, params);
    json_t *instruct = json_pack("{s:o, s:o, s:I, s:I}", "encoder",
                                 farm_fedenc_encoder_cfg_json(&ecfg), "hp",
                                 farm_fedenc_hp_json(&hp), "classes", (json_int_t)classes,
                                 "head_epochs", (json_int_t)head_epochs);
    mc.instruct = instruct;
    mc.specs = tspecs;
    mc.ntensors = nt;
    mc.params = params;
    mc.child_args = (char *const *const *)args;
    mc.user = &run;
    TLOG(host, 1,
         "fedenc: %zu local + %zu remote children, %u rounds, %s encoder of %zu parameters, "
         "aggregator %s, %zu classes",
         n, remote, rounds, enc_type, np, farm_fedenc_rule_name(rule), classes);
    double t0 = farm_fedenc_now();
    rc = farm_fedenc_master_run(&mc, err);
    double wall = farm_fedenc_now() - t0;
    json_decref(instruct);
    if (rc != 0)
        goto out;

    /* The centralized baseline: the same encoder and hyper-parameters with
     * one head, trained on the union of the local children's data. */
    cacc = malloc(rounds * sizeof *cacc);
    closs = malloc(rounds * sizeof *closs);
    if (cacc == NULL || closs == NULL) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t r = 0; r < rounds; r++)
        cacc[r] = closs[r] = NAN;
    double tc = farm_fedenc_now();
    if (central && union_train.n > 0) {
        if ((rc = farm_fedenc_model_new(&ecfg, classes, hp.seed, hp.seed, &cmodel, err)) != 0)
            goto out;
        for (uint32_t r = 1; r <= rounds && rc == 0; r++) {
            rc = farm_fedenc_model_train(cmodel, &union_train, &hp, NULL,
                                         farm_fedenc_shuffle_seed(hp.seed, 0xffffffffu, r), NULL,
                                         err);
            double ls = 0;
            uint64_t c = 0;
            if (rc == 0)
                rc = farm_fedenc_model_evaluate(cmodel, &union_test, &ls, &c, err);
            if (rc == 0) {
                closs[r - 1] = ls / (double)union_test.n;
                cacc[r - 1] = (double)c / (double)union_test.n;
                emit(&run, "central/loss", closs[r - 1], r);
                emit(&run, "central/accuracy", cacc[r - 1], r);
            }
            if (cancelled_cb(&run)) {
                rc = farm_err_set(err, FARM_ECANCELLED, "cancelled");
            }
        }
        if (rc != 0)
            goto out;
    }
    double central_wall = farm_fedenc_now() - tc;

    /* Artifacts. */
    {
        const char *dir = env->scratch_dir ? env->scratch_dir : ".";
        char path[4096];
        farm_fedenc_model_set_encoder(model, params, np);
        json_t *meta = json_pack("{s:s, s:s, s:s}", "format", "fedenc-encoder", "encoder",
                                 enc_type, "aggregator", farm_fedenc_rule_name(rule));
        snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
        rc = farm_fedenc_model_save_encoder(model, path, meta, err);
        json_decref(meta);
        if (rc == 0 && host && host->artifact)
            host->artifact(host->user, path, "encoder.safetensors");
        json_t *central_j = json_array();
        for (uint32_t r = 0; r < rounds; r++)
            json_array_append_new(central_j, isfinite(cacc[r])
                                                 ? json_pack("{s:I, s:f, s:f}", "round",
                                                             (json_int_t)(r + 1), "accuracy",
                                                             cacc[r], "loss", closs[r])
                                                 : json_pack("{s:I}", "round", (json_int_t)(r + 1)));
        json_t *doc = json_pack("{s:s, s:s, s:I, s:I, s:O, s:o}", "encoder", enc_type,
                                "aggregator", farm_fedenc_rule_name(rule), "encoder_params",
                                (json_int_t)np, "children", (json_int_t)(n + remote), "rounds",
                                run.rounds, "centralized", central_j);
        snprintf(path, sizeof path, "%s/rounds.json", dir);
        if (rc == 0 && json_dump_file(doc, path, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) != 0)
            rc = farm_err_set(err, -EIO, "%s: cannot write", path);
        json_decref(doc);
        if (rc == 0 && host && host->artifact)
            host->artifact(host->user, path, "rounds.json");
        snprintf(path, sizeof path, "%s/rounds.svg", dir);
        if (rc == 0)
            rc = write_svg(path, run.rounds, cacc, closs, rounds, err);
        if (rc == 0 && host && host->artifact)
            host->artifact(host->user, path, "rounds.svg");
    }
    if (rc == 0 && res != NULL) {
        memset(res, 0, sizeof *res);
        res->rounds = rounds;
        res->fed_accuracy = res->fed_loss = NAN;
        for (size_t i = 0; i < json_array_size(run.rounds); i++) {
            json_t *o = json_array_get(run.rounds, i);
            res->applied += json_is_true(json_object_get(o, "applied"));
            if (json_object_get(o, "accuracy")) {
                res->fed_accuracy = json_number_value(json_object_get(o, "accuracy"));
                res->fed_loss = json_number_value(json_object_get(o, "loss"));
            }
        }
        res->central_accuracy = cacc[rounds - 1];
        res->central_loss = closs[rounds - 1];
        res->median_round_seconds = median(run.round_secs, run.nrounds);
        res->median_comm_agg_fraction = median(run.fractions, run.nrounds);
        res->rounds_per_second = wall > 0 ? rounds / wall : 0;
        res->encoder_params = np;
        res->federation_seconds = wall;
        res->central_seconds = central ? central_wall : NAN;
    }
    if (rc == 0)
        TLOG(host, 1, "fedenc: federated accuracy %.4f, centralized %.4f",
             res ? res->fed_accuracy : NAN, cacc[rounds - 1]);
out:
    for (size_t k = 0; k < n; k++) {
        json_decref(specs ? specs[k] : NULL);
        for (int a = 0; args && args[k] && args[k][a]; a++)
            free(args[k][a]);
        if (args)
            free(args[k]);
    }
    free(specs);
    free(args);
    farm_dataset_release(&union_train);
    farm_dataset_release(&union_test);
    farm_fedenc_model_free(model);
    farm_fedenc_model_free(cmodel);
    free(params);
    free(cacc);
    free(closs);
    free(run.round_secs);
    free(run.fractions);
    json_decref(run.rounds);
    return rc;
}

int farm_fedenc_task_run(const json_t *params, const struct farm_fedenc_task_env *env,
                         const struct farm_fedenc_task_host *host,
                         struct farm_fedenc_task_result *res, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!json_is_object(params), err, FARM_EBADPARAM,
                         "params: expected a JSON object");
    struct params P = {.j = params, .err = err};
    const char *role = pstr(&P, "role", "master");
    if (P.rc != 0)
        return P.rc;
    if (strcmp(role, "master") == 0)
        return master(params, env, host, res, err);
    FARM_RETURN_ERROR_IF(strcmp(role, "child") != 0, err, FARM_EBADPARAM,
                         "role: expected \"master\" or \"child\", got \"%s\"", role);
    const char *secret = pstr(&P, "secret", NULL);
    const char *connect = pstr(&P, "connect", NULL);
    long id = pint(&P, "child_id", 0, 0, 0x7fffffff);
    json_t *data = json_object_get(params, "data");
    if (P.rc != 0)
        return P.rc;
    FARM_RETURN_ERROR_IF(secret == NULL, err, FARM_EBADPARAM, "secret: required for role=child");
    FARM_RETURN_ERROR_IF(connect == NULL, err, FARM_EBADPARAM,
                         "connect: required for role=child (HOST:PORT of the master)");
    FARM_RETURN_ERROR_IF(data == NULL, err, FARM_EBADPARAM,
                         "data: required for role=child (a spec object, a list, or a directory "
                         "of x.npy, y.npy)");
    char *text = NULL;
    if (json_is_string(data)) {
        /* A directory of .npy files. */
        const char *dir = json_string_value(data);
        char x[4200];
        snprintf(x, sizeof x, "%s/x_test.npy", dir);
        json_t *o = json_pack("{s:s, s:s, s:s}", "source", "npy", "x", "x.npy", "y", "y.npy");
        if (access(x, R_OK) == 0) {
            json_object_set_new(o, "x_test", json_string("x_test.npy"));
            json_object_set_new(o, "y_test", json_string("y_test.npy"));
        }
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    } else {
        text = json_dumps(data, JSON_COMPACT);
    }
    if (text == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    struct farm_fedenc_task_child_args a = {
        .connect = connect,
        .id = (uint32_t)id,
        .data = text,
        .base_dir = json_is_string(data) ? json_string_value(data) : env->work_dir,
        .faults = NULL,
        .secret = secret,
        .connect_timeout = 30,
        .log = host ? host->log : NULL,
        .log_user = host ? host->user : NULL,
    };
    int rc = farm_fedenc_task_child(&a, err);
    free(text);
    return rc;
}
