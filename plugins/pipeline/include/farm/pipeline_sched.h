/*
 * Pipeline schedules, their checker and simulator, the balanced split, and
 * the timeline/chart writers: the pure half of the pipeline plugin.
 *
 * Nothing here touches tensors or threads, so all of it is testable on its
 * own. Stages and micro-batches are 0-based: stage 0 takes the input batch,
 * stage S-1 computes the loss. An action is F(s,m) (forward of micro-batch m
 * on stage s) or B(s,m) (its backward).
 *
 * Dependencies every valid schedule respects:
 *   F(s,m) after F(s-1,m)            (the activation crosses the cut)
 *   B(s,m) after B(s+1,m)            (the gradient crosses back)
 *   B(s,m) after F(s,m)              (on the same stage, earlier in its list)
 *
 * Thread-safety: every function works on the caller's data only; distinct
 * objects may be used from distinct threads.
 */
#ifndef FARM_PIPELINE_SCHED_H
#define FARM_PIPELINE_SCHED_H

#include <stdio.h>

#include "farm/error.h"

/* Schedule kinds. */
enum farm_pipe_kind {
    FARM_PIPE_GPIPE = 1, /* all forwards, then all backwards */
    FARM_PIPE_1F1B = 2   /* warm-up forwards, then alternate, then drain */
};

/* Action kinds. */
enum farm_pipe_op { FARM_PIPE_F = 0, FARM_PIPE_B = 1 };

struct farm_pipe_action {
    int op;    /* enum farm_pipe_op */
    int stage; /* 0..S-1 */
    int micro; /* 0..M-1 */
};

/* A schedule: for every stage, the order in which it runs its actions.
 * Stage s's list is actions[s * per_stage .. (s + 1) * per_stage - 1], with
 * per_stage = 2 * micro (every stage runs each F and each B once). */
struct farm_pipe_schedule {
    int kind;   /* enum farm_pipe_kind */
    int stages; /* S >= 1 */
    int micro;  /* M >= 1 */
    int per_stage;
    struct farm_pipe_action *actions; /* S * per_stage entries, owned */
};

/* Parses "gpipe" or "1f1b" into *kind. Returns 0, or FARM_EBADPARAM with a
 * message naming the valid values. */
int farm_pipe_kind_parse(const char *text, int *kind, struct farm_err *err);

/* "gpipe" or "1f1b" (static string); "?" for anything else. */
const char *farm_pipe_kind_name(int kind);

/* Builds the schedule of `kind` for `stages` x `micro`. Both schedules run
 * every stage's backwards in increasing micro-batch order, so gradients
 * accumulate in the same order under either. GPipe: F(s,0..M-1) then
 * B(s,0..M-1). 1F1B: w = min(S-1-s, M) warm-up forwards, then F,B pairs,
 * then the remaining backwards; at most S-s micro-batches are in flight on
 * stage s. Returns 0, or FARM_EBADPARAM (S < 1, M < 1, unknown kind, or a
 * size that would overflow). On success *self is the caller's, released
 * with farm_pipe_schedule_release. */
int farm_pipe_schedule_init(struct farm_pipe_schedule *self, int kind, int stages, int micro,
                            struct farm_err *err);

/* Frees the action list. NULL is allowed. */
void farm_pipe_schedule_release(struct farm_pipe_schedule *self);

/* Checks that `self` is a valid schedule: exactly 2*S*M actions, each
 * F(s,m) and B(s,m) exactly once on stage s; F(s,m) before B(s,m) in stage
 * s's list; the cross-stage dependencies above can all be met (no stage
 * waits forever on another); and for FARM_PIPE_1F1B at most S-s
 * micro-batches in flight (forwarded but not yet backwarded) on stage s at
 * any point. Returns 0, or FARM_ESTATE with a message naming the first
 * violation. */
int farm_pipe_schedule_check(const struct farm_pipe_schedule *self, struct farm_err *err);

/* One executed (or simulated) action with its start and end time in
 * seconds from the start of the step. */
struct farm_pipe_event {
    int op;
    int stage;
    int micro;
    double start;
    double end;
};

