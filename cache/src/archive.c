/*
 * Packing a directory into tar.zst, extracting one safely while hashing its
 * bytes, and hard-linking unpacked trees.
 */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, fdopendir, copy_file_range */
#include "cache-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <zstd.h>

/* ---- packing ---------------------------------------------------------- */

struct wctx {
    int fd;
    XXH3_state_t *h;
    uint64_t size;
};

static la_ssize_t write_cb(struct archive *a, void *ud, const void *buf, size_t n)
{
    struct wctx *w = ud;
    if (farm__cache_write_hook_fn) {
        int r = farm__cache_write_hook_fn((size_t)w->size, n);
        if (r < 0) {
            archive_set_error(a, -r, "%s", strerror(-r));
            return -1;
        }
    }
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(w->fd, (const char *)buf + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            archive_set_error(a, errno, "%s", strerror(errno));
            return -1;
        }
        done += (size_t)k;
    }
    XXH3_128bits_update(w->h, buf, n);
    w->size += n;
    return (la_ssize_t)n;
}

struct packer {
    struct archive *a;
    struct archive_entry *e;
    char *buf;
    size_t bufcap;
    uint64_t files;
    struct farm_err *err;
    char path[PATH_MAX];
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory `fd` (consumed), sorted; NULL-terminated array. */
static int sorted_names(int fd, DIR **dout, char ***out, size_t *count)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **p = realloc(names, cap * sizeof *p);
            if (!p)
                goto oom;
            names = p;
        }
        if (!(names[n] = strdup(de->d_name)))
            goto oom;
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_name);
    *dout = d;
    *out = names;
    *count = n;
    return 0;
oom:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return -ENOMEM;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int arch_fail(struct packer *p, struct archive *a, const char *what)
{
    int e = archive_errno(a);
    return farm_err_set(p->err, e > 0 ? -e : FARM_EBADARCHIVE, "%s: %s: %s", p->path, what,
                        archive_error_string(a) ? archive_error_string(a) : "archive error");
}

static int pack_file(struct packer *p, int dirfd, const char *name, const struct stat *st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return farm_err_set(p->err, -errno, "%s: %s", p->path, strerror(errno));
    if (archive_write_header(p->a, p->e) != ARCHIVE_OK) {
        close(fd);
        return arch_fail(p, p->a, "write header");
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, p->buf, p->bufcap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return farm_err_set(p->err, -e, "%s: read: %s", p->path, strerror(e));
        }
        if (n == 0)
            break;
        if ((uint64_t)n > (uint64_t)st->st_size - total)
            n = (ssize_t)((uint64_t)st->st_size - total);
        if (n > 0 && archive_write_data(p->a, p->buf, (size_t)n) != n) {
            close(fd);
            return arch_fail(p, p->a, "write");
        }
        total += (uint64_t)n;
        if (total == (uint64_t)st->st_size)
            break;
    }
    close(fd);
    /* A file that shrank while packed would be padded with zeros: refuse. */
    if (total != (uint64_t)st->st_size)
        return farm_err_set(p->err, -EAGAIN, "%s: changed size while it was packed", p->path);
    p->files++;
    return 0;
}

