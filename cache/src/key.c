/* Key derivation and the platform string. */
#define _GNU_SOURCE /* confstr's _CS_GNU_LIBC_VERSION */
#include "cache-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <jansson.h>

static char platform[256];
static pthread_once_t platform_once = PTHREAD_ONCE_INIT;

static void platform_init(void)
{
    struct utsname u;
    char libc[64] = "unknown";
    if (uname(&u) != 0) {
        snprintf(u.sysname, sizeof u.sysname, "unknown");
        snprintf(u.machine, sizeof u.machine, "unknown");
    }
#ifdef _CS_GNU_LIBC_VERSION
    /* "glibc 2.36" */
    char v[64];
    size_t n = confstr(_CS_GNU_LIBC_VERSION, v, sizeof v);
    if (n > 0 && n <= sizeof v) {
        snprintf(libc, sizeof libc, "%s", v);
        for (char *p = libc; *p; p++)
            if (*p == ' ')
                *p = '-';
    }
#endif
    snprintf(platform, sizeof platform, "%s %s %s", u.sysname, u.machine, libc);
}

const char *farm_cache_platform(void)
{
    pthread_once(&platform_once, platform_init);
    return platform;
}

int farm_cache_source_walk(const char *hex, char out[FARM_CACHE_SOURCE_SIZE])
{
    if (!farm__cache_is_hex(hex, 32))
        return -EINVAL;
    snprintf(out, FARM_CACHE_SOURCE_SIZE, "walk:%s", hex);
    return 0;
}

int farm_cache_source_git(const char *oid_hex, char out[FARM_CACHE_SOURCE_SIZE])
{
    if (!farm__cache_is_hex(oid_hex, 40) && !farm__cache_is_hex(oid_hex, 64))
        return -EINVAL;
    snprintf(out, FARM_CACHE_SOURCE_SIZE, "git:%s", oid_hex);
    return 0;
}

static void put_field(XXH3_state_t *s, const char *tag, const char *v)
{
    /* tag, then the value length-prefixed (8 bytes LE), or a 0xff.. marker
     * for "unset", so no two inputs serialise alike. */
    unsigned char len[8];
    uint64_t n = v ? strlen(v) : UINT64_MAX;
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    XXH3_128bits_update(s, tag, strlen(tag) + 1);
    XXH3_128bits_update(s, len, 8);
    if (v)
        XXH3_128bits_update(s, v, (size_t)n);
}

static int cmp_env(const void *a, const void *b)
{
    const struct farm_cache_env *x = *(const struct farm_cache_env *const *)a;
    const struct farm_cache_env *y = *(const struct farm_cache_env *const *)b;
    return strcmp(x->name, y->name);
}

int farm_cache_key(const struct farm_cache_inputs *in, char key[FARM_CACHE_HEX_SIZE],
                   char **inputs_json, struct farm_err *err)
{
    FARM_RETURN_ERROR_IF(!in || !in->source || !*in->source, err, -EINVAL,
                         "cache key: no source digest");
    FARM_RETURN_ERROR_IF(!in->build, err, -EINVAL, "cache key: no build command");
    FARM_RETURN_ERROR_IF(strncmp(in->source, "walk:", 5) != 0 && strncmp(in->source, "git:", 4),
                         err, -EINVAL,
                         "cache key: source digest \"%s\" is neither walk:<hex> nor git:<oid>",
                         in->source);
    const struct farm_cache_env **env = NULL;
    if (in->n_env) {
        env = malloc(in->n_env * sizeof *env);
        if (!env)
            return farm_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < in->n_env; i++) {
        if (!in->env[i].name || !*in->env[i].name || strchr(in->env[i].name, '=')) {
            free(env);
            return farm_err_set(err, -EINVAL, "cache key: env[%zu]: invalid variable name", i);
        }
        env[i] = &in->env[i];
    }
    if (in->n_env)
        qsort(env, in->n_env, sizeof *env, cmp_env);
    for (size_t i = 1; i < in->n_env; i++) {
        if (strcmp(env[i - 1]->name, env[i]->name) == 0) {
            int rc = farm_err_set(err, -EINVAL, "cache key: env variable %s named twice",
                                  env[i]->name);
            free(env);
            return rc;
        }
    }
    const char *plat = in->platform ? in->platform : farm_cache_platform();
    XXH3_state_t *s = XXH3_createState();
    json_t *j = inputs_json ? json_object() : NULL;
    json_t *je = inputs_json ? json_object() : NULL;
    if (!s || (inputs_json && (!j || !je))) {
        XXH3_freeState(s);
        json_decref(j);
        json_decref(je);
        free(env);
        return farm_err_set(err, -ENOMEM, "out of memory");
    }
    XXH3_128bits_reset(s);
    put_field(s, "format", FARM_CACHE_FORMAT_TAG);
    put_field(s, "source", in->source);
    put_field(s, "build", in->build);
    put_field(s, "platform", plat);
    for (size_t i = 0; i < in->n_env; i++) {
        put_field(s, "env", env[i]->name);
        put_field(s, "value", env[i]->value);
        if (je)
            json_object_set_new(je, env[i]->name,
                                env[i]->value ? json_stringn_nocheck(env[i]->value,
                                                                     strlen(env[i]->value))
                                              : json_null());
    }
    char hex[FARM_CACHE_HEX_SIZE];
    farm__cache_hex128(XXH3_128bits_digest(s), hex);
    XXH3_freeState(s);
    free(env);
    if (inputs_json) {
        json_object_set_new(j, "format", json_string(FARM_CACHE_FORMAT_TAG));
        json_object_set_new(j, "source", json_stringn_nocheck(in->source, strlen(in->source)));
        json_object_set_new(j, "build", json_stringn_nocheck(in->build, strlen(in->build)));
        json_object_set_new(j, "platform", json_stringn_nocheck(plat, strlen(plat)));
        json_object_set_new(j, "env", je);
        json_object_set_new(j, "label", in->label ? json_stringn_nocheck(in->label,
                                                                          strlen(in->label))
                                                  : json_null());
        char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        if (!txt)
            return farm_err_set(err, -ENOMEM, "out of memory");
        *inputs_json = txt;
    }
    memcpy(key, hex, FARM_CACHE_HEX_SIZE);
    return 0;
}

int farm_cache_parse_size(const char *text, uint64_t *bytes, struct farm_err *err)
{
    const char *p = text ? text : "";
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return farm_err_set(err, -EINVAL, "size \"%s\": too large", text);
        v = v * 10 + (uint64_t)(*p++ - '0');
        digits++;
    }
    int shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && (strcmp(p, "iB") == 0 || strcmp(p, "B") == 0 || strcmp(p, "b") == 0))
        p += strlen(p);
    else if (!shift && (strcmp(p, "B") == 0 || strcmp(p, "b") == 0))
        p++;
    if (!digits || *p)
        return farm_err_set(err, -EINVAL,
                            "size \"%s\": expected a number of bytes with an optional K, M, G "
                            "or T suffix, like 10G",
                            text ? text : "");
    if (shift && v > (UINT64_MAX >> shift))
        return farm_err_set(err, -EINVAL, "size \"%s\": too large", text);
    *bytes = v << shift;
    return 0;
}
