"""HTTP/1.1 as RFC 9110 and RFC 9112 require it of offload_daemon.

Each rule is checked both ways (a request it must accept, one it must
refuse) against the real daemon, on a hit, on a miss while the copy is
still being fetched, and for HEAD; and the same request goes to the real
Apache that is the base. Where the two answer differently, the table
says which one the RFC sides with and why.
"""

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
import email.utils

import pytest

import harness
from test_daemon import cache_objects

KB = 1024
MB = 1024 * 1024


# ---------------------------------------------------------------- helpers

def parse_head(data):
    """(status, {lower name: [values]}, rest) of a response's head."""
    head, _sep, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    fields = {}
    for line in lines[1:]:
        k, _s, v = line.partition(":")
        fields.setdefault(k.strip().lower(), []).append(v.strip())
    return (int(m.group(1)) if m else None), fields, rest


def ask(host, port, data, head_only=False, timeout=20):
    """Send data on a fresh connection. Returns (status, fields, body,
    closed): the body as far as Content-Length says (all of it unless
    head_only), closed whether the server closed after it."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        status, fields, body = parse_head(buf)
        if head_only:
            return status, fields, body, None
        want = int(fields.get("content-length", ["0"])[0])
        if data.startswith(b"HEAD ") or status in (204, 304):
            want = 0
        closed = False
        s.settimeout(5)
        while len(body) < want or (len(body) == want and not closed):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            body += chunk
        return status, fields, body, closed


def request(method, target, fields=(), version="HTTP/1.1", host="dl"):
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    lines += list(fields)
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


@pytest.fixture
def base(apache_factory):
    """The base: a real Apache, with a throttled /slow/ location so that
    a miss stays in progress while the cases run."""
    return apache_factory(
        conf_extra=("<Location /slow/>\n"
                    "    SetOutputFilter RATE_LIMIT\n"
                    "    SetEnv rate-limit 4\n"
                    "</Location>\n"),
        offload=False)


@pytest.fixture
def pair(base, daemon_factory):
    """(base, daemon); the per-address cap is off (the cases ask for one
    URL many times at once); ServerName dl.example."""
    return base, daemon_factory(base.base_url, args=[
        "--max-dupe-downloads", "0", "--server-name", "dl.example"])


def old_file(path, size, seed=0):
    """A file whose validators are settled: modified long ago, so that
    Apache's ETag is strong."""
    digest = harness.write_file(path, size, seed=seed)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    return digest


# ---------------------------------------------------------------- preconditions, Range, Host, methods

