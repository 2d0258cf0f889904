"""Every backend against PyTorch autograd (an evaluation of the contract that shares
no code with the hand-written loops), over seeded random cases and the hard corners:
saturated softmax and sigmoid, dead relu, size-1 axes, 60-step sequences."""
import numpy as np
import pytest

import reference as R
from implementations import available_backends, get_backend
from properties.conformance import backend_targets, split_name

pytest.importorskip("torch")

ORACLE = get_backend("torch-autograd", dtype="float64")

# Normwise relative error max|a - b| / max|b| of each returned array.
# float64: the loops sum O(T H) products of order one, so rounding stays near
# 60 * 20 * 2^-53 ~ 1e-13 in these contracting cases; 1e-8 leaves room for the
# conditioning of saturated steps and still fails any float32 arithmetic (~1e-7).
# float32: 2^-24 ~ 6e-8 per operation, grown over up to 60 steps and sums of up
# to 60 * 6 terms: 1e-4.
RTOL = {"float64": 1e-8, "float32": 1e-4}

# Every (backend, dtype) pair the checker runs, but the oracle itself.
CANDIDATES = [(n, dt or "float64") for n, dt in map(split_name, backend_targets())
              if (n, dt or "float64") != ("torch-autograd", "float64")]


def _make_case(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.choice([1, 2, 5, 13, 31, 60]))
    B, D, H, O = (int(rng.integers(1, m + 1)) for m in (5, 7, 20, 5))
    spec = R.RNNSpec(activation=str(rng.choice(R.ACTIVATIONS)), output=str(rng.choice(R.OUTPUTS)),
                     targets=str(rng.choice(R.TARGETS)), l2=float(rng.choice([0.0, 0.03])))
    # Recurrent weights with spectral norm 0.9: gradients neither vanish to nothing
    # nor explode over 60 steps, so relative errors are meaningful.
    W_h = rng.normal(size=(H, H))
    W_h *= 0.9 / np.linalg.norm(W_h, 2)
    params = R.RNNParams(W_x=rng.normal(size=(H, D)) / np.sqrt(D), W_h=W_h, b_h=rng.normal(size=H) * 0.1,
                         W_y=rng.normal(size=(O, H)) / np.sqrt(H), b_y=rng.normal(size=O) * 0.1)
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if spec.output == "linear" else rng.integers(0, O, size=(T, B))
    h0 = rng.normal(size=(B, H)) * 0.5 if rng.random() < 0.5 else None
    kind = rng.integers(4)
    if kind == 0:
        truncation = None
    elif kind == 1:  # h >= T: full BPTT whatever h'
        h = int(rng.integers(T, T + 3))
        truncation = R.Truncation(h, int(rng.integers(1, h + 1)))
    else:
        h = int(rng.integers(1, max(2, T)))
        truncation = R.Truncation(h, 1 if kind == 2 else int(rng.integers(1, h + 1)))
    return dict(spec=spec, params=params, xs=xs, targets=targets, h0=h0, truncation=truncation)


def _corner(name):
    rng = np.random.default_rng(7)
    T, B, D, H, O = 6, 3, 4, 5, 3
    p = dict(W_x=rng.normal(size=(H, D)), W_h=rng.normal(size=(H, H)) * 0.3, b_h=rng.normal(size=H) * 0.1,
             W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    spec = dict(activation="tanh", output="linear", targets="every")
    if name == "saturated softmax":      # logits of order 1e4: a finite loss, exact gradients
        p["W_y"] = p["W_y"] * 1e4
        spec["output"] = "softmax"
    elif name == "saturated sigmoid":    # pre-activations of order 30: f' ~ 1e-13
        p["W_x"] = p["W_x"] * 30
        spec["activation"] = "sigmoid"
    elif name == "dead relu":            # every pre-activation negative: zero state gradients
        p["b_h"] = np.full(H, -100.0)
        spec["activation"] = "relu"
    elif name == "size-1 axes":
        T = B = D = H = O = 1
        p = {k: v[tuple(slice(0, 1) for _ in v.shape)] for k, v in p.items()}
    spec = R.RNNSpec(**spec)
    targets = rng.integers(0, O, size=(T, B)) if spec.output == "softmax" else rng.normal(size=(T, B, O))
    return dict(spec=spec, params=R.RNNParams(**p), xs=rng.normal(size=(T, B, D)), targets=targets,
                h0=None, truncation=None)


CASES = [pytest.param(_make_case(s), id=f"seed{s}") for s in range(24)] + [
    pytest.param(_corner(n), id=n.replace(" ", "-"))
    for n in ("saturated softmax", "saturated sigmoid", "dead relu", "size-1 axes")]


def _relerr(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / scale if scale > 0 else np.abs(a).max()


def _compare(got, want, rtol, what):
    np.testing.assert_equal(got.shape, want.shape, err_msg=what)
    err = _relerr(got, want)
    assert err <= rtol, f"{what}: normwise relative error {err:.3g} > {rtol:g}"


@pytest.mark.parametrize("name, dtype", CANDIDATES)
@pytest.mark.parametrize("case", CASES)
def test_agrees_with_autograd(name, dtype, case):
    backend = get_backend(name, dtype=dtype)
    want = ORACLE.bptt(**case)
    got = backend.bptt(**case)
    rtol = RTOL[dtype]
    assert got.loss == pytest.approx(want.loss, rel=rtol, abs=rtol)
    for n in R.RNNParams.names():
        _compare(getattr(got.grads, n), getattr(want.grads, n), rtol, n)
    _compare(got.dh0, want.dh0, rtol, "dh0")
    assert (got.dhs is None) == (want.dhs is None)
    if want.dhs is not None:
        _compare(got.dhs, want.dhs, rtol, "dhs")
    fwd, ref = backend.forward(case["spec"], case["params"], case["xs"], case["h0"]), \
        ORACLE.forward(case["spec"], case["params"], case["xs"], case["h0"])
    _compare(fwd.hs, ref.hs, rtol, "hs")
    _compare(fwd.ys, ref.ys, rtol, "ys")


def test_results_are_float64_numpy_and_inputs_untouched():
    case = CASES[3].values[0]
    before = {k: np.array(v, copy=True) for k, v in case["params"].as_dict().items()}
    xs_before = case["xs"].copy()
    for name, dtype in CANDIDATES:
        res = get_backend(name, dtype=dtype).bptt(**case)
        assert isinstance(res.loss, float)
        for a in [res.dh0, *res.grads.as_dict().values()] + ([res.dhs] if res.dhs is not None else []):
            assert isinstance(a, np.ndarray) and a.dtype == np.float64
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(case["params"], k), v)
    np.testing.assert_array_equal(case["xs"], xs_before)


def test_float32_backend_computes_in_float32():
    # The same case in float32 and float64 must differ by float32 rounding, not be identical.
    case = CASES[5].values[0]
    a = get_backend("numpy", "float32").bptt(**case)
    b = get_backend("numpy", "float64").bptt(**case)
    assert _relerr(a.grads.W_h, b.grads.W_h) > 1e-12


def test_cuda_backend_absent_or_agrees():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            get_backend("torch:cuda")
        assert "torch:cuda" not in available_backends()
        pytest.skip("CUDA is not available on this machine: torch:cuda raises RuntimeError as specified")
    case = CASES[1].values[0]
    got, want = get_backend("torch:cuda").bptt(**case), ORACLE.bptt(**case)
    _compare(got.grads.W_h, want.grads.W_h, RTOL["float64"], "W_h")
