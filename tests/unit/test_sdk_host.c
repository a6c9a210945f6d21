/*
 * The plugin ABI across versions, without farmd or farm-worker:
 *   - probe.so, built against ABI 1.0, runs against a fake host larger than
 *     today's struct farm_host (a later minor with an appended member) and
 *     against one smaller (an older host); FARM_HOST_HAS tells it which
 *     members exist, and it never touches one that does not;
 *   - FARM_HOST_HAS itself at the edges (NULL host, NULL member, size one
 *     byte short);
 *   - farm__plugin_load on every refusal fixture: the message names the
 *     file and the reason; newer.so (a descriptor from a future minor) loads.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "farm/plugin.h"
#include "farm/pluginload.h"
#include "farm/util.h"

/* ---- a fake host ----------------------------------------------------------- */

struct farm_ctx {
    char log[4096];
    size_t log_len;
    struct {
        char name[64];
        double value;
    } metrics[16];
    int n_metrics;
    int exit_code_set;
};

static void fake_log(struct farm_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    int n;
    (void)level;
    va_start(ap, fmt);
    n = vsnprintf(ctx->log + ctx->log_len, sizeof ctx->log - ctx->log_len, fmt, ap);
    va_end(ap);
    if (n > 0 && ctx->log_len + (size_t)n + 1 < sizeof ctx->log) {
        ctx->log_len += (size_t)n;
        ctx->log[ctx->log_len++] = '\n';
        ctx->log[ctx->log_len] = '\0';
    }
}

static void fake_progress(struct farm_ctx *ctx, double f, const char *what)
{
    (void)ctx;
    (void)f;
    (void)what;
}

static int fake_metric(struct farm_ctx *ctx, const char *name, double value, int64_t step)
{
    (void)step;
    assert_true(ctx->n_metrics < 16);
    snprintf(ctx->metrics[ctx->n_metrics].name, sizeof ctx->metrics[0].name, "%s", name);
    ctx->metrics[ctx->n_metrics].value = value;
    ctx->n_metrics++;
    return 0;
}

static int fake_artifact(struct farm_ctx *ctx, const char *path, const char *name)
{
    (void)ctx;
    (void)path;
    (void)name;
    return -ENOSYS;
}

static const char *fake_params_json(struct farm_ctx *ctx)
{
    (void)ctx;
    return "{\"n\":5}";
}

static const char *fake_work_dir(struct farm_ctx *ctx)
{
    (void)ctx;
    return "/work-dir";
}

static const char *fake_deps_dir(struct farm_ctx *ctx)
{
    (void)ctx;
    return NULL;
}

static int fake_cancelled(struct farm_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int fake_param_string(struct farm_ctx *ctx, const char *name, const char **out)
{
    (void)ctx;
    (void)name;
    (void)out;
    return -ENOENT;
}

static int fake_param_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    (void)ctx;
    if (strcmp(name, "n") != 0)
        return -ENOENT;
    *out = 5;
    return 0;
}

static int fake_param_number(struct farm_ctx *ctx, const char *name, double *out)
{
    (void)ctx;
    (void)name;
    (void)out;
    return -ENOENT;
}

static int fake_param_bool(struct farm_ctx *ctx, const char *name, int *out)
{
    (void)ctx;
    (void)name;
    (void)out;
    return -ENOENT;
}

static const char *fake_scratch_dir(struct farm_ctx *ctx)
{
    (void)ctx;
    return "/scratch-dir";
}

static void fake_set_exit_code(struct farm_ctx *ctx, int code)
{
    (void)code;
    ctx->exit_code_set = 1;
}

/* Members an older host does not have: a plugin that calls one fails. */
static int poison_param_int(struct farm_ctx *ctx, const char *name, int64_t *out)
{
    (void)ctx;
    (void)name;
    (void)out;
    fail_msg("param_int called beyond the host's size");
    return -1;
}

static const char *poison_scratch_dir(struct farm_ctx *ctx)
{
    (void)ctx;
    fail_msg("scratch_dir called beyond the host's size");
    return NULL;
}

static void poison_set_exit_code(struct farm_ctx *ctx, int code)
{
    (void)ctx;
    (void)code;
    fail_msg("set_exit_code called beyond the host's size");
}

static int future_gpu_count(struct farm_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static struct farm_host full_host(void)
{
    struct farm_host h = {
        .size = sizeof(struct farm_host),
        .abi_major = FARM_PLUGIN_ABI_MAJOR,
        .abi_minor = FARM_PLUGIN_ABI_MINOR,
        .log = fake_log,
        .progress = fake_progress,
        .metric = fake_metric,
        .artifact = fake_artifact,
        .params_json = fake_params_json,
        .work_dir = fake_work_dir,
        .deps_dir = fake_deps_dir,
        .cancelled = fake_cancelled,
        .param_string = fake_param_string,
        .param_int = fake_param_int,
        .param_number = fake_param_number,
        .param_bool = fake_param_bool,
        .scratch_dir = fake_scratch_dir,
        .set_exit_code = fake_set_exit_code,
    };
    return h;
}

static double metric_of(const struct farm_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->n_metrics; i++)
        if (!strcmp(ctx->metrics[i].name, name))
            return ctx->metrics[i].value;
    fail_msg("no metric %s", name);
    return -1;
}

