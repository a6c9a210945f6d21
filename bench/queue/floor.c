/*
 * farm-queue-floor: the floor of one supervisor process per task, for
 * bench/queue.sh.
 *
 *   farm-queue-floor N JOBS CMD [ARG]...
 *
 * Runs CMD N times, JOBS at a time, each under a supervisor forked for it
 * from this small process: the supervisor takes a session of its own,
 * becomes a subreaper, starts CMD through vfork with stdin and output on
 * /dev/null, and waits for it. No queue, no log, no events: what is left
 * when a farm with per-task supervisors costs nothing of its own. Prints
 * the wall time in seconds; exits 1 if a command failed to run or failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The supervisor: never returns. */
static void supervise(char **argv, int devnull)
{
    pid_t child;
    int st;
    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    child = vfork();
    if (child == 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (child < 0)
        _exit(126);
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    /* A subreaper collects whatever the command left behind. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int main(int argc, char **argv)
{
    long n, jobs, started = 0, done = 0, failed = 0;
    int devnull;
    double t0;
    if (argc < 4 || (n = strtol(argv[1], NULL, 10)) <= 0 ||
        (jobs = strtol(argv[2], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: farm-queue-floor N JOBS CMD [ARG]...\n");
        return 2;
    }
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        fprintf(stderr, "farm-queue-floor: /dev/null: %s\n", strerror(errno));
        return 2;
    }
    t0 = now();
    while (done < n) {
        int st;
        pid_t w;
        while (started < n && started - done < jobs) {
            pid_t p = fork();
            if (p == 0)
                supervise(argv + 3, devnull);
            if (p < 0) {
                fprintf(stderr, "farm-queue-floor: fork: %s\n", strerror(errno));
                return 2;
            }
            started++;
        }
        w = waitpid(-1, &st, 0);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "farm-queue-floor: waitpid: %s\n", strerror(errno));
            return 2;
        }
        done++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed++;
    }
    printf("%.6f\n", now() - t0);
    if (failed) {
        fprintf(stderr, "farm-queue-floor: %ld of %ld commands failed\n", failed, n);
        return 1;
    }
    return 0;
}
