"""The decay/growth laws of properties.laws on pinned and seeded cases."""
import importlib.util

import numpy as np
import pytest

from properties.laws import (carousel_case, carousel_gates, carousel_law, decay_bound, gradient_law, lag_norms,
                             law_case, measure_carousel, measure_law, orthogonal, plot_laws, power_norms,
                             scaled_orthogonal, sigma_max, spectral_radius, with_sigma_max, with_spectral_radius)
from reference.cells import sigmoid
from reference import RNNParams, RNNSpec

ACTS = ("identity", "tanh", "sigmoid", "relu")


def test_hand_worked_identity_half_identity():
    # H = D = O = 2, W_h = 0.5 I, W_x = W_y = I, h0 = 0:
    # h1 = (1, 0), h2 = (0.5, 1), h3 = (1.25, 1.5); d_3 = (0.25, 1.5) -> dL/dh_3 = (1, 0),
    # dL/dh_2 = (0.5, 0), dL/dh_1 = (0.25, 0).
    spec = RNNSpec(activation="identity", output="linear", targets="last")
    I = np.eye(2)
    params = RNNParams(W_x=I, W_h=0.5 * I, b_h=np.zeros(2), W_y=I, b_y=np.zeros(2))
    xs = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    targets = np.zeros((3, 1, 2))
    targets[2, 0] = (0.25, 1.5)
    curve = measure_law(spec, params, xs, targets, rho=0.5)
    # every value is a power of two: exact in float64
    np.testing.assert_array_equal(curve.norms[:, 0], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(curve.bound[:, 0], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(curve.exact[:, 0], [1.0, 0.5, 0.25])


def test_lag_norms_reverses_time():
    dhs = np.zeros((3, 1, 2))
    dhs[0, 0] = (3.0, 4.0)   # t = 1 -> lag 2
    dhs[2, 0] = (0.0, 1.0)   # t = T -> lag 0
    np.testing.assert_array_equal(lag_norms(dhs)[:, 0], [1.0, 0.0, 5.0])
    np.testing.assert_array_equal(decay_bound(dhs, 2 * np.eye(2), "sigmoid")[:, 0], [1.0, 0.5, 0.25])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_matrix_constructors(n, seed):
    Q = orthogonal(n, seed)
    # QR of a Gaussian matrix gives Q^T Q = I up to a few ulps per entry
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-13)
    W = scaled_orthogonal(n, 1.7, np.random.default_rng(seed))
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), 1.7, rtol=1e-13)
    G = with_spectral_radius(np.random.default_rng(seed).standard_normal((n, n)), 0.9)
    # eigvals of a small dense matrix are backward stable: relative error ~ n * eps * cond
    assert spectral_radius(G) == pytest.approx(0.9, rel=1e-10)
    assert sigma_max(G) >= 0.9 * (1 - 1e-10)
    np.testing.assert_array_equal(orthogonal(n, seed), Q)  # seedable
    S = with_sigma_max(np.random.default_rng(seed).standard_normal((n, n)), 0.7)
    # the 2-norm from a backward-stable SVD: relative error ~ n * eps
    assert sigma_max(S) == pytest.approx(0.7, rel=1e-13)


