"""The few array operations the engine needs, for NumPy and for PyTorch.

Every method works in place or into a given buffer where it can, so the hot loop
allocates nothing. Only the differences between the two libraries live here.
"""
from __future__ import annotations

import warnings

import numpy as np

from reference.types import RNNParams


class NumpyOps:
    is_torch = False

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def asarray(self, a):
        return np.ascontiguousarray(a, dtype=self.dtype)

    def params(self, params):
        return RNNParams(**{n: self.asarray(w) for n, w in params.as_dict().items()})

    def targets(self, targets):
        return targets if targets.dtype.kind == "i" else self.asarray(targets)

    def chunks(self, a):
        """Steps i+1..j of a time-major input (xs or targets) as ``get(i, j)``, in the
        compute dtype (integer class indices as they are), converted a chunk at a time,
        so that no full-length copy exists (float64 input is not copied at all)."""
        if a.dtype.kind == "i":
            return lambda i, j: a[i:j]
        return lambda i, j: self.asarray(a[i:j])

    def empty(self, shape):
        return np.empty(shape, dtype=self.dtype)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def copy(self, a):
        return a.copy()

    contiguous = staticmethod(np.ascontiguousarray)

    @staticmethod
    def assign_(dst, src):
        """dst[...] = src, converting the dtype."""
        np.copyto(dst, src)

    def result_empty(self, shape):
        """(a float64 numpy array that is returned as it is, whether the engine can
        compute in it directly)."""
        return np.empty(shape), self.dtype == np.float64

    @staticmethod
    def unbind(a):
        return list(a)

    matmul = staticmethod(np.matmul)

    @staticmethod
    def addmm_(c, a, b, tmp=None):
        """c += a @ b, through the buffer tmp of c's shape when given."""
        if tmp is None:
            c += a @ b
        else:
            np.matmul(a, b, out=tmp)
            c += tmp

    @staticmethod
    def axpy_(y, alpha, x):
        y += alpha * x

    @staticmethod
    def iadd_(y, x):
        y += x

    @staticmethod
    def all_finite(a):
        return bool(np.isfinite(a).all())

    @staticmethod
    def item(x):
        return float(x)

    @staticmethod
    def activation(name):
        """In-place h = f(a)."""
        if name == "tanh":
            return lambda a: np.tanh(a, out=a)
        if name == "sigmoid":
            return NumpyOps.sigmoid_
        if name == "relu":
            return lambda a: np.maximum(a, 0.0, out=a)
        return lambda a: None  # identity

    @staticmethod
    def activation_derivative(name):
        """out = f'(a), written through h = f(a) (a time chunk at a time)."""
        if name == "tanh":       # f' = 1 - h^2
            def tanh_derivative(h, out):
                np.multiply(h, h, out=out)
                np.subtract(1.0, out, out=out)
            return tanh_derivative
        if name == "sigmoid":    # f' = h (1 - h) = h - h^2
            def sigmoid_derivative(h, out):
                np.multiply(h, h, out=out)
                np.subtract(h, out, out=out)
            return sigmoid_derivative
        if name == "relu":       # f' = [h > 0]; relu'(0) = 0
            return lambda h, out: np.greater(h, 0.0, out=out)

        def identity_derivative(h, out):
            out[...] = 1.0
        return identity_derivative

    @staticmethod
    def mul_(a, b):
        np.multiply(a, b, out=a)

    # Elementwise kernels of the gated cells, ``f(a, b, out)``; ``out`` may be one of
    # the inputs. The ufuncs themselves (positional ``out``): no wrapper per call.
    mul = staticmethod(np.multiply)
    add = staticmethod(np.add)
    sub = staticmethod(np.subtract)
    tanh = staticmethod(np.tanh)
    tanh_ = staticmethod(lambda a: np.tanh(a, a))

    @staticmethod
    def one_minus_(a):
        """a = 1 - a."""
        np.subtract(1.0, a, out=a)

    @staticmethod
    def sigmoid_(a):
        """In-place a = 1 / (1 + e^-a). Relative error of a few ulps in both tails: at
        a = -20 the float32 result is 2.06e-9 (the form (1 + tanh(a/2)) / 2 gives exactly
        0 there). For a below about -88.7 (float32) or -709 (float64) e^-a overflows
        to inf and the result is 0, the correct limit (callers run under
        ``np.errstate(over="ignore")``, as ``Backend`` does)."""
        np.negative(a, out=a)
        np.exp(a, out=a)
        a += 1.0
        np.reciprocal(a, out=a)

    #: The gated kernels hand ``gate_sigmoid_`` the negated pre-activations -z (their
    #: forward weights of the sigmoid gates are negated), so that e^-z costs no
    #: negation per step.
    gate_sigmoid_negated = True

    @staticmethod
    def gate_sigmoid_(u):
        """In-place sigma(z) = 1 / (1 + e^u) from u = -z (accurate as ``sigmoid_``)."""
        np.exp(u, u)
        u += 1.0
        np.reciprocal(u, u)

    concat = staticmethod(np.concatenate)

    def loss_and_grad(self, output, ys, d):
        """Sum over rows of l(y, d) and dl/dy (written over ys): ys (N, O)."""
        if output == "linear":          # l = 1/2 |y - d|^2, dl/dy = y - d
            ys -= d
            return 0.5 * float(np.vdot(ys, ys)), ys
        # l = -log softmax(y)[d] = lse(y) - y[d], dl/dy = softmax(y) - onehot(d);
        # the max is shifted out first so that huge logits stay finite.
        rows = np.arange(len(d))
        ys -= ys.max(axis=1, keepdims=True)
        picked = ys[rows, d]
        np.exp(ys, out=ys)
        z = ys.sum(axis=1)
        loss = float(np.log(z).sum() - picked.sum())
        ys /= z[:, None]
        ys[rows, d] -= 1.0
        return loss, ys


