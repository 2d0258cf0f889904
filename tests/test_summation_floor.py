"""The summation floor of the tolerances (properties.oracle.summation_floor): the long
sums of the parameter gradients, which a correct float32 backend may add in any order."""
import numpy as np
import pytest
from hypothesis import given, settings

import reference
from implementations import get_backend
from properties.agreement import prop_bptt
from properties.hypothesis_helpers import FULL_CAPS, Problem, _fixed_draw, draw_problem, problems
from properties.oracle import reference_spread, rounding_floor, summation_floor
from properties.results import Comparison, PropertyFailure, compare_bptt, param_names, result_scale
from properties.tolerances import tolerance_for


def test_hand_worked_elman():
    # identity, T = 2, B = D = H = O = 1: W_x = 1, W_h = 0.5, W_y = 1, biases 0, x = (1, 2), d = 0.
    # h_1 = 1, h_2 = 2 + 0.5 = 2.5; dy = (1, 2.5); da_2 = 2.5, da_1 = 1 + 0.5 * 2.5 = 2.25.
    spec = reference.RNNSpec("identity", "linear", "every", 0.0)
    params = reference.RNNParams(W_x=np.array([[1.0]]), W_h=np.array([[0.5]]), b_h=np.zeros(1),
                                 W_y=np.array([[1.0]]), b_y=np.zeros(1))
    p = Problem(spec, params, np.array([[[1.0]], [[2.0]]]), np.zeros((2, 1, 1)), None, None)
    S = summation_floor(p)
    # n = 2 rows (2 steps x 1 batch row) times sum|terms|; exact in float64
    want = {"W_x": [[2 * (2.5 * 2 + 2.25 * 1)]],    # da_t x_t
            "W_h": [[2 * (2.5 * 1 + 2.25 * 0)]],    # da_t h_{t-1}, h_0 = 0
            "b_h": [2 * (2.5 + 2.25)],
            "W_y": [[2 * (1 * 1 + 2.5 * 2.5)]],     # dy_t h_t
            "b_y": [2 * (1 + 2.5)]}
    for name, w in want.items():
        np.testing.assert_array_equal(S[name], w, err_msg=name)
    assert S["loss"] == 2 * (1 + 2.5 ** 2) / 2        # L = (1 + 6.25) / 2, two terms


def test_truncation_counts_every_visit():
    # BPTT(2; 1) over T = 3 backpropagates step 1; steps 2, 1; steps 3, 2: five visits of a step
    # where full BPTT makes three. With W_h = 0 nothing flows back, so every visit adds the same
    # |terms| as in full BPTT or none, and the floors differ by the count alone: 5/3.
    rng = np.random.default_rng(0)
    spec = reference.RNNSpec("tanh", "linear", "every", 0.0)
    params = reference.RNNParams(W_x=rng.normal(size=(2, 1)), W_h=np.zeros((2, 2)), b_h=rng.normal(size=2),
                                 W_y=rng.normal(size=(1, 2)), b_y=np.zeros(1))
    xs, d = rng.normal(size=(3, 2, 1)), rng.normal(size=(3, 2, 1))
    cut = summation_floor(Problem(spec, params, xs, d, None, reference.Truncation(2, 1)))
    full = summation_floor(Problem(spec, params, xs, d, None, None))
    for name in ("W_x", "b_h"):
        np.testing.assert_allclose(cut[name], full[name] * 5 / 3, rtol=1e-15, err_msg=name)   # float64, 3 terms
    np.testing.assert_array_equal(cut["W_y"], full["W_y"])   # the output layer is visited once per scored step


class SequentialSumW_y:
    """A correct float32 backend (numpy's) whose W_y gradient is a plain running sum,
    in float32, of its T*B terms dy_t[b]^T h_t[b] (np.cumsum adds them one by one)."""

    dtype = "float32"

    def __init__(self):
        self.inner = get_backend("numpy", "float32")

    def forward(self, *args, **kw):
        return self.inner.forward(*args, **kw)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        r = self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation)
        f32 = np.float32
        hs = self.inner.forward(spec, params, xs, h0=h0).hs.astype(f32)
        T, B, H = hs.shape
        ys = hs @ params.W_y.astype(f32).T + params.b_y.astype(f32)
        dys = (ys - targets.astype(f32)) / f32(B)
        terms = (dys[..., :, None] * hs[..., None, :]).reshape(T * B, -1, H)
        W_y = np.cumsum(terms, axis=0, dtype=f32)[-1]
        grads = reference.RNNParams(**dict(r.grads.as_dict(), W_y=W_y.astype(np.float64)))
        return reference.BPTTResult(r.loss, grads, r.dh0, r.dhs)


