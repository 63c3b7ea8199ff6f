/*
 * config.h -- what mod_offload.c and offload_daemon.c share.
 *
 * Every limit and compile-time default lives here, each overridable from
 * the build (make CFLAGS=-DOFFLOAD_X=...). Run-time settings (daemon flags
 * and config file, Apache directives) override these defaults.
 *
 * Copyright (c) 2026 the mod_offload authors. zlib license: see LICENSE.txt.
 */
#ifndef OFFLOAD_CONFIG_H
#define OFFLOAD_CONFIG_H

/* ---- identity ---------------------------------------------------------- */

#ifndef OFFLOAD_VERSION
#define OFFLOAD_VERSION "0.1.0"
#endif

/* Sent by the daemon on every request to the base; the module never
 * redirects a request that carries it, so the daemon always gets the file. */
#ifndef OFFLOAD_BYPASS_HEADER
#define OFFLOAD_BYPASS_HEADER "X-Mod-Offload-Bypass"
#endif

/* ---- module defaults --------------------------------------------------- */

/* Files smaller than this are cheaper to serve than to redirect. */
#ifndef OFFLOAD_DEFAULT_MIN_SIZE
#define OFFLOAD_DEFAULT_MIN_SIZE (5 * 1024)
#endif

#ifndef OFFLOAD_DEFAULT_REDIRECT_STATUS
#define OFFLOAD_DEFAULT_REDIRECT_STATUS 302
#endif

/* Upper bound of weight=N on OffloadHost. */
#ifndef OFFLOAD_MAX_WEIGHT
#define OFFLOAD_MAX_WEIGHT 1000
#endif

/* The module offloads a URL only if an anonymous client at this address
 * would be allowed to fetch it (Require all granted passes, Require ip or
 * valid-user do not). RFC 5737 documentation address: never a real client. */
#ifndef OFFLOAD_STRANGER_ADDRESS
#define OFFLOAD_STRANGER_ADDRESS "192.0.2.1"
#endif

/* OffloadBusyThreshold: 0 offloads whatever the load. */
#ifndef OFFLOAD_DEFAULT_BUSY_THRESHOLD
#define OFFLOAD_DEFAULT_BUSY_THRESHOLD 0
#endif

/* OffloadHealthCheckInterval, in seconds, and OffloadHealthCheckURI. */
#ifndef OFFLOAD_DEFAULT_HC_INTERVAL
#define OFFLOAD_DEFAULT_HC_INTERVAL 10
#endif

#ifndef OFFLOAD_DEFAULT_HC_URI
#define OFFLOAD_DEFAULT_HC_URI "/offload-status"
#endif

/* Seconds a health check may take to connect, and then to get the status
 * line; never more than the interval. */
#ifndef OFFLOAD_HC_TIMEOUT
#define OFFLOAD_HC_TIMEOUT 5
#endif

/* Largest health-check interval, in seconds (a day). */
#ifndef OFFLOAD_HC_MAX_INTERVAL
#define OFFLOAD_HC_MAX_INTERVAL 86400
#endif

/* Bytes of a health-check answer read to find its status line. */
#ifndef OFFLOAD_HC_MAX_STATUS_LINE
#define OFFLOAD_HC_MAX_STATUS_LINE 512
#endif

/* Longest OffloadHealthCheckURI, in bytes. */
#ifndef OFFLOAD_HC_MAX_URI
#define OFFLOAD_HC_MAX_URI 1024
#endif

/* Largest OffloadBusyThreshold. */
#ifndef OFFLOAD_MAX_BUSY_THRESHOLD
#define OFFLOAD_MAX_BUSY_THRESHOLD 100000
#endif

/* ---- daemon defaults --------------------------------------------------- */

/* The port of the default Listen, on every IPv4 address. */
#ifndef OFFLOAD_DEFAULT_PORT
#define OFFLOAD_DEFAULT_PORT 8081
#endif

#ifndef OFFLOAD_DEFAULT_CACHE_DIR
#define OFFLOAD_DEFAULT_CACHE_DIR "/var/cache/offload"
#endif

