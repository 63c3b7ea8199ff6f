#!/usr/bin/python3
"""bench/run.py -- mod_offload side by side with nginx, on loopback.

One run starts, on 127.0.0.1 and with the same files:

  base      a private Apache (tests/harness.py) with mod_offload loaded,
            /slow/ throttled with mod_ratelimit
  daemon    offload_daemon --base <that Apache>
  nginx     one nginx (config from bench/nginx.conf.in) with three servers:
            static   the base's docroot served with sendfile
            lock     proxy_cache in front of the base, proxy_cache_lock on
            nolock   the same with proxy_cache_lock off
  plain     a second Apache without the module (module overhead only)

and measures hot hits, cold-miss sharing, small hot files, memory per
download, module overhead and scaling (see docs/benchmarks.md). Every
figure is the median of several repetitions with min and max, next to an
anchor measured in the same run. Prints a table, writes docs/benchmarks.md
and PNG plots in docs/img/.

    /usr/bin/python3 bench/run.py [--quick] [--keep]

Only the standard library; wrk, nginx and gnuplot are run as programs.
Every server is stopped by PID at the end, also on Ctrl-C.
"""

import argparse
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import harness  # noqa: E402

KiB = 1024
MiB = 1024 * 1024
NGINX_BIN = "/usr/sbin/nginx"
WRK_SCRIPT = os.path.join(HERE, "summary.lua")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
IMG_DIR = os.path.join(REPO, "docs", "img")

# Sizes, durations and client counts. The full profile fits in 10 minutes
# on 2 cores, the quick one in 2.
PROFILES = {
    "full": dict(
        reps=3, reps_wrk=5,     # wrk figures are short and noisy: 5 reps
        hot_size=512 * MiB, hot_clients=(1, 4, 16), hot_secs=3,
        cold_size=64 * MiB, cold_rate_kib=8192, cold_clients=20,
        small_sizes=(64 * KiB, 1 * MiB), small_conns=16, small_secs=3,
        mem_counts=(10, 100, 500), mem_rate=32 * KiB, mem_tcp_at=100,
        mod_conns=16, mod_secs=3,
        scale_counts=(1, 10, 50, 100),
    ),
    "quick": dict(
        reps=3, reps_wrk=3,
        hot_size=64 * MiB, hot_clients=(4, 16), hot_secs=1,
        cold_size=8 * MiB, cold_rate_kib=8192, cold_clients=20,
        small_sizes=(64 * KiB, 1 * MiB), small_conns=16, small_secs=1,
        mem_counts=(10, 100), mem_rate=32 * KiB, mem_tcp_at=100,
        mod_conns=16, mod_secs=1,
        scale_counts=(1, 10, 50),
    ),
}

TINY_SIZE = 1024        # below OffloadMinSize's default: never offloaded
VALIDATE_SECS = 60      # --validate-interval of the second daemon (§3)


def say(msg):
    """Progress on stderr; the table goes to stdout."""
    sys.stderr.write("[bench %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


T0 = time.monotonic()


# ---- statistics and formatting -------------------------------------------

class Stat:
    """Repeated measurements of one figure."""

    def __init__(self, values):
        self.values = [float(v) for v in values]

    @property
    def med(self):
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self):
        return min(self.values) if self.values else float("nan")

    @property
    def hi(self):
        return max(self.values) if self.values else float("nan")


def num(v):
    """A figure with as many digits as it deserves."""
    if v != v:
        return "n/a"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fmt_stat(s):
    return "%s (%s–%s)" % (num(s.med), num(s.lo), num(s.hi))


def ratio(a, b):
    if b.med == 0 or a.med != a.med or b.med != b.med:
        return float("nan")
    return a.med / b.med


def fmt_ratio(r):
    return "n/a" if r != r else "%.2f×" % r


def at_least(r, want):
    """Targets are judged at the precision the table shows (0.01×)."""
    return r == r and round(r, 2) >= want


def at_most(r, want):
    return r == r and round(r, 2) <= want


# ---- processes and memory ------------------------------------------------

def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid,
    ...; utime is [11]), or None when the process is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rindex(")") + 2:].split()


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def proc_tree(root):
    """PIDs of root and all its descendants (from /proc/*/stat ppid)."""
    children = {}
    for pid in all_pids():
        fields = proc_stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def private_kib(pids):
    """Sum of Private_Clean + Private_Dirty (KiB) over pids."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1])
        except OSError:
            pass    # exited meanwhile
    return total


def private_by_mapping(pid):
    """One process's Private_Clean + Private_Dirty (KiB) by kind of
    mapping, from /proc/PID/smaps: stack, heap, the program's own file
    (its data and BSS when written), libc, the loader, other files,
    anonymous. Returns {} when the process is gone."""
    out, kind, prev_end, prev_kind = {}, None, None, None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                    base = os.path.basename(name)
                    start, end = first.split("-")
                    # an unnamed mapping right after a file's: its BSS
                    follows = prev_end == start and prev_kind in (
                        "offload_daemon", "libc", "loader", "other files")
                    prev_end = end
                    if not name and follows:
                        kind = prev_kind + " BSS"
                        continue
                    if name == "[stack]":
                        kind = "stack"
                    elif name == "[heap]":
                        kind = "heap"
                    elif base == "offload_daemon":
                        kind = "offload_daemon"
                    elif base.startswith("libc."):
                        kind = "libc"
                    elif base.startswith("ld-linux"):
                        kind = "loader"
                    elif name.startswith("/"):
                        kind = "other files"
                    elif name.startswith("["):
                        kind = name
                    else:
                        kind = "anonymous"
                    prev_kind = kind
                elif first in ("Private_Clean:", "Private_Dirty:"):
                    out[kind] = out.get(kind, 0) + int(line.split()[1])
    except OSError:
        return {}
    return out


def tcp_mem_kib():
    """The kernel's TCP memory (/proc/net/sockstat 'mem', pages) in KiB."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                pages = int(parts[parts.index("mem") + 1])
                return pages * os.sysconf("SC_PAGE_SIZE") // KiB
    return 0


def context_switches():
    """The machine's context switches since boot (/proc/stat 'ctxt')."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return 0


def tree_cpu_seconds(root):
    """CPU seconds (user + system) used so far by root and every process
    below it, including children already reaped (cutime, cstime)."""
    ticks = 0
    for pid in proc_tree(root):
        fields = proc_stat(pid)
        if fields is not None:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """CPU seconds the machine spent busy since boot, over all CPUs
    (/proc/stat: user, nice, system, irq, softirq; not idle or steal)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:8]]
                return (v[0] + v[1] + v[2] + v[5] + v[6]) / \
                    os.sysconf("SC_CLK_TCK")
    return 0.0


