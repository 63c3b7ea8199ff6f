"""Real servers for tests, the demo and the benchmark.

Apache: Debian's /usr/sbin/apache2 with a generated config on a free
loopback port, the built mod_offload.so loaded, everything (config, logs,
pid file, runtime dir) under one run directory. The daemon: the built
offload_daemon in the foreground. Both are stopped by PID.

Only the standard library is used, so this runs under Debian's python3.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_SO = os.path.join(REPO, ".libs", "mod_offload.so")
DAEMON_BIN = os.path.join(REPO, "offload_daemon")
APACHE_BIN = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"


def _run_root():
    """Where run directories go: .run/ in the tree, unless Apache's user
    (www-data, when we are root) could not reach it because a directory
    above the tree is closed to others (a clone under /root, say); then
    a directory of the same name under /var/tmp."""
    if os.geteuid() != 0:
        return os.path.join(REPO, ".run")
    d = REPO
    while True:
        if not os.stat(d).st_mode & 0o001:
            return "/var/tmp/mod_offload-%s/.run" % hashlib.sha256(
                REPO.encode()).hexdigest()[:12]
        parent = os.path.dirname(d)
        if parent == d:
            return os.path.join(REPO, ".run")
        d = parent


RUN_ROOT = _run_root()

# Modules every generated Apache config loads (beyond the compiled-in ones).
BASE_MODULES = (
    "mpm_event", "authz_core", "authz_host", "authn_core", "authn_file",
    "auth_basic", "authz_user", "mime", "dir", "alias", "ratelimit",
    "headers", "cgid", "env",
)

# One tab-separated access-log line per request: easy to parse, and it
# records what the tests need to see (offload notes, the bypass header).
ACCESS_FORMAT = ("%h\\t%m\\t%U%q\\t%>s\\t%B\\t%{offload-host}n\\t"
                 "%{offload-declined}n\\t%{X-Mod-Offload-Bypass}i\\t"
                 "%{Range}i\\t%{Via}i\\t%{X-Forwarded-For}i\\t%{Host}i")
ACCESS_FIELDS = ("client", "method", "uri", "status", "bytes",
                 "offload_host", "offload_declined", "bypass", "range",
                 "via", "forwarded_for", "host")


def free_port(host="127.0.0.1"):
    """Return a TCP port that is free on host right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=15.0, step=0.05):
    """Poll pred until it returns a true value; return that value, or the
    last one after timeout seconds. Tests wait on what they can observe,
    never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def children(pid):
    """PIDs of pid's children (pid is single-threaded)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _titled_children(pid, want_fetchers):
    out = []
    for kid in children(pid):
        try:
            with open("/proc/%d/cmdline" % kid, "rb") as f:
                title = f.read()
        except OSError:
            continue
        fetcher = title.startswith(b"offload: fetching")
        if title and fetcher == want_fetchers and \
                not title.startswith(b"offload: scanning"):
            out.append(kid)
    return out


def connection_children(pid):
    """The daemon pid's children that serve a connection: not fetchers or
    the cache scan (told apart by their process titles), not zombies."""
    return _titled_children(pid, False)


def fetchers(pid):
    """The daemon pid's fetchers (they outlive their connection children;
    the daemon is their subreaper). Once none runs, the cache is settled."""
    return _titled_children(pid, True)


def wait_port(host, port, proc=None, timeout=15.0):
    """Wait until host:port accepts connections; fail if proc exits."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with status %s" % proc.returncode)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect((host, port))
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d" % (host, port))


def make_run_dir(name):
    """A fresh directory under .run/ that Apache's user can read."""
    path = os.path.join(RUN_ROOT, name)
    subprocess.run(["rm", "-rf", path], check=True)
    os.makedirs(path)
    p = path
    while True:
        os.chmod(p, 0o755)
        if p == RUN_ROOT:
            break
        p = os.path.dirname(p)
    if not RUN_ROOT.startswith(REPO):
        os.chmod(os.path.dirname(RUN_ROOT), 0o755)
    return path


