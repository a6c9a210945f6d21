/* Pure parts of the pipeline plugin: schedules, checker, simulator, the
 * balanced split against brute force, and the timeline/chart writers read
 * back by an independent parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "farm/pipeline_sched.h"

static int peak_inflight(const struct farm_pipe_schedule *sc, int s)
{
    int cur = 0, peak = 0;
    for (int i = 0; i < sc->per_stage; i++) {
        cur += sc->actions[s * sc->per_stage + i].op == FARM_PIPE_F ? 1 : -1;
        if (cur > peak)
            peak = cur;
    }
    return peak;
}

static void test_schedules_valid(void **state)
{
    (void)state;
    const int kinds[] = {FARM_PIPE_GPIPE, FARM_PIPE_1F1B};
    for (int k = 0; k < 2; k++) {
        for (int S = 1; S <= 6; S++) {
            for (int M = 1; M <= 16; M++) {
                struct farm_pipe_schedule sc;
                struct farm_err err;
                assert_int_equal(farm_pipe_schedule_init(&sc, kinds[k], S, M, &err), 0);
                assert_int_equal(sc.stages * sc.per_stage, 2 * S * M);
                if (farm_pipe_schedule_check(&sc, &err) != 0)
                    fail_msg("%s S=%d M=%d: %s", farm_pipe_kind_name(kinds[k]), S, M, err.msg);
                for (int s = 0; s < S; s++) {
                    int want = kinds[k] == FARM_PIPE_GPIPE ? M : (S - s < M ? S - s : M);
                    assert_int_equal(peak_inflight(&sc, s), want);
                }
                /* Unit costs, and unequal but uniform ones: the makespan is
                 * (M+S-1)(t_f+t_b) and the bubble equals the formula. */
                const double costs[][2] = {{1.0, 1.0}, {1.0, 2.0}, {0.5, 1.5}};
                for (int c = 0; c < 3; c++) {
                    double tf[6], tb[6], span = -1;
                    for (int s = 0; s < S; s++) {
                        tf[s] = costs[c][0];
                        tb[s] = costs[c][1];
                    }
                    struct farm_pipe_event *ev = calloc((size_t)(2 * S * M), sizeof(*ev));
                    assert_non_null(ev);
                    assert_int_equal(farm_pipe_simulate(&sc, tf, tb, ev, &span, &err), 0);
                    double want = (M + S - 1) * (costs[c][0] + costs[c][1]);
                    assert_true(span == want);
                    assert_true(farm_pipe_makespan(ev, 2 * S * M) == span);
                    assert_int_equal(farm_pipe_events_check(&sc, ev, &err), 0);
                    assert_true(fabs(farm_pipe_bubble(ev, 2 * S * M, S) -
                                     farm_pipe_bubble_formula(S, M)) < 1e-12);
                    free(ev);
                }
                farm_pipe_schedule_release(&sc);
            }
        }
    }
    assert_true(farm_pipe_bubble_formula(2, 8) == 1.0 / 9.0);
}

static void test_1f1b_order(void **state)
{
    (void)state;
    /* S=3, M=4, stage 0: warm-up 2 forwards, then F,B pairs, then drain. */
    struct farm_pipe_schedule sc;
    struct farm_err err;
    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_1F1B, 3, 4, &err), 0);
    const char *want[3] = {"F0F1F2B0F3B1B2B3", "F0F1B0F2B1F3B2B3", "F0B0F1B1F2B2F3B3"};
    for (int s = 0; s < 3; s++) {
        char got[64] = "";
        for (int i = 0; i < sc.per_stage; i++) {
            const struct farm_pipe_action *a = &sc.actions[s * sc.per_stage + i];
            char t[8];
            snprintf(t, sizeof(t), "%s%d", a->op == FARM_PIPE_F ? "F" : "B", a->micro);
            strcat(got, t);
        }
        assert_string_equal(got, want[s]);
    }
    farm_pipe_schedule_release(&sc);
}

static void set_list(struct farm_pipe_schedule *sc, int s, const char *spec)
{
    for (int i = 0; i < sc->per_stage; i++) {
        sc->actions[s * sc->per_stage + i].op = spec[2 * i] == 'F' ? FARM_PIPE_F : FARM_PIPE_B;
        sc->actions[s * sc->per_stage + i].micro = spec[2 * i + 1] - '0';
        sc->actions[s * sc->per_stage + i].stage = s;
    }
}

