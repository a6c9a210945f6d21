#include "nn_test_util.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

void nt_tmpdir(char *buf, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, size, "%s/farm-nn-test.XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

void nt_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

const char *nt_path(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

const char *nt_source(char *buf, size_t size, const char *rel)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    assert_non_null(src);
    snprintf(buf, size, "%s/%s", src, rel);
    return buf;
}

int nt_oracle(const char *command, const char *dir)
{
    const char *py = getenv("FARM_PYTHON");
    char script[4096], cmd[8192];
    nt_source(script, sizeof script, "tests/unit/oracle/nn_oracle.py");
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'", py && *py ? py : "/usr/bin/python3", script,
             command, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

void nt_save(const char *dir, const char *name, const struct farm_tensor *t)
{
    char p[4096], file[512];
    snprintf(file, sizeof file, "%s.npy", name);
    struct farm_err err;
    int rc = farm_npy_write(nt_path(p, sizeof p, dir, file), t, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
}

void nt_load_expect(const char *dir, const char *name, struct farm_tensor *out)
{
    char p[4096], file[512];
    snprintf(file, sizeof file, "expect_%s.npy", name);
    struct farm_err err;
    if (farm_npy_read(nt_path(p, sizeof p, dir, file), out, &err) < 0)
        fail_msg("%s", err.msg);
}

void nt_assert_close(const struct farm_tensor *got, const char *dir, const char *name, double rel)
{
    struct farm_tensor want;
    nt_load_expect(dir, name, &want);
    if (farm_tensor_size(&want) != farm_tensor_size(got) || want.cols != got->cols)
        fail_msg("%s: shape %zux%zu, expected %zux%zu", name, got->rows, got->cols, want.rows,
                 want.cols);
    double scale = 0;
    size_t n = farm_tensor_size(&want);
    for (size_t i = 0; i < n; i++)
        if (fabs(want.data[i]) > scale)
            scale = fabs(want.data[i]);
    double tol = rel * scale + 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got->data[i] - (double)want.data[i]);
        if (!(d <= tol))
            fail_msg("%s[%zu]: got %.9g, numpy %.9g (|diff| %.3g > %.3g = %g * max|x|)", name, i,
                     (double)got->data[i], (double)want.data[i], d, tol, rel);
    }
    farm_tensor_release(&want);
}

void nt_fill(struct farm_tensor *t, uint64_t seed, float std)
{
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    farm_tensor_fill_normal(t, 0.0f, std, &rng);
}
