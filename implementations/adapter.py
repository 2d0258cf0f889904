"""The small public API for writing a backend around someone else's kernel.

A third-party backend is any object with ``name``, ``dtype``, ``forward`` and
``bptt`` (docs/contract.md section 3). What the contract asks of it beyond the
numbers - the errors of bad input, the blocks of truncation, overflow named by its
step, unsupported features declared - is the same for every backend, so it is here
once:

    from implementations.adapter import (validate_bptt, validate_forward, blocks, scored_steps,
                                         check_finite, unsupported)

    def bptt(self, spec, params, xs, targets, h0=None, truncation=None, c0=None):
        case = validate_bptt(spec, params, xs, targets, h0, truncation, c0)   # ValueError/TypeError
        if case.spec.activation not in ("tanh", "relu"):
            raise unsupported(f"activation {case.spec.activation!r}")        # NotImplementedError
        ...                                  # case.xs, case.h0, case.params: float64, checked shapes
        for first, e, s in blocks(case.T, case.truncation):                  # BPTT(h; h') blocks
            ...
        check_finite("backward pass", dhs, case.T, backward=True)            # FloatingPointError at t=...

``validate_*`` return a ``Case`` (``reference.validation.Case``): the checked
spec, params, xs (T, B, D), h0 (B, H; zeros when omitted), c0 (LSTM), targets and
truncation (None when nothing is cut), all float64, with the sizes ``T, B, D, H, O``
and the cell's row ``case.cell``. Its arrays are writable copies private to the call
(``torch.as_tensor`` and ``jax.numpy.asarray`` take them as they are, and nothing the
backend does to them reaches the caller's arrays).

``Backend`` (``implementations.base.Backend``) is a base class that does the
validation and the checks of the result for you: implement ``_forward(case)`` and
``_bptt(case)`` (its docstring says what they return).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from reference import validation as _validation
from reference.bptt import blocks, scored_steps
from reference.validation import Case, first_nonfinite_step, overflow_error

from .base import Backend


def _writable(case: Case) -> Case:
    def own(a):
        return None if a is None else np.array(a, copy=True)

    params = replace(case.params, **{n: own(a) for n, a in case.params.as_dict().items()})
    return replace(case, params=params, xs=own(case.xs), h0=own(case.h0), targets=own(case.targets), c0=own(case.c0))


def validate_forward(spec, params, xs, h0=None, c0=None) -> Case:
    """The checked input of ``forward`` (docs/contract.md section 4 errors for bad input),
    as a Case of writable float64 copies."""
    return _writable(_validation.validate_forward(spec, params, xs, h0, c0))


def validate_bptt(spec, params, xs, targets, h0=None, truncation=None, c0=None) -> Case:
    """The checked input of ``bptt`` (docs/contract.md section 4 errors for bad input), as
    a Case of writable copies: float64, targets int64 class indices for softmax;
    ``case.truncation`` is None when nothing is cut (h >= T)."""
    return _writable(_validation.validate_bptt(spec, params, xs, targets, h0, truncation, c0))


def check_finite(what, per_step, T, backward=False):
    """Raise the contract's FloatingPointError when ``per_step`` (an array whose first
    axis is time, step t = 1 at index 0) holds a non-finite value: it names the first
    step in computation order (the last index when ``backward``). ``what`` says which
    computation ("forward pass", "backward pass", "loss")."""
    step = first_nonfinite_step(per_step, backward=backward)
    if step is not None:
        raise overflow_error(what, step, T)


def unsupported(feature):
    """The NotImplementedError by which a partial backend declares a feature it lacks
    (docs/contract.md section 5, "Partial backends"): ``feature`` names it the way the
    checker lists it, e.g. "cell 'gru'", "activation 'sigmoid'", "truncation", "float64"."""
    return NotImplementedError(f"{feature} is not supported by this backend")


__all__ = ["Backend", "Case", "validate_bptt", "validate_forward", "blocks", "scored_steps", "check_finite",
           "first_nonfinite_step", "overflow_error", "unsupported"]
