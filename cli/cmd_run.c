/*
 * farm run: a plugin in the foreground, without farmd, through the same
 * farm-worker and host as a queued task.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exec_cmd.h"
#include "farm/pluginload.h"
#include "farm/util.h"
#include "farm/yamljson.h"

static volatile sig_atomic_t g_interrupted;

static void on_int(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static int add_param(json_t *params, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    json_t *v;
    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key)
        return -1;
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    json_object_set_new(params, key, v ? v : json_string(eq + 1));
    return 0;
}

static void progress_bar(double f, const char *what)
{
    int w = 30, filled = (int)(f * w + 0.5);
    char bar[64];
    size_t cols;
    char *safe = cli_cell(what, 60, &cols); /* a plugin's text: one line, no escapes */
    for (int i = 0; i < w; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[w] = '\0';
    fprintf(stderr, "\r\033[K[%s] %3.0f%% %s", bar, f * 100, safe ? safe : "");
    free(safe);
}

int cmd_run(struct cli *cli, int argc, char **argv)
{
    const char *plugin = NULL, *dir = NULL, *v;
    json_t *params = json_object(), *desc = NULL, *task, *metrics = json_object(),
           *artifacts = json_array();
    double grace = 10;
    json_t *result = NULL;
    char run_dir[2400], path[2600], cwd[PATH_MAX], worker[PATH_MAX];
    struct farm_err err;
    double timeout = 0;
    int rc = CLI_USAGE, sv[2], tty = isatty(STDERR_FILENO) && !cli->json, bar_shown = 0;
    pid_t pid;
    FILE *mfile;
    int timed_out = 0;

    for (int i = 1; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--json"))
            continue;
        if ((r = cli_opt("run", argc, argv, &i, "--param", &v)) != 0) {
            if (r < 0)
                { rc = CLI_USAGE; goto out; }
            if (cli_check_text("run", "--param", v, "parameters are JSON text"))
                { rc = CLI_USAGE; goto out; }
            if (add_param(params, v) < 0)
                { rc = cli_usage("run", "--param: expected KEY=VALUE, got \"%s\"", v); goto out; }
        } else if ((r = cli_opt("run", argc, argv, &i, "--params", &v)) != 0) {
            struct farm_yaml_doc *doc;
            if (r < 0)
                { rc = CLI_USAGE; goto out; }
            farm_err_clear(&err);
            if (farm_yaml_load_file(v, v, &doc, &err) < 0) {
                fprintf(stderr, "farm run: %s\n", err.msg);
                { rc = CLI_USAGE; goto out; }
            }
            if (!json_is_object(farm_yaml_root(doc))) {
                fprintf(stderr, "farm run: %s:1:1: expected a mapping of parameters\n", v);
                farm_yaml_free(doc);
                { rc = CLI_USAGE; goto out; }
            }
            /* --param given on the command line wins over the file. */
            json_t *merged = json_deep_copy(farm_yaml_root(doc));
            json_object_update(merged, params);
            json_decref(params);
            params = merged;
            farm_yaml_free(doc);
        } else if ((r = cli_opt("run", argc, argv, &i, "--dir", &v)) != 0) {
            if (r < 0)
                { rc = CLI_USAGE; goto out; }
            dir = v;
        } else if ((r = cli_opt("run", argc, argv, &i, "--grace", &v)) != 0) {
            char *end;
            if (r < 0)
                { rc = CLI_USAGE; goto out; }
            grace = strtod(v, &end);
            if (*end || grace < 0)
                { rc = cli_usage("run", "--grace: expected seconds, got \"%s\"", v); goto out; }
        } else if ((r = cli_opt("run", argc, argv, &i, "--timeout", &v)) != 0) {
            char *end;
            if (r < 0)
                { rc = CLI_USAGE; goto out; }
            timeout = strtod(v, &end);
            if (*end || timeout < 0)
                { rc = cli_usage("run", "--timeout: expected seconds, got \"%s\"", v); goto out; }
        } else if (argv[i][0] == '-') {
            { rc = cli_usage("run", "unknown option \"%s\"", argv[i]); goto out; }
        } else if (!plugin) {
            plugin = argv[i];
        } else {
            { rc = cli_usage("run", "unexpected argument \"%s\"", argv[i]); goto out; }
        }
    }
    if (!plugin)
        { rc = cli_usage("run", "expected a plugin name or a .so file"); goto out; }
    {
        const char *args[] = {"--describe", plugin, NULL};
        if (cli_worker_json(cli, args, &desc) < 0)
            { rc = CLI_USAGE; goto out; }
    }
    if (json_object_get(desc, "error")) {
        fprintf(stderr, "farm run: %s\n",
                json_string_value(json_object_get(json_object_get(desc, "error"), "message")));
        { rc = CLI_USAGE; goto out; }
    }
    farm_err_clear(&err);
    if (farm__params_check(desc, params, &err) < 0) {
        fprintf(stderr, "farm run: %s\n", err.msg);
        { rc = CLI_USAGE; goto out; }
    }
    if (!strcmp(plugin, "exec")) {
        /* What exec's table cannot say, checked as farmd checks a submit. */
        struct farm_exec_cmd cmd;
        char msg[256];
        if (farm_exec_cmd_parse(params, &cmd, msg, sizeof msg) < 0) {
            fprintf(stderr, "farm run: plugin %s\n", msg);
            { rc = CLI_USAGE; goto out; }
        }
        farm_exec_cmd_free(&cmd);
    }
    if (dir) {
        if (!realpath(dir, cwd)) {
            fprintf(stderr, "farm run: --dir %s: %s\n", dir, strerror(errno));
            { rc = CLI_USAGE; goto out; }
        }
    } else if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "farm run: cannot tell the current directory\n");
        { rc = CLI_USAGE; goto out; }
    }
    /* The task file farm-worker reads is JSON: its paths must be UTF-8. */
    if (cli_check_text("run", "--dir", dir, "farm passes it to farm-worker as JSON text") ||
        cli_check_text("run", dir ? "--dir resolves to" : "the current directory", cwd,
                       "farm passes it to farm-worker as JSON text") ||
        cli_check_text("run", "FARM_HOME", cli->home, "farm passes it to farm-worker as JSON text"))
        { rc = CLI_USAGE; goto out; }
    {
        time_t now = time(NULL);
        struct tm tm;
        char stamp[32];
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(run_dir, sizeof run_dir, "%s/local-runs/%s-%s-%d", cli->home,
                 json_string_value(json_object_get(desc, "name")), stamp, (int)getpid());
    }
    if ((rc = farm_mkdirs(run_dir, 0755)) < 0) {
        fprintf(stderr, "farm run: %s: %s\n", run_dir, farm_strerror(rc));
        { rc = CLI_USAGE; goto out; }
    }
    task = json_pack("{s:i,s:s,s:i,s:s,s:O,s:s,s:i,s:i,s:s,s:s}", "id", 0, "id_text", "local",
                     "attempt", 1, "plugin", json_string_value(json_object_get(desc, "path")),
                     "params", params, "home", cli->home, "grace_ms", (int)(grace * 1000), "log_cap", 0, "log",
                     "-", "work_dir", cwd);
    if (!task) {
        fprintf(stderr, "farm run: the plugin's description lacks its path or name\n");
        rc = CLI_USAGE;
        goto out;
    }
    json_object_set_new(task, "run_dir", json_string(run_dir));
    snprintf(path, sizeof path, "%s/artifacts", run_dir);
    json_object_set_new(task, "artifacts_dir", json_string(path));
    snprintf(path, sizeof path, "%s/scratch", run_dir);
    json_object_set_new(task, "scratch_dir", json_string(path));
    {
        char *text = json_dumps(task, JSON_INDENT(2));
        snprintf(path, sizeof path, "%s/task.json", run_dir);
        rc = farm_write_file(path, text, strlen(text), 0);
        free(text);
        json_decref(task);
        if (rc < 0) {
            fprintf(stderr, "farm run: %s: %s\n", path, farm_strerror(rc));
            { rc = CLI_USAGE; goto out; }
        }
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    mfile = fopen(path, "w");

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("farm run: socketpair");
        { rc = CLI_USAGE; goto out; }
    }
    cli_sibling(cli, "farm-worker", worker, sizeof worker);
    {
        struct sigaction sa = {.sa_handler = on_int};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(sv[1], 3); /* dup2 clears close-on-exec on the copy */
        if (cli->json)
            dup2(STDERR_FILENO, STDOUT_FILENO); /* stdout carries the result object */
        execl(worker, "farm-worker", "--run", run_dir, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    {
        int64_t deadline = timeout > 0 ? farm_mono_ms() + (int64_t)(timeout * 1000) : -1;
        int sent_term = 0;
        timed_out = 0;
        for (;;) {
            json_t *ev;
            int left = 200, r;
            if (deadline >= 0 && !sent_term && farm_mono_ms() >= deadline) {
                fprintf(stderr, "farm run: timed out after %g s, cancelling\n", timeout);
                kill(pid, SIGTERM);
                sent_term = 1;
                timed_out = 1;
            }
            if (g_interrupted && !sent_term) {
                kill(pid, SIGTERM);
                sent_term = 1;
            }
            r = cli_read_json(sv[0], &ev, left);
            if (r == -ETIMEDOUT)
                continue;
            if (r < 0)
                break;
            const char *kind = json_string_value(json_object_get(ev, "ev"));
            if (!kind) {
                json_decref(ev);
                continue;
            }
            if (!strcmp(kind, "progress") && tty) {
                progress_bar(json_number_value(json_object_get(ev, "fraction")),
                             json_string_value(json_object_get(ev, "what")));
                bar_shown = 1;
            } else if (!strcmp(kind, "metric")) {
                json_object_set(metrics, json_string_value(json_object_get(ev, "name")),
                                json_object_get(ev, "value"));
                if (mfile) {
                    char *line = json_dumps(ev, JSON_COMPACT);
                    fprintf(mfile, "%s\n", line);
                    free(line);
                }
            } else if (!strcmp(kind, "artifact")) {
                /* Stored again under the same name, it replaced the first:
                 * listed once. */
                size_t k;
                json_t *seen;
                int dup = 0;
                snprintf(path, sizeof path, "%s/artifacts/%s", run_dir,
                         json_string_value(json_object_get(ev, "name")));
                json_array_foreach(artifacts, k, seen) dup |= !strcmp(json_string_value(seen), path);
                if (!dup)
                    json_array_append_new(artifacts, json_string(path));
            } else if (!strcmp(kind, "result")) {
                json_decref(result);
                result = json_incref(ev);
            }
            json_decref(ev);
        }
    }
    if (mfile)
        fclose(mfile);
    close(sv[0]);
    {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    if (bar_shown)
        fprintf(stderr, "\r\033[K");
    if (!result)
        result = json_pack("{s:s,s:i,s:s}", "state", "failed", "exit_code", 1, "reason",
                           "farm-worker ended without a result");
    if (timed_out || g_interrupted) {
        char why[96];
        snprintf(why, sizeof why, timed_out ? "timed out after %g s" : "interrupted (Ctrl-C)",
                 timeout);
        json_object_set_new(result, "state", json_string(timed_out ? "timed_out" : "cancelled"));
        json_object_set_new(result, "reason", json_string(why));
    }
    {
        const char *state = json_string_value(json_object_get(result, "state"));
        json_t *out = json_pack("{s:s,s:O,s:O,s:O,s:s}", "state", state, "exit_code",
                                json_object_get(result, "exit_code"), "metrics", metrics,
                                "artifacts", artifacts, "run_dir", run_dir);
        if (json_is_string(json_object_get(result, "reason")))
            json_object_set(out, "reason", json_object_get(result, "reason"));
        rc = !strcmp(state, "succeeded") ? CLI_OK : CLI_TASK_FAILED;
        if (cli->json) {
            cli_print_json(out);
        } else {
            const char *k;
            json_t *mv;
            size_t i;
            fprintf(stderr, "farm run: %s%s%s", cli_state_color(cli, state), state, cli_reset(cli));
            if (json_is_string(json_object_get(out, "reason")))
                fprintf(stderr, " (%s)", json_string_value(json_object_get(out, "reason")));
            fprintf(stderr, ", exit code %lld\n",
                    (long long)json_integer_value(json_object_get(out, "exit_code")));
            json_object_foreach(json_object_get(out, "metrics"), k, mv)
                fprintf(stderr, "  metric %-20s %.6g\n", k, json_number_value(mv));
            json_array_foreach(json_object_get(out, "artifacts"), i, mv)
                fprintf(stderr, "  artifact %s\n", json_string_value(mv));
            fprintf(stderr, "  run dir %s\n", run_dir);
        }
        json_decref(out);
    }
    json_decref(result);
out:
    json_decref(params);
    json_decref(desc);
    json_decref(metrics);
    json_decref(artifacts);
    return rc;
}
