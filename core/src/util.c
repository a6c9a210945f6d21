#define _GNU_SOURCE
#include "farm/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

int farm_home_path(char *buf, size_t len)
{
    const char *h = getenv("FARM_HOME");
    int n;
    if (h && *h) {
        n = snprintf(buf, len, "%s", h);
    } else {
        const char *x = getenv("XDG_DATA_HOME");
        if (x && *x) {
            n = snprintf(buf, len, "%s/farm", x);
        } else {
            const char *home = getenv("HOME");
            if (!home || !*home)
                return -ENOENT;
            n = snprintf(buf, len, "%s/.local/share/farm", home);
        }
    }
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int farm_home_ensure(const char *home, struct farm_err *err)
{
    struct stat st;
    int rc = farm_mkdirs(home, 0700);
    if (rc < 0)
        return farm_err_set(err, rc, "%s: cannot create FARM_HOME: %s", home, farm_strerror(rc));
    if (stat(home, &st) < 0)
        return farm_err_set(err, -errno, "%s: %s", home, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return farm_err_set(err, -ENOTDIR, "%s: FARM_HOME is not a directory", home);
    if (st.st_uid != getuid())
        return farm_err_set(err, FARM_EPERM, "%s: FARM_HOME belongs to uid %u, not to us (%u)",
                            home, (unsigned)st.st_uid, (unsigned)getuid());
    if ((st.st_mode & 0777) != 0700 && chmod(home, 0700) < 0)
        return farm_err_set(err, -errno, "%s: cannot set mode 0700: %s", home, strerror(errno));
    return 0;
}

int64_t farm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t farm_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *farm_rfc3339(int64_t ms, char *buf, size_t len)
{
    /* Civil date from days since the epoch (proleptic Gregorian), without
     * gmtime_r's locking: farmd formats many of these. */
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    int64_t z, era, doe, yoe, y, doy, mp, d, m;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, (int)m, (int)d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)(ms % 1000));
    return buf;
}

int farm_mkdirs(const char *path, unsigned mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    char *slash;
    int rc;
    /* The common case first: the parent exists, one system call. */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return -ENOENT;
    *slash = '\0';
    if ((rc = farm_mkdirs(tmp, mode)) < 0)
        return rc;
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Removes `name` below `dfd` and all under it. Directories on another file
 * system than `dev` (mount points) are not entered: removing one fails. */
static int rmtree_at(int dfd, const char *name, dev_t dev)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode) && st.st_dev != dev)
        return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d;
        struct dirent *e;
        int rc = 0;
        if (fd < 0) {
            /* A read-only directory (a link-restored package) is made
             * writable first so that it can be emptied. */
            fchmodat(dfd, name, 0700, 0);
            fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return -errno;
        }
        if (!(st.st_mode & S_IWUSR))
            fchmod(fd, st.st_mode | S_IWUSR | S_IXUSR);
        d = fdopendir(fd);
        if (!d) {
            close(fd);
            return -errno;
        }
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            int r = rmtree_at(dirfd(d), e->d_name, dev);
            if (r < 0 && rc == 0)
                rc = r;
        }
        closedir(d);
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
            rc = -errno;
        return rc;
    }
    if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int farm_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return rmtree_at(AT_FDCWD, path, st.st_dev);
}

