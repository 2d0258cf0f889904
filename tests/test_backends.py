"""Every backend against PyTorch autograd (an evaluation of the contract that shares
no code with the hand-written loops; for LSTM and GRU, torch.nn.LSTM and torch.nn.GRU
themselves), for every cell, over seeded random cases and the hard corners:
saturated softmax, sigmoid and gates, dead relu, size-1 axes, 60-step sequences, a
forget gate that carries the state over 60 steps."""
import numpy as np
import pytest

import reference as R
from implementations import available_backends, get_backend
from properties.conformance import backend_targets, split_name

pytest.importorskip("torch")

ORACLE = get_backend("torch-autograd", dtype="float64")

# Normwise relative error max|a - b| / max|b| of each returned array.
# float64: the loops sum O(T G H) products of order one (G gate blocks, G H <= 48),
# so rounding stays near 60 * 48 * 2^-53 ~ 3e-13 in these contracting cases (the
# reference on the gated ones: 2e-14); 1e-8 leaves room for the conditioning of
# saturated steps and still fails any float32 arithmetic (~1e-7).
# float32: 2^-24 ~ 6e-8 per operation, grown over up to 60 steps and sums of up
# to 60 * 6 terms: 1e-4 (torch-autograd[float32] on the gated cases: 6e-6).
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


def _make_gated_case(seed, cell):
    """As _make_case, for "lstm" or "gru": tanh, gate-stacked weights, b_hn for the GRU,
    a random c0 for the LSTM in half the cases."""
    rng = np.random.default_rng((seed, len(cell)))
    row = R.CELLS[cell]
    T = int(rng.choice([1, 2, 5, 13, 31, 60]))
    B, D, H, O = (int(rng.integers(1, m + 1)) for m in (5, 7, 12, 5))
    spec = R.RNNSpec(output=str(rng.choice(R.OUTPUTS)), targets=str(rng.choice(R.TARGETS)),
                     l2=float(rng.choice([0.0, 0.03])), cell=cell)
    # Each gate's recurrent block with spectral norm 0.9, as the Elman W_h above.
    W_h = np.concatenate([w * 0.9 / np.linalg.norm(w, 2) for w in rng.normal(size=(row.G, H, H))])
    params = R.RNNParams(W_x=rng.normal(size=(row.G * H, D)) / np.sqrt(D), W_h=W_h,
                         b_h=rng.normal(size=row.G * H) * 0.1, W_y=rng.normal(size=(O, H)) / np.sqrt(H),
                         b_y=rng.normal(size=O) * 0.1, b_hn=rng.normal(size=H) * 0.1 if cell == "gru" else None)
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if spec.output == "linear" else rng.integers(0, O, size=(T, B))
    h0 = rng.normal(size=(B, H)) * 0.5 if rng.random() < 0.5 else None
    c0 = rng.normal(size=(B, H)) if cell == "lstm" and rng.random() < 0.5 else None
    kind = rng.integers(4)
    if kind == 0:
        truncation = None
    elif kind == 1:
        h = int(rng.integers(T, T + 3))
        truncation = R.Truncation(h, int(rng.integers(1, h + 1)))
    else:
        h = int(rng.integers(1, max(2, T)))
        truncation = R.Truncation(h, 1 if kind == 2 else int(rng.integers(1, h + 1)))
    return dict(spec=spec, params=params, xs=xs, targets=targets, h0=h0, truncation=truncation, c0=c0)


def _gated_corner(name, cell):
    rng = np.random.default_rng(11)
    row = R.CELLS[cell]
    T, B, D, H, O = {"size-1 axes": (1, 1, 1, 1, 1), "carousel": (60, 3, 4, 2, 3)}.get(name, (6, 3, 4, 5, 3))
    p = dict(W_x=rng.normal(size=(row.G * H, D)), W_h=rng.normal(size=(row.G * H, H)) * 0.3,
             b_h=rng.normal(size=row.G * H) * 0.1, W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O),
             b_hn=rng.normal(size=H) * 0.1 if cell == "gru" else None)
    if name == "saturated gates":        # pre-activations of order 30: sigma' and tanh' ~ 1e-13
        p["W_x"] = p["W_x"] * 30
    elif name == "carousel":             # W_h = 0 and the carousel gate's bias 3: the state kept over 60 steps
        p["W_x"] = p["W_x"] * 0.3
        p["W_h"] = np.zeros_like(p["W_h"])
        p["b_h"] = np.zeros_like(p["b_h"])
        p["b_h"][row.block(row.carousel_gate, H)] = 3.0
    spec = R.RNNSpec(targets="last" if name == "carousel" else "every", cell=cell)
    return dict(spec=spec, params=R.RNNParams(**p), xs=rng.normal(size=(T, B, D)),
                targets=rng.normal(size=(T, B, O)), h0=None, truncation=None,
                c0=rng.normal(size=(B, H)) if cell == "lstm" else None)


def _small(case):
    """RTRL's cost grows as T^2 H^3 and T G^2 H^4: it runs on the gated cases up to T H = 60."""
    return case["xs"].shape[0] * case["params"].W_h.shape[1] <= 60


CASES = [pytest.param(_make_case(s), id=f"seed{s}") for s in range(24)] + [
    pytest.param(_corner(n), id=n.replace(" ", "-"))
    for n in ("saturated softmax", "saturated sigmoid", "dead relu", "size-1 axes")]
GATED_CASES = [pytest.param(_make_gated_case(s, cell), id=f"{cell}-seed{s}")
               for cell in ("lstm", "gru") for s in range(12)] + [
    pytest.param(_gated_corner(n, cell), id=f"{cell}-{n.replace(' ', '-')}")
    for cell in ("lstm", "gru") for n in ("saturated gates", "carousel", "size-1 axes")]
