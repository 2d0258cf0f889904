"""The reference against its independent oracles, and the Jacobian and clipping helpers."""
import numpy as np
import pytest

import reference as R


def case(seed, activation="tanh", output="linear", targets="every", T=6):
    rng = np.random.default_rng(seed)
    B, D, H, O = 2, 3, 4, 3
    p = R.RNNParams(W_x=rng.normal(size=(H, D)) * 0.6, W_h=rng.normal(size=(H, H)) * 0.4,
                    b_h=rng.normal(size=H) * 0.2, W_y=rng.normal(size=(O, H)), b_y=rng.normal(size=O))
    d = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    return dict(spec=R.RNNSpec(activation, output, targets, 0.1), params=p, xs=rng.normal(size=(T, B, D)),
                targets=d, h0=rng.normal(size=(B, H)))


@pytest.mark.parametrize("activation", R.ACTIVATIONS)
@pytest.mark.parametrize("output", R.OUTPUTS)
@pytest.mark.parametrize("truncation", [None, R.Truncation(2), R.Truncation(3, 1), R.Truncation(4, 2)])
def test_rtrl_equals_bptt(activation, output, truncation):
    c = case(0, activation, output)
    a, b = R.bptt(truncation=truncation, **c), R.rtrl(truncation=truncation, **c)
    # Two float64 evaluations of the same sums in other orders, values of order one.
    for n in R.RNNParams.names():
        np.testing.assert_allclose(getattr(a.grads, n), getattr(b.grads, n), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(a.dh0, b.dh0, rtol=1e-11, atol=1e-12)
    if truncation is None:
        np.testing.assert_allclose(a.dhs, b.dhs, rtol=1e-11, atol=1e-12)
    else:
        assert a.dhs is None and b.dhs is None


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("output", R.OUTPUTS)
def test_finite_differences(activation, output):
    c = case(1, activation, output)
    rng = np.random.default_rng(2)
    v = R.RNNParams(**{n: rng.normal(size=np.shape(w)) for n, w in c["params"].as_dict().items()})
    u = rng.normal(size=np.shape(c["h0"]))
    res = R.bptt(**c)
    analytic = sum(float((getattr(res.grads, n) * getattr(v, n)).sum()) for n in R.RNNParams.names())
    analytic += float((res.dh0 * u).sum())
    fd = R.directional_derivative(direction=v, dh0_direction=u, **c)
    # Central differences with eps = 1e-5: truncation error eps^2 |L'''| ~ 1e-10 and
    # rounding 2^-53 |L| / eps ~ 1e-11, for losses and derivatives of order one-ten.
    assert fd == pytest.approx(analytic, rel=1e-7, abs=1e-8)


def test_state_jacobian_is_the_product_of_step_jacobians():
    c = case(4, "tanh")
    J = R.step_jacobians(c["spec"], c["params"], c["xs"], c["h0"])
    got = R.state_jacobian(c["spec"], c["params"], c["xs"], 5, 2, c["h0"])
    np.testing.assert_allclose(got, J[4] @ J[3] @ J[2], rtol=1e-14)
    np.testing.assert_array_equal(R.state_jacobian(c["spec"], c["params"], c["xs"], 3, 3, c["h0"])[0], np.eye(4))
    with pytest.raises(ValueError, match="0 <= s <= t <= T"):
        R.state_jacobian(c["spec"], c["params"], c["xs"], 2, 5)


def test_dhs_are_jacobian_transposes_of_the_last_error():
    # targets="last": dL/dh_t = (dh_T/dh_t)^T dL/dh_T for every t.
    c = case(5, "tanh", targets="last")
    res = R.bptt(**c)
    T = c["xs"].shape[0]
    for t in range(1, T + 1):
        J = R.state_jacobian(c["spec"], c["params"], c["xs"], T, t, c["h0"])
        want = np.einsum("bij,bi->bj", J, res.dhs[T - 1])
        np.testing.assert_allclose(res.dhs[t - 1], want, rtol=1e-12, atol=1e-15)


def test_clipping():
    g = R.bptt(**case(6)).grads
    norm = R.global_norm(g)
    clipped, before = R.clip_by_global_norm(g, norm / 4)
    assert before == norm
    assert R.global_norm(clipped) == pytest.approx(norm / 4, rel=1e-14)
    for n in R.RNNParams.names():  # the direction is kept: every entry scaled by 1/4
        np.testing.assert_allclose(getattr(clipped, n), getattr(g, n) / 4, rtol=1e-15)
    same, _ = R.clip_by_global_norm(g, norm * 2)
    np.testing.assert_array_equal(same.W_h, g.W_h)
    v = R.clip_by_value(g, 0.01)
    assert max(np.abs(a).max() for a in v.as_dict().values()) <= 0.01
    with pytest.raises(ValueError, match="max_norm"):
        R.clip_by_global_norm(g, 0)
    with pytest.raises(ValueError, match="clip_value"):
        R.clip_by_value(g, -1)
