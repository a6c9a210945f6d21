/* farmd internals shared between its source files. */
#ifndef FARM_FARMD_H
#define FARM_FARMD_H

#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

#include "farm/error.h"

struct client;

struct run {
    struct run *next;
    int64_t id;
    int attempt;
    uv_process_t proc;
    uv_pipe_t events;
    uv_timer_t timeout, kill;
    char *buf;
    size_t len, cap;
    json_t *result;
    json_t *deps;
    double progress;
    char *progress_what;
    int timed_out, cancel_requested, stopping, closed_handles;
    int timeout_due;      /* the deadline passed; waiting one loop turn */
    int start_errno;      /* the fork server could not start the worker */
    int exit_unknown;     /* its fork server died before reporting on it */
    int exited, eof, finalized, term_signal;
    int64_t exit_status;
    pid_t pid;            /* the worker; 0 until the fork server says */
    int via_server;       /* started by a fork server, not uv_spawn */
    int server;           /* which one (SRV_EXEC or SRV_PLUGIN) */
    int await_eof;        /* the fork server died: its exit status is lost */
    int n_handles;        /* handles to close before freeing */
    uint64_t token;
    int64_t started_mono;
    int slot;             /* its scratch directory: scratch/<slot> */
};

struct settings {
    int jobs;
    int durability_full;
    int64_t grace_ms;
    int64_t log_cap;
    int keep_days;
    int keep_runs;
    int max_interrupts;
    int foreground;
    int check_only;
};

struct daemon {
    uv_loop_t *loop;
    uv_pipe_t server;
    uv_signal_t sigterm, sigint;
    uv_check_t commit_check;
    uv_timer_t retention_timer, stop_timer;
    sqlite3 *db;
    char home[2048]; /* FARM_HOME; the socket path limits it further */
    char worker_path[PATH_MAX];
    char host_path[PATH_MAX]; /* farm-plugin-host */
    struct settings cfg;
    int paused, stopping;
    int in_tx;
    /* Ready tasks: a binary heap, highest priority first, then lowest id. */
    struct ready {
        int64_t prio, id;
    } *heap;
    size_t heap_len, heap_cap;
    struct run *runs;
    int n_running;
    struct client *clients;
    json_t *plugin_cache; /* name -> {path, size, mtime, desc} */
    json_t *given;        /* options given on the command line */
    /* The fork servers: [SRV_EXEC] farm-worker --serve (static) for exec
     * tasks, [SRV_PLUGIN] farm-plugin-host --serve for the others, started
     * when the first of those comes. Either can run any task. */
    struct server {
        int fd;
        pid_t pid;
        int alive, tried;
        uv_poll_t *poll; /* one per incarnation, freed when closed */
    } srv[2];
    uint64_t next_token;
    int64_t started_ms;
    int64_t git_submissions; /* git submissions made, counted from the start's
                                database; 0: none, so no task needs a git note */
};

enum { SRV_EXEC, SRV_PLUGIN };

extern struct daemon farmd;

/* db transaction batching: every write of one loop iteration shares one
 * transaction, committed before replies are sent (see farmd.c). */
void farmd_tx(void);
int farmd_commit(void);

/* requests (farmd_req.c) */
void farmd_handle(struct client *c, json_t *req);
void farmd_client_send(struct client *c, json_t *msg); /* steals msg; after commit */
void farmd_client_send_now(struct client *c, json_t *msg); /* steals msg */
void farmd_task_ended(int64_t id);
void farmd_set_terminal(int64_t id, int attempt, const char *state, int exit_code, int has_exit,
                        const char *reason);
void farmd_notify_progress(int64_t id, double fraction, const char *what);
void farmd_notify_idle(void);
void farmd_flush_clients(void);
/* A commit failed and farmd stops: tells every client whose reply waited
 * for it (their requests were not recorded) why, instead of nothing. */
void farmd_fail_clients(const char *msg);

/* scheduling (farmd.c) */
void farmd_ready_push(int64_t id, int64_t prio);
void farmd_schedule(void);
int farmd_cancel(int64_t id, const char *reason, struct farm_err *err);
void farmd_finish_dependents(int64_t id, const char *state);
struct run *farmd_find_run(int64_t id);
json_t *farmd_task_json(int64_t id, int full);
int farmd_describe_plugin(const char *name, json_t **desc, struct farm_err *err);
void farmd_begin_stop(void);
void farmd_event(int64_t task, const char *kind, const char *data);

#endif
