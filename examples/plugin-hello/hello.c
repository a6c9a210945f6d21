/*
 * hello: a small, complete farm execution plugin, built out of tree against
 * the installed SDK (see README.md).
 *
 * It greets `name` `count` times, one greeting every `delay` seconds. Each
 * greeting is a line of greeting.txt, which becomes the run's artifact; the
 * run reports its progress, a metric series `greetings` (the number written
 * so far, at step i) and a final metric `bytes` (the artifact's size). It
 * polls cancelled() between greetings and while it waits, and returns
 * -ECANCELED as soon as it turns true.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <farm/plugin.h>

static const struct farm_param params[] = {
    {.name = "name", .type = FARM_PARAM_STRING, .required = 1, .help = "who to greet"},
    {.name = "count", .type = FARM_PARAM_INT, .default_json = "5",
     .help = "how many greetings (1 to 1000000)"},
    {.name = "delay", .type = FARM_PARAM_NUMBER, .default_json = "0.05",
     .help = "seconds to wait before each greeting"},
    {0},
};

/* Sleeps `seconds` in slices of at most 20 ms, returning early (nonzero)
 * when the task is cancelled. */
static int wait_or_cancel(const struct farm_host *host, struct farm_ctx *ctx, double seconds)
{
    while (seconds > 0) {
        double slice = seconds < 0.02 ? seconds : 0.02;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(slice * 1e9)};
        if (host->cancelled(ctx))
            return 1;
        nanosleep(&ts, NULL);
        seconds -= slice;
    }
    return host->cancelled(ctx);
}

static int run(const struct farm_host *host, struct farm_ctx *ctx)
{
    const char *name;
    int64_t count;
    double delay;
    char path[4096];
    const char *dir;
    FILE *f;
    long size;
    int rc;

    /* The host has checked the types and applied the defaults already, so
     * these calls fail only for a parameter missing from the table. */
    if ((rc = host->param_string(ctx, "name", &name)) < 0 ||
        (rc = host->param_int(ctx, "count", &count)) < 0 ||
        (rc = host->param_number(ctx, "delay", &delay)) < 0)
        return rc;
    if (count < 1 || count > 1000000 || !(delay >= 0 && delay <= 3600)) {
        host->log(ctx, FARM_LOG_ERROR, "hello: count must be 1..1000000 and delay 0..3600 s");
        return -EINVAL;
    }

    /* Scratch space is private to this run. Every ABI 1.0 host has
     * scratch_dir; the probe shows how to use a member that an older host
     * might lack, with a fallback. */
    dir = FARM_HOST_HAS(host, scratch_dir) ? host->scratch_dir(ctx) : host->work_dir(ctx);
    if (snprintf(path, sizeof path, "%s/greeting.txt", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    f = fopen(path, "w");
    if (!f) {
        rc = -errno;
        host->log(ctx, FARM_LOG_ERROR, "hello: cannot write %s: %s", path, strerror(errno));
        return rc;
    }

    host->log(ctx, FARM_LOG_INFO, "greeting %s %lld times", name, (long long)count);
    for (int64_t i = 1; i <= count; i++) {
        char what[64];
        if (wait_or_cancel(host, ctx, delay)) {
            host->log(ctx, FARM_LOG_WARN, "hello: cancelled after %lld of %lld greetings",
                      (long long)(i - 1), (long long)count);
            fclose(f);
            return -ECANCELED;
        }
        fprintf(f, "hello, %s (%lld of %lld)\n", name, (long long)i, (long long)count);
        host->metric(ctx, "greetings", (double)i, i);
        snprintf(what, sizeof what, "greeting %lld of %lld", (long long)i, (long long)count);
        host->progress(ctx, (double)i / (double)count, what);
    }
    size = ftell(f);
    if (fclose(f) != 0)
        return -EIO;

    host->metric(ctx, "bytes", (double)size, count);
    if ((rc = host->artifact(ctx, path, "greeting.txt")) < 0) {
        host->log(ctx, FARM_LOG_ERROR, "hello: cannot store the artifact (%d)", rc);
        return rc;
    }
    host->log(ctx, FARM_LOG_INFO, "wrote %ld bytes of greetings", size);
    return 0;
}

FARM_PLUGIN_DEFINE(.name = "hello", .version = "1.0.0",
                   .summary = "greets someone, with progress, metrics and an artifact",
                   .params = params, .run = run)
