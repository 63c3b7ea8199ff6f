/*
 * offload_daemon.c -- the offload host's HTTP daemon of mod_offload.
 *
 * Clients arrive here because the base server (Apache with mod_offload)
 * redirected them. For every request the daemon asks the base with a HEAD
 * (carrying the X-Mod-Offload-Bypass header, so the base does not redirect
 * it again) whether its disk copy of the file is current, judged by ETag,
 * Content-Length and Last-Modified. A current copy is sent with sendfile().
 * Otherwise exactly one process fetches the file from the base into the
 * cache while every client that wants it streams from the growing file.
 *
 * Process model: the parent binds the listening sockets, accepts and
 * reaps; one forked child serves each connection; a child that wins an
 * object's lock forks a fetcher that outlives the client if need be.
 *
 * Layers: request code reads and writes a connection (struct conn), never
 * a socket; every exchange with the base goes through base_exchange()
 * and base_body_read(); "the same version" is version_same() alone.
 *
 * Return conventions, everywhere below: a function that can fail returns
 * 0 on success and -1 on failure (errno set where its comment says so);
 * a predicate ("is", "has", "matches") returns 1 or 0; a parser returns
 * its enum result; a function that answers a client returns 0 when the
 * connection may carry another request and -1 when it must be closed;
 * start-up errors die() naming the setting.
 *
 * Build: cc -O2 -Wall -Wextra -o offload_daemon offload_daemon.c -lz
 * Run:   offload_daemon --base http://www.example.com \
 *            --listen 0.0.0.0:8081 --cache-dir /var/cache/offload
 *
 * Copyright (c) 2026 the mod_offload authors. zlib license: see LICENSE.txt.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <link.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <syslog.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <openssl/evp.h>

#include "config.h"

/* ======================================================================
 * Constants
 * ====================================================================== */

#define SERVER_NAME "offload_daemon/" OFFLOAD_VERSION
#define CACHE_MAGIC "mod_offload cache 1"
#define HEX_KEY_LEN 16  /* crc32 + adler32 of the key, in hex */

/* For functions with large frames that only misses and rare requests
 * call: kept out of the hit path's frame, so that a child serving hits
 * writes fewer stack pages (memory per download). */
#define NOINLINE __attribute__((noinline))

/* For the static state a child writes on every request: each such
 * structure keeps what a request writes at its start, so that aligned
 * it costs one page, wherever the linker would have put it. */
#define PAGE_ALIGNED __attribute__((aligned(4096)))

_Static_assert(OFFLOAD_META_FIRST_READ <= OFFLOAD_META_SIZE,
               "OFFLOAD_META_FIRST_READ must not exceed OFFLOAD_META_SIZE");

/* What the cache did for a request: the access log's cache field and
 * the metrics' cache results (g_cache_status_names holds the words).
 * CS_NONE, last, is not counted in the metrics. */
enum cache_status {
    CS_HIT,
    CS_MISS,
    CS_REFRESH,
    CS_STALE,
    CS_BYPASS,
    CS_DENIED,
    CS_NONE
};

/* A client request's method, as far as the daemon tells them apart.
 * METHOD_NONE: the request line did not parse. METHOD_OTHER: a method
 * of RFC 9110 9.3 or PATCH, not served here (405); METHOD_UNKNOWN: any
 * other (501, RFC 9110 9.1). */
enum http_method {
    METHOD_NONE,
    METHOD_GET,
    METHOD_HEAD,
    METHOD_OTHER,
    METHOD_UNKNOWN
};

/* Results of parsing a client request. */
enum parse_result {
    PARSE_OK = 200,      /* go on and answer it */
    PARSE_INCOMPLETE = 1,
    PARSE_BAD = 400,
    PARSE_URI_TOO_LONG = 414,
    PARSE_HEADERS_TOO_LARGE = 431,
    PARSE_BAD_VERSION = 505
};

/* What a request's preconditions say (RFC 9110 13.2.2). */
enum precondition {
    PRE_PASS,            /* go on: Range, then the answer */
    PRE_NOT_MODIFIED,    /* 304 */
    PRE_FAILED           /* 412 */
};

/* Results of range_parse(). */
enum range_result {
    RANGE_NONE,          /* no usable Range header: send the whole body */
    RANGE_OK,            /* one or more satisfiable ranges */
    RANGE_UNSATISFIABLE  /* 416 */
};

/* ======================================================================
 * Types
 * ====================================================================== */

/*
 * A connection to a client or to the base. Request code reads and writes
 * through the conn_* functions only, never through the descriptor, so
 * that a TLS session can be put underneath without touching it.
 */
struct conn {
    int fd;                        /* -1: not open */
};
#define CONN_CLOSED {-1}

/* One --listen address. */
struct listen_spec {
    char host[64];
    char port[8];
};

/* An address block, for TrustedProxy. */
struct cidr {
    int family;                    /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

/* Everything set at start-up from the config file and the flags. */
struct settings {
    char base_url[OFFLOAD_MAX_CACHED_PATH];
    char base_host[256];           /* host name or address, no brackets */
    char base_port[8];
    char base_authority[300];      /* Host header: host[:port] as given */
    char base_prefix[OFFLOAD_MAX_CACHED_PATH]; /* path part of --base, no final / */
    char base_address[256];        /* BaseAddress, or empty */
    struct listen_spec listen[OFFLOAD_MAX_LISTEN];
    int nlisten;
    char cache_dir[PATH_MAX];
    int timeout;                   /* seconds */
    int max_clients;
    int max_dupe;                  /* MaxDupeDownloads; 0 = no cap */
    int dupe_status;               /* 403, 429 or 503 */
    int robots_txt;                /* answer /robots.txt ourselves */
    char access_log[PATH_MAX];     /* empty: none (stdout under -F) */
    char error_log[PATH_MAX];      /* empty: stderr under -F, else syslog */
    char pid_file[PATH_MAX];
    char user[64];
    char docroot[PATH_MAX];        /* DocumentRoot: serve from here */
    struct cidr trusted[OFFLOAD_MAX_TRUSTED_PROXIES];
    int ntrusted;
    long long cache_max_size;      /* bytes; 0 = no cap */
    int serve_stale;               /* ServeStaleOnError */
    int validate_interval;         /* seconds; 0 = HEAD on every request */
    int notsent_lowat;             /* bytes; 0 = the kernel's default */
    long long scrub_rate;          /* ScrubRate, bytes/s; 0 = off */
    char status_path[256];         /* metrics and health; empty = off */
    struct cidr status_allow[OFFLOAD_MAX_TRUSTED_PROXIES];
    int nstatus_allow;
    char server_names[OFFLOAD_MAX_SERVER_NAMES][OFFLOAD_MAX_SERVER_NAME + 1];
    int nserver_names;
};

/* One client request. Header values point into buf. */
struct request {
    size_t len;          /* bytes in buf */
    size_t head_len;     /* bytes of the header block, final CRLF included */
    enum http_method method;
    char *method_name;
    char *target;
    int http_minor;      /* HTTP/1.x */
    int keep_alive;
    int seen_content_length;
    const char *host;    /* Host (an absolute form's authority overrides it) */
    const char *connection;
    const char *range;
    const char *if_range;
    const char *if_match;
    const char *if_none_match;
    const char *if_modified_since;
    const char *if_unmodified_since;
    const char *user_agent;
    const char *referer;
    const char *x_forwarded_for;
    char *path;          /* the target, checked: in place over it */
    size_t lists_len;    /* bytes of lists in use */
    char client[INET6_ADDRSTRLEN + 8]; /* peer, or last XFF hop of a proxy */
    /* what happened, for the access log */
    int status;
    long long body_sent;
    enum cache_status cache_status;
    struct timespec started;
    char request_line[512];
    char buf[OFFLOAD_MAX_HEADER_BLOCK + 1]; /* pages touched as used */
    /* values of fields sent on several lines, combined (field_combine);
     * written only for such requests */
    char lists[OFFLOAD_MAX_HEADER_BLOCK + 1];
};

/* The head of a response from the base server. The fields come before
 * the buffer and hold short values at their starts, so that what a HEAD
 * answer writes fits in one page (memory per download). */
struct base_response {
    size_t len;          /* bytes in buf (may include the start of a body) */
    size_t head_len;
    size_t body_pos;     /* next body byte in buf not yet read */
    int status;
    int www_authenticate;
    int keep_alive;
    int chunked;
    long long content_length;      /* -1 when absent */
    char etag[OFFLOAD_MAX_VALIDATOR];
    char last_modified[OFFLOAD_MAX_VALIDATOR];
    char content_type[OFFLOAD_MAX_VALIDATOR];
    char content_range[OFFLOAD_MAX_VALIDATOR];
    char location[OFFLOAD_MAX_LOCATION];
    char sha256[OFFLOAD_SHA256_B64_LEN + 1]; /* advertised digest, or "" */
    char buf[OFFLOAD_MAX_HEADER_BLOCK + 1]; /* last: pages touched as used */
};

/* What identifies one version of one file: stored in a cache file's
 * metadata block and compared with the base's answer to HEAD. The long
 * key is last: its unused tail is then the only gap (see meta_clear). */
struct object_meta {
    long long length;
    char sha256[OFFLOAD_SHA256_B64_LEN + 1]; /* base64; empty: unknown */
    int complete;
    int abandoned;       /* the fetch stopped for a local reason (disk) */
    char etag[OFFLOAD_MAX_VALIDATOR];
    char last_modified[OFFLOAD_MAX_VALIDATOR];
    char content_type[OFFLOAD_MAX_VALIDATOR];
    char key[OFFLOAD_MAX_CACHED_PATH + 300];
};

/* Room for an object's key and its four file names, one after another. */
#define OBJECT_KEY_MAX (OFFLOAD_MAX_PATH + 300)
#define OBJECT_DIR_MAX (OFFLOAD_MAX_CACHE_DIR + 8)
#define OBJECT_NAMES_SIZE (OBJECT_KEY_MAX + 4 * (OFFLOAD_MAX_CACHE_DIR + 40))

/* A cache object: its file names and, once opened, its data. The names
 * are packed into one buffer, so that the few hundred bytes they take
 * are written to one page rather than to five arrays' worth. */
struct object {
    uint64_t hash;                 /* the name, as a number */
    int fd;                        /* open copy, -1 if none */
    int lock_fd;                   /* readers' own descriptor of the lock */
    int notify_fd;                 /* inotify watch on a growing fd */
    int growing;                   /* fd is a .part still being written */
    int stale;                     /* served without the base's word */
    off_t data_offset;             /* where the body starts in fd */
    struct timespec used;          /* a complete copy's atime, */
    struct timespec validated;     /* and its mtime */
    char *key;                     /* base authority + base_path */
    const char *base_path;         /* the path asked of the base */
    char *dir;                     /* CACHEDIR/ab/cd */
    char *path;                    /* complete copy */
    char *part_path;               /* copy being fetched */
    char *lock_path;               /* flock()ed by the fetcher */
    struct object_meta meta;
    char names[OBJECT_NAMES_SIZE]; /* what key .. lock_path point into */
};

/* Status codes counted one by one in the metrics; others as "other". */
static const int g_metric_codes[] = {200, 206, 301, 302, 304, 307, 400, 403,
                                     404, 405, 408, 410, 412, 414, 416, 429,
                                     431, 500, 501, 502, 503, 504, 505};
#define N_METRIC_CODES (sizeof(g_metric_codes) / sizeof(g_metric_codes[0]))

/* The words of enum cache_status, in its order. */
static const char *const g_cache_status_names[] = {
    [CS_HIT] = "HIT",       [CS_MISS] = "MISS",     [CS_REFRESH] = "REFRESH",
    [CS_STALE] = "STALE",   [CS_BYPASS] = "BYPASS", [CS_DENIED] = "DENIED",
    [CS_NONE] = "-"};
#define N_CACHE_RESULTS CS_NONE  /* counted in the metrics */

/* Counters every process adds to (atomically), for StatusPath. */
struct metrics {
    uint64_t requests[3];                   /* GET, HEAD, other */
    uint64_t responses[N_METRIC_CODES + 1]; /* last: other codes */
    uint64_t cache_results[N_CACHE_RESULTS];
    uint64_t bytes_from_base;
    uint64_t bytes_to_clients;
    uint64_t refused_dupe;
    uint64_t refused_busy;
    uint64_t evictions;
    uint64_t digest_mismatches;             /* fills refused by SHA-256 */
    uint64_t scrub_corrupt;                 /* copies the scrubber removed */
    int64_t cache_bytes;                    /* complete objects */
    int64_t cache_objects;
};

/* One GET in progress: who and what (hashes; 0 = free). */
struct dupe_slot {
    uint64_t client;
    uint64_t url;
};

/* What the processes share (mapped by the parent before forking). */
struct shared {
    pthread_mutex_t lock;           /* robust: a dead holder is noticed */
    uint64_t cache_errors[OFFLOAD_CACHE_ERROR_SLOTS];
    struct metrics m;
    struct dupe_slot slots[];       /* MaxClients of them */
};

/* One byte range, inclusive. */
struct byte_range {
    long long first;
    long long last;
};

/* ======================================================================
 * Globals
 * ====================================================================== */

static struct settings g_cfg;                 /* start-up settings */
static int g_listen_fd[OFFLOAD_MAX_LISTEN];   /* bound sockets */
static int g_nlisten_fd;                      /* how many are bound */
static volatile sig_atomic_t g_got_sigchld;   /* parent: reap children */
static volatile sig_atomic_t g_got_sigterm;   /* stop accepting, exit */
static volatile sig_atomic_t g_got_sighup;    /* parent: re-read config */
static volatile sig_atomic_t g_got_sigusr1;   /* parent: reopen logs */
static int g_foreground;                      /* -F */
static const char *g_tool;                    /* --cache-list etc., or NULL */
static const char *g_tool_arg;                /* --cache-purge's PATH */
static int g_pid_fd = -1;                     /* held PID file, or -1 */
static int g_cgi;                             /* --cgi: one request */
static int g_error_fd = STDERR_FILENO;        /* error log, or -1: syslog */
static int g_access_fd = -1;                  /* access log, or -1: none */
static char **g_argv;                         /* command line (a copy) */
static int g_argc;
static const char *g_config_file;             /* -f FILE, or NULL */
static char *g_title;                         /* process title area */
static size_t g_title_room;                   /* its size */
static struct shared *g_shared;               /* NULL in unit tests, CGI */
static int g_slot = -1;                       /* child: its download slot */

struct object;
static int relay_rest(struct conn *cc, struct request *rq, const struct object *obj,
                      long long first, long long last);

/* Defined in the start-up section, used by the accept loop and --cgi. */
static void config_reload(void);
static int logs_open(void);
static void pid_file_release(void);
static struct conn g_base = CONN_CLOSED;      /* child: kept-alive base */
static int g_fetchers_started;                /* child: fetchers forked */
static uint64_t *g_cache_errors;              /* shared: objects whose cache
                                                 error was logged */
static const char *g_progname = "offload_daemon";

/* ======================================================================
 * Small helpers
 * ====================================================================== */

/*
 * Log one line to stderr with a single write(), so that lines of
 * concurrent children never interleave. Format: timestamp, level, pid.
 */
static void log_msg(const char *level, const char *fmt, ...)
{
    char line[1024];
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = (size_t)snprintf(line, sizeof(line), "[%s.%03ldZ] [%s] [pid %ld] ",
                         stamp, ts.tv_nsec / 1000000, level, (long)getpid());
    va_start(ap, fmt);
    if (n < sizeof(line))
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (g_error_fd < 0) {
        int prio = strcmp(level, "error") == 0    ? LOG_ERR
                   : strcmp(level, "warning") == 0 ? LOG_WARNING
                   : strcmp(level, "notice") == 0  ? LOG_NOTICE
                                                   : LOG_INFO;
        line[n - 1] = '\0';
        syslog(prio, "%s", strstr(line, "] [pid ") + 2);
        return;
    }
    if (write(g_error_fd, line, n) < 0) {
        /* nowhere left to report it */
    }
}

/* Print a start-up error and exit 1. Never returns. */
static void die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", g_progname, msg);
    exit(1);
}

/* Copy src into dst of size dstsz. Returns 0, or -1 if it did not fit
 * (dst then holds the empty string). */
static int copy_string(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);

    if (n >= dstsz) {
        dst[0] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* Write all of iov[0..n-1] (which it consumes). With more, on a socket,
 * tell the kernel that more follows at once (MSG_MORE), so that small
 * pieces leave in one packet with what comes next. Returns 0 or -1. */
static int writev_all(int fd, struct iovec *iov, int n, int more)
{
    while (n > 0) {
        struct msghdr msg = {0};
        ssize_t done;

        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n;
        done = more ? sendmsg(fd, &msg, MSG_MORE) : writev(fd, iov, n);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            if (more && errno == ENOTSOCK) {
                more = 0;
                continue;
            }
            return -1;
        }
        while (n > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

/* Write all of buf to fd. Returns 0, or -1 with errno set. */
static int write_all(int fd, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};

    return writev_all(fd, &iov, 1, 0);
}

/* pwrite() all of buf at off. Returns 0, or -1 with errno set (also
 * when the file system takes part of it and then nothing more). */
static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* A time as milliseconds. */
static long long timespec_ms(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return timespec_ms(&ts);
}

/* Format t as an IMF-fixdate (RFC 9110) into buf (>= 30 bytes). */
static void http_date(time_t t, char *buf, size_t bufsz)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, bufsz, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Parse an HTTP date (IMF-fixdate, RFC 850 or asctime form). Returns the
 * time, or -1 if s is not a date. */
static time_t http_date_parse(const char *s)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    };
    size_t i;

    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        const char *end;

        memset(&tm, 0, sizeof(tm));
        end = strptime(s, formats[i], &tm);
        if (end != NULL && *end == '\0')
            return timegm(&tm);
    }
    return -1;
}

/* Parse a non-negative decimal of at most 18 digits. Returns it, or -1. */
static long long parse_length(const char *s)
{
    long long v = 0;
    int digits = 0;

    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || ++digits > 18)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Set send and receive timeouts on a socket. */
static void socket_set_timeouts(int fd, int seconds)
{
    struct timeval tv;

    tv.tv_sec = seconds;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Is s a SHA-256 digest in base64 (44 characters, one '=' of padding)?
 * The decoding is libcrypto's. */
static int sha256_b64_valid(const char *s)
{
    unsigned char raw[OFFLOAD_SHA256_B64_LEN];

    return strlen(s) == OFFLOAD_SHA256_B64_LEN &&
           s[OFFLOAD_SHA256_B64_LEN - 1] == '=' &&
           s[OFFLOAD_SHA256_B64_LEN - 2] != '=' &&
           EVP_DecodeBlock(raw, (const unsigned char *)s,
                           OFFLOAD_SHA256_B64_LEN) == 33;
}

/* Start (or start over) a SHA-256 in ctx. Returns 0 or -1. */
static int sha256_start(EVP_MD_CTX *ctx)
{
    return EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

/* Finish the SHA-256 in ctx into out (base64, NUL-terminated, room for
 * OFFLOAD_SHA256_B64_LEN + 1). Returns 0 or -1. */
static int sha256_finish(EVP_MD_CTX *ctx, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, (int)len);
    return 0;
}

/* An ETag without its weakness prefix. */
static const char *etag_opaque(const char *etag)
{
    return strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
}

/*
 * Make the memory of argv[] (and of the environment that follows it)
 * usable as the process title shown by ps, as Linux allows: the
 * environment is moved to the heap first. argv[] is overwritten by
 * proctitle_set(), so callers keep their own copy of it.
 */
static void proctitle_init(int argc, char **argv)
{
    extern char **environ;
    char *end = argv[0] + strlen(argv[0]) + 1;
    char **env;
    int i, n;

    for (i = 1; i < argc && argv[i] == end; i++)
        end = argv[i] + strlen(argv[i]) + 1;
    for (n = 0; environ[n] != NULL; n++) {
    }
    env = calloc((size_t)n + 1, sizeof(*env));
    if (env == NULL)
        return;
    for (i = 0; i < n; i++) {
        if (environ[i] == end)
            end = environ[i] + strlen(environ[i]) + 1;
        env[i] = strdup(environ[i]);
    }
    environ = env;
    g_title = argv[0];
    g_title_room = (size_t)(end - argv[0]);
}

/* Add n to a shared counter (no-op without shared memory). */
#define METRIC_ADD(field, n)                                                \
    do {                                                                    \
        if (g_shared != NULL)                                               \
            __atomic_add_fetch(&g_shared->m.field, (n), __ATOMIC_RELAXED);  \
    } while (0)

/* Set the process title (ps, top): "offload: WHAT". */
static void proctitle_set(const char *fmt, ...)
{
    va_list ap;
    int n;

    if (g_title == NULL)
        return;
    va_start(ap, fmt);
    n = vsnprintf(g_title, g_title_room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < g_title_room)
        memset(g_title + n, '\0', g_title_room - (size_t)n);
}

/* ======================================================================
 * The connection layer: client and base traffic alike
 * ====================================================================== */

/* Take over an open socket as a connection. */
static void conn_attach(struct conn *c, int fd)
{
    c->fd = fd;
}

/* Read at most len bytes. Returns read()'s result: bytes, 0 at the end,
 * -1 with errno set (EINTR when a signal came: callers decide). */
static ssize_t conn_read(struct conn *c, void *buf, size_t len)
{
    return read(c->fd, buf, len);
}

/* Wait at most ms milliseconds (-1: no limit) for input. Returns 1 when
 * there is some (or the peer closed), 0 on a timeout, -1 on an error. */
static int conn_wait_input(struct conn *c, int ms)
{
    struct pollfd pfd = {c->fd, POLLIN, 0};
    int rc = poll(&pfd, 1, ms);

    return rc > 0 ? 1 : rc;
}

/* Write all of iov[0..n-1] (consumed); with more, the pieces leave with
 * what follows (MSG_MORE). Returns 0, or -1 with errno set. */
static int conn_writev(struct conn *c, struct iovec *iov, int n, int more)
{
    return writev_all(c->fd, iov, n, more);
}

/* Write all of buf. Returns 0, or -1 with errno set. */
static int conn_write(struct conn *c, const void *buf, size_t len)
{
    return write_all(c->fd, buf, len);
}

/* Send at most len bytes of file_fd from *pos (advanced). Returns the
 * bytes sent, 0 when the file has none there, or -1 with errno set. */
static ssize_t conn_sendfile(struct conn *c, int file_fd, off_t *pos,
                             size_t len)
{
    return sendfile(c->fd, file_fd, pos, len);
}

/* The local address (numeric, no brackets; an IPv4-mapped IPv6 address
 * as IPv4) and port of c, into host[INET6_ADDRSTRLEN] and port[8].
 * Returns 0, or -1 when c is not a socket (--cgi). */
static int conn_local_name(struct conn *c, char *host, char *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(c->fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, INET6_ADDRSTRLEN, port,
                    8, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return -1;
    if (strncmp(host, "::ffff:", 7) == 0 && strchr(host, '.') != NULL)
        memmove(host, host + 7, strlen(host + 7) + 1);
    return 0;
}

/* Close c at once (no-op when it is not open). */
static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Close a client connection after letting it read what was sent: stop
 * writing, then drain its input for at most OFFLOAD_LINGER_MS (a
 * lingering close: a reset would destroy an answer not yet read). */
static void conn_close_lingering(struct conn *c)
{
    char sink[4096];
    long long deadline = now_ms() + OFFLOAD_LINGER_MS;

    shutdown(c->fd, SHUT_WR);
    while (now_ms() < deadline) {
        if (conn_wait_input(c, OFFLOAD_LINGER_TICK_MS) <= 0 ||
            conn_read(c, sink, sizeof(sink)) <= 0)
            break;
    }
    conn_close(c);
}

/* ======================================================================
 * Parsing: client requests, paths, ranges, settings, base responses
 * ====================================================================== */

/* Value of a hex digit, or -1. */
static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* tchar of RFC 9110: the characters of a token. */
static int is_tchar(int c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Is c allowed inside a field value (VCHAR, obs-text, SP, HTAB)? */
static int is_field_char(int c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Step through a comma-separated header list (RFC 9110 5.6.1): finds the
 * next non-empty element at or after p, without its surrounding blanks.
 * Returns the position after it (pass it back for the next one) with
 * *start and *len set, or NULL when there is none.
 */
static const char *list_next(const char *p, const char **start, size_t *len)
{
    const char *end;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return NULL;
        *start = p;
        while (*p && *p != ',')
            p++;
        end = p;
        while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *len = (size_t)(end - *start);
        if (*len > 0)
            return p;
    }
}

/* Does the comma-separated token list in value contain token? */
static int header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token), len;
    const char *p = value, *start;

    while ((p = list_next(p, &start, &len)) != NULL) {
        if (len == tl && strncasecmp(start, token, tl) == 0)
            return 1;
    }
    return 0;
}

/*
 * Find the end of a header block in buf[0..len): the offset just past
 * CRLF CRLF, or 0 if it is not there yet. Leading empty lines are allowed
 * (RFC 9112 2.2) and counted in the block.
 */
static size_t head_block_end(const char *buf, size_t len)
{
    size_t i = 0;

    while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
        i += 2;
    for (; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
            buf[i + 3] == '\n')
            return i + 4;
    }
    return 0;
}

/*
 * Split the header lines of a block that starts at *pos and store each
 * field through the callback. Used for requests and base responses alike:
 * it rejects obs-fold, whitespace before the colon, bare CR or LF, NUL
 * and control characters. Lines are NUL-terminated in place.
 * Returns 0, or -1 for a malformed block, -2 for too many fields.
 */
static int head_split_fields(char *buf, size_t end, size_t pos,
                             int (*field)(void *ctx, char *name, char *value),
                             void *ctx)
{
    int count = 0;

    while (pos < end) {
        char *line = buf + pos;
        char *eol = memchr(line, '\r', end - pos);
        char *colon, *value, *vend;
        char *p;

        if (eol == NULL || eol + 1 >= buf + end || eol[1] != '\n')
            return -1;
        if (eol == line)
            return 0;   /* the empty line that ends the block */
        *eol = '\0';
        pos = (size_t)(eol - buf) + 2;
        if (line[0] == ' ' || line[0] == '\t')
            return -1;  /* obs-fold */
        for (p = line; p < eol; p++) {
            if (*p == '\n' || !is_field_char((unsigned char)*p))
                return -1;
        }
        colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            return -1;
        for (p = line; p < colon; p++) {
            if (!is_tchar((unsigned char)*p))
                return -1;  /* includes whitespace before the colon */
        }
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        vend = value + strlen(value);
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            *--vend = '\0';
        if (++count > OFFLOAD_MAX_HEADERS)
            return -2;
        if (field(ctx, line, value) != 0)
            return -1;
    }
    return -1;
}

/* The method named name (case-sensitive, RFC 9110 9.1): GET, HEAD,
 * another of RFC 9110 9.3 or PATCH (RFC 5789), or unknown. */
static enum http_method method_of(const char *name)
{
    static const char *const others[] = {"POST", "PUT", "DELETE", "CONNECT",
                                         "OPTIONS", "TRACE", "PATCH"};
    size_t i;

    if (strcmp(name, "GET") == 0)
        return METHOD_GET;
    if (strcmp(name, "HEAD") == 0)
        return METHOD_HEAD;
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        if (strcmp(name, others[i]) == 0)
            return METHOD_OTHER;
    }
    return METHOD_UNKNOWN;
}

/*
 * The one way a field sent on several lines is read (RFC 9110 5.3): as
 * one value, the lines joined in order with ", ". The first line's value
 * stays where it is; a second makes a copy in rq->lists, which later
 * lines extend. A singleton field (a date, If-Range) so combined is no
 * longer a valid value, and is ignored as the RFC says. Returns 0, or -1
 * when rq->lists is full (the request is refused).
 */
static int field_combine(struct request *rq, const char **slot,
                         const char *value)
{
    char *end = rq->lists + rq->lists_len;
    size_t room = sizeof(rq->lists) - rq->lists_len;
    size_t ol, vl = strlen(value);

    if (*slot == NULL) {
        *slot = value;
        return 0;
    }
    ol = strlen(*slot);
    if (rq->lists_len > 0 && *slot + ol + 1 == end) {
        /* the copy is the last one in lists: extend it in place */
        if (vl + 2 >= room)
            return -1;
        memcpy(end - 1, ", ", 2);
        memcpy(end + 1, value, vl + 1);
        rq->lists_len += vl + 2;
        return 0;
    }
    if (ol + vl + 3 > room)
        return -1;
    memcpy(end, *slot, ol);
    memcpy(end + ol, ", ", 2);
    memcpy(end + ol + 2, value, vl + 1);
    *slot = end;
    rq->lists_len += ol + vl + 3;
    return 0;
}

