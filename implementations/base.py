"""What every built-in backend shares: validation on the way in, float64 numpy
and the overflow check on the way out. A backend supplies ``_forward(case)`` and
``_bptt(case)`` on a validated ``reference.Case``, and may supply
``_bptt_checked(case, result)`` for the overflow error (see ``Backend``)."""
from __future__ import annotations

import inspect

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
    """Base of the built-in backends, and a convenient base for your own.

    A subclass sets ``name`` (and ``dtypes``, the dtypes it computes in) and implements

    - ``_forward(case) -> (hs, ys)`` or ``(hs, ys, cs)`` (cs for the LSTM);
    - ``_bptt(case) -> (loss, grads, dh0, dhs)`` or ``(..., dc0, dcs)`` for the LSTM,
      where grads is an ``RNNParams``;

    on a validated ``reference.validation.Case`` (checked read-only float64 arrays, the
    sizes T, B, D, H, O, ``truncation`` None when nothing is cut), returning array-likes
    that ``to_numpy`` turns into numpy float64. ``forward`` and ``bptt`` validate the
    input, call these hooks under ``np.errstate(all="ignore")`` and check the result.

    Overflow: when a result is not finite, ``bptt`` calls ``_bptt_checked(case, result)``
    (``result``: the non-finite BPTTResult, as numpy), which should rerun the computation checking every step and raise the FloatingPointError
    naming the first step where a non-finite value appeared (``reference.validation.
    overflow_error``). The default finds that step from ``_forward`` (the states and
    outputs) and from the returned ``dhs``; when neither shows it, a FloatingPointError
    without a step is raised. A backend need not implement it: only the error path pays
    for the checks."""

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
            self._raise_overflow(case, result)
        return result

    def _raise_overflow(self, case, result=None):
        """A non-finite result: ``_bptt_checked`` names the step; if it returns instead,
        the generic error below is raised."""
        with np.errstate(all="ignore"):
            self._bptt_checked(case, result)
        raise FloatingPointError(
            f"overflow in the {self.dtype} backward pass of backend {self.name!r}: the result is "
            f"not finite although float64 is (the values exceed the range of {self.dtype})"
        )

    def _bptt_checked(self, case, result=None):
        """Raise the FloatingPointError naming the first non-finite step of ``case``
        (called only after a non-finite result; ``result`` is that result, as numpy).

        The default: the first step of the forward pass whose states or outputs are not
        finite (``_forward``), else the first step of the backward pass (the last index)
        where ``dhs`` is not finite. Built-in backends whose ``_bptt`` takes
        ``checked=True`` rerun with per-step checks instead."""
        if "checked" in _parameters(self._bptt):
            self._bptt(case, checked=True)
            return
        outs = [self.to_numpy(a) for a in tuple(self._forward(case)) if a is not None]
        step = first_nonfinite_step(np.concatenate(outs, axis=2)) if outs else None
        if step is not None:
            raise overflow_error("forward pass", step, case.T)
        dhs = None if result is None else result.dhs
        step = first_nonfinite_step(dhs, backward=True) if dhs is not None else None
        if step is not None:
            raise overflow_error("backward pass", step, case.T)

    # subclasses
    def _forward(self, case):
        raise NotImplementedError

    def _bptt(self, case):
        raise NotImplementedError


def _parameters(fn):
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def _all_finite(result):
    arrays = [result.dh0, *result.grads.as_dict().values()]
    arrays += [a for a in (result.dhs, result.dc0, result.dcs) if a is not None]
    return np.isfinite(result.loss) and all(np.isfinite(a).all() for a in arrays)
