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

struct walk {
    XXH3_state_t *digest;
    XXH3_state_t *file;
    char *buf;
    size_t bufcap;
    const struct sc_entry *old; /* sorted by (dev, ino) */
    size_t n_old;
    struct sc_entry *cur; /* this walk's records */
    size_t n_cur, cap_cur;
    int dirty;
    json_t *manifest;
    struct farm_digest_stats st;
    struct farm_err *err;
    char path[PATH_MAX]; /* relative path of the entry being visited */
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

static void sc_load(struct walk *w, const char *path, void **mem)
{
    *mem = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    struct sc_header h;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof h ||
        read(fd, &h, sizeof h) != (ssize_t)sizeof h || memcmp(h.magic, SC_MAGIC, 8) != 0 ||
        h.count > ((uint64_t)st.st_size - sizeof h) / sizeof(struct sc_entry) ||
        (uint64_t)st.st_size != sizeof h + h.count * sizeof(struct sc_entry)) {
        close(fd);
        return;
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
        return;
    }
    *mem = p;
    w->old = p;
    w->n_old = (size_t)h.count;
}

static void sc_save(struct walk *w, const char *path)
{
    qsort(w->cur, w->n_cur, sizeof *w->cur, cmp_entry);
    struct sc_header h;
    memcpy(h.magic, SC_MAGIC, 8);
    h.count = w->n_cur;
    h.body_hash = XXH3_64bits(w->cur, w->n_cur * sizeof *w->cur);
    char *tmp = farm__cache_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h;
        size_t body = w->n_cur * sizeof *w->cur, done = 0;
        while (ok && done < body) {
            ssize_t n = write(fd, (const char *)w->cur + done, body - done);
            if (n <= 0)
                ok = 0;
            else
                done += (size_t)n;
        }
        ok = close(fd) == 0 && ok;
        /* The cache is an optimisation: failing to save it is not an error
         * of the digest, and a torn file fails its body hash on load. */
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(tmp);
}

static const struct sc_entry *sc_find(const struct walk *w, uint64_t dev, uint64_t ino)
{
    struct sc_entry key = {.dev = dev, .ino = ino};
    return bsearch(&key, w->old, w->n_old, sizeof key, cmp_entry);
}

static int sc_push(struct walk *w, const struct sc_entry *e)
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

static void put_u64(XXH3_state_t *s, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    XXH3_128bits_update(s, b, 8);
}

static void put_str(XXH3_state_t *s, const char *p, size_t n)
{
    put_u64(s, n);
    XXH3_128bits_update(s, p, n);
}

/* A JSON key for a path: the path itself when it is UTF-8, else "hex:..." */
static int manifest_put(struct walk *w, const char *value)
{
    json_t *v = json_string(value);
    if (!v)
        v = json_string("link:?"); /* a non-UTF-8 symlink target */
    if (!v)
        return -ENOMEM;
    if (json_object_set_new(w->manifest, w->path, v) == 0)
        return 0;
    size_t n = strlen(w->path);
    char *k = malloc(4 + 2 * n + 1);
    if (!k)
        return -ENOMEM;
    memcpy(k, "hex:", 4);
    for (size_t i = 0; i < n; i++)
        snprintf(k + 4 + 2 * i, 3, "%02x", (unsigned char)w->path[i]);
    int rc = json_object_set_new(w->manifest, k, json_string(value)) == 0 ? 0 : -ENOMEM;
    free(k);
    return rc;
}

static int hash_content(struct walk *w, int dirfd, const char *name, struct stat *before,
                        unsigned char out[16], int64_t *read_ns)
{
    /* A file that changes while it is read is read again; three strikes
     * and the walk fails rather than record a hash that matches no state. */
    for (int attempt = 0; attempt < 3; attempt++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return farm_err_set(w->err, -errno, "%s: %s", w->path, strerror(errno));
        XXH3_128bits_reset(w->file);
        uint64_t total = 0;
        for (;;) {
            ssize_t n = read(fd, w->buf, w->bufcap);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;
                close(fd);
                return farm_err_set(w->err, -e, "%s: read: %s", w->path, strerror(e));
            }
            if (n == 0)
                break;
            XXH3_128bits_update(w->file, w->buf, (size_t)n);
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
            return farm_err_set(w->err, -errno, "%s: %s", w->path, strerror(errno));
        if (!S_ISREG(before->st_mode))
            break;
    }
    return farm_err_set(w->err, -EAGAIN, "%s: the file kept changing while it was digested",
                        w->path);
}

static int visit_file(struct walk *w, int dirfd, const char *name, struct stat *st)
{
    w->st.files++;
    struct sc_entry e = {
        .dev = (uint64_t)st->st_dev,
        .ino = (uint64_t)st->st_ino,
        .size = (uint64_t)st->st_size,
        .mtime_ns = ts_ns(st->st_mtim),
        .ctime_ns = ts_ns(st->st_ctim),
    };
    const struct sc_entry *old = sc_find(w, e.dev, e.ino);
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
    int rc = sc_push(w, &e);
    if (rc != 0)
        return farm_err_set(w->err, rc, "out of memory");
    int exec = (st->st_mode & S_IXUSR) != 0;
    XXH3_128bits_update(w->digest, "f", 1);
    put_str(w->digest, w->path, strlen(w->path));
    XXH3_128bits_update(w->digest, exec ? "x" : "-", 1);
    put_u64(w->digest, e.size);
    XXH3_128bits_update(w->digest, e.hash, 16);
    if (w->manifest) {
        char v[64];
        snprintf(v, sizeof v, "%s:", exec ? "exec" : "file");
        char *p = v + strlen(v);
        for (int i = 0; i < 16; i++)
            snprintf(p + 2 * i, 3, "%02x", e.hash[i]);
        if ((rc = manifest_put(w, v)) != 0)
            return farm_err_set(w->err, rc, "out of memory");
    }
    return 0;
}

