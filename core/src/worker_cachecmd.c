/*
 * farm-prepare --cache VERB ...: the dependency cache's maintenance verbs,
 * run for `farm cache` (the CLI stays free of the cache's libraries). Each
 * prints one JSON value on stdout; on error {"error": {code, message}} and
 * exit status 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/cache.h"
#include "farm/util.h"
#include "worker-internal.h"

static int fail(const struct farm_err *err)
{
    json_t *e = json_pack("{s:{s:s,s:s}}", "error", "code", farm_err_name(err->code), "message",
                          err->msg);
    farm_json_write_line(1, e);
    json_decref(e);
    return 2;
}

static int print_text(char *json)
{
    json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
    free(json);
    farm_json_write_line(1, j ? j : json_null());
    json_decref(j);
    return 0;
}

int farm__worker_cache_cmd(int argc, char **argv)
{
    char home[2048], cache_dir[PATH_MAX], db[PATH_MAX];
    struct farm_cache_config cfg = {0};
    struct farm_cache *c = NULL;
    struct farm_err err;
    char *out = NULL;
    int rc = 0;
    const char *verb = argc > 0 ? argv[0] : "";

    farm_err_clear(&err);
    if (farm_home_path(home, sizeof home) < 0) {
        farm_err_set(&err, -ENOENT, "cannot tell FARM_HOME");
        return fail(&err);
    }
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", home);
    snprintf(db, sizeof db, "%s/cache/index.db", home);
    cfg.cache_dir = cache_dir;
    cfg.db_path = db;
    if (farm_home_ensure(home, &err) < 0 || farm_cache_open(&c, &cfg, &err) < 0)
        return fail(&err);

    if (!strcmp(verb, "stats") && argc == 1) {
        rc = farm_cache_stats_json(c, &out, &err);
    } else if (!strcmp(verb, "ls") && argc == 1) {
        rc = farm_cache_ls(c, &out, &err);
    } else if (!strcmp(verb, "verify") && argc == 1) {
        rc = farm_cache_verify(c, &out, &err);
    } else if (!strcmp(verb, "gc") && argc <= 2) {
        uint64_t max = 0, evicted = 0, freed = 0;
        if (argc == 2 && (rc = farm_cache_parse_size(argv[1], &max, &err)) < 0)
            goto done;
        /* --max-size 0 keeps nothing (for the library, 0 means "the cap";
         * every object is larger than one byte). */
        if (argc == 2 && max == 0)
            max = 1;
        if ((rc = farm_cache_gc(c, max, &evicted, &freed, &err)) == 0) {
            json_t *j = json_pack("{s:I,s:I}", "evicted", (json_int_t)evicted, "freed",
                                  (json_int_t)freed);
            out = json_dumps(j, JSON_COMPACT);
            json_decref(j);
        }
    } else if (!strcmp(verb, "rm") && argc == 2) {
        if ((rc = farm_cache_rm(c, argv[1], &err)) == 0)
            out = strdup("{\"removed\": true}");
    } else if (!strcmp(verb, "why") && argc >= 2 && argc <= 4) {
        char *inputs = NULL, *manifest = NULL;
        if (argc >= 3 && strcmp(argv[2], "-") != 0)
            farm_read_file(argv[2], &inputs, NULL);
        if (argc >= 4)
            farm_read_file(argv[3], &manifest, NULL);
        rc = farm_cache_why(c, argv[1], inputs, manifest, &out, &err);
        free(inputs);
        free(manifest);
    } else {
        rc = farm_err_set(&err, FARM_EBADREQ,
                          "usage: farm-prepare --cache stats|ls|verify|gc [SIZE]|rm KEY|why KEY "
                          "[INPUTS_FILE [MANIFEST_FILE]]");
    }
done:
    farm_cache_close(c);
    if (rc < 0)
        return fail(&err);
    return print_text(out);
}
