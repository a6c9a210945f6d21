#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"


static int info(struct cli *cli, const char *name)
{
    const char *args[] = {"--describe", name, NULL};
    json_t *d, *p;
    size_t i;
    if (cli_worker_json(cli, args, &d) < 0)
        return CLI_USAGE;
    if (json_object_get(d, "error")) {
        fprintf(stderr, "farm plugin: %s\n",
                json_string_value(json_object_get(json_object_get(d, "error"), "message")));
        json_decref(d);
        return CLI_USAGE;
    }
    if (cli->json) {
        cli_print_json(d);
        json_decref(d);
        return CLI_OK;
    }
    printf("%s %s (ABI %s)\n%s\n%s\n\n", json_string_value(json_object_get(d, "name")),
           json_string_value(json_object_get(d, "version")),
           json_string_value(json_object_get(d, "abi")),
           json_string_value(json_object_get(d, "summary")),
           json_string_value(json_object_get(d, "path")));
    printf("%-16s %-7s %-9s %-16s %s\n", "PARAM", "TYPE", "REQUIRED", "DEFAULT", "HELP");
    json_array_foreach(json_object_get(d, "params"), i, p)
    {
        json_t *def = json_object_get(p, "default");
        char *ds = json_is_null(def) ? NULL : json_dumps(def, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%-16s %-7s %-9s %-16s %s\n", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "type")),
               json_is_true(json_object_get(p, "required")) ? "yes" : "no", ds ? ds : "-",
               json_string_value(json_object_get(p, "help")));
        free(ds);
    }
    json_decref(d);
    return CLI_OK;
}

int cmd_plugin(struct cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    if (argc < 2)
        return cli_usage("plugin", "expected: farm plugin info NAME");
    if (!strcmp(argv[1], "info")) {
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--json"))
                continue;
            if (name)
                return cli_usage("plugin", "unexpected argument \"%s\"", argv[i]);
            name = argv[i];
        }
        if (!name)
            return cli_usage("plugin", "expected: farm plugin info NAME");
        return info(cli, name);
    }
    return cli_usage("plugin", "unknown subcommand \"%s\" (expected info)", argv[1]);
}
