"""What every property does with a backend's answer: check its types and shapes
against the cell's row, and compare it with the reference under a dtype-aware
tolerance (``Comparison``).

Every property reports one comparable figure: the worst error as a fraction of what
was allowed (<= 1 when the property holds), as a float or as ``Measured(ratio, raw)``
with the raw numbers behind it (worst absolute and relative error, where, the
tolerance). A failure is a ``PropertyFailure`` (an AssertionError) whose ``error`` is
that ratio (> 1) and whose message lists every quantity that broke its tolerance,
worst first, with plain labelled numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from reference.cells import CELLS
from reference.types import RNNParams

from .hypothesis_helpers import Problem
from .tolerances import Tolerance


#: The five parameters every cell has (a cell's own list: ``CELLS[name].params``).
PARAM_NAMES = RNNParams.names()


def param_names(p: Problem) -> tuple:
    """The parameters of the case's cell, in RNNParams order (b_hn for the GRU)."""
    return CELLS[p.spec.cell].params


class PropertyFailure(AssertionError):
    """A property does not hold. ``error`` is the worst error as a fraction of what was
    allowed (> 1; None when nothing numeric was compared), ``raw`` the numbers behind it."""

    def __init__(self, message, error=None, raw=None):
        super().__init__(message)
        self.error = error
        self.raw = raw


class Measured(float):
    """What a property may return instead of a bare float: ``ratio``, the worst error
    as a fraction of what was allowed (<= 1 when it holds; the comparable figure of the
    report), and ``raw``, the numbers behind it (worst absolute and relative error,
    where, the tolerance) for the details and the JSON. It is the float ``ratio`` itself,
    so that it compares and serialises as one."""

    def __new__(cls, ratio, raw=None):
        obj = super().__new__(cls, float(ratio))
        obj.raw = dict(raw or {})
        return obj

    @property
    def ratio(self) -> float:
        return float(self)

    def __repr__(self):
        return f"Measured({float(self)!r}, {self.raw!r})"

    def __reduce__(self):
        return (Measured, (float(self), self.raw))


class Unsupported(NotImplementedError):
    """A case needs a feature the backend declared it lacks (contract section 5,
    "Partial backends"): the checker records ``feature`` and draws another case.
    Raised by the properties, e.g. when a backend returns dhs=None for full BPTT and
    the property needs dhs (feature "dhs")."""

    def __init__(self, feature: str):
        super().__init__(f"{feature} is not supported by this backend")
        self.feature = feature


def need(res, *attrs):
    """The arrays ``attrs`` of a checked result; ``Unsupported(attr)`` for one that the
    backend returned as None (allowed for dhs and dcs of full BPTT, contract section 5)."""
    out = []
    for a in attrs:
        v = getattr(res, a, None)
        if v is None:
            raise Unsupported(a)
        out.append(v)
    return out[0] if len(out) == 1 else tuple(out)


def num(x) -> str:
    """A plain number for messages: 17 significant digits, no numpy repr."""
    return f"{float(x):.17g}"


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
        raise PropertyFailure(f"{_index_text(name, idx, time_axis)} is {float(a[idx])} although no error was raised "
                              f"(a non-finite result must be a FloatingPointError, contract section 4)")
    return a


def _must_be_none(what, value, cell):
    if value is not None:
        raise PropertyFailure(f"{what} must be None for cell {cell!r} (contract section 3); "
                              f"got {type(value).__name__}")


def check_forward_result(res, p: Problem):
    """hs and ys of shape (T, B, H) and (T, B, O); cs (T, B, H) for the LSTM, None otherwise."""
    for attr in ("hs", "ys"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"forward returned {type(res).__name__}, which has no attribute {attr!r}")
    _check_array("hs", res.hs, (p.T, p.B, p.H), True)
    _check_array("ys", res.ys, (p.T, p.B, p.O), True)
    cs = getattr(res, "cs", None)
    if len(p.cell.state) > 1:
        if cs is None:
            raise PropertyFailure("cs is None: forward of an LSTM returns the (T, B, H) cell states c_1 .. c_T")
        _check_array("cs", cs, (p.T, p.B, p.H), True)
    else:
        _must_be_none("forward cs", cs, p.spec.cell)
    return res


