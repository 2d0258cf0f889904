"""Speed, memory and accuracy of BPTT: cell x backend x size.

Rows: the engine's backends through the public API (validation, computation in
float32, float64 results: what a user gets) and torch.nn.RNN / torch.nn.LSTM /
torch.nn.GRU + nn.Linear + autograd as the baseline of each cell (the row
"torch.nn"). Inputs are built in ``setup``; only the call is timed. Every skip is
raised in ``setup`` (asv honours no other): a backend without the cell, or without
the truncation a benchmark runs, raises NotImplementedError on a tiny probe call
there, and that is reported as skipped. The sizes and rounds are those of
``common.bench_matrix`` (BPTT_BENCH_MATRIX=light, the default, or full; see
docs/benchmarks.md).
"""
from __future__ import annotations

import numpy as np

from .common import (BACKENDS, BASELINE, BENCH_SIZES, CELLS, REPEAT, ROUNDS, SMALL, TORCH_MODULE, Skip,
                     TorchBaseline, engine_backend, make_inputs, make_spec, safe_import, sync_for, unsupported)

DTYPE = "float32"

#: Chunked truncation BPTT(h; h) (torch.nn can run it too) and BPTT(h; h') with
#: h' < h (the engine's backends only).
CHUNK = 25
TRUNC = (20, 5)

#: (T, B, D, H) of the probe call in setup: a backend without the cell or the truncation
#: a benchmark times raises NotImplementedError there at no cost. With T = 3 the probe's
#: truncations (2; 2) and (2; 1) cut as the timed ones do.
PROBE = (3, 1, 2, 2)
PROBE_CHUNK, PROBE_TRUNC = 2, (2, 1)

#: asv re-runs setup before every timed call; what the last setup built is kept, so
#: that a repeated setup costs nothing (no call mutates its inputs).
_LAST = {}


def _make_calls(cell, backend, size, chunk, trunc):
    """name -> callable: forward, bptt, bptt_chunked (BPTT(chunk; chunk)) and, except
    for the baseline, bptt_truncated (BPTT(*trunc)), on the inputs of ``size``."""
    Truncation = safe_import()[3]
    params, xs, targets = make_inputs(size, cell=cell)
    if backend == BASELINE:
        base = TorchBaseline(params, xs, targets, DTYPE, cell)
        return {"forward": base.forward, "bptt": base.bptt, "bptt_chunked": lambda: base.bptt(chunk=chunk)}
    be = engine_backend(backend, DTYPE)
    spec = make_spec(cell)
    chunked, truncated = Truncation(chunk), Truncation(*trunc)
    return {"forward": lambda: be.forward(spec, params, xs),
            "bptt": lambda: be.bptt(spec, params, xs, targets),
            "bptt_chunked": lambda: be.bptt(spec, params, xs, targets, truncation=chunked),
            "bptt_truncated": lambda: be.bptt(spec, params, xs, targets, truncation=truncated)}


def _calls(cell, backend, size):
    """(calls, probe calls, the sync callable, the names probed so far) of one
    parameter combination."""
    key = (cell, backend, size)
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = (_make_calls(cell, backend, size, CHUNK, TRUNC),
                      _make_calls(cell, backend, PROBE, PROBE_CHUNK, PROBE_TRUNC), sync_for(backend), set())
    return _LAST[key]


class _Runner:
    """setup(cell, backend, size) probes each call in CALLS on a tiny case (a
    NotImplementedError there is a skip), then the benchmarks time self.calls[name].
    asv's own warm-up calls keep first-call costs out of the samples."""

    params = [CELLS, BACKENDS, BENCH_SIZES]
    param_names = ["cell", "backend", "size"]
    timeout = 600
    rounds = ROUNDS
    repeat = REPEAT
    CALLS = ("forward", "bptt", "bptt_chunked")

    def setup(self, cell, backend, size):
        self.calls, probe, self.sync, probed = _calls(cell, backend, size)
        for name in self.CALLS:
            if name in probed:
                continue
            try:
                probe[name]()
            except NotImplementedError as exc:
                raise unsupported(backend, exc) from None
            self.sync()
            probed.add(name)

    def _timed(self, name):
        self.sync()
        self.calls[name]()
        self.sync()


class TimeBPTT(_Runner):
    """Wall time of one call, float32 compute."""

    def time_forward(self, cell, backend, size):
        self._timed("forward")

    def time_bptt(self, cell, backend, size):
        self._timed("bptt")

    def time_bptt_chunked(self, cell, backend, size):
        """BPTT(h; h) with h = 25: detach every 25 steps."""
        self._timed("bptt_chunked")


class TimeBPTTTruncated(_Runner):
    """BPTT(h; h') with (h, h') = (20, 5): every loss term flows back 16..20 steps.
    The baseline has no such truncation (skipped)."""

    CALLS = ("bptt_truncated",)

    def setup(self, cell, backend, size):
        if backend == BASELINE:
            raise Skip(f"torch.nn.{TORCH_MODULE[cell]} has no BPTT(h; h') with h' < h")
        super().setup(cell, backend, size)

    def time_bptt_truncated(self, cell, backend, size):
        self._timed("bptt_truncated")


class MemBPTT(_Runner):
    """Peak resident memory of the process running full BPTT (asv's peakmem_:
    includes the interpreter, torch and the inputs; compare rows, not absolute values)."""

    CALLS = ("bptt",)

    def peakmem_bptt(self, cell, backend, size):
        self._timed("bptt")


class TrackGradError:
    """Largest relative gradient error against the float64 reference on a small
    case: max over the cell's parameters and dh0 (where given) of
    max|g - g_ref| / max|g_ref|. Tracks accuracy across commits, per cell, full and
    truncated."""

    params = [CELLS, ["numpy", "torch", "torch:cuda", "torch-autograd", BASELINE], ["float32", "float64"],
              ["full", "truncated"]]
    param_names = ["cell", "backend", "dtype", "bptt"]
    unit = "relative error"
    timeout = 300
    SIZE = SMALL

    def setup(self, cell, backend, dtype, bptt):
        get_backend, _, _, Truncation = safe_import()
        if backend == BASELINE and bptt != "full":
            raise Skip(f"torch.nn.{TORCH_MODULE[cell]} has no BPTT(h; h') with h' < h")
        params, xs, targets = make_inputs(self.SIZE, seed=1, cell=cell)
        spec = make_spec(cell)
        trunc = None if bptt == "full" else Truncation(*TRUNC)
        if backend == BASELINE:
            base = TorchBaseline(params, xs, targets, dtype, cell)
            base.bptt()
            self.got = {k: v.detach().cpu().double().numpy() for k, v in base.grads().items()}
        else:
            be = engine_backend(backend, dtype)
            try:
                res = be.bptt(spec, params, xs, targets, truncation=trunc)
            except NotImplementedError as exc:
                raise unsupported(backend, exc) from None
            self.got = {k: v for k, v in dict(res.grads.as_dict(), dh0=res.dh0).items() if v is not None}
        ref = get_backend("reference", "float64").bptt(spec, params, xs, targets, truncation=trunc)
        self.ref = dict(ref.grads.as_dict(), dh0=ref.dh0)

    def track_grad_error(self, cell, backend, dtype, bptt):
        return max(float(np.abs(self.got[k] - self.ref[k]).max() / np.abs(self.ref[k]).max())
                   for k in self.got)