/* Seconds for reading a request's headers and for each read or write to
 * the base and to the client. */
#ifndef OFFLOAD_DEFAULT_TIMEOUT
#define OFFLOAD_DEFAULT_TIMEOUT 45
#endif

/* Seconds a kept-alive client connection may sit idle between requests. */
#ifndef OFFLOAD_KEEPALIVE_TIMEOUT
#define OFFLOAD_KEEPALIVE_TIMEOUT 15
#endif

/* Requests served on one client connection before it is closed. */
#ifndef OFFLOAD_MAX_KEEPALIVE_REQUESTS
#define OFFLOAD_MAX_KEEPALIVE_REQUESTS 1000
#endif

/* Timeout's range. */
#ifndef OFFLOAD_MIN_TIMEOUT
#define OFFLOAD_MIN_TIMEOUT 1
#endif

#ifndef OFFLOAD_MAX_TIMEOUT
#define OFFLOAD_MAX_TIMEOUT 3600
#endif

/* MaxClients: its default and range. The shared table of download slots
 * has one per client. */
#ifndef OFFLOAD_DEFAULT_MAX_CLIENTS
#define OFFLOAD_DEFAULT_MAX_CLIENTS 256
#endif

#ifndef OFFLOAD_MIN_CLIENTS
#define OFFLOAD_MIN_CLIENTS 1
#endif

#ifndef OFFLOAD_MAX_CLIENTS
#define OFFLOAD_MAX_CLIENTS 100000
#endif

/* MaxDupeDownloads: its default and range; 0 turns the cap off. */
#ifndef OFFLOAD_DEFAULT_MAX_DUPE_DOWNLOADS
#define OFFLOAD_DEFAULT_MAX_DUPE_DOWNLOADS 1
#endif

#ifndef OFFLOAD_MIN_DUPE_DOWNLOADS
#define OFFLOAD_MIN_DUPE_DOWNLOADS 0
#endif

#ifndef OFFLOAD_MAX_DUPE_DOWNLOADS
#define OFFLOAD_MAX_DUPE_DOWNLOADS 1000
#endif

/* ValidateInterval, in seconds: its default (0: a HEAD to the base for
 * every request) and range (up to a day). */
#ifndef OFFLOAD_DEFAULT_VALIDATE_INTERVAL
#define OFFLOAD_DEFAULT_VALIDATE_INTERVAL 0
#endif

#ifndef OFFLOAD_MIN_VALIDATE_INTERVAL
#define OFFLOAD_MIN_VALIDATE_INTERVAL 0
#endif

#ifndef OFFLOAD_MAX_VALIDATE_INTERVAL
#define OFFLOAD_MAX_VALIDATE_INTERVAL 86400
#endif

/* CacheMaxSize, in bytes: 0 is no cap. */
#ifndef OFFLOAD_DEFAULT_CACHE_MAX_SIZE
#define OFFLOAD_DEFAULT_CACHE_MAX_SIZE 0
#endif

/* RobotsTxt and ServeStaleOnError: 1 is On. */
#ifndef OFFLOAD_DEFAULT_ROBOTS_TXT
#define OFFLOAD_DEFAULT_ROBOTS_TXT 1
#endif

#ifndef OFFLOAD_DEFAULT_SERVE_STALE
#define OFFLOAD_DEFAULT_SERVE_STALE 1
#endif

/* The refusal status of one download too many. 429 with Retry-After:
 * aria2c -x8 finishes on its allowed connection and curl --retry retries
 * it, as with 503, while 5xx stays the sign of a server fault for
 * monitoring (measurements: docs/offload_daemon.md, DupeStatus). */
#ifndef OFFLOAD_DEFAULT_DUPE_STATUS
#define OFFLOAD_DEFAULT_DUPE_STATUS 429
#endif

/* Milliseconds a download over MaxDupeDownloads waits for a slot to be
 * freed before it is refused: a process that just sent its last byte may
 * not have freed its slot yet when the client asks again. */
