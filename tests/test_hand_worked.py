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


# ---------------------------------------------------------------------------
# Gated cells: T = 2, B = D = H = O = 1, linear output, both steps scored. The
# expected values come from the chain rule written out for scalars below (no
# arrays, no code of the suite): a few lines per step that can be redone on paper
# with a calculator. Same float64 operations in another order, values of order
# 0.01 to 1: a few ulps, well inside 1e-14.


def sig(a):
    return 1 / (1 + math.exp(-a))


def gated_params(cell, wx, wh, b, wy, by, bhn=None):
    return R.RNNSpec(activation="tanh", output="linear", targets="every", cell=cell), R.RNNParams(
        W_x=np.reshape(wx, (-1, 1)), W_h=np.reshape(wh, (-1, 1)), b_h=list(b), W_y=[[wy]], b_y=[by],
        b_hn=None if bhn is None else [bhn])


# LSTM, gates i, f, g, o (a forget bias of 1, as LSTMs are usually started).
LSTM = dict(wx=(0.5, -0.3, 0.8, 0.2), wh=(0.4, 0.6, -0.7, 0.9), b=(0.1, 1.0, -0.2, 0.3), wy=1.5, by=-0.1)
LSTM_X, LSTM_D, LSTM_H0, LSTM_C0 = (1.0, -0.5), (0.2, -0.4), 0.3, -0.6


def lstm_by_hand(truncated):
    wx, wh, b, wy, by = (LSTM[k] for k in ("wx", "wh", "b", "wy", "by"))
    x, d = (None, *LSTM_X), (None, *LSTM_D)          # 1-based: x[1], x[2]
    # Forward, t = 1, 2, gate k = i, f, g, o:
    #   z_k = wx_k x_t + wh_k h_{t-1} + b_k;   i, f, o = sig(z), g = tanh(z)
    #   c_t = f c_{t-1} + i g;   h_t = o tanh(c_t);   y_t = wy h_t + by
    #   L = (y_1 - d_1)^2 / 2 + (y_2 - d_2)^2 / 2
    h, c, gates = [LSTM_H0], [LSTM_C0], [None]
    for t in (1, 2):
        z = [wx[k] * x[t] + wh[k] * h[t - 1] + b[k] for k in range(4)]
        i, f, g, o = sig(z[0]), sig(z[1]), math.tanh(z[2]), sig(z[3])
        c.append(f * c[t - 1] + i * g)
        h.append(o * math.tanh(c[t]))
        gates.append((i, f, g, o))
    y = [None] + [wy * h[t] + by for t in (1, 2)]
    loss = sum((y[t] - d[t]) ** 2 / 2 for t in (1, 2))
    e = [None] + [(y[t] - d[t]) * wy for t in (1, 2)]   # e_t = dl_t/dh_t

    # Backward through step t, given dh = dL/dh_t (c_t held fixed) and dc_next = dL/dc_t
    # through c_{t+1}:
    #   dc = dc_next + dh o tanh'(c_t)                     (total dL/dc_t; tanh' = 1 - tanh^2)
    #   dz = (dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh tanh(c_t) o(1-o))
    #   dL/dh_{t-1} through step t = sum_k wh_k dz_k;   dL/dc_{t-1} through c_t = dc f
    def back(t, dh, dc_next):
        i, f, g, o = gates[t]
        tc = math.tanh(c[t])
        dc = dc_next + dh * o * (1 - tc ** 2)
        dz = (dc * g * i * (1 - i), dc * c[t - 1] * f * (1 - f), dc * i * (1 - g ** 2), dh * tc * o * (1 - o))
        return dz, sum(wh[k] * dz[k] for k in range(4)), dc * f, dc

    dz2, dh1_via2, dc1_via2, dc2 = back(2, e[2], 0.0)
    via2 = (dh1_via2, dc1_via2)
    if truncated:   # BPTT(1): step 2's block starts from (h_1, c_1) held constant, both detached
        dh1_via2 = dc1_via2 = 0.0
    dz1, dh0, dc0, dc1 = back(1, e[1] + dh1_via2, dc1_via2)
    # Weight gradients: sums over the steps of dz_k times what z_k multiplies.
    return dict(loss=loss, hs=h[1:], cs=c[1:], dh0=dh0, dc0=dc0, via2=via2,
                dhs=[e[1] + dh1_via2, e[2]], dcs=[dc1, dc2],
                W_x=[dz1[k] * x[1] + dz2[k] * x[2] for k in range(4)],
                W_h=[dz1[k] * h[0] + dz2[k] * h[1] for k in range(4)],
                b_h=[dz1[k] + dz2[k] for k in range(4)],
                W_y=sum((y[t] - d[t]) * h[t] for t in (1, 2)), b_y=sum(y[t] - d[t] for t in (1, 2)))


