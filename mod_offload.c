/*
 * mod_offload.c -- the base server's half of mod_offload, for Apache 2.4.
 *
 * For every GET of a plain static file that anybody may fetch, the module
 * answers with a redirect to an offload host (an offload_daemon that fetches
 * the file from this server once, caches it and serves it from then on).
 * Every request it declines is served by Apache exactly as if the module
 * were not loaded. The decision has two phases, each a chain of early
 * exits, cheapest first: the file rules ("may this file be offloaded?")
 * and the request rules ("should this request go now?"). The rule that
 * declined is stored in the request note "offload-declined" and logged at
 * debug level (LogLevel offload:debug), the chosen host in "offload-host".
 *
 * Build and install:
 *
 *     make .libs/mod_offload.so        (apxs -c mod_offload.c)
 *     make install
 *
 * Sample configuration:
 *
 *     LoadModule offload_module /usr/lib/apache2/modules/mod_offload.so
 *     <Directory /srv/www/downloads>
 *         OffloadEngine On
 *         OffloadHost offload1.example.org:8081
 *         OffloadHost https://offload2.example.org/files weight=2
 *         OffloadMinSize 64K
 *         OffloadExcludeMimeType "text/html"
 *         OffloadExcludeUserAgent *Googlebot*
 *         OffloadExcludeAddress 10.0.0.0/8
 *     </Directory>
 *     LogFormat "%h %l %u %t \"%r\" %>s %b \
 *                %{offload-host}n %{offload-declined}n" offload
 *
 * Health checks of the hosts (server config only), offloading only under
 * load, mirror Link headers for what is served here, and a status page:
 *
 *     OffloadHealthCheck On
 *     OffloadHealthCheckInterval 10
 *     <Directory /srv/www/downloads>
 *         OffloadBusyThreshold 20
 *         OffloadLinkHeaders On
 *     </Directory>
 *     <Location /offload-status>
 *         SetHandler offload-status
 *         Require ip 127.0.0.1
 *     </Location>
 *
 * See docs/mod_offload.md for the reference of every directive.
 *
 * Copyright (c) 2026 the mod_offload authors. zlib license: see LICENSE.txt.
 */

#include <math.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mod_watchdog.h"
#include "scoreboard.h"

#include "apr_atomic.h"
#include "apr_base64.h"
#include "apr_escape.h"
#include "apr_fnmatch.h"
#include "apr_lib.h"
#include "apr_md5.h"
#include "apr_network_io.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_uri.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "config.h"

/* AP_DECLARE_MODULE(offload) at the end includes APLOG_USE_MODULE(offload),
 * so that LogLevel offload:debug applies to every line logged here. */
module AP_MODULE_DECLARE_DATA offload_module;

/* ---- configuration ----------------------------------------------------- */

#define OFFLOAD_UNSET (-1)

/* OffloadSelect: how the hosts are ranked for a request. */
typedef enum {
    OFFLOAD_SELECT_HASH,      /* rendezvous hashing of the path: default */
    OFFLOAD_SELECT_RANDOM,    /* rendezvous with random scores */
    OFFLOAD_SELECT_ROUNDROBIN /* weighted turns, per process */
} offload_select;

/* The port of a scheme when the URL names none. */
#define OFFLOAD_HTTP_PORT 80
#define OFFLOAD_HTTPS_PORT 443

/* Longest host name (RFC 1035: 255 octets) and largest port number. */
#define OFFLOAD_MAX_HOSTNAME 255
#define OFFLOAD_MAX_PORT 65535

/* The unit of OffloadMinSize's suffixes: K, M and G are its powers. */
#define OFFLOAD_KIB ((apr_int64_t)1024)

/* The argument OffloadHost takes after the host: weight=N. */
#define OFFLOAD_WEIGHT_PREFIX "weight="

/*
 * One offload daemon as the network sees it: scheme, name and port. Hosts
 * declared in the configuration files are registered once per process in
 * offload_targets (deduplicated), resolved at post_config, and recognised
 * as clients by address. Per-target state that all declarations share
 * (health, counters) belongs here.
 */
typedef struct {
    const char *scheme;    /* "http" or "https" */
    const char *hostname;  /* name or address literal, no brackets */
    apr_port_t port;       /* always set: the scheme's default if omitted */
    const char *authority; /* host[:port] as written in a URL */
    apr_sockaddr_t *addrs; /* resolved addresses; NULL if none */
    int index;             /* position in offload_targets and in the
                              shared slots; -1 if private */
    const char *weights;   /* the weights it was declared with, "1,2" */
} offload_target;

/* One OffloadHost declaration: a target, an optional path prefix, a weight. */
typedef struct {
    offload_target *target;
    const char *base; /* scheme://authority[/prefix], no trailing / */
    int weight;       /* 1..OFFLOAD_MAX_WEIGHT */
} offload_host;

/* One OffloadExcludeAddress argument: a CIDR block or a wildcard pattern. */
typedef struct {
    apr_ipsubnet_t *subnet; /* NULL when this is a pattern */
    const char *pattern;    /* matched against the client's address text */
} offload_addr_rule;

/*
 * Per-directory configuration. Ints start OFFLOAD_UNSET, pointers NULL;
 * defaults are applied when a value is read (offload_min_size() ...).
 * The arrays hold pointers, so merged arrays share the entries.
 */
typedef struct {
    int engine;                         /* 0, 1 or UNSET */
    int redirect_status;                /* 302, 303, 307 or UNSET */
    int select;                         /* offload_select, or UNSET */
    int busy_threshold;                 /* workers, or UNSET */
    int link_headers;                   /* 0, 1 or UNSET */
    apr_off_t min_size;                 /* bytes, or UNSET */
    apr_array_header_t *hosts;          /* offload_host * */
    apr_array_header_t *exclude_types;  /* const char * */
    apr_array_header_t *exclude_agents; /* const char * */
    apr_array_header_t *exclude_addrs;  /* offload_addr_rule * */
    const char *digest_file;            /* OffloadDigestFile; "" Off */
} offload_dir_conf;

/* Every target declared in the configuration files of this generation. */
static apr_array_header_t *offload_targets; /* offload_target *, in pconf */

/* The address of a stranger, for the "is this URL public?" check. */
static apr_sockaddr_t *offload_stranger; /* in pconf; NULL if unusable */

/* Turn of the round-robin selection, per process. */
static apr_uint32_t offload_rr_counter;

/* Host states and counters every process sees (see "shared state"). */
typedef struct offload_shared offload_shared;

/*
 * The server-wide configuration: the health-check settings (directives of
 * the main server config only) and the shared segment with the host
 * states. Every virtual host shares the main server's (see
 * offload_merge_server_conf), so a request reaches it through r->server
 * and the health checks through the main server. It lives in pconf: each
 * reading of the configuration starts a fresh one.
 */
typedef struct {
    int hc_enabled;      /* OffloadHealthCheck: 0 or 1 */
    int hc_interval;     /* OffloadHealthCheckInterval, seconds, or UNSET */
    const char *hc_uri;  /* OffloadHealthCheckURI; NULL if unset */
    offload_shared *shm; /* NULL until post_config, or if none */
} offload_server_conf;

/* Scoreboard dimensions for counting busy workers, set in child_init. */
static int offload_sb_daemons; /* process slots: ServerLimit */
static int offload_sb_threads; /* worker slots used per process */

/* ---- create and merge -------------------------------------------------- */

/*
 * Returns a fresh per-directory configuration from pool p with every value
 * unset. dir is unused.
 */
static void *offload_create_dir_conf(apr_pool_t *p, char *dir)
{
    offload_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->engine = OFFLOAD_UNSET;
    conf->redirect_status = OFFLOAD_UNSET;
    conf->select = OFFLOAD_UNSET;
    conf->busy_threshold = OFFLOAD_UNSET;
    conf->link_headers = OFFLOAD_UNSET;
    conf->min_size = OFFLOAD_UNSET;
    return conf;
}

/*
 * Returns the concatenation of base and add, allocated from p when both
 * are non-empty, otherwise whichever is set (NULL if neither). The
 * elements are pointers and are shared, not copied.
 */
static apr_array_header_t *offload_merge_list(apr_pool_t *p,
                                              apr_array_header_t *base,
                                              apr_array_header_t *add)
{
    if (base == NULL || base->nelts == 0) {
        return add;
    }
    if (add == NULL || add->nelts == 0) {
        return base;
    }
    return apr_array_append(p, base, add);
}

/*
 * Returns the merge of a parent (basev) and a child (addv) configuration,
 * allocated from p: the child's values where it set them, else the
 * parent's; repeatable directives accumulate, the parent's first.
 */
static void *offload_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    offload_dir_conf *base = basev;
    offload_dir_conf *add = addv;
    offload_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->engine = add->engine != OFFLOAD_UNSET ? add->engine : base->engine;
    conf->redirect_status = add->redirect_status != OFFLOAD_UNSET
                                ? add->redirect_status
                                : base->redirect_status;
    conf->select = add->select != OFFLOAD_UNSET ? add->select : base->select;
    conf->busy_threshold = add->busy_threshold != OFFLOAD_UNSET
                               ? add->busy_threshold
                               : base->busy_threshold;
    conf->link_headers = add->link_headers != OFFLOAD_UNSET
                             ? add->link_headers
                             : base->link_headers;
    conf->min_size =
        add->min_size != OFFLOAD_UNSET ? add->min_size : base->min_size;
    conf->hosts = offload_merge_list(p, base->hosts, add->hosts);
    conf->exclude_types =
        offload_merge_list(p, base->exclude_types, add->exclude_types);
    conf->exclude_agents =
        offload_merge_list(p, base->exclude_agents, add->exclude_agents);
    conf->exclude_addrs =
        offload_merge_list(p, base->exclude_addrs, add->exclude_addrs);
    conf->digest_file =
        add->digest_file != NULL ? add->digest_file : base->digest_file;
    return conf;
}

/* Returns OffloadMinSize in bytes, the compiled-in default if unset. */
static apr_off_t offload_min_size(const offload_dir_conf *conf)
{
    return conf->min_size != OFFLOAD_UNSET ? conf->min_size
                                           : OFFLOAD_DEFAULT_MIN_SIZE;
}

/* Returns the OffloadRedirectStatus, the compiled-in default if unset. */
static int offload_redirect_status(const offload_dir_conf *conf)
{
    return conf->redirect_status != OFFLOAD_UNSET
               ? conf->redirect_status
               : OFFLOAD_DEFAULT_REDIRECT_STATUS;
}

/* Returns OffloadBusyThreshold, the compiled-in default if unset. */
static int offload_busy_threshold(const offload_dir_conf *conf)
{
    return conf->busy_threshold != OFFLOAD_UNSET
               ? conf->busy_threshold
               : OFFLOAD_DEFAULT_BUSY_THRESHOLD;
}

/*
 * Returns a fresh server configuration from pool p with every value
 * unset. s is unused: only the main server's is kept.
 */
static void *offload_create_server_conf(apr_pool_t *p, server_rec *s)
{
    offload_server_conf *sc = apr_pcalloc(p, sizeof(*sc));

    (void)s;
    sc->hc_interval = OFFLOAD_UNSET;
    return sc;
}

/*
 * Returns basev, the main server's configuration, for a virtual host
 * (addv is discarded): the health-check settings and the host states are
 * server-wide, and post_config fills in the shared segment for all.
 */
static void *offload_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    (void)p;
    (void)addv;
    return basev;
}

/* Returns the server-wide configuration of s (of any virtual host). */
static offload_server_conf *offload_server(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &offload_module);
}

