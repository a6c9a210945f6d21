/* rnnexit model descriptions: structure of a valid model and the errors a
 * user sees for bad ones (file:line:col, before anything runs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "farm/rnnexit_model.h"

static const char good[] =
    "input: 3\n"                                                        /* 1 */
    "layers:\n"                                                         /* 2 */
    "  - units:\n"                                                      /* 3 */
    "      - name: enc\n"                                               /* 4 */
    "        nodes:\n"                                                  /* 5 */
    "          - {name: proj, type: dense, out: 8, skip: zeros}\n"      /* 6 */
    "          - {name: pad, type: start, condition: {kind: length}}\n" /* 7 */
    "          - {name: cell, type: gru, hidden: 8}\n"                  /* 8 */
    "          - {name: conv, type: start, condition: {kind: converged, node: cell, eps: 0.001}}\n"
    "          - {name: fc, type: dense, out: 8, skip: input}\n" /* 10 */
    "          - {name: relu, type: act, fn: relu}\n"            /* 11 */
    "          - {name: convend, type: end}\n"                   /* 12 */
    "          - {name: padend, type: end}\n"                    /* 13 */
    "          - {name: after, type: act, fn: tanh}\n"           /* 14 */
    "      - name: side\n"                                       /* 15 */
    "        nodes:\n"                                           /* 16 */
    "          - {name: c, type: lstm, hidden: 4}\n"             /* 17 */
    "  - units:\n"                                               /* 18 */
    "      - name: top\n"                                        /* 19 */
    "        nodes:\n"                                           /* 20 */
    "          - {name: exit, type: start, condition: {kind: confidence, head: clf, "
    "threshold: 0.9}}\n"                                /* 21 */
    "          - {name: cell, type: lstm, hidden: 6}\n" /* 22 */
    "          - {name: g, type: start, condition: {kind: gate, node: cell, threshold: 0.5}}\n"
    "          - {name: clf, type: head, classes: 5}\n" /* 24 */
    "          - {name: gend, type: end}\n"             /* 25 */
    "output: {unit: top, node: clf}\n";

static void test_good_model(void **state)
{
    (void)state;
    struct farm_rx_model *m = NULL;
    struct farm_err err = {0};
    int rc = farm_rx_model_load_string(good, sizeof good - 1, "good.yaml", &m, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(m->n_layers, 2);
    assert_int_equal(m->n_units, 3);
    assert_int_equal(m->layer_width[0], 8 + 4);
    assert_int_equal(m->layer_width[1], 6);
    const struct farm_rx_unit *enc = &m->units[0];
    assert_string_equal(enc->name, "enc");
    assert_int_equal(enc->n_nodes, 9);
    assert_int_equal(enc->n_compute, 5);
    assert_int_equal(enc->in, 3);
    assert_int_equal(enc->out, 8);
    /* pad (1) is closed by padend (7); conv (3) by convend (6), nested in pad */
    assert_int_equal(enc->nodes[1].match, 7);
    assert_int_equal(enc->nodes[7].match, 1);
    assert_int_equal(enc->nodes[3].match, 6);
    assert_int_equal(enc->nodes[3].parent, 1);
    assert_int_equal(enc->nodes[4].parent, 3);
    assert_int_equal(enc->nodes[8].parent, -1);
    assert_int_equal(enc->nodes[3].ref, 2);
    assert_int_equal(enc->nodes[3].cond, FARM_RX_COND_CONVERGED);
    assert_true(enc->nodes[3].threshold == 0.001);
    assert_int_equal(enc->nodes[0].pass, FARM_RX_PASS_ZEROS);
    assert_int_equal(enc->nodes[2].pass, FARM_RX_PASS_STATE);
    assert_int_equal(enc->nodes[4].pass, FARM_RX_PASS_INPUT);
    assert_int_equal(enc->nodes[4].line, 10);
    assert_int_equal(enc->nodes[8].slot, 4);
    const struct farm_rx_unit *side = &m->units[1];
    assert_int_equal(side->offset, 8);
    assert_int_equal(side->in, 3);
    const struct farm_rx_unit *top = &m->units[2];
    assert_int_equal(top->in, 12);
    assert_int_equal(top->nodes[0].match, top->n_nodes); /* open to the unit's end */
    assert_int_equal(top->nodes[0].ref, 3);
    assert_int_equal(top->nodes[2].ref, 1);
    assert_int_equal(top->nodes[3].out, 6); /* a head passes its input on */
    assert_int_equal(m->out_unit, 2);
    assert_int_equal(m->out_node, 3);
    assert_int_equal(m->out_width, 5);
    assert_int_equal(m->loss, FARM_RX_LOSS_CE);
    farm_rx_model_free(m);
}

/* Loads `text` and expects FARM_EBADMODEL with a message starting with
 * `where` and containing `what`. */
static void expect_bad(const char *text, const char *where, const char *what)
{
    struct farm_rx_model *m = NULL;
    struct farm_err err = {0};
    int rc = farm_rx_model_load_string(text, strlen(text), "m.yaml", &m, &err);
    if (rc != FARM_EBADMODEL || strncmp(err.msg, where, strlen(where)) != 0 ||
        !strstr(err.msg, what))
        fail_msg("for:\n%s\ngot rc %d, message: %s\nwanted %s ... %s", text, rc, err.msg, where,
                 what);
    assert_null(m);
}

#define HEAD "input: 2\nlayers:\n  - units:\n      - name: u\n        nodes:\n"
#define OUT "output: {unit: u, node: c}\n"

static void test_end_before_start(void **state)
{
    (void)state;
    expect_bad(HEAD "          - {name: e, type: end}\n"
                    "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: s, type: start, condition: {kind: length}}\n" OUT,
               "m.yaml:6:13:", "end node 'e' comes before any start");
}

static void test_start_without_needed_end(void **state)
{
    (void)state;
    expect_bad(HEAD "          - {name: s1, type: start, condition: {kind: length}}\n"
                    "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: s2, type: start, condition: {kind: converged, node: c, "
                    "eps: 0.1}}\n"
                    "          - {name: d, type: dense, out: 4}\n" OUT,
               "m.yaml:8:13:", "start node 's2' has no end, but it is nested in region 's1'");
}

static void test_unknown_type_and_condition(void **state)
{
    (void)state;
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: x, type: conv2d, out: 4}\n" OUT,
               "m.yaml:7:29:", "unknown type 'conv2d' (expected one of: dense, act, gru");
    expect_bad(HEAD "          - {name: s, type: start, condition: {kind: sometimes}}\n"
                    "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: e, type: end}\n" OUT,
               "m.yaml:6:54:", "unknown kind 'sometimes' (expected one of: length, confidence");
    expect_bad(HEAD "          - {name: s, type: start}\n"
                    "          - {name: c, type: gru, hidden: 4}\n" OUT,
               "m.yaml:6:13:", "missing 'condition'");
}

