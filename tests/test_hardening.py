"""Protocol hardening of offload_daemon: hostile clients, an untrusted
base server, proxy abuse and path tricks.

Real daemon; the base is a real Apache where its behaviour is the
subject, and a small scripted base (harness.FakeBase, a thread in this
process on 127.0.0.1) where the test needs a base that misbehaves on
purpose.
"""

import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import sha
from test_daemon import fetch, cache_objects

KB = 1024
MB = 1024 * 1024
LAST_MODIFIED = "Sun, 22 Nov 2026 04:00:00 GMT"

pytestmark = pytest.mark.daemon(args=["--timeout", "5"])


# ---------------------------------------------------------------- helpers

def exchange(daemon, data, timeout=8):
    """Send data, read until the daemon closes. Returns (bytes, closed):
    closed is False when the connection was still open at the timeout."""
    with socket.create_connection((daemon.host, daemon.port),
                                  timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk


def status_line(response):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    return int(m.group(1)) if m else None


def head_of(response):
    return response.split(b"\r\n\r\n", 1)[0]


def pattern_bytes(size, seed=0):
    """size bytes, different at every 8-byte step, for the seed."""
    block = hashlib.sha256(b"fake %d" % seed).digest()
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(8, "big") + block[:24]
        i += 1
    return bytes(out[:size])


def response(status, headers, body=b"", reason="OK"):
    lines = ["HTTP/1.1 %d %s" % (status, reason)]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def file_headers(body, etag, extra=()):
    return [("ETag", etag), ("Last-Modified", LAST_MODIFIED),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/octet-stream")] + list(extra)


def daemon_alive(daemon):
    return daemon.proc is not None and daemon.proc.poll() is None


# ---------------------------------------------------------------- malformed requests

GOOD = b"GET /f.bin HTTP/1.1\r\nHost: dl\r\n"
CLOSE = b"Connection: close\r\n\r\n"

# Every malformed or refused request and the status it must get. Each is
# sent with a valid request pipelined after it, which must not be
# answered: one response, then the daemon closes the connection.
MALFORMED = [
    # smuggling and ambiguity
    ("cl-and-te", GOOD + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("te-and-cl", GOOD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("te-chunked", GOOD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-identity", GOOD + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-obfuscated", GOOD + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    ("two-cl-same", GOOD + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
    ("two-cl-differ", GOOD + b"Content-Length: 0\r\nContent-Length: 7\r\n\r\n", 400),
    ("cl-list", GOOD + b"Content-Length: 0, 0\r\n\r\n", 400),
    ("cl-signed", GOOD + b"Content-Length: +0\r\n\r\n", 400),
    ("body-on-get", GOOD + b"Content-Length: 5\r\n\r\nhello", 400),
    ("body-on-head", b"HEAD /f.bin HTTP/1.1\r\nHost: dl\r\nContent-Length: 3\r\n\r\n"
     b"abc", 400),
    ("two-ranges", GOOD + b"Range: bytes=0-1\r\nRange: bytes=5-9\r\n\r\n", 400),
    # field syntax
    ("obs-fold", GOOD + b"X-A: a\r\n folded\r\n\r\n", 400),
    ("obs-fold-tab", GOOD + b"X-A: a\r\n\tfolded\r\n\r\n", 400),
    ("bare-cr-value", GOOD + b"X-A: a\rX-B: b\r\n\r\n", 400),
    ("bare-lf-value", GOOD + b"X-A: a\nX-B: b\r\n\r\n", 400),
    ("bare-lf-lines", b"GET /f.bin HTTP/1.1\nHost: dl\n\n", 400),
    ("bare-lf-request-line", b"GET /f.bin HTTP/1.1\nHost: dl\r\n\r\n", 400),
    ("bare-cr-request-line", b"GET /f.bin HTTP/1.1\rHost: dl\r\n\r\n", 400),
    ("nul-in-value", GOOD + b"X-A: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", GOOD + b"X-A: a\x01b\r\n\r\n", 400),
    ("del-in-value", GOOD + b"X-A: a\x7fb\r\n\r\n", 400),
    ("esc-in-name", GOOD + b"X\x1bA: b\r\n\r\n", 400),
    ("space-before-colon", GOOD + b"Host : dl\r\n\r\n", 400),
    ("tab-before-colon", GOOD + b"Range\t: bytes=0-1\r\n\r\n", 400),
    ("space-in-name", GOOD + b"X A: b\r\n\r\n", 400),
    ("no-colon", GOOD + b"Just a line\r\n\r\n", 400),
    ("empty-name", GOOD + b": value\r\n\r\n", 400),
    # the request line
    ("nul-in-target", b"GET /f\x00.bin HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("space-in-target", b"GET /f .bin HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("ctl-in-target", b"GET /f\x01.bin HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("asterisk-target", b"GET * HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("lowercase-version", b"GET /f.bin http/1.1\r\nHost: dl\r\n\r\n", 400),
    ("extra-space", b"GET  /f.bin HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("tab-in-line", b"GET\t/f.bin HTTP/1.1\r\nHost: dl\r\n\r\n", 400),
    ("trailing-space", b"GET /f.bin HTTP/1.1 \r\nHost: dl\r\n\r\n", 400),
    ("http09", b"GET /f.bin\r\n\r\n", 400),
    ("http2-version", b"GET / HTTP/2\r\nHost: dl\r\n\r\n", 505),
    ("http20-version", b"GET / HTTP/2.0\r\nHost: dl\r\n\r\n", 505),
    ("http3-version", b"GET / HTTP/3.0\r\nHost: dl\r\n\r\n", 505),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # with a SETTINGS frame in the same segment: a NUL byte is refused
    # before the request line is judged
    ("h2-preface-settings", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
     b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", 400),
    # limits
    ("long-target", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: dl\r\n\r\n", 414),
    ("endless-line", b"GET /" + b"a" * 12000, 414),
    ("long-field", b"GET /f HTTP/1.1\r\nX-Long: " + b"b" * 20000 + b"\r\n\r\n", 431),
    ("big-fields", b"GET /f HTTP/1.1\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"c" * 900) for i in range(20)) + b"\r\n", 431),
    ("many-fields", b"GET /f HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
] + [
    # methods: only GET and HEAD are served; the other methods of RFC 9110
    # (and PATCH) get 405, a method the daemon does not know 501 (9.1:
    # methods are case-sensitive, so "get" is unknown)
    ("method-" + m, m.encode() + b" /f.bin HTTP/1.1\r\nHost: dl\r\n" + CLOSE, 405)
    for m in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH")
] + [
    ("method-" + m, m.encode() + b" /f.bin HTTP/1.1\r\nHost: dl\r\n" + CLOSE, 501)
    for m in ("PROPFIND", "FOO", "get")
]


@pytest.mark.parametrize("name,request_bytes,expected", MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests(pair, name, request_bytes, expected):
    base, daemon = pair
    harness.write_file(os.path.join(base.docroot, "f.bin"), 20 * KB)
    out, closed = exchange(daemon, request_bytes +
                           b"GET /f.bin HTTP/1.1\r\nHost: dl\r\n\r\n")
    assert status_line(out) == expected, out[:200]
    assert closed, "connection left open after a %d" % expected
    # one answer: one status line (the text of a 505 names HTTP/1.1 too)
    assert len(re.findall(rb"(?:^|\n)HTTP/1\.1 \d{3} ", out)) == 1
    head = head_of(out) + b"\r\n"
    assert b"\r\nConnection: close\r\n" in head
    # the whole body its Content-Length declares (none for a HEAD), then
    # the close: a short body would hang a client waiting for the rest
    length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head).group(1))
    body = out.split(b"\r\n\r\n", 1)[1]
    assert len(body) == (0 if request_bytes.startswith(b"HEAD ") else length)
    assert length > 0
    if expected == 405:
        assert b"\r\nAllow: GET, HEAD\r\n" in head
    # nothing of the request is echoed (TRACE), nothing asked of the base
    assert b"Host: dl" not in out and b"X-A" not in out
    assert [e for e in base.access_entries(wait=0.1)
            if e["bypass"] == "true"] == []
    assert daemon_alive(daemon)


def test_h2c_upgrade_is_served_as_http11(pair):
    base, daemon = pair
    digest = harness.write_file(os.path.join(base.docroot, "f.bin"), 20 * KB)
    # an h2c upgrade is served as HTTP/1.1, never switched
    out, _c = exchange(daemon, b"GET /f.bin HTTP/1.1\r\nHost: dl\r\n"
                       b"Connection: Upgrade, HTTP2-Settings, close\r\n"
                       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
                       b"\r\n")
    assert status_line(out) == 200
    assert sha(out.split(b"\r\n\r\n", 1)[1]) == digest
    assert daemon_alive(daemon)


def test_http09_is_refused_at_once(pair):
    base, daemon = pair
    harness.write_file(os.path.join(base.docroot, "f.bin"), 20 * KB)
    start = time.monotonic()
    out, closed = exchange(daemon, b"GET /f.bin\r\n", timeout=8)
    assert status_line(out) == 400, out[:100]
    assert closed and time.monotonic() - start < 2


# ---------------------------------------------------------------- the daemon is not a proxy

def test_never_connects_anywhere_but_the_base(pair):
    base, daemon = pair
    harness.write_file(os.path.join(base.docroot, "f.bin"), 20 * KB)
    canary = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    canary.bind(("127.0.0.1", 0))
    canary.listen(16)
    canary.settimeout(0.2)
    cp = canary.getsockname()[1]
    other = "127.0.0.1:%d" % cp
    reqs = [
        ("GET http://%s/f.bin HTTP/1.1\r\nHost: %s\r\n\r\n" % (other, other), 403),
        ("GET http://%s/ HTTP/1.1\r\nHost: dl\r\n\r\n" % other, 403),
        # userinfo, a malformed port: not a valid authority (RFC 9110 4.2.4)
        ("GET http://127.0.0.1:%d@%s/f.bin HTTP/1.1\r\nHost: dl\r\n\r\n"
         % (base.port, other), 400),
        ("GET http://%s:%d.%s/f.bin HTTP/1.1\r\nHost: dl\r\n\r\n"
         % ("127.0.0.1", base.port, other), 400),
        ("GET https://%s/f.bin HTTP/1.1\r\nHost: %s\r\n\r\n" % (other, other), 400),
        ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (other, other), 405),
        ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (other, other), 400),
        ("OPTIONS * HTTP/1.1\r\nHost: %s\r\n\r\n" % other, 405),
        ("GET //%s/f.bin HTTP/1.1\r\nHost: %s\r\n\r\n" % (other, other), 404),
        ("GET /f.bin HTTP/1.1\r\nHost: %s\r\nX-Forwarded-Host: %s\r\n"
         "Forwarded: host=%s\r\n\r\n" % (other, other, other), 200),
        ("GET /f.bin HTTP/1.0\r\nHost: %s\r\n\r\n" % other, 200),
        # the base itself, named in absolute form: allowed
        ("GET http://127.0.0.1:%d/f.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
         % (base.port, other), 200),
    ]
    for text, expected in reqs:
        out, _closed = exchange(daemon, text.replace("\r\n\r\n",
                                                     "\r\nConnection: close\r\n\r\n")
                                .encode())
        assert status_line(out) == expected, (text, out[:120])
    time.sleep(0.3)
    try:
        c, addr = canary.accept()
        c.close()
        pytest.fail("the daemon connected to %s from %s" % (other, addr))
    except socket.timeout:
        pass
    finally:
        canary.close()
    # what reached the base carried the base's own Host
    for e in base.access_entries():
        assert e["host"] == "127.0.0.1:%d" % base.port


# ---------------------------------------------------------------- path tricks, watched with strace

TRICKS = [
    "/../secret.txt", "/../../../../etc/passwd", "/%2e%2e/secret.txt",
    "/%2E%2e/%2e%2E/etc/passwd", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
    "/a/../../secret.txt", "/a/%2e%2e/%2e%2e/secret.txt", "/.%2e/secret.txt",
    "/%2e./secret.txt", "/./secret.txt", "/..\\secret.txt", "/%5c..%5csecret.txt",
    "/..%5csecret.txt", "/%252e%252e/secret.txt", "/%c0%ae%c0%ae/secret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt", "/secret.txt%00.bin", "/f.bin%00",
    "//..//secret.txt", "/f.bin/..", "/f.bin/../../secret.txt",
    "/f.bin%2f..%2f..%2fsecret.txt", "/%2fetc%2fpasswd", "//etc/passwd",
    "/etc/passwd", "/proc/self/environ", "/dev/zero", "/~root/.ssh/id_rsa",
    "/.%00./secret.txt", "/%uff0e%uff0e/secret.txt", "/%%32%65%%32%65/secret.txt",
    "http://127.0.0.1:BASE/../secret.txt", "http://127.0.0.1:BASE/%2e%2e/secret.txt",
    "/f.bin;/../../secret.txt", "/f.bin?/../../secret.txt", "/f.bin#/../secret.txt",
    "/%2E%2E%2Fsecret.txt", "/a%00/secret.txt",
    "/" + "a/" * 900 + "f.bin", "/" + "../" * 300 + "etc/passwd", "/" + "x/" * 3000,
]

FILE_CALLS = re.compile(
    r'\b(open|openat|openat2|creat|mkdir|mkdirat|rename|renameat2?|unlink|'
    r'unlinkat|link|linkat|symlink|symlinkat|truncate|chmod|fchmodat|chown|'
    r'fchownat|stat|lstat|newfstatat|statx|access|faccessat2?|readlink|'
    r'readlinkat|inotify_add_watch|execve|chdir)\((?:[^"]*?)"([^"]*)"')


def strace_attach(pid, out):
    """Trace pid and every process it forks from now on. Returns the
    strace process once it is attached, or None where strace cannot
    attach (ptrace not permitted)."""
    p = subprocess.Popen(["strace", "-f", "-qq", "-s", "4096", "-o", out,
                          "-e", "trace=%file,inotify_add_watch", "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # strace prints nothing with -qq; wait for the attach to show in /proc
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"TracerPid:\s+(\d+)", f.read())
        if m and int(m.group(1)) == p.pid:
            return p
        time.sleep(0.05)
    p.kill()
    p.wait()
    return None


@pytest.mark.parametrize("mode", ["cache", "docroot"])
# a path of 6000 octets is within the daemon's limits (RFC 9112 3), and
# the base, asked for it, says that no file can have such a name
@pytest.mark.expect_error(r"\(36\)File name too long: .* AH00127: Cannot map")
def test_path_tricks_never_open_outside(base, daemon_factory, mode):
    """Path traversal, every encoding of it: no answer carries a byte
    from outside what the base serves, and (watched with strace) no
    file outside the cache, or DocumentRoot, is ever opened."""
    # the secret lies next to the cache dir and the docroot
    secret = os.path.join(base.run_dir, "..", "secret.txt")
    with open(secret, "w") as f:
        f.write("top secret\n")
    body_sha = harness.write_file(os.path.join(base.docroot, "f.bin"), 20 * KB)
    harness.write_file(os.path.join(base.docroot, "a" + "/a" * 899, "f.bin"), 100)
    args = ["--timeout", "5"]
    if mode == "docroot":
        args += ["--docroot", base.docroot]
    daemon = daemon_factory(base.base_url, args=args)
    cache = os.path.realpath(daemon.cache_dir)
    docroot = os.path.realpath(base.docroot)
    trace = os.path.join(base.run_dir, "..", "strace-%s.txt" % mode)
    st = strace_attach(daemon.proc.pid, trace)
    try:
        for path in TRICKS:
            path = path.replace("BASE", str(base.port))
            for method in ("GET", "HEAD"):
                out, _c = exchange(daemon, ("%s %s HTTP/1.1\r\nHost: dl\r\n"
                                            "Connection: close\r\n\r\n"
                                            % (method, path)).encode("latin-1"))
                assert b"top secret" not in out, path
                assert b"root:" not in out, path
                st_ = status_line(out)
                assert st_ is not None, path
                if st_ == 200 and method == "GET":
                    # only ever the file the base itself names
                    assert sha(out.split(b"\r\n\r\n", 1)[1]) in (
                        body_sha, sha(b"")) or len(out.split(b"\r\n\r\n", 1)[1]) == 100
        # a normal request, to be sure the trace sees file activity at all
        assert fetch(daemon, "/f.bin")[0] == 200
    finally:
        if st is not None:
            st.send_signal(signal.SIGINT)
            st.wait(timeout=10)
    if st is None:
        pytest.skip("responses checked; strace cannot attach here (ptrace "
                    "not permitted), so file access was not")
    with open(trace, errors="replace") as f:
        text = f.read()
    seen = []
    for m in FILE_CALLS.finditer(text):
        seen.append((m.group(1), m.group(2)))
    assert any(p.startswith(cache) for _c, p in seen), "no cache activity traced"
    bad = []
    for call, p in seen:
        if p.startswith(cache + "/") or p == cache:
            continue
        if mode == "docroot" and (p.startswith(docroot + "/") or p == docroot):
            # inside DocumentRoot: the decoded path must not climb out
            if "/../" in p + "/" or "/./" in p + "/":
                bad.append((call, p))
            continue
        if mode == "docroot" and call == "readlink" and \
                docroot.startswith(p + "/"):
            continue    # realpath() resolving DocumentRoot's own ancestors
        if "secret" in p or "passwd" in p or "environ" in p or "id_rsa" in p \
                or ".." in p or "%" in p:
            bad.append((call, p))
            continue
        if p.startswith(os.path.realpath(harness.RUN_ROOT)):
            bad.append((call, p))
    assert bad == [], bad[:10]


# ---------------------------------------------------------------- an untrusted base

BODY = pattern_bytes(300 * KB, seed=1)
ETAG = '"v1-49b00"'


def misbehaving_base(kind):
    """A handler: HEAD and GET of /f.bin answered as kind says; every
    other path a 404."""

    def handler(method, path, headers):
        if path != "/f.bin":
            return [response(404, [("Content-Length", "0")], reason="Not Found")]
        good = response(200, file_headers(BODY, ETAG),
                        BODY if method == "GET" else b"")
        if kind == "cr-in-value":
            return [response(200, file_headers(BODY, '"v1\rX-Injected: yes"'))]
        if kind == "lf-in-value":
            return [response(200, file_headers(BODY, ETAG, [
                ("Content-Type", "text/plain\nX-Injected: yes")]))]
        if kind == "crlf-in-location":
            return [response(302, [("Location", "/x\r\nX-Injected: yes"),
                                   ("Content-Length", "0")], reason="Found")]
        if kind == "nul-in-value":
            return [response(200, file_headers(BODY, '"v1\x00X-Injected: yes"'))]
        if kind == "ctl-in-value":
            return [response(200, file_headers(BODY, '"v1\x1b[31m"'))]
        if kind == "huge-head":
            filler = [("X-Filler-%d" % i, "z" * 1000) for i in range(40)]
            return [response(200, file_headers(BODY, ETAG, filler))]
        if kind == "many-fields":
            filler = [("X-F%d" % i, "z") for i in range(300)]
            return [response(200, file_headers(BODY, ETAG, filler))]
        if kind == "long-etag":
            return [response(200, file_headers(BODY, '"' + "e" * 5000 + '"'))]
        if kind == "obs-fold":
            return [b"HTTP/1.1 200 OK\r\nETag: " + ETAG.encode() +
                    b"\r\n X-Injected: yes\r\nContent-Length: %d\r\n"
                    b"Last-Modified: " % len(BODY) + LAST_MODIFIED.encode() +
                    b"\r\n\r\n"]
        if kind == "two-lengths":
            return [response(200, file_headers(BODY, ETAG, [
                ("Content-Length", str(len(BODY) + 1))]))]
        if kind == "negative-length":
            return [response(200, [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED),
                                   ("Content-Length", "-1")])]
        if kind == "huge-length":
            return [response(200, [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED),
                                   ("Content-Length", "9" * 30)])]
        if kind == "bad-status-line":
            return [b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"]
        if kind == "http09-answer":
            return [BODY[:1000], "close"]
        if kind == "status-100":
            return [b"HTTP/1.1 100 Continue\r\n\r\n", good]
        if kind == "set-cookie-and-more":
            return [response(200, file_headers(BODY, ETAG, [
                ("Set-Cookie", "session=stolen"), ("X-Injected", "yes"),
                ("Access-Control-Allow-Origin", "*"),
                ("Content-Security-Policy", "none")]),
                BODY if method == "GET" else b"")]
        raise AssertionError(kind)

    return handler


UNTRUSTED = ["cr-in-value", "lf-in-value", "crlf-in-location", "nul-in-value",
             "ctl-in-value", "huge-head", "many-fields", "long-etag", "obs-fold",
             "two-lengths", "negative-length", "huge-length", "bad-status-line",
             "http09-answer", "status-100", "set-cookie-and-more"]


# the daemon says what was wrong with the base's answer
@pytest.mark.expect_error(r"HEAD /f\.bin at the base: ")
@pytest.mark.parametrize("kind", UNTRUSTED)
def test_base_response_is_not_trusted(fake_base, daemon_factory, kind):
    fb = fake_base(misbehaving_base(kind))
    daemon = daemon_factory(fb.base_url, args=["--timeout", "3"])
    for method in ("GET", "HEAD", "GET"):
        out, closed = exchange(daemon, ("%s /f.bin HTTP/1.1\r\nHost: dl\r\n"
                                        "Connection: close\r\n\r\n"
                                        % method).encode(), timeout=15)
        head = head_of(out)
        assert closed
        assert status_line(out) is not None, out[:200]
        # nothing the base wrote beyond the fields we use reaches the client
        for word in (b"X-Injected", b"X-Filler", b"Set-Cookie", b"stolen",
                     b"Access-Control", b"Content-Security", b"\x1b", b"\x00"):
            assert word not in head, (word, head[:300])
        for line in head.split(b"\r\n"):
            assert b"\r" not in line and b"\n" not in line
        if status_line(out) == 200 and method == "GET":
            assert sha(out.split(b"\r\n\r\n", 1)[1]) == sha(BODY)
    assert daemon_alive(daemon)
    # anything cached is the base's declared body, byte for byte
    for obj in cache_objects(daemon):
        with open(obj, "rb") as f:
            f.seek(4096)
            assert sha(f.read()) == sha(BODY)


def lying_base(kind, state):
    """HEAD says len(BODY); the GET body is shorter, longer, or announced
    with another length. state["honest"] makes it behave."""

    def handler(method, path, headers):
        if path != "/f.bin":
            return [response(404, [("Content-Length", "0")], reason="Not Found")]
        head = response(200, file_headers(BODY, ETAG))
        if method == "HEAD" or state.get("honest"):
            return [head + (BODY if method == "GET" else b"")]
        if kind == "get-shorter":
            return [head + BODY[:len(BODY) - 1000], "close"]
        if kind == "get-longer":
            return [head + BODY + pattern_bytes(50 * KB, seed=9), "close"]
        if kind == "get-other-length":
            other = BODY + b"x" * 100
            return [response(200, file_headers(other, ETAG)) + other, "close"]
        if kind == "get-no-length":
            return [response(200, [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED),
                                   ("Connection", "close")]) + BODY, "close"]
        if kind == "get-chunked":
            return [response(200, [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED),
                                   ("Transfer-Encoding", "chunked")]) +
                    b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", "close"]
        if kind == "get-other-etag":
            return [response(200, file_headers(BODY, '"v2"')) + BODY, "close"]
        if kind == "head-with-body":
            return [head + BODY]
        raise AssertionError(kind)

    return handler


@pytest.mark.expect_error(r"fetch of \S+/f\.bin failed at byte \d+: ")
@pytest.mark.parametrize("kind", ["get-shorter", "get-longer", "get-other-length",
                                  "get-no-length", "get-chunked", "get-other-etag"])
def test_lying_content_length(fake_base, daemon_factory, kind):
    state = {}
    fb = fake_base(lying_base(kind, state))
    daemon = daemon_factory(fb.base_url, args=["--timeout", "3"])
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=20)
    c.request("GET", "/f.bin")
    r = c.getresponse()
    try:
        body = r.read()
        complete = True
    except http.client.IncompleteRead as e:
        body, complete = e.partial, False
    c.close()
    if r.status == 200 and complete:
        # a complete 200 is only ever the declared body
        assert sha(body) == sha(BODY), kind
    assert harness.wait_for(lambda: not harness.fetchers(daemon.proc.pid))
    for obj in cache_objects(daemon):
        with open(obj, "rb") as f:
            f.seek(4096)
            assert sha(f.read()) == sha(BODY), "a wrong copy was published"
    if kind != "get-longer":
        assert cache_objects(daemon) == [], "a copy was published"
    # once the base behaves, the next request is right
    state["honest"] = True
    status, _h, body = fetch(daemon, "/f.bin")
    assert status == 200 and sha(body) == sha(BODY)
    assert daemon_alive(daemon)


@pytest.mark.expect_error(r"fetch of \S+/f\.bin failed at byte 0: the file "
                           r"changed since the HEAD")
def test_head_with_a_body(fake_base, daemon_factory):
    """A 200 to HEAD followed by body bytes (sent at once, and late)."""
    late = {"n": 0}

    def handler(method, path, headers):
        head = response(200, file_headers(BODY, ETAG))
        if method == "HEAD":
            late["n"] += 1
            if late["n"] % 2:
                return [head + b"garbage" * 100]
            # the body comes after a pause, looking like the next response
            return [head, 0.3, response(200, file_headers(b"evil", '"evil"'),
                                        b"evil")]
        return [head + BODY, "close"]

    fb = fake_base(handler)
    daemon = daemon_factory(fb.base_url, args=["--timeout", "3"])
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=20)
    for _i in range(6):
        c.request("GET", "/f.bin")
        r = c.getresponse()
        try:
            body = r.read()
        except http.client.IncompleteRead:
            c.close()
            c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=20)
            continue
        if r.status == 200:
            assert sha(body) == sha(BODY)
        assert b"evil" not in body
        time.sleep(0.4)
    c.close()
    assert daemon_alive(daemon)
    status, _h, body = fetch(daemon, "/f.bin")
    assert status == 200 and sha(body) == sha(BODY)


def test_protected_by_www_authenticate_only(fake_base, daemon_factory):
    """A 200 that also carries WWW-Authenticate is treated as protected."""

    def handler(method, path, headers):
        return [response(200, file_headers(BODY, ETAG, [
            ("WWW-Authenticate", 'Basic realm="x"')]),
            BODY if method == "GET" else b"")]

    fb = fake_base(handler)
    daemon = daemon_factory(fb.base_url)
    for method in ("GET", "HEAD"):
        status, headers, body = fetch(daemon, "/f.bin", method=method)
        assert status == 403 and "www-authenticate" not in headers
    assert fb.gets("/f.bin") == [] and cache_objects(daemon) == []


# ---------------------------------------------------------------- settings

def test_trusted_proxy_bits_overflow_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    p = subprocess.run([harness.DAEMON_BIN, "-t", "--base", "http://127.0.0.1:1",
                        "--cache-dir", str(cache), "--trusted-proxy",
                        "10.0.0.0/4294967304"], capture_output=True, text=True)
    assert p.returncode == 1 and "--trusted-proxy" in p.stderr


# ---------------------------------------------------------------- address-restricted areas

@pytest.mark.expect_error(r"AH01630: client denied .*/lan/x\.bin")
def test_address_restricted_area_is_not_served(apache_factory, daemon_factory):
    # the base lets only 127.0.0.1 into /lan/; the daemon reaches it from
    # 127.0.0.1, the client reaches the daemon from ::1
    # mod_offload on the base refuses the offload host what a stranger
    # could not get, whatever the offload host's own address passes
    base = apache_factory(conf_extra=("<Location /lan/>\n"
                                      "    Require ip 127.0.0.1\n"
                                      "</Location>\n"))
    harness.write_file(os.path.join(base.docroot, "lan", "x.bin"), 20 * KB)
    direct = http.client.HTTPConnection("::1", base.port, timeout=10)
    direct.request("GET", "/lan/x.bin")
    assert direct.getresponse().status == 403   # the client itself may not
    direct.close()
    daemon = daemon_factory(base.base_url, listen_host="::1")
    status, _h, _body = fetch(daemon, "/lan/x.bin")
    assert status == 403