/* Returns OffloadHealthCheckInterval in seconds, the default if unset. */
static int offload_hc_interval(const offload_server_conf *sc)
{
    return sc->hc_interval != OFFLOAD_UNSET ? sc->hc_interval
                                            : OFFLOAD_DEFAULT_HC_INTERVAL;
}

/* Returns OffloadHealthCheckURI, the default if unset. */
static const char *offload_hc_uri(const offload_server_conf *sc)
{
    return sc->hc_uri != NULL ? sc->hc_uri : OFFLOAD_DEFAULT_HC_URI;
}

/* ---- directive handlers ------------------------------------------------ */

/*
 * Returns a new list from pool p if *list is NULL, else *list; stores it.
 */
static apr_array_header_t *offload_list(apr_pool_t *p,
                                        apr_array_header_t **list)
{
    if (*list == NULL) {
        *list = apr_array_make(p, 4, sizeof(void *));
    }
    return *list;
}

/*
 * Returns 1 if name is a plausible host name or address literal (letters,
 * digits, '-', '.', '_', and ':' inside IPv6 literals), 0 otherwise.
 */
static int offload_valid_hostname(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > OFFLOAD_MAX_HOSTNAME) {
        return 0;
    }
    if (strchr(name, ':') != NULL) {
        return strspn(name, "0123456789abcdefABCDEF:.") == n;
    }
    return strspn(name, "abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789-._") == n;
}

/*
 * Returns the registered target with this scheme, name and port, or NULL.
 * Safe to call from .htaccess parsing: the registry is read-only then.
 */
static offload_target *
offload_find_target(const char *scheme, const char *hostname, apr_port_t port)
{
    int i;

    if (offload_targets == NULL) {
        return NULL;
    }
    for (i = 0; i < offload_targets->nelts; i++) {
        offload_target *t = APR_ARRAY_IDX(offload_targets, i, offload_target *);
        if (t->port == port && !strcmp(t->scheme, scheme) &&
            !strcasecmp(t->hostname, hostname)) {
            return t;
        }
    }
    return NULL;
}

/* Returns the port of scheme ("http" or "https") when a URL names none. */
static apr_port_t offload_default_port(const char *scheme)
{
    return strcmp(scheme, "https") ? OFFLOAD_HTTP_PORT : OFFLOAD_HTTPS_PORT;
}

/*
 * Returns the target for scheme://hostname:port: the registered one if it
 * exists, else a new one. A new target is registered (and later resolved)
 * only while the configuration files are read (cmd->pool is pconf);
 * targets first seen in an .htaccess file stay private to that request.
 */
static offload_target *offload_get_target(cmd_parms *cmd, const char *scheme,
                                          const char *hostname, apr_port_t port)
{
    offload_target *t = offload_find_target(scheme, hostname, port);
    apr_port_t default_port = offload_default_port(scheme);
    const char *host = hostname;

    if (t != NULL) {
        return t;
    }
    t = apr_pcalloc(cmd->pool, sizeof(*t));
    t->scheme = scheme;
    t->hostname = apr_pstrdup(cmd->pool, hostname);
    t->port = port;
    if (strchr(hostname, ':') != NULL) {
        host = apr_pstrcat(cmd->pool, "[", hostname, "]", NULL);
    }
    t->authority = port == default_port
                       ? host
                       : apr_psprintf(cmd->pool, "%s:%u", host, (unsigned)port);
    t->index = -1;
    if (offload_targets != NULL && cmd->pool == cmd->server->process->pconf) {
        t->index = offload_targets->nelts;
        APR_ARRAY_PUSH(offload_targets, offload_target *) = t;
    }
    return t;
}

/*
 * Returns 1 if word is one of the comma-separated words of list, else 0.
 */
static int offload_word_listed(const char *list, const char *word)
{
    size_t n = strlen(word);
    const char *p = list;

    while (p != NULL) {
        if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == '\0')) {
            return 1;
        }
        p = ap_strchr_c(p, ',');
        p = p != NULL ? p + 1 : NULL;
    }
    return 0;
}

/*
 * Parses a port number text into *port. Returns 0, or -1 if it is not a
 * number from 1 to OFFLOAD_MAX_PORT.
 */
static int offload_parse_port(const char *text, apr_port_t *port)
{
    char *end;
    long v;

    if (text == NULL || *text == '\0' ||
        strspn(text, "0123456789") != strlen(text)) {
        return -1;
    }
    v = strtol(text, &end, 10);
    if (v < 1 || v > OFFLOAD_MAX_PORT) {
        return -1;
    }
    *port = (apr_port_t)v;
    return 0;
}

/*
 * Parses the OffloadHost URL arg, http[s]://HOST[:PORT][/PREFIX], into
 * *scheme ("http" or "https"), *hostname, *port (0 if none) and *prefix
 * ("" or "/...", without trailing slashes), allocated from cmd->pool.
 * Returns NULL, or an error sentence naming the directive and the value.
 */
static const char *offload_parse_host_url(cmd_parms *cmd, const char *arg,
                                          const char **scheme, char **hostname,
                                          apr_port_t *port, const char **prefix)
{
    apr_uri_t uri;
    char *p;
    size_t n;

    if (apr_uri_parse(cmd->temp_pool, arg, &uri) != APR_SUCCESS ||
        uri.scheme == NULL ||
        (strcasecmp(uri.scheme, "http") && strcasecmp(uri.scheme, "https")) ||
        uri.hostname == NULL || uri.user != NULL || uri.password != NULL ||
        uri.query != NULL || uri.fragment != NULL ||
        (uri.port_str != NULL && offload_parse_port(uri.port_str, port) != 0)) {
        return apr_psprintf(cmd->pool,
                            "OffloadHost: '%s' is not a valid URL "
                            "(expected http[s]://HOST[:PORT][/PREFIX])",
                            arg);
    }
    *scheme = strcasecmp(uri.scheme, "https") ? "http" : "https";
    *hostname = uri.hostname;
    if (uri.path == NULL) {
        return NULL;
    }
    p = apr_pstrdup(cmd->pool, uri.path);
    n = strlen(p);
    while (n > 0 && p[n - 1] == '/') {
        p[--n] = '\0';
    }
    if (n > 0 && p[0] != '/') {
        return apr_psprintf(
            cmd->pool, "OffloadHost: '%s' has a malformed path prefix", arg);
    }
    *prefix = p;
    return NULL;
}

/*
 * Parses the OffloadHost argument arg, a HOST[:PORT] or a URL, into
 * *scheme, *hostname, *port (the scheme's default if none) and *prefix,
 * allocated from cmd->pool. Returns NULL, or an error sentence.
 */
static const char *offload_parse_host(cmd_parms *cmd, const char *arg,
                                      const char **scheme, char **hostname,
                                      apr_port_t *port, const char **prefix)
{
    const char *err;
    char *scope = NULL;

    *scheme = "http";
    *hostname = NULL;
    *port = 0;
    *prefix = "";
    if (*arg == '\0') {
        return "OffloadHost: the host is empty";
    }
    if (ap_strstr_c(arg, "://") != NULL) {
        err = offload_parse_host_url(cmd, arg, scheme, hostname, port, prefix);
        if (err != NULL) {
            return err;
        }
    } else if (apr_parse_addr_port(hostname, &scope, port, arg,
                                   cmd->temp_pool) != APR_SUCCESS ||
               *hostname == NULL || scope != NULL ||
               ap_strchr_c(arg, '/') != NULL) {
        return apr_psprintf(cmd->pool,
                            "OffloadHost: '%s' is not a valid host "
                            "(expected HOST[:PORT] or a URL)",
                            arg);
    }
    if (!offload_valid_hostname(*hostname)) {
        return apr_psprintf(cmd->pool,
                            "OffloadHost: '%s' has an invalid host name", arg);
    }
    if (*port == 0) {
        *port = offload_default_port(*scheme);
    }
    return NULL;
}

/*
 * Parses OffloadHost's optional second argument, weight=N, into *w (1 if
 * arg is NULL). Returns NULL, or an error sentence.
 */
static const char *offload_parse_weight(cmd_parms *cmd, const char *arg, int *w)
{
    const size_t skip = sizeof(OFFLOAD_WEIGHT_PREFIX) - 1;
    const char *v;
    char *end;
    long n;

    *w = 1;
    if (arg == NULL) {
        return NULL;
    }
    if (strncasecmp(arg, OFFLOAD_WEIGHT_PREFIX, skip) != 0) {
        return apr_psprintf(cmd->pool, "OffloadHost: '%s' is not weight=N",
                            arg);
    }
    v = arg + skip;
    n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 1 || n > OFFLOAD_MAX_WEIGHT) {
        return apr_psprintf(cmd->pool,
                            "OffloadHost: '%s' is invalid (weight must "
                            "be a whole number from 1 to %d)",
                            arg, OFFLOAD_MAX_WEIGHT);
    }
    *w = (int)n;
    return NULL;
}

/*
 * Adds weight w to the weights registered target t was declared with, as
 * the status page lists them ("1,2"), unless it is listed already.
 * Private targets have no status line and keep none.
 */
static void offload_note_weight(cmd_parms *cmd, offload_target *t, int w)
{
    const char *wt;

    if (t->index < 0) {
        return;
    }
    wt = apr_itoa(cmd->pool, w);
    if (t->weights == NULL) {
        t->weights = wt;
    } else if (!offload_word_listed(t->weights, wt)) {
        t->weights = apr_pstrcat(cmd->pool, t->weights, ",", wt, NULL);
    }
}

/*
 * OffloadHost HOST[:PORT] | http[s]://HOST[:PORT][/PREFIX] [weight=N].
 * Adds an offload_host to the section's list. Returns NULL, or an error
 * sentence naming the directive and the bad value.
 */
static const char *offload_cmd_host(cmd_parms *cmd, void *dconf,
                                    const char *arg, const char *weight)
{
    offload_dir_conf *conf = dconf;
    offload_host *h;
    const char *scheme, *prefix, *err;
    char *hostname;
    apr_port_t port;
    int w;

    err = offload_parse_host(cmd, arg, &scheme, &hostname, &port, &prefix);
    if (err == NULL) {
        err = offload_parse_weight(cmd, weight, &w);
    }
    if (err != NULL) {
        return err;
    }
    h = apr_pcalloc(cmd->pool, sizeof(*h));
    h->target = offload_get_target(cmd, scheme, hostname, port);
    h->base = apr_pstrcat(cmd->pool, scheme, "://", h->target->authority,
                          prefix, NULL);
    h->weight = w;
    offload_note_weight(cmd, h->target, w);
    APR_ARRAY_PUSH(offload_list(cmd->pool, &conf->hosts), offload_host *) = h;
    return NULL;
}

