/*
 * fuzz_base_response.c -- libFuzzer target: the base server's answer.
 *
 * The input is what the base sent in reply to a HEAD or GET, cut at the
 * buffer size base_read_head() reads. A head that base_response_parse()
 * accepts must give values that are safe to copy into our own response
 * and cache metadata: NUL-terminated, without CR, LF or other controls.
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *v, size_t room)
{
    size_t n = strnlen(v, room);

    if (n == room)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct base_response br;
    static struct object_meta m;
    static char block[OFFLOAD_META_SIZE];
    int rc;

    memset(&br, 0, sizeof(br));
    br.len = size > OFFLOAD_MAX_HEADER_BLOCK ? OFFLOAD_MAX_HEADER_BLOCK : size;
    memcpy(br.buf, data, br.len);
    br.buf[br.len] = '\0';
    rc = base_response_parse(&br);
    if (rc != 0)
        return 0;
    if (br.head_len == 0 || br.head_len > br.len || br.status < 100 ||
        br.status > 999)
        abort();
    check_value(br.etag, sizeof(br.etag));
    check_value(br.last_modified, sizeof(br.last_modified));
    check_value(br.content_type, sizeof(br.content_type));
    check_value(br.content_range, sizeof(br.content_range));
    check_value(br.location, sizeof(br.location));
    /* what the daemon stores from it must read back the same */
    meta_from_base(&m, "base.example/f", &br);
    if (m.length >= 0 && meta_encode(&m, block) == 0) {
        struct object_meta back;
        if (meta_decode(block, sizeof(block), &back) != 0 ||
            strcmp(back.etag, m.etag) != 0 ||
            strcmp(back.last_modified, m.last_modified) != 0 ||
            strcmp(back.content_type, m.content_type) != 0 ||
            back.length != m.length)
            abort();
    }
    return 0;
}