def check_bptt_result(res, p: Problem, truncation="same"):
    """Types, shapes (from the cell's row), finiteness; dhs (and dcs) None when the
    truncation cuts. For full BPTT a backend may return dhs (dcs) as None (contract
    section 5: a fused kernel); the properties that need them raise ``Unsupported``."""
    tr = p.truncation if truncation == "same" else truncation
    for attr in ("loss", "grads", "dh0", "dhs"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"bptt returned {type(res).__name__}, which has no attribute {attr!r}")
    if isinstance(res.loss, bool) or not isinstance(res.loss, (float, int, np.floating)):
        raise PropertyFailure(f"loss must be a python float; got {type(res.loss).__name__}")
    if not math.isfinite(res.loss):
        raise PropertyFailure(f"loss is {float(res.loss)} although no error was raised")
    cell = p.cell
    shapes = cell.shapes(p.D, p.H, p.O)
    for n in cell.params:
        if getattr(res.grads, n, None) is None:
            raise PropertyFailure(f"grads.{n} is missing (grads must be an RNNParams with the {n!r} of cell "
                                  f"{p.spec.cell!r})")
        _check_array(f"grads.{n}", getattr(res.grads, n), shapes[n][0])
    if "b_hn" not in cell.params:
        _must_be_none("grads.b_hn", getattr(res.grads, "b_hn", None), p.spec.cell)
    _check_array("dh0", res.dh0, (p.B, p.H))
    lstm = len(cell.state) > 1
    if lstm:
        if getattr(res, "dc0", None) is None:
            raise PropertyFailure("dc0 is None: bptt of an LSTM returns dL/dc0, a (B, H) array")
        _check_array("dc0", res.dc0, (p.B, p.H))
    else:
        for attr in ("dc0", "dcs"):
            _must_be_none(attr, getattr(res, attr, None), p.spec.cell)
    cuts = tr is not None and tr.h < p.T
    for attr in ("dhs", "dcs") if lstm else ("dhs",):
        v = getattr(res, attr, None)
        if cuts and v is not None:
            raise PropertyFailure(f"{attr} must be None when the truncation cuts ({tr} with T={p.T}); "
                                  f"got an array of shape {getattr(v, 'shape', '?')}")
        if not cuts and v is not None:
            _check_array(attr, v, (p.T, p.B, p.H), True)
    return res


# ---------------------------------------------------------------------------
# Comparison with the reference


@dataclass
class ArrayError:
    """The worst entry of one compared array, against what was allowed there."""

    name: str
    ratio: float          # max over entries of |error| / allowed
    where: str            # the entry of the worst ratio
    got: float
    want: float
    abs_error: float      # at that entry
    allowed: float        # at that entry
    rel: float            # max |error| / max(max|want|, the absolute floor's scale): the relative error
    detail: str           # the terms of the tolerance at that entry

    def text(self):
        return (f"{self.where}: got {num(self.got)}, want {num(self.want)}, |error| {self.abs_error:.3g} "
                f"= {self.ratio:.3g} x allowed {self.allowed:.3g} ({self.detail}); relative error of "
                f"{self.name} {self.rel:.3g}")

    def raw(self):
        return {"array": self.name, "where": self.where, "ratio": self.ratio, "abs_error": self.abs_error,
                "allowed": self.allowed, "rel_error": self.rel, "got": self.got, "want": self.want}


