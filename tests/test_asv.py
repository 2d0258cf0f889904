"""The asv benchmarks run: ``asv check`` finds no problem, and a dry run calls every
benchmark class's setup and then each of its benchmark methods once, at a tiny size,
for every parameter combination. A NotImplementedError from setup is a skip (what asv
honours); any exception from a benchmark method is a failure (asv reports it as one,
and ``make bench`` exits 2)."""
import importlib
import importlib.util
import inspect
import itertools
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: T = 30 is past the chunk (25) and the truncation length (20), so both truncated
#: benchmarks cut; B, D, H are as small as a real case gets.
TINY = "30,2,3,4"
PREFIXES = ("time_", "timeraw_", "peakmem_", "mem_", "track_")


@pytest.fixture(scope="module")
def bench():
    """asv_bench.bench_bptt imported with BPTT_BENCH_SIZES=TINY (the sizes are read at import)."""
    names = ("asv_bench.bench_bptt", "asv_bench.common")
    saved = {n: sys.modules.pop(n, None) for n in names}
    old = os.environ.get("BPTT_BENCH_SIZES")
    os.environ["BPTT_BENCH_SIZES"] = TINY
    try:
        module = importlib.import_module("asv_bench.bench_bptt")
    finally:
        if old is None:
            del os.environ["BPTT_BENCH_SIZES"]
        else:
            os.environ["BPTT_BENCH_SIZES"] = old
    yield module
    for n in names:
        sys.modules.pop(n, None)
        if saved[n] is not None:
            sys.modules[n] = saved[n]


def benchmark_classes(module):
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and benchmark_methods(cls)]


def benchmark_methods(cls):
    return [name for name in dir(cls) if name.startswith(PREFIXES)]


def dry_run(cls):
    """{params: "skip: ..." | {method: result}} over every parameter combination."""
    out = {}
    for params in itertools.product(*cls.params):
        obj = cls()
        try:
            obj.setup(*params)
        except NotImplementedError as exc:   # asv: skipped
            out[params] = f"skip: {exc}"
            continue
        out[params] = {m: getattr(obj, m)(*params) for m in benchmark_methods(cls)}  # raises = fails
    return out


def test_bench_matrix_switch():
    from asv_bench import common

    assert common.bench_matrix("light", "") == (common.LIGHT_SIZES, 1) == common.bench_matrix("", "")
    assert common.bench_matrix("full", "") == (common.SIZES, 2)
    assert common.bench_matrix("full", "30,2,3,4; 5,1,2,3") == ([(30, 2, 3, 4), (5, 1, 2, 3)], 2)
    assert common.bench_matrix("light", "30,2,3,4 5,1,2,3") == ([(30, 2, 3, 4), (5, 1, 2, 3)], 1)
    with pytest.raises(ValueError, match="BPTT_BENCH_MATRIX"):
        common.bench_matrix("huge", "")
    for bad in ("full", "30,2,3", "30,0,3,4", "30,2,3,x"):
        with pytest.raises(ValueError, match="BPTT_BENCH_SIZES"):
            common.bench_matrix("light", bad)


def test_benchmark_cells_are_the_cell_table():
    # the list is static (asv needs the same parameters on every commit); it must name every cell
    from asv_bench import common
    from reference.cells import CELL_NAMES

    assert common.CELLS == list(CELL_NAMES)


def test_the_tiny_sizes_are_used(bench):
    for cls in (bench.TimeBPTT, bench.TimeBPTTTruncated, bench.MemBPTT):
        assert cls.params[cls.param_names.index("size")] == [(30, 2, 3, 4)]


def test_every_benchmark_runs_or_skips_from_setup(bench, monkeypatch):
    monkeypatch.setattr(bench.TrackGradError, "SIZE", (30, 2, 3, 4))   # its fixed case is (50, 8, 16, 32)
    classes = benchmark_classes(bench)
    assert {c.__name__ for c in classes} >= {"TimeBPTT", "TimeBPTTTruncated", "MemBPTT", "TrackGradError"}
    runs = {cls.__name__: dry_run(cls) for cls in classes}
    for cls in classes:
        results = runs[cls.__name__]
        ran = [r for r in results.values() if not isinstance(r, str)]
        assert ran, f"{cls.__name__}: every parameter combination skipped"
        for params, r in results.items():
            if isinstance(r, str):
                continue
            for method, value in r.items():
                if method.startswith("track_"):
                    assert isinstance(value, float) and math.isfinite(value), (cls.__name__, params, value)
    # what must skip, and from setup: the baseline has no BPTT(h; h') with h' < h
    for (cell, backend, size), r in runs["TimeBPTTTruncated"].items():
        if backend == "torch.nn":
            assert isinstance(r, str) and "has no BPTT(h; h')" in r


def track(bench, cell, backend, dtype, bptt):
    t = bench.TrackGradError()
    t.setup(cell, backend, dtype, bptt)
    return t, t.track_grad_error(cell, backend, dtype, bptt)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_baseline_rows_compute_the_reference_gradients(bench, cell):
    pytest.importorskip("torch")
    t, err64 = track(bench, cell, "torch.nn", "float64", "full")
    assert set(t.got) == set(t.ref) - {"dh0"}   # every parameter of the cell, b_hn for the GRU
    # float64, T = 50, H = 32: summation-order rounding is ~1e-15; 1e-12 is rounding only
    assert err64 < 1e-12
    _, err32 = track(bench, cell, "torch.nn", "float32", "full")
    # float32 through 50 steps: ~5e-7 here; the float32 gradient rtol of the checks is 1e-5
    assert err32 < 1e-5


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("bptt", ["full", "truncated"])
def test_track_grad_error_of_the_reference_is_zero(bench, cell, bptt):
    t, err = track(bench, cell, "reference", "float64", bptt)
    assert set(t.got) == set(t.ref)
    assert err == 0.0   # the same deterministic computation twice


