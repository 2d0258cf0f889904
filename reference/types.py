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

from .cells import ACTIVATION, CELL_NAMES

ACTIVATIONS = tuple(ACTIVATION)
OUTPUTS = ("linear", "softmax")
TARGETS = ("every", "last")
CELLS = CELL_NAMES

#: Largest slope of each activation (gamma in the decay/growth laws).
ACTIVATION_SLOPE = {name: a.slope for name, a in ACTIVATION.items()}


@dataclass(frozen=True)
class RNNSpec:
    """What is computed: activation f, output kind, which steps are scored, l2, and
    the recurrent cell ("elman", "lstm" or "gru"; see ``reference.cells``)."""

    activation: str = "tanh"
    output: str = "linear"
    targets: str = "every"
    l2: float = 0.0
    cell: str = "elman"

    def __post_init__(self):
        from .validation import check_spec

        check_spec(self)


@dataclass(frozen=True)
class RNNParams:
    """W_x (G H, D), W_h (G H, H), b_h (G H,), W_y (O, H), b_y (O,), and b_hn (H,) for
    the GRU (None for the other cells); G is the cell's number of gate blocks (1, 4, 3)."""

    W_x: Any
    W_h: Any
    b_h: Any
    W_y: Any
    b_y: Any
    b_hn: Any = None

    def as_dict(self) -> dict:
        """The arrays it holds, by name (b_hn only when it is not None)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "b_hn" or self.b_hn is not None}

    @classmethod
    def names(cls) -> tuple:
        """The five parameters every cell has (a cell's own list: ``reference.cells.CELLS[name].params``)."""
        return tuple(f.name for f in fields(cls) if f.name != "b_hn")


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
    cs: Optional[np.ndarray] = None  # (T, B, H): c_1 .. c_T for "lstm"; None for the other cells


@dataclass(frozen=True)
class BPTTResult:
    loss: float
    grads: RNNParams
    dh0: np.ndarray  # (B, H)
    dhs: Optional[np.ndarray]  # (T, B, H), None when truncation cuts anything
    dc0: Optional[np.ndarray] = None  # (B, H) dL/dc0 for "lstm"; None for the other cells
    dcs: Optional[np.ndarray] = None  # (T, B, H) total dL/dc_t for "lstm" (None when truncation cuts)
