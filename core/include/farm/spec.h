/*
 * farm.yaml: the spec file of a model repo (see docs/spec.md).
 *
 * Parsing checks structure and types and names file:line:column in every
 * message. It does not know which plugins exist: the caller checks plugin
 * names and params against the plugin tables, using farm_spec_error() to
 * point at the task's `plugin` or `params` node.
 */
#ifndef FARM_SPEC_H
#define FARM_SPEC_H

#include <jansson.h>
#include <stddef.h>

#include "farm/error.h"
#include "farm/yamljson.h"

/* The ranges a task's priority and timeout (seconds; 0 = none, at most 31
 * days) take, wherever the task comes from: farm.yaml, the CLI, --batch. */
#define FARM_PRIORITY_MAX 1000000
#define FARM_TIMEOUT_MAX 2678400

struct farm_spec {
    struct farm_yaml_doc *doc; /* owns every node below */
    /* The tasks, normalised, in file order: objects with name, plugin,
     * params (object; an exec task's `run` is params.run), timeout (s, 0 =
     * none), retries, priority, needs (array of names), paths (array of
     * patterns, may be empty), labels (object). */
    json_t *tasks;
    /* deps: {dir, build, env: [names], restore: "copy"|"link"}, or NULL. */
    json_t *deps;
    int coalesce; /* top-level `coalesce:` (default 1) */
    /* Per task, the nodes to point at in later errors (borrowed). */
    const json_t **task_nodes, **plugin_nodes, **params_nodes;
    size_t n_tasks;
};

/* Parses the spec at `path` (messages say `display`, e.g. "farm.yaml" or
 * "1a2b3c4:farm.yaml"). On success *spec is filled and is the caller's, to
 * release with farm_spec_release(). */
int farm_spec_parse_file(const char *path, const char *display, struct farm_spec *spec,
                         struct farm_err *err);
int farm_spec_parse_string(const char *text, size_t len, const char *display,
                           struct farm_spec *spec, struct farm_err *err);

/* Finds the task named `name`: its index, or -1. */
int farm_spec_find(const struct farm_spec *spec, const char *name);

/* Sets err to "FILE:LINE:COL: msg" at `node` (borrowed from the spec).
 * Returns code. */
int farm_spec_error(const struct farm_spec *spec, const json_t *node, struct farm_err *err,
                    int code, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

void farm_spec_release(struct farm_spec *spec);

#endif
