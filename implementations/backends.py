"""The built-in backends. Each is a thin binding of ``Backend`` to a computation:
the shared engine (numpy, torch, torch:cuda), the reference, RTRL, and PyTorch
autograd as an outside oracle."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from reference.bptt import blocks, run_bptt, run_forward, scored_steps, stack_states
from reference.rtrl import run_rtrl
from reference.types import RNNParams
from reference.validation import overflow_error

from . import engine
from .base import Backend
from .ops import NumpyOps, TorchOps


class ReferenceBackend(Backend):
    """The readable float64 BPTT of ``reference``."""

    name = "reference"
    dtypes = ("float64",)

    def _forward(self, case):
        states, _, ys = run_forward(case)
        return stack_states(states, 0), ys, (stack_states(states, 1) if case.c0 is not None else None)

    def _bptt(self, case, checked=False):
        r = run_bptt(case)  # checks every step itself
        return r.loss, r.grads, r.dh0, r.dhs, r.dc0, r.dcs


class RTRLBackend(ReferenceBackend):
    """Real-time recurrent learning: forward-mode sensitivities, no backward pass.
    Its cost grows as T^2 H^3 (and G^2 H^4 T for G gate blocks): for small cases."""

    name = "rtrl"

    def _bptt(self, case, checked=False):
        r = run_rtrl(case)
        return r.loss, r.grads, r.dh0, r.dhs, r.dc0, r.dcs


def _elman_only(case):
    if case.spec.cell != "elman":
        raise NotImplementedError(f"cell {case.spec.cell!r}")


class NumpyBackend(Backend):
    """Vectorised NumPy, every cell: batched GEMMs over time, a sequential core per step."""

    name = "numpy"

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        self.ops = NumpyOps(self.dtype)

    def _forward(self, case):
        return engine.forward(self.ops, case)

    def _bptt(self, case, checked=False):
        return engine.bptt(self.ops, case, checked)


class TorchBackend(NumpyBackend):
    """Hand-written BPTT on torch tensors (the shared engine), no autograd."""

    name = "torch"
    device = "cpu"

    def __init__(self, dtype="float64"):
        Backend.__init__(self, dtype)
        import torch

        self._torch = torch
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("backend 'torch:cuda' needs a CUDA device, and torch.cuda.is_available() is False here")
        self.ops = TorchOps(self.dtype, self.device)

    def to_numpy(self, a):
        if isinstance(a, self._torch.Tensor):
            a = a.detach().cpu().numpy()
        return super().to_numpy(a)

    def _forward(self, case):
        with self._torch.no_grad():
            return super()._forward(case)

    def _bptt(self, case, checked=False):
        with self._torch.no_grad():
            return super()._bptt(case, checked)


class TorchCudaBackend(TorchBackend):
    name = "torch:cuda"
    device = "cuda"


class _TorchCell(NamedTuple):
    """One recurrent cell for the autograd oracle."""

    step: Callable      # step(x_t, state_{t-1}) -> state_t, tuples of (B, H) tensors
    grads: Callable     # grads() -> dL/d(recurrent parameter) by name, after backward
    weights: dict       # the tensors that hold W_x and W_h (the l2 term's own)
    totals: Callable    # totals(x_t, state_{t-1}, state_t, grads of state_t) -> the contract's dhs, dcs entries


class TorchAutogradBackend(Backend):
    """PyTorch autograd as an outside oracle, one step at a time so that every h_t
    (and c_t) keeps its gradient: torch.nn.LSTM and torch.nn.GRU themselves for the
    gated cells (weights mapped as the contract's section 1b says), torch.nn.RNN for
    Elman tanh and relu, plain tensor operations for sigmoid and identity.
    Truncation is evaluated block by block from a detached state (h and c together),
    exactly as section 2 of the contract reads."""

    name = "torch-autograd"

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        import torch

        self._torch = torch
        self._dtype = getattr(torch, self.dtype)

    def to_numpy(self, a):
        if isinstance(a, self._torch.Tensor):
            a = a.detach().cpu().numpy()
        return super().to_numpy(a)

    def _t(self, a):
        """numpy -> a CPU tensor in this backend's dtype."""
        return self._torch.tensor(np.asarray(a), dtype=self._dtype)

    def _cell(self, case, P):
        return {"elman": self._elman, "lstm": self._lstm, "gru": self._gru}[case.spec.cell](case, P)

    @staticmethod
    def _same(x, prev, state, dstate):
        return dstate

    def _module(self, cls, case, P, bias_hh, **kw):
        """A one-layer ``cls`` (torch.nn.RNN, LSTM or GRU) holding W_x, W_h as
        weight_ih_l0, weight_hh_l0, b_h as bias_ih_l0 and ``bias_hh`` as bias_hh_l0."""
        torch = self._torch
        m = cls(case.D, case.H, dtype=self._dtype, **kw)
        with torch.no_grad():
            m.weight_ih_l0.copy_(P["W_x"])
            m.weight_hh_l0.copy_(P["W_h"])
            m.bias_ih_l0.copy_(P["b_h"])
            m.bias_hh_l0.copy_(bias_hh)
        return m

    def _elman(self, case, P):
        torch = self._torch
        act = case.spec.activation
        if act in ("tanh", "relu"):
            rnn = self._module(torch.nn.RNN, case, P, torch.zeros(case.H), nonlinearity=act)
            rnn.bias_hh_l0.requires_grad_(False)       # b_h = bias_ih_l0 + bias_hh_l0, the latter 0

            def step(x, state):
                return (rnn(x[None], state[0][None])[1][0],)

            def grads():
                return {"W_x": rnn.weight_ih_l0.grad, "W_h": rnn.weight_hh_l0.grad, "b_h": rnn.bias_ih_l0.grad}
            return _TorchCell(step, grads, {"W_x": rnn.weight_ih_l0, "W_h": rnn.weight_hh_l0}, self._same)
        f = torch.sigmoid if act == "sigmoid" else (lambda a: a)

        def step(x, state):
            return (f(x @ P["W_x"].T + state[0] @ P["W_h"].T + P["b_h"]),)
        return _TorchCell(step, lambda: {n: P[n].grad for n in ("W_x", "W_h", "b_h")},
                          {"W_x": P["W_x"], "W_h": P["W_h"]}, self._same)

    def _lstm(self, case, P):
        torch = self._torch
        lstm = self._module(torch.nn.LSTM, case, P, torch.zeros(4 * case.H))
        lstm.bias_hh_l0.requires_grad_(False)          # b_h = bias_ih_l0 + bias_hh_l0, the latter 0

        def step(x, state):
            _, (h, c) = lstm(x[None], (state[0][None], state[1][None]))
            return h[0], c[0]

        def grads():
            return {"W_x": lstm.weight_ih_l0.grad, "W_h": lstm.weight_hh_l0.grad, "b_h": lstm.bias_ih_l0.grad}

        o = case.cell.block("o", case.H)

        def totals(x, prev, state, dstate):
            # The module returns c_t beside h_t, not as what h_t is computed from, so the
            # gradient c_t receives is dL/dc_t through c_{t+1} only. The contract's dcs adds
            # the path through h_t = o_t tanh(c_t), with o_t from the weights (the module
            # keeps its gates to itself).
            dh, dc = dstate
            o_t = torch.sigmoid(x @ P["W_x"][o].T + prev[0] @ P["W_h"][o].T + P["b_h"][o])
            return dh, dc + dh * o_t * (1 - torch.tanh(state[1]) ** 2)
        return _TorchCell(step, grads, {"W_x": lstm.weight_ih_l0, "W_h": lstm.weight_hh_l0}, totals)

    def _gru(self, case, P):
        torch = self._torch
        H = case.H
        n = case.cell.block("n", H)
        # torch's GRU: r, z read bias_ih_l0 + bias_hh_l0; n reads bias_ih_l0 outside and
        # bias_hh_l0 inside r * (W_hn h + b_hn). So bias_ih_l0 = b_h, bias_hh_l0 = [0; 0; b_hn].
        bias_hh = torch.zeros(3 * H, dtype=self._dtype)
        bias_hh[n] = P["b_hn"].detach()
        gru = self._module(torch.nn.GRU, case, P, bias_hh)

        def step(x, state):
            return (gru(x[None], state[0][None])[1][0],)

        def grads():
            # dL/db_h = bias_ih_l0.grad (its r, z rows equal bias_hh_l0's, which are not read);
            # dL/db_hn = the n rows of bias_hh_l0.grad (those of bias_ih_l0.grad are dL/db_n).
            g = gru.bias_hh_l0.grad
            return {"W_x": gru.weight_ih_l0.grad, "W_h": gru.weight_hh_l0.grad, "b_h": gru.bias_ih_l0.grad,
                    "b_hn": None if g is None else g[n]}
        return _TorchCell(step, grads, {"W_x": gru.weight_ih_l0, "W_h": gru.weight_hh_l0}, self._same)

    def _loss_terms(self, case, P, hs, targets, steps, checked):
        torch = self._torch
        total = 0.0
        for t in steps:
            y = hs[t] @ P["W_y"].T + P["b_y"]
            d = targets[t - 1]
            if case.spec.output == "linear":
                term = 0.5 * ((y - d) ** 2).sum()
            else:
                term = torch.nn.functional.cross_entropy(y, d, reduction="sum")
            if checked and not torch.isfinite(term):
                raise overflow_error("loss", t, case.T)
            total = total + term
        return total / case.B

    def _forward(self, case):
        torch = self._torch
        with torch.no_grad():
            P = {n: self._t(w) for n, w in case.params.as_dict().items()}
            step = self._cell(case, P).step
            states = [tuple(self._t(v) for v in case.state0)]
            for t in range(case.T):
                states.append(step(self._t(case.xs[t]), states[-1]))
            hs = torch.stack([s[0] for s in states[1:]])
            cs = torch.stack([s[1] for s in states[1:]]) if len(case.state0) > 1 else None
            return hs, hs @ P["W_y"].T + P["b_y"], cs

    def _bptt(self, case, checked=False):
        torch = self._torch
        T, K = case.T, len(case.state0)                # K state components: h (, c)
        full = case.truncation is None
        with torch.enable_grad():
            P = {n: self._t(w).requires_grad_() for n, w in case.params.as_dict().items()}
            cell = self._cell(case, P)
            xs = [self._t(x) for x in case.xs]
            targets = (torch.tensor(case.targets, dtype=torch.int64) if case.spec.output == "softmax"
                       else self._t(case.targets))
            scored = set(scored_steps(case.spec, T))
            with torch.no_grad():                      # the states every block starts from
                states = [tuple(self._t(v) for v in case.state0)]
                for t in range(T):
                    states.append(cell.step(xs[t], states[-1]))
                    if checked and not all(torch.isfinite(v).all() for v in states[-1]):
                        raise overflow_error("forward pass", t + 1, T)

            def grad(v):
                return v.grad if v.grad is not None else torch.zeros_like(v)

            loss = 0.0
            d0 = [torch.zeros(case.B, case.H, dtype=self._dtype) for _ in range(K)]
            totals = None
            for first, e, s in blocks(T, case.truncation):
                start = tuple(v.detach().clone().requires_grad_() for v in states[s - 1])  # constants, h and c together
                block = {s - 1: start}
                for t in range(s, e + 1):
                    block[t] = cell.step(xs[t - 1], block[t - 1])
                    for v in block[t]:
                        v.retain_grad()
                hs = {t: st[0] for t, st in block.items()}
                block_loss = self._loss_terms(case, P, hs, targets, [t for t in range(first, e + 1) if t in scored],
                                              checked)
                if not torch.is_tensor(block_loss):    # no scored step in this block
                    continue
                block_loss.backward()
                loss += float(block_loss.detach())
                for t in range(e, s - 1, -1) if checked else ():
                    if not all(torch.isfinite(grad(v)).all() for v in block[t]):
                        raise overflow_error("backward pass", t, T)
                if s == 1:
                    for k in range(K):
                        d0[k] += grad(start[k])
                if full:
                    with torch.no_grad():
                        per_step = [cell.totals(xs[t - 1], block[t - 1], block[t], tuple(grad(v) for v in block[t]))
                                    for t in range(1, T + 1)]
                    totals = [torch.stack([d[k] for d in per_step]) for k in range(K)]
            weights = {**P, **cell.weights}           # W_x, W_h as the cell module holds them
            reg = case.spec.l2 / 2 * sum((weights[n] ** 2).sum() for n in case.cell.l2)
            reg.backward()
            loss += float(reg.detach())
            g = cell.grads()
            grads = {n: (g[n] if g[n] is not None else torch.zeros_like(P[n])) for n in case.cell.recurrent_params}
            for n in ("W_y", "b_y"):
                grads[n] = P[n].grad if P[n].grad is not None else torch.zeros_like(P[n])
            if totals is None and full:
                totals = [torch.zeros(T, case.B, case.H, dtype=self._dtype) for _ in range(K)]
            return (loss, RNNParams(**grads), d0[0], totals[0] if full else None,
                    d0[1] if K > 1 else None, totals[1] if full and K > 1 else None)
