"""mod_offload's health checks, busy threshold, Link headers and status
page against the real Apache.

The offload hosts here are small Python HTTP servers on 127.0.0.1 that
answer GET /offload-status with 200 (what the module's check needs);
stopping one closes its port, so its checks fail at once. Clients use
[::1]: a client on 127.0.0.1 would count as an offload host.
"""

import http.client
import http.server
import os
import re
import signal
import threading
import time
import subprocess
import urllib.parse

import harness
from harness import wait_for

INTERVAL = 1  # OffloadHealthCheckInterval in these tests, seconds


# ---- helpers --------------------------------------------------------------

class _StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.checks += 1
        code = 200 if self.path == "/offload-status" else 404
        body = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FakeHost:
    """An offload host as the health check sees it, on a fixed port that
    survives stop() and start()."""

    def __init__(self):
        self.port = harness.free_port()
        self.server = None
        self.thread = None

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    @property
    def base(self):
        return "http://" + self.hostport

    def start(self):
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), _StatusHandler)
        self.server.checks = 0
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = None


def request(url, method="GET", headers=None):
    """One request on a fresh connection, no redirects followed. Returns
    (status, list of (lower-case name, value), body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, url[len(u.scheme) + 3 + len(u.netloc):],
                     headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return (resp.status, [(k.lower(), v) for k, v in resp.getheaders()],
                body)
    finally:
        conn.close()


def header(hdrs, name):
    vals = [v for k, v in hdrs if k == name]
    return vals[-1] if vals else None


def links(hdrs):
    """Every Link value, split at commas between entries."""
    out = []
    for k, v in hdrs:
        if k == "link":
            out += [x.strip() for x in re.split(r",\s*(?=<)", v)]
    return out


def status_auto(a):
    """The ?auto status page as (dict of Key: value, {host: {k: v}})."""
    st, _, body = request(a.url6("/offload-status?auto"))
    assert st == 200
    keys, hosts = {}, {}
    for line in body.decode().splitlines():
        k, _, v = line.partition(": ")
        if k == "Host":
            url, *pairs = v.split(" ")
            hosts[url] = dict(p.split("=", 1) for p in pairs)
        else:
            keys[k] = v
    return keys, hosts


def hosts_of(a, paths):
    """{path: offload host base, or None if served locally}."""
    out = {}
    for p in paths:
        st, hdrs, _ = request(a.url6(p))
        if st == 302:
            loc = header(hdrs, "location")
            assert loc.endswith(p)
            out[p] = loc[:-len(p)]
        else:
            assert st == 200, (p, st)
            out[p] = None
    return out


def status_conf(extra=""):
    return """
<Location /offload-status>
    SetHandler offload-status
</Location>
""" + extra


# ---- health checks ----------------------------------------------------------

def test_failed_host_moves_only_its_files_and_comes_back(apache_factory):
    ha, hb = FakeHost().start(), FakeHost().start()
    try:
        conf = status_conf("""