/*
 * OffloadMinSize N[K|M|G]. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_min_size(cmd_parms *cmd, void *dconf,
                                        const char *arg)
{
    offload_dir_conf *conf = dconf;
    apr_int64_t n;
    apr_int64_t unit = 1;
    char *end;

    errno = 0;
    n = apr_strtoi64(arg, &end, 10);
    if (end != arg && *end != '\0' && end[1] == '\0') {
        switch (apr_toupper(*end)) {
        case 'K':
            unit = OFFLOAD_KIB;
            end++;
            break;
        case 'M':
            unit = OFFLOAD_KIB * OFFLOAD_KIB;
            end++;
            break;
        case 'G':
            unit = OFFLOAD_KIB * OFFLOAD_KIB * OFFLOAD_KIB;
            end++;
            break;
        }
    }
    if (end == arg || *end != '\0' || errno != 0 || n < 0 ||
        !apr_isdigit(*arg) || n > APR_INT64_MAX / unit) {
        return apr_psprintf(cmd->pool,
                            "OffloadMinSize: '%s' is not a size (a whole "
                            "number of bytes, optionally followed by K, M "
                            "or G)",
                            arg);
    }
    conf->min_size = (apr_off_t)(n * unit);
    return NULL;
}

/*
 * OffloadRedirectStatus 302|303|307. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_redirect_status(cmd_parms *cmd, void *dconf,
                                               const char *arg)
{
    offload_dir_conf *conf = dconf;

    if (!strcmp(arg, "302") || !strcmp(arg, "303") || !strcmp(arg, "307")) {
        conf->redirect_status = atoi(arg);
        return NULL;
    }
    return apr_psprintf(cmd->pool,
                        "OffloadRedirectStatus: '%s' is not allowed "
                        "(use 302, 303 or 307)",
                        arg);
}

/*
 * OffloadSelect hash|random|roundrobin. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_select(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    offload_dir_conf *conf = dconf;

    if (!strcasecmp(arg, "hash")) {
        conf->select = OFFLOAD_SELECT_HASH;
    } else if (!strcasecmp(arg, "random")) {
        conf->select = OFFLOAD_SELECT_RANDOM;
    } else if (!strcasecmp(arg, "roundrobin")) {
        conf->select = OFFLOAD_SELECT_ROUNDROBIN;
    } else {
        return apr_psprintf(cmd->pool,
                            "OffloadSelect: '%s' is not allowed (use hash, "
                            "random or roundrobin)",
                            arg);
    }
    return NULL;
}

/*
 * OffloadExcludeMimeType and OffloadExcludeUserAgent PATTERN: appends the
 * pattern to the list at cmd->info's offset. Returns NULL, or an error.
 */
static const char *offload_cmd_pattern(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    apr_array_header_t **list =
        (apr_array_header_t **)((char *)dconf + (size_t)cmd->info);

    if (*arg == '\0') {
        return apr_psprintf(cmd->pool, "%s: the pattern is empty",
                            cmd->cmd->name);
    }
    APR_ARRAY_PUSH(offload_list(cmd->pool, list), const char *) =
        apr_pstrdup(cmd->pool, arg);
    return NULL;
}

/*
 * OffloadExcludeAddress ADDRESS|CIDR|PATTERN. An argument with a wildcard
 * is a pattern for the address text; anything else must be an address or
 * a CIDR block. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_exclude_address(cmd_parms *cmd, void *dconf,
                                               const char *arg)
{
    offload_dir_conf *conf = dconf;
    offload_addr_rule *rule = apr_pcalloc(cmd->pool, sizeof(*rule));

    if (*arg == '\0') {
        return "OffloadExcludeAddress: the address is empty";
    }
    if (strpbrk(arg, "*?[") != NULL) {
        rule->pattern = apr_pstrdup(cmd->pool, arg);
    } else {
        char *ip = apr_pstrdup(cmd->temp_pool, arg);
        char *mask = strchr(ip, '/');
        apr_status_t rv;

        if (mask != NULL) {
            *mask++ = '\0';
        }
        rv = apr_ipsubnet_create(&rule->subnet, ip, mask, cmd->pool);
        if (rv != APR_SUCCESS) {
            return apr_psprintf(cmd->pool,
                                "OffloadExcludeAddress: '%s' is neither an "
                                "address, a CIDR block nor a wildcard "
                                "pattern",
                                arg);
        }
    }
    APR_ARRAY_PUSH(offload_list(cmd->pool, &conf->exclude_addrs),
                   offload_addr_rule *) = rule;
    return NULL;
}

/*
 * OffloadBusyThreshold N: offload only while at least N other workers are
 * busy. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_busy_threshold(cmd_parms *cmd, void *dconf,
                                              const char *arg)
{
    offload_dir_conf *conf = dconf;
    char *end;
    long n = strtol(arg, &end, 10);

    if (!apr_isdigit(*arg) || *end != '\0' || n < 0 ||
        n > OFFLOAD_MAX_BUSY_THRESHOLD) {
        return apr_psprintf(cmd->pool,
                            "OffloadBusyThreshold: '%s' is not allowed (use "
                            "a whole number of workers from 0 to %d)",
                            arg, OFFLOAD_MAX_BUSY_THRESHOLD);
    }
    conf->busy_threshold = (int)n;
    return NULL;
}

/*
 * OffloadDigestFile NAME|Off: the file in sha256sum format, in the same
 * directory as each file, whose line for the file gives its digest.
 * Returns NULL, or an error sentence.
 */
static const char *offload_cmd_digest_file(cmd_parms *cmd, void *dconf,
                                           const char *arg)
{
    offload_dir_conf *conf = dconf;

    if (strcasecmp(arg, "Off") == 0) {
        conf->digest_file = "";
        return NULL;
    }
    if (*arg == '\0' || ap_strchr_c(arg, '/') != NULL || strcmp(arg, ".") == 0 ||
        strcmp(arg, "..") == 0) {
        return apr_psprintf(cmd->pool,
                            "OffloadDigestFile %s: expected a file name in "
                            "the file's own directory (no /), or Off",
                            arg);
    }
    conf->digest_file = arg;
    return NULL;
}

/*
 * OffloadHealthCheck On|Off, in the server config only (the hosts and
 * their state are shared by every virtual host). Returns NULL, or an
 * error sentence.
 */
static const char *offload_cmd_hc(cmd_parms *cmd, void *dconf, int flag)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    offload_server(cmd->server)->hc_enabled = flag;
    return NULL;
}

/*
 * OffloadHealthCheckInterval SECONDS, in the server config only. Returns
 * NULL, or an error sentence.
 */
static const char *offload_cmd_hc_interval(cmd_parms *cmd, void *dconf,
                                           const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long n;

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    n = strtol(arg, &end, 10);
    if (!apr_isdigit(*arg) || *end != '\0' || n < 1 ||
        n > OFFLOAD_HC_MAX_INTERVAL) {
        return apr_psprintf(cmd->pool,
                            "OffloadHealthCheckInterval: '%s' is not allowed "
                            "(use a whole number of seconds from 1 to %d)",
                            arg, OFFLOAD_HC_MAX_INTERVAL);
    }
    offload_server(cmd->server)->hc_interval = (int)n;
    return NULL;
}

/*
 * OffloadHealthCheckURI PATH, in the server config only: an absolute path
 * of printable characters without spaces, at most OFFLOAD_HC_MAX_URI of
 * them. Returns NULL, or an error sentence.
 */
