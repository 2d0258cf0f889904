"""torch.nn.LSTM itself as a backend, wrapped as a user would wrap it.

The contract's LSTM (docs/contract.md section 1b) is torch's: gate blocks i, f, g, o
stacked in W_x (4H, D) and W_h (4H, H), so the weights map over directly
(weight_ih_l0 = W_x, weight_hh_l0 = W_h, bias_ih_l0 = b_h, bias_hh_l0 = 0).
torch.nn.LSTM is a fused kernel: autograd gives the weight gradients and those of
(h0, c0) but not the total dL/dh_t, dL/dc_t of each step, so ``dhs`` and ``dcs`` are
None (the checker records "dhs" as unsupported and skips only what needs it). Only
the LSTM cell is implemented; the others are declared unsupported with
``implementations.adapter.unsupported``. Truncated BPTT(h; h') runs the fused kernel
once per block, from the state h_{s-1}, c_{s-1} of a no-grad forward pass, detached
(section 2).

    bptt-suite check --backend examples.torch_lstm:TorchLSTM --cell lstm
"""
import numpy as np
import torch

from implementations.adapter import (blocks, check_finite, overflow_error, scored_steps, unsupported, validate_bptt,
                                     validate_forward)
from reference.types import BPTTResult, ForwardResult, RNNParams


