/* farm-worker internals shared between its source files. */
#ifndef FARM_WORKER_INTERNAL_H
#define FARM_WORKER_INTERNAL_H

#include <jansson.h>
#include <signal.h>

#include "farm/error.h"
#include "farm/plugin.h"

/* Prepares the run directory before the plugin starts: copies the source
 * snapshot into work_dir, and restores (or builds) the dependency package
 * into deps_dir. Build output goes to log_fd; deps events to event_fd (or
 * nowhere when event_fd is not open). Sets task["deps_dir"] on success. */
int farm__worker_prepare(json_t *task, const char *home, int log_fd, int event_fd,
                         struct farm_err *err);

/* Restores or builds the task's dependency package (task["deps"]) into
 * task["deps_target"] through the cache; sets task["deps_dir"]. Emits one
 * "deps" event with the key, hit, timings and inputs. */
int farm__worker_deps(json_t *task, const char *home, int log_fd, int event_fd,
                      struct farm_err *err);

/* `farm-prepare --cache VERB ...` (argv starts at VERB). */
int farm__worker_cache_cmd(int argc, char **argv);

/* Set (from a signal handler) when the supervisor is asked to stop:
 * preparation steps that take long (a deps build) give up early. */
extern volatile sig_atomic_t farm__worker_stop;
extern int farm__worker_event_fd_ok;

/* `--serve` (the fork server) and `--run RUN_DIR`, in farm-worker and in
 * farm-plugin-host alike. */
int farm__worker_serve(void);
int farm__worker_run(const char *run_dir);

/* The plugin process of a task (pluginhost.c): loads the plugin, calls
 * run(), writes the result line to `result_fd`. Never returns. In
 * farm-plugin-host the supervisor forks it directly; farm-worker, which is
 * static, starts farm-plugin-host --task instead. */
void farm__plugin_main(json_t *task, const char *home, int result_fd);


#endif
