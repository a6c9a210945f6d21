/*
 * The source digest: a canonical walk of a directory, with a stat cache so
 * an unchanged tree is re-digested from metadata alone; and the git tree OID
 * of a sub-directory through libgit2.
 */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, fdopendir */
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
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <jansson.h>

/* One stat cache record: 64 bytes, stored as is (little-endian hosts only
 * read back what they wrote; the header's magic includes the layout). */
struct sc_entry {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    int64_t read_ns; /* CLOCK_REALTIME when the content read started */
    unsigned char hash[16];
};

#define SC_MAGIC "FARMSC1\n"

struct sc_header {
    char magic[8];
    uint64_t count;
    uint64_t body_hash; /* XXH3-64 of the entries */
};

/*
 * The walk runs on a few threads: each takes a directory from a queue,
 * lists, stats and (when the stat cache cannot vouch for them) hashes its
 * entries, and records, per entry, the exact bytes the digest takes. The
 * calling thread then feeds those records in canonical order (depth first,
 * names sorted bytewise), so the digest does not depend on the schedule.
 */
struct item {
    size_t rec_off, rec_len; /* the bytes this entry contributes */
    size_t key_off, val_off; /* its manifest key and value, NUL-terminated */
    struct dnode *child;     /* for a directory: its own records */
};

struct dnode {
    char *rel; /* relative path; "" for the root */
    struct dnode *next;
    struct item *items;
    size_t n_items, cap_items;
    char *buf;
    size_t len, cap;
};

struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct dnode *head, *tail;
    struct dnode **all;
    size_t n_all, cap_all;
    size_t busy;
    int failed;
    int rootfd;
    int manifest;
    const struct sc_entry *old; /* sorted by (dev, ino) */
    size_t n_old;
    struct farm_err *err;
    const char *dir;
};

struct worker {
    struct shared *s;
    XXH3_state_t *file;
    char *rbuf;
    size_t rcap;
    struct sc_entry *cur; /* this worker's stat cache records */
    size_t n_cur, cap_cur;
    int dirty;
    int rc;
    struct farm_digest_stats st;
    struct farm_err err;
    char path[PATH_MAX];
};

