"""State Jacobians and gradient clipping.

dh_t/dh_{t-1} = diag(f'(a_t)) W_h, and dh_t/dh_s is their product for k = t..s+1;
its norm is what vanishes or explodes with the lag t - s.
"""
from __future__ import annotations

import numpy as np

from .bptt import run_forward
from .cells import ACTIVATION
from .types import RNNParams
from .validation import validate_forward


def step_jacobians(spec, params, xs, h0=None):
    """(T, B, H, H): J[t-1] = dh_t/dh_{t-1} = diag(f'(a_t)) W_h (Elman cells)."""
    case = validate_forward(spec, params, xs, h0)
    if spec.cell != "elman":
        raise ValueError(f"spec.cell must be 'elman' for step_jacobians (the Elman Jacobian diag(f'(a_t)) W_h); "
                         f"got {spec.cell!r}")
    with np.errstate(all="ignore"):
        _, caches, _ = run_forward(case)
    as_ = np.stack([a for _, _, a in caches])
    return ACTIVATION[spec.activation].fprime(as_)[..., None] * case.params.W_h


def state_jacobian(spec, params, xs, t, s, h0=None):
    """(B, H, H): dh_t/dh_s for 0 <= s <= t <= T (h_0 = h0); the identity when s = t."""
    T = np.shape(xs)[0] if np.ndim(xs) >= 1 else 0
    if not (0 <= s <= t <= T):
        raise ValueError(f"t and s must satisfy 0 <= s <= t <= T = {T}; got t = {t}, s = {s}")
    J = step_jacobians(spec, params, xs, h0)
    out = np.broadcast_to(np.eye(J.shape[-1]), J.shape[1:]).copy()
    for k in range(s + 1, t + 1):          # dh_t/dh_s = J_t J_{t-1} ... J_{s+1}
        out = J[k - 1] @ out
    return out


def global_norm(grads: RNNParams) -> float:
    return float(np.sqrt(sum(float((np.asarray(g, dtype=np.float64) ** 2).sum()) for g in grads.as_dict().values())))


def clip_by_global_norm(grads: RNNParams, max_norm: float):
    """Scale every gradient by min(1, max_norm / |g|): the direction is kept and the
    global norm is at most max_norm. Returns (clipped, norm before clipping)."""
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a finite number > 0; got {max_norm!r}")
    norm = global_norm(grads)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return RNNParams(**{n: np.asarray(g, dtype=np.float64) * scale for n, g in grads.as_dict().items()}), norm


def clip_by_value(grads: RNNParams, clip_value: float) -> RNNParams:
    """Clamp every entry to [-clip_value, clip_value]."""
    if not (np.isfinite(clip_value) and clip_value > 0):
        raise ValueError(f"clip_value must be a finite number > 0; got {clip_value!r}")
    return RNNParams(**{n: np.clip(np.asarray(g, dtype=np.float64), -clip_value, clip_value)
                        for n, g in grads.as_dict().items()})
