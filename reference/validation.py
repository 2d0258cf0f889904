"""The one place where input is checked. Every backend calls it; none repeats it.

``validate_forward`` and ``validate_bptt`` turn whatever the caller passed into a
``Case``: read-only float64 arrays of checked, mutually consistent shapes. Errors
name the argument and what was expected (contract section 4).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .cells import CELLS
from .types import ACTIVATIONS, OUTPUTS, TARGETS, RNNParams, RNNSpec, Truncation


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_spec(spec: RNNSpec) -> None:
    _choice("cell", spec.cell, tuple(CELLS))
    _choice("activation", spec.activation, ACTIVATIONS)
    allowed = CELLS[spec.cell].activations
    if spec.activation not in allowed:
        raise ValueError(f"activation must be one of {', '.join(map(repr, allowed))} for cell {spec.cell!r} "
                         f"(its gates fix their own nonlinearities); got {spec.activation!r}")
    _choice("output", spec.output, OUTPUTS)
    _choice("targets", spec.targets, TARGETS)
    l2 = spec.l2
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real):
        raise TypeError(f"l2 must be a real number >= 0; got {type(l2).__name__}")
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0; got {l2!r}")


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {lo}; got {type(value).__name__} {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {value}")
    return int(value)


def check_truncation(h, h_prime):
    h = _check_int("h", h, 1)
    if h_prime is None:
        return h, h
    h_prime = _check_int("h_prime", h_prime, 1)
    if h_prime > h:
        raise ValueError(f"h_prime must satisfy 1 <= h_prime <= h = {h}; got h_prime = {h_prime}")
    return h, h_prime


class CaseSizes:
    """T, B, D, H, O of anything holding ``xs`` (T, B, D) and ``params``."""

    @property
    def T(self):
        return self.xs.shape[0]

    @property
    def B(self):
        return self.xs.shape[1]

    @property
    def D(self):
        return self.xs.shape[2]

    @property
    def H(self):
        return self.params.W_h.shape[1]

    @property
    def O(self):  # noqa: E743 - the contract's name for the output size
        return self.params.W_y.shape[0]


@dataclass(frozen=True)
class Case(CaseSizes):
    """Validated input: read-only float64 arrays and the sizes they agree on."""

    spec: RNNSpec
    params: RNNParams
    xs: np.ndarray  # (T, B, D)
    h0: np.ndarray  # (B, H); zeros when the caller passed none
    targets: Optional[np.ndarray]  # (T, B, O) float64, or (T, B) int64 class indices
    truncation: Optional[Truncation]  # None when nothing is cut (also when h >= T)
    c0: Optional[np.ndarray] = None  # (B, H) for "lstm" (zeros when the caller passed none); else None

    @property
    def cell(self):
        """The row of ``reference.cells.CELLS`` for this case's cell."""
        return CELLS[self.spec.cell]

    @property
    def state0(self) -> tuple:
        """The initial state: (h0,) or (h0, c0)."""
        return (self.h0,) if self.c0 is None else (self.h0, self.c0)


def _to_numpy(name, value):
    if value is None:
        raise TypeError(f"{name} must be an array; got None")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular numeric array: {exc}") from None
    if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    return arr


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_shape(name, arr, expected, labels):
    """expected: tuple of ints or None (free); labels: the letters for the message."""
    want = _shape_text(labels)
    if arr.ndim != len(expected):
        raise ValueError(f"{name} must have shape {want}; got {arr.ndim}-d array of shape {arr.shape}")
    for size, exp, label in zip(arr.shape, expected, labels):
        if exp is not None and size != exp:
            raise ValueError(
                f"{name} must have shape {want} with {label} = {exp}; got shape {arr.shape}"
            )


def _readonly_float64(name, value, expected, labels):
    arr = _to_numpy(name, value)
    _check_shape(name, arr, expected, labels)
    arr = np.asarray(arr, dtype=np.float64)  # copies only what is not float64 already
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    view = arr.view()  # read-only: no backend can write into the caller's array through it
    view.flags.writeable = False
    return view


def _check_params(params, cell):
    if not isinstance(params, RNNParams):
        raise TypeError(f"params must be an RNNParams; got {type(params).__name__}")
    G = cell.G
    rows = f"{G}H" if G > 1 else "H"
    for_cell = f" for cell {cell.name!r}" if G > 1 else ""
    W_h = _to_numpy("W_h", params.W_h)
    if W_h.ndim != 2 or W_h.shape[1] == 0 or W_h.shape[0] != G * W_h.shape[1]:
        raise ValueError(f"W_h must have shape ({rows}, H) with H >= 1{for_cell}; got shape {W_h.shape}")
    H = W_h.shape[1]
    W_x = _to_numpy("W_x", params.W_x)
    _check_shape("W_x", W_x, (G * H, None), (rows, "D"))
    if W_x.shape[1] == 0:
        raise ValueError(f"W_x must have shape ({rows}, D) with D >= 1; got shape {W_x.shape}")
    W_y = _to_numpy("W_y", params.W_y)
    _check_shape("W_y", W_y, (None, H), ("O", "H"))
    if W_y.shape[0] == 0:
        raise ValueError(f"W_y must have shape (O, H) with O >= 1; got shape {W_y.shape}")
    for name in ("b_hn",):
        if name in cell.extra and getattr(params, name) is None:
            raise ValueError(f"{name} must be an array of shape (H,) = ({H},) for cell {cell.name!r}; got None")
        if name not in cell.extra and getattr(params, name) is not None:
            raise ValueError(f"{name} must be None for cell {cell.name!r} (only 'gru' has it); "
                             f"got {type(getattr(params, name)).__name__}")
    shapes = cell.shapes(W_x.shape[1], H, W_y.shape[0])
    arrays = {n: _readonly_float64(n, getattr(params, n), *shapes[n]) for n in cell.params}
    return RNNParams(**arrays)


