"""How close is close enough: one table per dtype, every entry justified.

A backend's result is compared with the float64 reference array by array:

    |got - want| <= rtol * max|want|              (per time step for arrays with a time axis)
                  + cond * max|want - want~|      (want~: the reference on inputs perturbed
                                                   by a relative u, the dtype's unit roundoff)
                  + atol * scale                  (scale: the largest entry of the whole result)
                  + tiny                          (the dtype's smallest normal number)
                  + slope * u * floor             (saturated tanh/sigmoid: f' known only to ~u absolutely;
                                                   softmax: p - onehot likewise; oracle.rounding_floor)
                  + u * sums                      (the long sums of the parameter gradients and the loss,
                                                   n sum|terms| over their n rows; oracle.summation_floor)

The error reported is relative: max|got - want| / max(max|want|, (atol/rtol) * scale),
i.e. relative to the array, or to the part of the scale below which the absolute
floor decides.

The middle term measures the conditioning of this very case: how far a rounding-
sized change of the inputs moves the answer (long chaotic sequences, cancellation
in the sums over time and batch). In a well-conditioned case it is ~u and the
rtol floor decides; in an ill-conditioned one it grows exactly as much as a
correct backend's rounding error can, and no more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    u: float      # unit roundoff of the dtype: the size of the perturbation that measures conditioning
    rtol: float   # floor, relative to the max-abs of the reference array (of the step, for time arrays)
    cond: float   # multiple of the measured response to a u-sized perturbation of the inputs
    atol: float   # relative to the largest entry of the whole result: values that are ~0 next to it
    fd: float     # central finite differences vs the backend's directional derivative, relative to sum|g||v|
    law: float    # slack of the exact decay/growth laws, relative, per step of lag
    tiny: float   # absolute floor: the smallest normal number of the dtype (below it nothing is exact)
    slope: float  # multiple of u x oracle.rounding_floor: what saturated tanh/sigmoid (f' near 0) and
                  # softmax (p - onehot near 0) leave undetermined, absolute errors no input perturbation shows


TOLERANCES = {
    "float64": Tolerance(
        u=2.0 ** -53,
        # the longest sums run over T*B <= 60*64 = 3840 rows (weight gradients): even a plain
        # running sum's worst case, 3840 u = 4e-13, stays below it (pairwise and GEMM-blocked
        # sums do far better); 1e4x below float32's 6e-8, so a float32 computation fails.
        rtol=1e-12,
        # a backend rounds at every operation, not only its inputs: up to ~sqrt(n) roundings of
        # the measured size per entry (n <= 32 terms per dot product), and a factor 2 for the sign draw.
        cond=64.0,
        # 64 u of the largest entry: entries that cancel to ~0 are compared absolutely.
        atol=64 * 2.0 ** -53,
        # the central difference at eps = 1e-5 is accurate to ~eps^2 |L'''| ~ 1e-10 relative; 1e-8
        # leaves room, and the Richardson estimate |D(eps) - D(2 eps)| covers ill-conditioned cases.
        fd=1e-8,
        # each of the T - t backward steps rounds once per entry (~H u), doubled for the norm.
        law=64 * 2.0 ** -53,
        tiny=float(np.finfo(np.float64).tiny),  # values below 2.2e-308 are subnormal or 0
        # f' = 1 - h^2 or h (1 - h) from a rounded h, and p_d - 1 of softmax: absolute error <= ~2 u;
        # x4 for the roundings of the products that carry it.
        slope=8.0,
    ),
    "float32": Tolerance(
        u=2.0 ** -24,
        # float32 unit roundoff 6e-8 times up to ~1e2 accumulated roundings, and no looser; the
        # sums over thousands of T*B rows, which a running sum gets right only to ~n u, have
        # their own term (u * sums above), sized by each case's own n.
        rtol=1e-5,
        cond=64.0,  # as for float64: ~sqrt(n) roundings per entry of the measured size, x2
        # 64 u of the largest entry (4e-6): also covers values that underflow to 0 in float32.
        atol=64 * 2.0 ** -24,
        # the backend's float32 rounding (~1e-6 of sum|g||v| after conditioning) dominates the
        # float64 finite difference; 1e-5 relative, the float32 rtol of the agreement checks.
        fd=1e-5,
        law=64 * 2.0 ** -24,  # as for float64, with the float32 unit roundoff
        tiny=float(np.finfo(np.float32).tiny),  # values below 1.2e-38 are subnormal or 0 in float32
        slope=8.0,  # as for float64: ~2 u absolute error of f' near saturation, x4
    ),
}


def tolerance_for(dtype: str) -> Tolerance:
    try:
        return TOLERANCES[str(dtype)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {', '.join(TOLERANCES)}") from None


def law_floor(tol: Tolerance, n: int) -> float:
    """The smallest magnitude at which a law compared in this dtype can be judged, for
    vectors of n entries: n * tiny / u. A correct backend may flush subnormal values to
    zero (XLA's CPU code does) or lose their precision gradually: an absolute error of
    up to tiny per entry, up to sqrt(n) tiny in a norm. Above n tiny / u that is below
    u / sqrt(n) of the value, inside the rounding slack of every law; below it a law's
    comparison proves nothing either way (float32: 32 x 1.2e-38 / 6e-8 = 6e-30;
    float64: 32 x 2.2e-308 / 1.1e-16 = 6e-291), and the laws do not judge it."""
    return max(int(n), 1) * tol.tiny / tol.u


def perturb(rng: np.random.Generator, a, u: float):
    """a * (1 + u * s), s in {-1, +1} elementwise: a rounding-sized relative change."""
    a = np.asarray(a, dtype=np.float64)
    return a * (1.0 + u * rng.choice((-1.0, 1.0), size=a.shape))