static void test_checker_rejects(void **state)
{
    (void)state;
    struct farm_pipe_schedule sc;
    struct farm_err err;
    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_GPIPE, 2, 2, &err), 0);
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), 0);

    set_list(&sc, 0, "B0F0F1B1");
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "B(0,0) comes before F(0,0)"));

    set_list(&sc, 0, "F0F0B0B1");
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "F(0,0) appears twice"));

    /* Each list is fine alone, but together they wait on each other. */
    set_list(&sc, 0, "F0B0F1B1");
    set_list(&sc, 1, "F1F0B0B1");
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "deadlock"));
    double one[2] = {1, 1};
    assert_int_equal(farm_pipe_simulate(&sc, one, one, NULL, NULL, &err), FARM_ESTATE);

    /* GPipe order labelled 1F1B keeps too many micro-batches in flight on
     * the last stage? No: S-s = 1 there, and GPipe holds 2. */
    set_list(&sc, 0, "F0F1B0B1");
    set_list(&sc, 1, "F0F1B0B1");
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), 0);
    sc.kind = FARM_PIPE_1F1B;
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "stage 1 has 2 micro-batches in flight, at most 1"));

    sc.kind = FARM_PIPE_GPIPE;
    sc.actions[3].stage = 1;
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    sc.actions[3].stage = 0;
    sc.per_stage = 3;
    assert_int_equal(farm_pipe_schedule_check(&sc, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "expected 2*S*M = 8 actions, got 6"));
    sc.per_stage = 4;
    farm_pipe_schedule_release(&sc);

    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_GPIPE, 2, 0, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "micro_batches"));
    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_GPIPE, 0, 2, &err), FARM_EBADPARAM);
    int kind = 0;
    assert_int_equal(farm_pipe_kind_parse("pipedream", &kind, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "\"gpipe\" or \"1f1b\""));
    assert_int_equal(farm_pipe_kind_parse("1f1b", &kind, &err), 0);
    assert_int_equal(kind, FARM_PIPE_1F1B);
}

static void test_events_check(void **state)
{
    (void)state;
    struct farm_pipe_schedule sc;
    struct farm_err err;
    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_1F1B, 3, 4, &err), 0);
    double tf[3] = {1, 2, 1}, tb[3] = {2, 3, 2}, span;
    struct farm_pipe_event ev[24];
    assert_int_equal(farm_pipe_simulate(&sc, tf, tb, ev, &span, &err), 0);
    assert_int_equal(farm_pipe_events_check(&sc, ev, &err), 0);
    /* F(1,0) is stage 1's first action; start it before F(0,0) ends. */
    ev[8].start -= 0.5;
    assert_int_equal(farm_pipe_events_check(&sc, ev, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "F(1,0) starts before F(0,0) ends"));
    ev[8].start += 0.5;
    /* The last backward of stage 0 must wait for B(1,3). */
    ev[7].start = ev[6].end;
    ev[7].end = ev[7].start + 2;
    assert_true(ev[7].start < ev[15].end);
    assert_int_equal(farm_pipe_events_check(&sc, ev, &err), FARM_ESTATE);
    assert_non_null(strstr(err.msg, "B(0,3) starts before B(1,3) ends"));
    farm_pipe_schedule_release(&sc);
}

/* Brute force: every way to place sections-1 cuts among n-1 gaps. */
static void brute(const double *c, int n, int k, int *starts, int depth, double *best)
{
    if (depth == k) {
        double b = farm_pipe_split_bottleneck(c, n, k, starts);
        if (b < *best)
            *best = b;
        return;
    }
    int from = starts[depth - 1] + 1;
    for (int i = from; i <= n - (k - depth); i++) {
        starts[depth] = i;
        brute(c, n, k, starts, depth + 1, best);
    }
}

static void test_split_vs_brute_force(void **state)
{
    (void)state;
    srand(12345);
    int checked = 0;
    for (int n = 1; n <= 12; n++) {
        for (int trial = 0; trial < 40; trial++) {
            double c[12];
            for (int i = 0; i < n; i++) {
                /* Half the trials use small integers, so ties are common. */
                c[i] = trial % 2 ? (double)(rand() % 5) : rand() / (double)RAND_MAX * 10.0;
            }
            for (int k = 1; k <= n; k++) {
                int st[12] = {0}, got[12];
                double want = INFINITY, b = -1;
                brute(c, n, k, st, 1, &want);
                struct farm_err err;
                assert_int_equal(farm_pipe_split_balanced(c, n, k, got, &b, &err), 0);
                assert_int_equal(got[0], 0);
                for (int i = 1; i < k; i++)
                    assert_true(got[i] > got[i - 1] && got[i] < n);
                assert_true(b == want);
                assert_true(farm_pipe_split_bottleneck(c, n, k, got) == want);
                checked++;
            }
        }
    }
    assert_true(checked == 40 * 78);

    /* A known answer, and the tie rule: first sections as long as allowed. */
    double c[6] = {4, 1, 1, 1, 1, 4};
    int st[3];
    double b;
    assert_int_equal(farm_pipe_split_balanced(c, 6, 3, st, &b, NULL), 0);
    assert_true(b == 4.0);
    assert_int_equal(st[1], 1);
    assert_int_equal(st[2], 5);
    double u[4] = {1, 1, 1, 1};
    assert_int_equal(farm_pipe_split_balanced(u, 4, 2, st, &b, NULL), 0);
    assert_int_equal(st[1], 2);

    struct farm_err err;
    assert_int_equal(farm_pipe_split_balanced(u, 4, 5, st, &b, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "5 sections need at least 5 layers, the model has 4"));
    assert_int_equal(farm_pipe_split_balanced(u, 4, 0, st, &b, &err), FARM_EBADPARAM);
    u[2] = -1;
    assert_int_equal(farm_pipe_split_balanced(u, 4, 2, st, &b, &err), FARM_EBADPARAM);
    assert_non_null(strstr(err.msg, "layer 2"));
}

