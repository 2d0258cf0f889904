"""The one fast BPTT loop, shared by the NumPy and the hand-written PyTorch backends,
for every cell of ``reference.cells.CELLS``.

It is written once against ``Ops`` (numpy or torch arrays, any dtype/device); what
varies with the cell is its kernel (``implementations.kernels``: the cell's buffers,
its step and its backward step), looked up by the row's name. The row says the rest:
the state (h, or h and c), the gate blocks, the extra parameters, the l2 set.

- forward: the input projections of a time chunk are GEMMs into the kernel's
  pre-activation buffer; the recurrence is then the kernel's step: one (B, G H)
  product h_{t-1} W_h^T per step and the cell's elementwise work.
- backward, one time chunk at a time from the last: the output layer and the loss of
  the chunk (the direct errors dl_t/dh_t go straight into the chunk's gradient
  buffer), the kernel's derivative factors of the chunk in one vectorised pass, then
  per step only what is sequential, the kernel's backward step (for the Elman cell
  dL/dh_t += dL/da_{t+1} W_h and dL/da_t = dL/dh_t f'(a_t)), then the weight
  gradients of the chunk as GEMMs.
- full BPTT writes each finished chunk of dL/dh_t (and dL/dc_t) into the float64 dhs
  (and dcs) it returns, so no full-length gradient buffer exists in the compute
  dtype (and none at all in float64); inputs are converted to the compute dtype one
  chunk at a time.
- BPTT(h; h') runs the same segment loop once per block (section 2 of the
  contract), reading the direct errors of every step computed once beforehand; a
  segment starts with nothing flowing in, so the LSTM's h and c are detached together.

Nothing here validates input or checks for overflow per step unless ``checked`` is
set: ``Backend`` validates once and, only when a result is not finite, runs again
with ``checked=True`` to name the step.
"""
from __future__ import annotations

import numpy as np

from reference.bptt import blocks
from reference.types import RNNParams
from reference.validation import overflow_error

from .kernels import KERNELS

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


def kernel_for(ops, case, p, K, keep):
    """The kernel of the case's cell (``implementations.kernels``)."""
    try:
        cls = KERNELS[case.cell.name]
    except KeyError:
        raise NotImplementedError(f"cell {case.cell.name!r}") from None
    return cls(ops, case, p, K, keep)


def forward_states(ops, case, checked=False, keep=True):
    """The forward pass: (kernel, params). ``kernel.states[k]`` is (T+1, B, H) per state
    component (h, and c for the LSTM), index 0 the initial state; with ``keep`` the
    kernel also holds every step's gate activations for the backward pass."""
    p = ops.params(case.params)
    T, B = case.T, case.B
    K = chunk_steps(T, B)
    kern = kernel_for(ops, case, p, K, keep)
    xs = ops.chunks(case.xs)
    # The input projections of a chunk are one GEMM, all of them first where the kernel
    # keeps every step (interleaved with the recurrence, torch's CPU GEMMs run about
    # 10% slower at small sizes); else a chunk at a time, into the kernel's ring buffer.
    ahead = kern.n == T
    for i in range(0, T, K) if ahead else ():
        kern.project(i, min(i + K, T), xs(i, min(i + K, T)))
    step = kern.step
    for i in range(0, T, K):
        j = min(i + K, T)
        if not ahead:
            kern.project(i, j, xs(i, j))
        for t in range(i + 1, j + 1):
            step(t)                           # the recurrence, one (B, G H) product per step
            if checked and not all(ops.all_finite(s[t]) for s in kern.state_rows):
                raise overflow_error("forward pass", t, T)
    return kern, p


def forward(ops, case):
    kern, p = forward_states(ops, case, keep=False)
    hs = kern.states[0][1:]
    T, B, H = case.T, case.B, case.H
    ys = ops.matmul(hs.reshape(T * B, H), p.W_y.T).reshape(T, B, case.O)
    ys += p.b_y
    return hs, ys, (kern.states[1][1:] if len(kern.states) > 1 else None)


class _Output:
    """The output layer and the loss, a time chunk at a time: ``errors(i, j, out)``
    adds the loss terms of the scored steps among i+1..j to ``loss``, their
    gradients to dW_y and db_y, and writes the direct errors e_t = dl_t/dh_t / B of
    steps i+1..j into ``out`` ((j - i), B, H), zero at unscored steps."""

    def __init__(self, ops, case, p, hs, checked):
        self.ops, self.case, self.p, self.hs, self.checked = ops, case, p, hs, checked
        self.first = 0 if case.spec.targets == "every" else case.T - 1   # first scored index
        self.dW_y, self.db_y = ops.zeros(p.W_y.shape), ops.zeros(p.b_y.shape)
        self.targets = ops.chunks(case.targets)
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
        d = self.targets(k, j)
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
            l_t, dys = ops.loss_and_grad(case.spec.output, ys, self.targets(t, t + 1)[0])
            if not (ops.all_finite(dys) and ops.all_finite(l_t)):
                return t + 1
        return k + 1


