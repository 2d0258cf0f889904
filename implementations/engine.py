"""The one fast BPTT loop, shared by the NumPy and the hand-written PyTorch backends.

It is written once against ``Ops`` (numpy or torch arrays, any dtype/device):

- forward: the input projection is a GEMM per time chunk into the state buffer;
  the recurrence is then one GEMM-accumulate and one in-place activation per step.
- backward, one time chunk at a time from the last: the output layer and the loss of
  the chunk (the direct errors dl_t/dh_t go straight into the chunk's gradient
  buffer), then per step only what is sequential, dL/dh_t += dL/da_{t+1} W_h and
  dL/da_t = dL/dh_t f'(a_t), then the weight gradients of the chunk as GEMMs.
- full BPTT writes each finished chunk of dL/dh_t into the float64 dhs it returns,
  so no full-length gradient buffer exists in the compute dtype (and none at all in
  float64); inputs are converted to the compute dtype one chunk at a time.
- BPTT(h; h') runs the same segment loop once per block (section 2 of the
  contract), reading the direct errors of every step computed once beforehand.

Nothing here validates input or checks for overflow per step unless ``checked`` is
set: ``Backend`` validates once and, only when a result is not finite, runs again
with ``checked=True`` to name the step.
"""
from __future__ import annotations

import numpy as np

from reference.bptt import blocks
from reference.types import RNNParams
from reference.validation import overflow_error

#: Rows (steps x batch) of one time chunk: the weight-gradient and output-layer
#: GEMMs have this many rows. Large enough for an efficient GEMM, small enough
#: that the chunk buffers stay a small fraction of the states: at most
#: PANEL_ROWS, and at most 1/CHUNKS_MIN of the steps unless that leaves fewer than
#: MIN_PANEL_ROWS rows.
PANEL_ROWS = 2048
MIN_PANEL_ROWS = 64
CHUNKS_MIN = 8


