"""The decay/growth and truncation-error laws of section 6, which hold for Elman cells
(the cell rows that list them in ``laws``, reference.cells).

The laws themselves are computed by ``properties.laws`` (the same code the tests and
the plot use); norms are taken scaled there, so that a gradient of 1e-160 has a norm
of that size rather than the 0 its squares underflow to. Values below
``tolerances.law_floor`` (n tiny / u) are not judged: a correct backend may flush
subnormal numbers to zero (XLA does in float32) or lose their precision gradually, and
there a law's comparison proves nothing either way; every law gets that absolute slack.
"""
from __future__ import annotations

import numpy as np

from reference.bptt import loss_terms, run_forward
from reference.validation import validate_bptt

from . import laws
from .hypothesis_helpers import Problem
from .oracle import reference_spread, summation_floor
from .results import Comparison, Measured, PropertyFailure, backend_bptt, dtype_of, max_abs, need, num
from .tolerances import law_floor, tolerance_for


def _judge_law(p: Problem, tol, norms, law, text, kind, two_sided):
    """Judges the backend's norms (T, B) by lag against a law (T, B) by lag
    (properties.laws): the slack is tol.law per step of lag (relative) plus the law
    floor (absolute: underflow); for a bound only the excess counts, for an exact law
    the difference. Returns the worst ratio, or raises past 1."""
    lag = np.arange(p.T)[:, None]
    slack = law * tol.law * (lag + 1) + law_floor(tol, p.H)
    excess = np.abs(norms - law) if two_sided else np.maximum(norms - law, 0.0)
    ratio = excess / slack                                 # as a fraction of the slack
    k, b = (int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    worst, t = float(ratio[k, b]), p.T - k
    if worst > 1:
        raise PropertyFailure(
            f"{text}: at time step t={t}, batch row b={b}: ||dL/dh_t|| = {num(norms[k, b])} vs {kind} "
            f"{num(law[k, b])}: {worst:.3g} x the allowed slack {float(slack[k, b]):.3g}", error=worst,
            raw={"t": t, "b": b, "norm": float(norms[k, b]), "law": float(law[k, b]), "allowed": float(slack[k, b]),
                 "ratio": worst})
    return Measured(worst, {"t": t, "b": b, "norm": float(norms[k, b]), "law": float(law[k, b])})


def prop_decay_bound(backend, p: Problem):
    """targets="last": ||dL/dh_t[b]|| <= (gamma sigma_max(W_h))^(T-t) ||dL/dh_T[b]||."""
    tol = tolerance_for(dtype_of(backend))
    dhs = need(backend_bptt(backend, p, None), "dhs")
    c = p.gamma * laws.sigma_max(p.params.W_h)
    return _judge_law(p, tol, laws.lag_norms(dhs), laws.decay_bound(dhs, p.params.W_h, p.spec.activation),
                      f"decay bound (gamma*sigma_max = {c:.6g})", "bound (gamma sigma_max)^(T-t) ||dL/dh_T||",
                      two_sided=False)


def prop_orthogonal_law(backend, p: Problem):
    """f = identity, W_h = rho Q (Q orthogonal), targets="last":
    ||dL/dh_t[b]|| = rho^(T-t) ||dL/dh_T[b]|| exactly."""
    tol = tolerance_for(dtype_of(backend))
    dhs = need(backend_bptt(backend, p, None), "dhs")
    rho = laws.sigma_max(p.params.W_h)
    return _judge_law(p, tol, laws.lag_norms(dhs), laws.orthogonal_law(dhs, rho), f"orthogonal law (rho = {rho:.6g})",
                      "law rho^(T-t) ||dL/dh_T||", two_sided=True)


def prop_growth_law(backend, p: Problem):
    """f = identity, any W_h: with B = O = H, W_y = I and the last targets chosen so
    that dL/dh_T is the identity matrix (row b = e_b), the backend's dL/dh_t is the
    matrix W_h^(T-t), and its spectral norm is >= rho(W_h)^(T-t)."""
    tol = tolerance_for(dtype_of(backend))
    dhs = need(backend_bptt(backend, p, None), "dhs")
    W = np.asarray(p.params.W_h, dtype=np.float64)
    want = np.stack([np.linalg.matrix_power(W, p.T - t) for t in range(1, p.T + 1)])
    _, spread = reference_spread(p, tol.u, None)
    cmp = Comparison(tol, dtype_of(backend), max_abs(want))
    cmp.add("dhs (= W_h^(T-t) here)", dhs, want, spread.dhs, time_axis=True)
    agreement = cmp.verdict()
    rho = laws.spectral_radius(W)
    # dL/dh_T is I only up to the rounding of y_T - d_T (~u |y_T|): use the backend's own,
    # sigma_max(dL/dh_T W_h^k) >= sigma_min(dL/dh_T) sigma_max(W_h^k) >= sigma_min(dL/dh_T) rho^k.
    start = float(np.linalg.svd(dhs[-1], compute_uv=False).min())
    worst = (0.0, None)
    for t in range(1, p.T + 1):
        lag = p.T - t
        norm = laws.scaled_sigma_max(dhs[t - 1])
        bound = start * rho ** lag
        # tol.law per step of lag (it already allows ~2 H u per step); the tightest cases drawn
        # (rho = 1, normal W_h) lose ~4 u per step, so a slack of u per step fails correct backends.
        # Below the law floor (underflow, flush to zero) nothing is judged.
        slack = bound * tol.law * (lag + 1) + law_floor(tol, p.H)
        ratio = max(bound - norm, 0.0) / slack
        if ratio > worst[0]:
            worst = (ratio, (t, lag, norm, bound))
        if ratio > 1:
            raise PropertyFailure(
                f"growth law: ||(W_h^T)^k|| >= rho^k fails on the backend's dL/dh_t at time step t={t} "
                f"(k={lag}): spectral norm {num(norm)} < sigma_min(dL/dh_T) rho^k = {num(bound)} (rho = {rho:.6g}): "
                f"the shortfall is {ratio:.3g} x the slack {slack:.3g} (tol.law x (k+1) relative + law floor)",
                error=ratio, raw={"t": t, "k": lag, "norm": norm, "bound": bound, "slack": slack})
    if worst[0] > agreement:
        t, lag, norm, bound = worst[1]
        return Measured(worst[0], {"law": "growth", "t": t, "k": lag, "norm": norm, "bound": bound})
    return agreement


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
    sums_full, sums_cut = summation_floor(p, None), summation_floor(p)
    worst = (0.0, {})
    for n, per_b in sums.items():
        bound = factor * float((e_norm * per_b[None, :]).sum())
        gf, gc = getattr(full.grads, n), getattr(cut.grads, n)
        diff = float(np.linalg.norm(gf - gc))
        # each of the two gradients is within ~rtol of its exact value (normwise, as the agreement
        # properties check), so their difference is within rtol (|gf| + |gc|); x4 for normwise vs max-abs;
        # plus the rounding of their long sums (oracle.summation_floor), which rtol does not cover.
        slack = (4 * tol.rtol * (float(np.linalg.norm(gf)) + float(np.linalg.norm(gc)))
                 + tol.u * (float(np.linalg.norm(sums_full[n])) + float(np.linalg.norm(sums_cut[n]))) + tol.tiny)
        ratio = diff / (bound + slack)   # the truncation error as a fraction of what the bound allows
        raw = {"param": n, "difference": diff, "bound": bound, "rounding_slack": slack, "m": m, "c": c}
        if ratio > worst[0]:
            worst = (ratio, raw)
        if ratio > 1:
            raise PropertyFailure(
                f"truncation error bound for {n} ({tr}, m = h - h' + 1 = {m}, c = {c:.6g}): "
                f"||d{n}(full) - d{n}(h; h')||_F = {diff:.6g} > gamma c^m/(1-c) sum ||e_t|| max ... = "
                f"{bound:.6g} + rounding slack {slack:.3g}: {ratio:.3g} x allowed", error=ratio, raw=raw)
    return Measured(*worst)