static int pack_dir(struct packer *p, int fd, size_t plen)
{
    DIR *d;
    char **names;
    size_t n;
    int rc = sorted_names(fd, &d, &names, &n);
    if (rc != 0)
        return farm_err_set(p->err, rc, "%s: %s", plen ? p->path : ".", strerror(-rc));
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t nl = strlen(names[i]), len = plen + (plen ? 1 : 0) + nl;
        if (len + 1 > sizeof p->path) {
            rc = farm_err_set(p->err, -ENAMETOOLONG, "%s/%s: path too long", p->path, names[i]);
            break;
        }
        if (plen)
            p->path[plen] = '/';
        memcpy(p->path + plen + (plen ? 1 : 0), names[i], nl + 1);
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = farm_err_set(p->err, -errno, "%s: %s", p->path, strerror(errno));
            p->path[plen] = '\0';
            break;
        }
        archive_entry_clear(p->e);
        archive_entry_set_pathname(p->e, p->path);
        archive_entry_set_perm(p->e, st.st_mode & 0777);
        archive_entry_set_mtime(p->e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        archive_entry_set_uid(p->e, 0);
        archive_entry_set_gid(p->e, 0);
        if (S_ISREG(st.st_mode)) {
            archive_entry_set_filetype(p->e, AE_IFREG);
            archive_entry_set_size(p->e, st.st_size);
            rc = pack_file(p, dirfd(d), names[i], &st);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t k = readlinkat(dirfd(d), names[i], target, sizeof target - 1);
            if (k < 0) {
                rc = farm_err_set(p->err, -errno, "%s: readlink: %s", p->path, strerror(errno));
            } else {
                target[k] = '\0';
                archive_entry_set_filetype(p->e, AE_IFLNK);
                archive_entry_set_symlink(p->e, target);
                if (archive_write_header(p->a, p->e) != ARCHIVE_OK)
                    rc = arch_fail(p, p->a, "write header");
                else
                    p->files++;
            }
        } else if (S_ISDIR(st.st_mode)) {
            archive_entry_set_filetype(p->e, AE_IFDIR);
            if (archive_write_header(p->a, p->e) != ARCHIVE_OK) {
                rc = arch_fail(p, p->a, "write header");
            } else {
                int sub =
                    openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                    rc = farm_err_set(p->err, -errno, "%s: %s", p->path, strerror(errno));
                else
                    rc = pack_dir(p, sub, len);
            }
        } else {
            rc = farm_err_set(p->err, FARM_EBADDATA,
                              "%s: not a file, directory or symlink; a package cannot hold it",
                              p->path);
        }
        p->path[plen] = '\0';
    }
    free_names(names, n);
    closedir(d);
    return rc;
}

