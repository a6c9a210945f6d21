#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_artifacts(struct cli *cli, int argc, char **argv)
{
    long long id = 0;
    int rc;
    json_t *reply, *a;
    size_t i;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--json"))
            continue;
        if (id)
            return cli_usage("artifacts", "unexpected extra argument \"%s\"", argv[k]);
        if (cli_parse_id(argv[k], &id) < 0)
            return cli_usage("artifacts", "expected one task id, got \"%s\"", argv[k]);
    }
    if (!id)
        return cli_usage("artifacts", "expected a task id");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "artifacts", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("artifacts", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json) {
        cli_print_json(json_object_get(reply, "artifacts"));
    } else {
        json_array_foreach(json_object_get(reply, "artifacts"), i, a)
            printf("%-32s %10lld  %s\n", json_string_value(json_object_get(a, "name")),
                   (long long)json_integer_value(json_object_get(a, "size")),
                   json_string_value(json_object_get(a, "path")));
    }
    json_decref(reply);
    return CLI_OK;
}
