"""The built-in backends. Each is a thin binding of ``Backend`` to a computation:
the shared engine (numpy, torch, torch:cuda), the reference, RTRL, and PyTorch
autograd as an outside oracle."""
from __future__ import annotations

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
    Its cost grows as T^2 H^3: for small cases."""

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


class TorchAutogradBackend(TorchBackend):
    """PyTorch autograd as an outside oracle: torch.nn.RNN's cell for tanh and relu,
    plain tensor operations for sigmoid and identity, one step at a time so that
    every h_t can keep its gradient. Truncation is evaluated block by block from a
    detached state, exactly as section 2 of the contract reads."""

    name = "torch-autograd"

    def __init__(self, dtype="float64"):
        super().__init__(dtype)
        self._t = self.ops.asarray  # numpy -> tensor in this dtype

    def _cell(self, case, P):
        torch = self._torch
        act = case.spec.activation
        if act in ("tanh", "relu"):
            rnn = torch.nn.RNN(case.D, case.H, nonlinearity=act, dtype=self.ops.dtype)
            with torch.no_grad():
                rnn.weight_ih_l0.copy_(P["W_x"])
                rnn.weight_hh_l0.copy_(P["W_h"])
                rnn.bias_ih_l0.copy_(P["b_h"])
                rnn.bias_hh_l0.zero_()
            rnn.bias_hh_l0.requires_grad_(False)

            def step(x, h):
                return rnn(x[None], h[None])[1][0]

            def grads():
                return {"W_x": rnn.weight_ih_l0.grad, "W_h": rnn.weight_hh_l0.grad, "b_h": rnn.bias_ih_l0.grad}
            return step, grads, (rnn.weight_ih_l0, rnn.weight_hh_l0)
        f = torch.sigmoid if act == "sigmoid" else (lambda a: a)

        def step(x, h):
            return f(x @ P["W_x"].T + h @ P["W_h"].T + P["b_h"])
        return step, (lambda: {n: P[n].grad for n in ("W_x", "W_h", "b_h")}), (P["W_x"], P["W_h"])

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
        _elman_only(case)
        with self._torch.no_grad():
            P = {n: self._t(w) for n, w in case.params.as_dict().items()}
            step, _, _ = self._cell(case, P)
            h = self._t(case.h0)
            hs = []
            for t in range(case.T):
                h = step(self._t(case.xs[t]), h)
                hs.append(h)
            hs = self._torch.stack(hs)
            return hs, hs @ P["W_y"].T + P["b_y"]

    def _bptt(self, case, checked=False):
        _elman_only(case)
        torch = self._torch
        with torch.enable_grad():
            P = {n: self._t(w).requires_grad_() for n, w in case.params.as_dict().items()}
            step, cell_grads, (Wx, Wh) = self._cell(case, P)
            xs = [self._t(x) for x in case.xs]
            targets = (self.ops.targets(case.targets) if case.spec.output == "softmax"
                       else self._t(case.targets))
            scored = set(scored_steps(case.spec, case.T))
            with torch.no_grad():                      # the states every block starts from
                states = [self._t(case.h0)]
                for t in range(case.T):
                    states.append(step(xs[t], states[-1]))
                    if checked and not torch.isfinite(states[-1]).all():
                        raise overflow_error("forward pass", t + 1, case.T)
            loss = 0.0
            dh0 = torch.zeros(case.B, case.H, dtype=self.ops.dtype)
            dhs = None
            for first, e, s in blocks(case.T, case.truncation):
                h_start = states[s - 1].detach().clone().requires_grad_()  # a constant: detached
                hs = {s - 1: h_start}
                for t in range(s, e + 1):
                    hs[t] = step(xs[t - 1], hs[t - 1])
                    hs[t].retain_grad()
                block_loss = self._loss_terms(case, P, hs, targets, [t for t in range(first, e + 1) if t in scored], checked)
                if torch.is_tensor(block_loss):
                    block_loss.backward()
                    for t in range(e, s - 1, -1) if checked else ():
                        if hs[t].grad is not None and not torch.isfinite(hs[t].grad).all():
                            raise overflow_error("backward pass", t, case.T)
                    loss += float(block_loss.detach())
                    if s == 1:
                        dh0 += h_start.grad
                    if case.truncation is None:
                        dhs = torch.stack([hs[t].grad if hs[t].grad is not None else torch.zeros_like(hs[t])
                                           for t in range(1, case.T + 1)])
            l2 = case.spec.l2
            reg = l2 / 2 * ((Wx ** 2).sum() + (Wh ** 2).sum() + (P["W_y"] ** 2).sum())
            reg.backward()
            loss += float(reg.detach())
            g = cell_grads()
            grads = {n: (g[n] if g[n] is not None else torch.zeros_like(P[n])) for n in ("W_x", "W_h", "b_h")}
            for n in ("W_y", "b_y"):
                grads[n] = P[n].grad if P[n].grad is not None else torch.zeros_like(P[n])
            if dhs is None and case.truncation is None:
                dhs = torch.zeros(case.T, case.B, case.H, dtype=self.ops.dtype)
            return loss, RNNParams(**grads), dh0, dhs
