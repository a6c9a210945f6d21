/*
 * farm: the command-line interface. Each verb lives in cmd_<verb>.c and is
 * dispatched from the table below. Talks to farmd over $FARM_HOME/farm.sock
 * and starts it when it is not running (`farm run` needs no daemon).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"


const struct cli_cmd cli_cmds[] = {
    {"daemon", cmd_daemon, "farm daemon start|stop|status [--jobs N] [--durability normal|full]",
     "Starts, stops or reports on farmd, the daemon that keeps the queue.\n"
     "  start     start farmd in the background (no-op when it runs)\n"
     "            --jobs N              tasks run at once (default: cores)\n"
     "            --durability MODE     normal: commits survive a crash of farmd;\n"
     "                                  full: they also survive a power loss (fsync)\n"
     "            --grace SEC           cancel/timeout grace before SIGKILL (10)\n"
     "            --log-cap BYTES       per-attempt log size cap (268435456)\n"
     "            --keep-days D         keep finished tasks D days (30)\n"
     "            --keep-runs N         keep the run directories of N tasks (1000)\n"
     "  stop      finish running tasks within the grace period, then stop\n"
     "  status    pid, jobs, running and queued counts\n"},
    {"submit", cmd_submit,
     "farm submit [OPTIONS] -- CMD [ARG]...\n"
     "       farm submit --dir DIR [--task NAME]...\n"
     "       farm submit --git REPO [--rev REV] [--ref REF] [--task NAME]...\n"
     "       farm submit --batch FILE|-",
     "Queues tasks and prints each new task id on its own line.\n"
     "  -- CMD [ARG]...      an exec task running CMD with ARGs (no shell), in the\n"
     "                       current directory\n"
     "  --dir DIR            the tasks of DIR/farm.yaml, on a snapshot of DIR taken now\n"
     "  --git REPO           the tasks of farm.yaml as committed at REV (default HEAD),\n"
     "                       run on that commit's tree (a work tree or a bare repo)\n"
     "  --rev REV            the commit to test (any revision git understands)\n"
     "  --ref REF            the ref the commit arrived on (default: HEAD's branch);\n"
     "                       newer commits of a ref cancel older queued ones\n"
     "  --hook               for git hooks: print nothing, never fail; a warning line\n"
     "                       on stderr when the tasks could not be submitted\n"
     "  --task NAME          only this task of farm.yaml (and what it needs); repeatable\n"
     "  --batch FILE|-       many tasks, one JSON object a line, in one transaction:\n"
     "                       {\"cmd\": [...]} or {\"run\": \"sh text\"} or\n"
     "                       {\"plugin\": P, \"params\": {...}}, each with optional name,\n"
     "                       priority, timeout, retries, after (ids), labels\n"
     "  --priority N         higher runs first (default 0)\n"
     "  --timeout SEC        end the task timed_out after SEC seconds\n"
     "  --retries N          run a failed attempt again, up to N more times\n"
     "  --after ID           start only after task ID succeeded; repeatable\n"
     "  --label K=V          attach a label; repeatable\n"
     "  --json               print the new tasks as a JSON array\n"},
    {"list", cmd_list, "farm list [--state S] [--commit SHA] [--limit N] [--json]",
     "Lists tasks, oldest first: the newest N (default 200; 0 for all).\n"
     "  --state S       only tasks in state S (queued, waiting, running, succeeded,\n"
     "                  failed, timed_out, cancelled, skipped)\n"
     "  --commit SHA    only tasks of this git commit (a prefix is enough)\n"},
    {"show", cmd_show, "farm show ID [--json]",
     "Shows one task: state, exit code, attempts, timing, deps, metrics, artifacts.\n"},
    {"logs", cmd_logs, "farm logs ID [-f] [--attempt N]",
     "Prints the task's log. -f follows it: waits for a queued task to start and\n"
     "returns when the task ends. --attempt N prints an earlier attempt's log.\n"},
    {"wait", cmd_wait, "farm wait ID... [--timeout SEC] [--json]",
     "Waits until every task ended. Exit 0 when all succeeded, 1 when one did not,\n"
     "124 when --timeout expired. On a terminal, shows a live progress line.\n"},
    {"cancel", cmd_cancel, "farm cancel ID... [--json]",
     "Cancels tasks in any state: a queued or waiting task ends cancelled at once;\n"
     "a running one gets SIGTERM, its whole process tree SIGKILL after the grace\n"
     "period. Tasks that need a cancelled task end skipped.\n"},
    {"retry", cmd_retry, "farm retry ID [--json]",
     "Queues a task that ended (failed, timed out, cancelled, ...) for one more\n"
     "attempt; earlier attempts keep their logs and exit codes.\n"},
    {"pause", cmd_pause, "farm pause [--wait]",
     "Starts no new task (queued tasks show as waiting). --wait returns once the\n"
     "running tasks have finished.\n"},
    {"resume", cmd_resume, "farm resume", "Starts tasks again after farm pause.\n"},
    {"parallel", cmd_parallel, "farm parallel N",
     "Sets how many tasks run at once, from now on (kept across restarts).\n"},
    {"metrics", cmd_metrics, "farm metrics ID [--csv|--json]",
     "Prints every metric series of a task: name, step, value, time.\n"},
    {"artifacts", cmd_artifacts, "farm artifacts ID [--json]",
     "Lists the files a task stored as artifacts.\n"},
    {"artifact", cmd_artifact, "farm artifact get ID NAME [-o FILE]",
     "Copies one artifact out (to NAME in the current directory, or FILE; - for\n"
     "standard output).\n"},
    {"run", cmd_run,
     "farm run PLUGIN|FILE.so [--param K=V]... [--params FILE] [--dir DIR] [--json]",
     "Runs a plugin in the foreground, without farmd, through the same worker and\n"
     "host as a queued task. Logs go to the terminal, metrics and artifacts into a\n"
     "local run directory (printed at the end).\n"
     "  --param K=V     a parameter; V is read as JSON when it parses, else as text\n"
     "  --params FILE   parameters from a YAML or JSON mapping\n"
     "  --dir DIR       the work directory (default: the current one)\n"
     "  --timeout SEC   cancel the run after SEC seconds (it ends timed_out)\n"
     "  --grace SEC     after a cancel, how long the plugin may take to return\n"
     "                  before its process tree is killed (10)\n"
     "  --json          print one result object: state, exit_code, metrics,\n"
     "                  artifacts, run_dir\n"
     "Exit status: 0 success, 1 the plugin failed, 2 bad params or plugin.\n"},
    {"plugins", cmd_plugins, "farm plugins [--json]",
     "Lists the plugins farm finds: name, version, summary, path; and the files it\n"
     "refuses, with the reason.\n"},
    {"plugin", cmd_plugin, "farm plugin info NAME|FILE.so [--json] | farm plugin new NAME [DIR]",
     "  info NAME|FILE.so  shows a plugin's name, version, ABI, summary, path and\n"
     "                     parameter table: name, type, required, default, help\n"
     "  new NAME [DIR]     creates DIR (default ./NAME, new or empty) holding\n"
     "                     NAME.c (FARM_PLUGIN_DEFINE, a parameter table and run()),\n"
     "                     CMakeLists.txt (find_package(farm-plugin)) and README.md;\n"
     "                     it builds against the installed SDK and runs as made.\n"
     "                     NAME: 1 to 64 of a-z, 0-9, _ and -, starting with a\n"
     "                     letter, not the name of a built-in plugin\n"},
    {"hook", cmd_hook, "farm hook install|uninstall [--repo DIR] [--gate pre-push]",
     "Installs (or removes) the git hook that submits every commit's farm.yaml\n"
     "tasks: post-commit in a work tree, post-receive in a bare repo (one\n"
     "submission per updated ref; deleted refs are ignored). farm's part of the\n"
     "hook file is a marked block; whatever else the file holds is kept as is.\n"
     "The hook never fails the git operation: when farm cannot be reached it\n"
     "prints one warning line.\n"
     "  --repo DIR         the repository (default: the current directory)\n"
     "  --gate pre-push    also install a pre-push hook that waits for the pushed\n"
     "                     commit's tasks and refuses the push when one failed\n"
     "farm hook gate REV [REF] is what that pre-push hook runs.\n"
     "Results come back as notes: git log --notes=farm.\n"},
    {"cache", cmd_cache, "farm cache stats | ls | gc [--max-size SIZE] | verify | why ID | rm KEY",
     "The dependency cache (docs/cache.md).\n"
     "  stats             entries, size and cap, hits, misses, hit rate, bytes\n"
     "                    restored, build time saved\n"
     "  ls                every stored package, most recently used first\n"
     "  gc                evict least recently used packages down to the cap, or\n"
     "                    to --max-size SIZE (K, M, G, T suffixes)\n"
     "  verify            re-check every package's checksum; drop damaged ones\n"
     "  why ID            the key's inputs for task ID; on a hit, which task built\n"
     "                    the package; on a miss, the nearest earlier key of the\n"
     "                    same directory and exactly which input (which files)\n"
     "                    differed\n"
     "  rm KEY            remove one package (it is rebuilt on next use)\n"},
    {NULL, NULL, NULL, NULL},
};

int cli_help_verb(const char *verb)
{
    for (const struct cli_cmd *c = cli_cmds; c->name; c++) {
        if (!strcmp(c->name, verb)) {
            printf("usage: %s\n\n%s", c->synopsis, c->help);
            printf("\nEvery verb takes --json for machine output. Exit status: 0 ok; 1 a\n"
                   "waited-for task did not succeed; 2 usage or bad input; 3 farmd\n"
                   "unreachable; 124 wait --timeout expired.\n");
            return CLI_OK;
        }
    }
    fprintf(stderr, "farm: unknown verb \"%s\"; see 'farm --help'\n", verb);
    return CLI_USAGE;
}

/* What farm printed must have reached its standard output: a full disk or
 * a closed descriptor is an error (exit 1), not a silent loss. */