static int visit_link(struct walk *w, int dirfd, const char *name)
{
    w->st.symlinks++;
    char target[PATH_MAX + 6];
    memcpy(target, "link:", 5);
    ssize_t n = readlinkat(dirfd, name, target + 5, PATH_MAX);
    if (n < 0)
        return farm_err_set(w->err, -errno, "%s: readlink: %s", w->path, strerror(errno));
    target[5 + n] = '\0';
    XXH3_128bits_update(w->digest, "l", 1);
    put_str(w->digest, w->path, strlen(w->path));
    put_str(w->digest, target + 5, (size_t)n);
    if (w->manifest && manifest_put(w, target) != 0)
        return farm_err_set(w->err, -ENOMEM, "out of memory");
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Visits the directory open as `fd` (closed here), whose relative path is
 * w->path[0..plen). */
static int walk_dir(struct walk *w, int fd, size_t plen)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return farm_err_set(w->err, -e, "%s: %s", plen ? w->path : ".", strerror(e));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = farm_err_set(w->err, -ENOMEM, "out of memory");
                goto out;
            }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = farm_err_set(w->err, -ENOMEM, "out of memory");
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t nl = strlen(names[i]);
        size_t len = plen + (plen ? 1 : 0) + nl;
        if (len + 1 > sizeof w->path) {
            w->path[plen] = '\0';
            rc = farm_err_set(w->err, -ENAMETOOLONG, "%s/%s: path too long", w->path, names[i]);
            break;
        }
        if (plen)
            w->path[plen] = '/';
        memcpy(w->path + plen + (plen ? 1 : 0), names[i], nl + 1);
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = farm_err_set(w->err, -errno, "%s: %s", w->path, strerror(errno));
        } else if (S_ISREG(st.st_mode)) {
            rc = visit_file(w, dirfd(d), names[i], &st);
        } else if (S_ISLNK(st.st_mode)) {
            rc = visit_link(w, dirfd(d), names[i]);
        } else if (S_ISDIR(st.st_mode)) {
            w->st.dirs++;
            XXH3_128bits_update(w->digest, "d", 1);
            put_str(w->digest, w->path, len);
            if (w->manifest && manifest_put(w, "dir") != 0)
                rc = farm_err_set(w->err, -ENOMEM, "out of memory");
            int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (rc == 0 && sub < 0)
                rc = farm_err_set(w->err, -errno, "%s: %s", w->path, strerror(errno));
            else if (rc == 0)
                rc = walk_dir(w, sub, len);
            else if (sub >= 0)
                close(sub);
        } else {
            rc = farm_err_set(w->err, FARM_EBADDATA,
                              "%s: not a file, directory or symlink (sockets, fifos and "
                              "devices cannot be part of a dependency source)",
                              w->path);
        }
        w->path[plen] = '\0';
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int farm_digest_dir(const char *dir, const char *statcache_path, char hex[FARM_CACHE_HEX_SIZE],
                    char **manifest_json, struct farm_digest_stats *stats, struct farm_err *err)
{
    struct walk *w = calloc(1, sizeof *w);
    if (!w)
        return farm_err_set(err, -ENOMEM, "out of memory");
    w->err = err;
    void *oldmem = NULL;
    int rc = 0;
    w->digest = XXH3_createState();
    w->file = XXH3_createState();
    w->bufcap = 1 << 20;
    w->buf = malloc(w->bufcap);
    if (manifest_json)
        w->manifest = json_object();
    if (!w->digest || !w->file || !w->buf || (manifest_json && !w->manifest)) {
        rc = farm_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    XXH3_128bits_reset(w->digest);
    if (statcache_path)
        sc_load(w, statcache_path, &oldmem);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = farm_err_set(err, -errno, "%s: %s", dir, strerror(errno));
        goto out;
    }
    rc = walk_dir(w, fd, 0);
    if (rc != 0) {
        farm_err_prefix(err, "digest of %s: ", dir);
        goto out;
    }
    /* Entries of files that are gone also make the saved cache stale. */
    if (statcache_path && (w->dirty || w->n_cur != w->n_old))
        sc_save(w, statcache_path);
    if (manifest_json) {
        char *s = json_dumps(w->manifest, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s) {
            rc = farm_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        *manifest_json = s;
    }
    farm__cache_hex128(XXH3_128bits_digest(w->digest), hex);
out:
    if (stats)
        *stats = w->st;
    json_decref(w->manifest);
    free(oldmem);
    free(w->cur);
    free(w->buf);
    XXH3_freeState(w->digest);
    XXH3_freeState(w->file);
    free(w);
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
