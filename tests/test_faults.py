"""Faults under a running offload_daemon: a base that drops or changes
files mid-transfer, a full or vanished cache, a base restarted, children
killed, idle and slow connections by the thousand, and a soak run.

The rule every test checks: a client either gets a complete response
whose bytes are exactly one version of the file (the one its ETag names),
or a connection that ends short; never a complete-looking wrong body.
SOAK_SECONDS (default 60) sets the length of the soak run.
"""

import hashlib
import http.client
import os
import random
import re
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from harness import sha, wait_for
from test_daemon import cache_objects
from test_hardening import (response, file_headers, pattern_bytes,
                            daemon_alive, ETAG)

KB = 1024
MB = 1024 * 1024
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


# ---------------------------------------------------------------- helpers

def opaque(etag):
    return etag[2:] if etag and etag.startswith("W/") else etag


def get(daemon, path, headers=None, timeout=60, abort_after=None,
        method="GET"):
    """One request. Returns (status, headers, body, complete): complete is
    False when the body ended before its Content-Length, or was abandoned
    after abort_after bytes."""
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        h = {k.lower(): v for k, v in r.getheaders()}
        if abort_after is not None:
            return r.status, h, r.read(abort_after), False
        try:
            body = r.read()
            complete = True
        except http.client.IncompleteRead as e:
            body, complete = e.partial, False
        return r.status, h, body, complete
    except (ConnectionError, socket.timeout, http.client.HTTPException):
        return None, {}, b"", False
    finally:
        c.close()


def descendants(pid):
    """Every process below pid (children, grandchildren ...)."""
    out, todo = [], [pid]
    while todo:
        kids = harness.children(todo.pop())
        out += kids
        todo += kids
    return out


def fetching(daemon):
    """The daemon's fetchers, wherever they are below it."""
    out = []
    for pid in descendants(daemon.proc.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().startswith(b"offload: fetching"):
                    out.append(pid)
        except OSError:
            pass
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def part_files(daemon):
    return [os.path.join(r, f) for r, _d, fs in os.walk(daemon.cache_dir)
            for f in fs if f.endswith(".part") or ".tmp." in f]


def cached_body(obj):
    with open(obj, "rb") as f:
        f.seek(4096)
        return f.read()


@pytest.fixture
def tmpfs(run_dir):
    """tmpfs(name, size) -> a tmpfs mounted at run_dir/name, unmounted
    after the test; skips when mounting is not permitted."""
    mounted = []

    def make(name, size):
        d = os.path.join(run_dir, name)
        os.makedirs(d, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size,
                            "tmpfs", d], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % p.stderr.strip())
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", d], capture_output=True)


def run_clients(n, target):
    results = [None] * n
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, target(i)))
               for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads):
    for t in threads:
        t.join()


# ---------------------------------------------------------------- the base drops mid-body

@pytest.mark.expect_error(r"fetch of \S+/f\.bin failed at byte \d+: the base closed "
                           r"the connection early")
def test_base_drops_mid_body(fake_base, daemon_factory):
    body = pattern_bytes(2 * MB, seed=3)
    state = {"drops": 2}

    def handler(method, path, headers):
        head = response(200, file_headers(body, ETAG))
        if method == "HEAD":
            return [head]
        if state["drops"] > 0:
            state["drops"] -= 1
            # a third of the body, slowly, then the connection drops
            return [head + body[:300 * KB], 0.5, body[300 * KB:700 * KB], 0.3,
                    "close"]
        return [head + body, "close"]

    fb = fake_base(handler)
    daemon = daemon_factory(fb.base_url, args=["--max-dupe-downloads", "0",
                                               "--timeout", "5"])
    threads, results = run_clients(4, lambda i: get(daemon, "/f.bin"))
    join(threads)
    for status, _h, got, complete in results:
        assert not (complete and status == 200 and sha(got) != sha(body))
        assert not complete, "a client got a complete response from a dropped fetch"
    # a failed fetcher removes its .part once its readers are cut off
    assert wait_for(lambda: part_files(daemon) == [])
    assert cache_objects(daemon) == []
    assert "closed the connection early" in daemon.log_text()
    # the next request fetches again (once more dropped), then succeeds
    get(daemon, "/f.bin")
    status, _h, got, complete = get(daemon, "/f.bin")
    assert status == 200 and complete and sha(got) == sha(body)
    # the fetcher publishes after its readers have the last byte
    assert wait_for(lambda: len(cache_objects(daemon)) == 1)
    assert [sha(cached_body(o)) for o in cache_objects(daemon)] == [sha(body)]
    assert daemon_alive(daemon)


