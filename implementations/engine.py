"""The one fast BPTT loop, shared by the NumPy and the hand-written PyTorch backends.

It is written once against ``Ops`` (numpy or torch arrays, any dtype/device):

- forward: the input projection of all steps is one GEMM into the state buffer;
  the recurrence is then one GEMM-accumulate and one in-place activation per step.
- the output layer and the loss are computed in time chunks (bounded memory),
  writing the direct errors dl_t/dh_t straight into the buffer that becomes dhs.
- backward: per step only what is sequential, dL/dh_t += dL/da_{t+1} W_h and
  dL/da_t = dL/dh_t * f'(a_t); the weight gradients are GEMMs over time chunks.
- BPTT(h; h') runs the same segment loop once per block (section 2 of the contract);
  full BPTT is the single block covering every step, backpropagated in place in dhs.

Nothing here validates input or checks for overflow per step unless ``checked`` is
set: ``Backend`` validates once and, only when a result is not finite, runs again
with ``checked=True`` to name the step.
"""
from __future__ import annotations

import numpy as np

from reference.bptt import blocks
from reference.types import RNNParams
from reference.validation import overflow_error

#: Rows (steps x batch) of one weight-gradient or output-layer panel: large enough
#: for an efficient GEMM, small enough that the chunk buffers stay a fraction of
#: the states.
PANEL_ROWS = 2048