int farm_empty_dir(int dfd)
{
    /* Read with getdents64 on the caller's descriptor, from the start: an
     * empty directory (the common case) costs two system calls. */
    char buf[8192];
    struct stat st;
    int rc = 0;
    long n;
    if (fstat(dfd, &st) < 0 || lseek(dfd, 0, SEEK_SET) < 0)
        return -errno;
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        int removed = 0;
        for (long off = 0; off < n;) {
            struct linux_dirent64 {
                uint64_t d_ino;
                int64_t d_off;
                unsigned short d_reclen;
                unsigned char d_type;
                char d_name[];
            } *e = (void *)(buf + off);
            off += e->d_reclen;
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            int r = rmtree_at(dfd, e->d_name, st.st_dev);
            if (r < 0 && rc == 0)
                rc = r;
            removed = 1;
        }
        /* Entries went while we read: start over, so that none is missed
         * (the directory's offsets moved); stop when a pass finds only
         * what could not be removed. */
        if (removed && rc == 0 && lseek(dfd, 0, SEEK_SET) < 0)
            return -errno;
    }
    if (n < 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int copy_file(const char *src, const char *dst, mode_t mode, struct farm_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out;
    char buf[1 << 16];
    ssize_t n;
    if (in < 0)
        return farm_err_set(err, -errno, "%s: cannot read: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    if (out < 0) {
        int e = errno;
        close(in);
        return farm_err_set(err, -e, "%s: cannot create: %s", dst, strerror(e));
    }
    for (;;) {
        /* copy_file_range first: on filesystems that support it this shares
         * or copies blocks in the kernel. */
        ssize_t c = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (c > 0)
            continue;
        if (c == 0)
            break;
        while ((n = read(in, buf, sizeof buf)) > 0) {
            if (farm_write_all(out, buf, (size_t)n) < 0) {
                int e = errno;
                close(in);
                close(out);
                return farm_err_set(err, -e, "%s: write: %s", dst, strerror(e));
            }
        }
        break;
    }
    close(in);
    fchmod(out, mode & 07777);
    if (close(out) < 0)
        return farm_err_set(err, -errno, "%s: close: %s", dst, strerror(errno));
    return 0;
}

int farm_copytree(const char *src, const char *dst, int skip_git, struct farm_err *err)
{
    DIR *d;
    struct dirent *e;
    struct stat st;
    int rc = 0;
    if (lstat(src, &st) < 0)
        return farm_err_set(err, -errno, "%s: %s", src, strerror(errno));
    if (mkdir(dst, (st.st_mode & 0777) | 0700) < 0 && errno != EEXIST)
        return farm_err_set(err, -errno, "%s: cannot create: %s", dst, strerror(errno));
    if (!(d = opendir(src)))
        return farm_err_set(err, -errno, "%s: cannot read directory: %s", src, strerror(errno));
    while (rc == 0 && (e = readdir(d))) {
        char s[PATH_MAX], t[PATH_MAX];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (skip_git && !strcmp(e->d_name, ".git"))
            continue;
        if (snprintf(s, sizeof s, "%s/%s", src, e->d_name) >= (int)sizeof s ||
            snprintf(t, sizeof t, "%s/%s", dst, e->d_name) >= (int)sizeof t) {
            rc = farm_err_set(err, -ENAMETOOLONG, "%s/%s: path too long", src, e->d_name);
            break;
        }
        if (lstat(s, &st) < 0) {
            rc = farm_err_set(err, -errno, "%s: %s", s, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = farm_copytree(s, t, 0, err);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(s, target, sizeof target - 1);
            if (n < 0) {
                rc = farm_err_set(err, -errno, "%s: %s", s, strerror(errno));
            } else {
                target[n] = '\0';
                if (symlink(target, t) < 0)
                    rc = farm_err_set(err, -errno, "%s: cannot link: %s", t, strerror(errno));
            }
        } else if (S_ISREG(st.st_mode)) {
            rc = copy_file(s, t, st.st_mode, err);
        } /* sockets, fifos and devices are not part of a snapshot */
    }
    closedir(d);
    return rc;
}

int farm_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    size_t got = 0, cap;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    cap = (size_t)st.st_size + 1;
    if (!(buf = malloc(cap + 1))) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == cap) {
            char *p = realloc(buf, cap * 2 + 1);
            if (!p) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (len)
        *len = got;
    return 0;
}

int farm_write_file(const char *path, const void *data, size_t len, int sync)
{
    char tmp[PATH_MAX];
    int fd;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (farm_write_all(fd, data, len) < 0 || (sync && fsync(fd) < 0)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return -e;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

int farm_exe_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    char *slash;
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    return 0;
}

int farm_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int farm_json_write_line(int fd, const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    int rc;
    size_t n;
    if (!s)
        return -ENOMEM;
    n = strlen(s);
    s[n] = '\n'; /* overwrite the terminator: write n+1 bytes */
    rc = farm_write_all(fd, s, n + 1);
    free(s);
    return rc;
}

const char *farm_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "text";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "nothing (null)";
    }
}

const char *farm_signame(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGPIPE: return "SIGPIPE";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    default: return "a signal";
    }
}

size_t farm_utf8_next(const char *s, unsigned *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0], min;
    size_t n;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, c &= 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        c = (c << 6) | (u[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

char *farm_escape_text(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(4 * n + 1);
    if (!out)
        return NULL;
    while (*s) {
        unsigned cp;
        size_t len = farm_utf8_next(s, &cp);
        if (len == 0 || cp < 0x20 || cp == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[(unsigned char)*s >> 4];
            out[o++] = hex[(unsigned char)*s & 15];
            s++;
            continue;
        }
        memcpy(out + o, s, len);
        o += len;
        s += len;
    }
    out[o] = '\0';
    return out;
}

int farm_proc_ids(pid_t pid, pid_t *ppid, pid_t *sid)
{
    char path[64], buf[512], *rp;
    long ids[3];
    int fd;
    ssize_t len;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        return -EIO;
    buf[len] = '\0';
    /* After the command name (which may hold spaces and ')'): state ppid
     * pgrp session ... */
    if (!(rp = strrchr(buf, ')')) || sscanf(rp + 1, " %*c %ld %ld %ld", &ids[0], &ids[1], &ids[2]) != 3)
        return -EIO;
    if (ppid)
        *ppid = (pid_t)ids[0];
    if (sid)
        *sid = (pid_t)ids[2];
    return 0;
}

int farm_signal_session(pid_t sid, int sig)
{
    DIR *d;
    struct dirent *e;
    int count = 0;
    if (sid <= 1 || !(d = opendir("/proc")))
        return 0;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name), s;
        if (pid > 0 && farm_proc_ids(pid, NULL, &s) == 0 && s == sid && kill(pid, sig) == 0)
            count++;
    }
    closedir(d);
    return count;
}

int farm_artifact_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255 || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    while (*s) {
        unsigned cp;
        size_t len = farm_utf8_next(s, &cp);
        if (len == 0 || cp == '/' || cp < 0x20 || cp == 0x7f)
            return 0;
        s += len;
    }
    return 1;
}
