"""The engine's cell kernels: what of a cell's step and backward step the fast engine
(``implementations.engine``) runs, one class per row of ``reference.cells.CELLS``.

The engine owns the time loop, the time chunks, the output layer and loss, the
truncation blocks, the results and the checks; a kernel owns only the cell's
buffers and its small pieces, written against ``Ops`` (numpy or torch, any dtype
or device):

- ``project(i, j, x)``: the input projections of steps i+1..j, one GEMM for the
  chunk, into the kernel's pre-activation buffer (bias included);
- ``step(t)``: the recurrence of step t, the gates of the step in one (B, G H)
  product h_{t-1} W_h^T;
- ``prepare(i0, m)``: for the backward pass, the derivative factors of the m steps
  i0+1..i0+m, vectorised over the whole chunk;
- ``back(g, r)``: the backward step of the chunk's row r: adds what flows into the
  step's state from step t+1 (one (B, G H) x (G H, H) product and, for the gated
  cells, elementwise terms) to the total gradients ``g[k][r]`` of its state
  components, and leaves dL/d(pre-activations) of the step in ``dz_rows[r]``;
- ``grads(i0, m, x, acc)``: the weight gradients of the chunk as large GEMMs;
- ``keep_carry()`` before the chunk buffers are reused, ``carry_out()`` for what
  reaches the state the segment starts from.

Notation as in ``reference.cells``: row vectors per batch element, gate blocks in
PyTorch's order, sigma the logistic sigmoid, ``*`` elementwise.
"""
from __future__ import annotations


class Kernel:
    """What every cell kernel shares: the state buffers, (T+1, B, H) per state
    component with index 0 the initial state, and the GEMMs of the weight gradients
    for a cell whose pre-activations are z_t = W_x x_t + W_h h_{t-1} + b_h."""

    gated = True   # keeps per-step gate buffers (the Elman cell computes in its state buffer)

    def __init__(self, ops, case, p, K, keep):
        """``keep``: keep every step's gate activations for a backward pass (else only
        one chunk's, for a forward pass)."""
        self.ops, self.case, self.p, self.K = ops, case, p, K
        T, B, H = case.T, case.B, case.H
        self.T, self.B, self.H, self.D = T, B, H, case.D
        self.GH = case.cell.G * H
        self.n = T if keep or not self.gated else min(K, T)   # rows of the per-step buffers (a ring of one chunk without keep)
        self.states = []
        for s0 in case.state0:
            s = ops.empty((T + 1, B, H))
            ops.assign_(s[0], ops.asarray(s0))
            self.states.append(s)
        self.state_rows = [ops.unbind(s) for s in self.states]
        self.hs_full = self.states[0]
        # What the backward steps carry from one to the next: [what flows into the step
        # before (None at a segment's last step), the chunk's first step index]. A list
        # the closures share, so that no closure refers to the kernel (a reference
        # cycle would keep every buffer alive until the garbage collector runs).
        self.st = [None, 0]

    def end_forward(self):
        """Free what only the forward pass needs (its step closure holds its weights)."""
        self.step = None

    def backward_buffers(self):
        """dL/dz of one chunk, (K, B, G H), and its rows."""
        self.end_forward()
        self.dz = self.ops.empty((min(self.K, self.T), self.B, self.GH))
        self.dz_rows = self.ops.unbind(self.dz)

    def begin(self):
        """A new segment: nothing flows in from after its last step."""
        self.st[0] = None

    def grads(self, i0, m, x, acc):
        """dW_x += sum_t dz_t^T x_t, dW_h += sum_t dz_t^T h_{t-1}, db_h += sum_t dz_t over
        the chunk's steps."""
        ops = self.ops
        rows = m * self.B
        dz = self.dz[:m].reshape(rows, self.GH)
        ops.addmm_(acc.W_x, dz.T, x.reshape(rows, self.D))
        ops.addmm_(acc.W_h, dz.T, self.hs_full[i0:i0 + m].reshape(rows, self.H))
        ops.iadd_(acc.b_h, dz.sum(0))

    def keep_carry(self):
        """Copy what flows into the previous chunk out of the chunk buffer, which the
        next ``prepare`` overwrites."""
        self.ops.assign_(self.carry_buf, self.st[0])
        self.st[0] = self.carry_buf


