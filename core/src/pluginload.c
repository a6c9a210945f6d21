#define _GNU_SOURCE
#include "farm/pluginload.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/util.h"

int farm__plugin_dirs(const char *home, char dirs[][PATH_MAX], int max)
{
    char exe[PATH_MAX];
    int n = 0;
    if (farm_exe_dir(exe, sizeof exe) == 0) {
        char d[PATH_MAX + 32];
        struct stat st;
        snprintf(d, sizeof d, "%s/../plugins", exe);
        if (n < max && stat(d, &st) == 0 && S_ISDIR(st.st_mode) && realpath(d, dirs[n]))
            n++;
        snprintf(d, sizeof d, "%s/../lib/farm/plugins", exe);
        if (n < max && stat(d, &st) == 0 && S_ISDIR(st.st_mode) && realpath(d, dirs[n]))
            n++;
    }
    if (home && n < max) {
        snprintf(dirs[n], PATH_MAX, "%.*s/plugins", PATH_MAX - 16, home);
        n++;
    }
    return n;
}

static int is_path(const char *name)
{
    size_t n = strlen(name);
    return strchr(name, '/') != NULL || (n > 3 && !strcmp(name + n - 3, ".so"));
}

int farm__plugin_find(const char *name, const char *home, char *out, size_t len,
                      struct farm_err *err)
{
    char dirs[FARM_PLUGIN_MAX_DIRS][PATH_MAX];
    int n;
    if (is_path(name)) {
        if (!realpath(name, out))
            return farm_err_set(err, FARM_ENOPLUGIN, "%s: plugin file not found: %s", name,
                                strerror(errno));
        (void)len;
        return 0;
    }
    n = farm__plugin_dirs(home, dirs, FARM_PLUGIN_MAX_DIRS);
    for (int i = 0; i < n; i++) {
        if ((size_t)snprintf(out, len, "%.4000s/%.64s.so", dirs[i], name) < len && access(out, R_OK) == 0)
            return 0;
    }
    return farm_err_set(err, FARM_ENOPLUGIN, "no plugin named \"%s\" (see `farm plugins`)", name);
}

int farm__plugin_load(const char *path, const char *home, const struct farm_plugin **out,
                      struct farm_err *err)
{
    struct stat st;
    void *h;
    farm_plugin_entry_fn entry;
    const struct farm_plugin *p;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    size_t need = offsetof(struct farm_plugin, run) + sizeof(p->run);

    if (stat(path, &st) < 0)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: cannot open plugin: %s", path,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: not a regular file", path);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: file is writable by %s (mode %03o); chmod go-w it",
                            path, (st.st_mode & S_IWOTH) ? "others" : "group",
                            (unsigned)(st.st_mode & 0777));
    if (blen < 4 || strcmp(base + blen - 3, ".so") != 0)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: a plugin file name ends in .so",
                            path);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: cannot load: %s", path,
                            dlerror());
    *(void **)(&entry) = dlsym(h, FARM_PLUGIN_SYMBOL);
    if (!entry)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: no entry symbol %s (use FARM_PLUGIN_DEFINE)", path,
                            FARM_PLUGIN_SYMBOL);
    p = entry();
    if (!p)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: %s() returned NULL", path,
                            FARM_PLUGIN_SYMBOL);
    if (p->abi_major != FARM_PLUGIN_ABI_MAJOR)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: plugin ABI %u.%u, this farm speaks ABI %d.x (rebuild "
                            "the plugin against this farm's SDK)",
                            path, p->abi_major, p->abi_minor, FARM_PLUGIN_ABI_MAJOR);
    if (p->size < need)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: descriptor is %u bytes, shorter than the %zu that "
                            "reach run",
                            path, p->size, need);
    if (!p->name || !p->run)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: descriptor lacks %s", path,
                            !p->name ? "a name" : "run");
    if (strlen(p->name) != blen - 3 || strncmp(p->name, base, blen - 3) != 0)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: plugin calls itself \"%s\" but the file is named "
                            "%.*s.so (they must match)",
                            path, p->name, (int)(blen - 3), base);
    /* A plugin must not pose as a built-in one: a file named like a
     * built-in plugin, anywhere but in the built-in directory, is refused.
     * ($FARM_HOME/plugins is searched after the built-ins, so a name there
     * that a built-in already has could never be reached by name either.) */
    {
        char dirs[FARM_PLUGIN_MAX_DIRS][PATH_MAX], real[PATH_MAX];
        int n = farm__plugin_dirs(NULL, dirs, FARM_PLUGIN_MAX_DIRS);
        (void)home;
        if (realpath(path, real)) {
            for (int i = 0; i < n; i++) {
                char other[PATH_MAX + 80], oreal[PATH_MAX];
                snprintf(other, sizeof other, "%.4000s/%.64s.so", dirs[i], p->name);
                if (realpath(other, oreal) && strcmp(oreal, real) != 0)
                    return farm_err_set(err, FARM_EBADPLUGIN,
                                        "%s: refused: name \"%s\" clashes with the built-in "
                                        "plugin %s",
                                        path, p->name, oreal);
            }
        }
    }
    *out = p;
    return 0;
}

