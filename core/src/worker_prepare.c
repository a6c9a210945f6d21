#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "farm/gitintake.h"
#include "farm/util.h"
#include "worker-internal.h"

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int farm__worker_prepare(json_t *task, const char *home, int log_fd, int event_fd,
                         struct farm_err *err)
{
    const char *src = jstr(task, "src"), *work = jstr(task, "work_dir");
    int rc;
    if (jstr(task, "git_repo") && jstr(task, "git_commit") && work) {
        /* The commit's tree, never the repository's work tree: what was
         * committed is what is tested. */
        farm_rmtree(work);
        if ((rc = farm__git_checkout(jstr(task, "git_repo"), jstr(task, "git_commit"), work,
                                     log_fd, err)) < 0) {
            farm_err_prefix(err, "checking out %.12s from %s: ", jstr(task, "git_commit"),
                            jstr(task, "git_repo"));
            return rc;
        }
    } else if (src && work) {
        /* A fresh copy for every attempt: a retry never sees what an earlier
         * attempt left in its tree. */
        farm_rmtree(work);
        if ((rc = farm_copytree(src, work, 1, err)) < 0) {
            farm_err_prefix(err, "preparing the source snapshot: ");
            return rc;
        }
    } else if (work) {
        struct stat st;
        if (stat(work, &st) < 0 || !S_ISDIR(st.st_mode))
            return farm_err_set(err, -ENOENT, "work directory %s is gone", work);
    }
    if (json_is_object(json_object_get(task, "deps")))
        return farm__worker_deps(task, home, log_fd, event_fd, err);
    return 0;
}
