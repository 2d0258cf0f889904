"""An example third-party BPTT backend, written from scratch in plain NumPy.

This file is an example to copy when you write your own RNN kernel: it shows the
whole backend contract in one short class. It is not one of the built-in backends.

Check it from the repository root with

    bptt-suite check --backend examples.my_backend:MyBackend

(or from anywhere with ``PYTHONPATH=examples`` and ``--backend my_backend:MyBackend``).

To give it a name of its own, register it in your package's pyproject.toml:

    [project.entry-points."bptt_suite.backends"]
    my-numpy = "my_package.my_backend:MyBackend"

after which ``get_backend("my-numpy", dtype="float32")`` and
``bptt-suite check --backend my-numpy`` find it. ``get_backend`` calls the class
with ``dtype=...`` because its constructor takes that argument.

Input checking is not repeated here: ``validate_forward`` / ``validate_bptt`` of
``reference.validation`` check every shape, value and name and raise the errors of
the contract; they return a ``Case`` with read-only float64 arrays, the sizes
T, B, D, H, O, and ``truncation`` set to None when it cuts nothing (h >= T).
That is the recommended way for any backend.
"""
import numpy as np

from reference.types import BPTTResult, ForwardResult, RNNParams
from reference.validation import validate_bptt, validate_forward

# f(a) and f'(a) of each activation; relu'(0) = 0.
ACTIVATIONS = {
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    # sigmoid(a) = (1 + tanh(a/2)) / 2 and sigmoid' = s (1 - s): no exp(-a) to overflow
    "sigmoid": (lambda a: 0.5 * (1 + np.tanh(0.5 * a)),
                lambda a: 0.25 * (1 - np.tanh(0.5 * a) ** 2)),
    "relu": (lambda a: np.maximum(a, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda a: a, np.ones_like),
}


def _overflow(where, t, T):
    return FloatingPointError(f"overflow in the {where}: a non-finite value first appeared "
                              f"at time step t={t} (of T={T})")


class MyBackend:
    """Vanilla RNN BPTT, time-major, in NumPy, computing in ``dtype``."""

    name = "my-numpy"

    def __init__(self, dtype="float64"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = dtype

    # -- forward ------------------------------------------------------------
    def _run(self, case):
        """Pre-activations as (T, B, H), states (T+1, B, H) with [0] = h0, outputs (T, B, O)."""
        dt = np.dtype(self.dtype)
        p = {n: w.astype(dt) for n, w in case.params.as_dict().items()}
        f, _ = ACTIVATIONS[case.spec.activation]
        T = case.T
        as_ = np.empty((T, case.B, case.H), dt)
        hs = np.empty((T + 1, case.B, case.H), dt)
        hs[0] = case.h0
        xs = case.xs.astype(dt)
        for t in range(1, T + 1):
            as_[t - 1] = xs[t - 1] @ p["W_x"].T + hs[t - 1] @ p["W_h"].T + p["b_h"]
            hs[t] = f(as_[t - 1])
            if not np.isfinite(hs[t]).all():
                raise _overflow("forward pass", t, T)
        ys = hs[1:] @ p["W_y"].T + p["b_y"]
        bad = ~np.isfinite(ys).reshape(T, -1).all(axis=1)
        if bad.any():
            raise _overflow("output layer", int(np.argmax(bad)) + 1, T)
        return p, as_, hs, ys

    def forward(self, spec, params, xs, h0=None):
        case = validate_forward(spec, params, xs, h0)
        with np.errstate(all="ignore"):
            _, _, hs, ys = self._run(case)
        return ForwardResult(hs=hs[1:].astype(np.float64), ys=ys.astype(np.float64))

    # -- loss ---------------------------------------------------------------
    def _dloss(self, case, ys):
        """L without the l2 term, and dL/dy_t (zero at unscored steps)."""
        T, B = case.T, case.B
        steps = range(T) if case.spec.targets == "every" else [T - 1]
        dys = np.zeros_like(ys)
        loss = 0.0
        for i in steps:
            y, d = ys[i], case.targets[i]
            if case.spec.output == "linear":                 # l = 1/2 ||y - d||^2
                diff = y - d.astype(y.dtype)
                loss += 0.5 * float((diff.astype(np.float64) ** 2).sum())
                dys[i] = diff / B
            else:                                           # l = -log softmax(y)[d]
                z = y - y.max(axis=1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                loss -= float(logp[np.arange(B), d].astype(np.float64).sum())
                g = np.exp(logp)
                g[np.arange(B), d] -= 1
                dys[i] = g / B
        return loss / B, dys

    # -- BPTT ---------------------------------------------------------------
    def bptt(self, spec, params, xs, targets, h0=None, truncation=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation)
        with np.errstate(all="ignore"):
            return self._bptt(case)

    def _bptt(self, case):
        T, B, H = case.T, case.B, case.H
        p, as_, hs, ys = self._run(case)
        _, fprime = ACTIVATIONS[case.spec.activation]
        loss, dys = self._dloss(case, ys)
        direct = dys @ p["W_y"]                          # dl_t/dh_t / B, (T, B, H)
        g = {n: np.zeros_like(w) for n, w in p.items()}
        g["W_y"] = np.einsum("tbo,tbh->oh", dys, hs[1:])
        g["b_y"] = dys.sum(axis=(0, 1))

        # BPTT(h; h'): blocks of h' scored steps, each backpropagated h steps.
        # Full BPTT is one block covering every step.
        tr = case.truncation
        h, hp = (T, T) if tr is None else (tr.h, tr.h_prime)
        dh0 = np.zeros((B, H), as_.dtype)
        dhs = np.zeros((T, B, H), as_.dtype) if tr is None else None
        for first in range(1, T + 1, hp):
            last = min(first + hp - 1, T)                # scored steps first..last
            stop = max(1, last - h + 1)                  # h_{stop-1} is a constant
            carry = np.zeros((B, H), as_.dtype)          # dL/dh_t arriving from step t+1
            for t in range(last, stop - 1, -1):
                dh = carry + (direct[t - 1] if t >= first else 0)
                if dhs is not None:
                    dhs[t - 1] = dh
                da = dh * fprime(as_[t - 1])
                g["W_x"] += da.T @ case.xs[t - 1].astype(da.dtype)
                g["W_h"] += da.T @ hs[t - 1]
                g["b_h"] += da.sum(axis=0)
                carry = da @ p["W_h"]
                if not (np.isfinite(carry).all() and np.isfinite(g["W_h"]).all() and np.isfinite(g["W_x"]).all()):
                    raise _overflow("backward pass", t, T)
            if stop == 1:
                dh0 += carry

        l2 = case.spec.l2
        for n in ("W_x", "W_h", "W_y"):
            g[n] = g[n] + l2 * p[n]
            loss += l2 / 2 * float((p[n].astype(np.float64) ** 2).sum())
        if not np.isfinite(loss):
            raise FloatingPointError("overflow in the loss")
        return BPTTResult(loss=float(loss),
                          grads=RNNParams(**{n: w.astype(np.float64) for n, w in g.items()}),
                          dh0=dh0.astype(np.float64),
                          dhs=None if dhs is None else dhs.astype(np.float64))
