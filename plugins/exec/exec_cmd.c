#define _GNU_SOURCE
#include "exec_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int farm_exec_cmd_parse(json_t *params, struct farm_exec_cmd *c, char *msg, size_t len)
{
    json_t *run = json_object_get(params, "run"), *argv = json_object_get(params, "argv");
    size_t n;
    memset(c, 0, sizeof *c);
    if (json_is_string(run)) {
        c->argv = calloc(4, sizeof *c->argv);
        if (!c->argv) {
            snprintf(msg, len, "exec: out of memory");
            return -ENOMEM;
        }
        c->argv[0] = "sh";
        c->argv[1] = "-c";
        c->argv[2] = (char *)json_string_value(run);
        c->file = "/bin/sh";
        c->shell = 1;
        c->params = json_incref(params);
        return 0;
    }
    if (!json_is_array(argv) || (n = json_array_size(argv)) == 0) {
        snprintf(msg, len, "exec: give `run` (a shell command) or `argv` (a list)");
        return -EINVAL;
    }
    c->argv = calloc(n + 1, sizeof *c->argv);
    if (!c->argv) {
        snprintf(msg, len, "exec: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(argv, i);
        if (!json_is_string(a)) {
            snprintf(msg, len, "exec: argv[%zu] is not text", i);
            free(c->argv);
            c->argv = NULL;
            return -EINVAL;
        }
        c->argv[i] = (char *)json_string_value(a);
    }
    c->file = c->argv[0];
    c->params = json_incref(params);
    return 0;
}

int farm_exec_cmd_spawn(const struct farm_exec_cmd *c, int out_fd, char *const envp[],
                        pid_t *pid)
{
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    sigset_t none, all;
    int rc;

    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawn_file_actions_init(&fa);
    if (out_fd >= 0) {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    }
    if (c->shell)
        rc = posix_spawn(pid, c->file, &fa, &attr, c->argv, envp);
    else
        rc = posix_spawnp(pid, c->file, &fa, &attr, c->argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

void farm_exec_cmd_free(struct farm_exec_cmd *c)
{
    free(c->argv);
    json_decref(c->params);
    memset(c, 0, sizeof *c);
}

int farm_exec_cmd_code(int st, char *msg, size_t len)
{
    if (msg && len)
        msg[0] = '\0';
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (msg && len)
        snprintf(msg, len, "exec: command killed by signal %d", WTERMSIG(st));
    return 128 + WTERMSIG(st);
}