def write_file(path, size, seed=0):
    """Write size pseudo-random bytes to path; return their sha256 hex."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    block = hashlib.sha256(b"mod_offload %d %s" % (seed, path.encode())).digest()
    chunk = (block * (65536 // len(block) + 1))[:65536]
    counter = 0
    with open(path, "wb") as f:
        left = size
        while left > 0:
            # vary each chunk so that offsets are distinguishable
            piece = counter.to_bytes(8, "big") + chunk[8:]
            piece = piece[:min(left, len(piece))]
            f.write(piece)
            h.update(piece)
            left -= len(piece)
            counter += 1
    os.chmod(path, 0o644)
    return h.hexdigest()


def sha(data):
    """The sha256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_script(path, text):
    """Write an executable script (a CGI program, say) to path."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


# A log line at error level or worse: Apache's "[date] [module:level]"
# and the daemon's "[date] [level]" (log_msg in offload_daemon.c).
ERROR_LINE = re.compile(
    r"^\[[^\]]*\] \[(?:[\w.-]+:)?(error|crit|alert|emerg)\]")


def error_lines(text):
    """The lines of a log text at error level or worse."""
    return [line for line in text.splitlines() if ERROR_LINE.match(line)]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stop_pid(pid, proc=None, timeout=10.0):
    """SIGTERM pid, wait, then SIGKILL. Returns nothing."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait()