# ---------------------------------------------------------------- the file changes during a fetch

@pytest.mark.parametrize("how", [
    "rename",
    "in-place"])
@pytest.mark.expect_error(r"fetch of \S+/slow/c\.bin failed at byte \d+: the file "
                           r"changed")
def test_file_changes_during_fetch(base, daemon_factory, how):
    daemon = daemon_factory(base.base_url, args=["--max-dupe-downloads", "0",
                                                 "--timeout", "10"])
    path = os.path.join(base.docroot, "slow", "c.bin")
    size = 3 * MB   # about 3 s at 1 MiB/s
    old = harness.write_file(path, size, seed=1)
    time.sleep(1.1)  # the new version gets another mtime, so another ETag
    new_tmp = os.path.join(base.docroot, "slow", ".new")
    new = harness.write_file(new_tmp, size, seed=2)
    threads, results = run_clients(6, lambda i: (time.sleep(0.3 * i),
                                                  get(daemon, "/slow/c.bin"))[1])
    time.sleep(1.0)
    if how == "rename":
        os.rename(new_tmp, path)
    else:
        with open(new_tmp, "rb") as src, open(path, "r+b") as dst:
            dst.write(src.read())
        os.unlink(new_tmp)
    join(threads)
    for status, headers, got, complete in results:
        if status == 200 and complete:
            assert sha(got) in (old, new), \
                "a complete 200 mixes two versions (ETag %s)" % headers.get("etag")
    time.sleep(1.1)
    status, _h, got, complete = get(daemon, "/slow/c.bin")
    assert status == 200 and complete and sha(got) == new
    for o in cache_objects(daemon):
        assert sha(cached_body(o)) == new
    assert daemon_alive(daemon)


# ---------------------------------------------------------------- the cache file system

@pytest.mark.expect_error(r"cannot cache \S+/big\.bin .*No space left on device")
def test_cache_file_system_full(base, daemon_factory, tmpfs):
    cache = tmpfs("cache", "8m")
    daemon = daemon_factory(base.base_url, cache_dir=cache,
                            args=["--max-dupe-downloads", "0", "--timeout", "5"])
    small = harness.write_file(os.path.join(base.docroot, "small.bin"), 3 * MB)
    big = harness.write_file(os.path.join(base.docroot, "big.bin"), 12 * MB)
    status, _h, got, complete = get(daemon, "/small.bin")
    assert status == 200 and complete and sha(got) == small
    for _i in range(3):
        status, _h, got, complete = get(daemon, "/big.bin")
        assert status == 200 and complete and sha(got) == big
    assert daemon_alive(daemon)
    assert "No space left on device" in daemon.log_text()
    # the copy that fitted is still served
    status, _h, got, complete = get(daemon, "/small.bin")
    assert status == 200 and complete and sha(got) == small


@pytest.mark.expect_error(r"cannot cache \S+/big\.bin .*No space left on device")
def test_cache_file_system_full_never_serves_wrong_bytes(base, daemon_factory,
                                                         tmpfs):
    """What holds today while the cache is full: short, never wrong; the
    daemon keeps running and says why."""
    cache = tmpfs("cache", "8m")
    daemon = daemon_factory(base.base_url, cache_dir=cache,
                            args=["--max-dupe-downloads", "0", "--timeout", "5"])
    big = harness.write_file(os.path.join(base.docroot, "big.bin"), 12 * MB)
    for _i in range(3):
        status, _h, got, complete = get(daemon, "/big.bin")
        assert not (complete and sha(got) != big)
    assert daemon_alive(daemon)
    assert re.search(r"\[error\].*/big\.bin", daemon.log_text())
    # a failed fetcher removes its .part once its readers are cut off
    assert wait_for(lambda: part_files(daemon) == [])
    assert cache_objects(daemon) == []
    small = harness.write_file(os.path.join(base.docroot, "small.bin"), 1 * MB)
    status, _h, got, complete = get(daemon, "/small.bin")
    assert status == 200 and complete and sha(got) == small


