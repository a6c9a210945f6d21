/*
 * exec: runs a shell command (`run`, through sh -c) or an argument vector
 * (`argv`, no shell) in the task's work directory, with FARM_DEPS_DIR set
 * when the task has a dependency package. The command's exit status is the
 * task's exit code; a command killed by a signal reports 128 + the signal.
 *
 * farm-worker starts the commands of queued exec tasks itself, through the
 * same exec_cmd.c; this plugin runs them wherever a plugin process does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec_cmd.h"
#include "farm/plugin.h"

extern char **environ;

static const struct farm_param params[] = {
    {.name = "run", .type = FARM_PARAM_STRING, .help = "shell command, run with sh -c"},
    {.name = "argv", .type = FARM_PARAM_JSON, .help = "command and arguments (a list), no shell"},
    {0},
};

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    struct farm_exec_cmd cmd;
    json_t *p = json_loads(host->params_json(ctx), 0, NULL);
    char msg[256];
    pid_t pid;
    int st, rc;

    rc = farm_exec_cmd_parse(p, &cmd, msg, sizeof msg);
    json_decref(p);
    if (rc < 0) {
        host->log(ctx, FARM_LOG_ERROR, "%s", msg);
        return rc;
    }
    /* $FARM_SCRATCH_DIR must exist for the command. */
    if (FARM_HOST_HAS(host, scratch_dir))
        host->scratch_dir(ctx);
    rc = farm_exec_cmd_spawn(&cmd, -1, environ, &pid);
    if (rc != 0) {
        host->log(ctx, FARM_LOG_ERROR, "exec: cannot start %s: %s", cmd.file, strerror(rc));
        host->set_exit_code(ctx, 127);
        farm_exec_cmd_free(&cmd);
        return -rc;
    }
    farm_exec_cmd_free(&cmd);
    /* Cancellation needs nothing here: the supervisor signals the whole
     * process tree, the command ends, and waitpid returns. */
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    rc = farm_exec_cmd_code(st, msg, sizeof msg);
    if (msg[0])
        host->log(ctx, FARM_LOG_ERROR, "%s", msg);
    host->set_exit_code(ctx, rc);
    return 0;
}

FARM_PLUGIN_DEFINE(.name = "exec", .version = "1.0.0",
                   .summary = "runs a shell command or an argument vector in the work dir",
                   .params = params, .run = run)
