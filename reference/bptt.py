"""The reference: float64 BPTT written the way the textbook writes it.

    a_t = W_x x_t + W_h h_{t-1} + b_h          h_t = f(a_t)         y_t = W_y h_t + b_y
    L   = (1/B) sum_{t in S} sum_b l(y_t[b], d_t[b]) + (l2/2)(|W_x|^2 + |W_h|^2 + |W_y|^2)

One forward loop, one backward loop, nothing clever: the other backends are fast,
this one is meant to be checked by eye. Arrays are time-major with the batch on the
second axis; a row vector per batch element, so ``W x`` is written ``x @ W.T``.
Index 0 of the time axis is step t = 1.
"""
from __future__ import annotations

import numpy as np

from .types import BPTTResult, ForwardResult, RNNParams
from .validation import overflow_error, validate_bptt, validate_forward


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


# f and f' (as a function of the pre-activation a). relu'(0) is 0.
ACTIVATION = {
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "sigmoid": (_sigmoid, lambda a: _sigmoid(a) * (1.0 - _sigmoid(a))),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(np.float64)),
    "identity": (lambda a: a, np.ones_like),
}


def _forward(case):
    """Returns the pre-activations as (T, B, H), the states hs (T+1, B, H) with
    hs[0] = h0, and the outputs ys (T, B, O)."""
    W_x, W_h, b_h, W_y, b_y = case.params.W_x, case.params.W_h, case.params.b_h, case.params.W_y, case.params.b_y
    f, _ = ACTIVATION[case.spec.activation]
    T = case.T
    as_ = np.zeros((T, case.B, case.H))
    hs = np.zeros((T + 1, case.B, case.H))
    ys = np.zeros((T, case.B, case.O))
    hs[0] = case.h0
    for t in range(1, T + 1):
        as_[t - 1] = case.xs[t - 1] @ W_x.T + hs[t - 1] @ W_h.T + b_h  # a_t = W_x x_t + W_h h_{t-1} + b_h
        hs[t] = f(as_[t - 1])                                            # h_t = f(a_t)
        ys[t - 1] = hs[t] @ W_y.T + b_y                                  # y_t = W_y h_t + b_y
        if not (np.isfinite(hs[t]).all() and np.isfinite(ys[t - 1]).all()):
            raise overflow_error("forward pass", t, T)
    return as_, hs, ys


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
    loss += spec.l2 / 2 * sum((w ** 2).sum() for w in (p.W_x, p.W_h, p.W_y))
    if not np.isfinite(loss):
        raise FloatingPointError("overflow in the loss: the sum of the loss terms and the l2 term is not finite")
    return loss, dys


def forward(spec, params, xs, h0=None) -> ForwardResult:
    case = validate_forward(spec, params, xs, h0)
    with np.errstate(all="ignore"):
        _, hs, ys = _forward(case)
    return ForwardResult(hs=hs[1:], ys=ys)


def bptt(spec, params, xs, targets, h0=None, truncation=None) -> BPTTResult:
    case = validate_bptt(spec, params, xs, targets, h0, truncation)
    with np.errstate(all="ignore"):
        return _bptt(case)


def _bptt(case):
    spec, p = case.spec, case.params
    T, B = case.T, case.B
    _, fprime = ACTIVATION[spec.activation]
    as_, hs, ys = _forward(case)

    loss, dys = loss_terms(case, ys)

    # The output layer is not recurrent: dL/dW_y = sum_t dy_t^T h_t, dL/db_y = sum_t dy_t.
    dW_y = sum(dys[t - 1].T @ hs[t] for t in range(1, T + 1))
    db_y = dys.sum(axis=(0, 1))

    dW_x, dW_h, db_h = np.zeros_like(p.W_x), np.zeros_like(p.W_h), np.zeros_like(p.b_h)
    dh0 = np.zeros((B, case.H))
    dhs = np.zeros((T, B, case.H)) if case.truncation is None else None
    for first, e, s in blocks(T, case.truncation):
        dh_next = np.zeros((B, case.H))  # what flows into h_t from step t+1, inside this block
        for t in range(e, s - 1, -1):
            dh = dh_next + (dys[t - 1] @ p.W_y if t >= first else 0.0)  # dL/dh_t
            if dhs is not None:
                dhs[t - 1] = dh
            da = dh * fprime(as_[t - 1])        # dL/da_t = dL/dh_t * f'(a_t)
            dW_x += da.T @ case.xs[t - 1]       # a_t = W_x x_t + ...
            dW_h += da.T @ hs[t - 1]            #     ... + W_h h_{t-1} + ...
            db_h += da.sum(axis=0)              #     ... + b_h
            dh_next = da @ p.W_h                # dL/dh_{t-1} through a_t
            if not all(np.isfinite(g).all() for g in (dh, dW_x, dW_h, db_h)):
                raise overflow_error("backward pass", t, T)
        if s == 1:                              # h_0 = h0; a block stopping later adds nothing
            dh0 += dh_next

    grads = RNNParams(W_x=dW_x + spec.l2 * p.W_x, W_h=dW_h + spec.l2 * p.W_h, b_h=db_h,
                      W_y=dW_y + spec.l2 * p.W_y, b_y=db_y)
    if not all(np.isfinite(g).all() for g in (grads.W_y, grads.b_y, dh0)):
        raise FloatingPointError("overflow in the gradients of the output layer or of h0")
    return BPTTResult(loss=float(loss), grads=grads, dh0=dh0, dhs=dhs)
