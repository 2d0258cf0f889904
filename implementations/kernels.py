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
        self.carry = None

    def backward_buffers(self):
        """dL/dz of one chunk, (K, B, G H), and its rows."""
        self.dz = self.ops.empty((min(self.K, self.T), self.B, self.GH))
        self.dz_rows = self.ops.unbind(self.dz)

    def begin(self):
        """A new segment: nothing flows in from after its last step."""
        self.carry = None

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
        self.ops.assign_(self.carry_buf, self.carry)
        self.carry = self.carry_buf


class ElmanKernel(Kernel):
    """a_t = W_x x_t + W_h h_{t-1} + b_h, h_t = f(a_t). The pre-activations are computed
    in place in the state buffer; f'(a_t) is written through h_t."""

    gated = False

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        self.rows = self.state_rows[0]
        # W_h^T laid out row-major: with a transposed view, OpenBLAS's AVX-512 kernels
        # run the (B, H) x (H, H) product about 20% slower.
        self.W_hT = ops.contiguous(p.W_h.T)
        self.tmp = ops.empty((self.B, self.H))
        self.act = ops.activation(case.spec.activation)
        rows, W_hT, tmp, act, addmm_ = self.rows, self.W_hT, self.tmp, self.act, ops.addmm_

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
        addmm_, mul_, W_h, tmp, dz_rows = ops.addmm_, ops.mul_, self.p.W_h, self.tmp, self.dz_rows

        def back(g, r):
            g = g[0][r]
            if self.carry is not None:
                addmm_(g, self.carry, W_h, tmp)   # dL/dh_t += dL/da_{t+1} W_h
            da = dz_rows[r]
            mul_(da, g)                           # dL/da_t = dL/dh_t f'(a_t)
            self.carry = da
        self.back = back

    def prepare(self, i0, m):
        self.fprime(self.hs_full[i0 + 1:i0 + m + 1], self.dz[:m])   # f'(a_t), into dz


    def carry_out(self):
        return (self.ops.matmul(self.carry, self.p.W_h),)            # dL/dh_{s-1}


class LSTMKernel(Kernel):
    """[i; f; g; o] = [sigma; sigma; tanh; sigma](z_t), z_t = W_x x_t + W_h h_{t-1} + b_h;
    c_t = f c_{t-1} + i g; h_t = o tanh(c_t). Kept per step: the gate activations
    (T, B, 4H) and tanh(c_t) (T, B, H)."""

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        B, H, n = self.B, self.H, self.n
        self.Z = ops.empty((n, B, 4 * H))       # z_t, then the gates [i, f, g, o] of step t
        self.TC = ops.empty((n, B, H))          # tanh(c_t)
        Z4 = self.Z.reshape(n, B, 4, H)
        self.z_rows = ops.unbind(self.Z)
        self.gate_rows = [ops.unbind(Z4[:, :, k]) for k in range(4)]   # i, f, g, o of each step
        self.tc_rows = ops.unbind(self.TC)
        self.W_hT = ops.contiguous(p.W_h.T)     # (H, 4H), row-major (see ElmanKernel)
        self.tmp4 = ops.empty((B, 4 * H))
        self.tmp = ops.empty((B, H))

    def project(self, i, j, x):
        k = i % self.n
        z = self.Z[k:k + j - i].reshape((j - i) * self.B, self.GH)
        self.ops.matmul(x.reshape((j - i) * self.B, self.D), self.p.W_x.T, out=z)
        z += self.p.b_h

    def step(self, t):
        ops, H = self.ops, self.H
        k = (t - 1) % self.n
        z, (i, f, g, o) = self.z_rows[k], (rows[k] for rows in self.gate_rows)
        h_prev, c_prev = self.state_rows[0][t - 1], self.state_rows[1][t - 1]
        h, c, tc, tmp = self.state_rows[0][t], self.state_rows[1][t], self.tc_rows[k], self.tmp
        ops.addmm_(z, h_prev, self.W_hT, self.tmp4)   # z_t += W_h h_{t-1}: the four gates in one product
        ops.tanh(g, tmp)                              # g = tanh(z_g), set aside while
        ops.sigmoid_(z)                               # sigma of the whole row (i, f, o; g's block is redone)
        ops.assign_(g, tmp)
        ops.mul(f, c_prev, c)                         # c_t = f c_{t-1} + i g
        ops.mul(i, g, tmp)
        ops.iadd_(c, tmp)
        ops.tanh(c, tc)
        ops.mul(o, tc, h)                             # h_t = o tanh(c_t)

    def backward_buffers(self):
        super().backward_buffers()
        ops, B, H = self.ops, self.B, self.H
        k = min(self.K, self.T)
        self.A = ops.empty((k, B, H))
        self.A_rows = ops.unbind(self.A)
        dz4 = self.dz.reshape(k, B, 4, H)
        self.dz_ifg_rows = ops.unbind(dz4[:, :, :3])
        self.dz_o_rows = ops.unbind(dz4[:, :, 3])
        self.carry_buf = ops.empty((B, 4 * H))
        self.dc_next = ops.empty((B, H))        # dL/dc_t through c_{t+1} = f_{t+1} c_t + ...

    def prepare(self, i0, m):
        """dz holds, per step, the factors that turn (dL/dc_t, dL/dh_t) into dL/dz_t:
        [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2)] (times dL/dc_t) and tanh(c_t) o (1 - o)
        (times dL/dh_t); A = o (1 - tanh(c_t)^2) turns dL/dh_t into its part of dL/dc_t."""
        ops, B, H = self.ops, self.B, self.H
        self.i0 = i0
        Z4 = self.Z[i0:i0 + m].reshape(m, B, 4, H)
        i, f, g, o = Z4[:, :, 0], Z4[:, :, 1], Z4[:, :, 2], Z4[:, :, 3]
        tc = self.TC[i0:i0 + m]
        dz4 = self.dz[:m].reshape(m, B, 4, H)
        ops.mul(Z4, Z4, dz4)
        ops.sub(Z4, dz4, dz4)                         # s (1 - s) for the sigmoid gates
        ops.mul_(dz4[:, :, 0], g)
        ops.mul_(dz4[:, :, 1], self.states[1][i0:i0 + m])
        dg = dz4[:, :, 2]
        ops.mul(g, g, dg)
        ops.one_minus_(dg)
        ops.mul_(dg, i)
        ops.mul_(dz4[:, :, 3], tc)
        A = self.A[:m]
        ops.mul(tc, tc, A)
        ops.one_minus_(A)
        ops.mul_(A, o)

    def back(self, g, r):
        ops = self.ops
        dh, dc = g[0][r], g[1][r]
        if self.carry is not None:
            ops.addmm_(dh, self.carry, self.p.W_h, self.tmp)   # dL/dh_t += dL/dz_{t+1} W_h
        ops.mul(dh, self.A_rows[r], dc)                        # dL/dc_t = dL/dh_t o (1 - tanh^2 c_t)
        if self.carry is not None:
            ops.iadd_(dc, self.dc_next)                        #          + dL/dc_{t+1} f_{t+1}
        ops.mul_(self.dz_ifg_rows[r], dc[:, None])             # dL/dz_t: the i, f, g blocks
        ops.mul_(self.dz_o_rows[r], dh)                        #          the o block
        ops.mul(dc, self.gate_rows[1][self.i0 + r], self.dc_next)   # into c_{t-1}: dL/dc_t f_t
        self.carry = self.dz_rows[r]

    def carry_out(self):
        return self.ops.matmul(self.carry, self.p.W_h), self.ops.copy(self.dc_next)   # dL/dh_{s-1}, dL/dc_{s-1}