OffloadHealthCheck On
OffloadHealthCheckInterval {i}
OffloadEngine On
OffloadMinSize 0
OffloadLinkHeaders On
OffloadHost {a}
OffloadHost {b}
""".format(i=INTERVAL, a=ha.hostport, b=hb.hostport))
        a = apache_factory(conf, start=False, log_level="warn offload:notice")
        paths = ["/f%03d.bin" % i for i in range(40)]
        for p in paths:
            harness.write_file(a.docroot + p, 100)
        a.start()

        up = lambda: all(h.get("state") == "up"
                         for h in status_auto(a)[1].values())
        assert wait_for(up, 3 * INTERVAL)
        before = hosts_of(a, paths)
        on_a = [p for p in paths if before[p] == ha.base]
        on_b = [p for p in paths if before[p] == hb.base]
        assert on_a and on_b and len(on_a) + len(on_b) == len(paths)

        # A fails: within two intervals its files go to B, nothing else moves
        ha.stop()
        t0 = time.monotonic()
        moved = wait_for(lambda: all(v == hb.base for v in
                                     hosts_of(a, on_a).values()),
                         2 * INTERVAL + 0.5)
        assert moved, "A's files still go to A after two intervals"
        assert time.monotonic() - t0 <= 2 * INTERVAL + 0.5
        assert hosts_of(a, on_b) == {p: hb.base for p in on_b}
        _, hosts = status_auto(a)
        assert hosts[ha.base]["state"] == "down"
        assert hosts[hb.base]["state"] == "up"
        # a file served here names only the healthy host
        st, hdrs, _ = request(a.url6(on_a[0]), method="HEAD")
        assert st == 200
        assert links(hdrs) == ["<%s%s>; rel=duplicate; pri=1"
                               % (hb.base, on_a[0])]

        # A is back: its files return to it
        ha.start()
        back = wait_for(lambda: hosts_of(a, paths) == before,
                        2 * INTERVAL + 0.5)
        assert back, "A's files did not come back"

        # both fail: the base serves every file itself
        ha.stop()
        hb.stop()
        local = wait_for(lambda: set(hosts_of(a, paths[:5]).values())
                         == {None}, 2 * INTERVAL + 0.5)
        assert local
        st, hdrs, _ = request(a.url6(paths[0]))
        assert st == 200 and links(hdrs) == []
        entries = [e for e in a.access_entries() if e["uri"] == paths[0]]
        assert entries[-1]["offload_declined"] == "no-healthy-host"

        log = a.error_log_text()
        assert re.search(r"OffloadHost %s failed its health check"
                         % re.escape(ha.base), log)
        assert re.search(r"OffloadHost %s passed its health check: in use "
                         "again" % re.escape(ha.base), log)
        assert "[offload:notice]" in log
    finally:
        ha.stop()
        hb.stop()


def test_virtual_host_sees_the_server_wide_health_state(apache_factory):
    # the health checks are set in the main server config; a virtual host
    # skips the host they found down and its status page shows their
    # states and its own redirects
    ha, hb = FakeHost().start(), FakeHost()  # hb never answers
    try:
        a = apache_factory(start=False)
        a.conf_extra = """
OffloadHealthCheck On
OffloadHealthCheckInterval {i}
<VirtualHost [::1]:{port}>
    ServerName vhost.invalid
    OffloadEngine On
    OffloadMinSize 0
    OffloadHost {a}
    OffloadHost {b}
    <Location /offload-status>
        SetHandler offload-status
    </Location>
</VirtualHost>
""".format(i=INTERVAL, port=a.port, a=ha.hostport, b=hb.hostport)
        paths = ["/v%02d.bin" % i for i in range(12)]
        for p in paths:
            harness.write_file(a.docroot + p, 100)
        a.start()

        checked = lambda: {h: v.get("state") for h, v in
                           status_auto(a)[1].items()} == {ha.base: "up",
                                                          hb.base: "down"}
        assert wait_for(checked, 3 * INTERVAL)
        assert hosts_of(a, paths) == {p: ha.base for p in paths}
        keys, hosts = status_auto(a)
        assert keys["HealthCheck"] == "On"
        assert hosts[ha.base]["redirects"] == str(len(paths))
        assert hosts[hb.base]["redirects"] == "0"
    finally:
        ha.stop()


def test_health_check_settings_are_server_wide(apache_factory):
    a = apache_factory("""
<Directory /tmp>
    OffloadHealthCheck On
