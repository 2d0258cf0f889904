"""The properties themselves: what they report, what they accept from a correct backend
(no false alarms: underflow, flush to zero, the order of overflow, saturation), what
they need, and that every run reaches the saturating corners."""
import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from broken_backends import DroppedDc0, SigmoidTailFlushed, _Wrapped
from examples.my_backend import MyBackend
from implementations import get_backend
from implementations.backends import ReferenceBackend
from properties import laws
from properties.bad_input import BadInput, _overflow_steps, prop_errors
from properties.carousel import carousel_case, prop_gru_carousel, prop_lstm_carousel
from properties.checks import (PROPERTIES, Measured, PropertyFailure, Unsupported, check_bptt_result,
                               prop_bptt, prop_decay_bound, prop_finite_differences, prop_growth_law,
                               prop_orthogonal_law)
from properties.conformance import run_property
from properties.hypothesis_helpers import (FULL_CAPS, SMALL_CAPS, Problem, _fixed_draw, corner_cases, draw_problem,
                                           labelled)
from reference.bptt import run_forward
from reference.cells import CELL_NAMES, CELLS
from reference.validation import validate_forward


def _problem(spec, params, xs, targets, h0=None, c0=None, truncation=None):
    return Problem(spec, params, np.asarray(xs, dtype=np.float64), targets, h0, truncation, c0=c0)


