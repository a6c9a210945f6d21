/* plugins/nn file formats: .npy both ways with numpy, safetensors both ways
 * with a by-hand numpy reader/writer, CSV (plain and the gzipped UCI digits
 * copy through libarchive) and their error messages. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "farm/nn.h"
#include "nn_test_util.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay);
}

/* ---- .npy ---------------------------------------------------------------- */

static void test_npy_roundtrip_and_numpy_reads(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct farm_tensor t, back;
    assert_int_equal(farm_tensor_init(&t, 2, 3), 0);
    const float v[6] = {0.5f, -1, 2, 3, 4.25f, -6};
    memcpy(t.data, v, sizeof v);
    assert_int_equal(farm_npy_write(nt_path(p, sizeof p, dir, "c_f4.npy"), &t, &err), 0);
    assert_int_equal(farm_npy_read(p, &back, &err), 0);
    assert_int_equal(back.ndim, 2);
    assert_true(farm_tensor_equal(&t, &back));
    farm_tensor_release(&back);
    const int32_t iv[4] = {1, -2, 3, INT32_MAX};
    assert_int_equal(farm_npy_write_i32(nt_path(p, sizeof p, dir, "c_i4.npy"), iv, 4, &err), 0);
    int32_t *ib;
    size_t n;
    assert_int_equal(farm_npy_read_i32(p, &ib, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(ib, iv, sizeof iv);
    free(ib);
    const double dv[4] = {1, 2, 3, 1e-300};
    const size_t shape[2] = {2, 2};
    assert_int_equal(farm_npy_write_f64(nt_path(p, sizeof p, dir, "c_f8.npy"), dv, 2, shape, &err),
                     0);
    struct farm_tensor one;
    assert_int_equal(farm_tensor_init_1d(&one, 5), 0);
    assert_int_equal(farm_npy_write(nt_path(p, sizeof p, dir, "c_1d.npy"), &one, &err), 0);
    assert_int_equal(farm_npy_read(p, &back, &err), 0);
    assert_int_equal(back.ndim, 1);
    assert_int_equal(back.shape[0], 5);
    farm_tensor_release(&back);
    /* numpy loads what we wrote, with the dtypes and shapes we meant. */
    assert_int_equal(nt_oracle("npy_check", dir), 0);
    farm_tensor_release(&t);
    farm_tensor_release(&one);
    nt_rmdir(dir);
}

static void test_npy_reads_numpy_files(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    assert_int_equal(nt_oracle("npy_write", dir), 0);
    struct farm_err err;
    struct farm_tensor t;
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "f8.npy"), &t, &err), 0);
    assert_int_equal(t.rows, 3);
    assert_int_equal(t.cols, 4);
    for (size_t i = 0; i < 12; i++)
        assert_true(t.data[i] == (float)i - 5.5f);
    farm_tensor_release(&t);
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "f4_3d.npy"), &t, &err), 0);
    assert_int_equal(t.ndim, 3);
    assert_int_equal(t.shape[1], 2);
    assert_int_equal(t.rows, 3);
    assert_int_equal(t.cols, 4);
    assert_true(t.data[11] == 5.5f);
    farm_tensor_release(&t);
    int32_t *v;
    size_t n;
    assert_int_equal(farm_npy_read_i32(nt_path(p, sizeof p, dir, "i8.npy"), &v, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], -1);
    assert_int_equal(v[2], 7);
    free(v);
    assert_int_equal(farm_npy_read_i32(nt_path(p, sizeof p, dir, "i1.npy"), &v, &n, &err), 0);
    assert_int_equal(v[0], -128);
    assert_int_equal(v[2], 127);
    free(v);
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "u2.npy"), &t, &err), 0);
    assert_true(t.data[0] == 65535.0f);
    farm_tensor_release(&t);
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "b1.npy"), &t, &err), 0);
    assert_true(t.data[0] == 1.0f && t.data[1] == 0.0f && t.data[2] == 1.0f);
    farm_tensor_release(&t);
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "scalar.npy"), &t, &err), 0);
    assert_int_equal(farm_tensor_size(&t), 1);
    assert_true(t.data[0] == 2.5f);
    farm_tensor_release(&t);
    /* Refused, with the file named and the reason given. */
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "fortran.npy"), &t, &err),
                     FARM_EBADDATA);
    assert_contains(err.msg, "fortran.npy");
    assert_contains(err.msg, "Fortran order");
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "bigend.npy"), &t, &err),
                     FARM_EBADDATA);
    assert_contains(err.msg, "big-endian");
    assert_int_equal(farm_npy_read_i32(nt_path(p, sizeof p, dir, "f8.npy"), &v, &n, &err),
                     FARM_EBADDATA);
    assert_contains(err.msg, "1-D");
    write_text(nt_path(p, sizeof p, dir, "junk.npy"), "not numpy at all");
    assert_int_equal(farm_npy_read(p, &t, &err), FARM_EBADDATA);
    assert_contains(err.msg, "bad magic");
    assert_int_equal(farm_npy_read(nt_path(p, sizeof p, dir, "absent.npy"), &t, &err), -ENOENT);
    assert_contains(err.msg, "absent.npy");
    nt_rmdir(dir);
}

