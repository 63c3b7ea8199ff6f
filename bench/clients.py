"""bench/clients.py -- the clients: raw sockets read as fast as possible or
at a rate limit, one plain GET, and wrk with bench/summary.lua.
"""

import os
import re
import selectors
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "summary.lua")


def request_bytes(host, port, path):
    """A GET for path that closes the connection after the answer."""
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
            n = self._take_head(data)
            if n is None:
                return False
        else:
            n = len(data)
        if n > 0 and self.t_first is None:
            self.t_first = t
        self.body += n
        if self.length is not None and self.body >= self.length:
            self.done = True
            self.t_done = t
        return self.done

    def _take_head(self, data):
        """Collect the response head; once it is complete, note status and
        Content-Length and return how many body bytes came with it (None
        while the head is incomplete)."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 65536:
                raise RuntimeError("response head too long")
            return None
        head = bytes(self.head[:end]).decode("latin-1")
        rest = len(self.head) - end - 4
        self.head = bytearray()
        lines = head.split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                self.length = int(v.strip())
        return rest


def connect(host, port):
    """A connected TCP socket with Nagle off."""
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
