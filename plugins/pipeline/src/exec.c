/* The pipeline executor: stage threads, bounded queues, the schedule run. */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "farm/pipeline.h"

/* A bounded single-producer single-consumer FIFO of tensors. The producer
 * copies into the tail slot and then publishes it; the consumer peeks the
 * head slot, uses it in place and then releases it. Capacity is the
 * sender's (forward) or receiver's (backward) peak number of micro-batches
 * in flight, which bounds what can be outstanding, so a push never waits
 * under a valid schedule; the wait is there for safety only. */
struct slot {
    int micro;
    struct farm_tensor t;
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct slot *slots;
    int cap, head, count;
    const int *abort; /* the executor's abort flag, read under mu */
};

struct stage {
    struct farm_pipe *p;
    int index;
    size_t first, last; /* layers [first, last) */
    pthread_t th;
    int started;
    int cpu; /* -1: not pinned */
    struct farm_optim *optim;
    int nwork;                   /* peak in flight for this stage */
    struct farm_mlp_work **work; /* nwork */
    struct farm_tensor *xin;     /* nwork: input of the work (view or copy) */
    struct farm_tensor *dy;      /* nwork, last stage: loss gradient */
    int *busy;                   /* nwork */
    int *work_of;                /* M: which work micro-batch m uses */
    struct queue *fwd_in, *fwd_out, *bwd_in, *bwd_out;
    double loss_sum;
    size_t correct;
    int rc;
    struct farm_err err;
    struct farm_rng jitter; /* this stage's own stream, for jitter_us */
};

struct farm_pipe {
    struct farm_mlp *m;
    struct farm_pipe_schedule sc;
    size_t S;
    int M;
    size_t max_rows, max_slice;
    struct stage *st;
    struct queue *fq, *bq; /* S-1 each: fq[s] s -> s+1, bq[s] s+1 -> s */
    struct farm_pipe_event *events;
    size_t bytes;
    int pinned;
    int broken;
    unsigned jitter_us;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned gen;
    size_t done;
    int quit;
    int abort;

