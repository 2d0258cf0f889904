"""Small examples worked out by hand, pinned exactly.

A scalar RNN (D = H = O = 1, B = 1) with identity activation keeps every number a
short decimal, so the expected values below are exact; the tanh case spells out
the textbook expansion of dE/dW as a sum over paths.
"""
import math

import numpy as np
import pytest

import reference as R
from implementations import available_backends, get_backend

# Exact decimals from a float64 computation of a few operations: a few ulps.
EXACT = dict(rtol=1e-14, atol=1e-14)
EXACT_APPROX = dict(rel=1e-14, abs=1e-14)


def scalar_params(w_x, w_h, b_h, w_y, b_y):
    return R.RNNParams(W_x=[[w_x]], W_h=[[w_h]], b_h=[b_h], W_y=[[w_y]], b_y=[b_y])


BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return get_backend(request.param)


def test_two_steps_identity_last_target(backend):
    # x = (1, 2), w_x = 1, w_h = 0.5, b = 0, h0 = 0, w_y = 1, b_y = 0, d_2 = 0:
    # h1 = 1, h2 = 2 + 0.5 = 2.5, y2 = 2.5, L = 2.5^2 / 2 = 3.125.
    # dL/dy2 = 2.5 = dL/dh2;  dL/dh1 = 0.5 * 2.5 = 1.25;  dL/dh0 = 0.5 * 1.25 = 0.625.
    # dW_h = 2.5 h1 + 1.25 h0 = 2.5;  dW_x = 2.5 x2 + 1.25 x1 = 6.25;  db_h = 3.75;
    # dW_y = 2.5 h2 = 6.25;  db_y = 2.5.
    spec = R.RNNSpec(activation="identity", output="linear", targets="last")
    p = scalar_params(1.0, 0.5, 0.0, 1.0, 0.0)
    xs = np.array([1.0, 2.0]).reshape(2, 1, 1)
    d = np.array([7.0, 0.0]).reshape(2, 1, 1)  # d_1 is not read with targets="last"
    res = backend.bptt(spec, p, xs, d)
    assert res.loss == pytest.approx(3.125, **EXACT_APPROX)
    g = res.grads
    np.testing.assert_allclose([g.W_x[0, 0], g.W_h[0, 0], g.b_h[0], g.W_y[0, 0], g.b_y[0]],
                               [6.25, 2.5, 3.75, 6.25, 2.5], **EXACT)
    np.testing.assert_allclose(res.dh0, [[0.625]], **EXACT)
    np.testing.assert_allclose(res.dhs.ravel(), [1.25, 2.5], **EXACT)
    fwd = backend.forward(spec, p, xs)
    np.testing.assert_allclose(fwd.hs.ravel(), [1.0, 2.5], **EXACT)


# Three steps, identity, w_h = 0.5, x = (1, 1, 1), h0 = 0, y = h, d = 0, every step
# scored: h = (1, 1.5, 1.75) and the direct errors are e_t = h_t.
THREE = dict(spec=R.RNNSpec(activation="identity", output="linear", targets="every"),
             params=scalar_params(1.0, 0.5, 0.0, 1.0, 0.0),
             xs=np.ones((3, 1, 1)), targets=np.zeros((3, 1, 1)))


@pytest.mark.parametrize("truncation, dW_h, dW_x, dh0", [
    # Full: dh3 = 1.75, dh2 = 1.5 + 0.5*1.75 = 2.375, dh1 = 1 + 0.5*2.375 = 2.1875;
    # dW_h = 1.75*1.5 + 2.375*1 + 2.1875*0 = 5.0; dW_x = 6.3125; dh0 = 0.5*2.1875.
    (None, 5.0, 6.3125, 1.09375),
    # h >= T is full BPTT, whatever h'.
    (R.Truncation(3, 1), 5.0, 6.3125, 1.09375),
    # BPTT(1): each term stops at its own step: dW_h = 1.75*1.5 + 1.5*1 + 1*0.
    (R.Truncation(1), 4.125, 4.25, 0.5),
    # BPTT(2; 1): block t reaches back to t-1. t=1: e1=1 -> dh0 += 0.5.
    # t=2: 1.5 at h2 (dW_h += 1.5*h1), 0.75 at h1 -> dh0 += 0.375.
    # t=3 (s=2): 1.75 at h3 (dW_h += 1.75*1.5), 0.875 at h2 (dW_h += 0.875*h1).
    (R.Truncation(2, 1), 5.0, 5.875, 0.875),
    # BPTT(2; 2): blocks {1,2} from s=1 and {3} from s=2: block 1 gives 1.5 at h2,
    # 0.75 + 1 at h1, dh0 = 0.875; block 2 gives 1.75 at h3 and 0.875 at h2.
    (R.Truncation(2, 2), 5.0, 5.875, 0.875),
])
def test_three_steps_truncation(backend, truncation, dW_h, dW_x, dh0):
    res = backend.bptt(truncation=truncation, **THREE)
    np.testing.assert_allclose([res.grads.W_h[0, 0], res.grads.W_x[0, 0], res.dh0[0, 0]],
                               [dW_h, dW_x, dh0], **EXACT)
    cut = truncation is not None and truncation.h < 3
    assert (res.dhs is None) == cut
    if not cut:
        np.testing.assert_allclose(res.dhs.ravel(), [2.1875, 2.375, 1.75], **EXACT)


