#include "farm/spec.h"
#include "farm/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text of a value for messages: "ten", 12, [...]. */
static void show(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        snprintf(buf, len, "\"%s\"", json_string_value(v));
    } else if (json_is_object(v) || json_is_array(v)) {
        snprintf(buf, len, "%s", farm_json_kind(v));
    } else if (json_is_real(v)) {
        /* The shortest text that reads back as the same double: 1e+300, not
         * jansson's 1.0000000000000001e+300; 2.0 keeps its point. */
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        if (!strpbrk(buf, ".e"))
            snprintf(buf + strlen(buf), len - strlen(buf), ".0");
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", s ? s : "?");
        free(s);
    }
}

#define SERR(node, ...) farm_yaml_error(spec->doc, (node), err, FARM_EBADSPEC, __VA_ARGS__)

static int valid_name(const char *s)
{
    if (!*s || strlen(s) > 128)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int want_string_list(struct farm_spec *spec, const char *what, json_t *v,
                            struct farm_err *err)
{
    size_t i;
    json_t *e;
    char got[160];
    if (!json_is_array(v)) {
        show(v, got, sizeof got);
        return SERR(v, "%s: expected a list of text, got %s", what, got);
    }
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            show(e, got, sizeof got);
            return SERR(e, "%s[%zu]: expected text, got %s", what, i, got);
        }
    }
    return 0;
}

/* The largest timeout (FARM_TIMEOUT_MAX): 31 days. Far below what a timer
 * in milliseconds (int64 or uint64) can hold, so no later conversion
 * overflows. */
#define TIMEOUT_MAX FARM_TIMEOUT_MAX

/* A timeout in whole seconds, 0 to TIMEOUT_MAX. A fraction is rounded up, so
 * that a small positive timeout never becomes 0, which means none. Infinity,
 * NaN and numbers beyond a double reach us as text (see yamljson.c). */
static int want_seconds(struct farm_spec *spec, const char *what, json_t *v, struct farm_err *err,
                        json_int_t *out)
{
    char got[160];
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= TIMEOUT_MAX) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) <= TIMEOUT_MAX) {
        double d = json_real_value(v);
        json_int_t s = (json_int_t)d;
        *out = (double)s < d ? s + 1 : s;
        return 0;
    }
    show(v, got, sizeof got);
    if (json_is_number(v))
        return SERR(v, "%s: expected a number of seconds from 0 to %d (31 days), got %s", what,
                    TIMEOUT_MAX, got);
    return SERR(v, "%s: expected a number of seconds, got %s", what, got);
}

static int want_int(struct farm_spec *spec, const char *what, json_t *v, struct farm_err *err,
                    json_int_t lo, json_int_t hi, json_int_t *out)
{
    char got[160];
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        show(v, got, sizeof got);
        return SERR(v, "%s: expected an integer from %lld to %lld, got %s", what, (long long)lo,
                    (long long)hi, got);
    }
    *out = json_integer_value(v);
    return 0;
}

