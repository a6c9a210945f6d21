#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_parallel(struct cli *cli, int argc, char **argv)
{
    long long n = 0;
    json_t *reply;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            continue;
        if (n)
            return cli_usage("parallel", "unexpected extra argument \"%s\"", argv[i]);
        if (cli_parse_id(argv[i], &n) < 0)
            return cli_usage("parallel", "expected a number of jobs (1 or more), got \"%s\"", argv[i]);
    }
    if (!n)
        return cli_usage("parallel", "expected a number of jobs");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "parallel", "jobs", (json_int_t)n), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("parallel", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(reply);
    else
        printf("%lld job(s)\n", n);
    json_decref(reply);
    return CLI_OK;
}
