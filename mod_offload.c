/*
 * mod_offload.c -- the base server's half of mod_offload, for Apache 2.4.
 *
 * For every GET of a plain static file that anybody may fetch, the module
 * answers with a redirect to an offload host (an offload_daemon that fetches
 * the file from this server once, caches it and serves it from then on).
 * Every request it declines is served by Apache exactly as if the module
 * were not loaded. The decision is a chain of early exits, cheapest first;
 * the rule that declined is stored in the request note "offload-declined",
 * the chosen host in "offload-host".
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

#include "apr_atomic.h"
#include "apr_fnmatch.h"
#include "apr_lib.h"
#include "apr_md5.h"
#include "apr_network_io.h"
#include "apr_strings.h"
#include "apr_uri.h"

#include <errno.h>
#include <stddef.h>

#include "config.h"

/* AP_DECLARE_MODULE(offload) at the end includes APLOG_USE_MODULE(offload),
 * so that LogLevel offload:debug applies to every line logged here. */
module AP_MODULE_DECLARE_DATA offload_module;

/* ---- configuration ----------------------------------------------------- */

#define OFFLOAD_UNSET (-1)

#define OFFLOAD_SELECT_HASH 0
#define OFFLOAD_SELECT_RANDOM 1
#define OFFLOAD_SELECT_ROUNDROBIN 2

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
    int index;             /* position in offload_targets; -1 if private */
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
    int debug;                          /* 0, 1 or UNSET */
    int redirect_status;                /* 302, 303, 307 or UNSET */
    int select;                         /* OFFLOAD_SELECT_* or UNSET */
    apr_off_t min_size;                 /* bytes, or UNSET */
    apr_array_header_t *hosts;          /* offload_host * */
    apr_array_header_t *exclude_types;  /* const char * */
    apr_array_header_t *exclude_agents; /* const char * */
    apr_array_header_t *exclude_addrs;  /* offload_addr_rule * */
} offload_dir_conf;

/* Every target declared in the configuration files of this generation. */
static apr_array_header_t *offload_targets; /* offload_target *, in pconf */

/* The address of a stranger, for the "is this URL public?" check. */
static apr_sockaddr_t *offload_stranger; /* in pconf; NULL if unusable */

