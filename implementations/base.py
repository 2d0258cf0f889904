"""What every built-in backend shares: validation on the way in, float64 numpy
and the overflow check on the way out. A backend supplies ``_forward(case)`` and
``_bptt(case, checked=False)`` on a validated ``reference.Case``."""
from __future__ import annotations

import numpy as np

from reference.types import BPTTResult, ForwardResult, RNNParams
from reference.validation import first_nonfinite_step, overflow_error, validate_bptt, validate_forward

DTYPES = ("float32", "float64")


def check_dtype(dtype, allowed=DTYPES):
    name = getattr(dtype, "__name__", None) or str(dtype).replace("torch.", "")
    if name not in allowed:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, allowed))}; got {dtype!r}")
    return name


class Backend:
    """Base of the built-in backends. Subclasses set ``name`` and implement
    ``_forward(case) -> (hs, ys[, cs])`` and
    ``_bptt(case, checked=False) -> (loss, grads, dh0, dhs[, dc0, dcs])`` with
    array-likes that ``to_numpy`` turns into numpy float64 (cs, dc0, dcs for the
    LSTM). ``checked=True`` asks for a FloatingPointError naming the first step where
    a non-finite value appears; it is passed only after a non-finite result."""

    name = "base"
    dtypes = DTYPES

    def __init__(self, dtype="float64"):
        self.dtype = check_dtype(dtype, self.dtypes)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} dtype={self.dtype!r}>"

    @staticmethod
    def to_numpy(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    def forward(self, spec, params, xs, h0=None, c0=None) -> ForwardResult:
        case = validate_forward(spec, params, xs, h0, c0)
        with np.errstate(all="ignore"):
            hs, ys, cs = (tuple(self._forward(case)) + (None,))[:3]
        hs, ys, cs = self.to_numpy(hs), self.to_numpy(ys), self.to_numpy(cs)
        step = first_nonfinite_step(np.concatenate([a for a in (hs, ys, cs) if a is not None], axis=2))
        if step is not None:
            raise overflow_error("forward pass", step, case.T)
        return ForwardResult(hs=hs, ys=ys, cs=cs)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None) -> BPTTResult:
        case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)
        with np.errstate(all="ignore"):
            loss, grads, dh0, dhs, dc0, dcs = (tuple(self._bptt(case)) + (None, None))[:6]
        result = BPTTResult(
            loss=float(loss),
            grads=RNNParams(**{n: self.to_numpy(g) for n, g in grads.as_dict().items()}),
            dh0=self.to_numpy(dh0),
            dhs=self.to_numpy(dhs),
            dc0=self.to_numpy(dc0),
            dcs=self.to_numpy(dcs),
        )
        if not _all_finite(result):
            self._raise_overflow(case)
        return result

    def _raise_overflow(self, case):
        """A non-finite result: run again checking every step, which raises a
        FloatingPointError naming the step (only the error path pays for checks)."""
        with np.errstate(all="ignore"):
            self._bptt(case, checked=True)
        raise FloatingPointError(
            f"overflow in the {self.dtype} backward pass of backend {self.name!r}: the result is "
            f"not finite although float64 is (the values exceed the range of {self.dtype})"
        )

    # subclasses
    def _forward(self, case):
        raise NotImplementedError

    def _bptt(self, case, checked=False):
        raise NotImplementedError


def _all_finite(result):
    arrays = [result.dh0, *result.grads.as_dict().values()]
    arrays += [a for a in (result.dhs, result.dc0, result.dcs) if a is not None]
    return np.isfinite(result.loss) and all(np.isfinite(a).all() for a in arrays)