class Apache:
    """A private Apache httpd.

    conf_extra is appended at server level (it may hold <Directory>,
    <Location>, Offload* directives ...). With offload=False the module is
    not loaded at all. Files go in self.docroot.
    """

    def __init__(self, run_dir, conf_extra="", offload=True, modules=(),
                 log_level="warn", mpm_conf=""):
        self.run_dir = run_dir
        self.docroot = os.path.join(run_dir, "htdocs")
        os.makedirs(self.docroot, exist_ok=True)
        os.chmod(self.docroot, 0o755)
        self.port = free_port()
        self.conf_path = os.path.join(run_dir, "httpd.conf")
        self.error_log = os.path.join(run_dir, "error.log")
        self.access_log = os.path.join(run_dir, "access.log")
        self.pid_file = os.path.join(run_dir, "httpd.pid")
        # mod_cgid appends ".PID" and cuts the path at the 108 bytes of a
        # socket address (logging an error): short, and named by the port
        # (unique among running servers) rather than by the test
        self.cgid_sock = os.path.join(
            RUN_ROOT if len(RUN_ROOT) < 64 else "/tmp",
            "cgid-%d.sock" % self.port)
        self.conf_extra = conf_extra
        self.offload = offload
        self.modules = tuple(modules)
        self.log_level = log_level
        self.mpm_conf = mpm_conf
        self.proc = None

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base_url + path

    def url6(self, path):
        """The same server over [::1]: a client that is not an offload
        host when the offload daemon runs on 127.0.0.1."""
        return "http://[::1]:%d%s" % (self.port, path)

    def config_text(self):
        lines = ["# generated by tests/harness.py",
                 "ServerRoot %s" % self.run_dir,
                 "DefaultRuntimeDir %s" % self.run_dir,
                 "PidFile %s" % self.pid_file,
                 "Mutex file:%s default" % self.run_dir,
                 "Listen 127.0.0.1:%d" % self.port,
                 "Listen [::1]:%d" % self.port,
                 "ServerName 127.0.0.1:%d" % self.port]
        for m in BASE_MODULES + self.modules:
            lines.append("LoadModule %s_module %s/mod_%s.so"
                         % (m, APACHE_MODULES, m))
        if self.offload:
            lines.append("LoadModule offload_module %s" % MODULE_SO)
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        lines += [
            "ScriptSock %s" % self.cgid_sock,
            "TypesConfig /etc/mime.types",
            "ErrorLog %s" % self.error_log,
            "LogLevel %s" % self.log_level,
            'LogFormat "%s" offload' % ACCESS_FORMAT,
            "CustomLog %s offload" % self.access_log,
            "ServerSignature On",
            "StartServers 1",
            "ServerLimit 4",
            "ThreadsPerChild 25",
            "MaxRequestWorkers 100",
            "Timeout 30",
            self.mpm_conf,
            "DocumentRoot %s" % self.docroot,
            "<Directory />",
            "    AllowOverride None",
            "    Require all denied",
            "</Directory>",
            "<Directory %s>" % self.docroot,
            "    AllowOverride Options AuthConfig",
            "    Require all granted",
            "</Directory>",
            self.conf_extra,
        ]
        return "\n".join(lines) + "\n"

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())

    def configtest(self):
        """Run apache2 -t on the generated config: (exit status, output)."""
        self.write_config()
        p = subprocess.run([APACHE_BIN, "-t", "-f", self.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        return p.returncode, p.stdout

    def start(self):
        self.write_config()
        for p in (self.error_log, self.access_log):
            if os.path.exists(p):
                os.unlink(p)
        self.proc = subprocess.Popen(
            [APACHE_BIN, "-f", self.conf_path, "-DFOREGROUND"],
            stdout=subprocess.DEVNULL, stderr=open(
                os.path.join(self.run_dir, "stderr.log"), "ab"))
        try:
            wait_port("127.0.0.1", self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError("%s\n%s" % (e, self.error_log_text()))
        return self

    def stop(self):
        if self.proc is not None:
            _stop_pid(self.proc.pid, self.proc)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def error_log_text(self):
        text = ""
        for p in (self.error_log, os.path.join(self.run_dir, "stderr.log")):
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    text += f.read()
        return text

    def access_entries(self, wait=0.3):
        """Parsed access-log lines (dicts keyed by ACCESS_FIELDS).

        Apache writes the line after the response is sent; wait a moment
        so that the entry of a just-finished request is there."""
        if wait:
            time.sleep(wait)
        if not os.path.exists(self.access_log):
            return []
        out = []
        with open(self.access_log, errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                parts += [""] * (len(ACCESS_FIELDS) - len(parts))
                entry = dict(zip(ACCESS_FIELDS, parts))
                for k, v in entry.items():
                    if v == "-":
                        entry[k] = ""
                out.append(entry)
        return out


class Daemon:
    """The built offload_daemon in the foreground (-F), on a free port."""

    def __init__(self, run_dir, base_url, args=(), listen_host="127.0.0.1",
                 cache_dir=None, binary=DAEMON_BIN):
        self.run_dir = run_dir
        self.base_url = base_url
        self.host = listen_host
        self.port = free_port(listen_host)
        self.cache_dir = cache_dir or os.path.join(run_dir, "cache")
        os.makedirs(self.cache_dir, exist_ok=True)
        self.args = list(args)
        self.binary = binary
        self.log_path = os.path.join(run_dir, "daemon-%d.log" % self.port)
        self.proc = None

    @property
    def listen(self):
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    @property
    def address(self):
        return "http://%s" % self.listen

    def url(self, path):
        return self.address + path

    def command(self):
        return [self.binary, "-F", "--base", self.base_url,
                "--listen", self.listen, "--cache-dir", self.cache_dir
                ] + self.args

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.host, self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError("%s\n%s" % (e, self.log_text()))
        return self

    def stop(self):
        if self.proc is not None:
            _stop_pid(self.proc.pid, self.proc)
            self.proc = None
            self._log.close()

    def log_text(self):
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()


class FakeBase:
    """A scripted HTTP/1.1 base on 127.0.0.1, one thread per connection.

    handler(method, path, headers) returns a list of actions: bytes to
    send, a float (seconds to sleep) or the string "close". The
    connection is kept open for more requests unless "close" is in it.
    Every request is recorded in self.requests as (method, path, headers).
    """

    def __init__(self, handler):
        self.handler = handler
        self.requests = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.base_url = "http://127.0.0.1:%d" % self.port
        self.stopping = False
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _a = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        c.settimeout(30)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _v = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _s, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                with self.lock:
                    self.requests.append((method, path, headers))
                close = False
                for action in self.handler(method, path, headers):
                    if action == "close":
                        close = True
                    elif isinstance(action, float):
                        time.sleep(action)
                    else:
                        c.sendall(action)
                if close:
                    return
        except OSError:
            return
        finally:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def gets(self, path):
        with self.lock:
            return [r for r in self.requests if r[0] == "GET" and r[1] == path]

    def stop(self):
        self.stopping = True
        # close() alone would leave the socket listening, and answering with
        # this handler, for as long as the accept thread is blocked on it;
        # shutdown() wakes that thread
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