static const char *offload_cmd_hc_uri(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *c;

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    for (c = arg; *c != '\0'; c++) {
        if (!apr_isgraph(*c)) {
            break;
        }
    }
    if (arg[0] != '/' || *c != '\0' || c - arg > OFFLOAD_HC_MAX_URI) {
        return apr_psprintf(cmd->pool,
                            "OffloadHealthCheckURI: '%s' is not allowed (use "
                            "an absolute path such as /offload-status)",
                            arg);
    }
    offload_server(cmd->server)->hc_uri = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

/* ---- host selection ---------------------------------------------------- */

/* Bits of a rendezvous key: a double's mantissa holds them exactly. */
#define OFFLOAD_KEY_BITS 53
#define OFFLOAD_KEY_SCALE 9007199254740992.0 /* 2^OFFLOAD_KEY_BITS */

/*
 * Returns -ln(u) for u = (x + 0.5) / 2^53, with x < 2^53: an exponentially
 * distributed value when x is uniform (u is never 0 or 1).
 */
static double offload_neg_ln(apr_uint64_t x)
{
    return -log(((double)x + 0.5) / OFFLOAD_KEY_SCALE);
}

/*
 * Returns the rendezvous key of host h for path: the first 53 bits of
 * MD5(base "\n" path). Depends only on the host's URL and the path, so
 * it is stable across restarts and independent of the host order.
 */
static apr_uint64_t offload_hash(const offload_host *h, const char *path)
{
    unsigned char digest[APR_MD5_DIGESTSIZE];
    apr_md5_ctx_t ctx;
    apr_uint64_t x = 0;
    int i;

    apr_md5_init(&ctx);
    apr_md5_update(&ctx, h->base, strlen(h->base));
    apr_md5_update(&ctx, "\n", 1);
    apr_md5_update(&ctx, path, strlen(path));
    apr_md5_final(digest, &ctx);
    for (i = 0; i < (int)sizeof(x); i++) {
        x = (x << 8) | digest[i];
    }
    return x >> (64 - OFFLOAD_KEY_BITS);
}

/*
 * Fills order[0..n-1] with the n hosts in a weighted rotation that moves
 * one turn per call in this process: weight=N gives a host N turns in a
 * row.
 */
static void offload_rank_rotation(offload_host **hosts, int n,
                                  offload_host **order)
{
    apr_uint32_t total = 0, turn;
    int start = 0, i;

    for (i = 0; i < n; i++) {
        total += (apr_uint32_t)hosts[i]->weight;
    }
    turn = apr_atomic_inc32(&offload_rr_counter) % total;
    while (turn >= (apr_uint32_t)hosts[start]->weight) {
        turn -= (apr_uint32_t)hosts[start]->weight;
        start++;
    }
    for (i = 0; i < n; i++) {
        order[i] = hosts[(start + i) % n];
    }
}

/*
 * Fills order[0..n-1] with the n hosts by descending rendezvous score
 * weight / -ln(u), u from the hash of the host and path (random: from
 * random bytes); ties keep declaration order. score is scratch space for
 * n doubles.
 */
static void offload_rank_scores(offload_host **hosts, int n, const char *path,
                                int random, double *score, offload_host **order)
{
    int i, j;

    for (i = 0; i < n; i++) {
        apr_uint64_t x;
        double s;

        if (random) {
            ap_random_insecure_bytes(&x, sizeof(x));
            x >>= 64 - OFFLOAD_KEY_BITS;
        } else {
            x = offload_hash(hosts[i], path);
        }
        s = hosts[i]->weight / offload_neg_ln(x);
        /* insertion sort: n is a handful of hosts */
        for (j = i; j > 0 && s > score[j - 1]; j--) {
            order[j] = order[j - 1];
            score[j] = score[j - 1];
        }
        order[j] = hosts[i];
        score[j] = s;
    }
}

/*
 * Returns the n = conf->hosts->nelts (at least 1) hosts in the order they
 * should be tried for request r, best first, as OffloadSelect says: hash
 * (rendezvous hashing of r->uri), random or roundrobin; sets *n. The
 * array and scratch memory come from r->pool. A health check only has to
 * skip the unusable hosts in this order.
 */
static offload_host **offload_rank_hosts(request_rec *r,
                                         const offload_dir_conf *conf, int *n)
{
    offload_host **hosts = (offload_host **)conf->hosts->elts;
    offload_host **order;

    *n = conf->hosts->nelts;
    order = apr_palloc(r->pool, *n * sizeof(*order));
    switch (conf->select) {
    case OFFLOAD_SELECT_ROUNDROBIN:
        offload_rank_rotation(hosts, *n, order);
        break;
    case OFFLOAD_SELECT_RANDOM:
        offload_rank_scores(hosts, *n, r->uri, 1,
                            apr_palloc(r->pool, *n * sizeof(double)), order);
        break;
    default: /* OFFLOAD_SELECT_HASH, the default when unset */
        offload_rank_scores(hosts, *n, r->uri, 0,
                            apr_palloc(r->pool, *n * sizeof(double)), order);
        break;
    }
    return order;
}

/* ---- shared state ------------------------------------------------------ */

/*
 * One anonymous shared memory segment, created by the parent in
 * post_config and inherited by every child: a header with the decline
 * counters, then one slot per registered target (offload_targets order).
 * Counters are bumped with apr_atomic; the health fields are written only
 * by the health-check thread (one per server, mod_watchdog's singleton)
 * and read with apr_atomic. On a restart the parent makes a new segment,
 * copies the state and counters of the hosts that are still configured
 * (matched by key) and drops the old one; old children keep their mapping
 * until they exit.
 */

#define OFFLOAD_SHM_MAGIC 0x6f666c31 /* "ofl1", with the layout below */
#define OFFLOAD_MAX_RULES 32         /* room for OFFLOAD_NRULES */
#define OFFLOAD_RULE_NAME 24         /* longest rule name, with its NUL */
#define OFFLOAD_KEY_SIZE 320         /* "scheme://authority", with NUL */

/* A host's health, as its last check left it. */
typedef enum {
    OFFLOAD_STATE_UNKNOWN, /* not checked yet: used */
    OFFLOAD_STATE_UP,      /* passed its last check: used */
    OFFLOAD_STATE_DOWN     /* failed its last check: skipped */
} offload_state;

/* Their names on the status page, by offload_state. */
static const char *const offload_state_names[] = {"unknown", "up", "down"};

/* Bytes for the text of an apr_status_t on the status page. */
#define OFFLOAD_ERROR_TEXT 120

typedef struct {
    char key[OFFLOAD_KEY_SIZE];        /* scheme://authority */
    volatile apr_uint32_t state;       /* offload_state */
    volatile apr_uint32_t last_status; /* HTTP status of the last check */
    volatile apr_uint32_t last_error;  /* apr_status_t; 0 if none */
    apr_uint32_t unused;
    volatile apr_uint64_t last_check;  /* apr_time_t; 0 if never */
    volatile apr_uint64_t last_change; /* apr_time_t of the last change */
    volatile apr_uint64_t checks;      /* health checks run */
    volatile apr_uint64_t failures;    /* health checks failed */
    volatile apr_uint64_t redirects;   /* requests sent to this host */
} offload_slot;

struct offload_shared {
    apr_uint32_t magic;     /* OFFLOAD_SHM_MAGIC */
    apr_uint32_t slot_size; /* sizeof(offload_slot) */
    apr_uint32_t nrules;    /* rule names and counters in use */
    apr_uint32_t nslots;    /* slots, = offload_targets->nelts */
    apr_uint64_t since;     /* apr_time_t: counting started */
    volatile apr_uint64_t redirects_private; /* to .htaccess-only hosts */
    volatile apr_uint64_t declines[OFFLOAD_MAX_RULES]; /* by rule */
    char rule[OFFLOAD_MAX_RULES][OFFLOAD_RULE_NAME];   /* rule names */
    offload_slot slot[];
};

/*
 * Returns target t's slot in the shared segment of sc, or NULL (private
 * target, no segment).
 */
static offload_slot *offload_slot_of(const offload_server_conf *sc,
                                     const offload_target *t)
{
    if (sc->shm == NULL || t->index < 0 ||
        (apr_uint32_t)t->index >= sc->shm->nslots) {
        return NULL;
    }
    return &sc->shm->slot[t->index];
}

/*
 * Returns 1 if target t may be sent clients: health checks are off, it
 * has none (an .htaccess-only host), or it has not failed its last one.
 * Costs one shared-memory read.
 */
static int offload_usable(const offload_server_conf *sc,
                          const offload_target *t)
{
    offload_slot *slot;

    if (!sc->hc_enabled || (slot = offload_slot_of(sc, t)) == NULL) {
        return 1;
    }
    return apr_atomic_read32(&slot->state) != OFFLOAD_STATE_DOWN;
}

/* Counts one redirect to target t in the shared segment of sc, if any. */
static void offload_count_redirect(const offload_server_conf *sc,
                                   const offload_target *t)
{
    offload_slot *slot = offload_slot_of(sc, t);

    if (slot != NULL) {
        apr_atomic_inc64(&slot->redirects);
    } else if (sc->shm != NULL) {
        apr_atomic_inc64(&sc->shm->redirects_private);
    }
}

/*
 * Copies slot's health fields and counters into *copy with atomic reads,
 * for display (the key is not copied).
 */
static void offload_slot_read(offload_slot *slot, offload_slot *copy)
{
    copy->state = apr_atomic_read32(&slot->state);
    copy->last_status = apr_atomic_read32(&slot->last_status);
    copy->last_error = apr_atomic_read32(&slot->last_error);
    copy->last_check = apr_atomic_read64(&slot->last_check);
    copy->last_change = apr_atomic_read64(&slot->last_change);
    copy->checks = apr_atomic_read64(&slot->checks);
    copy->failures = apr_atomic_read64(&slot->failures);
    copy->redirects = apr_atomic_read64(&slot->redirects);
}

/*
 * Returns the name of the state a slot copy holds for the status page:
 * "unchecked" without health checks, else the offload_state's name.
 */
static const char *offload_state_name(const offload_server_conf *sc,
                                      const offload_slot *slot)
{
    if (!sc->hc_enabled) {
        return "unchecked";
    }
    return slot->state <= OFFLOAD_STATE_DOWN ? offload_state_names[slot->state]
                                             : "unknown";
}

/* ---- busy workers ------------------------------------------------------ */

/*
 * Returns the number of workers busy with a connection (the SERVER_BUSY_*
 * states), not counting the one serving r, counting no further than
 * enough. Scans the scoreboard slots of live processes only, at most
 * ServerLimit x ThreadsPerChild of them; with no scoreboard returns
 * enough (the load cannot be told, so the threshold does not hold back).
 */
static int offload_busy_workers(request_rec *r, int enough)
{
    worker_score *self = NULL;
    int busy = 0, i, j;

    if (!ap_exists_scoreboard_image() || offload_sb_daemons <= 0) {
        return enough;
    }
    if (r->connection->sbh != NULL) {
        self = ap_get_scoreboard_worker(r->connection->sbh);
    }
    for (i = 0; i < offload_sb_daemons; i++) {
        process_score *ps = ap_get_scoreboard_process(i);

        if (ps == NULL || ps->pid == 0) {
            continue;
        }
        for (j = 0; j < offload_sb_threads; j++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(i, j);

            if (ws == NULL || ws == self) {
                continue;
            }
            switch (ws->status) {
            case SERVER_BUSY_READ:
            case SERVER_BUSY_WRITE:
            case SERVER_BUSY_KEEPALIVE:
            case SERVER_BUSY_LOG:
            case SERVER_BUSY_DNS:
                if (++busy >= enough) {
                    return busy;
                }
                break;
            default:
                break;
            }
        }
    }
    return busy;
}

/* ---- health checks ----------------------------------------------------- */

/*
 * Connects a new socket from p to the first address of target t that
 * accepts within timeout, resolving its name again if it did not resolve
 * at start-up. Returns the socket, or NULL with *rv set to the last error
 * and *why to the reason.
 */
static apr_socket_t *offload_hc_connect(const offload_target *t,
                                        apr_interval_time_t timeout,
                                        apr_status_t *rv, const char **why,
                                        apr_pool_t *p)
{
    apr_sockaddr_t *addrs = t->addrs, *sa;
    apr_socket_t *sock;

    if (addrs == NULL) {
        *rv = apr_sockaddr_info_get(&addrs, t->hostname, APR_UNSPEC, t->port, 0,
                                    p);
        if (*rv != APR_SUCCESS) {
            *why = "the name does not resolve";
            return NULL;
        }
    }
    for (sa = addrs; sa != NULL; sa = sa->next) {
        *rv =
            apr_socket_create(&sock, sa->family, SOCK_STREAM, APR_PROTO_TCP, p);
        if (*rv != APR_SUCCESS) {
            continue;
        }
        apr_socket_timeout_set(sock, timeout);
        *rv = apr_socket_connect(sock, sa);
        if (*rv == APR_SUCCESS) {
            return sock;
        }
        apr_socket_close(sock);
    }
    *why = "cannot connect";
    return NULL;
}

/*
 * Returns the status code of an HTTP/1.x status line ("HTTP/1.1 200 OK"),
 * or -1 if line does not start with one.
 */
static int offload_status_code(const char *line)
{
    static const char version[] = "HTTP/1.";
    const char *c = line + sizeof(version) - 1;

    if (strncmp(line, version, sizeof(version) - 1) != 0 ||
        !apr_isdigit(c[0]) || c[1] != ' ' || !apr_isdigit(c[2]) ||
        !apr_isdigit(c[3]) || !apr_isdigit(c[4]) ||
        (c[5] != ' ' && c[5] != '\r' && c[5] != '\n')) {
        return -1;
    }
    return (c[2] - '0') * 100 + (c[3] - '0') * 10 + (c[4] - '0');
}

/*
 * Sends "GET <uri>" for target t on the connected sock and reads at most
 * OFFLOAD_HC_MAX_STATUS_LINE bytes, enough for the status line (the rest
 * of the answer is left unread). Sets *status to its code (0 if none) and
 * *rv to the last error. Returns NULL for a 2xx, else a short reason
 * allocated from p.
 */
static const char *offload_hc_ask(apr_socket_t *sock, const offload_target *t,
                                  const char *uri, int *status,
                                  apr_status_t *rv, apr_pool_t *p)
{
    char buf[OFFLOAD_HC_MAX_STATUS_LINE + 1];
    const char *req;
    apr_size_t len = 0, n;
    int code;

    req = apr_pstrcat(p, "GET ", uri, " HTTP/1.0\r\nHost: ", t->authority,
                      "\r\nUser-Agent: mod_offload/" OFFLOAD_VERSION
                      " (health check)\r\nAccept: text/plain\r\n"
                      "Connection: close\r\n\r\n",
                      NULL);
    n = strlen(req);
    *rv = apr_socket_send(sock, req, &n);
    if (*rv == APR_SUCCESS && n != strlen(req)) {
        *rv = APR_EGENERAL;
    }
    buf[0] = '\0';
    while (*rv == APR_SUCCESS && memchr(buf, '\n', len) == NULL &&
           len < OFFLOAD_HC_MAX_STATUS_LINE) {
        n = OFFLOAD_HC_MAX_STATUS_LINE - len;
        *rv = apr_socket_recv(sock, buf + len, &n);
        len += n;
        buf[len] = '\0';
        if (*rv == APR_EOF) {
            *rv = APR_SUCCESS;
            break;
        }
    }
    if (*rv != APR_SUCCESS) {
        return "no answer";
    }
    code = memchr(buf, '\n', len) != NULL ? offload_status_code(buf) : -1;
    if (code < 0) {
        return "malformed status line";
    }
    *status = code;
    if (*status < HTTP_OK || *status >= HTTP_MULTIPLE_CHOICES) {
        return apr_psprintf(p, "status %d", *status);
    }
    return NULL;
}

/*
 * Checks target t once: connects to the first of its addresses that
 * accepts, sends "GET <OffloadHealthCheckURI of sc>" and reads the status
 * line. For https targets the check is the connection alone (no TLS
 * here). Each step waits at most timeout. Sets *status to the HTTP status
 * (0 if none) and *rv to the last error (APR_SUCCESS if none). Returns
 * NULL if the host is healthy (a 2xx, or an https connection), else a
 * short reason allocated from p. The socket is closed before returning.
 */
static const char *offload_check_target(const offload_server_conf *sc,
                                        const offload_target *t,
                                        apr_interval_time_t timeout,
                                        int *status, apr_status_t *rv,
                                        apr_pool_t *p)
{
    apr_socket_t *sock;
    const char *why = NULL;

    *status = 0;
    *rv = APR_SUCCESS;
    sock = offload_hc_connect(t, timeout, rv, &why, p);
    if (sock == NULL) {
        return why;
    }
    if (strcmp(t->scheme, "https") != 0) {
        why = offload_hc_ask(sock, t, offload_hc_uri(sc), status, rv, p);
    }
    apr_socket_close(sock);
    return why;
}

/*
 * Records in slot the result of one check of target t (why NULL for a
 * pass, else the reason; status and rv as offload_check_target set them)
 * and logs a change of state at notice level on server s.
 */
static void offload_record_check(server_rec *s, const offload_target *t,
                                 offload_slot *slot, const char *why,
                                 int status, apr_status_t rv)
{
    offload_state state = why == NULL ? OFFLOAD_STATE_UP : OFFLOAD_STATE_DOWN;
    apr_uint32_t old;

    apr_atomic_set32(&slot->last_status, (apr_uint32_t)status);
    apr_atomic_set32(&slot->last_error, (apr_uint32_t)rv);
    apr_atomic_set64(&slot->last_check, (apr_uint64_t)apr_time_now());
    apr_atomic_inc64(&slot->checks);
    if (why != NULL) {
        apr_atomic_inc64(&slot->failures);
    }
    old = apr_atomic_xchg32(&slot->state, (apr_uint32_t)state);
    if (old == (apr_uint32_t)state) {
        return;
    }
    apr_atomic_set64(&slot->last_change, (apr_uint64_t)apr_time_now());
    if (why != NULL) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, rv, s,
                     "offload: OffloadHost %s://%s failed its health "
                     "check (%s): skipped until it passes",
                     t->scheme, t->authority, why);
    } else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "offload: OffloadHost %s://%s passed its health "
                     "check: %s",
                     t->scheme, t->authority,
                     old == OFFLOAD_STATE_DOWN ? "in use again" : "in use");
    }
}

