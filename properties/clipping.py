"""Gradient clipping of a backend's gradient (by global norm and by value)."""
from __future__ import annotations

import numpy as np

import reference
from reference.types import RNNParams

from .oracle import reference_spread, rounding_floor, summation_floor
from .results import Comparison, PropertyFailure, backend_bptt, dtype_of, max_abs, num, param_names
from .tolerances import tolerance_for


def prop_clipping(backend, case):
    """Global-norm clipping of the backend's gradient keeps the direction and caps
    the norm; clipping by value caps every entry and leaves the small ones; both
    agree with clipping the reference gradient."""
    p, frac_norm, frac_value = case
    names = param_names(p)
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p).grads
    flat = np.concatenate([np.ravel(getattr(got, n)) for n in names])
    norm = float(np.linalg.norm(flat))
    max_norm = frac_norm * norm if norm > 0 else 1.0
    clipped, reported = reference.clip_by_global_norm(got, max_norm)
    u64 = 2.0 ** -53
    # float64 reductions of <= ~3000 entries: a relative 64 u is ample and catches any real slip.
    if abs(reported - norm) > 64 * u64 * norm:
        raise PropertyFailure(f"clip_by_global_norm reported norm {num(reported)}; the global norm is {num(norm)}")
    new_norm = reference.global_norm(clipped)
    if new_norm > max_norm * (1 + 64 * u64):
        raise PropertyFailure(f"clipped global norm {num(new_norm)} exceeds max_norm {num(max_norm)}")
    s = min(1.0, max_norm / norm) if norm > 0 else 1.0
    for n in names:
        g, cg = getattr(got, n), getattr(clipped, n)
        dev = np.abs(cg - s * g)
        if (dev > 64 * u64 * np.abs(s * g) + 1e-300).any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(dev)), dev.shape))
            raise PropertyFailure(f"clipping changed the direction: clipped grads.{n}[{idx}] = {num(cg[idx])}, "
                                  f"but scale {num(s)} x {num(g[idx])} = {num(s * g[idx])}")
    amax = float(np.abs(flat).max(initial=0.0))
    v = frac_value * amax if amax > 0 else 1.0
    byval = reference.clip_by_value(got, v)
    for n in names:
        g, cg = getattr(got, n), getattr(byval, n)
        if (np.abs(cg) > v).any() or not np.array_equal(cg[np.abs(g) <= v], g[np.abs(g) <= v]) \
                or not np.array_equal(cg[np.abs(g) > v], np.sign(g[np.abs(g) > v]) * v):
            raise PropertyFailure(f"clip_by_value({num(v)}) of grads.{n} is not the entrywise clamp")
    # Against clipping the reference gradient (projection on a ball: 1-Lipschitz).
    ref, spread = reference_spread(p, tol.u)
    ref_p = RNNParams(**{n: getattr(ref.grads, n) - getattr(spread.grads, n) for n in names})
    rc, _ = reference.clip_by_global_norm(ref.grads, max_norm)
    rcp, _ = reference.clip_by_global_norm(ref_p, max_norm)
    cmp = Comparison(tol, dtype_of(backend), max_abs(*ref.grads.as_dict().values()))
    floor, sums = rounding_floor(p), summation_floor(p)
    for n in names:   # the rounding of the gradient, scaled by the clipping (s <= 1) or not
        cmp.add(f"clipped grads.{n}", getattr(clipped, n), getattr(rc, n),
                np.abs(getattr(rc, n) - getattr(rcp, n)) + getattr(spread.grads, n), floor=floor.get(n, 0.0),
                sums=sums.get(n, 0.0))
    return cmp.verdict("from the clipped reference gradient")
