"""implementations.adapter, the public API for third-party backends."""
import warnings

import numpy as np
import pytest

from implementations import adapter
from reference import RNNParams, RNNSpec, Truncation


def _inputs():
    rng = np.random.default_rng(0)
    params = RNNParams(W_x=rng.normal(size=(3, 2)), W_h=rng.normal(size=(3, 3)), b_h=np.zeros(3),
                       W_y=rng.normal(size=(1, 3)), b_y=np.zeros(1))
    return params, rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 1))


def test_validated_arrays_are_writable_copies_of_their_own():
    """Before: read-only views, on which torch.as_tensor warns."""
    params, xs, d = _inputs()
    before = [a.copy() for a in (xs, d, params.W_h)]
    case = adapter.validate_bptt(RNNSpec(), params, xs, d, None, Truncation(2))
    arrays = [case.xs, case.targets, case.h0, *case.params.as_dict().values()]
    assert all(a.flags.writeable for a in arrays)
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.as_tensor(case.xs)
    case.xs[...] = 0
    case.params.W_h[...] = 0
    for a, b in zip((xs, d, params.W_h), before):
        np.testing.assert_array_equal(a, b)
    assert adapter.validate_forward(RNNSpec(), params, xs).xs.flags.writeable


def test_blocks_overflow_and_unsupported():
    assert adapter.blocks(5, Truncation(2, 1)) == [(1, 1, 1), (2, 2, 1), (3, 3, 2), (4, 4, 3), (5, 5, 4)]
    assert adapter.blocks(5, None) == [(1, 5, 1)]
    per_step = np.ones((5, 2))
    per_step[2, 1] = np.inf
    per_step[4, 0] = np.nan
    with pytest.raises(FloatingPointError, match="t=3 "):
        adapter.check_finite("forward pass", per_step, 5)
    with pytest.raises(FloatingPointError, match="t=5 "):
        adapter.check_finite("backward pass", per_step, 5, backward=True)
    adapter.check_finite("loss", np.ones(3), 3)
    exc = adapter.unsupported("cell 'gru'")
    assert isinstance(exc, NotImplementedError) and "cell 'gru'" in str(exc)
    from properties.conformance import feature_of

    assert feature_of(exc) == "cell 'gru'"
