/* Schedules (GPipe, 1F1B), their checker, the simulator, bubble figures. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "farm/pipeline_sched.h"

int farm_pipe_kind_parse(const char *text, int *kind, struct farm_err *err)
{
    if (text != NULL && strcmp(text, "gpipe") == 0) {
        *kind = FARM_PIPE_GPIPE;
        return 0;
    }
    if (text != NULL && strcmp(text, "1f1b") == 0) {
        *kind = FARM_PIPE_1F1B;
        return 0;
    }
    return farm_err_set(err, FARM_EBADPARAM, "schedule: expected \"gpipe\" or \"1f1b\", got \"%s\"",
                        text ? text : "(null)");
}

const char *farm_pipe_kind_name(int kind)
{
    switch (kind) {
    case FARM_PIPE_GPIPE:
        return "gpipe";
    case FARM_PIPE_1F1B:
        return "1f1b";
    default:
        return "?";
    }
}

static void put(struct farm_pipe_action *a, int op, int s, int m)
{
    a->op = op;
    a->stage = s;
    a->micro = m;
}

int farm_pipe_schedule_init(struct farm_pipe_schedule *self, int kind, int stages, int micro,
                            struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(stages < 1, err, FARM_EBADPARAM, "stages: expected >= 1, got %d", stages);
    FARM_RETURN_ERROR_IF(micro < 1, err, FARM_EBADPARAM, "micro_batches: expected >= 1, got %d",
                         micro);
    FARM_RETURN_ERROR_IF(kind != FARM_PIPE_GPIPE && kind != FARM_PIPE_1F1B, err, FARM_EBADPARAM,
                         "schedule: unknown kind %d", kind);
    FARM_RETURN_ERROR_IF(micro > INT_MAX / 2 / stages, err, FARM_EBADPARAM,
                         "stages x micro_batches too large (%d x %d)", stages, micro);

    int per = 2 * micro;
    struct farm_pipe_action *acts = calloc((size_t)stages * (size_t)per, sizeof(*acts));
    if (acts == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory for the schedule");

    for (int s = 0; s < stages; s++) {
        struct farm_pipe_action *a = acts + (size_t)s * (size_t)per;
        int k = 0;
        if (kind == FARM_PIPE_GPIPE) {
            for (int m = 0; m < micro; m++)
                put(&a[k++], FARM_PIPE_F, s, m);
            for (int m = 0; m < micro; m++)
                put(&a[k++], FARM_PIPE_B, s, m);
        } else {
            int warm = stages - 1 - s;
            if (warm > micro)
                warm = micro;
            int f = 0, b = 0;
            for (; f < warm; f++)
                put(&a[k++], FARM_PIPE_F, s, f);
            while (f < micro) {
                put(&a[k++], FARM_PIPE_F, s, f++);
                put(&a[k++], FARM_PIPE_B, s, b++);
            }
            while (b < micro)
                put(&a[k++], FARM_PIPE_B, s, b++);
        }
    }
    self->kind = kind;
    self->stages = stages;
    self->micro = micro;
    self->per_stage = per;
    self->actions = acts;
    return 0;
}

void farm_pipe_schedule_release(struct farm_pipe_schedule *self)
{
    if (self == NULL)
        return;
    free(self->actions);
    self->actions = NULL;
}

static const char *opname(int op)
{
    return op == FARM_PIPE_F ? "F" : "B";
}

/* Runs the schedule as an event simulation. `done_f`/`done_b` hold end
 * times (negative: not yet run), S*M each. Returns 0, or FARM_ESTATE on a
 * deadlock or on an action whose same-stage forward has not run. */
