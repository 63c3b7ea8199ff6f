"""offload_daemon against a real Apache as its base server.

Each test starts a private Apache (the base) and the built daemon, and
checks what a user would: bytes (sha256), statuses, headers, and what the
base logged (how many GETs of the body it served, with the bypass header).
"""

import http.client
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from harness import sha, wait_for

MB = 1024 * 1024


# ---------------------------------------------------------------- helpers

def fetch(daemon, path, headers=None, method="GET"):
    """One request on a fresh connection: (status, headers dict, body)."""
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=60)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def raw(daemon, data, timeout=10):
    """Send raw bytes, read until the daemon closes; return the bytes."""
    with socket.create_connection((daemon.host, daemon.port),
                                  timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out


def status_of(response):
    return int(response.split(b" ", 2)[1])


def body_gets(apache, uri, at_least=0):
    """The base's GETs of uri made for the daemon (bypass header set).
    Apache writes a request's line after it has sent the answer, so that
    the daemon may have all of a file before its GET is logged: with
    at_least, wait until that many are there (then count them all)."""
    def gets():
        return [e for e in apache.access_entries(wait=0)
                if e["method"] == "GET" and e["uri"] == uri
                and e["bypass"] == "true"]
    wait_for(lambda: len(gets()) >= at_least)
    return [e for e in apache.access_entries()
            if e["method"] == "GET" and e["uri"] == uri
            and e["bypass"] == "true"]


def cache_objects(daemon):
    """Complete objects in the cache: files without a suffix in the
    two-level fan-out (CACHEDIR/ab/cd/NAME)."""
    found = []
    for root, _dirs, files in os.walk(daemon.cache_dir):
        if os.path.relpath(root, daemon.cache_dir).count("/") == 1:
            found += [os.path.join(root, f) for f in files if "." not in f]
    return found


def log_statuses(daemon):
    """Cache statuses from the daemon's access log, sorted (a child writes
    its line after the client has its bytes, so the order may vary). Read
    once the connection children have finished: each logs before it exits."""
    harness.wait_for(lambda: not harness.connection_children(daemon.proc.pid))
    out = []
    for line in daemon.log_text().splitlines():
        if '" ' in line and line.count('"') >= 6:
            out.append(line.rsplit(" ", 2)[1])
    return sorted(out)


# /slow/ at 2 MiB/s. The tests here ask for one URL many times in a row
# from one address; on a loaded machine a finished download's process may
# not have freed its slot yet, so the per-client cap (tested in
# test_daemon_ops.py) is off.
pytestmark = [pytest.mark.base(slow_rate=2048),
              pytest.mark.daemon(args=["--max-dupe-downloads", "0"])]


def cached(daemon, n):
    """Wait until the cache holds n complete objects (the fetcher renames
    its copy a moment after the client has the last byte); True if so."""
    return harness.wait_for(lambda: len(cache_objects(daemon)) == n)


# ---------------------------------------------------------------- misses and hits

def test_miss_then_hit_same_bytes_one_base_get(pair):
    base, daemon = pair
    digest = harness.write_file(os.path.join(base.docroot, "f.bin"), 3 * MB + 17)
    for expected in ("MISS", "HIT"):
        status, headers, body = fetch(daemon, "/f.bin")
        assert status == 200
        assert sha(body) == digest
        assert int(headers["content-length"]) == 3 * MB + 17
        assert headers["accept-ranges"] == "bytes"
        assert headers["etag"] and headers["last-modified"]
        assert headers["content-type"] == "application/octet-stream"
        assert headers["server"].startswith("offload_daemon/")
        assert cached(daemon, 1)   # the fetcher publishes just after
    assert len(body_gets(base, "/f.bin", at_least=1)) == 1
    heads = [e for e in base.access_entries() if e["method"] == "HEAD"]
    # one per request, and the fetch's check before its last bytes
    assert len(heads) == 3
    assert all(e["bypass"] == "true" and e["via"] and
               e["forwarded_for"] == "127.0.0.1" for e in heads)
    assert log_statuses(daemon) == ["HIT", "MISS"]
    assert cached(daemon, 1)


def test_content_type_from_base(pair):
    base, daemon = pair
    with open(os.path.join(base.docroot, "page.html"), "w") as f:
        f.write("<p>hello</p>\n" * 1000)
    status, headers, body = fetch(daemon, "/page.html")
    assert status == 200 and headers["content-type"].startswith("text/html")


def test_concurrent_cold_clients_share_one_fetch(base, daemon_factory):
    # all clients come from 127.0.0.1: lift the per-client cap
    daemon = daemon_factory(base.base_url, args=["--max-dupe-downloads", "0"])
    # 2 MiB/s at the base: a 6 MiB file takes about 3 s, so all overlap
    digest = harness.write_file(os.path.join(base.docroot, "slow", "c.bin"), 6 * MB)
    results = [None] * 20

    def client(i):
        results[i] = fetch(daemon, "/slow/c.bin")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for status, _h, body in results:
        assert status == 200 and sha(body) == digest
    assert len(body_gets(base, "/slow/c.bin", at_least=1)) == 1


def test_changed_file_is_fetched_again(pair):
    base, daemon = pair
    path = os.path.join(base.docroot, "ch.bin")
    harness.write_file(path, MB, seed=1)
    fetch(daemon, "/ch.bin")
    # same size, new content and mtime: only the validators tell
    time.sleep(1.1)
    digest = harness.write_file(path, MB, seed=2)
    status, _h, body = fetch(daemon, "/ch.bin")
    assert status == 200 and sha(body) == digest
    # new size
    time.sleep(1.1)
    digest = harness.write_file(path, MB + 5, seed=3)
    status, _h, body = fetch(daemon, "/ch.bin")
    assert status == 200 and sha(body) == digest
    assert log_statuses(daemon) == ["MISS", "REFRESH", "REFRESH"]
    assert len(body_gets(base, "/ch.bin", at_least=3)) == 3
    assert cached(daemon, 1)


def test_deleted_file_is_404_and_leaves_the_cache(pair):
    base, daemon = pair
    path = os.path.join(base.docroot, "gone.bin")
    harness.write_file(path, MB)
    assert fetch(daemon, "/gone.bin")[0] == 200
    assert cached(daemon, 1)
    os.unlink(path)
    status, _h, body = fetch(daemon, "/gone.bin")
    assert status == 404 and b"404" in body
    assert cache_objects(daemon) == []


def test_protected_directory_is_never_served(pair):
    base, daemon = pair
    d = os.path.join(base.docroot, "private")
    harness.write_file(os.path.join(d, "secret.bin"), MB)
    subprocess.run(["htpasswd", "-cb", os.path.join(base.run_dir, "htpasswd"),
                    "user", "pw"], check=True, capture_output=True)
    with open(os.path.join(d, ".htaccess"), "w") as f:
        f.write("AuthType Basic\nAuthName private\n"
                "AuthUserFile %s/htpasswd\nRequire valid-user\n" % base.run_dir)
    status, _h, body = fetch(daemon, "/private/secret.bin")
    assert status == 403 and b"protected" in body
    # credentials do not help: the daemon never passes them on
    status, _h, _b = fetch(daemon, "/private/secret.bin",
                           {"Authorization": "Basic dXNlcjpwdw=="})
    assert status == 403
    assert cache_objects(daemon) == []
    assert body_gets(base, "/private/secret.bin") == []


def test_redirects_and_errors_of_the_base_are_relayed(pair):
    base, daemon = pair
    os.makedirs(os.path.join(base.docroot, "dir"))
    status, headers, _b = fetch(daemon, "/dir")
    assert status == 301 and headers["location"].endswith("/dir/")
    assert fetch(daemon, "/nothing-here")[0] == 404


@pytest.mark.expect_error(r"HEAD /x\.bin at the base: Connection refused")
def test_base_down_gives_502(pair):
    base, daemon = pair
    base.stop()
    status, _h, body = fetch(daemon, "/x.bin")
    assert status == 502 and b"base server" in body


# ---------------------------------------------------------------- a fetcher killed

def fetcher_pid(daemon):
    """The process that has a .part file open for writing, or None."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                if target.startswith(daemon.cache_dir) and target.endswith(".part"):
                    with open("/proc/%s/fdinfo/%s" % (pid, fd)) as f:
                        flags = int(f.read().split("flags:")[1].split()[0], 8)
                    if flags & 3 == os.O_RDWR:
                        return int(pid)
        except OSError:
            continue
    return None


def test_killed_fetcher_ends_clients_short_and_recovers(pair):
    base, daemon = pair
    size = 8 * MB
    digest = harness.write_file(os.path.join(base.docroot, "slow", "k.bin"), size)
    out = os.path.join(daemon.run_dir, "k.out")
    client = subprocess.Popen(["curl", "-s", "-o", out, daemon.url("/slow/k.bin")])
    deadline = time.monotonic() + 10
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = fetcher_pid(daemon)
        time.sleep(0.05)
    assert pid is not None, "no fetcher found"
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    rc = client.wait(timeout=30)
    # curl: 18 = transfer closed with bytes outstanding
    assert rc == 18, "client did not see a short body (curl exit %d)" % rc
    assert os.path.getsize(out) < size
    assert cache_objects(daemon) == []
    status, _h, body = fetch(daemon, "/slow/k.bin")
    assert status == 200 and sha(body) == digest
    # the second fetch resumed from what the first had written
    gets = body_gets(base, "/slow/k.bin")
    assert len(gets) == 2 and gets[1]["range"].startswith("bytes=")


# ---------------------------------------------------------------- ranges

def multipart_parts(content_type, body):
    """Split a multipart/byteranges body: [(content-range, bytes)]."""
    boundary = content_type.split("boundary=")[1].encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, data = chunk.split(b"\r\n\r\n", 1)
        cr = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-range")]
        parts.append((cr[0].split(b":", 1)[1].strip().decode(), data[:-2]))
    return parts


@pytest.mark.parametrize("phase", ["hit", "miss"])
def test_ranges(pair, phase):
    base, daemon = pair
    size = 4 * MB + 3
    path = os.path.join(base.docroot, "slow", "r.bin")
    harness.write_file(path, size)
    with open(path, "rb") as f:
        data = f.read()
    if phase == "hit":
        assert fetch(daemon, "/slow/r.bin")[0] == 200
    cases = [("bytes=0-99", 0, 99), ("bytes=1000000-1000999", 1000000, 1000999),
             ("bytes=-10", size - 10, size - 1),
             ("bytes=%d-" % (size - 5), size - 5, size - 1)]
    for spec, first, last in cases:
        status, headers, body = fetch(daemon, "/slow/r.bin", {"Range": spec})
        assert status == 206, spec
        assert headers["content-range"] == "bytes %d-%d/%d" % (first, last, size)
        assert body == data[first:last + 1]
    status, headers, body = fetch(daemon, "/slow/r.bin",
                                  {"Range": "bytes=0-9,2000000-2000009,-4"})
    assert status == 206
    assert headers["content-type"].startswith("multipart/byteranges")
    assert int(headers["content-length"]) == len(body)
    parts = multipart_parts(headers["content-type"], body)
    assert parts == [("bytes 0-9/%d" % size, data[0:10]),
                     ("bytes 2000000-2000009/%d" % size, data[2000000:2000010]),
                     ("bytes %d-%d/%d" % (size - 4, size - 1, size), data[-4:])]
    status, headers, _b = fetch(daemon, "/slow/r.bin", {"Range": "bytes=%d-" % size})
    assert status == 416 and headers["content-range"] == "bytes */%d" % size
    etag = headers["etag"]
    # If-Range: matching ETag (strong) or date gives the range, else all
    lm = headers["last-modified"]
    status, _h, body = fetch(daemon, "/slow/r.bin",
                             {"Range": "bytes=0-9", "If-Range": lm})
    assert status == 206 and body == data[:10]
    status, _h, body = fetch(daemon, "/slow/r.bin",
                             {"Range": "bytes=0-9", "If-Range": '"other"'})
    assert status == 200 and sha(body) == sha(data)
    if not etag.startswith("W/"):
        status, _h, body = fetch(daemon, "/slow/r.bin",
                                 {"Range": "bytes=0-9", "If-Range": etag})
        assert status == 206 and body == data[:10]
    assert len(body_gets(base, "/slow/r.bin", at_least=1)) == 1


def test_conditional_requests_and_head(pair):
    base, daemon = pair
    digest = harness.write_file(os.path.join(base.docroot, "c.bin"), MB)
    status, headers, body = fetch(daemon, "/c.bin", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(MB)
    assert body_gets(base, "/c.bin") == []
    status, headers, body = fetch(daemon, "/c.bin")
    assert sha(body) == digest
    status, h304, body = fetch(daemon, "/c.bin", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b"" and h304["etag"] == headers["etag"]
    status, _h, body = fetch(daemon, "/c.bin",
                             {"If-Modified-Since": headers["last-modified"]})
    assert status == 304
    status, _h, body = fetch(daemon, "/c.bin", {"If-None-Match": '"nope"'})
    assert status == 200 and sha(body) == digest


# ---------------------------------------------------------------- requests

def test_methods_queries_and_proxy_requests(pair):
    base, daemon = pair
    harness.write_file(os.path.join(base.docroot, "m.bin"), 64 * 1024)
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _b = fetch(daemon, "/m.bin", method=method)
        assert status == 405 and headers["allow"] == "GET, HEAD", method
    status, _h, _b = fetch(daemon, "/m.bin", method="BREW")
    assert status == 501
    r = raw(daemon, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert status_of(r) == 405
    status, _h, body = fetch(daemon, "/m.bin?x=1")
    assert status == 403 and b"static files only" in body
    r = raw(daemon, b"GET http://example.com/m.bin HTTP/1.1\r\nHost: example.com\r\n"
                    b"Connection: close\r\n\r\n")
    assert status_of(r) == 403 and b"not a proxy" in r
    r = raw(daemon, ("GET %s/m.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     % base.base_url).encode())
    assert status_of(r) == 200
    status, headers, body = fetch(daemon, "/robots.txt")
    assert status == 200 and body.startswith(b"User-agent: *\nDisallow: /")
    # nothing but the base was asked, and only for m.bin
    assert {e["uri"] for e in base.access_entries()} == {"/m.bin"}


def test_http10_and_keepalive(pair):
    base, daemon = pair
    digest = harness.write_file(os.path.join(base.docroot, "k.bin"), 100000)
    r = raw(daemon, b"GET /k.bin HTTP/1.0\r\n\r\n")
    head, body = r.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert sha(body) == digest
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
    for _ in range(3):
        c.request("GET", "/k.bin")
        r = c.getresponse()
        assert r.status == 200 and sha(r.read()) == digest
        assert r.getheader("Connection") == "keep-alive"
    c.close()


def test_slow_header_client_is_cut_off(base, daemon_factory):
    daemon = daemon_factory(base.base_url, args=["--timeout", "2"])
    harness.write_file(os.path.join(base.docroot, "s.bin"), 10000)
    s = socket.create_connection((daemon.host, daemon.port), timeout=10)
    start = time.monotonic()
    s.sendall(b"GET /s.bin HTTP/1.1\r\n")
    data = b""
    try:
        while True:
            s.sendall(b"X")
            time.sleep(0.2)
            if time.monotonic() - start > 6:
                break
    except OSError:
        pass
    s.settimeout(2)
    try:
        data = s.recv(4096)
    except OSError:
        pass
    s.close()
    assert time.monotonic() - start < 6
    assert data == b"" or status_of(data) == 408
    # others were served meanwhile and after
    assert fetch(daemon, "/s.bin")[0] == 200


def test_ipv6_listener(base, daemon_factory):
    daemon = daemon_factory(base.base_url, listen_host="::1")
    digest = harness.write_file(os.path.join(base.docroot, "v6.bin"), 50000)
    status, _h, body = fetch(daemon, "/v6.bin")
    assert status == 200 and sha(body) == digest


def test_bad_flags_are_refused_naming_the_flag(tmp_path):
    cases = [
        ([], "BaseURL (--base) is required"),
        (["--base", "ftp://x"], "--base ftp://x"),
        (["--base", "http://x", "--listen", "nope"], "--listen nope"),
        (["--base", "http://x", "--listen"], "--listen needs a value"),
        (["--base", "http://x", "--timeout", "0"], "--timeout 0"),
        (["--base", "http://x", "--frobnicate"], "unknown option --frobnicate"),
        (["--base", "http://x", "--cache-dir", "/proc/nope"],
         "CacheDir (--cache-dir) /proc/nope"),
    ]
    for args, message in cases:
        p = subprocess.run([harness.DAEMON_BIN, "-F"] + args,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 1 and message in p.stderr, (args, p.stderr)
    p = subprocess.run([harness.DAEMON_BIN, "--version"], capture_output=True,
                       text=True)
    assert p.returncode == 0 and p.stdout.startswith("offload_daemon ")


@pytest.mark.expect_error(r"cannot cache .*/nc\.bin")
def test_unwritable_cache_still_serves_and_logs_once(base, daemon_factory):
    daemon = daemon_factory(base.base_url, start=False)
    # every first-level fan-out name taken by a plain file: no object can
    # be created (root ignores permission bits, so a read-only mode
    # would not stop it)
    for i in range(256):
        open(os.path.join(daemon.cache_dir, "%02x" % i), "w").close()
    daemon.start()
    path = os.path.join(base.docroot, "nc.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(300000))
    with open(path, "rb") as f:
        data = f.read()
    for _ in range(3):
        status, _h, body = fetch(daemon, "/nc.bin")
        assert status == 200 and body == data
    status, headers, body = fetch(daemon, "/nc.bin", {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    assert headers["content-range"] == "bytes 10-19/300000"
    assert log_statuses(daemon) == ["BYPASS"] * 4
    assert daemon.log_text().count("cannot cache") == 1
    assert cache_objects(daemon) == []


@pytest.mark.expect_error(r"HEAD /cgi-bin/sleep at the base: Resource temporarily")
def test_slow_base_gives_504(base_factory, daemon_factory):
    base = base_factory(cgi={"sleep": "#!/bin/sh\nsleep 4\n"
                             "printf 'Content-Type: text/plain\\n\\nlate\\n'\n"})
    daemon = daemon_factory(base.base_url, args=["--timeout", "1"])
    start = time.monotonic()
    status, _h, body = fetch(daemon, "/cgi-bin/sleep")
    assert status == 504 and b"in time" in body
    assert time.monotonic() - start < 3.5


def test_base_address_overrides_resolution(base, daemon_factory):
    name = "files.example.invalid:%d" % base.port
    daemon = daemon_factory("http://" + name, args=["--base-address", "127.0.0.1"])
    digest = harness.write_file(os.path.join(base.docroot, "ba.bin"), 70000)
    status, _h, body = fetch(daemon, "/ba.bin")
    assert status == 200 and sha(body) == digest
    assert {e["host"] for e in base.access_entries()} == {name}
    # an absolute-form target naming the base by that name is accepted
    r = raw(daemon, ("GET http://%s/ba.bin HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n\r\n" % name).encode())
    assert status_of(r) == 200