GATED = {c.id: c.values[0] for c in GATED_CASES}

# (backend, dtype, case) triples: every candidate on every case, RTRL on the small gated ones.
AGREEMENT = [pytest.param(name, dtype, c.values[0], id=f"{c.id}-{name}-{dtype}")
             for c in CASES for name, dtype in CANDIDATES] + [
    pytest.param(name, dtype, c.values[0], id=f"{c.id}-{name}-{dtype}")
    for c in GATED_CASES for name, dtype in CANDIDATES if name != "rtrl" or _small(c.values[0])]


def _relerr(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / scale if scale > 0 else np.abs(a).max()


def _compare(got, want, rtol, what):
    np.testing.assert_equal(got.shape, want.shape, err_msg=what)
    err = _relerr(got, want)
    assert err <= rtol, f"{what}: normwise relative error {err:.3g} > {rtol:g}"


def _forward_args(case):
    args = (case["spec"], case["params"], case["xs"], case["h0"])
    return args, ({"c0": case["c0"]} if case.get("c0") is not None else {})


_ORACLE_RESULTS = {}


def _oracle(case):
    """The oracle's bptt and forward of a case (the module's case dicts), computed once."""
    if id(case) not in _ORACLE_RESULTS:
        args, kw = _forward_args(case)
        _ORACLE_RESULTS[id(case)] = ORACLE.bptt(**case), ORACLE.forward(*args, **kw)
    return _ORACLE_RESULTS[id(case)]


@pytest.mark.parametrize("name, dtype, case", AGREEMENT)
def test_agrees_with_autograd(name, dtype, case):
    backend = get_backend(name, dtype=dtype)
    cell = R.CELLS[case["spec"].cell]
    want, ref = _oracle(case)
    got = backend.bptt(**case)
    rtol = RTOL[dtype]
    assert got.loss == pytest.approx(want.loss, rel=rtol, abs=rtol)
    for n in cell.params:
        _compare(getattr(got.grads, n), getattr(want.grads, n), rtol, n)
    assert (got.grads.b_hn is None) == ("b_hn" not in cell.params)
    for n in ("dh0", "dc0", "dhs", "dcs"):
        assert (getattr(got, n) is None) == (getattr(want, n) is None), n
        if getattr(want, n) is not None:
            _compare(getattr(got, n), getattr(want, n), rtol, n)
    args, kw = _forward_args(case)
    fwd = backend.forward(*args, **kw)
    for n in ("hs", "ys", "cs"):
        assert (getattr(fwd, n) is None) == (getattr(ref, n) is None), n
        if getattr(ref, n) is not None:
            _compare(getattr(fwd, n), getattr(ref, n), rtol, n)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_oracle_is_not_trivially_met(cell):
    # The gated cases reach what they are meant to: cut and full BPTT, c0, the
    # carousel's gradient 60 steps back, RTRL on some.
    cases = [c for k, c in GATED.items() if k.startswith(cell)]
    assert any(c["truncation"] is None for c in cases) and any(c["truncation"] is not None for c in cases)
    assert sum(_small(c) for c in cases) >= 4
    if cell == "lstm":
        assert any(c["c0"] is not None for c in cases)
    res = ORACLE.bptt(**GATED[f"{cell}-carousel"])
    first, last = (res.dc0, res.dcs[-1]) if cell == "lstm" else (res.dh0, res.dhs[-1])   # the carried state
    assert np.abs(first).max() > 1e-3 * np.abs(last).max()    # not lost over 60 steps (f, z ~ 0.95 per step)


@pytest.mark.parametrize("name, dtype", CANDIDATES)
@pytest.mark.parametrize("case", [CASES[3].values[0], GATED["lstm-carousel"], GATED["gru-seed0"]],
                         ids=["elman", "lstm", "gru"])
def test_results_are_float64_numpy_and_inputs_untouched(name, dtype, case):
    arrays = dict(case["params"].as_dict(), xs=case["xs"], h0=case["h0"], c0=case.get("c0"))
    before = {k: np.array(v, copy=True) for k, v in arrays.items() if v is not None}
    res = get_backend(name, dtype=dtype).bptt(**case)
    assert isinstance(res.loss, float)
    for a in [res.dh0, *res.grads.as_dict().values(), res.dhs, res.dc0, res.dcs]:
        assert a is None or (isinstance(a, np.ndarray) and a.dtype == np.float64)
    for k, v in before.items():
        np.testing.assert_array_equal(arrays[k], v, err_msg=k)


@pytest.mark.parametrize("name", ["numpy", "torch", "torch-autograd"])
@pytest.mark.parametrize("case", [CASES[5].values[0], GATED["lstm-seed1"], GATED["gru-seed1"]],
                         ids=["elman", "lstm", "gru"])
def test_float32_backend_computes_in_float32(name, case):
    # The same case in float32 and float64 must differ by float32 rounding, not be identical.
    a = get_backend(name, "float32").bptt(**case)
    b = get_backend(name, "float64").bptt(**case)
    assert _relerr(a.grads.W_h, b.grads.W_h) > 1e-12


def test_cuda_backend_absent_or_agrees():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            get_backend("torch:cuda")
        assert "torch:cuda" not in available_backends()
        pytest.skip("CUDA is not available on this machine: torch:cuda raises RuntimeError as specified")
    for case in (CASES[1].values[0], GATED["lstm-seed0"], GATED["gru-seed0"]):
        got, want = get_backend("torch:cuda").bptt(**case), ORACLE.bptt(**case)
        _compare(got.grads.W_h, want.grads.W_h, RTOL["float64"], "W_h")
