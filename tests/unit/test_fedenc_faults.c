/* fedenc master and children as real processes over loopback TCP: who gets
 * parameters, children that die or lie, strangers, arrival order. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_fedenc_util.h"

extern char **environ;

static const struct farm_fedenc_child_stats *child(const struct fed_run *r, size_t round,
                                                   uint32_t id)
{
    assert_true(round >= 1 && round <= r->nrounds);
    const struct farm_fedenc_round_stats *st = &r->stats[round - 1];
    for (size_t i = 0; i < st->n_children; i++)
        if (st->children[i].id == id)
            return &st->children[i];
    fail_msg("round %zu has no child %u", round, id);
    return NULL;
}

static void synth_children(struct fed_run *r, size_t samples)
{
    for (size_t k = 0; k < r->n; k++)
        r->data[k] = fed_synth_spec(r->n, k, samples, 11);
}

static void assert_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            fail_msg("encoder[%zu] is not finite", i);
}

/* Children without samples of the encoder's type decline and get no
 * parameters; the updates that come back hold exactly the encoder's tensors
 * (the master's schema check accepts nothing else), so heads stay home. */
static void test_encoder_type_filter(void **state)
{
    (void)state;
    static const int l01[] = {0, 1, 2, 3, 4}, l59[] = {5, 6, 7, 8, 9};
    for (int pass = 0; pass < 2; pass++) {
        struct fed_run r;
        fed_run_init(&r, 4);
        /* children 0..2 hold tabular samples, child 3 only sequences */
        for (size_t k = 0; k < 3; k++)
            r.data[k] = fed_digits_spec(k % 2 ? l59 : l01, 5, "tabular", 5 + k);
        r.data[3] = fed_digits_spec(l01, 5, "sequence", 9);
        if (pass == 0) {
            r.enc = (struct farm_fedenc_encoder_cfg){
                .type = FARM_FEDENC_ENC_MLP, .input = 64, .steps = 1, .nhidden = 1, .hidden = {16}};
        } else {
            r.enc = (struct farm_fedenc_encoder_cfg){
                .type = FARM_FEDENC_ENC_GRU, .input = 8, .steps = 8, .nhidden = 1, .hidden = {12}};
        }
        r.cfg.rounds = 2;
        fed_run_exec(&r);
        if (r.rc != 0)
            fail_msg("master: %s", r.err.msg);
        assert_int_equal(r.nrounds, 2);
        size_t enc_bytes = r.np * sizeof(float);
        for (size_t round = 1; round <= 2; round++) {
            assert_true(r.stats[round - 1].applied);
            for (uint32_t k = 0; k < 4; k++) {
                const struct farm_fedenc_child_stats *c = child(&r, round, k);
                int has_type = pass == 0 ? k < 3 : k == 3;
                if (has_type) {
                    assert_int_equal(c->status, FARM_FEDENC_ACCEPTED);
                    assert_true(c->got_params);
                    /* the update is the encoder plus a small header, no head */
                    assert_true(c->bytes_up >= enc_bytes && c->bytes_up < enc_bytes + 4096);
                } else {
                    assert_int_equal(c->status, FARM_FEDENC_DECLINED);
                    assert_false(c->got_params);
                    assert_non_null(strstr(c->reason, pass == 0 ? "no tabular samples"
                                                                : "no sequence samples"));
                    /* only the instruction went down: no tensor bytes at all */
                    assert_true(c->bytes_down < 1024);
                    assert_int_equal(c->eval_n, 0);
                }
            }
        }
        assert_true(r.stats[1].evaluated);
        assert_true(fed_log_has(&r, "declined round 1"));
        fed_run_free(&r);
    }
}

