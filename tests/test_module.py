"""mod_offload against the real Apache: every rule of the decision both
ways, merging, host selection, bad configuration, logging.

Offload hosts are unresolvable names (*.invalid) unless a test is about
the from-offload-host rule: a client on 127.0.0.1 counts as an offload
host when an OffloadHost resolves to 127.0.0.1.
"""

import base64
import collections
import hashlib
import http.client
import os
import re
import urllib.parse

import pytest

import harness
from harness import sha

HOST_A = "offload-a.invalid:8081"
HOST_B = "offload-b.invalid:8081"
HOST_C = "offload-c.invalid:8081"
BIG = 8192          # above the default OffloadMinSize of 5K
AUTH = "Basic " + base64.b64encode(b"alice:secret").decode()


# ---- clients --------------------------------------------------------------

def request(url, method="GET", headers=None):
    """One request on a fresh connection, no redirects followed.
    Returns (status, headers with lower-case names, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        # the request target exactly as written (urlsplit drops a bare "?")
        path = url[len(u.scheme) + 3 + len(u.netloc):]
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                body)
    finally:
        conn.close()


class KeepAlive:
    """Many requests over one kept-alive connection (reopened by
    http.client if the server closes it)."""

    def __init__(self, base_url):
        u = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port,
                                               timeout=10)

    def get(self, path, headers=None):
        self.conn.request("GET", path, headers=headers or {})
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, resp.getheader("Location"), body

    def close(self):
        self.conn.close()


def entry_for(a, uri, entries=None, client=None):
    """The last access-log entry for uri (and client, if given)."""
    entries = entries if entries is not None else a.access_entries()
    found = [e for e in entries if e["uri"] == uri
             and (client is None or e["client"] == client)]
    assert found, "no access-log entry for %s in %r" % (uri, entries)
    return found[-1]


def assert_offloaded(a, path, location, status=302, url=None):
    """GET path: the redirect status and exactly this Location."""
    st, hdrs, _ = request(url or a.url(path))
    assert st == status, (path, st)
    assert hdrs.get("location") == location


def assert_declined(a, path, digest, headers=None, url=None, method="GET"):
    """GET path: Apache serves the file itself, byte for byte."""
    st, hdrs, body = request(url or a.url(path), method=method,
                             headers=headers)
    assert st == 200, (path, st, body[:200])
    assert "location" not in hdrs
    assert sha(body) == digest


def hosts_of(a, paths, base=None):
    """GET each path over one kept-alive connection; returns
    {path: offload host} taken from the Location header."""
    client = KeepAlive(base or a.base_url)
    out = {}
    try:
        for p in paths:
            st, loc, _ = client.get(p)
            assert st == 302, (p, st)
            assert loc.endswith(p)
            out[p] = loc[:-len(p)]
    finally:
        client.close()
    return out


def write_text(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# ---- the decision, rule by rule -------------------------------------------

def rules_conf(docroot):
    d = docroot
    return """
OffloadEngine On
OffloadHost {A}
ErrorDocument 404 /big.bin
<Directory {d}/off>
    OffloadEngine Off
</Directory>
<Directory {d}/priv>
    AuthType Basic
    AuthName private
    AuthUserFile {d}/../htpasswd
    Require valid-user
</Directory>
<Directory {d}/iponly>
    Require ip 127.0.0.1 ::1
</Directory>
<Directory {d}/notten>
    <RequireAll>
        Require all granted
        Require not ip 10.0.0.0/8
    </RequireAll>
</Directory>
<Directory {d}/cgi>
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
<Directory {d}/explicit>
    SetHandler default-handler
</Directory>
<Directory {d}/php>
    ForceType application/x-httpd-php
</Directory>
<Directory {d}/list>
    Options +Indexes
</Directory>
<Directory {d}/pi>
    AcceptPathInfo On
</Directory>
<Directory {d}/noerr>
    ErrorDocument 404 default
