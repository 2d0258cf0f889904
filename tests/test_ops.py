"""The engine's elementwise kernels against math, in both dtypes: the logistic sigmoid
keeps its small tail (the form (1 + tanh(a/2)) / 2 was exactly 0 in float32 at
a = -20, where the true 2.06e-9 is a normal float32)."""
import math

import numpy as np
import pytest

from implementations.ops import NumpyOps, TorchOps

torch = pytest.importorskip("torch")

POINTS = [-80.0, -20.0, -1.5, 0.0, 1.5, 20.0]


def true_sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


def ops_for(lib, dtype):
    return NumpyOps(dtype) if lib == "numpy" else TorchOps(dtype)


def run(ops, fn, values):
    """fn applied in place to a (1, n) buffer of the ops' own kind; float64 numpy out."""
    a = ops.asarray(np.array([values]))
    with np.errstate(over="ignore"):
        fn(a)
    return np.asarray(a, dtype=np.float64)[0] if not ops.is_torch else a.double().numpy()[0]


def check(got, dtype):
    # A few roundings of exp, one add and one division, each within half an ulp:
    # 4 ulp of the dtype, relative (2^-23 for float32, 2^-52 for float64).
    ulp = float(np.finfo(dtype).eps)
    for a, g in zip(POINTS, got):
        want = true_sigmoid(a)
        assert g > 0.0 or want < np.finfo(dtype).tiny, f"sigmoid({a}) = 0 in {dtype}; true {want:.6g}"
        assert abs(g - want) <= 4 * ulp * want, f"sigmoid({a}) = {g!r} in {dtype}; true {want!r}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_sigmoid_keeps_both_tails(lib, dtype):
    ops = ops_for(lib, dtype)
    check(run(ops, ops.sigmoid_, POINTS), dtype)
    check(run(ops, ops.activation("sigmoid"), POINTS), dtype)   # the Elman cell's activation


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_gate_sigmoid_keeps_both_tails(lib, dtype):
    # The gated kernels hand gate_sigmoid_ -z where ops.gate_sigmoid_negated says so.
    ops = ops_for(lib, dtype)
    sign = -1.0 if ops.gate_sigmoid_negated else 1.0
    check(run(ops, ops.gate_sigmoid_, [sign * a for a in POINTS]), dtype)


def test_sigmoid_at_minus_twenty_in_float32_is_the_representable_value():
    # The value the issue names: 2.0611537e-9, a normal float32, not 0.
    for ops in (NumpyOps("float32"), TorchOps("float32")):
        got = run(ops, ops.sigmoid_, [-20.0])[0]
        assert got == pytest.approx(2.0611536224385579e-09, rel=5e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_tanh_kernels(lib, dtype):
    ops = ops_for(lib, dtype)
    a = ops.asarray(np.array([POINTS]))
    out = ops.empty((1, len(POINTS)))
    ops.tanh(a, out)
    ops.tanh_(a)
    ulp = float(np.finfo(dtype).eps)
    for got in (out, a):
        got = got.double().numpy()[0] if ops.is_torch else got[0]
        for x, g in zip(POINTS, got):
            assert abs(g - math.tanh(x)) <= 2 * ulp * max(abs(math.tanh(x)), np.finfo(dtype).tiny)