# (name, method, fields, daemon's status, Apache's status). {e}: the
# file's ETag, {w}: it weakened, {lm}: its Last-Modified, {old}/{new}: a
# date before/after it. Apache's status is None where it agrees.
CASES = [
    # If-Match: strong comparison, "*", lists (RFC 9110 13.1.1)
    ("if-match", "GET", ["If-Match: {e}"], 200, None),
    ("if-match-other", "GET", ['If-Match: "nope"'], 412, None),
    ("if-match-star", "GET", ["If-Match: *"], 200, None),
    ("if-match-weak", "GET", ["If-Match: {w}"], 412, None),
    ("if-match-list", "GET", ['If-Match: "nope", {e}'], 200, None),
    ("if-match-lines", "GET", ['If-Match: "nope"', "If-Match: {e}"], 200, None),
    ("if-match-head", "HEAD", ['If-Match: "nope"'], 412, None),
    # If-Unmodified-Since (13.1.4); ignored with If-Match or a bad date
    ("ius-old", "GET", ["If-Unmodified-Since: {old}"], 412, None),
    ("ius-new", "GET", ["If-Unmodified-Since: {new}"], 200, None),
    ("ius-bad-date", "GET", ["If-Unmodified-Since: yesterday"], 200, None),
    # Apache evaluates If-Unmodified-Since next to a passing If-Match
    # (412); 13.1.4 says to ignore it then: the daemon's 200 is right
    ("ius-after-if-match", "GET", ["If-Match: {e}",
                                   "If-Unmodified-Since: {old}"], 200, 412),
    ("ius-head", "HEAD", ["If-Unmodified-Since: {old}"], 412, None),
    # 13.2.2: If-Match before If-None-Match, both before Range
    ("if-match-before-inm", "GET", ['If-Match: "nope"', "If-None-Match: {e}"],
     412, None),
    ("if-match-before-range", "GET", ['If-Match: "nope"', "Range: bytes=0-9"],
     412, None),
    ("ius-before-range", "GET", ["If-Unmodified-Since: {old}",
                                 "Range: bytes=0-9"], 412, None),
    ("inm-before-range", "GET", ["If-None-Match: {e}", "Range: bytes=0-9"],
     304, None),
    # If-None-Match: weak comparison, "*", lines and lists combined (5.3)
    ("inm", "GET", ["If-None-Match: {e}"], 304, None),
    ("inm-weak", "GET", ["If-None-Match: {w}"], 304, None),
    ("inm-star", "GET", ["If-None-Match: *"], 304, None),
    ("inm-list", "GET", ['If-None-Match: "a", {e}'], 304, None),
    ("inm-lines", "GET", ['If-None-Match: "a"', "If-None-Match: {e}"], 304,
     None),
    ("inm-other", "GET", ['If-None-Match: "a"'], 200, None),
    ("inm-head", "HEAD", ["If-None-Match: {e}"], 304, None),
    # If-Modified-Since (13.1.3): ignored with If-None-Match, ignored
    # when not one valid date
    ("ims-new", "GET", ["If-Modified-Since: {new}"], 304, None),
    ("ims-lm", "GET", ["If-Modified-Since: {lm}"], 304, None),
    ("ims-old", "GET", ["If-Modified-Since: {old}"], 200, None),
    ("ims-bad-date", "GET", ["If-Modified-Since: soon"], 200, None),
    # Apache takes one of two If-Modified-Since lines (304); 13.1.3 says
    # to ignore a value of more than one member: the daemon's 200
    ("ims-two-lines", "GET", ["If-Modified-Since: {new}",
                              "If-Modified-Since: {new}"], 200, 304),
    ("ims-with-inm", "GET", ['If-None-Match: "a"', "If-Modified-Since: {new}"],
     200, None),
    ("ims-head", "HEAD", ["If-Modified-Since: {new}"], 304, None),
    # Range is for GET only (14.2). Apache answers a HEAD with Range as
    # it would the GET (206); both are allowed, since a server may
    # ignore Range, and 14.2 says Range is to be ignored for other
    # methods than GET: the daemon's 200 follows it.
    ("range", "GET", ["Range: bytes=0-9"], 206, None),
    ("range-head", "HEAD", ["Range: bytes=0-9"], 200, 206),
    # fields that must not repeat. Apache ignores two Range lines (200,
    # which 14.2 allows); Range is not a list field, so a second line
    # makes the request invalid (5.3) and the daemon refuses it, as it
    # refuses every field that must not repeat: both are allowed.
    ("two-ranges", "GET", ["Range: bytes=0-1", "Range: bytes=5-9"], 400, 200),
    ("two-content-lengths", "GET", ["Content-Length: 0", "Content-Length: 0"],
     400, None),
    # Host (RFC 9112 3.2)
    ("host-ipv6", "GET", [], 200, None, "[::1]:80"),
    ("host-port", "GET", [], 200, None, "dl.example:8080"),
    ("host-none", "GET", [], 400, None, None),
    ("host-two", "GET", ["Host: dl"], 400, None),
    # an http URI with an empty host is invalid (RFC 9110 4.2.1)
    ("host-empty", "GET", [], 400, None, ""),
    ("host-space", "GET", [], 400, None, "a b"),
    ("host-at", "GET", [], 400, None, "user@dl"),
    ("host-slash", "GET", [], 400, None, "dl/x"),
    ("host-backslash", "GET", [], 400, None, "dl\\x"),
    ("host-open-bracket", "GET", [], 400, None, "[::1"),
    ("host-close-bracket", "GET", [], 400, None, "::1]"),
    ("host-two-ports", "GET", [], 400, None, "dl:80:80"),
    ("host-port-letters", "GET", [], 400, None, "dl:http"),
    ("host-http10-none", "GET", [], 200, None, None, "HTTP/1.0"),
    # methods (RFC 9110 9.1, 15.5.6, 15.6.2). Apache answers OPTIONS
    # itself (200 with Allow) and a POST to a static file as a GET
    # (200); the daemon serves GET and HEAD only and says so (405 with
    # Allow), which is right for it: a POST is not a download.
    ("post", "POST", [], 405, 200),
    ("put", "PUT", [], 405, None),
    ("delete", "DELETE", [], 405, None),
    ("patch", "PATCH", [], 405, None),
    ("options", "OPTIONS", [], 405, 200),
    ("unknown", "FOOBAR", [], 501, None),
    ("lowercase", "get", [], 501, None),
]