static json_t *run_reader(const char *svg)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    const char *py = getenv("FARM_PYTHON");
    assert_non_null(src);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s %s/tests/unit/oracle/pipeline_svg.py %s", py ? py : "python3",
             src, svg);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t jerr;
    json_t *j = json_loadf(p, 0, &jerr);
    assert_int_equal(pclose(p), 0);
    if (j == NULL)
        fail_msg("reader output: %s", jerr.text);
    return j;
}

static void test_writers(void **state)
{
    (void)state;
    char dir[] = "/tmp/farm-pipe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    struct farm_pipe_schedule sc;
    struct farm_err err;
    assert_int_equal(farm_pipe_schedule_init(&sc, FARM_PIPE_1F1B, 2, 4, &err), 0);
    double tf[2] = {0.001, 0.001}, tb[2] = {0.002, 0.002}, span;
    struct farm_pipe_event ev[16];
    assert_int_equal(farm_pipe_simulate(&sc, tf, tb, ev, &span, &err), 0);
    for (int i = 0; i < 16; i++) { /* as if measured on a clock */
        ev[i].start += 100.0;
        ev[i].end += 100.0;
    }
    const char *names[2] = {"fc1..fc4", "fc5 & <head>"};

    snprintf(path, sizeof(path), "%s/timeline.json", dir);
    assert_int_equal(farm_pipe_timeline_write_json(path, &sc, ev, names, &err), 0);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "schedule")), "1f1b");
    assert_int_equal(json_integer_value(json_object_get(j, "stages")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "micro_batches")), 4);
    assert_true(fabs(json_real_value(json_object_get(j, "makespan")) - 0.015) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(j, "bubble_formula")) - 0.2) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(j, "bubble_measured")) - 0.2) < 1e-6);
    json_t *evs = json_object_get(j, "events");
    assert_int_equal(json_array_size(evs), 16);
    json_t *e0 = json_array_get(evs, 0);
    assert_true(fabs(json_real_value(json_object_get(e0, "start"))) < 1e-12);
    assert_string_equal(json_string_value(json_object_get(e0, "op")), "F");
    json_t *last = json_array_get(evs, 15);
    assert_int_equal(json_integer_value(json_object_get(last, "stage")), 1);
    assert_int_equal(json_integer_value(json_object_get(last, "micro")), 3);
    assert_true(fabs(json_real_value(json_object_get(last, "end")) - 0.013) < 1e-9);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stage_names"), 1)),
                        "fc5 & <head>");
    json_decref(j);

    snprintf(path, sizeof(path), "%s/timeline.svg", dir);
    assert_int_equal(farm_pipe_timeline_write_svg(path, &sc, ev, names, &err), 0);
    j = run_reader(path);
    assert_int_equal(json_integer_value(json_object_get(j, "forward")), 8);
    assert_int_equal(json_integer_value(json_object_get(j, "backward")), 8);
    /* The box of B(1,3) ends at the right edge of the plot. */
    json_t *boxes = json_object_get(j, "boxes");
    size_t i;
    json_t *bx;
    int found = 0;
    json_array_foreach(boxes, i, bx)
    {
        const char *t = json_string_value(json_object_get(bx, "title"));
        if (strncmp(t, "B(1,3)", 6) == 0) {
            double x = json_real_value(json_object_get(bx, "x"));
            double w = json_real_value(json_object_get(bx, "w"));
            assert_true(fabs(x + w - (140 + 1000 * 13.0 / 15.0)) < 0.05);
            found = 1;
        }
    }
    assert_true(found);
    int saw_name = 0;
    json_array_foreach(json_object_get(j, "texts"), i, bx)
    {
        if (strcmp(json_string_value(bx), "fc5 & <head>") == 0)
            saw_name = 1;
    }
    assert_true(saw_name);
    json_decref(j);

    snprintf(path, sizeof(path), "%s/loss.svg", dir);
    double loss[50];
    for (int k = 0; k < 50; k++)
        loss[k] = 2.0 * exp(-k / 10.0);
    loss[7] = NAN;
    assert_int_equal(farm_pipe_loss_write_svg(path, loss, 50, "loss of a <test>", &err), 0);
    j = run_reader(path);
    assert_int_equal(json_integer_value(json_object_get(j, "points")), 49);
    json_decref(j);

    assert_int_equal(farm_pipe_loss_write_svg("/nonexistent/dir/loss.svg", loss, 5, NULL, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/loss.svg"));

    farm_pipe_schedule_release(&sc);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_valid),      cmocka_unit_test(test_1f1b_order),
        cmocka_unit_test(test_checker_rejects),      cmocka_unit_test(test_events_check),
        cmocka_unit_test(test_split_vs_brute_force), cmocka_unit_test(test_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
