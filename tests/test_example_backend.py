"""The example third-party backend loads by 'package.module:attr' and agrees with
the reference on fixed cases (the checker runs the full conformance suite on it)."""
import pathlib

import numpy as np
import pytest

import reference as R
from implementations import get_backend

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return get_backend("examples.my_backend:MyBackend")


@pytest.mark.parametrize("activation", R.ACTIVATIONS)
@pytest.mark.parametrize("output", R.OUTPUTS)
@pytest.mark.parametrize("truncation", [None, R.Truncation(3, 2)])
def test_example_agrees_with_reference(example, activation, output, truncation):
    rng = np.random.default_rng(0)
    T, B, D, H, O = 7, 3, 2, 4, 3
    p = R.RNNParams(W_x=rng.normal(size=(H, D)), W_h=rng.normal(size=(H, H)) * 0.4, b_h=rng.normal(size=H),
                    W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    spec = R.RNNSpec(activation, output, "every", 0.1)
    d = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    xs, h0 = rng.normal(size=(T, B, D)), rng.normal(size=(B, H))
    a, b = example.bptt(spec, p, xs, d, h0, truncation), R.bptt(spec, p, xs, d, h0, truncation)
    # Both float64, the same sums in other orders: a few ulps of order-one values.
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    for n in R.RNNParams.names():
        np.testing.assert_allclose(getattr(a.grads, n), getattr(b.grads, n), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.dh0, b.dh0, rtol=1e-10, atol=1e-12)
    assert (a.dhs is None) == (b.dhs is None)