#ifndef OFFLOAD_DUPE_GRACE_MS
#define OFFLOAD_DUPE_GRACE_MS 250
#endif

/* The path of the daemon's health and metrics page (StatusPath). */
#ifndef OFFLOAD_DEFAULT_STATUS_PATH
#define OFFLOAD_DEFAULT_STATUS_PATH "/offload-status"
#endif

/* Who may read it by default (StatusAllow): blank-separated blocks. */
#ifndef OFFLOAD_DEFAULT_STATUS_ALLOW
#define OFFLOAD_DEFAULT_STATUS_ALLOW "127.0.0.0/8 ::1"
#endif

/* After an eviction round the cache is this many percent of
 * CacheMaxSize, so that rounds (each a scan of the cache) do not follow
 * every fetch. */
#ifndef OFFLOAD_EVICT_LOW_PERCENT
#define OFFLOAD_EVICT_LOW_PERCENT 90
#endif

/* Retry-After seconds sent with 429 and 503. */
#ifndef OFFLOAD_RETRY_AFTER
#define OFFLOAD_RETRY_AFTER 10
#endif

/* Most entries of TrustedProxy, and of StatusAllow. */
#ifndef OFFLOAD_MAX_TRUSTED_PROXIES
#define OFFLOAD_MAX_TRUSTED_PROXIES 32
#endif

/* Most ServerName names of one daemon. */
#ifndef OFFLOAD_MAX_SERVER_NAMES
#define OFFLOAD_MAX_SERVER_NAMES 16
#endif

/* The longest ServerName: a host name (255) and a port. */
#ifndef OFFLOAD_MAX_SERVER_NAME
#define OFFLOAD_MAX_SERVER_NAME 262
#endif

/* Longest line in the daemon's config file. */
#ifndef OFFLOAD_MAX_CONFIG_LINE
#define OFFLOAD_MAX_CONFIG_LINE 4096
#endif

/* Seconds running downloads get to finish after SIGTERM. */
#ifndef OFFLOAD_SHUTDOWN_GRACE
#define OFFLOAD_SHUTDOWN_GRACE 30
#endif

/* Addresses of the base kept from one name lookup. */
#ifndef OFFLOAD_MAX_BASE_ADDRS
#define OFFLOAD_MAX_BASE_ADDRS 8
#endif

/* Most Listen addresses. */
#ifndef OFFLOAD_MAX_LISTEN
#define OFFLOAD_MAX_LISTEN 16
#endif

/* Refused connections the parent keeps open until the client has read
 * the refusal. */
#ifndef OFFLOAD_MAX_LINGER
#define OFFLOAD_MAX_LINGER 64
#endif

#ifndef OFFLOAD_LISTEN_BACKLOG
#define OFFLOAD_LISTEN_BACKLOG 511
#endif

/* ---- input limits (client and base alike) ------------------------------ */

/* Longest request line; longer gets 414. At least 8000 (RFC 9112 3). */
#ifndef OFFLOAD_MAX_REQUEST_LINE
#define OFFLOAD_MAX_REQUEST_LINE 8192
#endif

/* Largest header block (request line included); larger gets 431. */
#ifndef OFFLOAD_MAX_HEADER_BLOCK
#define OFFLOAD_MAX_HEADER_BLOCK 16384
#endif

/* Most header fields in one request or response. */
#ifndef OFFLOAD_MAX_HEADERS
#define OFFLOAD_MAX_HEADERS 100
#endif

/* Longest URL path the daemon accepts, as sent (RFC 9112 3 recommends
 * request lines of at least 8000 octets: a path as long as the longest
 * request line is accepted). Not a cost per download: the path is
 * checked in place, and the arrays sized by it are written only as far
 * as a path goes. */
#ifndef OFFLOAD_MAX_PATH
#define OFFLOAD_MAX_PATH OFFLOAD_MAX_REQUEST_LINE
#endif

