"""torch.autograd.gradcheck of backends' gradients against central differences of
their own loss, in float64, over every parameter and the initial state: the
hand-written torch path (Elman), and the torch-autograd oracle's gated path."""
import numpy as np
import pytest

import reference as R
from implementations import get_backend

torch = pytest.importorskip("torch")


def backend_loss(backend, spec, xs, targets, truncation=None):
    """The backend's loss as a torch function of (the cell's parameters..., h0[, c0]),
    whose backward returns the backend's own gradients."""
    cell = R.CELLS[spec.cell]
    names, n_state = cell.params, len(cell.state)

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            arrays = [t.detach().numpy() for t in tensors]
            params = R.RNNParams(**dict(zip(names, arrays)))
            state0 = dict(zip(("h0", "c0"), arrays[len(names):]))
            res = backend.bptt(spec, params, xs, targets, truncation=truncation, **state0)
            ctx.grads = [*(getattr(res.grads, n) for n in names), res.dh0, res.dc0][:len(names) + n_state]
            return torch.tensor(res.loss, dtype=torch.float64)

        @staticmethod
        def backward(ctx, g):
            return tuple(g * torch.from_numpy(a) for a in ctx.grads)

    return Loss.apply


def inputs(rng, cell, B, D, H, O):
    """Leaf tensors for the cell's parameters, then h0 (and c0)."""
    shapes = {n: s for n, (s, _) in R.CELLS[cell].shapes(D, H, O).items()}
    out = [torch.tensor(rng.normal(size=shapes[n]) * 0.5, requires_grad=True) for n in R.CELLS[cell].params]
    return out + [torch.tensor(rng.normal(size=(B, H)), requires_grad=True) for _ in R.CELLS[cell].state]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("output", ["linear", "softmax"])
def test_gradcheck_hand_written_torch(activation, output):
    rng = np.random.default_rng(3)
    T, B, D, H, O = 5, 2, 3, 4, 3
    spec = R.RNNSpec(activation=activation, output=output, targets="every", l2=0.05)
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    f = backend_loss(get_backend("torch", dtype="float64"), spec, xs, targets)
    # gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) are made for float64
    # central differences of smooth functions of order-one inputs, as here.
    assert torch.autograd.gradcheck(f, tuple(inputs(rng, "elman", B, D, H, O)))


# One output each: the output layer is the same for every cell, and gradchecked above.
@pytest.mark.parametrize("cell, output", [("lstm", "linear"), ("gru", "softmax")])
def test_gradcheck_autograd_oracle_gated(cell, output):
    # torch.nn.LSTM / torch.nn.GRU's gradients, mapped back to the contract's W_x, W_h,
    # b_h, b_hn, h0, c0, against differences of the loss the oracle itself computes.
    rng = np.random.default_rng(4)
    T, B, D, H, O = 4, 2, 3, 3, 2
    spec = R.RNNSpec(output=output, targets="every", l2=0.05, cell=cell)
    xs = rng.normal(size=(T, B, D))
    targets = rng.normal(size=(T, B, O)) if output == "linear" else rng.integers(0, O, size=(T, B))
    f = backend_loss(get_backend("torch-autograd", dtype="float64"), spec, xs, targets)
    # As above: float64 central differences of a smooth order-one loss.
    assert torch.autograd.gradcheck(f, tuple(inputs(rng, cell, B, D, H, O)))
