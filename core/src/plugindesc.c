/* Plugin descriptions and parameter checks against a plugin's table: no
 * plugin code runs here (farmd and the CLI check parameters with it). */
#define _GNU_SOURCE
#include "farm/pluginload.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/util.h"

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

/* NULL when `s` is one line of UTF-8 text (NULL counts as empty), else what
 * is wrong with it. Plugin texts travel in JSON and are shown in tables. */
static const char *text_fault(const char *s)
{
    json_t *j;
    if (!s)
        return NULL;
    if (!(j = json_string(s)))
        return "is not valid UTF-8";
    json_decref(j);
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return "holds a control character (one line of text is expected)";
    return NULL;
}

int farm__params_table_check(const struct farm_plugin *p, const char *path, struct farm_err *err)
{
    const char *why;
    if ((why = text_fault(p->version)) || (why = text_fault(p->summary)))
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: its %s %s", path,
                            text_fault(p->version) ? "version" : "summary", why);
    for (const struct farm_param *q = p->params; q && q->name; q++) {
        const char *type = farm__param_type_name(q->type);
        json_t *def;
        json_error_t je;
        if (!*q->name)
            return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: a parameter has an empty name",
                                path);
        if ((why = text_fault(q->name))) {
            char *esc = farm_escape_text(q->name);
            farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: parameter name \"%.200s\" %s", path,
                         esc ? esc : "?", why);
            free(esc);
            return FARM_EBADPLUGIN;
        }
        if (strchr(q->name, '='))
            return farm_err_set(err, FARM_EBADPLUGIN,
                                "%s: refused: parameter name \"%s\" holds '=' (it could not be "
                                "given as --param NAME=VALUE)",
                                path, q->name);
        if ((why = text_fault(q->help)))
            return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: parameter \"%s\": its help %s",
                                path, q->name, why);
        for (const struct farm_param *r = p->params; r != q; r++)
            if (!strcmp(r->name, q->name))
                return farm_err_set(err, FARM_EBADPLUGIN,
                                    "%s: refused: parameter \"%s\" is declared twice", path,
                                    q->name);
        /* A type newer than this farm (docs/plugins.md, ABI rules) is
         * shown as unknown and takes any value. */
        if (!q->default_json)
            continue;
        if (q->required)
            return farm_err_set(err, FARM_EBADPLUGIN,
                                "%s: refused: parameter \"%s\" is required and has a default "
                                "(give one or the other)",
                                path, q->name);
        if (!(def = json_loads(q->default_json, JSON_DECODE_ANY, &je)))
            return farm_err_set(err, FARM_EBADPLUGIN,
                                "%s: refused: parameter \"%s\": its default is not JSON (%s)",
                                path, q->name, je.text);
        if (!type_ok(type, def)) {
            farm_err_set(err, FARM_EBADPLUGIN,
                         "%s: refused: parameter \"%s\": its default %.60s is not of its type "
                         "(%s)",
                         path, q->name, q->default_json, type);
            json_decref(def);
            return FARM_EBADPLUGIN;
        }
        json_decref(def);
    }
    return 0;
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
