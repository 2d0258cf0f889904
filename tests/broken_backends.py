"""Deliberately broken backends: each is a real backend with one realistic bug.

They show that the property suite has power: ``tests/test_broken_backends.py``
checks that ``check_backend(..., profile="ci")`` flags every one of them. Each is a
class taking ``dtype=`` like the built-ins, so it can also be named on the command
line: ``bptt-suite check --backend tests.broken_backends:DroppedBiasGrad``.

Most wrap the reference (every cell, float64) and change its answer; the gated ones
are the bugs LSTM and GRU kernels really have, computed for real: the reference with a
modified cell row (``reference.cells.Cell``: a step or backward step with the bug), a
permutation of the gate blocks, or a truncated backward loop with the bug.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from implementations.backends import NumpyBackend, ReferenceBackend
from implementations.ops import NumpyOps
from reference.bptt import blocks, loss_terms, run_forward, stack_states
from reference.cells import ACTIVATION, CELLS, lstm_backward, lstm_step, sigmoid
from reference.types import BPTTResult, ForwardResult, RNNParams, Truncation
from reference.validation import Case


class _Wrapped:
    """A correct backend (the reference, float64) whose results pass through ``fix``."""

    def __init__(self, dtype="float64"):
        from implementations import get_backend

        self.inner = get_backend("reference", dtype=dtype)
        self.dtype = dtype
        self.name = f"broken:{type(self).__name__}"

    def forward(self, spec, params, xs, h0=None, c0=None):
        return self.fix_forward(self.call_forward(spec, params, xs, h0, c0), spec, params, xs)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        res = self.call_bptt(spec, params, xs, targets, h0, truncation, c0)
        return self.fix(res, spec, params, np.asarray(xs), truncation)

    def call_forward(self, spec, params, xs, h0, c0):
        return self.inner.forward(spec, params, xs, h0=h0, c0=c0)

    def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
        return self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation, c0=c0)

    def fix_forward(self, res, spec, params, xs):
        return res

    def fix(self, res, spec, params, xs, truncation):
        return res


def _grads(res, **changes):
    return replace(res, grads=replace(res.grads, **changes))


class ScaledGrad(_Wrapped):
    """dL/dW_x is 1e-4 times too small."""

    def fix(self, res, spec, params, xs, truncation):
        return _grads(res, W_x=res.grads.W_x * 1e-4)


class DroppedBiasGrad(_Wrapped):
    """dL/db_h is never accumulated (zeros)."""

    def fix(self, res, spec, params, xs, truncation):
        return _grads(res, b_h=np.zeros_like(res.grads.b_h))


class SumOverBatch(_Wrapped):
    """The loss terms are summed over the batch instead of averaged."""

    def fix(self, res, spec, params, xs, truncation):
        B = xs.shape[1]
        reg = CELLS[spec.cell].l2
        l2 = spec.l2 * sum(float((np.asarray(getattr(params, n)) ** 2).sum()) for n in reg) / 2
        grads = {n: (g - spec.l2 * np.asarray(getattr(params, n))) * B + spec.l2 * np.asarray(getattr(params, n))
                 if n in reg else g * B for n, g in res.grads.as_dict().items()}
        times = (lambda a: None if a is None else a * B)
        return BPTTResult(loss=(res.loss - l2) * B + l2, grads=RNNParams(**grads), dh0=res.dh0 * B,
                          dhs=times(res.dhs), dc0=times(res.dc0), dcs=times(res.dcs))


class TruncationOffByOne(_Wrapped):
    """BPTT(h; h') backpropagates h + 1 steps instead of h (s_k = e_k - h)."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
        if truncation is not None:
            truncation = Truncation(truncation.h + 1, truncation.h_prime)
        return super().call_bptt(spec, params, xs, targets, h0, truncation, c0)


class HPrimeIgnored(_Wrapped):
    """BPTT(h; h') computed as BPTT(h; h): h' is ignored."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
        if truncation is not None:
            truncation = Truncation(truncation.h)
        return super().call_bptt(spec, params, xs, targets, h0, truncation, c0)


class DroppedDh0(_Wrapped):
    """dL/dh0 is returned as zeros."""

    def fix(self, res, spec, params, xs, truncation):
        return replace(res, dh0=np.zeros_like(res.dh0))


class LongSequenceBug(_Wrapped):
    """For T > 10 the parameter gradients silently stop 10 steps back (a chunk that
    is never revisited), while dhs and dh0 are right."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
        res = super().call_bptt(spec, params, xs, targets, h0, truncation, c0)
        T = np.shape(xs)[0]
        if T > 10 and truncation is None:
            cut = super().call_bptt(spec, params, xs, targets, h0, Truncation(10, 1), c0)
            res = replace(res, grads=replace(cut.grads, W_y=res.grads.W_y, b_y=res.grads.b_y))
        return res


class WideLayerBug(_Wrapped):
    """For H > 12 dL/dW_h comes back transposed in its first H x H block (a blocked
    kernel's layout slip)."""

    def fix(self, res, spec, params, xs, truncation):
        g = res.grads.W_h
        H = g.shape[1]
        if H > 12:
            g = g.copy()
            g[:H] = g[:H].T
            return _grads(res, W_h=g)
        return res


class _ElmanNumpy(NumpyBackend):
    """The numpy backend; a cell its engine does not have yet runs on the reference."""

    def _forward(self, case):
        try:
            return super()._forward(case)
        except NotImplementedError:
            return ReferenceBackend._forward(self, case)

    def _bptt(self, case, checked=False):
        try:
            return super()._bptt(case, checked)
        except NotImplementedError:
            return ReferenceBackend._bptt(self, case, checked)


class _LeakyReluOps(NumpyOps):
    def activation_derivative(self, name):
        if name != "relu":
            return super().activation_derivative(name)

        def leaky_derivative(h, out):  # f'(a) = 1 if a > 0 else 0.01: the forward pass is plain relu
            np.copyto(out, np.where(h > 0, 1.0, 0.01))
        return leaky_derivative


class ReluOnlyBug(_ElmanNumpy):
    """relu's backward uses a leaky slope 0.01 for negative pre-activations."""

    name = "broken:ReluOnlyBug"

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        self.ops = _LeakyReluOps(self.dtype)


class SoftmaxOnlyBug(_Wrapped):
    """For output="softmax" the output-layer gradients are not divided by the batch."""

    def fix(self, res, spec, params, xs, truncation):
        if spec.output != "softmax":
            return res
        B = xs.shape[1]
        return _grads(res, W_y=(res.grads.W_y - spec.l2 * np.asarray(params.W_y)) * B
                      + spec.l2 * np.asarray(params.W_y), b_y=res.grads.b_y * B)


class Float32Claims64(_ElmanNumpy):
    """Computes in float32 but says float64."""

    name = "broken:Float32Claims64"

    def __init__(self, dtype="float64"):
        super().__init__("float32")
        self.dtype = "float64"


class ShiftedDhs(_Wrapped):
    """dhs is off by one step: dhs[t] holds dL/dh_{t+1} (and the last step is zero)."""

    def fix(self, res, spec, params, xs, truncation):
        if res.dhs is None:
            return res
        dhs = np.zeros_like(res.dhs)
        dhs[:-1] = res.dhs[1:]
        return replace(res, dhs=dhs)


class ShiftedForward(_Wrapped):
    """forward returns h_0 .. h_{T-1} (and the outputs of those) instead of h_1 .. h_T."""

    def fix_forward(self, res, spec, params, xs):
        h0 = np.zeros_like(res.hs[:1])
        hs = np.concatenate([h0, res.hs[:-1]])
        ys = hs @ np.asarray(params.W_y, dtype=np.float64).T + np.asarray(params.b_y, dtype=np.float64)
        return ForwardResult(hs=hs, ys=ys, cs=res.cs)


# ---------------------------------------------------------------------------
# Gated cells: the bugs LSTM and GRU kernels get wrong


class LSTMGateOrderSwapped(_Wrapped):
    """The LSTM kernel reads the gate blocks as f, i, g, o instead of PyTorch's i, f, g, o
    (weights loaded from torch.nn.LSTM then mean something else), consistently forwards
    and backwards."""

    @staticmethod
    def _swap(a, H):
        a = np.asarray(a, dtype=np.float64)
        return np.concatenate([a[H:2 * H], a[:H], a[2 * H:]])

    def _params(self, spec, params):
        if spec.cell != "lstm":
            return params
        H = np.shape(params.W_h)[1]
        return replace(params, **{n: self._swap(getattr(params, n), H) for n in ("W_x", "W_h", "b_h")})

    def call_forward(self, spec, params, xs, h0, c0):
        return super().call_forward(spec, self._params(spec, params), xs, h0, c0)

    def call_bptt(self, spec, params, xs, targets, h0, truncation, c0):
        res = super().call_bptt(spec, self._params(spec, params), xs, targets, h0, truncation, c0)
        if spec.cell != "lstm":
            return res
        H = res.dh0.shape[1]
        return _grads(res, **{n: self._swap(getattr(res.grads, n), H) for n in ("W_x", "W_h", "b_h")})


@dataclass(frozen=True)
class _RowCase(Case):
    """A validated case whose cell row is ``row`` instead of the table's."""

    row: Any = None

    @property
    def cell(self):
        return self.row


class _ModifiedRow(ReferenceBackend):
    """The reference computing one cell with a modified row (``modify(row)``): a
    kernel with the bug in its step or backward step."""

    broken_cell = "lstm"

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        self.name = f"broken:{type(self).__name__}"

    def modify(self, row):
        raise NotImplementedError

    def _case(self, case):
        if case.spec.cell != self.broken_cell:
            return case
        return _RowCase(**{f.name: getattr(case, f.name) for f in fields(Case)}, row=self.modify(CELLS[self.broken_cell]))

    def _forward(self, case):
        return super()._forward(self._case(case))

    def _bptt(self, case, checked=False):
        return super()._bptt(self._case(case), checked)


def _cho_gru_step(p, x, state, act):
    (h,) = state
    H = h.shape[1]
    gx = x @ p.W_x.T + p.b_h
    r = sigmoid(gx[:, :H] + h @ p.W_h[:H].T)
    z = sigmoid(gx[:, H:2 * H] + h @ p.W_h[H:2 * H].T)
    rh = r * h                                       # Cho et al.: r applied to h_{t-1} before W_hn
    n = np.tanh(gx[:, 2 * H:] + rh @ p.W_h[2 * H:].T + p.b_hn)
    return ((1 - z) * n + z * h,), (x, h, r, z, n, rh)


def _cho_gru_backward(p, cache, dstate, act):
    """The exact derivative of Cho's GRU: the gradient is right for the wrong function."""
    x, h, r, z, n, rh = cache
    (dh,) = dstate
    H = h.shape[1]
    dan = dh * (1 - z) * (1 - n ** 2)
    drh = dan @ p.W_h[2 * H:]
    dar = drh * h * r * (1 - r)
    daz = dh * (h - n) * z * (1 - z)
    grads = {"W_x": np.concatenate([dar, daz, dan], axis=1).T @ x,
             "W_h": np.concatenate([dar.T @ h, daz.T @ h, dan.T @ rh]),
             "b_h": np.concatenate([dar, daz, dan], axis=1).sum(axis=0), "b_hn": dan.sum(axis=0)}
    dprev = dh * z + drh * r + dar @ p.W_h[:H] + daz @ p.W_h[H:2 * H]
    return (dprev,), grads, dstate


class GRUResetBeforeMatmul(_ModifiedRow):
    """The GRU applies the reset gate to h_{t-1} before W_hn (Cho et al.'s original,
    n = tanh(W_xn x + b_n + W_hn (r * h) + b_hn)) instead of PyTorch's and cuDNN's
    "reset after" n = tanh(W_xn x + b_n + r * (W_hn h + b_hn))."""

    broken_cell = "gru"

    def modify(self, row):
        return replace(row, step=_cho_gru_step, backward=_cho_gru_backward)


def _lstm_backward_no_tanh_prime(p, cache, dstate, act):
    x, h, c, i, f, g, o, c_new = cache
    dh, dc_next = dstate
    tc = np.tanh(c_new)
    dc = dc_next + dh * o                            # the bug: the factor 1 - tanh(c_t)^2 is missing
    di, df, dg, do = dc * g, dc * c, dc * i, dh * tc
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    grads = {"W_x": dz.T @ x, "W_h": dz.T @ h, "b_h": dz.sum(axis=0)}
    return (dz @ p.W_h, dc * f), grads, (dh, dc)


class LSTMMissingTanhPrime(_ModifiedRow):
    """The LSTM backward step takes dL/dc_t += dL/dh_t o_t, forgetting tanh'(c_t)."""

    def modify(self, row):
        return replace(row, backward=_lstm_backward_no_tanh_prime)


def _lstm_step_wrong_h(p, x, state, act):
    (h_new, c_new), cache = lstm_step(p, x, state, act)
    return (h_new, c_new), (cache[0], h_new) + cache[2:]   # the backward step sees h_t where h_{t-1} belongs


class LSTMWhGradWrongStep(_ModifiedRow):
    """dL/dW_h of the LSTM accumulates dz_t^T h_t instead of dz_t^T h_{t-1} (the
    recurrent weight gradient taken from the wrong step)."""

    def modify(self, row):
        return replace(row, step=_lstm_step_wrong_h, backward=lstm_backward)


def _flushed_sigmoid_step(p, x, state, act):
    (h,) = state
    a = x @ p.W_x.T + h @ p.W_h.T + p.b_h
    h_new = CELLS["elman"].step(p, x, state, act)[0][0]
    if act == "sigmoid":   # (1 + tanh(a/2)) / 2 in float32: 0 once tanh(a/2) rounds to -1
        h_new = np.where(h_new < 2.0 ** -24, 0.0, h_new)
    return (h_new,), (x, h, a, h_new)


def _flushed_sigmoid_backward(p, cache, dstate, act):
    x, h, a, h_new = cache
    (dh,) = dstate
    fprime = h_new * (1 - h_new) if act == "sigmoid" else ACTIVATION[act].fprime(a)   # f' from the flushed h
    da = dh * fprime
    return (da @ p.W_h,), {"W_x": da.T @ x, "W_h": da.T @ h, "b_h": da.sum(axis=0)}, dstate


class SigmoidTailFlushed(_ModifiedRow):
    """A float32 kernel whose sigmoid is (1 + tanh(a/2)) / 2: exactly 0 below float32's
    unit roundoff (a < -17), where the true value (2e-9 at a = -20) is representable."""

    broken_cell = "elman"
    dtypes = ("float32",)

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def modify(self, row):
        return replace(row, step=_flushed_sigmoid_step, backward=_flushed_sigmoid_backward)


class DroppedDc0(_Wrapped):
    """dL/dc0 of the LSTM is returned as zeros."""

    def fix(self, res, spec, params, xs, truncation):
        return res if res.dc0 is None else replace(res, dc0=np.zeros_like(res.dc0))


class DroppedBhnGrad(_Wrapped):
    """dL/db_hn of the GRU is returned as zeros."""

    def fix(self, res, spec, params, xs, truncation):
        return res if res.grads.b_hn is None else _grads(res, b_hn=np.zeros_like(res.grads.b_hn))


class CNotDetached(ReferenceBackend):
    """Truncated BPTT of the LSTM detaches h_{s-1} at a block start but not c_{s-1}
    (``h = h.detach()`` without ``c = c.detach()``): the block's gradient keeps flowing
    through the cell state into every earlier step, and reaches dh0 and dc0."""

    name = "broken:CNotDetached"

    def _bptt(self, case, checked=False):
        if case.truncation is None or case.spec.cell != "lstm":
            return super()._bptt(case, checked)
        p, cell, T, B, H = case.params, case.cell, case.T, case.B, case.H
        states, caches, ys = run_forward(case)
        loss, dys = loss_terms(case, ys)
        hs = stack_states(states, 0)
        grads = {n: np.zeros_like(getattr(p, n)) for n in cell.params}
        grads["W_y"], grads["b_y"] = np.einsum("tbo,tbh->oh", dys, hs), dys.sum(axis=(0, 1))
        d0 = [np.zeros((B, H)), np.zeros((B, H))]
        for first, e, s in blocks(T, case.truncation):
            dnext = (np.zeros((B, H)), np.zeros((B, H)))
            for t in range(e, 0, -1):
                if t == s - 1:
                    dnext = (np.zeros((B, H)), dnext[1])   # h_{s-1} detached, c_{s-1} not: the bug
                dh = dnext[0] + (dys[t - 1] @ p.W_y if first <= t <= e else 0.0)
                dnext, g, _ = cell.backward(p, caches[t - 1], (dh,) + dnext[1:], case.spec.activation)
                for n, v in g.items():
                    grads[n] += v
            d0 = [d0[k] + dnext[k] for k in range(2)]     # every block reaches (h0, c0) through c
        for n in cell.l2:
            grads[n] = grads[n] + case.spec.l2 * getattr(p, n)
        return loss, RNNParams(**grads), d0[0], None, d0[1], None


#: name -> class; every one must be flagged by the ci profile.
BROKEN = {cls.__name__: cls for cls in [
    ScaledGrad, DroppedBiasGrad, SumOverBatch, TruncationOffByOne, HPrimeIgnored, DroppedDh0, LongSequenceBug,
    WideLayerBug, ReluOnlyBug, SoftmaxOnlyBug, Float32Claims64, ShiftedDhs, ShiftedForward,
    LSTMGateOrderSwapped, GRUResetBeforeMatmul, LSTMMissingTanhPrime, CNotDetached, DroppedDc0, DroppedBhnGrad,
    LSTMWhGradWrongStep, SigmoidTailFlushed,
]}
#: The broken backends whose bug is in a gated cell (an Elman-only check cannot flag them).
GATED = ("LSTMGateOrderSwapped", "GRUResetBeforeMatmul", "LSTMMissingTanhPrime", "CNotDetached", "DroppedDc0",
         "DroppedBhnGrad", "LSTMWhGradWrongStep")
