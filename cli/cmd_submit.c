#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

static int print_result(struct cli *cli, json_t *reply)
{
    if (cli->json) {
        cli_print_json(json_object_get(reply, "tasks"));
    } else {
        size_t i;
        json_t *id;
        json_array_foreach(json_object_get(reply, "ids"), i, id)
            printf("%lld\n", (long long)json_integer_value(id));
    }
    return CLI_OK;
}

/* Checks that a text the user gave can go into the request (JSON text
 * must be UTF-8). Returns 0, or -1 after saying which text is not: as a
 * usage error, or as the one warning line of --hook. */
static int check_text(int hook, const char *what, const char *s, const char *why)
{
    char *esc;
    if (!hook)
        return cli_check_text("submit", what, s, why) ? -1 : 0;
    if (cli_text_ok(s))
        return 0;
    esc = farm_escape_text(s);
    fprintf(stderr, "farm: warning: tests not submitted: %s \"%s\" is not valid UTF-8\n", what,
            esc ? esc : "?");
    free(esc);
    return -1;
}

/* Reads --batch input: one JSON object a line. Blank lines and lines
 * starting with # are skipped. */
static int read_batch(const char *file, json_t *tasks, json_t *lines)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    const char *name = strcmp(file, "-") == 0 ? "<stdin>" : file;
    struct stat st;
    if (!f) {
        fprintf(stderr, "farm submit: %s: %s\n", file, strerror(errno));
        return CLI_USAGE;
    }
    /* fopen() opens a directory for reading; getline() then fails. */
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "farm submit: %s: is a directory\n", name);
        if (f != stdin)
            fclose(f);
        return CLI_USAGE;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        json_error_t je;
        json_t *o, *t;
        char *nul;
        lineno++;
        /* A NUL byte would end the line early for the JSON parser and drop
         * the rest of it unseen. */
        if ((nul = memchr(line, '\0', (size_t)n)) != NULL) {
            fprintf(stderr, "farm submit: %s:%ld:%ld: a NUL byte; a batch is JSON text, one "
                            "object a line\n", name, lineno, (long)(nul - line) + 1);
            free(line);
            if (f != stdin)
                fclose(f);
            return CLI_USAGE;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[strspn(line, " \t")] == '#' || line[strspn(line, " \t")] == '\0')
            continue;
        o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        if (!o || !json_is_object(o)) {
            /* (jansson counts columns from 0 before it has read a whole
             * character: a line that starts with a bad byte is column 1.) */
            fprintf(stderr, "farm submit: %s:%ld:%d: %s\n", name, lineno,
                    o || je.column < 1 ? 1 : je.column, o ? "expected a JSON object" : je.text);
            json_decref(o);
            free(line);
            if (f != stdin)
                fclose(f);
            return CLI_USAGE;
        }
        t = json_deep_copy(o);
        /* {"cmd": [...]} and {"run": "..."} are exec shorthands: one of
         * them, and then neither params nor another plugin (they replace
         * both). */
        {
            json_t *cmd = json_object_get(o, "cmd");
            int shorthand = cmd || json_object_get(o, "run");
            const char *pl = json_string_value(json_object_get(o, "plugin"));
            const char *why =
                cmd && json_object_get(o, "run") ? "give cmd or run, not both"
                : shorthand && json_object_get(o, "params")
                    ? "cmd and run replace params: give one or the other"
                : shorthand && json_object_get(o, "plugin") && (!pl || strcmp(pl, "exec") != 0)
                    ? "cmd and run are exec's; they take no other plugin"
                : cmd && (!json_is_array(cmd) || json_array_size(cmd) == 0)
                    ? "cmd: expected a non-empty list of text"
                    : NULL;
            if (why) {
                fprintf(stderr, "farm submit: %s:%ld: %s\n", name, lineno, why);
                json_decref(o);
                json_decref(t);
                free(line);
                if (f != stdin)
                    fclose(f);
                return CLI_USAGE;
            }
        }
        if (json_object_get(o, "cmd")) {
            json_t *cmd = json_object_get(o, "cmd");
            json_object_del(t, "cmd");
            json_object_set_new(t, "plugin", json_string("exec"));
            json_object_set_new(t, "params", json_pack("{s:O}", "argv", cmd));
        } else if (json_object_get(o, "run")) {
            json_object_del(t, "run");
            json_object_set_new(t, "plugin", json_string("exec"));
            json_object_set_new(t, "params", json_pack("{s:O}", "run", json_object_get(o, "run")));
        }
        json_array_append_new(tasks, t);
        json_array_append_new(lines, json_integer(lineno));
        json_decref(o);
    }
    if (ferror(f)) {
        fprintf(stderr, "farm submit: %s: %s\n", name, strerror(errno));
        free(line);
        if (f != stdin)
            fclose(f);
        return CLI_USAGE;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (json_array_size(tasks) == 0) {
        fprintf(stderr, "farm submit: %s: no tasks in the batch\n", name);
        return CLI_USAGE;
    }
    return 0;
}

