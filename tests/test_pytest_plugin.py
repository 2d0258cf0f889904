"""The pytest plugin under pytest-xdist: the (backend, property) tests spread over
worker processes, with one seed for the whole run."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_plugin_runs_under_xdist():
    pytest.importorskip("xdist")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-v",
                        "properties/test_conformance.py", "--bptt-backend", "reference", "--bptt-profile", "dev",
                        "-k", "forward or errors or determinism"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "3 passed" in out
    assert {"gw0", "gw1"} <= set(re.findall(r"\[(gw\d+)\]", out))       # two worker processes ran tests
    assert len(set(re.findall(r"bptt-suite: profile dev, seed (\d+)", out))) == 1


def test_the_plugin_shares_an_example_database(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    db = tmp_path / "examples"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                        "properties/test_conformance.py", "--bptt-backend", "tests.broken_backends:DroppedDh0",
                        "-k", "bptt and not rtrl", "--bptt-profile", "dev", "--bptt-database", str(db)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "dh0" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
    assert any(db.rglob("*")), "the failing example was not saved"