@pytest.mark.parametrize("truncated", [False, True], ids=["full", "h=1"])
def test_lstm_two_steps_by_hand(backend, truncated):
    want = lstm_by_hand(truncated)
    spec, p = gated_params("lstm", **LSTM)
    xs, d = np.reshape(LSTM_X, (2, 1, 1)), np.reshape(LSTM_D, (2, 1, 1))
    h0, c0 = [[LSTM_H0]], [[LSTM_C0]]
    res = backend.bptt(spec, p, xs, d, h0=h0, c0=c0, truncation=R.Truncation(1) if truncated else None)
    assert res.loss == pytest.approx(want["loss"], **EXACT_APPROX)
    for n in ("W_x", "W_h", "b_h", "W_y", "b_y"):
        np.testing.assert_allclose(getattr(res.grads, n).ravel(), np.ravel(want[n]), err_msg=n, **EXACT)
    assert res.grads.b_hn is None
    np.testing.assert_allclose(res.dh0.ravel(), [want["dh0"]], **EXACT)
    np.testing.assert_allclose(res.dc0.ravel(), [want["dc0"]], **EXACT)
    if truncated:
        assert res.dhs is None and res.dcs is None
    else:
        np.testing.assert_allclose(res.dhs.ravel(), want["dhs"], **EXACT)
        np.testing.assert_allclose(res.dcs.ravel(), want["dcs"], **EXACT)
    fwd = backend.forward(spec, p, xs, h0=h0, c0=c0)
    np.testing.assert_allclose(fwd.hs.ravel(), want["hs"], **EXACT)
    np.testing.assert_allclose(fwd.cs.ravel(), want["cs"], **EXACT)


def test_lstm_example_can_tell_a_cut_of_h_alone():
    # What BPTT(1) drops at step 1 is step 2's contribution through h_1 and through c_1.
    # Both are far from 0 here, so a cut that detached h alone (or c alone) would miss
    # the pinned dc0 by |dc_2 f_2 f_1| (or dh0 by more than 1e-14).
    dh1_via2, dc1_via2 = lstm_by_hand(True)["via2"]
    assert abs(dh1_via2) > 1e-2 and abs(dc1_via2) > 1e-2


# GRU, gates r, z, n ("reset after": r multiplies wh_n h_{t-1} + b_hn).
GRU = dict(wx=(0.5, -0.4, 0.9), wh=(0.3, 0.7, -0.6), b=(0.2, -0.1, 0.1), bhn=0.25, wy=1.2, by=0.05)
GRU_X, GRU_D, GRU_H0 = (1.0, -0.5), (0.3, -0.2), 0.4


