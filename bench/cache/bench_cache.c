/*
 * farm-cache-bench: the driver behind bench/cache.sh.
 *
 *   gen-tree DIR              a deterministic ~150 MB, ~6,000-file tree shaped
 *                             like a Python site-packages
 *   gen-small DIR N           N small files, 100 per directory
 *   time REPS [--before CMD] -- CMD ARG...
 *                             runs CMD REPS times (CMD of --before, untimed,
 *                             via sh before each) and prints the median
 *                             wall time in seconds
 *   pack SRC OUT              farm_cache_pack (zstd level 3, all CPUs)
 *   store BASE KEY SRC        packs SRC and indexes it under KEY in a cache
 *                             at BASE/cache with db BASE/farm.db
 *   restore BASE KEY DEST copy|link
 *                             acquire + restore, as a worker does on a hit
 *   digest DIR [STATCACHE]    prints "<hex> files=N read=N"
 *   hit BASE SRC KEYDEST DEST copy|link
 *                             a task's whole hit path: digest SRC with the
 *                             cache's stat cache, derive the key, acquire,
 *                             restore into DEST
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache-internal.h"
#include "farm/cache.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
    /* xorshift64*: deterministic, so every run benchmarks the same tree. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "farm-cache-bench: %s: %s\n", what, detail);
    exit(2);
}

static void write_all(const char *path, const char *buf, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        die(path, strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, buf + done, n - done);
        if (k <= 0)
            die(path, strerror(errno));
        done += (size_t)k;
    }
    close(fd);
}

static const char *const words[] = {
    "def ", "return ", "self", ".", "(", ")", ":\n    ", "import ", "numpy", " as ", "np",
    "\n", "if ", "else", "for ", " in ", "range", "len", "x", "y", "_", "value", "=", " ",
    "class ", "Tensor", "None", "True", "raise ", "ValueError", "\"\"\"", "#", "array", ",",
};

static size_t text(char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *w = words[next() % (sizeof words / sizeof *words)];
        size_t l = strlen(w);
        if (i + l > n)
            l = n - i;
        memcpy(buf + i, w, l);
        i += l;
    }
    return n;
}

static void binary(char *buf, size_t n)
{
    /* Machine code compresses about 2-3x: half random, half repetitive. */
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = next();
        if ((i / 4096) % 2)
            r &= 0x00ff00ff00ff00ffULL;
        memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
    }
}

static int gen_tree(const char *dir)
{
    size_t cap = 8 << 20;
    char *buf = malloc(cap);
    if (!buf || farm__cache_mkdirs(dir, 0755) != 0)
        die(dir, "cannot create");
    uint64_t total = 0;
    int files = 0;
    char path[4096];
    for (int pkg = 0; pkg < 60; pkg++) {
        for (int sub = 0; sub < 4; sub++) {
            snprintf(path, sizeof path, "%s/pkg%02d/sub%d/__pycache__", dir, pkg, sub);
            farm__cache_mkdirs(path, 0755);
            for (int f = 0; f < 12; f++) {
                size_t n = 512 + (size_t)(next() % 9000);
                if (next() % 10 == 0)
                    n *= 4;
                snprintf(path, sizeof path, "%s/pkg%02d/sub%d/mod%02d.py", dir, pkg, sub, f);
                write_all(path, buf, text(buf, n), 0644);
                snprintf(path, sizeof path, "%s/pkg%02d/sub%d/__pycache__/mod%02d.pyc", dir, pkg,
                         sub, f);
                binary(buf, n / 2);
                write_all(path, buf, n / 2, 0644);
                total += n + n / 2;
                files += 2;
            }
        }
        /* Native extensions: where the bytes are. */
        for (int so = 0; so < 5; so++) {
            size_t n = 64 * 1024 + (size_t)(next() % (520 * 1024));
            if (so == 0 && pkg % 6 == 0)
                n = 3 << 20;
            snprintf(path, sizeof path, "%s/pkg%02d/_native%d.cpython-311-x86_64-linux-gnu.so",
                     dir, pkg, so);
            binary(buf, n);
            write_all(path, buf, n, 0755);
            total += n;
            files++;
        }
        snprintf(path, sizeof path, "%s/pkg%02d/METADATA", dir, pkg);
        write_all(path, buf, text(buf, 2000), 0644);
        files++;
    }
    snprintf(path, sizeof path, "%s/bin", dir);
    farm__cache_mkdirs(path, 0755);
    for (int i = 0; i < 20; i++) {
        char target[64];
        snprintf(target, sizeof target, "../pkg%02d/sub0/mod00.py", i);
        snprintf(path, sizeof path, "%s/bin/tool%02d", dir, i);
        unlink(path);
        if (symlink(target, path) != 0)
            die(path, strerror(errno));
    }
    printf("%d files, %.1f MB\n", files, (double)total / 1e6);
    free(buf);
    return 0;
}

