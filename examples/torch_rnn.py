"""A partial backend: torch.nn.RNN itself, wrapped as a user would wrap it.

torch.nn.RNN has the Elman cell with tanh or relu only, and it is a fused kernel:
autograd gives the gradients of the weights and of h0, but not the total dL/dh_t of
each step. So this backend declares, through ``implementations.adapter.unsupported``
(a NotImplementedError naming the feature):

- the activations sigmoid and identity, and the gated cells (use torch.nn.LSTM /
  torch.nn.GRU for those: see examples/torch_lstm.py);
- truncated BPTT (h < T): a fused call backpropagates through the whole sequence;

and returns ``dhs=None`` for full BPTT, which the checker records as the unsupported
feature "dhs" (docs/contract.md section 5, "Partial backends"). The checker keeps
drawing the supported cases, lists the unsupported features, and skips only what
needs them:

    bptt-suite check --backend examples.torch_rnn:TorchRNN

Overflow (section 4): the states and outputs are checked per step after the fused
forward pass and the loss terms per step; only when a gradient comes back non-finite
is the backward pass rerun step by step to find the step where it first appeared.
"""
import numpy as np
import torch

from implementations.adapter import check_finite, overflow_error, scored_steps, unsupported, validate_bptt, validate_forward
from reference.types import BPTTResult, ForwardResult, RNNParams


class TorchRNN:
    """torch.nn.RNN (tanh, relu) + a linear output layer, in ``dtype``."""

    name = "torch-nn-rnn"

    def __init__(self, dtype="float64"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = dtype
        self._dt = getattr(torch, dtype)

    def _module(self, case):
        if case.spec.cell != "elman":
            raise unsupported(f"cell {case.spec.cell!r}")
        if case.spec.activation not in ("tanh", "relu"):          # all that torch.nn.RNN has
            raise unsupported(f"activation {case.spec.activation!r}")
        rnn = torch.nn.RNN(case.D, case.H, nonlinearity=case.spec.activation, dtype=self._dt)
        with torch.no_grad():                                      # contract weights -> torch's
            rnn.weight_ih_l0.copy_(torch.as_tensor(case.params.W_x))
            rnn.weight_hh_l0.copy_(torch.as_tensor(case.params.W_h))
            rnn.bias_ih_l0.copy_(torch.as_tensor(case.params.b_h))
            rnn.bias_hh_l0.zero_()                                 # b_h = bias_ih + bias_hh
        return rnn

    def _tensor(self, a, grad=False):
        return torch.as_tensor(a, dtype=self._dt).requires_grad_(grad)

    def _run(self, case, rnn, W_y, b_y, h0):
        hs, _ = rnn(self._tensor(case.xs), h0[None])               # (T, B, H): h_1 .. h_T
        ys = hs @ W_y.T + b_y
        check_finite("forward pass", torch.cat([hs, ys], dim=2).detach().numpy(), case.T)
        return hs, ys

    def forward(self, spec, params, xs, h0=None, c0=None):
        case = validate_forward(spec, params, xs, h0, c0)
        rnn = self._module(case)
        with torch.no_grad():
            hs, ys = self._run(case, rnn, self._tensor(case.params.W_y), self._tensor(case.params.b_y),
                               self._tensor(case.h0))
        return ForwardResult(hs=hs.numpy().astype(np.float64), ys=ys.numpy().astype(np.float64))

    def _loss_terms(self, case, ys):
        """Per scored step, the loss summed over the batch (l = 1/2 |y - d|^2 or -log softmax(y)[d])."""
        terms = []
        for t in scored_steps(case.spec, case.T):
            y = ys[t - 1]
            if case.spec.output == "linear":
                terms.append(0.5 * ((y - self._tensor(case.targets[t - 1])) ** 2).sum())
            else:
                terms.append(torch.nn.functional.cross_entropy(y, torch.as_tensor(case.targets[t - 1]),
                                                               reduction="sum"))
        per_step = np.zeros(case.T)
        for t, term in zip(scored_steps(case.spec, case.T), terms):
            per_step[t - 1] = float(term.detach())
        check_finite("loss", per_step, case.T)
        return sum(terms) / case.B

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
        rnn = self._module(case)
        if case.truncation is not None:
            raise unsupported("truncation")                       # a fused call cannot detach inside
        W_y, b_y = self._tensor(case.params.W_y, True), self._tensor(case.params.b_y, True)
        h0 = self._tensor(case.h0, True)
        _, ys = self._run(case, rnn, W_y, b_y, h0)
        loss = self._loss_terms(case, ys)
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, W_y)
        loss = loss + case.spec.l2 / 2 * sum((w ** 2).sum() for w in weights)
        loss.backward()
        grads = RNNParams(W_x=rnn.weight_ih_l0.grad, W_h=rnn.weight_hh_l0.grad, b_h=rnn.bias_ih_l0.grad,
                          W_y=W_y.grad, b_y=b_y.grad)
        grads = RNNParams(**{n: g.numpy().astype(np.float64) for n, g in grads.as_dict().items()})
        dh0 = h0.grad.numpy().astype(np.float64)
        if not (np.isfinite(dh0).all() and all(np.isfinite(g).all() for g in grads.as_dict().values())):
            self._raise_backward_overflow(case, rnn, W_y, b_y)
        return BPTTResult(loss=float(loss.detach()), grads=grads, dh0=dh0, dhs=None)   # dhs: not from a fused kernel

    def _raise_backward_overflow(self, case, rnn, W_y, b_y):
        """The error path only: rerun one step at a time, keeping each h_t's gradient, and
        name the first step of the backward pass (the last index) where it is not finite."""
        h = self._tensor(case.h0, True)
        hs = []
        for t in range(case.T):
            _, h = rnn(self._tensor(case.xs[t:t + 1]), h[None])
            h = h[0]
            h.retain_grad()
            hs.append(h)
        ys = torch.stack(hs) @ W_y.T + b_y
        self._loss_terms(case, ys).backward()
        bad = [t for t, h in enumerate(hs, 1) if not torch.isfinite(h.grad).all()]
        if bad:
            raise overflow_error("backward pass", bad[-1], case.T)
        raise FloatingPointError("overflow in the sums of the weight gradients over the steps")
