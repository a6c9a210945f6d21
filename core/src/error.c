#include "farm/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *farm_strerror(int code)
{
    switch (code) {
#define XX(name, val, msg)                                                     \
    case val:                                                                  \
        return msg;
        FARM_ERRNO_MAP(XX)
#undef XX
    default:
        break;
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    return code == 0 ? "success" : "unknown error";
}

const char *farm_err_name(int code)
{
    switch (code) {
#define XX(name, val, msg)                                                     \
    case val:                                                                  \
        return "FARM_E" #name;
        FARM_ERRNO_MAP(XX)
#undef XX
    case -ENOENT: return "ENOENT";
    case -EEXIST: return "EEXIST";
    case -EINVAL: return "EINVAL";
    case -ENOMEM: return "ENOMEM";
    case -EACCES: return "EACCES";
    case -EPERM: return "EPERM";
    case -ENOSPC: return "ENOSPC";
    case -EIO: return "EIO";
    case -EAGAIN: return "EAGAIN";
    case -ECONNREFUSED: return "ECONNREFUSED";
    case -ENOTDIR: return "ENOTDIR";
    case -EISDIR: return "EISDIR";
    case -E2BIG: return "E2BIG";
    case -ENOEXEC: return "ENOEXEC";
    case -EROFS: return "EROFS";
    case -EBUSY: return "EBUSY";
    case 0: return "OK";
    default: return "EUNKNOWN";
    }
}

void farm_err_clear(struct farm_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int farm_err_setv(struct farm_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int farm_err_set(struct farm_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    farm_err_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void farm_err_prefix(struct farm_err *err, const char *fmt, ...)
{
    char pre[512], old[sizeof err->msg];
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n >= sizeof err->msg)
        n = sizeof err->msg - 1;
    memcpy(err->msg, pre, n);
    size_t rest = strnlen(old, sizeof old - 1);
    if (rest > sizeof err->msg - 1 - n)
        rest = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, old, rest);
    err->msg[n + rest] = '\0';
}
