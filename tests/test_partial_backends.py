"""Partial backends (docs/contract.md section 5): a backend that raises NotImplementedError
naming a feature is not failed for it; the checker records the feature, keeps drawing
supported cases, skips only when none can be drawn, and --strict fails it."""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from implementations import get_backend
from properties import conformance
from properties.checks import PROPERTIES
from properties.conformance import check_backend, feature_of, run_property
from properties.hypothesis_helpers import draw_problem
from properties.truncation import prop_truncation_full

ROOT = Path(__file__).resolve().parents[1]


class TanhReluOnly:
    """A correct numpy backend that, like torch.nn.RNN, has only tanh and relu."""

    name = "tanh-relu-only"

    def __init__(self, dtype="float64", message="torch.nn.RNN has no nonlinearity {!r}"):
        self.inner, self.dtype, self.message = get_backend("numpy", dtype), dtype, message

    def _check(self, spec):
        if getattr(spec, "activation", "tanh") in ("sigmoid", "identity"):
            raise NotImplementedError(self.message.format(spec.activation))

    def forward(self, spec, params, xs, h0=None, **kw):
        self._check(spec)
        return self.inner.forward(spec, params, xs, h0, **kw)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, **kw):
        self._check(spec)
        return self.inner.bptt(spec, params, xs, targets, h0, truncation, **kw)


class NoTruncation(TanhReluOnly):
    name = "no-truncation"

    def _check(self, spec):
        pass

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, **kw):
        if truncation is not None and truncation.h < np.shape(xs)[0]:
            raise NotImplementedError("truncation")
        return self.inner.bptt(spec, params, xs, targets, h0, truncation, **kw)


class Nothing(TanhReluOnly):
    name = "nothing"

    def _check(self, spec):
        raise NotImplementedError("float64")


@pytest.mark.parametrize("message,feature", [
    ("torch.nn.RNN has no nonlinearity 'sigmoid'", "activation 'sigmoid'"),
    ("activation 'identity' is not supported by this backend", "activation 'identity'"),
    ("cell 'gru'", "cell 'gru'"), ("no truncated BPTT here", "truncation"), ("float64", "float64"),
    ("h_prime < h", "truncation h' < h"), ("", "(a NotImplementedError without a message)"),
])
def test_the_feature_is_read_from_the_message(message, feature):
    assert feature_of(NotImplementedError(message)) == feature


def test_unsupported_activations_are_listed_and_the_rest_is_checked():
    """Before: every property failed on the first sigmoid case."""
    report = check_backend(TanhReluOnly(), properties=["bptt", "determinism", "errors"], max_examples=20)
    assert report.passed, report
    for name in ("bptt", "determinism"):
        res = report.results[name]
        assert res.status == "pass" and res.examples == 20
        assert set(res.unsupported) <= {"activation 'sigmoid'", "activation 'identity'"} and res.unsupported
    assert report.unsupported == ["activation 'identity'", "activation 'sigmoid'"]
    doc = report.to_dict()["backends"]["tanh-relu-only"]
    assert doc["unsupported"] == report.unsupported
    assert "unsupported by tanh-relu-only: activation 'identity', activation 'sigmoid'" in str(report)


def test_a_backend_without_truncation_passes_what_it_has_and_skips_what_it_lacks():
    report = check_backend(NoTruncation(), properties=["truncation_cut", "determinism", "inputs_untouched"],
                           max_examples=10)
    assert report.results["truncation_cut"].status == "skip"
    assert "truncation" in report.results["truncation_cut"].message
    assert report.results["determinism"].status == report.results["inputs_untouched"].status == "pass"
    assert report.unsupported == ["truncation"] and report.passed


def test_skip_only_when_nothing_supported_can_be_drawn():
    res = run_property(Nothing(), "bptt", max_examples=5)
    assert res.status == "skip" and "float64" in res.message and res.examples == 0


def test_strict_makes_an_unsupported_feature_a_failure():
    res = run_property(TanhReluOnly(), "bptt", max_examples=20, strict=True)
    assert res.status == "fail" and "--strict" in res.message and "activation '" in res.message
    assert "--strict" in res.replay and "case:" in res.counterexample
    report = check_backend(TanhReluOnly(), properties=["bptt"], max_examples=20, strict=True)
    assert not report.passed


# -- cells, needs, and a backend that does not know about gated cells -----------------


