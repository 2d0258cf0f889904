"""Backends that break the checker's process, for tests/test_cli.py: a segfault in
forward, a slow bptt (to interrupt), a float32-only object, one that raises on every
call, and one whose bptt never returns in C-like fashion."""
from __future__ import annotations

import ctypes
import os
import signal
import time

from implementations import get_backend


class _Numpy:
    def __init__(self, dtype="float64"):
        self.inner = get_backend("numpy", dtype)
        self.dtype = dtype
        self.name = f"crash:{type(self).__name__}"

    def forward(self, spec, params, xs, h0=None, **kw):
        return self.inner.forward(spec, params, xs, h0, **kw)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, **kw):
        return self.inner.bptt(spec, params, xs, targets, h0, truncation, **kw)


class SegfaultInForward(_Numpy):
    """bptt is right; forward dereferences a null pointer (SIGSEGV)."""

    def forward(self, spec, params, xs, h0=None, **kw):
        os.kill(os.getpid(), signal.SIGSEGV) if os.environ.get("CRASH_BY_SIGNAL") else ctypes.string_at(0)


class SlowBptt(_Numpy):
    """Correct, but each bptt call takes 0.3 s."""

    def bptt(self, *args, **kw):
        time.sleep(0.3)
        return super().bptt(*args, **kw)


class RaisesEveryCall(_Numpy):
    def bptt(self, *args, **kw):
        return self._broken(args)

    def _broken(self, args):
        raise RuntimeError("kernel not initialised")


#: An object computing in float32 (a user's instance, not a class).
float32_instance = _Numpy("float32")
