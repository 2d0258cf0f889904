"""The command line as a user meets it: usage errors first, the seed and the run in the
JSON, results kept as they finish, Ctrl-C, a crashing backend, progress."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from properties import cli
from properties.cli import Progress, main
from properties.conformance import backend_targets

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([PY, "-m", "properties.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, **kw)


def test_a_bad_json_path_is_a_usage_error_before_the_run(tmp_path, capsys):
    t0 = time.perf_counter()
    assert main(["check", "--backend", "reference", "--json", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    assert time.perf_counter() - t0 < 5   # nothing was run
    assert "--json" in capsys.readouterr().err


def test_a_negative_timeout_is_a_usage_error(capsys):
    assert main(["check", "--backend", "reference", "--timeout", "-1"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_a_mistyped_flag_shows_the_check_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--backend", "reference", "--proprety", "bptt"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bptt-suite check" in err and "--proprety" in err


def test_help_states_the_time_limits(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "ci 120 s, dev 300 s, thorough 3600 s" in out and "--cell" in out and "--strict" in out


def test_the_seed_is_printed_and_the_run_is_in_the_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert main(["check", "--backend", "reference", "--property", "forward", "--profile", "dev", "--max-examples",
                 "3", "--seed", "17", "--json", str(path), "--in-process"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bptt-suite check: profile dev, seed 17") and f"wrote {path}" in out
    doc = json.loads(path.read_text())
    run = doc["run"]
    assert run["seed"] == 17 and run["profile"] == "dev" and run["complete"] and not run["interrupted"]
    assert {"python", "numpy", "hypothesis"} <= set(run["versions"])
    assert doc["backends"]["reference"]["properties"]["forward"]["seconds"] > 0
    assert main(["check", "--backend", "reference", "--property", "forward", "--max-examples", "2",
                 "--in-process"]) == 0
    assert "seed 0 (derandomised" in capsys.readouterr().out


def test_an_object_computing_in_float32_is_listed_once_by_its_dtype():
    assert backend_targets(["tests.crashing_backends:float32_instance"]) == \
        ["tests.crashing_backends:float32_instance[float32]"]


def test_a_segfault_loses_only_the_property_that_was_running(tmp_path):
    path = tmp_path / "out.json"
    r = _run("check", "--backend", "tests.crashing_backends:SegfaultInForward", "--property", "bptt",
             "--property", "forward", "--property", "truncation_full", "--max-examples", "5", "--json", str(path))
    assert r.returncode == 1, r.stdout + r.stderr
    props = json.loads(path.read_text())["backends"]["tests.crashing_backends:SegfaultInForward"]["properties"]
    assert props["bptt"]["status"] == props["truncation_full"]["status"] == "pass"
    assert props["forward"]["status"] == "fail" and "SIGSEGV" in props["forward"]["message"]
    assert "SIGSEGV" in r.stdout


def _interruptible():
    """In the child: Ctrl-C as a terminal delivers it. A shell starts background jobs with
    SIGINT ignored, and an ignored signal stays ignored across exec, so a test run
    started with `make test &` would otherwise hand the check a SIGINT it ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_what_finished_writes_the_json_and_exits_130(tmp_path):
    path = tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([PY, "-m", "properties.cli", "check", "--backend", "tests.crashing_backends:SlowBptt",
                             "--property", "forward", "--property", "bptt", "--json", str(path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:   # the JSON is written as each property finishes
            if path.exists():
                doc = json.loads(path.read_text())
                if doc["backends"] and "forward" in doc["backends"]["tests.crashing_backends:SlowBptt"]["properties"]:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("forward did not finish")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "forward" in out and "pass" in out and "Traceback" not in err
    doc = json.loads(path.read_text())
    assert doc["run"]["interrupted"] and not doc["run"]["complete"]
    assert doc["backends"]["tests.crashing_backends:SlowBptt"]["properties"]["forward"]["status"] == "pass"


def test_laws_says_what_it_wrote(tmp_path, capsys, monkeypatch):
    import properties.laws

    monkeypatch.setattr(properties.laws, "plot_laws", lambda path: Path(path).write_bytes(b"png"))
    assert main(["laws", "--plot", str(tmp_path / "laws.png")]) == 0
    assert f"wrote {tmp_path / 'laws.png'}" in capsys.readouterr().out


def test_progress_names_backend_property_and_elapsed_and_is_quiet_off_a_terminal(capsys):
    stream = io.StringIO()
    p = Progress(stream, 2, 15)
    p.start(1, "numpy", 3, "rtrl")
    p.close()
    assert "[backend 1/2] numpy: property 3/15 rtrl 0 s" in stream.getvalue()
    assert main(["check", "--backend", "reference", "--property", "forward", "--max-examples", "2",
                 "--in-process"]) == 0
    assert "property 1/1" not in capsys.readouterr().err   # stderr is not a terminal here
    assert cli.Progress is Progress


def test_a_backend_process_whose_parent_is_gone_stops_quietly():
    """A parent killed by SIGTERM leaves its backend's process a broken pipe: at its next
    report the child stops, without the traceback of each failed send on stderr."""
    from properties.isolation import _child

    class Gone:
        closed = False

        def send(self, msg):
            raise BrokenPipeError(32, "Broken pipe")

        def close(self):
            self.closed = True

    conn = Gone()
    old = signal.getsignal(signal.SIGINT)   # the child ignores SIGINT from its first line
    try:
        _child(conn, "reference", {"properties": ["forward"], "profile": "ci", "max_examples": 1})
    finally:
        signal.signal(signal.SIGINT, old)
    assert conn.closed


def test_ctrl_c_while_a_backend_process_starts_is_held_not_dropped():
    from properties.isolation import _sigint_held

    old = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal (see _interruptible)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_held():
                os.kill(os.getpid(), signal.SIGINT)   # arrives while the child would be starting
                time.sleep(0.05)                      # held: nothing raised here
            time.sleep(1)                             # raised as the block ends
    finally:
        signal.signal(signal.SIGINT, old)