def gru_by_hand(truncated):
    wx, wh, b, bhn, wy, by = (GRU[k] for k in ("wx", "wh", "b", "bhn", "wy", "by"))
    x, d = (None, *GRU_X), (None, *GRU_D)
    # Forward, t = 1, 2:
    #   r = sig(wx_r x_t + wh_r h_{t-1} + b_r);   z = sig(wx_z x_t + wh_z h_{t-1} + b_z)
    #   m = wh_n h_{t-1} + bhn;   n = tanh(wx_n x_t + b_n + r m);   h_t = (1 - z) n + z h_{t-1}
    h, gates = [GRU_H0], [None]
    for t in (1, 2):
        r = sig(wx[0] * x[t] + wh[0] * h[t - 1] + b[0])
        z = sig(wx[1] * x[t] + wh[1] * h[t - 1] + b[1])
        m = wh[2] * h[t - 1] + bhn
        n = math.tanh(wx[2] * x[t] + b[2] + r * m)
        h.append((1 - z) * n + z * h[t - 1])
        gates.append((r, z, n, m))
    y = [None] + [wy * h[t] + by for t in (1, 2)]
    loss = sum((y[t] - d[t]) ** 2 / 2 for t in (1, 2))
    e = [None] + [(y[t] - d[t]) * wy for t in (1, 2)]

    # Backward through step t, given dh = dL/dh_t:
    #   a_n = dh (1-z)(1-n^2)   (dL/d of n's pre-activation);   dm = a_n r   (dL/dm)
    #   a_r = a_n m r(1-r);   a_z = dh (h_{t-1} - n) z(1-z)
    #   dL/dh_{t-1} through step t = dh z + wh_r a_r + wh_z a_z + wh_n dm
    #   dwx += (a_r, a_z, a_n) x_t;  dwh += (a_r, a_z, dm) h_{t-1};  db += (a_r, a_z, a_n);  dbhn += dm
    def back(t, dh):
        r, z, n, m = gates[t]
        a_n = dh * (1 - z) * (1 - n ** 2)
        dm = a_n * r
        a_r = a_n * m * r * (1 - r)
        a_z = dh * (h[t - 1] - n) * z * (1 - z)
        return (a_r, a_z, a_n), dm, dh * z + wh[0] * a_r + wh[1] * a_z + wh[2] * dm

    a2, dm2, dh1_via2 = back(2, e[2])
    if truncated:   # BPTT(1): step 2's block starts from h_1 held constant
        dh1_via2 = 0.0
    a1, dm1, dh0 = back(1, e[1] + dh1_via2)
    return dict(loss=loss, hs=h[1:], dh0=dh0, dhs=[e[1] + dh1_via2, e[2]],
                W_x=[a1[k] * x[1] + a2[k] * x[2] for k in range(3)],
                W_h=[a1[0] * h[0] + a2[0] * h[1], a1[1] * h[0] + a2[1] * h[1], dm1 * h[0] + dm2 * h[1]],
                b_h=[a1[k] + a2[k] for k in range(3)], b_hn=dm1 + dm2,
                W_y=sum((y[t] - d[t]) * h[t] for t in (1, 2)), b_y=sum(y[t] - d[t] for t in (1, 2)))


@pytest.mark.parametrize("truncated", [False, True], ids=["full", "h=1"])
def test_gru_two_steps_by_hand(backend, truncated):
    want = gru_by_hand(truncated)
    spec, p = gated_params("gru", **GRU)
    xs, d = np.reshape(GRU_X, (2, 1, 1)), np.reshape(GRU_D, (2, 1, 1))
    res = backend.bptt(spec, p, xs, d, h0=[[GRU_H0]], truncation=R.Truncation(1) if truncated else None)
    assert res.loss == pytest.approx(want["loss"], **EXACT_APPROX)
    for n in ("W_x", "W_h", "b_h", "b_hn", "W_y", "b_y"):
        np.testing.assert_allclose(getattr(res.grads, n).ravel(), np.ravel(want[n]), err_msg=n, **EXACT)
    np.testing.assert_allclose(res.dh0.ravel(), [want["dh0"]], **EXACT)
    assert res.dc0 is None and res.dcs is None
    if truncated:
        assert res.dhs is None
    else:
        np.testing.assert_allclose(res.dhs.ravel(), want["dhs"], **EXACT)
    fwd = backend.forward(spec, p, xs, h0=[[GRU_H0]])
    np.testing.assert_allclose(fwd.hs.ravel(), want["hs"], **EXACT)
    assert fwd.cs is None