/* Is c allowed in a reg-name (RFC 3986 3.2.2) other than as part of a
 * percent-escape: unreserved or sub-delims? */
static int is_reg_name_char(int c)
{
    return isalnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/*
 * Is s[0..len) a valid authority of an http URI without userinfo,
 * uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2): an IPv6 literal
 * in brackets, or a non-empty reg-name or IPv4 address, then an optional
 * port of digits? An empty host is invalid for http (RFC 9110 4.2.1).
 */
static int authority_valid(const char *s, size_t len)
{
    size_t i = 0;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        char lit[INET6_ADDRSTRLEN];
        unsigned char bin[16];
        size_t n = close ? (size_t)(close - s) - 1 : 0;

        if (close == NULL || n == 0 || n >= sizeof(lit))
            return 0;
        memcpy(lit, s + 1, n);
        lit[n] = '\0';
        if (inet_pton(AF_INET6, lit, bin) != 1)
            return 0;
        i = n + 2;
    } else {
        for (; i < len && s[i] != ':'; i++) {
            if (s[i] == '%' && i + 2 < len &&
                hex_value((unsigned char)s[i + 1]) >= 0 &&
                hex_value((unsigned char)s[i + 2]) >= 0)
                i += 2;
            else if (!is_reg_name_char((unsigned char)s[i]))
                return 0;
        }
        if (i == 0)
            return 0;
    }
    if (i == len)
        return 1;
    if (s[i] != ':')
        return 0;
    for (i++; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* Per-field callback of request_parse(). Returns 0, or -1 to reject:
 * fields that must not repeat (Content-Length, Host, Range) on a second
 * line; list fields are combined (field_combine). */
static int request_field(void *ctx, char *name, char *value)
{
    struct request *rq = ctx;
    const char **list = NULL;

    if (strcasecmp(name, "Content-Length") == 0) {
        /* a body on GET or HEAD has no use here and invites smuggling */
        if (parse_length(value) != 0 || rq->seen_content_length)
            return -1;  /* a body, or a second Content-Length */
        rq->seen_content_length = 1;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        return -1;
    } else if (strcasecmp(name, "Host") == 0) {
        if (rq->host != NULL)
            return -1;
        rq->host = value;
    } else if (strcasecmp(name, "Range") == 0) {
        if (rq->range != NULL)
            return -1;
        rq->range = value;
    } else if (strcasecmp(name, "Connection") == 0) {
        list = &rq->connection;
    } else if (strcasecmp(name, "If-Range") == 0) {
        list = &rq->if_range;
    } else if (strcasecmp(name, "If-Match") == 0) {
        list = &rq->if_match;
    } else if (strcasecmp(name, "If-None-Match") == 0) {
        list = &rq->if_none_match;
    } else if (strcasecmp(name, "If-Modified-Since") == 0) {
        list = &rq->if_modified_since;
    } else if (strcasecmp(name, "If-Unmodified-Since") == 0) {
        list = &rq->if_unmodified_since;
    } else if (strcasecmp(name, "X-Forwarded-For") == 0) {
        list = &rq->x_forwarded_for;
    } else if (strcasecmp(name, "User-Agent") == 0) {
        rq->user_agent = value;
    } else if (strcasecmp(name, "Referer") == 0) {
        rq->referer = value;
    }
    return list != NULL ? field_combine(rq, list, value) : 0;
}

/*
 * Look at the request line at rq->buf + start before the head is whole:
 * an HTTP/0.9 request has no header block to wait for, and a line over
 * its limit is refused at once. Sets *eol to the line's CR. Returns
 * PARSE_OK to go on, PARSE_INCOMPLETE, or the HTTP status to answer.
 */
static int request_line_check(struct request *rq, size_t start, char **eol)
{
    char *line = rq->buf + start;
    const char *sp;

    *eol = memmem(line, rq->len - start, "\r\n", 2);
    if (*eol == NULL) {
        if (rq->len - start > OFFLOAD_MAX_REQUEST_LINE)
            return PARSE_URI_TOO_LONG;
        /* a bare LF ends nothing: refuse it rather than wait */
        if (memchr(line, '\n', rq->len - start) != NULL)
            return PARSE_BAD;
        return rq->len >= OFFLOAD_MAX_HEADER_BLOCK ? PARSE_HEADERS_TOO_LARGE
                                                   : PARSE_INCOMPLETE;
    }
    if ((size_t)(*eol - line) > OFFLOAD_MAX_REQUEST_LINE)
        return PARSE_URI_TOO_LONG;
    sp = memrchr(line, ' ', (size_t)(*eol - line));
    if (sp == NULL || *eol - sp < 6 || strncmp(sp + 1, "HTTP/", 5) != 0)
        return PARSE_BAD;
    if (sp[6] != '1')
        return PARSE_BAD_VERSION;
    return PARSE_OK;
}

/*
 * Split the NUL-terminated request line into method, target and version
 * and check each. Returns PARSE_OK with rq's method, target and version
 * set, or the HTTP status to answer.
 */
static int request_line_parse(struct request *rq, char *line)
{
    char *sp1, *sp2, *version;

    copy_string(rq->request_line, sizeof(rq->request_line), line);
    sp1 = strchr(line, ' ');
    if (sp1 == NULL)
        return PARSE_BAD;   /* HTTP/0.9 or garbage */
    *sp1 = '\0';
    sp2 = strchr(sp1 + 1, ' ');
    if (sp2 == NULL)
        return PARSE_BAD;
    *sp2 = '\0';
    version = sp2 + 1;
    rq->method_name = line;
    rq->target = sp1 + 1;
    if (*rq->method_name == '\0' || *rq->target == '\0')
        return PARSE_BAD;
    for (char *p = rq->method_name; *p; p++) {
        if (!is_tchar((unsigned char)*p))
            return PARSE_BAD;
    }
    for (char *p = rq->target; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return PARSE_BAD;
    }
    if (strncmp(version, "HTTP/", 5) != 0 || !isdigit((unsigned char)version[5]) ||
        version[6] != '.' || !isdigit((unsigned char)version[7]) ||
        version[8] != '\0')
        return PARSE_BAD;
    if (version[5] != '1')
        return PARSE_BAD_VERSION;
    rq->http_minor = version[7] - '0';
    rq->keep_alive = rq->http_minor >= 1;
    rq->method = method_of(rq->method_name);
    return PARSE_OK;
}

/* Forget the header fields of an earlier request in rq. */
static void request_fields_clear(struct request *rq)
{
    rq->seen_content_length = 0;
    rq->lists_len = 0;
    rq->host = rq->connection = rq->range = rq->if_range = NULL;
    rq->if_match = rq->if_none_match = NULL;
    rq->if_modified_since = rq->if_unmodified_since = NULL;
    rq->user_agent = rq->referer = rq->x_forwarded_for = NULL;
}

/*
 * Parse the request in rq->buf[0..rq->len). Returns PARSE_INCOMPLETE when
 * the header block has not fully arrived (and is within its limits),
 * PARSE_OK with rq's fields set, or the HTTP status to answer.
 */
static int request_parse(struct request *rq)
{
    char *eol;
    size_t end, start = 0;
    int rc;

    if (memchr(rq->buf, '\0', rq->len) != NULL)
        return PARSE_BAD;
    while (start + 1 < rq->len && rq->buf[start] == '\r' &&
           rq->buf[start + 1] == '\n')
        start += 2;
    rc = request_line_check(rq, start, &eol);
    if (rc != PARSE_OK)
        return rc;
    end = head_block_end(rq->buf, rq->len);
    if (end == 0)
        return rq->len >= OFFLOAD_MAX_HEADER_BLOCK ? PARSE_HEADERS_TOO_LARGE
                                                   : PARSE_INCOMPLETE;
    rq->head_len = end;
    *eol = '\0';
    rc = request_line_parse(rq, rq->buf + start);
    if (rc != PARSE_OK)
        return rc;
    request_fields_clear(rq);
    rc = head_split_fields(rq->buf, end, (size_t)(eol - rq->buf) + 2,
                           request_field, rq);
    if (rc == -2)
        return PARSE_HEADERS_TOO_LARGE;
    if (rc != 0)
        return PARSE_BAD;
    /* RFC 9112 3.2: HTTP/1.1 needs one valid Host; any request with an
     * invalid one is refused */
    if (rq->host == NULL ? rq->http_minor >= 1
                         : !authority_valid(rq->host, strlen(rq->host)))
        return PARSE_BAD;
    if (rq->connection != NULL && header_has_token(rq->connection, "close"))
        rq->keep_alive = 0;
    else if (rq->connection != NULL &&
             header_has_token(rq->connection, "keep-alive"))
        rq->keep_alive = 1;
    return PARSE_OK;
}

/*
 * The one place that decides whether a request path is acceptable.
 * target is an origin-form path without query. Writes the path to ask the
 * base for into out (runs of '/' merged, '.' segments removed as RFC 3986
 * 5.2.4 does, percent-escapes kept as sent) and returns out; returns
 * NULL when the path is unsafe or malformed: not starting with '/', a
 * '..' segment (also when written with escapes), an escaped NUL, a bad
 * escape, control characters, a fragment, or a result that does not fit
 * in outsz. The result is never longer
 * than target, so out may be target itself (sanitized in place).
 */
static char *path_sanitize(const char *target, char *out, size_t outsz)
{
    size_t o = 0;
    const char *p = target;

    if (*p != '/' || outsz < 2)
        return NULL;
    while (*p) {
        /* p is at a '/': merge the run, then examine one segment */
        char seg[4];    /* decoded start of the segment, enough for ".." */
        size_t seglen = 0, seg_out = o;
        int only_dots = 1;

        while (*p == '/')
            p++;
        if (o + 1 >= outsz)
            return NULL;
        out[o++] = '/';
        while (*p && *p != '/') {
            int c = (unsigned char)*p;
            size_t width = 1;

            if (c <= 0x20 || c == 0x7f || c == '#' || c == '?' || c == '\\')
                return NULL;
            if (c == '%') {
                int hi = hex_value((unsigned char)p[1]);
                int lo = hi < 0 ? -1 : hex_value((unsigned char)p[2]);
                if (hi < 0 || lo < 0)
                    return NULL;
                c = hi * 16 + lo;
                if (c == 0 || c == '/' || c == '\\')
                    return NULL;
                width = 3;
            }
            if (c != '.')
                only_dots = 0;
            if (seglen < sizeof(seg))
                seg[seglen] = (char)c;
            seglen++;
            if (o + width >= outsz)
                return NULL;
            memmove(out + o, p, width);   /* out may be target */
            o += width;
            p += width;
        }
        if (only_dots && seglen == 2)
            return NULL;
        if (only_dots && seglen == 1)
            o = *p ? seg_out : seg_out + 1;  /* "/a/./b" is "/a/b" */
    }
    out[o] = '\0';
    return out;
}

/* Parse one range-spec "a-b", "a-" or "-n" of length spec_len against a
 * body of len bytes. Returns 1 and sets *r when satisfiable, 0 when
 * syntactically valid but unsatisfiable, -1 when malformed. */
static int range_parse_spec(const char *spec, size_t spec_len, long long len,
                            struct byte_range *r)
{
    char a[24], b[24];
    const char *dash = memchr(spec, '-', spec_len);
    size_t al, bl;
    long long first, last;

    if (dash == NULL)
        return -1;
    al = (size_t)(dash - spec);
    bl = spec_len - al - 1;
    if (al >= sizeof(a) || bl >= sizeof(b))
        return -1;
    memcpy(a, spec, al);
    a[al] = '\0';
    memcpy(b, dash + 1, bl);
    b[bl] = '\0';
    if (al == 0) {
        long long suffix = parse_length(b);
        if (suffix < 0)
            return -1;
        if (suffix == 0 || len == 0)
            return 0;
        r->first = suffix >= len ? 0 : len - suffix;
        r->last = len - 1;
        return 1;
    }
    first = parse_length(a);
    if (first < 0)
        return -1;
    if (bl == 0) {
        last = len - 1;
    } else {
        last = parse_length(b);
        if (last < 0 || last < first)
            return -1;
        if (last >= len)
            last = len - 1;
    }
    if (first >= len)
        return 0;
    r->first = first;
    r->last = last;
    return 1;
}

/*
 * Parse a Range header against a body of len bytes (RFC 9110 14.2).
 * Fills up to max ranges into r and their count into *nr. Returns
 * RANGE_OK, RANGE_UNSATISFIABLE when every spec is beyond the end, or
 * RANGE_NONE when the header is absent, malformed, not in bytes, or has
 * more than max specs (the whole body is then sent, as RFC 9110 allows).
 */
static enum range_result range_parse(const char *h, long long len,
                                     struct byte_range *r, int max, int *nr)
{
    const char *p;
    int n = 0, specs = 0;

    *nr = 0;
    if (h == NULL || strncasecmp(h, "bytes=", 6) != 0)
        return RANGE_NONE;
    p = h + 6;
    for (;;) {
        const char *start, *end;
        int rc;

        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p && *p != ',')
            p++;
        end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > start) {
            if (++specs > max)
                return RANGE_NONE;
            rc = range_parse_spec(start, (size_t)(end - start), len, &r[n]);
            if (rc < 0)
                return RANGE_NONE;
            if (rc > 0)
                n++;
        }
        if (*p == '\0')
            break;
        p++;    /* the comma */
    }
    if (specs == 0)
        return RANGE_NONE;
    *nr = n;
    return n > 0 ? RANGE_OK : RANGE_UNSATISFIABLE;
}

/*
 * Does an If-Range value allow the ranges of an object with these
 * validators? A strong ETag must equal the object's (strong) ETag; a
 * date must equal Last-Modified exactly. Anything else does not match.
 */
static int if_range_matches(const char *if_range, const char *etag,
                            const char *last_modified)
{
    time_t want, have;

    if (if_range[0] == '"')
        return etag[0] == '"' && strcmp(if_range, etag) == 0;
    if (strncmp(if_range, "W/", 2) == 0)
        return 0;
    want = http_date_parse(if_range);
    have = http_date_parse(last_modified);
    return want != -1 && have != -1 && want == have;
}

/* Does an If-Match list match etag (strong comparison, RFC 9110
 * 13.1.1): "*", or the same strong ETag? */
static int if_match_matches(const char *list, const char *etag)
{
    const char *p = list, *start;
    size_t el = strlen(etag), len;

    while ((p = list_next(p, &start, &len)) != NULL) {
        if (len == 1 && *start == '*')
            return 1;
        if (etag[0] == '"' && len == el && strncmp(start, etag, el) == 0)
            return 1;
    }
    return 0;
}

/* Compare a date field's value with a Last-Modified value: 1 when the
 * latter is not after it, 0 when it is, -1 when either is not one valid
 * HTTP-date (the field is then ignored). */
static int date_not_after(const char *field, const char *last_modified)
{
    time_t want = http_date_parse(field);
    time_t have = last_modified[0] ? http_date_parse(last_modified) : -1;

    if (want == -1 || have == -1)
        return -1;
    return have <= want;
}

/* Does an If-None-Match list match etag (weak comparison)? */
static int if_none_match_matches(const char *list, const char *etag)
{
    const char *want = etag_opaque(etag), *p = list, *start;
    size_t wl = strlen(want), len;

    while ((p = list_next(p, &start, &len)) != NULL) {
        if (len == 1 && *start == '*')
            return 1;   /* any current copy, with an ETag or without */
        if (*etag == '\0')
            continue;
        if (len > 2 && strncmp(start, "W/", 2) == 0) {
            start += 2;
            len -= 2;
        }
        if (len == wl && strncmp(start, want, wl) == 0)
            return 1;
    }
    return 0;
}

/* Parse a port number "1".."65535" into out. Returns 0 or -1. */
static int port_parse(const char *s, char *out, size_t outsz)
{
    long long v = parse_length(s);

    if (v < 1 || v > 65535 || strlen(s) >= outsz)
        return -1;
    snprintf(out, outsz, "%lld", v);
    return 0;
}

/*
 * Split "host:port", "[v6]:port" or "*:port" into host and port. An
 * empty or '*' host means every IPv4 address. Returns 0 or -1.
 */
static int listen_parse(const char *s, struct listen_spec *ls)
{
    const char *colon;
    size_t hl;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= sizeof(ls->host))
            return -1;
        memcpy(ls->host, s + 1, hl);
        ls->host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
        if (hl >= sizeof(ls->host) || memchr(s, ':', hl) != NULL)
            return -1;
        memcpy(ls->host, s, hl);
        ls->host[hl] = '\0';
        if (strcmp(ls->host, "*") == 0 || hl == 0)
            strcpy(ls->host, "0.0.0.0");
    }
    return port_parse(colon + 1, ls->port, sizeof(ls->port));
}

/*
 * Parse the authority "host[:port]" or "[v6addr][:port]" of a base URL,
 * the hl bytes at h, into cfg's base_host and base_port (80 without a
 * port). Returns 0, or -1 with *why set to what is wrong.
 */
static int base_authority_parse(const char *h, size_t hl,
                                struct settings *cfg, const char **why)
{
    const char *end = h + hl, *host = h, *hend;
    char port[8];
    size_t pl;

    if (h[0] == '[') {
        hend = memchr(h, ']', hl);
        host = h + 1;
        if (hend == NULL || hend == host ||
            (size_t)(hend - host) >= sizeof(cfg->base_host)) {
            *why = "has a malformed IPv6 address";
            return -1;
        }
    } else {
        hend = memchr(h, ':', hl);
        if (hend == NULL)
            hend = end;
        if (hend == h || (size_t)(hend - h) >= sizeof(cfg->base_host)) {
            *why = "has no host";
            return -1;
        }
    }
    memcpy(cfg->base_host, host, (size_t)(hend - host));
    cfg->base_host[hend - host] = '\0';
    for (const char *p = cfg->base_host; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr(".-:_", *p)) {
            *why = "has a malformed host name";
            return -1;
        }
    }
    if (h[0] == '[')
        hend++;
    strcpy(cfg->base_port, "80");
    if (hend == end)
        return 0;
    pl = (size_t)(end - hend - 1);
    if (*hend != ':' || pl == 0 || pl >= sizeof(port)) {
        *why = "has a malformed port";
        return -1;
    }
    memcpy(port, hend + 1, pl);
    port[pl] = '\0';
    if (port_parse(port, cfg->base_port, sizeof(cfg->base_port)) != 0) {
        *why = "has a malformed port";
        return -1;
    }
    return 0;
}

/*
 * Parse the base URL "http://host[:port][/prefix]" into cfg. Returns 0,
 * or -1 with *why set to what is wrong.
 */
static int base_url_parse(const char *url, struct settings *cfg,
                          const char **why)
{
    const char *h, *path;
    char prefix[OFFLOAD_MAX_CACHED_PATH];
    size_t hl;

    if (copy_string(cfg->base_url, sizeof(cfg->base_url), url) != 0) {
        *why = "too long";
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        *why = strncasecmp(url, "https://", 8) == 0
                   ? "https is not supported; give the base's http:// address"
                   : "must start with http://";
        return -1;
    }
    h = url + 7;
    path = h + strcspn(h, "/");
    hl = (size_t)(path - h);
    if (memchr(h, '?', hl) || memchr(h, '@', hl) || strchr(path, '?') ||
        strchr(path, '#')) {
        *why = "must not contain user info, a query or a fragment";
        return -1;
    }
    if (hl == 0 || hl >= sizeof(cfg->base_authority)) {
        *why = hl == 0 ? "has no host" : "too long";
        return -1;
    }
    memcpy(cfg->base_authority, h, hl);
    cfg->base_authority[hl] = '\0';
    if (base_authority_parse(h, hl, cfg, why) != 0)
        return -1;
    if (copy_string(cfg->base_prefix, sizeof(cfg->base_prefix), path) != 0) {
        *why = "too long";
        return -1;
    }
    if (path[0] != '\0' &&
        path_sanitize(path, prefix, sizeof(prefix)) == NULL) {
        /* it goes into every request line sent to the base */
        *why = "has a malformed or unsafe path";
        return -1;
    }
    hl = strlen(cfg->base_prefix);
    while (hl > 0 && cfg->base_prefix[hl - 1] == '/')
        cfg->base_prefix[--hl] = '\0';
    return 0;
}

/*
 * Find the SHA-256 in a Repr-Digest field (RFC 9530: a dictionary whose
 * members are algorithm=:base64:) or, with legacy, a Digest field (RFC
 * 3230: algorithm=base64, the name case-insensitive), and copy it into
 * out (room for OFFLOAD_SHA256_B64_LEN + 1). Other algorithms are passed
 * over. Returns 1 when one was found and is well formed, else 0.
 */
static int digest_field_sha256(const char *value, int legacy, char *out)
{
    const char *p = value, *item;
    size_t len;

    while ((p = list_next(p, &item, &len)) != NULL) {
        const char *eq = memchr(item, '=', len);
        size_t nl = eq ? (size_t)(eq - item) : 0, vl = eq ? len - nl - 1 : 0;
        const char *v = eq ? eq + 1 : NULL;
        char b64[OFFLOAD_SHA256_B64_LEN + 1];

        if (v == NULL || nl != 7)
            continue;
        if (legacy ? strncasecmp(item, "sha-256", 7) != 0
                   : strncmp(item, "sha-256", 7) != 0)
            continue;
        if (!legacy) {
            if (vl < 2 || v[0] != ':' || v[vl - 1] != ':')
                return 0;
            v++;
            vl -= 2;
        }
        if (vl != OFFLOAD_SHA256_B64_LEN)
            return 0;
        memcpy(b64, v, vl);
        b64[vl] = '\0';
        if (!sha256_b64_valid(b64))
            return 0;
        memcpy(out, b64, vl + 1);
        return 1;
    }
    return 0;
}

/* Copy a base header value into a fixed field; too long is an error. */
static int base_value(char *dst, size_t dstsz, const char *value)
{
    return copy_string(dst, dstsz, value);
}

/* Per-field callback of base_response_parse(). Returns 0 or -1. */
static int base_field(void *ctx, char *name, char *value)
{
    struct base_response *br = ctx;

    if (strcasecmp(name, "Content-Length") == 0) {
        long long v = parse_length(value);
        if (v < 0 || (br->content_length >= 0 && br->content_length != v))
            return -1;
        br->content_length = v;
    } else if (strcasecmp(name, "ETag") == 0) {
        return base_value(br->etag, sizeof(br->etag), value);
    } else if (strcasecmp(name, "Last-Modified") == 0) {
        return base_value(br->last_modified, sizeof(br->last_modified), value);
    } else if (strcasecmp(name, "Content-Type") == 0) {
        return base_value(br->content_type, sizeof(br->content_type), value);
    } else if (strcasecmp(name, "Content-Range") == 0) {
        return base_value(br->content_range, sizeof(br->content_range), value);
    } else if (strcasecmp(name, "Location") == 0) {
        return base_value(br->location, sizeof(br->location), value);
    } else if (strcasecmp(name, "Repr-Digest") == 0) {
        digest_field_sha256(value, 0, br->sha256);
    } else if (strcasecmp(name, "Digest") == 0) {
        if (br->sha256[0] == '\0')   /* Repr-Digest, when both, wins */
            digest_field_sha256(value, 1, br->sha256);
    } else if (strcasecmp(name, "WWW-Authenticate") == 0) {
        br->www_authenticate = 1;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        br->chunked = 1;    /* any coding: not a plain, countable body */
    } else if (strcasecmp(name, "Connection") == 0) {
        if (header_has_token(value, "close"))
            br->keep_alive = 0;
        else if (header_has_token(value, "keep-alive"))
            br->keep_alive = 1;
    }
    return 0;
}

/*
 * Parse the response head in br->buf[0..br->len). Returns 0 with br's
 * fields set, 1 when incomplete (and within limits), -1 when malformed
 * or too large.
 */
static int base_response_parse(struct base_response *br)
{
    char *eol;
    size_t end;
    const char *s = br->buf;

    end = head_block_end(br->buf, br->len);
    if (end == 0)
        return br->len >= OFFLOAD_MAX_HEADER_BLOCK ? -1 : 1;
    if (memchr(br->buf, '\0', end) != NULL)
        return -1;
    br->head_len = end;
    eol = memmem(br->buf, end, "\r\n", 2);
    *eol = '\0';
    if (strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
        s[8] != ' ' || !isdigit((unsigned char)s[9]) ||
        !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11]) ||
        (s[12] != ' ' && s[12] != '\0'))
        return -1;
    br->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (br->status < 100)
        return -1;
    br->keep_alive = s[7] == '1';
    br->content_length = -1;
    br->etag[0] = br->last_modified[0] = br->content_type[0] = '\0';
    br->content_range[0] = br->location[0] = br->sha256[0] = '\0';
    br->www_authenticate = br->chunked = 0;
    return head_split_fields(br->buf, end, (size_t)(eol - br->buf) + 2,
                             base_field, br) == 0 ? 0 : -1;
}

/* ======================================================================
 * Settings: one table for the config file and the flags
 *
 * g_setting_defs below is the one description of every setting: its
 * config-file name, its flag, its kind, where it is stored, its range and
 * its default. The config file, the flags, --help, --list-settings, the
 * range checks, the defaults and a reload all walk it. The kind decides
 * how a value is parsed, stored and shown (g_kinds).
 * ====================================================================== */

/* Parse "ADDR" or "ADDR/BITS" (IPv4 or IPv6) into c. Returns 0 or -1. */
static int cidr_parse(const char *s, struct cidr *c)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    int max;

    if (al == 0 || al >= sizeof(addr))
        return -1;
    memcpy(addr, s, al);
    addr[al] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, addr, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    if (slash == NULL) {
        c->bits = max;
        return 0;
    }
    {
        long long bits = parse_length(slash + 1);
        if (bits < 0 || bits > max)
            return -1;
        c->bits = (int)bits;
    }
    return 0;
}

/* Is the textual address addr inside c? */
static int cidr_contains(const struct cidr *c, const char *addr)
{
    unsigned char a[16];
    int full, rest;

    if (inet_pton(c->family, addr, a) != 1)
        return 0;
    full = c->bits / 8;
    rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return 0;
    return rest == 0 ||
           ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Parse "On" or "Off". Returns 1, 0, or -1. */
static int parse_on_off(const char *v)
{
    if (strcasecmp(v, "On") == 0)
        return 1;
    if (strcasecmp(v, "Off") == 0)
        return 0;
    return -1;
}

/* Parse "N", "NK", "NM", "NG" or "NT" (powers of 1024). Returns the
 * byte count, or -1. */
static long long parse_size(const char *v)
{
    char digits[24];
    size_t n = strspn(v, "0123456789");
    int shift = 0;
    long long base;

    if (n == 0 || n >= sizeof(digits))
        return -1;
    if (v[n] != '\0') {
        const char *units = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)v[n]));
        if (u == NULL || v[n + 1] != '\0')
            return -1;
        shift = 10 * (int)(u - units + 1);
    }
    memcpy(digits, v, n);
    digits[n] = '\0';
    base = parse_length(digits);
    if (base < 0 || (shift && base > (LLONG_MAX >> shift)))
        return -1;
    return base << shift;
}

/* Write n into buf as parse_size() reads it, in the largest unit that
 * divides it ("2M", "0", "1500"). Returns buf. */
static char *size_text(long long n, char *buf, size_t sz)
{
    const char *units = "TGMK";
    int i;

    for (i = 0; n > 0 && i < 4; i++) {
        long long unit = 1LL << (10 * (4 - i));
        if (n % unit == 0) {
            snprintf(buf, sz, "%lld%c", n / unit, units[i]);
            return buf;
        }
    }
    snprintf(buf, sz, "%lld", n);
    return buf;
}

/* The statuses DupeStatus may name. */
static const int g_refusal_statuses[] = {403, 429, 503};
#define N_REFUSAL_STATUSES \
    (sizeof(g_refusal_statuses) / sizeof(g_refusal_statuses[0]))

