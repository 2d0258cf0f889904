"""The fast engine (numpy and torch backends) for every cell against the float64
reference (``reference.bptt`` / ``reference.forward``, which read the cell's row):
seeded random cases over truncation (none, h >= T, h' = 1, h' = h, general), given
or omitted h0 and c0, l2, linear and softmax output, every or last step scored, long
sequences and batches large enough for several time chunks; plus overflow of gated
cells naming the step."""
import re

import numpy as np
import pytest

import reference as R
from implementations import engine, get_backend
from reference.cells import CELLS

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These are correctness tests of small problems: on a busy machine each of torch's
    tiny multi-threaded GEMMs can wait a scheduler time slice for its second thread
    (a case of 0.07 s took 7.5 s with 2 threads here), so run them on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# Normwise relative error max|a - b| / max|b| of every returned array.
# float64: the same sums as the reference in other orders (GEMMs over time chunks);
# rounding grows with the T = 60 steps and the sums of up to 4 H = 48 products per
# gate, about 60 * 48 * 2^-53 = 3e-13 at worst in these contracting cases (4e-15 is
# seen); 1e-12 still fails any float32 arithmetic behind a float64 claim (~1e-7).
# float32: the inputs are rounded to 2^-24 = 6e-8 and every operation rounds again;
# over 60 steps and the up to T B = 3840-row sums of the weight gradients 2.2e-6 is
# seen: the conformance checks' float32 rtol, 1e-5.
RTOL = {"float64": 1e-12, "float32": 1e-5}
ENGINES = [(n, d) for n in ("numpy", "torch") for d in ("float64", "float32")]


def make_case(cell, seed, T=None, B=None):
    rng = np.random.default_rng(seed)
    row = CELLS[cell]
    T = T or int(rng.choice([1, 2, 7, 23, 60]))
    B = B or int(rng.choice([1, 3, 64]))
    D, H, O = (int(rng.integers(1, m + 1)) for m in (5, 12, 4))
    G = row.G
    spec = R.RNNSpec(cell=cell, activation="tanh" if cell != "elman" else str(rng.choice(R.ACTIVATIONS)),
                     output=str(rng.choice(R.OUTPUTS)), targets=str(rng.choice(R.TARGETS)),
                     l2=float(rng.choice([0.0, 0.05])))
    # Recurrent weights of spectral norm 0.9 per gate block: the gradients neither vanish
    # nor explode over 60 steps, so relative errors mean something.
    W_h = rng.normal(size=(G * H, H))
    for k in range(G):
        W_h[k * H:(k + 1) * H] *= 0.9 / np.linalg.norm(W_h[k * H:(k + 1) * H], 2)
    p = dict(W_x=rng.normal(size=(G * H, D)) / np.sqrt(D), W_h=W_h, b_h=rng.normal(size=G * H) * 0.5,
             W_y=rng.normal(size=(O, H)) / np.sqrt(H), b_y=rng.normal(size=O) * 0.1)
    if "b_hn" in row.extra:
        p["b_hn"] = rng.normal(size=H) * 0.5
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if spec.output == "linear" else rng.integers(0, O, size=(T, B))
    kw = dict(h0=rng.normal(size=(B, H)) * 0.5 if rng.random() < 0.5 else None)
    if cell == "lstm":
        kw["c0"] = rng.normal(size=(B, H)) if rng.random() < 0.5 else None
    kind = int(rng.integers(5))
    if kind == 0 or T == 1:
        truncation = None
    elif kind == 1:                      # h >= T: full BPTT whatever h'
        h = int(rng.integers(T, T + 3))
        truncation = R.Truncation(h, int(rng.integers(1, h + 1)))
    else:
        h = int(rng.integers(1, T))
        hp = {2: 1, 3: h}.get(kind, int(rng.integers(1, h + 1)))   # h' = 1, h' = h, any
        truncation = R.Truncation(h, hp)
    return dict(spec=spec, params=R.RNNParams(**p), xs=xs, targets=targets, truncation=truncation, **kw)