@pytest.mark.expect_error(r"cannot cache \S+/big\.bin .*No space left on device")
def test_cache_file_system_full_log_says_why(base, daemon_factory, tmpfs):
    cache = tmpfs("cache", "8m")
    daemon = daemon_factory(base.base_url, cache_dir=cache,
                            args=["--timeout", "5"])
    harness.write_file(os.path.join(base.docroot, "big.bin"), 12 * MB)
    get(daemon, "/big.bin")
    assert wait_for(lambda: "No space left on device" in daemon.log_text())


@pytest.mark.expect_error(r"cannot cache \S+ .*No such file or directory")
def test_cache_dir_removed_under_a_running_daemon(base, daemon_factory):
    daemon = daemon_factory(base.base_url, args=["--timeout", "5"])
    a = harness.write_file(os.path.join(base.docroot, "a.bin"), MB)
    assert sha(get(daemon, "/a.bin")[2]) == a
    # the fetcher publishes its copy after its client has the last byte:
    # the directory goes once that is done, not under the rename
    assert wait_for(lambda: not fetching(daemon))
    subprocess.run(["rm", "-rf", daemon.cache_dir], check=True)
    for _i in range(2):
        status, _h, got, complete = get(daemon, "/a.bin")
        assert status == 200 and complete and sha(got) == a
    assert daemon_alive(daemon)
    assert re.search(r"cache|No such file", daemon.log_text())
    # once it is back, caching resumes
    os.makedirs(daemon.cache_dir)
    status, _h, got, complete = get(daemon, "/a.bin")
    assert status == 200 and complete and sha(got) == a
    assert wait_for(lambda: len(cache_objects(daemon)) == 1)


@pytest.mark.expect_error(r"cannot cache \S+ .*Read-only file system")
def test_cache_dir_read_only_under_a_running_daemon(base, daemon_factory,
                                                    tmpfs):
    cache = tmpfs("cache", "32m")
    daemon = daemon_factory(base.base_url, cache_dir=cache,
                            args=["--timeout", "5"])
    a = harness.write_file(os.path.join(base.docroot, "a.bin"), MB)
    b = harness.write_file(os.path.join(base.docroot, "b.bin"), MB + 1)
    assert sha(get(daemon, "/a.bin")[2]) == a
    # the fetcher keeps the copy it wrote open until it has published it,
    # which may be after its client has read the last byte: a file open
    # for writing makes the remount fail ("mount point is busy")
    assert wait_for(lambda: not fetching(daemon))
    # root ignores permission bits: make the file system itself read-only
    subprocess.run(["mount", "-o", "remount,ro", cache], check=True)
    status, _h, got, complete = get(daemon, "/b.bin")
    assert status == 200 and complete and sha(got) == b
    status, _h, got, complete = get(daemon, "/a.bin")   # the old copy
    assert status == 200 and complete and sha(got) == a
    assert "Read-only file system" in daemon.log_text()
    assert daemon_alive(daemon)
    subprocess.run(["mount", "-o", "remount,rw", cache], check=True)


# ---------------------------------------------------------------- the base restarts