def case_request(case, path, v):
    name, method, fields, _d, _a = case[:5]
    host = case[5] if len(case) > 5 else "dl"
    version = case[6] if len(case) > 6 else "HTTP/1.1"
    return request(method, path, [f.format(**v) for f in fields], version,
                   host)


def validators(base, path):
    st, f, _b, _c = ask("127.0.0.1", base.port, request("HEAD", path))
    assert st == 200
    etag, lm = f["etag"][0], f["last-modified"][0]
    assert etag.startswith('"'), "the file's ETag should be strong by now"
    t = email.utils.parsedate_to_datetime(lm).timestamp()
    # "new" is still in the past: Apache ignores a date later than its
    # clock (RFC 2616 14.25 said so; RFC 9110 does not)
    return {"e": etag, "w": "W/" + etag, "lm": lm, "old": http_date(t - 86400),
            "new": http_date(t + 60)}


def check_cases(daemon, base, path, v, growing):
    """Every case against the daemon and Apache. growing: the daemon's
    copy is still being fetched (2xx bodies are then not waited for)."""
    wrong = []
    for case in CASES:
        name, method, _f, want_d, want_a = case[:5]
        data = case_request(case, path, v)
        long_body = growing and want_d in (200, 206) and method == "GET"
        st, f, body, closed = ask(daemon.host, daemon.port, data,
                                  head_only=long_body)
        if st != want_d:
            wrong.append("%s: daemon %s, expected %s" % (name, st, want_d))
        if not long_body and method != "HEAD" and st not in (304,):
            # the body is exactly as long as Content-Length says
            if len(body) != int(f.get("content-length", ["-1"])[0]) or \
                    not closed:
                wrong.append("%s: body %d bytes, Content-Length %s" % (
                    name, len(body), f.get("content-length")))
        if st == 405 and f.get("allow") != ["GET, HEAD"]:
            wrong.append("%s: Allow %s" % (name, f.get("allow")))
        ast, _af, _ab, _ac = ask("127.0.0.1", base.port, data, head_only=True)
        want = want_d if want_a is None else want_a
        if ast != want:
            wrong.append("%s: Apache %s, table says %s" % (name, ast, want))
    assert wrong == [], "\n".join(wrong)


# the same requests go to Apache too, which logs the unknown methods
@pytest.mark.expect_error(r"AH00135: Invalid method in request (FOOBAR|get) ")
def test_rules_on_a_hit(pair):
    base, daemon = pair
    digest = old_file(os.path.join(base.docroot, "f.bin"), 64 * KB)
    st, _f, body, _c = ask(daemon.host, daemon.port, request("GET", "/f.bin"))
    assert st == 200 and hashlib.sha256(body).hexdigest() == digest
    check_cases(daemon, base, "/f.bin", validators(base, "/f.bin"), False)
    # all of them were answered from the one copy
    assert len([e for e in base.access_entries() if e["method"] == "GET"
                and e["bypass"] == "true"]) == 1


# the same requests go to Apache too, which logs the unknown methods
@pytest.mark.expect_error(r"AH00135: Invalid method in request (FOOBAR|get) ")
def test_rules_on_a_miss_in_progress(pair):
    base, daemon = pair
    digest = old_file(os.path.join(base.docroot, "slow", "g.bin"), 64 * KB)
    v = validators(base, "/slow/g.bin")
    # a client that starts the fetch (4 KiB/s: some 16 seconds; the
    # cases take well under one)
    s = socket.create_connection((daemon.host, daemon.port), timeout=60)
    s.sendall(request("GET", "/slow/g.bin"))
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    try:
        check_cases(daemon, base, "/slow/g.bin", v, True)
        # still a miss: the copy is not complete yet
        assert cache_objects(daemon) == []
    finally:
        s.close()
    # the fetch goes on without its client: let it finish
    assert harness.wait_for(lambda: cache_objects(daemon), timeout=120)
    st, _f, body, _c = ask(daemon.host, daemon.port,
                           request("GET", "/slow/g.bin"))
    assert st == 200 and hashlib.sha256(body).hexdigest() == digest


