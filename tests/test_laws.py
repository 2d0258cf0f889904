"""The decay/growth laws (contract section 6) as computed by properties.laws."""
import numpy as np
import pytest

import reference as R
from properties import laws


def test_scaled_orthogonal_has_every_singular_value_rho():
    W = laws.scaled_orthogonal(6, 0.7, rng=1)
    # An orthogonal matrix from a float64 QR: singular values 1 to a few ulps.
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), 0.7, rtol=1e-13)
    assert laws.spectral_radius(W) == pytest.approx(0.7, rel=1e-12)


def test_with_spectral_radius():
    W = laws.with_spectral_radius(np.random.default_rng(0).normal(size=(5, 5)), 1.3)
    assert laws.spectral_radius(W) == pytest.approx(1.3, rel=1e-12)
    assert laws.sigma_max(W) >= 1.3 * (1 - 1e-12)
    with pytest.raises(ValueError, match="nilpotent"):
        laws.with_spectral_radius(np.triu(np.ones((3, 3)), 1), 1.0)


def test_scalar_identity_law_by_hand():
    # H = 1, identity, w_h = 0.5, targets at T = 4: dL/dh_t = 0.5^(T-t) dL/dh_T exactly
    # (powers of two), so the lag norms are 1, 0.5, 0.25, 0.125 times the last one.
    spec = R.RNNSpec(activation="identity", targets="last")
    p = R.RNNParams(W_x=[[1.0]], W_h=[[0.5]], b_h=[0.0], W_y=[[1.0]], b_y=[0.0])
    curve = laws.measure_law(spec, p, np.ones((4, 1, 1)), np.zeros((4, 1, 1)), rho=0.5)
    np.testing.assert_array_equal(curve.relative()[:, 0], [1.0, 0.5, 0.25, 0.125])
    np.testing.assert_array_equal(curve.exact, curve.norms)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.4])
def test_identity_with_rho_q_follows_the_exact_law(rho):
    curve = laws.gradient_law("identity", rho, T=30, H=8, B=3, seed=2)
    # Each step multiplies by rho Q^T: 30 float64 products of order one, ~30 ulps.
    np.testing.assert_allclose(curve.norms, curve.exact, rtol=1e-12)


@pytest.mark.parametrize("activation", R.ACTIVATIONS)
@pytest.mark.parametrize("rho", [0.6, 1.0, 1.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_bound_holds_for_every_activation(activation, rho, seed):
    curve = laws.gradient_law(activation, rho, T=25, H=10, B=4, seed=seed, recurrent="gaussian")
    # Float64 rounding of 25 steps of order-one products: 1e-12 relative slack.
    assert (curve.norms <= curve.bound * (1 + 1e-12)).all()


def test_power_norms_dominate_spectral_radius_powers():
    W = laws.with_spectral_radius(np.random.default_rng(3).normal(size=(7, 7)), 0.9)
    norms, powers = laws.power_norms(W, 20)
    # ||A^k|| >= rho(A)^k exactly; float64 SVD and powers: 1e-12 relative.
    assert (norms >= powers * (1 - 1e-12)).all()


def test_needs_targets_last():
    spec, params, xs, targets, h0 = laws.law_case("tanh", 0.9, T=5, H=3, B=2)
    with pytest.raises(ValueError, match="targets='last'"):
        laws.measure_law(R.RNNSpec(targets="every"), params, xs, targets, h0)


def test_plot_laws_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "laws.png"
    laws.plot_laws(out, T=12, H=6, B=2, rhos=(0.5, 1.5), activations=("identity", "tanh"))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