def children_cpu_seconds():
    """CPU seconds of this script's reaped children (wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """CPU time per request while wrk runs, by who spent it: wrk, the
    server under test, the base, and the rest of the machine (kernel
    threads, softirqs outside a process, this script)."""

    def __init__(self, server_root, base_root, forks):
        self.roots = {"server": server_root, "base": base_root}
        self.forks = forks      # a process per connection (the daemon)

    def __enter__(self):
        if self.forks:
            wait_tree_idle(self.roots["server"])
        self.t0 = self._now()
        return self

    def _now(self):
        t = {k: tree_cpu_seconds(v) for k, v in self.roots.items()}
        t["wrk"] = children_cpu_seconds()
        t["machine"] = machine_cpu_seconds()
        return t

    def __exit__(self, *exc):
        # a download's process is reaped, and its time counted in the
        # parent's, once the connection is gone
        if self.forks:
            wait_tree_idle(self.roots["server"])
        t1 = self._now()
        self.used = {k: t1[k] - self.t0[k] for k in t1}
        return False

    def per_request_us(self, requests):
        u = dict(self.used)
        u["other"] = max(0.0, u.pop("machine") -
                         u["server"] - u["base"] - u["wrk"])
        return {k: v * 1e6 / max(requests, 1) for k, v in u.items()}


def wait_tree_idle(root, timeout=20.0):
    """Wait until root has no descendants left (downloads finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(proc_tree(root)) == 1:
            return True
        time.sleep(0.1)
    return False


class OtherLoad:
    """CPU time used by processes outside this run (other tests on the
    machine), sampled from /proc/*/stat once a second and summed per
    section. A lower bound: processes born and gone between two samples
    are missed."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.section = None
        self.cpu = {}           # section -> CPU seconds of other processes
        self.wall = {}          # section -> seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _times():
        out = {}
        for pid in all_pids():
            fields = proc_stat(pid)
            if fields is not None:
                out[pid] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        return out

    def _run(self):
        me = os.getpid()
        prev, t_prev = self._times(), time.monotonic()
        while not self._stop.wait(1.0):
            cur, t = self._times(), time.monotonic()
            # our processes: this script and everything below it
            kids = {}
            for pid, (ppid, _) in cur.items():
                kids.setdefault(ppid, []).append(pid)
            ours, todo = set(), [me]
            while todo:
                q = todo.pop()
                ours.add(q)
                todo.extend(kids.get(q, ()))
            used = 0
            for pid, (_, ticks) in cur.items():
                if pid in ours:
                    continue
                used += ticks - prev[pid][1] if pid in prev else 0
            sec = self.section
            if sec is not None:
                self.cpu[sec] = self.cpu.get(sec, 0.0) + used / self.tick
                self.wall[sec] = self.wall.get(sec, 0.0) + (t - t_prev)
            prev, t_prev = cur, t

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def notes(self):
        """One line per section where others used over 5% of the CPUs."""
        ncpu = os.cpu_count() or 1
        out = []
        for sec, cpu in self.cpu.items():
            wall = self.wall.get(sec, 0.0)
            if wall > 0 and cpu / (wall * ncpu) > 0.05:
                out.append("other processes on the machine used at least "
                           "%.0f CPU-seconds during %s (%.0f%% of %d cores "
                           "over %.0f s): its figures may be disturbed"
                           % (cpu, sec, 100 * cpu / (wall * ncpu), ncpu,
                              wall))
        return out


# ---- clients -------------------------------------------------------------

def request_bytes(host, port, path):
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: bench\r\n"
            "Connection: close\r\n\r\n" % (path, host, port)).encode()


class Download:
    """One response being read from a non-blocking socket."""

    def __init__(self, sock, req):
        self.sock = sock
        self.req = req
        self.head = bytearray()
        self.status = None
        self.length = None
        self.body = 0
        self.t_first = None     # first body byte, seconds after start
        self.t_done = None
        self.done = False

    def feed(self, data, t):
        """Account for received bytes; returns True when complete."""
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 65536:
                    raise RuntimeError("response head too long")
                return False
            head = bytes(self.head[:end]).decode("latin-1")
            rest = len(self.head) - end - 4
            self.head = bytearray()
            lines = head.split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    self.length = int(v.strip())
            n = rest
        else:
            n = len(data)
        if n > 0 and self.t_first is None:
            self.t_first = t
        self.body += n
        if self.length is not None and self.body >= self.length:
            self.done = True
            self.t_done = t
        return self.done


def connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def fetch_together(host, port, paths, timeout=120.0):
    """Connect one client per path, send every request at the same moment,
    read each response to its end as fast as possible.

    Returns a list of Download (times in seconds after the requests went
    out). Clients that fail keep done=False."""
    dls = [Download(connect(host, port), request_bytes(host, port, p))
           for p in paths]
    sel = selectors.DefaultSelector()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    for d in dls:
        d.sock.setblocking(False)
        sel.register(d.sock, selectors.EVENT_READ, d)
    t0 = time.monotonic()
    for d in dls:
        d.sock.sendall(d.req)
    left = len(dls)
    deadline = t0 + timeout
    try:
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                d = key.data
                try:
                    n = d.sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                t = time.monotonic() - t0
                if n == 0 or d.feed(view[:n], t):
                    sel.unregister(d.sock)
                    d.sock.close()
                    left -= 1
    finally:
        for d in dls:
            if d.sock.fileno() >= 0:
                sel.unregister(d.sock)
                d.sock.close()
        sel.close()
    return dls


class SlowDownloads:
    """n downloads of one file, each read at a client-side rate limit."""

    def __init__(self, host, port, path, n, rate):
        self.host, self.port, self.path = host, port, path
        self.n, self.rate = n, rate
        self.dls = []

    def open(self):
        req = request_bytes(self.host, self.port, self.path)
        for _ in range(self.n):
            s = connect(self.host, self.port)
            s.sendall(req)
            s.setblocking(False)
            self.dls.append(Download(s, req))

    def active(self):
        return sum(1 for d in self.dls if d.status == 200 and d.body > 0)

    def pump(self, seconds, until_all_active=False):
        """Read at the rate limit for seconds (or until every download has
        body bytes flowing). Returns the number of active downloads."""
        tick = 0.1
        per_tick = max(1, int(self.rate * tick))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            for d in self.dls:
                try:
                    data = d.sock.recv(per_tick)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    continue
                if data:
                    d.feed(data, t)
            if until_all_active and self.active() == self.n:
                break
            time.sleep(max(0.0, tick - (time.monotonic() - t)))
        return self.active()

    def close(self):
        for d in self.dls:
            d.sock.close()
        self.dls = []


def http_head(url, extra_headers=()):
    """(status, headers dict lowercased) of a GET without following
    redirects; the body is read and dropped."""
    m = re.match(r"http://(\[[^\]]+\]|[^/:]+):(\d+)(/.*)", url)
    host, port, path = m.group(1).strip("[]"), int(m.group(2)), m.group(3)
    s = socket.create_connection((host, port), timeout=60)
    req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (
        path, m.group(1))
    for h in extra_headers:
        req += h + "\r\n"
    s.sendall((req + "\r\n").encode())
    data = bytearray()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        if b"\r\n\r\n" not in data:
            data += chunk
        elif len(data) < 65536:
            data += chunk[:1024]
    s.close()
    head = bytes(data).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers


def wrk(url, conns, secs):
    """Run wrk; returns a dict from summary.lua's line (bytes, duration_us,
    requests, p50_us, p99_us, errors, status_errors, non2xx)."""
    threads = min(2, conns)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % secs,
           "--timeout", "10s", "-s", WRK_SCRIPT, url]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=secs + 60)
    m = re.search(r"^BENCH (.*)$", p.stdout, re.M)
    if p.returncode != 0 or m is None:
        raise RuntimeError("wrk failed: %s\n%s" % (" ".join(cmd), p.stdout))
    out = {k: int(v) for k, v in
           (kv.split("=") for kv in m.group(1).split())}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    out["non2xx"] = int(m.group(1)) if m else 0
    return out


# ---- servers -------------------------------------------------------------

class Nginx:
    """nginx in the foreground from bench/nginx.conf.in, stopped by PID."""

    def __init__(self, run_dir, docroot, base_port):
        self.run_dir = run_dir
        self.ports = {k: harness.free_port() for k in
                      ("static", "lock", "nolock")}
        self.docroot = docroot
        self.base_port = base_port
        self.conf_path = os.path.join(run_dir, "nginx.conf")
        self.proc = None

    def url(self, which, path):
        return "http://127.0.0.1:%d%s" % (self.ports[which], path)

    def start(self):
        with open(os.path.join(HERE, "nginx.conf.in")) as f:
            text = f.read()
        subst = {"RUN": self.run_dir, "DOCROOT": self.docroot,
                 "BASE_PORT": str(self.base_port),
                 "WORKERS": str(os.cpu_count() or 1),
                 "STATIC_PORT": str(self.ports["static"]),
                 "LOCK_PORT": str(self.ports["lock"]),
                 "NOLOCK_PORT": str(self.ports["nolock"])}
        for k, v in subst.items():
            text = text.replace("@%s@" % k, v)
        os.makedirs(os.path.join(self.run_dir, "nginx-tmp"), exist_ok=True)
        with open(self.conf_path, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen(
            [NGINX_BIN, "-p", self.run_dir, "-c", self.conf_path,
             "-e", os.path.join(self.run_dir, "nginx-error.log")],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.run_dir, "nginx-stderr.log"), "ab"))
        for port in self.ports.values():
            harness.wait_port("127.0.0.1", port, self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            harness._stop_pid(self.proc.pid, self.proc)
            self.proc = None


class LogTail:
    """New lines of the base's access log since mark()."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path) if os.path.exists(
            self.path) else 0

    def entries(self):
        out = []
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                parts += [""] * (len(harness.ACCESS_FIELDS) - len(parts))
                out.append(dict(zip(harness.ACCESS_FIELDS, parts)))
        return out

    def get_bytes(self, uri, settle=10.0):
        """Body bytes the base sent for GETs of uri since mark(). Apache logs
        a request when it is over: wait until the figure stops changing."""
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + settle
        while True:
            total = sum(int(e["bytes"]) if e["bytes"].isdigit() else 0
                        for e in self.entries()
                        if e["method"] == "GET" and e["uri"] == uri)
            if total != last:
                last, stable_since = total, time.monotonic()
            elif time.monotonic() - stable_since > 0.3:
                return total
            if time.monotonic() > deadline:
                return total
            time.sleep(0.1)

    def count(self, method, uri, settle=10.0):
        """Requests of method for uri in the log since mark(), once the
        figure stops changing (Apache logs a request when it is over)."""
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + settle
        while True:
            n = sum(1 for e in self.entries()
                    if e["method"] == method and e["uri"] == uri)
            if n != last:
                last, stable_since = n, time.monotonic()
            elif time.monotonic() - stable_since > 0.3:
                return n
            if time.monotonic() > deadline:
                return n
            time.sleep(0.1)


