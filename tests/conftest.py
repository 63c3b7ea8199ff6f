"""pytest fixtures: a private Apache with the built module, the real daemon.

Every server a test starts is stopped by PID when the test ends. A test
fails if a log shows a crash (a child exiting on a signal, a sanitizer
report), or an error it did not announce: an [error], [crit], [alert] or
[emerg] line in Apache's error log or the daemon's log that matches none
of the patterns of the test's expect_error marker:

    @pytest.mark.expect_error(r"cannot cache .*/nc\\.bin")

The base server and the daemon in front of it come from one factory
(base_factory, daemon_factory); the fixtures base and pair are their
usual shapes, configured by markers on the test or the module:

    pytestmark = pytest.mark.base(slow_rate=2048)
    @pytest.mark.daemon(args=["--timeout", "5"])
"""

import os
import re

import pytest

import harness

CRASH_PATTERNS = re.compile(
    r"(exit signal (Segmentation|Aborted|Bus|Illegal)|AddressSanitizer|"
    r"runtime error:|double free|stack smashing)")

# What /slow/ on a base is throttled to by default, KiB/s (mod_ratelimit).
SLOW_RATE = 1024


def pytest_configure(config):
    for line in (
            "expect_error(*patterns): log lines at error level or worse "
            "that match one of these regular expressions are expected",
            "base(**kw): keyword arguments of base_factory for the base "
            "fixture (slow_rate, cgi, conf_extra ...)",
            "daemon(args=()): the daemon's arguments in the pair fixture"):
        config.addinivalue_line("markers", line)


def expected_errors(request):
    """The compiled patterns of every expect_error marker of the test."""
    out = []
    for m in request.node.iter_markers("expect_error"):
        out += [re.compile(p) for p in m.args]
    return out


def check_logs(what, text, allowed):
    """Fail on a crash in text, or on an error line no pattern allows."""
    m = CRASH_PATTERNS.search(text)
    assert m is None, "%s shows a crash: %s" % (what, m.group(0))
    bad = [line for line in harness.error_lines(text)
           if not any(p.search(line) for p in allowed)]
    assert bad == [], "%s has errors the test did not expect:\n%s" % (
        what, "\n".join(bad[:20]))


@pytest.fixture
def run_dir(request):
    """A fresh per-test directory under .run/tests/."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:100]
    return harness.make_run_dir(os.path.join("tests", name))


@pytest.fixture
def apache_factory(run_dir, request):
    """apache_factory(conf_extra="", start=True, subdir="base", **kw) -> a
    harness.Apache (started unless start=False)."""
    started = []

    def make(conf_extra="", start=True, subdir="base", **kw):
        d = os.path.join(run_dir, subdir)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        a = harness.Apache(d, conf_extra=conf_extra, **kw)
        started.append(a)
        if start:
            a.start()
        return a

    yield make
    # the logs as the test left them, before stopping adds its own lines
    texts = [(a, a.error_log_text()) for a in started]
    for a in started:
        a.stop()
    allowed = expected_errors(request)
    for a, text in texts:
        if not a.offload:
            # Debian's 2.4 event MPM now and then loses a worker to a
            # signal when stopped with connections open (seen without
            # mod_offload loaded, about once in twenty stops): crashes
            # count only where the module runs
            text = CRASH_PATTERNS.sub("", text)
        check_logs("Apache's error log (%s)" % a.run_dir, text, allowed)


@pytest.fixture
def base_factory(apache_factory):
    """base_factory(slow_rate=SLOW_RATE, cgi=None, conf_extra="",
    start=True, **kw) -> a harness.Apache without the module: a base for
    the daemon. /slow/ is throttled to slow_rate KiB/s; cgi maps names to
    scripts run as /cgi-bin/NAME (@BASE@ in one stands for the base's
    own URL). Further arguments go to apache_factory."""

    def make(slow_rate=SLOW_RATE, cgi=None, conf_extra="", start=True,
             **kw):
        conf = ("<Location /slow/>\n"
                "    SetOutputFilter RATE_LIMIT\n"
                "    SetEnv rate-limit %d\n"
                "</Location>\n" % slow_rate)
        a = apache_factory(start=False, offload=False, **kw)
        if cgi:
            d = os.path.join(a.run_dir, "cgi-bin")
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            for name, text in cgi.items():
                harness.write_script(os.path.join(d, name),
                                     text.replace("@BASE@", a.base_url))
            conf += ('ScriptAlias /cgi-bin/ "%s/"\n<Directory "%s">\n'
                     '    Require all granted\n</Directory>\n' % (d, d))
        a.conf_extra = conf + conf_extra
        if start:
            a.start()
        return a

    return make


@pytest.fixture
def base(base_factory, request):
    """A started base (base_factory), configured by the base marker."""
    m = request.node.get_closest_marker("base")
    return base_factory(**(m.kwargs if m else {}))


@pytest.fixture
def daemon_factory(run_dir, request):
    """daemon_factory(base_url, args=(), start=True, **kw) -> a
    harness.Daemon (started unless start=False)."""
    started = []

    def make(base_url, args=(), start=True, **kw):
        d = harness.Daemon(run_dir, base_url, args=args, **kw)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    texts = [(d, d.log_text()) for d in started]
    for d in started:
        d.stop()
    allowed = expected_errors(request)
    for d, text in texts:
        check_logs("the daemon's log (%s)" % d.log_path, text, allowed)


@pytest.fixture
def pair(base, daemon_factory, request):
    """(base, daemon), both running; the daemon's arguments from the
    daemon marker."""
    m = request.node.get_closest_marker("daemon")
    return base, daemon_factory(base.base_url,
                                args=m.kwargs.get("args", ()) if m else ())


@pytest.fixture
def fake_base():
    """fake_base(handler) -> a started FakeBase, stopped after the test."""
    started = []

    def make(handler):
        b = harness.FakeBase(handler)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()
