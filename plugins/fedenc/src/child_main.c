/* farm-fedenc-child: one federation child as its own process.
 *
 *   farm-fedenc-child --connect HOST:PORT --id K --data JSON|@FILE
 *                     [--base DIR] [--fault SPEC] [--connect-timeout SEC]
 *
 * The shared secret comes from the environment (FARM_FEDENC_SECRET), never
 * from the command line, where other users could read it. Exit status: 0
 * after the master's BYE, 1 on a usage error, 2 when refused or
 * disconnected. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/fedenc_model.h"
#include "farm/fedenc_task.h"

static void log_stderr(void *user, int level, const char *msg)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)user;
    fprintf(stderr, "%s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
    fflush(stderr);
}

static int usage(const char *why)
{
    fprintf(stderr,
            "farm-fedenc-child: %s\n"
            "usage: farm-fedenc-child --connect HOST:PORT --id K --data JSON|@FILE\n"
            "                         [--base DIR] [--fault SPEC] [--connect-timeout SEC]\n"
            "       the shared secret is read from FARM_FEDENC_SECRET\n",
            why);
    return 1;
}

int main(int argc, char **argv)
{
    const char *connect = NULL, *id = NULL, *data = NULL, *base = NULL, *fault = NULL;
    double timeout = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage("every option takes a value");
        const char *v = argv[++i];
        if (strcmp(a, "--connect") == 0)
            connect = v;
        else if (strcmp(a, "--id") == 0)
            id = v;
        else if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--base") == 0)
            base = v;
        else if (strcmp(a, "--fault") == 0)
            fault = v;
        else if (strcmp(a, "--connect-timeout") == 0)
            timeout = atof(v);
        else
            return usage("unknown option");
    }
    if (connect == NULL || id == NULL || data == NULL)
        return usage("--connect, --id and --data are required");
    const char *secret = getenv("FARM_FEDENC_SECRET");
    if (secret == NULL || secret[0] == '\0')
        return usage("FARM_FEDENC_SECRET is not set");
    char *end = NULL;
    unsigned long idv = strtoul(id, &end, 10);
    if (*id == '\0' || *end != '\0' || idv > 0x7fffffffUL)
        return usage("--id: expected a non-negative integer");

    struct farm_err err;
    struct farm_fedenc_task_child_args args = {
        .connect = connect,
        .id = (uint32_t)idv,
        .data = data,
        .base_dir = base,
        .faults = fault,
        .secret = secret,
        .connect_timeout = timeout,
        .log = log_stderr,
    };
    int rc = farm_fedenc_task_child(&args, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return rc == FARM_EBADPARAM ? 1 : 2;
    }
    return 0;
}