def validate_interval_supported():
    """True when the built daemon has --validate-interval (issue 7)."""
    usage = subprocess.run([harness.DAEMON_BIN, "--help"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True).stdout
    return "--validate-interval" in usage


def daemon_args():
    """--max-clients for 500 downloads; and since every client here has the
    same address (127.0.0.1, standing in for many clients), no per-client
    cap on simultaneous downloads of one URL where the daemon has one."""
    args = ["--max-clients", "1000"]
    usage = subprocess.run([harness.DAEMON_BIN, "--help"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True).stdout
    if "--max-dupe-downloads" in usage:
        args += ["--max-dupe-downloads", "0"]
    return args


class Bench:
    def __init__(self, prof, quick):
        self.p = prof
        self.quick = quick
        self.results = {}
        self.notes = []         # anomalies seen while measuring
        self.child_parts = {}   # §4: N -> [one child's private KiB by kind]
        self.servers = []
        self.run_dir = harness.make_run_dir("bench")

    # -- set-up --

    def sub(self, name):
        d = os.path.join(self.run_dir, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        return d

    def start(self):
        p = self.p
        self.apache = harness.Apache(self.sub("base"))
        self.daemon = harness.Daemon(self.sub("daemon"), self.apache.base_url,
                                     args=daemon_args())
        docroot = self.apache.docroot
        self.apache.conf_extra = "\n".join([
            "<Directory %s>" % docroot,
            "    OffloadEngine On",
            "    OffloadHost 127.0.0.1:%d" % self.daemon.port,
            "</Directory>",
            "<Location /slow/>",
            "    SetOutputFilter RATE_LIMIT",
            "    SetEnv rate-limit %d" % p["cold_rate_kib"],
            "</Location>",
        ])
        self.plain = harness.Apache(self.sub("plain"), offload=False)
        # The same daemon with ValidateInterval (small hot files only): hits
        # within VALIDATE_SECS of the last validation skip the HEAD.
        self.daemon_vi = None
        if validate_interval_supported():
            self.daemon_vi = harness.Daemon(
                self.sub("daemon-vi"), self.apache.base_url,
                args=daemon_args() + ["--validate-interval",
                                      str(VALIDATE_SECS)])

        say("writing files (hot file %d MiB)" % (p["hot_size"] // MiB))
        harness.write_file(os.path.join(docroot, "hot.bin"), p["hot_size"], 1)
        for size in p["small_sizes"]:
            harness.write_file(os.path.join(docroot, self.small_name(size)),
                               size, 2)
        for root in (docroot, self.plain.docroot):
            harness.write_file(os.path.join(root, "tiny.txt"), TINY_SIZE, 3)
        slow = os.path.join(docroot, "slow")
        harness.write_file(os.path.join(slow, "cold.bin"), p["cold_size"], 4)
        os.chmod(slow, 0o755)
        self.cold_n = 0

        for srv in (self.apache, self.plain, self.daemon, self.daemon_vi):
            if srv is None:
                continue
            self.servers.append(srv)
            srv.start()
        self.nginx = Nginx(self.sub("nginx"), docroot, self.apache.port)
        self.servers.append(self.nginx)
        self.nginx.start()
        self.log = LogTail(self.apache.access_log)
        say("servers up: base :%d, daemon :%d, nginx static :%d lock :%d "
            "nolock :%d, plain Apache :%d" % (
                self.apache.port, self.daemon.port, self.nginx.ports["static"],
                self.nginx.ports["lock"], self.nginx.ports["nolock"],
                self.plain.port))
        if self.daemon_vi is not None:
            say("daemon with --validate-interval %d :%d"
                % (VALIDATE_SECS, self.daemon_vi.port))

    def stop(self):
        for srv in reversed(self.servers):
            pids = []
            if getattr(srv, "proc", None) is not None:
                pids = proc_tree(srv.proc.pid)[1:]
            try:
                srv.stop()
            except Exception as e:     # keep stopping the others
                say("stopping %s: %s" % (type(srv).__name__, e))
            # children that outlived their parent (a fetcher, say)
            for pid in pids:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                self.notes.append("%s: process %d outlived its parent"
                                  % (type(srv).__name__, pid))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.servers = []

    @staticmethod
    def small_name(size):
        return "small-%dk.bin" % (size // KiB)

    def cold_path(self, tag):
        """A new URL for the throttled file (a hard link): a miss
        everywhere."""
        self.cold_n += 1
        name = "c%03d-%s.bin" % (self.cold_n, tag)
        os.link(os.path.join(self.apache.docroot, "slow", "cold.bin"),
                os.path.join(self.apache.docroot, "slow", name))
        return "/slow/" + name

    def endpoints(self):
        """name -> (host, port, url maker) for the servers clients use."""
        ep = {
            "daemon": ("127.0.0.1", self.daemon.port, self.daemon.url),
            "static": ("127.0.0.1", self.nginx.ports["static"],
                       lambda p: self.nginx.url("static", p)),
            "lock": ("127.0.0.1", self.nginx.ports["lock"],
                     lambda p: self.nginx.url("lock", p)),
            "nolock": ("127.0.0.1", self.nginx.ports["nolock"],
                       lambda p: self.nginx.url("nolock", p)),
            "base": ("127.0.0.1", self.apache.port, self.apache.url),
        }
        if self.daemon_vi is not None:
            ep["daemon_vi"] = ("127.0.0.1", self.daemon_vi.port,
                               self.daemon_vi.url)
        return ep

    def warm(self, path, daemons=("daemon",)):
        """Fetch path once through the daemons named and nginx proxy_cache,
        and check that the next request is a hit in each."""
        ep = self.endpoints()
        for name in tuple(daemons) + ("lock",):
            host, port, _ = ep[name]
            for attempt in range(2):
                dl = fetch_together(host, port, [path])[0]
                if not dl.done or dl.status != 200:
                    raise RuntimeError("warming %s via %s: status %s"
                                       % (path, name, dl.status))
        time.sleep(0.3)
        st, h = http_head(ep["lock"][2](path))
        if h.get("x-cache-status") != "HIT":
            self.notes.append("nginx: %s not a HIT after warming (%s)"
                              % (path, h.get("x-cache-status")))
        for name in daemons:
            d = self.daemon if name == "daemon" else self.daemon_vi
            lines = [l for l in d.log_text().splitlines()
                     if '"GET %s ' % path in l]
            if not any(" HIT " in l for l in lines):
                self.notes.append("%s: %s not a HIT after warming: %s"
                                  % (name, path,
                                     lines[-1] if lines else "no log"))

    # -- 1: hot hits --

    def bench_hot(self):
        p = self.p
        say("1 hot hits: warming /hot.bin")
        self.warm("/hot.bin")
        ep = self.endpoints()
        res = {}
        for rep in range(p["reps_wrk"]):
            for c in p["hot_clients"]:
                for name in ("daemon", "static", "lock"):
                    r = wrk(ep[name][2]("/hot.bin"), c, p["hot_secs"])
                    mbps = r["bytes"] / r["duration_us"]   # bytes/us = MB/s
                    res.setdefault((name, c), []).append(mbps)
                    self.check_wrk(name, "hot", r)
            say("1 hot hits: rep %d done" % (rep + 1))
        self.results["hot"] = {k: Stat(v) for k, v in res.items()}

    def check_wrk(self, name, what, r):
        if r["errors"] or r["status_errors"] or r["non2xx"]:
            self.notes.append(
                "%s (%s): wrk saw %d socket errors, %d error statuses, "
                "%d non-2xx/3xx" % (name, what, r["errors"],
                                    r["status_errors"], r["non2xx"]))

    # -- 2 and 6: cold misses --

    def cold_run(self, name, n):
        """n clients of a new cold URL through name, started together.
        Returns a dict of figures for this repetition."""
        host, port, _ = self.endpoints()[name]
        path = self.cold_path(name)
        size = self.p["cold_size"]
        self.log.mark()
        dls = fetch_together(host, port, [path] * n, timeout=180)
        base = self.log.get_bytes(path)
        bad = [d for d in dls if not d.done or d.status != 200
               or d.body != size]
        if bad:
            self.notes.append(
                "%s cold N=%d: %d of %d clients failed (statuses %s)"
                % (name, n, len(bad), n,
                   sorted(set(str(d.status) for d in bad))))
        firsts = [d.t_first for d in dls if d.t_first is not None]
        dones = [d.t_done for d in dls if d.t_done is not None]
        return {
            "base_x": base / size,
            "ttfb": firsts, "done": dones,
            "ttfb_med": statistics.median(firsts) if firsts else float("nan"),
            "ttfb_max": max(firsts) if firsts else float("nan"),
            "spread_ms": (max(firsts) - min(firsts)) * 1000
            if firsts else float("nan"),
            "last_done": max(dones) if len(dones) == n else float("nan"),
            "failed": len(bad),
        }

    def bench_cold(self):
        p = self.p
        n = p["cold_clients"]
        runs = {}
        for rep in range(p["reps"]):
            runs.setdefault("single", []).append(self.cold_run("base", 1))
            for name in ("daemon", "lock", "nolock"):
                runs.setdefault(name, []).append(self.cold_run(name, n))
                if name == "daemon":
                    wait_tree_idle(self.daemon.proc.pid)
            say("2 cold miss: rep %d done" % (rep + 1))
        self.results["cold"] = runs

    def bench_scaling(self):
        p = self.p
        runs = {}
        for rep in range(p["reps"]):
            for n in p["scale_counts"]:
                runs.setdefault(n, []).append(self.cold_run("daemon", n))
                wait_tree_idle(self.daemon.proc.pid)
            say("6 scaling: rep %d done" % (rep + 1))
        self.results["scaling"] = runs

    # -- 3: small hot files --

    def bench_small(self):
        """wrk against the default daemon (a HEAD to the base on every
        request), the daemon with --validate-interval, and nginx
        proxy_cache hits; also counts the HEADs each daemon sent the
        base per request it answered (from the base's access log)."""
        p = self.p
        ep = self.endpoints()
        daemons = ("daemon", "daemon_vi") if "daemon_vi" in ep else \
            ("daemon",)
        for size in p["small_sizes"]:
            self.warm("/" + self.small_name(size), daemons)
        roots = {"daemon": self.daemon.proc.pid,
                 "lock": self.nginx.proc.pid}
        if self.daemon_vi is not None:
            roots["daemon_vi"] = self.daemon_vi.proc.pid
        res = {}
        for rep in range(p["reps"]):
            for size in p["small_sizes"]:
                path = "/" + self.small_name(size)
                for name in daemons + ("lock",):
                    self.log.mark()
                    with CpuMeter(roots[name], self.apache.proc.pid,
                                  name in daemons) as cpu:
                        cs = context_switches()
                        r = wrk(ep[name][2](path),
                                p["small_conns"], p["small_secs"])
                        cs = context_switches() - cs
                    self.check_wrk(name, "small %d" % size, r)
                    us = cpu.per_request_us(r["requests"])
                    us["total"] = sum(us.values())
                    for who, v in us.items():
                        res.setdefault((name, size, "cpu_" + who),
                                       []).append(v)
                    # the whole machine's, wrk's own included
                    res.setdefault((name, size, "cs"), []).append(
                        cs / max(r["requests"], 1))
                    res.setdefault((name, size, "rps"), []).append(
                        r["requests"] * 1e6 / r["duration_us"])
                    res.setdefault((name, size, "p50"), []).append(
                        r["p50_us"] / 1000.0)
                    res.setdefault((name, size, "p99"), []).append(
                        r["p99_us"] / 1000.0)
                    if name in daemons:
                        heads = self.log.count("HEAD", path)
                        res.setdefault((name, size, "heads"), []).append(
                            heads / max(r["requests"], 1))
            say("3 small files: rep %d done" % (rep + 1))
        self.results["small"] = {k: Stat(v) for k, v in res.items()}

    # -- 4: memory per download --

    def memory_once(self, name, root_pid, n):
        host, port, _ = self.endpoints()[name]
        if name == "daemon":
            wait_tree_idle(root_pid)
        time.sleep(0.3)
        idle = private_kib(proc_tree(root_pid))
        tcp_idle = tcp_mem_kib()
        sd = SlowDownloads(host, port, "/hot.bin", n, self.p["mem_rate"])
        try:
            sd.open()
            active = sd.pump(20.0, until_all_active=True)
            sd.pump(1.0)
            active = sd.active()
            pids = proc_tree(root_pid)
            busy = private_kib(pids)
            tcp = tcp_mem_kib()
            # what one download's process holds, by mapping (a sample)
            kids = [q for q in pids if q != root_pid][:20]
            parts = [private_by_mapping(q) for q in kids]
            parts = [x for x in parts if x]
        finally:
            sd.close()
        if active != n:
            self.notes.append("%s memory N=%d: only %d downloads active"
                              % (name, n, active))
        return {"per_dl": (busy - idle) / max(active, 1),
                "idle": idle, "busy": busy, "procs": len(pids),
                "tcp": tcp - tcp_idle, "child_parts": parts}

    def bench_memory(self):
        p = self.p
        res = {}
        roots = {"daemon": self.daemon.proc.pid, "lock": self.nginx.proc.pid}
        for rep in range(p["reps"]):
            for n in p["mem_counts"]:
                for name in ("daemon", "lock"):
                    r = self.memory_once(name, roots[name], n)
                    res.setdefault((name, n, "per_dl"), []).append(r["per_dl"])
                    res.setdefault((name, n, "tcp"), []).append(r["tcp"])
                    res.setdefault((name, n, "idle"), []).append(r["idle"])
                    if name == "daemon":
                        self.child_parts.setdefault(n, []).extend(
                            r["child_parts"])
            say("4 memory: rep %d done" % (rep + 1))
        wait_tree_idle(self.daemon.proc.pid)
        self.results["memory"] = {k: Stat(v) for k, v in res.items()}

    # -- 5: module overhead --

    def bench_module(self):
        p = self.p
        on_url = self.apache.url6("/tiny.txt")
        off_url = self.plain.url6("/tiny.txt")
        redir_url = self.apache.url6("/hot.bin")
        st, h = http_head(on_url)
        if st != 200:
            self.notes.append("module on: /tiny.txt gave %d" % st)
        st, h = http_head(redir_url)
        want = "127.0.0.1:%d" % self.daemon.port
        if st != 302 or want not in h.get("location", ""):
            self.notes.append("module on: /hot.bin over [::1] gave %d %s, "
                              "not a redirect to the daemon"
                              % (st, h.get("location")))
        res = {}
        for rep in range(p["reps_wrk"]):
            for name, url in (("off", off_url), ("on", on_url),
                              ("redirect", redir_url)):
                r = wrk(url, p["mod_conns"], p["mod_secs"])
                self.check_wrk("apache " + name, "module", r)
                res.setdefault(name, []).append(
                    r["requests"] * 1e6 / r["duration_us"])
            say("5 module overhead: rep %d done" % (rep + 1))
        self.results["module"] = {k: Stat(v) for k, v in res.items()}

    def check_logs(self):
        crash = re.compile(r"(exit signal|AddressSanitizer|runtime error:|"
                           r"double free|stack smashing|Segmentation)")
        logs = [("base Apache", self.apache.error_log_text()),
                ("daemon", self.daemon.log_text())]
        if self.daemon_vi is not None:
            logs.append(("daemon --validate-interval",
                         self.daemon_vi.log_text()))
        for who, text in logs:
            for line in text.splitlines():
                if crash.search(line):
                    self.notes.append("%s log: %s" % (who, line.strip()))
            if who == "base Apache":
                continue
            errs = [l for l in text.splitlines()
                    if "error" in l.lower() and "\"GET " not in l]
            if errs:
                self.notes.append("%s logged %d error lines, first: %s"
                                  % (who, len(errs), errs[0][:200]))


# ---- the report ----------------------------------------------------------

class Row:
    def __init__(self, section, what, unit, ours, anchor_name, anchor,
                 target="", verdict=""):
        self.section, self.what, self.unit = section, what, unit
        self.ours, self.anchor_name, self.anchor = ours, anchor_name, anchor
        self.target, self.verdict = target, verdict

    def cells(self):
        return [self.section, self.what, self.unit, fmt_stat(self.ours),
                self.anchor_name, fmt_stat(self.anchor),
                fmt_ratio(ratio(self.ours, self.anchor)),
                ("%s: %s" % (self.target, self.verdict)) if self.target
                else ""]


HEADER = ["§", "figure", "unit", "mod_offload median (min–max)", "anchor",
          "anchor median (min–max)", "ratio", "target"]


def verdict(ok):
    return "met" if ok else "**NOT met**"


def build_rows(b):
    p, R = b.p, b.results
    rows = []
    if "hot" in R:
        h = R["hot"]
        for c in p["hot_clients"]:
            ours = h[("daemon", c)]
            r = ratio(ours, h[("static", c)])
            tgt = "≥0.95× at 4, 16" if c in (4, 16) else ""
            rows.append(Row("1", "hot hits, %d client%s" % (c, "s" * (c > 1)),
                            "MB/s", ours, "nginx static", h[("static", c)],
                            tgt, verdict(at_least(r, 0.95)) if tgt else ""))
            rows.append(Row("1", "hot hits, %d client%s" % (c, "s" * (c > 1)),
                            "MB/s", ours, "nginx proxy_cache hit",
                            h[("lock", c)]))
    if "cold" in R:
        c = R["cold"]
        n = p["cold_clients"]

        def st(name, key):
            return Stat([r[key] for r in c[name]])
        single = st("single", "last_done")
        ok = all(r["base_x"] == 1.0 and r["failed"] == 0
                 for r in c["daemon"])
        for anchor, label in (("lock", "nginx lock on"),
                              ("nolock", "nginx lock off")):
            rows.append(Row("2", "cold miss, %d clients: base bytes ÷ file"
                            % n, "×", st("daemon", "base_x"), label,
                            st(anchor, "base_x"),
                            "1.00× every run" if anchor == "lock" else "",
                            verdict(ok) if anchor == "lock" else ""))
        spread_ok = all(r["spread_ms"] <= 50 for r in c["daemon"])
        for anchor, label in (("lock", "nginx lock on"),
                              ("nolock", "nginx lock off")):
            rows.append(Row("2", "cold miss: first-byte spread (last − first)",
                            "ms", st("daemon", "spread_ms"), label,
                            st(anchor, "spread_ms"),
                            "≤50 ms every run" if anchor == "lock" else "",
                            verdict(spread_ok) if anchor == "lock" else ""))
        for anchor, label in (("lock", "nginx lock on"),
                              ("nolock", "nginx lock off")):
            rows.append(Row("2", "cold miss: slowest time to first byte", "s",
                            st("daemon", "ttfb_max"), label,
                            st(anchor, "ttfb_max")))
        done_ok = all(r["last_done"] <= 1.05 * single.med
                      for r in c["daemon"])
        rows.append(Row("2", "cold miss: last client done", "s",
                        st("daemon", "last_done"),
                        "one client straight from the base", single,
                        "≤1.05× every run", verdict(done_ok)))
        for anchor, label in (("lock", "nginx lock on"),
                              ("nolock", "nginx lock off")):
            rows.append(Row("2", "cold miss: last client done", "s",
                            st("daemon", "last_done"), label,
                            st(anchor, "last_done")))
    if "small" in R:
        s = R["small"]
        for size in p["small_sizes"]:
            lab = "%d KiB" % (size // KiB) if size < MiB else \
                "%d MiB" % (size // MiB)
            r = ratio(s[("daemon", size, "rps")], s[("lock", size, "rps")])
            rows.append(Row("3", "small hot file %s, %d conns: requests/s"
                            % (lab, p["small_conns"]), "req/s",
                            s[("daemon", size, "rps")],
                            "nginx proxy_cache hit",
                            s[("lock", size, "rps")], "≥0.5×",
                            verdict(at_least(r, 0.5))))
            for q in ("p50", "p99"):
                rows.append(Row("3", "small hot file %s: %s latency"
                                % (lab, q), "ms",
                                s[("daemon", size, q)],
                                "nginx proxy_cache hit",
                                s[("lock", size, q)]))
            if ("daemon", size, "cs") in s:
                rows.append(Row("3", "small hot file %s: context switches "
                                "per request (machine)" % lab, "cs/req",
                                s[("daemon", size, "cs")],
                                "nginx proxy_cache hit",
                                s[("lock", size, "cs")]))
            if ("daemon", size, "cpu_total") in s:
                for who, label, anchor in (
                        ("total", "whole machine", "total"),
                        ("wrk", "wrk", "wrk"),
                        ("server", "the server's processes", "server"),
                        ("base", "the base (its HEAD answers)", "server")):
                    rows.append(Row(
                        "3", "small hot file %s: CPU per request, %s"
                        % (lab, label), "µs",
                        s[("daemon", size, "cpu_" + who)],
                        "nginx proxy_cache hit" +
                        ("" if who == anchor else ", its processes"),
                        s[("lock", size, "cpu_" + anchor)]))
            if ("daemon_vi", size, "rps") not in s:
                continue
            # ValidateInterval: the gain, not judged against the target
            vi = "%s, `--validate-interval %d`" % (lab, VALIDATE_SECS)
            rows.append(Row("3", "small hot file %s: requests/s" % vi,
                            "req/s", s[("daemon_vi", size, "rps")],
                            "nginx proxy_cache hit",
                            s[("lock", size, "rps")]))
            rows.append(Row("3", "small hot file %s: requests/s, gain"
                            % vi, "req/s", s[("daemon_vi", size, "rps")],
                            "offload_daemon, HEAD on every request",
                            s[("daemon", size, "rps")]))
            for q in ("p50", "p99"):
                rows.append(Row("3", "small hot file %s: %s latency"
                                % (vi, q), "ms",
                                s[("daemon_vi", size, q)],
                                "nginx proxy_cache hit",
                                s[("lock", size, q)]))
            # what skipping the HEAD changes, against the default daemon
            for key, label, unit in (
                    ("heads", "base HEADs per request", "HEAD/req"),
                    ("cpu_server", "CPU per request, the server's processes",
                     "µs"),
                    ("cs", "context switches per request (machine)",
                     "cs/req")):
                if ("daemon_vi", size, key) in s:
                    rows.append(Row("3", "small hot file %s: %s"
                                    % (vi, label), unit,
                                    s[("daemon_vi", size, key)],
                                    "offload_daemon, HEAD on every request",
                                    s[("daemon", size, key)]))
    if "memory" in R:
        m = R["memory"]
        for n in p["mem_counts"]:
            ours = m[("daemon", n, "per_dl")]
            rows.append(Row("4", "private memory per download, %d slow "
                            "downloads" % n, "KiB", ours,
                            "nginx growth per connection",
                            m[("lock", n, "per_dl")],
                            "≤64 KiB", verdict(ours.hi <= 64)))
        n = p["mem_tcp_at"]
        if ("daemon", n, "tcp") in m:
            ours, theirs = m[("daemon", n, "tcp")], m[("lock", n, "tcp")]
            rows.append(Row("4", "TCP memory (sockstat) at %d slow "
                            "downloads, both ends" % n, "KiB", ours,
                            "nginx", theirs, "≤1.0×",
                            verdict(at_most(ratio(ours, theirs), 1.0))))
    if "module" in R:
        m = R["module"]
        r = ratio(m["on"], m["off"])
        rows.append(Row("5", "base, 1 KiB file not offloaded, %d conns"
                        % p["mod_conns"], "req/s", m["on"],
                        "module not loaded", m["off"], "≥0.98×",
                        verdict(at_least(r, 0.98))))
        rows.append(Row("5", "base, redirects of an offloaded file", "req/s",
                        m["redirect"], "module not loaded, 1 KiB file",
                        m["off"]))
    if "scaling" in R and "cold" in R:
        sc = R["scaling"]
        single = Stat([r["last_done"] for r in R["cold"]["single"]])
        for n in p["scale_counts"]:
            t = Stat([r["last_done"] for r in sc[n]])
            ok = all(r["last_done"] <= 1.05 * single.med for r in sc[n])
            rows.append(Row("6", "scaling, %d client%s: last client done"
                            % (n, "s" * (n > 1)),
                            "s", t, "one client straight from the base",
                            single, "≤1.05×", verdict(ok)))
            bx = Stat([r["base_x"] for r in sc[n]])
            ok = all(r["base_x"] == 1.0 for r in sc[n])
            rows.append(Row("6", "scaling, %d client%s: base bytes ÷ file"
                            % (n, "s" * (n > 1)),
                            "×", bx, "the file once", Stat([1.0]),
                            "1.00×", verdict(ok)))
    return rows


def table(rows):
    lines = ["| " + " | ".join(HEADER) + " |",
             "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(r.cells()) + " |")
    return "\n".join(lines)


# ---- plots ---------------------------------------------------------------

def gnuplot_terminal():
    try:
        out = subprocess.run(["gnuplot", "-e", "set terminal"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if re.search(r"^\s*pngcairo\s", out, re.M):
        return "pngcairo size 800,480 font 'sans,10'"
    if re.search(r"^\s*png\s", out, re.M):
        return "png size 800,480"
    return None


def plot(b, term):
    """Write the PNGs into docs/img/. Returns the names written."""
    if term is None:
        b.notes.append("gnuplot has no png terminal: no plots")
        return []
    p, R = b.p, b.results
    d = b.sub("plots")
    os.makedirs(IMG_DIR, exist_ok=True)
    made = []

    def run(name, script, data):
        for fname, text in data.items():
            with open(os.path.join(d, fname), "w") as f:
                f.write(text)
        out = os.path.join(IMG_DIR, name)
        full = "set terminal %s\nset output '%s'\ncd '%s'\n%s\n" % (
            term, out, d, script)
        with open(os.path.join(d, name + ".gp"), "w") as f:
            f.write(full)
        r = subprocess.run(["gnuplot", os.path.join(d, name + ".gp")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        if r.returncode != 0:
            b.notes.append("gnuplot %s: %s" % (name, r.stdout.strip()[:300]))
        else:
            made.append(name)

    names = {"daemon": "offload\\_daemon", "static": "nginx static",
             "lock": "nginx proxy\\_cache (lock on)",
             "nolock": "nginx proxy\\_cache (lock off)"}
    if "hot" in R:
        rows = []
        for c in p["hot_clients"]:
            s = [R["hot"][(k, c)] for k in ("daemon", "static", "lock")]
            rows.append("%d " % c + " ".join(
                "%.1f %.1f %.1f" % (x.med, x.lo, x.hi) for x in s))
        run("hot.png", """
set title 'Hot hits: %d MiB cached file (median, min-max)'
set xlabel 'concurrent clients'; set ylabel 'MB/s'
set logscale x 2; set xrange [%g:%g]; set yrange [0:*]; set key bottom right
set grid
plot 'hot.dat' u 1:2:3:4 w yerrorlines lw 2 t '%s', \\
     '' u 1:5:6:7 w yerrorlines lw 2 t '%s', \\
     '' u 1:8:9:10 w yerrorlines lw 2 t '%s'
""" % (p["hot_size"] // MiB, min(p["hot_clients"]) * 0.7,
            max(p["hot_clients"]) * 1.4, names["daemon"],
            names["static"], names["lock"]), {"hot.dat": "\n".join(rows)})
    if "cold" in R:
        data, parts = {}, []
        col = {"daemon": 1, "lock": 2, "nolock": 3}
        for name in ("daemon", "lock", "nolock"):
            runs = R["cold"][name]
            # the repetition with the median last-done time
            r = sorted(runs, key=lambda x: x["last_done"])[len(runs) // 2]
            pts = sorted(zip(r["ttfb"], r["done"]))
            data["cold-%s.dat" % name] = "\n".join(
                "%d %.4f %.4f" % (i + 1, a, z) for i, (a, z) in
                enumerate(pts))
            parts.append("'cold-%s.dat' u 1:2 w p pt 7 lc %d t '%s: first "
                         "byte'" % (name, col[name], names[name]))
            parts.append("'cold-%s.dat' u 1:3 w p pt 4 lc %d t '%s: done'"
                         % (name, col[name], names[name]))
        run("cold.png", """
set title 'Cold miss: %d clients of a %d MiB file from a throttled base'
set xlabel 'client (sorted by first byte)'; set ylabel 'seconds after the requests'
set yrange [0:*]; set key outside bottom center horizontal maxrows 3; set grid
plot %s
""" % (p["cold_clients"], p["cold_size"] // MiB, ", ".join(parts)), data)
    if "small" in R:
        rows = []
        vi = ("daemon_vi", p["small_sizes"][0], "rps") in R["small"]
        for size in p["small_sizes"]:
            lab = "%d KiB" % (size // KiB) if size < MiB else \
                "%d MiB" % (size // MiB)
            cols = ["daemon", "daemon_vi", "lock"] if vi else \
                ["daemon", "lock"]
            rows.append('"%s" ' % lab + " ".join(
                "%.0f %.0f %.0f" % (x.med, x.lo, x.hi) for x in
                (R["small"][(k, size, "rps")] for k in cols)))
        titles = [names["daemon"] + ", HEAD on every request"]
        if vi:
            titles.append(names["daemon"] + ", --validate-interval %d"
                          % VALIDATE_SECS)
        titles.append(names["lock"] + " hit")
        parts = ["'small.dat' u %d:%d:%d:xtic(1) t '%s'"
                 % (2 + 3 * i, 3 + 3 * i, 4 + 3 * i, t) if i == 0 else
                 "'' u %d:%d:%d t '%s'" % (2 + 3 * i, 3 + 3 * i, 4 + 3 * i, t)
                 for i, t in enumerate(titles)]
        run("small.png", """
set title 'Small hot files: requests/s, %d connections (median, min-max)'
set style data histograms; set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1; set boxwidth 0.9
set ylabel 'requests/s'; set yrange [0:*]; set grid y
set key top right
plot %s
""" % (p["small_conns"], ", ".join(parts)),
            {"small.dat": "\n".join(rows)})
    if "memory" in R:
        rows = []
        for n in p["mem_counts"]:
            a = R["memory"][("daemon", n, "per_dl")]
            z = R["memory"][("lock", n, "per_dl")]
            rows.append("%d %.1f %.1f %.1f %.1f %.1f %.1f"
                        % (n, a.med, a.lo, a.hi, z.med, z.lo, z.hi))
        run("memory.png", """
set title 'Private memory per active slow download (median, min-max)'
set xlabel 'concurrent slow downloads'; set ylabel 'KiB per download'
set logscale x; set xrange [5:%d]; set yrange [0:*]; set grid
plot 'memory.dat' u 1:2:3:4 w yerrorlines lw 2 t '%s', \\
     '' u 1:5:6:7 w yerrorlines lw 2 t 'nginx (growth per connection)', \\
     64 w l dt 2 lc rgb 'gray' t 'target: 64 KiB'
""" % (max(p["mem_counts"]) * 2, names["daemon"]),
            {"memory.dat": "\n".join(rows)})
    if "scaling" in R and "cold" in R:
        rows = []
        for n in p["scale_counts"]:
            t = Stat([r["last_done"] for r in R["scaling"][n]])
            x = Stat([r["base_x"] for r in R["scaling"][n]])
            rows.append("%d %.3f %.3f %.3f %.3f" % (n, t.med, t.lo, t.hi,
                                                     x.med))
        single = Stat([r["last_done"] for r in R["cold"]["single"]]).med
        run("scaling.png", """
set title 'Scaling: N clients of one cold %d MiB file (median, min-max)'
set xlabel 'concurrent clients'; set ylabel 'last client done (s)'
set y2label 'base bytes / file size'
set logscale x; set xrange [0.7:%d]; set yrange [0:*]; set y2range [0:%g]
set ytics nomirror; set y2tics; set grid; set key bottom right
plot 'scaling.dat' u 1:2:3:4 w yerrorlines lw 2 t 'last client done', \\
     '' u 1:5 axes x1y2 w lp lw 2 pt 6 t 'base bytes / file size', \\
     %.3f w l dt 2 lc rgb 'gray' t 'one client straight from the base'
""" % (p["cold_size"] // MiB, max(p["scale_counts"]) * 1.5,
       max(2.0, 1.2 * max(r["base_x"] for v in R["scaling"].values()
                          for r in v)), single),
            {"scaling.dat": "\n".join(rows)})
    if "module" in R:
        m = R["module"]
        rows = ['"module not loaded" %.0f' % m["off"].med,
                '"OffloadEngine On, declined" %.0f' % m["on"].med,
                '"302 to the daemon" %.0f' % m["redirect"].med]
        run("module.png", """
set title 'Base server: requests/s, %d connections (median)'
set style data histograms; set style fill solid 0.8 border -1
set boxwidth 0.6; set ylabel 'requests/s'; set yrange [0:*]; set grid y
plot 'module.dat' u 2:xtic(1) notitle
""" % p["mod_conns"], {"module.dat": "\n".join(rows)})
    return made


# ---- the machine ---------------------------------------------------------

def first_line(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    commit = first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                            "--untracked-files=no", "--", "offload_daemon.c",
                            "mod_offload.c", "config.h"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("memory", "%.1f GiB" % (mem / 1024 / 1024)),
        ("kernel", platform.release()),
        ("apache2", first_line(["/usr/sbin/apache2", "-v"])),
        ("nginx", first_line([NGINX_BIN, "-v"])),
        ("wrk", first_line(["wrk", "--version"]).split(" Copyright")[0]),
        ("gnuplot", first_line(["gnuplot", "--version"])),
        ("python", platform.python_version()),
        ("mod_offload", "commit %s%s, built with the Makefile's -O2" % (
            commit, " (with local changes)" if dirty else "")),
    ]


def small_cpu_text(s, size):
    """Where a small request's CPU goes, and the ceiling it sets for a
    HEAD per request: what the daemon spends without the HEAD, plus what
    the base spends answering it, as if the HEAD cost the daemon nothing."""
    def med(name, who):
        return s[(name, size, "cpu_" + who)].med

    floor = (med("daemon_vi", "wrk") + med("daemon_vi", "server") +
             med("daemon_vi", "other") + med("daemon", "base"))
    ceiling = med("lock", "total") / floor if floor > 0 else float("nan")
    return (
        "CPU per %d KiB request (all processes, user and system, µs): "
        "with the HEAD, wrk %s, the daemon %s, the base %s, the rest of "
        "the machine %s; nginx proxy_cache hits: wrk %s, nginx %s, the "
        "rest %s. The base's answer to one HEAD costs %s nginx's whole "
        "hit. Even if the HEAD cost the daemon nothing (its processes "
        "spending what they spend with `--validate-interval`, %s), a "
        "request would need %s µs of this machine against nginx's %s: "
        "a ceiling of about %s nginx's requests/s with a HEAD per request "
        "(the target: 0.50×)."
        % (size // KiB, num(med("daemon", "wrk")),
           num(med("daemon", "server")), num(med("daemon", "base")),
           num(med("daemon", "other")), num(med("lock", "wrk")),
           num(med("lock", "server")), num(med("lock", "other")),
           fmt_ratio(med("daemon", "base") / med("lock", "server")
                     if med("lock", "server") > 0 else float("nan")),
           num(med("daemon_vi", "server")), num(floor),
           num(med("lock", "total")), fmt_ratio(ceiling)))


def meaning(b, rows):
    """'What the figures mean': each target of issue 9 met or not, from
    this run's rows, with the cause where this run measured one."""
    p, R = b.p, b.results
    out = []
    by = {}
    for r in rows:
        if r.target:
            by.setdefault(r.section, []).append(r)

    def verdicts(sec):
        rs = by.get(sec, [])
        bad = [r for r in rs if r.verdict != "met"]
        return rs, bad

    def wide(st):
        return st.med > 0 and (st.hi - st.lo) / st.med > 0.3

    def fig(r):
        return "%s: %s %s, %s%s" % (
            r.what, num(r.ours.med), r.unit,
            fmt_ratio(ratio(r.ours, r.anchor)),
            " (min–max over 30%% of the median: disturbed?)"
            if wide(r.ours) or wide(r.anchor) else "")

    names = {"1": "Hot hits (≥0.95× nginx static at 4 and 16 clients)",
             "2": "Cold miss shared (1.00× the file, first bytes within "
                  "50 ms, done within 5%)",
             "3": "Small hot files (≥0.5× nginx proxy_cache hits, judged "
                  "on the default daemon: a HEAD to the base on every "
                  "request)",
             "4": "Memory per download (≤64 KiB private; TCP memory no "
                  "higher than nginx's)",
             "5": "Module overhead (≥0.98× requests/s with the module on)",
             "6": "Scaling (1.00× the file, done within 5%, at every N)"}
    for sec in ("1", "2", "6", "3", "4", "5"):
        rs, bad = verdicts(sec)
        if not rs:
            continue
        if not bad:
            line = "- **%s: met.**" % names[sec]
        else:
            line = "- **%s: not met** — %s." % (
                names[sec], "; ".join(fig(r) for r in bad))
        extra = []
        if sec == "3" and "small" in R:
            s = R["small"]
            for size in p["small_sizes"]:
                if ("daemon_vi", size, "rps") not in s:
                    continue
                lab = "%d KiB" % (size // KiB) if size < MiB else \
                    "%d MiB" % (size // MiB)
                extra.append(
                    "%s: `--validate-interval %d` gives %s req/s, %s the "
                    "default daemon and %s nginx proxy_cache hits, with "
                    "%s base HEADs per request against %s"
                    % (lab, VALIDATE_SECS,
                       num(s[("daemon_vi", size, "rps")].med),
                       fmt_ratio(ratio(s[("daemon_vi", size, "rps")],
                                       s[("daemon", size, "rps")])),
                       fmt_ratio(ratio(s[("daemon_vi", size, "rps")],
                                       s[("lock", size, "rps")])),
                       num(s[("daemon_vi", size, "heads")].med),
                       num(s[("daemon", size, "heads")].med)))
            if extra:
                extra = ["The HEAD round trip to the base is the measured "
                         "cost: without it (ValidateInterval, issue 7) "
                         "the same daemon serves " + "; ".join(extra) +
                         ". That figure is the gain, not the target: a "
                         "file changed or protected on the base is seen "
                         "up to %d s late." % VALIDATE_SECS]
            size = p["small_sizes"][0]
            if ("daemon_vi", size, "cs") in s:
                extra.append(
                    "Per %d KiB request the machine switched tasks %s "
                    "times with the HEAD, %s without it and %s for nginx: "
                    "the HEAD wakes the base's listener, then one of its "
                    "workers, then the daemon's process again, on the "
                    "same 2 cores that serve the hits."
                    % (size // KiB, num(s[("daemon", size, "cs")].med),
                       num(s[("daemon_vi", size, "cs")].med),
                       num(s[("lock", size, "cs")].med)))
            if ("daemon_vi", size, "cpu_total") in s:
                extra.append(small_cpu_text(s, size))
        if sec == "4" and b.child_parts:
            n = max(b.child_parts)
            parts = b.child_parts[n]
            kinds = sorted({k for x in parts for k in x},
                           key=lambda k: -statistics.median(
                               [x.get(k, 0) for x in parts]))
            tot = statistics.median([sum(x.values()) for x in parts])
            desc = ", ".join(
                "%s %s" % (k, num(statistics.median(
                    [x.get(k, 0) for x in parts])))
                for k in kinds
                if statistics.median([x.get(k, 0) for x in parts]) > 0)
            extra.append(
                "Each download is one forked child (fork per connection); "
                "its private pages are what a download costs. Measured at "
                "%d downloads, one child (median of %d sampled) holds %s "
                "KiB private (Private_Clean + Private_Dirty, KiB by "
                "mapping: %s; BSS = the unnamed mapping right after a "
                "file's): "
                "pages written after fork, by the child or by the "
                "parent (a page the parent writes after forking stays "
                "behind as the child's own copy) — the stack, data and "
                "BSS, libc's and the loader's. nginx serves a connection "
                "from a shared worker. The original claimed about 120 KB "
                "per request. The TCP memory is that of both ends: the "
                "daemon's NotSentLowat (default 2M) caps what the kernel "
                "queues unsent for one client; nginx leaves the kernel's "
                "limit (tcp_wmem, 4 MiB)." % (n, len(parts), num(tot), desc))
        if sec == "5" and "module" in R:
            m = R["module"]
            extra.append("Module on %s (min–max %s–%s), module not loaded "
                         "%s (%s–%s) req/s; the cause of the difference "
                         "was not measured."
                         % (num(m["on"].med), num(m["on"].lo),
                            num(m["on"].hi), num(m["off"].med),
                            num(m["off"].lo), num(m["off"].hi))
                         if bad else "")
        extra = [e for e in extra if e]
        if extra:
            line += " " + " ".join(extra)
        out.append(line)
    return "\n".join(out)


def write_doc(b, rows, plots, elapsed):
    p = b.p
    mode = "quick (`make bench QUICK=1`)" if b.quick else "full (`make bench`)"
    out = []
    out.append("# Benchmarks\n")
    out.append("mod_offload's offload host (`offload_daemon`) side by side "
               "with nginx on the same machine, with the same files, in one "
               "run. Generated by `bench/run.py`; every figure is the median "
               "of %d repetitions (%d for hot hits and module overhead) "
               "with min and max, next to an anchor measured in the same "
               "run, and the ratio of the medians (mod_offload ÷ anchor); "
               "the systems take turns within each repetition.\n"
               % (p["reps"], p["reps_wrk"]))
    out.append("This file was written by a %s run on %s; the run took "
               "%.0f s.\n" % (mode, time.strftime("%Y-%m-%d"), elapsed))
    out.append("## Results\n")
    out.append(table(rows) + "\n")
    if b.notes:
        out.append("Seen during the run:\n")
        for n in b.notes:
            out.append("- " + n.replace("|", "\\|"))
        out.append("")
    out.append("## What the figures mean\n")
    out.append(meaning(b, rows) + "\n")
    for name, cap in (("hot.png", "Hot hits"), ("cold.png", "Cold miss"),
                      ("small.png", "Small hot files"),
                      ("memory.png", "Memory per download"),
                      ("module.png", "Module overhead"),
                      ("scaling.png", "Scaling")):
        if name in plots:
            out.append("![%s](img/%s)\n" % (cap, name))
    out.append("## What is measured\n")
    out.append("""Everything runs on 127.0.0.1: the base is a private Apache (`tests/harness.py`) with
mod_offload loaded (`OffloadEngine On`, `OffloadHost` the daemon); `offload_daemon
--base <that Apache> %s` (every client here has the address 127.0.0.1, so
the per-client cap on simultaneous downloads of one URL is off); one nginx (`bench/nginx.conf.in`,
%d workers, `sendfile on`) with three servers: the base's docroot served
statically, `proxy_cache` in front of the base with `proxy_cache_lock on` (lock
timeouts at their defaults), and the same with `proxy_cache_lock off`.

1. **Hot hits**: a %d MiB file already cached by the daemon and by nginx
   proxy_cache; `wrk -c N` (N = %s, at most 2 threads) for %d s; MB/s = body and
   header bytes read ÷ duration (10^6 bytes). The daemon HEADs the base on every
   request (its default, ValidateInterval 0).
2. **Cold miss shared**: a %d MiB file under `/slow/`, where the base sends at
   most %d KiB/s per connection (mod_ratelimit), so one fetch takes about %.0f s.
   Each repetition uses a new URL (a hard link), so it is a miss everywhere. %d
   clients connect, then send their requests at the same moment (one Python
   event loop, `bench/run.py`). Base bytes = the `%%B` of every GET of that URL
   in the base's access log ÷ file size. First byte = first body byte. The
   anchor for "done" is one client fetching the file straight from the base.
3. **Small hot files**: %s files, cached, `wrk -t2 -c%d` for %d s, requests/s
   and wrk's p50/p99 latency, against nginx proxy_cache hits (lock on). The
   target is judged on the daemon as above (a HEAD to the base on every
   request). A second daemon with the same settings plus `--validate-interval
   %d` (its own cache, warmed the same way) shows the gain when hits within
   that many seconds of the last validation skip the HEAD; the base's access
   log gives the HEADs each daemon sent per request answered, and
   `/proc/stat` the machine's context switches per request (wrk's own
   included) during each server's run. CPU per request is user + system
   time over the run ÷ requests, for wrk (its rusage), the server's processes
   and the base's (utime, stime and those of reaped children, from
   `/proc/PID/stat`), and the rest of the machine (busy time in `/proc/stat`
   minus those three). The ceiling for a HEAD per request is nginx's CPU per
   request ÷ (the `--validate-interval` daemon's wrk, daemon and rest + the
   base's CPU per HEAD): what the machine could do if the HEAD cost the
   daemon nothing. On loopback the kernel often does a packet's receive work
   in the sender's time, so how wrk and a server split their sum depends on
   who sends when; the whole machine's figure does not.
4. **Memory per download**: N = %s downloads of the hot file, each read at %d
   KiB/s by the client (a rate-limited reader, `bench/run.py`). Private memory =
   Private_Clean + Private_Dirty from `/proc/PID/smaps_rollup`, summed over the
   server's processes (the daemon or nginx master and all their descendants, from
   `/proc/*/stat`), with the downloads active minus idle, ÷ N. TCP memory is the
   growth of `mem` in `/proc/net/sockstat` at %d downloads: both ends of every
   connection are on this machine, so it counts the client's buffers too (the
   same client for both servers).
5. **Module overhead**: the base Apache (module loaded, `OffloadEngine On`)
   against a second Apache with the same configuration but the module not loaded,
   `wrk -t2 -c%d` for %d s over [::1] (not an offload host's address) on a 1 KiB
   file that the module declines (below `OffloadMinSize`); and the same Apache
   answering 302 redirects for the hot file.
6. **Scaling**: N = %s clients of one cold file (as in 2) through the daemon:
   when the last client is done, and base bytes ÷ file size.
""" % (" ".join(daemon_args()), os.cpu_count() or 1, p["hot_size"] // MiB,
       ", ".join(map(str, p["hot_clients"])), p["hot_secs"],
       p["cold_size"] // MiB, p["cold_rate_kib"],
       p["cold_size"] / KiB / p["cold_rate_kib"], p["cold_clients"],
       " and ".join("%d KiB" % (s // KiB) for s in p["small_sizes"]),
       p["small_conns"], p["small_secs"], VALIDATE_SECS,
       ", ".join(map(str, p["mem_counts"])), p["mem_rate"] // KiB,
       p["mem_tcp_at"], p["mod_conns"], p["mod_secs"],
       ", ".join(map(str, p["scale_counts"]))))
    out.append("Targets (issue 9): hot hits ≥0.95× nginx static at 4 and 16 "
               "clients; cold miss: the base sends exactly 1.00× the file, "
               "every first byte within 50 ms of the first, every client done "
               "within 5% of a single fetch; ≤64 KiB private memory per "
               "download and TCP memory no higher than nginx's; ≥0.98× "
               "requests/s with the module on; small hot files ≥0.5× nginx "
               "proxy_cache hits.\n")
    out.append("## How to reproduce\n")
    out.append("""```sh
make bench           # full suite, at most 10 minutes on 2 cores
make bench QUICK=1   # smaller files, fewer client counts: at most 2 minutes
```

`make bench` installs the Debian packages it needs (nginx-light, wrk,
gnuplot-nox, apache2-utils, plus the build and test dependencies), builds with
`-O2`, runs `bench/run.py`, prints the table and rewrites this file and the
plots in `docs/img/`. Servers, logs and caches live in `.run/bench/`; every
server is stopped by its PID at the end, also on Ctrl-C
(`bench/run.py --keep` keeps the files for a look at the logs).
""")
    out.append("## Machine\n")
    out.append("| | |\n|---|---|")
    for k, v in machine():
        out.append("| %s | %s |" % (k, v.replace("|", "\\|")))
    out.append("")
    with open(DOC, "w") as f:
        f.write("\n".join(out))


# ---- main ----------------------------------------------------------------

def on_term(sig, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller files, fewer client counts (≤ 2 minutes)")
    ap.add_argument("--keep", action="store_true",
                    help="keep files, caches and logs in .run/bench")
    ap.add_argument("--only", default="hot,cold,scaling,small,memory,module",
                    help="comma-separated sections to run (for development)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    for tool in ("wrk", NGINX_BIN, "gnuplot"):
        if shutil.which(tool) is None:
            sys.exit("bench: %s not found (make bench-deps)" % tool)
    for f in (harness.MODULE_SO, harness.DAEMON_BIN):
        if not os.path.exists(f):
            sys.exit("bench: %s missing (make)" % f)
    prof = PROFILES["quick" if args.quick else "full"]
    only = set(args.only.split(","))
    b = Bench(prof, args.quick)
    start = time.monotonic()
    load = OtherLoad()
    load.start()
    try:
        b.start()
        for name, fn in (("hot", b.bench_hot), ("cold", b.bench_cold),
                         ("scaling", b.bench_scaling),
                         ("small", b.bench_small),
                         ("memory", b.bench_memory),
                         ("module", b.bench_module)):
            if name in only:
                load.section = {"hot": "§1", "cold": "§2", "scaling": "§6",
                                "small": "§3", "memory": "§4",
                                "module": "§5"}[name]
                fn()
                load.section = None
        b.check_logs()
    except KeyboardInterrupt:
        say("interrupted: stopping the servers")
        b.stop()
        return 130
    finally:
        b.stop()
        if not args.keep:
            for sub in ("base/htdocs", "plain/htdocs", "daemon/cache",
                        "nginx/nginx-cache-lock", "nginx/nginx-cache-nolock"):
                shutil.rmtree(os.path.join(b.run_dir, sub),
                              ignore_errors=True)
    elapsed = time.monotonic() - start
    load.stop()
    b.notes.extend(load.notes())
    rows = build_rows(b)
    plots = plot(b, gnuplot_terminal())
    write_doc(b, rows, plots, elapsed)
    print(table(rows))
    if b.notes:
        print("\nSeen during the run:")
        for n in b.notes:
            print("- " + n)
    print("\n%s run: %.0f s. Wrote %s and %d plots in %s."
          % ("quick" if args.quick else "full", elapsed,
             os.path.relpath(DOC, REPO), len(plots),
             os.path.relpath(IMG_DIR, REPO)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
