#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_retry(struct cli *cli, int argc, char **argv)
{
    long long id = 0;
    json_t *reply;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            continue;
        if (id)
            return cli_usage("retry", "unexpected extra argument \"%s\"", argv[i]);
        if (cli_parse_id(argv[i], &id) < 0)
            return cli_usage("retry", "expected one task id, got \"%s\"", argv[i]);
    }
    if (!id)
        return cli_usage("retry", "expected a task id");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "retry", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("retry", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(reply);
    else
        printf("%lld\n", id);
    json_decref(reply);
    return CLI_OK;
}