/* Longest URL path whose file is cached: its key must fit in the cache
 * metadata block (OFFLOAD_META_SIZE) with the validators. A longer path
 * is served, passed through from the base without caching. */
#ifndef OFFLOAD_MAX_CACHED_PATH
#define OFFLOAD_MAX_CACHED_PATH 2048
#endif

/* Longest Location of a redirect from the base that is passed on. */
#ifndef OFFLOAD_MAX_LOCATION
#define OFFLOAD_MAX_LOCATION 2048
#endif

/* Longest validator or type value kept from the base (ETag, dates,
 * Content-Type). Longer values make the object uncacheable. */
#ifndef OFFLOAD_MAX_VALIDATOR
#define OFFLOAD_MAX_VALIDATOR 256
#endif

/* Most byte ranges honoured in one Range header; more gets the whole
 * file (RFC 9110 allows ignoring Range). */
#ifndef OFFLOAD_MAX_RANGES
#define OFFLOAD_MAX_RANGES 16
#endif

/* ---- cache ------------------------------------------------------------- */

/* Fixed-size metadata block at the start of every cache file; the body
 * follows it, page aligned, so sendfile() reads whole pages. */
#ifndef OFFLOAD_META_SIZE
#define OFFLOAD_META_SIZE 4096
#endif

/* Longest (absolute) CacheDir: the object's file names are kept in
 * fixed buffers of about this size. */
#ifndef OFFLOAD_MAX_CACHE_DIR
#define OFFLOAD_MAX_CACHE_DIR 1024
#endif

/* A hit updates a cached copy's access time (LRU order) and, when the
 * base has just confirmed it, its modification time, unless it did so
 * less than this many milliseconds ago. */
#ifndef OFFLOAD_TOUCH_INTERVAL_MS
#define OFFLOAD_TOUCH_INTERVAL_MS 10
#endif

/* How much of a metadata block a hit reads first: the block's text is
 * usually shorter; a longer one is read whole. */
#ifndef OFFLOAD_META_FIRST_READ
#define OFFLOAD_META_FIRST_READ 1024
#endif

/* Copy buffer between the base and the cache file. */
#ifndef OFFLOAD_IO_BUFFER
#define OFFLOAD_IO_BUFFER (64 * 1024)
#endif

/* TCP_NOTSENT_LOWAT of client connections (NotSentLowat): how many
 * bytes the kernel keeps queued but unsent for one client. */
#ifndef OFFLOAD_DEFAULT_NOTSENT_LOWAT
#define OFFLOAD_DEFAULT_NOTSENT_LOWAT (2 * 1024 * 1024)
#endif

/* NotSentLowat's range; 0 leaves the kernel's default. */
#ifndef OFFLOAD_MIN_NOTSENT_LOWAT
#define OFFLOAD_MIN_NOTSENT_LOWAT 0
#endif

#ifndef OFFLOAD_MAX_NOTSENT_LOWAT
#define OFFLOAD_MAX_NOTSENT_LOWAT (64 * 1024 * 1024)
#endif

/* Largest single sendfile() call towards a client. */
#ifndef OFFLOAD_SENDFILE_CHUNK
#define OFFLOAD_SENDFILE_CHUNK (1024 * 1024)
#endif

/* Milliseconds a reader waits for an event from the fetcher before it
 * re-checks that the fetcher is still alive (a safety net: a live fetcher
 * wakes readers through inotify as soon as it writes). */
#ifndef OFFLOAD_FOLLOW_CHECK_MS
#define OFFLOAD_FOLLOW_CHECK_MS 1000
#endif

/* Objects remembered (shared by all processes) as "cache error already
 * logged", so a full disk logs once per object, not once per request. */
#ifndef OFFLOAD_CACHE_ERROR_SLOTS
#define OFFLOAD_CACHE_ERROR_SLOTS 4096
#endif

/* ---- daemon: connections and waits ----------------------------------- */

/* A lingering close: how long a connection that was answered is drained
 * before it is closed (so that the answer is not destroyed by a reset),
 * and how often the drain looks for input. */
