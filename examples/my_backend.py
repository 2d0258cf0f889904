"""An example third-party backend: copy it as the start of your own.

A backend is any object with string attributes ``name`` and ``dtype`` and the two
methods below; it returns numpy float64 whatever it computes in. Check it with

    bptt-suite check --backend examples.my_backend:MyBackend      # from the repo root

or register it from your own package's pyproject.toml,

    [project.entry-points."bptt_suite.backends"]
    my-backend = "my_package.my_backend:MyBackend"

and then ``bptt-suite check --backend my-backend``. ``get_backend`` calls a class with
``dtype=`` when its constructor takes one.

The input checks of the contract (shapes, NaN, targets, truncation) are not written
again here: ``reference.validation`` does them and hands back a ``Case`` of read-only
float64 arrays. This example computes full BPTT in plain NumPy and truncated BPTT by
backpropagating each block of BPTT(h; h') separately.
"""
import numpy as np

from reference import BPTTResult, ForwardResult, RNNParams, blocks
from reference.validation import first_nonfinite_step, overflow_error, validate_bptt, validate_forward

F = {  # f(a), and f'(a) written through h = f(a)
    "tanh": (np.tanh, lambda h: 1 - h * h),
    "sigmoid": (lambda a: 0.5 * (1 + np.tanh(0.5 * a)), lambda h: h * (1 - h)),
    "relu": (lambda a: np.maximum(a, 0), lambda h: (h > 0).astype(h.dtype)),
    "identity": (lambda a: a, np.ones_like),
}


class MyBackend:
    name = "my-backend"

    def __init__(self, dtype="float64"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = dtype

    def _states(self, case):
        f, _ = F[case.spec.activation]
        p = {k: v.astype(self.dtype) for k, v in case.params.as_dict().items()}
        hs = np.empty((case.T + 1, case.B, case.H), dtype=self.dtype)
        hs[0] = case.h0
        with np.errstate(all="ignore"):
            for t in range(case.T):
                hs[t + 1] = f(case.xs[t].astype(self.dtype) @ p["W_x"].T + hs[t] @ p["W_h"].T + p["b_h"])
            ys = hs[1:] @ p["W_y"].T + p["b_y"]
        step = first_nonfinite_step(np.concatenate([hs[1:], ys], axis=2))
        if step is not None:
            raise overflow_error("forward pass", step, case.T)
        return hs, ys, p

    def forward(self, spec, params, xs, h0=None):
        case = validate_forward(spec, params, xs, h0)
        hs, ys, _ = self._states(case)
        return ForwardResult(hs=hs[1:].astype(np.float64), ys=ys.astype(np.float64))

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation)
        hs, ys, p = self._states(case)
        _, fprime = F[spec.activation]
        T, B = case.T, case.B
        scored = range(T) if spec.targets == "every" else [T - 1]
        with np.errstate(all="ignore"):
            dys = np.zeros_like(ys)
            loss = 0.0
            for t in scored:
                if spec.output == "linear":
                    diff = ys[t] - case.targets[t]
                    loss += 0.5 * float((diff * diff).sum())
                    dys[t] = diff
                else:
                    z = ys[t] - ys[t].max(axis=1, keepdims=True)
                    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                    rows = np.arange(B)
                    loss -= float(logp[rows, case.targets[t]].sum())
                    dys[t] = np.exp(logp)
                    dys[t][rows, case.targets[t]] -= 1
            dys /= B
            loss /= B
            e = dys @ p["W_y"]                                  # direct errors dl_t/dh_t
            g = {k: np.zeros_like(v) for k, v in p.items()}
            g["W_y"] = np.einsum("tbo,tbh->oh", dys, hs[1:])
            g["b_y"] = dys.sum(axis=(0, 1))
            dh0 = np.zeros((B, case.H), dtype=self.dtype)
            dhs = np.zeros((T, B, case.H), dtype=self.dtype) if case.truncation is None else None
            for first, last, stop in blocks(T, case.truncation):
                dh = np.zeros((B, case.H), dtype=self.dtype)
                for t in range(last, stop - 1, -1):             # 1-based steps
                    if t >= first:
                        dh = dh + e[t - 1]
                    if dhs is not None:
                        dhs[t - 1] = dh
                    da = dh * fprime(hs[t])
                    g["W_x"] += da.T @ case.xs[t - 1].astype(self.dtype)
                    g["W_h"] += da.T @ hs[t - 1]
                    g["b_h"] += da.sum(axis=0)
                    dh = da @ p["W_h"]
                if stop == 1:
                    dh0 += dh
            for k in ("W_x", "W_h", "W_y"):
                g[k] += spec.l2 * p[k]
            loss += spec.l2 / 2 * sum(float((case.params.as_dict()[k] ** 2).sum()) for k in ("W_x", "W_h", "W_y"))
        arrays = [dh0, *g.values()] + ([dhs] if dhs is not None else [])
        if not (np.isfinite(loss) and all(np.isfinite(a).all() for a in arrays)):
            step = first_nonfinite_step(dhs, backward=True) if dhs is not None else None
            raise overflow_error("backward pass", step or T, T)
        f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
        return BPTTResult(loss=float(loss), grads=RNNParams(**{k: f64(v) for k, v in g.items()}),
                          dh0=f64(dh0), dhs=f64(dhs))
