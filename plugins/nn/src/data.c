/* Data sets: seeded synthetic generators, CSV (through libarchive), .npy,
 * split, standardization and batching. */
#include <archive.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn-internal.h"

void farm_dataset_release(struct farm_dataset *d)
{
    if (!d)
        return;
    farm_tensor_release(&d->x);
    farm_tensor_release(&d->y);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static int alloc_labeled(struct farm_dataset *d, size_t n, size_t dim, size_t classes)
{
    memset(d, 0, sizeof *d);
    int rc = farm_tensor_init(&d->x, n, dim);
    if (rc < 0)
        return rc;
    d->labels = calloc(n ? n : 1, sizeof *d->labels);
    if (!d->labels) {
        farm_tensor_release(&d->x);
        return -ENOMEM;
    }
    d->n = n;
    d->classes = classes;
    return 0;
}

int farm_data_blobs(struct farm_dataset *out, size_t n, size_t dim, size_t classes, float spread,
                    uint64_t seed, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(n == 0 || dim == 0 || classes == 0, err, -EINVAL,
                         "blobs: n, dim and classes must be positive");
    FARM_RETURN_ERROR_IF(!(spread >= 0.0f), err, -EINVAL, "blobs: spread must be >= 0");
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    double *centers = malloc(classes * dim * sizeof *centers);
    if (!centers)
        return farm_err_set(err, -ENOMEM, "blobs: out of memory");
    for (size_t i = 0; i < classes * dim; i++)
        centers[i] = -10.0 + 20.0 * farm_rng_uniform(&rng);
    struct farm_dataset d;
    int rc = alloc_labeled(&d, n, dim, classes);
    if (rc < 0) {
        free(centers);
        return farm_err_set(err, rc, "blobs: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        size_t c = i % classes;
        d.labels[i] = (int32_t)c;
        for (size_t j = 0; j < dim; j++)
            d.x.data[i * dim + j] = (float)(centers[c * dim + j] + spread * farm_rng_normal(&rng));
    }
    free(centers);
    *out = d;
    return 0;
}

int farm_data_spirals(struct farm_dataset *out, size_t n, float noise, float turns, uint64_t seed,
                      struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(n == 0, err, -EINVAL, "spirals: n must be positive");
    FARM_RETURN_ERROR_IF(!(turns > 0.0f) || !(noise >= 0.0f), err, -EINVAL,
                         "spirals: turns must be > 0 and noise >= 0");
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    struct farm_dataset d;
    int rc = alloc_labeled(&d, n, 2, 2);
    if (rc < 0)
        return farm_err_set(err, rc, "spirals: out of memory");
    const double two_pi = 6.283185307179586476925;
    const double pi = 3.14159265358979323846;
    double tmax = (double)turns * two_pi;
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % 2);
        double t = sqrt(farm_rng_uniform(&rng)) * tmax;
        double a = t + c * pi;
        double x = t * cos(a) / tmax + noise * farm_rng_normal(&rng);
        double y = t * sin(a) / tmax + noise * farm_rng_normal(&rng);
        d.x.data[2 * i] = (float)x;
        d.x.data[2 * i + 1] = (float)y;
        d.labels[i] = c;
    }
    *out = d;
    return 0;
}

