"""What the benchmarks share: pinned threads, the problem sizes, the inputs, and the
runners of each backend (the engine's backends through the public API, and
torch.nn.RNN + nn.Linear + autograd as the baseline row).

Imports of the project and of torch happen in ``setup`` (``safe_import``) so that a
commit without them, or a machine without torch or CUDA, skips instead of failing.
"""
from __future__ import annotations

import os

#: Threads of every BLAS / OpenMP pool in a benchmark process (asv.conf.json sets
#: the same through matrix.env_nobuild; this covers `asv run --python=same`).
THREADS = os.environ.get("BPTT_BENCH_THREADS", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import numpy as np  # noqa: E402  (after the thread variables)

#: (T, B, D, H); O = D. A small case, fastrnns-like sizes, and a long sequence.
SMALL = (50, 8, 16, 32)
SIZES = [SMALL, (100, 32, 64, 256), (200, 64, 128, 512), (1000, 16, 32, 128)]

#: The engine's backends plus the baseline row.
BASELINE = "torch.nn.RNN"
BACKENDS = ["numpy", "torch", "torch:cuda", BASELINE]


class Skip(NotImplementedError):
    """Raised in setup: asv reports the benchmark as skipped (n/a)."""


def safe_import():
    """The project's API, or Skip on a commit that does not have it yet."""
    try:
        from implementations import get_backend
        from reference import RNNParams, RNNSpec, Truncation
    except ImportError as exc:
        raise Skip(f"this commit has no usable implementations/reference: {exc}") from None
    return get_backend, RNNParams, RNNSpec, Truncation


def import_torch():
    try:
        import torch
    except ImportError:
        raise Skip("torch is not installed") from None
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # as pinned above
    return torch


def make_inputs(size, seed=0):
    """float64 numpy inputs of a tanh RNN with a linear output, O = D."""
    _, RNNParams, _, _ = safe_import()
    T, B, D, H = size
    O = D
    rng = np.random.default_rng(seed)
    params = RNNParams(
        W_x=rng.standard_normal((H, D)) / np.sqrt(D),
        W_h=rng.standard_normal((H, H)) * (0.9 / np.sqrt(H)),
        b_h=0.1 * rng.standard_normal(H),
        W_y=rng.standard_normal((O, H)) / np.sqrt(H),
        b_y=0.1 * rng.standard_normal(O),
    )
    xs = rng.standard_normal((T, B, D))
    targets = rng.standard_normal((T, B, O))
    return params, xs, targets


class TorchRNNBaseline:
    """torch.nn.RNN(tanh) + nn.Linear + squared error, autograd: the same model and
    loss as spec = RNNSpec("tanh", "linear", "every"). Inputs are tensors already."""

    def __init__(self, params, xs, targets, dtype="float32"):
        torch = self.torch = import_torch()
        tdtype = getattr(torch, dtype)
        H, D = params.W_x.shape
        O = params.W_y.shape[0]
        self.B = xs.shape[1]
        self.rnn = torch.nn.RNN(D, H, nonlinearity="tanh", dtype=tdtype)
        self.lin = torch.nn.Linear(H, O, dtype=tdtype)
        with torch.no_grad():
            t = lambda a: torch.as_tensor(np.asarray(a), dtype=tdtype)  # noqa: E731
            self.rnn.weight_ih_l0.copy_(t(params.W_x))
            self.rnn.weight_hh_l0.copy_(t(params.W_h))
            self.rnn.bias_ih_l0.copy_(t(params.b_h))
            self.rnn.bias_hh_l0.zero_()
            self.lin.weight.copy_(t(params.W_y))
            self.lin.bias.copy_(t(params.b_y))
            self.x, self.d = t(xs), t(targets)
        self.weights = list(self.rnn.parameters()) + list(self.lin.parameters())

    def forward(self):
        with self.torch.no_grad():
            hs, _ = self.rnn(self.x)
            return hs, self.lin(hs)

    def bptt(self, chunk=None):
        """Full BPTT, or with ``chunk`` = h the chunked truncated BPTT(h; h): the
        state is detached every h steps."""
        for w in self.weights:
            w.grad = None
        T = self.x.shape[0]
        chunk = chunk or T
        h = None
        total = 0.0
        for i in range(0, T, chunk):
            hs, h = self.rnn(self.x[i:i + chunk], h)
            y = self.lin(hs)
            loss = 0.5 * ((y - self.d[i:i + chunk]) ** 2).sum() / self.B
            loss.backward()
            h = h.detach()
            total += loss.detach()
        return total

    def grads(self):
        r, lin = self.rnn, self.lin
        return {"W_x": r.weight_ih_l0.grad, "W_h": r.weight_hh_l0.grad, "b_h": r.bias_ih_l0.grad,
                "W_y": lin.weight.grad, "b_y": lin.bias.grad}


def sync_for(backend_name):
    """A callable that waits for queued GPU work (no-op off CUDA)."""
    if "cuda" in backend_name:
        torch = import_torch()
        return torch.cuda.synchronize
    return lambda: None


def engine_backend(name, dtype):
    """get_backend(name, dtype), or Skip where it cannot run here."""
    get_backend = safe_import()[0]
    if name in ("torch", "torch:cuda", "torch-autograd"):
        import_torch()   # Skip without torch; without CUDA, get_backend's RuntimeError below
    try:
        return get_backend(name, dtype)
    except (ValueError, RuntimeError) as exc:
        raise Skip(str(exc)) from None
