/* Single flight across processes: many missers build once; a builder that
 * dies mid-build hands over to a waiter. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "fixtures/cache/cache_test.h"

struct fx {
    char *base;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    f->base = ct_tempdir();
    /* Create the tables once, before the processes race. */
    farm_cache_close(ct_open(f->base, 0));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ct_rm(f->base);
    free(f->base);
    free(f);
    return 0;
}

enum { EXIT_BUILT = 10, EXIT_HIT = 11 };

static void append_line(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line))
        _exit(90);
    close(fd);
}

/* One task of the race, in a child. `hang_fd` >= 0: after starting the
 * build, report on it and hang there (to be killed). */
static int task(const char *base, int id, int hang_fd, useconds_t build_us)
{
    /* Never outlive a failed test run. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(60);
    struct farm_cache *c = ct_open(base, 0);
    char key[33], out[2048], label[32], pkgfile[2200];
    char *inputs = ct_inputs("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", "sh build.sh", "r:deps", key);
    snprintf(out, sizeof out, "%s/run%d/deps", base, id);
    snprintf(label, sizeof label, "task-%d", id);
    struct farm_cache_lease *l = NULL;
    struct farm_err err;
    farm_err_clear(&err);
    if (farm_cache_acquire(c, key, &l, &err) != 0) {
        fprintf(stderr, "task %d: %s\n", id, err.msg);
        return 20;
    }
    int rc;
    if (farm_cache_lease_outcome(l) == FARM_CACHE_BUILD) {
        if (farm_cache_build_begin(c, l, NULL, out, &err) != 0)
            return 21;
        /* The build's side effect, outside the cache, counts runs. */
        char line[64];
        snprintf(line, sizeof line, "%d\n", id);
        append_line(ct_path(base, "builds.log"), line);
        snprintf(pkgfile, sizeof pkgfile, "%s/lib/pkg.txt", out);
        ct_write(pkgfile, "built package\n", (size_t)-1, 0644);
        if (hang_fd >= 0) {
            if (write(hang_fd, "b", 1) != 1)
                return 22;
            for (;;)
                pause();
        }
        usleep(build_us);
        struct farm_cache_commit ci = {
            .exit_status = 0, .build_ms = 1234, .builder = label, .inputs_json = inputs};
        if (farm_cache_build_commit(c, l, &ci, &err) != 0) {
            fprintf(stderr, "task %d: %s\n", id, err.msg);
            return 23;
        }
        rc = EXIT_BUILT;
    } else {
        if (farm_cache_restore(c, l, out, id % 2 ? FARM_CACHE_RESTORE_LINK
                                                 : FARM_CACHE_RESTORE_COPY,
                               NULL, &err) != 0) {
            fprintf(stderr, "task %d: %s\n", id, err.msg);
            return 24;
        }
        rc = EXIT_HIT;
    }
    farm_cache_release(c, l);
    snprintf(pkgfile, sizeof pkgfile, "%s/lib/pkg.txt", out);
    char *got = ct_read(pkgfile, NULL);
    if (!got || strcmp(got, "built package\n") != 0)
        rc = 25;
    free(got);
    free(inputs);
    farm_cache_close(c);
    return rc;
}

static void test_eight_missers_build_once(void **state)
{
    struct fx *f = *state;
    enum { N = 8 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(task(f->base, i, -1, 300 * 1000));
    }
    int built = 0, hit = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) == EXIT_BUILT)
            built++;
        else if (WEXITSTATUS(st) == EXIT_HIT)
            hit++;
        else
            fail_msg("task %d exited %d", i, WEXITSTATUS(st));
    }
    assert_int_equal(built, 1);
    assert_int_equal(hit, N - 1);
    char *log = ct_read(ct_path(f->base, "builds.log"), NULL);
    assert_non_null(log);
    int lines = 0;
    for (char *p = log; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1);
    free(log);
    struct farm_cache *c = ct_open(f->base, 0);
    struct farm_cache_stats st;
    assert_int_equal(farm_cache_stats(c, &st, NULL), 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, N - 1);
    assert_int_equal(st.build_ms_saved, 1234 * (N - 1));
    farm_cache_close(c);
}

static void test_builder_killed(void **state)
{
    struct fx *f = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t builder = fork();
    assert_true(builder >= 0);
    if (builder == 0) {
        close(p[0]);
        _exit(task(f->base, 1, p[1], 0));
    }
    close(p[1]);
    char b;
    assert_int_equal(read(p[0], &b, 1), 1); /* it is mid-build now */
    close(p[0]);
    pid_t waiters[2];
    for (int i = 0; i < 2; i++) {
        waiters[i] = fork();
        assert_true(waiters[i] >= 0);
        if (waiters[i] == 0)
            _exit(task(f->base, 2 + i, -1, 100 * 1000));
    }
    usleep(300 * 1000);
    /* The waiters are blocked behind the builder's lock. */
    int st = 0;
    assert_int_equal(waitpid(waiters[0], &st, WNOHANG), 0);
    assert_int_equal(waitpid(waiters[1], &st, WNOHANG), 0);
    assert_int_equal(kill(builder, SIGKILL), 0);
    assert_int_equal(waitpid(builder, &st, 0), builder);
    assert_true(WIFSIGNALED(st));
    int built = 0, hit = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(waitpid(waiters[i], &st, 0), waiters[i]);
        assert_true(WIFEXITED(st));
        built += WEXITSTATUS(st) == EXIT_BUILT;
        hit += WEXITSTATUS(st) == EXIT_HIT;
    }
    assert_int_equal(built, 1);
    assert_int_equal(hit, 1);
    char *log = ct_read(ct_path(f->base, "builds.log"), NULL);
    assert_true(log && (strcmp(log, "1\n2\n") == 0 || strcmp(log, "1\n3\n") == 0));
    free(log);
    /* The index names the task that finished the build, not the dead one. */
    struct farm_cache *c = ct_open(f->base, 0);
    char *ls = NULL;
    assert_int_equal(farm_cache_ls(c, &ls, NULL), 0);
    json_t *j = json_loads(ls, 0, NULL);
    assert_int_equal(json_array_size(j), 1);
    const char *who = json_string_value(json_object_get(json_array_get(j, 0), "builder"));
    assert_true(strcmp(who, "task-2") == 0 || strcmp(who, "task-3") == 0);
    json_decref(j);
    free(ls);
    farm_cache_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eight_missers_build_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builder_killed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
