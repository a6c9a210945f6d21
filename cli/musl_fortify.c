/*
 * The checking functions of glibc's _FORTIFY_SOURCE that Debian's static
 * jansson and libyaml call, for the farm command linked against musl (see
 * cli/CMakeLists.txt). Each checks what glibc's checks, the size of the
 * destination the compiler knew, and ends the process the same way when it
 * would be overrun.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, va_list ap);
int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, ...);
int __sprintf_chk(char *s, int flag, size_t slen, const char *fmt, ...);
char *__strncpy_chk(char *dst, const char *src, size_t n, size_t dstlen);

static _Noreturn void overflow(void)
{
    static const char msg[] = "*** buffer overflow detected ***: terminated\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    abort();
}

int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, va_list ap)
{
    (void)flag;
    if (slen < maxlen)
        overflow();
    return vsnprintf(s, maxlen, fmt, ap);
}

int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = __vsnprintf_chk(s, maxlen, flag, slen, fmt, ap);
    va_end(ap);
    return n;
}

int __sprintf_chk(char *s, int flag, size_t slen, const char *fmt, ...)
{
    va_list ap;
    int n;
    (void)flag;
    if (slen == 0)
        overflow();
    va_start(ap, fmt);
    n = vsnprintf(s, slen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= slen)
        overflow();
    return n;
}

char *__strncpy_chk(char *dst, const char *src, size_t n, size_t dstlen)
{
    if (dstlen < n)
        overflow();
    return strncpy(dst, src, n);
}