static int finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE)
            fprintf(stderr, "farm: writing standard output: %s\n", strerror(errno));
        return rc == CLI_OK ? CLI_TASK_FAILED : rc;
    }
    return rc;
}

static void help(FILE *f)
{
    fprintf(f, "farm: a build/test farm for machine-learning model tests\n\n"
               "usage: farm VERB [OPTIONS]\n\n");
    for (const struct cli_cmd *c = cli_cmds; c->name; c++)
        fprintf(f, "  %s\n", c->synopsis);
    fprintf(f, "\n`farm VERB --help` explains one verb. FARM_HOME (default\n"
               "$XDG_DATA_HOME/farm or ~/.local/share/farm) holds the queue, runs and cache.\n"
               "Exit status: 0 ok; 1 a waited-for task did not succeed; 2 usage or bad\n"
               "input; 3 farmd unreachable; 124 wait --timeout expired.\n");
}

int cli_opt(const char *verb, int argc, char **argv, int *i, const char *name,
            const char **value)
{
    size_t n = strlen(name);
    if (!strcmp(argv[*i], name)) {
        if (*i + 1 >= argc) {
            cli_usage(verb, "%s needs a value", name);
            return -1;
        }
        *value = argv[*i + 1];
        *i += 1;
        return 1;
    }
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return 1;
    }
    return 0;
}