def _check_xs_h0(params, xs, h0):
    H, D = params.W_h.shape[1], params.W_x.shape[1]
    xs = _readonly_float64("xs", xs, (None, None, D), ("T", "B", "D"))
    T, B, _ = xs.shape
    if T == 0 or B == 0:
        raise ValueError(f"xs must have shape (T, B, D) with T >= 1 and B >= 1; got shape {xs.shape}")
    if h0 is None:
        h0 = np.zeros((B, H))
        h0.flags.writeable = False
    else:
        h0 = _readonly_float64("h0", h0, (B, H), ("B", "H"))
    return xs, h0


def _check_targets(spec, targets, T, B, O):
    if spec.output == "linear":
        return _readonly_float64("targets", targets, (T, B, O), ("T", "B", "O"))
    arr = _to_numpy("targets", targets)
    _check_shape("targets", arr, (T, B), ("T", "B"))
    if arr.dtype.kind == "f":
        raise ValueError(
            f"targets must be integer class indices in [0, O) = [0, {O}) for output='softmax'; "
            f"got a float array (dtype {arr.dtype})"
        )
    scored = arr[-1:] if spec.targets == "last" else arr
    if scored.size and (scored.min() < 0 or scored.max() >= O):
        raise ValueError(
            f"targets must be class indices in [0, O) = [0, {O}); "
            f"got values in [{scored.min()}, {scored.max()}]"
        )
    arr = np.array(arr, dtype=np.int64, copy=True)
    if spec.targets == "last":  # unread steps may hold anything; keep them in range
        arr[:-1] = 0
    arr.flags.writeable = False
    return arr


def _check_spec_arg(spec):
    if not isinstance(spec, RNNSpec):
        raise TypeError(f"spec must be an RNNSpec; got {type(spec).__name__}")
    check_spec(spec)  # again: a dataclass can be built around __post_init__


def _check_c0(spec, c0, B, H):
    if spec.cell != "lstm":
        if c0 is not None:
            raise ValueError(f"c0 must be None for cell {spec.cell!r} (only 'lstm' has a cell state); "
                             f"got {type(c0).__name__}")
        return None
    if c0 is None:
        c0 = np.zeros((B, H))
        c0.flags.writeable = False
        return c0
    return _readonly_float64("c0", c0, (B, H), ("B", "H"))


def validate_forward(spec, params, xs, h0=None, c0=None) -> Case:
    _check_spec_arg(spec)
    params = _check_params(params, CELLS[spec.cell])
    xs, h0 = _check_xs_h0(params, xs, h0)
    c0 = _check_c0(spec, c0, xs.shape[1], params.W_h.shape[1])
    return Case(spec, params, xs, h0, None, None, c0)


def validate_bptt(spec, params, xs, targets, h0=None, truncation=None, c0=None) -> Case:
    case = validate_forward(spec, params, xs, h0, c0)
    targets = _check_targets(spec, targets, case.T, case.B, case.O)
    if truncation is not None:
        if isinstance(truncation, numbers.Integral) and not isinstance(truncation, bool):
            truncation = Truncation(truncation)
        if not isinstance(truncation, Truncation):
            raise TypeError(f"truncation must be a Truncation or None; got {type(truncation).__name__}")
        truncation = Truncation(truncation.h, truncation.h_prime)  # re-checked
        if truncation.h >= case.T:  # nothing is cut: full BPTT (contract section 2)
            truncation = None
    return Case(spec, case.params, case.xs, case.h0, targets, truncation, case.c0)


# ---------------------------------------------------------------------------
# Overflow: a non-finite value computed from finite input is a FloatingPointError
# naming the first time step where it appeared; never a NaN returned silently.


def first_nonfinite_step(per_step, backward=False):
    """1-based index of the first step (in computation order) whose slice of
    ``per_step`` (T, ...) is not all finite, or None."""
    bad = ~np.isfinite(np.asarray(per_step)).reshape(len(per_step), -1).all(axis=1)
    if not bad.any():
        return None
    idx = np.flatnonzero(bad)
    return int(idx[-1] if backward else idx[0]) + 1


def overflow_error(what, step, T):
    return FloatingPointError(
        f"overflow in the {what}: a non-finite value first appeared at time step t={step} "
        f"(of T={T}) with finite inputs; the states or gradients exploded"
    )
