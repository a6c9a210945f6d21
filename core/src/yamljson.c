#include "farm/yamljson.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct mark {
    const json_t *node;
    int line, col;
};

struct anchor {
    char *name;
    json_t *node;
};

struct farm_yaml_doc {
    char *name;
    json_t *root;
    struct mark *marks;
    size_t n_marks, cap_marks;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
};

struct builder {
    yaml_parser_t parser;
    struct farm_yaml_doc *doc;
    struct farm_err *err;
};

static int add_mark(struct farm_yaml_doc *doc, const json_t *node, const yaml_mark_t *m)
{
    if (doc->n_marks == doc->cap_marks) {
        size_t cap = doc->cap_marks ? doc->cap_marks * 2 : 64;
        struct mark *p = realloc(doc->marks, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        doc->marks = p;
        doc->cap_marks = cap;
    }
    doc->marks[doc->n_marks++] = (struct mark){node, (int)m->line + 1, (int)m->column + 1};
    return 0;
}

static int add_anchor(struct farm_yaml_doc *doc, const char *name, json_t *node)
{
    if (doc->n_anchors == doc->cap_anchors) {
        size_t cap = doc->cap_anchors ? doc->cap_anchors * 2 : 8;
        struct anchor *p = realloc(doc->anchors, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        doc->anchors = p;
        doc->cap_anchors = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    doc->anchors[doc->n_anchors++] = (struct anchor){copy, node};
    return 0;
}

static int perr(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return farm_err_set(b->err, FARM_EBADSPEC, "%s:%d:%d: %s", b->doc->name, (int)m->line + 1,
                        (int)m->column + 1, msg);
}

static int parser_error(struct builder *b)
{
    yaml_parser_t *p = &b->parser;
    const yaml_mark_t *m = p->problem ? &p->problem_mark : &p->context_mark;
    return perr(b, m, "%s%s%s", p->problem ? p->problem : "syntax error",
                p->context ? " " : "", p->context ? p->context : "");
}

static int is_plain(const yaml_event_t *ev)
{
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.style == YAML_ANY_SCALAR_STYLE;
}

static json_t *scalar_value(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (!is_plain(ev))
        return json_stringn(s, n);
    if (n == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0)
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "yes") ||
        !strcmp(s, "on"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE") || !strcmp(s, "no") ||
        !strcmp(s, "off"))
        return json_false();
    /* Integer: optional sign, digits only, within int64; one outside that
     * range is read as a real, so that it stays a number. */
    {
        const char *p = s;
        if (*p == '-' || *p == '+')
            p++;
        if (*p && strspn(p, "0123456789") == strlen(p)) {
            long long v;
            errno = 0;
            v = strtoll(s, NULL, 10);
            if (errno == 0)
                return json_integer(v);
        }
    }
    /* Real: strtod must consume everything and the text must look numeric.
     * JSON has no infinity or NaN (json_real() refuses them), so a number
     * too large for a double (1e400) stays text, like .inf and .nan do;
     * whoever wants a number then reports the text it got. */
    if (strspn(s, "+-0123456789.eE") == n && strpbrk(s, "0123456789")) {
        char *end;
        double d = strtod(s, &end);
        if (*end == '\0' && isfinite(d))
            return json_real(d);
    }
    return json_stringn(s, n);
}

static int build_node(struct builder *b, yaml_event_t *ev, json_t **out);

static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return parser_error(b);
    return 0;
}

static int build_node(struct builder *b, yaml_event_t *ev, json_t **out)
{
    json_t *node = NULL;
    const char *anchor = NULL;
    int rc = 0;

    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (size_t i = b->doc->n_anchors; i-- > 0;) {
            if (strcmp(b->doc->anchors[i].name, name) == 0) {
                *out = json_incref(b->doc->anchors[i].node);
                return 0;
            }
        }
        return perr(b, &ev->start_mark, "unknown alias *%s", name);
    }
    case YAML_SCALAR_EVENT:
        /* "\0" is valid YAML, but no text in farm may hold one: it would
         * end the text early in C, and JSON readers refuse \u0000. */
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
            return perr(b, &ev->start_mark, "a NUL character (\\0) is not allowed in text");
        anchor = (const char *)ev->data.scalar.anchor;
        node = scalar_value(ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = (const char *)ev->data.sequence_start.anchor;
        node = json_array();
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = (const char *)ev->data.mapping_start.anchor;
        node = json_object();
        break;
    default:
        return perr(b, &ev->start_mark, "unexpected YAML event");
    }
    if (!node)
        return farm_err_set(b->err, -ENOMEM, "out of memory");
    if ((rc = add_mark(b->doc, node, &ev->start_mark)) < 0)
        goto fail;
    if (anchor && (rc = add_anchor(b->doc, anchor, node)) < 0)
        goto fail;

    if (ev->type == YAML_SEQUENCE_START_EVENT) {
        for (;;) {
            yaml_event_t child;
            json_t *v;
            if ((rc = next_event(b, &child)) < 0)
                goto fail;
            if (child.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&child);
                break;
            }
            rc = build_node(b, &child, &v);
            yaml_event_delete(&child);
            if (rc < 0)
                goto fail;
            json_array_append_new(node, v);
        }
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        for (;;) {
            yaml_event_t kev, vev;
            json_t *v;
            char *key;
            if ((rc = next_event(b, &kev)) < 0)
                goto fail;
            if (kev.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&kev);
                break;
            }
            if (kev.type != YAML_SCALAR_EVENT) {
                rc = perr(b, &kev.start_mark, "expected a plain key (text), got a %s",
                          kev.type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence or alias");
                yaml_event_delete(&kev);
                goto fail;
            }
            if (memchr(kev.data.scalar.value, '\0', kev.data.scalar.length)) {
                rc = perr(b, &kev.start_mark, "a NUL character (\\0) is not allowed in a key");
                yaml_event_delete(&kev);
                goto fail;
            }
            key = strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
            if (!key) {
                yaml_event_delete(&kev);
                rc = -ENOMEM;
                goto fail;
            }
            if (json_object_get(node, key)) {
                rc = perr(b, &kev.start_mark, "duplicate key \"%s\"", key);
                free(key);
                yaml_event_delete(&kev);
                goto fail;
            }
            yaml_event_delete(&kev);
            if ((rc = next_event(b, &vev)) < 0) {
                free(key);
                goto fail;
            }
            rc = build_node(b, &vev, &v);
            yaml_event_delete(&vev);
            if (rc < 0) {
                free(key);
                goto fail;
            }
            json_object_set_new(node, key, v);
            free(key);
        }
    }
    *out = node;
    return 0;
