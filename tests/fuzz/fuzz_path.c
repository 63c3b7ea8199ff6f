/*
 * fuzz_path.c -- libFuzzer target: path_sanitize(), the one function that
 * decides whether a request path is safe, and the cache file names made
 * from its result.
 *
 * Properties checked on every accepted path: it starts with '/', has no
 * empty segment, no segment that decodes to "." or "..", no control
 * character as such, no backslash, no escaped NUL, '/' or '\\'; and the cache names
 * built from it stay directly inside the cache directory's fan-out.
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode one segment [s, e) into out; returns its decoded length. */
static size_t decode_segment(const char *s, const char *e, char *out,
                             size_t outsz)
{
    size_t n = 0;

    while (s < e) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int hi = hex_value((unsigned char)s[1]);
            int lo = hex_value((unsigned char)s[2]);
            if (hi < 0 || lo < 0)
                abort();    /* a bad escape was let through */
            c = hi * 16 + lo;
            s += 3;
        } else {
            s++;
        }
        /* escaped controls other than NUL are allowed by the contract:
         * they stay escaped towards the base and never split a path */
        if (c == 0 || c == '/' || c == '\\')
            abort();
        if (n < outsz)
            out[n] = (char)c;
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct object obj;
    static int once;
    char target[OFFLOAD_MAX_PATH + 2];
    char out[OFFLOAD_MAX_PATH + 1];
    char dec[4];
    const char *p, *r;
    size_t n = size < sizeof(target) - 1 ? size : sizeof(target) - 1;
    size_t cl;

    if (!once) {
        once = 1;
        settings_defaults(&g_cfg);
        strcpy(g_cfg.base_authority, "base.example:8080");
        strcpy(g_cfg.cache_dir, "/var/cache/offload");
    }
    memcpy(target, data, n);
    target[n] = '\0';
    r = path_sanitize(target, out, sizeof(out));
    if (r == NULL)
        return 0;
    if (r != out || out[0] != '/' || strlen(out) >= sizeof(out))
        abort();
    /* sanitized in place (as request_check() does), the same result */
    if (path_sanitize(target, target, sizeof(out)) != target ||
        strcmp(target, out) != 0)
        abort();
    for (p = out; *p; ) {
        const char *s = ++p, *e = strchr(s, '/');
        size_t dl;

        if (e == NULL)
            e = s + strlen(s);
        if (e == s && *e == '/')
            abort();    /* empty segment: "//" */
        for (const char *q = s; q < e; q++) {
            unsigned char c = (unsigned char)*q;
            if (c <= 0x20 || c == 0x7f || c == '?' || c == '#' || c == '\\')
                abort();
        }
        dl = decode_segment(s, e, dec, sizeof(dec));
        if ((dl == 1 && dec[0] == '.') ||
            (dl == 2 && dec[0] == '.' && dec[1] == '.'))
            abort();
        p = e;
    }
    /* the file names are the hash only, inside CACHEDIR/xx/yy/ */
    if (cache_object_init(&obj, "", out) != 0)
        return 0;
    cl = strlen(g_cfg.cache_dir);
    if (strncmp(obj.path, g_cfg.cache_dir, cl) != 0 ||
        strlen(obj.path) != cl + 1 + 2 + 1 + 2 + 1 + HEX_KEY_LEN ||
        strchr(obj.path + cl, '.') != NULL)
        abort();
    return 0;
}