def identical_rows_case(T=400, B=64):
    """x = 0, h0 = 0 and the same targets in every batch row: all rows compute the same
    numbers, and a running sum's roundings add up coherently."""
    rng = np.random.default_rng(3)
    H, D, O = 4, 2, 2
    spec = reference.RNNSpec("tanh", "linear", "every", 0.0)
    params = reference.RNNParams(W_x=rng.normal(size=(H, D)), W_h=rng.normal(size=(H, H)) * 0.9 / 2,
                                 b_h=rng.normal(size=H), W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    targets = np.broadcast_to(rng.normal(size=(T, 1, O)), (T, B, O)).copy()
    return Problem(spec, params, np.zeros((T, B, D)), targets, None, None)


def test_a_running_sum_in_float32_is_no_false_alarm():
    p = identical_rows_case()
    backend = SequentialSumW_y()
    prop_bptt(backend, p)   # passes with the summation floor
    # ... and this case needs it: without the floor the same comparison fails on W_y
    tol = tolerance_for("float32")
    ref, spread = reference_spread(p, tol.u, None)
    args, kw = p.bptt_args(None)
    got = backend.bptt(*args, **kw)
    cmp = Comparison(tol, "float32", result_scale(ref))
    compare_bptt(cmp, got, ref, spread, param_names(p), floor=rounding_floor(p, None, full=ref))
    with pytest.raises(PropertyFailure, match="grads.W_y"):
        cmp.verdict()


def test_the_floor_is_small_next_to_a_real_error():
    # a W_y gradient 1e-2 off (relative) still fails on the same case, whose floor is the
    # largest a case of this size can have: n u of the coherent sum, 400 * 64 * 6e-8 = 1.5e-3
    p = identical_rows_case()

    class Off(SequentialSumW_y):
        def bptt(self, *args, **kw):
            r = super().bptt(*args, **kw)
            return reference.BPTTResult(r.loss, reference.RNNParams(**dict(r.grads.as_dict(), W_y=r.grads.W_y * 1.01)),
                                        r.dh0, r.dhs)
    with pytest.raises(PropertyFailure, match="grads.W_y"):
        prop_bptt(Off(), p)


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(problems(FULL_CAPS))
def test_the_floor_bounds_every_gradient(p):
    """n sum|terms| >= |sum of the terms| entry by entry, for every cell and truncation
    (the l2 term is not a long sum and is taken out). Cancelling entries were the
    case that once tripped the floor's own self-check (dev seed 1, a GRU with h = 1)."""
    S = summation_floor(p)
    args, kw = p.bptt_args()
    ref = reference.bptt(*args, **kw)
    for name in param_names(p):
        g = np.asarray(getattr(ref.grads, name)) - (p.spec.l2 * np.asarray(getattr(p.params, name))
                                                     if name in p.cell.l2 else 0.0)
        # float64: the floor and the gradient are sums of the same <= 60 * 64 * 8 terms
        assert (np.abs(g) <= S[name] * (1 + 1e-12) + 1e-300).all(), name


def test_cancelling_entries_pass_the_self_check():
    # the case of dev seed 1 whose W_x entries cancel to ~1e-17: the floor's check that the
    # row's cache starts with x_t must be relative to the terms, not to the entry
    draws = {"corner": "drawn", "cell": "gru", "size class": "long+big batch", "T": 16, "B": 12, "D": 1, "H": 12,
             "O": 5, "size-1 axes": set(), "activation": "tanh", "output": "softmax", "targets": "every", "l2": 0.0,
             "regime": "random", "seed": 0, "x scale": 3.0, "input/output weight scale": 0.5, "W_h scale": 0.5,
             "h0 given": True, "truncation kind": "h'=1", "h": 1}
    p = draw_problem(_fixed_draw(draws), FULL_CAPS, corners=True)
    S = summation_floor(p)
    assert (S["W_x"] > 0).all()