/* What a setting's value is. */
enum setting_kind {
    KIND_NUMBER,     /* a whole number from min to max; int */
    KIND_SIZE,       /* bytes, or a number with K, M, G or T; int or
                        long long, by the field's size */
    KIND_ON_OFF,     /* On or Off; int 1 or 0 */
    KIND_STATUS,     /* one of g_refusal_statuses; int */
    KIND_STRING,     /* any text that fits; char[] */
    KIND_URL_PATH,   /* a path starting with /, or Off (stored empty) */
    KIND_BASE_URL,   /* base_url_parse() fills every base_* field */
    KIND_LISTEN,     /* a list of ADDR:PORT; struct listen_spec[] */
    KIND_CIDR,       /* a list of ADDR[/BITS]; struct cidr[] */
    KIND_HOST_NAME   /* a list of HOST[:PORT]; char[][] */
};

/* Properties of a setting beyond its kind. */
#define SETTING_REQUIRED 1u  /* must be given, unless a cache tool runs */
#define SETTING_AT_START 2u  /* fixed at start-up: a reload keeps it */

/*
 * One setting. Numbers, sizes, On/Off and statuses have their default
 * in def; other kinds in def_text (blank-separated for a list), or none
 * when it is NULL. For a list, max is its most entries.
 */
struct setting_def {
    const char *name;          /* config-file name */
    const char *flag;          /* command-line flag */
    const char *value;         /* the value in the syntax, e.g. SECONDS */
    enum setting_kind kind;
    size_t at;                 /* offsetof its field in struct settings */
    size_t size;               /* sizeof that field */
    size_t count_at;           /* lists: offsetof the count of entries */
    long long min, max;
    long long def;
    const char *def_text;
    unsigned flags;            /* SETTING_* */
};

#define FIELD(f) .at = offsetof(struct settings, f), \
                 .size = sizeof(((struct settings *)0)->f)
#define LIST(f, n) FIELD(f), .count_at = offsetof(struct settings, n)
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static const struct setting_def g_setting_defs[] = {
    {"BaseURL", "--base", "http://HOST[:PORT][/PREFIX]", KIND_BASE_URL,
     FIELD(base_url), .flags = SETTING_REQUIRED},
    {"BaseAddress", "--base-address", "ADDR", KIND_STRING,
     FIELD(base_address)},
    {"Listen", "--listen", "ADDR:PORT", KIND_LISTEN, LIST(listen, nlisten),
     .max = OFFLOAD_MAX_LISTEN,
     .def_text = "0.0.0.0:" STRINGIFY(OFFLOAD_DEFAULT_PORT),
     .flags = SETTING_AT_START},
    {"CacheDir", "--cache-dir", "DIR", KIND_STRING, FIELD(cache_dir),
     .def_text = OFFLOAD_DEFAULT_CACHE_DIR},
    {"MaxDupeDownloads", "--max-dupe-downloads", "N", KIND_NUMBER,
     FIELD(max_dupe), .min = OFFLOAD_MIN_DUPE_DOWNLOADS,
     .max = OFFLOAD_MAX_DUPE_DOWNLOADS,
     .def = OFFLOAD_DEFAULT_MAX_DUPE_DOWNLOADS},
    {"MaxClients", "--max-clients", "N", KIND_NUMBER, FIELD(max_clients),
     .min = OFFLOAD_MIN_CLIENTS, .max = OFFLOAD_MAX_CLIENTS,
     .def = OFFLOAD_DEFAULT_MAX_CLIENTS, .flags = SETTING_AT_START},
    {"Timeout", "--timeout", "SECONDS", KIND_NUMBER, FIELD(timeout),
     .min = OFFLOAD_MIN_TIMEOUT, .max = OFFLOAD_MAX_TIMEOUT,
     .def = OFFLOAD_DEFAULT_TIMEOUT},
    {"AccessLog", "--access-log", "FILE", KIND_STRING, FIELD(access_log)},
    {"ErrorLog", "--error-log", "FILE", KIND_STRING, FIELD(error_log)},
    {"PidFile", "--pid-file", "FILE", KIND_STRING, FIELD(pid_file),
     .flags = SETTING_AT_START},
    {"User", "--user", "NAME", KIND_STRING, FIELD(user),
     .flags = SETTING_AT_START},
    {"TrustedProxy", "--trusted-proxy", "ADDR[/BITS]", KIND_CIDR,
     LIST(trusted, ntrusted), .max = OFFLOAD_MAX_TRUSTED_PROXIES},
    {"DupeStatus", "--dupe-status", NULL, KIND_STATUS, FIELD(dupe_status),
     .def = OFFLOAD_DEFAULT_DUPE_STATUS},
    {"RobotsTxt", "--robots-txt", NULL, KIND_ON_OFF, FIELD(robots_txt),
     .def = OFFLOAD_DEFAULT_ROBOTS_TXT},
    {"DocumentRoot", "--docroot", "DIR", KIND_STRING, FIELD(docroot)},
    {"CacheMaxSize", "--cache-max-size", "SIZE", KIND_SIZE,
     FIELD(cache_max_size), .min = 0, .max = LLONG_MAX,
     .def = OFFLOAD_DEFAULT_CACHE_MAX_SIZE},
    {"ServeStaleOnError", "--serve-stale-on-error", NULL, KIND_ON_OFF,
     FIELD(serve_stale), .def = OFFLOAD_DEFAULT_SERVE_STALE},
    {"ValidateInterval", "--validate-interval", "SECONDS", KIND_NUMBER,
     FIELD(validate_interval), .min = OFFLOAD_MIN_VALIDATE_INTERVAL,
     .max = OFFLOAD_MAX_VALIDATE_INTERVAL,
     .def = OFFLOAD_DEFAULT_VALIDATE_INTERVAL},
    {"NotSentLowat", "--notsent-lowat", "SIZE", KIND_SIZE,
     FIELD(notsent_lowat), .min = OFFLOAD_MIN_NOTSENT_LOWAT,
     .max = OFFLOAD_MAX_NOTSENT_LOWAT, .def = OFFLOAD_DEFAULT_NOTSENT_LOWAT},
    {"StatusPath", "--status-path", "/PATH|Off", KIND_URL_PATH,
     FIELD(status_path), .def_text = OFFLOAD_DEFAULT_STATUS_PATH},
    {"StatusAllow", "--status-allow", "ADDR[/BITS]", KIND_CIDR,
     LIST(status_allow, nstatus_allow), .max = OFFLOAD_MAX_TRUSTED_PROXIES,
     .def_text = OFFLOAD_DEFAULT_STATUS_ALLOW},
    {"ScrubRate", "--scrub-rate", "RATE", KIND_SIZE, FIELD(scrub_rate),
     .min = 0, .max = LLONG_MAX, .def = OFFLOAD_DEFAULT_SCRUB_RATE},
    {"ServerName", "--server-name", "HOST[:PORT]", KIND_HOST_NAME,
     LIST(server_names, nserver_names), .max = OFFLOAD_MAX_SERVER_NAMES},
};
#define N_SETTINGS (sizeof(g_setting_defs) / sizeof(g_setting_defs[0]))

/* A source (the file, the flags) marks in a bit mask the lists it has
 * begun: one bit per setting. */
_Static_assert(N_SETTINGS <= sizeof(unsigned long) * CHAR_BIT,
               "one bit per setting in a source's mask");

/* Where setting d is stored in c. */
static void *setting_field(struct settings *c, const struct setting_def *d)
{
    return (char *)c + d->at;
}

/* A list's count of entries in c. */
static int *setting_count(struct settings *c, const struct setting_def *d)
{
    return (int *)(void *)((char *)c + d->count_at);
}

/* Store number v into d's field, an int or a long long by its size. */
static void setting_store_number(struct settings *c,
                                 const struct setting_def *d, long long v)
{
    if (d->size == sizeof(int)) {
        int i = (int)v;
        memcpy(setting_field(c, d), &i, sizeof(i));
    } else {
        memcpy(setting_field(c, d), &v, sizeof(v));
    }
}

/* The kinds' parsers, below: each stores value v of setting d into c
 * and returns 0, or returns -1 with *why saying what is wrong with it (a
 * static string). */

/* KIND_NUMBER: a whole number from d->min to d->max. */
static int kind_number(struct settings *c, const struct setting_def *d,
                       const char *v, const char **why)
{
    static char msg[80];
    long long n = parse_length(v);

    if (n < d->min || n > d->max) {
        snprintf(msg, sizeof(msg), "expected a whole number from %lld to %lld",
                 d->min, d->max);
        *why = msg;
        return -1;
    }
    setting_store_number(c, d, n);
    return 0;
}

/* KIND_SIZE: bytes, or a number with K, M, G or T, within the range. */
static int kind_size(struct settings *c, const struct setting_def *d,
                     const char *v, const char **why)
{
    static char msg[120];
    char lo[24], hi[24];
    long long n = parse_size(v);

    if (n < 0 || n < d->min || n > d->max) {
        if (d->max == LLONG_MAX)
            snprintf(msg, sizeof(msg), "expected a size: a number, "
                     "optionally with K, M, G or T");
        else
            snprintf(msg, sizeof(msg), "expected a size from %s to %s: a "
                     "number, optionally with K, M, G or T",
                     size_text(d->min, lo, sizeof(lo)),
                     size_text(d->max, hi, sizeof(hi)));
        *why = msg;
        return -1;
    }
    setting_store_number(c, d, n);
    return 0;
}

/* KIND_ON_OFF: On (1) or Off (0). */
static int kind_on_off(struct settings *c, const struct setting_def *d,
                       const char *v, const char **why)
{
    int on = parse_on_off(v);

    if (on < 0) {
        *why = "expected On or Off";
        return -1;
    }
    setting_store_number(c, d, on);
    return 0;
}

/* Write the refusal statuses into buf, separated by sep, the last two
 * by last ("403|429|503", "403, 429 or 503"). Returns buf. */
static char *statuses_text(char *buf, size_t sz, const char *sep,
                           const char *last)
{
    size_t i, len = 0;

    buf[0] = '\0';
    for (i = 0; i < N_REFUSAL_STATUSES && len < sz; i++) {
        const char *before = i == 0                          ? ""
                             : i + 1 < N_REFUSAL_STATUSES ? sep
                                                          : last;
        len += (size_t)snprintf(buf + len, sz - len, "%s%d", before,
                                g_refusal_statuses[i]);
    }
    return buf;
}

/* KIND_STATUS: one of g_refusal_statuses. */
static int kind_status(struct settings *c, const struct setting_def *d,
                       const char *v, const char **why)
{
    static char msg[80];
    long long n = parse_length(v);
    size_t i;

    for (i = 0; i < N_REFUSAL_STATUSES; i++) {
        if (n == g_refusal_statuses[i]) {
            setting_store_number(c, d, n);
            return 0;
        }
    }
    memcpy(msg, "expected ", 9);
    statuses_text(msg + 9, sizeof(msg) - 9, ", ", " or ");
    *why = msg;
    return -1;
}

/* KIND_STRING: the text, if it fits the field. */
static int kind_string(struct settings *c, const struct setting_def *d,
                       const char *v, const char **why)
{
    if (copy_string(setting_field(c, d), d->size, v) != 0) {
        *why = "too long";
        return -1;
    }
    return 0;
}

/* KIND_URL_PATH: a path starting with / and without a query, or Off
 * (stored as the empty string). */
static int kind_url_path(struct settings *c, const struct setting_def *d,
                         const char *v, const char **why)
{
    if (strcasecmp(v, "Off") == 0)
        v = "";
    else if (v[0] != '/' || strchr(v, '?') != NULL) {
        *why = "expected a path starting with /, or Off";
        return -1;
    }
    return kind_string(c, d, v, why);
}

/* KIND_BASE_URL: base_url_parse() into the base_* fields. */
static int kind_base_url(struct settings *c, const struct setting_def *d,
                         const char *v, const char **why)
{
    (void)d;
    return base_url_parse(v, c, why);
}

/*
 * The next free entry of list setting d, whose entries are elem bytes
 * each: a pointer to it, or NULL with *why set when d->max are there.
 * The caller fills it and then counts it (*setting_count(c, d) += 1).
 */
static void *list_next_entry(struct settings *c, const struct setting_def *d,
                             size_t elem, const char *full, const char **why)
{
    int n = *setting_count(c, d);

    if (n >= d->max || (size_t)n >= d->size / elem) {
        *why = full;
        return NULL;
    }
    return (char *)setting_field(c, d) + (size_t)n * elem;
}

/* KIND_LISTEN: one more ADDR:PORT, up to d->max. */
static int kind_listen(struct settings *c, const struct setting_def *d,
                       const char *v, const char **why)
{
    struct listen_spec *ls = list_next_entry(c, d, sizeof(*ls),
                                             "too many addresses", why);

    if (ls == NULL)
        return -1;
    if (listen_parse(v, ls) != 0) {
        *why = "expected ADDR:PORT or [ADDR]:PORT";
        return -1;
    }
    (*setting_count(c, d))++;
    return 0;
}

/* KIND_CIDR: one more ADDR[/BITS], up to d->max. */
static int kind_cidr(struct settings *c, const struct setting_def *d,
                     const char *v, const char **why)
{
    struct cidr *block = list_next_entry(c, d, sizeof(*block),
                                         "too many addresses", why);

    if (block == NULL)
        return -1;
    if (cidr_parse(v, block) != 0) {
        *why = "expected an address or ADDR/BITS";
        return -1;
    }
    (*setting_count(c, d))++;
    return 0;
}

/* KIND_HOST_NAME: one more HOST[:PORT] (a name, not an address
 * literal in brackets), up to d->max. */
static int kind_host_name(struct settings *c, const struct setting_def *d,
                          const char *v, const char **why)
{
    char *name = list_next_entry(c, d, OFFLOAD_MAX_SERVER_NAME + 1,
                                 "too many names", why);

    if (name == NULL)
        return -1;
    if (!authority_valid(v, strlen(v)) || v[0] == '[' ||
        copy_string(name, OFFLOAD_MAX_SERVER_NAME + 1, v) != 0) {
        *why = "expected a host name, optionally with :PORT";
        return -1;
    }
    (*setting_count(c, d))++;
    return 0;
}

/* What each kind is: its value in the syntax when the kind fixes it,
 * whether it is a list (a source's first value replaces the list the
 * sources before it gave), whether it is a number (default in def), and
 * its parser. Indexed by enum setting_kind. */
static const struct {
    const char *value;
    int is_list;
    int is_number;
    int (*parse)(struct settings *c, const struct setting_def *d,
                 const char *v, const char **why);
} g_kinds[] = {
    [KIND_NUMBER] = {NULL, 0, 1, kind_number},
    [KIND_SIZE] = {NULL, 0, 1, kind_size},
    [KIND_ON_OFF] = {"On|Off", 0, 1, kind_on_off},
    [KIND_STATUS] = {NULL, 0, 1, kind_status},
    [KIND_STRING] = {NULL, 0, 0, kind_string},
    [KIND_URL_PATH] = {NULL, 0, 0, kind_url_path},
    [KIND_BASE_URL] = {NULL, 0, 0, kind_base_url},
    [KIND_LISTEN] = {NULL, 1, 0, kind_listen},
    [KIND_CIDR] = {NULL, 1, 0, kind_cidr},
    [KIND_HOST_NAME] = {NULL, 1, 0, kind_host_name},
};

/*
 * Set d from value v, one source's word for it. begun is that source's
 * mask of the lists it has begun: its first value of a list replaces
 * the list before it (the default's, or the file's for a flag). Returns
 * 0, or -1 with *why.
 */
static int setting_apply(struct settings *c, const struct setting_def *d,
                         const char *v, unsigned long *begun, const char **why)
{
    unsigned long bit = 1UL << (d - g_setting_defs);

    if (g_kinds[d->kind].is_list && !(*begun & bit)) {
        memset(setting_field(c, d), 0, d->size);
        *setting_count(c, d) = 0;
    }
    *begun |= bit;
    return g_kinds[d->kind].parse(c, d, v, why);
}

/* The compiled-in defaults, from the table. Dies if one of them does not
 * parse (a build's override of config.h that the setting refuses). */
static void settings_defaults(struct settings *c)
{
    size_t i;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting_def *d = &g_setting_defs[i];
        char words[OFFLOAD_MAX_CONFIG_LINE], *w, *save = NULL;
        unsigned long begun = 0;
        const char *why = NULL;

        if (g_kinds[d->kind].is_number) {
            setting_store_number(c, d, d->def);
            continue;
        }
        if (d->def_text == NULL)
            continue;
        copy_string(words, sizeof(words), d->def_text);
        for (w = strtok_r(words, " ", &save); w != NULL;
             w = strtok_r(NULL, " ", &save))
            if (setting_apply(c, d, w, &begun, &why) != 0)
                die("the default of %s, %s: %s", d->name, w, why);
    }
}

/* Find a setting by config-file name (case-insensitive, as Apache's
 * directives) or by flag. Returns it or NULL. */
static const struct setting_def *setting_find(const char *name, int by_flag)
{
    size_t i;

    for (i = 0; i < N_SETTINGS; i++) {
        if (by_flag ? strcmp(name, g_setting_defs[i].flag) == 0
                    : strcasecmp(name, g_setting_defs[i].name) == 0)
            return &g_setting_defs[i];
    }
    return NULL;
}

/* The value part of d's syntax ("SECONDS", "On|Off"), in buf. */
static const char *setting_syntax(const struct setting_def *d, char *buf,
                                  size_t sz)
{
    if (d->kind == KIND_STATUS)
        return statuses_text(buf, sz, "|", "|");
    return g_kinds[d->kind].value ? g_kinds[d->kind].value : d->value;
}

/* d's default as a value of the setting ("45", "2M", "On", "127.0.0.0/8
 * and ::1"), or "none", in buf. */
static const char *setting_default(const struct setting_def *d, char *buf,
                                   size_t sz)
{
    const char *w = d->def_text;
    size_t len = 0;

    if (d->kind == KIND_SIZE)
        return size_text(d->def, buf, sz);
    if (d->kind == KIND_ON_OFF)
        return d->def ? "On" : "Off";
    if (g_kinds[d->kind].is_number) {
        snprintf(buf, sz, "%lld", d->def);
        return buf;
    }
    if (w == NULL)
        return "none";
    buf[0] = '\0';
    while (*w && len + 1 < sz) {
        size_t wl = strcspn(w, " ");
        const char *sep = len == 0 ? "" : strchr(w, ' ') ? ", " : " and ";
        len += (size_t)snprintf(buf + len, sz - len, "%s%.*s", sep, (int)wl, w);
        w += wl + strspn(w + wl, " ");
    }
    return buf;
}

/* d's range ("1 to 3600", "0 to 64M", "repeatable, up to 16"), or "",
 * in buf. */
static const char *setting_range(const struct setting_def *d, char *buf,
                                 size_t sz)
{
    char lo[24], hi[24];

    if (g_kinds[d->kind].is_list)
        snprintf(buf, sz, "repeatable, up to %lld", d->max);
    else if (d->kind == KIND_NUMBER)
        snprintf(buf, sz, "%lld to %lld", d->min, d->max);
    else if (d->kind == KIND_SIZE && d->max != LLONG_MAX)
        snprintf(buf, sz, "%s to %s", size_text(d->min, lo, sizeof(lo)),
                 size_text(d->max, hi, sizeof(hi)));
    else
        buf[0] = '\0';
    return buf;
}

/* Split one config-file line in place into name and value: blanks
 * around both, and double quotes around the value, are removed. Returns
 * 0, or -1 for a blank line or a comment. */
static int config_line_split(char *line, char **name, char **value)
{
    char *n = line + strspn(line, " \t"), *v, *end = n + strlen(n);

    while (end > n && isspace((unsigned char)end[-1]))
        *--end = '\0';
    if (*n == '\0' || *n == '#')
        return -1;
    v = n + strcspn(n, " \t");
    if (*v != '\0')
        *v++ = '\0';
    v += strspn(v, " \t");
    if (v[0] == '"' && end - v >= 2 && end[-1] == '"') {
        end[-1] = '\0';
        v++;
    }
    *name = n;
    *value = v;
    return 0;
}

/*
 * Read a config file into c: one "Name value" per line, '#' comments,
 * blank lines. Returns 0, or -1 with "FILE:LINE: message" in err.
 */
static int config_parse_file(const char *path, struct settings *c, char *err,
                             size_t errsz)
{
    char line[OFFLOAD_MAX_CONFIG_LINE + 2], *name, *value;
    FILE *f = fopen(path, "r");
    unsigned long begun = 0;
    int lineno = 0, rc = -1;

    if (f == NULL) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        const struct setting_def *def;
        const char *why = NULL;
        size_t len = strlen(line);

        lineno++;
        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errsz, "%s:%d: line too long", path, lineno);
            goto out;
        }
        if (config_line_split(line, &name, &value) != 0)
            continue;
        def = setting_find(name, 0);
        if (def == NULL) {
            snprintf(err, errsz, "%s:%d: unknown setting %s", path, lineno,
                     name);
            goto out;
        }
        if (*value == '\0') {
            snprintf(err, errsz, "%s:%d: %s needs a value", path, lineno,
                     def->name);
            goto out;
        }
        if (setting_apply(c, def, value, &begun, &why) != 0) {
            snprintf(err, errsz, "%s:%d: %s %s: %s", path, lineno, def->name,
                     value, why);
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

/* The directory part of path into dir ("." for none, "/" for the root).
 * Returns dir. */
static char *path_dir(const char *path, char *dir, size_t dirsz)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash == NULL ? 0 : (size_t)(slash - path);

    if (dl == 0 || dl >= dirsz)
        copy_string(dir, dirsz, dl == 0 && slash ? "/" : ".");
    else {
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    return dir;
}

/*
 * Can a log or pid file be written at path? A file not there yet counts
 * if its directory is writable (it is created at start); with
 * missing_dir, also if that directory is missing and its parent is
 * writable (the directory is created at start too). Returns 0, or -1
 * with err naming what.
 */
static int path_writable(const char *what, const char *path, int missing_dir,
                         char *err, size_t errsz)
{
    char dir[PATH_MAX], parent[PATH_MAX];
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno == ENOENT) {
        path_dir(path, dir, sizeof(dir));
        if (access(dir, W_OK | X_OK) == 0)
            return 0;
        if (errno == ENOENT && missing_dir &&
            access(path_dir(dir, parent, sizeof(parent)), W_OK | X_OK) == 0)
            return 0;
    }
    snprintf(err, errsz, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

/* Check a directory setting: an existing directory with the access mode,
 * made absolute in place (dir has PATH_MAX bytes) and at most maxlen
 * long. Returns 0, or -1 with err naming what. */
static int dir_check(const char *what, char *dir, int mode, size_t maxlen,
                     char *err, size_t errsz)
{
    char real[PATH_MAX];
    const char *why = NULL;
    struct stat st;

    if (realpath(dir, real) == NULL || stat(real, &st) != 0)
        why = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        why = "not a directory";
    else if (access(real, mode) != 0)
        why = strerror(errno);
    else if (strlen(real) > maxlen)
        why = "too long";
    if (why != NULL) {
        snprintf(err, errsz, "%s %s: %s", what, dir, why);
        return -1;
    }
    copy_string(dir, PATH_MAX, real);
    return 0;
}

/*
 * Check settings as a whole, after the file and the flags: what is
 * required, and that paths can be used. Makes CacheDir and DocumentRoot
 * absolute. Creates nothing. Returns 0, or -1 with err.
 */
static int settings_check(struct settings *c, char *err, size_t errsz)
{
    size_t i;

    for (i = 0; i < N_SETTINGS && g_tool == NULL; i++) {
        const struct setting_def *d = &g_setting_defs[i];
        if ((d->flags & SETTING_REQUIRED) &&
            *(char *)setting_field(c, d) == '\0') {
            char value[64];
            snprintf(err, errsz, "%s (%s) is required: give it in the config "
                     "file (%s %s) or with %s", d->name, d->flag, d->name,
                     setting_syntax(d, value, sizeof(value)), d->flag);
            return -1;
        }
    }
    if (dir_check("CacheDir (--cache-dir)", c->cache_dir, W_OK | X_OK,
                  OFFLOAD_MAX_CACHE_DIR, err, errsz) != 0)
        return -1;
    if (c->docroot[0] &&
        dir_check("DocumentRoot (--docroot)", c->docroot, R_OK | X_OK,
                  PATH_MAX, err, errsz) != 0)
        return -1;
    if (!g_cgi && c->access_log[0] &&
        path_writable("AccessLog (--access-log)", c->access_log, 0, err, errsz))
        return -1;
    if (c->error_log[0] &&
        path_writable("ErrorLog (--error-log)", c->error_log, 0, err, errsz))
        return -1;
    if (g_cgi)
        return 0;   /* the web server runs us: no pid file, no user */
    if (c->pid_file[0] &&
        path_writable("PidFile (--pid-file)", c->pid_file, 1, err, errsz))
        return -1;
    if (c->user[0] && getpwnam(c->user) == NULL) {
        snprintf(err, errsz, "User (--user) %s: no such user", c->user);
        return -1;
    }
    return 0;
}

/* ======================================================================
 * Cache
 *
 * One file per object: a metadata block of OFFLOAD_META_SIZE bytes (text
 * lines "name value", NUL padded) followed by the body. The file's name
 * is a hash of the key (base authority + path) under a two-level fan-out:
 *   CACHEDIR/ab/cd/abcd0123456789ef        complete, published copy
 *   CACHEDIR/ab/cd/abcd0123456789ef.part   copy being fetched
 *   CACHEDIR/ab/cd/abcd0123456789ef.lock   flock()ed by the fetcher
 * A copy is fetched into .part and renamed over the final name only when
 * its length checks out, so a partial copy never appears under it.
 * ====================================================================== */

/* dl_iterate_phdr() callback of pages_map_all(): read one byte of
 * every page of each loaded read-only segment of one object. The bytes
 * read belong to no object (they lie between and around them), which
 * AddressSanitizer would take for an overflow: it does not look here. */
__attribute__((no_sanitize_address))
static int pages_map_object(struct dl_phdr_info *info, size_t size, void *ctx)
{
    long page = *(const long *)ctx;
    int i;

    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t at, end;

        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R) ||
            (ph->p_flags & PF_W))
            continue;
        at = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(page - 1);
        end = info->dlpi_addr + ph->p_vaddr + ph->p_filesz;
        for (; at < end; at += (uintptr_t)page)
            (void)*(volatile const char *)at;
    }
    return 0;
}

/*
 * Have the parent map every page of the program's and its libraries'
 * code and data, before it forks anyone. A page of a file that only one
 * process maps counts as that process's own: the request path, zlib's
 * tables and the like are otherwise first touched by a connection child,
 * which then holds them privately, in every child (memory per download).
 */
static void pages_map_all(void)
{
    long page = sysconf(_SC_PAGESIZE);

    if (page > 0)
        dl_iterate_phdr(pages_map_object, &page);
}

/* A 64-bit hash of s from zlib's two checksums: crc32 high, adler32 low. */
static uint64_t hash64(const char *s, size_t len)
{
    uLong crc = crc32(0L, (const Bytef *)s, (uInt)len);
    uLong adler = adler32(1L, (const Bytef *)s, (uInt)len);

    return (uint64_t)(crc & 0xffffffffUL) << 32 | (adler & 0xffffffffUL);
}

/* Empty m: no validators, length -1. Only the first byte of each string
 * is written, so that a child touches the pages it uses and no more
 * (a memset() would dirty all of the 3 KiB; memory per download). */
static void meta_clear(struct object_meta *m)
{
    m->length = -1;
    m->sha256[0] = '\0';
    m->complete = m->abandoned = 0;
    m->etag[0] = m->last_modified[0] = m->content_type[0] = m->key[0] = '\0';
}

/* Write the first len bytes of a, then b and c, and a NUL at dst (which
 * has room). Returns the byte after the NUL. */
static char *name_join(char *dst, const char *a, size_t len, const char *b,
                       const char *c)
{
    size_t lb = strlen(b), lc = strlen(c);

    memmove(dst, a, len);
    memcpy(dst + len, b, lb);
    memcpy(dst + len + lb, c, lc);
    dst[len + lb + lc] = '\0';
    return dst + len + lb + lc + 1;
}

/*
 * Fill obj's key and file names for the path prefix + path, as asked of
 * the base (obj->base_path then points to it, inside the key). The name
 * is crc32 and adler32 of the key; a collision only makes two objects
 * share a slot (the key in the metadata tells them apart). Returns 0, or
 * -1 if the path is longer than OFFLOAD_MAX_PATH or a name would not fit.
 */