    /* The current step, set by farm_pipe_step before it wakes the stages. */
    const struct farm_tensor *x;
    const int32_t *labels;
    const struct farm_tensor *targets;
    struct farm_tensor *out;
    int update;
    float grad_scale;
    size_t *off, *len; /* M each */
    struct timespec t0;
};

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static int queue_init(struct queue *q, int cap, size_t rows, size_t cols, const int *abort_flag)
{
    memset(q, 0, sizeof(*q));
    q->abort = abort_flag;
    q->slots = calloc((size_t)cap, sizeof(*q->slots));
    if (q->slots == NULL)
        return -ENOMEM;
    /* From here on queue_release can undo everything, even on failure. */
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->cap = cap;
    for (int i = 0; i < cap; i++) {
        int rc = farm_tensor_init(&q->slots[i].t, rows, cols);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void queue_release(struct queue *q)
{
    if (q->slots == NULL)
        return;
    for (int i = 0; i < q->cap; i++)
        farm_tensor_release(&q->slots[i].t);
    free(q->slots);
    q->slots = NULL;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* Copies src into the tail slot, writes the time into *end (the sender's
 * action ends when its data is in the queue, before anyone can see it),
 * then publishes. Returns 0, or FARM_ECANCELLED after an abort. */
static int count_of(struct queue *q)
{
    return __atomic_load_n(&q->count, __ATOMIC_ACQUIRE);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int queue_push(struct queue *q, int micro, const struct farm_tensor *src,
                      const struct timespec *t0, double *end)
{
    pthread_mutex_lock(&q->mu);
    while (count_of(q) == q->cap && !*q->abort)
        pthread_cond_wait(&q->cv, &q->mu);
    int ab = *q->abort;
    int idx = (q->head + count_of(q)) % q->cap;
    pthread_mutex_unlock(&q->mu);
    if (ab)
        return FARM_ECANCELLED;
    struct slot *s = &q->slots[idx];
    int rc = farm_tensor_resize_rows(&s->t, src->rows);
    if (rc == 0)
        rc = farm_tensor_copy(&s->t, src);
    if (rc != 0)
        return rc;
    s->micro = micro;
    *end = since(t0);
    pthread_mutex_lock(&q->mu);
    __atomic_add_fetch(&q->count, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* How long a receiver polls before it sleeps on the condition variable:
 * a hand-off between stages then costs well under a microsecond instead of
 * a wake-up (tens of microseconds, a scheduler tick on a busy machine),
 * which matters when a section's work per micro-batch is small. */
#define SPIN_NS 20000

static int queue_peek(struct queue *q, struct slot **out)
{
    /* Only this thread moves head, and count is published with release
     * after the slot is written, so a non-zero count seen here makes the
     * head slot readable without the lock. */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned i = 1;; i++) {
        if (count_of(q) > 0) {
            *out = &q->slots[q->head];
            return 0;
        }
        cpu_relax();
        if (i % 64 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &b);
            if ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) > SPIN_NS)
                break;
        }
    }
    pthread_mutex_lock(&q->mu);
    while (count_of(q) == 0 && !*q->abort)
        pthread_cond_wait(&q->cv, &q->mu);
    int ab = *q->abort;
    struct slot *s = &q->slots[q->head];
    pthread_mutex_unlock(&q->mu);
    if (ab)
        return FARM_ECANCELLED;
    *out = s;
    return 0;
}

static void queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->head = (q->head + 1) % q->cap;
    __atomic_sub_fetch(&q->count, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void abort_all(struct farm_pipe *p)
{
    /* Set the flag under every queue's lock so that no waiter misses it. */
    for (size_t i = 0; i + 1 < p->S; i++) {
        pthread_mutex_lock(&p->fq[i].mu);
        pthread_mutex_lock(&p->bq[i].mu);
    }
    p->abort = 1;
    for (size_t i = 0; i + 1 < p->S; i++) {
        pthread_cond_broadcast(&p->fq[i].cv);
        pthread_cond_broadcast(&p->bq[i].cv);
        pthread_mutex_unlock(&p->bq[i].mu);
        pthread_mutex_unlock(&p->fq[i].mu);
    }
}

static int stage_fail(struct stage *st, int rc, const char *what)
{
    if (rc == FARM_ECANCELLED)
        return rc; /* another stage failed first and said why */
    farm_err_set(&st->err, rc, "stage %d: %s failed: %s", st->index, what, farm_strerror(rc));
    abort_all(st->p);
    return rc;
}

static int take_work(struct stage *st)
{
    for (int w = 0; w < st->nwork; w++) {
        if (!st->busy[w]) {
            st->busy[w] = 1;
            return w;
        }
    }
    return -1;
}

static int run_forward(struct stage *st, int mb, struct farm_pipe_event *ev)
{
    struct farm_pipe *p = st->p;
    int last = (size_t)st->index == p->S - 1;
    int w = take_work(st);
    if (w < 0)
        return stage_fail(st, FARM_ESTATE, "forward (no free work area)");
    st->work_of[mb] = w;
    int rc;
    if (st->index == 0) {
        rc = farm_tensor_view_rows(p->x, p->off[mb], p->len[mb], &st->xin[w]);
        ev->start = since(&p->t0);
    } else {
        struct slot *s;
        rc = queue_peek(st->fwd_in, &s);
        if (rc != 0)
            return stage_fail(st, rc, "receive");
        ev->start = since(&p->t0);
        if (s->micro != mb)
            return stage_fail(st, FARM_ESTATE, "receive (micro-batch out of order)");
        rc = farm_tensor_resize_rows(&st->xin[w], s->t.rows);
        if (rc == 0)
            rc = farm_tensor_copy(&st->xin[w], &s->t);
        queue_pop(st->fwd_in);
    }
    if (rc != 0)
        return stage_fail(st, rc, "input");
    const struct farm_tensor *y;
    rc = farm_mlp_forward(p->m, st->work[w], &st->xin[w], &y);
    if (rc != 0)
        return stage_fail(st, rc, "forward");
    if (!last) {
        rc = queue_push(st->fwd_out, mb, y, &p->t0, &ev->end);
        return rc == 0 ? 0 : stage_fail(st, rc, "send");
    }
    if (p->out != NULL) {
        struct farm_tensor ov;
        rc = farm_tensor_view_rows(p->out, p->off[mb], p->len[mb], &ov);
        if (rc == 0)
            rc = farm_tensor_copy(&ov, y);
        if (rc != 0)
            return stage_fail(st, rc, "output copy");
    }
    rc = farm_tensor_resize_rows(&st->dy[w], y->rows);
    if (rc != 0)
        return stage_fail(st, rc, "loss buffer");
    double ls = 0.0;
    if (farm_mlp_loss_kind(p->m) == FARM_LOSS_SOFTMAX_CE) {
        size_t corr = 0;
        rc = farm_loss_softmax_ce(y, p->labels + p->off[mb], p->grad_scale, &st->dy[w], &ls, &corr);
        st->correct += corr;
    } else {
        struct farm_tensor tv;
        rc = farm_tensor_view_rows(p->targets, p->off[mb], p->len[mb], &tv);
        if (rc == 0)
            rc = farm_loss_mse(y, &tv, p->grad_scale, &st->dy[w], &ls);
    }
    if (rc != 0)
        return stage_fail(st, rc, "loss");
    st->loss_sum += ls;
    ev->end = since(&p->t0);
    return 0;
}

static int run_backward(struct stage *st, int mb, struct farm_pipe_event *ev)
{
    struct farm_pipe *p = st->p;
    int last = (size_t)st->index == p->S - 1;
    int w = st->work_of[mb];
    const struct farm_tensor *dy;
    struct slot *s = NULL;
    int rc;
    if (last) {
        dy = &st->dy[w];
        ev->start = since(&p->t0);
    } else {
        rc = queue_peek(st->bwd_in, &s);
        if (rc != 0)
            return stage_fail(st, rc, "receive gradient");
        ev->start = since(&p->t0);
        if (s->micro != mb)
            return stage_fail(st, FARM_ESTATE, "receive gradient (micro-batch out of order)");
        dy = &s->t;
    }
    const struct farm_tensor *dx = NULL;
    rc = farm_mlp_backward(p->m, st->work[w], dy, st->index == 0 ? NULL : &dx);
    if (s != NULL)
        queue_pop(st->bwd_in);
    if (rc != 0)
        return stage_fail(st, rc, "backward");
    st->busy[w] = 0;
    if (st->index > 0) {
        rc = queue_push(st->bwd_out, mb, dx, &p->t0, &ev->end);
        return rc == 0 ? 0 : stage_fail(st, rc, "send gradient");
    }
    ev->end = since(&p->t0);
    return 0;
}

static void stage_step(struct stage *st)
{
    struct farm_pipe *p = st->p;
    int per = p->sc.per_stage;
    st->rc = 0;
    st->loss_sum = 0.0;
    st->correct = 0;
    for (int w = 0; w < st->nwork; w++)
        st->busy[w] = 0;
    farm_mlp_zero_grad(p->m, st->first, st->last);
    for (int i = 0; i < per; i++) {
        const struct farm_pipe_action *a = &p->sc.actions[(size_t)st->index * per + i];
        struct farm_pipe_event *ev = &p->events[(size_t)st->index * per + i];
        ev->op = a->op;
        ev->stage = st->index;
        ev->micro = a->micro;
        if (p->jitter_us > 0) {
            uint64_t us = farm_rng_below(&st->jitter, (uint64_t)p->jitter_us + 1);
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)us * 1000L};
            nanosleep(&ts, NULL);
        }
        int rc =
            a->op == FARM_PIPE_F ? run_forward(st, a->micro, ev) : run_backward(st, a->micro, ev);
        if (rc != 0) {
            st->rc = rc;
            return;
        }
    }
    if (p->update && st->optim != NULL)
        farm_optim_step(st->optim);
}

static void *stage_main(void *arg)
{
    struct stage *st = arg;
    struct farm_pipe *p = st->p;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);

        stage_step(st);

        pthread_mutex_lock(&p->mu);
        p->done++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static int peak_inflight(const struct farm_pipe_schedule *sc, size_t s)
{
    int cur = 0, peak = 0;
    for (int i = 0; i < sc->per_stage; i++) {
        cur += sc->actions[s * (size_t)sc->per_stage + (size_t)i].op == FARM_PIPE_F ? 1 : -1;
        if (cur > peak)
            peak = cur;
    }
    return peak;
}

static size_t layer_in(const struct farm_mlp *m, size_t i)
{
    return farm_mlp_layer(m, i)->in;
}

static size_t layer_out(const struct farm_mlp *m, size_t i)
{
    return farm_mlp_layer(m, i)->out;
}

/* The CPUs this process may run on, in order; returns how many. */
static int allowed_cpus(int *cpus, int cap)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

int farm_pipe_new(struct farm_mlp *m, const struct farm_optim_config *optim,
                  const struct farm_pipe_options *o, size_t max_rows, struct farm_pipe **out,
                  struct farm_err *err)
{
    size_t L = farm_mlp_n_layers(m);
    FARM_RETURN_ERROR_IF(o->micro_batches < 1, err, FARM_EBADPARAM,
                         "micro_batches: expected >= 1, got %d", o->micro_batches);
    FARM_RETURN_ERROR_IF(o->stages < 1 || o->stages > L, err, FARM_EBADPARAM,
                         "stages: expected 1..%zu (the model's layer count), got %zu", L,
                         o->stages);
    FARM_RETURN_ERROR_IF(max_rows < (size_t)o->micro_batches, err, FARM_EBADPARAM,
                         "micro_batches: %d micro-batches need a batch of at least %d rows, "
                         "the batch has %zu",
                         o->micro_batches, o->micro_batches, max_rows);
    FARM_RETURN_ERROR_IF(o->starts == NULL || o->starts[0] != 0, err, FARM_EBADPARAM,
                         "split: the first section must start at layer 0");
    for (size_t s = 1; s < o->stages; s++)
        FARM_RETURN_ERROR_IF(o->starts[s] <= o->starts[s - 1] || o->starts[s] >= L, err,
                             FARM_EBADPARAM, "split: section %zu is empty", s - 1);
    for (size_t s = 1; s < o->stages; s++) {
        size_t k = o->starts[s];
        FARM_RETURN_ERROR_IF(layer_out(m, k - 1) != layer_in(m, k), err, FARM_EBADPARAM,
                             "split at %s: it takes %zu features, %s gives %zu",
                             farm_mlp_layer(m, k)->name, layer_in(m, k),
                             farm_mlp_layer(m, k - 1)->name, layer_out(m, k - 1));
    }

    struct farm_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory");
    p->m = m;
    p->S = o->stages;
    p->M = o->micro_batches;
    p->max_rows = max_rows;
    p->max_slice = (max_rows + (size_t)o->micro_batches - 1) / (size_t)o->micro_batches;
    p->jitter_us = o->jitter_us > 1000000 ? 1000000 : o->jitter_us;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = farm_pipe_schedule_init(&p->sc, o->kind, (int)p->S, p->M, err);
    if (rc != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return rc;
    }
    p->events = calloc(p->S * (size_t)p->sc.per_stage, sizeof(*p->events));
    p->st = calloc(p->S, sizeof(*p->st));
    p->fq = calloc(p->S, sizeof(*p->fq));
    p->bq = calloc(p->S, sizeof(*p->bq));
    p->off = calloc((size_t)p->M, sizeof(size_t));
    p->len = calloc((size_t)p->M, sizeof(size_t));
    if (!p->events || !p->st || !p->fq || !p->bq || !p->off || !p->len) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }

    for (size_t s = 0; s + 1 < p->S; s++) {
        int cap = peak_inflight(&p->sc, s);
        size_t width = layer_in(m, o->starts[s + 1]);
        rc = queue_init(&p->fq[s], cap, p->max_slice, width, &p->abort);
        if (rc == 0)
            rc = queue_init(&p->bq[s], cap, p->max_slice, width, &p->abort);
        if (rc != 0) {
            farm_err_set(err, rc, "out of memory for the queues");
            goto fail;
        }
        p->bytes += 2 * (size_t)cap * p->max_slice * width * sizeof(float);
    }

    for (size_t s = 0; s < p->S; s++) {
        struct stage *st = &p->st[s];
        st->p = p;
        st->index = (int)s;
        st->cpu = -1;
        farm_rng_seed(&st->jitter, 0x6a6974746572ULL + s);
        st->first = o->starts[s];
        st->last = s + 1 < p->S ? o->starts[s + 1] : L;
        st->nwork = peak_inflight(&p->sc, s);
        st->work = calloc((size_t)st->nwork, sizeof(*st->work));
        st->xin = calloc((size_t)st->nwork, sizeof(*st->xin));
        st->dy = calloc((size_t)st->nwork, sizeof(*st->dy));
        st->busy = calloc((size_t)st->nwork, sizeof(int));
        st->work_of = calloc((size_t)p->M, sizeof(int));
        if (!st->work || !st->xin || !st->dy || !st->busy || !st->work_of) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto fail;
        }
        for (int w = 0; w < st->nwork; w++) {
            rc = farm_mlp_work_new(m, st->first, st->last, p->max_slice, &st->work[w]);
            if (rc == 0 && s > 0)
                rc = farm_tensor_init(&st->xin[w], p->max_slice, layer_in(m, st->first));
            if (rc == 0 && s + 1 == p->S)
                rc = farm_tensor_init(&st->dy[w], p->max_slice, layer_out(m, L - 1));
            if (rc != 0) {
                farm_err_set(err, rc, "stage %zu: cannot allocate its work areas", s);
                goto fail;
            }
            p->bytes += farm_mlp_work_bytes(st->work[w]);
            p->bytes +=
                (farm_tensor_size(&st->xin[w]) + farm_tensor_size(&st->dy[w])) * sizeof(float);
        }
        if (s > 0)
            st->fwd_in = &p->fq[s - 1], st->bwd_out = &p->bq[s - 1];
        if (s + 1 < p->S)
            st->fwd_out = &p->fq[s], st->bwd_in = &p->bq[s];
        if (optim != NULL) {
            size_t np = farm_mlp_params(m, st->first, st->last, NULL, 0);
            if (np > 0) {
                struct farm_nn_param *params = calloc(np, sizeof(*params));
                if (params == NULL) {
                    rc = farm_err_set(err, -ENOMEM, "out of memory");
                    goto fail;
                }
                farm_mlp_params(m, st->first, st->last, params, np);
                rc = farm_optim_new(optim, params, np, &st->optim, err);
                free(params);
                if (rc != 0)
                    goto fail;
            }
        }
    }

    /* Stages compute on their own threads: BLAS must not add its own. */
    farm_nn_blas_set_threads(1);

    int cpus[CPU_SETSIZE < 1024 ? CPU_SETSIZE : 1024];
    int ncpu = o->pin ? allowed_cpus(cpus, (int)(sizeof(cpus) / sizeof(cpus[0]))) : 0;
    p->pinned = ncpu > 0;
    for (size_t s = 0; s < p->S; s++) {
        struct stage *st = &p->st[s];
        if (pthread_create(&st->th, NULL, stage_main, st) != 0) {
            rc = farm_err_set(err, -EAGAIN, "cannot start the thread of stage %zu", s);
            goto fail;
        }
        st->started = 1;
        if (ncpu > 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpus[s % (size_t)ncpu], &set);
            if (pthread_setaffinity_np(st->th, sizeof(set), &set) == 0)
                st->cpu = cpus[s % (size_t)ncpu];
            else
                p->pinned = 0;
        }
    }
    *out = p;
    return 0;