@dataclass
class Comparison:
    """Compares arrays with the reference under one tolerance and keeps, per array,
    its worst error as a fraction of what was allowed. ``verdict()`` then raises one
    PropertyFailure listing every array that broke its tolerance, worst first, or
    returns the worst ratio as ``Measured``."""

    tol: Tolerance
    dtype: str
    scale: float  # largest entry of the whole reference result
    arrays: list = field(default_factory=list)

    def add(self, name, got, want, spread, time_axis=False, floor=0.0, sums=0.0) -> float:
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
        floor = np.asarray(floor, dtype=np.float64)
        allowed = self.tol.rtol * ref_scale + self.tol.cond * cond_scale + self.tol.atol * self.scale + self.tol.tiny
        sums = np.asarray(sums, dtype=np.float64)
        allowed = np.broadcast_to(allowed + self.tol.slope * self.tol.u * floor + self.tol.u * sums, err.shape)
        ratio = err / allowed  # allowed >= tiny > 0
        amax = float(np.abs(want).max(initial=0.0))
        denom = max(amax, self.tol.atol / self.tol.rtol * self.scale, self.tol.tiny)
        rel = float(err.max(initial=0.0)) / denom
        if not ratio.size:
            return 0.0
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
        at = (lambda a: float(np.broadcast_to(a, err.shape)[idx]))
        scale_txt = "max|want| over that step" if time_axis and want.ndim > 1 else "max|want|"
        detail = (f"{self.dtype}: rtol {self.tol.rtol:g} x {scale_txt} {at(ref_scale):.3g} + cond {self.tol.cond:g} x "
                  f"measured rounding response {at(cond_scale):.3g} + atol {self.tol.atol:.3g} x result scale "
                  f"{self.scale:.3g} + tiny {self.tol.tiny:.3g} + rounding floor {self.tol.slope:g} u x {at(floor):.3g} + "
                  f"summation u x {at(sums):.3g}")
        self.arrays.append(ArrayError(name, float(ratio[idx]), _index_text(name, idx, time_axis), float(got[idx]),
                                      float(want[idx]), float(err[idx]), float(allowed[idx]), rel, detail))
        return float(ratio[idx])

    __call__ = add

    @property
    def worst(self) -> Optional[ArrayError]:
        return max(self.arrays, key=lambda a: a.ratio, default=None)

    def verdict(self, what="from the reference") -> Measured:
        """Raise PropertyFailure naming every array over its tolerance, worst first;
        else the worst ratio (with its raw numbers)."""
        bad = sorted((a for a in self.arrays if a.ratio > 1.0), key=lambda a: -a.ratio)
        if bad:
            head = ", ".join(f"{a.name} ({a.ratio:.3g} x tolerance)" for a in bad)
            lines = [f"{len(bad)} quantit{'y differs' if len(bad) == 1 else 'ies differ'} {what}, worst first: {head}"]
            lines += [f"  {a.text()}" for a in bad]
            raise PropertyFailure("\n".join(lines), error=bad[0].ratio,
                                  raw={"failing": [a.raw() for a in bad], "dtype": self.dtype})
        w = self.worst
        return Measured(0.0 if w is None else w.ratio, {} if w is None else dict(w.raw(), dtype=self.dtype))


def max_abs(*arrays):
    return max((float(np.abs(np.asarray(a)).max(initial=0.0)) for a in arrays if a is not None), default=0.0)


def backend_bptt(backend, p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return check_bptt_result(backend.bptt(*args, **kw), p, truncation)


def dtype_of(backend):
    return str(getattr(backend, "dtype", "float64"))


def result_arrays(r, names):
    """name -> array of a BPTT result: loss (as a 1-array), grads.<param>, dh0, dc0, dhs,
    dcs (those that are not None)."""
    out = {"loss": np.array([r.loss])}
    for n in names:
        out[f"grads.{n}"] = getattr(r.grads, n)
    for a in ("dh0", "dc0", "dhs", "dcs"):
        v = getattr(r, a, None)
        if v is not None:
            out[a] = v
    return out


def compare_bptt(cmp: Comparison, got, want, spread, names, prefix="", floor=None, sums=None):
    """Adds every array of ``want`` (loss, the grads of ``names``, dh0, dc0, and dhs,
    dcs where both results have them) against ``got`` to ``cmp``; ``spread`` is the
    measured conditioning (``oracle.reference_spread``), ``floor`` the rounding floor
    (``oracle.rounding_floor``) and ``sums`` the summation floor
    (``oracle.summation_floor``), keyed like ``result_arrays`` without the "grads." prefix."""
    floor, sums = floor or {}, sums or {}
    g, s = result_arrays(got, names), result_arrays(spread, names)
    for k, w in result_arrays(want, names).items():
        if k not in g:
            continue  # dhs / dcs returned as None for full BPTT: compared where there
        key = k[len("grads."):] if k.startswith("grads.") else k
        cmp.add(prefix + k, g[k], w, s.get(k, np.zeros_like(w)), time_axis=k in ("dhs", "dcs"),
                floor=floor.get(key, 0.0), sums=sums.get(key, 0.0))
    return cmp


def result_scale(r):
    return max_abs(*result_arrays(r, r.grads.as_dict()).values())
