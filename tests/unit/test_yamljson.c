/* The YAML-to-JSON converter: scalar typing, positions, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm/xml.h"
#include "farm/yamljson.h"

static struct farm_yaml_doc *load(const char *text, struct farm_err *err)
{
    struct farm_yaml_doc *doc = NULL;
    farm_err_clear(err);
    if (farm_yaml_load_string(text, strlen(text), "t.yaml", &doc, err) < 0)
        return NULL;
    return doc;
}

static void test_scalars(void **state)
{
    struct farm_err err;
    struct farm_yaml_doc *doc =
        load("a: 12\nb: -3\nc: 1.5\nd: true\ne: no\nf: ~\ng: '12'\nh: hello world\ni: 1e3\n"
             "j: \"true\"\nk:\n",
             &err);
    json_t *r;
    (void)state;
    assert_non_null(doc);
    r = farm_yaml_root(doc);
    assert_true(json_is_integer(json_object_get(r, "a")));
    assert_int_equal(json_integer_value(json_object_get(r, "a")), 12);
    assert_int_equal(json_integer_value(json_object_get(r, "b")), -3);
    assert_true(json_is_real(json_object_get(r, "c")));
    assert_true(json_is_true(json_object_get(r, "d")));
    assert_true(json_is_false(json_object_get(r, "e")));
    assert_true(json_is_null(json_object_get(r, "f")));
    assert_string_equal(json_string_value(json_object_get(r, "g")), "12");
    assert_string_equal(json_string_value(json_object_get(r, "h")), "hello world");
    assert_true(json_real_value(json_object_get(r, "i")) == 1000.0);
    assert_string_equal(json_string_value(json_object_get(r, "j")), "true");
    assert_true(json_is_null(json_object_get(r, "k")));
    farm_yaml_free(doc);
}

static void test_marks(void **state)
{
    struct farm_err err;
    struct farm_yaml_doc *doc = load("top:\n  list:\n    - one\n    - {x: 5}\n", &err);
    json_t *list, *five;
    int line = 0, col = 0;
    (void)state;
    assert_non_null(doc);
    list = json_object_get(json_object_get(farm_yaml_root(doc), "top"), "list");
    assert_int_equal(farm_yaml_mark(doc, json_array_get(list, 0), &line, &col), 0);
    assert_int_equal(line, 3);
    assert_int_equal(col, 7);
    five = json_object_get(json_array_get(list, 1), "x");
    assert_int_equal(farm_yaml_mark(doc, five, &line, &col), 0);
    assert_int_equal(line, 4);
    assert_int_equal(col, 11);
    farm_yaml_error(doc, five, &err, FARM_EBADSPEC, "x: expected text, got %d", 5);
    assert_string_equal(err.msg, "t.yaml:4:11: x: expected text, got 5");
    assert_int_equal(err.code, FARM_EBADSPEC);
    {
        json_t *other = json_integer(1);
        assert_int_equal(farm_yaml_mark(doc, other, &line, &col), -ENOENT);
        json_decref(other);
    }
    farm_yaml_free(doc);
}

static void test_errors(void **state)
{
    struct farm_err err;
    (void)state;
    assert_null(load("a: 1\na: 2\n", &err));
    assert_string_equal(err.msg, "t.yaml:2:1: duplicate key \"a\"");
    assert_null(load("a: [1, 2\n", &err));
    assert_non_null(strstr(err.msg, "t.yaml:2:"));
    assert_null(load("? [a]\n: 1\n", &err));
    assert_non_null(strstr(err.msg, "expected a plain key"));
    assert_null(load("a: *nope\n", &err));
    assert_non_null(strstr(err.msg, "unknown alias"));
}

static void test_aliases_and_empty(void **state)
{
    struct farm_err err;
    struct farm_yaml_doc *doc = load("base: &b {lr: 0.1}\nuse: *b\n", &err);
    (void)state;
    assert_non_null(doc);
    assert_true(json_equal(json_object_get(farm_yaml_root(doc), "base"),
                           json_object_get(farm_yaml_root(doc), "use")));
    farm_yaml_free(doc);
    doc = load("", &err);
    assert_non_null(doc);
    assert_true(json_is_null(farm_yaml_root(doc)));
    farm_yaml_free(doc);
    assert_int_equal(farm_yaml_load_file("/nonexistent/x.yaml", "x.yaml", &doc, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "x.yaml: cannot open"));
}

static void test_error_table(void **state)
{
    (void)state;
    assert_string_equal(farm_err_name(FARM_EBADSPEC), "FARM_EBADSPEC");
    assert_string_equal(farm_strerror(FARM_ENOTASK), "no such task");
    assert_string_equal(farm_err_name(-ENOENT), "ENOENT");
    assert_string_equal(farm_strerror(-ENOENT), strerror(ENOENT));
    assert_true(FARM_EBADREQ <= -5000 && FARM_EBADREQ > -6000);
}

static void test_xml_text(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    (void)state;
    farm_xml_text(f, "fc<1> & \"head\"");
    farm_xml_text(f, NULL);
    fclose(f);
    assert_string_equal(buf, "fc&lt;1&gt; &amp; &quot;head&quot;");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),       cmocka_unit_test(test_marks),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_aliases_and_empty),
        cmocka_unit_test(test_error_table),   cmocka_unit_test(test_xml_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