@pytest.mark.expect_error(r"HEAD /\S+ at the base: Connection refused")
def test_base_stopped_and_started_again(base, daemon_factory):
    daemon = daemon_factory(base.base_url, args=["--timeout", "5"])
    a = harness.write_file(os.path.join(base.docroot, "a.bin"), MB)
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
    c.request("GET", "/a.bin")
    r = c.getresponse()
    assert r.status == 200 and sha(r.read()) == a
    base.stop()
    # a kept-alive client and a new one: 502, or the last copy checked
    # (served as STALE), never anything else; no crash
    c.request("GET", "/a.bin")
    r = c.getresponse()
    got = r.read()
    assert r.status == 502 or (r.status == 200 and sha(got) == a)
    status, _h, got, _c = get(daemon, "/a.bin")
    assert status == 502 or (status == 200 and sha(got) == a)
    assert get(daemon, "/never-cached.bin")[0] == 502
    base.start()
    b = harness.write_file(os.path.join(base.docroot, "b.bin"), MB + 3)
    c.close()
    for p, digest in (("/a.bin", a), ("/b.bin", b)):
        status, _h, got, complete = get(daemon, p)
        assert status == 200 and complete and sha(got) == digest
    # the daemon's own kept-alive connection to the old base is gone too
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
    c.request("GET", "/a.bin")
    assert sha(c.getresponse().read()) == a
    base.restart()
    c.request("GET", "/a.bin")
    r = c.getresponse()
    assert r.status == 200 and sha(r.read()) == a
    c.close()
    assert daemon_alive(daemon)


# ---------------------------------------------------------------- SIGKILL at random points

# a process killed in the middle of a fetch may make that fetch fail
@pytest.mark.expect_error(r"fetch of \S+ failed at byte \d+: ")
def test_children_killed_at_random_points(base, daemon_factory):
    daemon = daemon_factory(base.base_url, args=["--max-dupe-downloads", "0",
                                                 "--timeout", "5"])
    digest = harness.write_file(os.path.join(base.docroot, "slow", "k.bin"),
                                2 * MB)
    rng = random.Random(6)
    for _round in range(5):
        threads, results = run_clients(3, lambda i: get(daemon, "/slow/k.bin",
                                                        timeout=20))
        time.sleep(rng.uniform(0.1, 1.5))
        victims = descendants(daemon.proc.pid)
        if victims:
            v = rng.choice(victims)
            try:
                os.kill(v, signal.SIGKILL)
            except ProcessLookupError:
                pass
        join(threads)
        for status, _h, got, complete in results:
            assert not (status == 200 and complete and sha(got) != digest)
        for o in cache_objects(daemon):
            assert sha(cached_body(o)) == digest, "a wrong copy was published"
    assert daemon_alive(daemon)
    # the next request is right (resumed or refetched) and is kept
    for _i in range(2):
        status, _h, got, complete = get(daemon, "/slow/k.bin", timeout=30)
        assert status == 200 and complete and sha(got) == digest
    assert wait_for(lambda: len(cache_objects(daemon)) == 1)
    assert [sha(cached_body(o)) for o in cache_objects(daemon)] == [digest]


# ---------------------------------------------------------------- idle and slow connections

