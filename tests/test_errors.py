"""Contract section 4: bad input gets a clear error naming the argument; overflow
is a FloatingPointError naming the step; never a NaN returned."""
import numpy as np
import pytest

import reference as R
from implementations import get_backend
from properties.conformance import backend_targets, split_name

T, B, D, H, O = 4, 2, 3, 5, 2
BACKENDS = [(n, dt or "float64") for n, dt in map(split_name, backend_targets())]


def good(**over):
    rng = np.random.default_rng(0)
    args = dict(spec=R.RNNSpec(),
                params=R.RNNParams(W_x=rng.normal(size=(H, D)), W_h=rng.normal(size=(H, H)) * 0.3,
                                   b_h=np.zeros(H), W_y=rng.normal(size=(O, H)), b_y=np.zeros(O)),
                xs=rng.normal(size=(T, B, D)), targets=rng.normal(size=(T, B, O)), h0=None, truncation=None)
    args.update(over)
    return args


def with_param(**over):
    p = good()["params"].as_dict()
    p.update(over)
    return R.RNNParams(**p)


SOFTMAX = R.RNNSpec(output="softmax")
BAD = [
    # (arguments, exception, words the message must contain)
    (dict(xs=np.zeros((T, B, D + 1))), ValueError, ["xs", "(T, B, D)", "D = 3"]),
    (dict(xs=np.zeros((T, B))), ValueError, ["xs", "(T, B, D)"]),
    (dict(xs=np.zeros((0, B, D))), ValueError, ["xs", "T >= 1"]),
    (dict(xs=np.zeros((T, 0, D)), targets=np.zeros((T, 0, O))), ValueError, ["xs", "B >= 1"]),
    (dict(h0=np.zeros((B, H + 1))), ValueError, ["h0", "(B, H)"]),
    (dict(h0=np.zeros((B + 1, H))), ValueError, ["h0", "B = 2"]),
    (dict(targets=np.zeros((T, B, O + 1))), ValueError, ["targets", "(T, B, O)"]),
    (dict(targets=np.zeros((T - 1, B, O))), ValueError, ["targets", "T = 4"]),
    (dict(params=with_param(W_h=np.zeros((H, H + 1)))), ValueError, ["W_h", "(H, H)"]),
    (dict(params=with_param(W_x=np.zeros((H + 1, D)))), ValueError, ["W_x", "(H, D)"]),
    (dict(params=with_param(b_h=np.zeros(H + 1))), ValueError, ["b_h", "(H,)"]),
    (dict(params=with_param(W_y=np.zeros((O, H + 1)))), ValueError, ["W_y", "(O, H)"]),
    (dict(params=with_param(b_y=np.zeros(O + 1))), ValueError, ["b_y", "(O,)"]),
    (dict(spec=SOFTMAX, targets=np.full((T, B), O)), ValueError, ["targets", "[0, 2)"]),
    (dict(spec=SOFTMAX, targets=np.full((T, B), -1)), ValueError, ["targets", "[0, 2)"]),
    (dict(spec=SOFTMAX, targets=np.full((T, B), 0.5)), ValueError, ["targets", "integer"]),
    (dict(spec=SOFTMAX, targets=np.zeros((T, B, O), dtype=int)), ValueError, ["targets", "(T, B)"]),
    (dict(xs=np.full((T, B, D), "a")), TypeError, ["xs", "real numbers"]),
    (dict(xs=np.zeros((T, B, D), dtype=complex)), TypeError, ["xs", "real numbers"]),
    (dict(xs=[[[1.0, 2.0]], [[1.0]]]), ValueError, ["xs"]),
    (dict(params=with_param(W_h=np.full((H, H), np.nan))), ValueError, ["W_h", "NaN or inf"]),
    (dict(xs=np.full((T, B, D), np.inf)), ValueError, ["xs", "NaN or inf"]),
    (dict(h0=np.full((B, H), np.nan)), ValueError, ["h0", "NaN or inf"]),
    (dict(targets=np.full((T, B, O), np.nan)), ValueError, ["targets", "NaN or inf"]),
    (dict(truncation="3"), TypeError, ["truncation"]),
    (dict(spec="tanh"), TypeError, ["spec", "RNNSpec"]),
    (dict(params={"W_x": 1}), TypeError, ["params", "RNNParams"]),
]