def test_track_grad_error_sees_a_wrong_gradient(bench, monkeypatch):
    from dataclasses import replace

    from implementations import get_backend

    class DoubledW_h:
        name, dtype = "doubled", "float64"

        def bptt(self, *args, **kwargs):
            res = get_backend("reference", "float64").bptt(*args, **kwargs)
            return replace(res, grads=replace(res.grads, W_h=2 * res.grads.W_h))

    monkeypatch.setattr(bench, "engine_backend", lambda name, dtype: DoubledW_h())
    _, err = track(bench, "gru", "doubled", "float64", "full")
    assert err == pytest.approx(1.0, rel=1e-12)   # |2g - g| / |g|


def test_a_backend_without_the_cell_is_skipped_in_setup(bench, monkeypatch):
    class NoGated:
        name, dtype = "no-gated", "float32"

        def _raise(self, spec, *args, **kwargs):
            if spec.cell != "elman":
                raise NotImplementedError(f"cell {spec.cell!r}")
            return None
        forward = bptt = _raise

    monkeypatch.setattr(bench, "engine_backend", lambda name, dtype: NoGated())
    bench._LAST.clear()
    with pytest.raises(NotImplementedError, match="backend 'no-gated' does not implement cell 'lstm'"):
        bench.TimeBPTT().setup("lstm", "no-gated", (30, 2, 3, 4))
    bench.TimeBPTT().setup("elman", "no-gated", (30, 2, 3, 4))
    bench._LAST.clear()


@pytest.mark.skipif(importlib.util.find_spec("asv") is None, reason="asv is not installed (requirements-bench.txt)")
def test_asv_check():
    env = dict(os.environ, ASV_PYTHONPATH=str(ROOT))   # this tree's project, not an installed copy
    proc = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout, proc.stdout + proc.stderr


def test_make_inputs_follow_the_cell_row():
    from asv_bench import common
    from reference.cells import CELLS

    for cell, row in CELLS.items():
        params, xs, targets = common.make_inputs((5, 2, 3, 4), cell=cell)
        for name, (shape, _) in row.shapes(3, 4, 3).items():
            assert np.shape(getattr(params, name)) == shape, (cell, name)
        assert xs.shape == (5, 2, 3) and targets.shape == (5, 2, 3)


def test_compare_torch_prints_every_table():
    """The one-run comparison runs end to end at a tiny size: every contender agrees
    with the torch.nn module (checked inside), and the GEMM-floor and lower-bound
    tables have a row per cell."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["BPTT_BENCH_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "asv_bench.compare_torch", "--repeats", "1", "--sizes", TINY,
                           "--no-memory", "--clock", "thread"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    floors = out[out.index("The unavoidable GEMMs alone"):out.index("A lower bound for the numpy engine")]
    bound = out[out.index("A lower bound for the numpy engine"):]
    for cell in ("elman", "lstm", "gru"):
        for table in (floors, bound):
            rows = [line for line in table.splitlines() if line.split()[:1] == [cell]]
            assert len(rows) == 1 and "(30, 2, 3, 4) |" in rows[0] and rows[0].rstrip().endswith("x"), table


def test_compare_torch_thread_clock_needs_one_thread():
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "asv_bench.compare_torch", "--clock", "thread"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--clock thread counts the calling thread's CPU time only" in proc.stderr
    assert "BPTT_BENCH_THREADS=1" in proc.stderr


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_phases_time_every_step_and_chunk(cell):
    """The phase breakdown sees every call of the engine's pieces (T = 40, B = 2: time
    chunks of 32 and 8 steps), leaves the engine as it was, and does not change its
    result."""
    from asv_bench import common, phases
    from implementations import engine

    kernel_for, errors = engine.kernel_for, engine._Output.errors
    total, secs, calls = phases.phases("numpy", cell, (40, 2, 3, 4), repeats=1)
    assert (engine.kernel_for, engine._Output.errors) == (kernel_for, errors)
    assert engine.chunk_steps(40, 2) == 32
    assert calls == {"project": 2, "step": 40, "output": 2, "prepare": 2, "back": 40, "grads": 2}
    assert set(secs) == set(phases.PHASES) and secs["rest"] >= 0 and total > 0

    params, xs, targets = common.make_inputs((40, 2, 3, 4), cell=cell)
    be, spec = common.engine_backend("numpy", "float32"), common.make_spec(cell)
    plain = be.bptt(spec, params, xs, targets)
    with phases.timed_phases(defaultdict(float), defaultdict(int)):
        timed = be.bptt(spec, params, xs, targets)
    assert timed.loss == plain.loss
    for name, g in plain.grads.as_dict().items():
        np.testing.assert_array_equal(getattr(timed.grads, name), g)


def test_phases_rejects_a_bad_size():
    proc = subprocess.run([sys.executable, "-m", "asv_bench.phases", "--sizes", "5,2,3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "expected T,B,D,H (four positive integers); got '5,2,3'" in proc.stderr
