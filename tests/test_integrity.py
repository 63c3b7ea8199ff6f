"""Integrity end to end: the SHA-256 of every fill, checked against the
digest the base advertises before the copy is published, sent to clients
as Repr-Digest (RFC 9530) and Digest (RFC 3230), and checked again by
--cache-verify and the scrubber.

Each test drives the real daemon; the base is the real Apache where what
it sends is enough, and a scripted base where the test needs a base that
advertises a digest its bytes do not have.
"""

import base64
import hashlib
import http.client
import os
import signal
import subprocess

import pytest

import harness
from harness import wait_for
from test_hardening import response, file_headers, pattern_bytes, ETAG

KB = 1024
MB = 1024 * 1024


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def get(daemon, path, method="GET", headers=None, timeout=60):
    """(status, headers, body, complete) of one request."""
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        h = {k.lower(): v for k, v in r.getheaders()}
        try:
            body, complete = r.read(), True
        except http.client.IncompleteRead as e:
            body, complete = e.partial, False
        return r.status, h, body, complete
    finally:
        c.close()


def stored_meta(daemon):
    """{key: metadata lines} of every complete copy in the cache."""
    out = {}
    for root, _d, files in os.walk(daemon.cache_dir):
        for f in files:
            if "." in f:
                continue
            with open(os.path.join(root, f), "rb") as fh:
                block = fh.read(4096).split(b"\0", 1)[0].decode()
            fields = dict(line.split(" ", 1) for line in block.splitlines()[1:]
                          if " " in line)
            out[fields["key"]] = fields
    return out


def metric(daemon, name):
    status, _h, body, _c = get(daemon, "/offload-status")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("%s not in the status page" % name)


def digest_base(body, state):
    """A scripted base serving body as /f.bin, advertising state["digest"]
    (a base64 SHA-256, or None) in Repr-Digest and Digest."""

    def handler(method, path, headers):
        if path != "/f.bin":
            return [response(404, [("Content-Length", "0")], reason="Not Found")]
        extra = []
        if state["digest"]:
            extra = [("Repr-Digest", "sha-256=:%s:" % state["digest"]),
                     ("Digest", "SHA-256=%s" % state["digest"])]
        head = response(200, file_headers(body, ETAG, extra))
        return [head] if method == "HEAD" else [head + body, "close"]

    return handler


def test_fill_digest_sent_to_clients_and_stored(base, daemon_factory):
    path = os.path.join(base.docroot, "d.bin")
    harness.write_file(path, 3 * MB)
    with open(path, "rb") as f:
        want = b64sha(f.read())
    daemon = daemon_factory(base.base_url)
    status, h, got, complete = get(daemon, "/d.bin")
    assert status == 200 and complete and b64sha(got) == want
    # a plain Apache advertises no digest: none while the copy fills
    assert "repr-digest" not in h and "digest" not in h
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    (meta,) = stored_meta(daemon).values()
    assert meta["sha256"] == want
    for method in ("GET", "HEAD"):
        status, h, got, _c = get(daemon, "/d.bin", method=method)
        assert status == 200
        assert h["repr-digest"] == "sha-256=:%s:" % want
        assert h["digest"] == "SHA-256=%s" % want
    # a range is not the whole representation: no digest on a 206
    status, h, got, _c = get(daemon, "/d.bin", headers={"Range": "bytes=0-9"})
    assert status == 206 and "digest" not in h


@pytest.mark.expect_error(r"fetch of .*/f\.bin failed at byte \d+: the "
                          r"body's SHA-256 \S+ is not the \S+ the base "
                          r"advertised")
def test_wrong_advertised_digest_is_never_published(fake_base, daemon_factory):
    body = pattern_bytes(2 * MB, seed=7)
    state = {"digest": b64sha(body + b"x")}
    fb = fake_base(digest_base(body, state))
    daemon = daemon_factory(fb.base_url, args=["--max-dupe-downloads", "0"])
    status, h, got, complete = get(daemon, "/f.bin")
    # the client saw the advertised digest, and was cut short before the end
    assert status == 200 and h["repr-digest"] == "sha-256=:%s:" % state["digest"]
    assert not complete and len(got) < len(body)
    assert wait_for(lambda: fetcher_below(daemon.proc.pid) is None)
    assert stored_meta(daemon) == {}
    log = daemon.log_text()
    assert ("SHA-256 %s is not the %s the base advertised"
            % (b64sha(body), state["digest"])) in log
    assert metric(daemon, "offload_digest_mismatches_total") == 1
    # the base mends its digest: the next request fetches and serves it all
    state["digest"] = b64sha(body)
    status, h, got, complete = get(daemon, "/f.bin")
    assert status == 200 and complete and got == body
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    status, h, got, complete = get(daemon, "/f.bin")
    assert complete and got == body and h["digest"] == "SHA-256=" + b64sha(body)
    assert metric(daemon, "offload_digest_mismatches_total") == 1


