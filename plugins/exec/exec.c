/*
 * exec: runs a shell command (`run`, through sh -c) or an argument vector
 * (`argv`, no shell) in the task's work directory, with FARM_DEPS_DIR set
 * when the task has a dependency package. The command's exit status is the
 * task's exit code; a command killed by a signal reports 128 + the signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "farm/plugin.h"

extern char **environ;

static const struct farm_param params[] = {
    {.name = "run", .type = FARM_PARAM_STRING, .help = "shell command, run with sh -c"},
    {.name = "argv", .type = FARM_PARAM_JSON, .help = "command and arguments (a list), no shell"},
    {0},
};

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    const char *cmd = NULL;
    char **args = NULL;
    json_t *p = NULL, *argv;
    pid_t pid;
    int st, rc;
    sigset_t none;
    posix_spawnattr_t attr;

    if (host->param_string(ctx, "run", &cmd) < 0) {
        p = json_loads(host->params_json(ctx), 0, NULL);
        argv = json_object_get(p, "argv");
        if (!json_is_array(argv) || json_array_size(argv) == 0) {
            host->log(ctx, FARM_LOG_ERROR, "exec: give `run` (a shell command) or `argv` (a list)");
            json_decref(p);
            return -EINVAL;
        }
        args = calloc(json_array_size(argv) + 1, sizeof *args);
        for (size_t i = 0; i < json_array_size(argv); i++) {
            json_t *a = json_array_get(argv, i);
            if (!json_is_string(a)) {
                host->log(ctx, FARM_LOG_ERROR, "exec: argv[%zu] is not text", i);
                free(args);
                json_decref(p);
                return -EINVAL;
            }
            args[i] = (char *)json_string_value(a);
        }
    }

    /* $FARM_SCRATCH_DIR must exist for the command: the host makes it on
     * first use. */
    if (FARM_HOST_HAS(host, scratch_dir))
        host->scratch_dir(ctx);
    /* The command starts with default signal handling, whatever the host
     * installed for itself. */
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    {
        sigset_t all;
        sigfillset(&all);
        posix_spawnattr_setsigdefault(&attr, &all);
    }
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    if (cmd) {
        char *sh[] = {"sh", "-c", (char *)cmd, NULL};
        rc = posix_spawn(&pid, "/bin/sh", NULL, &attr, sh, environ);
    } else {
        rc = posix_spawnp(&pid, args[0], NULL, &attr, args, environ);
    }
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        host->log(ctx, FARM_LOG_ERROR, "exec: cannot start %s: %s", cmd ? "/bin/sh" : args[0],
                  strerror(rc));
        host->set_exit_code(ctx, 127);
        free(args);
        json_decref(p);
        return -rc;
    }
    free(args);
    json_decref(p);
    /* Cancellation needs nothing here: the supervisor signals the whole
     * process tree, the command ends, and waitpid returns. */
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (WIFEXITED(st)) {
        host->set_exit_code(ctx, WEXITSTATUS(st));
        return 0;
    }
    host->log(ctx, FARM_LOG_ERROR, "exec: command killed by signal %d", WTERMSIG(st));
    host->set_exit_code(ctx, 128 + WTERMSIG(st));
    return 0;
}

FARM_PLUGIN_DEFINE(.name = "exec", .version = "1.0.0",
                   .summary = "runs a shell command or an argument vector in the work dir",
                   .params = params, .run = run)