static int submit_dir(struct cli *cli, const char *dir, json_t *select, json_t *override)
{
    char abs[PATH_MAX], incoming[2300], display[PATH_MAX + 16];
    struct farm_err err;
    struct stat st;
    json_t *reply;
    int rc;
    if (!realpath(dir, abs) || stat(abs, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "farm submit: --dir %s: not a directory\n", dir);
        json_decref(select);
        json_decref(override);
        return CLI_USAGE;
    }
    /* The paths go into the request; check them before copying anything. */
    if (check_text(0, "--dir resolves to", abs, NULL) ||
        check_text(0, "FARM_HOME", cli->home, NULL)) {
        json_decref(select);
        json_decref(override);
        return CLI_USAGE;
    }
    snprintf(display, sizeof display, "%s/farm.yaml", dir);
    {
        char fy[PATH_MAX + 16];
        snprintf(fy, sizeof fy, "%s/farm.yaml", abs);
        if (access(fy, R_OK) < 0) {
            fprintf(stderr, "farm submit: %s: no farm.yaml there\n", display);
            json_decref(select);
            json_decref(override);
            return CLI_USAGE;
        }
    }
    /* The snapshot is taken here, not in farmd, so that copying a large tree
     * never holds up the daemon. farmd adopts it by renaming. */
    if (farm_home_ensure(cli->home, &err) < 0) {
        fprintf(stderr, "farm submit: %s\n", err.msg);
        json_decref(select);
        json_decref(override);
        return CLI_USAGE;
    }
    snprintf(incoming, sizeof incoming, "%s/snapshots", cli->home);
    farm_mkdirs(incoming, 0700);
    snprintf(incoming, sizeof incoming, "%s/snapshots/incoming-%d-%lld", cli->home, (int)getpid(),
             (long long)farm_now_ms());
    farm_err_clear(&err);
    if ((rc = farm_copytree(abs, incoming, 1, &err)) < 0) {
        fprintf(stderr, "farm submit: snapshot of %s failed: %s\n", dir, err.msg);
        farm_rmtree(incoming);
        json_decref(select);
        json_decref(override);
        return CLI_USAGE;
    }
    rc = cli_call(cli,
                  json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:b}", "op", "submit", "dir", incoming,
                            "display", display, "source", abs, "select", select, "override",
                            override, "full", cli->json),
                  &reply);
    if (rc) {
        farm_rmtree(incoming);
        return rc;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("submit", reply);
        json_decref(reply);
        farm_rmtree(incoming); /* farmd removes it too; this covers a lost reply */
        return rc;
    }
    rc = print_result(cli, reply);
    json_decref(reply);
    return rc;
}

static int submit_git(struct cli *cli, const char *repo, const char *rev, const char *ref,
                      json_t *select, json_t *override, int hook)
{
    json_t *git, *reply;
    char abs[PATH_MAX];
    int rc;
    /* farmd reads the commit (libgit2 lives there, not in every farm
     * command); it needs an absolute path. */
    if (!realpath(repo, abs)) {
        json_decref(select);
        json_decref(override);
        if (hook) {
            fprintf(stderr, "farm: warning: tests not submitted: %s: %s\n", repo, strerror(errno));
            return CLI_OK;
        }
        fprintf(stderr, "farm submit: %s: not a git repository (%s)\n", repo, strerror(errno));
        return CLI_USAGE;
    }
    if (check_text(hook, "--git resolves to", abs, NULL)) {
        json_decref(select);
        json_decref(override);
        return hook ? CLI_OK : CLI_USAGE;
    }
    git = json_pack("{s:s,s:s?,s:s?}", "repo", abs, "rev", rev, "ref", ref);
    rc = cli_call(cli,
                  json_pack("{s:s,s:o,s:o,s:o,s:b}", "op", "submit", "git", git, "select", select,
                            "override", override, "full", cli->json),
                  &reply);
    if (rc) {
        if (hook) {
            fprintf(stderr, "farm: warning: tests not submitted: farmd unreachable\n");
            return CLI_OK;
        }
        return rc;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        if (hook) {
            fprintf(stderr, "farm: warning: tests not submitted: %s\n",
                    json_string_value(json_object_get(json_object_get(reply, "error"), "message")));
            rc = CLI_OK;
        } else {
            rc = cli_reply_error("submit", reply);
        }
        json_decref(reply);
        return rc;
    }
    rc = hook ? CLI_OK : print_result(cli, reply);
    json_decref(reply);
    return rc;
}