static int has_metric(const struct farm_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->n_metrics; i++)
        if (!strcmp(ctx->metrics[i].name, name))
            return 1;
    return 0;
}

/* ---- fixtures ------------------------------------------------------------- */

static void fixture_path(char *buf, size_t len, const char *rel)
{
    const char *b = getenv("FARM_BUILD_DIR");
    assert_non_null(b);
    snprintf(buf, len, "%s/fixtures/plugins/%s", b, rel);
}

static const struct farm_plugin *open_probe(void)
{
    char path[PATH_MAX];
    void *h;
    farm_plugin_entry_fn entry;
    fixture_path(path, sizeof path, "probe.so");
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    *(void **)(&entry) = dlsym(h, FARM_PLUGIN_SYMBOL);
    assert_non_null(entry);
    return entry();
}

/* ---- tests ---------------------------------------------------------------- */

/* A host from a later minor: the table grew at its end. The 1.0 plugin sees
 * every member it knows, uses them, and succeeds. */
static void test_grown_host(void **state)
{
    struct future_host {
        struct farm_host base;
        int (*gpu_count)(struct farm_ctx *ctx);
    } fh = {.base = full_host(), .gpu_count = future_gpu_count};
    struct farm_ctx ctx = {0};
    const struct farm_plugin *p = open_probe();
    (void)state;
    fh.base.size = sizeof fh;
    fh.base.abi_minor = FARM_PLUGIN_ABI_MINOR + 1;
    assert_true(sizeof fh > sizeof(struct farm_host));
    assert_int_equal(p->run(&fh.base, &ctx), 0);
    assert_true(metric_of(&ctx, "has.scratch_dir") == 1);
    assert_true(metric_of(&ctx, "has.set_exit_code") == 1);
    assert_true(metric_of(&ctx, "has.param_int") == 1);
    assert_true(metric_of(&ctx, "n") == 5);
    assert_int_equal(ctx.exit_code_set, 1);
    assert_non_null(strstr(ctx.log, "writing under /scratch-dir"));
    {
        char want[64];
        snprintf(want, sizeof want, "host ABI %d.%d, %zu bytes", FARM_PLUGIN_ABI_MAJOR,
                 FARM_PLUGIN_ABI_MINOR + 1, sizeof fh);
        assert_non_null(strstr(ctx.log, want));
    }
}

/* An older host whose table ends before param_string: the members past its
 * size are set to functions that fail the test, so only the size check can
 * keep the plugin away from them. */
static void test_older_host(void **state)
{
    struct farm_host h = full_host();
    struct farm_ctx ctx = {0};
    const struct farm_plugin *p = open_probe();
    (void)state;
    h.size = (uint32_t)offsetof(struct farm_host, param_string);
    h.param_int = poison_param_int;
    h.scratch_dir = poison_scratch_dir;
    h.set_exit_code = poison_set_exit_code;
    assert_int_equal(p->run(&h, &ctx), 0);
    assert_true(metric_of(&ctx, "has.scratch_dir") == 0);
    assert_true(metric_of(&ctx, "has.set_exit_code") == 0);
    assert_true(metric_of(&ctx, "has.param_int") == 0);
    assert_false(has_metric(&ctx, "n"));
    assert_int_equal(ctx.exit_code_set, 0);
    assert_non_null(strstr(ctx.log, "writing under /work-dir"));
}

static void test_host_has_edges(void **state)
{
    struct farm_host h = full_host();
    const struct farm_host *none = NULL;
    size_t end = offsetof(struct farm_host, scratch_dir) + sizeof h.scratch_dir;
    (void)state;
    assert_false(FARM_HOST_HAS(none, log));
    assert_true(FARM_HOST_HAS(&h, log));
    assert_true(FARM_HOST_HAS(&h, set_exit_code));
    h.size = (uint32_t)end;
    assert_true(FARM_HOST_HAS(&h, scratch_dir));
    assert_false(FARM_HOST_HAS(&h, set_exit_code));
    h.size = (uint32_t)end - 1;
    assert_false(FARM_HOST_HAS(&h, scratch_dir));
    assert_true(FARM_HOST_HAS(&h, param_bool));
    h.size = sizeof h;
    h.deps_dir = NULL;
    assert_false(FARM_HOST_HAS(&h, deps_dir));
}

/* Loads `rel` from the fixtures with farm__plugin_load and expects a refusal
 * whose message holds the path and `reason`. */