def test_tanh_three_step_path_expansion(backend):
    """dE_3/dW_h = sum_k dE_3/dh_3 (prod_{j=k+1}^{3} dh_j/dh_{j-1}) dh_k+/dW_h, with
    dh_j/dh_{j-1} = f'(a_j) w_h and the immediate dh_k+/dW_h = f'(a_k) h_{k-1}."""
    w_x, w_h, b, w_y, b_y, h0 = 0.7, -1.3, 0.2, 1.5, -0.1, 0.4
    x, d = [0.5, -1.0, 2.0], 0.3
    h, fp = [h0], []
    for t in range(3):
        a = w_x * x[t] + w_h * h[-1] + b
        h.append(math.tanh(a))
        fp.append(1 - math.tanh(a) ** 2)
    y3 = w_y * h[3] + b_y
    dE_dh3 = (y3 - d) * w_y
    dW_h = sum(dE_dh3 * math.prod(fp[j - 1] * w_h for j in range(k + 1, 4)) * fp[k - 1] * h[k - 1]
               for k in (1, 2, 3))
    dW_x = sum(dE_dh3 * math.prod(fp[j - 1] * w_h for j in range(k + 1, 4)) * fp[k - 1] * x[k - 1]
               for k in (1, 2, 3))
    dh0 = dE_dh3 * math.prod(fp[j - 1] * w_h for j in (1, 2, 3))
    spec = R.RNNSpec(activation="tanh", targets="last")
    res = backend.bptt(spec, scalar_params(w_x, w_h, b, w_y, b_y), np.reshape(x, (3, 1, 1)),
                       np.full((3, 1, 1), d), h0=[[h0]])
    # Same float64 operations in another order: a few ulps of values of order one.
    np.testing.assert_allclose([res.grads.W_h[0, 0], res.grads.W_x[0, 0], res.dh0[0, 0]],
                               [dW_h, dW_x, dh0], rtol=1e-13)
    assert res.loss == pytest.approx(0.5 * (y3 - d) ** 2, rel=1e-14)


def test_softmax_cross_entropy_by_hand(backend):
    # One step, H = 1, O = 2, identity, h1 = x = 1: y = (1, -1), class 0.
    # L = log(e + e^-1) - 1 = log(1 + e^-2); dL/dy = softmax(y) - (1, 0).
    spec = R.RNNSpec(activation="identity", output="softmax")
    p = R.RNNParams(W_x=[[1.0]], W_h=[[0.0]], b_h=[0.0], W_y=[[1.0], [-1.0]], b_y=[0.0, 0.0])
    res = backend.bptt(spec, p, np.ones((1, 1, 1)), np.zeros((1, 1), dtype=int))
    s1 = 1 / (1 + math.exp(2))  # softmax(y)[1]
    assert res.loss == pytest.approx(math.log1p(math.exp(-2)), rel=1e-14)
    np.testing.assert_allclose(res.grads.b_y, [-s1, s1], rtol=1e-14)
    np.testing.assert_allclose(res.grads.W_h, [[0.0]], atol=0)


def test_l2_term_by_hand(backend):
    # With zero inputs and targets at the model's output, only the l2 term is left:
    # L = (l2/2)(w_x^2 + w_h^2 + w_y^2), grads = l2 * W, biases not regularised.
    spec = R.RNNSpec(activation="identity", l2=0.5)
    p = scalar_params(2.0, 0.5, 0.0, 3.0, 0.0)
    res = backend.bptt(spec, p, np.zeros((2, 1, 1)), np.zeros((2, 1, 1)))
    assert res.loss == pytest.approx(0.25 * (4 + 0.25 + 9), rel=1e-15)
    np.testing.assert_allclose([res.grads.W_x[0, 0], res.grads.W_h[0, 0], res.grads.W_y[0, 0]],
                               [1.0, 0.25, 1.5], rtol=1e-15)
    assert res.grads.b_h[0] == 0 and res.grads.b_y[0] == 0
