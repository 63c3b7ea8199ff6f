"""bench/targets.py -- the benchmark's targets, in one table.

Each target names the figure it judges (a row of the report with that
target's key), how it compares the figure with its threshold, what the
table shows in the target column, and what it claims in words. Each
section of the report has a headline, met when every target of the
section is met. bench/report.py takes its verdicts and their sentences
from here and nowhere else.
"""

import collections
import statistics

Target = collections.namedtuple(
    "Target", "key section comparison threshold cell claim")

# comparison:
#   ratio>=, ratio<=   the ratio of the medians (ours ÷ anchor), at the
#                      precision the table shows (0.01×)
#   max<=              the highest of our values
#   each==, each<=     every repetition's value
#   each/anchor<=      every repetition's value ÷ the anchor's median
TARGETS = [
    Target("hot", "1", "ratio>=", 0.95, "≥0.95× at 4, 16",
           "hot hits ≥0.95× nginx static at 4 and 16 clients"),
    Target("cold_base", "2", "each==", 1.0, "1.00× every run",
           "cold miss: the base sends exactly 1.00× the file"),
    Target("cold_spread", "2", "each<=", 50, "≤50 ms every run",
           "every first byte within 50 ms of the first"),
    Target("cold_done", "2", "each/anchor<=", 1.05, "≤1.05× every run",
           "every client done within 5% of a single fetch"),
    Target("small", "3", "ratio>=", 0.5, "≥0.5×",
           "small hot files ≥0.5× nginx proxy_cache hits"),
    Target("mem_private", "4", "max<=", 64, "≤64 KiB",
           "≤64 KiB private memory per download"),
    Target("mem_tcp", "4", "ratio<=", 1.0, "≤1.0×",
           "TCP memory no higher than nginx's"),
    Target("module", "5", "ratio>=", 0.98, "≥0.98×",
           "≥0.98× requests/s with the module on"),
    Target("scale_done", "6", "each/anchor<=", 1.05, "≤1.05×",
           "scaling: the last client done within 5% of a single fetch "
           "at every N"),
    Target("scale_base", "6", "each==", 1.0, "1.00×",
           "scaling: the base sends 1.00× the file at every N"),
]
BY_KEY = {t.key: t for t in TARGETS}

# Hot hits are judged at these client counts only.
HOT_JUDGED_AT = (4, 16)

# section -> its headline in "What the figures mean", in report order
HEADLINES = collections.OrderedDict([
    ("1", "Hot hits (≥0.95× nginx static at 4 and 16 clients)"),
    ("2", "Cold miss shared (1.00× the file, first bytes within 50 ms, "
          "done within 5%)"),
    ("6", "Scaling (1.00× the file, done within 5%, at every N)"),
    ("3", "Small hot files (≥0.5× nginx proxy_cache hits, judged on the "
          "default daemon: a HEAD to the base on every request)"),
    ("4", "Memory per download (≤64 KiB private; TCP memory no higher "
          "than nginx's)"),
    ("5", "Module overhead (≥0.98× requests/s with the module on)"),
])

# the verdict in the table's target column
MET_CELL = "met"
NOT_MET_CELL = "**NOT met**"
# a section's sentence: its headline, and the figures that missed
MET_SENTENCE = "- **{headline}: met.**"
NOT_MET_SENTENCE = "- **{headline}: not met** — {figures}."


def compare(t, ours, anchor):
    """True when the values ours (a list) meet target t against the
    anchor's median; a NaN anywhere is not met."""
    def ratio_ok(op):
        med = statistics.median(ours) if ours else float("nan")
        r = med / anchor if anchor else float("nan")
        return r == r and op(round(r, 2), t.threshold)

    c = t.comparison
    if c == "ratio>=":
        return ratio_ok(lambda a, b: a >= b)
    if c == "ratio<=":
        return ratio_ok(lambda a, b: a <= b)
    if c == "max<=":
        return bool(ours) and max(ours) <= t.threshold
    if c == "each==":
        return all(v == t.threshold for v in ours)
    if c == "each<=":
        return all(v <= t.threshold for v in ours)
    if c == "each/anchor<=":
        return all(v <= t.threshold * anchor for v in ours)
    raise ValueError("unknown comparison %r" % c)


def cell(key, met):
    """The target column of a row judged by the target key."""
    return "%s: %s" % (BY_KEY[key].cell, MET_CELL if met else NOT_MET_CELL)


def claims():
    """Every target's claim, in table order, as one sentence's parts."""
    return [t.claim for t in TARGETS]
