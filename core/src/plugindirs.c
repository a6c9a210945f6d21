/* Where plugins are found: the built-in directories, then $FARM_HOME/plugins.
 * Apart from loading (pluginload.c), so that what only looks for plugins
 * (the CLI) links no dlopen. */
#define _GNU_SOURCE
#include "farm/pluginload.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/util.h"

int farm__plugin_dirs(const char *home, char dirs[][PATH_MAX], int max)
{
    /* The built-in directories sit beside the running executable, which
     * does not move while it runs: they are looked up once per process
     * (farmd checks a plugin at every submit). */
    static char builtin[2][PATH_MAX];
    static int nbuiltin = -1;
    int n = 0;
    if (nbuiltin < 0) {
        char exe[PATH_MAX];
        nbuiltin = 0;
        if (farm_exe_dir(exe, sizeof exe) == 0) {
            static const char *const rel[] = {"../plugins", "../lib/farm/plugins"};
            for (int i = 0; i < 2; i++) {
                char d[PATH_MAX + 32];
                struct stat st;
                snprintf(d, sizeof d, "%s/%s", exe, rel[i]);
                if (stat(d, &st) == 0 && S_ISDIR(st.st_mode) && realpath(d, builtin[nbuiltin]))
                    nbuiltin++;
            }
        }
    }
    for (int i = 0; i < nbuiltin && n < max; i++)
        memcpy(dirs[n++], builtin[i], PATH_MAX);
    if (home && n < max) {
        snprintf(dirs[n], PATH_MAX, "%.*s/plugins", PATH_MAX - 16, home);
        n++;
    }
    return n;
}

static int is_path(const char *name)
{
    size_t n = strlen(name);
    return strchr(name, '/') != NULL || (n > 3 && !strcmp(name + n - 3, ".so"));
}

int farm__plugin_find(const char *name, const char *home, char *out, size_t len,
                      struct farm_err *err)
{
    char dirs[FARM_PLUGIN_MAX_DIRS][PATH_MAX];
    int n;
    if (is_path(name)) {
        if (!realpath(name, out))
            return farm_err_set(err, FARM_ENOPLUGIN, "%s: plugin file not found: %s", name,
                                strerror(errno));
        (void)len;
        return 0;
    }
    n = farm__plugin_dirs(home, dirs, FARM_PLUGIN_MAX_DIRS);
    for (int i = 0; i < n; i++) {
        if ((size_t)snprintf(out, len, "%.4000s/%.64s.so", dirs[i], name) < len && access(out, R_OK) == 0)
            return 0;
    }
    return farm_err_set(err, FARM_ENOPLUGIN, "no plugin named \"%s\" (see `farm plugins`)", name);
}