def chunk_steps(T, B):
    return max(1, min(T, -(-PANEL_ROWS // B)))


def forward_states(ops, case, checked=False):
    """(hs_full, params): hs_full is (T+1, B, H) with hs_full[0] = h0."""
    p = ops.params(case.params)
    T, B, H = case.T, case.B, case.H
    xs = ops.asarray(case.xs)
    hs_full = ops.empty((T + 1, B, H))
    hs_full[0] = ops.asarray(case.h0)
    hs = hs_full[1:]
    # a_t = W_x x_t + b_h for every step at once, then + W_h h_{t-1} step by step.
    ops.matmul(xs.reshape(T * B, case.D), p.W_x.T, out=hs.reshape(T * B, H))
    hs += p.b_h
    W_hT = p.W_h.T
    tmp = ops.empty((B, H))
    rows = ops.unbind(hs_full)
    act = ops.activation(case.spec.activation)
    for t in range(1, T + 1):
        ops.addmm_(rows[t], rows[t - 1], W_hT, tmp)   # a_t += W_h h_{t-1}
        act(rows[t])                                  # h_t = f(a_t)
        if checked and not ops.all_finite(rows[t]):
            raise overflow_error("forward pass", t, T)
    return hs_full, p, xs


def forward(ops, case):
    hs_full, p, _ = forward_states(ops, case)
    hs = hs_full[1:]
    T, B, H = case.T, case.B, case.H
    ys = ops.matmul(hs.reshape(T * B, H), p.W_y.T).reshape(T, B, case.O)
    ys += p.b_y
    return hs, ys


def bptt(ops, case, checked=False):
    hs_full, p, xs = forward_states(ops, case, checked)
    spec, T, B, H = case.spec, case.T, case.B, case.H
    hs = hs_full[1:]
    K = chunk_steps(T, B)

    # Output layer and loss over the scored steps, in chunks; the direct errors
    # e_t = dl_t/dh_t / B go into `direct` (zero at unscored steps).
    direct = ops.zeros((T, B, H))
    dW_y, db_y = ops.zeros(p.W_y.shape), ops.zeros(p.b_y.shape)
    loss = 0.0
    first_scored = 1 if spec.targets == "every" else T
    targets = ops.targets(case.targets)
    for i in range(first_scored - 1, T, K):
        j = min(i + K, T)
        n = (j - i) * B
        h_c = hs[i:j].reshape(n, H)
        ys = ops.matmul(h_c, p.W_y.T)
        ys += p.b_y
        l_c, dys = ops.loss_and_grad(spec.output, ys, targets[i:j].reshape(n, -1) if spec.output == "linear"
                                     else targets[i:j].reshape(n))
        if checked and not (ops.all_finite(dys) and ops.all_finite(l_c)):
            raise overflow_error("loss", _first_bad_step(ops, dys.reshape(j - i, -1), i), T)
        loss = loss + l_c
        dys *= 1.0 / B
        ops.addmm_(dW_y, dys.T, h_c)                        # dW_y += sum_t dy_t^T h_t
        db_y += dys.sum(0)
        ops.matmul(dys, p.W_y, out=direct[i:j].reshape(n, H))  # e_t = dy_t W_y
    loss = ops.item(loss) / B

    acc = RNNParams(W_x=ops.zeros(p.W_x.shape), W_h=ops.zeros(p.W_h.shape), b_h=ops.zeros(p.b_h.shape),
                    W_y=dW_y, b_y=db_y)
    fprime_mul = ops.activation_grad(spec.activation)
    scratch = ops.empty((K, B, H))
    if case.truncation is None:
        # Full BPTT: one block, backpropagated in place; `direct` becomes dhs.
        dh0 = _segment(ops, direct, hs_full, xs, 1, p.W_h, fprime_mul, acc, scratch, checked, T)
        dhs = direct
    else:
        dhs = None
        dh0 = ops.zeros((B, H))
        g = ops.empty((min(case.truncation.h, T), B, H))
        for first, e, s in blocks(T, case.truncation):
            seg = g[:e - s + 1]
            seg[:first - s] = 0.0                          # steps before the block: no loss term
            seg[first - s:] = direct[first - 1:e]
            carry = _segment(ops, seg, hs_full, xs, s, p.W_h, fprime_mul, acc, scratch, checked, T)
            if s == 1:                                     # the constant h_{s-1} is h0
                dh0 += carry

    if spec.l2:  # + (l2/2) sum |W|^2 in the loss, + l2 W in the gradients
        for name in ("W_x", "W_h", "W_y"):
            w = getattr(case.params, name)
            loss += spec.l2 / 2 * float(np.vdot(w, w))
            ops.axpy_(getattr(acc, name), spec.l2, getattr(p, name))
    return loss, acc, dh0, dhs


def _segment(ops, g, hs_full, xs, s, W_h, fprime_mul, acc, scratch, checked, T):
    """Backpropagate through steps s .. s+n-1 (n = len(g)). On entry g[i] holds the
    direct error at step s+i; on return the total dL/dh_{s+i} within the segment.
    The weight gradients are added to ``acc``; returns dL/dh_{s-1}."""
    n, B, H = g.shape
    K = len(scratch)
    g_rows = ops.unbind(g)
    h_rows = ops.unbind(hs_full)
    carry = None
    for lo in range(((n - 1) // K) * K, -1, -K):
        hi = min(lo + K, n)
        da = scratch[:hi - lo]
        da_rows = ops.unbind(da)
        for i in range(hi - 1, lo - 1, -1):
            if carry is not None:
                ops.addmm_(g_rows[i], carry, W_h, da_rows[i - lo])   # dL/dh_t += dL/da_{t+1} W_h
            fprime_mul(h_rows[s + i], g_rows[i], da_rows[i - lo])   # dL/da_t = dL/dh_t f'(a_t)
            if checked and not ops.all_finite(g_rows[i]):
                raise overflow_error("backward pass", s + i, T)
            carry = da_rows[i - lo]
        # Weight gradients of this chunk: a_t = W_x x_t + W_h h_{t-1} + b_h.
        rows = (hi - lo) * B
        da2 = da.reshape(rows, H)
        ops.addmm_(acc.W_x, da2.T, xs[s - 1 + lo:s - 1 + hi].reshape(rows, -1))
        ops.addmm_(acc.W_h, da2.T, hs_full[s - 1 + lo:s - 1 + hi].reshape(rows, H))
        ops.iadd_(acc.b_h, da2.sum(0))
        if lo > 0:
            carry = ops.copy(carry)  # the chunk buffer is reused below
    out = ops.matmul(carry, W_h)     # dL/dh_{s-1}
    if checked and not ops.all_finite(out):
        raise overflow_error("backward pass", s, T)
    return out


def _first_bad_step(ops, per_step, offset):
    for k in range(per_step.shape[0]):
        if not ops.all_finite(per_step[k]):
            return offset + k + 1
    return offset + 1
