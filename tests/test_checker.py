"""The checker itself: its oracles, its failure reports, time limits, replay,
counting and the command line."""
import json
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from broken_backends import DroppedDh0, Float32Claims64, _Wrapped
from implementations import get_backend
from properties.checks import PROPERTIES, PropertyFailure, direct_truncated, prop_bptt
from properties.cli import main
from properties.conformance import check_backend, run_property
from properties.hypothesis_helpers import FULL_CAPS, labelled, problems


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(problems(FULL_CAPS, truncation="cut", min_T=2))
def test_direct_truncation_agrees_with_the_reference_blocks(p):
    """Two independent readings of section 2: per loss term from the reference's full
    BPTT, and the reference's own block loop."""
    args, kw = p.bptt_args()
    want = reference.bptt(*args, **kw)
    got = direct_truncated(p)
    assert want.dhs is None
    scale = max(abs(want.loss), max(np.abs(g).max() for g in want.grads.as_dict().values()), np.abs(want.dh0).max())
    assert abs(got.loss - want.loss) <= 1e-10 * scale
    for n in want.grads.as_dict():
        np.testing.assert_allclose(getattr(got.grads, n), getattr(want.grads, n), rtol=1e-9, atol=1e-10 * scale)
    np.testing.assert_allclose(got.dh0, want.dh0, rtol=1e-9, atol=1e-10 * scale)
    if want.dc0 is not None:
        np.testing.assert_allclose(got.dc0, want.dc0, rtol=1e-9, atol=1e-10 * scale)


class _NaNGrads(_Wrapped):
    def fix(self, res, spec, params, xs, truncation):
        return replace(res, grads=replace(res.grads, W_h=res.grads.W_h * np.nan))


class _WrongShape(_Wrapped):
    def fix(self, res, spec, params, xs, truncation):
        return replace(res, dh0=res.dh0[:, :1] if res.dh0.shape[1] > 1 else np.zeros((res.dh0.shape[0], 2)))


class _Hangs(_Wrapped):
    def bptt(self, *args, **kw):
        time.sleep(600)


class _Counting(_Wrapped):
    calls = 0

    def bptt(self, *args, **kw):
        type(self).calls += 1
        return super().bptt(*args, **kw)


def test_nan_result_is_a_failure_naming_the_array():
    res = run_property(_NaNGrads(), "bptt", max_examples=5)
    assert res.status == "fail" and "grads.W_h" in res.message and "nan" in res.message.lower()


def test_wrong_shape_is_a_failure():
    res = run_property(_WrongShape(), "bptt", max_examples=5)
    assert res.status == "fail" and "dh0 has shape" in res.message


def test_a_hang_fails_that_property_and_the_rest_still_runs():
    t0 = time.perf_counter()
    report = check_backend(_Hangs(), properties=["bptt", "forward"], max_examples=3, timeout_s=1.0)
    assert time.perf_counter() - t0 < 30
    assert report.results["bptt"].status == "fail" and "timed out" in report.results["bptt"].message
    assert report.results["forward"].status == "pass"


def test_expected_failures_are_xfail():
    report = check_backend(DroppedDh0(), {"bptt": "dh0 not implemented yet"}, properties=["bptt", "forward"],
                           max_examples=5)
    assert report.results["bptt"].status == "xfail" and report.results["forward"].status == "pass"
    assert report.passed
    assert report.to_dict()["backends"]["broken:DroppedDh0"]["properties"]["bptt"]["status"] == "xfail"


def test_examples_are_counted_as_actual_calls():
    _Counting.calls = 0
    res = run_property(_Counting(), "determinism", max_examples=7)
    assert res.status == "pass" and res.examples == 7 and _Counting.calls == 2 * 7


def test_ci_is_reproducible_and_the_failure_replays():
    a = run_property(DroppedDh0(), "bptt", profile="ci")
    b = run_property(DroppedDh0(), "bptt", profile="ci")
    assert a.status == b.status == "fail"
    assert a.counterexample == b.counterexample
    assert "--property bptt --profile ci" in a.replay
    c = run_property(DroppedDh0(), "bptt", profile="dev", seed=1234)
    d = run_property(DroppedDh0(), "bptt", profile="dev", seed=1234)
    assert c.counterexample == d.counterexample and "--seed 1234" in c.replay