class TorchLSTM:
    """torch.nn.LSTM + a linear output layer, in ``dtype``."""

    name = "torch-nn-lstm"

    def __init__(self, dtype="float64"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = dtype
        self._dt = getattr(torch, dtype)

    def _tensor(self, a, grad=False):
        return torch.as_tensor(a, dtype=self._dt).requires_grad_(grad)

    def _module(self, case):
        if case.spec.cell != "lstm":
            raise unsupported(f"cell {case.spec.cell!r}")
        lstm = torch.nn.LSTM(case.D, case.H, dtype=self._dt)
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch.as_tensor(case.params.W_x))
            lstm.weight_hh_l0.copy_(torch.as_tensor(case.params.W_h))
            lstm.bias_ih_l0.copy_(torch.as_tensor(case.params.b_h))
            lstm.bias_hh_l0.zero_()                                # b_h = bias_ih + bias_hh
        return lstm

    def _states(self, case, lstm):
        """(h_t, c_t) for t = 0..T without gradients, one fused call per step."""
        h, c = self._tensor(case.h0), self._tensor(case.c0)
        states = [(h, c)]
        with torch.no_grad():
            for t in range(case.T):
                _, (h, c) = lstm(self._tensor(case.xs[t:t + 1]), (h[None], c[None]))
                h, c = h[0], c[0]
                states.append((h, c))
        return states

    def forward(self, spec, params, xs, h0=None, c0=None):
        case = validate_forward(spec, params, xs, h0, c0)
        lstm = self._module(case)
        states = self._states(case, lstm)
        hs = torch.stack([h for h, _ in states[1:]])
        cs = torch.stack([c for _, c in states[1:]])
        ys = hs @ self._tensor(case.params.W_y).T + self._tensor(case.params.b_y)
        check_finite("forward pass", torch.cat([hs, cs, ys], dim=2).numpy(), case.T)
        return ForwardResult(hs=hs.numpy().astype(np.float64), ys=ys.numpy().astype(np.float64),
                             cs=cs.numpy().astype(np.float64))

    def _loss_term(self, case, y, t):
        """The loss of step t summed over the batch."""
        if case.spec.output == "linear":                     # l = 1/2 |y - d|^2
            return 0.5 * ((y - self._tensor(case.targets[t - 1])) ** 2).sum()
        return torch.nn.functional.cross_entropy(y, torch.as_tensor(case.targets[t - 1]), reduction="sum")

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
        lstm = self._module(case)
        T, B = case.T, case.B
        W_y, b_y = self._tensor(case.params.W_y, True), self._tensor(case.params.b_y, True)
        h0, c0 = self._tensor(case.h0, True), self._tensor(case.c0, True)
        states = None
        if case.truncation is not None:                      # the constants h_{s-1}, c_{s-1} of the blocks
            states = self._states(case, lstm)
            with torch.no_grad():
                hs = torch.stack([h for h, _ in states[1:]])
                ys = hs @ W_y.T + b_y
            check_finite("forward pass", torch.cat([hs, ys], dim=2).numpy(), T)
        scored = scored_steps(case.spec, T)
        terms = np.zeros(T)                                  # the loss terms, for the overflow check
        block_losses = []
        for first, e, s in blocks(T, case.truncation):       # full BPTT: the one block (1, T, 1)
            h, c = (h0, c0) if s == 1 else states[s - 1]     # h_{s-1}, c_{s-1} enter as constants
            hs, _ = lstm(self._tensor(case.xs[s - 1:e]), (h[None], c[None]))
            ys = hs @ W_y.T + b_y
            if states is None:
                check_finite("forward pass", torch.cat([hs, ys], dim=2).detach().numpy(), T)
            steps = [t for t in scored if first <= t <= e]
            block = [self._loss_term(case, ys[t - s], t) for t in steps]
            for t, term in zip(steps, block):
                terms[t - 1] = float(term.detach())
            block_losses.append(sum(block) / B if block else None)
        check_finite("loss", terms, T)
        weights = (lstm.weight_ih_l0, lstm.weight_hh_l0, W_y)
        l2 = case.spec.l2 / 2 * sum((w ** 2).sum() for w in weights)
        total = sum(b for b in block_losses if b is not None) + l2
        total.backward()                                     # the gradients add up over the blocks
        leaves = {"W_x": lstm.weight_ih_l0, "W_h": lstm.weight_hh_l0, "b_h": lstm.bias_ih_l0, "W_y": W_y, "b_y": b_y}
        grads = RNNParams(**{n: _numpy(w.grad, w.shape) for n, w in leaves.items()})
        dh0, dc0 = _numpy(h0.grad, h0.shape), _numpy(c0.grad, c0.shape)
        if not (np.isfinite(dh0).all() and np.isfinite(dc0).all()
                and all(np.isfinite(g).all() for g in grads.as_dict().values())):
            self._raise_backward_overflow(case, lstm, W_y, b_y, states)
        return BPTTResult(loss=float(total.detach()), grads=grads, dh0=dh0, dhs=None, dc0=dc0, dcs=None)

    def _raise_backward_overflow(self, case, lstm, W_y, b_y, states):
        """The error path only: rerun block by block one step at a time, keeping the
        gradients of each h_t and c_t, and name the first step in computation order
        (blocks in turn, each from its last step back) where one is not finite."""
        scored = scored_steps(case.spec, case.T)
        for first, e, s in blocks(case.T, case.truncation):
            h, c = (self._tensor(case.h0), self._tensor(case.c0)) if s == 1 else states[s - 1]
            steps, block = [], []
            for t in range(s, e + 1):
                _, (h, c) = lstm(self._tensor(case.xs[t - 1:t]), (h[None], c[None]))
                h, c = h[0], c[0]
                h.retain_grad()
                c.retain_grad()
                steps.append((t, h, c))
                if t >= first and t in scored:
                    block.append(self._loss_term(case, h @ W_y.T + b_y, t))
            if block:
                (sum(block) / case.B).backward()
            bad = [t for t, h, c in steps if h.grad is not None and not
                   (torch.isfinite(h.grad).all() and torch.isfinite(c.grad).all())]
            if bad:
                raise overflow_error("backward pass", bad[-1], case.T)
        raise FloatingPointError("overflow in the sums of the weight gradients over the steps")


def _numpy(grad, shape):
    """A gradient as numpy float64 (zeros where nothing reached the leaf)."""
    return np.zeros(tuple(shape)) if grad is None else grad.numpy().astype(np.float64)