/*
 * Checks every registered target once and records the results in its
 * slot; logs each change of state at notice level. s is the main server,
 * p a pool for this round.
 */
static void offload_check_all(server_rec *s, apr_pool_t *p)
{
    const offload_server_conf *sc = offload_server(s);
    int interval = offload_hc_interval(sc);
    apr_interval_time_t timeout = apr_time_from_sec(
        interval < OFFLOAD_HC_TIMEOUT ? interval : OFFLOAD_HC_TIMEOUT);
    int i;

    for (i = 0; i < offload_targets->nelts; i++) {
        offload_target *t = APR_ARRAY_IDX(offload_targets, i, offload_target *);
        offload_slot *slot = offload_slot_of(sc, t);
        apr_status_t rv;
        const char *why;
        int status;
        apr_pool_t *tp;

        if (slot == NULL) {
            continue;
        }
        apr_pool_create(&tp, p);
        why = offload_check_target(sc, t, timeout, &status, &rv, tp);
        offload_record_check(s, t, slot, why, status, rv);
        apr_pool_destroy(tp);
    }
}

/*
 * mod_watchdog callback, run every OffloadHealthCheckInterval in one
 * child of the server (a singleton watchdog): checks every host, the
 * first time as soon as the child starts. data is the main server.
 * Returns APR_SUCCESS to be called again.
 */
static apr_status_t offload_hc_callback(int state, void *data, apr_pool_t *pool)
{
    if (state != AP_WATCHDOG_STATE_STOPPING && offload_targets != NULL) {
        offload_check_all(data, pool);
    }
    return APR_SUCCESS;
}

/* ---- decision predicates ----------------------------------------------- */

/*
 * Each predicate returns NULL when the request passes its rule, or a short
 * detail for the debug log when the rule declines the request. The rule's
 * name (offload_file_rules and offload_request_rules below) becomes the
 * "offload-declined" note.
 */
typedef const char *(*offload_predicate)(request_rec *r,
                                         const offload_dir_conf *conf);

/* Declines unless OffloadEngine is On. */
static const char *offload_engine_off(request_rec *r,
                                      const offload_dir_conf *conf)
{
    (void)r;
    return conf->engine == 1 ? NULL : "OffloadEngine is not On";
}

/* Declines when no OffloadHost applies. */
static const char *offload_no_host(request_rec *r, const offload_dir_conf *conf)
{
    (void)r;
    return conf->hosts != NULL && conf->hosts->nelts > 0 ? NULL
                                                         : "no OffloadHost";
}

/* Declines every method but GET (HEAD included: the daemon sends HEADs). */
static const char *offload_method(request_rec *r, const offload_dir_conf *conf)
{
    (void)conf;
    return r->method_number == M_GET && !r->header_only ? NULL : r->method;
}

/*
 * Declines requests with a query string, even an empty one ("/f?", for
 * which r->args is NULL): the Location would carry it to the offload host.
 */
static const char *offload_query(request_rec *r, const offload_dir_conf *conf)
{
    (void)conf;
    return r->args == NULL && ap_strchr_c(r->unparsed_uri, '?') == NULL
               ? NULL
               : "query string";
}

/* Declines error documents (internal redirects after an error). */
static const char *offload_error_document(request_rec *r,
                                          const offload_dir_conf *conf)
{
    (void)conf;
    return r->status == HTTP_OK &&
                   (r->prev == NULL || r->prev->status == HTTP_OK)
               ? NULL
               : "internal redirect for an error";
}

/* Declines requests carrying the bypass header (the daemon's fetches). */
static const char *offload_bypass_header(request_rec *r,
                                         const offload_dir_conf *conf)
{
    (void)conf;
    return apr_table_get(r->headers_in, OFFLOAD_BYPASS_HEADER) == NULL
               ? NULL
               : OFFLOAD_BYPASS_HEADER;
}

/* Declines when the client's address is one of a configured target's. */
static const char *offload_from_offload_host(request_rec *r,
                                             const offload_dir_conf *conf)
{
    int i;

    (void)conf;
    if (offload_targets == NULL || r->useragent_addr == NULL) {
        return NULL;
    }
    for (i = 0; i < offload_targets->nelts; i++) {
        offload_target *t = APR_ARRAY_IDX(offload_targets, i, offload_target *);
        apr_sockaddr_t *sa;

        for (sa = t->addrs; sa != NULL; sa = sa->next) {
            if (apr_sockaddr_equal(sa, r->useragent_addr)) {
                return t->authority;
            }
        }
    }
    return NULL;
}

/*
 * Content types that name a handler when r->handler is unset (the 1.3
 * way of dispatching, still honoured: ap_invoke_handler falls back to the
 * content type): CGI, server-side includes, PHP, type-maps, directories.
 */
static const char *const offload_magic_types[] = {
    "httpd/*", "application/x-httpd-*", "text/x-server-parsed-html*",
    "application/x-type-map", NULL};

/*
 * Declines unless Apache's default static-file handler will answer: at
 * fixups r->handler is NULL for plain files (the content type then names
 * the handler), "default-handler" when set explicitly; anything else is a
 * SetHandler/AddHandler (cgi-script, server-status, proxy-server, ...).
 */
static const char *offload_handler(request_rec *r, const offload_dir_conf *conf)
{
    const char *type = r->content_type;
    int i;

    (void)conf;
    if (r->handler != NULL && strcmp(r->handler, "default-handler") != 0 &&
        (type == NULL || strcasecmp(r->handler, type) != 0)) {
        return r->handler;
    }
    if (type != NULL) {
        type = ap_field_noparam(r->pool, type);
        for (i = 0; offload_magic_types[i] != NULL; i++) {
            if (apr_fnmatch(offload_magic_types[i], type, APR_FNM_CASE_BLIND) ==
                APR_SUCCESS) {
                return type;
            }
        }
    }
    return NULL;
}

/* Declines unless the request maps to an existing regular file. */
static const char *offload_not_file(request_rec *r,
                                    const offload_dir_conf *conf)
{
    (void)conf;
    if (r->filename == NULL || r->finfo.filetype == APR_NOFILE) {
        return "no such file";
    }
    return r->finfo.filetype == APR_REG ? NULL : "not a regular file";
}

/* Declines requests with path info after the file name. */
static const char *offload_path_info(request_rec *r,
                                     const offload_dir_conf *conf)
{
    (void)conf;
    return r->path_info == NULL || *r->path_info == '\0' ? NULL : r->path_info;
}

/* Declines files smaller than OffloadMinSize. */
static const char *offload_size(request_rec *r, const offload_dir_conf *conf)
{
    apr_off_t min = offload_min_size(conf);

    if (r->finfo.size >= min) {
        return NULL;
    }
    return apr_psprintf(r->pool, "%" APR_OFF_T_FMT " < %" APR_OFF_T_FMT,
                        r->finfo.size, min);
}

/*
 * Returns the first pattern of list (const char *) that matches text,
 * case-insensitively, or NULL if none does or the list is empty.
 */
static const char *offload_match_list(const apr_array_header_t *list,
                                      const char *text)
{
    int i;

    if (list == NULL) {
        return NULL;
    }
    for (i = 0; i < list->nelts; i++) {
        const char *pattern = APR_ARRAY_IDX(list, i, const char *);

        if (apr_fnmatch(pattern, text, APR_FNM_CASE_BLIND) == APR_SUCCESS) {
            return pattern;
        }
    }
    return NULL;
}

/* Declines files whose MIME type (without parameters) is excluded. */
static const char *offload_mime_type(request_rec *r,
                                     const offload_dir_conf *conf)
{
    const char *type = r->content_type;

    if (conf->exclude_types == NULL) {
        return NULL;
    }
    type = type != NULL ? ap_field_noparam(r->pool, type) : "";
    return offload_match_list(conf->exclude_types, type);
}

/* Declines clients whose User-Agent (empty if absent) is excluded. */
static const char *offload_user_agent(request_rec *r,
                                      const offload_dir_conf *conf)
{
    const char *ua = apr_table_get(r->headers_in, "User-Agent");

    return offload_match_list(conf->exclude_agents, ua != NULL ? ua : "");
}

/* Declines clients whose address is excluded (CIDR or pattern). */
static const char *offload_address(request_rec *r, const offload_dir_conf *conf)
{
    int i;

    if (conf->exclude_addrs == NULL) {
        return NULL;
    }
    for (i = 0; i < conf->exclude_addrs->nelts; i++) {
        offload_addr_rule *rule =
            APR_ARRAY_IDX(conf->exclude_addrs, i, offload_addr_rule *);

        if (rule->subnet != NULL
                ? r->useragent_addr != NULL &&
                      apr_ipsubnet_test(rule->subnet, r->useragent_addr)
                : apr_fnmatch(rule->pattern, r->useragent_ip,
                              APR_FNM_CASE_BLIND) == APR_SUCCESS) {
            return r->useragent_ip;
        }
    }
    return NULL;
}

/*
 * Returns 1 if an anonymous client at a stranger's address would be let
 * through by the access checks for r, 0 otherwise. It re-runs the access
 * hooks (mod_authz_core's Require, mod_access_compat's Allow) the way
 * ap_process_request_internal does, with no user, the address
 * OFFLOAD_STRANGER_ADDRESS and logging silenced; r is restored after.
 */