def test_with_spectral_radius_rejects_nilpotent():
    with pytest.raises(ValueError, match="nilpotent"):
        with_spectral_radius(np.array([[0.0, 1.0], [0.0, 0.0]]), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("rho", [0.5, 1.0, 1.3])
@pytest.mark.parametrize("recurrent", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("activation", ACTS)
def test_bound_holds(activation, rho, recurrent, seed):
    c = gradient_law(activation, rho, T=25, H=8, B=3, seed=seed, recurrent=recurrent)
    # The bound is attained exactly for identity with rho*Q; each of the 25 steps rounds
    # a norm-preserving product by a few ulps, so 1e-12 relative slack covers rounding only.
    assert (c.norms <= c.bound * (1 + 1e-12)).all()
    assert (c.norms[0] > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.1, 1.5])
def test_identity_orthogonal_exact_law(rho, seed):
    c = gradient_law("identity", rho, T=30, H=8, B=3, seed=seed)
    # ||rho Q^T g|| = rho ||g|| exactly; rounding adds ~H*eps per step, so after 30
    # steps the relative error is below 30 * 8 * 2.2e-16 ~ 5e-14: 1e-12 is rounding only.
    np.testing.assert_allclose(c.norms, c.exact, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rho", [0.7, 1.2])
def test_relu_with_positive_states_follows_the_exact_law(rho, seed):
    # W_h = rho * P with P a permutation (orthogonal and nonnegative), nonnegative
    # inputs, weights and h0, positive bias: every pre-activation is > 0, so relu acts
    # as the identity and the exact law rho^(T-t) holds for relu too.
    rng = np.random.default_rng(seed)
    T, H, B, D = 20, 6, 3, 2
    P = np.eye(H)[rng.permutation(H)]
    params = RNNParams(W_x=rng.uniform(0, 1, (H, D)), W_h=rho * P, b_h=rng.uniform(0.1, 1, H),
                       W_y=rng.standard_normal((2, H)), b_y=np.zeros(2))
    xs = rng.uniform(0, 1, (T, B, D))
    targets = rng.standard_normal((T, B, 2))
    h0 = rng.uniform(0, 1, (B, H))
    relu = measure_law(RNNSpec(activation="relu", targets="last"), params, xs, targets, h0)
    ident = measure_law(RNNSpec(activation="identity", targets="last"), params, xs, targets, h0, rho=rho)
    # relu and identity do the same floating-point operations here: equal bit for bit
    np.testing.assert_array_equal(relu.norms, ident.norms)
    # a permutation times rho is exact up to one rounding of rho*g per step: 1e-13 is rounding
    np.testing.assert_allclose(relu.norms, ident.exact, rtol=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_norms_above_spectral_radius_power(seed):
    W = with_spectral_radius(np.random.default_rng(seed).standard_normal((6, 6)), 1.1)
    norms, radius = power_norms(W, 30)
    # ||A^k|| >= rho(A)^k exactly; 1e-10 relative slack covers the eigenvalue's rounding
    assert (norms >= radius * (1 - 1e-10)).all()
    assert norms[0] == pytest.approx(1.0) and radius[0] == 1.0


@pytest.mark.parametrize("backend", ["numpy", "torch", "rtrl"])
def test_laws_from_other_backends(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    ref = gradient_law("tanh", 1.1, T=12, H=5, B=2, seed=4)
    other = gradient_law("tanh", 1.1, T=12, H=5, B=2, seed=4, backend=backend)
    # float64 backends agree with the reference to a few ulps times T*H
    np.testing.assert_allclose(other.norms, ref.norms, rtol=1e-10, atol=1e-300)


def test_laws_need_targets_last():
    spec, params, xs, targets, h0 = law_case("tanh", 0.9, 5, 3, 2)
    with pytest.raises(ValueError, match="targets='last'"):
        measure_law(RNNSpec(targets="every"), params, xs, targets, h0)


def test_plot_laws_writes_png(tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    path = tmp_path / "laws.png"
    assert plot_laws(str(path), T=12, H=4, B=2, rhos=(0.5, 1.5), activations=("identity", "relu"),
                     carousel_T=20) == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_plot_laws_with_a_backend_of_any_cells_writes_png(tmp_path):
    # numpy may or may not implement the gated cells: either way the picture is drawn
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    path = tmp_path / "laws.png"
    plot_laws(str(path), backend="numpy", T=8, H=3, B=2, rhos=(0.9,), activations=("tanh",), carousel_T=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_laws_command_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    import properties.laws
    from properties.cli import main

    def no_matplotlib():
        raise ImportError("plotting the laws needs matplotlib")
    monkeypatch.setattr(properties.laws, "_pyplot", no_matplotlib)
    assert main(["laws", "--plot", str(tmp_path / "laws.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Gated cells: the exact carousel laws (W_h = 0, targets="last")

EPS = np.finfo(np.float64).eps
GATED = [("lstm", 0.0), ("lstm", 1.0), ("lstm", 3.0), ("gru", 0.0), ("gru", 2.0)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cell, bias", GATED)
def test_carousel_norms_follow_the_product_of_gates(cell, bias, seed):
    T = 60
    spec, params, xs, targets, h0, c0 = carousel_case(cell, bias, T=T, H=5, B=3, seed=seed)
    c = measure_carousel(spec, params, xs, targets, h0, c0)
    assert c.state == ("c" if cell == "lstm" else "h") and c.gate == ("f" if cell == "lstm" else "z")
    # each of the T - 1 steps multiplies by the gate once; the gate itself may differ by an
    # ulp or two between the backend's (B, G H) product and carousel_gates' (B, H) one, so
    # 4 T eps relative is float64 rounding only
    np.testing.assert_allclose(c.measured, c.exact, rtol=4 * T * EPS, atol=0)
    np.testing.assert_allclose(c.norms, c.law, rtol=4 * T * EPS, atol=0)
    np.testing.assert_allclose(c.max_relative(), c.law_max_relative(), rtol=4 * T * EPS)
    assert (c.norms[-1] > 0).all()                 # still representable: the comparison means something


@pytest.mark.parametrize("cell, bias", GATED)
def test_carousel_with_constant_gates_is_a_power(cell, bias):
    # W_x = 0: the gate is sigma(bias) at every step, so ||dL/d state_{T-k}|| = sigma(bias)^k ||dL/d state_T||,
    # a closed form that uses neither carousel_gates nor carousel_law
    T = 40
    spec, params, xs, targets, h0, c0 = carousel_case(cell, bias, T=T, H=4, B=2, seed=3, input_scale=0.0)
    c = measure_carousel(spec, params, xs, targets, h0, c0)
    g = float(sigmoid(np.float64(bias)))
    expected = g ** np.arange(T)[:, None] * c.norms[0]
    # k roundings of a product of k equal factors, and g^k itself: 4 T eps relative is rounding only
    np.testing.assert_allclose(c.norms, expected, rtol=4 * T * EPS, atol=0)


def test_carousel_law_by_hand():
    # T = 3, H = 1, dL/d state_3 = 2, gates 0.5, 0.25, 0.75: dL/d state_2 = 2 * gate_3 = 1.5,
    # dL/d state_1 = 1.5 * gate_2 = 0.375 (gate_1 would carry it on to state_0); exact in binary
    gates = np.array([0.5, 0.25, 0.75]).reshape(3, 1, 1)
    law = carousel_law(np.array([[2.0]]), gates)
    np.testing.assert_array_equal(law[:, 0, 0], [0.375, 1.5, 2.0])


@pytest.mark.parametrize("backend", ["numpy", "torch", "torch-autograd", "rtrl"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carousel_on_other_backends(backend, cell):
    if backend.startswith("torch"):
        pytest.importorskip("torch")
    spec, params, xs, targets, h0, c0 = carousel_case(cell, 1.0, T=30, H=4, B=2, seed=5)
    try:
        c = measure_carousel(spec, params, xs, targets, h0, c0, backend=backend)
    except NotImplementedError as exc:
        pytest.skip(f"backend {backend!r} does not implement {exc}")
    # float64 backends compute the same products in other orders: a few ulps per step times T
    np.testing.assert_allclose(c.measured, c.exact, rtol=1e-10, atol=0)


def test_carousel_needs_a_gated_cell_targets_last_and_zero_w_h():
    with pytest.raises(ValueError, match="gated cell"):
        carousel_case("elman", 1.0, T=3, H=2, B=1)
    spec, params, xs, targets, h0, c0 = carousel_case("lstm", 1.0, T=3, H=2, B=1)
    with pytest.raises(ValueError, match="targets='last'"):
        measure_carousel(RNNSpec(cell="lstm", targets="every"), params, xs, targets, h0, c0)
    from dataclasses import replace
    with pytest.raises(ValueError, match="W_h must be 0"):
        measure_carousel(spec, replace(params, W_h=params.W_h + 0.1), xs, targets, h0, c0)


def test_carousel_case_reads_the_cell_row():
    from reference.cells import CELLS

    for cell in ("lstm", "gru"):
        row = CELLS[cell]
        spec, params, xs, targets, h0, c0 = carousel_case(cell, 2.5, T=4, H=3, B=2, D=5, O=2)
        for name, (shape, _) in row.shapes(5, 3, 2).items():
            assert np.shape(getattr(params, name)) == shape
        assert (params.b_h[row.block(row.carousel_gate, 3)] == 2.5).all() and not params.W_h.any()
        assert (c0 is None) == (cell == "gru")
        np.testing.assert_array_equal(carousel_gates(spec, params, xs).shape, (4, 2, 3))
