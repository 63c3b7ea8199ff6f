/*
 * fuzz_config.c -- libFuzzer target: the config file and the setting
 * parsers behind it (BaseURL, Listen, TrustedProxy, numbers, On/Off).
 *
 * config_parse_file() reads a file by name; the input is written to an
 * anonymous memory file (memfd_create) and read through /proc/self/fd,
 * so nothing touches the disk. The error message must be a terminated
 * string of the buffer's size.
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct settings c;
    static int fd = -1;
    static char path[64];
    char err[512];
    int rc;

    if (size > 64 * 1024)
        return 0;
    if (fd < 0) {
        fd = memfd_create("fuzz_config", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    settings_defaults(&c);
    memset(err, 'x', sizeof(err));
    rc = config_parse_file(path, &c, err, sizeof(err));
    if (rc != 0 && rc != -1)
        abort();
    if (rc == -1 && memchr(err, '\0', sizeof(err)) == NULL)
        abort();
    if (c.nlisten > OFFLOAD_MAX_LISTEN || c.ntrusted > OFFLOAD_MAX_TRUSTED_PROXIES)
        abort();
    for (int i = 0; i < c.ntrusted; i++) {
        int max = c.trusted[i].family == AF_INET ? 32 : 128;
        if (c.trusted[i].bits < 0 || c.trusted[i].bits > max)
            abort();
        cidr_contains(&c.trusted[i], "192.0.2.1");
        cidr_contains(&c.trusted[i], "2001:db8::1");
    }
    if (rc == 0 && c.base_url[0]) {
        /* the Host header and the request line we send to the base
         * stay one line, one target: no blank or control character */
        for (const char *p = c.base_authority; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == 0x7f)
                abort();
        for (const char *p = c.base_prefix; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == 0x7f)
                abort();
    }
    return 0;
}
