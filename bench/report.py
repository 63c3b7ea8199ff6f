#!/usr/bin/python3
"""bench/report.py -- turn a results file of bench/measure.py into
docs/benchmarks.md and the plots in docs/img/, and print the table.

    /usr/bin/python3 bench/report.py [--results FILE]

Reads only the results file: the same file always gives the same report.
The verdicts and their sentences come from bench/targets.py.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import harness  # noqa: E402
import targets  # noqa: E402

KiB = 1024
MiB = 1024 * 1024
RESULTS = os.path.join(harness.RUN_ROOT, "bench", "results.json")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
IMG_DIR = os.path.join(REPO, "docs", "img")


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
    """median (min–max)"""
    return "%s (%s–%s)" % (num(s.med), num(s.lo), num(s.hi))


def ratio(a, b):
    """The ratio of two Stats' medians, NaN when it has none."""
    if b.med == 0 or a.med != a.med or b.med != b.med:
        return float("nan")
    return a.med / b.med


def fmt_ratio(r):
    return "n/a" if r != r else "%.2f×" % r


def size_label(size):
    """64 KiB, 1 MiB"""
    return "%d KiB" % (size // KiB) if size < MiB else "%d MiB" % (size // MiB)


def plural(n, word):
    return "%d %s%s" % (n, word, "s" * (n > 1))


# ---- the results file ----------------------------------------------------

class Results:
    """A results file, looked up by keys (numbers become strings)."""

    def __init__(self, data):
        self.d = data
        self.p = data["profile"]
        self.notes = list(data["notes"])

    def get(self, *keys):
        """The value at data[k1][k2]..., or None."""
        v = self.d
        for k in keys:
            if not isinstance(v, dict) or str(k) not in v:
                return None
            v = v[str(k)]
        return v

    def has(self, *keys):
        return self.get(*keys) is not None

    def stat(self, *keys):
        """The list of figures at keys, as a Stat."""
        return Stat(self.get(*keys) or [])

    def runs_stat(self, figure, *keys):
        """One figure of every run at keys (cold and scaling), as a Stat."""
        return Stat([r[figure] for r in self.get(*keys) or []])

    def single(self):
        """When one client fetching straight from the base was done."""
        return self.runs_stat("last_done", "cold", "single")


# ---- the table -----------------------------------------------------------

HEADER = ["§", "figure", "unit", "mod_offload median (min–max)", "anchor",
          "anchor median (min–max)", "ratio", "target"]


class Row:
    """One line of the table; with a target key, judged by that target on
    judged (default: ours)."""

    def __init__(self, section, what, unit, ours, anchor_name, anchor,
                 target=None, judged=None):
        self.section, self.what, self.unit = section, what, unit
        self.ours, self.anchor_name, self.anchor = ours, anchor_name, anchor
        self.target = target
        self.met = None
        if target is not None:
            values = (judged or ours).values
            self.met = targets.compare(targets.BY_KEY[target], values,
                                       anchor.med)

    def cells(self):
        return [self.section, self.what, self.unit, fmt_stat(self.ours),
                self.anchor_name, fmt_stat(self.anchor),
                fmt_ratio(ratio(self.ours, self.anchor)),
                targets.cell(self.target, self.met) if self.target else ""]


def rows_hot(R):
    """§1: the daemon against nginx static (judged) and proxy_cache."""
    rows = []
    for c in R.p["hot_clients"]:
        ours, what = R.stat("hot", "daemon", c), "hot hits, " + plural(
            c, "client")
        judged = "hot" if c in targets.HOT_JUDGED_AT else None
        rows.append(Row("1", what, "MB/s", ours, "nginx static",
                        R.stat("hot", "static", c), judged))
        rows.append(Row("1", what, "MB/s", ours, "nginx proxy_cache hit",
                        R.stat("hot", "lock", c)))
    return rows


def rows_cold_pair(R, what, unit, figure, target=None, judged=None):
    """A cold-miss figure of the daemon against nginx with the lock on
    (judged by target) and off."""
    ours = R.runs_stat(figure, "cold", "daemon")
    return [Row("2", what, unit, ours, "nginx lock on",
                R.runs_stat(figure, "cold", "lock"), target, judged),
            Row("2", what, unit, ours, "nginx lock off",
                R.runs_stat(figure, "cold", "nolock"))]


def rows_cold(R):
    """§2: base bytes, first-byte spread, slowest first byte, last done."""
    runs = R.get("cold", "daemon")
    # a run where a client failed does not meet the base-bytes target
    shared = Stat([r["base_x"] if r["failed"] == 0 else float("nan")
                   for r in runs])
    rows = rows_cold_pair(
        R, "cold miss, %d clients: base bytes ÷ file" % R.p["cold_clients"],
        "×", "base_x", "cold_base", shared)
    rows += rows_cold_pair(R, "cold miss: first-byte spread (last − first)",
                           "ms", "spread_ms", "cold_spread")
    rows += rows_cold_pair(R, "cold miss: slowest time to first byte", "s",
                           "ttfb_max")
    rows.append(Row("2", "cold miss: last client done", "s",
                    R.runs_stat("last_done", "cold", "daemon"),
                    "one client straight from the base", R.single(),
                    "cold_done"))
    rows += rows_cold_pair(R, "cold miss: last client done", "s",
                           "last_done")
    return rows


def rows_small_default(R, size, lab):
    """§3: the default daemon (a HEAD per request) against nginx hits."""
    def vs_nginx(what, unit, key, target=None, who="", anchor_key=None):
        return Row("3", what, unit, R.stat("small", "daemon", size, key),
                   "nginx proxy_cache hit" + who,
                   R.stat("small", "lock", size, anchor_key or key), target)

    rows = [vs_nginx("small hot file %s, %d conns: requests/s"
                     % (lab, R.p["small_conns"]), "req/s", "rps", "small")]
    for q in ("p50", "p99"):
        rows.append(vs_nginx("small hot file %s: %s latency" % (lab, q),
                             "ms", q))
    rows.append(vs_nginx("small hot file %s: context switches per request "
                         "(machine)" % lab, "cs/req", "cs"))
    for who, label, anchor in (
            ("total", "whole machine", "total"), ("wrk", "wrk", "wrk"),
            ("server", "the server's processes", "server"),
            ("base", "the base (its HEAD answers)", "server")):
        rows.append(vs_nginx(
            "small hot file %s: CPU per request, %s" % (lab, label), "µs",
            "cpu_" + who, None, "" if who == anchor else ", its processes",
            "cpu_" + anchor))
    return rows


def rows_small_vi(R, size, lab):
    """§3: the daemon with --validate-interval: the gain, not judged."""
    vi = "%s, `--validate-interval %d`" % (lab, R.d["validate_secs"])
    ours = R.stat("small", "daemon_vi", size, "rps")
    nginx, default = "nginx proxy_cache hit", \
        "offload_daemon, HEAD on every request"
    rows = [Row("3", "small hot file %s: requests/s" % vi, "req/s", ours,
                nginx, R.stat("small", "lock", size, "rps")),
            Row("3", "small hot file %s: requests/s, gain" % vi, "req/s",
                ours, default, R.stat("small", "daemon", size, "rps"))]
    for q in ("p50", "p99"):
        rows.append(Row("3", "small hot file %s: %s latency" % (vi, q), "ms",
                        R.stat("small", "daemon_vi", size, q), nginx,
                        R.stat("small", "lock", size, q)))
    for key, label, unit in (
            ("heads", "base HEADs per request", "HEAD/req"),
            ("cpu_server", "CPU per request, the server's processes", "µs"),
            ("cs", "context switches per request (machine)", "cs/req")):
        rows.append(Row("3", "small hot file %s: %s" % (vi, label), unit,
                        R.stat("small", "daemon_vi", size, key), default,
                        R.stat("small", "daemon", size, key)))
    return rows


def rows_small(R):
    """§3: both daemons for each small file."""
    rows = []
    for size in R.p["small_sizes"]:
        rows += rows_small_default(R, size, size_label(size))
        rows += rows_small_vi(R, size, size_label(size))
    return rows


def rows_memory(R):
    """§4: private memory per download at each count, TCP memory."""
    rows = []
    for n in R.p["mem_counts"]:
        rows.append(Row("4", "private memory per download, %d slow "
                        "downloads" % n, "KiB",
                        R.stat("memory", "daemon", n, "per_dl"),
                        "nginx growth per connection",
                        R.stat("memory", "lock", n, "per_dl"), "mem_private"))
    n = R.p["mem_tcp_at"]
    if R.has("memory", "daemon", n, "tcp"):
        rows.append(Row("4", "TCP memory (sockstat) at %d slow downloads, "
                        "both ends" % n, "KiB",
                        R.stat("memory", "daemon", n, "tcp"), "nginx",
                        R.stat("memory", "lock", n, "tcp"), "mem_tcp"))
    return rows


def rows_module(R):
    """§5: the base with the module on against it not loaded."""
    off = R.stat("module", "off")
    return [Row("5", "base, 1 KiB file not offloaded, %d conns"
                % R.p["mod_conns"], "req/s", R.stat("module", "on"),
                "module not loaded", off, "module"),
            Row("5", "base, redirects of an offloaded file", "req/s",
                R.stat("module", "redirect"),
                "module not loaded, 1 KiB file", off)]


def rows_scaling(R):
    """§6: last client done and base bytes at each client count."""
    rows = []
    for n in R.p["scale_counts"]:
        what = "scaling, %s: " % plural(n, "client")
        rows.append(Row("6", what + "last client done", "s",
                        R.runs_stat("last_done", "scaling", n),
                        "one client straight from the base", R.single(),
                        "scale_done"))
        rows.append(Row("6", what + "base bytes ÷ file", "×",
                        R.runs_stat("base_x", "scaling", n), "the file once",
                        Stat([1.0]), "scale_base"))
    return rows


def build_rows(R):
    """Every row of the table, for the sections the results hold."""
    rows = []
    for section, build in (("hot", rows_hot), ("cold", rows_cold),
                           ("small", rows_small), ("memory", rows_memory),
                           ("module", rows_module),
                           ("scaling", rows_scaling)):
        if R.has(section) and (section != "scaling" or R.has("cold")):
            rows += build(R)
    return rows


def table(rows):
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |",
             "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(r.cells()) + " |")
    return "\n".join(lines)


# ---- what the figures mean -----------------------------------------------

def wide(st):
    """min–max over 30% of the median: a disturbed figure?"""
    return st.med > 0 and (st.hi - st.lo) / st.med > 0.3


def missed_figure(r):
    """How a row that missed its target is quoted."""
    return "%s: %s %s, %s%s" % (
        r.what, num(r.ours.med), r.unit, fmt_ratio(ratio(r.ours, r.anchor)),
        " (min–max over 30% of the median: disturbed?)"
        if wide(r.ours) or wide(r.anchor) else "")


def verdict_sentence(headline, judged):
    """A section's verdict from its judged rows, in the targets' words."""
    missed = [r for r in judged if not r.met]
    if not missed:
        return targets.MET_SENTENCE.format(headline=headline)
    return targets.NOT_MET_SENTENCE.format(
        headline=headline, figures="; ".join(map(missed_figure, missed)))


def small_vi_text(R):
    """What --validate-interval gives, per small file."""
    vs = R.d["validate_secs"]
    parts = []
    for size in R.p["small_sizes"]:
        def med(name, key):
            return R.stat("small", name, size, key)
        vi = med("daemon_vi", "rps")
        parts.append(
            "%s: `--validate-interval %d` gives %s req/s, %s the default "
            "daemon and %s nginx proxy_cache hits, with %s base HEADs per "
            "request against %s"
            % (size_label(size), vs, num(vi.med),
               fmt_ratio(ratio(vi, med("daemon", "rps"))),
               fmt_ratio(ratio(vi, med("lock", "rps"))),
               num(med("daemon_vi", "heads").med),
               num(med("daemon", "heads").med)))
    return ("The HEAD round trip to the base is the measured cost: without "
            "it (ValidateInterval) the same daemon serves " +
            "; ".join(parts) + ". That figure is the gain, not the target: "
            "a file changed or protected on the base is seen up to %d s "
            "late." % vs)


def small_cs_text(R, size):
    """Context switches per small request, with and without the HEAD."""
    def med(name):
        return num(R.stat("small", name, size, "cs").med)
    return ("Per %d KiB request the machine switched tasks %s times with "
            "the HEAD, %s without it and %s for nginx: the HEAD wakes the "
            "base's listener, then one of its workers, then the daemon's "
            "process again, on the same 2 cores that serve the hits."
            % (size // KiB, med("daemon"), med("daemon_vi"), med("lock")))


def small_cpu_text(R, size):
    """Where a small request's CPU goes, and the ceiling it sets for a
    HEAD per request: what the daemon spends without the HEAD, plus what
    the base spends answering it, as if the HEAD cost the daemon nothing."""
    def med(name, who):
        return R.stat("small", name, size, "cpu_" + who).med

    floor = (med("daemon_vi", "wrk") + med("daemon_vi", "server") +
             med("daemon_vi", "other") + med("daemon", "base"))
    ceiling = med("lock", "total") / floor if floor > 0 else float("nan")
    head_cost = med("daemon", "base") / med("lock", "server") \
        if med("lock", "server") > 0 else float("nan")
    return (
        "CPU per %d KiB request (all processes, user and system, µs): "
        "with the HEAD, wrk %s, the daemon %s, the base %s, the rest of "
        "the machine %s; nginx proxy_cache hits: wrk %s, nginx %s, the "
        "rest %s. The base's answer to one HEAD costs %s nginx's whole "
        "hit. Even if the HEAD cost the daemon nothing (its processes "
        "spending what they spend with `--validate-interval`, %s), a "
        "request would need %s µs of this machine against nginx's %s: "
        "a ceiling of about %s nginx's requests/s with a HEAD per request "
        "(the target: %.2f×)."
        % (size // KiB, num(med("daemon", "wrk")),
           num(med("daemon", "server")), num(med("daemon", "base")),
           num(med("daemon", "other")), num(med("lock", "wrk")),
           num(med("lock", "server")), num(med("lock", "other")),
           fmt_ratio(head_cost), num(med("daemon_vi", "server")),
           num(floor), num(med("lock", "total")), fmt_ratio(ceiling),
           targets.BY_KEY["small"].threshold))


def small_extra(R, missed):
    """What the small files' figures say about the HEAD's cost."""
    if not R.has("small"):
        return []
    size = R.p["small_sizes"][0]
    return [small_vi_text(R), small_cs_text(R, size),
            small_cpu_text(R, size)]


def memory_extra(R, missed):
    """What one daemon child holds, by mapping, at the largest count."""
    if not R.get("child_parts"):
        return []
    n = max(R.get("child_parts"), key=int)
    parts = R.get("child_parts", n)

    def median_of(kind):
        return statistics.median([x.get(kind, 0) for x in parts])

    kinds = sorted({k for x in parts for k in x},
                   key=lambda k: (-median_of(k), k))
    desc = ", ".join("%s %s" % (k, num(median_of(k)))
                     for k in kinds if median_of(k) > 0)
    tot = statistics.median([sum(x.values()) for x in parts])
    return [
        "Each download is one forked child (fork per connection); its "
        "private pages are what a download costs. Measured at %s "
        "downloads, one child (median of %d sampled) holds %s KiB private "
        "(Private_Clean + Private_Dirty, KiB by mapping: %s; BSS = the "
        "unnamed mapping right after a file's): pages written after fork, "
        "by the child or by the parent (a page the parent writes after "
        "forking stays behind as the child's own copy) — the stack, data "
        "and BSS, libc's and the loader's. nginx serves a connection from "
        "a shared worker. The original claimed about 120 KB per request. "
        "The TCP memory is that of both ends: the daemon's NotSentLowat "
        "(default 2M) caps what the kernel queues unsent for one client; "
        "nginx leaves the kernel's limit (tcp_wmem, 4 MiB)."
        % (n, len(parts), num(tot), desc)]


def module_extra(R, missed):
    """Both medians and ranges, when the module's target was missed."""
    if not missed or not R.has("module"):
        return []
    on, off = R.stat("module", "on"), R.stat("module", "off")
    return ["Module on %s (min–max %s–%s), module not loaded %s (%s–%s) "
            "req/s; the cause of the difference was not measured."
            % (num(on.med), num(on.lo), num(on.hi), num(off.med),
               num(off.lo), num(off.hi))]


EXTRAS = {"3": small_extra, "4": memory_extra, "5": module_extra}


def meaning(R, rows):
    """'What the figures mean': each section's targets met or not, from
    the judged rows, with the cause where the run measured one."""
    out = []
    for sec, headline in targets.HEADLINES.items():
        judged = [r for r in rows if r.section == sec and r.target]
        if not judged:
            continue
        missed = [r for r in judged if not r.met]
        line = verdict_sentence(headline, judged)
        extra = EXTRAS.get(sec, lambda R, m: [])(R, missed)
        if extra:
            line += " " + " ".join(extra)
        out.append(line)
    return "\n".join(out)


# ---- plots ---------------------------------------------------------------

NAMES = {"daemon": "offload\\_daemon", "static": "nginx static",
         "lock": "nginx proxy\\_cache (lock on)",
         "nolock": "nginx proxy\\_cache (lock off)"}
# plot file -> its caption, in the order the report shows them
CAPTIONS = [("hot.png", "Hot hits"), ("cold.png", "Cold miss"),
            ("small.png", "Small hot files"),
            ("memory.png", "Memory per download"),
            ("module.png", "Module overhead"), ("scaling.png", "Scaling")]


def gnuplot_terminal():
    """The best PNG terminal gnuplot has, or None."""
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


def errorlines(stats, fmt="%.1f"):
    """median lo hi of each Stat, as data columns."""
    return " ".join(" ".join(fmt % v for v in (s.med, s.lo, s.hi))
                    for s in stats)


def plot_hot(R):
    """hot.png: MB/s by client count, the daemon and nginx."""
    p = R.p
    rows = ["%d " % c + errorlines([R.stat("hot", k, c) for k in
                                    ("daemon", "static", "lock")])
            for c in p["hot_clients"]]
    script = """
set title 'Hot hits: %d MiB cached file (median, min-max)'
set xlabel 'concurrent clients'; set ylabel 'MB/s'
set logscale x 2; set xrange [%g:%g]; set yrange [0:*]; set key bottom right
set grid
plot 'hot.dat' u 1:2:3:4 w yerrorlines lw 2 t '%s', \\
     '' u 1:5:6:7 w yerrorlines lw 2 t '%s', \\
     '' u 1:8:9:10 w yerrorlines lw 2 t '%s'
""" % (p["hot_size"] // MiB, min(p["hot_clients"]) * 0.7,
       max(p["hot_clients"]) * 1.4, NAMES["daemon"], NAMES["static"],
       NAMES["lock"])
    return script, {"hot.dat": "\n".join(rows)}


def median_run(runs):
    """The repetition with the median last-done time."""
    return sorted(runs, key=lambda x: x["last_done"])[len(runs) // 2]


def plot_cold(R):
    """cold.png: each client's first byte and end, median repetition."""
    data, parts = {}, []
    for col, name in enumerate(("daemon", "lock", "nolock"), 1):
        r = median_run(R.get("cold", name))
        pts = sorted(zip(r["ttfb"], r["done"]))
        data["cold-%s.dat" % name] = "\n".join(
            "%d %.4f %.4f" % (i + 1, a, z) for i, (a, z) in enumerate(pts))
        parts.append("'cold-%s.dat' u 1:2 w p pt 7 lc %d t '%s: first "
                     "byte'" % (name, col, NAMES[name]))
        parts.append("'cold-%s.dat' u 1:3 w p pt 4 lc %d t '%s: done'"
                     % (name, col, NAMES[name]))
    script = """
set title 'Cold miss: %d clients of a %d MiB file from a throttled base'
set xlabel 'client (sorted by first byte)'; set ylabel 'seconds after the requests'
set yrange [0:*]; set key outside bottom center horizontal maxrows 3; set grid
plot %s
""" % (R.p["cold_clients"], R.p["cold_size"] // MiB, ", ".join(parts))
    return script, data


def plot_small(R):
    """small.png: requests/s per small file, both daemons and nginx."""
    p = R.p
    cols = ("daemon", "daemon_vi", "lock")
    rows = ['"%s" ' % size_label(size) + errorlines(
        [R.stat("small", k, size, "rps") for k in cols], "%.0f")
        for size in p["small_sizes"]]
    titles = [NAMES["daemon"] + ", HEAD on every request",
              NAMES["daemon"] + ", --validate-interval %d"
              % R.d["validate_secs"], NAMES["lock"] + " hit"]
    parts = ["%s u %d:%d:%d%s t '%s'"
             % ("'small.dat'" if i == 0 else "''", 2 + 3 * i, 3 + 3 * i,
                4 + 3 * i, ":xtic(1)" if i == 0 else "", t)
             for i, t in enumerate(titles)]
    script = """
set title 'Small hot files: requests/s, %d connections (median, min-max)'
set style data histograms; set style histogram errorbars gap 1 lw 1
set style fill solid 0.8 border -1; set boxwidth 0.9
set ylabel 'requests/s'; set yrange [0:*]; set grid y
set key top right
plot %s
""" % (p["small_conns"], ", ".join(parts))
    return script, {"small.dat": "\n".join(rows)}


def plot_memory(R):
    """memory.png: private KiB per download by count, with the target."""
    p = R.p
    rows = ["%d " % n + errorlines([R.stat("memory", k, n, "per_dl")
                                    for k in ("daemon", "lock")])
            for n in p["mem_counts"]]
    script = """
set title 'Private memory per active slow download (median, min-max)'
set xlabel 'concurrent slow downloads'; set ylabel 'KiB per download'
set logscale x; set xrange [5:%d]; set yrange [0:*]; set grid
plot 'memory.dat' u 1:2:3:4 w yerrorlines lw 2 t '%s', \\
     '' u 1:5:6:7 w yerrorlines lw 2 t 'nginx (growth per connection)', \\
     %g w l dt 2 lc rgb 'gray' t 'target: %g KiB'
""" % (max(p["mem_counts"]) * 2, NAMES["daemon"],
       targets.BY_KEY["mem_private"].threshold,
       targets.BY_KEY["mem_private"].threshold)
    return script, {"memory.dat": "\n".join(rows)}


def plot_scaling(R):
    """scaling.png: last client done and base bytes by client count."""
    p = R.p
    rows = []
    for n in p["scale_counts"]:
        t = R.runs_stat("last_done", "scaling", n)
        x = R.runs_stat("base_x", "scaling", n)
        rows.append("%d %s %.3f" % (n, errorlines([t], "%.3f"), x.med))
    top = max(r["base_x"] for v in R.get("scaling").values() for r in v)
    script = """
set title 'Scaling: N clients of one cold %d MiB file (median, min-max)'
set xlabel 'concurrent clients'; set ylabel 'last client done (s)'
set y2label 'base bytes / file size'
set logscale x; set xrange [0.7:%d]; set yrange [0:*]; set y2range [0:%g]
set ytics nomirror; set y2tics; set grid; set key bottom right
plot 'scaling.dat' u 1:2:3:4 w yerrorlines lw 2 t 'last client done', \\
     '' u 1:5 axes x1y2 w lp lw 2 pt 6 t 'base bytes / file size', \\
     %.3f w l dt 2 lc rgb 'gray' t 'one client straight from the base'
""" % (p["cold_size"] // MiB, max(p["scale_counts"]) * 1.5,
       max(2.0, 1.2 * top), R.single().med)
    return script, {"scaling.dat": "\n".join(rows)}


def plot_module(R):
    """module.png: the base's requests/s without, with and redirecting."""
    rows = ['"module not loaded" %.0f' % R.stat("module", "off").med,
            '"OffloadEngine On, declined" %.0f' % R.stat("module", "on").med,
            '"302 to the daemon" %.0f' % R.stat("module", "redirect").med]
    script = """
set title 'Base server: requests/s, %d connections (median)'
set style data histograms; set style fill solid 0.8 border -1
set boxwidth 0.6; set ylabel 'requests/s'; set yrange [0:*]; set grid y
plot 'module.dat' u 2:xtic(1) notitle
""" % R.p["mod_conns"]
    return script, {"module.dat": "\n".join(rows)}


# plot file -> (the sections it needs, what writes its script and data)
PLOTS = {"hot.png": (("hot",), plot_hot), "cold.png": (("cold",), plot_cold),
         "small.png": (("small",), plot_small),
         "memory.png": (("memory",), plot_memory),
         "scaling.png": (("scaling", "cold"), plot_scaling),
         "module.png": (("module",), plot_module)}


def run_gnuplot(term, work, name, script, data, img_dir):
    """Write data and script into work and draw img_dir/name. Returns
    None, or gnuplot's complaint."""
    for fname, text in data.items():
        with open(os.path.join(work, fname), "w") as f:
            f.write(text)
    gp = os.path.join(work, name + ".gp")
    with open(gp, "w") as f:
        f.write("set terminal %s\nset output '%s'\ncd '%s'\n%s\n" % (
            term, os.path.join(img_dir, name), work, script))
    r = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.stdout.strip()[:300] if r.returncode != 0 else None


def plot_all(R, img_dir):
    """Draw every plot the results allow into img_dir. Returns the names
    drawn; a failure becomes a note."""
    term = gnuplot_terminal()
    if term is None:
        R.notes.append("gnuplot has no png terminal: no plots")
        return []
    os.makedirs(img_dir, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory(prefix="bench-plots-") as work:
        for name, (needs, make) in PLOTS.items():
            if not all(R.has(s) for s in needs):
                continue
            err = run_gnuplot(term, work, name, *make(R), img_dir)
            if err:
                R.notes.append("gnuplot %s: %s" % (name, err))
            else:
                made.append(name)
    return made


# ---- the document --------------------------------------------------------

MODES = {"quick": "quick (`make bench QUICK=1`)", "full": "full (`make bench`)"}


def doc_intro(R):
    """The title and what the figures are, from which run."""
    p = R.p
    return [
        "# Benchmarks\n",
        "mod_offload's offload host (`offload_daemon`) side by side with "
        "nginx on the same machine, with the same files, in one run. "
        "Measured by `bench/measure.py`, written by `bench/report.py`; "
        "every figure is the median of %d repetitions (%d for hot hits and "
        "module overhead) with min and max, next to an anchor measured in "
        "the same run, and the ratio of the medians (mod_offload ÷ "
        "anchor); the systems take turns within each repetition.\n"
        % (p["reps"], p["reps_wrk"]),
        "This file was written from a %s run on %s; the run took %.0f s.\n"
        % (MODES[R.d["mode"]], R.d["date"], R.d["elapsed"])]


def doc_results(R, rows):
    """The table and the notes of the run."""
    out = ["## Results\n", table(rows) + "\n"]
    if R.notes:
        out.append("Seen during the run:\n")
        out += ["- " + n.replace("|", "\\|") for n in R.notes]
        out.append("")
    return out


def doc_meaning(R, rows, plots):
    """The verdicts, their causes and the plots."""
    out = ["## What the figures mean\n", meaning(R, rows) + "\n"]
    out += ["![%s](img/%s)\n" % (cap, name) for name, cap in CAPTIONS
            if name in plots]
    return out


MEASURED = """\
Everything runs on 127.0.0.1: the base is a private Apache (`tests/harness.py`) with
mod_offload loaded (`OffloadEngine On`, `OffloadHost` the daemon); `offload_daemon
--base <that Apache> {daemon_args}` (every client here has the address 127.0.0.1, so
the per-client cap on simultaneous downloads of one URL is off); one nginx (`bench/nginx.conf.in`,
{workers} workers, `sendfile on`) with three servers: the base's docroot served
statically, `proxy_cache` in front of the base with `proxy_cache_lock on` (lock
timeouts at their defaults), and the same with `proxy_cache_lock off`.

1. **Hot hits**: a {hot_mib} MiB file already cached by the daemon and by nginx
   proxy_cache; `wrk -c N` (N = {hot_clients}, at most 2 threads) for {hot_secs} s; MB/s = body and
   header bytes read ÷ duration (10^6 bytes). The daemon HEADs the base on every
   request (its default, ValidateInterval 0).
2. **Cold miss shared**: a {cold_mib} MiB file under `/slow/`, where the base sends at
   most {cold_rate_kib} KiB/s per connection (mod_ratelimit), so one fetch takes about {cold_secs:.0f} s.
   Each repetition uses a new URL (a hard link), so it is a miss everywhere. {cold_clients}
   clients connect, then send their requests at the same moment (one Python
   event loop, `bench/clients.py`). Base bytes = the `%B` of every GET of that URL
   in the base's access log ÷ file size. First byte = first body byte. The
   anchor for "done" is one client fetching the file straight from the base.
3. **Small hot files**: {small_sizes} files, cached, `wrk -t2 -c{small_conns}` for {small_secs} s, requests/s
   and wrk's p50/p99 latency, against nginx proxy_cache hits (lock on). The
   target is judged on the daemon as above (a HEAD to the base on every
   request). A second daemon with the same settings plus `--validate-interval
   {validate_secs}` (its own cache, warmed the same way) shows the gain when hits within
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
4. **Memory per download**: N = {mem_counts} downloads of the hot file, each read at {mem_rate_kib}
   KiB/s by the client (a rate-limited reader, `bench/clients.py`). Private memory =
   Private_Clean + Private_Dirty from `/proc/PID/smaps_rollup`, summed over the
   server's processes (the daemon or nginx master and all their descendants, from
   `/proc/*/stat`), with the downloads active minus idle, ÷ N. TCP memory is the
   growth of `mem` in `/proc/net/sockstat` at {mem_tcp_at} downloads: both ends of every
   connection are on this machine, so it counts the client's buffers too (the
   same client for both servers).
5. **Module overhead**: the base Apache (module loaded, `OffloadEngine On`)
   against a second Apache with the same configuration but the module not loaded,
   `wrk -t2 -c{mod_conns}` for {mod_secs} s over [::1] (not an offload host's address) on a 1 KiB
   file that the module declines (below `OffloadMinSize`); and the same Apache
   answering 302 redirects for the hot file.
6. **Scaling**: N = {scale_counts} clients of one cold file (as in 2) through the daemon:
   when the last client is done, and base bytes ÷ file size.
"""


def listed(values):
    """1, 10, 50"""
    return ", ".join(map(str, values))


def doc_measured(R):
    """How each section measures, with the run's sizes and counts."""
    p = R.p
    text = MEASURED.format(
        daemon_args=" ".join(R.d["daemon_args"]),
        workers=R.d["nginx_workers"], hot_mib=p["hot_size"] // MiB,
        hot_clients=listed(p["hot_clients"]), hot_secs=p["hot_secs"],
        cold_mib=p["cold_size"] // MiB, cold_rate_kib=p["cold_rate_kib"],
        cold_secs=p["cold_size"] / KiB / p["cold_rate_kib"],
        cold_clients=p["cold_clients"],
        small_sizes=" and ".join("%d KiB" % (s // KiB)
                                 for s in p["small_sizes"]),
        small_conns=p["small_conns"], small_secs=p["small_secs"],
        validate_secs=R.d["validate_secs"],
        mem_counts=listed(p["mem_counts"]), mem_rate_kib=p["mem_rate"] // KiB,
        mem_tcp_at=p["mem_tcp_at"], mod_conns=p["mod_conns"],
        mod_secs=p["mod_secs"], scale_counts=listed(p["scale_counts"]))
    return ["## What is measured\n", text,
            "Targets (`bench/targets.py`): %s.\n" % "; ".join(
                targets.claims())]


REPRODUCE = """\
```sh
make bench           # full suite, at most 10 minutes on 2 cores
make bench QUICK=1   # smaller files, fewer client counts: at most 2 minutes
make bench-report    # this file and the plots again, from the last results
```

`make bench` installs the Debian packages it needs (nginx-light, wrk,
gnuplot-nox, apache2-utils, plus the build and test dependencies), builds with
`-O2`, measures with `bench/measure.py`, which writes every raw figure and the
machine's facts to `.run/bench/results.json`, then runs `bench/report.py`,
which prints the table and rewrites this file and the plots in `docs/img/`
from that file alone. Servers, logs and caches live in `.run/bench/`; every
server is stopped by its PID at the end, also on Ctrl-C
(`bench/run.py --keep` keeps the files for a look at the logs).
"""


def doc_machine(R):
    """The machine and the programs measured, as a table."""
    out = ["## Machine\n", "| | |\n|---|---|"]
    out += ["| %s | %s |" % (k, v.replace("|", "\\|"))
            for k, v in R.d["machine"]]
    return out + [""]


def document(R, rows, plots):
    """docs/benchmarks.md's text."""
    out = doc_intro(R) + doc_results(R, rows) + doc_meaning(R, rows, plots)
    out += doc_measured(R)
    out += ["## How to reproduce\n", REPRODUCE]
    out += doc_machine(R)
    return "\n".join(out)


# ---- main ----------------------------------------------------------------

def load(path):
    """The results file at path."""
    with open(path) as f:
        return Results(json.load(f))


def report(path=RESULTS, doc=DOC, img_dir=IMG_DIR):
    """Write doc and the plots from the results file at path, print the
    table and the notes. Returns 0, or 1 when the file is missing."""
    if not os.path.exists(path):
        sys.stderr.write("bench: %s missing (make bench)\n" % path)
        return 1
    R = load(path)
    rows = build_rows(R)
    plots = plot_all(R, img_dir)
    with open(doc, "w") as f:
        f.write(document(R, rows, plots))
    print(table(rows))
    if R.notes:
        print("\nSeen during the run:")
        print("\n".join("- " + n for n in R.notes))
    print("\n%s run: %.0f s. Wrote %s and %d plots in %s."
          % (R.d["mode"], R.d["elapsed"], os.path.relpath(doc, REPO),
             len(plots), os.path.relpath(img_dir, REPO)))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=RESULTS,
                    help="the results file to read (%(default)s)")
    ap.add_argument("--doc", default=DOC, help="where to write the report")
    ap.add_argument("--img", default=IMG_DIR, help="where to draw the plots")
    args = ap.parse_args()
    return report(args.results, args.doc, args.img)


if __name__ == "__main__":
    sys.exit(main())