static int offload_is_public(request_rec *r)
{
    char *user = r->user;
    apr_sockaddr_t *addr = r->useragent_addr;
    char *ip = r->useragent_ip;
    char *host = r->useragent_host;
    const struct ap_logconf *log = r->log;
    struct ap_logconf quiet;
    int pub;

    if (offload_stranger == NULL) {
        return 0;
    }
    quiet.module_levels = NULL;
    quiet.level = APLOG_EMERG;
    r->user = NULL;
    r->useragent_addr = offload_stranger;
    r->useragent_ip = OFFLOAD_STRANGER_ADDRESS;
    r->useragent_host = NULL;
    r->log = &quiet;

    if (ap_satisfies(r) == SATISFY_ANY) {
        pub =
            ap_run_access_checker(r) == OK ||
            (ap_run_access_checker_ex(r) == OK && ap_run_force_authn(r) != OK);
    } else {
        pub = ap_run_access_checker(r) == OK &&
              ap_run_access_checker_ex(r) == OK && ap_run_force_authn(r) != OK;
    }

    r->user = user;
    r->useragent_addr = addr;
    r->useragent_ip = ip;
    r->useragent_host = host;
    r->log = log;
    return pub;
}

/*
 * Declines URLs that need authentication or authorization: a request that
 * was authenticated (r->user set), or one a stranger could not fetch
 * anonymously (Require valid-user, Require ip, Require local ...).
 * "Require all granted" passes. An offload host serves its cache to anyone.
 */
static const char *offload_auth(request_rec *r, const offload_dir_conf *conf)
{
    (void)conf;
    if (r->user != NULL) {
        return "authenticated request";
    }
    return offload_is_public(r) ? NULL : "access is restricted";
}

/*
 * Declines when every OffloadHost that applies failed its last health
 * check. One shared-memory read per host.
 */
static const char *offload_no_healthy_host(request_rec *r,
                                           const offload_dir_conf *conf)
{
    const offload_server_conf *sc = offload_server(r->server);
    int i;

    for (i = 0; i < conf->hosts->nelts; i++) {
        if (offload_usable(
                sc, APR_ARRAY_IDX(conf->hosts, i, offload_host *)->target)) {
            return NULL;
        }
    }
    return "every OffloadHost failed its health check";
}

/*
 * Declines while fewer than OffloadBusyThreshold other workers are busy.
 * Scans the scoreboard only when a threshold is set, and stops counting
 * when it is reached.
 */
static const char *offload_not_busy(request_rec *r,
                                    const offload_dir_conf *conf)
{
    int n = offload_busy_threshold(conf);
    int busy;

    if (n <= 0) {
        return NULL;
    }
    busy = offload_busy_workers(r, n);
    return busy >= n ? NULL : apr_psprintf(r->pool, "%d busy < %d", busy, n);
}

/* One rule of the decision: its name, the "offload-declined" note. */
typedef struct {
    const char *name;
    offload_predicate declines;
} offload_rule;

/*
 * The file rules, "may this file be offloaded?": the section offloads,
 * the URL names a plain static file that anybody may fetch, and it is
 * not the offload host's own fetch of it. A refusal here is final.
 */
static const offload_rule offload_file_rules[] = {
    {"engine-off", offload_engine_off},
    {"no-host", offload_no_host},
    {"query", offload_query},
    {"error-document", offload_error_document},
    {"bypass-header", offload_bypass_header},
    {"from-offload-host", offload_from_offload_host},
    {"handler", offload_handler},
    {"not-file", offload_not_file},
    {"path-info", offload_path_info},
    {"size", offload_size},
    {"mime-type", offload_mime_type},
    {"auth", offload_auth},
};

/*
 * The request rules, "should this request go now?": the method, the
 * client and the moment. A refusal here leaves the file offloadable, so
 * OffloadLinkHeaders names the hosts in the answer served here.
 */
static const offload_rule offload_request_rules[] = {
    {"method", offload_method},
    {"user-agent", offload_user_agent},
    {"address", offload_address},
    {"no-healthy-host", offload_no_healthy_host},
    {"not-busy", offload_not_busy},
};

#define OFFLOAD_NFILE_RULES                                                    \
    ((int)(sizeof(offload_file_rules) / sizeof(offload_file_rules[0])))
#define OFFLOAD_NREQUEST_RULES                                                 \
    ((int)(sizeof(offload_request_rules) / sizeof(offload_request_rules[0])))
/* Every rule, numbered file rules first: the decline counters' order. */
#define OFFLOAD_NRULES (OFFLOAD_NFILE_RULES + OFFLOAD_NREQUEST_RULES)

/* Returns rule number i (0 .. OFFLOAD_NRULES - 1), file rules first. */
static const offload_rule *offload_rule_at(int i)
{
    if (i < OFFLOAD_NFILE_RULES) {
        return &offload_file_rules[i];
    }
    return &offload_request_rules[i - OFFLOAD_NFILE_RULES];
}

/* ---- digests ----------------------------------------------------------- */

/*
 * Returns the base64 of the SHA-256 that one sha256sum line ("HEX  NAME"
 * or "HEX *NAME", NAME possibly after "./") gives for a file called
 * name, from pool p; NULL when the line is about another file or is not
 * one. Modifies line (its end of line).
 */
static const char *offload_sum_line(apr_pool_t *p, char *line,
                                    const char *name)
{
    unsigned char raw[OFFLOAD_SHA256_BYTES];
    apr_size_t len = 0;
    const char *file;
    char *b64;

    line[strcspn(line, "\r\n")] = '\0';
    if (strlen(line) < 2 * OFFLOAD_SHA256_BYTES + 3 ||
        line[2 * OFFLOAD_SHA256_BYTES] != ' ' ||
        (line[2 * OFFLOAD_SHA256_BYTES + 1] != ' ' &&
         line[2 * OFFLOAD_SHA256_BYTES + 1] != '*')) {
        return NULL;
    }
    file = line + 2 * OFFLOAD_SHA256_BYTES + 2;
    if (strncmp(file, "./", 2) == 0) {
        file += 2;
    }
    if (strcmp(file, name) != 0 ||
        apr_unescape_hex(raw, line, 2 * OFFLOAD_SHA256_BYTES, 0, &len) !=
            APR_SUCCESS ||
        len != OFFLOAD_SHA256_BYTES) {
        return NULL;
    }
    b64 = apr_palloc(p, apr_base64_encode_len(OFFLOAD_SHA256_BYTES));
    apr_base64_encode(b64, (const char *)raw, OFFLOAD_SHA256_BYTES);
    return b64;
}

/*
 * Returns the SHA-256 of r's file in base64, as its directory's
 * OffloadDigestFile gives it when that file is not older than r's, or
 * NULL. Only for a plain file that the default handler serves. Reads at
 * most OFFLOAD_MAX_DIGEST_FILE bytes of the list; never hashes a file.
 */
static const char *offload_file_digest(request_rec *r,
                                       const offload_dir_conf *conf)
{
    char line[OFFLOAD_MAX_DIGEST_LINE];
    const char *name, *path, *b64 = NULL;
    apr_finfo_t fi;
    apr_file_t *f;
    apr_off_t seen = 0;

    if (conf->digest_file == NULL || conf->digest_file[0] == '\0' ||
        r->finfo.filetype != APR_REG || r->filename == NULL ||
        offload_handler(r, conf) != NULL) {
        return NULL;
    }
    name = ap_strrchr_c(r->filename, '/');
    name = name != NULL ? name + 1 : r->filename;
    path = apr_pstrcat(r->pool, ap_make_dirstr_parent(r->pool, r->filename),
                       conf->digest_file, NULL);
    if (apr_stat(&fi, path, APR_FINFO_MTIME | APR_FINFO_TYPE, r->pool) !=
            APR_SUCCESS ||
        fi.filetype != APR_REG || fi.mtime < r->finfo.mtime ||
        apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BUFFERED, 0,
                      r->pool) != APR_SUCCESS) {
        return NULL;
    }
    while (b64 == NULL && seen < OFFLOAD_MAX_DIGEST_FILE &&
           apr_file_gets(line, sizeof(line), f) == APR_SUCCESS) {
        seen += (apr_off_t)strlen(line);
        b64 = offload_sum_line(r->pool, line, name);
    }
    apr_file_close(f);
    return b64;
}

/*
 * Adds r's digest, when its OffloadDigestFile knows it, to the header
 * table t as Repr-Digest (RFC 9530) and Digest (RFC 3230).
 */
static void offload_add_digest(request_rec *r, const offload_dir_conf *conf,
                               apr_table_t *t)
{
    const char *b64 = offload_file_digest(r, conf);

    if (b64 != NULL) {
        apr_table_setn(t, "Repr-Digest",
                       apr_pstrcat(r->pool, "sha-256=:", b64, ":", NULL));
        apr_table_setn(t, "Digest", apr_pstrcat(r->pool, "SHA-256=", b64,
                                                NULL));
    }
}

/* ---- hooks ------------------------------------------------------------- */

/*
 * Runs the n rules of one phase for r in order, the first numbered first
 * among all rules, and stops at the first that declines: sets the
 * "offload-declined" note to its name, counts it in the shared segment
 * of sc and logs why at debug level. Returns 1 if a rule declined, 0 if
 * every one holds.
 */
static int offload_declined(request_rec *r, const offload_dir_conf *conf,
                            const offload_server_conf *sc,
                            const offload_rule *rules, int n, int first)
{
    int i;

    for (i = 0; i < n; i++) {
        const char *why = rules[i].declines(r, conf);

        if (why != NULL) {
            apr_table_setn(r->notes, "offload-declined", rules[i].name);
            if (sc->shm != NULL) {
                apr_atomic_inc64(&sc->shm->declines[first + i]);
            }
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "offload: declined %s: %s (%s)", r->uri,
                          rules[i].name, why);
            return 1;
        }
    }
    return 0;
}

/*
 * Returns the path of r as the client sent it, still percent-encoded:
 * r->unparsed_uri, without scheme and authority when the request line
 * held an absolute URI. r->uri and r->parsed_uri.path are decoded in
 * place by then. The query is not removed (offloaded requests have none).
 */
static const char *offload_raw_path(request_rec *r)
{
    const char *u = r->unparsed_uri;
    const char *p;

    if (u[0] == '/' || (p = ap_strstr_c(u, "://")) == NULL) {
        return u;
    }
    p = ap_strchr_c(p + 3, '/');
    return p != NULL ? p : "/";
}

/*
 * Adds to r's response one RFC 6249 "Link: <URL>; rel=duplicate; pri=N"
 * per usable host, best first, for a request that passed the file rules
 * and was declined by a request rule, if OffloadLinkHeaders is On and the
 * method is GET or HEAD.
 */
static void offload_link_headers(request_rec *r, const offload_dir_conf *conf,
                                 const offload_server_conf *sc)
{
    offload_host **order;
    int i, j, n, pri = 1;

    if (conf->link_headers != 1 || r->method_number != M_GET) {
        return;
    }
    order = offload_rank_hosts(r, conf, &n);
    for (i = 0; i < n; i++) {
        if (!offload_usable(sc, order[i]->target)) {
            continue;
        }
        for (j = 0; j < i && strcmp(order[j]->base, order[i]->base); j++) {
        }
        if (j < i) { /* the same URL, inherited twice */
            continue;
        }
        apr_table_addn(r->headers_out, "Link",
                       apr_psprintf(r->pool, "<%s%s>; rel=duplicate; pri=%d",
                                    order[i]->base, offload_raw_path(r),
                                    pri++));
    }
    /* RFC 6249: strict clients use rel=duplicate only with a digest */
    if (pri > 1) {
        offload_add_digest(r, conf, r->headers_out);
    }
}

/*
 * Sends r to the first usable host in its ranking (the last one if none
 * is: the request rules let it through only if one was a moment ago):
 * sets Location and the "offload-host" note and counts the redirect.
 * Returns the OffloadRedirectStatus.
 */