/* Simulates `self` with per-stage costs: a forward on stage s takes
 * t_f[s], a backward t_b[s] (seconds, >= 0). Each stage runs its list in
 * order; an action starts as soon as its stage is free and its
 * dependencies have ended. Writes S*per_stage events (in stage-list order:
 * events[s * per_stage + i] is actions[s * per_stage + i]) into `events`
 * (caller's array, may be NULL) and the makespan into *makespan (may be
 * NULL). With the same t_f and t_b on every stage, both built-in schedules
 * give exactly (M+S-1)(t_f+t_b). Returns 0, or FARM_ESTATE when the
 * schedule deadlocks. */
int farm_pipe_simulate(const struct farm_pipe_schedule *self, const double *t_f, const double *t_b,
                       struct farm_pipe_event *events, double *makespan, struct farm_err *err);

/* Checks measured (or simulated) events, laid out as farm_pipe_simulate
 * writes them, against the dependencies: every action starts no earlier
 * than its dependencies end, and a stage's actions do not overlap and run
 * in list order. Returns 0, or FARM_ESTATE naming the first violation. */
int farm_pipe_events_check(const struct farm_pipe_schedule *self,
                           const struct farm_pipe_event *events, struct farm_err *err);

/* Makespan (latest end minus earliest start) of n events; 0 when n == 0. */
double farm_pipe_makespan(const struct farm_pipe_event *events, int n);

/* The measured bubble fraction 1 - sum(busy) / (stages * makespan) of n
 * events; 0 when the makespan is 0. */
double farm_pipe_bubble(const struct farm_pipe_event *events, int n, int stages);

/* The ideal bubble fraction (S-1)/(M+S-1). */
double farm_pipe_bubble_formula(int stages, int micro);

/* The balanced split. Given n per-layer costs (>= 0), chooses the
 * contiguous partition into `sections` non-empty sections that minimises
 * the largest section cost (a section's cost is the sum of its layers'
 * costs, added in layer order). Exact: dynamic programming over (section,
 * first layer). Among optimal partitions it returns the one whose first
 * section is longest, then the second, and so on. Writes the index of the
 * first layer of each section into starts[0..sections-1] (starts[0] is 0)
 * and the bottleneck into *bottleneck (may be NULL). Returns 0, or
 * FARM_EBADPARAM when sections < 1 or sections > n. */
int farm_pipe_split_balanced(const double *cost, int n, int sections, int *starts,
                             double *bottleneck, struct farm_err *err);

/* The cost of the slowest section of the partition `starts` (as above),
 * summing each section in layer order. */
double farm_pipe_split_bottleneck(const double *cost, int n, int sections, const int *starts);

/* Writes the events as JSON (jansson) to `path`:
 *   {"schedule": "1f1b", "stages": S, "micro_batches": M, "unit": "s",
 *    "makespan": ..., "bubble_measured": ..., "bubble_formula": ...,
 *    "stage_names": [...],
 *    "events": [{"stage": s, "micro": m, "op": "F"|"B",
 *                "start": t0, "end": t1}, ...]}
 * Times are seconds from the earliest start. stage_names may be NULL.
 * Returns 0 or a negative code with a message. */
int farm_pipe_timeline_write_json(const char *path, const struct farm_pipe_schedule *self,
                                  const struct farm_pipe_event *events,
                                  const char *const *stage_names, struct farm_err *err);

/* Writes a Gantt chart of the events as SVG to `path`: one row per stage
 * (labelled with stage_names when given), one box per action (forward
 * blue, backward orange) labelled with its micro-batch, a time axis in
 * milliseconds, and a title with the schedule, S, M and both bubble
 * fractions. Returns 0 or a negative code with a message. */
int farm_pipe_timeline_write_svg(const char *path, const struct farm_pipe_schedule *self,
                                 const struct farm_pipe_event *events,
                                 const char *const *stage_names, struct farm_err *err);

/* Writes a line chart of loss[0..n-1] against step (1-based) as SVG, with
 * axes, ticks and `title`. Non-finite points are skipped. Returns 0 or a
 * negative code with a message. */
int farm_pipe_loss_write_svg(const char *path, const double *loss, int n, const char *title,
                             struct farm_err *err);

#endif
