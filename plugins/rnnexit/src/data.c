/* Sequence data sets for rnnexit: the adding problem, a classification
 * task whose difficulty varies per sample, .npy files; splits and batches. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rnnexit-internal.h"

void farm_rx_data_release(struct farm_rx_data *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->lengths);
    free(d->labels);
    free(d->targets);
    free(d->difficulty);
    memset(d, 0, sizeof *d);
}

static int alloc_data(struct farm_rx_data *d, size_t n, size_t steps, size_t dim, int labels,
                      size_t tdim)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->steps = steps;
    d->dim = dim;
    d->tdim = tdim;
    size_t nx = n * steps * dim;
    d->x = calloc(nx ? nx : 1, sizeof *d->x);
    d->lengths = calloc(n ? n : 1, sizeof *d->lengths);
    if (labels)
        d->labels = calloc(n ? n : 1, sizeof *d->labels);
    if (tdim)
        d->targets = calloc(n * tdim + 1, sizeof *d->targets);
    if (!d->x || !d->lengths || (labels && !d->labels) || (tdim && !d->targets)) {
        farm_rx_data_release(d);
        return -ENOMEM;
    }
    return 0;
}

int farm_rx_data_adding(struct farm_rx_data *d, size_t n, size_t steps, size_t min_len,
                        uint64_t seed, struct farm_err *err)
{
    if (n == 0 || steps < 2 || min_len < 2 || min_len > steps)
        return farm_err_set(err, FARM_EBADPARAM,
                            "adding problem: need n >= 1, steps >= 2 and 2 <= min_len <= steps "
                            "(got n %zu, steps %zu, min_len %zu)",
                            n, steps, min_len);
    if (alloc_data(d, n, steps, 2, 0, 1))
        return farm_err_set(err, -ENOMEM, "out of memory");
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        size_t len = min_len + (size_t)farm_rng_below(&rng, steps - min_len + 1);
        float *x = d->x + i * steps * 2;
        for (size_t t = 0; t < len; t++)
            x[t * 2] = (float)farm_rng_uniform(&rng);
        size_t half = len / 2;
        size_t a = (size_t)farm_rng_below(&rng, half);
        size_t b = half + (size_t)farm_rng_below(&rng, len - half);
        x[a * 2 + 1] = 1.0f;
        x[b * 2 + 1] = 1.0f;
        d->lengths[i] = (int32_t)len;
        d->targets[i] = x[a * 2] + x[b * 2];
    }
    return 0;
}

int farm_rx_data_varying(struct farm_rx_data *d, size_t n, size_t steps, size_t classes,
                         double signal, double noise, uint64_t seed, struct farm_err *err)
{
    if (n == 0 || steps < 4 || classes < 2 || !(noise >= 0) || !(signal > 0))
        return farm_err_set(err, FARM_EBADPARAM,
                            "varying-difficulty task: need n >= 1, steps >= 4, classes >= 2, "
                            "signal > 0, noise >= 0");
    if (alloc_data(d, n, steps, classes + 1, 1, 0))
        return farm_err_set(err, -ENOMEM, "out of memory");
    d->classes = classes;
    d->difficulty = calloc(n, sizeof *d->difficulty);
    if (!d->difficulty) {
        farm_rx_data_release(d);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    size_t dim = classes + 1;
    for (size_t i = 0; i < n; i++) {
        int32_t y = (int32_t)farm_rng_below(&rng, classes);
        size_t k;
        if (farm_rng_below(&rng, 4) == 0)
            k = 1 + (size_t)farm_rng_below(&rng, steps / 4);
        else
            k = 1 + (size_t)farm_rng_below(&rng, steps - 1);
        float *x = d->x + i * steps * dim;
        for (size_t t = 0; t < steps; t++) {
            for (size_t j = 0; j < classes; j++)
                x[t * dim + j] = (float)(noise * farm_rng_normal(&rng));
            if (t >= k) {
                x[t * dim + (size_t)y] += (float)signal;
                x[t * dim + classes] = 1.0f;
            }
        }
        d->labels[i] = y;
        d->lengths[i] = (int32_t)steps;
        d->difficulty[i] = (int32_t)k;
    }
    return 0;
}

int farm_rx_data_load_npy(struct farm_rx_data *d, const char *x_path, const char *labels_path,
                          const char *targets_path, const char *lengths_path, struct farm_err *err)
{
    struct farm_tensor x = {0}, y = {0};
    int32_t *labels = NULL, *lengths = NULL;
    size_t nl = 0, nlen = 0;
    int rc = farm_npy_read(x_path, &x, err);
    if (rc)
        return rc;
    if (x.ndim != 3) {
        rc = farm_err_set(err, FARM_EBADDATA,
                          "%s: expected an array of shape (objects, steps, features), got %d "
                          "dimensions",
                          x_path, x.ndim);
        goto out;
    }
    size_t n = x.shape[0], steps = x.shape[1], dim = x.shape[2];
    if (labels_path && (rc = farm_npy_read_i32(labels_path, &labels, &nl, err)))
        goto out;
    if (labels_path && nl != n) {
        rc = farm_err_set(err, FARM_EBADDATA, "%s: %zu labels for %zu objects in %s", labels_path,
                          nl, n, x_path);
        goto out;
    }
    if (!labels_path && targets_path) {
        if ((rc = farm_npy_read(targets_path, &y, err)))
            goto out;
        if (y.rows != n) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s: %zu targets for %zu objects in %s",
                              targets_path, y.rows, n, x_path);
            goto out;
        }
    }
    if (!labels_path && !targets_path) {
        rc = farm_err_set(err, FARM_EBADPARAM, "npy data: give labels or targets with %s", x_path);
        goto out;
    }
    if (lengths_path && (rc = farm_npy_read_i32(lengths_path, &lengths, &nlen, err)))
        goto out;
    if (lengths_path && nlen != n) {
        rc = farm_err_set(err, FARM_EBADDATA, "%s: %zu lengths for %zu objects in %s", lengths_path,
                          nlen, n, x_path);
        goto out;
    }
    for (size_t i = 0; lengths && i < n; i++)
        if (lengths[i] < 0 || (size_t)lengths[i] > steps) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s: length %d of object %zu outside 0..%zu",
                              lengths_path, (int)lengths[i], i, steps);
            goto out;
        }
    int32_t mx = -1;
    for (size_t i = 0; labels && i < n; i++) {
        if (labels[i] < 0) {
            rc = farm_err_set(err, FARM_EBADDATA, "%s: label %d of object %zu is negative",
                              labels_path, (int)labels[i], i);
            goto out;
        }
        mx = labels[i] > mx ? labels[i] : mx;
    }
    if (alloc_data(d, n, steps, dim, labels != NULL, labels ? 0 : y.cols)) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    memcpy(d->x, x.data, n * steps * dim * sizeof(float));
    if (labels) {
        memcpy(d->labels, labels, n * sizeof *labels);
        d->classes = (size_t)mx + 1;
    } else {
        memcpy(d->targets, y.data, n * y.cols * sizeof(float));
    }
    for (size_t i = 0; i < n; i++)
        d->lengths[i] = lengths ? lengths[i] : (int32_t)steps;
out:
    farm_tensor_release(&x);
    farm_tensor_release(&y);
    free(labels);
    free(lengths);
    return rc;
}

static int copy_subset(const struct farm_rx_data *d, const size_t *idx, size_t n,
                       struct farm_rx_data *out)
{
    if (alloc_data(out, n, d->steps, d->dim, d->labels != NULL, d->targets ? d->tdim : 0))
        return -ENOMEM;
    out->classes = d->classes;
    if (d->difficulty && !(out->difficulty = calloc(n ? n : 1, sizeof *out->difficulty))) {
        farm_rx_data_release(out);
        return -ENOMEM;
    }
    size_t row = d->steps * d->dim;
    for (size_t i = 0; i < n; i++) {
        size_t j = idx[i];
        memcpy(out->x + i * row, d->x + j * row, row * sizeof(float));
        out->lengths[i] = d->lengths[j];
        if (d->labels)
            out->labels[i] = d->labels[j];
        if (d->targets)
            memcpy(out->targets + i * d->tdim, d->targets + j * d->tdim, d->tdim * sizeof(float));
        if (d->difficulty)
            out->difficulty[i] = d->difficulty[j];
    }
    return 0;
}

int farm_rx_data_split(const struct farm_rx_data *d, double test_fraction, uint64_t seed,
                       struct farm_rx_data *train, struct farm_rx_data *test, struct farm_err *err)
{
    if (!(test_fraction > 0 && test_fraction < 1))
        return farm_err_set(err, FARM_EBADPARAM, "test fraction %g outside (0, 1)", test_fraction);
    size_t nt = (size_t)llround((double)d->n * test_fraction);
    if (nt == 0 || nt >= d->n)
        return farm_err_set(err, FARM_EBADPARAM,
                            "test fraction %g of %zu objects leaves an empty side", test_fraction,
                            d->n);
    size_t *idx = malloc(d->n * sizeof *idx);
    if (!idx)
        return farm_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < d->n; i++)
        idx[i] = i;
    struct farm_rng rng;
    farm_rng_seed(&rng, seed);
    farm_rng_shuffle(&rng, idx, d->n);
    int rc = copy_subset(d, idx, d->n - nt, train);
    if (!rc && (rc = copy_subset(d, idx + d->n - nt, nt, test)))
        farm_rx_data_release(train);
    free(idx);
    return rc ? farm_err_set(err, rc, "out of memory") : 0;
}

void farm_rx_data_batch(const struct farm_rx_data *d, const size_t *order, size_t first,
                        size_t count, float *x, int32_t *lengths, int32_t *labels, float *targets)
{
    size_t T = d->steps, D = d->dim;
    for (size_t i = 0; i < count; i++) {
        size_t j = order ? order[first + i] : first + i;
        const float *src = d->x + j * T * D;
        for (size_t t = 0; t < T; t++)
            memcpy(x + (t * count + i) * D, src + t * D, D * sizeof(float));
        if (lengths)
            lengths[i] = d->lengths[j];
        if (labels && d->labels)
            labels[i] = d->labels[j];
        if (targets && d->targets)
            memcpy(targets + i * d->tdim, d->targets + j * d->tdim, d->tdim * sizeof(float));
    }
}