# ---------------------------------------------------------------- absolute form

def test_absolute_form(pair):
    base, daemon = pair
    old_file(os.path.join(base.docroot, "a.bin"), 20 * KB)
    cases = [
        # the base, as today
        ("http://127.0.0.1:%d/a.bin" % base.port, 200),
        # this host: the address it was reached at, with or without port
        ("http://127.0.0.1:%d/a.bin" % daemon.port, 200),
        ("http://127.0.0.1/a.bin", 200),
        ("http://DL.example/a.bin", 200),
        ("http://dl.example:%d/a.bin" % daemon.port, 200),
        # another port of this address, another host: not a proxy
        ("http://127.0.0.1:1/a.bin", 403),
        ("http://example.com/a.bin", 403),
        ("http://127.0.0.2:%d/a.bin" % daemon.port, 403),
        # the authority is checked as Host is
        ("http://user@127.0.0.1:%d/a.bin" % daemon.port, 400),
        ("http://[::1/a.bin", 400),
        ("http:///a.bin", 400),
    ]
    for target, want in cases:
        # the Host line is ignored for the authority of the target
        st, f, body, closed = ask(daemon.host, daemon.port, request(
            "GET", target, host="example.com"))
        assert st == want, target
        assert len(body) == int(f["content-length"][0]) and closed
    assert {e["uri"] for e in base.access_entries()} == {"/a.bin"}


def test_dot_segments_are_removed(pair):
    """RFC 3986 5.2.4 (RFC 9110 4.2.3): "/./" is the same path. apt asks
    for "/repo/./pkg.deb" in a flat repository ("deb URL ./"), and Apache
    serves it; ".." is refused, never resolved (the base is not asked)."""
    base, daemon = pair
    digest = old_file(os.path.join(base.docroot, "d", "f.bin"), 20 * KB)
    for path, want in (("/d/./f.bin", 200), ("/./d/%2e/f.bin", 200),
                       ("/d/x/../f.bin", 400)):
        st, _f, body, _c = ask(daemon.host, daemon.port, request("GET", path))
        assert st == want, path
        if want == 200:
            assert hashlib.sha256(body).hexdigest() == digest
    st, _f, _b, _c = ask("127.0.0.1", base.port, request("GET", "/d/./f.bin"))
    assert st == 200
    # one object for all the spellings, fetched once
    assert harness.wait_for(lambda: len(cache_objects(daemon)) == 1)
    assert {e["uri"] for e in base.access_entries()
            if e["bypass"] == "true"} == {"/d/f.bin"}


# Every error answer's body is exactly as long as its Content-Length,
# the answers to requests that did not parse included: checked for each
# request of the one table of malformed requests, MALFORMED in
# test_hardening.py (test_malformed_requests).


# ---------------------------------------------------------------- long request lines