/* ---- safetensors --------------------------------------------------------- */

struct three {
    struct farm_tensor w, b, k;
    struct farm_nn_param p[3];
};

static void three_init(struct three *s, bool fill)
{
    assert_int_equal(farm_tensor_init(&s->w, 4, 3), 0);
    assert_int_equal(farm_tensor_init_1d(&s->b, 3), 0);
    const size_t shape[3] = {2, 3, 2};
    assert_int_equal(farm_tensor_init_shape(&s->k, 3, shape), 0);
    if (fill) {
        nt_fill(&s->w, 1, 1.0f);
        nt_fill(&s->b, 2, 1.0f);
        nt_fill(&s->k, 3, 1.0f);
    }
    struct farm_tensor *ts[3] = {&s->w, &s->b, &s->k};
    const char *names[3] = {"fc1.weight", "fc1.bias", "conv.kernel"};
    for (int i = 0; i < 3; i++) {
        snprintf(s->p[i].name, sizeof s->p[i].name, "%s", names[i]);
        s->p[i].value = ts[i];
        s->p[i].grad = NULL;
    }
}

static void three_release(struct three *s)
{
    farm_tensor_release(&s->w);
    farm_tensor_release(&s->b);
    farm_tensor_release(&s->k);
}

static void test_safetensors(void **state)
{
    (void)state;
    char dir[512], p[1024], f[1024];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct three a, b;
    three_init(&a, true);
    three_init(&b, false);
    json_t *meta = json_pack("{s:s, s:s}", "format", "farm", "note", "test");
    nt_path(f, sizeof f, dir, "weights.safetensors");
    assert_int_equal(farm_safetensors_save(f, a.p, 3, meta, &err), 0);
    json_decref(meta);
    for (int i = 0; i < 3; i++) {
        char name[256];
        snprintf(name, sizeof name, "ref_%s", a.p[i].name);
        nt_save(dir, name, a.p[i].value);
    }
    /* The header is 8-byte aligned, as the format asks. */
    FILE *fp = fopen(f, "rb");
    assert_non_null(fp);
    unsigned char len8[8];
    assert_int_equal(fread(len8, 1, 8, fp), 8);
    fclose(fp);
    assert_int_equal(len8[0] % 8, 0);
    /* Python reads it by hand with numpy: names, shapes, values, metadata. */
    assert_int_equal(nt_oracle("st_read", dir), 0);
    /* And back into fresh tensors. */
    assert_int_equal(farm_safetensors_load(f, b.p, 3, false, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_true(farm_tensor_equal(a.p[i].value, b.p[i].value));
    /* A file written by Python, tensors in another order. */
    assert_int_equal(nt_oracle("st_write", dir), 0);
    three_release(&b);
    three_init(&b, false);
    assert_int_equal(
        farm_safetensors_load(nt_path(p, sizeof p, dir, "py.safetensors"), b.p, 3, false, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_true(farm_tensor_equal(a.p[i].value, b.p[i].value));

    /* Errors leave the tensors untouched. */
    three_release(&b);
    three_init(&b, false);
    struct farm_tensor wrong;
    assert_int_equal(farm_tensor_init(&wrong, 3, 4), 0);
    b.p[0].value = &wrong;
    assert_int_equal(farm_safetensors_load(f, b.p, 3, false, &err), FARM_EBADDATA);
    assert_contains(err.msg, "fc1.weight");
    assert_contains(err.msg, "[4,3]");
    assert_contains(err.msg, "[3,4]");
    for (size_t i = 0; i < 3; i++)
        assert_true(b.b.data[i] == 0.0f);
    b.p[0].value = &b.w;
    farm_tensor_release(&wrong);
    /* Only two of the three asked for: the third in the file is extra. */
    assert_int_equal(farm_safetensors_load(f, b.p, 2, false, &err), FARM_EBADDATA);
    assert_contains(err.msg, "conv.kernel");
    assert_int_equal(farm_safetensors_load(f, b.p, 2, true, &err), 0);
    /* A parameter the file lacks. */
    snprintf(b.p[2].name, sizeof b.p[2].name, "%s", "fc2.weight");
    assert_int_equal(farm_safetensors_load(f, b.p, 3, true, &err), FARM_EBADDATA);
    assert_contains(err.msg, "fc2.weight");
    assert_contains(err.msg, "missing");
    snprintf(b.p[2].name, sizeof b.p[2].name, "%s", "conv.kernel");
    /* Duplicate names cannot be saved. */
    snprintf(a.p[1].name, sizeof a.p[1].name, "%s", "fc1.weight");
    assert_int_equal(
        farm_safetensors_save(nt_path(p, sizeof p, dir, "dup.safetensors"), a.p, 3, NULL, &err),
        -EINVAL);
    assert_contains(err.msg, "duplicate");
    /* A truncated file and garbage. */
    write_text(nt_path(p, sizeof p, dir, "short.safetensors"), "abc");
    assert_int_equal(farm_safetensors_load(p, b.p, 3, false, &err), FARM_EBADDATA);
    assert_contains(err.msg, "short.safetensors");
    static const char hdr[] = "{\"x\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
    unsigned char len_le[8] = {(unsigned char)(sizeof hdr - 1), 0, 0, 0, 0, 0, 0, 0};
    fp = fopen(nt_path(p, sizeof p, dir, "f16.safetensors"), "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(len_le, 1, 8, fp), 8);
    assert_int_equal(fwrite(hdr, 1, sizeof hdr - 1, fp), sizeof hdr - 1);
    fputs("zz", fp);
    fclose(fp);
    struct farm_nn_param px = {.name = "x", .value = &b.b, .grad = NULL};
    assert_int_equal(farm_safetensors_load(p, &px, 1, false, &err), FARM_EBADDATA);
    assert_contains(err.msg, "F16");
    three_release(&a);
    three_release(&b);
    nt_rmdir(dir);
}

/* ---- CSV ----------------------------------------------------------------- */

static void test_csv_digits_gz(void **state)
{
    (void)state;
    char p[1024];
    struct farm_err err;
    struct farm_dataset d;
    nt_source(p, sizeof p, "examples/model-repo/data/digits.csv.gz");
    if (farm_data_load_csv(p, -1, &d, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(d.n, 1797);
    assert_int_equal(d.x.rows, 1797);
    assert_int_equal(d.x.cols, 64);
    assert_int_equal(d.classes, 10);
    assert_non_null(d.labels);
    /* First rows of the UCI file: 0,0,5,13,9,1,... label 0; then 1, 2. */
    assert_true(d.x.data[2] == 5.0f && d.x.data[3] == 13.0f);
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 1);
    assert_int_equal(d.labels[2], 2);
    size_t count[10] = {0};
    float mx = 0;
    for (size_t i = 0; i < d.n; i++)
        count[d.labels[i]]++;
    for (size_t i = 0; i < farm_tensor_size(&d.x); i++)
        mx = fmaxf(mx, d.x.data[i]);
    assert_true(mx == 16.0f);
    for (int c = 0; c < 10; c++)
        assert_true(count[c] >= 170 && count[c] <= 190);
    farm_dataset_release(&d);
    /* Without a label column: all 65 columns are features. */
    assert_int_equal(farm_data_load_csv(p, FARM_CSV_NO_LABEL, &d, &err), 0);
    assert_int_equal(d.x.rows, 1797);
    assert_int_equal(d.x.cols, 65);
    assert_true(d.x.data[65 + 64] == 1.0f); /* row 1's label, as a value */
    farm_dataset_release(&d);
}

static void test_csv_plain_and_errors(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    struct farm_err err;
    struct farm_dataset d;
    /* A header line, the label in column 0, CRLF line ends, blank lines. */
    write_text(nt_path(p, sizeof p, dir, "ok.csv"),
               "label,a,b\r\n1, 0.5,2\r\n\r\n0,-1e-3,4\r\n3,7,8\r\n");
    assert_int_equal(farm_data_load_csv(p, 0, &d, &err), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.x.cols, 2);
    assert_int_equal(d.classes, 4);
    assert_true(d.x.data[0] == 0.5f && d.x.data[2] == -1e-3f && d.labels[2] == 3);
    farm_dataset_release(&d);
    /* No label column. */
    assert_int_equal(farm_data_load_csv(p, FARM_CSV_NO_LABEL, &d, &err), 0);
    assert_int_equal(d.x.cols, 3);
    assert_null(d.labels);
    farm_dataset_release(&d);

    write_text(nt_path(p, sizeof p, dir, "bad.csv"), "1,2,3\n4,5,6\n7,x8,9\n");
    assert_int_equal(farm_data_load_csv(p, -1, &d, &err), FARM_EBADDATA);
    assert_contains(err.msg, "bad.csv:3:3: expected a number, got \"x8\"");
    write_text(nt_path(p, sizeof p, dir, "short.csv"), "1,2,3\n4,5\n");
    assert_int_equal(farm_data_load_csv(p, -1, &d, &err), FARM_EBADDATA);
    assert_contains(err.msg, "short.csv:2:1: expected 3 fields, found 2");
    write_text(nt_path(p, sizeof p, dir, "label.csv"), "1,2,3\n4,5,1.5\n");
    assert_int_equal(farm_data_load_csv(p, -1, &d, &err), FARM_EBADDATA);
    assert_contains(err.msg, "label.csv:2:5: expected a class label");
    write_text(nt_path(p, sizeof p, dir, "empty.csv"), "");
    assert_int_equal(farm_data_load_csv(p, -1, &d, &err), FARM_EBADDATA);
    assert_contains(err.msg, "no data rows");
    assert_true(farm_data_load_csv(nt_path(p, sizeof p, dir, "absent.csv"), -1, &d, &err) < 0);
    assert_contains(err.msg, "absent.csv");
    nt_rmdir(dir);
}

static void test_csv_compressed(void **state)
{
    (void)state;
    char dir[512], p[1024];
    nt_tmpdir(dir, sizeof dir);
    assert_int_equal(nt_oracle("csv_compressed", dir), 0);
    static const char *const names[] = {"c.csv.gz", "c.csv.bz2", "c.csv.xz"};
    for (int i = 0; i < 3; i++) {
        struct farm_err err;
        struct farm_dataset d;
        if (farm_data_load_csv(nt_path(p, sizeof p, dir, names[i]), -1, &d, &err) < 0)
            fail_msg("%s", err.msg);
        assert_int_equal(d.n, 3);
        assert_int_equal(d.x.cols, 2);
        assert_true(d.x.data[5] == 6.0f && d.labels[2] == 2);
        farm_dataset_release(&d);
    }
    /* Positions are those of the decompressed text. */
    struct farm_err err;
    struct farm_dataset d;
    assert_int_equal(farm_data_load_csv(nt_path(p, sizeof p, dir, "bad.csv.gz"), -1, &d, &err),
                     FARM_EBADDATA);
    assert_contains(err.msg, "bad.csv.gz:3:3: expected a number, got \"?\"");
    nt_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_roundtrip_and_numpy_reads),
        cmocka_unit_test(test_npy_reads_numpy_files),
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_csv_digits_gz),
        cmocka_unit_test(test_csv_plain_and_errors),
        cmocka_unit_test(test_csv_compressed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
