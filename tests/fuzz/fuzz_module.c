/*
 * fuzz_module.c -- libFuzzer target: mod_offload's directive argument
 * parsers (OffloadHost with its weight=N, OffloadMinSize,
 * OffloadRedirectStatus, OffloadExcludeAddress), built outside Apache.
 *
 * mod_offload.c is included whole; its handlers need only APR (pools,
 * apr_uri_parse, apr_parse_addr_port, apr_ipsubnet_create), which is
 * linked. The httpd functions the rest of the module refers to live in
 * the apache2 binary; fuzz_module_stubs.c stands in for them with
 * functions that abort (the parsers never call them).
 *
 * Input: the first byte picks the directive, the rest up to the first
 * newline is its argument, the rest after it a second argument.
 */
#include "../../mod_offload.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static apr_pool_t *g_pool;
static process_rec g_process;
static server_rec g_server;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p, *tp;
    cmd_parms cmd;
    offload_dir_conf *conf;
    char *a1, *a2 = NULL;
    const uint8_t *nl;
    size_t l1;
    const char *err;

    if (size < 1 || size > 4096)
        return 0;
    if (g_pool == NULL) {
        apr_initialize();
        apr_pool_create(&g_pool, NULL);
        g_process.pconf = g_pool;
        g_server.process = &g_process;
    }
    apr_pool_create(&p, g_pool);
    apr_pool_create(&tp, p);
    memset(&cmd, 0, sizeof(cmd));
    /* a pool other than pconf: targets stay private, as in .htaccess */
    cmd.pool = p;
    cmd.temp_pool = tp;
    cmd.server = &g_server;
    conf = offload_create_dir_conf(p, "/");
    nl = memchr(data + 1, '\n', size - 1);
    l1 = nl ? (size_t)(nl - data - 1) : size - 1;
    a1 = apr_pstrmemdup(p, (const char *)data + 1, l1);
    if (nl)
        a2 = apr_pstrmemdup(p, (const char *)nl + 1, size - l1 - 2);
    switch (data[0] % 4) {
    case 0:
        err = offload_cmd_host(&cmd, conf, a1, a2);
        if (err == NULL && (conf->hosts == NULL || conf->hosts->nelts != 1))
            abort();
        break;
    case 1:
        err = offload_cmd_min_size(&cmd, conf, a1);
        if (err == NULL && conf->min_size < 0)
            abort();
        break;
    case 2:
        err = offload_cmd_redirect_status(&cmd, conf, a1);
        break;
    default:
        err = offload_cmd_exclude_address(&cmd, conf, a1);
        break;
    }
    if (err != NULL && strlen(err) == 0)
        abort();
    apr_pool_destroy(p);
    return 0;
}