@dataclass(frozen=True)
class _Prop:
    name: str
    check: object
    build: object
    doc: str = "a test property"
    examples_factor: int = 1
    cells: tuple = ("elman", "lstm", "gru")
    needs: tuple = ()


def _gated_case(draw, caps, cells):
    cell = draw(st.sampled_from(cells), "cell")
    return cell, draw_problem(draw, caps, truncation="none")


def _calls_with_c0(backend, case):
    cell, p = case
    if cell == "lstm":
        return backend.bptt(p.spec, p.params, p.xs, p.targets, h0=p.h0, c0=np.zeros((p.B, p.H)))
    backend.bptt(p.spec, p.params, p.xs, p.targets, h0=p.h0)
    return 0.5


class _OldElman:
    """Written before gated cells: no c0 argument."""

    name, dtype = "old-elman", "float64"

    def __init__(self):
        self.inner = get_backend("numpy")

    def forward(self, spec, params, xs, h0=None):
        return self.inner.forward(spec, params, xs, h0)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None):
        return self.inner.bptt(spec, params, xs, targets, h0, truncation)


@pytest.fixture
def fake_property(monkeypatch):
    def register(**kw):
        prop = _Prop(**kw)
        monkeypatch.setitem(PROPERTIES, prop.name, prop)
        return prop.name
    return register


def test_cells_are_restricted_and_counted(fake_property, monkeypatch):
    monkeypatch.setattr(conformance, "cell_of", lambda case: case[0] if isinstance(case, tuple) else "elman")
    name = fake_property(name="_cells", check=lambda b, case: 0.25, build=_gated_case)
    res = run_property(get_backend("numpy"), name, max_examples=30)
    assert res.status == "pass" and sum(res.cells.values()) == 30 and set(res.cells) <= {"elman", "lstm", "gru"}
    assert len(res.cells) > 1 and res.max_error == 0.25
    res = run_property(get_backend("numpy"), name, max_examples=10, cells=["gru"])
    assert res.cells == {"gru": 10}


def test_a_property_for_other_cells_is_skipped(fake_property):
    name = fake_property(name="_elman_law", check=lambda b, case: 0.0, build=lambda d, c: draw_problem(d, c),
                         cells=("elman",))
    res = run_property(get_backend("numpy"), name, cells=["lstm"])
    assert res.status == "skip" and "elman" in res.message and res.examples == 0


def test_a_builder_that_draws_only_elman_is_skipped_for_lstm():
    res = run_property(get_backend("reference"), "forward", max_examples=5, cells=["lstm"])
    if res.status == "skip":   # a builder that draws Elman cases only
        assert "lstm" in res.message and res.examples == 0
    else:                      # one that draws the cells it is given
        assert res.status == "pass" and res.cells == {"lstm": 5}


def test_a_property_needing_a_declared_feature_is_skipped(fake_property):
    from properties.results import Unsupported

    def no_dhs(backend, case):
        raise Unsupported("dhs")

    first = fake_property(name="_uses_dhs", check=no_dhs, build=lambda d, c: draw_problem(d, c))
    second = fake_property(name="_needs_dhs", check=lambda b, case: 0.0, build=lambda d, c: draw_problem(d, c),
                           needs=("dhs",))
    report = check_backend(get_backend("numpy"), properties=[first, second], max_examples=5)
    assert report.results[first].status == "skip" and report.results[first].unsupported
    assert report.results[second].status == "skip" and "dhs" in report.results[second].message
    assert report.unsupported == ["dhs"]


def test_a_gated_case_answered_with_a_type_error_says_how_to_declare_the_cell(fake_property, monkeypatch):
    monkeypatch.setattr(conformance, "cell_of", lambda case: case[0] if isinstance(case, tuple) else "elman")
    name = fake_property(name="_gated", check=_calls_with_c0, build=_gated_case)
    res = run_property(_OldElman(), name, max_examples=20, cells=["lstm"])
    assert res.status == "fail" and "TypeError" in res.message and "c0" in res.message
    assert "NotImplementedError" in res.message and "cell 'lstm'" in res.message and "--cell elman" in res.message


# -- the examples ---------------------------------------------------------------------


