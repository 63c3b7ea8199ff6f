"""The module's directives against their documentation.

What the module accepts is read from the module itself: a small program
built here includes mod_offload.c (with tests/fuzz/fuzz_module_stubs.c
for the rest of httpd) and answers from its compiled command_rec table
each directive's name and argument form, and, by running the directive's
own handler as the main server config, a virtual host, a <Directory> and
an .htaccess file would, where it is accepted and what a value does to
the configuration. Every directive then needs an entry in
docs/mod_offload.md whose Syntax, Default, Context and Override rows say
the same, and a commented line in dist/offloader.conf that the module
accepts, with the same default. Adding, renaming or moving a directive,
or changing its arguments or default, fails here until both follow.
"""

import os
import re
import shlex
import subprocess

import pytest

import harness

DOCS = os.path.join(harness.REPO, "docs", "mod_offload.md")
DIST = os.path.join(harness.REPO, "dist", "offloader.conf")
STUBS = os.path.join(harness.REPO, "tests", "fuzz", "fuzz_module_stubs.c")

# The probe: "table" lists the directives; "fresh" prints the effective
# configuration nothing was set in; "set CONTEXT NAME ARG..." runs the
# directive there and prints "ok <effective configuration>" or
# "err <message>". The two httpd functions the handlers call are real
# enough here: ap_set_flag_slot, and ap_check_cmd_context for the
# virtual-host and directory contexts.
PROBE_C = r"""
#include "mod_offload.c"

#include <stdio.h>

const char *ap_set_flag_slot(cmd_parms *cmd, void *conf, int on)
{
    *(int *)((char *)conf + (size_t)cmd->info) = on ? 1 : 0;
    return NULL;
}

const char *ap_check_cmd_context(cmd_parms *cmd, unsigned forbidden)
{
    if ((forbidden & NOT_IN_VIRTUALHOST) && cmd->server->is_virtual) {
        return "cannot occur within <VirtualHost> section";
    }
    if ((forbidden & NOT_IN_DIR_LOC_FILE) && cmd->path != NULL) {
        return "cannot occur within directory context";
    }
    return NULL;
}

static int count(const apr_array_header_t *a)
{
    return a != NULL ? a->nelts : 0;
}

static void effective(const offload_dir_conf *c, const offload_server_conf *sc)
{
    printf("engine=%d hosts=%d min-size=%" APR_OFF_T_FMT " redirect=%d "
           "select=%d types=%d agents=%d addrs=%d busy=%d links=%d hc=%d "
           "interval=%d uri=%s\n",
           c->engine == 1, count(c->hosts), offload_min_size(c),
           offload_redirect_status(c),
           c->select == OFFLOAD_UNSET ? OFFLOAD_SELECT_HASH : c->select,
           count(c->exclude_types), count(c->exclude_agents),
           count(c->exclude_addrs), offload_busy_threshold(c),
           c->link_headers == 1, sc->hc_enabled, offload_hc_interval(sc),
           offload_hc_uri(sc));
}

static const char *run(cmd_parms *parms, void *dconf, int argc, char **argv)
{
    const command_rec *c = parms->cmd;
    const char *err = NULL;
    int i;

    if (!(c->req_override & parms->override)) {
        return "not allowed here";
    }
    switch (c->args_how) {
    case FLAG:
        if (argc != 1 || (strcasecmp(argv[0], "on") &&
                          strcasecmp(argv[0], "off"))) {
            return "must be On or Off";
        }
        return c->AP_FLAG(parms, dconf, !strcasecmp(argv[0], "on"));
    case TAKE1:
        return argc == 1 ? c->AP_TAKE1(parms, dconf, argv[0])
                         : "takes one argument";
    case TAKE12:
        if (argc < 1 || argc > 2) {
            return "takes one or two arguments";
        }
        return c->AP_TAKE2(parms, dconf, argv[0], argc > 1 ? argv[1] : NULL);
    case ITERATE:
        for (i = 0; i < argc && err == NULL; i++) {
            err = c->AP_TAKE1(parms, dconf, argv[i]);
        }
        return argc > 0 ? err : "takes at least one argument";
    default:
        return "an argument form the probe does not know";
    }
}

int main(int argc, char **argv)
{
    static process_rec process;
    static server_rec server;
    void *vector[1];
    apr_pool_t *p, *tp;
    cmd_parms parms;
    const command_rec *c;
    offload_dir_conf *dconf;
    offload_server_conf *sc;
    const char *ctx, *err;

    apr_initialize();
    apr_pool_create(&p, NULL);
    apr_pool_create(&tp, p);
    offload_module.module_index = 0;
    process.pconf = p;
    server.process = &process;
    server.module_config = (ap_conf_vector_t *)vector;
    sc = offload_create_server_conf(p, &server);
    vector[0] = sc;
    dconf = offload_create_dir_conf(p, NULL);
    if (argc == 2 && !strcmp(argv[1], "table")) {
        for (c = offload_cmds; c->name != NULL; c++) {
            printf("%s\t%d\t%d\t%s\n", c->name, (int)c->args_how,
                   c->req_override, c->errmsg);
        }
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "fresh")) {
        effective(dconf, sc);
        return 0;
    }
    if (argc < 4 || strcmp(argv[1], "set")) {
        return 2;
    }
    for (c = offload_cmds; c->name != NULL && strcmp(c->name, argv[3]); c++) {
    }
    if (c->name == NULL) {
        return 2;
    }
    ctx = argv[2];
    memset(&parms, 0, sizeof(parms));
    parms.cmd = c;
    parms.info = c->cmd_data;
    parms.pool = p;
    parms.temp_pool = tp;
    parms.server = &server;
    parms.limited = -1;
    server.is_virtual = !strcmp(ctx, "vhost");
    if (!strcmp(ctx, "directory") || !strcmp(ctx, "htaccess")) {
        parms.path = "/srv/www/";
    }
    if (!strcmp(ctx, "htaccess")) {
        parms.override = OR_ALL; /* AllowOverride All */
    } else if (parms.path != NULL) {
        parms.override = OR_ALL | ACCESS_CONF;
    } else {
        parms.override = (RSRC_CONF | OR_ALL) & ~(OR_AUTHCFG | OR_LIMIT);
    }
    err = run(&parms, dconf, argc - 4, argv + 4);
    if (err != NULL) {
        printf("err %s\n", err);
    } else {
        printf("ok ");
        effective(dconf, sc);
    }
    return 0;
}
"""