class ElmanKernel(Kernel):
    """a_t = W_x x_t + W_h h_{t-1} + b_h, h_t = f(a_t). The pre-activations are computed
    in place in the state buffer; f'(a_t) is written through h_t."""

    gated = False

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        self.rows = self.state_rows[0]
        # W_h^T laid out row-major: with a transposed view, OpenBLAS's AVX-512 kernels
        # run the (B, H) x (H, H) product about 20% slower.
        W_hT = ops.contiguous(p.W_h.T)
        self.tmp = ops.empty((self.B, self.H))
        rows, tmp, act, addmm_ = self.rows, self.tmp, ops.activation(case.spec.activation), ops.addmm_

        def step(t):   # a closure: the per-step call is the only Python the recurrence runs
            addmm_(rows[t], rows[t - 1], W_hT, tmp)   # a_t += W_h h_{t-1}
            act(rows[t])                              # h_t = f(a_t)
        self.step = step

    def project(self, i, j, x):
        a = self.hs_full[i + 1:j + 1].reshape((j - i) * self.B, self.H)
        self.ops.matmul(x.reshape((j - i) * self.B, self.D), self.p.W_x.T, out=a)
        a += self.p.b_h

    def backward_buffers(self):
        super().backward_buffers()
        ops = self.ops
        self.fprime = ops.activation_derivative(self.case.spec.activation)
        self.carry_buf = ops.empty((self.B, self.H))
        addmm_, mul, W_h, tmp, dz_rows, st = ops.addmm_, ops.mul, self.p.W_h, self.tmp, self.dz_rows, self.st

        def back(g, r):
            g = g[0][r]
            if st[0] is not None:
                addmm_(g, st[0], W_h, tmp)        # dL/dh_t += dL/da_{t+1} W_h
            da = dz_rows[r]
            mul(da, g, da)                        # dL/da_t = dL/dh_t f'(a_t)
            st[0] = da
        self.back = back

    def prepare(self, i0, m):
        self.fprime(self.hs_full[i0 + 1:i0 + m + 1], self.dz[:m])   # f'(a_t), into dz

    def carry_out(self):
        return (self.ops.matmul(self.st[0], self.p.W_h),)            # dL/dh_{s-1}


def _gate_blocks(ops, a, H, order, negate):
    """The gate blocks (rows k H .. (k+1) H) of a gate-stacked array in ``order``, those
    in ``negate`` negated: the forward pass's own copy of W_x, W_h or b_h."""
    return ops.concat([-a[k * H:(k + 1) * H] if k in negate else a[k * H:(k + 1) * H] for k in order])


