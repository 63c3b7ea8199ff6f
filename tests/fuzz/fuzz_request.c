/*
 * fuzz_request.c -- libFuzzer target: a client's request head.
 *
 * The input is what a client sent on a fresh connection, cut at the
 * buffer size request_read() allows. It drives request_parse() and, for
 * a parsed request, what handle_request() derives from it without I/O:
 * the client address (TrustedProxy and X-Forwarded-For), the path
 * (path_sanitize), Range, If-Range and If-None-Match.
 *
 *     clang -fsanitize=fuzzer,address,undefined -I../.. fuzz_request.c
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *v)
{
    /* a parsed field value never holds CR, LF or NUL-cut garbage */
    if (v != NULL && strpbrk(v, "\r\n") != NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct request rq;
    static int once;
    char path[OFFLOAD_MAX_PATH + 1];
    int rc;

    if (!once) {
        once = 1;
        settings_defaults(&g_cfg);
        strcpy(g_cfg.base_authority, "base.example:8080");
        cidr_parse("127.0.0.0/8", &g_cfg.trusted[0]);
        g_cfg.ntrusted = 1;
    }
    memset(&rq, 0, sizeof(rq));
    rq.len = size > OFFLOAD_MAX_HEADER_BLOCK ? OFFLOAD_MAX_HEADER_BLOCK : size;
    memcpy(rq.buf, data, rq.len);
    rq.buf[rq.len] = '\0';
    rc = request_parse(&rq);
    if (rc != PARSE_OK)
        return 0;
    if (rq.head_len == 0 || rq.head_len > rq.len || rq.method == METHOD_NONE ||
        rq.target == NULL)
        abort();
    check_value(rq.range);
    check_value(rq.if_range);
    check_value(rq.if_none_match);
    check_value(rq.if_match);
    check_value(rq.if_modified_since);
    check_value(rq.if_unmodified_since);
    check_value(rq.host);
    check_value(rq.user_agent);
    check_value(rq.x_forwarded_for);
    request_client(&rq, "127.0.0.1");
    if (strpbrk(rq.client, " \t\r\n\"") != NULL)
        abort();
    if (rq.host != NULL && !authority_valid(rq.host, strlen(rq.host)))
        abort();    /* request_parse() refuses an invalid Host */
    if (rq.target[0] == '/' && strlen(rq.target) <= OFFLOAD_MAX_PATH)
        path_sanitize(rq.target, path, sizeof(path));
    if (rq.range != NULL)
        range_is_resume(rq.range);
    if (rq.range != NULL) {
        struct byte_range r[OFFLOAD_MAX_RANGES];
        int nr;
        range_parse(rq.range, 1000, r, OFFLOAD_MAX_RANGES, &nr);
    }
    if (rq.if_range != NULL)
        if_range_matches(rq.if_range, "\"abc\"", "Sun, 06 Nov 1994 08:49:37 GMT");
    if (rq.if_none_match != NULL)
        if_none_match_matches(rq.if_none_match, "W/\"abc\"");
    {
        struct object_meta m;
        meta_clear(&m);
        strcpy(m.etag, "\"abc\"");
        strcpy(m.last_modified, "Sun, 06 Nov 1994 08:49:37 GMT");
        preconditions(&rq, &m);
    }
    return 0;
}