const char *farm__param_type_name(int type)
{
    switch (type) {
    case FARM_PARAM_STRING: return "string";
    case FARM_PARAM_INT: return "int";
    case FARM_PARAM_NUMBER: return "number";
    case FARM_PARAM_BOOL: return "bool";
    case FARM_PARAM_JSON: return "json";
    default: return "unknown";
    }
}

json_t *farm__plugin_describe(const struct farm_plugin *p, const char *path)
{
    json_t *d = json_object(), *params = json_array();
    char abi[32];
    snprintf(abi, sizeof abi, "%u.%u", p->abi_major, p->abi_minor);
    json_object_set_new(d, "name", json_string(p->name));
    json_object_set_new(d, "version", json_string(p->version ? p->version : ""));
    json_object_set_new(d, "summary", json_string(p->summary ? p->summary : ""));
    json_object_set_new(d, "path", json_string(path));
    json_object_set_new(d, "abi", json_string(abi));
    for (const struct farm_param *q = p->params; q && q->name; q++) {
        json_t *row = json_object(), *def = NULL;
        json_object_set_new(row, "name", json_string(q->name));
        json_object_set_new(row, "type", json_string(farm__param_type_name(q->type)));
        json_object_set_new(row, "required", json_boolean(q->required));
        if (q->default_json) {
            json_error_t je;
            def = json_loads(q->default_json, JSON_DECODE_ANY, &je);
            if (!def)
                json_object_set_new(row, "default_error", json_string(je.text));
        }
        json_object_set_new(row, "default", def ? def : json_null());
        json_object_set_new(row, "help", json_string(q->help ? q->help : ""));
        json_array_append_new(params, row);
    }
    json_object_set_new(d, "params", params);
    return d;
}

static int type_ok(const char *type, const json_t *v)
{
    if (!strcmp(type, "string"))
        return json_is_string(v);
    if (!strcmp(type, "int"))
        return json_is_integer(v);
    if (!strcmp(type, "number"))
        return json_is_number(v);
    if (!strcmp(type, "bool"))
        return json_is_boolean(v);
    return 1;
}

int farm__params_check(const json_t *desc, const json_t *params, struct farm_err *err)
{
    const char *plugin = json_string_value(json_object_get(desc, "name"));
    json_t *table = json_object_get(desc, "params"), *row, *v;
    const char *k;
    size_t i;
    if (json_is_null(params))
        params = NULL; /* no params at all: the same as an empty mapping */
    if (params && !json_is_object(params))
        return farm_err_set(err, FARM_EBADPARAM, "plugin %s: params: expected a mapping, got %s",
                            plugin, farm_json_kind(params));
    json_object_foreach((json_t *)params, k, v)
    {
        int found = 0;
        json_array_foreach(table, i, row)
        {
            if (!strcmp(json_string_value(json_object_get(row, "name")), k)) {
                const char *type = json_string_value(json_object_get(row, "type"));
                found = 1;
                if (!type_ok(type, v))
                    return farm_err_set(err, FARM_EBADPARAM,
                                        "plugin %s: param %s: expected %s, got %s", plugin, k,
                                        !strcmp(type, "int")      ? "an integer"
                                        : !strcmp(type, "number") ? "a number"
                                        : !strcmp(type, "bool")   ? "true or false"
                                                                  : "text",
                                        farm_json_kind(v));
                break;
            }
        }
        if (!found) {
            char names[512] = "";
            size_t off = 0;
            json_array_foreach(table, i, row)
            {
                int n = snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "",
                                 json_string_value(json_object_get(row, "name")));
                if (n < 0 || (size_t)n >= sizeof names - off)
                    break;
                off += (size_t)n;
            }
            return farm_err_set(err, FARM_EBADPARAM,
                                "plugin %s: param %s: unknown parameter (known: %s)", plugin, k,
                                off ? names : "none");
        }
    }
    json_array_foreach(table, i, row)
    {
        const char *name = json_string_value(json_object_get(row, "name"));
        if (json_is_true(json_object_get(row, "required")) &&
            !json_object_get((json_t *)params, name))
            return farm_err_set(err, FARM_EBADPARAM,
                                "plugin %s: param %s: required parameter is missing (%s)", plugin,
                                name, json_string_value(json_object_get(row, "help")));
    }
    return 0;
}

json_t *farm__params_with_defaults(const json_t *desc, const json_t *params)
{
    json_t *out = json_is_object(params) ? json_deep_copy(params) : json_object(), *row;
    size_t i;
    json_array_foreach(json_object_get(desc, "params"), i, row)
    {
        const char *name = json_string_value(json_object_get(row, "name"));
        json_t *def = json_object_get(row, "default");
        if (!json_object_get(out, name) && def && !json_is_null(def))
            json_object_set(out, name, def);
    }
    return out;
}