/* Turn of the round-robin selection, per process. */
static apr_uint32_t offload_rr_counter;

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
    conf->debug = OFFLOAD_UNSET;
    conf->redirect_status = OFFLOAD_UNSET;
    conf->select = OFFLOAD_UNSET;
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
    conf->debug = add->debug != OFFLOAD_UNSET ? add->debug : base->debug;
    conf->redirect_status = add->redirect_status != OFFLOAD_UNSET
                                ? add->redirect_status
                                : base->redirect_status;
    conf->select = add->select != OFFLOAD_UNSET ? add->select : base->select;
    conf->min_size =
        add->min_size != OFFLOAD_UNSET ? add->min_size : base->min_size;
    conf->hosts = offload_merge_list(p, base->hosts, add->hosts);
    conf->exclude_types =
        offload_merge_list(p, base->exclude_types, add->exclude_types);
    conf->exclude_agents =
        offload_merge_list(p, base->exclude_agents, add->exclude_agents);
    conf->exclude_addrs =
        offload_merge_list(p, base->exclude_addrs, add->exclude_addrs);
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

    if (n == 0 || n > 255) {
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
    apr_port_t default_port = strcmp(scheme, "https") ? 80 : 443;
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
 * Parses a port number text into *port. Returns 0, or -1 if it is not a
 * number from 1 to 65535.
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
    if (v < 1 || v > 65535) {
        return -1;
    }
    *port = (apr_port_t)v;
    return 0;
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
    const char *scheme = "http";
    const char *prefix = "";
    char *hostname = NULL;
    apr_port_t port = 0;
    int w = 1;

    if (*arg == '\0') {
        return "OffloadHost: the host is empty";
    }
    if (ap_strstr_c(arg, "://") != NULL) {
        apr_uri_t uri;

        if (apr_uri_parse(cmd->temp_pool, arg, &uri) != APR_SUCCESS ||
            uri.scheme == NULL ||
            (strcasecmp(uri.scheme, "http") &&
             strcasecmp(uri.scheme, "https")) ||
            uri.hostname == NULL || uri.user != NULL || uri.password != NULL ||
            uri.query != NULL || uri.fragment != NULL ||
            (uri.port_str != NULL &&
             offload_parse_port(uri.port_str, &port) != 0)) {
            return apr_psprintf(cmd->pool,
                                "OffloadHost: '%s' is not a valid URL "
                                "(expected http[s]://HOST[:PORT][/PREFIX])",
                                arg);
        }
        scheme = strcasecmp(uri.scheme, "https") ? "http" : "https";
        hostname = uri.hostname;
        if (uri.path != NULL) {
            char *p = apr_pstrdup(cmd->pool, uri.path);
            size_t n = strlen(p);

            while (n > 0 && p[n - 1] == '/') {
                p[--n] = '\0';
            }
            if (n > 0 && p[0] != '/') {
                return apr_psprintf(cmd->pool,
                                    "OffloadHost: '%s' has a malformed "
                                    "path prefix",
                                    arg);
            }
            prefix = p;
        }
    } else {
        char *scope = NULL;

        if (apr_parse_addr_port(&hostname, &scope, &port, arg,
                                cmd->temp_pool) != APR_SUCCESS ||
            hostname == NULL || scope != NULL ||
            ap_strchr_c(arg, '/') != NULL) {
            return apr_psprintf(cmd->pool,
                                "OffloadHost: '%s' is not a valid host "
                                "(expected HOST[:PORT] or a URL)",
                                arg);
        }
    }
    if (!offload_valid_hostname(hostname)) {
        return apr_psprintf(cmd->pool,
                            "OffloadHost: '%s' has an invalid host name", arg);
    }
    if (port == 0) {
        port = strcmp(scheme, "https") ? 80 : 443;
    }
    if (weight != NULL) {
        const char *v = weight + 7;
        char *end;
        long n;

        if (strncasecmp(weight, "weight=", 7) != 0) {
            return apr_psprintf(cmd->pool, "OffloadHost: '%s' is not weight=N",
                                weight);
        }
        n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 1 || n > OFFLOAD_MAX_WEIGHT) {
            return apr_psprintf(cmd->pool,
                                "OffloadHost: '%s' is invalid (weight must "
                                "be a whole number from 1 to %d)",
                                weight, OFFLOAD_MAX_WEIGHT);
        }
        w = (int)n;
    }

    h = apr_pcalloc(cmd->pool, sizeof(*h));
    h->target = offload_get_target(cmd, scheme, hostname, port);
    h->base = apr_pstrcat(cmd->pool, scheme, "://", h->target->authority,
                          prefix, NULL);
    h->weight = w;
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
            unit = 1024;
            end++;
            break;
        case 'M':
            unit = 1024 * 1024;
            end++;
            break;
        case 'G':
            unit = 1024 * 1024 * 1024;
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

/* ---- host selection ---------------------------------------------------- */

/*
 * Returns -ln(u) for u = (x + 0.5) / 2^53, with x < 2^53: an exponentially
 * distributed value when x is uniform (u is never 0 or 1).
 */
static double offload_neg_ln(apr_uint64_t x)
{
    return -log(((double)x + 0.5) / 9007199254740992.0);
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
    for (i = 0; i < 8; i++) {
        x = (x << 8) | digest[i];
    }
    return x >> 11;
}

/*
 * Fills order[0..n-1] with the n hosts in a weighted rotation that moves
 * one turn per call in this process: weight=N gives a host N turns in a
 * row. Returns n.
 */
static int offload_rank_rotation(offload_host **hosts, int n,
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
    return n;
}

/*
 * Fills order[0..n-1] with the n hosts by descending rendezvous score
 * weight / -ln(u), u from the hash of the host and path (random: from
 * random bytes); ties keep declaration order. score is scratch space for
 * n doubles. Returns n.
 */