static int parse_deps(struct farm_spec *spec, json_t *d, struct farm_err *err)
{
    const char *k;
    json_t *v, *out;
    char got[160];
    if (!json_is_object(d)) {
        show(d, got, sizeof got);
        return SERR(d, "deps: expected a mapping with dir and build, got %s", got);
    }
    out = json_object();
    json_object_foreach(d, k, v)
    {
        if (!strcmp(k, "dir") || !strcmp(k, "build")) {
            if (!json_is_string(v) || !*json_string_value(v)) {
                show(v, got, sizeof got);
                json_decref(out);
                return SERR(v, "deps.%s: expected non-empty text, got %s", k, got);
            }
            if (!strcmp(k, "dir")) {
                const char *s = json_string_value(v);
                char norm[1024];
                size_t o = 0;
                if (s[0] == '/' || strstr(s, "..")) {
                    json_decref(out);
                    return SERR(v, "deps.dir: expected a sub-directory of the repo, got \"%s\"",
                                s);
                }
                if (strlen(s) >= sizeof norm) {
                    json_decref(out);
                    return SERR(v, "deps.dir: longer than %zu bytes", sizeof norm - 1);
                }
                /* One spelling for one directory ("./deps", "deps/" and
                 * "deps//x" are "deps" and "deps/x"): a commit's tree is
                 * looked up by it. */
                while (*s && o < sizeof norm - 1) {
                    size_t n = strcspn(s, "/");
                    if (n && !(n == 1 && s[0] == '.')) {
                        if (o && o < sizeof norm - 1)
                            norm[o++] = '/';
                        if (o + n >= sizeof norm)
                            n = sizeof norm - 1 - o;
                        memcpy(norm + o, s, n);
                        o += n;
                    }
                    s += n;
                    while (*s == '/')
                        s++;
                }
                norm[o] = '\0';
                json_object_set_new(out, k, json_string(o ? norm : "."));
                continue;
            }
            json_object_set(out, k, v);
        } else if (!strcmp(k, "env")) {
            int rc = want_string_list(spec, "deps.env", v, err);
            size_t i, j;
            json_t *e;
            if (rc < 0) {
                json_decref(out);
                return rc;
            }
            /* Names of environment variables, each once: the key takes
             * their values (docs/cache.md). */
            json_array_foreach(v, i, e)
            {
                const char *name = json_string_value(e);
                size_t n = strlen(name);
                if (n == 0 || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789_") != n ||
                    (name[0] >= '0' && name[0] <= '9')) {
                    json_decref(out);
                    return SERR(e, "deps.env: expected names of environment variables "
                                   "(letters, digits and _, not starting with a digit), got "
                                   "\"%s\"",
                                name);
                }
                for (j = 0; j < i; j++)
                    if (!strcmp(json_string_value(json_array_get(v, j)), name)) {
                        json_decref(out);
                        return SERR(e, "deps.env: \"%s\" is named twice", name);
                    }
            }
            json_object_set(out, k, v);
        } else if (!strcmp(k, "restore")) {
            if (!json_is_string(v) || (strcmp(json_string_value(v), "copy") != 0 &&
                                       strcmp(json_string_value(v), "link") != 0)) {
                show(v, got, sizeof got);
                json_decref(out);
                return SERR(v, "deps.restore: expected copy or link, got %s", got);
            }
            json_object_set(out, k, v);
        } else {
            json_decref(out);
            return SERR(v, "deps: unknown key \"%s\" (expected dir, build, env, restore)", k);
        }
    }
    if (!json_object_get(out, "dir") || !json_object_get(out, "build")) {
        json_decref(out);
        return SERR(d, "deps: expected both dir and build");
    }
    if (!json_object_get(out, "env"))
        json_object_set_new(out, "env", json_array());
    if (!json_object_get(out, "restore"))
        json_object_set_new(out, "restore", json_string("copy"));
    spec->deps = out;
    return 0;
}

