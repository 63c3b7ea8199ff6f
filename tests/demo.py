#!/usr/bin/python3
"""mod_offload demo: a base server and an offload host on this machine.

Starts, under .run/demo/, a private Apache httpd with mod_offload loaded
(the base server) and one offload_daemon (the offload host), both on
loopback, over a generated docroot with a 40 MB file. Downloads the file
twice with curl and shows what happened: the redirect, the first download
fetched from the base and cached, the second served from the cache, and
the bytes compared with the original. Then keeps both servers running
until Ctrl-C.

    /usr/bin/python3 tests/demo.py             (make demo)
    /usr/bin/python3 tests/demo.py --oneshot   (make demo DEMO_ONESHOT=1)

With --oneshot it exits after the sample: 0 if every check passed, 1
otherwise, with what did not.

The client talks to Apache over [::1]: mod_offload never redirects a
client whose address is an offload host's, and the offload host here is
127.0.0.1.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BIG_PATH = "/files/big.bin"
BIG_SIZE = 40 * 1024 * 1024
SMALL_PATH = "/files/small.txt"

# The daemon's access log: Combined Log Format, then the cache status and
# the duration in microseconds.
DAEMON_LINE = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]*)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<cache>\S+) (?P<usec>\d+)$')


class Demo:
    """The servers, the files and the checks of one demo run."""

    def __init__(self, run_name="demo"):
        self.run_dir = harness.make_run_dir(run_name)
        self.apache = None
        self.daemon = None
        self.problems = []
        self.big_sha = None

    # ---- output -------------------------------------------------------

    def rel(self, path):
        """path relative to the repository, for shorter lines."""
        return os.path.relpath(path, harness.REPO)

    def say(self, text=""):
        print(text, flush=True)

    def check(self, ok, good, bad):
        """Record one check; print 'ok' with good or 'FAILED' with bad."""
        if ok:
            self.say("   ok      " + good)
        else:
            self.say("   FAILED  " + bad)
            self.problems.append(bad)
        return ok

    # ---- set-up -------------------------------------------------------

    def make_docroot(self, docroot):
        """The demo files; returns the big file's sha256."""
        sha = harness.write_file(os.path.join(docroot, BIG_PATH[1:]),
                                 BIG_SIZE, seed=1)
        small = os.path.join(docroot, SMALL_PATH[1:])
        with open(small, "w") as f:
            f.write("A small file. It is below OffloadMinSize (5K by "
                    "default),\nso the base server sends it itself.\n")
        os.chmod(small, 0o644)
        os.chmod(os.path.dirname(small), 0o755)
        index = os.path.join(docroot, "index.html")
        with open(index, "w") as f:
            f.write("<!DOCTYPE html>\n<html><head><title>mod_offload demo"
                    "</title></head>\n<body>\n<h1>mod_offload demo</h1>\n"
                    "<ul>\n"
                    '<li><a href="%s">big.bin</a> (%d bytes: redirected to '
                    "the offload host)</li>\n"
                    '<li><a href="%s">small.txt</a> (served here)</li>\n'
                    "</ul>\n</body></html>\n" % (BIG_PATH, BIG_SIZE,
                                                 SMALL_PATH))
        os.chmod(index, 0o644)
        return sha

    def start(self):
        """Generate the docroot and start Apache and the daemon."""
        base_dir = os.path.join(self.run_dir, "base")
        os.makedirs(base_dir)
        os.chmod(base_dir, 0o755)
        self.apache = harness.Apache(base_dir)
        self.big_sha = self.make_docroot(self.apache.docroot)
        self.daemon = harness.Daemon(self.run_dir, self.apache.base_url)
        self.apache.conf_extra = (
            "# the demo's mod_offload settings\n"
            "OffloadEngine On\n"
            "OffloadHost 127.0.0.1:%d\n" % self.daemon.port)
        if not os.path.exists(harness.MODULE_SO):
            raise RuntimeError("%s is missing: run make first"
                               % self.rel(harness.MODULE_SO))
        if not os.path.exists(harness.DAEMON_BIN):
            raise RuntimeError("%s is missing: run make first"
                               % self.rel(harness.DAEMON_BIN))
        self.apache.start()
        self.daemon.start()
        self.say("mod_offload demo")
        self.say("  base server   Apache httpd + mod_offload  %s"
                 % self.apache.url6("/"))
        self.say("  offload host  offload_daemon              %s/"
                 % self.daemon.address)
        self.say("  big file      %s  %d bytes  sha256 %s"
                 % (BIG_PATH, BIG_SIZE, self.big_sha))
        self.say("  run dir       %s  (config, logs, cache)"
                 % self.rel(self.run_dir))
        self.say("  mod_offload   OffloadEngine On, OffloadHost 127.0.0.1:%d"
                 % self.daemon.port)

    def stop(self):
        """Stop both servers by PID (each only if it was started)."""
        for server in (self.daemon, self.apache):
            if server is not None:
                server.stop()

    # ---- looking at the logs -----------------------------------------

    def daemon_entries(self):
        """The daemon's access-log lines, parsed (error lines skipped)."""
        out = []
        for line in self.daemon.log_text().splitlines():
            m = DAEMON_LINE.match(line)
            if m:
                e = m.groupdict()
                e["line"] = line
                out.append(e)
        return out

    def daemon_errors(self):
        return [l for l in self.daemon.log_text().splitlines()
                if l.startswith("[") and "[notice]" not in l]

    def show_base_entries(self, entries):
        for e in entries:
            notes = []
            if e["offload_host"]:
                notes.append("offload-host=%s" % e["offload_host"])
            if e["offload_declined"]:
                notes.append("offload-declined=\"%s\"" % e["offload_declined"])
            if e["bypass"]:
                notes.append("X-Mod-Offload-Bypass: %s" % e["bypass"])
            if e["forwarded_for"]:
                notes.append("X-Forwarded-For: %s" % e["forwarded_for"])
            self.say("     %-10s %-4s %s %s %10s bytes  %s"
                     % (e["client"], e["method"], e["uri"], e["status"],
                        e["bytes"] or "0", "  ".join(notes)))
        if not entries:
            self.say("     (nothing)")

    def wait_published(self, timeout=15.0):
        """Wait for a complete copy in the cache; return its path or None.

        The fetcher renames the copy into place just after the client got
        its last byte, so the demo waits for that before going on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for d, _, files in os.walk(self.daemon.cache_dir):
                for name in files:
                    if re.fullmatch(r"[0-9a-f]{16}", name):
                        return os.path.join(d, name)
            time.sleep(0.05)
        return None

    # ---- the sample --------------------------------------------------

    def curl(self, args):
        """Run curl; returns (exit status, stdout text)."""
        p = subprocess.run(["curl"] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        return p.returncode, p.stdout

    def step_redirect(self):
        url = self.apache.url6(BIG_PATH)
        self.say()
        self.say("1. A GET of the big file at the base server")
        self.say("   $ curl -sS -o /dev/null -D - %s" % url)
        rc, out = self.curl(["-sS", "-o", "/dev/null", "-D", "-", url])
        status, location = "", ""
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("HTTP/"):
                status = line
                self.say("   " + line)
            elif line.lower().startswith("location:"):
                location = line.split(":", 1)[1].strip()
                self.say("   " + line)
            elif line.startswith("curl:"):
                self.say("   " + line)
        want = self.daemon.url(BIG_PATH)
        if " 302" not in status:
            hint = ""
            if " 200" in status:
                hint = ("; mod_offload declined it (offload-declined: "
                        "\"%s\"); if the module does not redirect yet, "
                        "see git log" % self.last_declined(BIG_PATH))
            self.check(False, "", "the base answered %r instead of a 302%s"
                       % (status or "nothing (curl exit %d)" % rc, hint))
            return False
        return self.check(location == want,
                          "302 to the offload host: %s" % want,
                          "302, but Location is %r, not %r" % (location, want))

    def last_declined(self, path):
        for e in reversed(self.apache.access_entries()):
            if e["uri"] == path:
                return e["offload_declined"] or "-"
        return "-"

    def download(self, n, expect_cache):
        """Download the big file with curl -L; check both servers' logs."""
        url = self.apache.url6(BIG_PATH)
        dest = os.path.join(self.run_dir, "download-%d.bin" % n)
        base_before = len(self.apache.access_entries(wait=0))
        daemon_before = len(self.daemon_entries())
        self.say()
        if n == 1:
            self.say("%d. First download: the offload host fetches the file "
                     "from the base and caches it" % (n + 1))
        else:
            self.say("%d. Second download: the offload host serves its "
                     "cached copy" % (n + 1))
        self.say("   $ curl -sS -L -o %s %s" % (self.rel(dest), url))
        t0 = time.monotonic()
        rc, out = self.curl(["-sS", "-L", "-o", dest, "-w",
                             "%{http_code} %{size_download} %{url_effective}",
                             url])
        secs = time.monotonic() - t0
        last = out.strip().splitlines()[-1] if out.strip() else ""
        self.say("   curl: exit %d, %s (%.2f s)" % (rc, last, secs))
        if n == 1:
            published = self.wait_published()
        else:
            published = None
        base = self.apache.access_entries()[base_before:]
        mine = [e for e in self.daemon_entries()[daemon_before:]
                if e["request"].split(" ")[1:2] == [BIG_PATH]]
        self.say("   base server's access log:")
        self.show_base_entries(base)
        self.say("   offload daemon's access log:")
        for e in mine:
            self.say("     " + e["line"])
        if not mine:
            self.say("     (nothing)")
        if published:
            self.say("   cached as %s (%d bytes: 4096 of metadata, then the "
                     "body)" % (self.rel(published),
                                os.path.getsize(published)))

        via_daemon = last.startswith("200 ") and \
            last.split(" ")[-1] == self.daemon.url(BIG_PATH)
        ok = self.check(rc == 0 and via_daemon,
                        "curl got 200 from the offload host after the "
                        "redirect",
                        "download %d: curl exit %d, %r (not a 200 from the "
                        "offload host)" % (n, rc, last))
        fetches = [e for e in base if e["client"] == "127.0.0.1" and
                   e["uri"] == BIG_PATH]
        heads = [e for e in fetches if e["method"] == "HEAD"]
        gets = [e for e in fetches if e["method"] == "GET"]
        statuses = [e["cache"] for e in mine]
        bypass_ok = all(e["bypass"] == "true" for e in fetches)
        if expect_cache == "MISS":
            ok &= self.check(
                statuses == ["MISS"],
                "offload daemon: MISS",
                "download 1: the daemon logged %r, not one MISS" % statuses)
            ok &= self.check(
                len(heads) == 2 and len(gets) == 1 and bypass_ok and
                gets[0]["status"] == "200" and
                gets[0]["bytes"] == str(BIG_SIZE),
                "base: a HEAD, one GET of the body, and a HEAD to confirm "
                "the version before the last bytes, all from the offload "
                "host with X-Mod-Offload-Bypass",
                "download 1: the base saw %d HEAD and %d GET from the offload "
                "host (bypass header on all: %s)"
                % (len(heads), len(gets), bypass_ok))
            ok &= self.check(published is not None,
                             "the copy is complete in the cache",
                             "download 1: no complete copy in the cache")
        else:
            ok &= self.check(
                statuses == ["HIT"],
                "offload daemon: HIT",
                "download 2: the daemon logged %r, not one HIT" % statuses)
            ok &= self.check(
                len(heads) == 1 and not gets and bypass_ok,
                "base: only a HEAD from the offload host (to validate the "
                "copy), no GET",
                "download 2: the base saw %d HEAD and %d GET from the offload "
                "host" % (len(heads), len(gets)))
        return dest

    def step_small(self):
        url = self.apache.url6(SMALL_PATH)
        self.say()
        self.say("4. A small file stays on the base server")
        self.say("   $ curl -sS -o /dev/null -D - %s" % url)
        rc, out = self.curl(["-sS", "-o", "/dev/null", "-D", "-", url])
        status = next((l.strip() for l in out.splitlines()
                       if l.startswith("HTTP/")), "")
        self.say("   " + (status or "curl exit %d" % rc))
        self.check(" 200" in status,
                   "served by the base itself (offload-declined: \"%s\")"
                   % self.last_declined(SMALL_PATH),
                   "small file: the base answered %r, not 200" % status)

    def step_bytes(self, files):
        self.say()
        self.say("5. The bytes")
        original = os.path.join(self.apache.docroot, BIG_PATH[1:])
        rows = [("original", original)] + [
            ("download %d" % (i + 1), f) for i, f in enumerate(files)]
        for label, path in rows:
            if os.path.exists(path):
                self.say("   %-10s %10d bytes  sha256 %s"
                         % (label, os.path.getsize(path),
                            harness.sha256_file(path)))
            else:
                self.say("   %-10s missing" % label)
        for label, path in rows[1:]:
            good = (os.path.exists(path) and
                    os.path.getsize(path) == BIG_SIZE and
                    harness.sha256_file(path) == self.big_sha)
            self.check(good, "%s: size and sha256 equal to the original"
                       % label, "%s differs from the original" % label)

    def sample(self):
        """Run the whole sample; returns True if every check passed."""
        self.step_redirect()
        first = self.download(1, "MISS")
        second = self.download(2, "HIT")
        self.step_small()
        self.step_bytes([first, second])
        errors = self.daemon_errors()
        if errors:
            self.say()
            self.say("offload daemon's error log:")
            for line in errors:
                self.say("   " + line)
        self.say()
        if self.problems:
            self.say("RESULT: %d check(s) FAILED:" % len(self.problems))
            for p in self.problems:
                self.say("  - " + p)
            return False
        self.say("RESULT: all checks passed.")
        return True

    def serve(self):
        """Keep serving until SIGINT or SIGTERM, or a server exits."""
        a, d = self.apache, self.daemon
        self.say()
        self.say("Both servers keep running. Try:")
        self.say("  curl -L -O %s          (redirected, then from the cache)"
                 % a.url6(BIG_PATH))
        self.say("  curl -L -r 0-99 %s | od -A d -t x1 | head"
                 % a.url6(BIG_PATH))
        self.say("  curl -sS -D - -o /dev/null %s    (the 302 alone)"
                 % a.url6(BIG_PATH))
        self.say("  curl %s                   (index page)" % a.url6("/"))
        self.say("  curl %s       (small: served by the base)"
                 % a.url6(SMALL_PATH))
        self.say("  curl -I %s    (the offload host, direct)"
                 % d.url(BIG_PATH))
        self.say("Put a file under %s and fetch it the same way."
                 % self.rel(a.docroot))
        self.say("Requests from 127.0.0.1 are never redirected: that is the "
                 "offload host's address.")
        self.say("Logs: %s (base), %s (offload host)"
                 % (self.rel(a.access_log), self.rel(d.log_path)))
        self.say("Press Ctrl-C to stop.")
        while True:
            for name, server in (("Apache", a), ("offload_daemon", d)):
                if server.proc.poll() is not None:
                    self.say("%s exited with status %s; stopping."
                             % (name, server.proc.returncode))
                    return False
            time.sleep(0.5)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oneshot", action="store_true",
                    help="exit after the sample: 0 if every check passed")
    ap.add_argument("--run-dir", default="demo", metavar="NAME",
                    help="run directory under .run/ (default: demo)")
    args = ap.parse_args()
    for tool in ("curl",):
        if shutil.which(tool) is None:
            print("demo: %s is not installed (make deps)" % tool,
                  file=sys.stderr)
            return 1
    # explicit, so that Ctrl-C works even when started with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    demo = Demo(args.run_dir)
    ok = False
    try:
        demo.start()
        ok = demo.sample()
        if args.oneshot:
            return 0 if ok else 1
        demo.serve()
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 0 if ok and not args.oneshot else 1
    except Exception as e:  # report any failure, then clean up
        print("demo: %s" % e, file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
