/*
 * farm error codes and the error carrier.
 *
 * Every farm function that can fail returns an int: 0, or a negative code.
 * POSIX errors are -errno (so libuv's codes pass straight through); farm's
 * own codes live in -5000..-5999 and come from FARM_ERRNO_MAP below, which
 * also makes farm_strerror() and farm_err_name().
 */
#ifndef FARM_ERROR_H
#define FARM_ERROR_H

#include <stdarg.h>

#define FARM_ERRNO_MAP(XX)                                                   \
    XX(BADREQ, -5001, "malformed request")                                   \
    XX(BADVER, -5002, "unsupported protocol version")                        \
    XX(BADOP, -5003, "unknown operation")                                    \
    XX(TOOBIG, -5004, "request too large")                                   \
    XX(NOTASK, -5005, "no such task")                                        \
    XX(BADSPEC, -5006, "invalid spec file")                                  \
    XX(BADPARAM, -5007, "invalid parameter")                                 \
    XX(NOPLUGIN, -5008, "no such plugin")                                    \
    XX(BADPLUGIN, -5009, "plugin refused")                                   \
    XX(STATE, -5010, "operation not allowed in this state")                  \
    XX(DB, -5011, "database error")                                          \
    XX(CYCLE, -5012, "dependency cycle")                                     \
    XX(PERM, -5013, "permission denied")                                     \
    XX(UNREACH, -5014, "farmd unreachable")                                  \
    XX(TIMEOUT, -5015, "timed out")                                          \
    XX(CANCELLED, -5016, "cancelled")                                        \
    XX(CRASHED, -5017, "plugin crashed")                                     \
    XX(BADARCHIVE, -5018, "unsafe or damaged archive")                       \
    XX(CHECKSUM, -5019, "checksum mismatch")                                 \
    XX(BUILD, -5020, "dependency build failed")                              \
    XX(GIT, -5021, "git error")                                              \
    XX(NOTFOUND, -5022, "not found")                                         \
    XX(BADMODEL, -5023, "invalid model description")                         \
    XX(BADDATA, -5024, "invalid data")                                       \
    XX(SHUTDOWN, -5025, "farmd is shutting down")                            \
    XX(NUMERIC, -5026, "numeric failure")

enum farm_errno {
#define FARM__ERR_ENUM(name, val, msg) FARM_E##name = (val),
    FARM_ERRNO_MAP(FARM__ERR_ENUM)
#undef FARM__ERR_ENUM
};

/* A short English description of `code` (farm's, or -errno). Static string. */
const char *farm_strerror(int code);

/* The symbolic name of `code`: "FARM_EBADREQ", "ENOENT", ... Static string. */
const char *farm_err_name(int code);

/* An error with a message, passed down where the message matters. */
struct farm_err {
    int code;
    char msg[1024];
};

/* Clears `err` (code 0, empty message). NULL is allowed. */
void farm_err_clear(struct farm_err *err);

/* Sets `err` to `code` and a printf-formatted message; returns `code`, so an
 * error path can be `return farm_err_set(err, FARM_EBADSPEC, "...")`.
 * With err NULL it only returns the code. */
int farm_err_set(struct farm_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int farm_err_setv(struct farm_err *err, int code, const char *fmt, va_list ap);

/* Prefixes the message already in `err` with a printf-formatted context. */
void farm_err_prefix(struct farm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps error paths to one line: returns `code` with a message when `cond`. */
#define FARM_RETURN_ERROR_IF(cond, err, code, ...)                             \
    do {                                                                       \
        if (cond)                                                              \
            return farm_err_set((err), (code), __VA_ARGS__);                   \
    } while (0)

#endif
