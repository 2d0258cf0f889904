"""What every property does with a backend's answer: check its types and shapes, and
compare it with the reference under a dtype-aware tolerance (``Comparison``).

A failure is a ``PropertyFailure`` (an AssertionError) whose message gives the worst
absolute and relative error, where it occurred (array, index, time step) and the
tolerance it broke.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reference.types import RNNParams

from .hypothesis_helpers import Problem
from .tolerances import Tolerance


PARAM_NAMES = RNNParams.names()


class PropertyFailure(AssertionError):
    """A property does not hold. ``error`` is the worst relative error (or None)."""

    def __init__(self, message, error=None):
        super().__init__(message)
        self.error = error




def _index_text(name, idx, time_axis):
    text = f"{name}[{', '.join(map(str, idx))}]" if idx else name
    if time_axis and idx:
        text += f" (time step t={idx[0] + 1})"
    return text


def _check_array(name, a, shape, time_axis=False):
    """A result array must be a finite numpy float64 array of the contract's shape."""
    if not isinstance(a, np.ndarray):
        raise PropertyFailure(f"{name} must be a numpy array; got {type(a).__name__}")
    if a.dtype != np.float64:
        raise PropertyFailure(f"{name} must be numpy float64 (contract section 3); got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise PropertyFailure(f"{name} has shape {a.shape}; the contract says {tuple(shape)}")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PropertyFailure(f"{_index_text(name, idx, time_axis)} is {a[idx]} although no error was raised "
                              f"(a non-finite result must be a FloatingPointError, contract section 4)")
    return a


def check_forward_result(res, p: Problem):
    for attr in ("hs", "ys"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"forward returned {type(res).__name__}, which has no attribute {attr!r}")
    _check_array("hs", res.hs, (p.T, p.B, p.H), True)
    _check_array("ys", res.ys, (p.T, p.B, p.O), True)
    return res


def check_bptt_result(res, p: Problem, truncation="same"):
    """Types, shapes, finiteness, and dhs None exactly when truncation cuts."""
    tr = p.truncation if truncation == "same" else truncation
    for attr in ("loss", "grads", "dh0", "dhs"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"bptt returned {type(res).__name__}, which has no attribute {attr!r}")
    if isinstance(res.loss, bool) or not isinstance(res.loss, (float, int, np.floating)):
        raise PropertyFailure(f"loss must be a python float; got {type(res.loss).__name__}")
    if not math.isfinite(res.loss):
        raise PropertyFailure(f"loss is {res.loss} although no error was raised")
    shapes = {"W_x": (p.H, p.D), "W_h": (p.H, p.H), "b_h": (p.H,), "W_y": (p.O, p.H), "b_y": (p.O,)}
    for n in PARAM_NAMES:
        if not hasattr(res.grads, n):
            raise PropertyFailure(f"grads has no {n!r} (must be an RNNParams)")
        _check_array(f"grads.{n}", getattr(res.grads, n), shapes[n])
    _check_array("dh0", res.dh0, (p.B, p.H))
    cuts = tr is not None and tr.h < p.T
    if cuts and res.dhs is not None:
        raise PropertyFailure(f"dhs must be None when the truncation cuts ({tr} with T={p.T}); "
                              f"got an array of shape {getattr(res.dhs, 'shape', '?')}")
    if not cuts:
        if res.dhs is None:
            raise PropertyFailure(f"dhs is None but nothing is cut (truncation={tr}, T={p.T}): "
                                  f"it must be the (T, B, H) array of dL/dh_t")
        _check_array("dhs", res.dhs, (p.T, p.B, p.H), True)
    return res