static int cmp_entry(const void *a, const void *b)
{
    const struct sc_entry *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return 0;
}

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *sc_load(const char *path, size_t *count)
{
    *count = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    struct sc_header h;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof h ||
        read(fd, &h, sizeof h) != (ssize_t)sizeof h || memcmp(h.magic, SC_MAGIC, 8) != 0 ||
        h.count > ((uint64_t)st.st_size - sizeof h) / sizeof(struct sc_entry) ||
        (uint64_t)st.st_size != sizeof h + h.count * sizeof(struct sc_entry)) {
        close(fd);
        return NULL;
    }
    size_t body = (size_t)h.count * sizeof(struct sc_entry);
    void *p = malloc(body ? body : 1);
    size_t got = 0;
    while (p && got < body) {
        ssize_t n = read(fd, (char *)p + got, body - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    /* A torn or edited stat cache is ignored rather than trusted. */
    if (!p || got != body || XXH3_64bits(p, body) != h.body_hash) {
        free(p);
        return NULL;
    }
    *count = (size_t)h.count;
    return p;
}

static void sc_save(struct sc_entry *cur, size_t n, const char *path)
{
    qsort(cur, n, sizeof *cur, cmp_entry);
    struct sc_header h;
    memcpy(h.magic, SC_MAGIC, 8);
    h.count = n;
    h.body_hash = XXH3_64bits(cur, n * sizeof *cur);
    char *tmp = farm__cache_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h;
        size_t body = n * sizeof *cur, done = 0;
        while (ok && done < body) {
            ssize_t k = write(fd, (const char *)cur + done, body - done);
            if (k <= 0)
                ok = 0;
            else
                done += (size_t)k;
        }
        ok = close(fd) == 0 && ok;
        /* The cache is an optimisation: failing to save it is not an error
         * of the digest, and a torn file fails its body hash on load. */
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(tmp);
}

static const struct sc_entry *sc_find(const struct shared *s, uint64_t dev, uint64_t ino)
{
    if (!s->old || !s->n_old)
        return NULL;
    struct sc_entry key = {.dev = dev, .ino = ino};
    return bsearch(&key, s->old, s->n_old, sizeof key, cmp_entry);
}

static int sc_push(struct worker *w, const struct sc_entry *e)
{
    if (w->n_cur == w->cap_cur) {
        size_t cap = w->cap_cur ? w->cap_cur * 2 : 1024;
        struct sc_entry *p = realloc(w->cur, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        w->cur = p;
        w->cap_cur = cap;
    }
    w->cur[w->n_cur++] = *e;
    return 0;
}

/* ---- per-directory records ---- */

static int node_put(struct dnode *n, const void *p, size_t len)
{
    if (n->len + len > n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 4096;
        while (cap < n->len + len)
            cap *= 2;
        char *b = realloc(n->buf, cap);
        if (!b)
            return -ENOMEM;
        n->buf = b;
        n->cap = cap;
    }
    memcpy(n->buf + n->len, p, len);
    n->len += len;
    return 0;
}

static int node_u64(struct dnode *n, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return node_put(n, b, 8);
}

static int node_str(struct dnode *n, const char *p, size_t len)
{
    return node_u64(n, len) || node_put(n, p, len) ? -ENOMEM : 0;
}

static struct item *node_item(struct dnode *n)
{
    if (n->n_items == n->cap_items) {
        size_t cap = n->cap_items ? n->cap_items * 2 : 16;
        struct item *p = realloc(n->items, cap * sizeof *p);
        if (!p)
            return NULL;
        n->items = p;
        n->cap_items = cap;
    }
    struct item *it = &n->items[n->n_items++];
    memset(it, 0, sizeof *it);
    it->rec_off = n->len;
    return it;
}

/* Ends an item's record; adds its manifest strings when asked for. */
static int item_end(struct worker *w, struct dnode *n, struct item *it, const char *val)
{
    it->rec_len = n->len - it->rec_off;
    if (!w->s->manifest)
        return 0;
    it->key_off = n->len;
    if (node_put(n, w->path, strlen(w->path) + 1))
        return -ENOMEM;
    it->val_off = n->len;
    return node_put(n, val, strlen(val) + 1);
}

static int hash_content(struct worker *w, int dirfd, const char *name, struct stat *before,
                        unsigned char out[16], int64_t *read_ns)
{
    /* A file that changes while it is read is read again; three strikes
     * and the walk fails rather than record a hash that matches no state. */
    for (int attempt = 0; attempt < 3; attempt++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return farm_err_set(&w->err, -errno, "%s: %s", w->path, strerror(errno));
        XXH3_128bits_reset(w->file);
        uint64_t total = 0;
        for (;;) {
            ssize_t n = read(fd, w->rbuf, w->rcap);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;
                close(fd);
                return farm_err_set(&w->err, -e, "%s: read: %s", w->path, strerror(e));
            }
            if (n == 0)
                break;
            XXH3_128bits_update(w->file, w->rbuf, (size_t)n);
            total += (uint64_t)n;
        }
        struct stat after;
        int r = fstat(fd, &after);
        close(fd);
        w->st.files_read++;
        w->st.bytes_read += total;
        if (r == 0 && total == (uint64_t)before->st_size && after.st_size == before->st_size &&
            ts_ns(after.st_mtim) == ts_ns(before->st_mtim) &&
            ts_ns(after.st_ctim) == ts_ns(before->st_ctim) && after.st_ino == before->st_ino) {
            XXH128_canonical_t c;
            XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w->file));
            memcpy(out, c.digest, 16);
            *read_ns = ts_ns(now);
            return 0;
        }
        if (fstatat(dirfd, name, before, AT_SYMLINK_NOFOLLOW) != 0)
            return farm_err_set(&w->err, -errno, "%s: %s", w->path, strerror(errno));
        if (!S_ISREG(before->st_mode))
            break;
    }
    return farm_err_set(&w->err, -EAGAIN, "%s: the file kept changing while it was digested",
                        w->path);
}