/* One of four children dies after receiving the parameters of round 2. */
static void test_child_dies_mid_round(void **state)
{
    (void)state;
    for (int min = 3; min <= 4; min++) {
        struct fed_run r;
        fed_run_init(&r, 4);
        synth_children(&r, 60);
        r.faults[1] = "die=2";
        r.cfg.rounds = 3;
        r.cfg.min_children = (size_t)min;
        fed_run_exec(&r);
        if (r.rc != 0)
            fail_msg("master: %s", r.err.msg);
        assert_int_equal(r.nrounds, 3);
        const struct farm_fedenc_child_stats *dead = child(&r, 2, 1);
        assert_int_equal(dead->status, FARM_FEDENC_FAILED);
        assert_non_null(strstr(dead->reason, "connection lost"));
        assert_int_equal(r.stats[1].failed, 1);
        assert_int_equal(r.stats[1].accepted, 3);
        if (min == 3) {
            assert_true(r.stats[1].applied);
            assert_memory_not_equal(r.round_params[0], r.round_params[1], r.np * sizeof(float));
        } else {
            /* fewer than min_children updates: the model is unchanged */
            assert_false(r.stats[1].applied);
            assert_non_null(strstr(r.stats[1].void_reason, "3 valid updates, min_children is 4"));
            assert_memory_equal(r.round_params[0], r.round_params[1], r.np * sizeof(float));
            assert_true(fed_log_has(&r, "round 2 is void"));
        }
        /* the next round proceeds, with the child respawned */
        assert_true(r.stats[2].applied);
        assert_int_equal(r.stats[2].accepted, 4);
        assert_int_equal(child(&r, 3, 1)->status, FARM_FEDENC_ACCEPTED);
        assert_true(fed_log_has(&r, "child 1: respawning"));
        fed_run_free(&r);
    }
    /* with accept_failures off, the failure voids the round */
    struct fed_run r;
    fed_run_init(&r, 3);
    synth_children(&r, 60);
    r.faults[2] = "die=1";
    r.cfg.rounds = 1;
    r.cfg.accept_failures = 0;
    fed_run_exec(&r);
    assert_int_equal(r.rc, 0);
    assert_false(r.stats[0].applied);
    assert_non_null(strstr(r.stats[0].void_reason, "accept_failures is off"));
    fed_run_free(&r);
}

/* NaN, a wrong shape and a stale round id in round 2: the first two are
 * rejected with a logged reason, the stale reply is ignored, and the encoder
 * is exactly what the honest children alone produce (the same as when the
 * two liars simply vanish). */
static void test_invalid_updates_rejected(void **state)
{
    (void)state;
    struct fed_run a, b;
    fed_run_init(&a, 4);
    fed_run_init(&b, 4);
    synth_children(&a, 60);
    synth_children(&b, 60);
    a.faults[1] = "nan=2";
    a.faults[2] = "shape=2";
    a.faults[3] = "stale=2";
    b.faults[1] = "die=2";
    b.faults[2] = "die=2";
    a.cfg.rounds = b.cfg.rounds = 2;
    a.cfg.respawn = b.cfg.respawn = 0;
    fed_run_exec(&a);
    fed_run_exec(&b);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    const struct farm_fedenc_child_stats *c1 = child(&a, 2, 1), *c2 = child(&a, 2, 2);
    assert_int_equal(c1->status, FARM_FEDENC_REJECTED);
    assert_non_null(strstr(c1->reason, "is nan"));
    assert_int_equal(c2->status, FARM_FEDENC_REJECTED);
    assert_non_null(strstr(c2->reason, "shape ["));
    assert_int_equal(child(&a, 2, 3)->status, FARM_FEDENC_ACCEPTED);
    assert_true(a.stats[1].stale >= 1);
    assert_true(fed_log_has(&a, "child 1: update of round 2 rejected: params["));
    assert_true(fed_log_has(&a, "child 2: update of round 2 rejected: tensor 0"));
    assert_true(fed_log_has(&a, "child 3: stale UPDATE for round 1 ignored"));
    assert_int_equal(a.stats[1].accepted, 2);
    assert_true(a.stats[1].applied);
    assert_finite(a.params, a.np);
    assert_int_equal(b.stats[1].accepted, 2);
    assert_int_equal(a.np, b.np);
    assert_memory_equal(a.round_params[1], b.round_params[1], a.np * sizeof(float));
    fed_run_free(&a);
    fed_run_free(&b);
}

/* A child with the wrong secret is refused and never takes part. */
static pid_t rogue_pid;

static void start_rogue(struct fed_run *r, int port)
{
    (void)r;
    char hostport[64];
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", port);
    char *data = fed_synth_spec(3, 0, 40, 11);
    char *argv[] = {(char *)fed_child_exe(), "--connect", hostport, "--id", "7", "--data", data,
                    NULL};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FARM_FEDENC_SECRET=", 19) != 0)
            env[k++] = environ[i];
    env[k++] = "FARM_FEDENC_SECRET=not-the-secret";
    assert_int_equal(posix_spawn(&rogue_pid, argv[0], NULL, NULL, argv, env), 0);
    free(env);
    free(data);
}

/* And a peer that speaks something else entirely. */
static int junk_fd = -1;

