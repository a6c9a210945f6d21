#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, fdopendir, openat */
#include "cache-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

farm__cache_write_hook farm__cache_write_hook_fn;

void farm__cache_set_write_hook(farm__cache_write_hook hook)
{
    farm__cache_write_hook_fn = hook;
}

void farm__cache_hex128(XXH128_hash_t h, char out[FARM_CACHE_HEX_SIZE])
{
    /* The canonical (big-endian) representation, as xxh128sum prints it. */
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof c.digest; i++) {
        out[2 * i] = digits[c.digest[i] >> 4];
        out[2 * i + 1] = digits[c.digest[i] & 15];
    }
    out[32] = '\0';
}

int farm__cache_is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int64_t farm__cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *farm__cache_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int farm__cache_mkdirs(const char *path, mode_t mode)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
    }
    return rc;
}

/* Removes the contents of the open directory `fd` (which it closes). */
static int empty_fd(int fd)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), n, 0) == 0)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            if (errno != ENOENT && rc == 0)
                rc = -errno;
            continue;
        }
        /* A directory: make it writable (a link tree may have been made
         * read-only by a non-root user), empty it, remove it. */
        fchmodat(dirfd(d), n, 0700, 0);
        int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            if (rc == 0)
                rc = -errno;
            continue;
        }
        int r = empty_fd(sub);
        if (r == 0 && unlinkat(dirfd(d), n, AT_REMOVEDIR) != 0)
            r = -errno;
        if (r != 0 && rc == 0)
            rc = r;
    }
    closedir(d);
    return rc;
}

int farm__cache_empty_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    return empty_fd(fd);
}

int farm__cache_rm_rf(const char *path)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int rc = farm__cache_empty_dir(path);
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

int farm__cache_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int farm__cache_hash_file(const char *path, char hex[FARM_CACHE_HEX_SIZE], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    XXH3_state_t *st = XXH3_createState();
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int rc = 0;
    uint64_t total = 0;
    if (!st || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    XXH3_128bits_reset(st);
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        XXH3_128bits_update(st, buf, (size_t)n);
        total += (uint64_t)n;
    }
    farm__cache_hex128(XXH3_128bits_digest(st), hex);
    if (size)
        *size = total;
out:
    free(buf);
    XXH3_freeState(st);
    close(fd);
    return rc;
}

static int count_fd(int fd, uint64_t stop, uint64_t *count)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int rc = 0;
    struct dirent *de;
    while (*count < stop && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            (*count)++;
            continue;
        }
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = -errno;
            break;
        }
        if ((rc = count_fd(sub, stop, count)) != 0)
            break;
    }
    closedir(d);
    return rc;
}

int farm__cache_count_files(const char *dir, uint64_t stop, uint64_t *count)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *count = 0;
    return count_fd(fd, stop, count);
}
