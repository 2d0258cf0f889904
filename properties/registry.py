"""The registry of the conformance properties: name -> (property, case builder)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from .agreement import prop_bptt, prop_finite_differences, prop_forward, prop_rtrl
from .bad_input import BadInput, build_bad_input, prop_errors
from .clipping import prop_clipping
from .elman_laws import prop_decay_bound, prop_growth_law, prop_orthogonal_law, prop_truncation_error_bound
from .hygiene import prop_determinism, prop_inputs_untouched
from .hypothesis_helpers import SMALL_CAPS, Caps, Problem, draw_problem
from .truncation import prop_dhs_presence, prop_truncation_cut, prop_truncation_full


@dataclass(frozen=True)
class Property:
    name: str
    check: Callable        # check(backend, case) -> float | None
    build: Callable        # build(draw, caps) -> case
    doc: str
    examples_factor: int = 1  # runs this many times the profile's max_examples (cheap, many-branched cases)


def _growth_case(draw, caps):
    H = draw(st.integers(1, min(6, caps.H)), "H (= B = O)")
    p = draw_problem(draw, caps, activations=("identity",), outputs=("linear",), targets=("last",),
                     regimes=("random", "radius", "orthogonal", "exploding", "contracting"), truncation="none",
                     fixed_sizes={"H": H, "B": H, "O": H})
    # States at rest (x = 0, h0 = 0, b = 0) so that y_T = 0 exactly: with d_T = -B I,
    # dL/dy_T = (y_T - d_T) / B = I exactly, and W_y = I makes dL/dh_T = I. Identity f makes
    # the backward pass independent of the states.
    params = replace(p.params, W_y=np.eye(H), b_h=np.zeros(H), b_y=np.zeros(H))
    targets = np.array(p.targets)
    targets[-1] = -H * np.eye(H)
    return replace(p, params=params, xs=np.zeros_like(p.xs), h0=None, targets=targets)


def _clip_case(draw, caps):
    p = draw_problem(draw, caps)
    return (p, draw(st.floats(0.05, 2.0), "max_norm / norm"), draw(st.floats(0.05, 1.2), "clip value / max|g|"))


def _at_most(caps: Caps, cap: Caps) -> Caps:
    """Each size of ``caps`` bounded by ``cap`` (RTRL's cost grows as T^2 H^3)."""
    return Caps(**{k: min(v, getattr(cap, k)) for k, v in caps.__dict__.items()})


def _prop(name, check, build, examples_factor=1):
    return Property(name, check, build, (check.__doc__ or "").strip().split("\n\n")[0], examples_factor)


PROPERTIES = {p.name: p for p in [
    _prop("forward", prop_forward, lambda d, c: draw_problem(d, c, truncation="none")),
    _prop("bptt", prop_bptt, lambda d, c: draw_problem(d, c, truncation="none")),
    _prop("finite_differences", prop_finite_differences, lambda d, c: draw_problem(d, c, truncation="none")),
    _prop("rtrl", prop_rtrl, lambda d, c: draw_problem(d, _at_most(c, SMALL_CAPS))),
    _prop("truncation_full", prop_truncation_full, lambda d, c: draw_problem(d, c, truncation="full")),
    _prop("truncation_cut", prop_truncation_cut, lambda d, c: draw_problem(d, c, truncation="cut", min_T=2)),
    _prop("dhs_presence", prop_dhs_presence, lambda d, c: draw_problem(d, c)),
    _prop("decay_bound", prop_decay_bound, lambda d, c: draw_problem(d, c, targets=("last",), truncation="none")),
    _prop("orthogonal_law", prop_orthogonal_law, lambda d, c: draw_problem(
        d, c, activations=("identity",), targets=("last",), regimes=("orthogonal",), truncation="none")),
    _prop("growth_law", prop_growth_law, _growth_case),
    _prop("truncation_error_bound", prop_truncation_error_bound, lambda d, c: draw_problem(
        d, c, regimes=("contracting",), truncation="cut", min_T=2)),
    _prop("clipping", prop_clipping, _clip_case),
    _prop("errors", prop_errors, build_bad_input, examples_factor=4),  # ~1 ms a case, a dozen kinds of bad input
    _prop("determinism", prop_determinism, lambda d, c: draw_problem(d, c)),
    _prop("inputs_untouched", prop_inputs_untouched, lambda d, c: draw_problem(d, c)),
]}


def describe_case(case) -> str:
    if isinstance(case, tuple):
        return "\n".join(describe_case(c) if isinstance(c, (Problem, BadInput)) else repr(c) for c in case)
    return case.describe() if hasattr(case, "describe") else repr(case)
