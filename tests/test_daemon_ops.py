"""offload_daemon in production: config file, -t, daemonizing, PID file,
signals, the per-client download cap, MaxClients, logs, --cgi and
DocumentRoot, against a real Apache as the base."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import children, sha, wait_for
from test_daemon import body_gets, cached, fetch, log_statuses

MB = 1024 * 1024
DAEMON = harness.DAEMON_BIN


def write_conf(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def check(*args):
    """Run the daemon with -t; (exit status, stdout + stderr)."""
    p = subprocess.run([DAEMON, "-t"] + list(args), capture_output=True,
                       text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


def slow_get(url, out, rate="4M", headers=()):
    """A download that reads slowly: a curl process writing to out."""
    args = ["curl", "-s", "-o", out, "--limit-rate", rate, "-w", "%{http_code}"]
    for h in headers:
        args += ["-H", h]
    proc = subprocess.Popen(args + [url], stdout=subprocess.PIPE, text=True)
    proc.out = out
    return proc


def receiving(proc):
    """Wait until a slow_get() has its first body bytes: its server child
    has then passed the download cap and is sending."""
    def started():
        try:
            return os.path.getsize(proc.out) > 0
        except OSError:
            return False
    return wait_for(started, timeout=20)


# ---------------------------------------------------------------- configuration

def test_config_file_errors_name_file_and_line(run_dir, base):
    cache = os.path.join(run_dir, "cache")
    # -t creates nothing: a missing cache directory is an error
    rc, out = check("--base", base.base_url, "--cache-dir", cache)
    assert rc == 1 and "CacheDir (--cache-dir) %s: No such file" % cache in out
    os.makedirs(cache)
    good = "BaseURL %s\nCacheDir %s\n" % (base.base_url, cache)
    cases = [
        ("Frobnicate 1\n", 4, "unknown setting Frobnicate"),
        ("MaxClients many\n", 4, "MaxClients many: expected a whole number"),
        ("Timeout 0\n", 4, "Timeout 0: expected a whole number"),
        ("DupeStatus 200\n", 4, "DupeStatus 200: expected 403, 429 or 503"),
        ("RobotsTxt maybe\n", 4, "RobotsTxt maybe: expected On or Off"),
        ("Listen nowhere\n", 4, "Listen nowhere: expected ADDR:PORT"),
        ("TrustedProxy 10.0.0.0/33\n", 4, "TrustedProxy 10.0.0.0/33"),
        ("BaseURL https://x\n", 4, "BaseURL https://x: https is not supported"),
        ("MaxClients\n", 4, "MaxClients needs a value"),
        ("NotSentLowat 65M\n", 4, "NotSentLowat 65M: expected a size"),
        ("NotSentLowat -1\n", 4, "NotSentLowat -1: expected a size"),
    ]
    for extra, line, message in cases:
        conf = write_conf(os.path.join(run_dir, "bad.conf"),
                          "# a comment\n" + good + extra)
        rc, out = check("-f", conf)
        assert rc == 1 and ("%s:%d: %s" % (conf, line, message)) in out, out
    # whole-file problems name the setting
    for text, message in [
            ("CacheDir %s\n" % cache, "BaseURL (--base) is required"),
            (good + "AccessLog /proc/nope/access.log\n",
             "AccessLog (--access-log) /proc/nope/access.log"),
            (good + "User no-such-user-here\n",
             "User (--user) no-such-user-here: no such user"),
            (good + "DocumentRoot /nonexistent\n",
             "DocumentRoot (--docroot) /nonexistent")]:
        conf = write_conf(os.path.join(run_dir, "bad.conf"), text)
        rc, out = check("-f", conf)
        assert rc == 1 and message in out, out
    rc, out = check("-f", os.path.join(run_dir, "missing.conf"))
    assert rc == 1 and "missing.conf: No such file" in out
    conf = write_conf(os.path.join(run_dir, "good.conf"),
                      good + "Listen 127.0.0.1:1\nListen [::1]:1\n"
                      "MaxDupeDownloads 2\nDupeStatus 503\nRobotsTxt Off\n"
                      "TrustedProxy 10.0.0.0/8\nTrustedProxy 2001:db8::/32\n"
                      "NotSentLowat 256K\n"
                      'AccessLog "%s/a.log"\n' % run_dir)
    rc, out = check("-f", conf)
    assert rc == 0 and "configuration OK" in out
    assert not os.path.exists(os.path.join(run_dir, "a.log"))
    # a flag with a bad value is refused naming the flag
    rc, out = check("-f", conf, "--max-clients", "0")
    assert rc == 1 and "--max-clients 0: expected a whole number" in out


def test_flags_override_the_file(run_dir, base, daemon_factory):
    digest = harness.write_file(os.path.join(base.docroot, "o.bin"), 50000)
    conf = write_conf(os.path.join(run_dir, "o.conf"),
                      "BaseURL http://127.0.0.1:1\nListen 127.0.0.1:1\n"
                      "RobotsTxt Off\n")
    # the daemon fixture adds --base, --listen, --cache-dir: all override
    daemon = daemon_factory(base.base_url, args=["-f", conf])
    status, _h, body = fetch(daemon, "/o.bin")
    assert status == 200 and sha(body) == digest
    # RobotsTxt Off from the file still holds: the base answers (404)
    assert fetch(daemon, "/robots.txt")[0] == 404


@pytest.mark.expect_error(r"reload: .*MaxClients lots: .*keeping the old")
def test_sighup_reloads_a_good_file_and_keeps_the_old_on_a_bad_one(
        run_dir, base, daemon_factory):
    conf = os.path.join(run_dir, "h.conf")
    write_conf(conf, "RobotsTxt On\n")
    daemon = daemon_factory(base.base_url, args=["-f", conf])
    assert fetch(daemon, "/robots.txt")[0] == 200
    write_conf(conf, "RobotsTxt Off\n")
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in daemon.log_text())
    assert fetch(daemon, "/robots.txt")[0] == 404
    write_conf(conf, "RobotsTxt On\nMaxClients lots\n")
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "keeping the old configuration" in daemon.log_text())
    assert "h.conf:2: MaxClients lots" in daemon.log_text()
    assert fetch(daemon, "/robots.txt")[0] == 404


# ---------------------------------------------------------------- process life

def test_daemonizes_with_pid_file_and_refuses_a_second(run_dir, base):
    harness.write_file(os.path.join(base.docroot, "d.bin"), 10000)
    port = harness.free_port()
    pid_file = os.path.join(run_dir, "d.pid")
    args = [DAEMON, "--base", base.base_url, "--listen", "127.0.0.1:%d" % port,
            "--cache-dir", os.path.join(run_dir, "cache"),
            "--pid-file", pid_file,
            "--access-log", os.path.join(run_dir, "access.log"),
            "--error-log", os.path.join(run_dir, "error.log")]
    p = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    with open(pid_file) as f:
        pid = int(f.read())
    try:
        # ready when the starter returns: a reload at once is a reload
        os.kill(pid, signal.SIGHUP)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            assert f.read().startswith(b"offload: accepting")
        assert wait_for(lambda: "reloaded the command line" in
                        open(os.path.join(run_dir, "error.log")).read())
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/d.bin")
        assert c.getresponse().status == 200
        c.close()
        second = args[:]
        second[second.index("--listen") + 1] = "127.0.0.1:%d" % harness.free_port()
        p = subprocess.run(second, capture_output=True, text=True, timeout=10)
        assert p.returncode == 1
        assert "another offload_daemon is running (pid %d)" % pid in p.stderr
        assert wait_for(lambda: '"GET /d.bin HTTP/1.1" 200 10000' in
                        open(os.path.join(run_dir, "access.log")).read())
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not os.path.exists(pid_file))
    assert wait_for(lambda: not os.path.exists("/proc/%d" % pid))
    with open(os.path.join(run_dir, "error.log")) as f:
        assert "stopped" in f.read()


def test_sigterm_lets_a_running_download_finish(run_dir, base, daemon_factory):
    digest = harness.write_file(os.path.join(base.docroot, "t.bin"), 40 * MB)
    daemon = daemon_factory(base.base_url)
    assert fetch(daemon, "/t.bin")[0] == 200   # cached: the client is the slow part
    out = os.path.join(run_dir, "t.out")
    client = slow_get(daemon.url("/t.bin"), out, rate="10M")
    assert receiving(client)
    daemon.proc.send_signal(signal.SIGTERM)
    # it stops accepting at once ...
    assert wait_for(lambda: connect_refused(daemon), timeout=5)
    # ... and the running download completes
    stdout, _ = client.communicate(timeout=60)
    assert stdout == "200" and harness.sha256_file(out) == digest
    assert daemon.proc.wait(timeout=10) == 0


def connect_refused(daemon):
    try:
        socket.create_connection((daemon.host, daemon.port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigusr1_reopens_the_logs(run_dir, base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "u.bin"), 10000)
    log = os.path.join(run_dir, "access.log")
    daemon = daemon_factory(base.base_url, args=["--access-log", log])
    fetch(daemon, "/u.bin")
    assert wait_for(lambda: os.path.exists(log) and "u.bin" in open(log).read())
    os.rename(log, log + ".1")
    daemon.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(log))
    fetch(daemon, "/u.bin?")  # 403: logged all the same
    fetch(daemon, "/u.bin")
    assert wait_for(lambda: open(log).read().count("/u.bin") == 2)
    assert open(log + ".1").read().count("/u.bin") == 1


# ---------------------------------------------------------------- caps and limits

# what a download accelerator asks for: a segment of the file
SEGMENT = {"Range": "bytes=0-99"}


def test_dupe_cap_refuses_one_more_and_frees_slots(base, daemon_factory):
    digest = harness.write_file(os.path.join(base.docroot, "a.bin"), 48 * MB)
    harness.write_file(os.path.join(base.docroot, "b.bin"), 100000)
    daemon = daemon_factory(base.base_url)
    assert fetch(daemon, "/a.bin")[0] == 200   # cached
    first = slow_get(daemon.url("/a.bin"), os.path.join(daemon.run_dir, "a.out"),
                     rate="12M")
    assert receiving(first)
    # a segment (a Range with an end) from the same address is one too
    # many; a whole-file GET or a resume (NAT: another person) is not
    status, headers, body = fetch(daemon, "/a.bin", SEGMENT)
    assert status == 429 and headers["retry-after"] == "10"
    assert b"download accelerator" in body
    assert fetch(daemon, "/a.bin", {"Range": "bytes=%d-" % (47 * MB)})[0] == 206
    status, _h, body = fetch(daemon, "/a.bin")
    assert status == 200 and sha(body) == digest
    # another URL from the same address, and HEAD, are not limited
    assert fetch(daemon, "/b.bin")[0] == 200
    assert fetch(daemon, "/a.bin", method="HEAD")[0] == 200
    stdout, _ = first.communicate(timeout=60)
    assert stdout == "200"
    assert harness.sha256_file(os.path.join(daemon.run_dir, "a.out")) == digest
    # the slot is free again
    assert fetch(daemon, "/a.bin")[0] == 200
    # a child killed with SIGKILL does not keep its slot
    victim = slow_get(daemon.url("/a.bin"), os.path.join(daemon.run_dir, "v.out"),
                      rate="1M")
    assert receiving(victim)
    assert fetch(daemon, "/a.bin", SEGMENT)[0] == 429
    kids = children(daemon.proc.pid)
    assert kids
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the child that answered the 429 may be gone already
    victim.wait(timeout=10)  # its connection died with its child
    assert wait_for(lambda: fetch(daemon, "/a.bin", SEGMENT)[0] == 206)
    assert "DENIED" in log_statuses(daemon)


@pytest.mark.parametrize("status", [403, 503])
def test_dupe_status_setting(base, daemon_factory, status):
    harness.write_file(os.path.join(base.docroot, "s.bin"), 48 * MB)
    daemon = daemon_factory(base.base_url, args=["--dupe-status", str(status)])
    assert fetch(daemon, "/s.bin")[0] == 200
    first = slow_get(daemon.url("/s.bin"), os.path.join(daemon.run_dir, "s.out"),
                     rate="12M")
    assert receiving(first)
    got, headers, _b = fetch(daemon, "/s.bin", SEGMENT)
    first.communicate(timeout=60)
    assert got == status
    assert ("retry-after" in headers) == (status == 503)


def test_aria2c_with_eight_connections_still_completes(run_dir, base, daemon_factory):
    digest = harness.write_file(os.path.join(base.docroot, "x.bin"), 24 * MB)
    daemon = daemon_factory(base.base_url)
    p = subprocess.run(["aria2c", "-x8", "-s8", "-k1M", "-q",
                        "--max-download-limit=8M", "--allow-overwrite=true",
                        "-d", run_dir, "-o", "x.out", daemon.url("/x.bin")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert harness.sha256_file(os.path.join(run_dir, "x.out")) == digest
    # it did try more connections, and they were refused
    assert "DENIED" in log_statuses(daemon)


def test_x_forwarded_for_only_from_a_trusted_proxy(base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "p.bin"), 48 * MB)
    trusting = daemon_factory(base.base_url, args=["--trusted-proxy", "127.0.0.0/8"])
    plain = daemon_factory(base.base_url)
    for daemon, second_status in ((trusting, 206), (plain, 429)):
        assert fetch(daemon, "/p.bin")[0] == 200
        out = os.path.join(daemon.run_dir, "p%d.out" % daemon.port)
        first = slow_get(daemon.url("/p.bin"), out, rate="12M",
                         headers=["X-Forwarded-For: 192.0.2.1, 198.51.100.7"])
        assert receiving(first)
        status, _h, _b = fetch(daemon, "/p.bin",
                               dict(SEGMENT, **{"X-Forwarded-For":
                                                "192.0.2.1, 198.51.100.8"}))
        first.wait(timeout=60)
        assert status == second_status
    assert "198.51.100.8 - - [" in trusting.log_text()
    assert "198.51.100" not in plain.log_text()


def test_max_clients_answers_503_at_once(base, daemon_factory):
    harness.write_file(os.path.join(base.docroot, "m.bin"), 10000)
    daemon = daemon_factory(base.base_url, args=["--max-clients", "2"])
    # the start-up check's connection must be gone first. It was only a
    # connect(): the daemon may accept it after wait_for() below found no
    # child. A request queued after it and answered means it was accepted.
    assert fetch(daemon, "/m.bin")[0] == 200
    assert wait_for(lambda: children(daemon.proc.pid) == [])
    idle = [socket.create_connection((daemon.host, daemon.port)) for _ in range(2)]
    time.sleep(0.3)
    start = time.monotonic()
    status, headers, body = fetch(daemon, "/m.bin")
    assert status == 503 and headers["retry-after"] and b"Too many" in body
    assert time.monotonic() - start < 2
    for s in idle:
        s.close()
    assert wait_for(lambda: fetch(daemon, "/m.bin")[0] == 200)


def send_queue(port):
    """Bytes in the send queue of the daemon's end of the one established
    connection from its port (/proc/net/tcp's tx_queue), or None."""
    found = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "01" and int(local.split(":")[1], 16) == port:
                found.append(int(fields[4].split(":")[0], 16))
    return found[0] if len(found) == 1 else None


def stalled_queue(daemon, path):
    """Ask for path, read nothing, and return the daemon's send queue
    once it has stopped growing."""
    s = socket.create_connection((daemon.host, daemon.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        last, steady = -1, 0
        for _ in range(100):
            time.sleep(0.1)
            q = send_queue(daemon.port)
            steady = steady + 1 if q == last else 0
            last = q
            if q and steady >= 5:
                break
        return last
    finally:
        s.close()


def test_notsent_lowat_bounds_what_a_stalled_client_holds(base, daemon_factory):
    """A client that stops reading holds at most NotSentLowat (plus one
    segment) of unsent data in the kernel; with 0, the kernel's own
    limit (several MiB) applies."""
    harness.write_file(os.path.join(base.docroot, "q.bin"), 64 * MB)
    bounded = daemon_factory(base.base_url, args=["--notsent-lowat", "256K"])
    kernel = daemon_factory(base.base_url, args=["--notsent-lowat", "0"])
    for d in (bounded, kernel):
        status, _h, body = fetch(d, "/q.bin")   # cached: the hit path
        assert status == 200 and len(body) == 64 * MB
        assert wait_for(lambda: children(d.proc.pid) == [])
    assert stalled_queue(bounded, "/q.bin") <= 256 * 1024 + 128 * 1024
    assert stalled_queue(kernel, "/q.bin") > 1024 * 1024


# What one download's process may hold as its own pages while serving a
# hit (docs/architecture.md, "Memory per download"), in KiB.
HIT_PRIVATE_KIB = 64
# The sendfile() system call's number, by machine: what a child blocked
# sending a copy is in (/proc/PID/syscall).
SENDFILE_NR = {"x86_64": 40, "aarch64": 71, "i686": 187, "armv7l": 187}


def private_kib(pid):
    """Private_Clean + Private_Dirty of pid (KiB), as make bench counts."""
    total = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def blocked_sending(pid):
    """Is pid asleep in sendfile()?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/syscall" % pid) as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    want = SENDFILE_NR.get(os.uname().machine)
    return state == "S" and (nr == str(want) if want else nr != "running")


def sanitized(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_a_hit_holds_at_most_64k_of_private_memory(base, daemon_factory):
    if sanitized(DAEMON):
        pytest.skip("an ASan build's memory is not the daemon's own")
    harness.write_file(os.path.join(base.docroot, "m.bin"), 64 * MB)
    daemon = daemon_factory(base.base_url)
    assert fetch(daemon, "/m.bin")[0] == 200
    assert cached(daemon, 1)
    assert wait_for(lambda: children(daemon.proc.pid) == [])
    # a client that asks for the copy and reads nothing
    s = socket.create_connection((daemon.host, daemon.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(b"GET /m.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        kids = wait_for(lambda: harness.connection_children(daemon.proc.pid))
        assert len(kids) == 1
        assert wait_for(lambda: blocked_sending(kids[0])), \
            "the child never blocked sending"
        kib = private_kib(kids[0])
        assert kib <= HIT_PRIVATE_KIB, \
            "a hit's process holds %d KiB of private pages" % kib
    finally:
        s.close()
    assert log_statuses(daemon) == ["HIT", "MISS"]


# ---------------------------------------------------------------- other modes

def test_document_root_mode(run_dir, base, daemon_factory):
    local = os.path.join(run_dir, "mirror")
    os.makedirs(local)
    src = os.path.join(base.docroot, "dr.bin")
    digest = harness.write_file(src, 2 * MB)
    shutil.copy2(src, os.path.join(local, "dr.bin"))
    daemon = daemon_factory(base.base_url, args=["--docroot", local])
    status, _h, body = fetch(daemon, "/dr.bin")
    assert status == 200 and sha(body) == digest
    status, _h, body = fetch(daemon, "/dr.bin", {"Range": "bytes=5-9"})
    assert status == 206 and len(body) == 5
    assert body_gets(base, "/dr.bin") == []
    # the base has a newer version the mirror lacks: served from the base
    time.sleep(1.1)
    digest = harness.write_file(src, 2 * MB + 1, seed=9)
    status, _h, body = fetch(daemon, "/dr.bin")
    assert status == 200 and sha(body) == digest
    assert len(body_gets(base, "/dr.bin", at_least=1)) == 1
    assert log_statuses(daemon) == ["BYPASS", "HIT", "HIT"]
    # a symlink out of the mirror is not followed
    os.symlink("/etc/passwd", os.path.join(local, "link.bin"))
    shutil.copy2("/etc/passwd", os.path.join(base.docroot, "link.bin"))
    os.chmod(os.path.join(base.docroot, "link.bin"), 0o644)
    fetch(daemon, "/link.bin")
    assert log_statuses(daemon).count("BYPASS") == 2


def test_cgi_mode_under_apache(base_factory, run_dir):
    cache = os.path.join(run_dir, "cgi-cache")
    os.makedirs(cache)
    os.chmod(cache, 0o777)
    base = base_factory(cgi={"offload": "#!/bin/sh\nexec %s --cgi --base @BASE@ "
                             "--cache-dir %s\n" % (DAEMON, cache)})
    digest = harness.write_file(os.path.join(base.docroot, "g", "cg.bin"), 3 * MB)
    c = http.client.HTTPConnection("127.0.0.1", base.port, timeout=30)
    for _ in range(2):
        c.request("GET", "/cgi-bin/offload/g/cg.bin")
        r = c.getresponse()
        body = r.read()
        # what Apache says of the CGI when it answers for it
        assert r.status == 200, base.error_log_text()
        assert sha(body) == digest
        assert r.getheader("Accept-Ranges") == "bytes"
    c.request("GET", "/cgi-bin/offload/g/cg.bin", headers={"Range": "bytes=-3"})
    r = c.getresponse()
    assert r.status == 206 and r.read() == body[-3:]
    c.request("GET", "/cgi-bin/offload/g/nope.bin")
    r = c.getresponse()
    r.read()
    assert r.status == 404
    c.close()
    assert len(body_gets(base, "/g/cg.bin", at_least=1)) == 1