class GatedKernel(Kernel):
    """What the LSTM and GRU kernels share. The forward pass keeps the gate activations
    gate-major, (T, G, B, H), so that every elementwise operation of a step works on
    contiguous (B, H) blocks; the backward pass keeps a chunk's dL/dz gate-outer,
    (DZ, K, B, H), so that the weight gradients are one batched GEMM per run of gate
    blocks over the whole chunk. The per-step products see a (B, G H) row: h_{t-1}
    W_h^T is added into the step's gates, and the step's dL/dz is copied into one
    row for dL/dz_t W_h.

    The forward pass keeps the gates in its own order ``ORDER`` (a permutation of
    the row's gate blocks that puts the sigmoid gates together) with its own copy of
    the weights, the sigmoid gates' blocks (``SIGMOID``, in the row's order) negated
    where ``ops.gate_sigmoid_`` takes -z. The backward pass has ``DZ`` slots per step
    in the row's order; ``XGRAD`` and ``HGRAD`` are the runs (first slot, end slot,
    first block) of slots that are the gradients of the blocks of W_x (and b_h) and of
    W_h, and the per-step product takes the slots of ``HGRAD`` with W_h itself."""

    ORDER: tuple = ()
    SIGMOID: tuple = ()
    DZ: int = 0
    XGRAD: tuple = ()
    HGRAD: tuple = ()

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        B, H, n, G, D = self.B, self.H, self.n, case.cell.G, self.D
        negate = self.SIGMOID if ops.gate_sigmoid_negated else ()
        self.W_xf = _gate_blocks(ops, p.W_x, H, self.ORDER, negate).reshape(G, H, D).swapaxes(1, 2)  # (G, D, H)
        self.W_hTf = ops.contiguous(_gate_blocks(ops, p.W_h, H, self.ORDER, negate).T)  # (H, G H), row-major
        # (the step closures of the subclasses hold W_hTf; ``end_forward`` frees them)
        self.b_f = _gate_blocks(ops, p.b_h, H, self.ORDER, negate).reshape(G, 1, H)
        self.Z = ops.empty((n, G, B, H))           # W_x x_t + b_h, then the gates (ORDER), gate-major
        self.z_rows = ops.unbind(self.Z)
        self.gate_rows = [ops.unbind(self.Z[:, q]) for q in range(G)]
        # One chunk's dL/dz, gate-outer; until the backward pass, one chunk's input
        # projections, one (K B, H) block per gate.
        k = min(K, case.T)
        self.dz = ops.empty((max(self.DZ, G), k, B, H))
        self.ptmp = self.dz[:G].reshape(G, k * B, H)

    def project(self, i, j, x):
        ops, B, m = self.ops, self.B, j - i
        k = i % self.n
        pt = self.ptmp[:, :m * B]
        ops.matmul(x.reshape(m * B, self.D), self.W_xf, out=pt)   # one GEMM per gate for the whole chunk
        ops.add(pt.reshape(-1, m, B, self.H).swapaxes(0, 1), self.b_f, self.Z[k:k + m])   # + b_h, gate-major

    def end_forward(self):
        self.step = self.W_xf = self.W_hTf = self.b_f = self.ptmp = None

    def backward_buffers(self):
        self.end_forward()
        ops, B, H = self.ops, self.B, self.H
        self.dz_rows = ops.unbind(self.dz.swapaxes(0, 1))
        G = sum(hi - lo for lo, hi, _ in self.HGRAD)
        self.carry_buf = ops.empty((B, G * H))     # dL/dz_{t+1} as one row, for dL/dz_{t+1} W_h
        self.carry_g = self.carry_buf.reshape(B, G, H).swapaxes(0, 1)
        self.tmp = ops.empty((B, H))

    def keep_carry(self):
        pass   # the carry lives in carry_buf, not in the chunk buffer

    def grads(self, i0, m, x, acc):
        """Per gate block: dW_x += sum_t dz_t^T x_t, dW_h += sum_t dz_t^T h_{t-1},
        db_h += sum_t dz_t (sums over the chunk's steps and the batch)."""
        ops, H, D, G = self.ops, self.H, self.D, self.case.cell.G
        rows = m * self.B
        dz = self.dz[:, :m].reshape(-1, rows, H)
        for lo, hi, k in self.XGRAD:   # (hi - lo, H, rows) x (rows, D): a GEMM per slot
            ops.iadd_(acc.W_x.reshape(G, H, D)[k:k + hi - lo], ops.matmul(dz[lo:hi].swapaxes(1, 2), x.reshape(rows, D)))
        hp = self.hs_full[i0:i0 + m].reshape(rows, H)
        for lo, hi, k in self.HGRAD:
            ops.iadd_(acc.W_h.reshape(G, H, H)[k:k + hi - lo], ops.matmul(dz[lo:hi].swapaxes(1, 2), hp))
        s = dz.sum(1)                              # (DZ, H)
        for lo, hi, k in self.XGRAD:
            ops.iadd_(acc.b_h.reshape(G, H)[k:k + hi - lo], s[lo:hi])
        return s


