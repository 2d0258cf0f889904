"""Real-time recurrent learning: the gradient by forward-mode sensitivities.

An oracle independent of the backward loop: it runs the cell's tangent step (the
jvp of its step, ``reference.cells``) forward in time, for every direction at once.
The directions are the unit vectors of theta, the recurrent parameters (W_x, W_h,
b_h and the cell's own, b_hn for the GRU), and of a perturbation eps_t added to every
state component (h_t, and c_t for the LSTM) where the contract's dhs and dcs measure
it, so that dL/deps_t = dhs[t] (dcs[t]) and dL/deps_0 = dh0 (dc0). The sensitivities
S_t of the state to those directions obey

    S_t = tangent(state_{t-1}, x_t; dtheta, S_{t-1}, deps_t)
    dL/d(theta, eps) = sum_{t in S} e_t S_t^h,        e_t = dl_t/dh_t / B

(S_t^h is the part of S_t for h_t: the loss reads only h). An eps direction moves
its component in every batch row at once; the rows are independent, so each row's
dL/deps is read from its own row, and only the theta directions are summed over
the batch. The cost is O(T N B G H (D + H)) for N = |theta| + (T + 1) |state| H
directions: meant for the small cases of the checks. Truncation BPTT(h; h') is
evaluated block by block from a constant state_{s-1}.
"""
from __future__ import annotations

import numpy as np

from .bptt import blocks, loss_terms, run_forward
from .types import BPTTResult, RNNParams
from .validation import overflow_error, validate_bptt


def rtrl(spec, params, xs, targets, h0=None, truncation=None, c0=None) -> BPTTResult:
    case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
    with np.errstate(all="ignore"):
        return run_rtrl(case)


def _parameter_basis(theta, N):
    """The tangents dp of theta in N directions: direction n < |theta| moves entry n
    of theta (in theta's order, each array row-major) by 1; the others move nothing."""
    dp, offset = {}, 0
    for name, a in theta.items():
        d = np.zeros((N, a.size))
        d[offset:offset + a.size] = np.eye(a.size)
        dp[name] = d.reshape((N,) + a.shape)
        offset += a.size
    return dp


def _state_basis(N, B, H, col):
    """(N, B, H): direction col + j moves entry j of every batch row by 1."""
    d = np.zeros((N, B, H))
    d[col + np.arange(H), :, np.arange(H)] = 1.0
    return d


def run_rtrl(case):
    p, cell, act = case.params, case.cell, case.spec.activation
    T, B, H = case.T, case.B, case.H
    states, _, ys = run_forward(case)
    loss, dys = loss_terms(case, ys)
    es = dys @ p.W_y                                   # e_t = dl_t/dh_t / B, zero off S
    theta = {n: getattr(p, n) for n in cell.recurrent_params}
    n_theta = sum(a.size for a in theta.values())
    K = len(case.state0)                               # state components: h (, c)
    full = case.truncation is None

    g_theta = np.zeros(n_theta)
    d0 = [np.zeros((B, H)) for _ in range(K)]          # dL/d(h0, c0)
    totals = [np.zeros((T, B, H)) for _ in range(K)] if full else None   # dhs (, dcs)
    for first, e, s in blocks(T, case.truncation):
        # Directions: theta, then eps_t of state_{s-1} and, in full BPTT, of state_1 .. state_T;
        # component k of eps_t takes the H directions from col[t, k].
        steps = range(s - 1, T + 1) if full else [s - 1]
        col = {(t, k): n_theta + (j * K + k) * H for j, t in enumerate(steps) for k in range(K)}
        N = n_theta + len(steps) * K * H
        dp = _parameter_basis(theta, N)
        S = tuple(_state_basis(N, B, H, col[s - 1, k]) for k in range(K))   # state_{s-1} + eps_{s-1}: a constant
        for t in range(s, e + 1):
            deps = tuple(_state_basis(N, B, H, col[t, k]) if (t, k) in col else 0.0 for k in range(K))
            S = cell.tangent(p, case.xs[t - 1], states[t - 1], dp, S, deps, act)
            if not all(np.isfinite(c).all() for c in S):
                raise overflow_error("RTRL sensitivities", t, T)
            if t >= first:
                g = np.einsum("bh,nbh->nb", es[t - 1], S[0])      # e_t S_t^h, per direction and batch row
                g_theta += g[:n_theta].sum(axis=1)
                for (u, k), c in col.items():
                    if u == 0:
                        d0[k] += g[c:c + H].T
                    elif full:
                        totals[k][u - 1] += g[c:c + H].T

    grads, offset = {}, 0
    for name, a in theta.items():
        grads[name] = g_theta[offset:offset + a.size].reshape(a.shape)
        offset += a.size
    grads["W_y"] = np.einsum("tbo,tbh->oh", dys, np.stack([st[0] for st in states[1:]]))   # not recurrent
    grads["b_y"] = dys.sum(axis=(0, 1))
    for n in cell.l2:                                  # + (l2/2) |W|^2 in the loss
        grads[n] = grads[n] + case.spec.l2 * getattr(p, n)
    return BPTTResult(loss=float(loss), grads=RNNParams(**grads), dh0=d0[0], dhs=totals[0] if full else None,
                      dc0=d0[1] if K > 1 else None, dcs=totals[1] if full and K > 1 else None)