int cli_flag(char **argv, int i, const char *name)
{
    return !strcmp(argv[i], name);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    const char *verb;
    const char *nc = getenv("NO_COLOR");

    /* Descriptors 0, 1 and 2 must be open: else the first one farm opens
     * (the socket to farmd) would take the place of standard output, and
     * what farm prints (a task's log) would go to farmd as requests. */
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int nul = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (nul < 0)
                return CLI_USAGE;
            if (nul != fd) {
                dup2(nul, fd);
                close(nul);
            }
        }
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help"))
            return finish(cli_help_verb(argv[2]));
        help(argc < 2 ? stderr : stdout);
        return finish(argc < 2 ? CLI_USAGE : CLI_OK);
    }
    if (!strcmp(argv[1], "--version")) {
        printf("farm %s\n", FARM_VERSION);
        return finish(0);
    }
    verb = argv[1];
    {
        /* jansson seeds its hashing from /dev/urandom when first used:
         * three system calls per command, for tables that hold farmd's
         * replies and the user's own files. The clock and pid differ from
         * run to run just as well here. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        json_object_seed(((size_t)ts.tv_nsec ^ ((size_t)ts.tv_sec << 20) ^
                          ((size_t)getpid() << 8)) | 1);
    }
    cli.tty = isatty(STDOUT_FILENO);
    cli.color = cli.tty && !(nc && *nc) && getenv("TERM") && strcmp(getenv("TERM"), "dumb") != 0;
    {
        int hr = farm_home_path(cli.home, sizeof cli.home);
        if (hr == -ENAMETOOLONG) {
            fprintf(stderr, "farm: FARM_HOME is too long (at most %zu bytes)\n",
                    sizeof cli.home - 1);
            return CLI_USAGE;
        }
        if (hr < 0) {
            fprintf(stderr, "farm: cannot tell FARM_HOME (set FARM_HOME or HOME)\n");
            return CLI_USAGE;
        }
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--json"))
            cli.json = 1;
    }
    for (const struct cli_cmd *c = cli_cmds; c->name; c++) {
        if (!strcmp(c->name, verb)) {
            if (cli_wants_help(argc - 1, argv + 1))
                return finish(cli_help_verb(verb));
            return finish(c->run(&cli, argc - 1, argv + 1));
        }
    }
    fprintf(stderr, "farm: unknown verb \"%s\"; see 'farm --help'\n", verb);
    return CLI_USAGE;
}
