/* Execution of a scheduled candidate graph: one thread per cluster node,
 * real tensors, real copies between nodes, emulated node speeds and links. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops-internal.h"

struct ex {
    const struct farm_gs_opgraph *g;
    const struct farm_gs_cluster *c;
    const struct farm_gs_sched *s;
    int ni, p;
    float **buf;     /* [op * p + node] */
    double *arrive;  /* [op * p + node], emulated seconds */
    char *ready;     /* [op * p + node] */
    char *need;      /* [op * p + node]: a consumer runs there */
    char *shared;    /* [op]: buffers are the caller's inputs */
    int **order, *norder;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int abort, rc;
    int (*cancelled)(void *);
    void *arg;
    struct farm_gs_exec_stats *st;
};

struct node_arg {
    struct ex *x;
    int k;
};

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(struct ex *x, int rc)
{
    pthread_mutex_lock(&x->mu);
    if (!x->abort) {
        x->abort = 1;
        x->rc = rc;
    }
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

static void *node_main(void *argp)
{
    struct node_arg *na = argp;
    struct ex *x = na->x;
    const struct farm_gs_opgraph *g = x->g;
    const struct farm_gs_node *nd = &x->c->nodes[na->k];
    int k = na->k, p = x->p;
    double clock = 0;
    /* One BLAS thread per node thread: the node is the unit of parallelism. */
    openblas_set_num_threads(1);
    for (int q = 0; q < x->norder[k]; q++) {
        int o = x->order[k][q];
        const struct farm_gs_op *op = &g->ops[o];
        const float *ins[FARM_GS_MAXIN];
        double vstart = clock;
        pthread_mutex_lock(&x->mu);
        for (;;) {
            int ok = 1;
            for (int j = 0; j < op->nin; j++)
                ok &= x->ready[op->in[j] * p + k];
            if (ok || x->abort)
                break;
            pthread_cond_wait(&x->cv, &x->mu);
        }
        int stop = x->abort;
        for (int j = 0; j < op->nin && !stop; j++) {
            ins[j] = x->buf[op->in[j] * p + k];
            vstart = fmax(vstart, x->arrive[op->in[j] * p + k]);
        }
        pthread_mutex_unlock(&x->mu);
        if (stop)
            break;
        if (x->cancelled && x->cancelled(x->arg)) {
            fail(x, FARM_ECANCELLED);
            break;
        }
        size_t n = (size_t)op->rows * (size_t)op->cols;
        float *out = x->buf[o * p + k];
        double t0 = farm__gs_cpu_now();
        farm__gs_kernel(op, g, ins, out);
        double dt = farm__gs_cpu_now() - t0;
        int cls = farm_gs_opkind_class(op->kind);
        double vfin = vstart + dt / (nd->speed[cls] * nd->cores);
        clock = vfin;
        x->st->start[o - x->ni] = vstart;
        x->st->finish[o - x->ni] = vfin;
        pthread_mutex_lock(&x->mu);
        x->arrive[o * p + k] = vfin;
        x->ready[o * p + k] = 1;
        pthread_cond_broadcast(&x->cv);
        pthread_mutex_unlock(&x->mu);
        for (int l = 0; l < p; l++) {
            if (l == k || !x->need[o * p + l])
                continue;
            float *copy = x->buf[o * p + l];
            double w0 = wall_now();
            memcpy(copy, out, n * sizeof(float));
            double w = wall_now() - w0;
            pthread_mutex_lock(&x->mu);
            x->arrive[o * p + l] =
                vfin + x->c->lat[k * p + l] + 4.0 * (double)n / x->c->bw[k * p + l];
            x->ready[o * p + l] = 1;
            x->st->copy_seconds += w;
            x->st->copies++;
            pthread_cond_broadcast(&x->cv);
            pthread_mutex_unlock(&x->mu);
        }
    }
    return NULL;
}

void farm_gs_exec_stats_release(struct farm_gs_exec_stats *st)
{
    if (!st)
        return;
    free(st->start);
    free(st->finish);
    memset(st, 0, sizeof *st);
}

/* Sort key of a node's operators: scheduled start, then graph order (a
 * topological order), which rules out a cycle of waits between nodes. */
struct okey {
    double start;
    int op;
};

static int cmp_start(const void *a, const void *b)
{
    const struct okey *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

static int sort_order(int *ops, int len, const struct farm_gs_sched *s, int ni)
{
    struct okey *k = malloc((size_t)len * sizeof *k + sizeof *k);
    if (!k)
        return -ENOMEM;
    for (int i = 0; i < len; i++)
        k[i] = (struct okey){s->start[ops[i] - ni], ops[i]};
    qsort(k, (size_t)len, sizeof *k, cmp_start);
    for (int i = 0; i < len; i++)
        ops[i] = k[i].op;
    free(k);
    return 0;
}

int farm_gs_exec(const struct farm_gs_opgraph *g, const struct farm_gs_cluster *c,
                 const struct farm_gs_sched *s, float *const *inputs, float ***outputs,
                 struct farm_gs_exec_stats *stats, int (*cancelled)(void *), void *arg)
{
    int p = c->p, n = g->n, ni = g->ninputs, rc = -ENOMEM;
    if (s->n != n - ni)
        return -EINVAL;
    struct farm_gs_exec_stats st = {0};
    struct ex x = {.g = g, .c = c, .s = s, .ni = ni, .p = p, .cancelled = cancelled, .arg = arg,
                   .st = &st};
    size_t np = (size_t)n * (size_t)p;
    x.buf = calloc(np, sizeof *x.buf);
    x.arrive = calloc(np, sizeof *x.arrive);
    x.ready = calloc(np, 1);
    x.need = calloc(np, 1);
    x.order = calloc((size_t)p, sizeof *x.order);
    x.norder = calloc((size_t)p, sizeof *x.norder);
    st.start = calloc((size_t)(n - ni) + 1, sizeof(double));
    st.finish = calloc((size_t)(n - ni) + 1, sizeof(double));
    pthread_t *th = calloc((size_t)p, sizeof *th);
    struct node_arg *na = calloc((size_t)p, sizeof *na);
    float **res = calloc((size_t)g->nout, sizeof *res);
    int mu_ok = 0, started = 0;
    if (!x.buf || !x.arrive || !x.ready || !x.need || !x.order || !x.norder || !st.start ||
        !st.finish || !th || !na || !res)
        goto out;
    for (int k = 0; k < p; k++)
        if (!(x.order[k] = malloc((size_t)(n - ni) * sizeof(int) + sizeof(int))))
            goto out;
    for (int i = 0; i < ni; i++)
        for (int k = 0; k < p; k++) {
            x.buf[i * p + k] = inputs[i];
            x.ready[i * p + k] = 1;
        }
    for (int o = ni; o < n; o++) {
        int k = s->proc[o - ni];
        if (k < 0 || k >= p) {
            rc = -EINVAL;
            goto out;
        }
        x.order[k][x.norder[k]++] = o;
        for (int j = 0; j < g->ops[o].nin; j++)
            x.need[g->ops[o].in[j] * p + k] = 1;
    }
    for (int k = 0; k < p; k++)
        if (sort_order(x.order[k], x.norder[k], s, ni))
            goto out;
    /* Every output and every copy gets its buffer before the run, written
     * once so its pages exist: like a runtime's memory plan, and so that
     * page faults do not land in the measured kernel times. */
    for (int o = ni; o < n; o++) {
        size_t len = (size_t)g->ops[o].rows * (size_t)g->ops[o].cols;
        for (int k = 0; k < p; k++) {
            if (k != s->proc[o - ni] && !x.need[o * p + k])
                continue;
            if (!(x.buf[o * p + k] = farm__gs_alloc(len)))
                goto out;
            memset(x.buf[o * p + k], 0, len * sizeof(float));
        }
    }
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cv, NULL);
    mu_ok = 1;
    openblas_set_num_threads(1);
    double w0 = wall_now();
    for (; started < p; started++) {
        na[started] = (struct node_arg){&x, started};
        if ((rc = pthread_create(&th[started], NULL, node_main, &na[started]))) {
            fail(&x, -rc);
            break;
        }
    }
    for (int k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    st.wall = wall_now() - w0;
    if (x.abort) {
        rc = x.rc;
        goto out;
    }
    st.makespan = 0;
    for (int t = 0; t < n - ni; t++)
        st.makespan = fmax(st.makespan, st.finish[t]);
    for (int q = 0; q < g->nout; q++) {
        int o = g->outputs[q], k = s->proc[o - ni];
        res[q] = x.buf[o * p + k];
        x.buf[o * p + k] = NULL;
    }
    *outputs = res;
    res = NULL;
    *stats = st;
    memset(&st, 0, sizeof st);
    rc = 0;
out:
    if (x.buf)
        for (size_t i = (size_t)ni * (size_t)p; i < np; i++)
            free(x.buf[i]);
    free(x.buf);
    free(x.arrive);
    free(x.ready);
    free(x.need);
    for (int k = 0; x.order && k < p; k++)
        free(x.order[k]);
    free(x.order);
    free(x.norder);
    free(th);
    free(na);
    farm_gs_free_buffers(res, g->nout);
    farm_gs_exec_stats_release(&st);
    if (mu_ok) {
        pthread_mutex_destroy(&x.mu);
        pthread_cond_destroy(&x.cv);
    }
    return rc;
}