static void expect_refused(const char *dir, const char *home, const char *reason)
{
    const struct farm_plugin *p = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    assert_int_equal(farm__plugin_load(dir, home, &p, &err), FARM_EBADPLUGIN);
    assert_null(p);
    if (!strstr(err.msg, dir) || !strstr(err.msg, reason))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err.msg, dir, reason);
}

static void test_refusals(void **state)
{
    char path[PATH_MAX];
    (void)state;
    fixture_path(path, sizeof path, "noentry.so");
    expect_refused(path, NULL, "refused: no entry symbol farm_plugin_v1");
    fixture_path(path, sizeof path, "abimajor.so");
    {
        char want[128];
        snprintf(want, sizeof want, "refused: plugin ABI %d.0, this farm speaks ABI %d.x",
                 FARM_PLUGIN_ABI_MAJOR + 1, FARM_PLUGIN_ABI_MAJOR);
        expect_refused(path, NULL, want);
    }
    fixture_path(path, sizeof path, "short.so");
    {
        char want[128];
        snprintf(want, sizeof want, "refused: descriptor is %zu bytes, shorter than the %zu",
                 offsetof(struct farm_plugin, run),
                 offsetof(struct farm_plugin, run) + sizeof(void (*)(void)));
        expect_refused(path, NULL, want);
    }
    fixture_path(path, sizeof path, "misnamed.so");
    expect_refused(path, NULL,
                   "refused: plugin calls itself \"othername\" but the file is named misnamed.so");
}

static void test_refuse_writable_and_clash(void **state)
{
    char tmpl[] = "/tmp/farm-sdk-unit.XXXXXX", src[PATH_MAX], dst[PATH_MAX + 64];
    char *data;
    size_t len;
    const char *home = mkdtemp(tmpl);
    (void)state;
    assert_non_null(home);

    /* A copy of ok.so, writable by group, then by others. */
    fixture_path(src, sizeof src, "ok.so");
    assert_int_equal(farm_read_file(src, &data, &len), 0);
    snprintf(dst, sizeof dst, "%s/ok.so", home);
    assert_int_equal(farm_write_file(dst, data, len, 0), 0);
    free(data);
    assert_int_equal(chmod(dst, 0664), 0);
    expect_refused(dst, NULL, "refused: file is writable by group (mode 664); chmod go-w it");
    assert_int_equal(chmod(dst, 0646), 0);
    expect_refused(dst, NULL, "refused: file is writable by others (mode 646)");
    assert_int_equal(chmod(dst, 0644), 0);
    {
        const struct farm_plugin *p = NULL;
        struct farm_err err;
        farm_err_clear(&err);
        assert_int_equal(farm__plugin_load(dst, NULL, &p, &err), 0);
        assert_string_equal(p->name, "ok");
    }
    unlink(dst);

    /* A valid plugin named exec in HOME/plugins: the built-in comes first. */
    fixture_path(src, sizeof src, "clash/exec.so");
    assert_int_equal(farm_read_file(src, &data, &len), 0);
    snprintf(dst, sizeof dst, "%s/plugins", home);
    assert_int_equal(farm_mkdirs(dst, 0755), 0);
    snprintf(dst, sizeof dst, "%s/plugins/exec.so", home);
    assert_int_equal(farm_write_file(dst, data, len, 0), 0);
    free(data);
    chmod(dst, 0644);
    {
        char builtin[PATH_MAX + 32], real[PATH_MAX], want[PATH_MAX + 64];
        snprintf(builtin, sizeof builtin, "%s/plugins/exec.so", getenv("FARM_BUILD_DIR"));
        if (!realpath(builtin, real))
            skip(); /* a build without plugins/exec has nothing to clash with */
        snprintf(want, sizeof want, "refused: name \"exec\" clashes with the built-in plugin %s", real);
        expect_refused(dst, home, want);
    }
    farm_rmtree(home);
}

/* A descriptor from a future minor (larger, higher minor) is accepted and
 * its run is the one called. */
static void test_newer_minor_loads(void **state)
{
    char path[PATH_MAX];
    const struct farm_plugin *p = NULL;
    struct farm_err err;
    struct farm_host h = full_host();
    struct farm_ctx ctx = {0};
    (void)state;
    fixture_path(path, sizeof path, "newer.so");
    farm_err_clear(&err);
    assert_int_equal(farm__plugin_load(path, NULL, &p, &err), 0);
    assert_string_equal(p->name, "newer");
    assert_true(p->abi_minor > FARM_PLUGIN_ABI_MINOR);
    assert_true(p->size > sizeof(struct farm_plugin));
    assert_int_equal(p->run(&h, &ctx), 0);
    assert_true(metric_of(&ctx, "answer") == 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grown_host),
        cmocka_unit_test(test_older_host),
        cmocka_unit_test(test_host_has_edges),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_refuse_writable_and_clash),
        cmocka_unit_test(test_newer_minor_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
