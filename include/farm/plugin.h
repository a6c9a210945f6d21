/*
 * farm plugin SDK, ABI version 1.
 *
 * This is the only header an execution plugin needs. A plugin is a shared
 * object that exports one symbol, farm_plugin_v1, emitted by one
 * FARM_PLUGIN_DEFINE(...) line. It links against nothing of farm: every
 * service the host offers reaches the plugin through struct farm_host, a
 * function table that only ever grows at its end.
 *
 * Who calls what, and from where:
 *   - farm_plugin_v1() is called by farm-worker (never by farmd) right after
 *     dlopen. It must have no side effects and return a pointer to static,
 *     constant data that stays valid while the library is loaded.
 *   - run() is called once, on the worker's main thread, in a process that
 *     runs this one task and then exits. The worker never calls dlclose, so
 *     a plugin may leave threads or static state behind when run() returns.
 *   - Host functions may be called from any thread of the plugin while run()
 *     is executing, and never after run() has returned.
 *
 * Versioning:
 *   - abi_major changes only when an existing member changes meaning or
 *     position. The worker refuses a plugin whose major differs from its own.
 *   - abi_minor grows when members are appended to struct farm_host or
 *     struct farm_plugin. A plugin compiled against an older minor keeps
 *     working: the host reads struct farm_plugin only up to plugin->size.
 *     A plugin compiled against a newer minor probes host members with
 *     FARM_HOST_HAS() before calling them.
 *
 * Ownership (whoever allocates frees; the host copies what a plugin hands
 * it): strings passed to host functions are copied before the call returns;
 * strings returned by host functions are borrowed and stay valid until run()
 * returns.
 */
#ifndef FARM_PLUGIN_H
#define FARM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FARM_PLUGIN_ABI_MAJOR 1
#define FARM_PLUGIN_ABI_MINOR 0

/* The name of the one symbol a plugin exports. */
#define FARM_PLUGIN_SYMBOL "farm_plugin_v1"

#if defined(__GNUC__)
#define FARM_PLUGIN_EXPORT __attribute__((visibility("default")))
#define FARM__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FARM_PLUGIN_EXPORT
#define FARM__PRINTF(f, a)
#endif

/* Types of a declared parameter. A submission's params are checked against
 * them at submit time: a string must be a JSON string, an int a JSON integer,
 * a number any JSON number, a bool true or false; json accepts any value. */
enum farm_param_type {
    FARM_PARAM_STRING = 1,
    FARM_PARAM_INT = 2,
    FARM_PARAM_NUMBER = 3,
    FARM_PARAM_BOOL = 4,
    FARM_PARAM_JSON = 5
};

/* One row of a plugin's parameter table. The table is an array terminated by
 * a row whose name is NULL. It is data, read by the host without running any
 * plugin code beyond farm_plugin_v1().
 *   name          the key in the task's params object
 *   type          an enum farm_param_type value
 *   required      nonzero: a submission without it is refused
 *   default_json  the value used when absent, as JSON text ("8", "\"gpipe\"",
 *                 "[\"fc2\"]"), or NULL for none
 *   help          one line shown by `farm plugin info` */
struct farm_param {
    const char *name;
    int type;
    int required;
    const char *default_json;
    const char *help;
};

/* Log levels for farm_host.log. */
enum farm_log_level {
    FARM_LOG_DEBUG = 0,
    FARM_LOG_INFO = 1,
    FARM_LOG_WARN = 2,
    FARM_LOG_ERROR = 3
};

/* The run's context: opaque to the plugin, passed back to every host call. */
struct farm_ctx;

/* The host's function table, handed to run(). Append-only: members are never
 * removed or reordered within a major version. */
struct farm_host {
    /* sizeof(struct farm_host) as the host was compiled. */
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* Writes one line to the task's log, prefixed with the level. */
    void (*log)(struct farm_ctx *ctx, int level, const char *fmt, ...) FARM__PRINTF(3, 4);

    /* Reports progress: fraction in [0, 1] (clamped) and a short text saying
     * what is being done (may be NULL). Shown by `farm wait` and `farm run`.
     * Cheap to call often: the host forwards at most a few updates a second. */
    void (*progress)(struct farm_ctx *ctx, double fraction, const char *what);

    /* Records one point of the metric series `name`: value at step. Names are
     * [A-Za-z0-9_./-], at most 128 bytes. Returns 0 or a negative code. */
    int (*metric)(struct farm_ctx *ctx, const char *name, double value, int64_t step);

