"""The reference: float64 BPTT written the way the textbook writes it.

    state_t = step(state_{t-1}, x_t)             (the cell: reference.cells)
    y_t     = W_y h_t + b_y
    L       = (1/B) sum_{t in S} sum_b l(y_t[b], d_t[b]) + (l2/2)(|W_x|^2 + |W_h|^2 + |W_y|^2)

For the Elman cell the step is a_t = W_x x_t + W_h h_{t-1} + b_h, h_t = f(a_t); the
LSTM and GRU steps are written out in ``reference.cells`` with their equations.
One forward loop, one backward loop, nothing clever: the other backends are fast,
this one is meant to be checked by eye. Arrays are time-major with the batch on the
second axis; a row vector per batch element, so ``W x`` is written ``x @ W.T``.
Index 0 of the time axis is step t = 1. A state is a tuple: (h,) or, for the LSTM, (h, c).
"""
from __future__ import annotations

import numpy as np

from .types import BPTTResult, ForwardResult, RNNParams
from .validation import overflow_error, validate_bptt, validate_forward


def run_forward(case):
    """The forward pass of a validated case: (states, caches, ys) where states[t] is
    the state tuple at step t (states[0] the initial state), caches[t - 1] what the
    cell's backward step needs of step t, and ys the outputs (T, B, O)."""
    cell, p, act = case.cell, case.params, case.spec.activation
    states, caches = [case.state0], []
    ys = np.zeros((case.T, case.B, case.O))
    for t in range(1, case.T + 1):
        state, cache = cell.step(p, case.xs[t - 1], states[t - 1], act)   # state_t = step(state_{t-1}, x_t)
        states.append(state)
        caches.append(cache)
        ys[t - 1] = state[0] @ p.W_y.T + p.b_y                              # y_t = W_y h_t + b_y
        if not (all(np.isfinite(s).all() for s in state) and np.isfinite(ys[t - 1]).all()):
            raise overflow_error("forward pass", t, case.T)
    return states, caches, ys


def stack_states(states, k):
    """Component k of the states 1..T as a (T, B, H) array (k = 0: h, k = 1: c)."""
    return np.stack([s[k] for s in states[1:]])


def _step_loss(output, y, d):
    """Per batch element: l(y, d) and dl/dy, for one step; y is (B, O)."""
    if output == "linear":                         # l = 1/2 |y - d|^2
        return 0.5 * ((y - d) ** 2).sum(axis=1), y - d
    # softmax + cross-entropy, l = -log softmax(y)[d], with the max shifted out so
    # that huge logits stay finite: log softmax(y) = (y - m) - log sum exp(y - m).
    shifted = y - y.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(d))
    onehot = np.zeros_like(y)
    onehot[rows, d] = 1.0
    return -log_p[rows, d], np.exp(log_p) - onehot   # dl/dy = softmax(y) - onehot(d)


def scored_steps(spec, T):
    """The steps S whose loss terms count (1-based)."""
    return list(range(1, T + 1)) if spec.targets == "every" else [T]