def chunk_steps(T, B):
    K = min(-(-PANEL_ROWS // B), max(-(-T // CHUNKS_MIN), -(-MIN_PANEL_ROWS // B)))
    return max(1, min(T, K))


def forward_states(ops, case, checked=False):
    """(hs_full, params): hs_full is (T+1, B, H) with hs_full[0] = h0."""
    p = ops.params(case.params)
    T, B, H, D = case.T, case.B, case.H, case.D
    K = chunk_steps(T, B)
    hs_full = ops.empty((T + 1, B, H))
    ops.assign_(hs_full[0], ops.asarray(case.h0))
    hs = hs_full[1:]
    # a_t = W_x x_t + b_h for all steps, a chunk at a time, then + W_h h_{t-1} step by step.
    for i in range(0, T, K):
        j = min(i + K, T)
        a_c = hs[i:j].reshape((j - i) * B, H)
        ops.matmul(ops.asarray(case.xs[i:j]).reshape((j - i) * B, D), p.W_x.T, out=a_c)
        a_c += p.b_h
    # W_h^T laid out row-major: with a transposed view, OpenBLAS's AVX-512 kernels
    # run this (B, H) x (H, H) product about 20% slower.
    W_hT = ops.contiguous(p.W_h.T)
    tmp = ops.empty((B, H))
    rows = ops.unbind(hs_full)
    act = ops.activation(case.spec.activation)
    for t in range(1, T + 1):
        ops.addmm_(rows[t], rows[t - 1], W_hT, tmp)   # a_t += W_h h_{t-1}
        act(rows[t])                                  # h_t = f(a_t)
        if checked and not ops.all_finite(rows[t]):
            raise overflow_error("forward pass", t, T)
    return hs_full, p


def forward(ops, case):
    hs_full, p = forward_states(ops, case)
    hs = hs_full[1:]
    T, B, H = case.T, case.B, case.H
    ys = ops.matmul(hs.reshape(T * B, H), p.W_y.T).reshape(T, B, case.O)
    ys += p.b_y
    return hs, ys


class _Output:
    """The output layer and the loss, a time chunk at a time: ``errors(i, j, out)``
    adds the loss terms of the scored steps among i+1..j to ``loss``, their
    gradients to dW_y and db_y, and writes the direct errors e_t = dl_t/dh_t / B of
    steps i+1..j into ``out`` ((j - i), B, H), zero at unscored steps."""

    def __init__(self, ops, case, p, hs, checked):
        self.ops, self.case, self.p, self.hs, self.checked = ops, case, p, hs, checked
        self.first = 0 if case.spec.targets == "every" else case.T - 1   # first scored index
        self.dW_y, self.db_y = ops.zeros(p.W_y.shape), ops.zeros(p.b_y.shape)
        self.loss = 0.0

    def errors(self, i, j, out):
        ops, case, p = self.ops, self.case, self.p
        B, H = case.B, case.H
        k = max(i, self.first)
        if k > i:
            out[:k - i] = 0.0
        if k >= j:
            return
        n = (j - k) * B
        h_c = self.hs[k:j].reshape(n, H)
        ys = ops.matmul(h_c, p.W_y.T)
        ys += p.b_y
        d = ops.targets(case.targets[k:j])
        l_c, dys = ops.loss_and_grad(case.spec.output, ys, d.reshape(n, -1) if case.spec.output == "linear"
                                     else d.reshape(n))
        if self.checked and not (ops.all_finite(dys) and ops.all_finite(l_c)):
            raise overflow_error("loss", self._first_bad_step(k, j), case.T)
        self.loss = self.loss + l_c
        dys *= 1.0 / B
        ops.addmm_(self.dW_y, dys.T, h_c)                          # dW_y += sum_t dy_t^T h_t
        ops.iadd_(self.db_y, dys.sum(0))
        ops.matmul(dys, p.W_y, out=out[k - i:].reshape(n, H))      # e_t = dy_t W_y

    def _first_bad_step(self, k, j):
        """The first step among k+1..j whose loss term or its gradient is not finite
        (the error path only: one step at a time)."""
        ops, case, p = self.ops, self.case, self.p
        for t in range(k, j):
            ys = ops.matmul(self.hs[t], p.W_y.T)
            ys += p.b_y
            l_t, dys = ops.loss_and_grad(case.spec.output, ys, ops.targets(case.targets[t]))
            if not (ops.all_finite(dys) and ops.all_finite(l_t)):
                return t + 1
        return k + 1


def bptt(ops, case, checked=False):
    hs_full, p = forward_states(ops, case, checked)
    spec, T, B, H = case.spec, case.T, case.B, case.H
    K = chunk_steps(T, B)
    out = _Output(ops, case, p, hs_full[1:], checked)
    acc = RNNParams(W_x=ops.zeros(p.W_x.shape), W_h=ops.zeros(p.W_h.shape), b_h=ops.zeros(p.b_h.shape),
                    W_y=out.dW_y, b_y=out.db_y)
    seg = _Segment(ops, case, p, hs_full, acc, K, checked)
    if checked:  # name the first step whose loss overflows: scan the chunks in time order
        probe, buf = _Output(ops, case, p, hs_full[1:], checked), ops.empty((K, B, H))
        for i in range(0, T, K):
            probe.errors(i, min(i + K, T), buf[:min(K, T - i)])

    if case.truncation is None:
        # Full BPTT: one block; the direct errors are made chunk by chunk as the
        # backward pass reaches them, and every finished chunk of dL/dh goes into dhs.
        dhs, in_place = ops.result_empty((T, B, H))
        if in_place:   # dhs has the compute dtype: work in it
            dh0 = seg.run(1, T, out.errors, None, dhs)
        else:
            def emit(i, j, g):
                ops.assign_(dhs[i:j], g)
            dh0 = seg.run(1, T, out.errors, emit, None)
    else:
        dhs = None
        dh0 = ops.zeros((B, H))
        direct = ops.empty((T, B, H))
        for i in range(0, T, K):
            out.errors(i, min(i + K, T), direct[i:i + K])
        for first, e, s in blocks(T, case.truncation):
            def fill(i, j, g, first=first):   # no loss term before the block
                k = min(max(i, first - 1), j)
                if k > i:
                    g[:k - i] = 0.0
                ops.assign_(g[k - i:], direct[k:j])
            carry = seg.run(s, e, fill, None, None)
            if s == 1:                                     # the constant h_{s-1} is h0
                dh0 += carry
    loss = ops.item(out.loss) / B

    if spec.l2:  # + (l2/2) sum |W|^2 in the loss, + l2 W in the gradients
        for name in ("W_x", "W_h", "W_y"):
            w = getattr(case.params, name)
            loss += spec.l2 / 2 * float(np.vdot(w, w))
            ops.axpy_(getattr(acc, name), spec.l2, getattr(p, name))
    return loss, acc, dh0, dhs


class _Segment:
    """Backpropagation through a run of steps, one time chunk at a time."""

    def __init__(self, ops, case, p, hs_full, acc, K, checked):
        self.ops, self.case, self.p, self.hs_full = ops, case, p, hs_full
        self.acc, self.K, self.checked = acc, K, checked
        B, H = case.B, case.H
        self.fprime = ops.activation_derivative(case.spec.activation)
        self.shape = (min(K, case.T), B, H)
        self.g = self.g_rows = None           # dL/dh_t of the chunk (when not computed in place)
        self.da = ops.empty(self.shape)       # dL/da_t of the chunk
        self.da_rows = ops.unbind(self.da)
        self.tmp = ops.empty((B, H))
        self.carry = ops.empty((B, H))

    def run(self, s, e, fill, emit, work):
        """Backpropagate through steps s..e (1-based). ``fill(i, j, g)`` writes the
        direct errors of steps i+1..j into g; on return of each chunk g holds the
        total dL/dh of its steps, passed to ``emit(i, j, g)`` when given. ``work``,
        when given, is a (T, B, H) buffer used for g in place of the chunk buffer.
        The weight gradients are added to ``acc``; returns dL/dh_{s-1}."""
        ops, case, p, acc, K = self.ops, self.case, self.p, self.acc, self.K
        B, H, D, T = case.B, case.H, case.D, case.T
        W_h, tmp = p.W_h, self.tmp
        n = e - s + 1
        carry = None
        for lo in range(((n - 1) // K) * K, -1, -K):
            hi = min(lo + K, n)
            m = hi - lo
            i0 = s - 1 + lo                      # 0-based index of the chunk's first step
            if work is None:
                if self.g is None:
                    self.g = ops.empty(self.shape)
                    self.g_rows = ops.unbind(self.g)
                g, g_rows = self.g[:m], self.g_rows
            else:
                g = work[i0:i0 + m]
                g_rows = ops.unbind(g)
            da, da_rows = self.da[:m], self.da_rows
            fill(i0, i0 + m, g)
            self.fprime(self.hs_full[i0 + 1:i0 + m + 1], da)   # f'(a_t) of the chunk, into da
            for r in range(m - 1, -1, -1):
                if carry is not None:
                    ops.addmm_(g_rows[r], carry, W_h, tmp)     # dL/dh_t += dL/da_{t+1} W_h
                ops.mul_(da_rows[r], g_rows[r])                # dL/da_t = dL/dh_t f'(a_t)
                if self.checked and not ops.all_finite(g_rows[r]):
                    raise overflow_error("backward pass", i0 + r + 1, T)
                carry = da_rows[r]
            if emit is not None:
                emit(i0, i0 + m, g)
            # Weight gradients of this chunk: a_t = W_x x_t + W_h h_{t-1} + b_h.
            rows = m * B
            da2 = da.reshape(rows, H)
            ops.addmm_(acc.W_x, da2.T, ops.asarray(case.xs[i0:i0 + m]).reshape(rows, D))
            ops.addmm_(acc.W_h, da2.T, self.hs_full[i0:i0 + m].reshape(rows, H))
            ops.iadd_(acc.b_h, da2.sum(0))
            if lo > 0:                            # the chunk buffer is reused below
                ops.assign_(self.carry, carry)
                carry = self.carry
        dh = ops.matmul(carry, W_h)               # dL/dh_{s-1}
        if self.checked and not ops.all_finite(dh):
            raise overflow_error("backward pass", s, T)
        return dh