static int offload_redirect(request_rec *r, const offload_dir_conf *conf,
                            const offload_server_conf *sc)
{
    offload_host **order;
    const char *location;
    int i, n;

    order = offload_rank_hosts(r, conf, &n);
    for (i = 0; i < n - 1 && !offload_usable(sc, order[i]->target); i++) {
    }
    location = apr_pstrcat(r->pool, order[i]->base, offload_raw_path(r), NULL);
    offload_count_redirect(sc, order[i]->target);
    apr_table_setn(r->notes, "offload-host", order[i]->base);
    apr_table_setn(r->headers_out, "Location", location);
    /* a redirect keeps only Location of headers_out */
    offload_add_digest(r, conf, r->err_headers_out);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "offload: %s -> %s", r->uri,
                  location);
    return offload_redirect_status(conf);
}

/*
 * fixups hook, run last: by now authentication, authorization, the type
 * checker and the other fixups (mod_dir, mod_negotiation) have settled
 * r->handler, r->content_type and r->finfo. Returns DECLINED (Apache
 * serves the request), HTTP_FORBIDDEN for an offload host's fetch of what
 * is not public, or the redirect status with Location set.
 */
static int offload_fixups(request_rec *r)
{
    const offload_dir_conf *conf =
        ap_get_module_config(r->per_dir_config, &offload_module);
    const offload_server_conf *sc = offload_server(r->server);

    if (r->main != NULL) {
        return DECLINED;
    }
    /* An offload host asks on a client's behalf and then serves anyone:
     * what the base would not give a stranger must not reach it, even
     * when the offload host's own address passes a Require ip. */
    if (apr_table_get(r->headers_in, OFFLOAD_BYPASS_HEADER) != NULL &&
        r->user == NULL && !offload_is_public(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "offload: %s is not public: refused to the offload "
                      "host",
                      r->uri);
        return HTTP_FORBIDDEN;
    }
    if (offload_declined(r, conf, sc, offload_file_rules, OFFLOAD_NFILE_RULES,
                         0)) {
        /* the offload host's own fetch: the digest it checks the fill by */
        if (apr_table_get(r->headers_in, OFFLOAD_BYPASS_HEADER) != NULL) {
            offload_add_digest(r, conf, r->headers_out);
        }
        return DECLINED;
    }
    if (offload_declined(r, conf, sc, offload_request_rules,
                         OFFLOAD_NREQUEST_RULES, OFFLOAD_NFILE_RULES)) {
        offload_link_headers(r, conf, sc);
        return DECLINED;
    }
    return offload_redirect(r, conf, sc);
}

/* ---- status page ------------------------------------------------------- */

/* What the status page shows, read once from the shared segment. */
typedef struct {
    const offload_shared *sh;              /* the segment */
    int nslots;                            /* hosts shown */
    offload_slot *slots;                   /* copies of their slots */
    apr_uint64_t redirects;                /* to every host */
    apr_uint64_t redirects_private;        /* to .htaccess-only hosts */
    apr_uint64_t declines;                 /* by every rule */
    apr_uint64_t count[OFFLOAD_MAX_RULES]; /* by rule, as sh->rule[] */
    int busy;                              /* busy workers but r's */
} offload_status;

/*
 * Fills *st for request r from the shared segment sh, with atomic reads;
 * the slot copies come from r->pool.
 */
static void offload_status_read(request_rec *r, offload_shared *sh,
                                offload_status *st)
{
    int i;

    st->sh = sh;
    st->busy = offload_busy_workers(r, INT_MAX);
    st->redirects_private = apr_atomic_read64(&sh->redirects_private);
    st->redirects = st->redirects_private;
    st->nslots = (int)sh->nslots < offload_targets->nelts
                     ? (int)sh->nslots
                     : offload_targets->nelts;
    st->slots = apr_palloc(r->pool, (st->nslots + 1) * sizeof(*st->slots));
    for (i = 0; i < st->nslots; i++) {
        offload_slot_read(&sh->slot[i], &st->slots[i]);
        st->redirects += st->slots[i].redirects;
    }
    st->declines = 0;
    for (i = 0; i < (int)sh->nrules; i++) {
        st->count[i] = apr_atomic_read64(&sh->declines[i]);
        st->declines += st->count[i];
    }
}

/* Returns registered target number i. */
static const offload_target *offload_target_at(int i)
{
    return APR_ARRAY_IDX(offload_targets, i, offload_target *);
}

/*
 * Writes one host's line of the ?auto status page to r.
 */
static void offload_status_auto_host(request_rec *r,
                                     const offload_server_conf *sc,
                                     const offload_target *t,
                                     const offload_slot *slot)
{
    ap_rprintf(r,
               "Host: %s://%s state=%s weight=%s redirects=%" APR_UINT64_T_FMT
               " checks=%" APR_UINT64_T_FMT " failures=%" APR_UINT64_T_FMT
               " last-check=%" APR_UINT64_T_FMT
               " last-change=%" APR_UINT64_T_FMT " last-status=%u\n",
               t->scheme, t->authority, offload_state_name(sc, slot),
               t->weights != NULL ? t->weights : "-",
               (apr_uint64_t)slot->redirects, (apr_uint64_t)slot->checks,
               (apr_uint64_t)slot->failures,
               (apr_uint64_t)apr_time_sec((apr_time_t)slot->last_check),
               (apr_uint64_t)apr_time_sec((apr_time_t)slot->last_change),
               (unsigned)slot->last_status);
}

/*
 * Writes the ?auto status page of st to r: "Key: value" lines like
 * mod_status's, then one Host: line per host.
 */
static void offload_status_auto(request_rec *r, const offload_server_conf *sc,
                                const offload_status *st)
{
    int i;

    ap_rprintf(r,
               "Version: mod_offload/%s\nHealthCheck: %s\n"
               "HealthCheckInterval: %d\nHealthCheckURI: %s\n"
               "Since: %" APR_TIME_T_FMT "\nBusyWorkers: %d\n"
               "Hosts: %u\nRedirects: %" APR_UINT64_T_FMT "\n"
               "RedirectsUnlisted: %" APR_UINT64_T_FMT "\n"
               "Declines: %" APR_UINT64_T_FMT "\n",
               OFFLOAD_VERSION, sc->hc_enabled ? "On" : "Off",
               offload_hc_interval(sc), offload_hc_uri(sc),
               apr_time_sec((apr_time_t)st->sh->since), st->busy,
               (unsigned)st->nslots, st->redirects, st->redirects_private,
               st->declines);
    for (i = 0; i < (int)st->sh->nrules; i++) {
        ap_rprintf(r, "Declined-%s: %" APR_UINT64_T_FMT "\n", st->sh->rule[i],
                   st->count[i]);
    }
    for (i = 0; i < st->nslots; i++) {
        offload_status_auto_host(r, sc, offload_target_at(i), &st->slots[i]);
    }
}

/*
 * Returns a human description of a time stamp (apr_time_t) from p: the
 * date and how long ago, or "never" for 0.
 */
static const char *offload_when(apr_pool_t *p, apr_uint64_t when)
{
    char date[APR_RFC822_DATE_LEN];
    apr_time_t t = (apr_time_t)when;

    if (when == 0) {
        return "never";
    }
    apr_rfc822_date(date, t);
    return apr_psprintf(p, "%s (%" APR_TIME_T_FMT " s ago)", date,
                        apr_time_sec(apr_time_now() - t));
}

/*
 * Writes one host's row of the HTML status page to r.
 */
static void offload_status_html_host(request_rec *r,
                                     const offload_server_conf *sc,
                                     const offload_target *t,
                                     const offload_slot *slot)
{
    const char *last = "";
    char err[OFFLOAD_ERROR_TEXT];

    if (slot->last_check != 0 && slot->last_status != 0) {
        last = apr_psprintf(r->pool, "HTTP %u", (unsigned)slot->last_status);
    } else if (slot->last_check != 0 && slot->last_error != 0) {
        last = apr_strerror((apr_status_t)slot->last_error, err, sizeof(err));
    } else if (slot->last_check != 0) {
        last = "connected";
    }
    ap_rprintf(
        r,
        "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
        "<td>%s</td><td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT
        " / %" APR_UINT64_T_FMT "</td></tr>\n",
        ap_escape_html(r->pool, apr_pstrcat(r->pool, t->scheme, "://",
                                            t->authority, NULL)),
        offload_state_name(sc, slot), t->weights != NULL ? t->weights : "-",
        offload_when(r->pool, slot->last_check), ap_escape_html(r->pool, last),
        offload_when(r->pool, slot->last_change), (apr_uint64_t)slot->redirects,
        (apr_uint64_t)slot->failures, (apr_uint64_t)slot->checks);
}

/*
 * Writes the HTML status page of st to r: the settings, a table of the
 * hosts, a table of the declines by rule.
 */