fail:
    json_decref(node);
    return rc;
}

static int load(const unsigned char *text, size_t len, FILE *fp, const char *display,
                struct farm_yaml_doc **out, struct farm_err *err)
{
    struct builder b = {.err = err};
    yaml_event_t ev;
    int rc = 0;

    b.doc = calloc(1, sizeof *b.doc);
    if (!b.doc || !(b.doc->name = strdup(display ? display : "<yaml>"))) {
        free(b.doc);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    yaml_parser_initialize(&b.parser);
    if (fp)
        yaml_parser_set_input_file(&b.parser, fp);
    else
        yaml_parser_set_input_string(&b.parser, text, len);

    /* stream start, then either stream end (empty) or document start */
    for (;;) {
        if ((rc = next_event(&b, &ev)) < 0)
            goto done;
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            b.doc->root = json_null();
            break;
        }
        rc = build_node(&b, &ev, &b.doc->root);
        yaml_event_delete(&ev);
        break;
    }
    /* The rest of the file is read too: a syntax error after the first
     * document, or a second document, is an error, not something ignored. */
    while (rc == 0 && b.doc->root && !json_is_null(b.doc->root)) {
        if ((rc = next_event(&b, &ev)) < 0)
            break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_DOCUMENT_END_EVENT) {
            rc = perr(&b, &ev.start_mark,
                      "a second YAML document (one file holds one; remove the '---' or what "
                      "follows the first)");
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
    }
done:
    yaml_parser_delete(&b.parser);
    if (rc < 0) {
        farm_yaml_free(b.doc);
        return rc;
    }
    *out = b.doc;
    return 0;
}

int farm_yaml_load_file(const char *path, const char *display, struct farm_yaml_doc **out,
                        struct farm_err *err)
{
    FILE *fp = fopen(path, "rb");
    int rc;
    if (!fp)
        return farm_err_set(err, -errno, "%s: cannot open: %s", display ? display : path,
                            strerror(errno));
    rc = load(NULL, 0, fp, display ? display : path, out, err);
    fclose(fp);
    return rc;
}

int farm_yaml_load_string(const char *text, size_t len, const char *display,
                          struct farm_yaml_doc **out, struct farm_err *err)
{
    return load((const unsigned char *)text, len, NULL, display, out, err);
}

json_t *farm_yaml_root(const struct farm_yaml_doc *doc)
{
    return doc->root;
}

const char *farm_yaml_name(const struct farm_yaml_doc *doc)
{
    return doc->name;
}

int farm_yaml_mark(const struct farm_yaml_doc *doc, const json_t *node, int *line, int *col)
{
    for (size_t i = 0; i < doc->n_marks; i++) {
        if (doc->marks[i].node == node) {
            *line = doc->marks[i].line;
            *col = doc->marks[i].col;
            return 0;
        }
    }
    return -ENOENT;
}

int farm_yaml_error(const struct farm_yaml_doc *doc, const json_t *node, struct farm_err *err,
                    int code, const char *fmt, ...)
{
    char msg[768];
    int line = 1, col = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (node)
        farm_yaml_mark(doc, node, &line, &col);
    return farm_err_set(err, code, "%s:%d:%d: %s", doc->name, line, col, msg);
}

void farm_yaml_free(struct farm_yaml_doc *doc)
{
    if (!doc)
        return;
    json_decref(doc->root);
    for (size_t i = 0; i < doc->n_anchors; i++)
        free(doc->anchors[i].name);
    free(doc->anchors);
    free(doc->marks);
    free(doc->name);
    free(doc);
}