static int visit_file(struct worker *w, struct dnode *n, int dirfd, const char *name,
                      struct stat *st)
{
    w->st.files++;
    struct sc_entry e = {
        .dev = (uint64_t)st->st_dev,
        .ino = (uint64_t)st->st_ino,
        .size = (uint64_t)st->st_size,
        .mtime_ns = ts_ns(st->st_mtim),
        .ctime_ns = ts_ns(st->st_ctim),
    };
    const struct sc_entry *old = sc_find(w->s, e.dev, e.ino);
    int64_t newest = e.mtime_ns > e.ctime_ns ? e.mtime_ns : e.ctime_ns;
    if (old && old->size == e.size && old->mtime_ns == e.mtime_ns &&
        old->ctime_ns == e.ctime_ns && newest < old->read_ns - FARM_DIGEST_RACY_NS) {
        memcpy(e.hash, old->hash, 16);
        e.read_ns = old->read_ns;
    } else {
        int rc = hash_content(w, dirfd, name, st, e.hash, &e.read_ns);
        if (rc != 0)
            return rc;
        e.size = (uint64_t)st->st_size;
        e.mtime_ns = ts_ns(st->st_mtim);
        e.ctime_ns = ts_ns(st->st_ctim);
        w->dirty = 1;
    }
    int exec = (st->st_mode & S_IXUSR) != 0;
    struct item *it = node_item(n);
    if (!it || sc_push(w, &e) || node_put(n, "f", 1) || node_str(n, w->path, strlen(w->path)) ||
        node_put(n, exec ? "x" : "-", 1) || node_u64(n, e.size) || node_put(n, e.hash, 16))
        return farm_err_set(&w->err, -ENOMEM, "out of memory");
    char v[64] = "";
    if (w->s->manifest) {
        static const char digits[] = "0123456789abcdef";
        memcpy(v, exec ? "exec:" : "file:", 5);
        for (int i = 0; i < 16; i++) {
            v[5 + 2 * i] = digits[e.hash[i] >> 4];
            v[6 + 2 * i] = digits[e.hash[i] & 15];
        }
        v[37] = '\0';
    }
    return item_end(w, n, it, v) ? farm_err_set(&w->err, -ENOMEM, "out of memory") : 0;
}

