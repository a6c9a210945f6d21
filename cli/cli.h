/* The farm CLI: shared state and helpers of the cmd_*.c verbs. */
#ifndef FARM_CLI_H
#define FARM_CLI_H

#include <jansson.h>
#include <limits.h>
#include <stdio.h>

#include "farm/error.h"

/* Exit statuses: the CLI contract (docs/cli.md). */
enum {
    CLI_OK = 0,
    CLI_TASK_FAILED = 1,
    CLI_USAGE = 2,
    CLI_UNREACHABLE = 3,
    CLI_TIMEOUT = 124
};

struct cli {
    int json;  /* --json: machine output */
    int color; /* colours on (a terminal, NO_COLOR unset) */
    int tty;   /* stdout is a terminal */
    int quiet; /* print nothing on connection failures (git hooks) */
    char home[2048];
};

struct cli_cmd {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *synopsis;
    const char *help;
};

extern const struct cli_cmd cli_cmds[];

/* The verbs, one per cmd_<verb>.c. argv[0] is the verb. */
#define CLI_VERB(n) int cmd_##n(struct cli *cli, int argc, char **argv);
CLI_VERB(daemon) CLI_VERB(submit) CLI_VERB(list) CLI_VERB(show) CLI_VERB(logs) CLI_VERB(wait)
CLI_VERB(cancel) CLI_VERB(retry) CLI_VERB(pause) CLI_VERB(resume) CLI_VERB(parallel)
CLI_VERB(metrics) CLI_VERB(artifacts) CLI_VERB(artifact) CLI_VERB(run) CLI_VERB(plugins)
CLI_VERB(plugin) CLI_VERB(hook) CLI_VERB(cache)
#undef CLI_VERB

/* Connects to farmd, starting it when `autostart` and it is not running.
 * Returns a socket fd, or -1 after printing why on stderr. */
int cli_connect(struct cli *cli, int autostart);

/* Connects without starting farmd or printing anything: fd, or -errno. */
int cli_probe(struct cli *cli);
/* Whether a farmd lives for cli->home (it holds farmd.pid locked), even
 * one that no longer or not yet serves its socket. */
int cli_farmd_holds_home(struct cli *cli);
/* Waits while a farmd holds the home without serving SOCK (one stopping):
 * 1 with *fd connected if one serves meanwhile, 0 once none holds it. */
int cli_wait_farmd_gone(struct cli *cli, const char *sock, int *fd);

/* Sends one request (stolen) and reads one reply. Returns 0 with *reply set
 * (the caller's), or an exit status after printing why. The request gets
 * "v" added. A reply with ok=false is returned as is. */
int cli_call(struct cli *cli, json_t *req, json_t **reply);
int cli_call_fd(int fd, json_t *req, json_t **reply, int timeout_ms);

/* Writes `j` as one line of JSON on the socket fd, without raising SIGPIPE
 * when the peer is gone. Returns 0 or -errno (-EPIPE: farmd went away). */
int cli_write_json(int fd, const json_t *j);

/* Reads one JSON line from fd, waiting at most timeout_ms (-1: forever).
 * Returns 0, -ETIMEDOUT, or another negative code. */
int cli_read_json(int fd, json_t **out, int timeout_ms);

/* Prints a failed reply's error to stderr and returns the exit status its
 * code maps to. */
int cli_reply_error(const char *verb, json_t *reply);

/* The exit status for a farm error code. */
int cli_exit_for(int code);
int cli_exit_for_name(const char *name);

/* Prints `j` as pretty JSON on stdout. */
void cli_print_json(const json_t *j);

/* Human output helpers. */
const char *cli_state_color(const struct cli *cli, const char *state);
const char *cli_reset(const struct cli *cli);
void cli_reltime(const char *rfc3339, char *buf, size_t len);
void cli_duration(const json_t *task, char *buf, size_t len);
void cli_print_tasks(struct cli *cli, json_t *tasks);
/* A task id (or another count of 1 or more): plain decimal digits, no
 * sign, space or leading zero. Returns 0 with *out set, or -1. */
int cli_parse_id(const char *s, long long *out);

/* Display columns of code point cp on a terminal: 2 for East Asian wide
 * and fullwidth characters, 0 for combining marks, else 1. */
int cli_cp_width(unsigned cp);

/* `s` made fit for one cell of terminal output: control characters (below
 * 0x20, 0x7f, U+0080 to U+009F) and bytes that are not UTF-8 become '?';
 * with maxcols > 0, cut at a character boundary to at most maxcols columns,
 * the cut marked with a final U+2026 (an ellipsis, 1 column). Returns a
 * string the caller frees (NULL when out of memory; "" for s NULL) and its
 * width in *cols. */
char *cli_cell(const char *s, size_t maxcols, size_t *cols);

/* Prints cli_cell(s, maxcols) on f, padded with spaces to `width` columns. */
void cli_print_cell(FILE *f, const char *s, size_t maxcols, size_t width);

/* 1 when `s` is NULL or valid UTF-8 as jansson sees it (json_string()
 * accepts it), else 0. */
int cli_text_ok(const char *s);

/* Checks that `s` (may be NULL) can go into a JSON request, as jansson
 * sees it. Returns 0, or CLI_USAGE after printing
 * `farm VERB: WHAT "S" is not valid UTF-8 (WHY)`, S escaped; WHY NULL
 * says that requests are JSON text. */
int cli_check_text(const char *verb, const char *what, const char *s, const char *why);

/* Usage error: prints "farm VERB: msg" and a hint, returns CLI_USAGE. */
int cli_usage(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the help of one verb: CLI_OK, or CLI_USAGE (and a message) for an
 * unknown verb. */
int cli_help_verb(const char *verb);

/* Path of a sibling binary (farmd, farm-worker). */
void cli_sibling(const struct cli *cli, const char *name, char *buf, size_t len);

#endif

/* Option parsing: if argv[*i] is `name` (then the value is argv[*i + 1]) or
 * `name=value`, sets *value, advances *i past it and returns 1; returns -1
 * when the value is missing (after printing a usage error for `verb`); 0
 * when argv[*i] is another option. */
int cli_opt(const char *verb, int argc, char **argv, int *i, const char *name,
            const char **value);
int cli_flag(char **argv, int i, const char *name);
int cli_wants_help(int argc, char **argv);

/* Runs farm-worker with `args` (NULL-terminated, without argv[0]) and
 * parses its one line of JSON output into *out. Returns 0 or -1 after
 * printing why. */
int cli_worker_json(struct cli *cli, const char *const *args, json_t **out);
/* The same with another sibling program (farm-prepare). */
int cli_helper_json(struct cli *cli, const char *prog, const char *const *args, json_t **out);
