/*
 * exec's command: from the task's parameters to a started process. The exec
 * plugin uses it, and so does farm-worker, which starts the command of an
 * exec task itself instead of forking a plugin process for it (one process
 * less per task, same behaviour).
 */
#ifndef FARM_EXEC_CMD_H
#define FARM_EXEC_CMD_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct farm_exec_cmd {
    char **argv;     /* NULL-terminated; borrowed from `params` */
    json_t *params;  /* a reference, kept while argv is in use */
    const char *file; /* what is started: /bin/sh, or argv[0] looked up in PATH */
    int shell;       /* 1 for `run` (sh -c), 0 for `argv` */
};

/* Reads `run` (a shell command) or `argv` (a list of strings) from the
 * task's parameters. 0, or -EINVAL with a message for the log in `msg`. */
int farm_exec_cmd_parse(json_t *params, struct farm_exec_cmd *c, char *msg, size_t len);

/* Starts the command, in a process group of its own (see
 * farm_exec_cmd_own_group), with default signal handling and no blocked
 * signal.
 * `out_fd` is -1 (inherit) or becomes stdout and stderr, with stdin from
 * /dev/null. Returns 0 or an errno value (the command could not be started:
 * not found, not executable, ...). */
int farm_exec_cmd_spawn(const struct farm_exec_cmd *c, int out_fd, char *const envp[],
                        pid_t *pid);

/* Whether a command (or a plugin process) gets a process group of its own:
 * yes, unless this process is the foreground job of a terminal (`farm run`
 * on one), where a task of its own group could not use the terminal. */
int farm_exec_cmd_own_group(void);

/* Records which signals are not at their default disposition in this
 * process, for farm_exec_cmd_spawn in it and in the processes forked from it
 * (which then set back only those, and the ones farm's own code handles,
 * instead of every signal). Without it, every signal is set back. */
void farm_exec_cmd_prepare(void);

void farm_exec_cmd_free(struct farm_exec_cmd *c);

/* The exit code and log line of a command that ended with wait status `st`:
 * its exit status, or 128 + the signal that killed it (then `msg` says so). */
int farm_exec_cmd_code(int st, char *msg, size_t len);

#endif
