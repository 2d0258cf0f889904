"""The recurrent cells, one row each: the single place that says what a cell is.

A row (``Cell``) holds the cell's gate blocks (stacked along the first axis of W_x,
W_h and b_h, in PyTorch's order), its state, the parameters beyond the five every
cell has, the activations it accepts, the laws of docs/contract.md section 6 that
apply to it, and its reference step, backward step and tangent step. Validation, the
reference loop, the oracles, the fast engine, the strategies and the properties read
the row; none restates it.

Notation, one row vector per batch element (``W x`` is written ``x @ W.T``), sigma
the logistic sigmoid, ``*`` elementwise:

    elman   a_t = W_x x_t + W_h h_{t-1} + b_h;  h_t = f(a_t)
    lstm    [i; f; g; o] = [sigma; sigma; tanh; sigma](W_x x_t + W_h h_{t-1} + b_h)
            c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    gru     r = sigma(W_xr x_t + W_hr h_{t-1} + b_r);  z = sigma(W_xz x_t + W_hz h_{t-1} + b_z)
            n = tanh(W_xn x_t + b_n + r * (W_hn h_{t-1} + b_hn))
            h_t = (1 - z) * n + z * h_{t-1}

A step maps (p, x_t, state_{t-1}) to (state_t, cache); a backward step maps
(p, cache, dstate_t) to (dstate_{t-1}, parameter gradients of the step, dstate_t
total). For the LSTM the incoming dstate_t is (dL/dh_t, dL/dc_t through c_{t+1}
only) and the total dL/dc_t adds the path through h_t = o_t tanh(c_t) (what the
contract's ``dcs`` holds). Every cache starts with (x_t, h_{t-1}), and x_t enters the
backward step only in W_x's gradient (dL/d(W_x x_t + b_h) transposed, times x_t).

A tangent step is the forward-mode derivative (jvp) of the step, for RTRL: it maps
(p, x_t, state_{t-1}, dp, dstate_{t-1}, deps_t) to dstate_t, N tangents at once on a
leading axis: dp[name] is (N, *shape of name) for the recurrent parameters, each
dstate component (N, B, H). deps_t is a perturbation added to the new state where the
contract's ``dhs``/``dcs`` measure it (h_t as it leaves the step; for the LSTM, c_t
before h_t = o_t tanh(c_t) reads it), so that dL/deps_t = dhs[t] (and dcs[t]).
In a tangent step a leading d names a tangent (``dW``: the tangent of W); in a backward
step it names an adjoint dL/dW.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


def sigmoid(a):
    """1 / (1 + e^-a): accurate in both tails (e^-a overflows to inf for a << 0 and the
    result is the correct limit 0; callers run under ``np.errstate(over="ignore")``)."""
    return 1.0 / (1.0 + np.exp(-a))


@dataclass(frozen=True)
class Activation:
    f: Callable        # f(a)
    fprime: Callable   # f'(a), as a function of the pre-activation a
    slope: float       # gamma: the largest slope of f (decay/growth laws)


ACTIVATION = {
    "tanh": Activation(np.tanh, lambda a: 1.0 - np.tanh(a) ** 2, 1.0),
    "sigmoid": Activation(sigmoid, lambda a: sigmoid(a) * (1.0 - sigmoid(a)), 0.25),
    "relu": Activation(lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(np.float64), 1.0),  # relu'(0) = 0
    "identity": Activation(lambda a: a, np.ones_like, 1.0),
}


def _times(v, dW):
    """The tangent of v @ W.T for tangents dW (N, rows, cols) of W: (N, B, rows)."""
    return np.einsum("bd,ngd->nbg", v, dW)


def _bias(db):
    """A bias tangent (N, rows) broadcast over the batch: (N, 1, rows)."""
    return db[:, None, :]


# ---------------------------------------------------------------------------
# Elman


def elman_step(p, x, state, act):
    (h,) = state
    a = x @ p.W_x.T + h @ p.W_h.T + p.b_h          # a_t = W_x x_t + W_h h_{t-1} + b_h
    return (ACTIVATION[act].f(a),), (x, h, a)        # h_t = f(a_t)


def elman_backward(p, cache, dstate, act):
    x, h, a = cache
    (dh,) = dstate
    da = dh * ACTIVATION[act].fprime(a)              # dL/da_t = dL/dh_t f'(a_t)
    grads = {"W_x": da.T @ x, "W_h": da.T @ h, "b_h": da.sum(axis=0)}
    return (da @ p.W_h,), grads, dstate              # dL/dh_{t-1} = dL/da_t W_h


def elman_tangent(p, x, state, dp, dstate, deps, act):
    _, (x, h, a) = elman_step(p, x, state, act)
    (dh,), (eps,) = dstate, deps
    # da_t = dW_x x_t + dW_h h_{t-1} + db_h + W_h dh_{t-1}
    da = _times(x, dp["W_x"]) + _times(h, dp["W_h"]) + _bias(dp["b_h"]) + dh @ p.W_h.T
    return (ACTIVATION[act].fprime(a) * da + eps,)   # dh_t = f'(a_t) da_t (+ eps_t)


# ---------------------------------------------------------------------------
# LSTM (gates i, f, g, o)


def lstm_step(p, x, state, act):
    h, c = state
    H = h.shape[1]
    z = x @ p.W_x.T + h @ p.W_h.T + p.b_h            # (B, 4H): the four gates' pre-activations
    i, f, g, o = (sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:]))
    c_new = f * c + i * g                            # c_t = f_t c_{t-1} + i_t g_t
    h_new = o * np.tanh(c_new)                       # h_t = o_t tanh(c_t)
    return (h_new, c_new), (x, h, c, i, f, g, o, c_new)


def lstm_backward(p, cache, dstate, act):
    x, h, c, i, f, g, o, c_new = cache
    dh, dc_next = dstate
    tc = np.tanh(c_new)
    dc = dc_next + dh * o * (1.0 - tc ** 2)          # dL/dc_t, total: through c_{t+1} and through h_t
    di, df, dg, do = dc * g, dc * c, dc * i, dh * tc
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    grads = {"W_x": dz.T @ x, "W_h": dz.T @ h, "b_h": dz.sum(axis=0)}
    return (dz @ p.W_h, dc * f), grads, (dh, dc)     # dL/dh_{t-1}, dL/dc_{t-1} through c_t = f c_{t-1} + ...


def lstm_tangent(p, x, state, dp, dstate, deps, act):
    _, (x, h, c, i, f, g, o, c_new) = lstm_step(p, x, state, act)
    (dh, dc), (eps_h, eps_c) = dstate, deps
    H = h.shape[1]
    # dz = dW_x x_t + dW_h h_{t-1} + db_h + W_h dh_{t-1}: the gates' pre-activations
    dz = _times(x, dp["W_x"]) + _times(h, dp["W_h"]) + _bias(dp["b_h"]) + dh @ p.W_h.T
    di = i * (1 - i) * dz[..., :H]                   # sigma' = sigma (1 - sigma)
    df = f * (1 - f) * dz[..., H:2 * H]
    dg = (1 - g ** 2) * dz[..., 2 * H:3 * H]         # tanh' = 1 - tanh^2
    do = o * (1 - o) * dz[..., 3 * H:]
    dc_new = df * c + f * dc + di * g + i * dg + eps_c          # dc_t = df c_{t-1} + f dc_{t-1} + di g + i dg
    tc = np.tanh(c_new)
    dh_new = do * tc + o * (1 - tc ** 2) * dc_new + eps_h       # dh_t = do tanh(c_t) + o tanh'(c_t) dc_t
    return dh_new, dc_new


# ---------------------------------------------------------------------------
# GRU (gates r, z, n; "reset after": r multiplies W_hn h_{t-1} + b_hn)


def gru_step(p, x, state, act):
    (h,) = state
    H = h.shape[1]
    gx = x @ p.W_x.T + p.b_h                         # (B, 3H): W_x x_t + b_h
    gh = h @ p.W_h.T                                 # (B, 3H): W_h h_{t-1}
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:] + p.b_hn                      # W_hn h_{t-1} + b_hn
    n = np.tanh(gx[:, 2 * H:] + r * hn)
    return ((1 - z) * n + z * h,), (x, h, r, z, n, hn)   # h_t = (1 - z) n + z h_{t-1}


def gru_backward(p, cache, dstate, act):
    x, h, r, z, n, hn = cache
    (dh,) = dstate
    dan = dh * (1 - z) * (1 - n ** 2)                # dL/d(pre-activation of n)
    dar = dan * hn * r * (1 - r)                     # through r * (W_hn h + b_hn)
    daz = dh * (h - n) * z * (1 - z)
    dhn = dan * r                                    # dL/d(W_hn h_{t-1} + b_hn)
    dgx = np.concatenate([dar, daz, dan], axis=1)    # dL/d(W_x x_t + b_h)
    dgh = np.concatenate([dar, daz, dhn], axis=1)    # dL/d(W_h h_{t-1})
    grads = {"W_x": dgx.T @ x, "W_h": dgh.T @ h, "b_h": dgx.sum(axis=0), "b_hn": dhn.sum(axis=0)}
    return (dh * z + dgh @ p.W_h,), grads, dstate


def gru_tangent(p, x, state, dp, dstate, deps, act):
    _, (x, h, r, z, n, hn) = gru_step(p, x, state, act)
    (dh,), (eps,) = dstate, deps
    H = h.shape[1]
    dgx = _times(x, dp["W_x"]) + _bias(dp["b_h"])              # d(W_x x_t + b_h)
    dgh = _times(h, dp["W_h"]) + dh @ p.W_h.T                  # d(W_h h_{t-1})
    dr = r * (1 - r) * (dgx[..., :H] + dgh[..., :H])
    dz = z * (1 - z) * (dgx[..., H:2 * H] + dgh[..., H:2 * H])
    dhn = dgh[..., 2 * H:] + _bias(dp["b_hn"])                 # d(W_hn h_{t-1} + b_hn)
    dn = (1 - n ** 2) * (dgx[..., 2 * H:] + dr * hn + r * dhn)
    # h_t = (1 - z) n + z h_{t-1}:  dh_t = (1 - z) dn + z dh_{t-1} + dz (h_{t-1} - n)
    return ((1 - z) * dn + z * dh + dz * (h - n) + eps,)


# ---------------------------------------------------------------------------
# The table

BASE_PARAMS = ("W_x", "W_h", "b_h", "W_y", "b_y")
#: Laws of docs/contract.md section 6 that hold for Elman specs only.
ELMAN_LAWS = ("decay_bound", "orthogonal_law", "growth_law", "truncation_error_bound")


@dataclass(frozen=True)
class Cell:
    name: str
    gates: tuple          # gate blocks stacked along the first axis of W_x, W_h, b_h (PyTorch's order)
    state: tuple          # ("h",) or ("h", "c")
    extra: tuple          # parameters beyond BASE_PARAMS, each of shape (H,)
    activations: tuple    # the activations it accepts
    laws: tuple           # the laws of section 6 that apply to it
    step: Callable        # step(p, x, state, act) -> (state, cache)
    backward: Callable    # backward(p, cache, dstate, act) -> (dstate_prev, grads of the step, dstate total)
    tangent: Callable     # tangent(p, x, state, dp, dstate, deps, act) -> dstate_t (forward mode, for RTRL)
    l2: tuple = ("W_x", "W_h", "W_y")   # the weights the l2 term covers (never a bias)
    #: The gate that carries the gradient back one step when W_h = 0 (the exact laws of
    #: section 6): the LSTM's forget gate (dL/dc_{t-1} = dL/dc_t f_t), the GRU's update gate
    #: (dL/dh_{t-1} = dL/dh_t z_t); None for the Elman cell.
    carousel_gate: Optional[str] = None

    @property
    def G(self) -> int:
        return len(self.gates)

    @property
    def params(self) -> tuple:
        """Its parameter names, in RNNParams order."""
        return BASE_PARAMS + self.extra

    @property
    def recurrent_params(self) -> tuple:
        """The parameters its backward step gives gradients of (the rest are the output layer's)."""
        return ("W_x", "W_h", "b_h") + self.extra

    def shapes(self, D, H, O) -> dict:
        """name -> (shape, labels of the shape for messages)."""
        G = self.G
        g = f"{G}H" if G > 1 else "H"
        out = {"W_x": ((G * H, D), (g, "D")), "W_h": ((G * H, H), (g, "H")), "b_h": ((G * H,), (g,)),
               "W_y": ((O, H), ("O", "H")), "b_y": ((O,), ("O",))}
        out.update({n: ((H,), ("H",)) for n in self.extra})
        return out

    def block(self, name, H):
        """The rows of gate ``name`` in a gate-stacked array."""
        k = self.gates.index(name)
        return slice(k * H, (k + 1) * H)


CELLS = {c.name: c for c in [
    Cell("elman", gates=("a",), state=("h",), extra=(), activations=("tanh", "sigmoid", "relu", "identity"),
         laws=ELMAN_LAWS, step=elman_step, backward=elman_backward, tangent=elman_tangent),
    Cell("lstm", gates=("i", "f", "g", "o"), state=("h", "c"), extra=(), activations=("tanh",),
         laws=("lstm_carousel",), step=lstm_step, backward=lstm_backward, tangent=lstm_tangent,
         carousel_gate="f"),
    Cell("gru", gates=("r", "z", "n"), state=("h",), extra=("b_hn",), activations=("tanh",),
         laws=("gru_carousel",), step=gru_step, backward=gru_backward, tangent=gru_tangent,
         carousel_gate="z"),
]}
CELL_NAMES = tuple(CELLS)