int farm_data_fedprox_synthetic(struct farm_dataset *out, size_t n_clients, const size_t *samples,
                                double alpha, double beta, uint64_t seed, struct farm_err *err)
{
    const size_t D = FARM_FEDPROX_DIM, C = FARM_FEDPROX_CLASSES;
    FARM_RETURN_ERROR_IF(n_clients == 0, err, -EINVAL, "fedprox synthetic: no clients");
    FARM_RETURN_ERROR_IF(!(alpha >= 0.0) || !(beta >= 0.0), err, -EINVAL,
                         "fedprox synthetic: alpha and beta must be >= 0");
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    double *u = malloc(n_clients * sizeof *u);
    double *B = malloc(n_clients * sizeof *B);
    size_t *count = malloc(n_clients * sizeof *count);
    double *W = malloc((D * C + C + D) * sizeof *W);
    struct farm_dataset *sets = calloc(n_clients, sizeof *sets);
    int rc = (u && B && count && W && sets) ? 0 : -ENOMEM;
    if (rc == 0) {
        /* The order of draws follows the reference generator: every
         * client's u_k, then every B_k, then the sample counts. */
        for (size_t k = 0; k < n_clients; k++)
            u[k] = alpha * farm_rng_normal(&rng);
        for (size_t k = 0; k < n_clients; k++)
            B[k] = beta * farm_rng_normal(&rng);
        for (size_t k = 0; k < n_clients; k++) {
            if (samples) {
                count[k] = samples[k];
            } else {
                double s = floor(exp(4.0 + 2.0 * farm_rng_normal(&rng))) + 50.0;
                count[k] = s > 1e7 ? (size_t)1e7 : (size_t)s;
            }
        }
    }
    double *b = W + D * C, *v = b + C;
    for (size_t k = 0; rc == 0 && k < n_clients; k++) {
        for (size_t j = 0; j < D; j++)
            v[j] = B[k] + farm_rng_normal(&rng);
        for (size_t j = 0; j < D * C; j++)
            W[j] = u[k] + farm_rng_normal(&rng);
        for (size_t j = 0; j < C; j++)
            b[j] = u[k] + farm_rng_normal(&rng);
        rc = alloc_labeled(&sets[k], count[k], D, C);
        for (size_t i = 0; rc == 0 && i < count[k]; i++) {
            float *x = sets[k].x.data + i * D;
            for (size_t j = 0; j < D; j++)
                x[j] = (float)(v[j] + pow((double)(j + 1), -0.6) * farm_rng_normal(&rng));
            size_t best = 0;
            double bestv = -INFINITY;
            for (size_t c = 0; c < C; c++) {
                double s = b[c];
                for (size_t j = 0; j < D; j++)
                    s += (double)x[j] * W[j * C + c];
                if (s > bestv) {
                    bestv = s;
                    best = c;
                }
            }
            sets[k].labels[i] = (int32_t)best;
        }
    }
    if (rc == 0)
        for (size_t k = 0; k < n_clients; k++)
            out[k] = sets[k];
    else
        for (size_t k = 0; sets && k < n_clients; k++)
            farm_dataset_release(&sets[k]);
    free(u);
    free(B);
    free(count);
    free(W);
    free(sets);
    if (rc < 0)
        return farm_err_set(err, rc, "fedprox synthetic: out of memory");
    return 0;
}

/* ---- CSV --------------------------------------------------------------- */

static int read_all_archive(const char *path, char **out, size_t *len, struct farm_err *err)
{
    /* libarchive's raw format refuses an empty input; an empty file is
     * simply empty text (and then "no data rows"). */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
        if (!(*out = calloc(1, 1)))
            return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
        *len = 0;
        return 0;
    }
    struct archive *a = archive_read_new();
    if (!a)
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    struct archive_entry *entry;
    int rc = 0;
    if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK ||
        archive_read_next_header(a, &entry) != ARCHIVE_OK) {
        int e = archive_errno(a);
        rc = farm_err_set(err, e > 0 ? -e : FARM_EBADDATA, "%s: cannot read: %s", path,
                          archive_error_string(a) ? archive_error_string(a) : "unknown error");
        archive_read_free(a);
        return rc;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            size_t ncap = cap ? cap * 2 : 262144;
            char *p = realloc(buf, ncap + 1);
            if (!p) {
                rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = p;
            cap = ncap;
        }
        la_ssize_t r = archive_read_data(a, buf + n, cap - n);
        if (r < 0) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s: cannot decompress: %s", path,
                              archive_error_string(a) ? archive_error_string(a) : "error");
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    archive_read_free(a);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    if (!buf && !(buf = malloc(1)))
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* Parses one number field [p, end); returns 0 and *v, or -1. */
static int parse_field(const char *p, const char *end, double *v)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    if (p == end)
        return -1;
    char tmp[64];
    size_t l = (size_t)(end - p);
    if (l >= sizeof tmp)
        return -1;
    memcpy(tmp, p, l);
    tmp[l] = 0;
    char *e;
    errno = 0;
    double x = strtod(tmp, &e);
    if (*e || errno == ERANGE || !isfinite(x))
        return -1;
    *v = x;
    return 0;
}