static void offload_status_html(request_rec *r, const offload_server_conf *sc,
                                const offload_status *st)
{
    int i;

    ap_rputs(DOCTYPE_HTML_4_01 "<html><head><title>mod_offload status"
                               "</title></head><body>\n<h1>mod_offload "
                               "status</h1>\n",
             r);
    ap_rprintf(r,
               "<p>mod_offload/%s. Health checks: %s (every %d s, GET %s). "
               "Counting since %s. Busy workers now: %d (this request not "
               "counted).</p>\n",
               OFFLOAD_VERSION, sc->hc_enabled ? "on" : "off",
               offload_hc_interval(sc),
               ap_escape_html(r->pool, offload_hc_uri(sc)),
               offload_when(r->pool, st->sh->since), st->busy);
    ap_rputs("<h2>Offload hosts</h2>\n<table border=\"1\">\n<tr><th>host</th>"
             "<th>state</th><th>weight</th><th>last check</th><th>result</th>"
             "<th>last change</th><th>redirects</th><th>failed / checks</th>"
             "</tr>\n",
             r);
    for (i = 0; i < st->nslots; i++) {
        offload_status_html_host(r, sc, offload_target_at(i), &st->slots[i]);
    }
    ap_rprintf(r,
               "</table>\n<p>Redirects: %" APR_UINT64_T_FMT " (to hosts "
               "named only in .htaccess files: %" APR_UINT64_T_FMT ")</p>\n"
               "<h2>Declined requests by rule</h2>\n<table border=\"1\">\n"
               "<tr><th>rule</th><th>requests</th></tr>\n",
               st->redirects, st->redirects_private);
    for (i = 0; i < (int)st->sh->nrules; i++) {
        ap_rprintf(r, "<tr><td>%s</td><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   st->sh->rule[i], st->count[i]);
    }
    ap_rprintf(r,
               "<tr><td><b>total</b></td><td>%" APR_UINT64_T_FMT "</td></tr>"
               "\n</table>\n</body></html>\n",
               st->declines);
}

/*
 * handler "offload-status": every registered host's state, weights, last
 * check and redirects, and the declines by rule, in HTML or, with the
 * query "auto", as "Key: value" lines like mod_status. Returns DECLINED
 * for other handlers, HTTP_METHOD_NOT_ALLOWED for methods but GET/HEAD,
 * HTTP_SERVICE_UNAVAILABLE without shared memory, else OK.
 */
static int offload_status_handler(request_rec *r)
{
    const offload_server_conf *sc = offload_server(r->server);
    int autofmt = r->args != NULL && !strcasecmp(r->args, "auto");
    offload_status st;

    if (r->handler == NULL || strcmp(r->handler, "offload-status") != 0) {
        return DECLINED;
    }
    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (sc->shm == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    ap_set_content_type(r, autofmt ? "text/plain; charset=ISO-8859-1"
                                   : "text/html; charset=ISO-8859-1");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (r->header_only) {
        return OK;
    }
    offload_status_read(r, sc->shm, &st);
    if (autofmt) {
        offload_status_auto(r, sc, &st);
    } else {
        offload_status_html(r, sc, &st);
    }
    return OK;
}

/* ---- start-up hooks -------------------------------------------------- */

/*
 * pre_config hook: starts an empty target registry for the configuration
 * about to be read. Returns OK.
 */
static int offload_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    offload_targets = apr_array_make(pconf, 8, sizeof(offload_target *));
    offload_stranger = NULL;
    return OK;
}

/*
 * Copies into sh what the previous generation's segment old (of the same
 * layout) knew: the health state and counters of each target with the
 * same key, the decline counters by rule name, the start of counting.
 */
static void offload_shm_carry_over(offload_shared *sh,
                                   const offload_shared *old)
{
    apr_uint32_t i, j;

    if (old->magic != OFFLOAD_SHM_MAGIC ||
        old->slot_size != sizeof(offload_slot) ||
        old->nrules > OFFLOAD_MAX_RULES) {
        return;
    }
    sh->since = old->since;
    sh->redirects_private = old->redirects_private;
    for (i = 0; i < sh->nrules; i++) {
        for (j = 0; j < old->nrules; j++) {
            if (!strncmp(sh->rule[i], old->rule[j], OFFLOAD_RULE_NAME)) {
                sh->declines[i] = old->declines[j];
            }
        }
    }
    for (i = 0; i < sh->nslots; i++) {
        for (j = 0; j < old->nslots; j++) {
            if (!strcmp(sh->slot[i].key, old->slot[j].key)) {
                memcpy(&sh->slot[i], &old->slot[j], sizeof(offload_slot));
            }
        }
    }
}

/*
 * Creates the shared segment for this generation in the process pool
 * (it outlives pconf, so that a restart can read it), carries over what
 * the previous one held and destroys that one. Sets the server
 * configuration's shm. Returns APR_SUCCESS or the error of apr_shm_create.
 */
static apr_status_t offload_shm_setup(server_rec *s)
{
    offload_server_conf *sc = offload_server(s);
    static const char key[] = "mod_offload shared segment";
    apr_pool_t *pproc = s->process->pool;
    apr_shm_t *shm = NULL, *old = NULL;
    apr_size_t size;
    offload_shared *sh;
    apr_status_t rv;
    int i;

    size = sizeof(offload_shared) +
           (apr_size_t)offload_targets->nelts * sizeof(offload_slot);
    rv = apr_shm_create(&shm, size, NULL, pproc);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    sh = apr_shm_baseaddr_get(shm);
    memset(sh, 0, size);
    sh->magic = OFFLOAD_SHM_MAGIC;
    sh->slot_size = sizeof(offload_slot);
    sh->since = (apr_uint64_t)apr_time_now();
    sh->nrules = OFFLOAD_NRULES;
    for (i = 0; i < OFFLOAD_NRULES; i++) {
        apr_cpystrn(sh->rule[i], offload_rule_at(i)->name, OFFLOAD_RULE_NAME);
    }
    sh->nslots = (apr_uint32_t)offload_targets->nelts;
    for (i = 0; i < offload_targets->nelts; i++) {
        offload_target *t = APR_ARRAY_IDX(offload_targets, i, offload_target *);

        apr_snprintf(sh->slot[i].key, OFFLOAD_KEY_SIZE, "%s://%s", t->scheme,
                     t->authority);
    }

    apr_pool_userdata_get((void **)&old, key, pproc);
    if (old != NULL) {
        offload_shm_carry_over(sh, apr_shm_baseaddr_get(old));
        apr_shm_destroy(old);
    }
    if (!sc->hc_enabled) { /* stale states would mean nothing */
        for (i = 0; i < offload_targets->nelts; i++) {
            sh->slot[i].state = OFFLOAD_STATE_UNKNOWN;
        }
    }
    apr_pool_userdata_set(shm, key, apr_pool_cleanup_null, pproc);
    sc->shm = sh;
    return APR_SUCCESS;
}

/*
 * Registers the health-check callback with mod_watchdog: one singleton
 * watchdog thread per server runs it every OffloadHealthCheckInterval.
 * Returns OK, or HTTP_INTERNAL_SERVER_ERROR (start-up fails) when
 * mod_watchdog is missing or refuses.
 */
static int offload_hc_setup(apr_pool_t *pconf, server_rec *s)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) * get_instance;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) * register_callback;
    ap_watchdog_t *wd;
    apr_status_t rv;

    get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    register_callback = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (get_instance == NULL || register_callback == NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "OffloadHealthCheck On needs mod_watchdog");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rv = get_instance(&wd, "_offload_hcheck_", 0, 1, pconf);
    if (rv == APR_SUCCESS) {
        rv = register_callback(
            wd, apr_time_from_sec(offload_hc_interval(offload_server(s))), s,
            offload_hc_callback);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "OffloadHealthCheck: cannot start the health checks "
                     "with mod_watchdog");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/*
 * post_config hook: adds mod_offload/VERSION to the server signature and
 * resolves every registered target. A name that does not resolve is
 * logged as a warning and still used for redirects. Returns OK.
 */
static int offload_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    apr_status_t rv;
    int i;

    (void)plog;
    (void)ptemp;
    ap_add_version_component(pconf, "mod_offload/" OFFLOAD_VERSION);

    rv = apr_sockaddr_info_get(&offload_stranger, OFFLOAD_STRANGER_ADDRESS,
                               APR_UNSPEC, 0, 0, pconf);
    if (rv != APR_SUCCESS) {
        offload_stranger = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "offload: cannot parse the address %s; no URL counts "
                     "as public and nothing is offloaded",
                     OFFLOAD_STRANGER_ADDRESS);
    }

    /* the first of the two start-up passes only checks the configuration */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    for (i = 0; i < offload_targets->nelts; i++) {
        offload_target *t = APR_ARRAY_IDX(offload_targets, i, offload_target *);

        rv = apr_sockaddr_info_get(&t->addrs, t->hostname, APR_UNSPEC, t->port,
                                   0, pconf);
        if (rv != APR_SUCCESS) {
            t->addrs = NULL;
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "OffloadHost %s: the name does not resolve; it is "
                         "still used for redirects, but its requests are "
                         "recognised only by the " OFFLOAD_BYPASS_HEADER
                         " header",
                         t->authority);
        }
    }

    rv = offload_shm_setup(s);
    if (rv != APR_SUCCESS) {
        offload_server(s)->shm = NULL;
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "offload: cannot create shared memory for host states "
                     "and counters");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (offload_server(s)->hc_enabled && offload_targets->nelts > 0) {
        return offload_hc_setup(pconf, s);
    }
    return OK;
}

/*
 * child_init hook: notes the scoreboard's dimensions for counting busy
 * workers: ServerLimit process slots, ThreadsPerChild worker slots each.
 */
static void offload_child_init(apr_pool_t *p, server_rec *s)
{
    int daemons = 0, threads = 0;

    (void)p;
    (void)s;
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons) != APR_SUCCESS) {
        daemons = 0;
    }
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS ||
        threads < 1) {
        threads = 1; /* prefork: one worker per process */
    }
    offload_sb_daemons = daemons;
    offload_sb_threads = threads;
}

/* ---- configuration table ----------------------------------------------- */

static const command_rec offload_cmds[] = {
    AP_INIT_FLAG("OffloadEngine", ap_set_flag_slot,
                 (void *)offsetof(offload_dir_conf, engine), OR_OPTIONS,
                 "On to redirect eligible requests to offload hosts"),
    AP_INIT_TAKE12("OffloadHost", offload_cmd_host, NULL, OR_OPTIONS,
                   "HOST[:PORT] or http[s]://HOST[:PORT][/PREFIX], "
                   "optionally followed by weight=N"),
    AP_INIT_TAKE1("OffloadMinSize", offload_cmd_min_size, NULL, OR_OPTIONS,
                  "smallest file size to offload, N[K|M|G]"),
    AP_INIT_TAKE1("OffloadRedirectStatus", offload_cmd_redirect_status, NULL,
                  OR_OPTIONS, "302, 303 or 307"),
    AP_INIT_TAKE1("OffloadSelect", offload_cmd_select, NULL, OR_OPTIONS,
                  "hash, random or roundrobin"),
    AP_INIT_ITERATE("OffloadExcludeMimeType", offload_cmd_pattern,
                    (void *)offsetof(offload_dir_conf, exclude_types),
                    OR_OPTIONS, "MIME type patterns never offloaded"),
    AP_INIT_ITERATE("OffloadExcludeUserAgent", offload_cmd_pattern,
                    (void *)offsetof(offload_dir_conf, exclude_agents),
                    OR_OPTIONS, "User-Agent patterns never offloaded"),
    AP_INIT_ITERATE("OffloadExcludeAddress", offload_cmd_exclude_address, NULL,
                    OR_OPTIONS,
                    "client addresses, CIDR blocks or patterns never "
                    "offloaded"),
    AP_INIT_TAKE1("OffloadBusyThreshold", offload_cmd_busy_threshold, NULL,
                  OR_OPTIONS,
                  "offload only while at least this many other workers are "
                  "busy; 0 always"),
    AP_INIT_FLAG("OffloadLinkHeaders", ap_set_flag_slot,
                 (void *)offsetof(offload_dir_conf, link_headers), OR_OPTIONS,
                 "On to name the offload hosts in Link: rel=duplicate "
                 "headers of the files served here"),
    AP_INIT_TAKE1("OffloadDigestFile", offload_cmd_digest_file, NULL,
                  OR_OPTIONS,
                  "the sha256sum file (e.g. SHA256SUMS) in each file's "
                  "directory that gives its digest, or Off"),
    AP_INIT_FLAG("OffloadHealthCheck", offload_cmd_hc, NULL, RSRC_CONF,
                 "On to check every OffloadHost periodically (server config "
                 "only)"),
    AP_INIT_TAKE1("OffloadHealthCheckInterval", offload_cmd_hc_interval, NULL,
                  RSRC_CONF,
                  "seconds between health checks (server config "
                  "only)"),
    AP_INIT_TAKE1("OffloadHealthCheckURI", offload_cmd_hc_uri, NULL, RSRC_CONF,
                  "the path a health check GETs on every OffloadHost (server "
                  "config only)"),
    {NULL, {NULL}, NULL, 0, RAW_ARGS, NULL}};

/* ---- module ------------------------------------------------------------ */

/*
 * Registers the hooks: the decision runs as the last fixup so that every
 * other module has had its say about the request; post_config runs
 * before mod_watchdog's, which starts the watchdogs that have callbacks.
 */
static void offload_register_hooks(apr_pool_t *p)
{
    static const char *const before_watchdog[] = {"mod_watchdog.c", NULL};

    (void)p;
    ap_hook_pre_config(offload_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(offload_post_config, NULL, before_watchdog,
                        APR_HOOK_MIDDLE);
    ap_hook_child_init(offload_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_fixups(offload_fixups, NULL, NULL, APR_HOOK_LAST);
    ap_hook_handler(offload_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(offload) = {
    STANDARD20_MODULE_STUFF,   offload_create_dir_conf,
    offload_merge_dir_conf,    offload_create_server_conf,
    offload_merge_server_conf, offload_cmds,
    offload_register_hooks,    AP_MODULE_FLAG_NONE};
