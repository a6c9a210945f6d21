#define _GNU_SOURCE
#include "farm/pluginload.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm/util.h"

int farm__plugin_load(const char *path, const char *home, const struct farm_plugin **out,
                      struct farm_err *err)
{
    struct stat st;
    void *h;
    farm_plugin_entry_fn entry;
    const struct farm_plugin *p;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    size_t need = offsetof(struct farm_plugin, run) + sizeof(p->run);

    if (stat(path, &st) < 0)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: cannot open plugin: %s", path,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: not a regular file", path);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: file is writable by %s (mode %03o); chmod go-w it",
                            path, (st.st_mode & S_IWOTH) ? "others" : "group",
                            (unsigned)(st.st_mode & 0777));
    if (blen < 4 || strcmp(base + blen - 3, ".so") != 0)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: a plugin file name ends in .so",
                            path);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: cannot load: %s", path,
                            dlerror());
    *(void **)(&entry) = dlsym(h, FARM_PLUGIN_SYMBOL);
    if (!entry)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: no entry symbol %s (use FARM_PLUGIN_DEFINE)", path,
                            FARM_PLUGIN_SYMBOL);
    p = entry();
    if (!p)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: %s() returned NULL", path,
                            FARM_PLUGIN_SYMBOL);
    if (p->abi_major != FARM_PLUGIN_ABI_MAJOR)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: plugin ABI %u.%u, this farm speaks ABI %d.x (rebuild "
                            "the plugin against this farm's SDK)",
                            path, p->abi_major, p->abi_minor, FARM_PLUGIN_ABI_MAJOR);
    if (p->size < need)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: descriptor is %u bytes, shorter than the %zu that "
                            "reach run",
                            path, p->size, need);
    if (!p->name || !p->run)
        return farm_err_set(err, FARM_EBADPLUGIN, "%s: refused: descriptor lacks %s", path,
                            !p->name ? "a name" : "run");
    {
        /* The name's form (docs/plugins.md): [a-z0-9_-], 1 to 64. */
        size_t nl = strlen(p->name);
        if (nl == 0 || nl > 64 || strspn(p->name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != nl)
            return farm_err_set(err, FARM_EBADPLUGIN,
                                "%s: refused: plugin name \"%.80s%s\" is not 1 to 64 characters "
                                "of a-z, 0-9, _ and -",
                                path, p->name, nl > 80 ? "..." : "");
    }
    {
        int rc = farm__params_table_check(p, path, err);
        if (rc < 0)
            return rc;
    }
    if (strlen(p->name) != blen - 3 || strncmp(p->name, base, blen - 3) != 0)
        return farm_err_set(err, FARM_EBADPLUGIN,
                            "%s: refused: plugin calls itself \"%s\" but the file is named "
                            "%.*s.so (they must match)",
                            path, p->name, (int)(blen - 3), base);
    /* A plugin must not pose as one earlier in the search path (the
     * built-in directories, then $FARM_HOME/plugins): a file named like a
     * plugin of an earlier directory is refused, and a file given by path
     * outside the search path may take no name the search path has. (A
     * later one could never be reached by name either.) */
    {
        char dirs[FARM_PLUGIN_MAX_DIRS][PATH_MAX], real[PATH_MAX], dir[PATH_MAX];
        int n = farm__plugin_dirs(home, dirs, FARM_PLUGIN_MAX_DIRS);
        int nbuiltin = home ? n - 1 : n; /* $FARM_HOME/plugins comes last */
        if (realpath(path, real)) {
            int mine = n;
            char *slash;
            snprintf(dir, sizeof dir, "%s", real);
            if ((slash = strrchr(dir, '/')))
                *slash = '\0';
            for (int i = 0; i < n; i++) {
                char rdir[PATH_MAX];
                if (realpath(dirs[i], rdir) && !strcmp(rdir, dir)) {
                    mine = i;
                    break;
                }
            }
            for (int i = 0; i < mine; i++) {
                char other[PATH_MAX + 80], oreal[PATH_MAX];
                snprintf(other, sizeof other, "%.4000s/%.64s.so", dirs[i], p->name);
                if (realpath(other, oreal) && strcmp(oreal, real) != 0)
                    return farm_err_set(err, FARM_EBADPLUGIN,
                                        "%s: refused: name \"%s\" clashes with the %s plugin %s",
                                        path, p->name, i < nbuiltin ? "built-in" : "installed",
                                        oreal);
            }
        }
    }
    *out = p;
    return 0;
}
