"""The demo (make demo DEMO_ONESHOT=1) passes: redirect, MISS, HIT, bytes."""

import os
import subprocess

import harness


def test_demo_oneshot():
    p = subprocess.run(
        ["/usr/bin/python3", os.path.join(harness.REPO, "tests", "demo.py"),
         "--oneshot", "--run-dir", os.path.join("tests", "demo")],
        cwd=harness.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    out = p.stdout
    assert p.returncode == 0, out
    assert "HTTP/1.1 302 Found" in out, out
    assert "ok      302 to the offload host" in out, out
    assert out.count("ok      curl got 200 from the offload host") == 2, out
    assert "ok      offload daemon: MISS" in out, out
    assert "ok      offload daemon: HIT" in out, out
    assert "ok      base: only a HEAD" in out, out
    assert "ok      download 1: size and sha256 equal" in out, out
    assert "ok      download 2: size and sha256 equal" in out, out
    assert "FAILED" not in out, out
    assert "RESULT: all checks passed." in out, out
