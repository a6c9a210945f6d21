/*
 * The dependency package of a task (farm.yaml's deps): key it, restore it
 * from the cache on a hit, build it once on a miss. Runs in the worker's
 * supervisor before the plugin starts; see docs/cache.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "farm/cache.h"
#include "farm/util.h"
#include "worker-internal.h"

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int fd, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    farm_write_all(fd, line, (size_t)n);
}

/* Runs the build command with sh -c in `cwd`, FARM_DEPS_OUT=out, output to
 * log_fd, in a process group of its own. Returns its exit status (128 +
 * signal when killed), or FARM_ECANCELLED when the worker was told to stop
 * (the build's group gets SIGTERM, then SIGKILL after grace_ms). */
static int run_build(const char *cmd, const char *cwd, const char *out, int log_fd,
                     int64_t grace_ms)
{
    pid_t pid = fork();
    int st;
    int64_t kill_at = -1;
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        setpgid(0, 0);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        /* Nothing of farm's reaches the build: not the event stream to
         * farmd (3), nor the pipe farm-prepare answers the worker on (4),
         * whose end a daemon the build leaves behind (a compiler cache
         * server) would otherwise hold open, keeping the task waiting. */
        if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
            for (int fd = 3; fd < 1024; fd++)
                close(fd);
        if (chdir(cwd) < 0)
            _exit(126);
        setenv("FARM_DEPS_OUT", out, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    for (int leader_done = 0;;) {
        struct timespec ts = {0, 20 * 1000000};
        if (!leader_done) {
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid)
                leader_done = 1;
            else if (w < 0 && errno != EINTR)
                return -errno;
        }
        /* Once stopped, the build is over only when its whole process
         * group is: what ignores SIGTERM is killed when the grace period
         * ends, even after the shell that started it is gone. */
        if (leader_done && (!farm__worker_stop || kill(-pid, 0) < 0))
            break;
        if (farm__worker_stop) {
            int64_t now = farm_mono_ms();
            if (kill_at < 0) {
                kill(-pid, SIGTERM);
                kill_at = now + grace_ms;
            } else if (now >= kill_at) {
                kill(-pid, SIGKILL);
                if (leader_done)
                    break;
            }
        }
        nanosleep(&ts, NULL);
    }
    if (farm__worker_stop)
        return FARM_ECANCELLED;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* FARM_EBUILD (with `err` set) when a build that ran removed its own output
 * directory, leaving nothing to hand the task; else 0. */
static int output_gone(const char *target, struct farm_err *err)
{
    struct stat st;
    if (stat(target, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    return farm_err_set(err, FARM_EBUILD,
                        "deps build failed (see the log): the build removed its output directory "
                        "$FARM_DEPS_OUT (%s)",
                        target);
}

/* The package built without the cache, when the cache's index cannot be
 * used (a full or read-only disk, say): the task still gets its package,
 * and the log says why nothing was looked up or stored. */
static int build_uncached(json_t *task, const char *build, const char *work, const char *target,
                          int log_fd, const char *why, int64_t *build_ms, struct farm_err *err)
{
    int64_t b0 = farm_mono_ms(), grace = json_integer_value(json_object_get(task, "grace_ms"));
    int status, rc;
    say(log_fd, "farm: deps: the cache cannot be used (%s); building the package without it",
        why);
    farm_rmtree(target);
    if ((rc = farm_mkdirs(target, 0755)) < 0)
        return farm_err_set(err, rc, "deps: cannot make %s: %s", target, strerror(-rc));
    status = run_build(build, work, target, log_fd, grace > 0 ? grace : 10000);
    *build_ms = farm_mono_ms() - b0;
    if (status == FARM_ECANCELLED)
        return farm_err_set(err, FARM_ECANCELLED, "deps: the build was stopped");
    if (status < 0)
        return farm_err_set(err, status, "deps: cannot run the build: %s", strerror(-status));
    if (status != 0) {
        say(log_fd, "farm: deps: the build exited with status %d", status);
        return farm_err_set(err, FARM_EBUILD,
                            "deps build failed (see the log): the build exited with status %d",
                            status);
    }
    if ((rc = output_gone(target, err)) < 0)
        return rc;
    say(log_fd, "farm: deps: built in %lld ms (not stored)", (long long)*build_ms);
    json_object_set_new(task, "deps_dir", json_string(target));
    return 0;
}

int farm__worker_deps(json_t *task, const char *home, int log_fd, int event_fd,
                      struct farm_err *err)
{
    json_t *deps = json_object_get(task, "deps"), *envnames, *ev;
    const char *work = jstr(task, "work_dir"), *target = jstr(task, "deps_target");
    const char *dir = jstr(deps, "dir"), *build = jstr(deps, "build");
    int link = jstr(deps, "restore") && !strcmp(jstr(deps, "restore"), "link");
    struct farm_cache *cache = NULL;
    struct farm_cache_lease *lease = NULL;
    struct farm_cache_config cfg = {0};
    struct farm_cache_env *env = NULL;
    struct farm_digest_stats stats = {0};
    char cache_dir[PATH_MAX], db[PATH_MAX], src[PATH_MAX * 2], hex[FARM_CACHE_SOURCE_SIZE];
    char source[FARM_CACHE_SOURCE_SIZE] = "", key[FARM_CACHE_HEX_SIZE] = "", label[PATH_MAX + 64];
    char *inputs = NULL, *manifest = NULL;
    size_t n_env = 0;
    int rc, hit = 0, attempts = 0;
    int64_t t0 = farm_mono_ms(), restore_ms = 0, build_ms = 0;
    long long source_task = -1;

    if (!dir || !build || !target || !work)
        return farm_err_set(err, FARM_EBADSPEC, "deps: dir and build are required");
    snprintf(cache_dir, sizeof cache_dir, "%.4000s/cache", home);
    /* The index has a database of its own: workers write it, and farmd
     * must never wait on a worker's lock to write the queue. */
    snprintf(db, sizeof db, "%.4000s/cache/index.db", home);
    cfg.cache_dir = cache_dir;
    cfg.db_path = db;
    /* A task told to stop while it waits for another task's build of the
     * same package stops waiting. */
    cfg.stop = &farm__worker_stop;
    if ((rc = farm_cache_open(&cache, &cfg, err)) < 0) {
        cache = NULL;
        goto uncached;
    }

    /* The source digest: the git tree OID of deps.dir for a commit (no file
     * is read), else a walk of the submission's snapshot, which every task
     * of the submission shares (its stat cache makes the others cheap). */
    if (jstr(task, "git_repo")) {
        if ((rc = farm_digest_git_tree(jstr(task, "git_repo"), jstr(task, "git_commit"), dir, hex,
                                       err)) < 0) {
            farm_err_prefix(err, "deps.dir %s: ", dir);
            goto out;
        }
        farm_cache_source_git(hex, source);
    } else {
        snprintf(src, sizeof src, "%s/%s", jstr(task, "src") ? jstr(task, "src") : work, dir);
        if ((rc = farm_cache_digest_dir(cache, src, hex, &manifest, &stats, err)) < 0) {
            farm_err_prefix(err, "deps.dir %s: ", dir);
            goto out;
        }
        farm_cache_source_walk(hex, source);
    }
    snprintf(src, sizeof src, "%s/%s", work, dir);

    /* The named environment values, as the build will see them. */
    envnames = json_object_get(deps, "env");
    env = calloc(json_array_size(envnames) + 1, sizeof *env);
    for (size_t i = 0; i < json_array_size(envnames); i++) {
        const char *name = json_string_value(json_array_get(envnames, i));
        env[n_env].name = name;
        env[n_env].value = getenv(name);
        n_env++;
    }
    snprintf(label, sizeof label, "%s:%s",
             jstr(task, "source_label") ? jstr(task, "source_label") : "", dir);
    {
        struct farm_cache_inputs in = {.source = source, .build = build, .env = env,
                                       .n_env = n_env, .label = label};
        if ((rc = farm_cache_key(&in, key, &inputs, err)) < 0)
            goto out;
    }
    if (manifest) {
        char mpath[PATH_MAX + 64];
        snprintf(mpath, sizeof mpath, "%s/deps-manifest.json", jstr(task, "run_dir"));
        farm_write_file(mpath, manifest, strlen(manifest), 0);
    }

    for (;;) {
        if ((rc = farm_cache_acquire(cache, key, &lease, err)) < 0) {
            lease = NULL;
            if (rc == FARM_EDB)
                goto uncached;
            if (farm__worker_stop) {
                farm_err_clear(err);
                rc = farm_err_set(err, FARM_ECANCELLED,
                                  "deps: stopped while waiting for another task's build of the "
                                  "package");
            }
            goto out;
        }
        if (farm_cache_lease_outcome(lease) == FARM_CACHE_HIT) {
            struct farm_cache_restore_info info;
            int64_t r0 = farm_mono_ms();
            farm_rmtree(target);
            rc = farm_cache_restore(cache, lease, target,
                                    link ? FARM_CACHE_RESTORE_LINK : FARM_CACHE_RESTORE_COPY, &info,
                                    err);
            if (rc == FARM_ECHECKSUM || rc == FARM_EBADARCHIVE) {
                /* Never restore a damaged package: the entry is gone now;
                 * build it again. */
                say(log_fd, "farm: deps: the cached package %s is damaged (%s); building it again",
                    key, err->msg);
                farm_cache_release(cache, lease);
                lease = NULL;
                farm_err_clear(err);
                if (++attempts > 2)
                    goto out;
                continue;
            }
            if (rc < 0)
                goto out;
            restore_ms = farm_mono_ms() - r0;
            build_ms = info.build_ms;
            hit = 1;
            source_task = info.builder[0] ? atoll(info.builder) : -1;
            say(log_fd, "farm: deps: %s restored from the cache in %lld ms (%s; built by task %s in %lld ms)",
                key, (long long)restore_ms, link ? "hard links" : "copy", info.builder[0] ? info.builder : "?",
                (long long)info.build_ms);
            break;
        }
        /* A miss: we build, the others wait for us. */
        {
            struct farm_cache_commit commit = {0};
            int64_t b0 = farm_mono_ms();
            int status;
            char builder[32];
            farm_rmtree(target);
            /* The source directory is digested before and after the build
             * (for a commit too: its key is the tree, but the build reads
             * the checkout), so that a build that changes its own input
             * stores nothing. */
            if ((rc = farm_cache_build_begin(cache, lease, src, target, err)) < 0)
                goto out;
            say(log_fd, "farm: deps: %s not in the cache; building it: %s", key, build);
            status = run_build(build, work, target, log_fd,
                               json_integer_value(json_object_get(task, "grace_ms")) > 0
                                   ? json_integer_value(json_object_get(task, "grace_ms"))
                                   : 10000);
            build_ms = farm_mono_ms() - b0;
            if (status == FARM_ECANCELLED) {
                rc = farm_err_set(err, FARM_ECANCELLED, "deps: the build was stopped");
                goto out;
            }
            snprintf(builder, sizeof builder, "%s", jstr(task, "id_text") ? jstr(task, "id_text") : "0");
            commit.exit_status = status;
            commit.build_ms = build_ms;
            commit.builder = builder;
            commit.inputs_json = inputs;
            commit.manifest_json = manifest;
            rc = farm_cache_build_commit(cache, lease, &commit, err);
            if (rc == FARM_EBUILD) {
                say(log_fd, "farm: deps: %s", err->msg);
                farm_err_prefix(err, "deps build failed (see the log): ");
                goto out;
            }
            if (rc < 0) {
                if ((rc = output_gone(target, err)) < 0)
                    goto out;
                /* The package is in place; only storing it failed. */
                say(log_fd, "farm: deps: built, but not stored in the cache: %s", err->msg);
                farm_err_clear(err);
                rc = 0;
            } else {
                say(log_fd, "farm: deps: built in %lld ms and stored as %s", (long long)build_ms, key);
            }
            source_task = -1;
            break;
        }
    }
    json_object_set_new(task, "deps_dir", json_string(target));
    rc = 0;
    goto out;
uncached:
    /* The index cannot be opened or written: the package is built without
     * the cache (err says why). */
    {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        farm_err_clear(err);
        rc = build_uncached(task, build, work, target, log_fd, why, &build_ms, err);
    }
out:
    ev = json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:I,s:I}", "ev", "deps", "key", key,
                   "hit", hit, "source", source, "restore_ms", (json_int_t)restore_ms, "build_ms",
                   (json_int_t)build_ms, "files_read", (json_int_t)stats.files_read, "total_ms",
                   (json_int_t)(farm_mono_ms() - t0));
    json_object_set_new(ev, "source_task", source_task > 0 ? json_integer(source_task) : json_null());
    json_object_set_new(ev, "restore", json_string(link ? "link" : "copy"));
    if (inputs)
        json_object_set_new(ev, "inputs", json_loads(inputs, 0, NULL));
    if (rc < 0)
        json_object_set_new(ev, "error", json_string(err->msg));
    if (event_fd >= 0 && farm__worker_event_fd_ok)
        farm_json_write_line(event_fd, ev);
    json_decref(ev);
    if (lease)
        farm_cache_release(cache, lease);
    farm_cache_close(cache);
    free(env);
    free(inputs);
    free(manifest);
    return rc;
}
