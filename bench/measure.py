#!/usr/bin/python3
"""bench/measure.py -- measure mod_offload side by side with nginx, on
loopback, and write every raw figure to a results file (JSON).

One run starts, on 127.0.0.1 and with the same files:

  base      a private Apache (tests/harness.py) with mod_offload loaded,
            /slow/ throttled with mod_ratelimit
  daemon    offload_daemon --base <that Apache>, and a second one with
            --validate-interval (small hot files only)
  nginx     one nginx (config from bench/nginx.conf.in) with three servers:
            static   the base's docroot served with sendfile
            lock     proxy_cache in front of the base, proxy_cache_lock on
            nolock   the same with proxy_cache_lock off
  plain     a second Apache without the module (module overhead only)

and measures hot hits, cold-miss sharing, small hot files, memory per
download, module overhead and scaling, each repeated, the systems taking
turns within each repetition. bench/report.py turns the results file into
docs/benchmarks.md and the plots.

    /usr/bin/python3 bench/measure.py [--quick] [--keep] [--out FILE]

Every server is stopped by PID at the end, also on Ctrl-C.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import harness  # noqa: E402
from clients import fetch_together, http_head, SlowDownloads, wrk  # noqa
from procs import (CpuMeter, OtherLoad, context_switches,  # noqa: E402
                   private_by_mapping, private_kib, proc_tree, tcp_mem_kib,
                   wait_tree_idle)
from servers import NGINX_BIN, LogTail, Nginx  # noqa: E402

KiB = 1024
MiB = 1024 * 1024
RESULTS = os.path.join(harness.RUN_ROOT, "bench", "results.json")

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
# 500 downloads at once; and since every client here has the same address
# (127.0.0.1, standing in for many clients), no per-client cap on
# simultaneous downloads of one URL.
DAEMON_ARGS = ["--max-clients", "1000", "--max-dupe-downloads", "0"]
DAEMONS = ("daemon", "daemon_vi")
# section name -> its number in the report
SECTIONS = {"hot": "§1", "cold": "§2", "scaling": "§6", "small": "§3",
            "memory": "§4", "module": "§5"}

T0 = time.monotonic()


def say(msg):
    """Progress on stderr."""
    sys.stderr.write("[bench %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def record(tree, keys, value):
    """Append value to the list at tree[k1][k2]...; keys become strings,
    as JSON has them."""
    for k in keys[:-1]:
        tree = tree.setdefault(str(k), {})
    tree.setdefault(str(keys[-1]), []).append(value)


def median_or_nan(values):
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def small_name(size):
    """The docroot name of the small file of size bytes."""
    return "small-%dk.bin" % (size // KiB)


class Bench:
    """The servers of one run and the figures measured against them."""

    def __init__(self, prof):
        self.p = prof
        self.results = {}
        self.notes = []         # anomalies seen while measuring
        self.servers = []
        self.run_dir = harness.make_run_dir("bench")
        self.cold_n = 0

    # -- set-up --

    def sub(self, name):
        """A directory of the run, readable by Apache's user."""
        d = os.path.join(self.run_dir, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        return d

    def make_servers(self):
        """The base, the plain Apache and both daemons (not started)."""
        self.apache = harness.Apache(self.sub("base"))
        self.daemon = harness.Daemon(self.sub("daemon"), self.apache.base_url,
                                     args=DAEMON_ARGS)
        self.apache.conf_extra = "\n".join([
            "<Directory %s>" % self.apache.docroot,
            "    OffloadEngine On",
            "    OffloadHost 127.0.0.1:%d" % self.daemon.port,
            "</Directory>",
            "<Location /slow/>",
            "    SetOutputFilter RATE_LIMIT",
            "    SetEnv rate-limit %d" % self.p["cold_rate_kib"],
            "</Location>",
        ])
        self.plain = harness.Apache(self.sub("plain"), offload=False)
        # hits within VALIDATE_SECS of the last validation skip the HEAD
        self.daemon_vi = harness.Daemon(
            self.sub("daemon-vi"), self.apache.base_url,
            args=DAEMON_ARGS + ["--validate-interval", str(VALIDATE_SECS)])

    def write_files(self):
        """The hot, small, tiny and throttled cold files."""
        p, docroot = self.p, self.apache.docroot
        say("writing files (hot file %d MiB)" % (p["hot_size"] // MiB))
        harness.write_file(os.path.join(docroot, "hot.bin"), p["hot_size"], 1)
        for size in p["small_sizes"]:
            harness.write_file(os.path.join(docroot, small_name(size)),
                               size, 2)
        for root in (docroot, self.plain.docroot):
            harness.write_file(os.path.join(root, "tiny.txt"), TINY_SIZE, 3)
        slow = os.path.join(docroot, "slow")
        harness.write_file(os.path.join(slow, "cold.bin"), p["cold_size"], 4)
        os.chmod(slow, 0o755)

    def start(self):
        """Write the files, start every server, say where they listen."""
        self.make_servers()
        self.write_files()
        for srv in (self.apache, self.plain, self.daemon, self.daemon_vi):
            self.servers.append(srv)
            srv.start()
        self.nginx = Nginx(self.sub("nginx"), self.apache.docroot,
                           self.apache.port)
        self.servers.append(self.nginx)
        self.nginx.start()
        self.log = LogTail(self.apache.access_log)
        say("servers up: base :%d, daemon :%d, daemon --validate-interval "
            "%d :%d, nginx static :%d lock :%d nolock :%d, plain Apache :%d"
            % (self.apache.port, self.daemon.port, VALIDATE_SECS,
               self.daemon_vi.port, self.nginx.ports["static"],
               self.nginx.ports["lock"], self.nginx.ports["nolock"],
               self.plain.port))

    def stop(self):
        """Stop every server by PID, and kill (and note) any child that
        outlived its parent."""
        for srv in reversed(self.servers):
            pids = []
            if getattr(srv, "proc", None) is not None:
                pids = proc_tree(srv.proc.pid)[1:]
            try:
                srv.stop()
            except Exception as e:     # keep stopping the others
                say("stopping %s: %s" % (type(srv).__name__, e))
            self.kill_leftovers(type(srv).__name__, pids)
        self.servers = []

    def kill_leftovers(self, who, pids):
        """Kill what is left of pids, noting each one that was there."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.notes.append("%s: process %d outlived its parent"
                              % (who, pid))

    def remove_files(self):
        """Drop the docroots and caches (the logs stay)."""
        for sub in ("base/htdocs", "plain/htdocs", "daemon/cache",
                    "daemon-vi/cache", "nginx/nginx-cache-lock",
                    "nginx/nginx-cache-nolock"):
            shutil.rmtree(os.path.join(self.run_dir, sub), ignore_errors=True)

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
        def on_nginx(which):
            return lambda p: self.nginx.url(which, p)
        ep = {name: ("127.0.0.1", self.nginx.ports[name], on_nginx(name))
              for name in ("static", "lock", "nolock")}
        ep["daemon"] = ("127.0.0.1", self.daemon.port, self.daemon.url)
        ep["daemon_vi"] = ("127.0.0.1", self.daemon_vi.port,
                           self.daemon_vi.url)
        ep["base"] = ("127.0.0.1", self.apache.port, self.apache.url)
        return ep

    def daemon_named(self, name):
        return self.daemon if name == "daemon" else self.daemon_vi

    # -- warming --

    def warm(self, path, daemons=("daemon",)):
        """Fetch path twice through the daemons named and nginx
        proxy_cache, and note where the next request is not a hit."""
        ep = self.endpoints()
        for name in tuple(daemons) + ("lock",):
            host, port, _ = ep[name]
            for attempt in range(2):
                dl = fetch_together(host, port, [path])[0]
                if not dl.done or dl.status != 200:
                    raise RuntimeError("warming %s via %s: status %s"
                                       % (path, name, dl.status))
        time.sleep(0.3)
        self.check_nginx_hit(path)
        for name in daemons:
            self.check_daemon_hit(name, path)

    def check_nginx_hit(self, path):
        """Note when nginx proxy_cache does not answer path as a HIT."""
        st, h = http_head(self.endpoints()["lock"][2](path))
        if h.get("x-cache-status") != "HIT":
            self.notes.append("nginx: %s not a HIT after warming (%s)"
                              % (path, h.get("x-cache-status")))

    def check_daemon_hit(self, name, path):
        """Note when the daemon name's log shows no HIT for path."""
        lines = [line for line in
                 self.daemon_named(name).log_text().splitlines()
                 if '"GET %s ' % path in line]
        if not any(" HIT " in line for line in lines):
            self.notes.append("%s: %s not a HIT after warming: %s"
                              % (name, path,
                                 lines[-1] if lines else "no log"))

    def check_wrk(self, name, what, r):
        """Note wrk's socket errors and error statuses."""
        if r["errors"] or r["status_errors"] or r["non2xx"]:
            self.notes.append(
                "%s (%s): wrk saw %d socket errors, %d error statuses, "
                "%d non-2xx/3xx" % (name, what, r["errors"],
                                    r["status_errors"], r["non2xx"]))

    # -- 1: hot hits --

    def bench_hot(self):
        """MB/s of wrk against a cached file: daemon, nginx static and
        proxy_cache hits, at each client count."""
        p = self.p
        say("1 hot hits: warming /hot.bin")
        self.warm("/hot.bin")
        ep = self.endpoints()
        res = self.results["hot"] = {}
        for rep in range(p["reps_wrk"]):
            for c in p["hot_clients"]:
                for name in ("daemon", "static", "lock"):
                    r = wrk(ep[name][2]("/hot.bin"), c, p["hot_secs"])
                    self.check_wrk(name, "hot", r)
                    # bytes/µs = MB/s
                    record(res, (name, c), r["bytes"] / r["duration_us"])
            say("1 hot hits: rep %d done" % (rep + 1))

    # -- 2 and 6: cold misses --

    def cold_run(self, name, n):
        """n clients of a new cold URL through name, started together.
        Returns the figures of this repetition."""
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
            "ttfb_med": median_or_nan(firsts),
            "ttfb_max": max(firsts) if firsts else float("nan"),
            "spread_ms": (max(firsts) - min(firsts)) * 1000
            if firsts else float("nan"),
            "last_done": max(dones) if len(dones) == n else float("nan"),
            "failed": len(bad),
        }

    def bench_cold(self):
        """One client from the base, then n clients through the daemon and
        nginx with the lock on and off, per repetition."""
        p = self.p
        runs = self.results["cold"] = {}
        for rep in range(p["reps"]):
            runs.setdefault("single", []).append(self.cold_run("base", 1))
            for name in ("daemon", "lock", "nolock"):
                runs.setdefault(name, []).append(
                    self.cold_run(name, p["cold_clients"]))
                if name == "daemon":
                    wait_tree_idle(self.daemon.proc.pid)
            say("2 cold miss: rep %d done" % (rep + 1))

    def bench_scaling(self):
        """Cold runs through the daemon at each client count."""
        p = self.p
        runs = self.results["scaling"] = {}
        for rep in range(p["reps"]):
            for n in p["scale_counts"]:
                runs.setdefault(str(n), []).append(self.cold_run("daemon", n))
                wait_tree_idle(self.daemon.proc.pid)
            say("6 scaling: rep %d done" % (rep + 1))

    # -- 3: small hot files --

    def small_once(self, name, path, root):
        """One wrk run of path against name: requests/s, latencies, CPU
        and context switches per request, and (for a daemon) the HEADs it
        sent the base per request it answered."""
        p = self.p
        self.log.mark()
        with CpuMeter(root, self.apache.proc.pid, name in DAEMONS) as cpu:
            cs = context_switches()
            r = wrk(self.endpoints()[name][2](path),
                    p["small_conns"], p["small_secs"])
            cs = context_switches() - cs
        self.check_wrk(name, "small %s" % path, r)
        reqs = max(r["requests"], 1)
        us = cpu.per_request_us(r["requests"])
        us["total"] = sum(us.values())
        out = {"cpu_" + who: v for who, v in us.items()}
        out.update({
            "cs": cs / reqs,    # the whole machine's, wrk's own included
            "rps": r["requests"] * 1e6 / r["duration_us"],
            "p50": r["p50_us"] / 1000.0, "p99": r["p99_us"] / 1000.0})
        if name in DAEMONS:
            out["heads"] = self.log.count("HEAD", path) / reqs
        return out

    def bench_small(self):
        """wrk against the default daemon (a HEAD to the base on every
        request), the daemon with --validate-interval, and nginx
        proxy_cache hits, for each small file."""
        p = self.p
        for size in p["small_sizes"]:
            self.warm("/" + small_name(size), DAEMONS)
        roots = {"daemon": self.daemon.proc.pid,
                 "daemon_vi": self.daemon_vi.proc.pid,
                 "lock": self.nginx.proc.pid}
        res = self.results["small"] = {}
        for rep in range(p["reps"]):
            for size in p["small_sizes"]:
                for name in DAEMONS + ("lock",):
                    figs = self.small_once(name, "/" + small_name(size),
                                           roots[name])
                    for key, v in figs.items():
                        record(res, (name, size, key), v)
            say("3 small files: rep %d done" % (rep + 1))

    # -- 4: memory per download --

    def memory_once(self, name, root_pid, n):
        """n slow downloads of the hot file through name: private memory
        per active download, idle memory, TCP memory growth, and what a
        sample of the daemon's children hold by mapping."""
        host, port, _ = self.endpoints()[name]
        if name == "daemon":
            wait_tree_idle(root_pid)
        time.sleep(0.3)
        idle = private_kib(proc_tree(root_pid))
        tcp_idle = tcp_mem_kib()
        sd = SlowDownloads(host, port, "/hot.bin", n, self.p["mem_rate"])
        try:
            sd.open()
            sd.pump(20.0, until_all_active=True)
            sd.pump(1.0)
            active = sd.active()
            pids = proc_tree(root_pid)
            busy = private_kib(pids)
            tcp = tcp_mem_kib()
            kids = [q for q in pids if q != root_pid][:20]
            parts = [x for x in map(private_by_mapping, kids) if x]
        finally:
            sd.close()
        if active != n:
            self.notes.append("%s memory N=%d: only %d downloads active"
                              % (name, n, active))
        return {"per_dl": (busy - idle) / max(active, 1), "idle": idle,
                "tcp": tcp - tcp_idle, "child_parts": parts}

    def bench_memory(self):
        """Memory per download for the daemon and nginx at each count."""
        p = self.p
        res = self.results["memory"] = {}
        parts = self.results["child_parts"] = {}
        roots = {"daemon": self.daemon.proc.pid, "lock": self.nginx.proc.pid}
        for rep in range(p["reps"]):
            for n in p["mem_counts"]:
                for name in ("daemon", "lock"):
                    r = self.memory_once(name, roots[name], n)
                    for key in ("per_dl", "tcp", "idle"):
                        record(res, (name, n, key), r[key])
                    if name == "daemon":
                        parts.setdefault(str(n), []).extend(
                            r["child_parts"])
            say("4 memory: rep %d done" % (rep + 1))
        wait_tree_idle(self.daemon.proc.pid)

    # -- 5: module overhead --

    def check_module_answers(self):
        """The tiny file is served, the hot file redirected to the daemon."""
        st, h = http_head(self.apache.url6("/tiny.txt"))
        if st != 200:
            self.notes.append("module on: /tiny.txt gave %d" % st)
        st, h = http_head(self.apache.url6("/hot.bin"))
        want = "127.0.0.1:%d" % self.daemon.port
        if st != 302 or want not in h.get("location", ""):
            self.notes.append("module on: /hot.bin over [::1] gave %d %s, "
                              "not a redirect to the daemon"
                              % (st, h.get("location")))

    def bench_module(self):
        """requests/s of Apache without the module, with it declining a
        tiny file, and answering redirects."""
        p = self.p
        self.check_module_answers()
        urls = (("off", self.plain.url6("/tiny.txt")),
                ("on", self.apache.url6("/tiny.txt")),
                ("redirect", self.apache.url6("/hot.bin")))
        res = self.results["module"] = {}
        for rep in range(p["reps_wrk"]):
            for name, url in urls:
                r = wrk(url, p["mod_conns"], p["mod_secs"])
                self.check_wrk("apache " + name, "module", r)
                record(res, (name,), r["requests"] * 1e6 / r["duration_us"])
            say("5 module overhead: rep %d done" % (rep + 1))

    # -- logs --

    def check_logs(self):
        """Note crashes in the servers' logs and the daemons' errors."""
        crash = re.compile(r"(exit signal|AddressSanitizer|runtime error:|"
                           r"double free|stack smashing|Segmentation)")
        logs = [("base Apache", self.apache.error_log_text()),
                ("daemon", self.daemon.log_text()),
                ("daemon --validate-interval", self.daemon_vi.log_text())]
        for who, text in logs:
            for line in text.splitlines():
                if crash.search(line):
                    self.notes.append("%s log: %s" % (who, line.strip()))
            if who == "base Apache":
                continue
            errs = [line for line in text.splitlines()
                    if "error" in line.lower() and "\"GET " not in line]
            if errs:
                self.notes.append("%s logged %d error lines, first: %s"
                                  % (who, len(errs), errs[0][:200]))


# ---- the machine ---------------------------------------------------------

def first_line(cmd):
    """The first line a command prints, or "unknown"."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def proc_field(path, prefix):
    """What follows prefix on the first line of path that starts with it."""
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
    return "unknown"


def build_state():
    """The commit measured, and whether the programs had local changes."""
    commit = first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                            "--untracked-files=no", "--", "offload_daemon.c",
                            "mod_offload.c", "config.h"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return "commit %s%s, built with the Makefile's -O2" % (
        commit, " (with local changes)" if dirty else "")


def machine():
    """[(fact, value)] about the machine and the programs measured."""
    mem_kib = int(proc_field("/proc/meminfo", "MemTotal:").split()[0])
    return [
        ("CPU", proc_field("/proc/cpuinfo", "model name").lstrip(": ")),
        ("cores", str(os.cpu_count())),
        ("memory", "%.1f GiB" % (mem_kib / 1024 / 1024)),
        ("kernel", platform.release()),
        ("apache2", first_line(["/usr/sbin/apache2", "-v"])),
        ("nginx", first_line([NGINX_BIN, "-v"])),
        ("wrk", first_line(["wrk", "--version"]).split(" Copyright")[0]),
        ("gnuplot", first_line(["gnuplot", "--version"])),
        ("python", platform.python_version()),
        ("mod_offload", build_state()),
    ]


# ---- main ----------------------------------------------------------------

def on_term(sig, frame):
    raise KeyboardInterrupt


def check_tools():
    """Exit with a message when a program the run needs is missing."""
    for tool in ("wrk", NGINX_BIN, "gnuplot"):
        if shutil.which(tool) is None:
            sys.exit("bench: %s not found (make bench-deps)" % tool)
    for f in (harness.MODULE_SO, harness.DAEMON_BIN):
        if not os.path.exists(f):
            sys.exit("bench: %s missing (make)" % f)


def run_sections(b, only, load):
    """Start the servers and run the sections named in only, in order."""
    b.start()
    for name, fn in (("hot", b.bench_hot), ("cold", b.bench_cold),
                     ("scaling", b.bench_scaling), ("small", b.bench_small),
                     ("memory", b.bench_memory), ("module", b.bench_module)):
        if name in only:
            load.section = SECTIONS[name]
            fn()
            load.section = None
    b.check_logs()


def results_of(b, mode, elapsed):
    """The results file's content: the run's facts and every figure."""
    out = {"mode": mode, "profile": b.p, "date": time.strftime("%Y-%m-%d"),
           "elapsed": elapsed, "daemon_args": DAEMON_ARGS,
           "validate_secs": VALIDATE_SECS,
           "nginx_workers": os.cpu_count() or 1, "machine": machine(),
           "notes": b.notes}
    out.update(b.results)
    return out


def measure(quick, keep=False, only=tuple(SECTIONS), out=RESULTS):
    """Run the benchmark and write the results file. Returns 0, or 130
    when interrupted."""
    signal.signal(signal.SIGTERM, on_term)
    check_tools()
    mode = "quick" if quick else "full"
    b = Bench(PROFILES[mode])
    start = time.monotonic()
    load = OtherLoad()
    load.start()
    try:
        run_sections(b, set(only), load)
    except KeyboardInterrupt:
        say("interrupted: stopping the servers")
        return 130
    finally:
        b.stop()
        load.stop()
        if not keep:
            b.remove_files()
    b.notes.extend(load.notes())
    with open(out, "w") as f:
        json.dump(results_of(b, mode, time.monotonic() - start), f, indent=1)
        f.write("\n")
    say("wrote %s" % os.path.relpath(out, REPO))
    return 0


def arg_parser(doc):
    """The options measure.py and run.py share."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller files, fewer client counts (≤ 2 minutes)")
    ap.add_argument("--keep", action="store_true",
                    help="keep files, caches and logs in .run/bench")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections to run (for development)")
    ap.add_argument("--results", default=RESULTS,
                    help="the results file to write (%(default)s)")
    return ap


def main():
    args = arg_parser(__doc__).parse_args()
    return measure(args.quick, args.keep, args.only.split(","), args.results)


if __name__ == "__main__":
    sys.exit(main())