static int cache_object_init(struct object *obj, const char *prefix,
                             const char *path)
{
    char hex[HEX_KEY_LEN + 1];
    char *p = obj->names;
    size_t alen = strlen(g_cfg.base_authority);
    int n;

    obj->fd = obj->lock_fd = obj->notify_fd = -1;
    obj->growing = obj->stale = 0;
    obj->used = obj->validated = (struct timespec){0, 0};
    obj->data_offset = OFFLOAD_META_SIZE;
    meta_clear(&obj->meta);
    n = snprintf(p, OBJECT_KEY_MAX, "%s%s%s", g_cfg.base_authority, prefix,
                 path);
    if (n < 0 || n >= OBJECT_KEY_MAX || (size_t)n - alen > OFFLOAD_MAX_PATH)
        return -1;
    obj->key = p;
    obj->base_path = p + alen;
    p += n + 1;
    obj->hash = hash64(obj->key, (size_t)n);
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)obj->hash);
    n = snprintf(p, OBJECT_DIR_MAX, "%s/%.2s/%.2s", g_cfg.cache_dir, hex,
                 hex + 2);
    if (n < 0 || n >= OBJECT_DIR_MAX)
        return -1;
    obj->dir = p;
    p += n + 1;
    /* the rest is bounded by the directory's length: they fit */
    obj->path = p;
    p = name_join(p, obj->dir, (size_t)n, "/", hex);
    obj->part_path = p;
    p = name_join(p, obj->path, (size_t)n + 1 + HEX_KEY_LEN, ".part", "");
    obj->lock_path = p;
    name_join(p, obj->path, (size_t)n + 1 + HEX_KEY_LEN, ".lock", "");
    return 0;
}

/* Close whatever obj holds open. */
static void cache_object_close(struct object *obj)
{
    if (obj->fd >= 0)
        close(obj->fd);
    if (obj->lock_fd >= 0)
        close(obj->lock_fd);
    if (obj->notify_fd >= 0)
        close(obj->notify_fd);
    obj->fd = obj->lock_fd = obj->notify_fd = -1;
    obj->growing = 0;
}

