#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_resume(struct cli *cli, int argc, char **argv)
{
    json_t *reply;
    int rc;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--json") != 0)
            return cli_usage("resume", "unknown argument \"%s\"", argv[i]);
    if ((rc = cli_call(cli, json_pack("{s:s}", "op", "resume"), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("resume", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(reply);
    else
        printf("resumed\n");
    json_decref(reply);
    return CLI_OK;
}
