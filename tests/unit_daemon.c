/*
 * unit_daemon.c -- unit tests of offload_daemon.c's pure functions.
 *
 * The daemon's source is included with main() left out, so the tests
 * see its static functions. Each CHECK counts; the last line is
 * "unit: N passed, N failed" and the exit status is 1 if any failed.
 */
#define OFFLOAD_NO_MAIN 1
#include "../offload_daemon.c"

static int g_passed, g_failed;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            g_passed++;                                                    \
        } else {                                                           \
            g_failed++;                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__,         \
                    __LINE__, #cond);                                      \
        }                                                                  \
    } while (0)

/* Parse text as a client request into rq, as much as request_read()
 * would buffer; returns request_parse()'s code. */
static int parse_text(struct request *rq, const char *text)
{
    memset(rq, 0, sizeof(*rq));
    rq->len = strlen(text);
    if (rq->len > OFFLOAD_MAX_HEADER_BLOCK)
        rq->len = OFFLOAD_MAX_HEADER_BLOCK;
    memcpy(rq->buf, text, rq->len);
    rq->buf[rq->len] = '\0';
    return request_parse(rq);
}

static void test_request_parse(void)
{
    static struct request rq;
    static char big[OFFLOAD_MAX_HEADER_BLOCK + 64];
    size_t i;

    CHECK(parse_text(&rq, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == PARSE_OK);
    CHECK(rq.method == METHOD_GET && strcmp(rq.target, "/a") == 0);
    CHECK(rq.keep_alive == 1 && rq.http_minor == 1);
    CHECK(parse_text(&rq, "GET /a HTTP/1.0\r\n\r\n") == PARSE_OK);
    CHECK(rq.keep_alive == 0);
    CHECK(parse_text(&rq, "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") ==
          PARSE_OK);
    CHECK(rq.keep_alive == 1);
    CHECK(parse_text(&rq, "HEAD /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Range: bytes=0-1\r\nIf-Range: \"x\"\r\n\r\n") ==
          PARSE_OK);
    CHECK(rq.method == METHOD_HEAD && !rq.keep_alive);
    CHECK(strcmp(rq.range, "bytes=0-1") == 0 && strcmp(rq.if_range, "\"x\"") == 0);
    /* leading empty line is tolerated; pipelined bytes stay after head */
    CHECK(parse_text(&rq, "\r\nGET / HTTP/1.0\r\n\r\nGET /next") == PARSE_OK);
    CHECK(rq.head_len == strlen("\r\nGET / HTTP/1.0\r\n\r\n"));

    CHECK(parse_text(&rq, "GET /a HTTP/1.1\r\nHost: x\r\n") == PARSE_INCOMPLETE);
    CHECK(parse_text(&rq, "GET /a HTTP/1.1") == PARSE_INCOMPLETE);
    /* smuggling and ambiguity */
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nContent-Length: 0\r\n"
                          "Content-Length: 0\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") ==
          PARSE_OK);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost : a\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\nHost: a\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nX: \001\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nRange: bytes=0-1\r\n"
                          "Range: bytes=2-3\r\n\r\n") == 400);
    /* versions */
    CHECK(parse_text(&rq, "GET /\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/2.0\r\n\r\n") == 505);
    CHECK(parse_text(&rq, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 505);
    CHECK(parse_text(&rq, "GET / HTTX/1.1\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "G(T / HTTP/1.1\r\n\r\n") == 400);
    /* NUL anywhere */
    memset(&rq, 0, sizeof(rq));
    memcpy(rq.buf, "GET /\0 HTTP/1.1\r\n\r\n", 20);
    rq.len = 20;
    CHECK(request_parse(&rq) == 400);
    /* limits */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "GET /", 5);
    CHECK(parse_text(&rq, big) == 414);
    memcpy(big, "GET / HTTP/1.1\r\n", 16);
    for (i = 16; i + 10 < sizeof(big); i += 10)
        memcpy(big + i, "X-A: bcd\r\n", 10);
    big[i] = '\0';
    CHECK(parse_text(&rq, big) == 431);
    big[0] = '\0';
    strcat(big, "GET / HTTP/1.1\r\n");
    for (i = 0; i <= OFFLOAD_MAX_HEADERS; i++)
        strcat(big, "X: y\r\n");
    strcat(big, "\r\n");
    CHECK(parse_text(&rq, big) == 431);
}

static void test_path_sanitize(void)
{
    char out[64];
    static const char *const bad[] = {
        "", "a", "/..", "/../etc/passwd", "/a/../b", "/a/%2e%2e/b", "/%2E%2e",
        "/./..", "/a/%2e/%2e%2e", "/a%00b", "/a%2fb", "/a%5cb", "/a\\b", "/a b",
        "/a\001", "/a%zz", "/a%2", "/a#b", "/a?b",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ok = path_sanitize(bad[i], out, sizeof(out)) == NULL;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
    }
    CHECK(path_sanitize("/a//b///c", out, sizeof(out)) != NULL &&
          strcmp(out, "/a/b/c") == 0);
    CHECK(path_sanitize("//x", out, sizeof(out)) != NULL && strcmp(out, "/x") == 0);
    /* '.' segments go (RFC 3986 5.2.4), also escaped; '..' never passes */
    CHECK(path_sanitize("/a/./b", out, sizeof(out)) != NULL &&
          strcmp(out, "/a/b") == 0);
    CHECK(path_sanitize("/./a", out, sizeof(out)) != NULL && strcmp(out, "/a") == 0);
    CHECK(path_sanitize("/a/.", out, sizeof(out)) != NULL && strcmp(out, "/a/") == 0);
    CHECK(path_sanitize("/.//%2e/a", out, sizeof(out)) != NULL &&
          strcmp(out, "/a") == 0);
    CHECK(path_sanitize("/.", out, sizeof(out)) != NULL && strcmp(out, "/") == 0);
    CHECK(path_sanitize("/", out, sizeof(out)) != NULL && strcmp(out, "/") == 0);
    CHECK(path_sanitize("/a%20b/...x/..a", out, sizeof(out)) != NULL &&
          strcmp(out, "/a%20b/...x/..a") == 0);
    CHECK(path_sanitize("/...", out, sizeof(out)) != NULL);
    CHECK(path_sanitize("/dir/", out, sizeof(out)) != NULL &&
          strcmp(out, "/dir/") == 0);
    /* too long for the buffer */
    CHECK(path_sanitize("/0123456789012345678901234567890123456789012345678901"
                        "234567890123456789", out, sizeof(out)) == NULL);
}

static void test_range_parse(void)
{
    struct byte_range r[4];
    int n;

    CHECK(range_parse(NULL, 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("bytes=0-9", 100, r, 4, &n) == RANGE_OK && n == 1 &&
          r[0].first == 0 && r[0].last == 9);
    CHECK(range_parse("bytes=90-", 100, r, 4, &n) == RANGE_OK && r[0].first == 90 &&
          r[0].last == 99);
    CHECK(range_parse("bytes=-10", 100, r, 4, &n) == RANGE_OK && r[0].first == 90 &&
          r[0].last == 99);
    CHECK(range_parse("bytes=-500", 100, r, 4, &n) == RANGE_OK && r[0].first == 0 &&
          r[0].last == 99);
    CHECK(range_parse("bytes=50-500", 100, r, 4, &n) == RANGE_OK &&
          r[0].last == 99);
    CHECK(range_parse("bytes=0-0, 10-19 ,-1", 100, r, 4, &n) == RANGE_OK &&
          n == 3 && r[1].first == 10 && r[2].first == 99);
    CHECK(range_parse("bytes=100-", 100, r, 4, &n) == RANGE_UNSATISFIABLE);
    CHECK(range_parse("bytes=-0", 100, r, 4, &n) == RANGE_UNSATISFIABLE);
    CHECK(range_parse("bytes=200-300,100-", 100, r, 4, &n) == RANGE_UNSATISFIABLE);
    CHECK(range_parse("bytes=200-300,5-6", 100, r, 4, &n) == RANGE_OK && n == 1);
    CHECK(range_parse("bytes=0-", 0, r, 4, &n) == RANGE_UNSATISFIABLE);
    CHECK(range_parse("bytes=9-1", 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("bytes=a-1", 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("items=0-1", 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("bytes=", 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("bytes=1-2,3-4,5-6,7-8,9-10", 100, r, 4, &n) == RANGE_NONE);
    CHECK(range_parse("bytes=99999999999999999999-", 100, r, 4, &n) == RANGE_NONE);
}

static void test_validators(void)
{
    const char *lm = "Sun, 22 Nov 2026 04:24:51 GMT";

    CHECK(if_range_matches("\"abc\"", "\"abc\"", lm));
    CHECK(!if_range_matches("\"abc\"", "W/\"abc\"", lm));
    CHECK(!if_range_matches("W/\"abc\"", "W/\"abc\"", lm));
    CHECK(!if_range_matches("\"abd\"", "\"abc\"", lm));
    CHECK(if_range_matches(lm, "\"abc\"", lm));
    CHECK(!if_range_matches("Sun, 22 Nov 2026 04:24:52 GMT", "\"abc\"", lm));
    CHECK(if_none_match_matches("\"x\", W/\"abc\"", "\"abc\""));
    CHECK(if_none_match_matches("*", "\"abc\""));
    CHECK(!if_none_match_matches("\"abcd\"", "\"abc\""));
    CHECK(if_none_match_matches(" , ,W/\"abc\" ,", "\"abc\""));
    CHECK(!if_none_match_matches("", "\"abc\""));
    CHECK(if_none_match_matches("\"x\", *", ""));
    CHECK(!if_none_match_matches("\"x\"", ""));
    CHECK(if_match_matches("*", "") && !if_match_matches("\"\"", ""));
    CHECK(header_has_token("Keep-Alive, , close ", "close"));
    CHECK(header_has_token("upgrade,keep-alive", "Keep-Alive"));
    CHECK(!header_has_token("closed, xclose", "close"));
    CHECK(http_date_parse(lm) == 1795321491);
    CHECK(http_date_parse("Sunday, 22-Nov-26 04:24:51 GMT") == 1795321491);
    CHECK(http_date_parse("Sun Nov 22 04:24:51 2026") == 1795321491);
    CHECK(http_date_parse("yesterday") == -1);
}

static void test_meta(void)
{
    struct object_meta m, d, want;
    char block[OFFLOAD_META_SIZE];

    memset(&m, 0, sizeof(m));
    strcpy(m.key, "www.example.com/a/b.iso");
    strcpy(m.etag, "W/\"12-34\"");
    strcpy(m.last_modified, "Sun, 22 Nov 2026 04:24:51 GMT");
    strcpy(m.content_type, "application/x-iso9660-image");
    m.length = 123456789012LL;
    strcpy(m.sha256, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    m.complete = 1;
    CHECK(meta_encode(&m, block) == 0);
    CHECK(meta_decode(block, sizeof(block), &d) == 0);
    CHECK(strcmp(d.key, m.key) == 0 && strcmp(d.etag, m.etag) == 0 &&
          d.length == m.length && strcmp(d.sha256, m.sha256) == 0 &&
          d.complete == 1 &&
          strcmp(d.content_type, m.content_type) == 0);
    want = m;
    strcpy(want.etag, "\"12-34\"");     /* the same ETag, now strong */
    CHECK(meta_matches(&d, m.key, &want));
    want.length++;
    CHECK(!meta_matches(&d, m.key, &want));
    want.length--;
    strcpy(want.last_modified, "Sun, 22 Nov 2026 04:24:52 GMT");
    CHECK(!meta_matches(&d, m.key, &want));
    CHECK(!meta_matches(&d, "www.example.com/other", &m));
    block[0] = 'x';
    CHECK(meta_decode(block, sizeof(block), &d) != 0);
    /* the longest key and validators still fit in the block */
    memset(m.key, 'k', sizeof(m.key) - 1);
    m.key[sizeof(m.key) - 1] = '\0';
    memset(m.etag, 'e', sizeof(m.etag) - 1);
    memset(m.last_modified, 'l', sizeof(m.last_modified) - 1);
    memset(m.content_type, 't', sizeof(m.content_type) - 1);
    CHECK(meta_encode(&m, block) == 0);
    CHECK(meta_decode(block, sizeof(block), &d) == 0 && strcmp(d.key, m.key) == 0);
}

static void test_settings(void)
{
    struct settings s;
    struct listen_spec ls;
    const char *why;

    memset(&s, 0, sizeof(s));
    CHECK(base_url_parse("http://www.example.com", &s, &why) == 0);
    CHECK(strcmp(s.base_host, "www.example.com") == 0 &&
          strcmp(s.base_port, "80") == 0 && s.base_prefix[0] == '\0' &&
          strcmp(s.base_authority, "www.example.com") == 0);
    CHECK(base_url_parse("http://127.0.0.1:8080/files/", &s, &why) == 0);
    CHECK(strcmp(s.base_port, "8080") == 0 &&
          strcmp(s.base_prefix, "/files") == 0 &&
          strcmp(s.base_authority, "127.0.0.1:8080") == 0);
    CHECK(base_url_parse("http://[::1]:81", &s, &why) == 0);
    CHECK(strcmp(s.base_host, "::1") == 0 && strcmp(s.base_port, "81") == 0);
    CHECK(base_url_parse("https://x", &s, &why) != 0);
    CHECK(base_url_parse("ftp://x", &s, &why) != 0);
    CHECK(base_url_parse("http://", &s, &why) != 0);
    CHECK(base_url_parse("http://x:0", &s, &why) != 0);
    CHECK(base_url_parse("http://x:99999", &s, &why) != 0);
    CHECK(base_url_parse("http://x:", &s, &why) != 0);
    CHECK(base_url_parse("http://u@x", &s, &why) != 0);
    CHECK(base_url_parse("http://x/?q", &s, &why) != 0);
    CHECK(base_url_parse("http://x y", &s, &why) != 0);
    CHECK(base_url_parse("http://127.0.0.1/a b", &s, &why) != 0);
    CHECK(base_url_parse("http://127.0.0.1/a\rb", &s, &why) != 0);
    CHECK(base_url_parse("http://127.0.0.1/a/../b", &s, &why) != 0);
    {
        char url[400] = "http://[";
        memset(url + 8, '1', 270);
        strcpy(url + 278, "]/");
        CHECK(base_url_parse(url, &s, &why) != 0);
    }

    CHECK(listen_parse("127.0.0.1:8081", &ls) == 0 &&
          strcmp(ls.host, "127.0.0.1") == 0 && strcmp(ls.port, "8081") == 0);
    CHECK(listen_parse("[::1]:80", &ls) == 0 && strcmp(ls.host, "::1") == 0);
    CHECK(listen_parse("*:80", &ls) == 0 && strcmp(ls.host, "0.0.0.0") == 0);
    CHECK(listen_parse("8081", &ls) != 0);
    CHECK(listen_parse("::1:80", &ls) != 0);
    CHECK(listen_parse("[::1]80", &ls) != 0);
    CHECK(listen_parse("a:b", &ls) != 0);
    CHECK(listen_parse("a:70000", &ls) != 0);
}

/* The settings table: defaults, ranges, lists, what each field holds. */
static void test_settings_table(void)
{
    static struct settings s;
    const struct setting_def *d;
    unsigned long begun = 0;
    const char *why;
    char buf[64];
    size_t i;

    for (i = 0; i < N_SETTINGS; i++) {
        d = &g_setting_defs[i];
        /* numbers are stored as int or long long, by the field's size */
        CHECK(!g_kinds[d->kind].is_number || d->size == sizeof(int) ||
              d->size == sizeof(long long));
        CHECK(d->at + d->size <= sizeof(struct settings));
        CHECK(d->def >= d->min && (d->max == 0 || d->def <= d->max));
        CHECK(setting_find(d->name, 0) == d && setting_find(d->flag, 1) == d);
    }
    settings_defaults(&s);
    CHECK(s.timeout == OFFLOAD_DEFAULT_TIMEOUT &&
          s.max_clients == OFFLOAD_DEFAULT_MAX_CLIENTS &&
          s.notsent_lowat == OFFLOAD_DEFAULT_NOTSENT_LOWAT &&
          s.robots_txt == 1 && s.serve_stale == 1 && s.cache_max_size == 0);
    CHECK(strcmp(s.cache_dir, OFFLOAD_DEFAULT_CACHE_DIR) == 0 &&
          strcmp(s.status_path, OFFLOAD_DEFAULT_STATUS_PATH) == 0);
    CHECK(s.nlisten == 1 && strcmp(s.listen[0].host, "0.0.0.0") == 0 &&
          atoi(s.listen[0].port) == OFFLOAD_DEFAULT_PORT);
    CHECK(s.nstatus_allow == 2 && cidr_contains(&s.status_allow[0], "127.1.2.3") &&
          cidr_contains(&s.status_allow[1], "::1"));
    /* a source's first value of a list replaces the list; more add */
    d = setting_find("Listen", 0);
    CHECK(setting_apply(&s, d, "127.0.0.1:1", &begun, &why) == 0 &&
          s.nlisten == 1 && strcmp(s.listen[0].port, "1") == 0);
    CHECK(setting_apply(&s, d, "[::1]:2", &begun, &why) == 0 && s.nlisten == 2);
    for (i = 2; i < OFFLOAD_MAX_LISTEN; i++)
        CHECK(setting_apply(&s, d, "127.0.0.1:3", &begun, &why) == 0);
    CHECK(setting_apply(&s, d, "127.0.0.1:4", &begun, &why) != 0 &&
          strcmp(why, "too many addresses") == 0);
    /* ranges from the table, in the messages too */
    d = setting_find("--timeout", 1);
    CHECK(setting_apply(&s, d, "0", &begun, &why) != 0 &&
          strcmp(why, "expected a whole number from 1 to 3600") == 0);
    CHECK(setting_apply(&s, d, "3600", &begun, &why) == 0 && s.timeout == 3600);
    d = setting_find("NotSentLowat", 0);
    CHECK(setting_apply(&s, d, "64M", &begun, &why) == 0 &&
          s.notsent_lowat == 64 * 1024 * 1024);
    CHECK(setting_apply(&s, d, "65M", &begun, &why) != 0);
    d = setting_find("CacheMaxSize", 0);
    CHECK(setting_apply(&s, d, "2T", &begun, &why) == 0 &&
          s.cache_max_size == 2LL << 40);
    d = setting_find("DupeStatus", 0);
    CHECK(setting_apply(&s, d, "200", &begun, &why) != 0 &&
          strcmp(why, "expected 403, 429 or 503") == 0);
    CHECK(strcmp(setting_syntax(d, buf, sizeof(buf)), "403|429|503") == 0);
    d = setting_find("StatusPath", 0);
    CHECK(setting_apply(&s, d, "off", &begun, &why) == 0 &&
          s.status_path[0] == '\0');
    CHECK(strcmp(size_text(3 << 20, buf, sizeof(buf)), "3M") == 0 &&
          strcmp(size_text(1500, buf, sizeof(buf)), "1500") == 0 &&
          strcmp(size_text(0, buf, sizeof(buf)), "0") == 0);
    CHECK(strcmp(setting_default(setting_find("StatusAllow", 0), buf,
                                 sizeof(buf)), "127.0.0.0/8 and ::1") == 0);
}

/* Parse text as a base response; returns base_response_parse()'s code. */
static int parse_base(struct base_response *br, const char *text)
{
    memset(br, 0, sizeof(*br));
    br->len = strlen(text);
    memcpy(br->buf, text, br->len);
    return base_response_parse(br);
}

static void test_base_response(void)
{
    static struct base_response br;

    CHECK(parse_base(&br, "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 10\r\n"
                          "Last-Modified: x\r\nContent-Type: text/plain\r\n\r\n") ==
          0);
    CHECK(br.status == 200 && br.content_length == 10 &&
          strcmp(br.etag, "\"a\"") == 0 && br.keep_alive == 1);
    CHECK(parse_base(&br, "HTTP/1.1 401 No\r\nWWW-Authenticate: Basic\r\n\r\n") ==
          0 && br.www_authenticate);
    CHECK(parse_base(&br, "HTTP/1.0 302 Found\r\nLocation: http://x/y\r\n\r\n") ==
          0 && br.keep_alive == 0 && strcmp(br.location, "http://x/y") == 0);
    CHECK(parse_base(&br, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                          "Content-Length: 2\r\n\r\n") == -1);
    CHECK(parse_base(&br, "HTTP/1.1 200 OK\r\nETag: a\rb\r\n\r\n") == -1);
    CHECK(parse_base(&br, "HTTP/1.1 200 OK\r\nX: y\r\n") == 1);
    CHECK(parse_base(&br, "HTTP/1.1 2000 OK\r\n\r\n") == -1);
    CHECK(parse_base(&br, "HTTP/2 200\r\n\r\n") == -1);
    CHECK(parse_base(&br, "ICY 200 OK\r\n\r\n") == -1);
    CHECK(parse_base(&br, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          0 && br.chunked);
}

/* Digest fields from the base: Repr-Digest (RFC 9530), Digest (RFC
 * 3230), and a digest taking part in "the same version". */
static void test_digests(void)
{
    static const char abc[] = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    char out[OFFLOAD_SHA256_B64_LEN + 1] = "";
    struct object_meta m;

    CHECK(digest_field_sha256("sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/"
                              "YfIAFa0=:", 0, out) == 1 &&
          strcmp(out, abc) == 0);
    out[0] = '\0';
    CHECK(digest_field_sha256("sha-512=:AAAA:, sha-256=:ungWv48Bz+pBQUDeXa4iI7"
                              "ADYaOWF3qctBD/YfIAFa0=:", 0, out) == 1 &&
          strcmp(out, abc) == 0);
    out[0] = '\0';
    CHECK(digest_field_sha256("MD5=kAFQmDzST7DWlj99KOF/cg==, SHA-256=ungWv48B"
                              "z+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", 1, out) == 1 &&
          strcmp(out, abc) == 0);
    out[0] = '\0';
    /* no colons in Repr-Digest, a short value, a bad character */
    CHECK(digest_field_sha256("sha-256=ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/"
                              "YfIAFa0=", 0, out) == 0 && out[0] == '\0');
    CHECK(digest_field_sha256("sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/"
                              "YfIA=:", 0, out) == 0);
    CHECK(digest_field_sha256("SHA-256=ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/"
                              "YfIAF*0=", 1, out) == 0);
    CHECK(digest_field_sha256("Sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/"
                              "YfIAFa0=:", 0, out) == 0);
    meta_clear(&m);
    m.length = 3;
    strcpy(m.etag, "\"3-x\"");
    strcpy(m.last_modified, "Sun, 22 Nov 2026 04:24:51 GMT");
    CHECK(version_same(&m, 3, "\"3-x\"", m.last_modified, abc));
    strcpy(m.sha256, abc);
    CHECK(version_same(&m, 3, "\"3-x\"", m.last_modified, ""));
    CHECK(version_same(&m, 3, "\"3-x\"", m.last_modified, abc));
    CHECK(!version_same(&m, 3, "\"3-x\"", m.last_modified,
                        "LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564="));
}

/* RFC 9110 and 9112 rules: Host, list fields, methods, preconditions,
 * the cap's kinds of request. */
static void test_conformance(void)
{
    static struct request rq;
    static const char *const good[] = {"dl", "dl:80", "dl:", "[::1]",
                                       "[::1]:8080", "127.0.0.1:1",
                                       "a%41b.example", "x-y_z~!$&'()*+,;="};
    static const char *const bad[] = {"", "a b", "u@dl", "dl/x", "dl\\x",
                                      "[::1", "::1]", "dl:80:80", "dl:http",
                                      "[dl]", "a%4", ":80"};
    struct object_meta m;
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(authority_valid(good[i], strlen(good[i])));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!authority_valid(bad[i], strlen(bad[i])));
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost:\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.0\r\nHost: a b\r\n\r\n") == 400);
    CHECK(parse_text(&rq, "GET / HTTP/1.0\r\n\r\n") == PARSE_OK);
    /* repeated list fields combine, in order, also interleaved */
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"1\"\r\n"
                          "If-Match: \"m\"\r\nIf-None-Match: \"2\"\r\n"
                          "If-Match: *\r\nIf-None-Match: \"3\"\r\n\r\n") ==
          PARSE_OK);
    CHECK(strcmp(rq.if_none_match, "\"1\", \"2\", \"3\"") == 0);
    CHECK(strcmp(rq.if_match, "\"m\", *") == 0);
    CHECK(parse_text(&rq, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                          "Connection: keep-alive\r\n\r\n") == PARSE_OK);
    CHECK(rq.keep_alive == 0);
    CHECK(method_of("GET") == METHOD_GET && method_of("PATCH") == METHOD_OTHER);
    CHECK(method_of("get") == METHOD_UNKNOWN && method_of("FOOBAR") == METHOD_UNKNOWN);
    /* preconditions, in the order of RFC 9110 13.2.2 */
    meta_clear(&m);
    strcpy(m.etag, "\"v\"");
    strcpy(m.last_modified, "Sun, 22 Nov 2026 04:24:51 GMT");
    request_fields_clear(&rq);
    CHECK(preconditions(&rq, &m) == PRE_PASS);
    rq.if_match = "\"x\", \"v\"";
    rq.if_none_match = "\"v\"";
    CHECK(preconditions(&rq, &m) == PRE_NOT_MODIFIED);
    rq.if_match = "W/\"v\"";
    CHECK(preconditions(&rq, &m) == PRE_FAILED);
    request_fields_clear(&rq);
    rq.if_unmodified_since = "Sun, 22 Nov 2026 04:24:50 GMT";
    CHECK(preconditions(&rq, &m) == PRE_FAILED);
    rq.if_match = "*";
    CHECK(preconditions(&rq, &m) == PRE_PASS);
    request_fields_clear(&rq);
    rq.if_modified_since = "Sun, 22 Nov 2026 04:24:51 GMT";
    CHECK(preconditions(&rq, &m) == PRE_NOT_MODIFIED);
    rq.if_modified_since = "Sun, 22 Nov 2026 04:24:51 GMT, Sun, 22 Nov 2026 "
                           "04:24:51 GMT";
    CHECK(preconditions(&rq, &m) == PRE_PASS);
    rq.if_none_match = "\"other\"";
    rq.if_modified_since = "Sun, 22 Nov 2026 04:24:51 GMT";
    CHECK(preconditions(&rq, &m) == PRE_PASS);
    /* resumes and segments (MaxDupeDownloads) */
    CHECK(range_is_resume("bytes=5000000-") && range_is_resume("bytes = 7 - "));
    CHECK(!range_is_resume("bytes=0-99") && !range_is_resume("bytes=-500"));
    CHECK(!range_is_resume("bytes=5-,9-") && !range_is_resume("items=5-"));
    CHECK(dupe_client_key("2001:db8::1") == dupe_client_key("2001:db8::ffff:2"));
    CHECK(dupe_client_key("2001:db8::1") != dupe_client_key("2001:db8:0:1::1"));
    CHECK(dupe_client_key("192.0.2.1") != dupe_client_key("192.0.2.2"));
}

int main(void)
{
    test_request_parse();
    test_conformance();
    test_path_sanitize();
    test_range_parse();
    test_validators();
    test_meta();
    test_settings();
    test_settings_table();
    test_base_response();
    test_digests();
    printf("unit: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