# command_rec.args_how (http_config.h's cmd_how)
RAW_ARGS, TAKE1, TAKE2, ITERATE, ITERATE2, FLAG, NO_ARGS, TAKE12 = range(8)

# req_override bits for the Override row, as the Apache manual names them
OVERRIDES = [(1, "Limit"), (2, "Options"), (4, "FileInfo"), (8, "AuthConfig"),
             (16, "Indexes")]

CONTEXTS = [("server", "server config"), ("vhost", "virtual host"),
            ("directory", "directory"), ("htaccess", ".htaccess")]


@pytest.fixture(scope="module")
def probe():
    """The probe, built from mod_offload.c; probe(*args) -> its output."""
    out_dir = harness.make_run_dir(os.path.join("tests", "directive_docs"))
    src = os.path.join(out_dir, "probe.c")
    exe = os.path.join(out_dir, "probe")
    with open(src, "w") as f:
        f.write(PROBE_C)

    def config(*cmd):
        return subprocess.run(cmd, check=True, capture_output=True,
                              text=True).stdout.split()

    cflags = (["-I" + subprocess.run(["apxs", "-q", "INCLUDEDIR"], check=True,
                                     capture_output=True,
                                     text=True).stdout.strip()]
              + config("apr-1-config", "--includes", "--cppflags"))
    libs = (config("apr-1-config", "--link-ld")
            + config("apu-1-config", "--link-ld"))
    build = subprocess.run(
        ["cc", "-std=gnu11", "-Wall", "-Wno-unused-function", "-I" +
         harness.REPO] + cflags + ["-o", exe, src, STUBS] + libs + ["-lm"],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr

    def run(*args):
        p = subprocess.run([exe] + list(args), capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, (args, p.returncode, p.stderr)
        return p.stdout.rstrip("\n")
    return run


@pytest.fixture(scope="module")
def table(probe):
    """The module's directives: {name: (args_how, req_override, usage)}."""
    rows = {}
    for line in probe("table").splitlines():
        name, how, override, usage = line.split("\t")
        rows[name] = (int(how), int(override), usage)
    assert rows, "the probe listed no directives"
    return rows


def doc_entries():
    """docs/mod_offload.md's directive entries: {name: {row: text}}, each
    with its "example" lines (those of its code blocks naming it)."""
    with open(DOCS) as f:
        text = f.read()
    m = re.search(r"^## Directives\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "docs/mod_offload.md has no '## Directives' section"
    entries = {}
    for block in re.split(r"^### ", m.group(1), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        name = name.strip()
        rows = dict(re.findall(r"^\| \*\*(\w+)\*\* \| (.*) \|$", body, re.M))
        rows["example"] = [
            l.strip() for code in re.findall(r"```apache\n(.*?)```", body,
                                             re.S)
            for l in code.splitlines()
            if l.strip().split(" ", 1)[0] == name]
        assert name not in entries, "two entries for " + name
        entries[name] = rows
    return entries


def code_spans(cell):
    """The `code` spans of a table cell, with \\| unescaped."""
    return [s.replace("\\|", "|") for s in re.findall(r"`((?:[^`])*)`", cell)]


def syntax_shape(syntax, name):
    """(required, optional, repeats) of one Syntax alternative."""
    words = syntax.split()
    assert words[0] == name, "Syntax %r does not start with %s" % (syntax,
                                                                    name)
    words = words[1:]
    repeats = bool(words) and words[-1] == "..."
    if repeats:
        words = words[:-1]
    optional = [w for w in words if w.startswith("[")]
    required = [w for w in words if not w.startswith("[")]
    assert words == required + optional, \
        "%s: optional arguments must come last in %r" % (name, syntax)
    return len(required), len(optional), repeats


def context_of(probe, name, value):
    """(Context row, accepted contexts) of directive name set to value."""
    args = shlex.split(value)
    ok = [label for ctx, label in CONTEXTS
          if probe("set", ctx, name, *args).startswith("ok ")]
    return ", ".join(ok)


def test_every_directive_has_an_entry(table):
    docs = doc_entries()
    assert sorted(docs) == sorted(table), (
        "directives of mod_offload.c without an entry in docs/mod_offload.md:"
        " %s; entries for no directive: %s"
        % (sorted(set(table) - set(docs)), sorted(set(docs) - set(table))))


def test_syntax_matches_the_argument_form(table):
    docs = doc_entries()
    for name, (how, _, _) in sorted(table.items()):
        spans = code_spans(docs[name].get("Syntax", ""))
        assert spans, "%s: no Syntax row" % name
        for syntax in spans:
            shape = syntax_shape(syntax, name)
            if how == FLAG:
                assert syntax == name + " On|Off", (name, syntax)
            elif how == TAKE1:
                assert shape == (1, 0, False), (name, syntax)
            elif how == TAKE12:
                assert shape == (1, 1, False), (name, syntax)
            elif how == ITERATE:
                assert shape[0] == 1 and shape[2], (name, syntax)
            else:
                pytest.fail("%s: argument form %d is not checked here; "
                            "extend this test" % (name, how))
        assert docs[name].get("Description"), "%s: no Description" % name
        assert docs[name].get("Module") == "mod_offload", name


def test_examples_are_accepted(probe, table):
    docs = doc_entries()
    for name in sorted(table):
        assert docs[name]["example"], "%s: no example in its entry" % name
        for line in docs[name]["example"]:
            got = probe("set", "server", *shlex.split(line))
            assert got.startswith("ok "), (line, got)


def test_context_and_override(probe, table):
    docs = doc_entries()
    for name, (_, override, _) in sorted(table.items()):
        value = docs[name]["example"][0].split(" ", 1)[1]
        assert docs[name].get("Context") == context_of(probe, name, value), \
            name
        want = ", ".join(label for bit, label in OVERRIDES if override & bit)
        assert docs[name].get("Override") == (want or "not applicable"), name


def test_default_is_what_unset_means(probe, table):
    """Setting the documented default changes nothing in the effective
    configuration; "none" only for the lists."""
    docs = doc_entries()
    fresh = probe("fresh")
    for name, (how, _, _) in sorted(table.items()):
        cell = docs[name].get("Default", "")
        if cell == "none":
            assert how in (ITERATE, TAKE12), \
                "%s: a default of none, but it is not a list" % name
            continue
        spans = code_spans(cell)
        assert len(spans) == 1 and spans[0].startswith(name + " "), \
            "%s: Default %r is not `%s VALUE` or none" % (name, cell, name)
        got = probe("set", "server", *shlex.split(spans[0]))
        assert got == "ok " + fresh, (name, spans[0], got, fresh)


def dist_entries():
    """dist/offloader.conf's commented directives: [(name, args, default)],
    default being what the "Default:" line of the comment above says."""
    entries, default = [], None
    with open(DIST) as f:
        for line in f:
            line = line.strip()
            m = re.match(r"#\s*Default:\s*(.*?)\.?$", line)
            if m:
                default = m.group(1)
            elif re.match(r"#Offload\w+", line):
                words = shlex.split(line[1:])
                entries.append((words[0], words[1:], default))
            elif not line:
                default = None
    return entries


def test_dist_config_lists_every_directive(probe, table):
    docs = doc_entries()
    listed = dist_entries()
    assert sorted({n for n, _, _ in listed}) == sorted(table), \
        "dist/offloader.conf must list every directive once"
    for name, args, default in listed:
        assert name in table, name
        got = probe("set", "server", name, *args)
        assert got.startswith("ok "), (name, args, got)
        cell = docs[name]["Default"]
        want = cell if cell == "none" else code_spans(cell)[0].split(" ", 1)[1]
        assert default == want, (
            "%s: dist/offloader.conf says the default is %r, the docs %r"
            % (name, default, want))
