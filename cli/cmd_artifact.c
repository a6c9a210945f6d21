#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "farm/util.h"

int cmd_artifact(struct cli *cli, int argc, char **argv)
{
    long long id = 0;
    const char *name = NULL, *out = NULL, *v;
    json_t *reply, *a, *found = NULL;
    size_t i;
    int rc, in, o;
    if (argc < 2 || strcmp(argv[1], "get") != 0)
        return cli_usage("artifact", "expected: farm artifact get ID NAME [-o FILE]");
    for (int k = 2; k < argc; k++) {
        int r;
        /* The artifact's bytes are the output: there is no JSON form. */
        if (!strcmp(argv[k], "--json"))
            return cli_usage("artifact", "unexpected argument \"--json\" (artifact get has "
                                         "no JSON output)");
        if ((r = cli_opt("artifact", argc, argv, &k, "-o", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            out = v;
        } else if (!id) {
            if (cli_parse_id(argv[k], &id) < 0)
                return cli_usage("artifact", "expected a task id, got \"%s\"", argv[k]);
        } else if (!name) {
            name = argv[k];
        } else {
            return cli_usage("artifact", "unexpected argument \"%s\"", argv[k]);
        }
    }
    if (!id || !name)
        return cli_usage("artifact", "expected: farm artifact get ID NAME [-o FILE]");
    if ((rc = cli_call(cli, json_pack("{s:s,s:I}", "op", "artifacts", "id", (json_int_t)id), &reply)))
        return rc;
    if (!json_is_true(json_object_get(reply, "ok"))) {
        rc = cli_reply_error("artifact", reply);
        json_decref(reply);
        return rc;
    }
    json_array_foreach(json_object_get(reply, "artifacts"), i, a)
    {
        if (!strcmp(json_string_value(json_object_get(a, "name")), name))
            found = a;
    }
    if (!found) {
        fprintf(stderr, "farm artifact: task %lld has no artifact named \"%s\" (see farm artifacts %lld)\n",
                id, name, id);
        json_decref(reply);
        return CLI_USAGE;
    }
    in = open(json_string_value(json_object_get(found, "path")), O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "farm artifact: %s: %s (pruned by retention?)\n",
                json_string_value(json_object_get(found, "path")), strerror(errno));
        json_decref(reply);
        return CLI_USAGE;
    }
    if (!out)
        out = name;
    o = strcmp(out, "-") == 0 ? STDOUT_FILENO : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o < 0) {
        fprintf(stderr, "farm artifact: %s: %s\n", out, strerror(errno));
        close(in);
        json_decref(reply);
        return CLI_USAGE;
    }
    for (;;) {
        char buf[65536];
        ssize_t n = read(in, buf, sizeof buf);
        if (n <= 0)
            break;
        if (farm_write_all(o, buf, (size_t)n) < 0) {
            fprintf(stderr, "farm artifact: %s: %s\n", out, strerror(errno));
            rc = CLI_USAGE;
            break;
        }
    }
    close(in);
    if (o != STDOUT_FILENO)
        close(o);
    json_decref(reply);
    return rc;
}