#ifndef OFFLOAD_LINGER_MS
#define OFFLOAD_LINGER_MS 2000
#endif

#ifndef OFFLOAD_LINGER_TICK_MS
#define OFFLOAD_LINGER_TICK_MS 200
#endif

/* How often the parent looks for children gone during the shutdown
 * grace. */
#ifndef OFFLOAD_SHUTDOWN_TICK_MS
#define OFFLOAD_SHUTDOWN_TICK_MS 50
#endif

/* A reader that finds an object locked but its .part not there yet (the
 * fetcher is between the two) looks again this many times, waiting
 * OFFLOAD_ACQUIRE_BACKOFF_MS times the attempt's number in between. */
#ifndef OFFLOAD_ACQUIRE_TRIES
#define OFFLOAD_ACQUIRE_TRIES 20
#endif

#ifndef OFFLOAD_ACQUIRE_BACKOFF_MS
#define OFFLOAD_ACQUIRE_BACKOFF_MS 5
#endif

/* The status page's room, in bytes. */
#ifndef OFFLOAD_MAX_STATUS_PAGE
#define OFFLOAD_MAX_STATUS_PAGE 16384
#endif

/* How often a download waiting out OFFLOAD_DUPE_GRACE_MS for a slot of
 * its address (MaxDupeDownloads) looks again, in milliseconds. */
#ifndef OFFLOAD_DUPE_RETRY_MS
#define OFFLOAD_DUPE_RETRY_MS 10
#endif

/* Header lines of a request to the base after its request line: Host,
 * User-Agent, the bypass, forwarding and version fields. */
#ifndef OFFLOAD_MAX_BASE_REQUEST_FIELDS
#define OFFLOAD_MAX_BASE_REQUEST_FIELDS 1536
#endif

/* Header lines of a response to a client: entity fields (four values of
 * at most OFFLOAD_MAX_VALIDATOR each) and what a status adds to them. */
#ifndef OFFLOAD_MAX_RESPONSE_FIELDS
#define OFFLOAD_MAX_RESPONSE_FIELDS 1536
#endif

/* A client's Range or If-Range longer than this is not passed on to the
 * base when the file is served straight from it. */
#ifndef OFFLOAD_MAX_RELAYED_FIELD
#define OFFLOAD_MAX_RELAYED_FIELD 512
#endif

/* ---- integrity --------------------------------------------------------- */

/* Bytes of a SHA-256 digest. */
#ifndef OFFLOAD_SHA256_BYTES
#define OFFLOAD_SHA256_BYTES 32
#endif

/* OffloadDigestFile: the most of the list read to find a file's line,
 * and the longest line (a file name of up to 4 KiB after the digest). */
#ifndef OFFLOAD_MAX_DIGEST_FILE
#define OFFLOAD_MAX_DIGEST_FILE (4 * 1024 * 1024)
#endif

#ifndef OFFLOAD_MAX_DIGEST_LINE
#define OFFLOAD_MAX_DIGEST_LINE (4096 + 2 * OFFLOAD_SHA256_BYTES + 8)
#endif

/* A SHA-256 digest in base64, as Repr-Digest (RFC 9530) and Digest (RFC
 * 3230) carry it: 44 characters for 32 bytes. */
#ifndef OFFLOAD_SHA256_B64_LEN
#define OFFLOAD_SHA256_B64_LEN 44
#endif

/* ScrubRate, bytes per second: 0 runs no scrubber. */
#ifndef OFFLOAD_DEFAULT_SCRUB_RATE
#define OFFLOAD_DEFAULT_SCRUB_RATE 0
#endif

/* The scrubber's nice value, and how long it rests after a pass over an
 * empty cache (also the least time between two starts of it). */
#ifndef OFFLOAD_SCRUB_NICE
#define OFFLOAD_SCRUB_NICE 19
#endif

#ifndef OFFLOAD_SCRUB_IDLE_SECONDS
#define OFFLOAD_SCRUB_IDLE_SECONDS 1
#endif

#endif /* OFFLOAD_CONFIG_H */
