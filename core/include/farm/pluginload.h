/*
 * Finding, validating and describing plugins. Loading (dlopen) happens only
 * in farm-worker; farmd and the CLI get a plugin's table as JSON from
 * `farm-worker --describe`, so no plugin code ever runs in them.
 */
#ifndef FARM_PLUGINLOAD_H
#define FARM_PLUGINLOAD_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>

#include "farm/error.h"
#include "farm/plugin.h"

#define FARM_PLUGIN_MAX_DIRS 4

/* The directories searched for NAME.so, in order: the built-in directory
 * next to the binaries (../plugins in a build tree, ../lib/farm/plugins
 * installed), then $FARM_HOME/plugins. Writes up to `max` paths into dirs
 * and returns how many. `home` may be NULL (then only built-in ones). */
int farm__plugin_dirs(const char *home, char dirs[][PATH_MAX], int max);

/* Resolves a plugin name (or a path containing '/' or ending in ".so") to
 * the file to load. The first directory holding NAME.so wins. */
int farm__plugin_find(const char *name, const char *home, char *out, size_t len,
                      struct farm_err *err);

/* dlopens `path` and validates it: file not writable by group or others,
 * entry symbol present, ABI major equal, descriptor large enough to hold
 * run, name equal to the file name, name not already provided by an earlier
 * plugin directory. Messages name the file and the reason. On success *out
 * is the plugin's static descriptor. Worker only; never dlclose'd. */
int farm__plugin_load(const char *path, const char *home, const struct farm_plugin **out,
                      struct farm_err *err);

/* The plugin's table as JSON: name, version, summary, path, abi, params
 * [{name, type, required, default, help}]. New reference. */
json_t *farm__plugin_describe(const struct farm_plugin *p, const char *path);
/* Checks a descriptor's parameter table: names present and unique, known
 * types, defaults that are JSON of their type and only on optional ones.
 * 0, or FARM_EBADPLUGIN with a message naming `path` and the parameter. */
int farm__params_table_check(const struct farm_plugin *p, const char *path, struct farm_err *err);

/* Checks `params` (an object) against a description from
 * farm__plugin_describe: unknown names, wrong types, missing required ones.
 * Messages say "plugin NAME: param P: ...". */
int farm__params_check(const json_t *desc, const json_t *params, struct farm_err *err);

/* `params` with the description's defaults filled in. New reference. */
json_t *farm__params_with_defaults(const json_t *desc, const json_t *params);

/* The type names used in descriptions: "string", "int", ... */
const char *farm__param_type_name(int type);

#endif