@pytest.fixture
def examples_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_the_torch_rnn_example_declares_what_it_lacks(examples_path):
    pytest.importorskip("torch")
    from examples.torch_rnn import TorchRNN

    report = check_backend(TorchRNN(), properties=["forward", "errors", "inputs_untouched", "truncation_cut"],
                           max_examples=20)
    assert report.passed, {n: r.counterexample for n, r in report.failures.items()}
    assert {"activation 'sigmoid'", "activation 'identity'", "truncation"} <= set(report.unsupported)
    assert report.results["truncation_cut"].status == "skip"


def test_the_torch_rnn_example_passes_the_whole_check(examples_path):
    pytest.importorskip("torch")
    from examples.torch_rnn import TorchRNN

    report = check_backend(TorchRNN(), profile="ci")
    assert report.passed, {n: r.counterexample for n, r in report.failures.items()}
    assert "dhs" in report.unsupported and "activation 'sigmoid'" in report.unsupported


def test_the_torch_lstm_example_passes_check_cell_lstm(examples_path):
    pytest.importorskip("torch")
    from examples.torch_lstm import TorchLSTM

    report = check_backend(TorchLSTM(), profile="ci", cells=["lstm"])
    assert report.passed, {n: r.counterexample for n, r in report.failures.items()}
    assert any(r.cells.get("lstm") for r in report.results.values())


def test_the_torch_lstm_example_agrees_with_the_reference(examples_path):
    pytest.importorskip("torch")
    from examples.torch_lstm import TorchLSTM
    from reference import RNNParams, RNNSpec, Truncation

    rng = np.random.default_rng(3)
    T, B, D, H, O = 7, 3, 2, 4, 3
    params = RNNParams(W_x=rng.normal(size=(4 * H, D)), W_h=0.5 * rng.normal(size=(4 * H, H)),
                       b_h=rng.normal(size=4 * H), W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    xs, d = rng.normal(size=(T, B, D)), rng.normal(size=(T, B, O))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    ref = get_backend("reference")
    for tr in (None, Truncation(3, 2), Truncation(2, 1)):
        spec = RNNSpec(cell="lstm", l2=0.1)
        got = TorchLSTM().bptt(spec, params, xs, d, h0, tr, c0=c0)
        want = ref.bptt(spec, params, xs, d, h0, tr, c0=c0)
        # float64 through torch's fused kernel: sums in another order, a few ulps times T*H
        assert got.loss == pytest.approx(want.loss, rel=1e-12)
        for n in RNNParams.names():
            np.testing.assert_allclose(getattr(got.grads, n), getattr(want.grads, n), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.dh0, want.dh0, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.dc0, want.dc0, rtol=1e-10, atol=1e-12)
        assert got.dhs is None and got.dcs is None
    with pytest.raises(NotImplementedError, match="cell 'elman'"):
        TorchLSTM().bptt(RNNSpec(), RNNParams(W_x=np.ones((1, 1)), W_h=np.ones((1, 1)), b_h=np.ones(1),
                                              W_y=np.ones((1, 1)), b_y=np.ones(1)), np.ones((2, 1, 1)),
                         np.ones((2, 1, 1)))
    assert sys.modules.get("torch") is not None


def test_a_suite_bug_on_a_gated_case_does_not_blame_the_backend(fake_property, monkeypatch):
    # an exception raised by the property's own code is the suite's: no advice to declare the cell
    monkeypatch.setattr(conformance, "cell_of", lambda case: case[0] if isinstance(case, tuple) else "elman")

    def suite_bug(backend, case):   # prop_truncation_full asserts that the case it gets is truncated
        return prop_truncation_full(backend, case[1])
    name = fake_property(name="_suite_bug", check=suite_bug, build=_gated_case)
    res = run_property(get_backend("numpy"), name, max_examples=5, cells=["lstm"])
    assert res.status == "fail" and "a bug in the suite?" in res.message
    assert "NotImplementedError" not in res.message and "--cell elman" not in res.message


def test_a_property_s_own_reject_is_no_failure(fake_property):
    # finite_differences rejects a relu case whose stencil crosses a kink; that rejection once
    # started the shrink budget as if it had failed, and the run ended "failed" when it ran out
    from hypothesis import reject

    def sometimes_rejects(backend, case):
        if case[0]:
            reject()
        return 0.1
    name = fake_property(name="_rejects", check=sometimes_rejects,
                         build=lambda d, c: (d(st.booleans(), "reject"), draw_problem(d, c)))
    res = run_property(get_backend("numpy"), name, max_examples=30, shrink_s=0.0)
    assert res.status == "pass", res.message
