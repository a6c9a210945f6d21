#define _GNU_SOURCE
#include "exec_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

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
    if (!c->argv[0][0]) {
        snprintf(msg, len, "exec: argv[0], the program, is empty");
        free(c->argv);
        c->argv = NULL;
        return -EINVAL;
    }
    c->file = c->argv[0];
    c->params = json_incref(params);
    return 0;
}

/* The signals to set back to their default before the command starts. */
static sigset_t g_reset;
static int g_reset_known;
static int g_own_group = -1;

int farm_exec_cmd_own_group(void)
{
    /* Under `farm run` on a terminal, farm is the terminal's foreground job:
     * a task in a process group of its own would be a background job there,
     * stopped (SIGTTIN, SIGTTOU) as soon as it used the terminal. It then
     * stays in farm's group, as a command of a shell script does. */
    if (g_own_group < 0) {
        int fd = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
        g_own_group = !(fd >= 0 && tcgetpgrp(fd) == getpgrp());
        if (fd >= 0)
            close(fd);
    }
    return g_own_group;
}

void farm_exec_cmd_prepare(void)
{
    farm_exec_cmd_own_group();
    sigemptyset(&g_reset);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
            sa.sa_handler != SIG_DFL)
            sigaddset(&g_reset, sig);
    }
    g_reset_known = 1;
}

int farm_exec_cmd_spawn(const struct farm_exec_cmd *c, int out_fd, char *const envp[],
                        pid_t *pid)
{
    /* The signals farm's own processes handle or ignore, which they may have
     * set after farm_exec_cmd_prepare. */
    static const int own[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD,
                              SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM};
    sigset_t all, saved, reset;
    volatile int err = 0;
    int own_group;
    const char *search = getenv("PATH");
    char buf[PATH_MAX];
    pid_t p;

    if (g_reset_known) {
        reset = g_reset;
        for (size_t i = 0; i < sizeof own / sizeof *own; i++)
            sigaddset(&reset, own[i]);
    } else {
        sigfillset(&reset);
    }
    /* vfork: the child borrows this process's memory until it execs, so no
     * copy of the page tables and no stack of its own to map. No handler of
     * ours may run in it: every signal stays blocked until the child has set
     * the dispositions back to their defaults. */
    own_group = farm_exec_cmd_own_group();
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);
    p = vfork();
    if (p == 0) {
        struct sigaction dfl;
        sigset_t none;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP && sigismember(&reset, sig) == 1)
                sigaction(sig, &dfl, NULL);
        if (out_fd >= 0) {
            int nul = open("/dev/null", O_RDONLY);
            if (nul < 0 || (nul != STDIN_FILENO && dup2(nul, STDIN_FILENO) < 0) ||
                dup2(out_fd, STDOUT_FILENO) < 0 || dup2(out_fd, STDERR_FILENO) < 0) {
                err = errno ? errno : EBADF;
                _exit(127);
            }
            if (nul != STDIN_FILENO)
                close(nul);
        }
        /* A process group of its own, as a shell gives a job: a `kill 0`
         * in the command (a test script's cleanup trap, say) reaches the
         * command's processes, not whoever started it. */
        if (own_group)
            setpgid(0, 0);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (c->shell || strchr(c->file, '/')) {
            execve(c->file, c->argv, envp);
            err = errno;
        } else {
            /* Looked up in PATH as execvp would, but a file that is not a
             * program (ENOEXEC) is an error, never handed to a shell:
             * argv runs without one. */
            const char *d = search ? search : "/bin:/usr/bin";
            size_t flen = strlen(c->file);
            int denied = 0, why = ENOENT;
            /* (err is the parent's too: set only once nothing started.) */
            for (;;) {
                const char *end = strchr(d, ':');
                size_t dlen = end ? (size_t)(end - d) : strlen(d);
                if (dlen == 0) {
                    d = ".";
                    dlen = 1;
                }
                if (dlen + 1 + flen < sizeof buf) {
                    memcpy(buf, d, dlen);
                    buf[dlen] = '/';
                    memcpy(buf + dlen + 1, c->file, flen + 1);
                    execve(buf, c->argv, envp);
                    if (errno == EACCES)
                        denied = 1;
                    else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                             errno != ENODEV && errno != ETIMEDOUT) {
                        why = errno;
                        break;
                    }
                }
                if (!end)
                    break;
                d = end + 1;
            }
            err = why == ENOENT && denied ? EACCES : why;
        }
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &saved, NULL);
    if (p < 0)
        return errno;
    if (err) {
        /* The child could not start the command and has exited. */
        int rc = err;
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
            ;
        return rc;
    }
    *pid = p;
    return 0;
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
