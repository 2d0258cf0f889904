"""Truncation, BPTT(h; h') of section 2 of the contract: h >= T is full BPTT, h < T is
the direct block-by-block evaluation, and dhs is None exactly when something is cut."""
from __future__ import annotations

import numpy as np

import reference
from reference.types import RNNParams, RNNSpec

from .hypothesis_helpers import Problem
from .oracle import agree_with, reference_spread
from .results import PARAM_NAMES, backend_bptt, dtype_of
from .tolerances import tolerance_for


def prop_truncation_full(backend, p: Problem):
    """BPTT(h; h') with h >= T, any h', is full BPTT (dhs included)."""
    tol = tolerance_for(dtype_of(backend))
    assert p.truncation is not None and p.truncation.h >= p.T
    ref, spread = reference_spread(p, tol.u, None)
    return agree_with(backend, p, ref, spread, p.truncation, full=ref)


def direct_truncated(p: Problem):
    """BPTT(h; h') read straight from section 2 of the contract, built from the
    reference's full BPTT: every loss term l_t of block k (steps k h'+1 .. e_k) is
    backpropagated from h_t through h_{s_k}, s_k = max(1, e_k - h + 1), as the full
    BPTT of the sub-sequence s_k .. t started from the constant h_{s_k - 1} and scored
    at its last step only; the parameter gradients add up, l2 is added once, and what
    reaches h_0 (s_k = 1) is dh0. Returns a BPTTResult with dhs None."""
    spec, T, B = p.spec, p.T, p.B
    h, hp = p.truncation.h, p.truncation.h_prime
    states = np.concatenate([(np.zeros((1, B, p.H)) if p.h0 is None else np.asarray(p.h0)[None]),
                             reference.forward(spec, p.params, p.xs, p.h0).hs])  # states[k] = h_k
    one_term = RNNSpec(activation=spec.activation, output=spec.output, targets="last", l2=0.0)
    grads = {n: np.zeros(np.shape(w)) for n, w in p.params.as_dict().items()}
    dh0 = np.zeros((B, p.H))
    loss = 0.0
    for t in (range(1, T + 1) if spec.targets == "every" else [T]):
        k = (t - 1) // hp
        e = min((k + 1) * hp, T)
        s = max(1, e - h + 1)
        r = reference.bptt(one_term, p.params, p.xs[s - 1:t], p.targets[s - 1:t], h0=states[s - 1])
        loss += r.loss
        for n in PARAM_NAMES:
            grads[n] += getattr(r.grads, n)
        if s == 1:
            dh0 += r.dh0
    for n in ("W_x", "W_h", "W_y"):
        w = np.asarray(getattr(p.params, n), dtype=np.float64)
        grads[n] += spec.l2 * w
        loss += spec.l2 / 2 * float((w ** 2).sum())
    return reference.BPTTResult(loss=loss, grads=RNNParams(**grads), dh0=dh0, dhs=None)


def prop_truncation_cut(backend, p: Problem):
    """BPTT(h; h') with h < T equals the direct block-by-block evaluation of section 2,
    and dhs is None."""
    tol = tolerance_for(dtype_of(backend))
    assert p.truncation is not None and p.truncation.h < p.T
    want = direct_truncated(p)
    # conditioning: how the reference's truncated BPTT responds to a rounding-sized change
    _, spread = reference_spread(p, tol.u)
    return agree_with(backend, p, want, spread)


def prop_dhs_presence(backend, p: Problem):
    """dhs is None exactly when the truncation cuts (h < T); otherwise it is the
    (T, B, H) array (truncation None, or h >= T with any h')."""
    backend_bptt(backend, p)  # check_bptt_result checks exactly this
    return None