@pytest.mark.expect_error(r"fetch of .*/f\.bin failed at byte \d+: the "
                          r"body's SHA-256 \S+ is not the \S+ the base "
                          r"advertised")
def test_changed_digest_is_a_new_version(fake_base, daemon_factory):
    """Same validators, another advertised digest: not the stored copy."""
    body = pattern_bytes(256 * KB, seed=8)
    state = {"digest": None}
    fb = fake_base(digest_base(body, state))
    daemon = daemon_factory(fb.base_url)
    assert get(daemon, "/f.bin")[2] == body
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    assert len(fb.gets("/f.bin")) == 1
    state["digest"] = b64sha(body)          # the same bytes: still a hit
    assert get(daemon, "/f.bin")[2] == body
    assert len(fb.gets("/f.bin")) == 1
    state["digest"] = b64sha(b"other")      # another file: fetched again
    status, _h, got, complete = get(daemon, "/f.bin")
    assert not complete
    assert len(fb.gets("/f.bin")) == 2


@pytest.mark.expect_error(r"process \d+ died of signal 9")
def test_resumed_fill_digest_is_the_files(fake_base, daemon_factory):
    body = pattern_bytes(4 * MB, seed=9)
    state = {"slow": True}

    def handler(method, path, headers):
        head = file_headers(body, ETAG)
        if method == "HEAD":
            return [response(200, head)]
        rng = headers.get("range")
        if rng:
            first = int(rng.split("=")[1].rstrip("-"))
            part = body[first:]
            head = [h for h in head if h[0] != "Content-Length"] + [
                ("Content-Length", str(len(part))),
                ("Content-Range", "bytes %d-%d/%d" % (first, len(body) - 1,
                                                      len(body)))]
            return [response(206, head, part, reason="Partial Content"),
                    "close"]
        if state["slow"]:
            # a first half at once, then nothing until the fetcher dies
            return [response(200, head, body[:2 * MB]), 30.0, "close"]
        return [response(200, head, body), "close"]

    fb = fake_base(handler)
    daemon = daemon_factory(fb.base_url, args=["--max-dupe-downloads", "0"])
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
    c.request("GET", "/f.bin")
    r = c.getresponse()
    assert r.read(2 * MB) == body[:2 * MB]
    fetcher = fetcher_below(daemon.proc.pid)
    os.kill(fetcher, signal.SIGKILL)
    c.close()
    assert wait_for(lambda: fetcher_below(daemon.proc.pid) is None)
    state["slow"] = False
    status, _h, got, complete = get(daemon, "/f.bin")
    assert status == 200 and complete and got == body
    ranged = [r for r in fb.gets("/f.bin") if "range" in r[2]]
    assert ranged and ranged[-1][2]["range"] == "bytes=%d-" % (2 * MB)
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    (meta,) = stored_meta(daemon).values()
    assert meta["sha256"] == b64sha(body)


def fetcher_below(pid):
    """A fetcher among pid's descendants (a fetcher is the child of the
    connection child that started it until that one exits), or None."""
    todo = [pid]
    while todo:
        for kid in harness.children(todo.pop()):
            try:
                with open("/proc/%d/cmdline" % kid, "rb") as f:
                    if f.read().startswith(b"offload: fetching"):
                        return kid
            except OSError:
                continue
            todo.append(kid)
    return None


def flip_byte(daemon, offset):
    """Flip one bit of the only complete copy's body; returns its path."""
    for root, _d, files in os.walk(daemon.cache_dir):
        for f in files:
            if "." not in f:
                path = os.path.join(root, f)
    with open(path, "r+b") as fh:
        fh.seek(4096 + offset)
        b = fh.read(1)
        fh.seek(4096 + offset)
        fh.write(bytes([b[0] ^ 0x01]))
    return path