def blocks(T, truncation):
    """BPTT(h; h') as (first, e, s) triples: block k scores steps first..e and
    backpropagates them through h_e .. h_s; h_{s-1} is a constant. Full BPTT is
    the single block (1, T, 1)."""
    if truncation is None:
        return [(1, T, 1)]
    h, hp = truncation.h, truncation.h_prime
    out = []
    for k in range((T + hp - 1) // hp):
        first, e = k * hp + 1, min((k + 1) * hp, T)
        out.append((first, e, max(1, e - h + 1)))
    return out


def loss_terms(case, ys):
    """L (the l2 term included) and the direct errors dL/dy_t, zero at unscored steps."""
    spec, p, T, B = case.spec, case.params, case.T, case.B
    loss = 0.0
    dys = np.zeros_like(ys)
    for t in scored_steps(spec, T):
        l_t, dl_dy = _step_loss(spec.output, ys[t - 1], case.targets[t - 1])
        if not (np.isfinite(l_t).all() and np.isfinite(dl_dy).all()):
            raise overflow_error("loss", t, T)
        loss += l_t.sum() / B
        dys[t - 1] = dl_dy / B
    if spec.l2:   # (l2 = 0 adds no term: not 0 * inf where |W|^2 overflows)
        loss += spec.l2 / 2 * sum((getattr(p, n) ** 2).sum() for n in case.cell.l2)
    if not np.isfinite(loss):
        raise FloatingPointError("overflow in the loss: the sum of the loss terms and the l2 term is not finite")
    return loss, dys


def forward(spec, params, xs, h0=None, c0=None) -> ForwardResult:
    case = validate_forward(spec, params, xs, h0, c0)
    with np.errstate(all="ignore"):
        states, _, ys = run_forward(case)
    cs = stack_states(states, 1) if len(case.state0) > 1 else None
    return ForwardResult(hs=stack_states(states, 0), ys=ys, cs=cs)


def bptt(spec, params, xs, targets, h0=None, truncation=None, c0=None) -> BPTTResult:
    case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
    with np.errstate(all="ignore"):
        return run_bptt(case)


def run_bptt(case, cell=None):
    """BPTT(h; h') of a validated case (full BPTT when case.truncation is None).
    ``cell``: the row whose step and backward step to run, when not the case's own
    (an instrumented copy of it, as properties.oracle.summation_floor uses)."""
    spec, p = case.spec, case.params
    cell = case.cell if cell is None else cell
    T, B, H = case.T, case.B, case.H
    states, caches, ys = run_forward(case)
    hs = stack_states(states, 0)
    n_state = len(case.state0)

    loss, dys = loss_terms(case, ys)

    # The output layer is not recurrent: dL/dW_y = sum_t dy_t^T h_t, dL/db_y = sum_t dy_t.
    grads = {n: np.zeros_like(getattr(p, n)) for n in cell.params}
    grads["W_y"] = np.einsum("tbo,tbh->oh", dys, hs)
    grads["b_y"] = dys.sum(axis=(0, 1))

    d0 = [np.zeros((B, H)) for _ in range(n_state)]                  # dL/d(h0, c0)
    full = case.truncation is None
    totals = [np.zeros((T, B, H)) for _ in range(n_state)] if full else None   # dhs (, dcs)
    for first, e, s in blocks(T, case.truncation):
        dnext = tuple(np.zeros((B, H)) for _ in range(n_state))       # into state_t from step t+1, in this block
        for t in range(e, s - 1, -1):
            dh = dnext[0] + (dys[t - 1] @ p.W_y if t >= first else 0.0)     # dL/dh_t (c_t held fixed)
            dnext, g, total = cell.backward(p, caches[t - 1], (dh,) + dnext[1:], spec.activation)
            for n, v in g.items():
                grads[n] += v
            if full:
                for k in range(n_state):
                    totals[k][t - 1] = total[k]
            if not all(np.isfinite(v).all() for v in (*dnext, *g.values())):
                raise overflow_error("backward pass", t, T)
        if s == 1:                        # state_0 is the constant the block starts from; a later one adds nothing
            for k in range(n_state):
                d0[k] += dnext[k]

    for n in cell.l2:                     # + (l2/2) |W|^2 in the loss, + l2 W in the gradient
        grads[n] = grads[n] + spec.l2 * getattr(p, n)
    result = BPTTResult(loss=float(loss), grads=RNNParams(**grads), dh0=d0[0], dhs=totals[0] if full else None,
                        dc0=d0[1] if n_state > 1 else None, dcs=totals[1] if full and n_state > 1 else None)
    if not all(np.isfinite(g).all() for g in (grads["W_y"], grads["b_y"], *d0)):
        raise FloatingPointError("overflow in the gradients of the output layer or of the initial state")
    return result
