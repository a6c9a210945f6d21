#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_metrics(struct cli *cli, int argc, char **argv)
{
    long long id = 0;
    int csv = 0, rc;
    json_t *reply, *m;
    size_t i;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--json"))
            continue;
        if (!strcmp(argv[k], "--csv")) {
            csv = 1;
            continue;
        }
        if (id)
            return cli_usage("metrics", "unexpected extra argument \"%s\"", argv[k]);
        if (cli_parse_id(argv[k], &id) < 0)
            return cli_usage("metrics", "expected one task id, got \"%s\"", argv[k]);
    }
    if (!id)
        return cli_usage("metrics", "expected a task id");
    if (csv && cli->json)
        return cli_usage("metrics", "--csv and --json cannot be combined");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "metrics", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("metrics", reply);
        json_decref(reply);
        return rc;
    }
    if (cli->json) {
        cli_print_json(json_object_get(reply, "metrics"));
    } else {
        if (csv)
            printf("name,step,value,time,attempt\n");
        else
            printf("%-24s %8s %14s  %s\n", "NAME", "STEP", "VALUE", "TIME");
        json_array_foreach(json_object_get(reply, "metrics"), i, m)
        {
            json_t *v = json_object_get(m, "value");
            char val[64];
            if (json_is_number(v))
                snprintf(val, sizeof val, "%.9g", json_number_value(v));
            else
                snprintf(val, sizeof val, "nan");
            if (csv)
                printf("%s,%lld,%s,%s,%lld\n", json_string_value(json_object_get(m, "name")),
                       (long long)json_integer_value(json_object_get(m, "step")), val,
                       json_string_value(json_object_get(m, "time")),
                       (long long)json_integer_value(json_object_get(m, "attempt")));
            else
                printf("%-24s %8lld %14s  %s\n", json_string_value(json_object_get(m, "name")),
                       (long long)json_integer_value(json_object_get(m, "step")), val,
                       json_string_value(json_object_get(m, "time")));
        }
    }
    json_decref(reply);
    return CLI_OK;
}