static int parse_task(struct farm_spec *spec, size_t idx, json_t *t, struct farm_err *err)
{
    const char *k;
    json_t *v, *out;
    char what[64], got[160];
    int rc = 0;
    json_int_t n = 0; /* the default of timeout, retries and priority */

    if (!json_is_object(t)) {
        show(t, got, sizeof got);
        return SERR(t, "tasks[%zu]: expected a mapping (name, plugin, ...), got %s", idx, got);
    }
    spec->task_nodes[idx] = t;
    out = json_pack("{s:o,s:o,s:i,s:i,s:i,s:o,s:o}", "params", json_object(), "labels",
                    json_object(), "timeout", 0, "retries", 0, "priority", 0, "needs",
                    json_array(), "paths", json_array());
    json_object_foreach(t, k, v)
    {
        snprintf(what, sizeof what, "tasks[%zu].%s", idx, k);
        if (!strcmp(k, "name")) {
            if (!json_is_string(v) || !valid_name(json_string_value(v))) {
                show(v, got, sizeof got);
                rc = SERR(v, "%s: expected a name of letters, digits, '-', '_' or '.', got %s",
                          what, got);
                break;
            }
            json_object_set(out, "name", v);
        } else if (!strcmp(k, "plugin")) {
            if (!json_is_string(v) || !valid_name(json_string_value(v))) {
                show(v, got, sizeof got);
                rc = SERR(v, "%s: expected a plugin name, got %s", what, got);
                break;
            }
            spec->plugin_nodes[idx] = v;
            json_object_set(out, "plugin", v);
        } else if (!strcmp(k, "run")) {
            if (!json_is_string(v)) {
                show(v, got, sizeof got);
                rc = SERR(v, "%s: expected a shell command (text), got %s", what, got);
                break;
            }
        } else if (!strcmp(k, "params")) {
            if (!json_is_object(v)) {
                show(v, got, sizeof got);
                rc = SERR(v, "%s: expected a mapping of parameters, got %s", what, got);
                break;
            }
            spec->params_nodes[idx] = v;
            json_object_update(json_object_get(out, "params"), v);
        } else if (!strcmp(k, "labels")) {
            const char *lk;
            json_t *lv;
            if (!json_is_object(v)) {
                show(v, got, sizeof got);
                rc = SERR(v, "%s: expected a mapping of text, got %s", what, got);
                break;
            }
            json_object_foreach(v, lk, lv)
            {
                if (!json_is_string(lv)) {
                    show(lv, got, sizeof got);
                    rc = SERR(lv, "%s.%s: expected text, got %s", what, lk, got);
                    break;
                }
            }
            if (rc < 0)
                break;
            json_object_update(json_object_get(out, "labels"), v);
        } else if (!strcmp(k, "timeout")) {
            if ((rc = want_seconds(spec, what, v, err, &n)) < 0)
                break;
            json_object_set_new(out, "timeout", json_integer(n));
        } else if (!strcmp(k, "retries")) {
            if ((rc = want_int(spec, what, v, err, 0, 100, &n)) < 0)
                break;
            json_object_set_new(out, "retries", json_integer(n));
        } else if (!strcmp(k, "priority")) {
            if ((rc = want_int(spec, what, v, err, -FARM_PRIORITY_MAX, FARM_PRIORITY_MAX, &n)) < 0)
                break;
            json_object_set_new(out, "priority", json_integer(n));
        } else if (!strcmp(k, "needs") || !strcmp(k, "paths")) {
            if (json_is_string(v)) {
                json_array_append(json_object_get(out, k), v);
            } else {
                if ((rc = want_string_list(spec, what, v, err)) < 0)
                    break;
                json_array_extend(json_object_get(out, k), v);
            }
        } else {
            rc = SERR(v,
                      "tasks[%zu]: unknown key \"%s\" (expected name, plugin, run, params, "
                      "timeout, retries, priority, needs, paths, labels)",
                      idx, k);
            break;
        }
    }
    if (rc == 0 && !json_object_get(out, "name"))
        rc = SERR(t, "tasks[%zu]: missing name", idx);
    if (rc == 0) {
        json_t *run = json_object_get(t, "run");
        json_t *plugin = json_object_get(out, "plugin");
        if (run) {
            if (plugin && strcmp(json_string_value(plugin), "exec") != 0)
                rc = SERR(run, "tasks[%zu].run: only exec tasks take run (this one has plugin %s)",
                          idx, json_string_value(plugin));
            else if (json_object_get(json_object_get(out, "params"), "run"))
                rc = SERR(run, "tasks[%zu].run: given twice (also params.run)", idx);
            else
                json_object_set(json_object_get(out, "params"), "run", run);
            if (!plugin)
                json_object_set_new(out, "plugin", json_string("exec"));
            if (!spec->plugin_nodes[idx])
                spec->plugin_nodes[idx] = run;
        } else if (!plugin) {
            rc = SERR(t, "tasks[%zu]: missing plugin (or run, for a shell command)", idx);
        }
    }
    if (rc < 0) {
        json_decref(out);
        return rc;
    }
    if (!spec->params_nodes[idx])
        spec->params_nodes[idx] = t;
    json_array_append_new(spec->tasks, out);
    return 0;
}

/* Depth-first search for a cycle through `needs`. */
static int visit(struct farm_spec *spec, size_t i, char *mark, struct farm_err *err)
{
    json_t *needs = json_object_get(json_array_get(spec->tasks, i), "needs");
    size_t k;
    json_t *n;
    mark[i] = 1;
    json_array_foreach(needs, k, n)
    {
        int j = farm_spec_find(spec, json_string_value(n));
        if (mark[j] == 1) {
            const json_t *node = json_object_get(spec->task_nodes[i], "needs");
            return farm_yaml_error(spec->doc, node ? node : spec->task_nodes[i], err,
                                   FARM_ECYCLE, "tasks[%zu].needs: cycle: %s needs %s, which needs %s",
                                   i, json_string_value(json_object_get(json_array_get(spec->tasks, i), "name")),
                                   json_string_value(n), "it back (directly or through others)");
        }
        if (mark[j] == 0) {
            int rc = visit(spec, (size_t)j, mark, err);
            if (rc < 0)
                return rc;
        }
    }
    mark[i] = 2;
    return 0;
}