static void start_rogue_and_junk(struct fed_run *r, int port)
{
    start_rogue(r, port);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    junk_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(junk_fd >= 0);
    assert_int_equal(connect(junk_fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char junk[] = "GET / HTTP/1.0\r\nHost: farm\r\n\r\n";
    assert_int_equal(write(junk_fd, junk, sizeof junk - 1), (ssize_t)(sizeof junk - 1));
}

static void test_stranger_refused(void **state)
{
    (void)state;
    struct fed_run r;
    fed_run_init(&r, 2);
    synth_children(&r, 40);
    r.cfg.rounds = 2;
    /* wait for three: the rogue would make the third */
    r.cfg.expect_children = 3;
    r.cfg.join_timeout = 3;
    r.on_listen = start_rogue_and_junk;
    fed_run_exec(&r);
    close(junk_fd);
    assert_int_equal(r.rc, 0);
    int status = 0;
    assert_int_equal(waitpid(rogue_pid, &status, 0), rogue_pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_true(fed_log_has(&r, "handshake failed: wrong shared secret"));
    assert_true(fed_log_has(&r, "dropped before the handshake: frame: bad magic"));
    assert_true(fed_log_has(&r, "2 of 3 children joined"));
    for (size_t i = 0; i < r.nrounds; i++) {
        assert_int_equal(r.stats[i].n_children, 2);
        assert_int_equal(r.stats[i].accepted, 2);
    }
    fed_run_free(&r);
}

/* A child started elsewhere, as the plugin's role=child does it (here
 * through farm-fedenc-run, the task outside farm), with the master's address
 * and the secret joins as one more child (id 7) from the first round. */
static void start_remote(struct fed_run *r, int port)
{
    (void)r;
    char exe[4096], connect[80], data[512];
    snprintf(exe, sizeof exe, "%s/plugins/farm-fedenc-run", getenv("FARM_BUILD_DIR"));
    snprintf(connect, sizeof connect, "connect=127.0.0.1:%d", port);
    char *spec = fed_synth_spec(3, 2, 40, 11);
    snprintf(data, sizeof data, "data=%s", spec);
    free(spec);
    char *argv[] = {exe, "--quiet", "--param", "role=child", "--param", connect, "--param",
                    "child_id=7", "--param", "secret=test-secret", "--param", data, NULL};
    assert_int_equal(posix_spawn(&rogue_pid, exe, NULL, NULL, argv, environ), 0);
}

static void test_remote_child_joins(void **state)
{
    (void)state;
    struct fed_run r;
    fed_run_init(&r, 2);
    synth_children(&r, 40);
    r.cfg.rounds = 2;
    r.cfg.expect_children = 3;
    r.cfg.min_children = 3;
    r.on_listen = start_remote;
    fed_run_exec(&r);
    assert_int_equal(r.rc, 0);
    int status = 0;
    assert_int_equal(waitpid(rogue_pid, &status, 0), rogue_pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(fed_log_has(&r, "child 7 joined"));
    for (size_t i = 0; i < r.nrounds; i++) {
        assert_int_equal(r.stats[i].accepted, 3);
        assert_int_equal(child(&r, i + 1, 7)->status, FARM_FEDENC_ACCEPTED);
    }
    fed_run_free(&r);
}

/* A local child that cannot load its data says why and exits; the master
 * stops waiting for it at once and reports too few children. */
static void test_child_with_bad_data(void **state)
{
    (void)state;
    struct fed_run r;
    fed_run_init(&r, 2);
    r.data[0] = fed_synth_spec(2, 0, 40, 11);
    r.data[1] = strdup("{\"source\": \"npy\", \"x\": \"/nonexistent/x.npy\", \"y\": \"/nonexistent/y.npy\"}");
    r.cfg.min_children = 2;
    double t0 = farm_fedenc_now();
    fed_run_exec(&r);
    assert_int_equal(r.rc, FARM_ETIMEOUT);
    assert_non_null(strstr(r.err.msg, "1 of 2 children joined (min_children 2)"));
    assert_true(fed_log_has(&r, "child 1: error: "));
    assert_true(fed_log_has(&r, "/nonexistent/x.npy"));
    assert_true(farm_fedenc_now() - t0 < r.cfg.join_timeout / 2);
    fed_run_free(&r);
}

/* A child slower than the round timeout is counted failed; its late update
 * then arrives during the next round, stamped with the old round, and is
 * ignored as stale. */
static void test_round_timeout(void **state)
{
    (void)state;
    struct fed_run r;
    fed_run_init(&r, 3);
    synth_children(&r, 40);
    r.faults[2] = "delay=1500";
    r.cfg.rounds = 3;
    r.cfg.round_timeout = 1.0;
    r.cfg.eval_every = 0;
    fed_run_exec(&r);
    assert_int_equal(r.rc, 0);
    for (size_t round = 1; round <= 3; round++) {
        const struct farm_fedenc_child_stats *slow = child(&r, round, 2);
        assert_int_equal(slow->status, FARM_FEDENC_FAILED);
        assert_non_null(strstr(slow->reason, "before the round timeout"));
        assert_true(r.stats[round - 1].applied);
        assert_int_equal(r.stats[round - 1].accepted, 2);
    }
    assert_string_equal(child(&r, 1, 2)->reason, "no update before the round timeout");
    assert_true(fed_log_has(&r, "child 2: stale UPDATE for round 1 ignored"));
    fed_run_free(&r);
}

/* Cancellation stops the federation between phases; the children are gone
 * when the master returns. */
static int cancel_after_first(void *user)
{
    return ((struct fed_run *)user)->nrounds >= 1;
}

static void test_cancel(void **state)
{
    (void)state;
    struct fed_run r;
    fed_run_init(&r, 2);
    synth_children(&r, 40);
    r.cfg.rounds = 50;
    r.cfg.cancelled = cancel_after_first;
    fed_run_exec(&r);
    assert_int_equal(r.rc, FARM_ECANCELLED);
    assert_int_equal(r.nrounds, 1);
    fed_run_free(&r);
}

/* Same seeds, different arrival orders (one child or another made slow):
 * the encoder is bitwise the same after R rounds, for every rule. */
static void test_arrival_order(void **state)
{
    (void)state;
    static const int rules[] = {FARM_FEDENC_FEDAVG, FARM_FEDENC_TRIMMED};
    for (size_t ri = 0; ri < 2; ri++) {
        struct fed_run a, b;
        fed_run_init(&a, 4);
        fed_run_init(&b, 4);
        synth_children(&a, 50);
        synth_children(&b, 50);
        a.faults[0] = "delay=120";
        b.faults[3] = "delay=120";
        b.faults[1] = "delay=60";
        a.cfg.rounds = b.cfg.rounds = 3;
        a.cfg.agg.rule = b.cfg.agg.rule = rules[ri];
        fed_run_exec(&a);
        fed_run_exec(&b);
        assert_int_equal(a.rc, 0);
        assert_int_equal(b.rc, 0);
        assert_int_equal(a.stats[2].accepted, 4);
        assert_memory_equal(a.params, b.params, a.np * sizeof(float));
        fed_run_free(&a);
        fed_run_free(&b);
    }
}

/* One of five children sends large noise every round. Median and trimmed
 * mean stay within 2 points of the honest run; FedAvg collapses (the test
 * prints all six figures). */
static double final_accuracy(int rule, const char *fault)
{
    struct fed_run r;
    fed_run_init(&r, 5);
    /* IID digit shards: a head alone (majority class) scores about 10%, so
     * the accuracy measures the shared encoder. */
    for (size_t k = 0; k < 5; k++)
        r.data[k] = fed_digits_shard_spec(k, 5, 21);
    r.enc = (struct farm_fedenc_encoder_cfg){
        .type = FARM_FEDENC_ENC_MLP, .input = 64, .steps = 1, .nhidden = 1, .hidden = {32}};
    r.faults[4] = fault;
    r.cfg.rounds = 8;
    r.cfg.eval_every = 0;
    r.cfg.agg.rule = rule;
    r.hp.lr = 0.1;
    fed_run_exec(&r);
    if (r.rc != 0)
        fail_msg("master: %s", r.err.msg);
    assert_true(r.stats[r.nrounds - 1].evaluated);
    double acc = r.stats[r.nrounds - 1].eval_accuracy;
    fed_run_free(&r);
    return acc;
}

static void test_robust_aggregation(void **state)
{
    (void)state;
    static const int rules[] = {FARM_FEDENC_MEDIAN, FARM_FEDENC_TRIMMED, FARM_FEDENC_FEDAVG};
    double honest[3], attacked[3];
    for (int i = 0; i < 3; i++) {
        honest[i] = final_accuracy(rules[i], NULL);
        attacked[i] = final_accuracy(rules[i], "garbage=50");
        print_message("  %-12s honest %.4f   one child sending garbage %.4f\n",
                      farm_fedenc_rule_name(rules[i]), honest[i], attacked[i]);
    }
    assert_true(honest[0] > 0.8 && honest[1] > 0.8 && honest[2] > 0.8);
    assert_true(fabs(attacked[0] - honest[0]) <= 0.02);
    assert_true(fabs(attacked[1] - honest[1]) <= 0.02);
    assert_true(attacked[2] < honest[2] - 0.2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_type_filter),
        cmocka_unit_test(test_child_dies_mid_round),
        cmocka_unit_test(test_invalid_updates_rejected),
        cmocka_unit_test(test_stranger_refused),
        cmocka_unit_test(test_remote_child_joins),
        cmocka_unit_test(test_child_with_bad_data),
        cmocka_unit_test(test_round_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_arrival_order),
        cmocka_unit_test(test_robust_aggregation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
