"""The example third-party backend: it agrees with the reference on a few fixed
cases, raises the contract's errors, and passes the whole ci conformance check
(as `bptt-suite check --backend examples.my_backend:MyBackend` runs it): the
template that third parties copy must itself conform."""
from pathlib import Path

import numpy as np
import pytest

from implementations import get_backend
from reference import RNNParams, RNNSpec, Truncation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def backend(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))   # examples/ is not installed
    return lambda dtype="float64": get_backend("examples.my_backend:MyBackend", dtype=dtype)


def _case(activation, output, targets, seed=0, T=6, B=3, D=2, H=4, O=3):
    rng = np.random.default_rng(seed)
    params = RNNParams(W_x=rng.normal(size=(H, D)), W_h=0.5 * rng.normal(size=(H, H)), b_h=rng.normal(size=H),
                       W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    xs = rng.normal(size=(T, B, D))
    d = rng.integers(0, O, (T, B)) if output == "softmax" else rng.normal(size=(T, B, O))
    spec = RNNSpec(activation=activation, output=output, targets=targets, l2=0.05)
    return spec, params, xs, d, rng.normal(size=(B, H))


CASES = [("tanh", "linear", "every", None), ("sigmoid", "softmax", "last", None),
         ("relu", "softmax", "every", Truncation(3, 2)), ("identity", "linear", "every", Truncation(2))]


@pytest.mark.parametrize("activation,output,targets,truncation", CASES)
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-4)])
def test_agrees_with_reference(backend, activation, output, targets, truncation, dtype, rtol):
    # float64: the same sums in a different order, a few ulps times T*H;
    # float32: eps32 = 1.2e-7 times the same growth, well inside 1e-4 for T = 6, H = 4
    be = backend(dtype)
    assert (be.name, be.dtype) == ("my-numpy", dtype)
    spec, params, xs, d, h0 = _case(activation, output, targets)
    got = be.bptt(spec, params, xs, d, h0, truncation)
    want = get_backend("reference").bptt(spec, params, xs, d, h0, truncation)
    assert got.loss == pytest.approx(want.loss, rel=rtol)
    for name in RNNParams.names():
        np.testing.assert_allclose(getattr(got.grads, name), getattr(want.grads, name), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got.dh0, want.dh0, rtol=rtol, atol=rtol)
    assert (got.dhs is None) == (want.dhs is None)
    if want.dhs is not None:
        np.testing.assert_allclose(got.dhs, want.dhs, rtol=rtol, atol=rtol)
    fwd, ref_fwd = be.forward(spec, params, xs, h0), get_backend("reference").forward(spec, params, xs, h0)
    np.testing.assert_allclose(fwd.ys, ref_fwd.ys, rtol=rtol, atol=rtol)
    assert got.grads.W_h.dtype == np.float64


def test_errors(backend):
    be = backend()
    spec, params, xs, d, h0 = _case("tanh", "linear", "every")
    with pytest.raises(ValueError, match="xs"):
        be.bptt(spec, params, xs[:, :, :1], d, h0)
    exploding = RNNParams(W_x=params.W_x, W_h=40 * np.eye(4), b_h=params.b_h, W_y=params.W_y, b_y=params.b_y)
    with pytest.raises(FloatingPointError, match="t="):
        be.bptt(RNNSpec(activation="identity"), exploding, np.ones((300, 3, 2)), np.zeros((300, 3, 3)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_example_passes_the_conformance_check(backend, dtype):
    # The whole suite under the derandomised ci profile, as `bptt-suite check` runs it.
    from properties import check_backend

    report = check_backend(backend(dtype), profile="ci")
    assert report.passed, {n: r.counterexample for n, r in report.failures.items()}


def test_the_example_uses_only_the_public_adapter_api():
    text = (ROOT / "examples" / "my_backend.py").read_text()
    assert "from implementations.adapter import" in text
    for internal in ("reference.validation", "reference.bptt", "implementations.base", "implementations.engine"):
        assert internal not in text, internal


def test_sigmoid_keeps_its_small_tail(backend):
    """(1 + tanh(a/2)) / 2 is exactly 0 in float32 at a = -20, where sigmoid is 2.06e-9."""
    from examples.my_backend import ACTIVATIONS

    f, fprime = ACTIVATIONS["sigmoid"]
    a = np.array([-20.0, -5.0, 0.0, 5.0, 20.0], dtype=np.float32)
    want = 1 / (1 + np.exp(-a.astype(np.float64)))
    # float32: a few ulps (u = 6e-8) in exp and one division
    np.testing.assert_allclose(f(a), want, rtol=1e-6)
    np.testing.assert_allclose(fprime(a), want * (1 - want), rtol=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_overflow_step_agrees_with_the_reference_under_dev(backend, seed):
    from properties.conformance import run_property

    for dtype in ("float64", "float32"):
        res = run_property(backend(dtype), "errors", profile="dev", seed=seed, max_examples=50)
        assert res.status == "pass", res.counterexample
