/*
 * fuzz_module_stubs.c -- stand-ins for the httpd functions that
 * mod_offload.c refers to outside its directive parsers, so that
 * fuzz_module links without the apache2 binary. None is reached by the
 * parsers; each aborts, so a call would show as a crash, never pass.
 * No httpd header is included: only the names matter to the linker.
 * The stubs are weak: a program that needs one of these functions for
 * real (tests/test_directive_docs.py's, ap_set_flag_slot and
 * ap_check_cmd_context) defines it and the linker takes that one.
 */
#include <stdlib.h>

#define STUB(name)                                                             \
    void name(void);                                                           \
    __attribute__((weak)) void name(void) { abort(); }

STUB(ap_add_version_component)
STUB(ap_check_cmd_context)
STUB(ap_escape_html2)
STUB(ap_exists_scoreboard_image)
STUB(ap_field_noparam)
STUB(ap_get_scoreboard_process)
STUB(ap_get_scoreboard_worker)
STUB(ap_get_scoreboard_worker_from_indexes)
STUB(ap_hook_child_init)
STUB(ap_hook_fixups)
STUB(ap_hook_handler)
STUB(ap_hook_post_config)
STUB(ap_hook_pre_config)
STUB(ap_log_error_)
STUB(ap_log_rerror_)
STUB(ap_make_dirstr_parent)
STUB(ap_mpm_query)
STUB(ap_random_insecure_bytes)
STUB(ap_rprintf)
STUB(ap_run_access_checker)
STUB(ap_run_access_checker_ex)
STUB(ap_run_force_authn)
STUB(ap_rwrite)
STUB(ap_satisfies)
STUB(ap_set_content_type)
STUB(ap_set_flag_slot)
STUB(ap_state_query)