static int offload_rank_scores(offload_host **hosts, int n, const char *path,
                               int random, double *score, offload_host **order)
{
    int i, j;

    for (i = 0; i < n; i++) {
        apr_uint64_t x;
        double s;

        if (random) {
            ap_random_insecure_bytes(&x, sizeof(x));
            x >>= 11;
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
    return n;
}

/*
 * Fills order[0..n-1] (n = conf->hosts->nelts, at least 1) with the hosts
 * in the order they should be tried for request r, best first, as
 * OffloadSelect says: hash (rendezvous hashing of r->uri), random or
 * roundrobin. Returns n. Scratch memory comes from r->pool. A health
 * check only has to skip the unusable hosts in this order.
 */
static int offload_rank_hosts(request_rec *r, const offload_dir_conf *conf,
                              offload_host **order)
{
    int n = conf->hosts->nelts;
    offload_host **hosts = (offload_host **)conf->hosts->elts;

    switch (conf->select) {
    case OFFLOAD_SELECT_ROUNDROBIN:
        return offload_rank_rotation(hosts, n, order);
    case OFFLOAD_SELECT_RANDOM:
        return offload_rank_scores(hosts, n, r->uri, 1,
                                   apr_palloc(r->pool, n * sizeof(double)),
                                   order);
    default: /* OFFLOAD_SELECT_HASH, the default when unset */
        return offload_rank_scores(hosts, n, r->uri, 0,
                                   apr_palloc(r->pool, n * sizeof(double)),
                                   order);
    }
}

/* ---- decision predicates ----------------------------------------------- */

/*
 * Each predicate returns NULL when the request passes its rule, or a short
 * detail for the debug log when the rule declines the request. The rule's
 * name (offload_rules below) becomes the "offload-declined" note.
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

/* The decision: every rule in order; the first that declines wins. */
static const struct {
    const char *name;
    offload_predicate declines;
} offload_rules[] = {
    {"engine-off", offload_engine_off},
    {"no-host", offload_no_host},
    {"method", offload_method},
    {"query", offload_query},
    {"error-document", offload_error_document},
    {"bypass-header", offload_bypass_header},
    {"from-offload-host", offload_from_offload_host},
    {"handler", offload_handler},
    {"not-file", offload_not_file},
    {"path-info", offload_path_info},
    {"size", offload_size},
    {"mime-type", offload_mime_type},
    {"user-agent", offload_user_agent},
    {"address", offload_address},
    {"auth", offload_auth},
};

/* ---- hooks ------------------------------------------------------------- */

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
 * Returns the level for the per-request decision line: APLOG_DEBUG, or
 * APLOG_NOTICE under OffloadDebug On so that it shows with the default
 * LogLevel.
 */
static int offload_log_level(const offload_dir_conf *conf)
{
    return conf->debug == 1 ? APLOG_NOTICE : APLOG_DEBUG;
}

/*
 * fixups hook, run last: by now authentication, authorization, the type
 * checker and the other fixups (mod_dir, mod_negotiation) have settled
 * r->handler, r->content_type and r->finfo. Returns DECLINED (Apache
 * serves the request) or the redirect status with Location set.
 */
static int offload_fixups(request_rec *r)
{
    const offload_dir_conf *conf =
        ap_get_module_config(r->per_dir_config, &offload_module);
    int level = offload_log_level(conf);
    offload_host **order;
    const char *location;
    size_t i;

    if (r->main != NULL) {
        return DECLINED;
    }
    for (i = 0; i < sizeof(offload_rules) / sizeof(offload_rules[0]); i++) {
        const char *why = offload_rules[i].declines(r, conf);

        if (why != NULL) {
            apr_table_setn(r->notes, "offload-declined", offload_rules[i].name);
            ap_log_rerror(APLOG_MARK, level, 0, r,
                          "offload: declined %s: %s (%s)", r->uri,
                          offload_rules[i].name, why);
            return DECLINED;
        }
    }

    order = apr_palloc(r->pool, conf->hosts->nelts * sizeof(*order));
    offload_rank_hosts(r, conf, order);
    location = apr_pstrcat(r->pool, order[0]->base, offload_raw_path(r), NULL);
    apr_table_setn(r->notes, "offload-host", order[0]->base);
    apr_table_setn(r->headers_out, "Location", location);
    ap_log_rerror(APLOG_MARK, level, 0, r, "offload: %s -> %s", r->uri,
                  location);
    return offload_redirect_status(conf);
}

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
    return OK;
}

/* ---- configuration table ----------------------------------------------- */

static const command_rec offload_cmds[] = {
    AP_INIT_FLAG("OffloadEngine", ap_set_flag_slot,
                 (void *)offsetof(offload_dir_conf, engine), OR_OPTIONS,
                 "On to redirect eligible requests to offload hosts"),
    AP_INIT_FLAG("OffloadDebug", ap_set_flag_slot,
                 (void *)offsetof(offload_dir_conf, debug), OR_OPTIONS,
                 "On to log every offload decision at notice level"),
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
    {NULL, {NULL}, NULL, 0, RAW_ARGS, NULL}};

/* ---- module ------------------------------------------------------------ */

/*
 * Registers the hooks: the decision runs as the last fixup so that every
 * other module has had its say about the request.
 */
static void offload_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_pre_config(offload_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(offload_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_fixups(offload_fixups, NULL, NULL, APR_HOOK_LAST);
}

AP_DECLARE_MODULE(offload) = {STANDARD20_MODULE_STUFF,
                              offload_create_dir_conf,
                              offload_merge_dir_conf,
                              NULL,
                              NULL,
                              offload_cmds,
                              offload_register_hooks,
                              AP_MODULE_FLAG_NONE};
