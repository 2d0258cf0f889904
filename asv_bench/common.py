"""What the benchmarks share: pinned threads, the problem sizes, the inputs, and the
runners of each backend (the engine's backends through the public API, and
torch.nn.RNN / torch.nn.LSTM / torch.nn.GRU + nn.Linear + autograd as the baseline
row of each cell).

The project's API is taken in ``setup`` (``safe_import``), so that a commit without
it skips instead of failing. torch and the project are imported here too, where they
import, so that asv's forkserver loads them once instead of once per benchmark
process (no torch or BLAS operation runs before the fork).

The matrix: the environment variable ``BPTT_BENCH_MATRIX`` selects ``light`` (the
default: ``LIGHT_SIZES`` and one round of timing samples per benchmark, so that a
three-commit ``asv run`` takes minutes) or ``full`` (all four ``SIZES`` and asv's
default two rounds). ``BPTT_BENCH_SIZES="T,B,D,H T,B,D,H ..."`` replaces the sizes of
either. Both are read when asv imports the benchmarks (``BENCH_SIZES``, ``ROUNDS``).
"""
from __future__ import annotations

import argparse
import os
import re

#: Threads of every BLAS / OpenMP pool in a benchmark process (asv.conf.json sets
#: the same through matrix.env_nobuild; this covers `asv run --python=same`).
THREADS = os.environ.get("BPTT_BENCH_THREADS", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import numpy as np  # noqa: E402  (after the thread variables)

try:  # noqa: E402  (after the thread variables; see the module docstring)
    import torch as _torch
except ImportError:
    _torch = None
try:  # loaded once for the forkserver too; safe_import in setup reports what fails here
    import implementations as _implementations  # noqa: E402, F401
except Exception:  # noqa: BLE001  (a commit whose package does not import: its benchmarks skip or fail in setup)
    pass

#: (T, B, D, H); O = D. A small case, fastrnns-like sizes, and a long sequence: the
#: sizes of compare_torch and of the full asv matrix.
SMALL = (50, 8, 16, 32)
SIZES = [SMALL, (100, 32, 64, 256), (200, 64, 128, 512), (1000, 16, 32, 128)]
#: The light asv matrix: the small case (per-step overhead) and a mid-sized one
#: (GEMM-bound); the two largest sizes take most of a full run's time.
LIGHT_SIZES = [SMALL, (100, 32, 64, 256)]
#: BPTT_BENCH_MATRIX -> (sizes, rounds of timing samples).
MATRICES = {"light": (LIGHT_SIZES, 1), "full": (SIZES, 2)}
#: Timing samples per round: (min, max, seconds), what asv takes per round by default
#: with two rounds.
REPEAT = (1, 5, 10.0)


def bench_matrix(matrix=None, sizes=None):
    """(sizes, rounds) of the asv matrix for BPTT_BENCH_MATRIX = ``matrix`` and
    BPTT_BENCH_SIZES = ``sizes`` (each defaults to the environment's value)."""
    if matrix is None:
        matrix = os.environ.get("BPTT_BENCH_MATRIX", "light")
    if sizes is None:
        sizes = os.environ.get("BPTT_BENCH_SIZES", "")
    key = matrix.strip().lower() or "light"
    if key not in MATRICES:
        raise ValueError(f"BPTT_BENCH_MATRIX must be 'light' or 'full'; got {matrix!r}")
    chosen, rounds = MATRICES[key]
    if not sizes.strip():
        return list(chosen), rounds
    try:
        return [parse_size(item) for item in re.split(r"[\s;]+", sizes.strip())], rounds
    except ValueError:
        raise ValueError(f"BPTT_BENCH_SIZES must be sizes 'T,B,D,H T,B,D,H ...' of positive integers; "
                         f"got {sizes!r}") from None


def parse_size(text):
    """"T,B,D,H" -> (T, B, D, H); ValueError unless four positive integers."""
    parts = text.split(",")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected T,B,D,H (four positive integers); got {text!r}")
    return tuple(int(p) for p in parts)


def size_arg(text):
    """``parse_size`` as an argparse ``type``: a bad size is a usage error naming it."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


BENCH_SIZES, ROUNDS = bench_matrix()

#: The cells of the BPTT benchmarks (reference.cells.CELLS, by name; a commit without
#: the cell table has the Elman cell only).
CELLS = ["elman", "lstm", "gru"]

#: The baseline row: torch.nn's own module of the cell (TORCH_MODULE) + nn.Linear +
#: squared error, autograd.
BASELINE = "torch.nn"
TORCH_MODULE = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}

#: The engine's backends plus the baseline row.
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


def cell_row(cell):
    """reference.cells.CELLS[cell], or None for "elman" on a commit from before the
    cell table (Skip for a gated cell there)."""
    try:
        from reference.cells import CELLS as table
    except ImportError:
        if cell == "elman":
            return None
        raise Skip(f"this commit has no cell {cell!r} (no reference.cells)") from None
    if cell not in table:
        raise Skip(f"this commit has no cell {cell!r}")
    return table[cell]


def make_spec(cell="elman", targets="every"):
    """RNNSpec of a tanh RNN of ``cell`` with a linear output (squared error)."""
    RNNSpec = safe_import()[2]
    extra = {} if cell == "elman" else {"cell": cell}   # commits before gated cells have no field
    return RNNSpec(activation="tanh", output="linear", targets=targets, **extra)


def import_torch():
    if _torch is None:
        raise Skip("torch is not installed")
    _torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # as pinned above
    return _torch


def _param_shapes(cell, D, H, O):
    row = cell_row(cell)
    if row is None:   # a commit before the cell table: the Elman shapes
        return {"W_x": (H, D), "W_h": (H, H), "b_h": (H,), "W_y": (O, H), "b_y": (O,)}
    return {name: shape for name, (shape, _) in row.shapes(D, H, O).items()}


def make_inputs(size, seed=0, cell="elman"):
    """float64 numpy inputs of a tanh RNN of ``cell`` with a linear output, O = D:
    (params, xs, targets). The shapes are the cell row's; W_x is scaled by 1/sqrt(D),
    W_h by 0.9/sqrt(H), W_y by 1/sqrt(H), biases by 0.1, drawn in RNNParams order."""
    _, RNNParams, _, _ = safe_import()
    T, B, D, H = size
    O = D
    rng = np.random.default_rng(seed)
    scale = {"W_x": 1 / np.sqrt(D), "W_h": 0.9 / np.sqrt(H), "W_y": 1 / np.sqrt(H)}
    params = RNNParams(**{name: rng.standard_normal(shape) * scale.get(name, 0.1)
                          for name, shape in _param_shapes(cell, D, H, O).items()})
    xs = rng.standard_normal((T, B, D))
    targets = rng.standard_normal((T, B, O))
    return params, xs, targets


class TorchBaseline:
    """torch.nn.RNN(tanh) / torch.nn.LSTM / torch.nn.GRU + nn.Linear + squared error,
    autograd: the same model and loss as make_spec(cell). Inputs are tensors already.

    Weights map over as the contract's section 1b says: weight_ih = W_x,
    weight_hh = W_h, bias_ih = b_h, bias_hh = 0, except the GRU's n block of
    bias_hh, which is b_hn (so b_h = bias_ih + [bias_hh_r; bias_hh_z; 0])."""

    def __init__(self, params, xs, targets, dtype="float32", cell="elman"):
        torch = self.torch = import_torch()
        tdtype = getattr(torch, dtype)
        D = params.W_x.shape[1]
        H = params.W_h.shape[1]
        O = params.W_y.shape[0]
        self.B = xs.shape[1]
        self.cell = cell
        module = getattr(torch.nn, TORCH_MODULE[cell])
        options = {"nonlinearity": "tanh"} if cell == "elman" else {}
        self.rnn = module(D, H, dtype=tdtype, **options)
        self.lin = torch.nn.Linear(H, O, dtype=tdtype)
        self._n_rows = cell_row(cell).block("n", H) if cell == "gru" else None
        with torch.no_grad():
            t = lambda a: torch.as_tensor(np.asarray(a), dtype=tdtype)  # noqa: E731
            self.rnn.weight_ih_l0.copy_(t(params.W_x))
            self.rnn.weight_hh_l0.copy_(t(params.W_h))
            self.rnn.bias_ih_l0.copy_(t(params.b_h))
            self.rnn.bias_hh_l0.zero_()
            if self._n_rows is not None:
                self.rnn.bias_hh_l0[self._n_rows] = t(params.b_hn)
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
        state ((h, c) for the LSTM) is detached every h steps."""
        for w in self.weights:
            w.grad = None
        T = self.x.shape[0]
        chunk = chunk or T
        state = None
        total = 0.0
        for i in range(0, T, chunk):
            hs, state = self.rnn(self.x[i:i + chunk], state)
            y = self.lin(hs)
            loss = 0.5 * ((y - self.d[i:i + chunk]) ** 2).sum() / self.B
            loss.backward()
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            total += loss.detach()
        return total

    def grads(self):
        """name -> gradient tensor, in the contract's parameters."""
        r, lin = self.rnn, self.lin
        out = {"W_x": r.weight_ih_l0.grad, "W_h": r.weight_hh_l0.grad, "b_h": r.bias_ih_l0.grad,
               "W_y": lin.weight.grad, "b_y": lin.bias.grad}
        if self._n_rows is not None:
            out["b_hn"] = r.bias_hh_l0.grad[self._n_rows]
        return out



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


def unsupported(backend, exc):
    """The Skip for a backend that raised NotImplementedError naming a feature (a
    partial backend, e.g. one without gated cells): asv reports a skip, not a failure."""
    return Skip(f"backend {backend!r} does not implement {exc}")