int cmd_submit(struct cli *cli, int argc, char **argv)
{
    const char *v, *dir = NULL, *batch = NULL, *git = NULL, *rev = NULL, *ref = NULL;
    int hook = 0;
    json_t *select, *after, *labels, *tasks, *reply, *lines;
    long long priority = 0, timeout = 0, retries = 0;
    int i, rc, dashdash = -1, n_sel = 0, n_after = 0, n_label = 0;
    int has_priority = 0, has_timeout = 0, has_retries = 0;
    json_t *given;
    /* Options are checked before any JSON is built, so that a usage error
     * leaves nothing behind. */
    const char **sel = calloc((size_t)argc + 1, sizeof *sel);
    const char **lab = calloc((size_t)argc + 1, sizeof *lab);
    long long *aft = calloc((size_t)argc + 1, sizeof *aft);
    char cwd[PATH_MAX];

    rc = CLI_USAGE;
    for (i = 1; i < argc; i++) {
        int r;
        char *end;
        if (!strcmp(argv[i], "--")) {
            dashdash = i;
            break;
        }
        if (!strcmp(argv[i], "--json"))
            continue;
        if (!strcmp(argv[i], "--hook")) {
            hook = 1;
            cli->quiet = 1;
            continue;
        }
#define OPT(name) ((r = cli_opt("submit", argc, argv, &i, name, &v)) != 0)
        if (OPT("--dir")) {
            if (r < 0)
                goto out;
            dir = v;
        } else if (OPT("--git")) {
            if (r < 0)
                goto out;
            git = v;
        } else if (OPT("--rev")) {
            if (r < 0)
                goto out;
            rev = v;
        } else if (OPT("--ref")) {
            if (r < 0)
                goto out;
            ref = v;
        } else if (OPT("--task")) {
            if (r < 0)
                goto out;
            sel[n_sel++] = v;
        } else if (OPT("--batch")) {
            if (r < 0)
                goto out;
            batch = v;
        } else if (OPT("--priority")) {
            if (r < 0)
                goto out;
            priority = strtoll(v, &end, 10);
            has_priority = 1;
            if (*end || !*v) {
                cli_usage("submit", "--priority: expected an integer, got \"%s\"", v);
                goto out;
            }
        } else if (OPT("--timeout")) {
            if (r < 0)
                goto out;
            timeout = strtoll(v, &end, 10);
            has_timeout = 1;
            if (*end || !*v || timeout < 0) {
                cli_usage("submit", "--timeout: expected whole seconds, got \"%s\"", v);
                goto out;
            }
        } else if (OPT("--retries")) {
            if (r < 0)
                goto out;
            retries = strtoll(v, &end, 10);
            has_retries = 1;
            if (*end || !*v || retries < 0 || retries > 100) {
                cli_usage("submit", "--retries: expected 0 to 100, got \"%s\"", v);
                goto out;
            }
        } else if (OPT("--after")) {
            if (r < 0)
                goto out;
            if (cli_parse_id(v, &aft[n_after]) < 0) {
                cli_usage("submit", "--after: expected a task id, got \"%s\"", v);
                goto out;
            }
            n_after++;
        } else if (OPT("--label")) {
            const char *eq;
            if (r < 0)
                goto out;
            eq = strchr(v, '=');
            if (!eq || eq == v || eq - v > 200) {
                cli_usage("submit", "--label: expected KEY=VALUE, got \"%s\"", v);
                goto out;
            }
            lab[n_label++] = v;
        } else {
            cli_usage("submit", "unknown option \"%s\"", argv[i]);
            goto out;
        }
#undef OPT
    }
    if (!!dir + !!batch + !!git + (dashdash >= 0) != 1) {
        cli_usage("submit",
                  "give exactly one of: -- CMD [ARG]..., --dir DIR, --git REPO, --batch FILE");
        goto out;
    }
    if (n_sel > 0 && !dir && !git) {
        cli_usage("submit", "--task goes with --dir or --git");
        goto out;
    }
    if ((rev || ref || hook) && !git) {
        cli_usage("submit", "--rev, --ref and --hook go with --git");
        goto out;
    }
    if (dashdash >= 0 && dashdash + 1 >= argc) {
        cli_usage("submit", "nothing to run after --");
        goto out;
    }
    /* Every text that goes into the request must be UTF-8: jansson refuses
     * anything else, and a refused text would be dropped or lose the whole
     * request. Checked here, before anything is built or copied. */
    {
        int bad = 0;
        for (int k = 0; k < n_sel && !bad; k++)
            bad = check_text(hook, "--task", sel[k], NULL);
        for (int k = 0; k < n_label && !bad; k++)
            bad = check_text(hook, "--label", lab[k], NULL);
        if (!bad)
            bad = check_text(hook, "--dir", dir, NULL) || check_text(hook, "--git", git, NULL) ||
                  check_text(hook, "--rev", rev, NULL) || check_text(hook, "--ref", ref, NULL);
        for (i = dashdash + 1; dashdash >= 0 && i < argc && !bad; i++) {
            char what[64];
            if (i == dashdash + 1)
                snprintf(what, sizeof what, "the command name");
            else
                snprintf(what, sizeof what, "argument %d of the command", i - dashdash - 1);
            bad = check_text(hook, what, argv[i], "farm passes commands to farmd as JSON text");
        }
        if (bad) {
            rc = hook ? CLI_OK : CLI_USAGE;
            goto out;
        }
    }
    /* The options given explicitly: they override farm.yaml's values (--dir)
     * and fill in what a --batch line leaves out. */
    given = json_object();
    if (has_priority)
        json_object_set_new(given, "priority", json_integer(priority));
    if (has_timeout)
        json_object_set_new(given, "timeout", json_integer(timeout));
    if (has_retries)
        json_object_set_new(given, "retries", json_integer(retries));
    if (n_after) {
        after = json_array();
        for (int k = 0; k < n_after; k++)
            json_array_append_new(after, json_integer(aft[k]));
        json_object_set_new(given, "after", after);
    }
    if (n_label) {
        labels = json_object();
        for (int k = 0; k < n_label; k++) {
            char key[256];
            const char *eq = strchr(lab[k], '=');
            snprintf(key, sizeof key, "%.*s", (int)(eq - lab[k]), lab[k]);
            json_object_set_new(labels, key, json_string(eq + 1));
        }
        json_object_set_new(given, "labels", labels);
    }
    if (dir || git) {
        select = json_array();
        for (int k = 0; k < n_sel; k++)
            json_array_append_new(select, json_string(sel[k]));
        rc = dir ? submit_dir(cli, dir, select, given)
                 : submit_git(cli, git, rev, ref, select, given, hook);
        goto out;
    }
    tasks = json_array();
    lines = json_array();
    if (batch) {
        size_t k;
        json_t *t;
        if ((rc = read_batch(batch, tasks, lines)) != 0) {
            json_decref(tasks);
            json_decref(lines);
            json_decref(given);
            goto out;
        }
        json_array_foreach(tasks, k, t)
        {
            const char *key;
            json_t *gv;
            json_object_foreach(given, key, gv)
            {
                if (!json_object_get(t, key))
                    json_object_set(t, key, gv);
            }
        }
    } else {
        json_t *argvj = json_array(), *task;
        for (i = dashdash + 1; i < argc; i++)
            json_array_append_new(argvj, json_string(argv[i]));
        task = json_pack("{s:s,s:{s:o}}", "plugin", "exec", "params", "argv", argvj);
        json_object_update(task, given);
        json_array_append_new(tasks, task);
    }
    json_decref(given);
    if (!getcwd(cwd, sizeof cwd)) {
        /* Tasks run in the directory they were submitted from: one that is
         * gone (or too deep to name) has no stand-in. */
        fprintf(stderr, "farm submit: cannot tell the current directory (%s); tasks run in it\n",
                strerror(errno));
        json_decref(tasks);
        json_decref(lines);
        rc = CLI_USAGE;
        goto out;
    }
    if (check_text(0, "the current directory", cwd,
                   "farm passes it to farmd as JSON text; run farm from another directory")) {
        json_decref(tasks);
        json_decref(lines);
        rc = CLI_USAGE;
        goto out;
    }
    rc = cli_call(cli,
                  json_pack("{s:s,s:o,s:s,s:b}", "op", "submit", "tasks", tasks, "cwd", cwd,
                            "full", cli->json),
                  &reply);
    if (rc) {
        json_decref(lines);
        goto out;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        json_t *err = json_object_get(reply, "error");
        json_t *idx = json_object_get(err, "index");
        if (batch && json_is_integer(idx)) {
            fprintf(stderr, "farm submit: %s:%lld: %s\n", strcmp(batch, "-") ? batch : "<stdin>",
                    (long long)json_integer_value(json_array_get(lines, (size_t)json_integer_value(idx))),
                    json_string_value(json_object_get(err, "message")));
            rc = cli_exit_for_name(json_string_value(json_object_get(err, "code")));
        } else {
            rc = cli_reply_error("submit", reply);
        }
    } else {
        rc = print_result(cli, reply);
    }
    json_decref(reply);
    json_decref(lines);
out:
    free(sel);
    free(lab);
    free(aft);
    return rc;
}
