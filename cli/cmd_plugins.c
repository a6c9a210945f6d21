#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_plugins(struct cli *cli, int argc, char **argv)
{
    static const char *const args[] = {"--describe-all", NULL};
    json_t *all, *p;
    size_t i;
    int rc = CLI_OK;
    for (int k = 1; k < argc; k++)
        if (strcmp(argv[k], "--json") != 0)
            return cli_usage("plugins", "unknown argument \"%s\"", argv[k]);
    if (cli_worker_json(cli, args, &all) < 0)
        return CLI_USAGE;
    if (cli->json) {
        cli_print_json(all);
        json_decref(all);
        return CLI_OK;
    }
    printf("%-12s %-8s %-56s %s\n", "NAME", "VERSION", "SUMMARY", "PATH");
    json_array_foreach(all, i, p)
    {
        if (json_object_get(p, "error"))
            continue;
        printf("%-12s %-8s %-56.56s %s\n", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "version")),
               json_string_value(json_object_get(p, "summary")),
               json_string_value(json_object_get(p, "path")));
    }
    json_array_foreach(all, i, p)
    {
        if (json_object_get(p, "error"))
            fprintf(stderr, "farm plugins: %s\n",
                    json_string_value(json_object_get(json_object_get(p, "error"), "message")));
    }
    json_decref(all);
    return rc;
}
