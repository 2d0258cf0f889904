"""An example third-party BPTT backend, written from scratch in plain NumPy.

This file is an example to copy when you write your own RNN kernel: it shows the
whole backend contract (docs/contract.md) in one short class, using only the public
adapter API ``implementations.adapter``. It is not one of the built-in backends.

Check it from the repository root with

    bptt-suite check --backend examples.my_backend:MyBackend

(or from anywhere with ``PYTHONPATH=examples`` and ``--backend my_backend:MyBackend``).

To give it a name of its own, register it in your package's pyproject.toml:

    [project.entry-points."bptt_suite.backends"]
    my-numpy = "my_package.my_backend:MyBackend"

after which ``get_backend("my-numpy", dtype="float32")`` and
``bptt-suite check --backend my-numpy`` find it. ``get_backend`` calls the class
with ``dtype=...`` because its constructor takes that argument.

What the adapter API does for it:

- ``validate_forward`` / ``validate_bptt`` check every shape, value and name and raise
  the errors of the contract (section 4); they return a ``Case`` of writable float64
  copies, the sizes T, B, D, H, O, and ``truncation`` set to None when it cuts
  nothing (h >= T);
- ``blocks(T, truncation)`` gives the blocks of BPTT(h; h') (section 2);
- ``check_finite`` raises the FloatingPointError naming the first non-finite step;
- ``unsupported(feature)`` is the NotImplementedError by which a backend declares what
  it does not implement (here: the gated cells), so that the checker draws other cases.
"""
import numpy as np

from implementations.adapter import (blocks, check_finite, overflow_error, scored_steps, unsupported, validate_bptt,
                                     validate_forward)
from reference.types import BPTTResult, ForwardResult, RNNParams


def _sigmoid(a):
    """1 / (1 + e^-a) without overflow and with its small tail: e^a / (1 + e^a) for a < 0
    (sigmoid(-20) = 2.1e-9 is representable in float32; (1 + tanh(a/2)) / 2 rounds it to 0)."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_prime(a):
    """sigmoid'(a) = e^-|a| / (1 + e^-|a|)^2, accurate in both tails (s (1 - s) loses
    1 - s to rounding where s is near 1)."""
    e = np.exp(-np.abs(a))
    return e / (1 + e) ** 2


# f(a) and f'(a) of each activation; relu'(0) = 0.
ACTIVATIONS = {
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    "sigmoid": (_sigmoid, _sigmoid_prime),
    "relu": (lambda a: np.maximum(a, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda a: a, np.ones_like),
}


class MyBackend:
    """Vanilla (Elman) RNN BPTT, time-major, in NumPy, computing in ``dtype``."""

    name = "my-numpy"

    def __init__(self, dtype="float64"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = dtype

    # -- forward ------------------------------------------------------------
    def _run(self, case):
        """Pre-activations (T, B, H), states (T+1, B, H) with [0] = h0, outputs (T, B, O)."""
        if case.spec.cell != "elman":
            raise unsupported(f"cell {case.spec.cell!r}")      # LSTM and GRU are not implemented here
        dt = np.dtype(self.dtype)
        p = {n: w.astype(dt) for n, w in case.params.as_dict().items()}
        f, _ = ACTIVATIONS[case.spec.activation]
        T = case.T
        as_ = np.empty((T, case.B, case.H), dt)
        hs = np.empty((T + 1, case.B, case.H), dt)
        ys = np.empty((T, case.B, case.O), dt)
        hs[0] = case.h0
        xs = case.xs.astype(dt)
        for t in range(1, T + 1):
            as_[t - 1] = xs[t - 1] @ p["W_x"].T + hs[t - 1] @ p["W_h"].T + p["b_h"]
            hs[t] = f(as_[t - 1])
            ys[t - 1] = hs[t] @ p["W_y"].T + p["b_y"]
        # the first step whose state or output is not finite (the checks run once, after the loop)
        check_finite("forward pass", np.concatenate([hs[1:], ys], axis=2), T)
        return p, as_, hs, ys

    def forward(self, spec, params, xs, h0=None, c0=None):
        case = validate_forward(spec, params, xs, h0, c0)
        with np.errstate(all="ignore"):
            _, _, hs, ys = self._run(case)
        return ForwardResult(hs=hs[1:].astype(np.float64), ys=ys.astype(np.float64))

    # -- loss ---------------------------------------------------------------
    def _dloss(self, case, ys):
        """L without the l2 term, and dL/dy_t (zero at unscored steps)."""
        T, B = case.T, case.B
        dys = np.zeros_like(ys)
        terms = np.zeros((T, B))                            # l_t per row, for the overflow check
        for t in scored_steps(case.spec, T):
            y, d = ys[t - 1], case.targets[t - 1]
            if case.spec.output == "linear":                 # l = 1/2 ||y - d||^2
                diff = y - d.astype(y.dtype)
                terms[t - 1] = 0.5 * (diff.astype(np.float64) ** 2).sum(axis=1)
                dys[t - 1] = diff / B
            else:                                           # l = -log softmax(y)[d]
                z = y - y.max(axis=1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                terms[t - 1] = -logp[np.arange(B), d].astype(np.float64)
                g = np.exp(logp)
                g[np.arange(B), d] -= 1
                dys[t - 1] = g / B
        check_finite("loss", np.concatenate([terms[..., None], dys.astype(np.float64)], axis=2), T)
        return float(terms.sum()) / B, dys

    # -- BPTT ---------------------------------------------------------------
    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
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

        # BPTT(h; h'): block (first, e, s) scores steps first..e and backpropagates them
        # through h_e .. h_s; h_{s-1} is a constant. Full BPTT is the one block (1, T, 1).
        dh0 = np.zeros((B, H), as_.dtype)
        full = case.truncation is None
        dhs = np.zeros((T, B, H), as_.dtype) if full else None
        bad_step = None                                  # the first step, in computation order, gone non-finite
        for first, e, s in blocks(T, case.truncation):
            carry = np.zeros((B, H), as_.dtype)          # dL/dh_t arriving from step t+1
            for t in range(e, s - 1, -1):
                dh = carry + (direct[t - 1] if t >= first else 0)
                if full:
                    dhs[t - 1] = dh
                da = dh * fprime(as_[t - 1])
                g["W_x"] += da.T @ case.xs[t - 1].astype(da.dtype)
                g["W_h"] += da.T @ hs[t - 1]
                g["b_h"] += da.sum(axis=0)
                carry = da @ p["W_h"]
                if bad_step is None and not (np.isfinite(carry).all() and np.isfinite(da).all()):
                    bad_step = t
            if s == 1:
                dh0 += carry
        if bad_step is not None:
            raise overflow_error("backward pass", bad_step, T)

        l2 = case.spec.l2
        for n in ("W_x", "W_h", "W_y"):
            g[n] = g[n] + l2 * p[n]
            loss += l2 / 2 * float((p[n].astype(np.float64) ** 2).sum())
        grads = RNNParams(**{n: w.astype(np.float64) for n, w in g.items()})
        if not (np.isfinite(loss) and all(np.isfinite(w).all() for w in grads.as_dict().values())):
            raise FloatingPointError("overflow in the sum of the gradients over the steps (or of the l2 term)")
        return BPTTResult(loss=float(loss), grads=grads, dh0=dh0.astype(np.float64),
                          dhs=None if dhs is None else dhs.astype(np.float64))