int farm_data_load_csv(const char *path, int label_col, struct farm_dataset *out,
                       struct farm_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_all_archive(path, &text, &len, err);
    if (rc < 0)
        return rc;
    float *vals = NULL;
    int32_t *labels = NULL;
    size_t nv = 0, capv = 0, rows = 0, capr = 0, ncols = 0;
    int lc = -1;
    int32_t maxlabel = -1;
    size_t lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end && rc == 0) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        lineno++;
        const char *q = p;
        while (q < eol && isspace((unsigned char)*q))
            q++;
        if (q == eol) {
            p = eol + 1;
            continue;
        }
        /* Split the line into fields. */
        size_t nf = 1;
        for (const char *s = p; s < eol; s++)
            nf += *s == ',';
        if (ncols == 0) {
            double v;
            const char *c1 = memchr(p, ',', (size_t)(eol - p));
            if (rows == 0 && parse_field(p, c1 ? c1 : eol, &v) < 0 && lineno == 1) {
                p = eol + 1; /* a header line */
                continue;
            }
            ncols = nf;
            if (label_col == FARM_CSV_NO_LABEL)
                lc = -1;
            else if (label_col < 0)
                lc = (int)ncols + label_col;
            else
                lc = label_col;
            if (label_col != FARM_CSV_NO_LABEL && (lc < 0 || (size_t)lc >= ncols)) {
                rc = farm_err_set(err, FARM_EBADDATA,
                                  "%s:%zu:1: label column %d is outside the %zu columns", path,
                                  lineno, label_col, ncols);
                break;
            }
            if (ncols == 1 && lc == 0) {
                rc = farm_err_set(err, FARM_EBADDATA, "%s:%zu:1: no feature columns", path, lineno);
                break;
            }
        }
        if (nf != ncols) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s:%zu:1: expected %zu fields, found %zu", path,
                              lineno, ncols, nf);
            break;
        }
        size_t nfeat = ncols - (lc >= 0 ? 1 : 0);
        if (capv - nv < nfeat) {
            size_t nc = capv ? capv * 2 : 4096;
            while (nc - nv < nfeat)
                nc *= 2;
            float *np = realloc(vals, nc * sizeof *vals);
            if (!np) {
                rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
                break;
            }
            vals = np;
            capv = nc;
        }
        if (rows == capr) {
            size_t nc = capr ? capr * 2 : 1024;
            int32_t *np = realloc(labels, nc * sizeof *labels);
            if (!np) {
                rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
                break;
            }
            labels = np;
            capr = nc;
        }
        const char *f = p;
        for (size_t k = 0; k < ncols; k++) {
            const char *fe = memchr(f, ',', (size_t)(eol - f));
            if (!fe)
                fe = eol;
            double v;
            size_t col = (size_t)(f - p) + 1;
            if (parse_field(f, fe, &v) < 0) {
                int l = (int)(fe - f);
                rc = farm_err_set(err, FARM_EBADDATA, "%s:%zu:%zu: expected a number, got \"%.*s\"",
                                  path, lineno, col, l > 40 ? 40 : l, f);
                break;
            }
            if ((int)k == lc) {
                if (v != floor(v) || v < 0 || v > 1e9) {
                    rc = farm_err_set(err, FARM_EBADDATA,
                                      "%s:%zu:%zu: expected a class label (an integer >= 0), "
                                      "got %g",
                                      path, lineno, col, v);
                    break;
                }
                labels[rows] = (int32_t)v;
                if (labels[rows] > maxlabel)
                    maxlabel = labels[rows];
            } else {
                vals[nv++] = (float)v;
            }
            f = fe + 1;
        }
        rows++;
        p = eol + 1;
    }
    free(text);
    if (rc == 0 && rows == 0)
        rc = farm_err_set(err, FARM_EBADDATA, "%s: no data rows", path);
    struct farm_dataset d;
    memset(&d, 0, sizeof d);
    if (rc == 0) {
        size_t nfeat = ncols - (lc >= 0 ? 1 : 0);
        rc = farm_tensor_init(&d.x, rows, nfeat);
        if (rc < 0)
            farm_err_set(err, rc, "%s: out of memory", path);
        else
            memcpy(d.x.data, vals, rows * nfeat * sizeof(float));
    }
    free(vals);
    if (rc < 0) {
        free(labels);
        return rc;
    }
    d.n = rows;
    if (lc >= 0) {
        d.labels = labels;
        d.classes = (size_t)maxlabel + 1;
    } else {
        free(labels);
    }
    *out = d;
    return 0;
}

