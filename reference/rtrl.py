"""Real-time recurrent learning: the gradient by forward-mode sensitivities.

An oracle independent of the backward loop. With theta = (W_x, W_h, b_h) and a
perturbation eps_t added to each state (h~_t = h_t + eps_t, so dL/deps_t = dL/dh_t
and dL/deps_0 = dL/dh0), the sensitivities S_t = dh~_t/d(theta, eps) obey

    S_t = diag(f'(a_t)) (da_t/dtheta|explicit + W_h S_{t-1}) + d eps_t/d(theta, eps)

and dL/d(theta, eps) = sum_{t in S} e_t S_t with e_t = dl_t/dh_t / B.
The cost is O(T B H^2 (H D + H^2 + T H)): meant for the small cases of the checks.
Truncation BPTT(h; h') is evaluated block by block from a constant h_{s-1}.
"""
from __future__ import annotations

import numpy as np

from .bptt import blocks, loss_terms, run_forward
from .cells import ACTIVATION
from .types import BPTTResult, RNNParams
from .validation import overflow_error, validate_bptt


def rtrl(spec, params, xs, targets, h0=None, truncation=None, c0=None) -> BPTTResult:
    case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
    with np.errstate(all="ignore"):
        return run_rtrl(case)


def _explicit(H, v):
    """d a_t / d W for a_t = W v (per batch row): (B, H, H*len(v)), row i holds v
    in the columns of W's row i."""
    B, n = v.shape
    out = np.zeros((B, H, H, n))
    for i in range(H):
        out[:, i, i, :] = v
    return out.reshape(B, H, H * n)


def run_rtrl(case):
    if case.spec.cell != "elman":
        raise NotImplementedError(f"cell {case.spec.cell!r}: RTRL of gated cells")
    p, T, B, H, D = case.params, case.T, case.B, case.H, case.D
    fprime = ACTIVATION[case.spec.activation].fprime
    states, caches, ys = run_forward(case)
    as_ = np.stack([a for _, _, a in caches])
    hs = np.stack([s[0] for s in states])
    loss, dys = loss_terms(case, ys)
    es = dys @ p.W_y                                   # e_t = dl_t/dh_t / B, zero off S
    full = case.truncation is None
    n_theta = H * D + H * H + H
    eye = np.broadcast_to(np.eye(H), (B, H, H))

    g_theta = np.zeros(n_theta)
    dh0 = np.zeros((B, H))
    dhs = np.zeros((T, B, H)) if full else None
    for first, e, s in blocks(T, case.truncation):
        # Columns: theta, then eps_{s-1}, then (full BPTT only) eps_s .. eps_T.
        n_eps = (T + 1) if full else 1
        S = np.zeros((B, H, n_theta + n_eps * H))
        S[:, :, n_theta:n_theta + H] = eye            # h~_{s-1} = h_{s-1} + eps_{s-1}, a constant
        for t in range(s, e + 1):
            dA = p.W_h @ S                            # W_h S_{t-1}
            dA[:, :, :H * D] += _explicit(H, case.xs[t - 1])                  # d/dW_x
            dA[:, :, H * D:H * D + H * H] += _explicit(H, hs[t - 1])          # d/dW_h
            dA[:, :, H * D + H * H:n_theta] += eye                            # d/db_h
            S = fprime(as_[t - 1])[:, :, None] * dA
            if full:
                col = n_theta + t * H
                S[:, :, col:col + H] += eye           # + d eps_t
            if not np.isfinite(S).all():
                raise overflow_error("RTRL sensitivities", t, T)
            if t >= first:
                g = np.einsum("bh,bhn->bn", es[t - 1], S)
                g_theta += g[:, :n_theta].sum(axis=0)
                if s == 1:
                    dh0 += g[:, n_theta:n_theta + H]
                if full:
                    dhs += g[:, n_theta + H:].reshape(B, T, H).transpose(1, 0, 2)

    dW_x = g_theta[:H * D].reshape(H, D)
    dW_h = g_theta[H * D:H * D + H * H].reshape(H, H)
    db_h = g_theta[H * D + H * H:]
    dW_y = np.einsum("tbo,tbh->oh", dys, hs[1:])      # the output layer is not recurrent
    l2 = case.spec.l2
    grads = RNNParams(W_x=dW_x + l2 * p.W_x, W_h=dW_h + l2 * p.W_h, b_h=db_h,
                      W_y=dW_y + l2 * p.W_y, b_y=dys.sum(axis=(0, 1)))
    return BPTTResult(loss=float(loss), grads=grads, dh0=dh0, dhs=dhs)