</Directory>
""", start=False)
    rc, out = a.configtest()
    assert rc != 0 and "OffloadHealthCheck" in out
    a.conf_extra = "OffloadHealthCheckInterval 0"
    rc, out = a.configtest()
    assert rc != 0
    assert "OffloadHealthCheckInterval: '0' is not allowed" in out
    a.conf_extra = "OffloadHealthCheckURI offload-status"
    rc, out = a.configtest()
    assert rc != 0 and "OffloadHealthCheckURI" in out
    a.conf_extra = "OffloadBusyThreshold -1"
    rc, out = a.configtest()
    assert rc != 0 and "OffloadBusyThreshold: '-1' is not allowed" in out


# ---- busy threshold -------------------------------------------------------

HOLD_CGI = """#!/bin/sh
# Holds its worker until the test creates the release file.
touch "{d}/started"
n=0
while [ ! -e "{d}/release" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
printf 'Content-Type: text/plain\\r\\n\\r\\ndone\\n'
"""


def test_busy_threshold(apache_factory):
    host = FakeHost()  # never started: health checks are off here
    a = apache_factory(status_conf("""
OffloadEngine On
OffloadHost {h}
OffloadMinSize 0
<Directory {{root}}/cgi>
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
<Directory {{root}}/two>
    OffloadBusyThreshold 2
</Directory>
<Directory {{root}}/one>
    OffloadBusyThreshold 1
</Directory>
""".format(h=host.hostport)), start=False)
    a.conf_extra = a.conf_extra.replace("{root}", a.docroot)
    flags = os.path.join(a.run_dir, "flags")
    os.makedirs(flags)
    os.chmod(flags, 0o777)
    cgi = os.path.join(a.docroot, "cgi", "hold.cgi")
    os.makedirs(os.path.dirname(cgi))
    with open(cgi, "w") as f:
        f.write(HOLD_CGI.format(d=flags))
    os.chmod(cgi, 0o755)
    for d in ("two", "one", "any"):
        harness.write_file(os.path.join(a.docroot, d, "f.bin"), 100)
    a.start()

    # idle: only the request itself is busy, and it does not count (the
    # start-up check's bare connection may keep a worker busy a moment)
    assert wait_for(lambda: hosts_of(a, ["/one/f.bin"]) ==
                    {"/one/f.bin": None}, 5, step=0.1)
    assert hosts_of(a, ["/any/f.bin"]) == {"/any/f.bin": host.base}

    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=request(a.url6("/cgi/hold.cgi"))))
    t.start()
    try:
        assert wait_for(lambda: os.path.exists(flags + "/started"), 10)
        # exactly the CGI's worker, once the worker of the status request
        # before has written its log line
        assert wait_for(lambda: int(status_auto(a)[0]["BusyWorkers"]) == 1,
                        10)
        # one other worker busy: below 2 served here, 1 reached: offloaded
        # (the worker of the request just before may still be writing its
        # log line, busy for a moment: ask again until it is done)
        assert wait_for(lambda: hosts_of(a, ["/two/f.bin"]) ==
                        {"/two/f.bin": None}, 5, step=0.1)
        assert hosts_of(a, ["/one/f.bin"]) == {"/one/f.bin": host.base}
    finally:
        open(flags + "/release", "w").close()
        t.join(30)
    assert result["r"][0] == 200 and result["r"][2] == b"done\n"
    declined = {e["uri"]: e["offload_declined"] for e in a.access_entries()
                if e["uri"] == "/two/f.bin"}
    assert declined["/two/f.bin"] == "not-busy"


# ---- Link headers ---------------------------------------------------------

def test_link_headers(apache_factory):
    hosts = ["offload-a.invalid:8081", "offload-b.invalid:8081",
             "https://offload-c.invalid/mirror"]
    a = apache_factory("""
OffloadEngine On
OffloadHost {0}
OffloadHost {1}
OffloadHost {2} weight=2
OffloadLinkHeaders On
OffloadExcludeUserAgent *bot*
<Directory {{root}}/nolinks>
    OffloadLinkHeaders Off
</Directory>
""".format(*hosts), start=False)
    a.conf_extra = a.conf_extra.replace("{root}", a.docroot)
    harness.write_file(a.docroot + "/big.bin", 8192)
    harness.write_file(a.docroot + "/nolinks/big.bin", 8192)
    harness.write_file(a.docroot + "/small.bin", 100)
    a.start()

    # the redirect goes to the first host of the Link order
    st, hdrs, _ = request(a.url6("/big.bin"))
    assert st == 302 and links(hdrs) == []
    first = header(hdrs, "location")

    st, hdrs, body = request(a.url6("/big.bin"), method="HEAD")
    assert st == 200 and body == b""
    got = links(hdrs)
    assert len(got) == 3
    urls = []
    for n, l in enumerate(got, 1):
        m = re.fullmatch(r"<([^>]+)>; rel=duplicate; pri=(\d+)", l)
        assert m, l
        assert int(m.group(2)) == n
        urls.append(m.group(1))
    assert urls[0] == first
    assert sorted(urls) == sorted([
        "http://offload-a.invalid:8081/big.bin",
        "http://offload-b.invalid:8081/big.bin",
        "https://offload-c.invalid/mirror/big.bin"])

    # a GET served here for an excluded client carries the same list
    st, hdrs, _ = request(a.url6("/big.bin"),
                          headers={"User-Agent": "somebot/1.0"})
    assert st == 200 and links(hdrs) == got

    # not offloadable, or Off: no Link
    st, hdrs, _ = request(a.url6("/small.bin"), method="HEAD")
    assert st == 200 and links(hdrs) == []
    st, hdrs, _ = request(a.url6("/nolinks/big.bin"), method="HEAD")
    assert st == 200 and links(hdrs) == []
    st, hdrs, _ = request(a.url6("/big.bin?x=1"))
    assert st == 200 and links(hdrs) == []


# ---- status page ------------------------------------------------------------

def test_status_pages_count(apache_factory):
    host = FakeHost()
    a = apache_factory(status_conf("""
OffloadEngine On
OffloadHost {h} weight=3
""".format(h=host.hostport)), start=False)
    harness.write_file(a.docroot + "/big.bin", 8192)
    harness.write_file(a.docroot + "/small.bin", 100)
    a.start()

    keys, hosts = status_auto(a)
    assert keys["HealthCheck"] == "Off"
    assert hosts[host.base]["state"] == "unchecked"
    assert hosts[host.base]["weight"] == "3"
    r0, s0 = int(keys["Redirects"]), int(keys["Declined-size"])

    for _ in range(3):
        assert request(a.url6("/big.bin"))[0] == 302
    for _ in range(2):
        assert request(a.url6("/small.bin"))[0] == 200
    keys, hosts = status_auto(a)
    assert int(keys["Redirects"]) == r0 + 3
    assert int(hosts[host.base]["redirects"]) == r0 + 3
    assert int(keys["Declined-size"]) == s0 + 2
    assert int(keys["Declines"]) == sum(
        int(v) for k, v in keys.items() if k.startswith("Declined-"))

    st, hdrs, body = request(a.url6("/offload-status"))
    assert st == 200 and header(hdrs, "content-type").startswith("text/html")
    html = body.decode()
    assert "<td>%s</td>" % host.base in html
    assert "<tr><td>size</td><td>%d</td></tr>" % (s0 + 2) in html
    assert request(a.url6("/offload-status"), method="POST")[0] == 405

    # a graceful restart keeps the counters
    err_before = a.error_log_text().count("resuming normal operations")
    os.kill(a.proc.pid, signal.SIGUSR1)
    assert wait_for(lambda: a.error_log_text().count(
        "resuming normal operations") > err_before, 10)
    keys2 = wait_for(lambda: _try_status(a), 10)
    assert int(keys2["Redirects"]) >= r0 + 3
    assert int(keys2["Declined-size"]) >= s0 + 2


def _try_status(a):
    try:
        return status_auto(a)[0]
    except (OSError, http.client.HTTPException, AssertionError):
        return None


# ---- with real offload daemons ---------------------------------------------

def test_health_checks_against_real_daemons(apache_factory, daemon_factory):
    """Two real offload_daemons as the offload hosts: the module checks
    their /offload-status; a stopped daemon's files go to the other and
    come back when it is started again; downloads through the redirect
    stay correct throughout."""
    a = apache_factory(status_conf(), start=False,
                       log_level="warn offload:notice")
    paths = ["/r%02d.bin" % i for i in range(24)]
    digests = {p: harness.write_file(a.docroot + p, 20000 + i)
               for i, p in enumerate(paths)}
    d1 = daemon_factory(a.base_url)
    d2 = daemon_factory(a.base_url)
    a.conf_extra += """
OffloadHealthCheck On
OffloadHealthCheckInterval {i}
OffloadEngine On
OffloadMinSize 0
OffloadHost 127.0.0.1:{p1}
OffloadHost 127.0.0.1:{p2}
""".format(i=INTERVAL, p1=d1.port, p2=d2.port)
    a.start()
    up = lambda: (len(status_auto(a)[1]) == 2 and
                  all(h.get("state") == "up"
                      for h in status_auto(a)[1].values()))
    assert wait_for(up, 3 * INTERVAL)
    before = hosts_of(a, paths)
    on_1 = [p for p in paths if before[p] == d1.address]
    on_2 = [p for p in paths if before[p] == d2.address]
    assert on_1 and on_2 and len(on_1) + len(on_2) == len(paths)

    def download(p):
        """curl -L from [::1]: the 302, then the daemon; sha256 checked."""
        out = os.path.join(a.run_dir, "dl.bin")
        rc = subprocess.run(["curl", "-sS", "-L", "-o", out, a.url6(p)]).returncode
        return rc == 0 and harness.sha256_file(out) == digests[p]

    assert all(download(p) for p in on_1[:2] + on_2[:2])
    d1.stop()
    assert wait_for(lambda: all(v == d2.address for v in
                                hosts_of(a, on_1).values()),
                    2 * INTERVAL + 0.5)
    assert hosts_of(a, on_2) == {p: d2.address for p in on_2}
    assert download(on_1[0])
    d1.start()
    assert wait_for(lambda: hosts_of(a, paths) == before, 2 * INTERVAL + 0.5)
    assert download(on_1[1])
    log = a.error_log_text()
    assert "%s failed its health check" % d1.address in log
    assert "%s passed its health check: in use again" % d1.address in log