static int parse_root(struct farm_spec *spec, struct farm_err *err)
{
    json_t *root = farm_yaml_root(spec->doc), *tasks = NULL, *v;
    const char *k;
    char got[160];
    size_t i;
    int rc;

    if (!json_is_object(root)) {
        show(root, got, sizeof got);
        return SERR(root, "expected a mapping with tasks (and optionally deps), got %s", got);
    }
    spec->coalesce = 1;
    json_object_foreach(root, k, v)
    {
        if (!strcmp(k, "tasks")) {
            tasks = v;
        } else if (!strcmp(k, "deps")) {
            if ((rc = parse_deps(spec, v, err)) < 0)
                return rc;
        } else if (!strcmp(k, "coalesce")) {
            if (!json_is_boolean(v)) {
                show(v, got, sizeof got);
                return SERR(v, "coalesce: expected true or false, got %s", got);
            }
            spec->coalesce = json_is_true(v);
        } else {
            return SERR(v, "unknown top-level key \"%s\" (expected tasks, deps, coalesce)", k);
        }
    }
    if (!tasks)
        return SERR(root, "missing tasks");
    if (!json_is_array(tasks) || json_array_size(tasks) == 0) {
        show(tasks, got, sizeof got);
        return SERR(tasks, "tasks: expected a non-empty list of tasks, got %s", got);
    }
    spec->n_tasks = json_array_size(tasks);
    spec->task_nodes = calloc(spec->n_tasks, sizeof *spec->task_nodes);
    spec->plugin_nodes = calloc(spec->n_tasks, sizeof *spec->plugin_nodes);
    spec->params_nodes = calloc(spec->n_tasks, sizeof *spec->params_nodes);
    if (!spec->task_nodes || !spec->plugin_nodes || !spec->params_nodes)
        return farm_err_set(err, -ENOMEM, "out of memory");
    json_array_foreach(tasks, i, v)
    {
        if ((rc = parse_task(spec, i, v, err)) < 0)
            return rc;
        const char *name = json_string_value(json_object_get(json_array_get(spec->tasks, i), "name"));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name, json_string_value(json_object_get(json_array_get(spec->tasks, j), "name"))))
                return SERR(json_object_get(v, "name"), "tasks[%zu].name: duplicate task name \"%s\" (also tasks[%zu])",
                            i, name, j);
    }
    /* needs must name tasks of this file, and form no cycle. */
    for (i = 0; i < spec->n_tasks; i++) {
        json_t *needs = json_object_get(json_array_get(spec->tasks, i), "needs"), *n;
        size_t k2;
        json_array_foreach(needs, k2, n)
        {
            if (farm_spec_find(spec, json_string_value(n)) < 0) {
                json_t *node = json_object_get(spec->task_nodes[i], "needs");
                if (json_is_array(node))
                    node = json_array_get(node, k2);
                return SERR(node, "tasks[%zu].needs: no task named \"%s\" in this file", i,
                            json_string_value(n));
            }
        }
    }
    {
        char *mark = calloc(spec->n_tasks, 1);
        rc = 0;
        for (i = 0; i < spec->n_tasks && rc == 0; i++)
            if (!mark[i])
                rc = visit(spec, i, mark, err);
        free(mark);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int finish(struct farm_spec *spec, int rc)
{
    if (rc < 0)
        farm_spec_release(spec);
    return rc;
}

int farm_spec_parse_file(const char *path, const char *display, struct farm_spec *spec,
                         struct farm_err *err)
{
    int rc;
    memset(spec, 0, sizeof *spec);
    if ((rc = farm_yaml_load_file(path, display, &spec->doc, err)) < 0)
        return rc;
    spec->tasks = json_array();
    return finish(spec, parse_root(spec, err));
}

int farm_spec_parse_string(const char *text, size_t len, const char *display,
                           struct farm_spec *spec, struct farm_err *err)
{
    int rc;
    memset(spec, 0, sizeof *spec);
    if ((rc = farm_yaml_load_string(text, len, display, &spec->doc, err)) < 0)
        return rc;
    spec->tasks = json_array();
    return finish(spec, parse_root(spec, err));
}

int farm_spec_find(const struct farm_spec *spec, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(spec->tasks, i, t)
    {
        if (!strcmp(json_string_value(json_object_get(t, "name")), name))
            return (int)i;
    }
    return -1;
}

int farm_spec_error(const struct farm_spec *spec, const json_t *node, struct farm_err *err,
                    int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return farm_yaml_error(spec->doc, node, err, code, "%s", msg);
}

void farm_spec_release(struct farm_spec *spec)
{
    if (!spec)
        return;
    json_decref(spec->tasks);
    json_decref(spec->deps);
    free(spec->task_nodes);
    free(spec->plugin_nodes);
    free(spec->params_nodes);
    farm_yaml_free(spec->doc);
    memset(spec, 0, sizeof *spec);
}