@pytest.mark.parametrize("name, dtype", BACKENDS)
@pytest.mark.parametrize("over, exc, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_names_the_argument(name, dtype, over, exc, words):
    backend = get_backend(name, dtype=dtype)
    with pytest.raises(exc) as info:
        backend.bptt(**good(**over))
    for w in words:
        assert w in str(info.value), f"{w!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(activation="softplus"), ValueError, "activation"),
    (dict(output="mse"), ValueError, "output"),
    (dict(targets="first"), ValueError, "targets"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(l2="0.1"), TypeError, "l2"),
])
def test_bad_spec(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        R.RNNSpec(**kwargs)


@pytest.mark.parametrize("h, hp, exc, word", [
    (0, None, ValueError, "h must"), (3, 0, ValueError, "h_prime"), (3, 4, ValueError, "h_prime"),
    (2.5, None, TypeError, "h must"), (True, None, TypeError, "h must"),
])
def test_bad_truncation(h, hp, exc, word):
    with pytest.raises(exc, match=word):
        R.Truncation(h, hp)


def test_truncation_normalises_h_prime():
    assert R.Truncation(4) == R.Truncation(4, 4)
    assert R.Truncation(4).h_prime == 4


def test_unread_softmax_targets_may_be_anything_in_range_of_the_type():
    # With targets="last", only the last step's classes are read.
    spec = R.RNNSpec(output="softmax", targets="last")
    t = np.zeros((T, B), dtype=int)
    t[0] = 99
    get_backend("numpy").bptt(**good(spec=spec, targets=t))


@pytest.mark.parametrize("name, dtype", BACKENDS)
def test_overflow_names_the_step(name, dtype):
    # identity activation with W_h = 1e3 I: |h_t| grows as 1e3^t and overflows float64
    # near t = 103 (float32 near t = 13); the error names the step, never a NaN.
    T_long = 120
    spec = R.RNNSpec(activation="identity")
    p = R.RNNParams(W_x=np.ones((1, 1)), W_h=np.eye(1) * 1e3, b_h=np.zeros(1),
                    W_y=np.ones((1, 1)), b_y=np.zeros(1))
    xs, d = np.ones((T_long, 1, 1)), np.zeros((T_long, 1, 1))
    backend = get_backend(name, dtype=dtype)
    with pytest.raises(FloatingPointError, match=r"time step t=\d+"):
        backend.bptt(spec, p, xs, d)
    with pytest.raises(FloatingPointError, match=r"time step t=\d+"):
        backend.forward(spec, p, xs)


@pytest.mark.parametrize("name, dtype", BACKENDS)
def test_backward_overflow_names_the_step(name, dtype):
    # tanh keeps the states bounded; the backward pass multiplies by |W_h| = 1e30 per
    # step with f' = 1 at zero state: float64 overflows after ~11 steps back, float32
    # after 2.
    T_long = 40
    spec = R.RNNSpec(activation="tanh", targets="last")
    p = R.RNNParams(W_x=np.zeros((1, 1)), W_h=np.eye(1) * 1e30, b_h=np.zeros(1),
                    W_y=np.ones((1, 1)), b_y=np.zeros(1))
    backend = get_backend(name, dtype=dtype)
    if dtype == "float32":
        p = R.RNNParams(**{**p.as_dict(), "W_h": np.eye(1) * 1e20})
    with pytest.raises(FloatingPointError, match=r"time step t=\d+"):
        backend.bptt(spec, p, np.zeros((T_long, 1, 1)), np.ones((T_long, 1, 1)))
