"""torch.autograd.gradcheck on the hand-written torch path, in float64: its
gradients against central differences of its own loss, over every parameter and h0."""
import numpy as np
import pytest

import reference as R
from implementations import get_backend

torch = pytest.importorskip("torch")

NAMES = R.RNNParams.names()


def hand_written_loss(backend, spec, xs, targets, truncation=None):
    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            params = R.RNNParams(**{n: t.detach().numpy() for n, t in zip(NAMES, tensors)})
            res = backend.bptt(spec, params, xs, targets, h0=tensors[-1].detach().numpy(), truncation=truncation)
            ctx.grads = [*(getattr(res.grads, n) for n in NAMES), res.dh0]
            return torch.tensor(res.loss, dtype=torch.float64)

        @staticmethod
        def backward(ctx, g):
            return tuple(g * torch.from_numpy(a) for a in ctx.grads)

    return Loss.apply


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_gradcheck_hand_written_torch(activation, output):
    rng = np.random.default_rng(3)
    T, B, D, H, O = 5, 2, 3, 4, 3
    spec = R.RNNSpec(activation=activation, output=output, targets="every", l2=0.05)
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    shapes = {"W_x": (H, D), "W_h": (H, H), "b_h": (H,), "W_y": (O, H), "b_y": (O,)}
    inputs = [torch.tensor(rng.normal(size=shapes[n]) * 0.5, requires_grad=True) for n in NAMES]
    inputs.append(torch.tensor(rng.normal(size=(B, H)), requires_grad=True))  # h0
    f = hand_written_loss(get_backend("torch", dtype="float64"), spec, xs, targets)
    # gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) are made for float64
    # central differences of smooth functions of order-one inputs, as here.
    assert torch.autograd.gradcheck(f, tuple(inputs))