int farm__cache_pack_dir(const char *src, const char *path, const struct farm__cache_pack_opts *o,
                         char checksum[FARM_CACHE_HEX_SIZE], uint64_t *size, uint64_t *files,
                         struct farm_err *err)
{
    struct packer p = {.err = err, .bufcap = 1 << 20};
    struct wctx w = {.fd = -1};
    int rc = 0;
    int dfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return farm_err_set(err, -errno, "%s: %s", src, strerror(errno));
    w.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        rc = farm_err_set(err, -errno, "%s: %s", path, strerror(errno));
        close(dfd);
        return rc;
    }
    w.h = XXH3_createState();
    p.buf = malloc(p.bufcap);
    p.a = archive_write_new();
    p.e = archive_entry_new();
    if (!w.h || !p.buf || !p.a || !p.e) {
        close(dfd);
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    XXH3_128bits_reset(w.h);
    char num[32];
    archive_write_set_format_pax_restricted(p.a);
    /* File names are bytes: stored as they are, not translated through the
     * locale (in the C locale, every name that is not ASCII would fail to
     * translate, and the package would never be stored). */
    if (archive_write_set_format_option(p.a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK) {
        close(dfd);
        rc = farm_err_set(err, FARM_EBADARCHIVE, "libarchive: hdrcharset: %s",
                          archive_error_string(p.a));
        goto out;
    }
    if (archive_write_add_filter_zstd(p.a) != ARCHIVE_OK) {
        close(dfd);
        rc = farm_err_set(err, FARM_EBADARCHIVE, "libarchive: zstd: %s",
                          archive_error_string(p.a));
        goto out;
    }
    snprintf(num, sizeof num, "%d", o->level);
    if (archive_write_set_filter_option(p.a, "zstd", "compression-level", num) != ARCHIVE_OK) {
        close(dfd);
        rc = farm_err_set(err, -EINVAL, "zstd level %d: %s", o->level, archive_error_string(p.a));
        goto out;
    }
    /* Multi-threaded compression where this libarchive and libzstd offer it;
     * refused quietly by builds that lack it. */
    if (o->threads > 1) {
        snprintf(num, sizeof num, "%d", o->threads);
        archive_write_set_filter_option(p.a, "zstd", "threads", num);
    }
    archive_write_set_bytes_in_last_block(p.a, 1);
    if (archive_write_open(p.a, &w, NULL, write_cb, NULL) != ARCHIVE_OK) {
        close(dfd);
        rc = farm_err_set(err, FARM_EBADARCHIVE, "%s: %s", path, archive_error_string(p.a));
        goto out;
    }
    rc = pack_dir(&p, dfd, 0);
    if (rc == 0 && archive_write_close(p.a) != ARCHIVE_OK) {
        int e = archive_errno(p.a);
        rc = farm_err_set(err, e > 0 ? -e : FARM_EBADARCHIVE, "%s: %s", path,
                          archive_error_string(p.a));
    }
    if (rc == 0 && fsync(w.fd) != 0)
        rc = farm_err_set(err, -errno, "%s: fsync: %s", path, strerror(errno));
    if (rc == 0) {
        if (checksum)
            farm__cache_hex128(XXH3_128bits_digest(w.h), checksum);
        if (size)
            *size = w.size;
        if (files)
            *files = p.files;
    }
out:
    if (p.a)
        archive_write_free(p.a);
    archive_entry_free(p.e);
    free(p.buf);
    XXH3_freeState(w.h);
    if (close(w.fd) != 0 && rc == 0)
        rc = farm_err_set(err, -errno, "%s: close: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
    return rc;
}

/* ---- extraction ------------------------------------------------------- */

/*
 * Reading an object: a producer thread reads the file, hashes every byte
 * and decompresses it (libzstd) into a ring of blocks; libarchive, on the
 * calling thread, parses the tar from that ring and writes the files. The
 * two overlap, as `tar -I zstd` does with its zstd process, and the hash
 * covers the whole file whatever libarchive reads of it.
 */
#define RING_BLOCKS 4
#define RING_BLOCK (1 << 20)

struct rctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *blk[RING_BLOCKS];
    size_t len[RING_BLOCKS];
    uint64_t produced, taken, released;
    int done, failed, cancel, started, joined;
    pthread_t tid;
    int fd;
    XXH3_state_t *h;
    ZSTD_DStream *ds;
    char *in;
    size_t insz;
    int io_errno;
    char why[160]; /* what the producer found wrong */
};

/* Waits for a free block (or cancellation); returns it, or NULL. */
static char *ring_slot(struct rctx *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->cancel && r->produced - r->released >= RING_BLOCKS)
        pthread_cond_wait(&r->cv, &r->mu);
    char *b = r->cancel ? NULL : r->blk[r->produced % RING_BLOCKS];
    pthread_mutex_unlock(&r->mu);
    return b;
}

