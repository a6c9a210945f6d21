#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>

#include "cli.h"
#include "farm/util.h"

/* `daemon start` when farmd runs already: the options given were checked,
 * not applied (farmd reads them when it starts). */
static void already_running(struct cli *cli, int with_options)
{
    if (!cli->json)
        printf("farmd is already running\n");
    if (with_options)
        fprintf(stderr, "farm daemon: the options given were not applied: farmd runs with the "
                        "ones it started with (farm daemon stop, then start with them)\n");
}

static int status(struct cli *cli)
{
    int fd = cli_connect(cli, 0);
    json_t *reply;
    if (fd < 0)
        return CLI_UNREACHABLE;
    if (cli_call_fd(fd, json_pack("{s:s}", "op", "status"), &reply, 10000) < 0) {
        close(fd);
        fprintf(stderr, "farm daemon: no answer from farmd\n");
        return CLI_UNREACHABLE;
    }
    close(fd);
    if (cli->json) {
        cli_print_json(reply);
    } else {
        json_t *counts = json_object_get(reply, "counts");
        printf("farmd pid %lld, %s, %lld job(s), %lld running, %lld queued, %lld waiting%s\n",
               (long long)json_integer_value(json_object_get(reply, "pid")),
               json_string_value(json_object_get(reply, "home")),
               (long long)json_integer_value(json_object_get(reply, "jobs")),
               (long long)json_integer_value(json_object_get(reply, "running")),
               (long long)json_integer_value(json_object_get(counts, "queued")),
               (long long)json_integer_value(json_object_get(counts, "waiting")),
               json_is_true(json_object_get(reply, "paused")) ? " (paused)" : "");
    }
    json_decref(reply);
    return CLI_OK;
}

static int start(struct cli *cli, int argc, char **argv)
{
    char path[PATH_MAX], *args[32];
    int n = 0, fd, st;
    pid_t pid;
    struct farm_err err;
    cli_sibling(cli, "farmd", path, sizeof path);
    args[n++] = "farmd";
    for (int i = 1; i < argc && n < 30; i++) {
        static const char *with_value[] = {"--jobs", "--durability", "--grace", "--log-cap",
                                           "--keep-days", "--keep-runs", NULL};
        int known = 0;
        if (!strcmp(argv[i], "--json"))
            continue;
        for (int k = 0; with_value[k]; k++) {
            size_t l = strlen(with_value[k]);
            if (!strcmp(argv[i], with_value[k])) {
                if (i + 1 >= argc)
                    return cli_usage("daemon", "%s needs a value", argv[i]);
                args[n++] = argv[i++];
                known = 1;
                break;
            }
            if (!strncmp(argv[i], with_value[k], l) && argv[i][l] == '=') {
                argv[i][l] = '\0';
                args[n++] = argv[i];
                argv[i] += l + 1;
                known = 1;
                break;
            }
        }
        if (!known)
            return cli_usage("daemon", "unknown option \"%s\"", argv[i]);
        args[n++] = argv[i];
    }
    args[n] = NULL;
    /* Check the options in the foreground first (farmd --check), so that a
     * bad value is reported here rather than in farmd.log. */
    {
        char *check[34];
        int m = 0, cst;
        pid_t cp;
        for (int k = 0; k < n; k++)
            check[m++] = args[k];
        check[m++] = "--check";
        check[m] = NULL;
        cp = fork();
        if (cp == 0) {
            execv(path, check);
            _exit(127);
        }
        waitpid(cp, &cst, 0);
        if (!WIFEXITED(cst) || WEXITSTATUS(cst) != 0)
            return CLI_USAGE;
    }
    fd = cli_probe(cli);
    if (fd >= 0) {
        close(fd);
        already_running(cli, n > 1);
        return status(cli);
    }
    if (farm_home_ensure(cli->home, &err) < 0) {
        fprintf(stderr, "farm daemon: %s\n", err.msg);
        return CLI_USAGE;
    }
    {
        /* One stopping (or another start's, not serving yet): wait for it. */
        char sock[2200];
        snprintf(sock, sizeof sock, "%s/farm.sock", cli->home);
        if (cli_wait_farmd_gone(cli, sock, &fd)) {
            close(fd);
            already_running(cli, n > 1);
            return status(cli);
        }
    }
    pid = fork();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        setsid();
        if (fork() != 0)
            _exit(0);
        dup2(nul, 0);
        dup2(nul, 1);
        execv(path, args);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    for (int i = 0; i < 200; i++) {
        struct timespec ts = {0, 25 * 1000000};
        fd = cli_probe(cli);
        if (fd >= 0) {
            close(fd);
            return status(cli);
        }
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "farm daemon: farmd did not start; see %s/farmd.log\n", cli->home);
    return CLI_UNREACHABLE;
}

static int stop(struct cli *cli)
{
    int fd = cli_probe(cli);
    json_t *reply;
    char pidfile[2200];
    if (fd < 0) {
        if (!cli->json)
            printf("farmd is not running\n");
        return CLI_OK;
    }
    if (cli_call_fd(fd, json_pack("{s:s}", "op", "stop"), &reply, 10000) < 0) {
        close(fd);
        fprintf(stderr, "farm daemon: no answer from farmd\n");
        return CLI_UNREACHABLE;
    }
    json_decref(reply);
    close(fd);
    /* Wait for farmd to exit: it holds an exclusive lock on farmd.pid for
     * its whole life (the socket goes away earlier, when it stops
     * listening). */
    snprintf(pidfile, sizeof pidfile, "%s/farmd.pid", cli->home);
    {
        int pfd = open(pidfile, O_RDONLY | O_CLOEXEC);
        while (pfd >= 0 && flock(pfd, LOCK_SH) < 0 && errno == EINTR)
            ;
        if (pfd >= 0)
            close(pfd);
    }
    if (!cli->json)
        printf("farmd stopped\n");
    return CLI_OK;
}

int cmd_daemon(struct cli *cli, int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("daemon", "expected start, stop or status");
    if (!strcmp(argv[1], "start"))
        return start(cli, argc - 1, argv + 1);
    if (!strcmp(argv[1], "stop"))
        return stop(cli);
    if (!strcmp(argv[1], "status"))
        return status(cli);
    return cli_usage("daemon", "unknown subcommand \"%s\" (expected start, stop or status)",
                     argv[1]);
}