def _orthogonal_case(T=24, B=3, H=6, rho=1.1875, out_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    params = reference.RNNParams(W_x=rng.standard_normal((H, 1)), W_h=rho * laws.orthogonal(H, rng),
                                 b_h=np.zeros(H), W_y=out_scale * rng.standard_normal((2, H)), b_y=np.zeros(2))
    spec = reference.RNNSpec(activation="identity", output="linear", targets="last")
    return _problem(spec, params, rng.standard_normal((T, B, 1)), np.zeros((T, B, 2)), h0=rng.standard_normal((B, H)))


# ---------------------------------------------------------------------------
# Issue 10: false alarms


def test_orthogonal_law_holds_where_the_squares_of_the_norms_underflow():
    """dL/dh_t ~ 1e-164: representable, but its squares (1e-328) are not; the law holds
    there and is checked there (it failed with 'relative excess inf' on the reference)."""
    p = _orthogonal_case(out_scale=1e-82)
    dhs = reference.bptt(*p.bptt_args()[0], **p.bptt_args()[1]).dhs
    assert 1e-170 < np.abs(dhs).max() < 1e-150 and np.sum(dhs[-1] ** 2) < np.finfo(np.float64).tiny
    assert prop_orthogonal_law(get_backend("reference"), p) <= 1.0


def test_orthogonal_law_still_catches_a_wrong_norm_at_tiny_scale():
    p = _orthogonal_case(out_scale=1e-82)

    class Halved(_Wrapped):
        def fix(self, res, spec, params, xs, truncation):
            dhs = res.dhs.copy()
            dhs[0] *= 0.5
            return replace(res, dhs=dhs)
    with pytest.raises(PropertyFailure, match="orthogonal law"):
        prop_orthogonal_law(Halved(), p)


class _FlushToZero(_Wrapped):
    """A correct float32 backend that flushes subnormal numbers to zero, as XLA's CPU code
    does: torch's float32 result, with dL/dh_{t-1} = dL/dh_t W_h of the growth case (identity
    activation) recomputed in float32 with every subnormal product and sum flushed to 0."""

    def __init__(self, dtype="float32"):
        self.inner = get_backend("torch", dtype="float32")
        self.dtype, self.name = "float32", "ftz"

    def fix(self, res, spec, params, xs, truncation):
        tiny = np.float32(np.finfo(np.float32).tiny)

        def flush(a):
            return np.where(np.abs(a) < tiny, np.float32(0), a).astype(np.float32)
        W = np.asarray(params.W_h, dtype=np.float32)
        dhs = np.zeros(res.dhs.shape, np.float32)
        dhs[-1] = res.dhs[-1]
        for t in range(len(dhs) - 1, 0, -1):
            dhs[t - 1] = flush(flush(dhs[t][:, :, None] * W[None]).sum(axis=1))
        return replace(res, dhs=dhs.astype(np.float64))


def _growth_problem(rho, T, H=3, seed=0):
    rng = np.random.default_rng(seed)
    W_h = laws.with_spectral_radius(rng.standard_normal((H, H)), rho)
    params = reference.RNNParams(W_x=rng.standard_normal((H, 2)), W_h=W_h, b_h=np.zeros(H), W_y=np.eye(H),
                                 b_y=np.zeros(H))
    targets = np.zeros((T, H, H))
    targets[-1] = -H * np.eye(H)
    spec = reference.RNNSpec(activation="identity", output="linear", targets="last")
    return _problem(spec, params, np.zeros((T, H, 2)), targets)


def test_growth_law_does_not_judge_values_a_float32_backend_may_flush_to_zero():
    """rho = 0.0625, k = 31: rho^k = 4.7e-38 is within 4x of float32's smallest normal
    number; a flush-to-zero backend loses the products below it (it failed as
    3.3e-38 < 4.7e-38, as a JAX backend did with 3.2e-38)."""
    p = _growth_problem(0.0625, 32)
    got = _FlushToZero().bptt(*p.bptt_args()[0], **p.bptt_args()[1])
    assert laws.sigma_max(got.dhs[0]) < 0.75 * 0.0625 ** 31     # the case does reach the flushed range
    assert prop_growth_law(_FlushToZero(), p) <= 1.0


def test_growth_law_still_catches_a_norm_too_small_in_the_normal_range():
    p = _growth_problem(0.5, 12)

    class Shrunk(_Wrapped):
        def fix(self, res, spec, params, xs, truncation):
            dhs = res.dhs.copy()
            dhs[0] *= 0.5
            return replace(res, dhs=dhs)
    with pytest.raises(PropertyFailure):
        prop_growth_law(Shrunk(), p)


def _overflow_loss_case(targets="every", T=3):
    rng = np.random.default_rng(3)
    B, D, H, O = 2, 2, 3, 2
    spec = reference.RNNSpec(activation="tanh", output="linear", targets=targets)
    P = dict(W_x=rng.standard_normal((H, D)), W_h=0.5 * rng.standard_normal((H, H)), b_h=rng.standard_normal(H),
             W_y=np.full((O, H), 1e200 / H), b_y=np.zeros(O))
    xs, tg = rng.standard_normal((T, B, D)) + 1.0, rng.standard_normal((T, B, O))
    steps = _overflow_steps(spec, P, xs, tg, None, None)
    p = _problem(spec, reference.RNNParams(**P), xs, tg)
    return BadInput(p, "overflow_loss", "bptt", (spec, reference.RNNParams(**P), xs, tg),
                    {"h0": None, "truncation": None}, (FloatingPointError,), (), steps)


def test_overflow_of_the_loss_names_the_first_step_of_either_computation_order():
    """Every loss term and the backward pass overflow together: the reference names the
    first loss term (t=1), a backend that checks after its backward pass names t=T; both
    are the first non-finite step of their order (the example backend failed with t=2)."""
    bad = _overflow_loss_case()
    assert bad.first_steps == {"forward": 1, "backward": 3}
    for backend in (get_backend("reference"), MyBackend(), MyBackend("float32"), get_backend("numpy", "float32")):
        assert prop_errors(backend, bad) is None


def test_overflow_naming_a_step_in_between_fails():
    bad = _overflow_loss_case()

    class Middle:
        name, dtype = "middle", "float64"

        def bptt(self, *args, **kw):
            raise FloatingPointError("overflow in the loss at time step t=2")
    with pytest.raises(PropertyFailure, match="names step 2"):
        prop_errors(Middle(), bad)


def _preactivation_sign(case):
    """'negative' / 'positive' when every pre-activation of every step is below -10 / above 10."""
    with np.errstate(all="ignore"):
        _, caches, _ = run_forward(case)
    z = np.stack([c[0] @ case.params.W_x.T + c[1] @ case.params.W_h.T + case.params.b_h for c in caches])
    return "negative" if (z < -10).all() else "positive" if (z > 10).all() else None


class _Recorder(ReferenceBackend):
    def __init__(self, name):
        super().__init__()
        self.name, self.seen = name, set()

    def _note(self, case):
        sign = _preactivation_sign(case)
        if sign:
            self.seen.add(f"{case.spec.cell}/{case.spec.activation}/{sign}")

    def _forward(self, case):
        self._note(case)
        return super()._forward(case)

    def _bptt(self, case, checked=False):
        self._note(case)
        return super()._bptt(case, checked)


@pytest.mark.parametrize("prop", ["forward", "bptt", "finite_differences"])
def test_the_ci_profile_reaches_every_saturating_corner_whatever_the_backend_is_called(prop):
    """Large negative and large positive pre-activations, every cell and activation (the
    dtype is the backend's), in the derandomised ci stream of the properties that find
    precision defects there; the same under any backend name."""
    every = {f"{c}/{a}/{s}" for c in CELL_NAMES for a in CELLS[c].activations for s in ("negative", "positive")}
    seen = []
    for name in ("my-kernel", "numpy[float32]", "rtrl"):
        rec = _Recorder(name)
        assert run_property(rec, prop, profile="ci").status == "pass"
        seen.append(rec.seen)
    assert seen[0] == seen[1] == every
    assert seen[2] == every          # smaller caps (rtrl's), the same corners


def test_a_sigmoid_that_drops_its_lower_tail_is_found_in_ci():
    """The float32 defect of (1 + tanh(a/2)) / 2 (0 where 2e-9 is representable) is not
    hidden by the rounding floor: sigmoid's lower tail is relative."""
    res = run_property(SigmoidTailFlushed(), "finite_differences", profile="ci")
    assert res.status == "fail" and "sigmoid" in res.counterexample


# ---------------------------------------------------------------------------
# Reports: every quantity, worst first, plain numbers, ratios


class _NoL2OnWh(_Wrapped):
    """l2 missing on W_h, in the loss and the gradient."""

    def fix(self, res, spec, params, xs, truncation):
        W = np.asarray(params.W_h)
        return replace(res, loss=res.loss - spec.l2 / 2 * float((W ** 2).sum()),
                       grads=replace(res.grads, W_h=res.grads.W_h - spec.l2 * W))


def test_a_failure_lists_every_quantity_that_differs_worst_first_in_plain_numbers():
    rng = np.random.default_rng(0)
    H, D, O, T, B = 4, 3, 2, 6, 2
    params = reference.RNNParams(W_x=rng.normal(size=(H, D)), W_h=0.4 * rng.normal(size=(H, H)),
                                 b_h=rng.normal(size=H), W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    p = _problem(reference.RNNSpec(l2=0.3), params, rng.normal(size=(T, B, D)), rng.normal(size=(T, B, O)))
    with pytest.raises(PropertyFailure) as exc:
        prop_bptt(_NoL2OnWh(), p)
    failing = exc.value.raw["failing"]
    assert {f["array"] for f in failing} == {"loss", "grads.W_h"}
    assert [f["ratio"] for f in failing] == sorted((f["ratio"] for f in failing), reverse=True)
    assert exc.value.error == failing[0]["ratio"] > 1
    text = str(exc.value)
    assert "grads.W_h" in text and "loss" in text and "np.float64" not in text
    assert text.index(failing[0]["array"] + " (") < text.index(failing[1]["array"] + " (")


def test_measured_is_the_ratio_and_serialises_as_a_number():
    m = Measured(0.25, {"where": "dhs[0, 1, 2]"})
    assert m == 0.25 and m.ratio == 0.25 and max(m, 0.1) == 0.25 and json.dumps(m) == "0.25"
    assert m.raw["where"] == "dhs[0, 1, 2]"


def test_a_passing_property_reports_at_most_one():
    for name in ("bptt", "truncation_error_bound", "finite_differences", "lstm_carousel", "gru_carousel"):
        res = run_property(get_backend("reference"), name, max_examples=15)
        assert res.status == "pass" and 0 <= res.max_error <= 1, (name, res.max_error)


# ---------------------------------------------------------------------------
# Partial results: dhs / dcs None for full BPTT


class _NoDhs(_Wrapped):
    def fix(self, res, spec, params, xs, truncation):
        return replace(res, dhs=None, dcs=None)


@settings(max_examples=15, derandomize=True, deadline=None, database=None)
@given(st.data())
def test_dhs_none_for_full_bptt_is_unsupported_not_a_failure(data):
    p = draw_problem(labelled(data), SMALL_CAPS, truncation="none")
    check_bptt_result(_NoDhs().bptt(*p.bptt_args()[0], **p.bptt_args()[1]), p)
    assert prop_bptt(_NoDhs(), p) <= 1                      # the rest is compared
    if p.spec.cell == "elman":
        q = replace(p, spec=replace(p.spec, targets="last"))
        with pytest.raises(Unsupported) as exc:
            prop_decay_bound(_NoDhs(), q)
        assert exc.value.feature == "dhs"


# ---------------------------------------------------------------------------
# Gated cells


def test_c0_is_passed_only_with_an_lstm_spec():
    for cell in CELL_NAMES:
        p = draw_problem(_fixed_draw(corner_cases(FULL_CAPS, cells=(cell,))[f"{cell}/tanh/negative"]), FULL_CAPS,
                         cells=(cell,))
        assert ("c0" in p.bptt_args()[1]) == ("c0" in p.forward_args()[1]) == (cell == "lstm")
        assert p.params.W_x.shape == CELLS[cell].shapes(p.D, p.H, p.O)["W_x"][0]


def test_gated_results_are_checked_against_the_row():
    p = draw_problem(_fixed_draw(corner_cases(FULL_CAPS, cells=("gru",))["gru/tanh/positive"]), FULL_CAPS,
                     cells=("gru",))
    res = reference.bptt(*p.bptt_args()[0], **p.bptt_args()[1])
    check_bptt_result(res, p)
    with pytest.raises(PropertyFailure, match="b_hn"):
        check_bptt_result(replace(res, grads=replace(res.grads, b_hn=None)), p)
    with pytest.raises(PropertyFailure, match="dc0"):
        check_bptt_result(replace(res, dc0=np.zeros((p.B, p.H))), p)


@settings(max_examples=20, derandomize=True, deadline=None, database=None)
@given(st.data())
def test_the_carousel_laws_hold_on_the_reference(data):
    cells = data.draw(st.sampled_from([("lstm",), ("gru",)]))
    p = carousel_case(labelled(data), FULL_CAPS, cells)
    prop = prop_lstm_carousel if cells == ("lstm",) else prop_gru_carousel
    assert prop(get_backend("reference"), p) <= 1.0
    if cells == ("lstm",):   # the gates are the row's forget gate with W_h = 0
        f = laws.carousel_gates(p.spec, p.params, p.xs)
        case = validate_forward(*p.forward_args()[0], **p.forward_args()[1])
        assert np.allclose(np.stack([c[4] for c in run_forward(case)[1]]), f, rtol=1e-14, atol=0)


def test_the_lstm_carousel_catches_a_dropped_dc0():
    p = carousel_case(_fixed_draw(corner_cases(FULL_CAPS, cells=("lstm",))["lstm/tanh/positive"]), FULL_CAPS,
                      ("lstm",))
    p = replace(p, params=replace(p.params, b_h=np.abs(p.params.b_h) * 0 + 3.0))   # f = sigma(3 + ...) ~ 0.95
    with pytest.raises(PropertyFailure, match="dL/dc_0"):
        prop_lstm_carousel(DroppedDc0(), p)


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(st.data())
def test_elman_only_runs_never_see_gated_bad_input(data):
    """The errors builder with cells=("elman",) draws no gated spec, b_hn or c0: a backend
    written before the gated cells passes it (the example backend does)."""
    bad = PROPERTIES["errors"].build(labelled(data), FULL_CAPS, ("elman",))
    assert bad.problem.spec.cell == "elman" and "c0" not in bad.kwargs
    assert getattr(bad.args[1], "b_hn", None) is None
    prop_errors(MyBackend(), bad)


def test_every_property_row_says_where_it_applies():
    for name, prop in PROPERTIES.items():
        assert prop.cells and set(prop.cells) <= set(CELL_NAMES), name
        for cell in CELL_NAMES:
            if name in CELLS[cell].laws:
                assert cell in prop.cells
    assert PROPERTIES["decay_bound"].cells == ("elman",) and PROPERTIES["lstm_carousel"].cells == ("lstm",)
    assert PROPERTIES["lstm_carousel"].needs == ("dhs", "dcs") and "dhs" in PROPERTIES["decay_bound"].needs


def test_finite_differences_move_b_hn_and_c0():
    for cell, name in (("gru", "grads.b_hn"), ("lstm", "dc0")):
        p = draw_problem(_fixed_draw(corner_cases(FULL_CAPS, cells=(cell,))[f"{cell}/tanh/negative"]), FULL_CAPS,
                         cells=(cell,))
        p = replace(p, params=replace(p.params, b_h=p.params.b_h / 20))   # not saturated: gradients of order one

        class Wrong(_Wrapped):
            def fix(self, res, spec, params, xs, truncation):
                if name == "dc0":
                    return replace(res, dc0=res.dc0 * 1.01)
                return replace(res, grads=replace(res.grads, b_hn=res.grads.b_hn * 1.01))
        with pytest.raises(PropertyFailure, match=name):
            prop_finite_differences(Wrong(), p)
