/*
 * YAML to JSON: the one converter that farm.yaml, model descriptions and
 * cluster files go through. libyaml parses; the result is a jansson tree
 * plus the source position of every node, so that checks made later on the
 * tree can still name file:line:column.
 *
 * Scalars: plain (unquoted) `null`, `~` and empty become null; true/false
 * (and yes/no, on/off) become booleans; decimal integers become integers;
 * other numbers become reals; everything else, and every quoted scalar,
 * becomes a string. Anchors and aliases are supported; duplicate keys and
 * non-scalar keys are errors. Only the first document of a stream is read.
 *
 * Thread-safety: a document is not shared between threads while it is built;
 * afterwards, lookups are read-only and may run concurrently.
 */
#ifndef FARM_YAMLJSON_H
#define FARM_YAMLJSON_H

#include <jansson.h>
#include <stddef.h>

#include "farm/error.h"

struct farm_yaml_doc;

/* Parses the file at `path`. `display` is the name used in messages (NULL:
 * the path). On success *out is the caller's, to release with
 * farm_yaml_free(). Errors (unreadable file, syntax) name display:line:col. */
int farm_yaml_load_file(const char *path, const char *display, struct farm_yaml_doc **out,
                        struct farm_err *err);

/* The same for text already in memory (`len` bytes, need not be terminated). */
int farm_yaml_load_string(const char *text, size_t len, const char *display,
                          struct farm_yaml_doc **out, struct farm_err *err);

/* The root of the tree (borrowed: valid until farm_yaml_free; incref it to
 * keep it longer). An empty document gives a JSON null. */
json_t *farm_yaml_root(const struct farm_yaml_doc *doc);

/* The display name given at load time (borrowed). */
const char *farm_yaml_name(const struct farm_yaml_doc *doc);

/* Writes the 1-based line and column where `node` starts. Returns 0, or
 * -ENOENT when the node is not from this document (then *line and *col are
 * not written). */
int farm_yaml_mark(const struct farm_yaml_doc *doc, const json_t *node, int *line, int *col);

/* Sets `err` to `code` with "NAME:LINE:COL: " and the formatted message,
 * the position being `node`'s (or the document's start when unknown).
 * Returns `code`. */
int farm_yaml_error(const struct farm_yaml_doc *doc, const json_t *node, struct farm_err *err,
                    int code, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Releases the document and its tree. NULL is allowed. */
void farm_yaml_free(struct farm_yaml_doc *doc);

#endif
