"""Cases that once failed correct backends in the false-alarm sweep
(scripts/false_alarm_sweep.py), each pinned with the draws that built it."""
import dataclasses

import numpy as np
from hypothesis import strategies as st

from examples.my_backend import MyBackend
from implementations import get_backend
from properties.agreement import prop_bptt
from properties.checks import PROPERTIES
from properties.conformance import resolve, run_property
from properties.hypothesis_helpers import FULL_CAPS, _fixed_draw, draw_problem
from properties.oracle import beyond_range, softmax_floor
from test_partial_backends import _Prop

BASE = {"corner": "drawn", "size-1 axes": set(), "l2": 0.0, "h0 given": False, "truncation kind": "none"}


def pinned(**draws):
    return draw_problem(_fixed_draw(dict(BASE, **draws)), FULL_CAPS, corners=True)


# dev seed 13, MyBackend[float32]: a softmax nearly one-hot at the last step, B = 2; b_y = p - onehot
# summed over the two rows, computed as p_d - 1 (known to ~u absolutely). The floor's random signs
# over rows were (+1, -1), whose sum is 0: b_y had no floor and failed at 4.5x.
SOFTMAX_B2 = dict(cell="elman", **{"size class": "short"}, T=3, B=2, D=1, H=6, O=2, activation="relu",
                  output="softmax", targets="last", regime="random", seed=0,
                  **{"x scale": 3.0, "input/output weight scale": 2.0, "W_h scale": 1.0})


def test_softmax_floor_of_the_output_layer_is_exact():
    p = pinned(**SOFTMAX_B2)
    f = softmax_floor(p)
    np.testing.assert_array_equal(f["b_y"], [1.0, 1.0])   # one scored step: 1 / B from each of the B rows
    hs = np.abs(get_backend("reference").forward(*p.forward_args()[0], **p.forward_args()[1]).hs[-1])
    np.testing.assert_allclose(f["W_y"], np.broadcast_to(hs.sum(axis=0) / p.B, (p.O, p.H)), rtol=1e-15)


def test_a_nearly_one_hot_softmax_in_float32_passes():
    prop_bptt(MyBackend(dtype="float32"), pinned(**SOFTMAX_B2))


# dev seed 3, TorchRNN[float32]: relu with rho(W_h) = 1.75 over T = 54 steps: the weight gradients'
# sums reach ~1e39, past float32's 3.4e38, and the backend rightly raised FloatingPointError.
EXPLODING = dict(cell="elman", **{"size class": "long"}, T=54, B=1, D=4, H=9, O=1, activation="relu",
                 output="linear", targets="every", regime="exploding", seed=861,
                 **{"x scale": 1.0, "input/output weight scale": 1.0, "rho*gamma": 1.75})


def test_beyond_range_is_the_dtype_s():
    p = pinned(**EXPLODING)
    assert beyond_range(p, "float32") and not beyond_range(p, "float64")
    assert not beyond_range(pinned(**SOFTMAX_B2), "float32")


class Float32ByOverflow:
    """float64 numbers, but FloatingPointError wherever a float32 computation would overflow
    (any result entry above float32's largest number)."""

    name, dtype = "f32-overflow", "float32"

    def __init__(self, always=False):
        self.inner, self.always = get_backend("numpy"), always

    def forward(self, *args, **kw):
        return self.inner.forward(*args, **kw)

    def bptt(self, *args, **kw):
        r = self.inner.bptt(*args, **kw)
        big = max(np.abs(np.asarray(a)).max() for a in (*r.grads.as_dict().values(), r.dh0) if a is not None)
        if self.always or big > np.finfo(np.float32).max:
            raise FloatingPointError("overflow in the weight gradients")
        return r


def _either(draw, caps):
    return pinned(**EXPLODING) if draw(st.booleans(), "exploding") else pinned(**SOFTMAX_B2)


def test_an_overflow_beyond_the_dtype_is_no_failure(monkeypatch):
    prop = _Prop("_either", lambda b, p: prop_bptt(b, p), _either)
    monkeypatch.setitem(PROPERTIES, prop.name, prop)
    res = run_property(Float32ByOverflow(), prop.name, max_examples=10)
    assert res.status == "pass", res.message
    # ... but an overflow where the numbers fit the dtype is
    res = run_property(Float32ByOverflow(always=True), prop.name, max_examples=10)
    assert res.status == "fail" and "FloatingPointError" in res.message


# dev seed 10, numpy[float32] and torch[float32]: a saturated GRU whose update gate is
# sigmoid(-92) = 2.7e-40 at one step, subnormal in float32; the backends' 0 failed gru_carousel.
def test_a_subnormal_gate_in_float32_passes_the_carousel():
    from properties.carousel import prop_gru_carousel
    draws = dict(BASE, cell="gru", **{"size class": "long"}, T=39, B=1, D=1, H=12, O=2, activation="tanh",
                 output="softmax", targets="last", regime="saturated", seed=1841,
                 **{"x scale": 3.0, "input/output weight scale": 1.0, "saturation scale": 10.0,
                    "saturation sign": "mixed", "logit scale": 100.0, "h0 given": True})
    p = PROPERTIES["gru_carousel"].build(_fixed_draw(draws), FULL_CAPS, ("gru",))
    prop_gru_carousel(get_backend("numpy", "float32"), p)


# thorough seed 2, every backend: an overflow_loss case whose outputs did not overflow. The
# saturated GRU's update gate is exactly 1.0 in float64 and h0 = 0, so h_t = 0 and y_t = b_y
# however large W_y is; only the reference raised, from (l2 / 2) |W_y|^2 = 0 * inf with
# l2 = 0, and a correct backend that returns the finite answer failed `errors`.
GRU_H_ZERO = dict(BASE, **{"bad input kind": "overflow_loss", "size class": "short", "x scale": 1.0,
                           "input/output weight scale": 1.0, "saturation scale": 30.0,
                           "saturation sign": "positive"},
                  cell="gru", T=2, B=1, D=1, H=1, O=1, activation="tanh", output="linear", targets="every",
                  regime="saturated", seed=1)


def test_an_l2_of_zero_adds_nothing_whatever_the_weights():
    p = pinned(cell="elman", **{"size class": "short"}, T=2, B=1, D=1, H=1, O=1, activation="tanh",
               output="linear", targets="every", regime="random", seed=0,
               **{"x scale": 1.0, "input/output weight scale": 1.0, "W_h scale": 1.0})
    (spec, params, xs, targets), kw = p.bptt_args()
    big = dataclasses.replace(params, W_x=np.full_like(params.W_x, 1e200))
    xs0 = np.zeros_like(xs)    # W_x x_t = 0: the huge W_x changes nothing but |W_x|^2
    r = get_backend("reference").bptt(spec, big, xs0, targets, **kw)
    r0 = get_backend("reference").bptt(spec, params, xs0, targets, **kw)
    assert np.isfinite(r.loss) and r.loss == r0.loss


def test_overflow_loss_overflows_whatever_the_states():
    from properties.bad_input import build_bad_input, prop_errors
    bad = build_bad_input(_fixed_draw(GRU_H_ZERO), FULL_CAPS)
    assert bad.kind == "overflow_loss" and bad.first_steps == {"forward": 1, "backward": 2}
    for name in ("reference", "numpy", "numpy[float32]", "torch", "torch[float32]", "torch-autograd", "rtrl"):
        prop_errors(resolve(name)[0], bad)