int farm_data_load_npy(const char *x_path, const char *labels_path, struct farm_dataset *out,
                       struct farm_err *err)
{
    struct farm_dataset d;
    memset(&d, 0, sizeof d);
    int rc = farm_npy_read(x_path, &d.x, err);
    if (rc < 0)
        return rc;
    if (d.x.ndim == 1) {
        size_t shape[2] = {d.x.cols, 1};
        farm_tensor_reshape(&d.x, 2, shape);
    } else if (d.x.ndim > 2) {
        size_t shape[2] = {d.x.rows, d.x.cols};
        farm_tensor_reshape(&d.x, 2, shape);
    }
    d.n = d.x.rows;
    if (labels_path) {
        size_t n;
        rc = farm_npy_read_i32(labels_path, &d.labels, &n, err);
        if (rc == 0 && n != d.n)
            rc = farm_err_set(err, FARM_EBADDATA, "%s: %zu labels for %zu samples in %s",
                              labels_path, n, d.n, x_path);
        int32_t mx = -1;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (d.labels[i] < 0)
                rc = farm_err_set(err, FARM_EBADDATA, "%s: label %zu is negative (%d)", labels_path,
                                  i, (int)d.labels[i]);
            else if (d.labels[i] > mx)
                mx = d.labels[i];
        }
        d.classes = (size_t)(mx + 1);
    }
    if (rc < 0) {
        farm_dataset_release(&d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- split, standardize, batch ----------------------------------------- */

static int subset(const struct farm_dataset *d, const size_t *idx, size_t n,
                  struct farm_dataset *out)
{
    struct farm_dataset s;
    memset(&s, 0, sizeof s);
    int rc = farm_tensor_init(&s.x, n, d->x.cols);
    if (rc == 0 && d->y.rows)
        rc = farm_tensor_init(&s.y, n, d->y.cols);
    if (rc == 0 && d->labels && !(s.labels = malloc((n ? n : 1) * sizeof *s.labels)))
        rc = -ENOMEM;
    if (rc < 0) {
        farm_dataset_release(&s);
        return rc;
    }
    farm_tensor_gather_rows(&s.x, &d->x, idx, n);
    if (d->y.rows)
        farm_tensor_gather_rows(&s.y, &d->y, idx, n);
    for (size_t i = 0; d->labels && i < n; i++)
        s.labels[i] = d->labels[idx[i]];
    s.n = n;
    s.classes = d->classes;
    *out = s;
    return 0;
}

int farm_data_split(const struct farm_dataset *d, double test_fraction, uint64_t seed,
                    struct farm_dataset *train, struct farm_dataset *test, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!(test_fraction > 0.0 && test_fraction < 1.0), err, -EINVAL,
                         "split: test fraction must be in (0, 1), got %g", test_fraction);
    size_t n = d->n;
    size_t nt = (size_t)llround((double)n * test_fraction);
    FARM_RETURN_ERROR_IF(nt == 0 || nt == n, err, FARM_EBADDATA,
                         "split: %zu samples leave an empty train or test set at fraction %g", n,
                         test_fraction);
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx)
        return farm_err_set(err, -ENOMEM, "split: out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    farm_rng_shuffle(&rng, idx, n);
    struct farm_dataset a, b;
    int rc = subset(d, idx, nt, &b);
    if (rc == 0) {
        rc = subset(d, idx + nt, n - nt, &a);
        if (rc < 0)
            farm_dataset_release(&b);
    }
    free(idx);
    if (rc < 0)
        return farm_err_set(err, rc, "split: out of memory");
    *train = a;
    *test = b;
    return 0;
}

int farm_data_standardize(struct farm_dataset *train, struct farm_dataset *test)
{
    size_t c = train->x.cols, n = train->x.rows;
    if (test && test->x.cols != c)
        return -EINVAL;
    if (n == 0)
        return -EINVAL;
    double *mean = calloc(2 * c, sizeof *mean);
    if (!mean)
        return -ENOMEM;
    double *sd = mean + c;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++)
            mean[j] += train->x.data[i * c + j];
    for (size_t j = 0; j < c; j++)
        mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++) {
            double dv = train->x.data[i * c + j] - mean[j];
            sd[j] += dv * dv;
        }
    for (size_t j = 0; j < c; j++) {
        sd[j] = sqrt(sd[j] / (double)n);
        if (!(sd[j] > 1e-12))
            sd[j] = 1.0;
    }
    struct farm_dataset *sets[2] = {train, test};
    for (int s = 0; s < 2; s++) {
        if (!sets[s])
            continue;
        struct farm_tensor *x = &sets[s]->x;
        for (size_t i = 0; i < x->rows; i++)
            for (size_t j = 0; j < c; j++)
                x->data[i * c + j] = (float)((x->data[i * c + j] - mean[j]) / sd[j]);
    }
    free(mean);
    return 0;
}

int farm_data_batch(const struct farm_dataset *d, const size_t *order, size_t first, size_t count,
                    struct farm_tensor *xb, int32_t *lb, struct farm_tensor *yb)
{
    if (first > d->n || count > d->n - first || xb->cols != d->x.cols)
        return -EINVAL;
    int rc = farm_tensor_resize_rows(xb, count);
    if (rc < 0)
        return rc;
    bool want_y = yb && d->y.rows;
    if (want_y) {
        if (yb->cols != d->y.cols)
            return -EINVAL;
        if ((rc = farm_tensor_resize_rows(yb, count)) < 0)
            return rc;
    }
    size_t c = d->x.cols;
    for (size_t i = 0; i < count; i++) {
        size_t s = order ? order[first + i] : first + i;
        if (s >= d->n)
            return -EINVAL;
        memcpy(xb->data + i * c, d->x.data + s * c, c * sizeof(float));
        if (lb && d->labels)
            lb[i] = d->labels[s];
        if (want_y)
            memcpy(yb->data + i * d->y.cols, d->y.data + s * d->y.cols, d->y.cols * sizeof(float));
    }
    return 0;
}