static int run_sim(const struct farm_pipe_schedule *sc, const double *t_f, const double *t_b,
                   struct farm_pipe_event *events, double *makespan, struct farm_err *err)
{
    int S = sc->stages, M = sc->micro, per = sc->per_stage;
    size_t n = (size_t)S * (size_t)M;
    double *fend = malloc(n * sizeof(double));
    double *bend = malloc(n * sizeof(double));
    int *next = calloc((size_t)S, sizeof(int));
    double *free_at = calloc((size_t)S, sizeof(double));
    int rc = 0;
    if (fend == NULL || bend == NULL || next == NULL || free_at == NULL) {
        rc = farm_err_set(err, -ENOMEM, "out of memory simulating the schedule");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        fend[i] = bend[i] = -1.0;

    double span = 0.0;
    int remaining = S * per;
    while (remaining > 0) {
        int progress = 0;
        for (int s = 0; s < S; s++) {
            while (next[s] < per) {
                const struct farm_pipe_action *a = &sc->actions[(size_t)s * per + next[s]];
                int m = a->micro;
                double ready = free_at[s];
                if (a->op == FARM_PIPE_F) {
                    if (s > 0) {
                        double d = fend[(size_t)(s - 1) * M + m];
                        if (d < 0)
                            break;
                        ready = fmax(ready, d);
                    }
                } else {
                    if (fend[(size_t)s * M + m] < 0) {
                        rc = farm_err_set(err, FARM_ESTATE,
                                          "stage %d: B(%d,%d) comes before F(%d,%d) in its list", s,
                                          s, m, s, m);
                        goto out;
                    }
                    if (s < S - 1) {
                        double d = bend[(size_t)(s + 1) * M + m];
                        if (d < 0)
                            break;
                        ready = fmax(ready, d);
                    }
                }
                double cost = a->op == FARM_PIPE_F ? t_f[s] : t_b[s];
                double end = ready + cost;
                if (a->op == FARM_PIPE_F)
                    fend[(size_t)s * M + m] = end;
                else
                    bend[(size_t)s * M + m] = end;
                if (events != NULL) {
                    struct farm_pipe_event *e = &events[(size_t)s * per + next[s]];
                    e->op = a->op;
                    e->stage = s;
                    e->micro = m;
                    e->start = ready;
                    e->end = end;
                }
                free_at[s] = end;
                if (end > span)
                    span = end;
                next[s]++;
                remaining--;
                progress = 1;
            }
        }
        if (!progress) {
            for (int s = 0; s < S; s++) {
                if (next[s] < per) {
                    const struct farm_pipe_action *a = &sc->actions[(size_t)s * per + next[s]];
                    rc = farm_err_set(err, FARM_ESTATE,
                                      "schedule deadlocks: stage %d waits forever at %s(%d,%d)", s,
                                      opname(a->op), s, a->micro);
                    goto out;
                }
            }
        }
    }
    if (makespan != NULL)
        *makespan = span;
out:
    free(fend);
    free(bend);
    free(next);
    free(free_at);
    return rc;
}

int farm_pipe_schedule_check(const struct farm_pipe_schedule *self, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(self == NULL || self->actions == NULL, err, FARM_ESTATE, "no schedule");
    int S = self->stages, M = self->micro;
    FARM_RETURN_ERROR_IF(S < 1 || M < 1, err, FARM_ESTATE, "bad shape %d x %d", S, M);
    FARM_RETURN_ERROR_IF(self->per_stage != 2 * M, err, FARM_ESTATE,
                         "expected 2*S*M = %d actions, got %d", 2 * S * M, S * self->per_stage);

    size_t n = (size_t)S * (size_t)M;
    unsigned char *seen = calloc(2 * n, 1);
    if (seen == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory checking the schedule");
    int rc = 0;
    for (int s = 0; s < S && rc == 0; s++) {
        int inflight = 0;
        for (int i = 0; i < self->per_stage; i++) {
            const struct farm_pipe_action *a = &self->actions[(size_t)s * self->per_stage + i];
            if (a->stage != s || a->micro < 0 || a->micro >= M ||
                (a->op != FARM_PIPE_F && a->op != FARM_PIPE_B)) {
                rc = farm_err_set(err, FARM_ESTATE,
                                  "stage %d, action %d: not an action of this stage (op %d, "
                                  "stage %d, micro %d)",
                                  s, i, a->op, a->stage, a->micro);
                break;
            }
            unsigned char *f = &seen[(size_t)s * M + a->micro];
            unsigned char *b = &seen[n + (size_t)s * M + a->micro];
            if (a->op == FARM_PIPE_F) {
                if (*f) {
                    rc = farm_err_set(err, FARM_ESTATE, "F(%d,%d) appears twice", s, a->micro);
                    break;
                }
                *f = 1;
                inflight++;
            } else {
                if (*b) {
                    rc = farm_err_set(err, FARM_ESTATE, "B(%d,%d) appears twice", s, a->micro);
                    break;
                }
                if (!*f) {
                    rc = farm_err_set(err, FARM_ESTATE, "B(%d,%d) comes before F(%d,%d)", s,
                                      a->micro, s, a->micro);
                    break;
                }
                *b = 1;
                inflight--;
            }
            if (self->kind == FARM_PIPE_1F1B && inflight > S - s) {
                rc = farm_err_set(err, FARM_ESTATE,
                                  "1f1b: stage %d has %d micro-batches in flight, at most %d "
                                  "allowed",
                                  s, inflight, S - s);
                break;
            }
        }
    }
    free(seen);
    if (rc != 0)
        return rc;
    /* Each stage's list is a permutation of its 2M actions with each F before
     * its B; what remains is whether the cross-stage waits can all be met,
     * which the unit-cost simulation decides. */
    double *ones = malloc((size_t)S * sizeof(double));
    if (ones == NULL)
        return farm_err_set(err, -ENOMEM, "out of memory checking the schedule");
    for (int s = 0; s < S; s++)
        ones[s] = 1.0;
    rc = run_sim(self, ones, ones, NULL, NULL, err);
    free(ones);
    return rc;
}

int farm_pipe_simulate(const struct farm_pipe_schedule *self, const double *t_f, const double *t_b,
                       struct farm_pipe_event *events, double *makespan, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(self == NULL || self->actions == NULL, err, FARM_ESTATE, "no schedule");
    return run_sim(self, t_f, t_b, events, makespan, err);
}

int farm_pipe_events_check(const struct farm_pipe_schedule *self,
                           const struct farm_pipe_event *events, struct farm_err *err)
{
    int S = self->stages, M = self->micro, per = self->per_stage;
    size_t n = (size_t)S * (size_t)M;
    const struct farm_pipe_event **fev = calloc(n, sizeof(*fev));
    const struct farm_pipe_event **bev = calloc(n, sizeof(*bev));
    int rc = 0;
    if (fev == NULL || bev == NULL) {
        rc = farm_err_set(err, -ENOMEM, "out of memory checking events");
        goto out;
    }
    for (int s = 0; s < S && rc == 0; s++) {
        for (int i = 0; i < per; i++) {
            const struct farm_pipe_action *a = &self->actions[(size_t)s * per + i];
            const struct farm_pipe_event *e = &events[(size_t)s * per + i];
            if (e->op != a->op || e->stage != s || e->micro != a->micro) {
                rc = farm_err_set(err, FARM_ESTATE,
                                  "stage %d, action %d: event is %s(%d,%d), schedule says "
                                  "%s(%d,%d)",
                                  s, i, opname(e->op), e->stage, e->micro, opname(a->op), s,
                                  a->micro);
                break;
            }
            if (!(e->end >= e->start)) {
                rc = farm_err_set(err, FARM_ESTATE, "%s(%d,%d) ends before it starts",
                                  opname(e->op), s, e->micro);
                break;
            }
            if (i > 0 && e->start < events[(size_t)s * per + i - 1].end) {
                rc = farm_err_set(err, FARM_ESTATE,
                                  "%s(%d,%d) starts before the previous action of stage %d "
                                  "ends",
                                  opname(e->op), s, e->micro, s);
                break;
            }
            if (e->micro < 0 || e->micro >= M) {
                rc = farm_err_set(err, FARM_ESTATE, "micro-batch %d out of range", e->micro);
                break;
            }
            (e->op == FARM_PIPE_F ? fev : bev)[(size_t)s * M + e->micro] = e;
        }
    }
    for (int s = 0; s < S && rc == 0; s++) {
        for (int m = 0; m < M && rc == 0; m++) {
            const struct farm_pipe_event *f = fev[(size_t)s * M + m];
            const struct farm_pipe_event *b = bev[(size_t)s * M + m];
            if (f == NULL || b == NULL) {
                rc = farm_err_set(err, FARM_ESTATE, "%s(%d,%d) is missing", f ? "B" : "F", s, m);
            } else if (b->start < f->end) {
                rc = farm_err_set(err, FARM_ESTATE, "B(%d,%d) starts before F(%d,%d) ends", s, m, s,
                                  m);
            } else if (s > 0 && fev[(size_t)(s - 1) * M + m] != NULL &&
                       f->start < fev[(size_t)(s - 1) * M + m]->end) {
                rc = farm_err_set(err, FARM_ESTATE, "F(%d,%d) starts before F(%d,%d) ends", s, m,
                                  s - 1, m);
            } else if (s < S - 1 && bev[(size_t)(s + 1) * M + m] != NULL &&
                       b->start < bev[(size_t)(s + 1) * M + m]->end) {
                rc = farm_err_set(err, FARM_ESTATE, "B(%d,%d) starts before B(%d,%d) ends", s, m,
                                  s + 1, m);
            }
        }
    }
out:
    free(fev);
    free(bev);
    return rc;
}

double farm_pipe_makespan(const struct farm_pipe_event *events, int n)
{
    if (n <= 0)
        return 0.0;
    double lo = events[0].start, hi = events[0].end;
    for (int i = 1; i < n; i++) {
        lo = fmin(lo, events[i].start);
        hi = fmax(hi, events[i].end);
    }
    return hi - lo;
}

double farm_pipe_bubble(const struct farm_pipe_event *events, int n, int stages)
{
    double span = farm_pipe_makespan(events, n);
    if (!(span > 0.0) || stages < 1)
        return 0.0;
    double busy = 0.0;
    for (int i = 0; i < n; i++)
        busy += events[i].end - events[i].start;
    return 1.0 - busy / ((double)stages * span);
}

double farm_pipe_bubble_formula(int stages, int micro)
{
    if (stages < 1 || micro < 1)
        return 0.0;
    return (double)(stages - 1) / (double)(micro + stages - 1);
}