def relerr(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / scale if scale > 0 else np.abs(a).max()


def compare(got, want, rtol, what):
    assert got.shape == want.shape, what
    assert got.dtype == np.float64, what
    err = relerr(got, want)
    assert err <= rtol, f"{what}: normwise relative error {err:.3g} > {rtol:g}"


def check_against_reference(name, dtype, case):
    backend = get_backend(name, dtype)
    rtol = RTOL[dtype]
    cell = CELLS[case["spec"].cell]
    want, got = R.bptt(**case), backend.bptt(**case)
    assert isinstance(got.loss, float)
    assert got.loss == pytest.approx(want.loss, rel=rtol, abs=rtol)
    for n in cell.params:
        compare(getattr(got.grads, n), getattr(want.grads, n), rtol, n)
    assert (got.grads.b_hn is None) == ("b_hn" not in cell.extra)
    for n in ("dh0", "dhs", "dc0", "dcs"):
        w, g = getattr(want, n), getattr(got, n)
        assert (g is None) == (w is None), f"{n}: {g is None} where the reference has {w is None}"
        if w is not None:
            compare(g, w, rtol, n)
    fwd_args = (case["spec"], case["params"], case["xs"], case["h0"])
    fwd_kw = {"c0": case["c0"]} if "c0" in case else {}
    fw, fg = R.forward(*fwd_args, **fwd_kw), backend.forward(*fwd_args, **fwd_kw)
    for n in ("hs", "ys", "cs"):
        w, g = getattr(fw, n), getattr(fg, n)
        assert (g is None) == (w is None), n
        if w is not None:
            compare(g, w, rtol, n)


SEEDS = range(12)


@pytest.mark.parametrize("name, dtype", ENGINES)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("seed", SEEDS)
def test_agrees_with_reference(name, dtype, cell, seed):
    check_against_reference(name, dtype, make_case(cell, seed))


def test_the_random_cases_reach_every_corner():
    # The seeds above are chosen so that, per cell, every kind of case occurs.
    for cell in CELLS:
        cases = [make_case(cell, s) for s in SEEDS]
        tr = [c["truncation"] for c in cases]
        T = [c["xs"].shape[0] for c in cases]
        assert any(t is None for t in tr)
        assert any(t is not None and t.h >= Tt for t, Tt in zip(tr, T))              # full BPTT by h >= T
        assert any(t is not None and t.h < Tt and t.h_prime == 1 < t.h for t, Tt in zip(tr, T))
        assert any(t is not None and t.h < Tt and t.h_prime == t.h > 1 for t, Tt in zip(tr, T))
        assert any(t is not None and 1 < t.h_prime < t.h < Tt for t, Tt in zip(tr, T))
        assert {c["spec"].output for c in cases} == {"linear", "softmax"}
        assert {c["spec"].targets for c in cases} == {"every", "last"}
        assert {c["spec"].l2 > 0 for c in cases} == {True, False}
        assert {c["h0"] is None for c in cases} == {True, False}
        if cell == "lstm":
            assert {c["c0"] is None for c in cases} == {True, False}
        assert any(engine.chunk_steps(c["xs"].shape[0], c["xs"].shape[1]) < c["xs"].shape[0] for c in cases)


@pytest.mark.parametrize("name, dtype", ENGINES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("truncation", [None, R.Truncation(60), R.Truncation(7), R.Truncation(9, 1), R.Truncation(13, 5)],
                         ids=["full", "h=T", "h'=h", "h'=1", "general"])
def test_long_sequence_and_big_batch(name, dtype, cell, truncation):
    # T = 60 and B = 64: eight time chunks of the engine, blocks that cross them.
    case = make_case(cell, 100, T=60, B=64)
    case["truncation"] = truncation
    assert engine.chunk_steps(60, 64) < 60 / 4
    check_against_reference(name, dtype, case)


def gated_zero_state(cell, T, scale, B=2, H=3, D=2, O=2):
    """xs = 0, b_h = 0 (and b_hn = 0), h0 = c0 = 0: every state stays 0 (g = 0 gives c = 0 in
    the LSTM, n = 0 in the GRU), whatever W_h is; W_h = scale * [I; I; ...]."""
    row = CELLS[cell]
    G = row.G
    p = dict(W_x=np.ones((G * H, D)), W_h=scale * np.vstack([np.eye(H)] * G), b_h=np.zeros(G * H),
             W_y=np.ones((O, H)), b_y=np.zeros(O))
    if "b_hn" in row.extra:
        p["b_hn"] = np.zeros(H)
    return R.RNNSpec(cell=cell, targets="last"), R.RNNParams(**p), np.zeros((T, B, D)), np.ones((T, B, O))


@pytest.mark.parametrize("name, dtype", ENGINES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_overflow_names_a_step(name, dtype, cell):
    # The states stay 0, so the forward pass is finite; backwards, dL/dh_{t-1} is
    # (1/4) scale dL/dh_t through the g block (LSTM) or (1/4) scale + 1/2 through the
    # n block and z (GRU): with scale = 1e30 float64 overflows after about 11 of the 40
    # steps, float32 (scale 1e20) after 2.
    T = 40
    spec, params, xs, targets = gated_zero_state(cell, T, 1e30 if dtype == "float64" else 1e20)
    backend = get_backend(name, dtype)
    assert np.isfinite(backend.forward(spec, params, xs).hs).all()
    with pytest.raises(FloatingPointError, match=r"backward pass.*time step t=(\d+)") as info:
        backend.bptt(spec, params, xs, targets)
    step = int(re.search(r"t=(\d+)", str(info.value)).group(1))
    assert 1 <= step < T


@pytest.mark.parametrize("name, dtype", ENGINES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loss_overflow_names_the_step_of_the_reference(name, dtype, cell):
    # The states are 0 until step k (zero input, biases and initial state), so the
    # outputs y_t = W_y h_t + b_y are 0; at step k the input moves h_k off 0 and
    # W_y = 1e200 (float64) makes 1/2 |y_k - d_k|^2 overflow there first. In float32,
    # W_y = 1e25 is finite and |y_k|^2 ~ 1e50 overflows float32 only.
    T, k = 12, 7
    spec, params, xs, targets = gated_zero_state(cell, T, 0.5)
    spec = R.RNNSpec(cell=cell, targets="every")
    xs[k - 1:] = 1.0
    big = 1e200 if dtype == "float64" else 1e25
    params = R.RNNParams(**{**params.as_dict(), "W_y": np.full_like(params.W_y, big)})
    if dtype == "float64":
        with pytest.raises(FloatingPointError, match=rf"loss.*time step t={k}\b"):
            R.bptt(spec, params, xs, targets)
    else:
        assert np.isfinite(R.bptt(spec, params, xs, targets).loss)
    with pytest.raises(FloatingPointError, match=rf"loss.*time step t={k}\b"):
        get_backend(name, dtype).bptt(spec, params, xs, targets)


def test_gated_results_are_float64_numpy_and_inputs_untouched():
    for cell in ("lstm", "gru"):
        case = make_case(cell, 3, T=9, B=4)
        case["truncation"] = None
        before = {k: np.array(v, copy=True) for k, v in case["params"].as_dict().items()}
        xs_before = case["xs"].copy()
        for name, dtype in ENGINES:
            res = get_backend(name, dtype).bptt(**case)
            arrays = [res.dh0, res.dhs, *res.grads.as_dict().values()]
            arrays += [res.dc0, res.dcs] if cell == "lstm" else []
            for a in arrays:
                assert isinstance(a, np.ndarray) and a.dtype == np.float64
            assert (res.dc0 is None) == (res.dcs is None) == (cell != "lstm")
        for k, v in before.items():
            np.testing.assert_array_equal(getattr(case["params"], k), v)
        np.testing.assert_array_equal(case["xs"], xs_before)