static void ring_publish(struct rctx *r, size_t len)
{
    pthread_mutex_lock(&r->mu);
    r->len[r->produced % RING_BLOCKS] = len;
    r->produced++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void ring_fail(struct rctx *r, const char *why)
{
    pthread_mutex_lock(&r->mu);
    if (!r->failed)
        snprintf(r->why, sizeof r->why, "%s", why);
    r->failed = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void *producer(void *arg)
{
    struct rctx *r = arg;
    ZSTD_DStream *ds = r->ds;
    char *in = r->in, *out = NULL;
    size_t insz = r->insz, outpos = 0, last = 1;
    int decoding = 1;
    ZSTD_initDStream(ds);
    for (;;) {
        ssize_t n = read(r->fd, in, insz);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->io_errno = errno;
            ring_fail(r, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        XXH3_128bits_update(r->h, in, (size_t)n);
        /* After a failure or a cancel the rest is only hashed. */
        ZSTD_inBuffer ib = {in, (size_t)n, 0};
        while (decoding && ib.pos < ib.size) {
            if (!out && !(out = ring_slot(r))) {
                decoding = 0;
                break;
            }
            ZSTD_outBuffer ob = {out, RING_BLOCK, outpos};
            last = ZSTD_decompressStream(ds, &ob, &ib);
            if (ZSTD_isError(last)) {
                ring_fail(r, ZSTD_getErrorName(last));
                decoding = 0;
                break;
            }
            outpos = ob.pos;
            if (outpos == RING_BLOCK) {
                ring_publish(r, outpos);
                out = NULL;
                outpos = 0;
            }
        }
    }
    /* Flush what the decoder still holds. */
    while (decoding && last != 0) {
        if (!out && !(out = ring_slot(r)))
            break;
        ZSTD_inBuffer ib = {NULL, 0, 0};
        ZSTD_outBuffer ob = {out, RING_BLOCK, outpos};
        last = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(last)) {
            ring_fail(r, ZSTD_getErrorName(last));
            decoding = 0;
            break;
        }
        if (ob.pos == outpos && last != 0) {
            ring_fail(r, "truncated zstd stream");
            decoding = 0;
            break;
        }
        outpos = ob.pos;
        if (outpos == RING_BLOCK) {
            ring_publish(r, outpos);
            out = NULL;
            outpos = 0;
        }
    }
    if (decoding && out && outpos)
        ring_publish(r, outpos);
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static la_ssize_t read_cb(struct archive *a, void *ud, const void **out)
{
    struct rctx *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->taken > r->released) {
        r->released++;
        pthread_cond_broadcast(&r->cv);
    }
    while (r->taken == r->produced && !r->done && !r->failed)
        pthread_cond_wait(&r->cv, &r->mu);
    la_ssize_t n;
    if (r->taken < r->produced) {
        *out = r->blk[r->taken % RING_BLOCKS];
        n = (la_ssize_t)r->len[r->taken % RING_BLOCKS];
        r->taken++;
    } else if (r->failed) {
        archive_set_error(a, r->io_errno ? r->io_errno : -1, "%s", r->why);
        n = -1;
    } else {
        n = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Stops decoding, lets the producer hash the rest of the file, and says
 * whether the whole file hashes to `want`. */
static int drain_matches(struct rctx *r, const char *want)
{
    if (r->started && !r->joined) {
        pthread_mutex_lock(&r->mu);
        r->cancel = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->tid, NULL);
        r->joined = 1;
    }
    if (!r->started)
        return 0;
    char got[FARM_CACHE_HEX_SIZE];
    farm__cache_hex128(XXH3_128bits_digest(r->h), got);
    return r->io_errno == 0 && strcmp(got, want) == 0;
}

/* The path, checked: relative, no "..", no empty or "." component past a
 * leading "./". Returns the path with the leading "./" dropped ("" for the
 * root itself), or NULL when unsafe. */
static const char *safe_rel(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    if (p[0] == '/')
        return NULL;
    if (strcmp(p, ".") == 0 || p[0] == '\0')
        return "";
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if ((n == 0 && e && e[1] != '\0') || (n == 1 && s[0] == '.') ||
            (n == 2 && s[0] == '.' && s[1] == '.'))
            return NULL;
        if (!e)
            break;
        s = e + 1;
    }
    return p;
}

/* No component of rel's parent below `dest` may be anything but a real
 * directory (a symlink there would redirect the write). */
static int parents_are_dirs(const char *dest, const char *rel)
{
    char buf[PATH_MAX];
    size_t dl = strlen(dest);
    if (dl + 1 + strlen(rel) + 1 > sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, dest, dl);
    buf[dl] = '/';
    strcpy(buf + dl + 1, rel);
    for (char *s = buf + dl + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        struct stat st;
        int r = lstat(buf, &st);
        *s = '/';
        if (r != 0)
            return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
            return -ELOOP;
    }
    return 0;
}

int farm__cache_extract(const char *path, const char *dest, const char *checksum, uint64_t *files,
                        struct farm_err *err)
{
    struct rctx r = {.fd = -1};
    struct archive *in = NULL, *out = NULL;
    int rc = 0, damaged = 0;
    uint64_t nfiles = 0;
    char realdest[PATH_MAX], full[PATH_MAX];
    char lastdir[PATH_MAX] = ""; /* last parent verified by parents_are_dirs */
    if (!realpath(dest, realdest))
        return farm_err_set(err, -errno, "%s: %s", dest, strerror(errno));
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0)
        return farm_err_set(err, -errno, "%s: %s", path, strerror(errno));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.h = XXH3_createState();
    int blocks_ok = 1;
    for (int i = 0; i < RING_BLOCKS; i++)
        blocks_ok &= (r.blk[i] = malloc(RING_BLOCK)) != NULL;
    in = archive_read_new();
    out = archive_write_disk_new();
    r.ds = ZSTD_createDStream();
    r.insz = ZSTD_DStreamInSize();
    r.in = malloc(r.insz);
    if (!r.h || !blocks_ok || !r.ds || !r.in || !in || !out) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    XXH3_128bits_reset(r.h);
    if (pthread_create(&r.tid, NULL, producer, &r) != 0) {
        rc = farm_err_set(err, -EAGAIN, "cannot start a thread");
        goto out;
    }
    r.started = 1;
    archive_read_support_format_tar(in);
    /* The symlink rule is enforced by our own checks below (every parent a
     * real directory, nothing written over an existing path), not by
     * ARCHIVE_EXTRACT_SECURE_SYMLINKS: with the absolute destination prefix
     * it re-opens every component of every path, eight syscalls a file,
     * which made restores slower than tar. NOABSOLUTEPATHS cannot be used
     * for the same prefix; absolute entries are refused by safe_rel(). */
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT);
    if (archive_read_open(in, &r, NULL, read_cb, NULL) != ARCHIVE_OK) {
        damaged = 1;
        rc = farm_err_set(err, FARM_EBADARCHIVE, "%s: %s", path, archive_error_string(in));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int h = archive_read_next_header(in, &e);
        if (h == ARCHIVE_EOF)
            break;
        if (h != ARCHIVE_OK) {
            damaged = 1;
            rc = farm_err_set(err, FARM_EBADARCHIVE, "%s: %s", path, archive_error_string(in));
            goto out;
        }
        /* Copied: set_pathname below frees the entry's own string. */
        char name[PATH_MAX];
        const char *orig = archive_entry_pathname(e);
        snprintf(name, sizeof name, "%s", orig ? orig : "");
        for (size_t nl = strlen(name); nl > 1 && name[nl - 1] == '/';)
            name[--nl] = '\0'; /* "dir/" names the directory itself */
        const char *rel = orig && strlen(orig) < sizeof name ? safe_rel(name) : NULL;
        if (!rel) {
            damaged = 1;
            rc = farm_err_set(err, FARM_EBADARCHIVE,
                              "%s: entry \"%s\" is an absolute path or goes through \"..\"", path,
                              name);
            goto out;
        }
        if (!*rel)
            continue;
        mode_t type = archive_entry_filetype(e);
        if (archive_entry_hardlink(e) ||
            (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
            damaged = 1;
            rc = farm_err_set(err, FARM_EBADARCHIVE,
                              "%s: entry \"%s\" is a hard link or special file", path, name);
            goto out;
        }
        /* Our own check of the symlink rule, on top of libarchive's:
         * consecutive entries share parents, so a parent proven to be a real
         * directory is not re-checked until a symlink has been written. */
        const char *slash = strrchr(rel, '/');
        size_t parent_len = slash ? (size_t)(slash - rel) : 0;
        if (parent_len && (strlen(lastdir) != parent_len || strncmp(lastdir, rel, parent_len))) {
            int pr = parents_are_dirs(realdest, rel);
            if (pr != 0) {
                damaged = pr == -ELOOP;
                rc = farm_err_set(err, damaged ? FARM_EBADARCHIVE : pr,
                                  "%s: entry \"%s\" would be written through a symlink or file",
                                  path, name);
                goto out;
            }
            if (parent_len < sizeof lastdir) {
                memcpy(lastdir, rel, parent_len);
                lastdir[parent_len] = '\0';
            }
        }
        if (type == AE_IFLNK)
            lastdir[0] = '\0';
        if ((size_t)snprintf(full, sizeof full, "%s/%s", realdest, rel) >= sizeof full) {
            rc = farm_err_set(err, -ENAMETOOLONG, "%s: entry \"%s\": path too long", path, name);
            goto out;
        }
        /* Nothing may be written over what is already there (our packer
         * never repeats a path): that rules out following a symlink a
         * previous entry planted at this very path, which libarchive would
         * stat() through for a directory entry. */
        struct stat cur;
        if (lstat(full, &cur) == 0 && !(type == AE_IFDIR && S_ISDIR(cur.st_mode))) {
            damaged = 1;
            rc = farm_err_set(err, FARM_EBADARCHIVE,
                              "%s: entry \"%s\" would replace an earlier entry or a symlink",
                              path, name);
            goto out;
        }
        archive_entry_set_pathname(e, full);
        archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
        int wh = archive_write_header(out, e);
        if (wh != ARCHIVE_OK) {
            int en = archive_errno(out);
            /* libarchive's own security refusals carry no errno. */
            damaged = en <= 0 || en == ELOOP || en == EEXIST || en == ENOTDIR;
            rc = farm_err_set(err, damaged ? FARM_EBADARCHIVE : -en, "%s: entry \"%s\": %s", path,
                              name, archive_error_string(out));
            goto out;
        }
        if (type == AE_IFREG) {
            const void *buf;
            size_t len;
            la_int64_t off;
            int d;
            while ((d = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK) {
                if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK) {
                    int en = archive_errno(out);
                    rc = farm_err_set(err, en > 0 ? -en : -EIO, "%s: %s", full,
                                      archive_error_string(out));
                    goto out;
                }
            }
            if (d != ARCHIVE_EOF) {
                damaged = 1;
                rc = farm_err_set(err, FARM_EBADARCHIVE, "%s: entry \"%s\": %s", path, name,
                                  archive_error_string(in));
                goto out;
            }
            nfiles++;
        }
        if (archive_write_finish_entry(out) != ARCHIVE_OK) {
            int en = archive_errno(out);
            rc = farm_err_set(err, en > 0 ? -en : -EIO, "%s: %s", full, archive_error_string(out));
            goto out;
        }
    }
    if (archive_write_close(out) != ARCHIVE_OK) {
        int en = archive_errno(out);
        rc = farm_err_set(err, en > 0 ? -en : -EIO, "%s: %s", dest, archive_error_string(out));
        goto out;
    }
    if (!drain_matches(&r, checksum)) {
        rc = farm_err_set(err, FARM_ECHECKSUM, "%s: checksum mismatch (expected %s)", path,
                          checksum);
        goto out;
    }
    if (files)
        *files = nfiles;
out:
    /* Damage of any kind: a checksum mismatch says more than the symptom. */
    if (damaged && checksum && !drain_matches(&r, checksum))
        rc = farm_err_set(err, FARM_ECHECKSUM,
                          "%s: checksum mismatch (expected %s); the object is damaged", path,
                          checksum);
    drain_matches(&r, ""); /* joins the producer on every path */
    if (in)
        archive_read_free(in);
    if (out)
        archive_write_free(out);
    for (int i = 0; i < RING_BLOCKS; i++)
        free(r.blk[i]);
    ZSTD_freeDStream(r.ds);
    free(r.in);
    XXH3_freeState(r.h);
    close(r.fd);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    return rc;
}

/* ---- link trees ------------------------------------------------------- */

static int copy_file(int sdir, const char *name, int ddir, mode_t mode)
{
    int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n == 0)
            break;
        if (n < 0) {
            rc = -errno;
            break;
        }
    }
    if (rc == -EXDEV || rc == -EINVAL || rc == -ENOSYS) {
        /* Plain copy where copy_file_range is not offered. */
        char buf[65536];
        ssize_t n;
        rc = 0;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n) {
                rc = -EIO;
                break;
            }
        if (n < 0)
            rc = -errno;
    }
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