fail:
    farm_pipe_free(p);
    return rc;
}

void farm_pipe_free(struct farm_pipe *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (size_t s = 0; p->st != NULL && s < p->S; s++) {
        struct stage *st = &p->st[s];
        if (st->started)
            pthread_join(st->th, NULL);
        for (int w = 0; w < st->nwork; w++) {
            if (st->work != NULL)
                farm_mlp_work_free(st->work[w]);
            if (st->xin != NULL)
                farm_tensor_release(&st->xin[w]);
            if (st->dy != NULL)
                farm_tensor_release(&st->dy[w]);
        }
        free(st->work);
        free(st->xin);
        free(st->dy);
        free(st->busy);
        free(st->work_of);
        farm_optim_free(st->optim);
    }
    for (size_t s = 0; s + 1 < p->S; s++) {
        if (p->fq != NULL)
            queue_release(&p->fq[s]);
        if (p->bq != NULL)
            queue_release(&p->bq[s]);
    }
    free(p->st);
    free(p->fq);
    free(p->bq);
    free(p->off);
    free(p->len);
    free(p->events);
    farm_pipe_schedule_release(&p->sc);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int farm_pipe_step(struct farm_pipe *p, const struct farm_tensor *x, const int32_t *labels,
                   const struct farm_tensor *targets, int update, double *loss_sum, size_t *correct,
                   struct farm_tensor *out, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(p->broken, err, FARM_ESTATE,
                         "the pipeline stopped after an earlier failure");
    size_t rows = x->rows, L = farm_mlp_n_layers(p->m);
    FARM_RETURN_ERROR_IF(rows < (size_t)p->M || rows > p->max_rows, err, FARM_EBADPARAM,
                         "batch of %zu rows: expected %d..%zu", rows, p->M, p->max_rows);
    FARM_RETURN_ERROR_IF(x->cols != farm_mlp_input(p->m), err, FARM_EBADPARAM,
                         "batch has %zu features, the model takes %zu", x->cols,
                         farm_mlp_input(p->m));
    int ce = farm_mlp_loss_kind(p->m) == FARM_LOSS_SOFTMAX_CE;
    FARM_RETURN_ERROR_IF(ce && labels == NULL, err, FARM_EBADPARAM, "the loss needs class labels");
    FARM_RETURN_ERROR_IF(!ce && (targets == NULL || targets->rows != rows ||
                                 targets->cols != layer_out(p->m, L - 1)),
                         err, FARM_EBADPARAM, "the loss needs targets of %zu x %zu", rows,
                         layer_out(p->m, L - 1));
    FARM_RETURN_ERROR_IF(out != NULL && (out->rows != rows || out->cols != layer_out(p->m, L - 1)),
                         err, FARM_EBADPARAM, "output tensor must be %zu x %zu", rows,
                         layer_out(p->m, L - 1));

    /* The same slices as farm_mlp_train_step. */
    for (int mb = 0; mb < p->M; mb++)
        farm_mlp_micro_slice(rows, (size_t)p->M, (size_t)mb, &p->off[mb], &p->len[mb]);
    p->x = x;
    p->labels = labels;
    p->targets = targets;
    p->out = out;
    p->update = update;
    p->grad_scale = 1.0f / (float)rows;
    clock_gettime(CLOCK_MONOTONIC, &p->t0);

    pthread_mutex_lock(&p->mu);
    p->done = 0;
    p->gen++;
    pthread_cond_broadcast(&p->cv);
    while (p->done < p->S)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);

    for (size_t s = 0; s < p->S; s++) {
        if (p->st[s].rc != 0 && p->st[s].rc != FARM_ECANCELLED) {
            p->broken = 1;
            if (err != NULL)
                *err = p->st[s].err;
            return p->st[s].rc;
        }
    }
    for (size_t s = 0; s < p->S; s++) {
        if (p->st[s].rc != 0) {
            p->broken = 1;
            return farm_err_set(err, p->st[s].rc, "stage %zu stopped", s);
        }
    }
    if (loss_sum != NULL)
        *loss_sum = p->st[p->S - 1].loss_sum;
    if (correct != NULL)
        *correct = p->st[p->S - 1].correct;
    return 0;
}

const struct farm_pipe_schedule *farm_pipe_get_schedule(const struct farm_pipe *p)
{
    return &p->sc;
}

const struct farm_pipe_event *farm_pipe_events(const struct farm_pipe *p)
{
    return p->events;
}

size_t farm_pipe_buffer_bytes(const struct farm_pipe *p)
{
    return p->bytes;
}

int farm_pipe_pinned(const struct farm_pipe *p)
{
    return p->pinned;
}