class LSTMKernel(GatedKernel):
    """[i; f; g; o] = [sigma; sigma; tanh; sigma](z_t), z_t = W_x x_t + W_h h_{t-1} + b_h;
    c_t = f c_{t-1} + i g; h_t = o tanh(c_t). The kernel's gate order is o, i, f, g:
    the sigmoid gates first (one call per step), and in the backward pass the gate
    that dL/dh_t scales (o) apart from the three that dL/dc_t scales. Kept per step:
    the gate activations (T, 4, B, H) and tanh(c_t) (T, B, H)."""

    ORDER = (3, 0, 1, 2)     # o, i, f, g
    SIGMOID = (0, 1, 3)      # i, f, o (row order)
    DZ = 4                   # dL/dz_t in the row's order i, f, g, o
    XGRAD = HGRAD = ((0, 4, 0),)

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        B, H, n = self.B, self.H, self.n
        self.TC = ops.empty((n, B, H))             # tanh(c_t)
        tmp4, tmp = ops.empty((B, 4 * H)), ops.empty((B, H))
        tmp4_g = tmp4.reshape(B, 4, H).swapaxes(0, 1)   # W_h h_{t-1}, gate-major view
        # Per step, the views it works on (made once: a view costs as much as a small op).
        hs, cs = self.state_rows
        views = list(zip(self.z_rows, ops.unbind(self.Z[:, :3]), *self.gate_rows,
                         ops.unbind(self.TC)))   # row (t - 1) % n: step t
        matmul, add, gate_sigmoid_, tanh, tanh_, mul = ops.matmul, ops.add, ops.gate_sigmoid_, ops.tanh, ops.tanh_, ops.mul
        W_hTf = self.W_hTf

        def step(t):
            z, sig, o, i, f, g, tc = views[(t - 1) % n]
            h_prev, c_prev, h, c = hs[t - 1], cs[t - 1], hs[t], cs[t]
            matmul(h_prev, W_hTf, out=tmp4)   # W_h h_{t-1}: the four gates in one product
            add(z, tmp4_g, z)                 # z_t
            gate_sigmoid_(sig)                # o, i, f
            tanh_(g)                          # g
            mul(f, c_prev, c)                 # c_t = f c_{t-1} + i g
            mul(i, g, tmp)
            add(c, tmp, c)
            tanh(c, tc)
            mul(o, tc, h)                     # h_t = o tanh(c_t)
        self.step = step

    def backward_buffers(self):
        # dz per step, slots i, f, g, o: the factors that turn (dL/dc_t, dL/dh_t) into
        # dL/dz_t, made over the chunk by ``prepare``, then dL/dz_t.
        super().backward_buffers()
        ops, B, H = self.ops, self.B, self.H
        k = min(self.K, self.T)
        self.A = ops.empty((k, B, H))
        self.dc_next = dc_next = ops.empty((B, H))   # dL/dc_t through c_{t+1} = f_{t+1} c_t + ...
        addmm_, mul, add, assign_ = ops.addmm_, ops.mul, ops.add, ops.assign_
        W_h, tmp, carry_buf, carry_g, st = self.p.W_h, self.tmp, self.carry_buf, self.carry_g, self.st
        rows = list(zip(self.dz_rows, ops.unbind(self.dz[3]), ops.unbind(self.dz[:3].swapaxes(0, 1)),
                        ops.unbind(self.A)))
        f_rows = self.gate_rows[2]

        def back(g, r):
            dh, dc = g[0][r], g[1][r]
            dz, dz_o, dz_ifg, A = rows[r]
            carry = st[0]
            if carry is not None:
                addmm_(dh, carry_buf, W_h, tmp)        # dL/dh_t += dL/dz_{t+1} W_h
            mul(dh, A, dc)                             # dL/dc_t = dL/dh_t o (1 - tanh^2 c_t)
            if carry is not None:
                add(dc, dc_next, dc)                   #          + dL/dc_{t+1} f_{t+1}
            mul(dz_o, dh, dz_o)                        # dL/dz_t: the o block
            mul(dz_ifg, dc, dz_ifg)                    #          the i, f, g blocks
            assign_(carry_g, dz)                       # as one row, for the product of step t-1
            mul(dc, f_rows[st[1] + r], dc_next)        # into c_{t-1}: dL/dc_t f_t
            st[0] = carry_buf
        self.back = back

    def prepare(self, i0, m):
        """dz = [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2)] (times dL/dc_t) and
        [tanh(c_t) o (1 - o)] (times dL/dh_t); A = o (1 - tanh(c_t)^2), the factor that
        turns dL/dh_t into its part of dL/dc_t."""
        ops = self.ops
        mul, sub, mul_ = ops.mul, ops.sub, ops.mul_
        self.st[1] = i0
        Zc = self.Z[i0:i0 + m].swapaxes(0, 1)     # gate-outer view
        o, i, g = Zc[0], Zc[1], Zc[3]               # (Zc[2] is f, read through Zc[1:3])
        tc, A = self.TC[i0:i0 + m], self.A[:m]
        dz = self.dz[:, :m]
        d_i, d_f, d_g, d_o = dz[0], dz[1], dz[2], dz[3]
        for s, d in ((Zc[1:3], dz[0:2]), (o, d_o)):
            mul(s, s, d)
            sub(s, d, d)                              # s (1 - s) for i, f and o
        mul_(d_o, tc)
        mul_(d_i, g)
        mul_(d_f, self.states[1][i0:i0 + m])
        mul(g, g, d_g)
        ops.one_minus_(d_g)
        mul_(d_g, i)
        mul(tc, tc, A)
        ops.one_minus_(A)
        mul_(A, o)

    def carry_out(self):
        return self.ops.matmul(self.carry_buf, self.p.W_h), self.ops.copy(self.dc_next)  # dL/dh_{s-1}, dL/dc_{s-1}