struct linker {
    uint64_t files, bytes;
    struct farm_err *err;
    char path[PATH_MAX];
};

static int link_dir(struct linker *l, int sfd, int dfd, size_t plen)
{
    DIR *d;
    char **names;
    size_t n;
    int rc = sorted_names(sfd, &d, &names, &n);
    if (rc != 0) {
        close(dfd);
        return farm_err_set(l->err, rc, "%s: %s", plen ? l->path : ".", strerror(-rc));
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *nm = names[i];
        size_t nl = strlen(nm), len = plen + (plen ? 1 : 0) + nl;
        if (len + 1 > sizeof l->path) {
            rc = farm_err_set(l->err, -ENAMETOOLONG, "%s: path too long", nm);
            break;
        }
        if (plen)
            l->path[plen] = '/';
        memcpy(l->path + plen + (plen ? 1 : 0), nm, nl + 1);
        struct stat st;
        if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = farm_err_set(l->err, -errno, "%s: %s", l->path, strerror(errno));
        } else if (S_ISREG(st.st_mode)) {
            if (linkat(dirfd(d), nm, dfd, nm, 0) != 0) {
                int e = errno;
                if (e == EXDEV || e == EMLINK || e == EPERM)
                    e = -copy_file(dirfd(d), nm, dfd, st.st_mode & 0777);
                else
                    e = e ? e : EIO;
                if (e)
                    rc = farm_err_set(l->err, -e, "%s: %s", l->path, strerror(e));
            }
            l->files++;
            l->bytes += (uint64_t)st.st_size;
        } else if (S_ISLNK(st.st_mode)) {
            char t[PATH_MAX];
            ssize_t k = readlinkat(dirfd(d), nm, t, sizeof t - 1);
            if (k < 0 || (t[k] = '\0', symlinkat(t, dfd, nm) != 0))
                rc = farm_err_set(l->err, -errno, "%s: %s", l->path, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            int sub = -1, dsub = -1;
            if (mkdirat(dfd, nm, (st.st_mode & 0777) | 0700) != 0 ||
                (sub = openat(dirfd(d), nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
                    0 ||
                (dsub = openat(dfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
                rc = farm_err_set(l->err, -errno, "%s: %s", l->path, strerror(errno));
                if (sub >= 0)
                    close(sub);
            } else {
                rc = link_dir(l, sub, dsub, len);
                /* Filled: now the directory's own mode (made writable to
                 * fill it), as a copy restore gives it. */
                if (rc == 0 && fchmodat(dfd, nm, st.st_mode & 07777, 0) != 0)
                    rc = farm_err_set(l->err, -errno, "%s: %s", l->path, strerror(errno));
            }
        }
        l->path[plen] = '\0';
    }
    free_names(names, n);
    closedir(d);
    close(dfd);
    return rc;
}

int farm__cache_link_tree(const char *src, const char *dest, uint64_t *files, uint64_t *bytes,
                          struct farm_err *err)
{
    struct linker l = {.err = err};
    int sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return farm_err_set(err, -errno, "%s: %s", src, strerror(errno));
    int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        close(sfd);
        return farm_err_set(err, -errno, "%s: %s", dest, strerror(errno));
    }
    int rc = link_dir(&l, sfd, dfd, 0);
    if (rc != 0)
        farm_err_prefix(err, "linking %s into %s: ", src, dest);
    else {
        *files = l.files;
        *bytes = l.bytes;
    }
    return rc;
}

static int ro_dir(int fd)
{
    DIR *d;
    char **names;
    size_t n;
    int rc = sorted_names(fd, &d, &names, &n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
        } else if (S_ISREG(st.st_mode)) {
            if (fchmodat(dirfd(d), names[i], st.st_mode & 0555, 0) != 0)
                rc = -errno;
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? -errno : ro_dir(sub);
        }
    }
    free_names(names, n);
    closedir(d);
    return rc;
}

int farm__cache_make_readonly(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : ro_dir(fd);
}
