"""Deliberately broken backends: each is a real backend with one realistic bug.

They show that the property suite has power: ``tests/test_broken_backends.py``
checks that ``check_backend(..., profile="ci")`` flags every one of them. Each is a
class taking ``dtype=`` like the built-ins, so it can also be named on the command
line: ``bptt-suite check --backend tests.broken_backends:DroppedBiasGrad``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from implementations.backends import NumpyBackend
from implementations.ops import NumpyOps
from reference.types import BPTTResult, ForwardResult, RNNParams, Truncation


class _Wrapped:
    """A correct backend (numpy, float64) whose results pass through ``fix``."""

    def __init__(self, dtype="float64"):
        from implementations import get_backend

        self.inner = get_backend("numpy", dtype=dtype)
        self.dtype = dtype
        self.name = f"broken:{type(self).__name__}"

    def forward(self, spec, params, xs, h0=None):
        return self.fix_forward(self.inner.forward(spec, params, xs, h0), spec, params, xs)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None):
        res = self.call_bptt(spec, params, xs, targets, h0, truncation)
        return self.fix(res, spec, params, np.asarray(xs), truncation)

    def call_bptt(self, spec, params, xs, targets, h0, truncation):
        return self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation)

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
        l2 = spec.l2 * sum(float((np.asarray(getattr(params, n)) ** 2).sum()) for n in ("W_x", "W_h", "W_y")) / 2
        grads = {n: (g - spec.l2 * np.asarray(getattr(params, n))) * B + spec.l2 * np.asarray(getattr(params, n))
                 if n in ("W_x", "W_h", "W_y") else g * B for n, g in res.grads.as_dict().items()}
        return BPTTResult(loss=(res.loss - l2) * B + l2, grads=RNNParams(**grads), dh0=res.dh0 * B,
                          dhs=None if res.dhs is None else res.dhs * B)


class TruncationOffByOne(_Wrapped):
    """BPTT(h; h') backpropagates h + 1 steps instead of h (s_k = e_k - h)."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation):
        if truncation is not None:
            truncation = Truncation(truncation.h + 1, truncation.h_prime)
        return self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation)


class HPrimeIgnored(_Wrapped):
    """BPTT(h; h') computed as BPTT(h; h): h' is ignored."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation):
        if truncation is not None:
            truncation = Truncation(truncation.h)
        return self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation)


class DroppedDh0(_Wrapped):
    """dL/dh0 is returned as zeros."""

    def fix(self, res, spec, params, xs, truncation):
        return replace(res, dh0=np.zeros_like(res.dh0))


class LongSequenceBug(_Wrapped):
    """For T > 10 the parameter gradients silently stop 10 steps back (a chunk that
    is never revisited), while dhs and dh0 are right."""

    def call_bptt(self, spec, params, xs, targets, h0, truncation):
        res = self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=truncation)
        T = np.shape(xs)[0]
        if T > 10 and truncation is None:
            cut = self.inner.bptt(spec, params, xs, targets, h0=h0, truncation=Truncation(10, 1))
            res = replace(res, grads=replace(cut.grads, W_y=res.grads.W_y, b_y=res.grads.b_y))
        return res


class WideLayerBug(_Wrapped):
    """For H > 12 dL/dW_h comes back transposed (a blocked kernel's layout slip)."""

    def fix(self, res, spec, params, xs, truncation):
        if res.grads.W_h.shape[0] > 12:
            return _grads(res, W_h=res.grads.W_h.T.copy())
        return res


class _LeakyReluOps(NumpyOps):
    def activation_derivative(self, name):
        if name != "relu":
            return super().activation_derivative(name)

        def leaky_derivative(h, out):  # f'(a) = 1 if a > 0 else 0.01: the forward pass is plain relu
            np.copyto(out, np.where(h > 0, 1.0, 0.01))
        return leaky_derivative


class ReluOnlyBug(NumpyBackend):
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


class Float32Claims64(NumpyBackend):
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
        return ForwardResult(hs=hs, ys=ys)


#: name -> class; every one must be flagged by the ci profile.
BROKEN = {cls.__name__: cls for cls in [
    ScaledGrad, DroppedBiasGrad, SumOverBatch, TruncationOffByOne, HPrimeIgnored, DroppedDh0, LongSequenceBug,
    WideLayerBug, ReluOnlyBug, SoftmaxOnlyBug, Float32Claims64, ShiftedDhs, ShiftedForward,
]}