def test_float64_tolerance_rejects_float32_arithmetic():
    """A float32 computation of a well-conditioned case fails the float64 comparison."""
    rng = np.random.default_rng(0)
    H, D, O, T, B = 6, 3, 2, 8, 3
    params = reference.RNNParams(W_x=rng.normal(size=(H, D)), W_h=0.3 * rng.normal(size=(H, H)),
                                 b_h=rng.normal(size=H), W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    from properties.hypothesis_helpers import Problem

    p = Problem(reference.RNNSpec(), params, rng.normal(size=(T, B, D)), rng.normal(size=(T, B, O)), None, None)
    assert prop_bptt(get_backend("numpy", "float32"), p) <= 1.0        # fine as float32 ...
    with pytest.raises(PropertyFailure, match="differs? from the reference"):
        prop_bptt(Float32Claims64(), p)                                 # ... but not as float64


def test_cli_exit_status_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert main(["check", "--backend", "reference", "--property", "forward", "--property", "errors",
                 "--max-examples", "3", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    props = doc["backends"]["reference"]["properties"]
    assert set(props) == {"forward", "errors"}
    for name, r in props.items():
        assert {"status", "examples", "max_error", "counterexample"} <= set(r)   # the contract's keys, then details
        # every example is counted under the cell it drew (the reference supports all three)
        assert r["seconds"] >= 0 and set(r["cells"]) <= {"elman", "lstm", "gru"} and r["unsupported"] == []
        assert sum(r["cells"].values()) == r["examples"]
        assert r["status"] == "pass" and r["counterexample"] is None
        assert r["examples"] == 3 * PROPERTIES[name].examples_factor
    assert main(["check", "--backend", "tests.broken_backends:DroppedDh0", "--property", "bptt"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "bptt-suite check --backend" in out and "dh0" in out
    assert main(["check", "--backend", "no-such-backend"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["check", "--no-such-flag"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["check", "--property", "no-such-property"])
    assert exc.value.code == 2


def test_every_property_has_a_case_builder_and_a_doc():
    for name, prop in PROPERTIES.items():
        assert prop.doc and callable(prop.check) and callable(prop.build), name


@settings(max_examples=10, derandomize=True, deadline=None, database=None)
@given(st.data())
def test_labelled_draws_are_coupled(data):
    p = labelled(data)
    from properties.hypothesis_helpers import draw_problem

    case = draw_problem(p, FULL_CAPS)
    shapes = case.cell.shapes(case.D, case.H, case.O)
    assert all(np.shape(getattr(case.params, n)) == shapes[n][0] for n in case.cell.params)
    assert case.xs.shape == (case.T, case.B, case.D)
    assert case.targets.shape[:2] == (case.T, case.B)
    if case.spec.output == "softmax":
        assert case.targets.dtype.kind == "i" and case.targets.min() >= 0 and case.targets.max() < case.O


# -- failing fast and readably --------------------------------------------------------


def test_an_exception_on_every_call_is_reported_at_once_with_its_frames():
    """Before: about 75 s of shrinking an exception that every example raises, and no traceback."""
    from crashing_backends import RaisesEveryCall

    t0 = time.perf_counter()
    res = run_property(RaisesEveryCall(), "bptt")
    assert time.perf_counter() - t0 < 20
    assert res.status == "fail" and res.examples == 3 and "RuntimeError: kernel not initialised" in res.message
    assert "the backend raised" in res.message
    assert "crashing_backends.py:" in res.traceback and "in _broken" in res.traceback
    assert "crashing_backends.py:" in res.counterexample


class _Slow(_Wrapped):
    def call_bptt(self, *args):
        time.sleep(0.05)
        return super().call_bptt(*args)


class _SlowDroppedDh0(_Slow, DroppedDh0):
    pass


def test_shrinking_stops_at_its_budget_with_the_smallest_case_so_far():
    full = run_property(DroppedDh0(), "bptt", profile="dev", seed=5, shrink_examples=10 ** 6)
    cut = run_property(DroppedDh0(), "bptt", profile="dev", seed=5, shrink_examples=5)
    assert cut.status == "fail" and "shrinking stopped after 5 examples" in cut.message
    assert cut.examples < full.examples and "case:" in cut.counterexample and "replay:" in cut.counterexample


def test_a_timeout_while_shrinking_reports_the_smallest_failure_and_suggests_timeout():
    res = run_property(_SlowDroppedDh0(), "bptt", profile="dev", seed=1, timeout_s=2.0, shrink_examples=10 ** 6,
                       shrink_s=10 ** 6)
    assert res.status == "fail" and res.timed_out
    assert "while shrinking" in res.message and "--timeout" in res.message and "dh0" in res.message
    assert "Flaky" not in res.message and "case:" in res.counterexample


def test_a_timeout_is_never_blamed_on_the_backend():
    res = run_property(_Slow(), "bptt", profile="dev", seed=2, timeout_s=1.0)
    assert res.status == "fail" and res.timed_out and "timed out" in res.message
    assert "the backend raised" not in res.message and "--timeout" in res.message


def test_after_a_hang_the_rest_runs_under_a_short_limit():
    from properties import conformance

    t0 = time.perf_counter()
    report = check_backend(_Hangs(), properties=["bptt", "determinism", "forward"], max_examples=3, timeout_s=4.0)
    assert report.results["bptt"].hung and report.results["forward"].status == "pass"
    assert report.results["determinism"].timed_out and "cut to" in report.results["determinism"].message
    assert time.perf_counter() - t0 < 4.0 + conformance.after_hang_limit("ci", 4.0) + 20


def test_the_inputs_handed_to_a_backend_are_writable():
    seen = []

    class Looks(_Wrapped):
        def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
            seen.append(all(np.asarray(a).flags.writeable for a in (xs, targets, *params.as_dict().values())))
            return super().call_bptt(spec, params, xs, targets, h0, truncation, c0)

    assert run_property(Looks(), "bptt", max_examples=10).status == "pass"
    assert seen and all(seen)


def test_a_subclass_written_from_the_backend_docs_names_the_overflow_step():
    """Before: Backend called _bptt(case, checked=True), a TypeError for _bptt(case)."""
    from implementations.base import Backend

    class Mine(Backend):
        name = "docs-only"

        def _forward(self, case):
            return get_backend("numpy")._forward(case)

        def _bptt(self, case):
            return get_backend("numpy")._bptt(case)

    spec = reference.RNNSpec(activation="identity")
    H = 2
    params = reference.RNNParams(W_x=np.ones((H, 1)), W_h=1e40 * np.eye(H), b_h=np.zeros(H), W_y=np.ones((1, H)),
                                 b_y=np.zeros(1))
    xs, d = np.ones((12, 1, 1)), np.zeros((12, 1, 1))
    want = pytest.raises(FloatingPointError, match=r"t=\d+")
    with want as exc:
        reference.bptt(spec, params, xs, d)
    with pytest.raises(FloatingPointError, match=f"t={exc.value.args[0].split('t=')[1].split()[0]}"):
        Mine().bptt(spec, params, xs, d)
