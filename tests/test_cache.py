"""The daemon's cache management and status page, against a real Apache:
CacheMaxSize with LRU eviction, the start-up scan, the cache tools,
ServeStaleOnError, ValidateInterval, StatusPath metrics."""

import os
import re
import subprocess
import time

import pytest

import harness
from harness import sha, wait_for
from test_daemon import body_gets, cache_objects, cached, fetch, log_statuses
from test_daemon_ops import receiving, slow_get

MB = 1024 * 1024
META = 4096
DAEMON = harness.DAEMON_BIN


def cache_size(daemon):
    """Bytes of the complete objects (one may be evicted as we look)."""
    total = 0
    for p in cache_objects(daemon):
        try:
            total += os.path.getsize(p)
        except FileNotFoundError:
            pass
    return total


def heads(base, uri):
    return [e for e in base.access_entries()
            if e["method"] == "HEAD" and e["uri"] == uri]


def tool(daemon, *args):
    p = subprocess.run([DAEMON, "--cache-dir", daemon.cache_dir,
                        "--base", daemon.base_url] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def test_eviction_keeps_the_cache_under_the_cap_lru_first(base,
                                                          daemon_factory):
    cap = 3 * MB + MB // 2
    digests = {n: harness.write_file(os.path.join(base.docroot, n + ".bin"), MB)
               for n in "abcdef"}
    daemon = daemon_factory(base.base_url, args=["--cache-max-size", "3584K"])
    # each published before the next is asked for: a copy's last use is
    # stamped when its fetcher publishes it, which a loaded machine may
    # delay past the next request
    for i, n in enumerate("abc"):
        assert fetch(daemon, "/%s.bin" % n)[0] == 200
        assert cached(daemon, i + 1)
        time.sleep(0.05)
    fetch(daemon, "/a.bin")            # a is used again: b is now the oldest
    time.sleep(0.05)
    status, _h, body = fetch(daemon, "/d.bin")
    assert status == 200 and sha(body) == digests["d"]
    # the fetcher evicts after it has published d
    assert wait_for(lambda: "/d.bin\t" in tool(daemon, "--cache-list")[1]
                    and cache_size(daemon) <= cap)
    status, _h, _b = fetch(daemon, "/a.bin")
    assert log_statuses(daemon).count("HIT") == 2   # a twice, from the cache
    # b was evicted: it is fetched again
    fetch(daemon, "/b.bin")
    assert len(body_gets(base, "/b.bin", at_least=2)) == 2
    assert cache_size(daemon) <= cap
    status, text = tool(daemon, "--cache-list")
    assert status == 0 and len(text.strip().splitlines()) == len(cache_objects(daemon))


def test_eviction_never_removes_an_object_being_read(base,
                                                     daemon_factory):
    big = harness.write_file(os.path.join(base.docroot, "big.bin"), 40 * MB)
    for n in "xyz":
        harness.write_file(os.path.join(base.docroot, n + ".bin"), 4 * MB)
    daemon = daemon_factory(base.base_url, args=["--cache-max-size", "45M",
                                                 "--max-dupe-downloads", "0"])
    assert fetch(daemon, "/big.bin")[0] == 200
    out = os.path.join(daemon.run_dir, "big.out")
    reader = slow_get(daemon.url("/big.bin"), out, rate="8M")
    assert receiving(reader)
    # big.bin is the least recently used, and the cap is exceeded twice
    for n in "xyz":
        assert fetch(daemon, "/%s.bin" % n)[0] == 200
    assert cache_size(daemon) >= 40 * MB     # big.bin is still there
    stdout, _ = reader.communicate(timeout=60)
    assert stdout == "200" and harness.sha256_file(out) == big
    # its process lets go of the copy before it logs the request
    assert wait_for(lambda: '"curl/7.88.1" HIT' in daemon.log_text())
    # once nobody reads it, the next fetch over the cap evicts it
    harness.write_file(os.path.join(base.docroot, "w.bin"), 4 * MB)
    fetch(daemon, "/w.bin")
    assert wait_for(lambda: cache_size(daemon) < 40 * MB)
    assert cache_size(daemon) <= 45 * MB


def test_a_file_larger_than_the_cap_is_streamed_uncached(base,
                                                         daemon_factory):
    digest = harness.write_file(os.path.join(base.docroot, "huge.bin"), 3 * MB)
    daemon = daemon_factory(base.base_url, args=["--cache-max-size", "2M"])
    for _ in range(2):
        status, _h, body = fetch(daemon, "/huge.bin")
        assert status == 200 and sha(body) == digest
    assert cache_objects(daemon) == []
    assert log_statuses(daemon) == ["BYPASS", "BYPASS"]


def test_startup_scan_removes_leftovers(base, daemon_factory):
    digests = {n: harness.write_file(os.path.join(base.docroot, n + ".bin"), MB)
               for n in "pq"}
    daemon = daemon_factory(base.base_url)
    fetch(daemon, "/p.bin")
    fetch(daemon, "/q.bin")
    # both published (a fetcher renames its copy after its client has the
    # last byte) before the daemon stops
    assert cached(daemon, 2)
    daemon.stop()
    keep, damaged = sorted(cache_objects(daemon))
    # leftovers: an interrupted fetch, a temporary file, a damaged
    # object, a file that is no cache file at all
    with open(damaged, "r+b") as f:
        f.truncate(META + 100)
    d = os.path.dirname(keep)
    leftovers = [keep + ".part", keep + ".tmp.4242", os.path.join(d, "junk")]
    with open(keep, "rb") as src, open(keep + ".part", "wb") as dst:
        dst.write(src.read(META + 1000))
    for p in leftovers[1:]:
        with open(p, "w") as f:
            f.write("x")
    daemon.start()
    scanned = r"1 objects, %d bytes; (\d+) leftovers removed" % (MB + META)
    assert wait_for(lambda: re.search(scanned, daemon.log_text()))
    m = re.search(scanned, daemon.log_text())
    # the three above and the damaged object (lock files stay)
    assert m and int(m.group(1)) == 4
    for p in leftovers + [damaged]:
        assert not os.path.exists(p), p
    assert os.path.exists(keep)
    for n in "pq":
        status, _h, body = fetch(daemon, "/%s.bin" % n)
        assert status == 200 and sha(body) == digests[n]


def test_upkeep_leaves_the_lru_order_alone(base, daemon_factory):
    """A copy's access time is its last use: the cache tools (and so the
    start-up scan and the scrubber, which read the same way) must not
    set it."""
    for n in ("u", "v"):
        harness.write_file(os.path.join(base.docroot, n + ".bin"), 300000)
    daemon = daemon_factory(base.base_url)
    for n in ("u", "v"):
        assert fetch(daemon, "/%s.bin" % n)[0] == 200
    assert cached(daemon, 2)
    before = {o: os.stat(o).st_atime_ns for o in cache_objects(daemon)}
    for args in (["--cache-list"], ["--cache-verify"]):
        assert tool(daemon, *args)[0] == 0
    assert {o: os.stat(o).st_atime_ns for o in cache_objects(daemon)} == before


def test_cache_tools_list_purge_verify(base, daemon_factory):
    for n in ("one", "two", "three"):
        harness.write_file(os.path.join(base.docroot, "t", n + ".bin"), 200000)
    daemon = daemon_factory(base.base_url)
    for n in ("one", "two", "three"):
        assert fetch(daemon, "/t/%s.bin" % n)[0] == 200
    assert cached(daemon, 3)
    status, text = tool(daemon, "--cache-list")
    assert status == 0
    lines = sorted(l.split("\t") for l in text.strip().splitlines())
    authority = base.base_url[len("http://"):]
    assert [l[0] for l in lines] == ["%s/t/%s.bin" % (authority, n)
                                     for n in ("one", "three", "two")]
    assert all(l[1] == "200000" and l[3] == "complete" for l in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", l[2]) for l in lines)
    # verify: all good, then one corrupted byte
    status, text = tool(daemon, "--cache-verify")
    assert status == 0 and "3 objects verified, 0 corrupt" in text
    victim = [p for p in cache_objects(daemon)
              if "/t/two.bin" in open(p, "rb").read(META).decode(errors="replace")][0]
    with open(victim, "r+b") as f:
        f.seek(META + 1234)
        b = f.read(1)
        f.seek(META + 1234)
        f.write(bytes([b[0] ^ 0xff]))
    status, text = tool(daemon, "--cache-verify")
    assert status == 1 and "corrupt, removed: %s/t/two.bin" % authority in text
    assert "3 objects verified, 1 corrupt" in text
    assert not os.path.exists(victim)
    # purge one by path, then all (while the daemon runs)
    status, text = tool(daemon, "--cache-purge", "/t/one.bin")
    assert status == 0 and "removed: %s/t/one.bin" % authority in text
    status, text = tool(daemon, "--cache-purge", "/t/one.bin")
    assert status == 1 and "not cached" in text
    assert cached(daemon, 1)
    status, text = tool(daemon, "--cache-purge-all")
    assert status == 0 and "1 objects removed" in text
    assert cache_objects(daemon) == []
    assert fetch(daemon, "/t/two.bin")[0] == 200


@pytest.mark.expect_error(r"HEAD /st/\S+ at the base: Connection refused")
def test_stale_copy_served_when_the_base_fails(base, daemon_factory):
    d = os.path.join(base.docroot, "st")
    digest = harness.write_file(os.path.join(d, "s.bin"), MB)
    daemon = daemon_factory(base.base_url)
    assert fetch(daemon, "/st/s.bin")[0] == 200
    assert cached(daemon, 1)
    # the base answers 500 (a broken .htaccess)
    with open(os.path.join(d, ".htaccess"), "w") as f:
        f.write("ThisIsNoDirective\n")
    status, headers, body = fetch(daemon, "/st/s.bin")
    assert status == 200 and sha(body) == digest
    assert headers["warning"] == '110 - "Response is Stale"'
    os.unlink(os.path.join(d, ".htaccess"))
    # the base is down
    base.stop()
    status, headers, body = fetch(daemon, "/st/s.bin", {"Range": "bytes=0-9"})
    assert status == 206 and len(body) == 10 and "warning" in headers
    assert fetch(daemon, "/st/other.bin")[0] == 502
    assert log_statuses(daemon).count("STALE") == 2
    # a 404 from the base is never overridden
    base.start()
    os.unlink(os.path.join(d, "s.bin"))
    assert fetch(daemon, "/st/s.bin")[0] == 404
    assert cache_objects(daemon) == []


@pytest.mark.expect_error(r"HEAD /n\.bin at the base: Connection refused")
def test_stale_off(base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "n.bin"), MB)
    daemon = daemon_factory(base.base_url, args=["--serve-stale-on-error", "Off"])
    assert fetch(daemon, "/n.bin")[0] == 200
    assert cached(daemon, 1)
    base.stop()
    assert fetch(daemon, "/n.bin")[0] == 502


def test_validate_interval(base, daemon_factory):
    path = os.path.join(base.docroot, "v.bin")
    harness.write_file(path, 100000, seed=1)
    daemon = daemon_factory(base.base_url, args=["--validate-interval", "2"])
    assert fetch(daemon, "/v.bin")[0] == 200
    assert cached(daemon, 1)
    asked = len(heads(base, "/v.bin"))          # the miss (and its fetch)
    for _ in range(2):
        assert fetch(daemon, "/v.bin")[0] == 200
    assert len(heads(base, "/v.bin")) == asked  # the hits did not ask
    # a change on the base is seen once the interval is over
    new = harness.write_file(path, 100001, seed=2)
    time.sleep(2.2)
    status, _h, body = fetch(daemon, "/v.bin")
    assert sha(body) == new and len(heads(base, "/v.bin")) > asked
    asked = len(heads(base, "/v.bin"))
    assert fetch(daemon, "/v.bin")[0] == 200
    assert len(heads(base, "/v.bin")) == asked


PROM_LINE = re.compile(
    r'^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*'
    r'|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? -?[0-9.e+]+)$')


def metrics(daemon):
    status, headers, body = fetch(daemon, "/offload-status")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in body.decode().splitlines():
        assert PROM_LINE.match(line), line
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_status_page_metrics(base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "m.bin"), 300000)
    daemon = daemon_factory(base.base_url)
    before = metrics(daemon)
    assert before["offload_up"] == 1
    fetch(daemon, "/m.bin")
    fetch(daemon, "/m.bin")
    fetch(daemon, "/m.bin", method="HEAD")
    fetch(daemon, "/nothing.bin")
    fetch(daemon, "/m.bin?q")
    time.sleep(0.2)
    after = metrics(daemon)
    d = {k: after[k] - before.get(k, 0) for k in after}
    assert d['offload_requests_total{method="GET"}'] == 5   # 4 + one status page
    assert d['offload_requests_total{method="HEAD"}'] == 1
    assert d['offload_cache_results_total{result="MISS"}'] == 1
    assert d['offload_cache_results_total{result="HIT"}'] == 2
    assert d['offload_responses_total{code="404"}'] == 1
    assert d['offload_responses_total{code="403"}'] == 1
    assert d["offload_base_bytes_total"] == 300000
    assert d["offload_client_bytes_total"] >= 600000
    assert after["offload_cache_objects"] == 1
    assert after["offload_cache_bytes"] == 300000 + META
    # not for every address
    other = daemon_factory(base.base_url, args=["--status-allow", "192.0.2.0/24"])
    assert fetch(other, "/offload-status")[0] == 403