    /* Copies the file at `path` (absolute, or relative to work_dir) into the
     * run's artifacts under `name` (a plain file name; NULL: the file's base
     * name). Returns 0 or a negative code (-ENOENT, -EINVAL for a bad name). */
    int (*artifact)(struct farm_ctx *ctx, const char *path, const char *name);

    /* The task's params as a JSON object text, with the table's defaults
     * applied. Borrowed until run() returns. */
    const char *(*params_json)(struct farm_ctx *ctx);

    /* The directory run() starts in (the task's source snapshot or checkout).
     * Borrowed until run() returns. */
    const char *(*work_dir)(struct farm_ctx *ctx);

    /* The restored dependency package, or NULL when the task has no deps.
     * Borrowed until run() returns. */
    const char *(*deps_dir)(struct farm_ctx *ctx);

    /* Nonzero once the task has been cancelled or timed out. A plugin polls
     * it between units of work and returns promptly (any code) when set;
     * after the grace period the whole process tree is killed. */
    int (*cancelled)(struct farm_ctx *ctx);

    /* Typed access to one parameter, defaults applied. Each returns 0 and
     * writes *out, or -ENOENT when the param is absent with no default, or
     * -EINVAL when it has another type. A string is borrowed until run()
     * returns. An int param read as a number converts. */
    int (*param_string)(struct farm_ctx *ctx, const char *name, const char **out);
    int (*param_int)(struct farm_ctx *ctx, const char *name, int64_t *out);
    int (*param_number)(struct farm_ctx *ctx, const char *name, double *out);
    int (*param_bool)(struct farm_ctx *ctx, const char *name, int *out);

    /* A private scratch directory for this run, removed with the run
     * directory by retention. Borrowed until run() returns. */
    const char *(*scratch_dir)(struct farm_ctx *ctx);

    /* Sets the exit code the task reports (`farm show`'s exit_code), for a
     * plugin that runs a command and wants its status shown. Without it a
     * run() result of 0 reports 0 and a negative result reports 1. */
    void (*set_exit_code)(struct farm_ctx *ctx, int code);
};

/* True when `host` has `member` and it is set: a plugin compiled against a
 * newer minor calls this before using a member a host may not have. */
#define FARM_HOST_HAS(host, member)                                                    \
    ((host) != NULL &&                                                                 \
     (size_t)(host)->size >= offsetof(struct farm_host, member) + sizeof((host)->member) && \
     (host)->member != NULL)

/* The plugin's descriptor, returned by farm_plugin_v1(). Static and constant.
 *   abi_major, abi_minor, size  filled by FARM_PLUGIN_DEFINE
 *   name     equals the file name without ".so"; [a-z0-9_-], at most 64
 *   version  the plugin's own version text
 *   summary  one line shown by `farm plugins`
 *   params   the parameter table (NULL-name terminated), or NULL for none
 *   run      runs the task; returns 0 on success or a negative code on
 *            failure (the task ends failed with that code). */
struct farm_plugin {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size;
    const char *name;
    const char *version;
    const char *summary;
    const struct farm_param *params;
    int (*run)(const struct farm_host *host, struct farm_ctx *ctx);
};

typedef const struct farm_plugin *(*farm_plugin_entry_fn)(void);

/* Emits the descriptor and the entry symbol. Use once per plugin, with
 * designated initialisers for the members above:
 *
 *   FARM_PLUGIN_DEFINE(.name = "hello", .version = "1.0",
 *                      .summary = "says hello", .params = params, .run = run)
 */
#define FARM_PLUGIN_DEFINE(...)                                                        \
    static const struct farm_plugin farm__plugin_descriptor = {                        \
        .abi_major = FARM_PLUGIN_ABI_MAJOR,                                            \
        .abi_minor = FARM_PLUGIN_ABI_MINOR,                                            \
        .size = (uint32_t)sizeof(struct farm_plugin),                                  \
        __VA_ARGS__};                                                                  \
    FARM_PLUGIN_EXPORT const struct farm_plugin *farm_plugin_v1(void);                 \
    FARM_PLUGIN_EXPORT const struct farm_plugin *farm_plugin_v1(void)                  \
    {                                                                                  \
        return &farm__plugin_descriptor;                                               \
    }

#ifdef __cplusplus
}
#endif
#endif /* FARM_PLUGIN_H */