/* Create obj's fan-out directories. Returns 0 or -1 with errno set. */
static int cache_make_dirs(const struct object *obj)
{
    char d[PATH_MAX];
    size_t len = strlen(obj->dir);

    memcpy(d, obj->dir, len + 1);
    d[len - 3] = '\0';  /* CACHEDIR/ab */
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return -1;
    if (mkdir(obj->dir, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Write m as a metadata block into block[OFFLOAD_META_SIZE]. Returns 0,
 * or -1 if it does not fit. */
static int meta_encode(const struct object_meta *m, char *block)
{
    int n;

    memset(block, 0, OFFLOAD_META_SIZE);
    n = snprintf(block, OFFLOAD_META_SIZE,
                 "%s\nkey %s\netag %s\nlast-modified %s\nlength %lld\n"
                 "type %s\nsha256 %s\nstate %s\n\n",
                 CACHE_MAGIC, m->key, m->etag, m->last_modified, m->length,
                 m->content_type, m->sha256,
                 m->complete    ? "complete"
                 : m->abandoned ? "abandoned"
                                : "partial");
    return n < 0 || n >= OFFLOAD_META_SIZE ? -1 : 0;
}

/* Parse a metadata block (in place: block is modified). Returns 0, or -1
 * if it is not one. */
static int meta_decode(char *block, size_t len, struct object_meta *m)
{
    char *line, *next;
    int have_key = 0, have_length = 0, have_state = 0;

    /* parsed in place: the block is NUL padded, so a NUL must end it */
    if (len < sizeof(CACHE_MAGIC) || memcmp(block, CACHE_MAGIC "\n",
                                            sizeof(CACHE_MAGIC)) != 0 ||
        memchr(block, '\0', len) == NULL)
        return -1;
    meta_clear(m);
    line = block + sizeof(CACHE_MAGIC);
    for (; line != NULL && *line != '\n' && *line != '\0'; line = next) {
        char *sp;

        next = strchr(line, '\n');
        if (next == NULL)
            return -1;
        *next++ = '\0';
        sp = strchr(line, ' ');
        if (sp == NULL)
            return -1;
        *sp++ = '\0';
        if (strcmp(line, "key") == 0) {
            have_key = copy_string(m->key, sizeof(m->key), sp) == 0;
        } else if (strcmp(line, "etag") == 0) {
            copy_string(m->etag, sizeof(m->etag), sp);
        } else if (strcmp(line, "last-modified") == 0) {
            copy_string(m->last_modified, sizeof(m->last_modified), sp);
        } else if (strcmp(line, "type") == 0) {
            copy_string(m->content_type, sizeof(m->content_type), sp);
        } else if (strcmp(line, "length") == 0) {
            m->length = parse_length(sp);
            have_length = m->length >= 0;
        } else if (strcmp(line, "sha256") == 0) {
            if (sha256_b64_valid(sp))
                copy_string(m->sha256, sizeof(m->sha256), sp);
        } else if (strcmp(line, "state") == 0) {
            m->complete = strcmp(sp, "complete") == 0;
            m->abandoned = strcmp(sp, "abandoned") == 0;
            have_state = 1;
        }
    }
    return have_key && have_length && have_state ? 0 : -1;
}

/* Describe the version the base announced, for object key. */
static void meta_from_base(struct object_meta *m, const char *key,
                           const struct base_response *br)
{
    meta_clear(m);
    copy_string(m->key, sizeof(m->key), key);
    copy_string(m->etag, sizeof(m->etag), br->etag);
    copy_string(m->last_modified, sizeof(m->last_modified), br->last_modified);
    copy_string(m->content_type, sizeof(m->content_type), br->content_type);
    copy_string(m->sha256, sizeof(m->sha256), br->sha256);
    m->length = br->content_length;
}

/*
 * The one rule for "the same version of a file": is m the version with
 * this length, ETag, Last-Modified and SHA-256? The ETags are compared
 * without W/ (Apache weakens the ETag of a file modified within the
 * second of the request, and strengthens it later, for the same bytes);
 * the digests only when both are known (sha256 may be "").
 */
static int version_same(const struct object_meta *m, long long length,
                        const char *etag, const char *last_modified,
                        const char *sha256)
{
    return m->length == length &&
           strcmp(etag_opaque(m->etag), etag_opaque(etag)) == 0 &&
           strcmp(m->last_modified, last_modified) == 0 &&
           (m->sha256[0] == '\0' || sha256[0] == '\0' ||
            strcmp(m->sha256, sha256) == 0);
}

/*
 * Is the stored version m the one the base describes? All validators
 * must be equal: ETag (compared without W/), Last-Modified and length.
 * Storing and comparing all three is what keeps a changed file with an
 * unchanged ETag (e.g. FileETag MTime alone) from being served stale.
 */
static int meta_matches(const struct object_meta *m, const char *key,
                        const struct object_meta *want)
{
    return strcmp(m->key, key) == 0 &&
           version_same(m, want->length, want->etag, want->last_modified,
                        want->sha256);
}

/* meta_read() for a block whose text is longer than its first read. */
static NOINLINE int meta_read_whole(int fd, struct object_meta *m)
{
    char block[OFFLOAD_META_SIZE];
    ssize_t n = pread(fd, block, sizeof(block), 0);

    if (n < (ssize_t)sizeof(CACHE_MAGIC))
        return -1;
    return meta_decode(block, (size_t)n, m);
}

/* Read and decode the metadata block of an open cache file. Returns 0,
 * or -1 if it is missing or malformed. The text is short and the rest
 * NUL padding: reading just its start keeps a whole page of buffer out
 * of every hit (memory per download). */
static int meta_read(int fd, struct object_meta *m)
{
    char block[OFFLOAD_META_FIRST_READ];
    ssize_t n = pread(fd, block, sizeof(block), 0);

    if (n < (ssize_t)sizeof(CACHE_MAGIC))
        return -1;
    if (n == (ssize_t)sizeof(block) && memchr(block, '\0', sizeof(block)) == NULL)
        return meta_read_whole(fd, m);
    return meta_decode(block, (size_t)n, m);
}

/*
 * Open obj's complete copy, whatever version it is, and hold a shared
 * flock() on it while it is served, so that eviction passes it by.
 * Returns 0 with obj->fd, obj->meta and *st set, or -1 (none, or not
 * whole, or being evicted right now).
 */
static int cache_open_stored(struct object *obj, struct stat *st)
{
    int fd = open(obj->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (meta_read(fd, &obj->meta) != 0 || !obj->meta.complete ||
        strcmp(obj->meta.key, obj->key) != 0 || fstat(fd, st) != 0 ||
        st->st_size != OFFLOAD_META_SIZE + obj->meta.length ||
        st->st_nlink == 0 || flock(fd, LOCK_SH | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    obj->fd = fd;
    obj->growing = 0;
    obj->used = st->st_atim;
    obj->validated = st->st_mtim;
    return 0;
}

/*
 * Note a hit on an open complete copy: its access time is the last use
 * (eviction removes the least recently used first); when the base has
 * just confirmed it, its modification time becomes the last validation
 * (ValidateInterval counts from there). A copy touched less than
 * OFFLOAD_TOUCH_INTERVAL_MS ago is left alone: a hot file then costs an
 * inode update per interval, not one per request.
 */
static void cache_touch(const struct object *obj, int validated)
{
    struct timespec t[2];
    long long now;

    clock_gettime(CLOCK_REALTIME, &t[0]);
    now = timespec_ms(&t[0]);
    if (now - timespec_ms(&obj->used) < OFFLOAD_TOUCH_INTERVAL_MS &&
        (!validated ||
         now - timespec_ms(&obj->validated) < OFFLOAD_TOUCH_INTERVAL_MS))
        return;
    t[0].tv_sec = 0;
    t[0].tv_nsec = UTIME_NOW;
    t[1].tv_sec = 0;
    t[1].tv_nsec = validated ? UTIME_NOW : UTIME_OMIT;
    if (futimens(obj->fd, t) != 0) {
        /* not ours (another user's cache): LRU order is then by fetch */
    }
}

/*
 * Open the complete copy of obj if it is the version want describes.
 * Returns 0 with obj->fd and obj->meta set, or -1 (no current copy).
 */
static int cache_open_complete(struct object *obj,
                               const struct object_meta *want)
{
    struct stat st;

    if (cache_open_stored(obj, &st) != 0)
        return -1;
    if (!meta_matches(&obj->meta, obj->key, want)) {
        cache_object_close(obj);
        return -1;
    }
    return 0;
}

/*
 * Open the copy being fetched, if it is of the version want describes,
 * for streaming while it grows. Returns 0 with obj->fd, obj->lock_fd and
 * obj->meta set, or -1.
 */
static int cache_open_part(struct object *obj, const struct object_meta *want)
{
    int fd = open(obj->part_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (meta_read(fd, &obj->meta) != 0 ||
        !meta_matches(&obj->meta, obj->key, want)) {
        close(fd);
        return -1;
    }
    obj->lock_fd = open(obj->lock_path, O_RDONLY | O_CLOEXEC);
    if (obj->lock_fd < 0) {
        close(fd);
        return -1;
    }
    obj->fd = fd;
    obj->growing = 1;
    return 0;
}

/*
 * Try to become obj's fetcher. Returns a descriptor holding the exclusive
 * flock() (released by the kernel whenever its holder dies), -2 if
 * another process holds it, or -1 on an error (errno set).
 */
static int cache_lock_fetch(struct object *obj)
{
    int fd;

    if (cache_make_dirs(obj) != 0)
        return -1;
    fd = open(obj->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        close(fd);
        return busy ? -2 : -1;
    }
    return fd;
}

/* Is obj's fetcher gone (its lock free)? Needs obj->lock_fd. */
static int cache_fetcher_gone(const struct object *obj)
{
    if (flock(obj->lock_fd, LOCK_SH | LOCK_NB) != 0)
        return 0;
    flock(obj->lock_fd, LOCK_UN);   /* never keep a fetcher out */
    return 1;
}

/*
 * Feed bytes [0, len) of the body in fd (after its metadata block) to
 * the SHA-256 in sha. Returns how many were read: len, or fewer when the
 * file ended or failed first.
 */
static long long body_hash(int fd, long long len, EVP_MD_CTX *sha)
{
    static char buf[OFFLOAD_IO_BUFFER];
    long long pos = 0;

    while (pos < len) {
        size_t n = (size_t)(len - pos < (long long)sizeof(buf)
                                ? len - pos : (long long)sizeof(buf));
        ssize_t got = pread(fd, buf, n, OFFLOAD_META_SIZE + pos);

        if (got <= 0 || EVP_DigestUpdate(sha, buf, (size_t)got) != 1)
            break;
        pos += got;
    }
    return pos;
}

/*
 * As the fetcher (lock held), prepare the .part file for want, with sha
 * started. A .part left by a fetcher that died, of the same version, is
 * resumed: *offset and sha then cover the bytes already there.
 * Otherwise a new .part is written under a temporary name and renamed
 * into place, so readers never see one without its metadata. Returns an
 * O_RDWR descriptor, or -1 with errno set.
 */
NOINLINE static int cache_create_part(struct object *obj,
                                      const struct object_meta *want,
                                      long long *offset, EVP_MD_CTX *sha)
{
    char tmp[PATH_MAX + 64];
    char block[OFFLOAD_META_SIZE];
    struct object_meta old;
    struct stat st;
    int fd;

    *offset = 0;
    fd = open(obj->part_path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        if (meta_read(fd, &old) == 0 && meta_matches(&old, obj->key, want) &&
            fstat(fd, &st) == 0 && st.st_size > OFFLOAD_META_SIZE &&
            st.st_size <= OFFLOAD_META_SIZE + want->length) {
            /* resume: the digest must cover what is already there */
            long long done = st.st_size - OFFLOAD_META_SIZE;
            if (sha256_start(sha) == 0 && body_hash(fd, done, sha) == done) {
                *offset = done;
                return fd;
            }
        }
        close(fd);
    }
    if (sha256_start(sha) != 0) {
        errno = ENOMEM;
        return -1;
    }
    if (meta_encode(want, block) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", obj->path, (long)getpid());
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write_all(fd, block, sizeof(block)) != 0 ||
        rename(tmp, obj->part_path) != 0) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return fd;
}

/*
 * As the fetcher, publish a fully written .part: store the final
 * metadata and rename it over the complete copy's name. Returns 0, or -1
 * (the .part is then removed).
 */
static int cache_publish(struct object *obj, int fd, struct object_meta *m)
{
    char block[OFFLOAD_META_SIZE];
    struct stat old;

    if (stat(obj->path, &old) == 0) {
        METRIC_ADD(cache_bytes, -(int64_t)old.st_size);
        METRIC_ADD(cache_objects, -1);
    }
    m->complete = 1;
    if (meta_encode(m, block) != 0 ||
        pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) ||
        rename(obj->part_path, obj->path) != 0) {
        log_msg("error", "cannot publish %s: %s", obj->key, strerror(errno));
        unlink(obj->part_path);
        return -1;
    }
    METRIC_ADD(cache_bytes, OFFLOAD_META_SIZE + m->length);
    METRIC_ADD(cache_objects, 1);
    return 0;
}

/*
 * Log that obj cannot be cached, once per object rather than once per
 * request: a full or read-only disk would otherwise flood the log. The
 * table is shared by all processes; a slot taken by another object only
 * means that object's error may be logged again.
 */
static void cache_log_error(const struct object *obj, const char *what)
{
    uint64_t *slot;

    if (g_cache_errors != NULL) {
        slot = &g_cache_errors[obj->hash % OFFLOAD_CACHE_ERROR_SLOTS];
        if (__atomic_exchange_n(slot, obj->hash, __ATOMIC_RELAXED) == obj->hash)
            return;
    }
    log_msg("error", "cannot cache %s in %s (%s: %s); serving it from the "
            "base without caching", obj->key, obj->dir, what, strerror(errno));
}

/* Remove obj's complete copy (the base said it is gone). */
static void cache_remove(const struct object *obj)
{
    struct stat st;

    if (stat(obj->path, &st) == 0 && unlink(obj->path) == 0) {
        METRIC_ADD(cache_bytes, -(int64_t)st.st_size);
        METRIC_ADD(cache_objects, -1);
        log_msg("info", "removed %s from the cache", obj->key);
    }
}

/*
 * Wait until obj's file holds at least `need` bytes. Readers of a copy
 * being fetched are woken by inotify as the fetcher writes; the timed
 * wait only re-checks that the fetcher is still alive. Returns 0, or -1
 * if the fetcher went away without writing them (died, or gave up and
 * removed the copy) or nothing arrived for the configured timeout.
 */
static int object_wait(struct object *obj, long long need)
{
    long long idle_since = now_ms();
    long long last_size = -1;

    for (;;) {
        struct stat st;
        struct pollfd pfd;
        char events[512];

        if (fstat(obj->fd, &st) != 0)
            return -1;
        if (st.st_size >= need)
            return 0;
        if (!obj->growing)
            return -1;
        if (st.st_size != last_size) {
            last_size = st.st_size;
            idle_since = now_ms();
        }
        if (obj->notify_fd < 0) {
            char proc[64];
            obj->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
            if (obj->notify_fd < 0)
                return -1;
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", obj->fd);
            if (inotify_add_watch(obj->notify_fd, proc,
                                  IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB |
                                      IN_DELETE_SELF | IN_MOVE_SELF) < 0)
                return -1;
            continue;   /* re-check: bytes may have come before the watch */
        }
        /* a failed fetch unlinks its .part: a new fetcher may hold the
         * lock by now, but this file will never grow again */
        if (st.st_nlink == 0 || cache_fetcher_gone(obj)) {
            if (fstat(obj->fd, &st) == 0 && st.st_size >= need)
                return 0;
            return -1;
        }
        if (now_ms() - idle_since > (long long)g_cfg.timeout * 1000)
            return -1;
        pfd.fd = obj->notify_fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, OFFLOAD_FOLLOW_CHECK_MS) > 0) {
            while (read(obj->notify_fd, events, sizeof(events)) > 0) {
                /* drain: one check covers them all */
            }
        }
    }
}

/* ======================================================================
 * Cache upkeep: the start-up scan, eviction, and the cache tools
 *
 * All of them walk the fan-out (CACHEDIR/xx/yy/NAME), so their cost is
 * proportional to the number of objects, never to the number of
 * requests. Eviction runs in the fetcher that has just published an
 * object, after its clients have all their bytes waiting for them, and
 * only when the cache is over CacheMaxSize; it takes it down to
 * OFFLOAD_EVICT_LOW_PERCENT of the cap so that the next round waits for
 * that much new data.
 * ====================================================================== */

/* One file met by cache_walk(). */
struct cache_entry {
    char path[PATH_MAX + 300];
    const char *name;               /* the last part of path */
    struct stat st;
};

/* Is name a two-hex-digit fan-out directory name? */
static int is_fanout_name(const char *name)
{
    return strlen(name) == 2 && isxdigit((unsigned char)name[0]) &&
           isxdigit((unsigned char)name[1]);
}

/*
 * Call fn for every file in the cache's fan-out directories (stat()ed,
 * not followed). Returns 0, or -1 if the cache directory cannot be read.
 */
static int cache_walk(void (*fn)(struct cache_entry *e, void *ctx), void *ctx)
{
    static struct cache_entry e;
    DIR *top = opendir(g_cfg.cache_dir);
    struct dirent *a;

    if (top == NULL)
        return -1;
    while ((a = readdir(top)) != NULL) {
        char d1[PATH_MAX];
        DIR *mid;
        struct dirent *b;

        if (!is_fanout_name(a->d_name))
            continue;
        snprintf(d1, sizeof(d1), "%.*s/%.2s", PATH_MAX - 64, g_cfg.cache_dir,
                 a->d_name);
        if ((mid = opendir(d1)) == NULL)
            continue;
        while ((b = readdir(mid)) != NULL) {
            char d2[PATH_MAX];
            DIR *low;
            struct dirent *c;

            if (!is_fanout_name(b->d_name))
                continue;
            snprintf(d2, sizeof(d2), "%.*s/%.2s", PATH_MAX - 16, d1, b->d_name);
            if ((low = opendir(d2)) == NULL)
                continue;
            while ((c = readdir(low)) != NULL) {
                int n;

                if (c->d_name[0] == '.')
                    continue;
                n = snprintf(e.path, sizeof(e.path), "%.*s/%.255s",
                             PATH_MAX - 16, d2, c->d_name);
                if (n < 0 || (size_t)n >= sizeof(e.path) ||
                    lstat(e.path, &e.st) != 0 || !S_ISREG(e.st.st_mode))
                    continue;
                e.name = strrchr(e.path, '/') + 1;
                fn(&e, ctx);
            }
            closedir(low);
        }
        closedir(mid);
    }
    closedir(top);
    return 0;
}

/* Is name that of a complete object (16 hex digits, nothing more)? */
static int is_object_name(const char *name)
{
    return strlen(name) == HEX_KEY_LEN &&
           strspn(name, "0123456789abcdef") == HEX_KEY_LEN;
}

/* Is the .lock beside an object file free (no fetcher at work)? */
static int cache_lock_free(const char *object_path)
{
    char lock[PATH_MAX + 48];
    int fd, free_;

    snprintf(lock, sizeof(lock), "%.*s.lock", HEX_KEY_LEN + PATH_MAX,
             object_path);
    fd = open(lock, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    free_ = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return free_;
}

/*
 * Open a cache file for the upkeep (the start-up scan, the cache tools,
 * the scrubber) without touching its access time, which is the copy's
 * last use for eviction: reading it for upkeep is no use. O_NOATIME is
 * the owner's (or root's) to ask; others read it as they may. Returns a
 * descriptor, or -1 with errno set.
 */
static int cache_open_upkeep(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);

    if (fd < 0 && errno == EPERM)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd;
}

/* Read a complete object's metadata and check its size. Returns 0. */
static int cache_entry_meta(const struct cache_entry *e, struct object_meta *m)
{
    int fd = cache_open_upkeep(e->path);
    int rc;

    if (fd < 0)
        return -1;
    rc = meta_read(fd, m);
    close(fd);
    if (rc != 0 || !m->complete ||
        e->st.st_size != OFFLOAD_META_SIZE + m->length)
        return -1;
    return 0;
}

/* Totals of a scan. */
struct scan_totals {
    long long bytes;
    long long objects;
    long long removed;
};

/* cache_walk() callback of the start-up scan. */
static void scan_entry(struct cache_entry *e, void *ctx)
{
    struct scan_totals *t = ctx;
    struct object_meta m;
    const char *dot = strchr(e->name, '.');
    char object_path[PATH_MAX + 32];

    if (is_object_name(e->name)) {
        if (cache_entry_meta(e, &m) == 0) {
            t->bytes += e->st.st_size;
            t->objects++;
            return;
        }
    } else if (dot != NULL && (size_t)(dot - e->name) == HEX_KEY_LEN &&
               (strcmp(dot, ".part") == 0 || strcmp(dot, ".lock") == 0 ||
                strncmp(dot, ".tmp.", 5) == 0)) {
        snprintf(object_path, sizeof(object_path), "%.*s",
                 (int)(dot - e->path), e->path);
        /* a fetch in progress (of a daemon still finishing) is left be */
        if (!cache_lock_free(object_path))
            return;
        /* a lock file is never removed: a fetcher may have opened it
         * a moment ago, and a second file of that name would let a
         * second fetcher in */
        if (strcmp(dot, ".lock") == 0)
            return;
    }
    if (unlink(e->path) == 0)
        t->removed++;
}

/*
 * At start-up: remove what interrupted fetches and crashes left (stale
 * .part and temporary files, objects whose metadata or size is wrong,
 * files that are no cache file at all) and count the cache's size.
 * Runs in a process of its own, so the daemon serves meanwhile.
 */
static void cache_scan(void)
{
    struct scan_totals t = {0, 0, 0};

    if (cache_walk(scan_entry, &t) != 0) {
        log_msg("error", "cannot read the cache %s: %s", g_cfg.cache_dir,
                strerror(errno));
        return;
    }
    if (g_shared != NULL) {
        __atomic_store_n(&g_shared->m.cache_bytes, t.bytes, __ATOMIC_RELAXED);
        __atomic_store_n(&g_shared->m.cache_objects, t.objects,
                         __ATOMIC_RELAXED);
    }
    log_msg("notice", "cache %s: %lld objects, %lld bytes; %lld leftovers "
            "removed", g_cfg.cache_dir, t.objects, t.bytes, t.removed);
}

/* Candidates for eviction, collected by evict_entry(). */
struct evict_list {
    struct evict_item {
        long long used;             /* atime in nanoseconds */
        off_t size;
        char *path;
    } *items;
    size_t n, cap;
    long long total;
};

/* cache_walk() callback of eviction: note every complete object. */
static void evict_entry(struct cache_entry *e, void *ctx)
{
    struct evict_list *l = ctx;

    if (!is_object_name(e->name))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        struct evict_item *items = realloc(l->items, cap * sizeof(*items));
        if (items == NULL)
            return;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n].used = (long long)e->st.st_atim.tv_sec * 1000000000LL +
                          e->st.st_atim.tv_nsec;
    l->items[l->n].size = e->st.st_size;
    l->items[l->n].path = strdup(e->path);
    if (l->items[l->n].path == NULL)
        return;
    l->total += e->st.st_size;
    l->n++;
}

/* qsort() order: least recently used first. */
static int evict_order(const void *a, const void *b)
{
    const struct evict_item *x = a, *y = b;

    return (x->used > y->used) - (x->used < y->used);
}

/*
 * If the cache is over CacheMaxSize, remove the least recently used
 * complete objects until it is at OFFLOAD_EVICT_LOW_PERCENT of it. An
 * object being read (a reader holds a shared flock on it) or fetched
 * (.part) is passed by. One process evicts at a time.
 */
static void cache_evict(void)
{
    struct evict_list l = {NULL, 0, 0, 0};
    char lock_path[PATH_MAX + 16];
    long long low;
    size_t i;
    int lock_fd;

    if (g_cfg.cache_max_size <= 0 ||
        (g_shared != NULL &&
         __atomic_load_n(&g_shared->m.cache_bytes, __ATOMIC_RELAXED) <=
             g_cfg.cache_max_size))
        return;
    snprintf(lock_path, sizeof(lock_path), "%s/.evict.lock", g_cfg.cache_dir);
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0)
        return;
    /* one round at a time; a round that was running when this object was
     * published may have missed it, so wait for it and look again */
    if (flock(lock_fd, LOCK_EX) != 0)
        goto out;
    if (g_shared != NULL &&
        __atomic_load_n(&g_shared->m.cache_bytes, __ATOMIC_RELAXED) <=
            g_cfg.cache_max_size)
        goto out;
    if (cache_walk(evict_entry, &l) != 0)
        goto out;
    qsort(l.items, l.n, sizeof(*l.items), evict_order);
    low = g_cfg.cache_max_size / 100 * OFFLOAD_EVICT_LOW_PERCENT;
    for (i = 0; i < l.n && l.total > low; i++) {
        int fd = open(l.items[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(l.items[i].path) == 0) {
            l.total -= l.items[i].size;
            METRIC_ADD(evictions, 1);
        }
        close(fd);
    }
    if (g_shared != NULL) {
        long long objects = 0;
        for (size_t j = 0; j < l.n; j++)
            objects += access(l.items[j].path, F_OK) == 0;
        __atomic_store_n(&g_shared->m.cache_bytes, l.total, __ATOMIC_RELAXED);
        __atomic_store_n(&g_shared->m.cache_objects, objects, __ATOMIC_RELAXED);
    }
out:
    for (i = 0; i < l.n; i++)
        free(l.items[i].path);
    free(l.items);
    close(lock_fd);
}

/* --cache-list: one line per file of the cache. */
static void list_entry(struct cache_entry *e, void *ctx)
{
    struct object_meta m;
    char when[32];
    struct tm tm;
    const char *dot = strchr(e->name, '.');
    int *count = ctx;

    gmtime_r(&e->st.st_atime, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (is_object_name(e->name)) {
        if (cache_entry_meta(e, &m) == 0)
            printf("%s\t%lld\t%s\tcomplete\n", m.key, m.length, when);
        else
            printf("%s\t%lld\t%s\tdamaged\n", e->name,
                   (long long)e->st.st_size, when);
        (*count)++;
    } else if (dot != NULL && strcmp(dot, ".part") == 0) {
        char object_path[PATH_MAX + 32];
        int fd = cache_open_upkeep(e->path);
        int ok = fd >= 0 && meta_read(fd, &m) == 0;

        if (fd >= 0)
            close(fd);
        snprintf(object_path, sizeof(object_path), "%.*s",
                 (int)(dot - e->path), e->path);
        printf("%s\t%lld\t%s\t%s\n", ok ? m.key : e->name,
               (long long)(e->st.st_size - OFFLOAD_META_SIZE), when,
               cache_lock_free(object_path) ? "interrupted" : "fetching");
    }
}

/*
 * Check the complete copy open on fd, whose metadata is m: are its bytes
 * the ones whose SHA-256 was stored when it was filled? Returns 1 when
 * they are, 0 when they are not (or the file is short), -1 when it has
 * no digest to check against (a copy kept from before digests) or the
 * hash failed.
 */
static int copy_intact(int fd, const struct object_meta *m)
{
    char sha[OFFLOAD_SHA256_B64_LEN + 1];
    EVP_MD_CTX *ctx;
    int rc = -1;

    if (m->sha256[0] == '\0' || (ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    if (sha256_start(ctx) == 0) {
        long long got = body_hash(fd, m->length, ctx);
        if (got != m->length)
            rc = 0;
        else if (sha256_finish(ctx, sha) == 0)
            rc = strcmp(sha, m->sha256) == 0;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* --cache-verify: check each complete object's SHA-256 against its data;
 * remove and report the ones that differ. bad[0] counts those, bad[1]
 * the objects looked at, bad[2] those without a digest (kept). */
static void verify_entry(struct cache_entry *e, void *ctx)
{
    long long *bad = ctx;
    struct object_meta m;
    int fd, intact = 0;

    if (!is_object_name(e->name))
        return;
    meta_clear(&m);
    bad[1]++;
    fd = cache_open_upkeep(e->path);
    if (fd < 0)
        return;
    if (meta_read(fd, &m) == 0 && m.complete)
        intact = copy_intact(fd, &m);
    close(fd);
    if (intact == 1)
        return;
    if (intact < 0 && m.complete) {
        printf("no digest, kept: %s (%s)\n", m.key, e->path);
        bad[2]++;
        return;
    }
    printf("corrupt, removed: %s (%s)\n", m.key[0] ? m.key : e->name, e->path);
    unlink(e->path);
    bad[0]++;
}

/* --cache-purge-all: remove every complete object. */
static void purge_entry(struct cache_entry *e, void *ctx)
{
    long long *n = ctx;

    if (is_object_name(e->name) && unlink(e->path) == 0)
        (*n)++;
}

/*
 * Run a cache tool (--cache-list, --cache-verify, --cache-purge PATH,
 * --cache-purge-all) on the configured cache. They only list or unlink,
 * so they are safe while the daemon serves: a reader keeps its open
 * copy. Returns the exit status.
 */
static int cache_tool(const char *tool, const char *arg)
{
    if (strcmp(tool, "--cache-list") == 0) {
        int count = 0;
        if (cache_walk(list_entry, &count) != 0)
            goto unreadable;
        return 0;
    }
    if (strcmp(tool, "--cache-verify") == 0) {
        long long bad[3] = {0, 0, 0};
        if (cache_walk(verify_entry, bad) != 0)
            goto unreadable;
        printf("%lld objects verified, %lld corrupt (removed), %lld without "
               "a digest (kept)\n", bad[1], bad[0], bad[2]);
        return bad[0] ? 1 : 0;
    }
    if (strcmp(tool, "--cache-purge-all") == 0) {
        long long n = 0;
        if (cache_walk(purge_entry, &n) != 0)
            goto unreadable;
        printf("%lld objects removed\n", n);
        return 0;
    } else {
        static struct object obj;
        char path[OFFLOAD_MAX_PATH + 1];

        if (g_cfg.base_url[0] == '\0') {
            fprintf(stderr, "%s: --cache-purge needs BaseURL (--base): the "
                    "cache key is the base's host and the path\n", g_progname);
            return 1;
        }
        if (path_sanitize(arg, path, sizeof(path)) == NULL) {
            fprintf(stderr, "%s: --cache-purge %s: not a URL path\n",
                    g_progname, arg);
            return 1;
        }
        if (cache_object_init(&obj, g_cfg.base_prefix, path) != 0 ||
            unlink(obj.path) != 0) {
            printf("not cached: %s\n", arg);
            return 1;
        }
        printf("removed: %s\n", obj.key);
        return 0;
    }
unreadable:
    fprintf(stderr, "%s: cannot read the cache %s: %s\n", g_progname,
            g_cfg.cache_dir, strerror(errno));
    return 1;
}

/* ======================================================================
 * The scrubber: the whole cache re-read at ScrubRate
 * ====================================================================== */

static pid_t g_scrub_pid;                     /* parent: the scrubber, or 0 */
static long long g_scrub_started;             /* parent: when, now_ms() */

/* What one pass of the scrubber has done, and its pace. */
struct scrub_pass {
    long long started;             /* now_ms() at its start */
    long long bytes;               /* read so far */
    long long copies;              /* complete copies checked */
    long long removed;             /* of those, found corrupt */
};

/* Sleep until bytes read since the pass began keep to ScrubRate. */
static void scrub_pace(const struct scrub_pass *p)
{
    long long due = p->started + p->bytes * 1000 / g_cfg.scrub_rate;
    long long wait = due - now_ms();

    if (wait > 0) {
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The SHA-256 of the body of the copy open on fd (length bytes after its
 * metadata), read at ScrubRate, into out. Returns 0, or -1 when it is
 * short or could not be read. */
static int scrub_hash(int fd, long long length, struct scrub_pass *p, char *out)
{
    static char buf[OFFLOAD_IO_BUFFER];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    long long pos = 0;
    int rc = -1;

    if (ctx == NULL || sha256_start(ctx) != 0)
        goto out;
    while (pos < length) {
        size_t n = (size_t)(length - pos < (long long)sizeof(buf)
                                ? length - pos : (long long)sizeof(buf));
        ssize_t got = pread(fd, buf, n, OFFLOAD_META_SIZE + pos);

        if (got <= 0 || EVP_DigestUpdate(ctx, buf, (size_t)got) != 1)
            goto out;
        pos += got;
        p->bytes += got;
        scrub_pace(p);
    }
    rc = sha256_finish(ctx, out);
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Check one complete copy; remove it when its bytes are not the ones
 * its stored digest names, unless it was replaced meanwhile. */
static void scrub_entry(struct cache_entry *e, void *ctx)
{
    char sha[OFFLOAD_SHA256_B64_LEN + 1];
    struct scrub_pass *p = ctx;
    struct object_meta m;
    struct stat now, st;
    int fd;

    if (!is_object_name(e->name) || (fd = cache_open_upkeep(e->path)) < 0)
        return;
    meta_clear(&m);
    if (fstat(fd, &st) == 0 && meta_read(fd, &m) == 0 && m.complete &&
        m.sha256[0] && scrub_hash(fd, m.length, p, sha) == 0) {
        p->copies++;
        if (strcmp(sha, m.sha256) != 0 && stat(e->path, &now) == 0 &&
            now.st_ino == st.st_ino && unlink(e->path) == 0) {
            METRIC_ADD(cache_bytes, -(int64_t)st.st_size);
            METRIC_ADD(cache_objects, -1);
            METRIC_ADD(scrub_corrupt, 1);
            p->removed++;
            log_msg("error", "scrub: %s is corrupt (SHA-256 %s, stored %s), "
                    "removed", m.key, sha, m.sha256);
        }
    }
    close(fd);
}

/* The scrubber's life (parent: the daemon's PID): at the lowest CPU and
 * I/O priority, one pass over the cache after another. Never returns. */
static void scrub_main(pid_t parent)
{
    long long passes;
    sigset_t none;

    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    /* the parent's mask blocks SIGTERM outside its waits: a scrubber
     * that kept it could not be stopped; nor may it outlive the parent */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);
    if (setpriority(PRIO_PROCESS, 0, OFFLOAD_SCRUB_NICE) != 0) {
        /* not fatal: it only reads */
    }
    /* ioprio_set() has no libc wrapper: the idle I/O class, which gets
     * the disk only when nobody else wants it */
    syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0,
            3 << 13 /* IOPRIO_CLASS_IDLE */);
    proctitle_set("offload: scrubbing the cache at %lld bytes/s",
                  g_cfg.scrub_rate);
    for (passes = 0;;) {
        struct scrub_pass p = {now_ms(), 0, 0, 0};

        cache_walk(scrub_entry, &p);
        passes++;
        proctitle_set("offload: scrubbing the cache at %lld bytes/s, pass "
                      "%lld done: %lld copies, %lld removed",
                      g_cfg.scrub_rate, passes, p.copies, p.removed);
        if (p.bytes == 0)
            sleep(OFFLOAD_SCRUB_IDLE_SECONDS);  /* an empty cache */
    }
}

/* Parent: keep a scrubber running while ScrubRate is set (restarted at
 * most once per OFFLOAD_SCRUB_IDLE_SECONDS if it dies), none while it is
 * not. */
static void scrub_keep_running(void)
{
    pid_t pid, parent;

    if (g_cfg.scrub_rate == 0 || g_cfg.docroot[0]) {
        if (g_scrub_pid > 0)
            kill(g_scrub_pid, SIGTERM);
        return;
    }
    if (g_scrub_pid > 0 ||
        now_ms() - g_scrub_started < OFFLOAD_SCRUB_IDLE_SECONDS * 1000LL)
        return;
    g_scrub_started = now_ms();
    parent = getpid();
    pid = fork();
    if (pid == 0) {
        int j;
        for (j = 0; j < g_nlisten_fd; j++)
            close(g_listen_fd[j]);
        scrub_main(parent);
    }
    if (pid < 0)
        log_msg("error", "fork for the scrubber: %s", strerror(errno));
    else
        g_scrub_pid = pid;
}

/* ======================================================================
 * Talking to the base server
 * ====================================================================== */

static char g_via_host[128] = "offload";  /* pseudonym in our Via header */

/* The base's addresses, resolved by the parent at start and at SIGHUP
 * (so children neither pay for a lookup per request nor dirty memory
 * with the resolver's), or by a child when they stop answering. */
static struct base_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} g_base_addrs[OFFLOAD_MAX_BASE_ADDRS];
static int g_nbase_addrs;

/* Resolve BaseAddress, or the host of BaseURL, into g_base_addrs.
 * Returns 0, or -1 (g_nbase_addrs is then 0). */
static int base_resolve(void)
{
    struct addrinfo hints, *res = NULL, *ai;
    const char *host = g_cfg.base_address[0] ? g_cfg.base_address
                                             : g_cfg.base_host;

    g_nbase_addrs = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    if (getaddrinfo(host, g_cfg.base_port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && g_nbase_addrs < OFFLOAD_MAX_BASE_ADDRS;
         ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(g_base_addrs[0].ss))
            continue;
        memcpy(&g_base_addrs[g_nbase_addrs].ss, ai->ai_addr, ai->ai_addrlen);
        g_base_addrs[g_nbase_addrs++].len = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return g_nbase_addrs > 0 ? 0 : -1;
}

/* Connect to one address with the configured timeout. Returns a blocking
 * socket with I/O timeouts set, or -1 with errno set. */
static int base_connect_one(const struct base_addr *a)
{
    struct pollfd pfd;
    int err = 0, fd;
    socklen_t elen = sizeof(err);

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, g_cfg.timeout * 1000) <= 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err) {
            errno = err ? err : errno;
            goto fail;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    socket_set_timeouts(fd, g_cfg.timeout);
    return fd;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

/* Connect c to the base, trying each of its addresses; when none
 * answers, look the name up again once (it may have moved). Returns 0,
 * or -1 with errno set (ETIMEDOUT when the connect timed out). */
static int base_connect(struct conn *c)
{
    int pass, i, fd;

    /* the second round after a fresh lookup of the name */
    for (pass = 0; pass < 2; pass++) {
        if ((pass == 1 || g_nbase_addrs == 0) && base_resolve() != 0) {
            errno = EHOSTUNREACH;
            return -1;
        }
        for (i = 0; i < g_nbase_addrs; i++) {
            fd = base_connect_one(&g_base_addrs[i]);
            if (fd >= 0) {
                conn_attach(c, fd);
                return 0;
            }
            if (errno == ETIMEDOUT)
                return -1;  /* a second round would only double the wait */
        }
    }
    return -1;
}

/*
 * Send the request for obj to the base on c, for rq's client: HEAD on a
 * kept-alive connection, GET on one of its own. extra holds further
 * header lines (each ending in CRLF) or is empty. Returns 0 or -1.
 */
static int base_send(struct conn *c, enum http_method method,
                     const struct request *rq, const struct object *obj,
                     const char *extra)
{
    char rest[OFFLOAD_MAX_BASE_REQUEST_FIELDS]; /* the path goes on its own */
    const char *name = method == METHOD_HEAD ? "HEAD " : "GET ";
    struct iovec iov[3];
    int n;

    n = snprintf(rest, sizeof(rest),
                 " HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: " SERVER_NAME "\r\n"
                 OFFLOAD_BYPASS_HEADER ": true\r\n"
                 "X-Forwarded-For: %s\r\n"
                 "Via: 1.1 %s (" SERVER_NAME ")\r\n"
                 "Connection: %s\r\n"
                 "%s\r\n",
                 g_cfg.base_authority, rq->client, g_via_host,
                 method == METHOD_HEAD ? "keep-alive" : "close", extra);
    if (n < 0 || (size_t)n >= sizeof(rest)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    iov[0].iov_base = (void *)name;
    iov[0].iov_len = strlen(name);
    iov[1].iov_base = (void *)obj->base_path;
    iov[1].iov_len = strlen(obj->base_path);
    iov[2].iov_base = rest;
    iov[2].iov_len = (size_t)n;
    return conn_writev(c, iov, 3, 0);
}

/* Read and parse a response head from the base. Bytes after the head
 * (the start of a body) stay in br->buf for base_body_read(). Returns 0,
 * or -1 (errno EAGAIN on a timeout, EPROTO when malformed, ECONNRESET
 * when it closed). */
static int base_read_head(struct conn *c, struct base_response *br)
{
    br->len = 0;
    for (;;) {
        ssize_t n = conn_read(c, br->buf + br->len,
                              OFFLOAD_MAX_HEADER_BLOCK - br->len);
        int rc;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EWOULDBLOCK)
                errno = EAGAIN;
            return -1;
        }
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        br->len += (size_t)n;
        br->buf[br->len] = '\0';
        rc = base_response_parse(br);
        if (rc == 0) {
            br->body_pos = br->head_len;
            return 0;
        }
        if (rc < 0) {
            errno = EPROTO;
            return -1;
        }
    }
}

/*
 * The one exchange with the base: connect c when it is not open, send
 * the request for obj (see base_send), read the answer's head into br.
 * Returns 0, or -1 with errno set and c closed.
 */
static int base_exchange(struct conn *c, enum http_method method,
                         const struct request *rq, const struct object *obj,
                         const char *extra, struct base_response *br)
{
    int err;

    if (c->fd < 0 && base_connect(c) != 0)
        return -1;
    if (base_send(c, method, rq, obj, extra) == 0 && base_read_head(c, br) == 0)
        return 0;
    err = errno;
    conn_close(c);
    errno = err;
    return -1;
}

/* Read at most room body bytes of br's answer into buf: first those that
 * came with the head, then from c. Counts them in the metrics. Returns
 * the bytes read, 0 when the base closed, or -1 with errno set. */
static ssize_t base_body_read(struct conn *c, struct base_response *br,
                              char *buf, size_t room)
{
    size_t held = br->len - br->body_pos;
    ssize_t got;

    if (held > 0) {
        got = (ssize_t)(held < room ? held : room);
        memcpy(buf, br->buf + br->body_pos, (size_t)got);
        br->body_pos += (size_t)got;
    } else {
        do {
            got = conn_read(c, buf, room);
        } while (got < 0 && errno == EINTR);
    }
    if (got > 0)
        METRIC_ADD(bytes_from_base, (uint64_t)got);
    return got;
}

/* Is br a plain 200 answer with the version m describes? */
static int base_has_version(const struct base_response *br,
                            const struct object_meta *m)
{
    return br->status == 200 && !br->chunked &&
           version_same(m, br->content_length, br->etag, br->last_modified,
                        br->sha256);
}

/* Is br the 206 answer with bytes [first, last] of the version m? */
static int base_has_range(const struct base_response *br,
                          const struct object_meta *m, long long first,
                          long long last)
{
    char expect[OFFLOAD_MAX_VALIDATOR];

    snprintf(expect, sizeof(expect), "bytes %lld-%lld/%lld", first, last,
             m->length);
    return br->status == 206 && !br->chunked &&
           br->content_length == last - first + 1 &&
           strcmp(br->content_range, expect) == 0 &&
           version_same(m, m->length, br->etag, br->last_modified,
                        br->sha256);
}

/* Header lines asking the base for bytes first..last (last < 0: to the
 * end) of the version m only, into out. Returns their length. */
static size_t base_range_fields(char *out, size_t sz,
                                const struct object_meta *m, long long first,
                                long long last)
{
    char end[24] = "";
    int n;

    if (last >= 0)
        snprintf(end, sizeof(end), "%lld", last);
    n = snprintf(out, sz, "Range: bytes=%lld-%s\r\nIf-Range: %s\r\n", first,
                 end, m->etag[0] == '"' ? m->etag : m->last_modified);
    return n < 0 || (size_t)n >= sz ? 0 : (size_t)n;
}

/*
 * The base's HEAD answer br has validators but no Content-Length (Apache
 * leaves it out for an empty file): learn the length from the head of a
 * GET of the same version, on a connection of its own, closed before
 * any body is read. Sets br->content_length when found.
 */
static NOINLINE void base_length_probe(const struct request *rq,
                                       const struct object *obj,
                                       struct base_response *br)
{
    static struct base_response get;
    struct object_meta m;
    struct conn c = CONN_CLOSED;

    meta_from_base(&m, obj->key, br);
    if (base_exchange(&c, METHOD_GET, rq, obj, "", &get) == 0 &&
        get.content_length >= 0) {
        m.length = get.content_length;
        if (base_has_version(&get, &m))
            br->content_length = get.content_length;
    }
    conn_close(&c);
}

/*
 * HEAD obj at the base on the child's kept-alive connection (opening one
 * when there is none, and retrying once on a fresh one when a reused
 * connection fails before answering); a 200 without a Content-Length
 * gets its length from base_length_probe(). Returns 0 with br filled, or
 * -1 with errno set.
 */
static int base_head(const struct request *rq, const struct object *obj,
                     struct base_response *br)
{
    int attempt;

    /* a second attempt only after a kept-alive connection failed: the
     * base may have closed it while it was idle */
    for (attempt = 0; attempt < 2; attempt++) {
        int reused = g_base.fd >= 0;

        if (base_exchange(&g_base, METHOD_HEAD, rq, obj, "", br) == 0) {
            /* a HEAD answer has no body: anything more means the base
             * cannot be trusted to keep the connection in step */
            if (!br->keep_alive || br->len != br->head_len)
                conn_close(&g_base);
            if (br->status == 200 && br->content_length < 0 && !br->chunked &&
                (br->etag[0] == '"' || br->last_modified[0] != '\0'))
                base_length_probe(rq, obj, br);
            return 0;
        }
        if (!reused || errno == EAGAIN)
            return -1;
    }
    return -1;
}

/* ======================================================================
 * Answering clients
 * ====================================================================== */

/* Reason phrase of a status code. */
static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

/*
 * Write a response head: status line, Date, Server, the extra header
 * lines (each ending in CRLF), Connection, and the blank line. Records
 * the status for the access log. With body_follows (a complete copy's
 * bytes, sent at once), the head is held back (MSG_MORE) to leave in one
 * packet with the body's first bytes. Returns 0 or -1.
 */
static int send_head_as(struct conn *cc, struct request *rq, int status,
                        const char *extra, int body_follows)
{
    char start[192];
    struct iovec iov[3];
    int n;

    rq->status = status;
    if (g_cgi) {
        /* the web server adds Date, Server and Connection */
        n = snprintf(start, sizeof(start), "Status: %d %s\r\n", status,
                     status_reason(status));
        iov[2].iov_base = (void *)"\r\n";
    } else {
        char date[64];

        http_date(time(NULL), date, sizeof(date));
        n = snprintf(start, sizeof(start),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: " SERVER_NAME
                     "\r\n", status, status_reason(status), date);
        iov[2].iov_base = (void *)(rq->keep_alive
                                       ? "Connection: keep-alive\r\n\r\n"
                                       : "Connection: close\r\n\r\n");
    }
    if (n < 0 || (size_t)n >= sizeof(start))
        return -1;
    iov[0].iov_base = start;
    iov[0].iov_len = (size_t)n;
    iov[1].iov_base = (void *)extra;
    iov[1].iov_len = strlen(extra);
    iov[2].iov_len = strlen(iov[2].iov_base);
    return conn_writev(cc, iov, 3, body_follows && !g_cgi);
}

/* send_head() for a response without a body that follows at once. */
static int send_head(struct conn *cc, struct request *rq, int status, const char *extra)
{
    return send_head_as(cc, rq, status, extra, 0);
}

/*
 * The one place where error and short answers are written: status,
 * optional extra header lines, and text as a short text/plain body
 * (none for HEAD). Client errors that leave the connection in doubt
 * close it. Returns 0 or -1.
 */
static int send_error(struct conn *cc, struct request *rq, int status,
                      const char *extra, const char *text)
{
    char hdr[OFFLOAD_MAX_LOCATION + 512];
    size_t tl = strlen(text);

    if (status == 400 || status == 408 || status == 414 || status == 431 ||
        status == 505 || status >= 500)
        rq->keep_alive = 0;
    snprintf(hdr, sizeof(hdr),
             "%sContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Length: %zu\r\n",
             extra ? extra : "", tl + 1);
    if (send_head(cc, rq, status, hdr) != 0)
        return -1;
    /* the body goes with every answer but HEAD's, also when the request
     * did not parse: its Content-Length promises it */
    if (rq->method == METHOD_HEAD)
        return 0;
    rq->body_sent = (long long)tl + 1;
    if (conn_write(cc, text, tl) != 0 || conn_write(cc, "\n", 1) != 0)
        return -1;
    return 0;
}

/*
 * A growing copy has no byte at off yet: wait for it. Returns 1 when it
 * has come (go on), else what finishing from the base returned (a fetch
 * our disk gave up on: the base has the rest), or -1. Kept out of
 * send_object_range() with its metadata buffer, off the hit path.
 */
static NOINLINE int send_object_stalled(struct conn *cc, struct request *rq,
                                        struct object *obj, long long off,
                                        long long last)
{
    struct object_meta m;

    if (object_wait(obj, obj->data_offset + off + 1) == 0)
        return 1;
    if (meta_read(obj->fd, &m) == 0 && m.abandoned)
        return relay_rest(cc, rq, obj, off, last);
    return -1;
}

/*
 * Send bytes [first, last] of obj's body to the client with sendfile(),
 * waiting for bytes of a copy still being fetched. Returns 0, or -1 when
 * the client or the fetch failed (the caller closes the connection, so a
 * short body is never taken for a whole one).
 */
static int send_object_range(struct conn *cc, struct request *rq, struct object *obj,
                             long long first, long long last)
{
    long long off = first;

    while (off <= last) {
        long long avail = obj->meta.length;
        off_t pos = obj->data_offset + off;
        size_t chunk;
        ssize_t n;

        if (obj->growing) {
            struct stat st;

            if (fstat(obj->fd, &st) != 0)
                return -1;
            avail = st.st_size - obj->data_offset;
            if (avail <= off) {
                int rc = send_object_stalled(cc, rq, obj, off, last);
                if (rc == 1)
                    continue;
                return rc;
            }
        }
        if (avail > last + 1)
            avail = last + 1;
        chunk = (size_t)(avail - off);
        if (chunk > OFFLOAD_SENDFILE_CHUNK)
            chunk = OFFLOAD_SENDFILE_CHUNK;
        n = conn_sendfile(cc, obj->fd, &pos, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return -1;
        off += n;
        rq->body_sent += n;
    }
    return 0;
}

/* Common entity headers of an object (and the Warning of a stale one)
 * into buf, which has room for them: the validators are bounded. Returns
 * their length. */
static size_t object_headers(const struct object *obj, char *buf, size_t sz)
{
    const struct object_meta *m = &obj->meta;
    int n;

    n = snprintf(buf, sz, "%s%s%s%s%s%sAccept-Ranges: bytes\r\n%s",
                 m->etag[0] ? "ETag: " : "", m->etag,
                 m->etag[0] ? "\r\n" : "",
                 m->last_modified[0] ? "Last-Modified: " : "",
                 m->last_modified, m->last_modified[0] ? "\r\n" : "",
                 obj->stale ? "Warning: 110 - \"Response is Stale\"\r\n" : "");
    return n < 0 ? 0 : (size_t)n >= sz ? sz - 1 : (size_t)n;
}

/* The digest fields of a whole body whose SHA-256 is known (RFC 9530's
 * Repr-Digest, and RFC 3230's Digest, which aria2 and wget read) into
 * buf. Returns their length (0 when the digest is unknown). */
static size_t digest_fields(const char *sha256, char *buf, size_t sz)
{
    int n;

    if (sha256[0] == '\0')
        return 0;
    n = snprintf(buf, sz, "Repr-Digest: sha-256=:%s:\r\nDigest: SHA-256=%s\r\n",
                 sha256, sha256);
    return n < 0 || (size_t)n >= sz ? 0 : (size_t)n;
}

/*
 * Evaluate rq's preconditions against the version m, in the order of
 * RFC 9110 13.2.2: If-Match, else If-Unmodified-Since (412 when false);
 * then If-None-Match, else If-Modified-Since (304 when false: only GET
 * and HEAD get here). Range comes after all of them.
 */
static enum precondition preconditions(const struct request *rq,
                                       const struct object_meta *m)
{
    if (rq->if_match != NULL) {
        if (!if_match_matches(rq->if_match, m->etag))
            return PRE_FAILED;
    } else if (rq->if_unmodified_since != NULL &&
               date_not_after(rq->if_unmodified_since, m->last_modified) == 0) {
        return PRE_FAILED;
    }
    if (rq->if_none_match != NULL)
        return if_none_match_matches(rq->if_none_match, m->etag)
                   ? PRE_NOT_MODIFIED : PRE_PASS;
    if (rq->if_modified_since != NULL &&
        date_not_after(rq->if_modified_since, m->last_modified) == 1)
        return PRE_NOT_MODIFIED;
    return PRE_PASS;
}

/*
 * Answer with several ranges of obj as multipart/byteranges (after the
 * entity headers ent). Returns 0, or -1 to close the connection. Kept out
 * of serve_object() with its part buffers, off the hit path.
 */
static NOINLINE int serve_multipart(struct conn *cc, struct request *rq,
                                    struct object *obj,
                                    const struct byte_range *r, int nr,
                                    const char *ent, const char *type)
{
    const struct object_meta *m = &obj->meta;
    char boundary[40], part[2][600], hdr[OFFLOAD_MAX_RESPONSE_FIELDS];
    long long total = 0;
    int i;

    snprintf(boundary, sizeof(boundary), "%08lx%08lx",
             (unsigned long)getpid(), (unsigned long)now_ms());
    for (i = 0; i < nr; i++) {
        int pl = snprintf(part[0], sizeof(part[0]),
                          "\r\n--%s\r\nContent-Type: %s\r\n"
                          "Content-Range: bytes %lld-%lld/%lld\r\n\r\n",
                          boundary, type, r[i].first, r[i].last, m->length);
        total += pl + (r[i].last - r[i].first + 1);
    }
    total += (long long)snprintf(part[1], sizeof(part[1]), "\r\n--%s--\r\n",
                                 boundary);
    snprintf(hdr, sizeof(hdr),
             "%sContent-Type: multipart/byteranges; boundary=%s\r\n"
             "Content-Length: %lld\r\n",
             ent, boundary, total);
    if (send_head(cc, rq, 206, hdr) != 0)
        return -1;
    if (rq->method == METHOD_HEAD)
        return 0;
    for (i = 0; i < nr; i++) {
        int pl = snprintf(part[0], sizeof(part[0]),
                          "\r\n--%s\r\nContent-Type: %s\r\n"
                          "Content-Range: bytes %lld-%lld/%lld\r\n\r\n",
                          boundary, type, r[i].first, r[i].last, m->length);
        if (conn_write(cc, part[0], (size_t)pl) != 0 ||
            send_object_range(cc, rq, obj, r[i].first, r[i].last) != 0)
            return -1;
        rq->body_sent += pl;
    }
    if (conn_write(cc, part[1], strlen(part[1])) != 0)
        return -1;
    rq->body_sent += (long long)strlen(part[1]);
    return 0;
}

/*
 * Answer rq from obj (complete or growing): 304, 416, 206 single or
 * multipart/byteranges, or 200. Returns 0, or -1 to close the connection.
 */
static int serve_object(struct conn *cc, struct request *rq, struct object *obj)
{
    const struct object_meta *m = &obj->meta;
    const char *type = m->content_type[0] ? m->content_type
                                          : "application/octet-stream";
    struct byte_range r[OFFLOAD_MAX_RANGES];
    char hdr[OFFLOAD_MAX_RESPONSE_FIELDS]; /* entity headers, then status's */
    size_t el = object_headers(obj, hdr, sizeof(hdr));
    char *more = hdr + el;
    size_t room = sizeof(hdr) - el;
    enum range_result rr = RANGE_NONE;
    enum precondition pre = preconditions(rq, m);
    int nr = 0;

    if (pre == PRE_FAILED)
        return send_error(cc, rq, 412, hdr, "Precondition failed.");
    if (pre == PRE_NOT_MODIFIED)
        return send_head(cc, rq, 304, hdr);
    /* Range applies to GET only (RFC 9110 14.2) */
    if (rq->range != NULL && rq->method == METHOD_GET &&
        (rq->if_range == NULL ||
         if_range_matches(rq->if_range, m->etag, m->last_modified)))
        rr = range_parse(rq->range, m->length, r, OFFLOAD_MAX_RANGES, &nr);

    if (rr == RANGE_UNSATISFIABLE) {
        snprintf(more, room, "Content-Range: bytes */%lld\r\n", m->length);
        return send_error(cc, rq, 416, hdr, "Range not satisfiable.");
    }
    if (rr == RANGE_NONE) {
        more += digest_fields(m->sha256, more, room);
        room = sizeof(hdr) - (size_t)(more - hdr);
        snprintf(more, room, "Content-Type: %s\r\nContent-Length: %lld\r\n",
                 type, m->length);
        if (send_head_as(cc, rq, 200, hdr,
                         rq->method != METHOD_HEAD && m->length > 0 && !obj->growing))
            return -1;
        if (rq->method == METHOD_HEAD || m->length == 0)
            return 0;
        return send_object_range(cc, rq, obj, 0, m->length - 1);
    }
    if (nr == 1) {
        snprintf(more, room,
                 "Content-Type: %s\r\nContent-Range: bytes %lld-%lld/%lld\r\n"
                 "Content-Length: %lld\r\n",
                 type, r[0].first, r[0].last, m->length,
                 r[0].last - r[0].first + 1);
        if (send_head_as(cc, rq, 206, hdr, rq->method != METHOD_HEAD && !obj->growing))
            return -1;
        if (rq->method == METHOD_HEAD)
            return 0;
        return send_object_range(cc, rq, obj, r[0].first, r[0].last);
    }
    *more = '\0';
    return serve_multipart(cc, rq, obj, r, nr, hdr, type);
}

/* ======================================================================
 * Fetching into the cache, and passing through without it
 * ====================================================================== */

/* A fetch into the cache: what it fills, how far it is, and why it
 * stopped. */
struct fetch {
    const struct request *rq;      /* the request that started it */
    struct object *obj;            /* its lock is held */
    struct object_meta *want;      /* the version being fetched */
    int fd;                        /* the .part */
    long long offset;              /* body bytes in the .part */
    EVP_MD_CTX *sha;               /* SHA-256 of those bytes */
    const char *why;               /* NULL, or why it failed */
    int local_error;               /* our disk failed, not the base */
};

/*
 * Before the last bytes of a fetch go into the cache (and so to any
 * client): ask the base again whether the file is still the version the
 * fetch began with. A file rewritten in place while it was being sent
 * changes its validators; its bytes may be a mix. Returns 1 if current.
 */
static int fetch_still_current(const struct fetch *f)
{
    static struct base_response br;

    return base_head(f->rq, f->obj, &br) == 0 && base_has_version(&br, f->want);
}

/*
 * Start the GET of a fetch on c, resuming at f->offset, and check its
 * head: the version the HEAD described, whole or from the offset. A base
 * that ignored the range starts the copy over. Returns 0, or -1 with
 * f->why set.
 */
static int fetch_begin(struct fetch *f, struct conn *c,
                       struct base_response *br)
{
    char extra[3 * OFFLOAD_MAX_VALIDATOR];
    size_t n = 0;

    /* If-Match turns a file that changed since the HEAD into a 412
     * instead of bytes of another version */
    extra[0] = '\0';
    if (f->want->etag[0] == '"')
        n = (size_t)snprintf(extra, sizeof(extra), "If-Match: %s\r\n",
                             f->want->etag);
    if (f->offset > 0)
        base_range_fields(extra + n, sizeof(extra) - n, f->want, f->offset, -1);
    if (base_exchange(c, METHOD_GET, f->rq, f->obj, extra, br) != 0) {
        f->why = strerror(errno);
        return -1;
    }
    if (br->status == 200 && f->offset > 0) {
        f->offset = 0;
        if (sha256_start(f->sha) != 0 || ftruncate(f->fd, OFFLOAD_META_SIZE)) {
            f->why = strerror(errno);
            return -1;
        }
    }
    if (f->offset == 0 ? base_has_version(br, f->want)
                       : base_has_range(br, f->want, f->offset,
                                        f->want->length - 1))
        return 0;
    f->why = br->status == 200 || br->status == 206
                 ? "the file changed since the HEAD"
                 : "unexpected status";
    return -1;
}

/*
 * All the body but its last bytes is in: is it the file the base has?
 * The version must still be current (a file rewritten in place while it
 * was sent may be a mix of two), and the SHA-256 of the whole body, now
 * finished, the one the base advertised, if it did. Stores the digest in
 * f->want. Returns 0, or -1 with f->why set.
 */
static int fetch_verify(struct fetch *f)
{
    static char why[160 + 2 * OFFLOAD_SHA256_B64_LEN];
    char sha[OFFLOAD_SHA256_B64_LEN + 1];

    if (!fetch_still_current(f)) {
        f->why = "the file changed on the base during the fetch";
        return -1;
    }
    if (sha256_finish(f->sha, sha) != 0) {
        f->why = "SHA-256 failed";
        return -1;
    }
    if (f->want->sha256[0] && strcmp(sha, f->want->sha256) != 0) {
        snprintf(why, sizeof(why), "the body's SHA-256 %s is not the %s the "
                 "base advertised", sha, f->want->sha256);
        f->why = why;
        METRIC_ADD(digest_mismatches, 1);
        return -1;
    }
    memcpy(f->want->sha256, sha, sizeof(sha));
    return 0;
}

/* Copy the body from the base into the .part, hashing it, and hold its
 * last bytes back until fetch_verify() accepts it: no reader takes a
 * whole body that is a mix of two versions or fails its digest. Returns
 * 0, or -1 with f->why set. */
static int fetch_body(struct fetch *f, struct conn *c, struct base_response *br)
{
    static char buf[OFFLOAD_IO_BUFFER];

    while (f->offset < f->want->length) {
        long long left = f->want->length - f->offset;
        size_t room = (long long)sizeof(buf) < left ? sizeof(buf) : (size_t)left;
        ssize_t got = base_body_read(c, br, buf, room);

        if (got <= 0) {
            f->why = got == 0 ? "the base closed the connection early"
                              : strerror(errno);
            return -1;
        }
        if (EVP_DigestUpdate(f->sha, buf, (size_t)got) != 1) {
            f->why = "SHA-256 failed";
            return -1;
        }
        if (got == left && fetch_verify(f) != 0)
            return -1;
        if (pwrite_all(f->fd, buf, (size_t)got, OFFLOAD_META_SIZE + f->offset)) {
            f->why = strerror(errno);
            f->local_error = 1;
            return -1;
        }
        f->offset += got;
    }
    return 0;
}

/* A fetch failed: remove its .part, so readers waiting for more bytes
 * see the fetcher gone and close their clients short. When our disk
 * failed, mark the copy abandoned first: its readers finish from the
 * base. */
static void fetch_abandon(struct fetch *f)
{
    if (f->local_error) {
        char block[OFFLOAD_META_SIZE];

        cache_log_error(f->obj, "writing the copy");
        f->want->abandoned = 1;
        if (meta_encode(f->want, block) == 0)
            pwrite_all(f->fd, block, sizeof(block), 0);
    } else {
        log_msg("error", "fetch of %s failed at byte %lld: %s", f->obj->key,
                f->offset, f->why);
    }
    unlink(f->obj->part_path);
}

/*
 * In the fetcher process (the object's lock held): GET the file from the
 * base into the .part of f, check it and publish it. Returns 0 or -1.
 */
static int fetch_object(struct fetch *f)
{
    static struct base_response br;
    struct conn base = CONN_CLOSED;
    int rc = -1;

    if (fetch_begin(f, &base, &br) == 0 && fetch_body(f, &base, &br) == 0 &&
        (f->want->length > 0 || fetch_verify(f) == 0)) {
        rc = cache_publish(f->obj, f->fd, f->want);
        if (rc == 0) {
            /* the new object is in use by its clients: not to be evicted */
            flock(f->fd, LOCK_SH);
            cache_evict();
        }
    }
    if (f->why != NULL)
        fetch_abandon(f);
    conn_close(&base);
    return rc;
}

/* The base could not be asked (err: errno of the exchange): 504 when it
 * did not answer in time, else 502. Returns as send_error(). */
static int send_base_unreachable(struct conn *cc, struct request *rq, int err)
{
    if (err == EAGAIN || err == ETIMEDOUT)
        return send_error(cc, rq, 504, NULL,
                          "The base server did not answer in time.");
    return send_error(cc, rq, 502, NULL, "The base server cannot be reached.");
}

/* Send the client left body bytes of br's answer from the base, after
 * dropping the first skip. Returns 0, or -1 (the client's connection
 * then ends short). */
static int base_body_relay(struct conn *base, struct base_response *br,
                           struct conn *cc, struct request *rq, long long skip,
                           long long left)
{
    static char buf[OFFLOAD_IO_BUFFER];

    while (left > 0) {
        long long want = skip > 0 ? skip : left;
        size_t room = (long long)sizeof(buf) < want ? sizeof(buf) : (size_t)want;
        ssize_t got = base_body_read(base, br, buf, room);

        if (got <= 0)
            return -1;
        if (skip > 0) {
            skip -= got;
            continue;
        }
        if (conn_write(cc, buf, (size_t)got) != 0)
            return -1;
        left -= got;
        rq->body_sent += got;
    }
    return 0;
}

/* The head of a bypass answer: the base's status and entity fields.
 * Returns 0 or -1. */
static int bypass_send_head(struct conn *cc, struct request *rq,
                            const struct base_response *br)
{
    char hdr[OFFLOAD_MAX_RESPONSE_FIELDS];
    size_t n = 0;

    if (br->content_type[0])
        n += (size_t)snprintf(hdr + n, sizeof(hdr) - n, "Content-Type: %s\r\n",
                              br->content_type);
    if (br->content_range[0])
        n += (size_t)snprintf(hdr + n, sizeof(hdr) - n,
                              "Content-Range: %s\r\n", br->content_range);
    if (br->etag[0])
        n += (size_t)snprintf(hdr + n, sizeof(hdr) - n, "ETag: %s\r\n",
                              br->etag);
    if (br->last_modified[0])
        n += (size_t)snprintf(hdr + n, sizeof(hdr) - n,
                              "Last-Modified: %s\r\n", br->last_modified);
    if (br->status == 200)
        n += digest_fields(br->sha256, hdr + n, sizeof(hdr) - n);
    snprintf(hdr + n, sizeof(hdr) - n,
             "Accept-Ranges: bytes\r\nContent-Length: %lld\r\n",
             br->content_length);
    return send_head(cc, rq, br->status, hdr);
}

/*
 * Answer rq straight from the base without caching (the cache cannot be
 * written, or another version is being fetched): GET with the client's
 * Range and If-Range passed on, relaying status, entity headers and the
 * body. Returns 0, or -1 to close the connection.
 */
static int serve_bypass(struct conn *cc, struct request *rq,
                        const struct object *obj)
{
    static struct base_response br;
    struct conn base = CONN_CLOSED;
    char extra[4 * OFFLOAD_MAX_RELAYED_FIELD];
    size_t n = 0;
    int rc = -1;

    rq->cache_status = CS_BYPASS;
    extra[0] = '\0';
    if (rq->range != NULL && strlen(rq->range) < OFFLOAD_MAX_RELAYED_FIELD) {
        n = (size_t)snprintf(extra, sizeof(extra), "Range: %s\r\n", rq->range);
        if (rq->if_range != NULL &&
            strlen(rq->if_range) < OFFLOAD_MAX_RELAYED_FIELD)
            snprintf(extra + n, sizeof(extra) - n, "If-Range: %s\r\n",
                     rq->if_range);
    }
    if (base_exchange(&base, METHOD_GET, rq, obj, extra, &br) != 0) {
        log_msg("error", "GET %s from the base: %s", obj->base_path,
                strerror(errno));
        return send_base_unreachable(cc, rq, errno);
    }
    if ((br.status != 200 && br.status != 206 && br.status != 416) ||
        br.chunked || br.content_length < 0)
        rc = send_error(cc, rq, 502, NULL,
                        "The base server answered unexpectedly.");
    else if (bypass_send_head(cc, rq, &br) == 0)
        rc = base_body_relay(&base, &br, cc, rq, 0, br.content_length);
    conn_close(&base);
    return rc;
}

/*
 * The fetch obj was streamed from stopped for a local reason (the
 * cache's disk is full): get bytes [first, last] straight from the base,
 * with If-Range so that only the same version is taken, and send them
 * on. Returns 0, or -1 (the client's connection then ends short).
 */
static int relay_rest(struct conn *cc, struct request *rq,
                      const struct object *obj, long long first,
                      long long last)
{
    static struct base_response br;
    struct conn base = CONN_CLOSED;
    const struct object_meta *m = &obj->meta;
    char extra[2 * OFFLOAD_MAX_VALIDATOR + 64];
    int rc = -1;

    base_range_fields(extra, sizeof(extra), m, first, last);
    if (base_exchange(&base, METHOD_GET, rq, obj, extra, &br) != 0)
        return -1;
    if (base_has_range(&br, m, first, last))
        rc = base_body_relay(&base, &br, cc, rq, 0, last - first + 1);
    else if (base_has_version(&br, m))
        /* the same version, whole (a date too recent to be a strong
         * validator makes the base ignore the range): skip to first */
        rc = base_body_relay(&base, &br, cc, rq, first, last - first + 1);
    conn_close(&base);
    return rc;
}

/* In a new fetcher process: let go of what belongs to the connection
 * child, and, under --cgi, of the web server's pipes (it waits for the
 * CGI's stderr to close). */
static void fetcher_detach(struct conn *cc, struct object *obj)
{
    conn_close(cc);
    conn_close(&g_base);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (g_cgi) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
        openlog("offload_daemon", LOG_PID, LOG_DAEMON);
        g_error_fd = -1;
    }
    g_slot = -1;
    cache_object_close(obj);    /* the connection child's reader of it */
    proctitle_set("offload: fetching %.200s", obj->base_path);
}

/*
 * Having won obj's lock (lock_fd), prepare the .part and fork the
 * fetcher, which keeps the lock until it is done; then open the .part to
 * stream from it like every other reader. The fetch goes on if this
 * client goes away. Returns 0 with obj open, or 1 to pass through.
 */
NOINLINE static int fetch_start(struct conn *cc, const struct request *rq,
                                struct object *obj, struct object_meta *want,
                                int lock_fd)
{
    struct fetch f = {rq, obj, want, -1, 0, NULL, NULL, 0};
    int reading;
    pid_t pid;

    f.sha = EVP_MD_CTX_new();
    f.fd = f.sha ? cache_create_part(obj, want, &f.offset, f.sha) : -1;
    if (f.fd < 0) {
        EVP_MD_CTX_free(f.sha);
        cache_log_error(obj, "creating the copy");
        close(lock_fd);
        return 1;
    }
    /* a reader of the .part before the fetcher starts: a fetch that
     * fails at once (a base whose GET contradicts its HEAD) then cuts
     * this client short like any other reader, rather than leaving it to
     * be passed through to that base */
    reading = cache_open_part(obj, want) == 0;
    pid = fork();
    if (pid == 0) {
        fetcher_detach(cc, obj);
        _exit(fetch_object(&f) == 0 ? 0 : 1);
    }
    if (pid > 0)
        g_fetchers_started++;
    EVP_MD_CTX_free(f.sha);
    close(f.fd);
    close(lock_fd);
    if (pid < 0) {
        log_msg("error", "fork: %s", strerror(errno));
        cache_object_close(obj);
        unlink(obj->part_path);
        return 1;
    }
    if (reading || cache_open_part(obj, want) == 0 ||
        cache_open_complete(obj, want) == 0)
        return 0;
    return 1;
}

/*
 * Get obj open for the version want describes: the complete copy (HIT),
 * or the .part of a fetch in progress, started by us if nobody else is
 * fetching (MISS or REFRESH). Returns 0 with obj open, or 1 when the
 * request must pass through to the base (cache unusable, or another
 * version of the file is being fetched right now). Not inlined: what the
 * miss path's callees need would otherwise widen every hit's stack.
 */
static NOINLINE int object_acquire(struct conn *cc, struct request *rq,
                                   struct object *obj,
                                   struct object_meta *want)
{
    int tries;

    if (g_cfg.cache_max_size > 0 &&
        OFFLOAD_META_SIZE + want->length > g_cfg.cache_max_size)
        return 1;   /* it would not fit: stream it, cache nothing */
    for (tries = 0; tries < OFFLOAD_ACQUIRE_TRIES; tries++) {
        struct stat st;
        int lock_fd;

        if (cache_open_complete(obj, want) == 0) {
            rq->cache_status = CS_HIT;
            return 0;
        }
        lock_fd = cache_lock_fetch(obj);
        if (lock_fd >= 0) {
            if (cache_open_complete(obj, want) == 0) {
                close(lock_fd);
                rq->cache_status = CS_HIT;
                return 0;
            }
            rq->cache_status = stat(obj->path, &st) == 0 ? CS_REFRESH : CS_MISS;
            return fetch_start(cc, rq, obj, want, lock_fd);
        }
        if (lock_fd == -1) {
            cache_log_error(obj, "taking the lock");
            return 1;
        }
        if (cache_open_part(obj, want) == 0) {
            rq->cache_status = CS_MISS;
            return 0;
        }
        if (stat(obj->part_path, &st) == 0 && st.st_size >= OFFLOAD_META_SIZE)
            return 1;   /* another version is being fetched */
        /* the fetcher is between taking the lock and creating the .part:
         * a moment's wait, bounded by the number of tries */
        poll(NULL, 0, OFFLOAD_ACQUIRE_BACKOFF_MS * (tries + 1));
    }
    return 1;
}

/* ======================================================================
 * Shared memory: download slots and the cache-error table
 *
 * Set up by the parent before it forks, so every child sees it. Child
 * number i (its index in g_book->pid) owns download slot i; the parent
 * clears a child's slot when it reaps it, however the child died, so a
 * killed child never leaves a slot taken.
 * ====================================================================== */


/* Map the shared memory for g_cfg.max_clients children. Returns 0 or -1. */
static int shared_init(void)
{
    pthread_mutexattr_t attr;
    size_t size = sizeof(struct shared) +
                  (size_t)g_cfg.max_clients * sizeof(struct dupe_slot);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return -1;
    g_shared = p;
    g_cache_errors = g_shared->cache_errors;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (pthread_mutex_init(&g_shared->lock, &attr) != 0)
        return -1;
    pthread_mutexattr_destroy(&attr);
    return 0;
}

/* Lock the shared mutex, recovering it from a holder that died. */
static void shared_lock(void)
{
    if (pthread_mutex_lock(&g_shared->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&g_shared->lock);
}

/* Try once to take this child's slot for (c, u): always for a whole
 * file or a resume, for a segment only while fewer than MaxDupeDownloads
 * downloads of u from c run. Returns 0 or -1. */
static int dupe_try(uint64_t c, uint64_t u, int segment)
{
    int i, same = 0, ok;

    shared_lock();
    for (i = 0; i < g_cfg.max_clients; i++) {
        if (g_shared->slots[i].client == c && g_shared->slots[i].url == u)
            same++;
    }
    ok = !segment || g_cfg.max_dupe == 0 || same < g_cfg.max_dupe;
    if (ok) {
        g_shared->slots[g_slot].client = c;
        g_shared->slots[g_slot].url = u;
    }
    pthread_mutex_unlock(&g_shared->lock);
    return ok ? 0 : -1;
}

/*
 * Is a Range value a resume: one range from a position to the end,
 * "bytes=N-" (what wget -c, curl -C - and apt send), rather than a
 * segment with an end, a suffix, or several ranges (what a download
 * accelerator sends)?
 */
static int range_is_resume(const char *range)
{
    const char *p = range;

    if (strncasecmp(p, "bytes", 5) != 0)
        return 0;
    p += 5;
    p += strspn(p, " \t");
    if (*p++ != '=')
        return 0;
    p += strspn(p, " \t");
    if (!isdigit((unsigned char)*p))
        return 0;
    p += strspn(p, "0123456789");
    p += strspn(p, " \t");
    if (*p++ != '-')
        return 0;
    p += strspn(p, " \t");
    return *p == '\0';
}

/* The key clients are counted under: the address, or for IPv6 its /64
 * (one host holds many addresses of its /64), as a hash. */
static uint64_t dupe_client_key(const char *client)
{
    unsigned char a[16];

    if (inet_pton(AF_INET6, client, a) == 1 &&
        !IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a))
        return hash64((const char *)a, 8) | 1;
    return hash64(client, strlen(client)) | 1;
}

/*
 * Take this child's download slot for (client, url). A whole-file GET
 * or a resume is never refused (behind one NAT address there may be
 * many people); a segment (a Range with an end, a suffix or several
 * ranges: what download accelerators send) is refused while the client
 * key already has MaxDupeDownloads downloads of that URL running, of
 * any kind. A client that asks again right after a download ended may
 * find the old process not yet past freeing its slot (it sent the last
 * byte, then lost the CPU), so a conflict is re-checked for a short
 * while before refusing. Returns 0 when taken (or when there is no cap),
 * -1 to refuse.
 */
static int dupe_acquire(const char *client, const char *url, const char *range)
{
    uint64_t c = dupe_client_key(client);
    uint64_t u = hash64(url, strlen(url)) | 1;
    long long deadline = now_ms() + OFFLOAD_DUPE_GRACE_MS;
    int segment = range != NULL && !range_is_resume(range);

    if (g_shared == NULL || g_slot < 0)
        return 0;
    while (dupe_try(c, u, segment) != 0) {
        if (now_ms() >= deadline)
            return -1;
        poll(NULL, 0, OFFLOAD_DUPE_RETRY_MS);
    }
    return 0;
}

/* Free download slot i (this child's own, or a reaped child's). */
static void dupe_release(int i)
{
    if (g_shared == NULL || i < 0)
        return;
    shared_lock();
    g_shared->slots[i].client = 0;
    g_shared->slots[i].url = 0;
    pthread_mutex_unlock(&g_shared->lock);
}

/* ======================================================================
 * Request handling
 * ====================================================================== */

static const char robots_txt[] = "User-agent: *\nDisallow: /";

/*
 * DocumentRoot mode: open the local copy of path (percent-decoded under
 * DocumentRoot) if it is the version want describes: same length and
 * the same modification time as the base's Last-Modified. path has been
 * through path_sanitize(), and the resolved file must still lie under
 * DocumentRoot (a symlink out of it is refused). Returns 0 with obj->fd
 * set, or -1 (not there, not current: pass through to the base).
 */
NOINLINE static int docroot_open(struct object *obj, const char *path,
                        const struct object_meta *want)
{
    char decoded[OFFLOAD_MAX_PATH + 1], real[PATH_MAX];
    char file[PATH_MAX + OFFLOAD_MAX_PATH + 1];
    size_t i, o = 0, rl = strlen(g_cfg.docroot);
    struct stat st;
    time_t lm = http_date_parse(want->last_modified);
    int fd;

    for (i = 0; path[i] && o < sizeof(decoded) - 1; i++) {
        if (path[i] == '%' && path[i + 1] && path[i + 2]) {
            decoded[o++] = (char)(hex_value((unsigned char)path[i + 1]) * 16 +
                                  hex_value((unsigned char)path[i + 2]));
            i += 2;
        } else {
            decoded[o++] = path[i];
        }
    }
    decoded[o] = '\0';
    snprintf(file, sizeof(file), "%s%s", g_cfg.docroot, decoded);
    if (realpath(file, real) == NULL || strncmp(real, g_cfg.docroot, rl) != 0 ||
        real[rl] != '/')
        return -1;
    fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size != want->length || lm == -1 || st.st_mtime != lm) {
        close(fd);
        return -1;
    }
    obj->fd = fd;
    obj->data_offset = 0;
    obj->growing = 0;
    obj->meta = *want;
    return 0;
}

/* Does the authority auth[0..al) name the base (BaseURL's, with :80
 * written or left out when that is its port)? */
static int authority_is_base(const char *auth, size_t al)
{
    size_t bl = strlen(g_cfg.base_authority);
    int port80 = strcmp(g_cfg.base_port, "80") == 0;

    return (al == bl && strncasecmp(auth, g_cfg.base_authority, al) == 0) ||
           (port80 && al + 3 == bl &&
            strncasecmp(auth, g_cfg.base_authority, al) == 0) ||
           (port80 && al == bl + 3 &&
            strncasecmp(auth, g_cfg.base_authority, bl) == 0 &&
            strncmp(auth + bl, ":80", 3) == 0);
}

/* Split a valid authority auth[0..al) into host (no brackets) and port
 * (empty when absent). Returns 0, or -1 when a part does not fit. */
static int authority_split(const char *auth, size_t al, char *host,
                           size_t hsz, char *port, size_t psz)
{
    const char *colon = auth[0] == '[' ? memchr(auth, ']', al) : auth;
    size_t hl, pl;

    colon = memchr(colon, ':', al - (size_t)(colon - auth));
    hl = colon ? (size_t)(colon - auth) : al;
    pl = colon ? al - hl - 1 : 0;
    if (auth[0] == '[') {
        auth++;
        hl -= 2;
    }
    if (hl >= hsz || pl >= psz)
        return -1;
    memcpy(host, auth, hl);
    host[hl] = '\0';
    memcpy(port, colon ? colon + 1 : "", pl);
    port[pl] = '\0';
    return 0;
}

/* Are two port numbers (decimal strings) the same? */
static int port_same(const char *a, const char *b)
{
    return parse_length(a) >= 0 && parse_length(a) == parse_length(b);
}

/*
 * Does the authority auth[0..al) name this offload host: a ServerName
 * (with its port, when it has one), or the address the client connected
 * to? Without a port it names the host on whatever port it was reached
 * (a port forward may sit in front); with one, it must be the port the
 * connection came to.
 */
static int authority_is_self(struct conn *cc, const char *auth, size_t al)
{
    char host[256], port[8], lhost[INET6_ADDRSTRLEN], lport[8];
    char sname[256], sport[8];
    unsigned char a[16], b[16];
    int i, local = conn_local_name(cc, lhost, lport) == 0;

    if (authority_split(auth, al, host, sizeof(host), port, sizeof(port)))
        return 0;
    for (i = 0; i < g_cfg.nserver_names; i++) {
        const char *sn = g_cfg.server_names[i];

        if (authority_split(sn, strlen(sn), sname, sizeof(sname), sport,
                            sizeof(sport)) == 0 &&
            strcasecmp(host, sname) == 0 &&
            (port[0] == '\0' ||
             (sport[0] ? port_same(port, sport)
                       : local && port_same(port, lport))))
            return 1;
    }
    if (!local || (port[0] != '\0' && !port_same(port, lport)))
        return 0;
    if (inet_pton(AF_INET, host, a) == 1)
        return inet_pton(AF_INET, lhost, b) == 1 && memcmp(a, b, 4) == 0;
    return inet_pton(AF_INET6, host, a) == 1 &&
           inet_pton(AF_INET6, lhost, b) == 1 && memcmp(a, b, 16) == 0;
}

/*
 * The path of an absolute-form target (RFC 9112 3.2.2): its authority
 * takes the place of Host and must name the base or this host. Returns
 * the path ("/" when empty), or NULL with *status and *text set.
 */
static const char *target_absolute(struct conn *cc, const char *target,
                                   int *status, const char **text)
{
    const char *auth = target + 7;
    size_t al = strcspn(auth, "/?#");

    if (!authority_valid(auth, al)) {
        *status = 400;
        *text = "Malformed request target.";
        return NULL;
    }
    if (!authority_is_base(auth, al) && !authority_is_self(cc, auth, al)) {
        *status = 403;
        *text = "This offload host serves only its base server's files; "
                "it is not a proxy.";
        return NULL;
    }
    return auth[al] == '\0' ? "/" : auth + al;
}

/*
 * Check what a request asks for: the method (405 for those of RFC 9110
 * not served here, 501 for unknown ones), the target (an absolute form
 * must name the base or this host), no query, a safe path. Sets
 * rq->path to the sanitized path, written over the target. Returns 0 to
 * go on, or 1 when the request has been answered (*rc then holds
 * send_error()'s result).
 */
static int request_check(struct conn *cc, struct request *rq, int *rc)
{
    const char *target = rq->target;
    const char *text = NULL;
    int status = 0;

    if (rq->method == METHOD_UNKNOWN) {
        *rc = send_error(cc, rq, 501, NULL, "Unknown method.");
        return 1;
    }
    if (rq->method != METHOD_GET && rq->method != METHOD_HEAD) {
        *rc = send_error(cc, rq, 405, "Allow: GET, HEAD\r\n",
                         "Only GET and HEAD are served here.");
        return 1;
    }
    if (strncasecmp(target, "http://", 7) == 0) {
        target = target_absolute(cc, target, &status, &text);
    } else if (target[0] != '/') {
        status = 400;
        text = "Malformed request target.";
    }
    if (status == 0 && strchr(target, '?') != NULL) {
        status = 403;
        text = "This offload host serves static files only; requests with a "
               "query string go to the base server.";
    } else if (status == 0 && strlen(target) > OFFLOAD_MAX_PATH) {
        status = 414;
        text = "The path is too long.";
    } else if (status == 0 && (target[0] != '/' ||
               path_sanitize(target, rq->target, OFFLOAD_MAX_PATH + 1) == NULL)) {
        status = 400;
        text = "Malformed or unsafe path.";
    }
    if (status == 0) {
        rq->path = rq->target;
        return 0;
    }
    *rc = send_error(cc, rq, status, NULL, text);
    return 1;
}

/* Is addr allowed to see StatusPath? */
static int status_allowed(const char *addr)
{
    int i;

    for (i = 0; i < g_cfg.nstatus_allow; i++) {
        if (cidr_contains(&g_cfg.status_allow[i], addr))
            return 1;
    }
    return 0;
}

/* The counters of one value each on the status page, in its order. */
static const struct metric_single {
    const char *name;
    const char *help;
    size_t at;                     /* offsetof in struct metrics */
} g_metric_singles[] = {
    {"offload_base_bytes_total", "Body bytes received from the base.",
     offsetof(struct metrics, bytes_from_base)},
    {"offload_client_bytes_total", "Body bytes sent to clients.",
     offsetof(struct metrics, bytes_to_clients)},
    {"offload_digest_mismatches_total", "Fills refused because the body's "
     "SHA-256 was not the one the base advertised.",
     offsetof(struct metrics, digest_mismatches)},
    {"offload_scrub_corrupt_total", "Copies the scrubber found corrupt and "
     "removed.", offsetof(struct metrics, scrub_corrupt)},
    {"offload_evictions_total", "Objects evicted for CacheMaxSize.",
     offsetof(struct metrics, evictions)},
};

/* A bounded text being written: what does not fit is dropped. */
struct text {
    char *buf;
    size_t size;
    size_t len;
};

/* Append printf-style to t. */
static void __attribute__((format(printf, 2, 3)))
text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->len >= t->size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
    if (t->len >= t->size)
        t->len = t->size - 1;
}

#define METRIC_LOAD(x) \
    ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

/* The status page's counters with labels: by method, status, cache
 * result and reason of refusal. */
static void metrics_labelled(struct text *t, const struct metrics *m)
{
    static const char *const methods[] = {"GET", "HEAD", "other"};
    size_t i;

    text_add(t, "# HELP offload_requests_total Requests by method.\n"
                "# TYPE offload_requests_total counter\n");
    for (i = 0; i < 3; i++)
        text_add(t, "offload_requests_total{method=\"%s\"} %llu\n",
                 methods[i], METRIC_LOAD(m->requests[i]));
    text_add(t, "# HELP offload_responses_total Responses by status code.\n"
                "# TYPE offload_responses_total counter\n");
    for (i = 0; i < N_METRIC_CODES; i++)
        text_add(t, "offload_responses_total{code=\"%d\"} %llu\n",
                 g_metric_codes[i], METRIC_LOAD(m->responses[i]));
    text_add(t, "offload_responses_total{code=\"other\"} %llu\n",
             METRIC_LOAD(m->responses[N_METRIC_CODES]));
    text_add(t, "# HELP offload_cache_results_total Requests by cache "
                "result.\n# TYPE offload_cache_results_total counter\n");
    for (i = 0; i < N_CACHE_RESULTS; i++)
        text_add(t, "offload_cache_results_total{result=\"%s\"} %llu\n",
                 g_cache_status_names[i], METRIC_LOAD(m->cache_results[i]));
    text_add(t, "# HELP offload_refused_total Connections or requests "
                "refused.\n# TYPE offload_refused_total counter\n"
                "offload_refused_total{reason=\"dupe\"} %llu\n"
                "offload_refused_total{reason=\"max_clients\"} %llu\n",
             METRIC_LOAD(m->refused_dupe), METRIC_LOAD(m->refused_busy));
}

/* The status page's single counters and gauges. */
static void metrics_single(struct text *t, const struct metrics *m)
{
    size_t i;
    int active = 0;

    for (i = 0; i < sizeof(g_metric_singles) / sizeof(g_metric_singles[0]);
         i++) {
        const uint64_t *v =
            (const uint64_t *)((const char *)m + g_metric_singles[i].at);
        text_add(t, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
                 g_metric_singles[i].name, g_metric_singles[i].help,
                 g_metric_singles[i].name, g_metric_singles[i].name,
                 METRIC_LOAD(*v));
    }
    for (i = 0; i < (size_t)g_cfg.max_clients; i++)
        active += __atomic_load_n(&g_shared->slots[i].url, __ATOMIC_RELAXED) != 0;
    text_add(t, "# HELP offload_active_downloads GET requests being "
                "answered.\n# TYPE offload_active_downloads gauge\n"
                "offload_active_downloads %d\n", active);
    text_add(t, "# HELP offload_cache_bytes Size of the complete cached "
                "objects.\n# TYPE offload_cache_bytes gauge\n"
                "offload_cache_bytes %lld\n",
             (long long)__atomic_load_n(&m->cache_bytes, __ATOMIC_RELAXED));
    text_add(t, "# HELP offload_cache_objects Number of complete cached "
                "objects.\n# TYPE offload_cache_objects gauge\n"
                "offload_cache_objects %lld\n",
             (long long)__atomic_load_n(&m->cache_objects, __ATOMIC_RELAXED));
    text_add(t, "# HELP offload_cache_max_bytes CacheMaxSize (0: no cap).\n"
                "# TYPE offload_cache_max_bytes gauge\n"
                "offload_cache_max_bytes %lld\n", g_cfg.cache_max_size);
}

/*
 * StatusPath: the health answer for the base's checks (a 200 at all
 * means the daemon accepts and serves), with the shared counters in the
 * Prometheus text exposition format (version 0.0.4).
 */
NOINLINE static int serve_status(struct conn *cc, struct request *rq)
{
    static char body[OFFLOAD_MAX_STATUS_PAGE];
    struct text t = {body, sizeof(body), 0};
    char hdr[256];

    text_add(&t, "# HELP offload_up Whether the offload daemon is serving.\n"
                 "# TYPE offload_up gauge\noffload_up 1\n");
    metrics_labelled(&t, &g_shared->m);
    metrics_single(&t, &g_shared->m);
    snprintf(hdr, sizeof(hdr),
             "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
             "Cache-Control: no-store\r\nContent-Length: %zu\r\n", t.len);
    if (send_head(cc, rq, 200, hdr) != 0)
        return -1;
    if (rq->method == METHOD_HEAD)
        return 0;
    rq->body_sent = (long long)t.len;
    return conn_write(cc, body, t.len);
}

/* Open obj's complete copy if the base confirmed it less than
 * ValidateInterval seconds ago (its modification time). Returns 0. */
static int cache_open_recent(struct object *obj)
{
    struct stat st;

    if (cache_open_stored(obj, &st) != 0)
        return -1;
    if (time(NULL) - st.st_mtime < g_cfg.validate_interval)
        return 0;
    cache_object_close(obj);
    return -1;
}

/*
 * Pass on a HEAD answer of the base other than 200 (and 401, and 5xx):
 * redirects with their Location, 404 and 410 after dropping the cached
 * copy, what makes no sense here as 502. Returns as send_error(). Kept
 * out of handle_request() with its buffers, off the hit path.
 */
static NOINLINE int answer_base_status(struct conn *cc, struct request *rq,
                                       const struct object *obj,
                                       const struct base_response *br)
{
    char loc[OFFLOAD_MAX_LOCATION + 32], text[64];

    if (br->status == 404 || br->status == 410)
        cache_remove(obj);
    loc[0] = '\0';
    if (br->status >= 300 && br->status < 400 && br->location[0])
        snprintf(loc, sizeof(loc), "Location: %s\r\n", br->location);
    snprintf(text, sizeof(text), "The base server answered %d.", br->status);
    if (br->status < 300 || br->status == 304)
        return send_error(cc, rq, 502, NULL,
                          "The base server answered unexpectedly.");
    return send_error(cc, rq, br->status, loc[0] ? loc : NULL, text);
}

/* Requests the daemon answers itself, without the base: StatusPath and
 * /robots.txt. Returns 1 when rq was answered (*rc holds the result),
 * else 0. */
static int answer_own(struct conn *cc, struct request *rq, int *rc)
{
    const char *path = rq->path;

    if (g_cfg.status_path[0] && strcmp(path, g_cfg.status_path) == 0 &&
        g_shared != NULL) {
        *rc = status_allowed(rq->client)
                  ? serve_status(cc, rq)
                  : send_error(cc, rq, 403, NULL, "Not for your address.");
        return 1;
    }
    if (g_cfg.robots_txt && strcmp(path, "/robots.txt") == 0) {
        *rc = send_error(cc, rq, 200, NULL, robots_txt);
        return 1;
    }
    return 0;
}

/* The per-client cap (MaxDupeDownloads) refused rq. Returns as
 * send_error(). */
static NOINLINE int send_dupe_refusal(struct conn *cc, struct request *rq)
{
    char retry[64] = "";

    if (g_cfg.dupe_status != 403)
        snprintf(retry, sizeof(retry), "Retry-After: %d\r\n",
                 OFFLOAD_RETRY_AFTER);
    rq->cache_status = CS_DENIED;
    METRIC_ADD(refused_dupe, 1);
    return send_error(cc, rq, g_cfg.dupe_status, retry,
                      "Too many simultaneous downloads of this file from "
                      "your address. Please turn off the download "
                      "accelerator (segmented or multi-connection "
                      "download) and use a single connection.");
}

/*
 * The base could not be asked (head_failed) or answered 5xx: serve a
 * stored copy as stale when ServeStaleOnError allows (returns 1 with obj
 * open), else answer (returns -1, *rc holding send_error()'s result).
 */
static NOINLINE int base_failed(struct conn *cc, struct request *rq,
                                struct object *obj,
                                const struct base_response *br,
                                int head_failed, int *rc)
{
    int err = errno;
    struct stat st;

    if (head_failed)
        log_msg("error", "HEAD %s at the base: %s", obj->base_path,
                strerror(err));
    if (g_cfg.serve_stale && !g_cfg.docroot[0] &&
        cache_open_stored(obj, &st) == 0) {
        obj->stale = 1;
        rq->cache_status = CS_STALE;
        return 1;
    }
    if (head_failed)
        *rc = send_base_unreachable(cc, rq, err);
    else if (br->status <= 504)
        *rc = send_error(cc, rq, br->status, NULL,
                         "The base server has a problem.");
    else
        *rc = send_error(cc, rq, 502, NULL,
                         "The base server answered unexpectedly.");
    return -1;
}

/*
 * Ask the base (HEAD) for the current version of obj, and answer what
 * does not let the daemon serve it. Returns 0 with want describing the
 * version, 1 when obj was opened as a stale copy to serve, or -1 when
 * rq has been answered (*rc holds the result).
 */
static int base_validate(struct conn *cc, struct request *rq,
                         struct object *obj, struct object_meta *want,
                         int *rc)
{
    static struct base_response br PAGE_ALIGNED;
    int head_failed = base_head(rq, obj, &br) != 0;

    if (head_failed || br.status >= 500)
        return base_failed(cc, rq, obj, &br, head_failed, rc);
    if (br.status == 401 || br.www_authenticate) {
        rq->cache_status = CS_DENIED;
        *rc = send_error(cc, rq, 403, NULL,
                         "This file is protected; get it from the base "
                         "server.");
        return -1;
    }
    if (br.status != 200) {
        *rc = answer_base_status(cc, rq, obj, &br);
        return -1;
    }
    if (br.content_length < 0 || br.chunked ||
        (br.etag[0] != '"' && br.last_modified[0] == '\0')) {
        rq->cache_status = CS_DENIED;
        *rc = send_error(cc, rq, 403, NULL,
                         "This file cannot be validated against the base "
                         "server, so it is not served here.");
        return -1;
    }
    meta_from_base(want, obj->key, &br);
    return 0;
}

/*
 * obj's copy is the version want describes, but the base now gives its
 * validators another form (Apache's ETag is weak within the second of
 * a change and strong later) or another type: answer with the base's
 * current ones, and store them in a complete copy's metadata block.
 * Failing to store them costs only another refresh.
 */
static NOINLINE void meta_refresh(struct object *obj,
                                  const struct object_meta *want)
{
    char block[OFFLOAD_META_SIZE];
    int fd;

    copy_string(obj->meta.etag, sizeof(obj->meta.etag), want->etag);
    copy_string(obj->meta.content_type, sizeof(obj->meta.content_type),
                want->content_type);
    if (obj->growing || obj->data_offset == 0 || meta_encode(&obj->meta, block))
        return;   /* a .part's fetcher writes its own block; DocumentRoot */
    fd = open(obj->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (pwrite_all(fd, block, sizeof(block), 0) != 0)
        log_msg("error", "cannot update %s: %s", obj->path, strerror(errno));
    close(fd);
}

/*
 * Serve the version want of obj, which the base has just confirmed: a
 * HEAD, or a GET whose preconditions stop it, from want alone; a GET
 * from DocumentRoot, or from the cache (fetching it if need be), or
 * passed through from the base. Returns 0 when the connection may go
 * on, -1 when it must be closed.
 */
static int serve_version(struct conn *cc, struct request *rq,
                         struct object *obj, struct object_meta *want)
{
    int rc;

    if (rq->method == METHOD_HEAD || preconditions(rq, want) != PRE_PASS) {
        rq->cache_status = cache_open_complete(obj, want) == 0 ? CS_HIT
                                                                : CS_MISS;
        cache_object_close(obj);
        if (rq->cache_status == CS_HIT && want->sha256[0] == '\0')
            copy_string(want->sha256, sizeof(want->sha256), obj->meta.sha256);
        obj->meta = *want;
        return serve_object(cc, rq, obj);
    }
    if (g_cfg.docroot[0]) {
        if (docroot_open(obj, rq->path, want) != 0)
            return serve_bypass(cc, rq, obj);
        rq->cache_status = CS_HIT;
    } else if (strlen(obj->key) >= sizeof(want->key) ||
               object_acquire(cc, rq, obj, want) != 0) {
        /* a key too long for the metadata block is never cached */
        return serve_bypass(cc, rq, obj);
    } else if (!obj->growing) {
        cache_touch(obj, 1);
    }
    if (strcmp(obj->meta.etag, want->etag) != 0 ||
        strcmp(obj->meta.content_type, want->content_type) != 0)
        meta_refresh(obj, want);
    rc = serve_object(cc, rq, obj);
    cache_object_close(obj);
    return rc;
}

/*
 * Answer one parsed request. Returns 0 when the connection may go on,
 * -1 when it must be closed.
 */
static int handle_request(struct conn *cc, struct request *rq)
{
    static struct object obj PAGE_ALIGNED;
    struct object_meta want;
    int rc;

    proctitle_set("offload: %s %.200s from %s", rq->method_name, rq->target,
                  rq->client);
    if (request_check(cc, rq, &rc) || answer_own(cc, rq, &rc))
        return rc;
    if (cache_object_init(&obj, g_cfg.base_prefix, rq->path) != 0)
        return send_error(cc, rq, 414, NULL, "The path is too long.");
    if (rq->method != METHOD_HEAD &&
        dupe_acquire(rq->client, obj.base_path, rq->range))
        return send_dupe_refusal(cc, rq);
    if (g_cfg.validate_interval > 0 && !g_cfg.docroot[0] &&
        cache_open_recent(&obj) == 0) {
        /* confirmed by the base moments ago: no HEAD this time */
        rq->cache_status = CS_HIT;
        cache_touch(&obj, 0);
    } else {
        int valid = base_validate(cc, rq, &obj, &want, &rc);
        if (valid < 0)
            return rc;
        if (valid == 0)
            return serve_version(cc, rq, &obj, &want);
    }
    rc = serve_object(cc, rq, &obj);
    cache_object_close(&obj);
    return rc;
}

/* Add a finished request to the shared counters. */
static void metrics_count(const struct request *rq)
{
    size_t i;

    if (g_shared == NULL)
        return;
    METRIC_ADD(requests[rq->method == METHOD_GET    ? 0
                        : rq->method == METHOD_HEAD ? 1
                                                    : 2], 1);
    for (i = 0; i < N_METRIC_CODES && g_metric_codes[i] != rq->status; i++) {
    }
    METRIC_ADD(responses[i], 1);
    if (rq->cache_status < N_CACHE_RESULTS)
        METRIC_ADD(cache_results[rq->cache_status], 1);
    METRIC_ADD(bytes_to_clients, (uint64_t)rq->body_sent);
}

/* Append s to out as a log field: '"', '\\' and controls as \xHH. */
static size_t log_escape(char *out, size_t room, const char *s, size_t max)
{
    size_t n = 0;

    for (; s != NULL && *s && max > 0 && n + 5 < room; s++, max--) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            n += (size_t)snprintf(out + n, room - n, "\\x%02x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

/*
 * Write the access-log line of rq: Combined Log Format, then the cache
 * status and the duration in microseconds. One write() per line.
 */
static void access_log(const struct request *rq, const char *client_addr)
{
    char line[2048], req[600], ref[300], ua[300], stamp[64];
    struct timespec now;
    struct tm tm;
    time_t t = time(NULL);
    long long us;
    int n;

    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (long long)(now.tv_sec - rq->started.tv_sec) * 1000000 +
         (now.tv_nsec - rq->started.tv_nsec) / 1000;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%d/%b/%Y:%H:%M:%S %z", &tm);
    log_escape(req, sizeof(req), rq->request_line, 500);
    log_escape(ref, sizeof(ref), rq->referer ? rq->referer : "-", 250);
    log_escape(ua, sizeof(ua), rq->user_agent ? rq->user_agent : "-", 250);
    n = snprintf(line, sizeof(line),
                 "%s - - [%s] \"%s\" %d %lld \"%s\" \"%s\" %s %lld\n",
                 client_addr, stamp, req, rq->status, rq->body_sent, ref, ua,
                 g_cache_status_names[rq->cache_status], us);
    if (g_access_fd >= 0 && n > 0 && (size_t)n < sizeof(line) &&
        write(g_access_fd, line, (size_t)n) < 0) {
        /* a full log disk must not stop the download */
    }
}

/* ======================================================================
 * Connections
 * ====================================================================== */

/*
 * Read until rq->buf holds a whole request head. The first byte may take
 * the idle time, the socket's SO_RCVTIMEO (Timeout for a new connection,
 * the keep-alive timeout after a request: serve_connection sets it); the
 * rest of the head must come within Timeout, so a client sending a byte
 * at a time is cut off. Returns PARSE_OK, an HTTP status to answer, or 0
 * to close without a word.
 */
static int request_read(struct conn *cc, struct request *rq)
{
    long long deadline = 0;
    int started = 0;

    for (;;) {
        long long left;
        ssize_t n;

        if (rq->len > 0) {
            int rc = request_parse(rq);
            if (rc != PARSE_INCOMPLETE)
                return rc;
            if (!started) {
                started = 1;
                deadline = now_ms() + (long long)g_cfg.timeout * 1000;
            }
        }
        if (!started && g_got_sigterm)
            return 0;
        if (rq->len == 0) {
            /* nothing yet: one blocking read, bounded by the idle time
             * in SO_RCVTIMEO (serve_connection), saves a poll() a
             * request; a signal interrupts it (no SA_RESTART) */
            n = conn_read(cc, rq->buf, OFFLOAD_MAX_HEADER_BLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return 0;
            rq->len = (size_t)n;
            rq->buf[rq->len] = '\0';
            continue;
        }
        left = deadline - now_ms();
        if (left <= 0)
            return started ? 408 : 0;
        if (conn_wait_input(cc, (int)left) <= 0)
            continue;
        n = conn_read(cc, rq->buf + rq->len, OFFLOAD_MAX_HEADER_BLOCK - rq->len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return 0;
        rq->len += (size_t)n;
        rq->buf[rq->len] = '\0';
    }
}

/* Set rq->client: the peer's address, or, when the peer is a
 * TrustedProxy, the last address in its X-Forwarded-For. */
static void request_client(struct request *rq, const char *peer)
{
    const char *hop;
    char last[INET6_ADDRSTRLEN + 8];
    unsigned char bin[16];
    size_t n;
    int i;

    copy_string(rq->client, sizeof(rq->client), peer);
    if (rq->x_forwarded_for == NULL)
        return;
    for (i = 0; i < g_cfg.ntrusted; i++) {
        if (cidr_contains(&g_cfg.trusted[i], peer))
            break;
    }
    if (i == g_cfg.ntrusted)
        return;
    hop = strrchr(rq->x_forwarded_for, ',');
    hop = hop ? hop + 1 : rq->x_forwarded_for;
    hop += strspn(hop, " \t");
    n = strcspn(hop, " \t");
    if (n == 0 || n >= sizeof(last))
        return;
    memcpy(last, hop, n);
    last[n] = '\0';
    if (inet_pton(AF_INET, last, bin) == 1 || inet_pton(AF_INET6, last, bin) == 1)
        copy_string(rq->client, sizeof(rq->client), last);
}

/* Reset rq for the next request on the connection (buffer kept). */
static void request_reset(struct request *rq)
{
    rq->head_len = 0;
    rq->method = METHOD_NONE;
    rq->method_name = rq->target = NULL;
    rq->http_minor = 1;
    rq->keep_alive = 0;
    request_fields_clear(rq);
    rq->path = NULL;
    rq->status = 0;
    rq->body_sent = 0;
    rq->cache_status = CS_NONE;
    rq->request_line[0] = '\0';
    clock_gettime(CLOCK_MONOTONIC, &rq->started);
}

/* Socket options of a client connection: timeouts, no Nagle delay, and
 * NotSentLowat. */
static void client_socket_setup(int fd)
{
    int one = 1;

    socket_set_timeouts(fd, g_cfg.timeout);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A slow client would otherwise have the kernel queue up to
     * tcp_wmem's maximum (4 MiB) of unsent file pages for it; sendfile()
     * now waits until less than this much is unsent. What is in flight
     * is not limited, so a fast, distant client keeps its window full. */
    if (g_cfg.notsent_lowat > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &g_cfg.notsent_lowat,
                   sizeof(g_cfg.notsent_lowat));
}

/* Answer a request that did not parse (status is request_read()'s),
 * count and log it. The connection is closed after it. */
static void answer_unparsed(struct conn *cc, struct request *rq, int status,
                            const char *client_addr)
{
    const char *text = status == 414   ? "Request line too long."
                       : status == 431 ? "Request headers too large."
                       : status == 408 ? "Request timed out."
                       : status == 505 ? "Only HTTP/1.0 and HTTP/1.1 are "
                                         "served here."
                                       : "Malformed request.";

    if (rq->request_line[0] == '\0')
        copy_string(rq->request_line, sizeof(rq->request_line), "-");
    send_error(cc, rq, status, NULL, text);
    metrics_count(rq);
    access_log(rq, client_addr);
}

/* Serve the requests of one client connection, then close it. */
static void serve_connection(struct conn *cc, const char *client_addr)
{
    static struct request rq PAGE_ALIGNED;
    int count;

    client_socket_setup(cc->fd);
    rq.len = 0;
    for (count = 0; count < OFFLOAD_MAX_KEEPALIVE_REQUESTS; count++) {
        int rc;

        request_reset(&rq);
        if (count == 1 && OFFLOAD_KEEPALIVE_TIMEOUT != g_cfg.timeout) {
            struct timeval tv = {OFFLOAD_KEEPALIVE_TIMEOUT, 0};
            setsockopt(cc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }
        rc = request_read(cc, &rq);
        if (rc == 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &rq.started);
        if (rc != PARSE_OK) {
            answer_unparsed(cc, &rq, rc, client_addr);
            break;
        }
        if (count + 1 == OFFLOAD_MAX_KEEPALIVE_REQUESTS || g_got_sigterm)
            rq.keep_alive = 0;
        request_client(&rq, client_addr);
        rc = handle_request(cc, &rq);
        dupe_release(g_slot);
        metrics_count(&rq);
        access_log(&rq, rq.client);
        while (g_fetchers_started && waitpid(-1, NULL, WNOHANG) > 0) {
            /* fetchers that finished while we served */
        }
        if (rc != 0 || !rq.keep_alive || g_got_sigterm)
            break;
        rq.len -= rq.head_len;
        memmove(rq.buf, rq.buf + rq.head_len, rq.len);
    }
    conn_close_lingering(cc);
}

/*
 * --cgi: answer the one request the CGI environment describes (RFC 3875)
 * on stdout, with a Status: line for the web server, which adds Date,
 * Server and Connection. The path is REQUEST_URI less SCRIPT_NAME (so
 * /cgi-bin/offload/dir/f.iso asks the base for /dir/f.iso), or all of
 * REQUEST_URI when the server rewrote requests to the script. Returns
 * the exit status.
 */
static int cgi_main(void)
{
    static struct request rq;
    struct conn client;
    const char *method = getenv("REQUEST_METHOD");
    const char *uri = getenv("REQUEST_URI");
    const char *script = getenv("SCRIPT_NAME");
    const char *query = getenv("QUERY_STRING");
    const char *addr = getenv("REMOTE_ADDR");
    static char target[OFFLOAD_MAX_PATH + 2];
    size_t sl = script ? strlen(script) : 0;
    int n;

    if (method == NULL || uri == NULL) {
        fprintf(stderr, "%s --cgi: REQUEST_METHOD and REQUEST_URI are not "
                        "set; run it from a web server's cgi-bin\n",
                g_progname);
        return 1;
    }
    if (logs_open() != 0)
        log_msg("error", "cannot open a log file: %s", strerror(errno));
    request_reset(&rq);
    if (sl > 0 && strncmp(uri, script, sl) == 0 &&
        (uri[sl] == '/' || uri[sl] == '\0' || uri[sl] == '?'))
        uri += sl;
    n = snprintf(target, sizeof(target), "%.*s%s%s", (int)strcspn(uri, "?"),
                 uri, query && *query ? "?" : "", query ? query : "");
    if (n < 0 || (size_t)n >= sizeof(target))
        target[0] = '\0';
    rq.method_name = (char *)method;
    rq.method = method_of(method);
    rq.target = target[0] ? target : (char *)"/";
    rq.range = getenv("HTTP_RANGE");
    rq.if_range = getenv("HTTP_IF_RANGE");
    rq.if_match = getenv("HTTP_IF_MATCH");
    rq.if_none_match = getenv("HTTP_IF_NONE_MATCH");
    rq.if_modified_since = getenv("HTTP_IF_MODIFIED_SINCE");
    rq.if_unmodified_since = getenv("HTTP_IF_UNMODIFIED_SINCE");
    rq.user_agent = getenv("HTTP_USER_AGENT");
    rq.referer = getenv("HTTP_REFERER");
    copy_string(rq.client, sizeof(rq.client), addr ? addr : "unknown");
    conn_attach(&client, STDOUT_FILENO);
    return handle_request(&client, &rq) == 0 ? 0 : 1;
}

/* ======================================================================
 * Process life: listening, accepting, signals
 * ====================================================================== */

/* The parent's book of its connection children. In shared rather than
 * private memory: the parent writes it after every fork, and a private
 * page written so would stay behind as a copy of its own in every child
 * that had shared it (memory per download). Children never read it. */
static struct children_book {
    int active;                   /* live children */
    pid_t pid[];                  /* by download slot; 0 = free */
} *g_book;

/* Signal handler: only sets flags; the main loop acts on them. */
static void on_signal(int sig)
{
    if (sig == SIGCHLD)
        g_got_sigchld = 1;
    else if (sig == SIGHUP)
        g_got_sighup = 1;
    else if (sig == SIGUSR1)
        g_got_sigusr1 = 1;
    else
        g_got_sigterm = 1;
}

/* Install on_signal for sig, without SA_RESTART so that waits end. */
static void signal_catch(int sig)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Bind every --listen address. Dies naming the flag on failure. */
static void listen_open_all(void)
{
    int i;

    for (i = 0; i < g_cfg.nlisten; i++) {
        struct addrinfo hints, *res = NULL;
        const struct listen_spec *ls = &g_cfg.listen[i];
        int fd, one = 1, rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        rc = getaddrinfo(ls->host, ls->port, &hints, &res);
        if (rc != 0)
            die("Listen (--listen) %s:%s: %s", ls->host, ls->port, gai_strerror(rc));
        fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                    res->ai_protocol);
        if (fd < 0)
            die("Listen (--listen) %s:%s: %s", ls->host, ls->port, strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
            listen(fd, OFFLOAD_LISTEN_BACKLOG) != 0)
            die("Listen (--listen) %s:%s: %s", ls->host, ls->port, strerror(errno));
        freeaddrinfo(res);
        g_listen_fd[g_nlisten_fd++] = fd;
    }
}

/* The peer address of a socket as text (IPv4-mapped shown as IPv4). */
static void peer_name(const struct sockaddr_storage *ss, socklen_t len,
                      char *out, size_t outsz)
{
    const void *addr = NULL;

    if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in))
        addr = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
        addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (addr == NULL ||
        inet_ntop(ss->ss_family, addr, out, (socklen_t)outsz) == NULL)
        copy_string(out, outsz, "unknown");
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out + 7, '.') != NULL)
        memmove(out, out + 7, strlen(out + 7) + 1);
}

/* Forget reaped children. */
static void reap_children(void)
{
    int status, i;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == g_scrub_pid)
            g_scrub_pid = 0;
        for (i = 0; i < g_cfg.max_clients; i++) {
            if (g_book->pid[i] == pid) {
                g_book->pid[i] = 0;
                g_book->active--;
                dupe_release(i);
                break;
            }
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL &&
            WTERMSIG(status) != SIGTERM)
            log_msg("error", "process %ld died of signal %d", (long)pid,
                    WTERMSIG(status));
    }
}

/* Refused connections the parent closes only once the client has read
 * the answer (or after a while): closing a socket with the request still
 * unread sends a reset, which can destroy the answer at the client. */
static struct {
    int fd;
    long long until;
} g_linger[OFFLOAD_MAX_LINGER];

/* Too many connections: say so at once, without forking, and let the
 * connection linger in the accept loop. */
static void refuse_busy(int cfd)
{
    static const char text[] = "Too many connections; try again later.\n";
    char answer[512];
    int i, oldest = 0;
    int n = snprintf(answer, sizeof(answer),
                     "HTTP/1.1 503 Service Unavailable\r\nServer: " SERVER_NAME
                     "\r\nRetry-After: %d\r\nContent-Type: text/plain; "
                     "charset=utf-8\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     OFFLOAD_RETRY_AFTER, sizeof(text) - 1, text);

    METRIC_ADD(refused_busy, 1);
    if (send(cfd, answer, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        close(cfd);
        return;
    }
    shutdown(cfd, SHUT_WR);
    for (i = 0; i < OFFLOAD_MAX_LINGER; i++) {
        if (g_linger[i].fd <= 0)
            break;
        if (g_linger[i].until < g_linger[oldest].until)
            oldest = i;
    }
    if (i == OFFLOAD_MAX_LINGER) {
        close(g_linger[oldest].fd);
        i = oldest;
    }
    g_linger[i].fd = cfd;
    g_linger[i].until = now_ms() + OFFLOAD_LINGER_MS;
}

/* Drain lingering connections whose input is ready (pfds[i].revents)
 * and close those at EOF or past their time. */
static void linger_service(const struct pollfd *pfds, int n)
{
    char sink[1024];
    int i, j;

    for (i = 0; i < OFFLOAD_MAX_LINGER; i++) {
        int done;

        if (g_linger[i].fd <= 0)
            continue;
        done = now_ms() >= g_linger[i].until;
        for (j = 0; j < n && !done; j++) {
            if (pfds[j].fd == g_linger[i].fd && pfds[j].revents)
                done = recv(g_linger[i].fd, sink, sizeof(sink), MSG_DONTWAIT) <= 0;
        }
        if (done) {
            close(g_linger[i].fd);
            g_linger[i].fd = 0;
        }
    }
}

/* The signals the parent acts on, blocked outside its waits (so that
 * none is lost between a check of its flag and the wait) and caught by
 * on_signal(). Fills block with them. */
static void signals_catch_all(sigset_t *block)
{
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    size_t i;

    sigemptyset(block);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(block, sigs[i]);
    sigprocmask(SIG_BLOCK, block, NULL);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal_catch(sigs[i]);
}

/* Act on the signals that came: reap, reload, reopen the logs; keep the
 * scrubber running as configured. */
static void signals_handle(void)
{
    if (g_got_sigchld) {
        g_got_sigchld = 0;
        reap_children();
    }
    if (g_got_sighup) {
        g_got_sighup = 0;
        config_reload();
        if (g_scrub_pid > 0)
            kill(g_scrub_pid, SIGTERM);  /* restarted at the new rate */
        g_scrub_started = 0;
    }
    if (g_got_sigusr1) {
        g_got_sigusr1 = 0;
        if (logs_open() != 0)
            log_msg("error", "reopening the logs: %s", strerror(errno));
    }
    scrub_keep_running();
}

/* Wait, with signals let through, until a listening socket or a
 * lingering connection has input (pfds[0..g_nlisten_fd) are the
 * listeners; the lingering ones are added after them), then serve the
 * lingering ones. Returns poll's result. */
static int accept_wait(struct pollfd *pfds, const sigset_t *empty)
{
    struct timespec tick = {0, OFFLOAD_LINGER_TICK_MS * 1000000L};
    int n = g_nlisten_fd, i, rc;

    for (i = 0; i < OFFLOAD_MAX_LINGER; i++) {
        if (g_linger[i].fd > 0) {
            pfds[n].fd = g_linger[i].fd;
            pfds[n].events = POLLIN;
            pfds[n++].revents = 0;
        }
    }
    rc = ppoll(pfds, (nfds_t)n, n > g_nlisten_fd ? &tick : NULL, empty);
    if (n > g_nlisten_fd)
        linger_service(pfds + g_nlisten_fd, n - g_nlisten_fd);
    return rc;
}

/* In a new connection child: let go of the parent's sockets and
 * signals, then serve the connection and exit. Never returns. */
static void connection_child(int cfd, int slot, const struct sockaddr_storage *ss,
                             socklen_t slen, const sigset_t *block)
{
    char addr[INET6_ADDRSTRLEN + 8];
    struct conn client;
    int j;

    for (j = 0; j < g_nlisten_fd; j++)
        close(g_listen_fd[j]);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, block, NULL);
    g_slot = slot;
    peer_name(ss, slen, addr, sizeof(addr));
    proctitle_set("offload: connection from %s", addr);
    conn_attach(&client, cfd);
    serve_connection(&client, addr);
    _exit(0);
}

/* Accept one connection on listening socket lfd and fork its child, or
 * refuse it when MaxClients children are busy. */
static void accept_one(int lfd, const sigset_t *block)
{
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    pid_t pid;
    int cfd, slot;

    cfd = accept4(lfd, (struct sockaddr *)&ss, &slen, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    if (g_book->active >= g_cfg.max_clients) {
        refuse_busy(cfd);
        return;
    }
    for (slot = 0; g_book->pid[slot] != 0; slot++) {
    }
    pid = fork();
    if (pid == 0)
        connection_child(cfd, slot, &ss, slen, block);
    close(cfd);
    if (pid < 0) {
        log_msg("error", "fork: %s", strerror(errno));
        return;
    }
    g_book->pid[slot] = pid;
    g_book->active++;
}

/* Shutting down: let downloads finish for OFFLOAD_SHUTDOWN_GRACE, then
 * cut them. The addresses and the PID file are free at once, so that a
 * new daemon can start. */
static void shutdown_children(const sigset_t *empty)
{
    long long deadline;
    int i;

    for (i = 0; i < g_nlisten_fd; i++)
        close(g_listen_fd[i]);
    pid_file_release();
    if (g_scrub_pid > 0)
        kill(g_scrub_pid, SIGTERM);
    for (i = 0; i < g_cfg.max_clients; i++) {
        if (g_book->pid[i] > 0)
            kill(g_book->pid[i], SIGTERM);
    }
    deadline = now_ms() + (long long)OFFLOAD_SHUTDOWN_GRACE * 1000;
    while (g_book->active > 0 && now_ms() < deadline) {
        struct timespec ts = {0, OFFLOAD_SHUTDOWN_TICK_MS * 1000000L};
        reap_children();
        if (g_book->active > 0)
            ppoll(NULL, 0, &ts, empty);
    }
    for (i = 0; i < g_cfg.max_clients; i++) {
        if (g_book->pid[i] > 0)
            kill(g_book->pid[i], SIGKILL);
    }
    log_msg("notice", "stopped");
}

/* Accept connections until SIGTERM/SIGINT, one child per connection;
 * then stop accepting and give running downloads a grace period.
 * lifeline, when not -1, is the daemonizing starter's pipe: it is told
 * only once signals are caught and the title is set, so whoever ran the
 * starter finds a daemon that is fully up when it returns. */
static void accept_loop(int lifeline)
{
    struct pollfd pfds[OFFLOAD_MAX_LISTEN + OFFLOAD_MAX_LINGER];
    sigset_t block, empty;
    int i;

    sigemptyset(&empty);
    signals_catch_all(&block);
    proctitle_set("offload: accepting on %d address(es)", g_nlisten_fd);
    g_got_sigchld = 1;  /* the cache scan may have ended before the handler */
    if (lifeline >= 0) {
        if (write(lifeline, "", 1) != 1) {
            /* the starter is gone; nothing to tell */
        }
        close(lifeline);
    }
    for (i = 0; i < g_nlisten_fd; i++) {
        pfds[i].fd = g_listen_fd[i];
        pfds[i].events = POLLIN;
    }
    while (!g_got_sigterm) {
        signals_handle();
        if (accept_wait(pfds, &empty) <= 0)
            continue;
        for (i = 0; i < g_nlisten_fd; i++) {
            if (pfds[i].revents & POLLIN)
                accept_one(g_listen_fd[i], &block);
        }
    }
    shutdown_children(&empty);
}

/* ======================================================================
 * Start-up
 * ====================================================================== */

/* Print the usage, with every setting of the table: its config-file
 * name and value, its flag, its default and its range. */
static void usage(FILE *out)
{
    char syntax[64], def[128], range[64];
    size_t i;

    fprintf(out,
            "usage: %s [-F] [-t] [-f FILE] [--cgi] --base URL [settings]\n"
            "  -f FILE   read settings from FILE (\"Name value\" lines); flags\n"
            "            override it\n"
            "  -t        check the settings and exit (0 when good)\n"
            "  -F        stay in the foreground, log to stderr\n"
            "  --cgi     answer one request as a CGI program\n"
            "  --cache-list, --cache-verify, --cache-purge PATH, "
            "--cache-purge-all\n"
            "            list, check (CRC-32) or remove cached objects\n"
            "  --list-settings  print the settings below, one per line:\n"
            "            name, flag, value, default, range, notes; tab-separated\n"
            "  --help, --version\n"
            "settings (config-file name and value, flag; default, range):\n",
            g_progname);
    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting_def *d = &g_setting_defs[i];
        setting_range(d, range, sizeof(range));
        fprintf(out, "  %s %-*s %s\n", d->name,
                (int)(36 - strlen(d->name)), setting_syntax(d, syntax,
                                                            sizeof(syntax)),
                d->flag);
        fprintf(out, "      %s%s%s%s\n",
                d->flags & SETTING_REQUIRED ? "required" : "default ",
                d->flags & SETTING_REQUIRED ? ""
                                            : setting_default(d, def,
                                                              sizeof(def)),
                range[0] ? "; " : "", range);
    }
    fprintf(out, "see offload_daemon(8) and docs/offload_daemon.md\n");
}

/* --list-settings: the settings table, one tab-separated line per
 * setting: name, flag, value, default, range, notes ("required",
 * "restart": fixed at start-up). */
static void settings_list(void)
{
    char syntax[64], def[128], range[64];
    size_t i;

    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting_def *d = &g_setting_defs[i];
        printf("%s\t%s\t%s\t%s\t%s\t%s%s%s\n", d->name, d->flag,
               setting_syntax(d, syntax, sizeof(syntax)),
               setting_default(d, def, sizeof(def)),
               setting_range(d, range, sizeof(range)),
               d->flags & SETTING_REQUIRED ? "required" : "",
               (d->flags & SETTING_REQUIRED) && (d->flags & SETTING_AT_START)
                   ? " " : "",
               d->flags & SETTING_AT_START ? "restart" : "");
    }
}

/*
 * Build settings into c: defaults, then the config file (-f), then the
 * setting flags of the command line (a list flag given on the command
 * line replaces the file's list). Returns 0, or -1 with err naming
 * FILE:LINE or the flag.
 */
static int settings_read(struct settings *c, char *err, size_t errsz)
{
    unsigned long begun = 0;
    int i;

    settings_defaults(c);
    if (g_config_file != NULL &&
        config_parse_file(g_config_file, c, err, errsz) != 0)
        return -1;
    for (i = 1; i < g_argc; i++) {
        const struct setting_def *def = setting_find(g_argv[i], 1);
        const char *why = NULL;

        if (def == NULL) {
            /* our own options with a value (options_parse checked them) */
            if (strcmp(g_argv[i], "-f") == 0 ||
                strcmp(g_argv[i], "--cache-purge") == 0)
                i++;
            continue;
        }
        if (setting_apply(c, def, g_argv[i + 1], &begun, &why) != 0) {
            snprintf(err, errsz, "%s %s: %s", def->flag, g_argv[i + 1], why);
            return -1;
        }
        i++;
    }
    return 0;
}

/* Read the settings (settings_read) and check them (settings_check).
 * Returns 0, or -1 with err. */
static int settings_load(struct settings *c, char *err, size_t errsz)
{
    if (settings_read(c, err, errsz) != 0)
        return -1;
    return settings_check(c, err, errsz);
}

/*
 * Read the command line's own flags (-F, -t, -f, --cgi, --help,
 * --version, --list-settings, the cache tools) and check that every
 * other word is a setting flag with a value. Dies on an error. Returns 1
 * when -t was given.
 */
static int options_parse(int argc, char **argv)
{
    int i, check_only = 0;

    for (i = 1; i < argc; i++) {
        char *a = argv[i];
        char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;

        if (strcmp(a, "-F") == 0) {
            g_foreground = 1;
        } else if (strcmp(a, "-t") == 0) {
            check_only = 1;
        } else if (strcmp(a, "--cgi") == 0) {
            g_cgi = 1;
        } else if (strcmp(a, "--cache-list") == 0 ||
                   strcmp(a, "--cache-verify") == 0 ||
                   strcmp(a, "--cache-purge-all") == 0) {
            g_tool = a;
        } else if (strcmp(a, "--cache-purge") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0')
                die("--cache-purge needs a URL path");
            g_tool = a;
            g_tool_arg = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--list-settings") == 0) {
            settings_list();
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            printf("offload_daemon %s\n", OFFLOAD_VERSION);
            exit(0);
        } else if (strcmp(a, "-f") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0')
                die("-f needs a file name");
            g_config_file = argv[++i];
        } else if (eq != NULL) {
            die("write %.*s VALUE, not %s", (int)(eq - a), a, a);
        } else if (setting_find(a, 1) != NULL) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0')
                die("%s needs a value", a);
            i++;
        } else {
            die("unknown option %s (see --help)", a);
        }
    }
    g_argc = argc;
    g_argv = argv;
    return check_only;
}

/* Keep our own copy of the command line (for SIGHUP): the memory of
 * argv becomes the process title. Dies when out of memory. */
static void argv_keep(int argc, char **argv)
{
    g_argv = calloc((size_t)argc + 1, sizeof(*g_argv));
    if (g_argv == NULL)
        die("out of memory");
    for (int i = 0; i < argc; i++)
        if ((g_argv[i] = strdup(argv[i])) == NULL)
            die("out of memory");
    if (g_config_file != NULL && (g_config_file = strdup(g_config_file)) == NULL)
        die("out of memory");
}

/*
 * Create directory dir (one level, mode 0755) if it is missing, and
 * give one we created to User when we run as root. Returns 0, or -1
 * with err naming what.
 */
static int dir_create(const char *what, const char *dir, char *err,
                      size_t errsz)
{
    struct passwd *pw;

    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST)
            return 0;
        snprintf(err, errsz, "%s %s: %s", what, dir, strerror(errno));
        return -1;
    }
    if (getuid() == 0 && g_cfg.user[0] && (pw = getpwnam(g_cfg.user)) != NULL &&
        chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
        snprintf(err, errsz, "%s %s: %s", what, dir, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * A start-up step, before the settings are checked: create CacheDir's
 * last directory and the PidFile's directory if they are missing, each
 * given to User (who fills the cache and removes the PID file at exit).
 * -t, the cache tools and a reload create nothing. Dies on a failure.
 */
static void startup_dirs_create(void)
{
    char err[2 * PATH_MAX], dir[PATH_MAX];

    if (dir_create("CacheDir (--cache-dir)", g_cfg.cache_dir, err,
                   sizeof(err)) != 0)
        die("%s", err);
    if (!g_cgi && g_cfg.pid_file[0] &&
        dir_create("PidFile (--pid-file) directory",
                   path_dir(g_cfg.pid_file, dir, sizeof(dir)), err,
                   sizeof(err)) != 0)
        die("%s", err);
}

/*
 * -t: say what the daemon would create at start that is not there yet
 * (the check accepted it), then that the configuration is good.
 */
static void settings_report(void)
{
    char dir[PATH_MAX];
    struct stat st;

    if (!g_cgi && g_cfg.pid_file[0] &&
        stat(path_dir(g_cfg.pid_file, dir, sizeof(dir)), &st) != 0 &&
        errno == ENOENT)
        printf("%s: PidFile (--pid-file) %s: its directory %s is missing; "
               "the daemon creates it at start\n", g_progname, g_cfg.pid_file,
               dir);
    printf("%s: configuration OK\n", g_config_file ? g_config_file
                                                   : "command line");
}

/* Go to the background: fork, new session, cwd /, standard streams to
 * /dev/null. The parent waits on a pipe (the lifeline) until the child
 * says it is ready, so that a failure after the fork still gives a
 * non-zero exit status to whoever started us. Returns the write end of
 * the lifeline in the child. */
static int daemonize(void)
{
    int lifeline[2], fd;
    pid_t pid;
    char ok;

    if (pipe2(lifeline, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0) {
        close(lifeline[1]);
        _exit(read(lifeline[0], &ok, 1) == 1 ? 0 : 1);
    }
    close(lifeline[0]);
    setsid();
    if (chdir("/") != 0)
        die("chdir /: %s", strerror(errno));
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return lifeline[1];
}

/*
 * Open a log or PID file for appending, creating it if need be. A file
 * created while we are root and will run as User is given to User, so
 * that reopening it (SIGUSR1, SIGHUP) works after privileges are gone.
 * Returns the descriptor or -1.
 */
static int file_open_owned(const char *path, int flags)
{
    int fd = open(path, flags | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    struct passwd *pw;

    if (fd < 0)
        return errno == EEXIST ? open(path, flags | O_CLOEXEC) : -1;
    if (getuid() == 0 && g_cfg.user[0] && (pw = getpwnam(g_cfg.user)) != NULL &&
        fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
        log_msg("warning", "cannot give %s to User %s: %s", path, g_cfg.user,
                strerror(errno));
    return fd;
}

/* Open (or reopen, for SIGUSR1) the log files named in the settings.
 * A file that cannot be opened keeps the old descriptor. Returns 0, or -1
 * with errno set if one failed. */
static int logs_open(void)
{
    int rc = 0;

    if (g_cfg.access_log[0]) {
        int fd = file_open_owned(g_cfg.access_log, O_WRONLY | O_APPEND);
        if (fd >= 0) {
            if (g_access_fd > STDERR_FILENO)
                close(g_access_fd);
            g_access_fd = fd;
        } else {
            rc = -1;
        }
    } else {
        g_access_fd = g_foreground ? STDOUT_FILENO : -1;
    }
    if (g_cfg.error_log[0]) {
        int fd = file_open_owned(g_cfg.error_log, O_WRONLY | O_APPEND);
        if (fd >= 0) {
            if (g_error_fd > STDERR_FILENO)
                close(g_error_fd);
            g_error_fd = fd;
        } else {
            rc = -1;
        }
    } else if (g_foreground || g_cgi) {
        g_error_fd = STDERR_FILENO;
    } else {
        openlog("offload_daemon", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        g_error_fd = -1;
    }
    return rc;
}

/*
 * SIGHUP: read the settings again for connections accepted from now on.
 * A bad file keeps the old settings. The settings fixed at start-up
 * (SETTING_AT_START: Listen, User, PidFile, MaxClients) keep their
 * values; a change to one of them is logged.
 */
static void config_reload(void)
{
    static struct settings next;
    char err[3 * PATH_MAX], changed[256] = "";
    size_t i, len = 0;

    if (settings_load(&next, err, sizeof(err)) != 0) {
        log_msg("error", "reload: %s; keeping the old configuration", err);
        return;
    }
    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting_def *d = &g_setting_defs[i];

        if (!(d->flags & SETTING_AT_START))
            continue;
        if (memcmp(setting_field(&next, d), setting_field(&g_cfg, d),
                   d->size) != 0 ||
            (g_kinds[d->kind].is_list &&
             *setting_count(&next, d) != *setting_count(&g_cfg, d)))
            len += (size_t)snprintf(changed + len, sizeof(changed) - len,
                                    "%s%s", len ? ", " : "", d->name);
        memcpy(setting_field(&next, d), setting_field(&g_cfg, d), d->size);
        if (g_kinds[d->kind].is_list)
            *setting_count(&next, d) = *setting_count(&g_cfg, d);
        if (len >= sizeof(changed))
            len = sizeof(changed) - 1;
    }
    if (changed[0])
        log_msg("warning", "reload: a change to %s takes effect only at a "
                "restart", changed);
    g_cfg = next;
    if (base_resolve() != 0)
        log_msg("warning", "reload: cannot resolve the base %s yet",
                g_cfg.base_url);
    if (logs_open() != 0)
        log_msg("error", "reload: cannot open a log file: %s", strerror(errno));
    log_msg("notice", "reloaded %s", g_config_file ? g_config_file
                                                   : "the command line");
}

/*
 * Take the PID file: open it and hold an exclusive flock() for the
 * daemon's life, so a second daemon with the same PidFile refuses to
 * start. Returns the descriptor (the PID is written later, by
 * pid_file_write), or -1 when there is no PidFile. Dies if it is taken.
 */
static int pid_file_take(void)
{
    char old[32] = "";
    ssize_t n;
    int fd;

    if (g_cfg.pid_file[0] == '\0')
        return -1;
    fd = file_open_owned(g_cfg.pid_file, O_RDWR);
    if (fd < 0)
        die("PidFile %s: %s", g_cfg.pid_file, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        n = pread(fd, old, sizeof(old) - 1, 0);
        old[n > 0 ? n : 0] = '\0';
        old[strcspn(old, "\n")] = '\0';
        die("PidFile %s: another offload_daemon is running (pid %s)",
            g_cfg.pid_file, old[0] ? old : "unknown");
    }
    return fd;
}

/* Remove the PID file and let go of it (at the start of a stop). */
static void pid_file_release(void)
{
    if (g_pid_fd < 0)
        return;
    if (unlink(g_cfg.pid_file) != 0 && ftruncate(g_pid_fd, 0) != 0)
        log_msg("error", "PidFile %s: %s", g_cfg.pid_file, strerror(errno));
    close(g_pid_fd);
    g_pid_fd = -1;
}

/* Write our PID into the held PID file. */
static void pid_file_write(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

    if (fd < 0)
        return;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        die("PidFile %s: %s", g_cfg.pid_file, strerror(errno));
}

/* Drop root privileges to User, if one is set. Dies on failure. */
static void user_drop(void)
{
    struct passwd *pw;

    if (g_cfg.user[0] == '\0')
        return;
    pw = getpwnam(g_cfg.user);
    if (pw == NULL)
        die("User %s: no such user", g_cfg.user);
    if (getuid() == pw->pw_uid)
        return;
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        die("User %s: %s", g_cfg.user, strerror(errno));
    if (access(g_cfg.cache_dir, W_OK | X_OK) != 0)
        die("CacheDir (--cache-dir) %s: not writable by User %s",
            g_cfg.cache_dir, g_cfg.user);
}

#ifndef OFFLOAD_NO_MAIN
int main(int argc, char **argv)
{
    char err[3 * PATH_MAX];
    int check_only, pid_fd, lifeline = -1;

    g_progname = "offload_daemon";
    check_only = options_parse(argc, argv);
    argv_keep(argc, argv);
    if (settings_read(&g_cfg, err, sizeof(err)) != 0)
        die("%s", err);
    if (!check_only && g_tool == NULL)
        startup_dirs_create();
    if (settings_check(&g_cfg, err, sizeof(err)) != 0)
        die("%s", err);
    if (check_only) {
        settings_report();
        return 0;
    }
    if (g_tool != NULL)
        return cache_tool(g_tool, g_tool_arg);
    if (gethostname(g_via_host, sizeof(g_via_host) - 1) != 0)
        copy_string(g_via_host, sizeof(g_via_host), "offload");
    signal(SIGPIPE, SIG_IGN);
    tzset();    /* once, here, rather than in every child's first log line */
    if (g_cgi)
        return cgi_main();
    if (base_resolve() != 0)
        fprintf(stderr, "%s: warning: cannot resolve the base %s yet; will "
                "retry per request\n", g_progname, g_cfg.base_url);
    proctitle_init(argc, argv);
    pid_fd = g_pid_fd = pid_file_take();
    listen_open_all();
    g_book = mmap(NULL, sizeof(*g_book) + (size_t)g_cfg.max_clients *
                                              sizeof(g_book->pid[0]),
                  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_book == MAP_FAILED)
        die("shared memory: %s", strerror(errno));
    /* zlib's first call sets up its state (its CRC tables, where it
     * computes them): in the parent, so that children share it */
    hash64("", 0);
    pages_map_all();
    if (shared_init() != 0)
        die("shared memory: %s", strerror(errno));
    if (logs_open() != 0)
        die("cannot open a log file: %s", strerror(errno));
    user_drop();
    if (!g_foreground)
        lifeline = daemonize();
    pid_file_write(pid_fd);
    if (!g_cfg.docroot[0] && fork() == 0) {
        proctitle_set("offload: scanning the cache");
        cache_scan();
        cache_evict();
        _exit(0);
    }
    /* fetchers outlive the connection children that start them; as
     * their subreaper the parent reaps them */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    log_msg("notice", "offload_daemon %s serving %s from %s", OFFLOAD_VERSION,
            g_cfg.base_url, g_cfg.cache_dir);
    accept_loop(lifeline);
    return 0;
}
#endif
