"""Truncation, BPTT(h; h') of section 2 of the contract: h >= T is full BPTT, h < T is
the direct block-by-block evaluation, and dhs (dcs) is None exactly when something is cut."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import reference

from .hypothesis_helpers import Problem
from .oracle import agree_with, reference_forward, reference_spread
from .results import backend_bptt, dtype_of, need, param_names
from .tolerances import tolerance_for


def prop_truncation_full(backend, p: Problem):
    """BPTT(h; h') with h >= T, any h', is full BPTT (dhs and dcs included)."""
    tol = tolerance_for(dtype_of(backend))
    assert p.truncation is not None and p.truncation.h >= p.T
    ref, spread = reference_spread(p, tol.u, None)
    return agree_with(backend, p, ref, spread, p.truncation, full=ref)


def direct_truncated(p: Problem):
    """BPTT(h; h') read straight from section 2 of the contract, built from the
    reference's full BPTT: every loss term l_t of block k (steps k h'+1 .. e_k) is
    backpropagated from h_t through h_{s_k}, s_k = max(1, e_k - h + 1), as the full
    BPTT of the sub-sequence s_k .. t started from the constant state (h_{s_k - 1}, and
    c_{s_k - 1} for the LSTM: detached together) and scored at its last step only; the
    parameter gradients add up, l2 is added once, and what reaches the initial state
    (s_k = 1) is dh0 (and dc0). Returns a BPTTResult with dhs and dcs None."""
    spec, T, B, H = p.spec, p.T, p.B, p.H
    h, hp = p.truncation.h, p.truncation.h_prime
    fwd = reference_forward(p)
    h0, c0 = p.initial_state()
    hs = np.concatenate([h0[None], fwd.hs])                                  # hs[k] = h_k
    cs = None if c0 is None else np.concatenate([c0[None], fwd.cs])          # cs[k] = c_k
    one_term = replace(spec, targets="last", l2=0.0)
    names = param_names(p)
    grads = {n: np.zeros(np.shape(getattr(p.params, n))) for n in names}
    dh0, dc0 = np.zeros((B, H)), (None if c0 is None else np.zeros((B, H)))
    loss = 0.0
    for t in (range(1, T + 1) if spec.targets == "every" else [T]):
        k = (t - 1) // hp
        e = min((k + 1) * hp, T)
        s = max(1, e - h + 1)
        sub = replace(p, spec=one_term, xs=p.xs[s - 1:t], targets=p.targets[s - 1:t], h0=hs[s - 1],
                      c0=None if cs is None else cs[s - 1], truncation=None)
        args, kw = sub.bptt_args()
        r = reference.bptt(*args, **kw)
        loss += r.loss
        for n in names:
            grads[n] += getattr(r.grads, n)
        if s == 1:
            dh0 += r.dh0
            if dc0 is not None:
                dc0 += r.dc0
    for n in p.cell.l2:
        w = np.asarray(getattr(p.params, n), dtype=np.float64)
        grads[n] += spec.l2 * w
        loss += spec.l2 / 2 * float((w ** 2).sum())
    return reference.BPTTResult(loss=loss, grads=reference.RNNParams(**grads), dh0=dh0, dhs=None, dc0=dc0, dcs=None)


def prop_truncation_cut(backend, p: Problem):
    """BPTT(h; h') with h < T equals the direct block-by-block evaluation of section 2,
    and dhs (dcs) is None."""
    tol = tolerance_for(dtype_of(backend))
    assert p.truncation is not None and p.truncation.h < p.T
    want = direct_truncated(p)
    # conditioning: how the reference's truncated BPTT responds to a rounding-sized change
    _, spread = reference_spread(p, tol.u)
    return agree_with(backend, p, want, spread)


def prop_dhs_presence(backend, p: Problem):
    """dhs (and the LSTM's dcs) is None exactly when the truncation cuts (h < T);
    otherwise it is the (T, B, H) array (truncation None, or h >= T with any h')."""
    res = backend_bptt(backend, p)  # check_bptt_result: None when cut, the right array otherwise
    if p.truncation is None or p.truncation.h >= p.T:
        need(res, "dhs")
        if len(p.cell.state) > 1:
            need(res, "dcs")
    return None
