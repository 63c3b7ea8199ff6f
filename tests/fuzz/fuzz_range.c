/*
 * fuzz_range.c -- libFuzzer target: Range and If-Range.
 *
 * Input: 8 bytes of body length (big-endian, reduced to 0..2^40), then
 * the Range value up to the first newline, then the If-Range value. The
 * ranges range_parse() returns must lie inside the body.
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char h[4096], ir[512];
    struct byte_range r[OFFLOAD_MAX_RANGES];
    uint64_t raw = 0;
    long long len;
    const uint8_t *nl;
    size_t hl, il, i;
    int nr = -1;
    enum range_result rc;

    if (size < 8)
        return 0;
    for (i = 0; i < 8; i++)
        raw = (raw << 8) | data[i];
    len = (long long)(raw & ((1ULL << 40) - 1));
    data += 8;
    size -= 8;
    nl = memchr(data, '\n', size);
    hl = nl ? (size_t)(nl - data) : size;
    if (hl >= sizeof(h))
        hl = sizeof(h) - 1;
    memcpy(h, data, hl);
    h[hl] = '\0';   /* an embedded NUL just ends the value early */
    rc = range_parse(h, len, r, OFFLOAD_MAX_RANGES, &nr);
    if (nr < 0 || nr > OFFLOAD_MAX_RANGES)
        abort();
    if (rc == RANGE_OK) {
        if (nr == 0)
            abort();
        for (i = 0; i < (size_t)nr; i++) {
            if (r[i].first < 0 || r[i].first > r[i].last || r[i].last >= len)
                abort();
        }
    } else if (nr != 0) {
        abort();
    }
    if (nl != NULL) {
        il = size - hl - 1;
        if (il >= sizeof(ir))
            il = sizeof(ir) - 1;
        memcpy(ir, nl + 1, il);
        ir[il] = '\0';
        if_range_matches(ir, "\"v1\"", "Sun, 06 Nov 1994 08:49:37 GMT");
        if_range_matches(ir, "W/\"v1\"", "");
        if_none_match_matches(ir, "\"v1\"");
        http_date_parse(ir);
    }
    return 0;
}
