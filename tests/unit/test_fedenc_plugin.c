/* fedenc.so through the plugin ABI, as farm-worker loads it: the
 * descriptor, the parameter table, and a whole run with a stub host (it
 * finds farm-fedenc-child next to the .so, reports metrics and artifacts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures/fakehost/fakehost.h"

static void test_descriptor(void **state)
{
    (void)state;
    fh_assert_descriptor("fedenc"); /* with every default valid JSON */
    static const char *const want[] = {
        "role",   "children", "rounds", "aggregator",   "encoder",         "epochs",
        "batch",  "lr",       "mu",     "min_children", "accept_failures", "round_timeout",
        "secret", "connect",  "data"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
        if (fh_param(want[w]) == NULL)
            fail_msg("no parameter %s", want[w]);
}

static void test_run(void **state)
{
    (void)state;
    /* The params as given: the plugin reads them from params_json itself. */
    struct fh_ctx *c =
        fh_ctx_new("run",
                   "{\"children\": 3, \"data\": \"digits\", \"hidden\": [32], \"rounds\": 3, "
                   "\"epochs\": 1, \"batch\": 16, \"lr\": 0.1, \"aggregator\": \"median\"}",
                   0);
    int rc = fh_run(c);
    if (rc != 0 || c->log_count[FARM_LOG_ERROR] != 0)
        fail_msg("run: %d; log:\n%s", rc, c->log);
    assert_true(fh_metric(c, "fed/accuracy") > 0.5);
    static const char *const metrics[] = {"fed/accuracy",   "fed/loss",         "central/accuracy",
                                          "round/bytes_up", "round/bytes_down", "round/seconds",
                                          "round/accepted", "round/rejected",   "child/2/samples"};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++)
        if (fh_metric_count(c, metrics[i]) == 0)
            fail_msg("metric %s was not reported", metrics[i]);
    assert_int_equal(c->nartifacts, 3);
    assert_string_equal(c->artifact[0], "encoder.safetensors");
    assert_string_equal(c->artifact[1], "rounds.json");
    assert_string_equal(c->artifact[2], "rounds.svg");
    fh_ctx_free(c);

    /* a bad parameter fails the run with the parameter named */
    c = fh_ctx_new("bad", "{\"aggregator\": \"avg\"}", 0);
    snprintf(c->scratch, sizeof c->scratch, "/nonexistent");
    assert_int_equal(fh_run(c), -5007 /* FARM_EBADPARAM */);
    assert_int_equal(c->log_count[FARM_LOG_ERROR], 1);
    assert_non_null(strstr(c->log, "aggregator"));
    fh_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_run),
    };
    if (fh_open("fedenc") != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, fh_close);
}