def test_idle_and_slow_connections_do_not_block_a_new_client(base,
                                                             daemon_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        if hard < 1400:
            pytest.skip("ulimit -n is %d" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    daemon = daemon_factory(base.base_url, args=["--max-clients", "1500",
                                                 "--timeout", "20"])
    digest = harness.write_file(os.path.join(base.docroot, "n.bin"), 256 * KB)
    assert sha(get(daemon, "/n.bin")[2]) == digest
    idle, slow = [], []
    try:
        for _i in range(1000):
            idle.append(socket.create_connection((daemon.host, daemon.port)))
        for _i in range(200):
            s = socket.create_connection((daemon.host, daemon.port))
            s.setblocking(False)
            slow.append(s)
        stop = threading.Event()
        req = b"GET /n.bin HTTP/1.1\r\nHost: dl\r\nX-Slow: " + b"z" * 1000

        def dribble():
            i = 0
            while not stop.is_set() and i < len(req):
                for s in slow:
                    try:
                        s.send(req[i:i + 1])
                    except OSError:
                        pass
                i += 1
                stop.wait(0.05)

        t = threading.Thread(target=dribble)
        t.start()
        # let the parent fork for all of them
        assert wait_for(lambda: len(descendants(daemon.proc.pid)) >= 1150,
                        timeout=30), len(descendants(daemon.proc.pid))
        times = []
        for _i in range(5):
            start = time.monotonic()
            status, _h, got, complete = get(daemon, "/n.bin", timeout=30)
            times.append(time.monotonic() - start)
            assert status == 200 and complete and sha(got) == digest
        stop.set()
        t.join()
        assert max(times) < 2.0, times
    finally:
        for s in idle + slow:
            s.close()
    assert daemon_alive(daemon)
    # every process of theirs goes away
    assert wait_for(lambda: len(descendants(daemon.proc.pid)) == 0, timeout=30)


# ---------------------------------------------------------------- soak

class Versions:
    """The files on the base and every version written: opaque ETag ->
    (name, size, seed, sha256)."""

    def __init__(self, base, names):
        self.base = base
        self.names = names
        self.by_etag = {}
        self.lock = threading.Lock()
        self.content = {}
        self.seed = 0

    def write(self, name, rng):
        with self.lock:
            self.seed += 1
            seed = self.seed
        size = rng.choice([40 * KB, 200 * KB, 700 * KB, 1200 * KB]) + seed
        final = os.path.join(self.base.docroot, "s", name)
        tmp = final + ".tmp"
        digest = harness.write_file(tmp, size, seed=seed)
        os.rename(tmp, final)
        # the ETag Apache gives this version
        c = http.client.HTTPConnection("127.0.0.1", self.base.port, timeout=10)
        c.request("HEAD", "/s/" + name)
        etag = opaque(c.getresponse().getheader("ETag"))
        c.close()
        with self.lock:
            self.by_etag[etag] = (name, size, seed, digest, final)
        return etag

    def body(self, etag):
        """The bytes of a version, made again from its seed (write_file
        is deterministic for a path and seed)."""
        name, size, seed, digest, final = self.by_etag[etag]
        key = (name, seed)
        with self.lock:
            if key in self.content:
                return self.content[key]
        h = hashlib.sha256()
        blk = hashlib.sha256(b"mod_offload %d %s" % (seed, (final + ".tmp").encode())).digest()
        chunk = (blk * (65536 // len(blk) + 1))[:65536]
        out = bytearray()
        counter = 0
        while len(out) < size:
            piece = counter.to_bytes(8, "big") + chunk[8:]
            out += piece[:size - len(out)]
            counter += 1
        data = bytes(out)
        h.update(data)
        assert h.hexdigest() == digest
        with self.lock:
            self.content[key] = data
        return data


# files are rewritten under running fetches
@pytest.mark.expect_error(r"fetch of \S+/s/f\d+\.bin failed at byte \d+: "
                          r"the file changed")
def test_soak(base, daemon_factory):
    names = ["f%02d.bin" % i for i in range(20)]
    versions = Versions(base, names)
    rng = random.Random(2026)
    for n in names:
        versions.write(n, rng)
    daemon = daemon_factory(base.base_url, args=["--max-dupe-downloads", "0",
                                                 "--max-clients", "1000",
                                                 "--timeout", "10"])
    time.sleep(0.3)
    fds_before = fd_count(daemon.proc.pid)
    stop = threading.Event()
    errors, counts = [], {"complete": 0, "short": 0, "range": 0, "head": 0,
                          "aborted": 0, "other": 0, "bytes": 0}
    lock = threading.Lock()
    checks = []   # (etag, sha, kind, range) to verify when the map is full

    def mutator():
        r = random.Random(7)
        while not stop.wait(r.uniform(0.3, 0.8)):
            versions.write(r.choice(names[:10]), r)

    def client(i):
        r = random.Random(i)
        while not stop.is_set():
            name = r.choice(names)
            op = r.random()
            path = "/s/" + name
            if op < 0.45:
                status, h, got, complete = get(daemon, path, timeout=30)
                kind = "complete" if complete else "short"
                if status == 200 and complete:
                    with lock:
                        checks.append((opaque(h.get("etag")), sha(got),
                                       None, len(got)))
            elif op < 0.65:
                first = r.randrange(0, 30 * KB)
                last = first + r.randrange(0, 20 * KB)
                status, h, got, complete = get(
                    daemon, path, {"Range": "bytes=%d-%d" % (first, last)},
                    timeout=30)
                kind = "range"
                if status == 206 and complete:
                    m = re.match(r"bytes (\d+)-(\d+)/(\d+)",
                                 h.get("content-range", ""))
                    with lock:
                        checks.append((opaque(h.get("etag")), got,
                                       (int(m.group(1)), int(m.group(2)),
                                        int(m.group(3))), len(got)))
                elif status == 200 and complete:
                    with lock:
                        checks.append((opaque(h.get("etag")), sha(got),
                                       None, len(got)))
            elif op < 0.8:
                status, h, got, complete = get(daemon, path, method="HEAD")
                kind = "head"
                if status == 200:
                    with lock:
                        checks.append((opaque(h.get("etag")), None,
                                       "head", int(h["content-length"])))
            else:
                status, h, got, complete = get(daemon, path,
                                               abort_after=r.randrange(1, 64 * KB))
                kind = "aborted"
            with lock:
                counts[kind] += 1
                counts["bytes"] += len(got)
                if status not in (200, 206, 404):
                    counts["other"] += 1
                    key = "status %s" % status
                    counts[key] = counts.get(key, 0) + 1
                    if status is None and kind != "short":
                        errors.append((kind, path, status))

    peak = {"children": 0}

    def sampler():
        # direct children of the parent: what MaxClients counts (+ fetchers)
        while not stop.wait(0.1):
            pid = daemon.proc.pid
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    n = len(f.read().split())
            except OSError:
                continue
            peak["children"] = max(peak["children"], n)

    mt = threading.Thread(target=mutator)
    mt.start()
    st = threading.Thread(target=sampler)
    st.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    time.sleep(SOAK_SECONDS)
    stop.set()
    for t in threads:
        t.join()
    mt.join()
    st.join()

    wrong = []
    for etag, got, rng_, length in checks:
        assert etag in versions.by_etag, "an ETag the base never gave: %s" % etag
        name, size, seed, digest, _f = versions.by_etag[etag]
        if rng_ is None:
            if got != digest:
                wrong.append((etag, "full"))
        elif rng_ == "head":
            if length != size:
                wrong.append((etag, "head length"))
        else:
            first, last, total = rng_
            body = versions.body(etag)
            if total != size or got != body[first:last + 1]:
                wrong.append((etag, "range %d-%d" % (first, last)))
    cache_statuses = {}
    for line in daemon.log_text().splitlines():
        m = re.search(r'" \d{3} \d+ "[^"]*" "[^"]*" ([A-Z-]+) ', line)
        if m:
            cache_statuses[m.group(1)] = cache_statuses.get(m.group(1), 0) + 1
    print("soak %.0f s: %s, %d checked, %d versions, daemon: %s, "
          "peak children %d" % (SOAK_SECONDS, counts, len(checks),
                                len(versions.by_etag), cache_statuses,
                                peak["children"]))
    assert wrong == [], wrong[:5]
    assert counts["complete"] > 50 and counts["range"] > 10
    assert errors == [], errors[:5]
    assert daemon_alive(daemon)
    # no processes or descriptors left behind once the fetchers are done
    assert wait_for(lambda: descendants(daemon.proc.pid) == [], timeout=30), \
        descendants(daemon.proc.pid)
    assert fd_count(daemon.proc.pid) == fds_before
    # the cache holds only complete, correct copies of listed versions
    assert part_files(daemon) == []
    total = 0
    for o in cache_objects(daemon):
        with open(o, "rb") as f:
            meta = f.read(4096).split(b"\0", 1)[0].decode()
            data = f.read()
        etag = opaque(re.search(r"^etag (.*)$", meta, re.M).group(1))
        length = int(re.search(r"^length (\d+)$", meta, re.M).group(1))
        assert "state complete" in meta and len(data) == length
        assert sha(data) == versions.by_etag[etag][3]
        total += os.path.getsize(o)
    listed = sum(os.path.getsize(o) for o in cache_objects(daemon))
    used = sum(os.path.getsize(os.path.join(r, f))
               for r, _d, fs in os.walk(daemon.cache_dir) for f in fs
               if not f.endswith(".lock"))
    assert total == listed == used
