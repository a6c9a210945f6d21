#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_pause(struct cli *cli, int argc, char **argv)
{
    int wait = 0, rc;
    json_t *reply;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--wait"))
            wait = 1;
        else if (strcmp(argv[i], "--json") != 0)
            return cli_usage("pause", "unknown argument \"%s\"", argv[i]);
    }
    if ((rc = cli_call(cli, json_pack("{s:s,s:b}", "op", "pause", "wait", wait), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("pause", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(reply);
    else
        printf("paused; %lld task(s) running\n",
               (long long)json_integer_value(json_object_get(reply, "running")));
    json_decref(reply);
    return CLI_OK;
}
