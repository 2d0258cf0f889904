"""The registry of the conformance properties: name -> (property, case builder, what it
applies to).

Each row says which cells it applies to (``cells``: every cell for the generic
properties; for a law, the cells whose row in ``reference.cells.CELLS`` lists it in
``laws``) and which backend features it needs (``needs``: "dhs", "dcs", "truncation").
Its builder is called as ``build(draw, caps, cells)`` with the cells allowed in this
run and draws only those of them it applies to.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from reference.cells import CELL_NAMES, CELLS

from .agreement import prop_bptt, prop_finite_differences, prop_forward, prop_rtrl
from .bad_input import BadInput, build_bad_input, prop_errors
from .carousel import carousel_case, prop_gru_carousel, prop_lstm_carousel
from .clipping import prop_clipping
from .elman_laws import prop_decay_bound, prop_growth_law, prop_orthogonal_law, prop_truncation_error_bound
from .hygiene import prop_determinism, prop_inputs_untouched
from .hypothesis_helpers import SMALL_CAPS, Caps, Problem, draw_problem
from .truncation import prop_dhs_presence, prop_truncation_cut, prop_truncation_full


@dataclass(frozen=True)
class Property:
    name: str
    check: Callable        # check(backend, case) -> float | results.Measured | None
    build: Callable        # build(draw, caps, cells=CELL_NAMES) -> case, drawing only from cells & self.cells
    doc: str
    examples_factor: int = 1  # runs this many times the profile's max_examples (cheap, many-branched cases)
    cells: tuple = CELL_NAMES  # the cells it applies to
    needs: tuple = ()          # backend features it needs ("dhs", "dcs", "truncation")


def laws_cells(law: str) -> tuple:
    """The cells whose row lists ``law`` among its laws."""
    return tuple(c for c in CELL_NAMES if law in CELLS[c].laws)


def _growth_case(draw, caps, cells):
    H = draw(st.integers(1, min(6, caps.H)), "H (= B = O)")
    p = draw_problem(draw, caps, cells=cells, activations=("identity",), outputs=("linear",), targets=("last",),
                     regimes=("random", "radius", "orthogonal", "exploding", "contracting"), truncation="none",
                     fixed_sizes={"H": H, "B": H, "O": H})
    # States at rest (x = 0, h0 = 0, b = 0) so that y_T = 0 exactly: with d_T = -B I,
    # dL/dy_T = (y_T - d_T) / B = I exactly, and W_y = I makes dL/dh_T = I. Identity f makes
    # the backward pass independent of the states.
    params = replace(p.params, W_y=np.eye(H), b_h=np.zeros(H), b_y=np.zeros(H))
    targets = np.array(p.targets)
    targets[-1] = -H * np.eye(H)
    return replace(p, params=params, xs=np.zeros_like(p.xs), h0=None, targets=targets)


def _clip_case(draw, caps, cells):
    p = draw_problem(draw, caps, cells=cells)
    return (p, draw(st.floats(0.05, 2.0), "max_norm / norm"), draw(st.floats(0.05, 1.2), "clip value / max|g|"))


def _at_most(caps: Caps, cap: Caps) -> Caps:
    """Each size of ``caps`` bounded by ``cap`` (RTRL's cost grows as T^2 H^3)."""
    return Caps(**{k: min(v, getattr(cap, k)) for k, v in caps.__dict__.items()})


def _problems(**kw):
    """A builder of draw_problem cases narrowed by ``kw``."""
    return lambda d, c, cells: draw_problem(d, c, cells=cells, **kw)


def _prop(name, check, build, examples_factor=1, cells=CELL_NAMES, needs=()):
    applies = tuple(cells)

    def builder(draw, caps, cells=CELL_NAMES):
        allowed = tuple(c for c in applies if c in tuple(cells))
        if not allowed:
            raise ValueError(f"property {name!r} applies to cells {applies}; none of {tuple(cells)} is one")
        return build(draw, caps, allowed)

    return Property(name, check, builder, (check.__doc__ or "").strip().split("\n\n")[0], examples_factor,
                    applies, tuple(needs))

PROPERTIES = {p.name: p for p in [
    _prop("forward", prop_forward, _problems(truncation="none", corners=True)),
    _prop("bptt", prop_bptt, _problems(truncation="none", corners=True)),
    _prop("finite_differences", prop_finite_differences, _problems(truncation="none", corners=True)),
    _prop("rtrl", prop_rtrl, lambda d, c, cells: draw_problem(d, _at_most(c, SMALL_CAPS), cells=cells, corners=True)),
    _prop("truncation_full", prop_truncation_full, _problems(truncation="full", corners=True), needs=("truncation",)),
    _prop("truncation_cut", prop_truncation_cut, _problems(truncation="cut", min_T=2, corners=True),
          needs=("truncation",)),
    # not needs=("dhs",): without dhs it still checks that nothing is returned when truncation cuts
    _prop("dhs_presence", prop_dhs_presence, _problems()),
    _prop("decay_bound", prop_decay_bound, _problems(targets=("last",), truncation="none"),
          cells=laws_cells("decay_bound"), needs=("dhs",)),
    _prop("orthogonal_law", prop_orthogonal_law, _problems(
        activations=("identity",), targets=("last",), regimes=("orthogonal",), truncation="none"),
        cells=laws_cells("orthogonal_law"), needs=("dhs",)),
    _prop("growth_law", prop_growth_law, _growth_case, cells=laws_cells("growth_law"), needs=("dhs",)),
    _prop("truncation_error_bound", prop_truncation_error_bound, _problems(
        regimes=("contracting",), truncation="cut", min_T=2), cells=laws_cells("truncation_error_bound"),
        needs=("truncation",)),
    _prop("lstm_carousel", prop_lstm_carousel, carousel_case, cells=laws_cells("lstm_carousel"),
          needs=("dhs", "dcs")),
    _prop("gru_carousel", prop_gru_carousel, carousel_case, cells=laws_cells("gru_carousel"), needs=("dhs",)),
    _prop("clipping", prop_clipping, _clip_case),
    _prop("errors", prop_errors, build_bad_input, examples_factor=4),  # ~1 ms a case, a score of kinds of bad input
    _prop("determinism", prop_determinism, _problems()),
    _prop("inputs_untouched", prop_inputs_untouched, _problems()),
]}


def describe_case(case) -> str:
    if isinstance(case, tuple):
        return "\n".join(describe_case(c) if isinstance(c, (Problem, BadInput)) else repr(c) for c in case)
    return case.describe() if hasattr(case, "describe") else repr(case)