static int visit_link(struct worker *w, struct dnode *n, int dirfd, const char *name)
{
    w->st.symlinks++;
    char target[PATH_MAX + 6];
    memcpy(target, "link:", 5);
    ssize_t k = readlinkat(dirfd, name, target + 5, PATH_MAX);
    if (k < 0)
        return farm_err_set(&w->err, -errno, "%s: readlink: %s", w->path, strerror(errno));
    target[5 + k] = '\0';
    struct item *it = node_item(n);
    if (!it || node_put(n, "l", 1) || node_str(n, w->path, strlen(w->path)) ||
        node_str(n, target + 5, (size_t)k) || item_end(w, n, it, target))
        return farm_err_set(&w->err, -ENOMEM, "out of memory");
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void queue_push(struct shared *s, struct dnode *d)
{
    d->next = NULL;
    if (s->tail)
        s->tail->next = d;
    else
        s->head = d;
    s->tail = d;
}

/* Lists, stats and hashes one directory into `n`; queues its children. */
static int process(struct worker *w, struct dnode *n)
{
    struct shared *s = w->s;
    int fd = n->rel[0] ? openat(s->rootfd, n->rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                       : dup(s->rootfd);
    if (fd < 0)
        return farm_err_set(&w->err, -errno, "%s: %s", n->rel[0] ? n->rel : ".", strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return farm_err_set(&w->err, -e, "%s: %s", n->rel[0] ? n->rel : ".", strerror(e));
    }
    /* Names go into one arena; pointers are taken once it stops moving. */
    char *arena = NULL;
    size_t alen = 0, acap = 0, count = 0;
    char **names = NULL;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t l = strlen(de->d_name) + 1;
        if (alen + l > acap) {
            size_t cap = acap ? acap * 2 : 4096;
            while (cap < alen + l)
                cap *= 2;
            char *p = realloc(arena, cap);
            if (!p) {
                rc = farm_err_set(&w->err, -ENOMEM, "out of memory");
                goto out;
            }
            arena = p;
            acap = cap;
        }
        memcpy(arena + alen, de->d_name, l);
        alen += l;
        count++;
    }
    names = malloc((count ? count : 1) * sizeof *names);
    if (!names) {
        rc = farm_err_set(&w->err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0, off = 0; i < count; i++) {
        names[i] = arena + off;
        off += strlen(names[i]) + 1;
    }
    qsort(names, count, sizeof *names, cmp_name);
    size_t plen = strlen(n->rel);
    memcpy(w->path, n->rel, plen + 1);
    struct dnode *first = NULL, *last = NULL;
    for (size_t i = 0; i < count && rc == 0; i++) {
        size_t nl = strlen(names[i]);
        if (plen + 1 + nl + 1 > sizeof w->path) {
            rc = farm_err_set(&w->err, -ENAMETOOLONG, "%s/%s: path too long", n->rel, names[i]);
            break;
        }
        if (plen)
            w->path[plen] = '/';
        memcpy(w->path + plen + (plen ? 1 : 0), names[i], nl + 1);
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = farm_err_set(&w->err, -errno, "%s: %s", w->path, strerror(errno));
        } else if (S_ISREG(st.st_mode)) {
            rc = visit_file(w, n, dirfd(d), names[i], &st);
        } else if (S_ISLNK(st.st_mode)) {
            rc = visit_link(w, n, dirfd(d), names[i]);
        } else if (S_ISDIR(st.st_mode)) {
            w->st.dirs++;
            struct item *it = node_item(n);
            struct dnode *c = calloc(1, sizeof *c);
            if (!it || !c || !(c->rel = strdup(w->path)) || node_put(n, "d", 1) ||
                node_str(n, w->path, strlen(w->path)) || item_end(w, n, it, "dir")) {
                if (c)
                    free(c->rel);
                free(c);
                rc = farm_err_set(&w->err, -ENOMEM, "out of memory");
            } else {
                it->child = c;
                if (last)
                    last->next = c;
                else
                    first = c;
                last = c;
            }
        } else {
            rc = farm_err_set(&w->err, FARM_EBADDATA,
                              "%s: not a file, directory or symlink (sockets, fifos and "
                              "devices cannot be part of a dependency source)",
                              w->path);
        }
        w->path[plen] = '\0';
    }
    /* Children are queued (and owned by the shared list) even on error,
     * so that freeing finds them all. */
    pthread_mutex_lock(&s->mu);
    for (struct dnode *c = first, *nx; c; c = nx) {
        nx = c->next;
        if (s->n_all == s->cap_all) {
            size_t cap = s->cap_all ? s->cap_all * 2 : 256;
            struct dnode **p = realloc(s->all, cap * sizeof *p);
            if (!p) {
                /* Unreachable nodes would leak; fail the walk instead. */
                if (rc == 0)
                    rc = farm_err_set(&w->err, -ENOMEM, "out of memory");
                free(c->rel);
                free(c);
                continue;
            }
            s->all = p;
            s->cap_all = cap;
        }
        s->all[s->n_all++] = c;
        if (rc == 0)
            queue_push(s, c);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
out:
    free(names);
    free(arena);
    closedir(d);
    return rc;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct shared *s = w->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && s->busy > 0 && !s->failed)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->failed || !s->head)
            break;
        struct dnode *n = s->head;
        s->head = n->next;
        if (!s->head)
            s->tail = NULL;
        s->busy++;
        pthread_mutex_unlock(&s->mu);
        int rc = process(w, n);
        pthread_mutex_lock(&s->mu);
        s->busy--;
        if (rc != 0 && !s->failed) {
            s->failed = 1;
            w->rc = rc;
            if (s->err)
                *s->err = w->err;
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Feeds the records in canonical order. */
static int assemble(XXH3_state_t *h, json_t *man, const struct dnode *n)
{
    for (size_t i = 0; i < n->n_items; i++) {
        const struct item *it = &n->items[i];
        XXH3_128bits_update(h, n->buf + it->rec_off, it->rec_len);
        if (man) {
            const char *k = n->buf + it->key_off, *v = n->buf + it->val_off;
            json_t *jv = json_string(v);
            if (!jv)
                jv = json_string("link:?"); /* a symlink target that is not UTF-8 */
            if (!jv)
                return -ENOMEM;
            if (json_object_set_new(man, k, jv) != 0) {
                /* A name that is not UTF-8: keyed by its bytes in hex. */
                size_t kl = strlen(k);
                char *hk = malloc(4 + 2 * kl + 1);
                if (!hk)
                    return -ENOMEM;
                memcpy(hk, "hex:", 4);
                for (size_t j = 0; j < kl; j++)
                    snprintf(hk + 4 + 2 * j, 3, "%02x", (unsigned char)k[j]);
                int r = json_object_set_new(man, hk, json_string(v));
                free(hk);
                if (r != 0)
                    return -ENOMEM;
            }
        }
        if (it->child) {
            int rc = assemble(h, man, it->child);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int walk_threads(void)
{
    const char *e = getenv("FARM_DIGEST_THREADS");
    long n = e ? atol(e) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

int farm_digest_dir(const char *dir, const char *statcache_path, char hex[FARM_CACHE_HEX_SIZE],
                    char **manifest_json, struct farm_digest_stats *stats, struct farm_err *err)
{
    struct shared s = {.rootfd = -1, .manifest = manifest_json != NULL, .err = err, .dir = dir};
    struct dnode root = {.rel = (char *)""};
    int nt = walk_threads();
    struct worker ws[8];
    pthread_t tids[8];
    int started = 0, rc = 0;
    struct farm_digest_stats total = {0};
    void *oldmem = NULL;
    XXH3_state_t *h = XXH3_createState();
    json_t *man = manifest_json ? json_object() : NULL;
    memset(ws, 0, sizeof ws);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (!h || (manifest_json && !man)) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    s.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.rootfd < 0) {
        rc = farm_err_set(err, -errno, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (statcache_path)
        s.old = oldmem = sc_load(statcache_path, &s.n_old);
    for (int i = 0; i < nt; i++) {
        ws[i].s = &s;
        ws[i].rcap = 1 << 20;
        ws[i].rbuf = malloc(ws[i].rcap);
        ws[i].file = XXH3_createState();
        if (!ws[i].rbuf || !ws[i].file) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
    queue_push(&s, &root);
    /* The calling thread is worker 0; the others help when there are CPUs. */
    for (int i = 1; i < nt; i++) {
        if (pthread_create(&tids[i], NULL, work, &ws[i]) != 0)
            break;
        started = i;
    }
    work(&ws[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(tids[i], NULL);
    if (s.failed) {
        for (int i = 0; i < nt; i++)
            if (ws[i].rc)
                rc = ws[i].rc;
        farm_err_prefix(err, "digest of %s: ", dir);
        goto out;
    }
    XXH3_128bits_reset(h);
    if ((rc = assemble(h, man, &root)) != 0) {
        rc = farm_err_set(err, rc, "out of memory");
        goto out;
    }
    if (statcache_path) {
        /* Merge the workers' records; entries of files that are gone also
         * make the saved cache stale. */
        size_t n = 0;
        int dirty = 0;
        for (int i = 0; i < nt; i++) {
            n += ws[i].n_cur;
            dirty |= ws[i].dirty;
        }
        if (dirty || n != s.n_old) {
            struct sc_entry *all = malloc((n ? n : 1) * sizeof *all);
            if (all) {
                size_t k = 0;
                for (int i = 0; i < nt; i++) {
                    if (ws[i].n_cur)
                        memcpy(all + k, ws[i].cur, ws[i].n_cur * sizeof *all);
                    k += ws[i].n_cur;
                }
                sc_save(all, n, statcache_path);
                free(all);
            }
        }
    }
    if (manifest_json) {
        char *txt = json_dumps(man, JSON_COMPACT | JSON_SORT_KEYS);
        if (!txt) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        *manifest_json = txt;
    }
    farm__cache_hex128(XXH3_128bits_digest(h), hex);
out:
    for (int i = 0; i < nt; i++) {
        total.files += ws[i].st.files;
        total.dirs += ws[i].st.dirs;
        total.symlinks += ws[i].st.symlinks;
        total.files_read += ws[i].st.files_read;
        total.bytes_read += ws[i].st.bytes_read;
        free(ws[i].rbuf);
        free(ws[i].cur);
        XXH3_freeState(ws[i].file);
    }
    if (stats)
        *stats = total;
    for (size_t i = 0; i < s.n_all; i++) {
        free(s.all[i]->rel);
        free(s.all[i]->items);
        free(s.all[i]->buf);
        free(s.all[i]);
    }
    free(s.all);
    free(root.items);
    free(root.buf);
    free(oldmem);
    json_decref(man);
    XXH3_freeState(h);
    if (s.rootfd >= 0)
        close(s.rootfd);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return rc;
}

int farm_digest_git_tree(const char *repo_path, const char *rev, const char *subdir,
                         char hex[FARM_CACHE_SOURCE_SIZE], struct farm_err *err)
{
    git_libgit2_init();
    git_repository *repo = NULL;
    git_object *obj = NULL, *treeobj = NULL;
    git_tree_entry *entry = NULL;
    int rc = 0;
    const git_oid *oid = NULL;
    if (git_repository_open_ext(&repo, repo_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) != 0) {
        const git_error *e = git_error_last();
        rc = farm_err_set(err, FARM_EGIT, "%s: %s", repo_path, e ? e->message : "not a repository");
        goto out;
    }
    if (git_revparse_single(&obj, repo, rev) != 0 ||
        git_object_peel(&treeobj, obj, GIT_OBJECT_TREE) != 0) {
        const git_error *e = git_error_last();
        rc = farm_err_set(err, FARM_EGIT, "%s: revision %s: %s", repo_path, rev,
                          e ? e->message : "not found");
        goto out;
    }
    if (!subdir || !*subdir || strcmp(subdir, ".") == 0) {
        oid = git_object_id(treeobj);
    } else {
        if (git_tree_entry_bypath(&entry, (git_tree *)treeobj, subdir) != 0) {
            rc = farm_err_set(err, FARM_ENOTFOUND, "%s: %s has no %s", repo_path, rev, subdir);
            goto out;
        }
        if (git_tree_entry_type(entry) != GIT_OBJECT_TREE) {
            rc = farm_err_set(err, FARM_ENOTFOUND, "%s: %s:%s is not a directory", repo_path, rev,
                              subdir);
            goto out;
        }
        oid = git_tree_entry_id(entry);
    }
    char buf[GIT_OID_HEXSZ + 1];
    git_oid_tostr(buf, sizeof buf, oid);
    snprintf(hex, FARM_CACHE_SOURCE_SIZE, "%s", buf);
out:
    git_tree_entry_free(entry);
    git_object_free(treeobj);
    git_object_free(obj);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return rc;
}
