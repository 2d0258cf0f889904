"""The decay/growth and truncation-error laws of section 6, which hold for Elman cells."""
from __future__ import annotations

import numpy as np

from reference.bptt import loss_terms, run_forward
from reference.validation import validate_bptt

from . import laws
from .hypothesis_helpers import Problem
from .oracle import reference_spread
from .results import Comparison, PropertyFailure, backend_bptt, dtype_of, max_abs
from .tolerances import tolerance_for


def _law_failure(text, t, b, got, bound, tol, dtype, kind="bound"):
    rel = abs(got - bound) / bound if bound > 0 else float("inf")
    return PropertyFailure(f"{text}: at time step t={t}, batch row b={b}: ||dL/dh_t|| = {got!r} vs {kind} "
                           f"{bound!r} (relative excess {rel:.3g}; slack {tol.law:.3g} per step of lag, "
                           f"{dtype})", error=rel)


def prop_decay_bound(backend, p: Problem):
    """targets="last": ||dL/dh_t[b]|| <= (gamma sigma_max(W_h))^(T-t) ||dL/dh_T[b]||."""
    tol = tolerance_for(dtype_of(backend))
    dhs = backend_bptt(backend, p, None).dhs
    c = p.gamma * laws.sigma_max(p.params.W_h)
    norms = np.linalg.norm(dhs, axis=2)  # (T, B)
    lag = (p.T - np.arange(1, p.T + 1))[:, None]
    law = c ** lag * norms[-1]
    bad = np.argwhere(norms > law * (1 + tol.law * (lag + 1)) + tol.tiny)
    if bad.size:
        i, b = (int(k) for k in bad[0])
        raise _law_failure(f"decay bound (gamma*sigma_max = {c:.6g})", i + 1, b, float(norms[i, b]),
                           float(law[i, b]), tol, dtype_of(backend))
    return 0.0  # no excess over the bound


def prop_orthogonal_law(backend, p: Problem):
    """f = identity, W_h = rho Q (Q orthogonal), targets="last":
    ||dL/dh_t[b]|| = rho^(T-t) ||dL/dh_T[b]|| exactly."""
    tol = tolerance_for(dtype_of(backend))
    dhs = backend_bptt(backend, p, None).dhs
    rho = laws.sigma_max(p.params.W_h)
    norms = np.linalg.norm(dhs, axis=2)
    worst = 0.0
    for t in range(1, p.T + 1):
        lag = p.T - t
        law = rho ** lag * norms[-1]
        err = np.abs(norms[t - 1] - law)
        allowed = law * tol.law * (lag + 1) + tol.tiny  # tiny: values that underflow in the dtype
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(law > 0, err / np.where(law > 0, law, 1), err)
        worst = max(worst, float(rel.max(initial=0.0)))
        for b in np.flatnonzero(err > allowed):
            raise _law_failure(f"orthogonal law (rho = {rho:.6g})", t, int(b), float(norms[t - 1, b]),
                               float(law[b]), tol, dtype_of(backend), kind="law rho^(T-t) ||dL/dh_T||")
    return worst


def prop_growth_law(backend, p: Problem):
    """f = identity, any W_h: with B = O = H, W_y = I and the last targets chosen so
    that dL/dh_T is the identity matrix (row b = e_b), the backend's dL/dh_t is the
    matrix W_h^(T-t), and its spectral norm is >= rho(W_h)^(T-t)."""
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p, None)
    W = np.asarray(p.params.W_h, dtype=np.float64)
    want = np.stack([np.linalg.matrix_power(W, p.T - t) for t in range(1, p.T + 1)])
    _, spread = reference_spread(p, tol.u, None)
    cmp = Comparison(tol, dtype_of(backend), max_abs(want))
    worst = cmp("dhs (= W_h^(T-t) here)", got.dhs, want, spread.dhs, time_axis=True)
    rho = laws.spectral_radius(W)
    # dL/dh_T is I only up to the rounding of y_T - d_T (~u |y_T|): use the backend's own,
    # sigma_max(dL/dh_T W_h^k) >= sigma_min(dL/dh_T) sigma_max(W_h^k) >= sigma_min(dL/dh_T) rho^k.
    start = float(np.linalg.svd(got.dhs[-1], compute_uv=False).min())
    for t in range(1, p.T + 1):
        lag = p.T - t
        norm = laws.sigma_max(got.dhs[t - 1])
        # tol.law per step of lag (it already allows ~2 H u per step); the tightest cases drawn
        # (rho = 1, normal W_h) lose ~4 u per step, so a slack of u per step fails correct backends.
        floor = start * rho ** lag * (1 - tol.law * (lag + 1))
        if norm < floor - tol.tiny:  # below the smallest normal number the dtype cannot tell
            raise PropertyFailure(
                f"growth law: ||(W_h^T)^k|| >= rho^k fails on the backend's dL/dh_t at time step t={t} "
                f"(k={lag}): spectral norm {norm!r} < sigma_min(dL/dh_T) rho^k = {start * rho ** lag!r} "
                f"(rho = {rho:.6g}; slack {tol.law:.3g} x (k+1))", error=(floor - norm) / floor)
    return worst


def prop_truncation_error_bound(backend, p: Problem):
    """c = gamma sigma_max(W_h) < 1: ||dW(full) - dW(h; h')||_F is within the geometric
    bound of section 6 (W_h with ||h_{s-1}||, W_x with ||x_s||, b_h with 1)."""
    tol = tolerance_for(dtype_of(backend))
    tr = p.truncation
    full, cut = backend_bptt(backend, p, None), backend_bptt(backend, p)
    c = p.gamma * laws.sigma_max(p.params.W_h)
    assert c < 1 and tr.h < p.T
    m = tr.h - tr.h_prime + 1
    case = validate_bptt(p.spec, p.params, p.xs, p.targets, p.h0)
    with np.errstate(all="ignore"):
        states, _, ys = run_forward(case)
        hs = np.stack([s[0] for s in states])  # hs[0] = h0
        _, dys = loss_terms(case, ys)
    e_norm = np.linalg.norm(dys @ np.asarray(p.params.W_y), axis=2)      # (T, B): ||e_t[b]||
    sums = {"W_h": np.linalg.norm(hs[:-1], axis=2).max(axis=0),         # max_s ||h_{s-1}[b]||
            "W_x": np.linalg.norm(p.xs, axis=2).max(axis=0),             # max_s ||x_s[b]||
            "b_h": np.ones(p.B)}
    factor = p.gamma * c ** m / (1 - c)
    worst = 0.0
    for n, per_b in sums.items():
        bound = factor * float((e_norm * per_b[None, :]).sum())
        gf, gc = getattr(full.grads, n), getattr(cut.grads, n)
        diff = float(np.linalg.norm(gf - gc))
        # each of the two gradients is within ~rtol of its exact value (normwise, as the agreement
        # properties check), so their difference is within rtol (|gf| + |gc|); x4 for normwise vs max-abs.
        slack = 4 * tol.rtol * (float(np.linalg.norm(gf)) + float(np.linalg.norm(gc)))
        worst = max(worst, diff / bound if bound > 0 else (0.0 if diff == 0 else float("inf")))
        if diff > bound + slack:
            raise PropertyFailure(
                f"truncation error bound for {n} ({tr}, m = h - h' + 1 = {m}, c = {c:.6g}): "
                f"||d{n}(full) - d{n}(h; h')||_F = {diff:.6g} > gamma c^m/(1-c) sum ||e_t|| max ... = "
                f"{bound:.6g} (+ rounding slack {slack:.3g})", error=diff / bound if bound > 0 else None)
    return worst
