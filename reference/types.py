"""The value types of the backend contract: spec, parameters, truncation, results.

All are frozen dataclasses with exactly the fields of the contract. ``RNNSpec`` and
``Truncation`` check their own fields on construction (through
``reference.validation``, the one place where input is checked); arrays are checked
when a backend is called, because only then are all shapes known together.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
OUTPUTS = ("linear", "softmax")
TARGETS = ("every", "last")

#: Largest slope of each activation (gamma in the decay/growth laws).
ACTIVATION_SLOPE = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "identity": 1.0}


@dataclass(frozen=True)
class RNNSpec:
    """What is computed: activation f, output kind, which steps are scored, l2."""

    activation: str = "tanh"
    output: str = "linear"
    targets: str = "every"
    l2: float = 0.0

    def __post_init__(self):
        from .validation import check_spec

        check_spec(self)


@dataclass(frozen=True)
class RNNParams:
    """W_x (H, D), W_h (H, H), b_h (H,), W_y (O, H), b_y (O,)."""

    W_x: Any
    W_h: Any
    b_h: Any
    W_y: Any
    b_y: Any

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Truncation:
    """BPTT(h; h') of Williams and Peng (1990): blocks of h' steps, each
    backpropagated h steps. ``h_prime`` defaults to ``h``."""

    h: int
    h_prime: Optional[int] = None

    def __post_init__(self):
        from .validation import check_truncation

        h, h_prime = check_truncation(self.h, self.h_prime)
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "h_prime", h_prime)


@dataclass(frozen=True)
class ForwardResult:
    hs: np.ndarray  # (T, B, H): h_1 .. h_T
    ys: np.ndarray  # (T, B, O): y_1 .. y_T


@dataclass(frozen=True)
class BPTTResult:
    loss: float
    grads: RNNParams
    dh0: np.ndarray  # (B, H)
    dhs: Optional[np.ndarray]  # (T, B, H), None when truncation cuts anything