@dataclass
class Comparison:
    """Compares arrays with the reference under one tolerance; keeps the worst error."""

    tol: Tolerance
    dtype: str
    scale: float  # largest entry of the whole reference result
    worst: float = 0.0

    def __call__(self, name, got, want, spread, time_axis=False, floor=0.0):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        spread = np.abs(np.asarray(spread, dtype=np.float64))
        if got.shape != want.shape:
            raise PropertyFailure(f"{name} has shape {got.shape}; the reference has {want.shape}")
        err = np.abs(got - want)
        if time_axis and want.ndim > 1:
            axes = tuple(range(1, want.ndim))
            ref_scale = np.abs(want).max(axis=axes, keepdims=True)
            cond_scale = spread.max(axis=axes, keepdims=True)
        else:
            ref_scale = np.abs(want).max(initial=0.0)
            cond_scale = spread.max(initial=0.0)
        allowed = self.tol.rtol * ref_scale + self.tol.cond * cond_scale + self.tol.atol * self.scale + self.tol.tiny
        allowed = allowed + self.tol.slope * self.tol.u * np.asarray(floor, dtype=np.float64)
        allowed = np.broadcast_to(allowed, err.shape)
        ratio = err / allowed  # allowed >= tiny > 0
        amax = float(np.abs(want).max(initial=0.0))
        denom = max(amax, self.tol.atol / self.tol.rtol * self.scale, self.tol.tiny)
        rel = float(err.max(initial=0.0)) / denom
        self.worst = max(self.worst, rel)
        if ratio.size and ratio.max() > 1.0:
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
            where = _index_text(name, idx, time_axis)
            scale_txt = f"max|want| over that step = {float(np.broadcast_to(ref_scale, err.shape)[idx]):.3g}" \
                if time_axis and want.ndim > 1 else f"max|want| = {amax:.3g}"
            raise PropertyFailure(
                f"{where} differs from the reference: got {got[idx]!r}, want {want[idx]!r}, "
                f"|error| = {err[idx]:.3g} > allowed {allowed[idx]:.3g} "
                f"({self.dtype}: rtol {self.tol.rtol:g} x {scale_txt} + cond {self.tol.cond:g} x measured "
                f"rounding response {float(np.broadcast_to(cond_scale, err.shape)[idx]):.3g} + atol "
                f"{self.tol.atol:.3g} x result scale {self.scale:.3g} + tiny {self.tol.tiny:.3g} + rounding floor "
                f"{self.tol.slope:g} u x {float(np.broadcast_to(floor, err.shape)[idx]):.3g}); worst error in {name}: "
                f"abs {float(err.max()):.3g}, relative to max|want| {rel:.3g}; "
                f"{float(ratio.max()):.3g} times the tolerance",
                error=rel,
            )
        return rel


def max_abs(*arrays):
    return max((float(np.abs(np.asarray(a)).max(initial=0.0)) for a in arrays if a is not None), default=0.0)


def backend_bptt(backend, p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return check_bptt_result(backend.bptt(*args, **kw), p, truncation)


def dtype_of(backend):
    return str(getattr(backend, "dtype", "float64"))


def compare_bptt(cmp: Comparison, got, want, spread, prefix="", floor=None):
    """loss, grads, dh0 and (when both have it) dhs of ``got`` against ``want``;
    ``spread`` is the measured conditioning (``_ref_spread``), ``floor`` the
    rounding floor (``rounding_floor``)."""
    floor = floor or {}
    worst = cmp(prefix + "loss", np.array([got.loss]), np.array([want.loss]), np.array([spread.loss]),
                floor=floor.get("loss", 0.0))
    for n in PARAM_NAMES:
        worst = max(worst, cmp(f"{prefix}grads.{n}", getattr(got.grads, n), getattr(want.grads, n),
                               getattr(spread.grads, n), floor=floor.get(n, 0.0)))
    worst = max(worst, cmp(prefix + "dh0", got.dh0, want.dh0, spread.dh0, floor=floor.get("dh0", 0.0)))
    if want.dhs is not None and got.dhs is not None:
        worst = max(worst, cmp(prefix + "dhs", got.dhs, want.dhs, spread.dhs, time_axis=True,
                               floor=floor.get("dhs", 0.0)))
    return worst


def result_scale(r):
    return max_abs(np.array([r.loss]), r.dh0, r.dhs, *r.grads.as_dict().values())


@dataclass(frozen=True)
class Measured:
    """What a property may return instead of a bare float: ``ratio``, the worst error
    as a fraction of what was allowed (<= 1 when it holds; the comparable figure of the
    report), and ``raw``, the numbers behind it (worst absolute and relative error,
    where, the tolerance) for the details and the JSON."""

    ratio: float
    raw: dict


class Unsupported(NotImplementedError):
    """A case needs a feature the backend declared it lacks (contract section 5,
    "Partial backends"): the checker records ``feature`` and draws another case.
    Raised by the properties, e.g. when a backend returns dhs=None for full BPTT and
    the property needs dhs (feature "dhs")."""

    def __init__(self, feature: str):
        super().__init__(f"{feature} is not supported by this backend")
        self.feature = feature
