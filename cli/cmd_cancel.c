#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_cancel(struct cli *cli, int argc, char **argv)
{
    json_t *ids = json_array(), *reply, *r;
    size_t i;
    int rc = CLI_OK;
    for (int k = 1; k < argc; k++) {
        long long id;
        if (!strcmp(argv[k], "--json"))
            continue;
        if (cli_parse_id(argv[k], &id) < 0) {
            json_decref(ids);
            return cli_usage("cancel", "expected task ids, got \"%s\"", argv[k]);
        }
        json_array_append_new(ids, json_integer(id));
    }
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return cli_usage("cancel", "expected at least one task id");
    }
    if ((rc = cli_call(cli, json_pack("{s:s,s:o}", "op", "cancel", "ids", ids), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("cancel", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(json_object_get(reply, "results"));
    json_array_foreach(json_object_get(reply, "results"), i, r)
    {
        long long id = (long long)json_integer_value(json_object_get(r, "id"));
        if (!json_is_true(json_object_get(r, "ok"))) {
            fprintf(stderr, "farm cancel: %s\n", json_string_value(json_object_get(r, "message")));
            rc = CLI_USAGE;
        } else if (!cli->json) {
            printf("%lld %s\n", id, json_string_value(json_object_get(r, "result")));
        }
    }
    json_decref(reply);
    return rc;
}
