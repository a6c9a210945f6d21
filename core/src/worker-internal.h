/* farm-worker internals shared between its source files. */
#ifndef FARM_WORKER_INTERNAL_H
#define FARM_WORKER_INTERNAL_H

#include <jansson.h>

#include "farm/error.h"
#include "farm/plugin.h"

/* Prepares the run directory before the plugin starts: copies the source
 * snapshot into work_dir, and restores (or builds) the dependency package
 * into deps_dir. Build output goes to log_fd; deps events to event_fd (or
 * nowhere when event_fd is not open). Sets task["deps_dir"] on success. */
int farm__worker_prepare(json_t *task, const char *home, int log_fd, int event_fd,
                         struct farm_err *err);

/* The host table handed to plugins. */
const struct farm_host *farm__worker_host(void);

#endif
