"""Speed, memory and accuracy of BPTT: backend x size.

Rows: the engine's backends through the public API (validation, computation in
float32, float64 results: what a user gets) and torch.nn.RNN + nn.Linear + autograd
as the baseline. Inputs are built in ``setup``; only the call is timed.
"""
from __future__ import annotations

import numpy as np

from .common import (BACKENDS, BASELINE, SIZES, SMALL, Skip, TorchRNNBaseline, engine_backend,
                     make_inputs, safe_import, sync_for)

DTYPE = "float32"


class _Runner:
    """setup(backend, size): self.forward(), self.bptt(), self.bptt_truncated()."""

    params = [BACKENDS, SIZES]
    param_names = ["backend", "size"]
    timeout = 600

    #: chunked truncation BPTT(h; h) (torch.nn.RNN can run it too) and BPTT(h; h')
    #: with h' < h (the engine's backends only).
    CHUNK = 25
    TRUNC = (20, 5)

    def setup(self, backend, size):
        _, _, RNNSpec, Truncation = safe_import()
        params, xs, targets = make_inputs(size)
        self.sync = sync_for(backend)
        if backend == BASELINE:
            base = TorchRNNBaseline(params, xs, targets, DTYPE)
            self.forward = base.forward
            self.bptt = base.bptt
            self.bptt_chunked = lambda: base.bptt(chunk=self.CHUNK)
            self.bptt_truncated = None
            return
        be = engine_backend(backend, DTYPE)
        spec = RNNSpec(activation="tanh", output="linear", targets="every")
        chunked, trunc = Truncation(self.CHUNK), Truncation(*self.TRUNC)
        self.forward = lambda: be.forward(spec, params, xs)
        self.bptt = lambda: be.bptt(spec, params, xs, targets)
        self.bptt_chunked = lambda: be.bptt(spec, params, xs, targets, truncation=chunked)
        self.bptt_truncated = lambda: be.bptt(spec, params, xs, targets, truncation=trunc)
        self.bptt()  # warm-up: first-call costs (imports, allocator) stay out of the timings
        self.sync()

    def _timed(self, fn):
        self.sync()
        fn()
        self.sync()


class TimeBPTT(_Runner):
    """Wall time of one call, float32 compute."""

    def time_forward(self, backend, size):
        self._timed(self.forward)

    def time_bptt(self, backend, size):
        self._timed(self.bptt)

    def time_bptt_chunked(self, backend, size):
        """BPTT(h; h) with h = 25: detach every 25 steps."""
        self._timed(self.bptt_chunked)

    def time_bptt_truncated(self, backend, size):
        """BPTT(h; h') with (h, h') = (20, 5): every loss term flows back 16..20 steps."""
        if self.bptt_truncated is None:
            raise Skip("torch.nn.RNN has no BPTT(h; h') with h' < h")
        self._timed(self.bptt_truncated)


class MemBPTT(_Runner):
    """Peak resident memory of the process running full BPTT (asv's peakmem_:
    includes the interpreter and the inputs; compare rows, not absolute values)."""

    def peakmem_bptt(self, backend, size):
        self._timed(self.bptt)


class TrackGradError:
    """Largest relative gradient error against the float64 reference on a small
    case: max over (W_x, W_h, b_h, W_y, b_y, dh0 where given) of
    max|g - g_ref| / max|g_ref|. Tracks accuracy across commits, full and truncated."""

    params = [["numpy", "torch", "torch:cuda", "torch-autograd", BASELINE], ["float32", "float64"],
              ["full", "truncated"]]
    param_names = ["backend", "dtype", "bptt"]
    unit = "relative error"
    timeout = 300

    def setup(self, backend, dtype, bptt):
        get_backend, _, RNNSpec, Truncation = safe_import()
        params, xs, targets = make_inputs(SMALL, seed=1)
        spec = RNNSpec(activation="tanh", output="linear", targets="every")
        trunc = None if bptt == "full" else Truncation(20, 5)
        ref = get_backend("reference", "float64").bptt(spec, params, xs, targets, truncation=trunc)
        self.ref = dict(ref.grads.as_dict(), dh0=ref.dh0)
        if backend == BASELINE:
            if bptt != "full":
                raise Skip("torch.nn.RNN has no BPTT(h; h') with h' < h")
            base = TorchRNNBaseline(params, xs, targets, dtype)
            base.bptt()
            self.got = {k: v.detach().cpu().double().numpy() for k, v in base.grads().items()}
        else:
            res = engine_backend(backend, dtype).bptt(spec, params, xs, targets, truncation=trunc)
            self.got = dict(res.grads.as_dict(), dh0=res.dh0)

    def track_grad_error(self, backend, dtype, bptt):
        return max(float(np.abs(self.got[k] - self.ref[k]).max() / np.abs(self.ref[k]).max())
                   for k in self.got)
