"""bench/servers.py -- nginx from bench/nginx.conf.in, and the base's
access log read as it grows. Apache and the daemon come from
tests/harness.py.
"""

import os
import subprocess
import time

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
NGINX_BIN = "/usr/sbin/nginx"


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
        """The URL of path on the server named which."""
        return "http://127.0.0.1:%d%s" % (self.ports[which], path)

    def write_conf(self):
        """bench/nginx.conf.in with its @NAME@ fields filled in."""
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

    def start(self):
        """Start nginx and wait for its three ports; returns self."""
        self.write_conf()
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


def settled(measure, settle=10.0):
    """measure() once it has stopped changing for 0.3 s (Apache logs a
    request when it is over), or its last value after settle seconds."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + settle
    while True:
        value = measure()
        if value != last:
            last, stable_since = value, time.monotonic()
        elif time.monotonic() - stable_since > 0.3:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class LogTail:
    """New lines of the base's access log since mark()."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        """Start counting from the log's current end."""
        self.offset = os.path.getsize(self.path) if os.path.exists(
            self.path) else 0

    def entries(self):
        """The log's entries since mark(), as dicts of ACCESS_FIELDS."""
        out = []
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                parts += [""] * (len(harness.ACCESS_FIELDS) - len(parts))
                out.append(dict(zip(harness.ACCESS_FIELDS, parts)))
        return out

    def get_bytes(self, uri):
        """Body bytes the base sent for GETs of uri since mark()."""
        return settled(lambda: sum(
            int(e["bytes"]) if e["bytes"].isdigit() else 0
            for e in self.entries()
            if e["method"] == "GET" and e["uri"] == uri))

    def count(self, method, uri):
        """Requests of method for uri in the log since mark()."""
        return settled(lambda: sum(
            1 for e in self.entries()
            if e["method"] == method and e["uri"] == uri))
