"""The reference against its independent oracles, and the Jacobian and clipping helpers."""
import numpy as np
import pytest

import reference as R


def case(seed, activation="tanh", output="linear", targets="every", T=6, cell="elman"):
    rng = np.random.default_rng(seed)
    B, D, H, O = 2, 3, 4, 3
    row = R.CELLS[cell]
    G = row.G                                         # gate blocks stacked in W_x, W_h, b_h
    p = R.RNNParams(W_x=rng.normal(size=(G * H, D)) * 0.6, W_h=rng.normal(size=(G * H, H)) * 0.4,
                    b_h=rng.normal(size=G * H) * 0.2, W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O),
                    b_hn=rng.normal(size=H) * 0.2 if "b_hn" in row.params else None)
    d = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    out = dict(spec=R.RNNSpec(activation, output, targets, 0.1, cell), params=p, xs=rng.normal(size=(T, B, D)),
               targets=d, h0=rng.normal(size=(B, H)))
    if "c" in row.state:
        out["c0"] = rng.normal(size=(B, H))
    return out


# Every cell with every activation it accepts.
CELL_ACTIVATIONS = [pytest.param(c.name, a, id=f"{c.name}-{a}") for c in R.CELLS.values() for a in c.activations]

# Two float64 evaluations of the same sums in other orders, values of order one.
AGREE = dict(rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("cell, activation", CELL_ACTIVATIONS)
@pytest.mark.parametrize("output", R.OUTPUTS)
@pytest.mark.parametrize("targets", R.TARGETS)
@pytest.mark.parametrize("truncation", [None, R.Truncation(2), R.Truncation(3, 1), R.Truncation(4, 2)])
def test_rtrl_equals_bptt(cell, activation, output, targets, truncation):
    c = case(0, activation, output, targets, cell=cell)
    a, b = R.bptt(truncation=truncation, **c), R.rtrl(truncation=truncation, **c)
    assert b.loss == pytest.approx(a.loss, rel=1e-14)     # the same forward pass
    for n in R.CELLS[cell].params:
        np.testing.assert_allclose(getattr(b.grads, n), getattr(a.grads, n), err_msg=n, **AGREE)
    assert (b.grads.b_hn is None) == (cell != "gru")
    for n in ("dh0", "dc0", "dhs", "dcs"):
        want, got = getattr(a, n), getattr(b, n)
        assert (got is None) == (want is None), n
        if want is not None:
            np.testing.assert_allclose(got, want, err_msg=n, **AGREE)
    assert (b.dc0 is None) == (cell != "lstm")
    assert (b.dhs is None) == (truncation is not None)


def _directional(res, v, u, w, cell):
    """sum(grad * v) + sum(dh0 * u) + sum(dc0 * w): what the central difference estimates."""
    out = sum(float((getattr(res.grads, n) * getattr(v, n)).sum()) for n in R.CELLS[cell].params)
    out += float((res.dh0 * u).sum()) if u is not None else 0.0
    return out + (float((res.dc0 * w).sum()) if w is not None else 0.0)


# relu is left out: a kink within eps of a pre-activation breaks the central difference.
@pytest.mark.parametrize("cell, activation", [p for p in CELL_ACTIVATIONS if p.values[1] != "relu"])
@pytest.mark.parametrize("output", R.OUTPUTS)
@pytest.mark.parametrize("seed", [1, 3])
def test_finite_differences(cell, activation, output, seed):
    c = case(seed, activation, output, cell=cell)
    rng = np.random.default_rng(seed + 1)
    v = R.RNNParams(**{n: rng.normal(size=np.shape(a)) for n, a in c["params"].as_dict().items()})
    u = rng.normal(size=np.shape(c["h0"]))
    w = rng.normal(size=np.shape(c["c0"])) if "c0" in c else None
    fd = R.directional_derivative(direction=v, dh0_direction=u, dc0_direction=w, **c)
    # Central differences with eps = 1e-5: truncation error eps^2 |L'''| ~ 1e-10 and
    # rounding 2^-53 |L| / eps ~ 1e-11, for losses and derivatives of order one-ten.
    assert fd == pytest.approx(_directional(R.bptt(**c), v, u, w, cell), rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("cell, name", [("lstm", "h0"), ("lstm", "c0"), ("lstm", "W_h"),
                                        ("gru", "h0"), ("gru", "b_hn"), ("gru", "W_h")])
def test_finite_differences_one_argument_at_a_time(cell, name):
    # dh0, dc0 (LSTM) and dL/db_hn (GRU) each alone, so that none hides behind a larger term.
    c = case(5, cell=cell)
    rng = np.random.default_rng(6)
    moved = {n: rng.normal(size=np.shape(c[n])) if n == name else None for n in ("h0", "c0")}
    v = {n: np.zeros(np.shape(a)) for n, a in c["params"].as_dict().items()}
    if name in v:
        v[name] = rng.normal(size=v[name].shape)
    v = R.RNNParams(**v)
    analytic = _directional(R.bptt(**c), v, moved["h0"], moved["c0"], cell)
    assert abs(analytic) > 1e-3                       # a derivative that is there to be checked
    fd = R.directional_derivative(direction=v, dh0_direction=moved["h0"], dc0_direction=moved["c0"], **c)
    # As above: eps = 1e-5 central differences of an order-one loss.
    assert fd == pytest.approx(analytic, rel=1e-7, abs=1e-8)


def test_finite_differences_direction_must_fit_the_cell():
    c = case(1, cell="gru")
    v = R.RNNParams(**{n: np.ones(np.shape(a)) for n, a in c["params"].as_dict().items() if n != "b_hn"})
    with pytest.raises(ValueError, match="direction.b_hn"):
        R.directional_derivative(direction=v, **c)


def test_state_jacobian_is_the_product_of_step_jacobians():
    c = case(4, "tanh")
    J = R.step_jacobians(c["spec"], c["params"], c["xs"], c["h0"])
    got = R.state_jacobian(c["spec"], c["params"], c["xs"], 5, 2, c["h0"])
    np.testing.assert_allclose(got, J[4] @ J[3] @ J[2], rtol=1e-14)
    np.testing.assert_array_equal(R.state_jacobian(c["spec"], c["params"], c["xs"], 3, 3, c["h0"])[0], np.eye(4))
    with pytest.raises(ValueError, match="0 <= s <= t <= T"):
        R.state_jacobian(c["spec"], c["params"], c["xs"], 2, 5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_jacobians_are_elman_only(cell):
    c = case(4, cell=cell)
    with pytest.raises(ValueError, match="spec.cell must be 'elman'"):
        R.step_jacobians(c["spec"], c["params"], c["xs"], c["h0"])


def test_dhs_are_jacobian_transposes_of_the_last_error():
    # targets="last": dL/dh_t = (dh_T/dh_t)^T dL/dh_T for every t.
    c = case(5, "tanh", targets="last")
    res = R.bptt(**c)
    T = c["xs"].shape[0]
    for t in range(1, T + 1):
        J = R.state_jacobian(c["spec"], c["params"], c["xs"], T, t, c["h0"])
        want = np.einsum("bij,bi->bj", J, res.dhs[T - 1])
        np.testing.assert_allclose(res.dhs[t - 1], want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", R.CELLS)
def test_clipping(cell):
    g = R.bptt(**case(6, cell=cell)).grads
    norm = R.global_norm(g)
    clipped, before = R.clip_by_global_norm(g, norm / 4)
    assert before == norm
    assert R.global_norm(clipped) == pytest.approx(norm / 4, rel=1e-14)
    assert set(clipped.as_dict()) == set(R.CELLS[cell].params)   # b_hn too, for the GRU
    for n in R.CELLS[cell].params:  # the direction is kept: every entry scaled by 1/4
        np.testing.assert_allclose(getattr(clipped, n), getattr(g, n) / 4, rtol=1e-15)
    same, _ = R.clip_by_global_norm(g, norm * 2)
    np.testing.assert_array_equal(same.W_h, g.W_h)
    v = R.clip_by_value(g, 0.01)
    assert max(np.abs(a).max() for a in v.as_dict().values()) <= 0.01
    with pytest.raises(ValueError, match="max_norm"):
        R.clip_by_global_norm(g, 0)
    with pytest.raises(ValueError, match="clip_value"):
        R.clip_by_value(g, -1)
