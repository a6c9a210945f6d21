#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_list(struct cli *cli, int argc, char **argv)
{
    const char *v, *state = NULL, *commit = NULL;
    long long limit = 200;
    json_t *req, *reply;
    int rc;
    static const char *states[] = {"queued", "waiting", "running", "succeeded", "failed",
                                   "timed_out", "cancelled", "skipped", NULL};
    for (int i = 1; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--json"))
            continue;
        if ((r = cli_opt("list", argc, argv, &i, "--state", &v)) != 0) {
            int ok = 0;
            if (r < 0)
                return CLI_USAGE;
            for (int k = 0; states[k]; k++)
                ok |= !strcmp(states[k], v);
            if (!ok)
                return cli_usage("list", "--state: unknown state \"%s\" (expected queued, waiting, "
                                         "running, succeeded, failed, timed_out, cancelled, skipped)",
                                 v);
            state = v;
        } else if ((r = cli_opt("list", argc, argv, &i, "--commit", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (cli_check_text("list", "--commit", v, NULL))
                return CLI_USAGE;
            commit = v;
        } else if ((r = cli_opt("list", argc, argv, &i, "--limit", &v)) != 0) {
            char *end;
            if (r < 0)
                return CLI_USAGE;
            limit = strtoll(v, &end, 10);
            if (*end || !*v || limit < 0)
                return cli_usage("list", "--limit: expected a number >= 0, got \"%s\"", v);
        } else {
            return cli_usage("list", "unknown argument \"%s\"", argv[i]);
        }
    }
    req = json_pack("{s:s,s:I}", "op", "list", "limit", (json_int_t)limit);
    if (state)
        json_object_set_new(req, "state", json_string(state));
    if (commit)
        json_object_set_new(req, "commit", json_string(commit));
    if ((rc = cli_call(cli, req, &reply)) != 0)
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("list", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json)
        cli_print_json(json_object_get(reply, "tasks"));
    else
        cli_print_tasks(cli, json_object_get(reply, "tasks"));
    json_decref(reply);
    return CLI_OK;
}
