/*
 * farm cache stats | ls | gc [--max-size SIZE] | verify | why ID | rm KEY
 *
 * The cache's own work runs in `farm-prepare --cache` (it links the cache's
 * libraries, the CLI does not); `why` asks farmd for the task's deps first.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

static int run(struct cli *cli, const char *const *args, json_t **out)
{
    if (cli_helper_json(cli, "farm-prepare", args, out) < 0)
        return CLI_USAGE;
    if (json_is_object(*out) && json_object_get(*out, "error")) {
        fprintf(stderr, "farm cache: %s\n",
                json_string_value(json_object_get(json_object_get(*out, "error"), "message")));
        json_decref(*out);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static void human_bytes(double b, char *buf, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static int stats(struct cli *cli)
{
    static const char *const args[] = {"--cache", "stats", NULL};
    json_t *s;
    char a[32], b[32], c[32];
    int rc = run(cli, args, &s);
    if (rc)
        return rc;
    if (cli->json) {
        cli_print_json(s);
    } else {
        human_bytes((double)jint(s, "bytes"), a, sizeof a);
        human_bytes((double)jint(s, "max_bytes"), b, sizeof b);
        human_bytes((double)jint(s, "bytes_restored"), c, sizeof c);
        printf("entries          %lld\n"
               "size             %s of %s\n"
               "hits / misses    %lld / %lld (hit rate %.1f%%)\n"
               "bytes restored   %s\n"
               "build time saved %.1f s\n"
               "evictions        %lld\n"
               "damaged dropped  %lld\n",
               jint(s, "entries"), a, b, jint(s, "hits"), jint(s, "misses"),
               100 * json_number_value(json_object_get(s, "hit_rate")), c,
               (double)jint(s, "build_ms_saved") / 1000, jint(s, "evictions"), jint(s, "damaged"));
    }
    json_decref(s);
    return CLI_OK;
}

static int ls(struct cli *cli)
{
    static const char *const args[] = {"--cache", "ls", NULL};
    json_t *l, *e;
    size_t i;
    int rc = run(cli, args, &l);
    if (rc)
        return rc;
    if (cli->json) {
        cli_print_json(l);
        json_decref(l);
        return CLI_OK;
    }
    printf("%-32s  %10s  %5s  %9s  %-8s  %-12s  %s\n", "KEY", "SIZE", "HITS", "BUILD", "BUILDER",
           "LAST USED", "LABEL");
    json_array_foreach(l, i, e)
    {
        char sz[32], used[48], stamp[40];
        human_bytes((double)jint(e, "size"), sz, sizeof sz);
        farm_rfc3339(jint(e, "last_used"), stamp, sizeof stamp);
        cli_reltime(stamp, used, sizeof used);
        printf("%-32s  %10s  %5lld  %8.1fs  %-8s  %-12s  %s\n",
               json_string_value(json_object_get(e, "key")), sz, jint(e, "hits"),
               (double)jint(e, "build_ms") / 1000,
               json_is_string(json_object_get(e, "builder")) ? json_string_value(json_object_get(e, "builder")) : "-",
               used,
               json_is_string(json_object_get(e, "label")) ? json_string_value(json_object_get(e, "label")) : "");
    }
    json_decref(l);
    return CLI_OK;
}

static int why(struct cli *cli, const char *idtext)
{
    long long id;
    json_t *reply, *t, *deps, *report, *near, *d;
    char inputs_path[64] = "", manifest[PATH_MAX + 64];
    size_t i;
    int rc;
    if (cli_parse_id(idtext, &id) < 0)
        return cli_usage("cache", "why: expected a task id, got \"%s\"", idtext);
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "show", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("cache", reply);
        json_decref(reply);
        return rc;
    }
    t = json_object_get(reply, "task");
    deps = json_object_get(t, "deps");
    if (!json_is_object(deps) || !json_is_string(json_object_get(deps, "key")) ||
        !*json_string_value(json_object_get(deps, "key"))) {
        fprintf(stderr, "farm cache: task %lld has %s\n", id,
                json_is_object(deps) ? "no dependency key yet (it has not run)"
                                     : "no dependency package (no deps in its farm.yaml)");
        json_decref(reply);
        return CLI_USAGE;
    }
    {
        const char *args[6] = {"--cache", "why", json_string_value(json_object_get(deps, "key")),
                               NULL, NULL, NULL};
        if (json_is_object(json_object_get(deps, "inputs"))) {
            int fd;
            snprintf(inputs_path, sizeof inputs_path, "/tmp/farm-why.XXXXXX");
            fd = mkstemp(inputs_path);
            if (fd >= 0) {
                char *text = json_dumps(json_object_get(deps, "inputs"), JSON_COMPACT);
                farm_write_all(fd, text, strlen(text));
                free(text);
                close(fd);
                args[3] = inputs_path;
            }
        }
        snprintf(manifest, sizeof manifest, "%s/deps-manifest.json",
                 json_string_value(json_object_get(t, "run_dir")));
        if (args[3] && access(manifest, R_OK) == 0)
            args[4] = manifest;
        rc = run(cli, args, &report);
        if (inputs_path[0])
            unlink(inputs_path);
    }
    if (rc) {
        json_decref(reply);
        return rc;
    }
    json_object_set(report, "task", json_object_get(t, "id"));
    json_object_set(report, "hit", json_object_get(deps, "hit"));
    json_object_set(report, "source_task", json_object_get(deps, "source_task"));
    if (cli->json) {
        cli_print_json(report);
        json_decref(report);
        json_decref(reply);
        return CLI_OK;
    }
    printf("task %lld, deps key %s: %s\n", id, json_string_value(json_object_get(report, "key")),
           json_is_true(json_object_get(deps, "hit"))         ? "hit"
           : json_is_string(json_object_get(deps, "error")) ? "miss (this task's build failed)"
                                                             : "miss (built by this task)");
    if (json_is_true(json_object_get(deps, "hit")))
        printf("  restored the package built by task %lld\n",
               jint(deps, "source_task"));
    {
        json_t *in = json_object_get(report, "inputs"), *v;
        const char *k;
        printf("inputs:\n");
        json_object_foreach(in, k, v)
        {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("  %-9s %s\n", k, s ? s : "?");
            free(s);
        }
    }
    near = json_object_get(report, "nearest");
    if (json_is_object(near)) {
        printf("nearest earlier key for the same directory: %s (built by task %s)\n",
               json_string_value(json_object_get(near, "key")),
               json_is_string(json_object_get(near, "builder")) ? json_string_value(json_object_get(near, "builder")) : "?");
        json_array_foreach(json_object_get(near, "differs"), i, d)
        {
            json_t *files = json_object_get(d, "files");
            char *was = json_dumps(json_object_get(d, "was"), JSON_ENCODE_ANY | JSON_COMPACT);
            char *now = json_dumps(json_object_get(d, "now"), JSON_ENCODE_ANY | JSON_COMPACT);
            printf("  %s differs: was %s, now %s\n", json_string_value(json_object_get(d, "input")),
                   was ? was : "?", now ? now : "?");
            free(was);
            free(now);
            if (json_is_object(files)) {
                static const char *kinds[] = {"added", "removed", "changed"};
                for (int k = 0; k < 3; k++) {
                    size_t q;
                    json_t *f;
                    json_array_foreach(json_object_get(files, kinds[k]), q, f)
                        printf("    %-7s %s\n", kinds[k], json_string_value(f));
                }
            }
        }
    } else if (!json_is_true(json_object_get(deps, "hit"))) {
        printf("no earlier key for the same directory: this was its first build\n");
    }
    json_decref(report);
    json_decref(reply);
    return CLI_OK;
}

int cmd_cache(struct cli *cli, int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : NULL, *v, *max = NULL, *arg = NULL;
    json_t *out;
    int rc;
    if (!verb)
        return cli_usage("cache", "expected stats, ls, gc, verify, why ID or rm KEY");
    for (int i = 2; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--json"))
            continue;
        if ((r = cli_opt("cache", argc, argv, &i, "--max-size", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            max = v;
        } else if (!arg) {
            arg = argv[i];
        } else {
            return cli_usage("cache", "unexpected argument \"%s\"", argv[i]);
        }
    }
    if (!strcmp(verb, "stats") && !arg && !max)
        return stats(cli);
    if (!strcmp(verb, "ls") && !arg && !max)
        return ls(cli);
    if (!strcmp(verb, "why")) {
        if (!arg)
            return cli_usage("cache", "why: expected a task id");
        return why(cli, arg);
    }
    if (!strcmp(verb, "gc") && !arg) {
        const char *args[] = {"--cache", "gc", max, NULL};
        if ((rc = run(cli, args, &out)))
            return rc;
        if (cli->json) {
            cli_print_json(out);
        } else {
            char f[32];
            human_bytes((double)jint(out, "freed"), f, sizeof f);
            printf("evicted %lld entr%s, freed %s\n", jint(out, "evicted"),
                   jint(out, "evicted") == 1 ? "y" : "ies", f);
        }
        json_decref(out);
        return CLI_OK;
    }
    if (!strcmp(verb, "verify") && !arg && !max) {
        static const char *const args[] = {"--cache", "verify", NULL};
        json_t *d;
        size_t i;
        if ((rc = run(cli, args, &out)))
            return rc;
        if (cli->json) {
            cli_print_json(out);
        } else {
            printf("checked %lld, ok %lld, busy %lld, damaged %zu, orphans removed %lld\n",
                   jint(out, "checked"), jint(out, "ok"), jint(out, "busy"),
                   json_array_size(json_object_get(out, "damaged")), jint(out, "orphans_removed"));
            json_array_foreach(json_object_get(out, "damaged"), i, d)
                printf("  dropped %s: %s\n", json_string_value(json_object_get(d, "key")),
                       json_string_value(json_object_get(d, "reason")));
        }
        json_decref(out);
        return CLI_OK;
    }
    if (!strcmp(verb, "rm") && arg && !max) {
        const char *args[] = {"--cache", "rm", arg, NULL};
        if ((rc = run(cli, args, &out)))
            return rc;
        if (cli->json)
            cli_print_json(out);
        else
            printf("removed %s\n", arg);
        json_decref(out);
        return CLI_OK;
    }
    return cli_usage("cache", "expected: stats | ls | gc [--max-size SIZE] | verify | why ID | rm KEY");
}