def test_cache_verify_finds_a_flipped_byte(base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "v.bin"), 1 * MB)
    daemon = daemon_factory(base.base_url)
    assert get(daemon, "/v.bin")[0] == 200
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    verify = [harness.DAEMON_BIN, "--cache-dir", daemon.cache_dir,
              "--cache-verify"]
    p = subprocess.run(verify, capture_output=True, text=True)
    assert p.returncode == 0 and "1 objects verified, 0 corrupt" in p.stdout
    path = flip_byte(daemon, 700 * KB)
    p = subprocess.run(verify, capture_output=True, text=True)
    assert p.returncode == 1 and "1 objects verified, 1 corrupt" in p.stdout
    assert not os.path.exists(path)


def aria2c(daemon, run_dir, name, path):
    """aria2c one connection; returns (exit status, its log)."""
    log = os.path.join(run_dir, "aria2c-%s.log" % name)
    p = subprocess.run(["aria2c", "-q", "--allow-overwrite=true",
                        "--auto-file-renaming=false", "-x1", "-l", log,
                        "--log-level=info", "-d", run_dir, "-o", name,
                        daemon.url(path)], capture_output=True, text=True,
                       timeout=120)
    with open(log) as f:
        return p.returncode, f.read()


def test_aria2c_checks_the_digest(base, daemon_factory, run_dir):
    src = os.path.join(base.docroot, "a.bin")
    harness.write_file(src, 2 * MB)
    daemon = daemon_factory(base.base_url)
    assert get(daemon, "/a.bin")[0] == 200
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    rc, log = aria2c(daemon, run_dir, "ok.bin", "/a.bin")
    assert rc == 0 and "Verification finished successfully" in log
    assert harness.sha256_file(os.path.join(run_dir, "ok.bin")) == \
        harness.sha256_file(src)
    # a copy gone bad on disk before anything checked it: the stored
    # digest goes out with the bad bytes, and aria2c refuses them
    flip_byte(daemon, 1 * MB)
    rc, log = aria2c(daemon, run_dir, "bad.bin", "/a.bin")
    assert rc != 0 and "Checksum error detected" in log


@pytest.mark.expect_error(r"scrub: .*/s2\.bin is corrupt \(SHA-256 \S+, "
                          r"stored \S+\), removed")
def test_scrubber_removes_a_flipped_copy(base, daemon_factory):
    for name in ("s1.bin", "s2.bin"):
        harness.write_file(os.path.join(base.docroot, name), 512 * KB)
    daemon = daemon_factory(base.base_url, args=["--scrub-rate", "64M"])
    for name in ("s1.bin", "s2.bin"):
        assert get(daemon, "/" + name)[0] == 200
    assert wait_for(lambda: len(stored_meta(daemon)) == 2)
    # a pass that saw both copies intact, then one goes bad on disk
    assert wait_for(lambda: scrubber(daemon)[1].endswith(
        "done: 2 copies, 0 removed"))
    for root, _d, files in os.walk(daemon.cache_dir):
        for f in files:
            if "." not in f and stored_meta_one(os.path.join(root, f)) \
                    .endswith("/s2.bin"):
                bad = os.path.join(root, f)
    with open(bad, "r+b") as fh:
        fh.seek(4096 + 100 * KB)
        b = fh.read(1)
        fh.seek(4096 + 100 * KB)
        fh.write(bytes([b[0] ^ 0x80]))
    assert wait_for(lambda: "/s2.bin is corrupt" in daemon.log_text(),
                    timeout=30)
    assert not os.path.exists(bad)
    assert [k.rsplit("/", 1)[1] for k in stored_meta(daemon)] == ["s1.bin"]
    assert metric(daemon, "offload_scrub_corrupt_total") == 1
    # the next request fetches it again, intact
    status, h, got, complete = get(daemon, "/s2.bin")
    assert status == 200 and complete
    with open(os.path.join(base.docroot, "s2.bin"), "rb") as f:
        assert got == f.read()
    # stopping the daemon stops its scrubber
    pid, _title = scrubber(daemon)
    daemon.stop()
    assert pid is not None and wait_for(lambda: gone(pid))