static int gen_small(const char *dir, long n)
{
    char path[4096], buf[256];
    for (long i = 0; i < n; i++) {
        if (i % 100 == 0) {
            snprintf(path, sizeof path, "%s/d%04ld", dir, i / 100);
            if (farm__cache_mkdirs(path, 0755) != 0)
                die(path, "cannot create");
        }
        snprintf(path, sizeof path, "%s/d%04ld/f%03ld.py", dir, i / 100, i % 100);
        size_t len = 64 + (size_t)(next() % 160);
        write_all(path, buf, text(buf, len), 0644);
    }
    printf("%ld files\n", n);
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs argv (NULL-terminated) once; wall and CPU (user + sys of it and
 * the children it waited for, such as tar's zstd) in seconds. */
static void run_once(char **argv, double *wall, double *cpu)
{
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid)
        die("wait4", strerror(errno));
    *wall = now_s() - t0;
    *cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("command failed", argv[0]);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* time REPS [--before CMD] -- A ARG... [:: B ARG...]
 * Runs A and B alternately (so both see the same machine load), REPS times
 * each, CMD (via sh, untimed) before every run; prints "wallA cpuA [wallB
 * cpuB]", medians in seconds. */
static int time_cmd(int argc, char **argv)
{
    int reps = atoi(argv[0]);
    const char *before = NULL;
    int i = 1;
    if (i < argc && strcmp(argv[i], "--before") == 0 && i + 1 < argc) {
        before = argv[i + 1];
        i += 2;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (reps < 1 || reps > 100 || i >= argc)
        die("time", "usage: time REPS [--before CMD] -- A ARG... [:: B ARG...]");
    char **cmds[2] = {argv + i, NULL};
    int ncmd = 1;
    for (int k = i; k < argc; k++) {
        if (strcmp(argv[k], "::") == 0) {
            argv[k] = NULL;
            cmds[1] = argv + k + 1;
            ncmd = 2;
            break;
        }
    }
    double wall[2][100], cpu[2][100];
    for (int r = 0; r < reps; r++) {
        for (int c = 0; c < ncmd; c++) {
            /* Alternate which goes first, too. */
            int which = (r % 2) ? ncmd - 1 - c : c;
            if (before && system(before) != 0)
                die("time --before", before);
            run_once(cmds[which], &wall[which][r], &cpu[which][r]);
        }
    }
    for (int c = 0; c < ncmd; c++)
        printf("%s%.4f %.4f", c ? " " : "", median(wall[c], reps), median(cpu[c], reps));
    printf("\n");
    return 0;
}

static struct farm_cache *open_cache(const char *base)
{
    char dir[4096], db[4096];
    snprintf(dir, sizeof dir, "%s/cache", base);
    snprintf(db, sizeof db, "%s/farm.db", base);
    struct farm_cache_config cfg = {.cache_dir = dir, .db_path = db};
    struct farm_cache *c = NULL;
    struct farm_err err;
    if (farm_cache_open(&c, &cfg, &err) != 0)
        die("open", err.msg);
    return c;
}

static const char bench_inputs[] = "{\"build\":\"bench\",\"label\":\"bench:deps\"}";

static int restore(const char *base, const char *key, const char *dest, const char *mode)
{
    struct farm_cache *c = open_cache(base);
    struct farm_cache_lease *l = NULL;
    struct farm_err err;
    if (farm_cache_acquire(c, key, &l, &err) != 0)
        die("acquire", err.msg);
    if (farm_cache_lease_outcome(l) != FARM_CACHE_HIT)
        die("acquire", "not a hit");
    enum farm_cache_restore_mode m =
        strcmp(mode, "link") == 0 ? FARM_CACHE_RESTORE_LINK : FARM_CACHE_RESTORE_COPY;
    if (farm_cache_restore(c, l, dest, m, NULL, &err) != 0)
        die("restore", err.msg);
    farm_cache_release(c, l);
    farm_cache_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    struct farm_err err;
    farm_err_clear(&err);
    if (argc >= 3 && strcmp(argv[1], "gen-tree") == 0)
        return gen_tree(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "gen-small") == 0)
        return gen_small(argv[2], atol(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "time") == 0)
        return time_cmd(argc - 2, argv + 2);
    if (argc >= 4 && strcmp(argv[1], "pack") == 0) {
        char tmp[] = "/tmp/farm-cache-bench-XXXXXX";
        if (!mkdtemp(tmp))
            die("mkdtemp", strerror(errno));
        struct farm_cache *c = open_cache(tmp);
        unlink(argv[3]); /* like tar -cf, overwrite */
        if (farm_cache_pack(c, argv[2], argv[3], NULL, NULL, &err) != 0)
            die("pack", err.msg);
        farm_cache_close(c);
        farm__cache_rm_rf(tmp);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "store") == 0) {
        struct farm_cache *c = open_cache(argv[2]);
        char arch[4096];
        snprintf(arch, sizeof arch, "%s/store.tmp.tar.zst", argv[2]);
        unlink(arch);
        if (farm_cache_pack(c, argv[4], arch, NULL, NULL, &err) != 0)
            die("pack", err.msg);
        struct farm_cache_commit ci = {.builder = "bench", .build_ms = 60000,
                                       .inputs_json = bench_inputs};
        if (farm_cache_put_archive(c, argv[3], arch, &ci, &err) != 0)
            die("store", err.msg);
        unlink(arch);
        farm_cache_close(c);
        return 0;
    }
    if (argc >= 6 && strcmp(argv[1], "restore") == 0)
        return restore(argv[2], argv[3], argv[4], argv[5]);
    if (argc >= 3 && strcmp(argv[1], "digest") == 0) {
        char hex[FARM_CACHE_HEX_SIZE];
        struct farm_digest_stats st;
        if (farm_digest_dir(argv[2], argc >= 4 ? argv[3] : NULL, hex, NULL, &st, &err) != 0)
            die("digest", err.msg);
        printf("%s files=%llu read=%llu\n", hex, (unsigned long long)st.files,
                (unsigned long long)st.files_read);
        return 0;
    }
    if (argc >= 7 && strcmp(argv[1], "hit") == 0) {
        /* The worker's hit path for a task: digest, key, acquire, restore. */
        struct farm_cache *c = open_cache(argv[2]);
        char hex[FARM_CACHE_HEX_SIZE], src[FARM_CACHE_SOURCE_SIZE], key[FARM_CACHE_HEX_SIZE];
        if (farm_cache_digest_dir(c, argv[3], hex, NULL, NULL, &err) != 0)
            die("digest", err.msg);
        farm_cache_source_walk(hex, src);
        struct farm_cache_inputs in = {.source = src, .build = "sh deps/build.sh",
                                       .label = "bench:deps"};
        if (farm_cache_key(&in, key, NULL, &err) != 0)
            die("key", err.msg);
        farm_cache_close(c);
        if (strcmp(argv[4], "-") != 0) {
            /* Record the key for the script (setup run). */
            FILE *f = fopen(argv[4], "w");
            if (!f)
                die(argv[4], strerror(errno));
            fprintf(f, "%s\n", key);
            fclose(f);
            return 0;
        }
        return restore(argv[2], key, argv[5], argv[6]);
    }
    fprintf(stderr, "usage: see the comment at the top of bench/cache/bench_cache.c\n");
    return 2;
}