class GRUKernel(Kernel):
    """r, z = sigma(W_x{r,z} x_t + W_h{r,z} h_{t-1} + b_{r,z}), hn = W_hn h_{t-1} + b_hn,
    n = tanh(W_xn x_t + b_n + r hn), h_t = (1 - z) n + z h_{t-1}. Kept per step: the gate
    activations [r, z, n] (T, B, 3H) and hn (T, B, H)."""

    def __init__(self, ops, case, p, K, keep):
        super().__init__(ops, case, p, K, keep)
        B, H, n = self.B, self.H, self.n
        self.Z = ops.empty((n, B, 3 * H))       # W_x x_t + b_h, then the gates [r, z, n] of step t
        self.HN = ops.empty((n, B, H))          # W_hn h_{t-1} + b_hn
        self.rz_rows = ops.unbind(self.Z[:, :, :2 * H])
        Z3 = self.Z.reshape(n, B, 3, H)
        self.gate_rows = [ops.unbind(Z3[:, :, k]) for k in range(3)]   # r, z, n of each step
        self.hn_rows = ops.unbind(self.HN)
        self.W_hT = ops.contiguous(p.W_h.T)     # (H, 3H), row-major (see ElmanKernel)
        self.gh = ops.empty((B, 3 * H))         # W_h h_{t-1}
        self.gh_rz, self.gh_n = self.gh[:, :2 * H], self.gh[:, 2 * H:]
        self.tmp = ops.empty((B, H))

    def project(self, i, j, x):
        k = i % self.n
        z = self.Z[k:k + j - i].reshape((j - i) * self.B, self.GH)
        self.ops.matmul(x.reshape((j - i) * self.B, self.D), self.p.W_x.T, out=z)
        z += self.p.b_h

    def step(self, t):
        ops = self.ops
        k = (t - 1) % self.n
        rz, (r, z, n), hn = self.rz_rows[k], (rows[k] for rows in self.gate_rows), self.hn_rows[k]
        h_prev, h, tmp = self.state_rows[0][t - 1], self.state_rows[0][t], self.tmp
        ops.matmul(h_prev, self.W_hT, out=self.gh)   # W_h h_{t-1}: the three gates in one product
        ops.iadd_(rz, self.gh_rz)
        ops.sigmoid_(rz)                              # r, z
        ops.add(self.gh_n, self.p.b_hn, hn)           # hn = W_hn h_{t-1} + b_hn
        ops.mul(r, hn, tmp)
        ops.iadd_(n, tmp)
        ops.tanh_(n)                                  # n = tanh(W_xn x_t + b_n + r hn)
        ops.sub(h_prev, n, h)                         # h_t = n + z (h_{t-1} - n)
        ops.mul_(h, z)
        ops.iadd_(h, n)

    def backward_buffers(self):
        # dz per step: [dL/da_r, dL/da_z, dL/dhn, dL/da_n] (4H), so that dL/d(W_h h_{t-1})
        # = [da_r, da_z, dhn] is its first 3H columns (one product per step) and
        # dL/d(W_x x_t + b_h) = [da_r, da_z, da_n] its first 2H and last H.
        ops, B, H = self.ops, self.B, self.H
        k = min(self.K, self.T)
        self.dz = ops.empty((k, B, 4 * H))
        self.dz_rows = ops.unbind(self.dz)
        dz4 = self.dz.reshape(k, B, 4, H)
        self.dgh_rows = ops.unbind(self.dz[:, :, :3 * H])
        self.dz_13_rows = ops.unbind(dz4[:, :, 1::2])   # blocks z and n: factors of dL/dh_t
        self.dz_02_rows = ops.unbind(dz4[:, :, 0::2])   # blocks r and hn: factors of dL/da_n
        self.dz_n_rows = ops.unbind(dz4[:, :, 3:4])
        self.carry_buf = ops.empty((B, 3 * H))
        self.dh_z = ops.empty((B, H))           # dL/dh_t z_t, into h_{t-1} directly

    def prepare(self, i0, m):
        """dz holds, per step, [hn r (1 - r), (h_{t-1} - n) z (1 - z), r, (1 - z)(1 - n^2)]:
        da_n = dL/dh_t (1 - z)(1 - n^2), da_r = da_n hn r (1 - r), dhn = da_n r,
        da_z = dL/dh_t (h_{t-1} - n) z (1 - z)."""
        ops, B, H = self.ops, self.B, self.H
        self.i0 = i0
        Z3 = self.Z[i0:i0 + m].reshape(m, B, 3, H)
        r, z, n = Z3[:, :, 0], Z3[:, :, 1], Z3[:, :, 2]
        dz4 = self.dz[:m].reshape(m, B, 4, H)
        d_r, d_z, d_hn, d_n = dz4[:, :, 0], dz4[:, :, 1], dz4[:, :, 2], dz4[:, :, 3]
        ops.mul(r, r, d_r)
        ops.sub(r, d_r, d_r)
        ops.mul_(d_r, self.HN[i0:i0 + m])
        ops.mul(z, z, d_z)
        ops.sub(z, d_z, d_z)
        ops.sub(self.hs_full[i0:i0 + m], n, d_n)      # d_n, d_hn as scratch until set below
        ops.mul_(d_z, d_n)
        ops.mul(n, n, d_n)
        ops.one_minus_(d_n)
        ops.mul(d_n, z, d_hn)
        ops.sub(d_n, d_hn, d_n)
        ops.assign_(d_hn, r)

    def back(self, g, r):
        ops = self.ops
        dh = g[0][r]
        if self.carry is not None:
            ops.addmm_(dh, self.carry, self.p.W_h, self.tmp)   # dL/dh_t += dL/d(W_h h_t) W_h
            ops.iadd_(dh, self.dh_z)                           #          + dL/dh_{t+1} z_{t+1}
        ops.mul_(self.dz_13_rows[r], dh[:, None])              # da_z, da_n
        ops.mul_(self.dz_02_rows[r], self.dz_n_rows[r])        # da_r, dhn
        ops.mul(dh, self.gate_rows[1][self.i0 + r], self.dh_z)
        self.carry = self.dgh_rows[r]

    def grads(self, i0, m, x, acc):
        ops, H = self.ops, self.H
        rows = m * self.B
        dz = self.dz[:m].reshape(rows, 4 * H)
        x = x.reshape(rows, self.D)
        ops.addmm_(acc.W_x[:2 * H], dz[:, :2 * H].T, x)        # rows r, z: da_r, da_z
        ops.addmm_(acc.W_x[2 * H:], dz[:, 3 * H:].T, x)        # rows n: da_n
        ops.addmm_(acc.W_h, dz[:, :3 * H].T, self.hs_full[i0:i0 + m].reshape(rows, H))
        s = dz.sum(0)
        ops.iadd_(acc.b_h[:2 * H], s[:2 * H])
        ops.iadd_(acc.b_h[2 * H:], s[3 * H:])
        ops.iadd_(acc.b_hn, s[2 * H:3 * H])

    def carry_out(self):
        dh = self.ops.matmul(self.carry, self.p.W_h)           # dL/dh_{s-1}
        self.ops.iadd_(dh, self.dh_z)
        return (dh,)


#: The kernel of each row of ``reference.cells.CELLS``, by the row's name.
KERNELS = {"elman": ElmanKernel, "lstm": LSTMKernel, "gru": GRUKernel}
