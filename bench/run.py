#!/usr/bin/python3
"""bench/run.py -- the benchmark: measure (bench/measure.py), then report
(bench/report.py).

Measuring writes every raw figure and the machine's facts to a results
file (.run/bench/results.json); reporting turns that file alone into
docs/benchmarks.md and the PNG plots in docs/img/, judging each figure by
the targets in bench/targets.py, and prints the table.

    /usr/bin/python3 bench/run.py [--quick] [--keep] [--only SECTIONS]

Only the standard library; wrk, nginx and gnuplot are run as programs.
Every server is stopped by PID at the end, also on Ctrl-C.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402
import report  # noqa: E402


def main():
    args = measure.arg_parser(__doc__).parse_args()
    rc = measure.measure(args.quick, args.keep, args.only.split(","),
                         args.results)
    if rc != 0:
        return rc
    return report.report(args.results)


if __name__ == "__main__":
    sys.exit(main())
