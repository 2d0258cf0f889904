"""Central finite differences of the loss along a direction, in float64.

    dL[v] ~ (L(theta + eps v) - L(theta - eps v)) / (2 eps)

with an error of O(eps^2 |L'''|) + O(u |L| / eps), u = 2^-53; eps = 1e-5 balances
the two for losses and third derivatives of order one (error ~1e-10 relative).
Only full BPTT is a gradient of a function, so only it can be checked this way.
"""
from __future__ import annotations

import numpy as np

from .bptt import loss_terms, run_forward
from .types import RNNParams
from .validation import validate_bptt


def loss(spec, params, xs, targets, h0=None, c0=None) -> float:
    """L of the contract (the l2 term included), by the reference forward pass."""
    case = validate_bptt(spec, params, xs, targets, h0, c0=c0)
    with np.errstate(all="ignore"):
        _, _, ys = run_forward(case)
        return float(loss_terms(case, ys)[0])


def directional_derivative(spec, params, xs, targets, direction, h0=None, dh0_direction=None, eps=1e-5,
                           c0=None, dc0_direction=None):
    """The central difference of L along (direction, dh0_direction, dc0_direction);
    compare with sum(grad * direction) + sum(dh0 * dh0_direction) + sum(dc0 * dc0_direction).
    ``direction`` moves every parameter of the cell, b_hn included for the GRU."""
    if not isinstance(direction, RNNParams):
        raise TypeError(f"direction must be an RNNParams; got {type(direction).__name__}")
    case = validate_bptt(spec, params, xs, targets, h0, c0=c0)
    for n in RNNParams.names() + ("b_hn",):           # a direction for exactly the cell's parameters
        a, d = getattr(case.params, n), getattr(direction, n)
        if (a is None) != (d is None) or (d is not None and np.shape(d) != a.shape):
            want = "None" if a is None else f"an array of shape {a.shape}"
            raise ValueError(f"direction.{n} must be {want}, as params.{n} for cell {spec.cell!r}; "
                             f"got {'None' if d is None else f'shape {np.shape(d)}'}")
    u = case.h0 * 0 if dh0_direction is None else np.asarray(dh0_direction, dtype=np.float64)
    w = None if case.c0 is None else (case.c0 * 0 if dc0_direction is None
                                      else np.asarray(dc0_direction, dtype=np.float64))

    def at(step):
        moved = RNNParams(**{n: a + step * np.asarray(getattr(direction, n), dtype=np.float64)
                             for n, a in case.params.as_dict().items()})
        return loss(spec, moved, case.xs, case.targets, case.h0 + step * u,
                    None if w is None else case.c0 + step * w)

    return (at(eps) - at(-eps)) / (2 * eps)
