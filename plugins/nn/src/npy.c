/* .npy files: NumPy's array format, little endian and C order only. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn-internal.h"

int farm__nn_write_atomic(const char *path, const void *const *bufs, const size_t *lens, size_t n,
                          struct farm_err *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return farm_err_set(err, -e, "%s: cannot create: %s", path, strerror(e));
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const unsigned char *p = bufs[i];
        size_t left = lens[i];
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = -errno;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    /* Files written here are data for other tools: make them readable like
     * any file the user creates (mkstemp uses 0600). */
    if (rc == 0) {
        mode_t mask = umask(0);
        umask(mask);
        if (fchmod(fd, 0666 & ~mask) < 0)
            rc = -errno;
    }
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        free(tmp);
        return farm_err_set(err, rc, "%s: cannot write: %s", path, strerror(-rc));
    }
    free(tmp);
    return 0;
}

int farm__nn_read_file(const char *path, unsigned char **out, size_t *len, struct farm_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return farm_err_set(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            unsigned char *p = realloc(buf, ncap);
            if (!p) {
                free(buf);
                fclose(f);
                return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
            }
            buf = p;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return farm_err_set(err, -EIO, "%s: read error", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

struct npy {
    char kind; /* 'f', 'i', 'u', 'b' */
    int size;  /* bytes per element */
    int ndim;
    size_t shape[FARM_TENSOR_MAXDIM];
    size_t count;
    const unsigned char *data;
};

static int npy_err(struct farm_err *err, const char *path, const char *why)
{
    return farm_err_set(err, FARM_EBADDATA, "%s: not a readable .npy file: %s", path, why);
}

/* Finds 'key' in the header dict and returns a pointer just after its ':'. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(h, pat);
    }
    if (!p)
        return NULL;
    p = strchr(p + strlen(pat), ':');
    if (!p)
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int parse_npy(const char *path, const unsigned char *buf, size_t len, struct npy *out,
                     struct farm_err *err)
{
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return npy_err(err, path, "bad magic");
    int major = buf[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return npy_err(err, path, "truncated header");
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        off = 12;
    } else {
        return npy_err(err, path, "unsupported format version");
    }
    if (hlen > len - off)
        return npy_err(err, path, "truncated header");
    char *h = malloc(hlen + 1);
    if (!h)
        return farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    memcpy(h, buf + off, hlen);
    h[hlen] = 0;
    int rc = 0;
    const char *d = dict_value(h, "descr");
    const char *fo = dict_value(h, "fortran_order");
    const char *sh = dict_value(h, "shape");
    struct npy n;
    memset(&n, 0, sizeof n);
    if (!d || !fo || !sh) {
        rc = npy_err(err, path, "header lacks descr, fortran_order or shape");
        goto out;
    }
    if (strncmp(fo, "False", 5) != 0) {
        rc = npy_err(err, path, "Fortran order is not supported (save a C-ordered array)");
        goto out;
    }
    if (*d != '\'' && *d != '"') {
        rc = npy_err(err, path, "descr is not a simple dtype string");
        goto out;
    }
    char endian = d[1], kind = d[2];
    int size = atoi(d + 3);
    if (kind == '?') {
        kind = 'b';
        size = 1;
    }
    if (endian == '>' && size > 1) {
        rc = npy_err(err, path, "big-endian data is not supported");
        goto out;
    }
    if (endian != '<' && endian != '|' && endian != '=') {
        rc = npy_err(err, path, "unknown byte order");
        goto out;
    }
    bool okk =
        (kind == 'f' && (size == 4 || size == 8)) ||
        ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
        (kind == 'b' && size == 1);
    if (!okk) {
        rc = npy_err(err, path, "unsupported dtype (float32/64, int/uint 8-64, bool only)");
        goto out;
    }
    n.kind = kind;
    n.size = size;
    if (*sh != '(') {
        rc = npy_err(err, path, "bad shape");
        goto out;
    }
    const char *p = sh + 1;
    n.count = 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno) {
            rc = npy_err(err, path, "bad shape");
            goto out;
        }
        if (n.ndim == FARM_TENSOR_MAXDIM) {
            rc = npy_err(err, path, "more than 4 dimensions");
            goto out;
        }
        n.shape[n.ndim++] = (size_t)v;
        if (v && n.count > SIZE_MAX / 8 / v) {
            rc = npy_err(err, path, "shape too large");
            goto out;
        }
        n.count *= (size_t)v;
        p = end;
    }
    if (n.ndim == 0) {
        n.ndim = 1;
        n.shape[0] = 1;
    }
    off += hlen;
    if (n.count * (size_t)size > len - off) {
        rc = npy_err(err, path, "truncated data");
        goto out;
    }
    n.data = buf + off;
    *out = n;
out:
    free(h);
    return rc;
}

static double element(const struct npy *n, size_t i)
{
    const unsigned char *p = n->data + i * (size_t)n->size;
    uint64_t u = 0;
    for (int k = 0; k < n->size; k++)
        u |= (uint64_t)p[k] << (8 * k);
    switch (n->kind) {
    case 'f':
        if (n->size == 4) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, 4);
            return f;
        } else {
            double f;
            memcpy(&f, &u, 8);
            return f;
        }
    case 'i': {
        int shift = 64 - 8 * n->size;
        int64_t s = (int64_t)(u << shift) >> shift;
        return (double)s;
    }
    default:
        return (double)u;
    }
}

int farm_npy_read(const char *path, struct farm_tensor *out, struct farm_err *err)
{
    unsigned char *buf;
    size_t len;
    int rc = farm__nn_read_file(path, &buf, &len, err);
    if (rc < 0)
        return rc;
    struct npy n;
    rc = parse_npy(path, buf, len, &n, err);
    if (rc == 0) {
        struct farm_tensor t;
        rc = farm_tensor_init_shape(&t, n.ndim, n.shape);
        if (rc < 0) {
            farm_err_set(err, rc, "%s: cannot allocate %zu floats", path, n.count);
        } else {
            if (n.kind == 'f' && n.size == 4) {
                if (n.count)
                    memcpy(t.data, n.data, n.count * 4);
            } else {
                for (size_t i = 0; i < n.count; i++)
                    t.data[i] = (float)element(&n, i);
            }
            *out = t;
        }
    }
    free(buf);
    return rc;
}

int farm_npy_read_i32(const char *path, int32_t **out, size_t *count, struct farm_err *err)
{
    unsigned char *buf;
    size_t len;
    int rc = farm__nn_read_file(path, &buf, &len, err);
    if (rc < 0)
        return rc;
    struct npy n;
    rc = parse_npy(path, buf, len, &n, err);
    if (rc == 0 && !(n.ndim == 1 || (n.ndim == 2 && n.shape[1] == 1)))
        rc = farm_err_set(err, FARM_EBADDATA, "%s: expected a 1-D array of labels, got %d-D", path,
                          n.ndim);
    int32_t *v = NULL;
    if (rc == 0 && !(v = malloc((n.count ? n.count : 1) * sizeof *v)))
        rc = farm_err_set(err, -ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; rc == 0 && i < n.count; i++) {
        double x = element(&n, i);
        if (x != floor(x) || x < (double)INT32_MIN || x > (double)INT32_MAX)
            rc = farm_err_set(err, FARM_EBADDATA, "%s: element %zu (%g) is not a 32-bit integer",
                              path, i, x);
        else
            v[i] = (int32_t)x;
    }
    free(buf);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *count = n.count;
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

static int write_npy(const char *path, const char *descr, int ndim, const size_t *shape,
                     const void *data, size_t bytes, struct farm_err *err)
{
    char dict[512];
    int k =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%zu,%s", shape[i],
                      i + 1 < ndim ? " " : "");
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    /* Version 1.0: 10-byte preamble; pad with spaces so the data starts on
     * a 64-byte boundary, and end the header with a newline. */
    size_t total = 10 + (size_t)k + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    unsigned char head[600];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)k);
    memset(head + 10 + k, ' ', hlen - (size_t)k - 1);
    head[padded - 1] = '\n';
    const void *bufs[2] = {head, data};
    size_t lens[2] = {padded, bytes};
    return farm__nn_write_atomic(path, bufs, lens, 2, err);
}

int farm_npy_write(const char *path, const struct farm_tensor *t, struct farm_err *err)
{
    size_t shape2[2] = {t->rows, t->cols};
    int ndim = t->ndim ? t->ndim : 2;
    const size_t *shape = t->ndim ? t->shape : shape2;
    return write_npy(path, "<f4", ndim, shape, t->data, farm_tensor_size(t) * sizeof(float), err);
}

int farm_npy_write_i32(const char *path, const int32_t *v, size_t n, struct farm_err *err)
{
    return write_npy(path, "<i4", 1, &n, v, n * sizeof *v, err);
}

int farm_npy_write_f64(const char *path, const double *v, int ndim, const size_t *shape,
                       struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(ndim < 1 || ndim > FARM_TENSOR_MAXDIM, err, -EINVAL,
                         "%s: %d dimensions (1..4 supported)", path, ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= shape[i];
    return write_npy(path, "<f8", ndim, shape, v, count * sizeof *v, err);
}