def long_path(octets):
    """A path of exactly `octets` octets that names a file of a name
    short enough for the file system: directories of escaped letters
    (three octets for one byte on disk), then the file."""
    parts, left = [], octets - len("/f.bin")
    while left > 0:
        n = min(601, left)
        if n < 2:
            parts[-1] += "x" * n
            break
        plain = (n - 1) % 3
        parts.append("/" + "%61" * ((n - 1) // 3) + "b" * plain)
        left -= n
    return "".join(parts) + "/f.bin"


def test_request_line_of_8000_octets(pair):
    base, daemon = pair
    path = long_path(8000 - len("GET  HTTP/1.1"))
    on_disk = os.path.join(base.docroot, *[
        p.replace("%61", "a") for p in path.strip("/").split("/")])
    digest = old_file(on_disk, 30 * KB)
    line = "GET %s HTTP/1.1" % path
    assert len(line) == 8000
    for _ in range(2):
        st, _f, body, _c = ask(daemon.host, daemon.port,
                               request("GET", path))
        assert st == 200 and hashlib.sha256(body).hexdigest() == digest
    st, f, _b, _c = ask(daemon.host, daemon.port, request("HEAD", path))
    assert st == 200 and f["content-length"] == [str(30 * KB)]
    # too long to be cached, it is passed through, preconditions and all
    etag = f["etag"][0]
    for fields, want in ((['If-Match: "nope"'], 412),
                         (["If-None-Match: " + etag], 304),
                         (["Range: bytes=0-9"], 206)):
        st, _f, body, _c = ask(daemon.host, daemon.port,
                               request("GET", path, fields))
        assert st == want, fields
    assert cache_objects(daemon) == []
    # Apache takes it too (LimitRequestLine 8190)
    st, _f, body, _c = ask("127.0.0.1", base.port, request("GET", path))
    assert st == 200
    # and a line over OFFLOAD_MAX_REQUEST_LINE is still 414
    st, _f, _b, _c = ask(daemon.host, daemon.port,
                         request("GET", long_path(8300)))
    assert st == 414


# ---------------------------------------------------------------- empty files

def test_zero_byte_file(pair):
    base, daemon = pair
    path = os.path.join(base.docroot, "empty.bin")
    open(path, "wb").close()
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    # Apache leaves Content-Length out of its HEAD answer for it
    _st, f, _b, _c = ask("127.0.0.1", base.port, request("HEAD", "/empty.bin"))
    assert "content-length" not in f
    for _ in range(2):    # the miss, then the hit
        st, f, body, closed = ask(daemon.host, daemon.port,
                                  request("GET", "/empty.bin"))
        assert st == 200 and f["content-length"] == ["0"] and body == b""
        assert closed
    assert harness.wait_for(lambda: cache_objects(daemon))
    st, f, _b, _c = ask(daemon.host, daemon.port, request("HEAD", "/empty.bin"))
    assert st == 200 and f["content-length"] == ["0"]
    # no byte to range over: 416 (RFC 9110 14.4: none of the ranges
    # overlaps the representation). Apache ignores the Range and answers
    # 200, which 14.2 allows as well.
    st, f, _b, _c = ask(daemon.host, daemon.port, request(
        "GET", "/empty.bin", ["Range: bytes=0-9"]))
    assert st == 416 and f["content-range"] == ["bytes */0"]
    st, _f, _b, _c = ask("127.0.0.1", base.port, request(
        "GET", "/empty.bin", ["Range: bytes=0-9"]))
    assert st == 200


# ---------------------------------------------------------------- the base's current validators

def test_validators_are_the_bases_current_ones(pair):
    base, daemon = pair
    path = os.path.join(base.docroot, "new.bin")
    digest = harness.write_file(path, 200 * KB)
    # fetched within the second of its change: Apache's ETag is weak
    st, f, body, _c = ask(daemon.host, daemon.port, request("GET", "/new.bin"))
    assert st == 200 and hashlib.sha256(body).hexdigest() == digest
    if not f["etag"][0].startswith("W/"):
        pytest.skip("the machine took over a second: the ETag was strong")
    weak = f["etag"][0]
    assert harness.wait_for(lambda: len(cache_objects(daemon)) == 1)

    def strong():
        _s, bf, _b, _c = ask("127.0.0.1", base.port,
                             request("HEAD", "/new.bin"))
        return bf["etag"][0] if bf["etag"][0].startswith('"') else None
    etag = harness.wait_for(strong, timeout=5)
    assert etag == weak[2:]
    # the same copy, answered with the base's ETag as it is now
    st, f, body, _c = ask(daemon.host, daemon.port, request("GET", "/new.bin"))
    assert st == 200 and f["etag"] == [etag]
    assert hashlib.sha256(body).hexdigest() == digest
    st, f, _b, _c = ask(daemon.host, daemon.port, request("HEAD", "/new.bin"))
    assert f["etag"] == [etag]
    # so If-Range with the ETag a HEAD gave is a strong match: 206
    st, f, body, _c = ask(daemon.host, daemon.port, request(
        "GET", "/new.bin", ["Range: bytes=0-9", "If-Range: " + etag]))
    assert st == 206 and len(body) == 10
    # the stored metadata block has it too, and the copy was not fetched
    # again
    with open(cache_objects(daemon)[0], "rb") as fh:
        meta = fh.read(4096)
    assert b"\netag " + etag.encode() + b"\n" in meta
    assert len([e for e in base.access_entries() if e["method"] == "GET"
                and e["bypass"] == "true"]) == 1


# ---------------------------------------------------------------- the cap spares shared addresses

APT_HTTP = "/usr/lib/apt/methods/http"


def apt_fetch(url, filename):
    """Fetch url into filename with apt's own http method (what
    apt-get download runs). Returns its final message's first line:
    "201 URI Done" on success."""
    p = subprocess.Popen([APT_HTTP], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    p.stdin.write("600 URI Acquire\nURI: %s\nFilename: %s\n\n" % (url, filename))
    p.stdin.flush()
    last = ""
    try:
        for line in p.stdout:
            if line[:3] in ("201", "400", "401"):
                last = line.strip()
                break
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    return last


class HeldDownload:
    """A whole-file GET that stays in progress until finish(): it reads
    the head and a few bytes, then stops reading (the daemon's child is
    then blocked sending it, its download slot taken)."""

    def __init__(self, daemon, path):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # a small window: what the kernels hold for it stays far below
        # the file's size (NotSentLowat bounds the sender's side)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KB)
        self.s.settimeout(60)
        self.s.connect((daemon.host, daemon.port))
        self.s.sendall(request("GET", path))
        self.data = b""
        while b"\r\n\r\n" not in self.data:
            self.data += self.s.recv(65536)

    def finish(self):
        """Read the rest; returns (status, body)."""
        while True:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                break
            self.data += chunk
        self.s.close()
        st, _f, body = parse_head(self.data)
        return st, body


@pytest.mark.skipif(not all(os.path.exists(p) for p in
                            ("/usr/bin/aria2c", "/usr/bin/wget", APT_HTTP)),
                    reason="needs aria2c, wget and apt")
def test_cap_spares_shared_addresses(base, daemon_factory, run_dir):
    """MaxDupeDownloads 1 (the default), everyone on 127.0.0.1: one
    address, as behind NAT. While one whole-file download runs, others
    of the whole file and resumes are served; a download accelerator's
    segments are refused, and it finishes on its one connection."""
    size = 16 * MB
    digest = harness.write_file(os.path.join(base.docroot, "big.bin"), size)
    daemon = daemon_factory(base.base_url)
    url = daemon.url("/big.bin")
    st, _f, body, _c = ask(daemon.host, daemon.port, request("GET", "/big.bin"))
    assert st == 200     # cached now
    held = HeldDownload(daemon, "/big.bin")
    try:
        # a second whole-file client behind the address
        out = os.path.join(run_dir, "curl.out")
        p = subprocess.run(["curl", "-s", "-o", out, "-w", "%{http_code}", url],
                           capture_output=True, text=True, timeout=120)
        assert p.stdout == "200" and harness.sha256_file(out) == digest
        # resumes: wget -c and curl -C - (Range: bytes=N-)
        for tool in ("wget", "curl"):
            part = os.path.join(run_dir, tool + ".part")
            with open(os.path.join(base.docroot, "big.bin"), "rb") as src, \
                    open(part, "wb") as dst:
                dst.write(src.read(5 * MB))
            cmd = (["wget", "-q", "-c", "-O", part, url] if tool == "wget" else
                   ["curl", "-s", "-f", "-C", "-", "-o", part, url])
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, (tool, p.stdout, p.stderr)
            assert harness.sha256_file(part) == digest, tool
        # apt, twice at once (two machines behind the address)
        results = {}

        def apt(name):
            results[name] = apt_fetch(url, os.path.join(run_dir, name))
        threads = [threading.Thread(target=apt, args=(n,))
                   for n in ("apt1.out", "apt2.out")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for n in ("apt1.out", "apt2.out"):
            assert results.get(n, "").startswith("201"), (n, results)
            assert harness.sha256_file(os.path.join(run_dir, n)) == digest
        # aria2c -x8: its first GET is whole, its segments are refused;
        # it finishes on the one connection
        p = subprocess.run(["aria2c", "-x8", "-s8", "-k1M", "-q",
                            "--allow-overwrite=true", "-d", run_dir,
                            "-o", "aria2.out", url],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert harness.sha256_file(os.path.join(run_dir, "aria2.out")) == digest
        # the held download was running all along
        assert not [l for l in daemon.log_text().splitlines()
                    if '" 200 %d "-" "-" HIT' % size in l]
    finally:
        st, body = held.finish()
    assert st == 200 and hashlib.sha256(body).hexdigest() == digest
    # every refusal was one of aria2's segments
    harness.wait_for(lambda: not harness.connection_children(daemon.proc.pid))
    lines = [l for l in daemon.log_text().splitlines() if '"GET /big.bin' in l]
    refused = [l for l in lines if '" 429 ' in l]
    assert refused and all('"aria2/' in l for l in refused), refused


def apt_repo(docroot, size):
    """A flat apt repository under docroot/repo with one package of
    about size bytes (uncompressed, random). Returns the .deb's sha256."""
    work = os.path.join(docroot, "..", "pkg")
    os.makedirs(os.path.join(work, "DEBIAN"))
    harness.write_file(os.path.join(work, "usr", "share", "offtest", "blob"),
                       size)
    with open(os.path.join(work, "DEBIAN", "control"), "w") as f:
        f.write("Package: offtest\nVersion: 1.0\nArchitecture: all\n"
                "Maintainer: tests <tests@example.com>\n"
                "Description: a package for the tests\n")
    repo = os.path.join(docroot, "repo")
    os.makedirs(repo)
    deb = os.path.join(repo, "offtest_1.0_all.deb")
    subprocess.run(["dpkg-deb", "-Znone", "--build", work, deb], check=True,
                   capture_output=True)
    packages = subprocess.run(["dpkg-scanpackages", ".", "/dev/null"],
                              cwd=repo, check=True, capture_output=True).stdout
    with open(os.path.join(repo, "Packages"), "wb") as f:
        f.write(packages)
    with open(os.path.join(repo, "Release"), "w") as f:
        f.write("Origin: tests\nSuite: tests\nCodename: tests\nDate: %s\n"
                "SHA256:\n %s %d Packages\n"
                % (http_date(time.time()), hashlib.sha256(packages).hexdigest(),
                   len(packages)))
    for root, dirs, files in os.walk(repo):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
    return harness.sha256_file(deb)


@pytest.mark.skipif(not all(os.path.exists(p) for p in
                            ("/usr/bin/dpkg-scanpackages", "/usr/bin/apt-get")),
                    reason="needs dpkg-dev and apt")
def test_apt_get_download_behind_one_address(apache_factory, daemon_factory,
                                             run_dir):
    """apt-get download through the real module and daemon, two machines
    behind one address at once, while a third downloads the package:
    none is refused (apt does not honour Retry-After)."""
    base = apache_factory(start=False)
    digest = apt_repo(base.docroot, 8 * MB)
    daemon = daemon_factory(base.base_url)
    base.conf_extra = "OffloadEngine On\nOffloadHost 127.0.0.1:%d\n" % daemon.port
    base.start()
    sources = os.path.join(run_dir, "sources.list")
    with open(sources, "w") as f:
        # over [::1]: a client on 127.0.0.1 would count as the offload
        # host itself and not be redirected
        f.write("deb [trusted=yes] %s ./\n" % base.url6("/repo"))
    apt = ["apt-get", "-q", "-o", "Dir::Etc::SourceList=" + sources,
           "-o", "Dir::Etc::SourceParts=/nonexistent",
           "-o", "Dir::State::Lists=" + os.path.join(run_dir, "lists"),
           "-o", "Dir::Cache=" + os.path.join(run_dir, "apt-cache"),
           "-o", "Dir::State::status=/dev/null",
           "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
           "-o", "Acquire::Retries=0"]
    os.makedirs(os.path.join(run_dir, "lists", "partial"))
    p = subprocess.run(apt + ["update"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    path = "/repo/offtest_1.0_all.deb"
    st, _f, _b, _c = ask(daemon.host, daemon.port, request("GET", path))
    assert st == 200     # cached
    held = HeldDownload(daemon, path)
    try:
        procs = []
        for n in ("m1", "m2"):
            d = os.path.join(run_dir, n)
            os.makedirs(d)
            procs.append((d, subprocess.Popen(
                apt + ["download", "offtest"], cwd=d, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)))
        for d, proc in procs:
            out, _e = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            assert harness.sha256_file(
                os.path.join(d, "offtest_1.0_all.deb")) == digest
    finally:
        st, body = held.finish()
    assert st == 200 and hashlib.sha256(body).hexdigest() == digest
    # both came through the offload host, none refused
    harness.wait_for(lambda: not harness.connection_children(daemon.proc.pid))
    apt_lines = [l for l in daemon.log_text().splitlines() if "APT-HTTP" in l]
    assert len(apt_lines) == 2 and all('" 200 ' in l for l in apt_lines), \
        apt_lines