class GRUKernel(GatedKernel):
    """r, z = sigma(W_x{r,z} x_t + W_h{r,z} h_{t-1} + b_{r,z}), hn = W_hn h_{t-1} + b_hn,
    n = tanh(W_xn x_t + b_n + r hn), h_t = (1 - z) n + z h_{t-1}. Kept per step: the gate
    activations (T, 3, B, H) and hn (T, B, H). dL/dz has four slots, [da_r, da_z, dhn,
    da_n]: dL/d(W_h h_{t-1}) is [da_r, da_z, dhn], dL/d(W_x x_t + b_h) is [da_r, da_z, da_n]."""

    ORDER = (0, 1, 2)        # r, z, n: the row's own
    SIGMOID = (0, 1)         # r, z
    DZ = 4
    XGRAD = ((0, 2, 0), (3, 4, 2))
    HGRAD = ((0, 3, 0),)

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        B, H, n = self.B, self.H, self.n
        self.HN = ops.empty((n, B, H))             # W_hn h_{t-1} + b_hn
        gh, tmp = ops.empty((B, 3 * H)), ops.empty((B, H))   # W_h h_{t-1}
        gh_rz, gh_n = gh[:, :2 * H].reshape(B, 2, H).swapaxes(0, 1), gh[:, 2 * H:]
        hs = self.state_rows[0]
        views = list(zip(ops.unbind(self.Z[:, :2]), *self.gate_rows, ops.unbind(self.HN)))
        matmul, add, gate_sigmoid_, tanh_, mul, sub = ops.matmul, ops.add, ops.gate_sigmoid_, ops.tanh_, ops.mul, ops.sub
        W_hTf, b_hn = self.W_hTf, p.b_hn

        def step(t):
            rz, r, z, n_, hn = views[(t - 1) % n]
            h_prev, h = hs[t - 1], hs[t]
            matmul(h_prev, W_hTf, out=gh)    # W_h h_{t-1}: the three gates in one product
            add(rz, gh_rz, rz)
            gate_sigmoid_(rz)                # r, z
            add(gh_n, b_hn, hn)              # hn = W_hn h_{t-1} + b_hn
            mul(r, hn, tmp)
            add(n_, tmp, n_)
            tanh_(n_)                        # n = tanh(W_xn x_t + b_n + r hn)
            sub(h_prev, n_, h)               # h_t = n + z (h_{t-1} - n)
            mul(h, z, h)
            add(h, n_, h)
        self.step = step

    def backward_buffers(self):
        super().backward_buffers()
        ops, B, H = self.ops, self.B, self.H
        self.dh_z = dh_z = ops.empty((B, H))      # dL/dh_t z_t, into h_{t-1} directly
        addmm_, mul, add, assign_ = ops.addmm_, ops.mul, ops.add, ops.assign_
        W_h, tmp, carry_buf, carry_g, st = self.p.W_h, self.tmp, self.carry_buf, self.carry_g, self.st
        dz = self.dz.swapaxes(0, 1)               # (K, 4, B, H)
        rows = list(zip(ops.unbind(dz[:, :3]), ops.unbind(dz[:, 1::2]), ops.unbind(dz[:, 0::2]), ops.unbind(dz[:, 3:])))
        z_rows = self.gate_rows[1]

        def back(g, r):
            dh = g[0][r]
            dgh, dz_zn, dz_rhn, dz_n = rows[r]
            if st[0] is not None:
                addmm_(dh, carry_buf, W_h, tmp)    # dL/dh_t += dL/d(W_h h_t) W_h
                add(dh, dh_z, dh)                  #          + dL/dh_{t+1} z_{t+1}
            mul(dz_zn, dh, dz_zn)                  # da_z, da_n
            mul(dz_rhn, dz_n, dz_rhn)              # da_r, dhn
            assign_(carry_g, dgh)                  # [da_r, da_z, dhn] as one row
            mul(dh, z_rows[st[1] + r], dh_z)
            st[0] = carry_buf
        self.back = back

    def prepare(self, i0, m):
        """dz = [hn r (1 - r), (h_{t-1} - n) z (1 - z), r, (1 - z)(1 - n^2)]: then
        da_n = dL/dh_t (1 - z)(1 - n^2), da_r = da_n hn r (1 - r), dhn = da_n r,
        da_z = dL/dh_t (h_{t-1} - n) z (1 - z)."""
        ops = self.ops
        mul, sub, mul_ = ops.mul, ops.sub, ops.mul_
        self.st[1] = i0
        Zc = self.Z[i0:i0 + m].swapaxes(0, 1)     # gate-outer view
        r, z, n = Zc[0], Zc[1], Zc[2]
        dz = self.dz[:, :m]
        d_r, d_z, d_hn, d_n = dz[0], dz[1], dz[2], dz[3]
        mul(r, r, d_r)
        sub(r, d_r, d_r)
        mul_(d_r, self.HN[i0:i0 + m])
        mul(z, z, d_z)
        sub(z, d_z, d_z)
        sub(self.hs_full[i0:i0 + m], n, d_n)      # d_n, d_hn as scratch until set below
        mul_(d_z, d_n)
        mul(n, n, d_n)
        ops.one_minus_(d_n)
        mul(d_n, z, d_hn)
        sub(d_n, d_hn, d_n)
        ops.assign_(d_hn, r)

    def grads(self, i0, m, x, acc):
        s = super().grads(i0, m, x, acc)
        self.ops.iadd_(acc.b_hn, s[2])             # db_hn = sum_t dhn_t

    def carry_out(self):
        dh = self.ops.matmul(self.carry_buf, self.p.W_h)       # dL/dh_{s-1}
        self.ops.iadd_(dh, self.dh_z)
        return (dh,)


#: The kernel of each row of ``reference.cells.CELLS``, by the row's name.
KERNELS = {"elman": ElmanKernel, "lstm": LSTMKernel, "gru": GRUKernel}