static void test_bad_references_and_widths(void **state)
{
    (void)state;
    expect_bad(HEAD "          - {name: s, type: start, condition: {kind: confidence, head: c, "
                    "threshold: 0.9}}\n"
                    "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: e, type: end}\n" OUT,
               "m.yaml:6:", "confidence needs a head node, 'c' is a gru");
    expect_bad(HEAD "          - {name: s, type: start, condition: {kind: gate, node: nope, "
                    "threshold: 0.5}}\n"
                    "          - {name: c, type: gru, hidden: 4}\n" OUT,
               "m.yaml:6:", "names node 'nope', which is not in this unit");
    expect_bad(HEAD "          - {name: s, type: start, condition: {kind: confidence, head: h, "
                    "threshold: 1.5}}\n"
                    "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: h, type: head, classes: 2}\n" OUT,
               "m.yaml:6:", "threshold: expected a number in [0, 1], got 1.5");
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4, skip: input}\n" OUT,
               "m.yaml:6:", "skip: input needs equal widths, but the input is 2 wide");
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4, skip: sometimes}\n" OUT,
               "m.yaml:6:", "unknown skip 'sometimes' (expected one of: state, input, zeros)");
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4}\n"
                    "          - {name: c, type: dense, out: 4}\n" OUT,
               "m.yaml:7:", "node name 'c' is already used at line 6");
    expect_bad(HEAD "          - {name: c, type: gru, hiden: 4}\n" OUT,
               "m.yaml:6:", "unknown key 'hiden'");
    expect_bad(HEAD "          - {name: c, type: dense, hidden: 4}\n" OUT,
               "m.yaml:6:", "'hidden' does not apply to a dense node");
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4}\n"
                    "output: {unit: u, node: c, loss: ce}\n",
               "m.yaml:7:", "loss ce needs a head node");
    expect_bad(HEAD "          - {name: c, type: gru, hidden: 4}\n"
                    "output: {unit: nope, node: c}\n",
               "m.yaml:7:", "no unit named 'nope'");
    expect_bad("input: 2\nlayers: []\n", "m.yaml:2:9:", "expected a non-empty list");
    expect_bad("input: 2\nlayers:\n  - units:\n      - name: u\n        nodes:\n"
               "          - {name: c, type: gru, hidden: 4\n",
               "m.yaml:", "");
}

static void test_missing_file(void **state)
{
    (void)state;
    struct farm_rx_model *m = NULL;
    struct farm_err err = {0};
    int rc = farm_rx_model_load_file("/nonexistent/rnnexit.yaml", "x.yaml", &m, &err);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "x.yaml"));
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_model),
        cmocka_unit_test(test_end_before_start),
        cmocka_unit_test(test_start_without_needed_end),
        cmocka_unit_test(test_unknown_type_and_condition),
        cmocka_unit_test(test_bad_references_and_widths),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