def bptt(ops, case, checked=False):
    """(loss, grads, dh0, dhs, dc0, dcs); dc0 and dcs are None but for the LSTM, dhs and
    dcs None when truncation cuts."""
    kern, p = forward_states(ops, case, checked)
    spec, cell, T, B, H = case.spec, case.cell, case.T, case.B, case.H
    n_state = len(kern.states)
    K = chunk_steps(T, B)
    hs = kern.states[0][1:]
    out = _Output(ops, case, p, hs, checked)
    grads = {n: ops.zeros(getattr(p, n).shape) for n in cell.recurrent_params}
    acc = RNNParams(**grads, W_y=out.dW_y, b_y=out.db_y)
    seg = _Segment(ops, case, kern, acc, K, checked)
    if checked:  # name the first step whose loss overflows: scan the chunks in time order
        probe, buf = _Output(ops, case, p, hs, checked), ops.empty((K, B, H))
        for i in range(0, T, K):
            probe.errors(i, min(i + K, T), buf[:min(K, T - i)])

    if case.truncation is None:
        # Full BPTT: one block; the direct errors are made chunk by chunk as the
        # backward pass reaches them, and every finished chunk of the total state
        # gradients goes into dhs (and dcs).
        totals = [ops.result_empty((T, B, H)) for _ in range(n_state)]
        results = [r for r, _ in totals]
        if totals[0][1]:   # the results have the compute dtype: work in them
            d0 = seg.run(1, T, out.errors, None, results)
        else:
            def emit(i, j, g):
                for r, gk in zip(results, g):
                    ops.assign_(r[i:j], gk)
            d0 = seg.run(1, T, out.errors, emit, None)
    else:
        results = [None] * n_state
        d0 = [ops.zeros((B, H)) for _ in range(n_state)]
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
            if s == 1:                                     # the constant state_{s-1} is the initial state
                for d, c in zip(d0, carry):
                    ops.iadd_(d, c)
    loss = ops.item(out.loss) / B

    if spec.l2:  # + (l2/2) sum |W|^2 in the loss, + l2 W in the gradients
        for name in cell.l2:
            w = getattr(case.params, name)
            loss += spec.l2 / 2 * float(np.vdot(w, w))
            ops.axpy_(getattr(acc, name), spec.l2, getattr(p, name))
    dc0, dcs = (d0[1], results[1]) if n_state > 1 else (None, None)
    return loss, acc, d0[0], results[0], dc0, dcs


class _Segment:
    """Backpropagation through a run of steps, one time chunk at a time; the cell's
    part of each step is the kernel's."""

    def __init__(self, ops, case, kern, acc, K, checked):
        self.ops, self.case, self.kern, self.acc, self.K, self.checked = ops, case, kern, acc, K, checked
        self.shape = (min(K, case.T), case.B, case.H)
        self.n_state = len(kern.states)
        self.g = self.g_rows = None           # total dL/dstate of the chunk (when not computed in place)
        self.xs = ops.chunks(case.xs)
        kern.backward_buffers()

    def run(self, s, e, fill, emit, work):
        """Backpropagate through steps s..e (1-based). ``fill(i, j, g)`` writes the
        direct errors of steps i+1..j into g, the chunk's dL/dh; on return of each
        chunk ``g`` (one array per state component: dL/dh, and dL/dc for the LSTM)
        holds the total gradients of its steps, passed to ``emit(i, j, gs)`` when
        given. ``work``, when given, is one (T, B, H) buffer per state component used
        in place of the chunk buffers. The weight gradients are added to ``acc``;
        returns dL/dstate_{s-1}, a tuple."""
        ops, kern, K, T, checked = self.ops, self.kern, self.K, self.case.T, self.checked
        n = e - s + 1
        kern.begin()
        back = kern.back
        for lo in range(((n - 1) // K) * K, -1, -K):
            hi = min(lo + K, n)
            m = hi - lo
            i0 = s - 1 + lo                      # 0-based index of the chunk's first step
            if work is None:
                if self.g is None:
                    self.g = [ops.empty(self.shape) for _ in range(self.n_state)]
                    self.g_rows = [ops.unbind(g) for g in self.g]
                g, g_rows = [g[:m] for g in self.g], self.g_rows
            else:
                g = [w[i0:i0 + m] for w in work]
                g_rows = [ops.unbind(gk) for gk in g]
            fill(i0, i0 + m, g[0])
            kern.prepare(i0, m)                  # the chunk's derivative factors, vectorised
            for r in range(m - 1, -1, -1):
                back(g_rows, r)                  # the cell's backward step
                if checked and not (all(ops.all_finite(gk[r]) for gk in g_rows)
                                         and ops.all_finite(kern.dz_rows[r])):
                    raise overflow_error("backward pass", i0 + r + 1, T)
            if emit is not None:
                emit(i0, i0 + m, g)
            kern.grads(i0, m, self.xs(i0, i0 + m), self.acc)   # the chunk's weight gradients: GEMMs
            if lo > 0:                            # the chunk buffers are reused below
                kern.keep_carry()
        d = kern.carry_out()
        if self.checked and not all(ops.all_finite(dk) for dk in d):
            raise overflow_error("backward pass", s, T)
        return d
