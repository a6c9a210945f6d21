/*
 * Small shared helpers for core and cli: FARM_HOME, time, files, directory
 * trees, JSON lines. Every function may be called from any thread unless it
 * says otherwise; none keeps global state.
 */
#ifndef FARM_UTIL_H
#define FARM_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "farm/error.h"

/* The protocol version spoken on farm.sock. */
#define FARM_PROTO_VERSION 1
/* The largest request line farmd accepts (bytes, newline excluded). */
#define FARM_MAX_REQUEST (4u << 20)

/* Resolves $FARM_HOME (default ${XDG_DATA_HOME:-$HOME/.local/share}/farm)
 * into `buf`. Returns 0, or -ENAMETOOLONG / -ENOENT (no HOME). */
int farm_home_path(char *buf, size_t len);

/* Creates `home` (and parents) with mode 0700 if missing, and checks that it
 * is a directory owned by us. */
int farm_home_ensure(const char *home, struct farm_err *err);

/* Milliseconds since the Unix epoch (wall clock) / monotonic. */
int64_t farm_now_ms(void);
int64_t farm_mono_ms(void);

/* Formats `ms` since the epoch as RFC 3339 UTC with milliseconds into buf
 * (at least 32 bytes). Returns buf. */
char *farm_rfc3339(int64_t ms, char *buf, size_t len);

/* mkdir -p with `mode`. */
int farm_mkdirs(const char *path, unsigned mode);

/* rm -rf; a missing path is not an error. Never follows symlinks. */
int farm_rmtree(const char *path);

/* Removes everything inside the directory open as `dfd` (symlinks are
 * removed, never followed); the directory itself stays. 0 or -errno (the
 * first error; the rest is still removed). */
int farm_empty_dir(int dfd);

/* Copies the tree at `src` into `dst` (created), keeping modes, exec bits
 * and symlinks (copied as links, never followed). `skip_git` leaves out a
 * top-level .git. Returns 0 or a negative code with err set. */
int farm_copytree(const char *src, const char *dst, int skip_git, struct farm_err *err);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
int farm_read_file(const char *path, char **out, size_t *len);

/* Writes `len` bytes to `path` atomically (temp file, fsync when `sync`,
 * rename). */
int farm_write_file(const char *path, const void *data, size_t len, int sync);

/* The directory of the running executable (from /proc/self/exe). */
int farm_exe_dir(char *buf, size_t len);

/* The name of a signal that ends a crashed process ("SIGSEGV"), or "a
 * signal". Static string. */
const char *farm_signame(int sig);

/* Writes all of buf to fd, retrying on EINTR and short writes. */
int farm_write_all(int fd, const void *buf, size_t len);

/* What a JSON value is, for messages: "a mapping", "a list", "text", "an
 * integer", "a number", "a boolean", "nothing (null)". Static string. */
const char *farm_json_kind(const json_t *v);

/* Dumps `j` compactly followed by '\n' and writes it to fd (one JSON line). */
int farm_json_write_line(int fd, const json_t *j);

/* The parent and the session of process `pid`, from /proc/PID/stat (either
 * pointer may be NULL). 0, or -errno when the process is gone. */
int farm_proc_ids(pid_t pid, pid_t *ppid, pid_t *sid);

/* Sends `sig` to every process of session `sid` (found through /proc), and
 * returns how many it signalled. A task's processes may sit in process
 * groups of their own, but they stay in the worker's session unless they
 * call setsid(). */
int farm_signal_session(pid_t sid, int sig);

/* Whether `s` may name an artifact: 1 to 255 bytes of UTF-8, not "." or
 * "..", without '/' or control characters (it travels in JSON, is a file
 * in the artifacts directory and a line of a listing). */
int farm_artifact_name_ok(const char *s);

/* The UTF-8 sequence at s (not at its terminating NUL): returns its length
 * (1 to 4) and sets *cp to its code point, or returns 0 when the byte at s
 * does not start a valid sequence (overlong forms, surrogates and values
 * above U+10FFFF are invalid). */
size_t farm_utf8_next(const char *s, unsigned *cp);

/* `s` for a message: bytes that are not UTF-8 and control characters
 * written as \xHH. The caller frees the result (NULL: out of memory). */
char *farm_escape_text(const char *s);

#endif