</Directory>
<Directory {d}/mime>
    OffloadExcludeMimeType TEXT/* image/png
</Directory>
<Directory {d}/ua>
    OffloadExcludeUserAgent *wget* "Evil Bot*"
</Directory>
<Directory {d}/addr4>
    OffloadExcludeAddress 127.0.0.0/8
</Directory>
<Directory {d}/addr6>
    OffloadExcludeAddress ::1/128
</Directory>
<Directory {d}/addrpat>
    OffloadExcludeAddress 127.0.0.*
</Directory>
<Directory {d}/minsize>
    OffloadMinSize 1M
</Directory>
<Directory {d}/nominsize>
    OffloadMinSize 0
</Directory>
<Location /status>
    SetHandler server-status
</Location>
""".format(A=HOST_A, d=d)


@pytest.fixture
def rules_apache(apache_factory, run_dir):
    docroot = os.path.join(run_dir, "base", "htdocs")
    a = apache_factory(conf_extra=rules_conf(docroot), start=False,
                       modules=("status", "autoindex"))
    files = {}
    for p in ("big.bin", "off/big.bin", "priv/big.bin", "iponly/big.bin",
              "notten/big.bin", "explicit/big.bin", "php/big.php",
              "pi/big.bin", "mime/big.txt", "mime/big.png", "mime/big.bin",
              "ua/big.bin", "addr4/big.bin", "addr6/big.bin",
              "addrpat/big.bin", "minsize/big.bin", "list/sub/big.bin",
              "a b.bin", "noerr/present.bin"):
        files["/" + p] = harness.write_file(os.path.join(a.docroot, p), BIG)
    files["/small.bin"] = harness.write_file(
        os.path.join(a.docroot, "small.bin"), 5 * 1024 - 1)
    files["/exact.bin"] = harness.write_file(
        os.path.join(a.docroot, "exact.bin"), 5 * 1024)
    files["/minsize/2m.bin"] = harness.write_file(
        os.path.join(a.docroot, "minsize/2m.bin"), 2 * 1024 * 1024)
    files["/nominsize/one.bin"] = harness.write_file(
        os.path.join(a.docroot, "nominsize/one.bin"), 1)
    write_text(os.path.join(a.docroot, "cgi", "run.cgi"),
               "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n"
               "echo from-cgi\n", 0o755)
    pw = base64.b64encode(hashlib.sha1(b"secret").digest()).decode()
    write_text(os.path.join(a.run_dir, "htpasswd"), "alice:{SHA}%s\n" % pw)
    a.files = files
    return a.start()


def test_offloaded_redirect_and_location(rules_apache):
    a = rules_apache
    assert_offloaded(a, "/big.bin", "http://%s/big.bin" % HOST_A)
    # the request's own (still encoded) path is appended
    assert_offloaded(a, "/a%20b.bin", "http://%s/a%%20b.bin" % HOST_A)
    st, hdrs, body = request(a.url("/big.bin"))
    assert b"moved" in body.lower() and len(body) < 1000
    e = entry_for(a, "/big.bin")
    assert e["status"] == "302"
    assert e["offload_host"] == "http://" + HOST_A
    assert e["offload_declined"] == ""


def test_rule_engine_and_method(rules_apache):
    a = rules_apache
    f = a.files
    assert_declined(a, "/off/big.bin", f["/off/big.bin"])
    st, hdrs, body = request(a.url("/big.bin"), method="HEAD")
    assert st == 200 and int(hdrs["content-length"]) == BIG and body == b""
    for m in ("POST", "OPTIONS"):
        st, hdrs, _ = request(a.url("/big.bin"), method=m)
        assert st < 300 or st >= 400, (m, st)
        assert "location" not in hdrs
    es = a.access_entries()
    assert entry_for(a, "/off/big.bin", es)["offload_declined"] == \
        "engine-off"
    for m in ("HEAD", "POST", "OPTIONS"):
        e = [x for x in es if x["method"] == m][-1]
        assert e["offload_declined"] == "method", e


def test_file_rules_before_request_rules(rules_apache):
    # a request that fails a file rule and a request rule is named by the
    # file rule: the request rules ask only about offloadable files
    a = rules_apache
    st, hdrs, body = request(a.url("/small.bin"), method="HEAD")
    assert st == 200 and "location" not in hdrs and body == b""
    st, hdrs, body = request(a.url("/iponly/big.bin"), method="HEAD")
    assert st == 200 and "location" not in hdrs and body == b""
    heads = {x["uri"]: x["offload_declined"] for x in a.access_entries()
             if x["method"] == "HEAD"}
    assert heads == {"/small.bin": "size", "/iponly/big.bin": "auth"}


def test_rule_query(rules_apache):
    a = rules_apache
    assert_declined(a, "/big.bin?x=1", a.files["/big.bin"])
    assert_declined(a, "/big.bin?", a.files["/big.bin"])
    es = a.access_entries()
    assert entry_for(a, "/big.bin?x=1", es)["offload_declined"] == "query"


def test_rule_auth(rules_apache):
    a = rules_apache
    f = a.files
    # Require all granted (the docroot) and a RequireAll that only
    # excludes a network are public: offloaded
    assert_offloaded(a, "/big.bin", "http://%s/big.bin" % HOST_A)
    assert_offloaded(a, "/notten/big.bin",
                     "http://%s/notten/big.bin" % HOST_A)
    # valid credentials: Apache serves the file itself
    assert_declined(a, "/priv/big.bin", f["/priv/big.bin"],
                    headers={"Authorization": AUTH})
    st, _, _ = request(a.url("/priv/big.bin"))
    assert st == 401
    # Require ip: allowed client, but not a public URL
    assert_declined(a, "/iponly/big.bin", f["/iponly/big.bin"])
    assert_declined(a, "/iponly/big.bin", f["/iponly/big.bin"],
                    url=a.url6("/iponly/big.bin"))
    es = a.access_entries()
    assert entry_for(a, "/priv/big.bin", [e for e in es
                                          if e["status"] == "200"]
                     )["offload_declined"] == "auth"
    assert entry_for(a, "/iponly/big.bin", es, "127.0.0.1"
                     )["offload_declined"] == "auth"
    assert entry_for(a, "/iponly/big.bin", es, "::1"
                     )["offload_declined"] == "auth"
    # the access check on behalf of a stranger logs nothing
    assert "AH01630" not in a.error_log_text()


def test_rule_handler(rules_apache):
    a = rules_apache
    st, _, body = request(a.url("/cgi/run.cgi"))
    assert st == 200 and body == b"from-cgi\n"
    st, _, body = request(a.url("/status"))
    assert st == 200 and b"Apache Server Status" in body
    # a content type that names a handler (mod_php's way) is not static
    assert_declined(a, "/php/big.php", a.files["/php/big.php"])
    # SetHandler default-handler is the static handler
    assert_offloaded(a, "/explicit/big.bin",
                     "http://%s/explicit/big.bin" % HOST_A)
    es = a.access_entries()
    for uri in ("/cgi/run.cgi", "/status", "/php/big.php"):
        assert entry_for(a, uri, es)["offload_declined"] == "handler", uri


def test_rule_file_and_path_info(rules_apache):
    a = rules_apache
    st, _, body = request(a.url("/list/"))
    assert st == 200 and b"Index of /list" in body
    # a missing file: Apache's 404 with its ErrorDocument, not a redirect
    st, hdrs, body = request(a.url("/missing.bin"))
    assert st == 404 and "location" not in hdrs
    assert sha(body) == a.files["/big.bin"]
    st, hdrs, body = request(a.url("/noerr/missing.bin"))
    assert st == 404 and "location" not in hdrs
    st, hdrs, body = request(a.url("/pi/big.bin/extra"))
    assert st == 200 and sha(body) == a.files["/pi/big.bin"]
    assert_offloaded(a, "/pi/big.bin", "http://%s/pi/big.bin" % HOST_A)
    es = a.access_entries()
    # a directory listing is mod_autoindex's, by content type
    assert entry_for(a, "/list/", es)["offload_declined"] == "handler"
    # the 404 and its error document
    assert entry_for(a, "/missing.bin", es)["offload_declined"] in (
        "not-file", "error-document")
    assert entry_for(a, "/noerr/missing.bin", es)["offload_declined"] == \
        "not-file"
    assert entry_for(a, "/pi/big.bin/extra", es)["offload_declined"] == \
        "path-info"
    assert "offload: declined /missing.bin: not-file" not in \
        a.error_log_text()  # debug lines only with LogLevel offload:debug


def test_rule_size(rules_apache):
    a = rules_apache
    f = a.files
    assert_declined(a, "/small.bin", f["/small.bin"])
    assert_offloaded(a, "/exact.bin", "http://%s/exact.bin" % HOST_A)
    assert_declined(a, "/minsize/big.bin", f["/minsize/big.bin"])
    assert_offloaded(a, "/minsize/2m.bin",
                     "http://%s/minsize/2m.bin" % HOST_A)
    assert_offloaded(a, "/nominsize/one.bin",
                     "http://%s/nominsize/one.bin" % HOST_A)
    es = a.access_entries()
    for uri in ("/small.bin", "/minsize/big.bin"):
        assert entry_for(a, uri, es)["offload_declined"] == "size"


def test_rule_bypass_header(rules_apache):
    a = rules_apache
    assert_declined(a, "/big.bin", a.files["/big.bin"],
                    headers={"X-Mod-Offload-Bypass": "1"})
    e = [x for x in a.access_entries() if x["bypass"]][-1]
    assert e["offload_declined"] == "bypass-header"


def test_rule_mime_type(rules_apache):
    a = rules_apache
    f = a.files
    assert_declined(a, "/mime/big.txt", f["/mime/big.txt"])
    assert_declined(a, "/mime/big.png", f["/mime/big.png"])
    assert_offloaded(a, "/mime/big.bin", "http://%s/mime/big.bin" % HOST_A)
    es = a.access_entries()
    for uri in ("/mime/big.txt", "/mime/big.png"):
        assert entry_for(a, uri, es)["offload_declined"] == "mime-type"


def test_rule_user_agent(rules_apache):
    a = rules_apache
    f = a.files["/ua/big.bin"]
    assert_declined(a, "/ua/big.bin", f, headers={"User-Agent": "Wget/1.21"})
    assert_declined(a, "/ua/big.bin", f,
                    headers={"User-Agent": "evil bot 2.0"})
    st, hdrs, _ = request(a.url("/ua/big.bin"),
                          headers={"User-Agent": "curl/8.0"})
    assert st == 302
    declined = [e for e in a.access_entries() if e["offload_declined"]]
    assert [e["offload_declined"] for e in declined[-2:]] == \
        ["user-agent", "user-agent"]


def test_rule_address(rules_apache):
    a = rules_apache
    f = a.files
    for d in ("addr4", "addrpat"):
        path = "/%s/big.bin" % d
        assert_declined(a, path, f[path])
        assert_offloaded(a, path, "http://%s%s" % (HOST_A, path),
                         url=a.url6(path))
    assert_declined(a, "/addr6/big.bin", f["/addr6/big.bin"],
                    url=a.url6("/addr6/big.bin"))
    assert_offloaded(a, "/addr6/big.bin",
                     "http://%s/addr6/big.bin" % HOST_A)
    es = a.access_entries()
    assert entry_for(a, "/addr4/big.bin", es, "127.0.0.1"
                     )["offload_declined"] == "address"
    assert entry_for(a, "/addrpat/big.bin", es, "127.0.0.1"
                     )["offload_declined"] == "address"
    assert entry_for(a, "/addr6/big.bin", es, "::1"
                     )["offload_declined"] == "address"


def test_rule_no_host(apache_factory):
    a = apache_factory(conf_extra="OffloadEngine On\n", start=False)
    digest = harness.write_file(os.path.join(a.docroot, "big.bin"), BIG)
    a.start()
    assert_declined(a, "/big.bin", digest)
    assert entry_for(a, "/big.bin")["offload_declined"] == "no-host"


def test_rule_from_offload_host(apache_factory):
    """An OffloadHost that resolves to 127.0.0.1: requests from there are
    the daemon's and are served; requests from [::1] are redirected."""
    a = apache_factory(conf_extra="OffloadEngine On\n"
                       "OffloadHost 127.0.0.1:8081\n", start=False)
    digest = harness.write_file(os.path.join(a.docroot, "big.bin"), BIG)
    a.start()
    assert_declined(a, "/big.bin", digest)
    assert_offloaded(a, "/big.bin", "http://127.0.0.1:8081/big.bin",
                     url=a.url6("/big.bin"))
    es = a.access_entries()
    assert entry_for(a, "/big.bin", es, "127.0.0.1")["offload_declined"] \
        == "from-offload-host"
    assert entry_for(a, "/big.bin", es, "::1")["offload_host"] == \
        "http://127.0.0.1:8081"


# ---- host forms, status codes ---------------------------------------------

def test_host_forms_and_status(apache_factory, run_dir):
    docroot = os.path.join(run_dir, "base", "htdocs")
    conf = "OffloadEngine On\n"
    cases = {
        "plain": ("offload.invalid", "http://offload.invalid"),
        "port80": ("http://offload.invalid:80/", "http://offload.invalid"),
        "tls": ("https://offload.invalid/mirror/",
                "https://offload.invalid/mirror"),
        "tlsport": ("HTTPS://offload.invalid:8443/a/b",
                    "https://offload.invalid:8443/a/b"),
        "v6": ("[2001:db8::1]:8081", "http://[2001:db8::1]:8081"),
        "v6url": ("http://[2001:db8::2]/x", "http://[2001:db8::2]/x"),
    }
    for d, (arg, _) in cases.items():
        conf += "<Directory %s/%s>\n    OffloadHost %s\n</Directory>\n" % (
            docroot, d, arg)
    for d, status in (("s303", 303), ("s307", 307), ("s302", 302)):
        conf += ("<Directory %s/%s>\n    OffloadHost %s\n"
                 "    OffloadRedirectStatus %d\n</Directory>\n"
                 % (docroot, d, HOST_A, status))
    a = apache_factory(conf_extra=conf, start=False)
    for d in list(cases) + ["s303", "s307", "s302"]:
        harness.write_file(os.path.join(a.docroot, d, "f.iso"), BIG)
    a.start()
    for d, (_, base) in cases.items():
        assert_offloaded(a, "/%s/f.iso" % d, "%s/%s/f.iso" % (base, d))
    for d, status in (("s303", 303), ("s307", 307), ("s302", 302)):
        assert_offloaded(a, "/%s/f.iso" % d,
                         "http://%s/%s/f.iso" % (HOST_A, d), status=status)


# ---- merging --------------------------------------------------------------

def test_merging_directory_and_htaccess(apache_factory, run_dir):
    docroot = os.path.join(run_dir, "base", "htdocs")
    conf = """
OffloadHost {A}
<Directory {d}/m>
    OffloadEngine On
    OffloadMinSize 1M
    OffloadExcludeMimeType text/*
</Directory>
<Location /m/loc>
    OffloadRedirectStatus 303
</Location>
""".format(A=HOST_A, d=docroot)
    a = apache_factory(conf_extra=conf, start=False)
    files = {}
    for p in ("big.bin", "m/big.bin", "m/sub/big.bin", "m/sub/big.txt",
              "m/sub/off/big.bin", "m/loc/big.bin"):
        files["/" + p] = harness.write_file(os.path.join(a.docroot, p), BIG)
    # .htaccess below the <Directory>: overrides one value, adds to lists
    write_text(os.path.join(a.docroot, "m/sub/.htaccess"),
               "OffloadMinSize 4K\nOffloadRedirectStatus 307\n"
               "OffloadExcludeUserAgent *bot*\nOffloadHost %s\n" % HOST_B)
    write_text(os.path.join(a.docroot, "m/sub/off/.htaccess"),
               "OffloadEngine Off\n")
    write_text(os.path.join(a.docroot, "m/loc/.htaccess"),
               "OffloadMinSize 0\n")
    a.start()
    # outside the <Directory>: the engine is off
    assert_declined(a, "/big.bin", files["/big.bin"])
    # in it: the 1M minimum applies
    assert_declined(a, "/m/big.bin", files["/m/big.bin"])
    # below it: the .htaccess minimum and status, the inherited exclusion
    st, loc, _ = KeepAlive(a.base_url).get("/m/sub/big.bin")
    assert st == 307
    assert loc in ("http://%s/m/sub/big.bin" % HOST_A,
                   "http://%s/m/sub/big.bin" % HOST_B)
    assert_declined(a, "/m/sub/big.txt", files["/m/sub/big.txt"])
    assert_declined(a, "/m/sub/big.bin", files["/m/sub/big.bin"],
                    headers={"User-Agent": "Googlebot"})
    # the user-agent exclusion was added below only
    st, _, _ = request(a.url("/m/loc/big.bin"), headers={"User-Agent": "bot"})
    assert st == 303
    # both hosts serve the .htaccess directory: the host list grew
    seen = set()
    client = KeepAlive(a.base_url)
    for i in range(40):
        harness.write_file(os.path.join(a.docroot, "m/sub/f%d.bin" % i), BIG)
        st, loc, _ = client.get("/m/sub/f%d.bin" % i)
        assert st == 307
        seen.add(loc.split("/m/sub/")[0])
    client.close()
    assert seen == {"http://" + HOST_A, "http://" + HOST_B}
    # a subdirectory that turns the engine off
    assert_declined(a, "/m/sub/off/big.bin", files["/m/sub/off/big.bin"])
    es = a.access_entries()
    assert entry_for(a, "/big.bin", es)["offload_declined"] == "engine-off"
    assert entry_for(a, "/m/big.bin", es)["offload_declined"] == "size"
    assert entry_for(a, "/m/sub/big.txt", es)["offload_declined"] == \
        "mime-type"
    assert [e for e in es if e["uri"] == "/m/sub/big.bin"
            ][-1]["offload_declined"] == "user-agent"
    assert entry_for(a, "/m/sub/off/big.bin", es)["offload_declined"] == \
        "engine-off"


@pytest.mark.expect_error(r"OffloadMinSize: '12Q' is not a size")
def test_htaccess_bad_value_is_a_server_error(apache_factory):
    a = apache_factory(conf_extra="OffloadEngine On\nOffloadHost %s\n"
                       % HOST_A, start=False)
    harness.write_file(os.path.join(a.docroot, "bad/big.bin"), BIG)
    write_text(os.path.join(a.docroot, "bad/.htaccess"),
               "OffloadMinSize 12Q\n")
    a.start()
    st, _, _ = request(a.url("/bad/big.bin"))
    assert st == 500
    assert "OffloadMinSize: '12Q'" in a.error_log_text()


# ---- host selection -------------------------------------------------------

PATHS = ["/h/%03d/file-%d.bin" % (i % 100, i) for i in range(1000)]


def hash_conf(hosts):
    return "OffloadEngine On\nOffloadMinSize 0\n" + "".join(
        "OffloadHost %s\n" % h for h in hosts)


def make_hash_tree(docroot):
    for p in PATHS:
        path = docroot + p
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
        os.chmod(path, 0o644)


def test_hash_selection(apache_factory):
    a = apache_factory(conf_extra=hash_conf([HOST_A, HOST_B, HOST_C]),
                       start=False)
    make_hash_tree(a.docroot)
    a.start()
    first = hosts_of(a, PATHS)
    counts = collections.Counter(first.values())
    assert set(counts) == {"http://" + h for h in (HOST_A, HOST_B, HOST_C)}
    for host, n in counts.items():
        assert 250 <= n <= 420, counts
    # the note names the same host as the Location
    es = a.access_entries()
    assert all(first[e["uri"]] == e["offload_host"] for e in es)

    # same path, same host, across a restart
    a.restart()
    assert hosts_of(a, PATHS) == first

    # remove host C: only C's paths move
    a.conf_extra = hash_conf([HOST_A, HOST_B])
    a.restart()
    second = hosts_of(a, PATHS)
    moved = [p for p in PATHS if second[p] != first[p]]
    assert moved and all(first[p] == "http://" + HOST_C for p in moved)
    assert len(moved) == counts["http://" + HOST_C]

    # weight=2 gets about twice the share
    a.conf_extra = hash_conf([HOST_A + " weight=2", HOST_B, HOST_C])
    a.restart()
    third = collections.Counter(hosts_of(a, PATHS).values())
    share_a = third["http://" + HOST_A] / 1000
    assert 0.42 <= share_a <= 0.58, third
    for h in (HOST_B, HOST_C):
        assert 0.18 <= third["http://" + h] / 1000 <= 0.32, third


def test_select_random_and_roundrobin(apache_factory, run_dir):
    docroot = os.path.join(run_dir, "base", "htdocs")
    conf = """
OffloadEngine On
<Directory {d}/rnd>
    OffloadSelect random
    OffloadHost {A}
    OffloadHost {B}
</Directory>
<Directory {d}/rr>
    OffloadSelect roundrobin
    OffloadHost {A} weight=2
    OffloadHost {B}
</Directory>
""".format(d=docroot, A=HOST_A, B=HOST_B)
    a = apache_factory(conf_extra=conf, start=False)
    harness.write_file(os.path.join(a.docroot, "rnd/f.bin"), BIG)
    harness.write_file(os.path.join(a.docroot, "rr/f.bin"), BIG)
    a.start()
    client = KeepAlive(a.base_url)
    rnd = collections.Counter(client.get("/rnd/f.bin")[1]
                              for _ in range(200))
    assert set(rnd) == {"http://%s/rnd/f.bin" % h for h in (HOST_A, HOST_B)}
    assert all(60 <= n <= 140 for n in rnd.values()), rnd
    # one connection stays in one process: an exact weighted rotation
    seq = [client.get("/rr/f.bin")[1].split("/rr/")[0] for _ in range(30)]
    client.close()
    a_host, b_host = "http://" + HOST_A, "http://" + HOST_B
    assert seq.count(a_host) == 20 and seq.count(b_host) == 10
    # weight=2: every three turns in a row hold B once, A twice
    for i in range(28):
        assert seq[i:i + 3].count(b_host) == 1, seq


# ---- bad configuration ----------------------------------------------------

BAD_CONFIGS = [
    ("OffloadMinSize 12Q", "OffloadMinSize: '12Q'"),
    ("OffloadMinSize -1", "OffloadMinSize: '-1'"),
    ("OffloadMinSize 99999999999999999999G", "OffloadMinSize: '9999"),
    ("OffloadRedirectStatus 200", "OffloadRedirectStatus: '200'"),
    ("OffloadRedirectStatus 301", "OffloadRedirectStatus: '301'"),
    ('OffloadHost ""', "OffloadHost takes 1-2 arguments"),
    ("OffloadHost :8081", "OffloadHost: ':8081'"),
    ("OffloadHost http://:8081/", "OffloadHost: 'http://:8081/'"),
    ("OffloadHost ftp://offload.invalid/", "OffloadHost: 'ftp://offload."),
    ("OffloadHost http://", "OffloadHost: 'http://'"),
    ("OffloadHost http://user@offload.invalid/",
     "OffloadHost: 'http://user@offload.invalid/'"),
    ("OffloadHost http://offload.invalid/?q",
     "OffloadHost: 'http://offload.invalid/?q'"),
    ("OffloadHost offload.invalid:99999", "OffloadHost: 'offload.invalid:99"),
    ("OffloadHost offload.invalid:", "OffloadHost: 'offload.invalid:'"),
    ("OffloadHost offload.invalid/path", "OffloadHost: 'offload.invalid/pa"),
    ("OffloadHost bad_host!name", "OffloadHost: 'bad_host!name'"),
    ("OffloadHost offload.invalid weight=0", "OffloadHost: 'weight=0'"),
    ("OffloadHost offload.invalid weight=1001",
     "OffloadHost: 'weight=1001'"),
    ("OffloadHost offload.invalid weight=x", "OffloadHost: 'weight=x'"),
    ("OffloadHost offload.invalid heavy=2", "OffloadHost: 'heavy=2'"),
    ("OffloadExcludeAddress 10.0.0.0/33",
     "OffloadExcludeAddress: '10.0.0.0/33'"),
    ("OffloadExcludeAddress 2001:db8::/129",
     "OffloadExcludeAddress: '2001:db8::/129'"),
    ("OffloadExcludeAddress 10.0.0.0/", "OffloadExcludeAddress: '10.0.0.0/'"),
    ("OffloadExcludeAddress not-an-address",
     "OffloadExcludeAddress: 'not-an-address'"),
    ("OffloadSelect fastest", "OffloadSelect: 'fastest'"),
    ("OffloadEngine maybe", "OffloadEngine"),
    # gone: LogLevel offload:debug logs the decisions
    ("OffloadDebug On", "Invalid command 'OffloadDebug'"),
]


def test_bad_configuration_fails_configtest(apache_factory):
    a = apache_factory(start=False)
    rc, out = a.configtest()
    assert rc == 0, out
    for line, message in BAD_CONFIGS:
        a.conf_extra = "<Directory %s>\n%s\n</Directory>\n" % (a.docroot,
                                                               line)
        rc, out = a.configtest()
        assert rc != 0, line
        assert message in out, (line, out)


def test_good_configuration_passes_configtest(apache_factory):
    a = apache_factory(conf_extra="""
OffloadEngine On
OffloadHost offload.invalid
OffloadHost offload.invalid:8081 weight=1000
OffloadHost http://[2001:db8::1]:8081/prefix/ WEIGHT=3
OffloadHost https://offload.invalid
OffloadMinSize 0
OffloadMinSize 10k
OffloadMinSize 2G
OffloadRedirectStatus 307
OffloadSelect RoundRobin
OffloadExcludeMimeType text/* application/x-*
OffloadExcludeUserAgent "*Mozilla/4.0 (compatible*"
OffloadExcludeAddress 10.0.0.0/8 2001:db8::/32 192.168.1.1 192.168.* ::1
""", start=False)
    rc, out = a.configtest()
    assert rc == 0, out


# ---- signature and logging ------------------------------------------------

def test_signature_warning_and_debug_lines(apache_factory, run_dir):
    docroot = os.path.join(run_dir, "base", "htdocs")
    a = apache_factory(conf_extra="""
OffloadEngine On
OffloadHost %s
<Directory %s/dbg>
    LogLevel offload:debug
</Directory>
""" % (HOST_A, docroot), start=False)
    harness.write_file(os.path.join(a.docroot, "quiet.bin"), BIG)
    harness.write_file(os.path.join(a.docroot, "dbg/big.bin"), BIG)
    harness.write_file(os.path.join(a.docroot, "dbg/small.bin"), 10)
    a.start()
    st, hdrs, _ = request(a.url("/quiet.bin"))
    assert "mod_offload/" in hdrs["server"]
    request(a.url("/dbg/big.bin"))
    request(a.url("/dbg/small.bin"))
    a.access_entries()
    log = a.error_log_text()
    # an unresolvable OffloadHost is a warning, and still used
    assert re.search(r"\[offload:warn\].*OffloadHost %s" % HOST_A, log)
    assert st == 302
    # a LogLevel offload:debug in a section logs the decisions in it only
    assert re.search(r"\[offload:debug\].*offload: /dbg/big.bin -> http://%s"
                     r"/dbg/big.bin" % HOST_A, log)
    assert re.search(r"\[offload:debug\].*offload: declined /dbg/small.bin: "
                     r"size", log)
    assert "/quiet.bin" not in log   # LogLevel warn outside that section

    # LogLevel offload:debug logs every decision
    a.log_level = "warn offload:debug"
    a.restart()
    request(a.url("/quiet.bin"))
    request(a.url("/quiet.bin?q"))
    a.access_entries()
    log = a.error_log_text()
    assert re.search(r"\[offload:debug\].*offload: /quiet.bin -> ", log)
    assert re.search(r"\[offload:debug\].*declined /quiet.bin: query", log)


def test_files_context(apache_factory):
    a = apache_factory(conf_extra="""
OffloadHost %s
<Files "*.iso">
    OffloadEngine On
</Files>
""" % HOST_A, start=False)
    digest = harness.write_file(os.path.join(a.docroot, "x.bin"), BIG)
    harness.write_file(os.path.join(a.docroot, "x.iso"), BIG)
    a.start()
    assert_offloaded(a, "/x.iso", "http://%s/x.iso" % HOST_A)
    assert_declined(a, "/x.bin", digest)
    assert entry_for(a, "/x.bin")["offload_declined"] == "engine-off"
