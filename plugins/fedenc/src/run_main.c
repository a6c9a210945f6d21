/* farm-fedenc-run: runs the fedenc task outside farm, for benchmarks and
 * for trying parameters before `farm run fedenc` is at hand.
 *
 *   farm-fedenc-run [--param KEY=VALUE]... [--out DIR] [--quiet]
 *
 * VALUE is read as JSON when it parses (8, 0.5, true, [64,32], {...}) and
 * as a string otherwise. Artifacts go to DIR (default "."), the metrics to
 * stderr, and the run's figures as one JSON object to stdout. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/fedenc_task.h"

static int quiet;

static void log_stderr(void *user, int level, const char *msg)
{
    (void)user;
    if (!quiet || level >= 2)
        fprintf(stderr, "%s\n", msg);
}

static int metric(void *user, const char *name, double value, int64_t step)
{
    (void)user;
    if (!quiet)
        fprintf(stderr, "metric %s[%lld] = %g\n", name, (long long)step, value);
    return 0;
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int main(int argc, char **argv)
{
    json_t *params = json_object();
    const char *out = ".";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--param") == 0 && i + 1 < argc) {
            char *kv = argv[++i];
            char *eq = strchr(kv, '=');
            if (eq == NULL) {
                fprintf(stderr, "farm-fedenc-run: --param %s: expected KEY=VALUE\n", kv);
                return 2;
            }
            *eq = '\0';
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            json_object_set_new(params, kv, v ? v : json_string(eq + 1));
        } else {
            fprintf(stderr, "usage: farm-fedenc-run [--param KEY=VALUE]... [--out DIR] [--quiet]\n");
            return 2;
        }
    }
    /* The child executable sits next to this one. */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "farm-fedenc-run: cannot find my own path\n");
        return 2;
    }
    self[n] = '\0';
    char exe[PATH_MAX + 32];
    snprintf(exe, sizeof exe, "%s/farm-fedenc-child", dirname(self));
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return 2;
    struct farm_fedenc_task_env env = {
        .work_dir = cwd,
        .deps_dir = getenv("FARM_DEPS_DIR"),
        .scratch_dir = out,
        .child_exe = exe,
    };
    struct farm_fedenc_task_host host = {.log = log_stderr, .metric = metric};
    struct farm_fedenc_task_result res;
    struct farm_err err;
    int rc = farm_fedenc_task_run(params, &env, &host, &res, &err);
    json_decref(params);
    if (rc != 0) {
        fprintf(stderr, "farm-fedenc-run: %s\n", err.msg);
        return 1;
    }
    json_t *o = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:f, s:f, s:f, s:I, s:f, s:o}", "rounds",
                          (json_int_t)res.rounds, "applied", (json_int_t)res.applied,
                          "fed_accuracy", num_or_null(res.fed_accuracy), "fed_loss",
                          num_or_null(res.fed_loss), "central_accuracy",
                          num_or_null(res.central_accuracy), "central_loss",
                          num_or_null(res.central_loss), "median_round_seconds",
                          res.median_round_seconds, "median_comm_agg_fraction",
                          res.median_comm_agg_fraction, "rounds_per_second",
                          res.rounds_per_second, "encoder_params",
                          (json_int_t)res.encoder_params, "federation_seconds",
                          res.federation_seconds, "central_seconds",
                          num_or_null(res.central_seconds));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 0;
}