class TorchOps:
    is_torch = True

    def __init__(self, dtype, device="cpu"):
        import torch

        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.np_dtype = np.dtype(dtype)
        self.device = torch.device(device)
        if self.device.type == "cpu":
            # numpy's tanh on the same memory: torch's CPU tanh kernel is several times
            # slower than numpy's (about 40 us against 6 us for 64 x 512 float32 here).
            def tanh(a, out):
                np.tanh(a.numpy(), out=out.numpy())

            def tanh_(a):
                v = a.numpy()
                np.tanh(v, out=v)
        else:
            def tanh(a, out):
                torch.tanh(a, out=out)
            tanh_ = torch.tanh_
        self.tanh, self.tanh_ = tanh, tanh_

    def asarray(self, a):
        return self._tensor(np.ascontiguousarray(a, dtype=self.np_dtype))

    def _tensor(self, a):
        """A tensor on the device from a contiguous numpy array, sharing its memory
        where it can; validated input is read-only, and the engine never writes its
        inputs, so torch's warning about read-only arrays does not apply."""
        if a.flags.writeable:
            return self.torch.from_numpy(a).to(self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.torch.from_numpy(a).to(self.device)

    def params(self, params):
        return RNNParams(**{n: self.asarray(w) for n, w in params.as_dict().items()})

    def targets(self, targets):
        if targets.dtype.kind == "i":
            return self._tensor(np.ascontiguousarray(targets))
        return self.asarray(targets)

    def chunks(self, a):
        """Steps i+1..j of a time-major input as ``get(i, j)``: converted a chunk at a
        time on the CPU (sharing float64 memory); on a GPU uploaded once, so that the
        loops issue no host-to-device copies."""
        if self.device.type != "cpu":
            full = self.targets(a)
            return lambda i, j: full[i:j]
        if a.dtype.kind == "i":
            return lambda i, j: self._tensor(np.ascontiguousarray(a[i:j]))
        return lambda i, j: self.asarray(a[i:j])

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.dtype, device=self.device)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    @staticmethod
    def copy(a):
        return a.clone()

    @staticmethod
    def contiguous(a):
        return a.contiguous()

    @staticmethod
    def assign_(dst, src):
        dst.copy_(src)

    def result_empty(self, shape):
        """(a float64 tensor for a returned array, whether the engine can compute in it
        directly). On the CPU it is host memory that ``to_numpy`` returns without a
        copy; on a GPU it stays in device memory until the one copy at the end, so
        that the loops never wait for a device-to-host transfer."""
        if self.device.type == "cpu":
            out = self.torch.from_numpy(np.empty(shape))
        else:
            out = self.torch.empty(shape, dtype=self.torch.float64, device=self.device)
        return out, self.dtype == self.torch.float64

    @staticmethod
    def unbind(a):
        return a.unbind(0)

    def matmul(self, a, b, out=None):
        return self.torch.matmul(a, b) if out is None else self.torch.matmul(a, b, out=out)

    @staticmethod
    def addmm_(c, a, b, tmp=None):
        c.addmm_(a, b)

    @staticmethod
    def axpy_(y, alpha, x):
        y.add_(x, alpha=alpha)

    @staticmethod
    def iadd_(y, x):
        y.add_(x)

    def all_finite(self, a):
        return bool(self.torch.isfinite(a).all())

    @staticmethod
    def item(x):
        return float(x)

    def activation(self, name):
        torch = self.torch
        if name == "tanh":
            return self.tanh_   # numpy's kernel on the CPU (see __init__)
        if name == "sigmoid":
            return self.sigmoid_
        if name == "relu":
            return torch.relu_
        return lambda a: None

    def activation_derivative(self, name):
        torch = self.torch
        if name == "tanh":
            def tanh_derivative(h, out):      # 1 - h^2
                out.fill_(1.0)
                out.addcmul_(h, h, value=-1.0)
            return tanh_derivative
        if name == "sigmoid":
            def sigmoid_derivative(h, out):   # h - h^2
                torch.addcmul(h, h, h, value=-1.0, out=out)
            return sigmoid_derivative
        if name == "relu":
            def relu_derivative(h, out):
                torch.gt(h, 0.0, out=out)
            return relu_derivative

        def identity_derivative(h, out):
            out.fill_(1.0)
        return identity_derivative

    @staticmethod
    def mul_(a, b):
        a.mul_(b)

    # Elementwise kernels of the gated cells; ``out`` may be one of the inputs.
    def mul(self, a, b, out):
        self.torch.mul(a, b, out=out)

    def add(self, a, b, out):
        self.torch.add(a, b, out=out)

    def sub(self, a, b, out):
        self.torch.sub(a, b, out=out)

    @staticmethod
    def one_minus_(a):
        """a = 1 - a."""
        a.neg_().add_(1.0)

    @staticmethod
    def sigmoid_(a):
        """In-place logistic sigmoid: torch's kernel keeps both tails (2.06e-9 at
        a = -20 in float32)."""
        a.sigmoid_()

    gate_sigmoid_negated = False   # one kernel call either way
    gate_sigmoid_ = sigmoid_

    def concat(self, arrays):
        return self.torch.cat(arrays)

    def loss_and_grad(self, output, ys, d):
        torch = self.torch
        if output == "linear":
            ys.sub_(d)
            return 0.5 * torch.dot(ys.reshape(-1), ys.reshape(-1)), ys
        ys.sub_(ys.amax(dim=1, keepdim=True))
        rows = torch.arange(len(d), device=ys.device)
        picked = ys[rows, d]
        ys.exp_()
        z = ys.sum(dim=1)
        loss = torch.log(z).sum() - picked.sum()
        ys.div_(z[:, None])
        ys[rows, d] -= 1.0
        return loss, ys