def scrubber(daemon):
    """(pid, process title) of the daemon's scrubber, or (None, "")."""
    for kid in harness.children(daemon.proc.pid):
        try:
            with open("/proc/%d/cmdline" % kid, "rb") as f:
                title = f.read().split(b"\0")[0].decode()
        except OSError:
            continue
        if title.startswith("offload: scrubbing"):
            return kid, title
    return None, ""


def gone(pid):
    """Has pid exited (gone, or a zombie not yet reaped)?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def stored_meta_one(path):
    """The key of the copy at path."""
    with open(path, "rb") as fh:
        block = fh.read(4096).split(b"\0", 1)[0].decode()
    return [line[4:] for line in block.splitlines() if line.startswith("key ")][0]


# ------------------------------------------- digests from the base's module

def sums_line(data, name, binary=False):
    """A line of sha256sum's output (-b: binary mode, "HEX *NAME")."""
    return "%s %s%s\n" % (hashlib.sha256(data).hexdigest(),
                          "*" if binary else " ", name)


def digest_site(apache_factory, files, sums_text):
    """A base with the module: files {name: bytes} under /pub/, with a
    SHA256SUMS holding sums_text (written after the files: not older)."""
    a = apache_factory(conf_extra="OffloadEngine On\nOffloadHost dl.invalid\n"
                       "OffloadMinSize 0\nOffloadDigestFile SHA256SUMS\n",
                       start=False)
    pub = os.path.join(a.docroot, "pub")
    os.makedirs(pub, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(pub, name), "wb") as f:
            f.write(data)
    with open(os.path.join(pub, "SHA256SUMS"), "w") as f:
        f.write(sums_text)
    a.start()
    return a, pub


def ask_base(a, method, path, bypass):
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    try:
        c.request(method, path, headers={"X-Mod-Offload-Bypass": "true"}
                  if bypass else {})
        r = c.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def test_module_gives_the_digest_file_s_digest(apache_factory):
    one, two = pattern_bytes(100 * KB, 1), pattern_bytes(50 * KB, 2)
    a, pub = digest_site(apache_factory, {"one.bin": one, "two.bin": two},
                         "# checksums\n" + sums_line(two, "two.bin", binary=True) +
                         sums_line(one, "./one.bin"))
    status, h = ask_base(a, "GET", "/pub/one.bin", bypass=False)
    assert status == 302 and h["location"].endswith("/pub/one.bin")
    assert h["repr-digest"] == "sha-256=:%s:" % b64sha(one)
    assert h["digest"] == "SHA-256=%s" % b64sha(one)
    for method in ("HEAD", "GET"):
        status, h = ask_base(a, method, "/pub/two.bin", bypass=True)
        assert status == 200 and h["repr-digest"] == "sha-256=:%s:" % b64sha(two)
    # a list older than the file says nothing about it
    os.utime(os.path.join(pub, "SHA256SUMS"), (1000000000, 1000000000))
    status, h = ask_base(a, "HEAD", "/pub/two.bin", bypass=True)
    assert status == 200 and "repr-digest" not in h and "digest" not in h


@pytest.mark.expect_error(r"fetch of .*/pub/w\.bin failed at byte \d+: the "
                          r"body's SHA-256 \S+ is not the \S+ the base "
                          r"advertised")
def test_a_wrong_digest_line_stops_the_fill(apache_factory, daemon_factory):
    data = pattern_bytes(3 * MB, 3)
    a, pub = digest_site(apache_factory, {"w.bin": data},
                         sums_line(data + b"!", "w.bin"))
    daemon = daemon_factory(a.base_url, args=["--max-dupe-downloads", "0"])
    status, h, got, complete = get(daemon, "/pub/w.bin")
    assert status == 200 and not complete and len(got) < len(data)
    assert wait_for(lambda: fetcher_below(daemon.proc.pid) is None)
    assert stored_meta(daemon) == {}
    assert "SHA-256 %s is not the" % b64sha(data) in daemon.log_text()
    # the list mended: the next request is served whole, and verified
    with open(os.path.join(pub, "SHA256SUMS"), "w") as f:
        f.write(sums_line(data, "w.bin"))
    status, h, got, complete = get(daemon, "/pub/w.bin")
    assert status == 200 and complete and got == data
    assert h["repr-digest"] == "sha-256=:%s:" % b64sha(data)
    assert wait_for(lambda: len(stored_meta(daemon)) == 1)
    (meta,) = stored_meta(daemon).values()
    assert meta["sha256"] == b64sha(data)
