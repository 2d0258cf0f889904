"""Hypothesis strategies for the conformance properties, and the profiles.

Everything random about a case is drawn here, once, and shared: the coupled sizes
(T, B, D, H, O) are drawn together and every array is built from them, so that no
property can draw an inconsistent case. The size caps live in ONE place
(``FULL_CAPS``; ``MEDIUM_CAPS`` and ``SMALL_CAPS`` for backends whose cost grows fast).

Draws are labelled (``draw(strategy, label=...)``): a shrunk counterexample then
reads "size class = 'long'", "regime = 'exploding'", ... The array entries come
from a NumPy generator seeded by a drawn integer (drawing thousands of floats one
by one through Hypothesis would be slow and would shrink no better); the choices
that matter - sizes, spec, regime, scales, truncation, which axes have size 1 -
are Hypothesis draws and shrink.

Long sequences (T > 10) and wide layers (H > 12) are a size class of their own, so
that they are drawn in about half of the examples even under the small ``ci``
budget: bugs that appear only there are found.

The cell is drawn like any other choice, first, in the order of the cell table
(``reference.cells.CELLS``), so that a failure shrinks towards the Elman cell; its
row gives the gate-stacked shapes (``CELLS[cell].shapes(D, H, O)``) and the
activations it accepts (tanh only for the gated cells).

Saturating corners: a builder may ask for ``corners=True``. Its first draw then picks
either an ordinary drawn case or one of the fixed corner cases (every allowed cell and
activation with all pre-activations large and negative, or large and positive, see
``corner_cases``). A corner makes no further draw, so Hypothesis never draws it twice
and draws every corner within the first ~15 examples of a run, whatever the backend
is called and whichever profile runs (the derandomised ``ci`` stream included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from reference.cells import CELL_NAMES, CELLS
from reference.types import ACTIVATION_SLOPE, ACTIVATIONS, OUTPUTS, TARGETS, RNNParams, RNNSpec, Truncation
from reference.validation import CaseSizes

from . import laws

# ---------------------------------------------------------------------------
# Size caps: the one place where the case sizes are bounded.


@dataclass(frozen=True)
class Caps:
    T: int  # sequence length
    B: int  # batch
    D: int  # input size
    H: int  # hidden size
    O: int  # noqa: E741 - output size (classes for softmax)
    short_T: int = 10  # T <= short_T is "short"; the long class draws short_T < T <= T
    narrow_H: int = 12  # H <= narrow_H is "narrow"; the wide class draws narrow_H < H <= H
    big_B: int = 0  # > B: the "long+big batch" class draws B < batch <= big_B (0: no such class)


#: The caps for every backend: long enough (T up to 60) and wide enough (H up to 32)
#: for bugs in chunked or blocked code paths, small enough for ~10 ms per case.
#: A long sequence with a big batch (up to 60 x 64 = 3840 rows) reaches code that works
#: in panels of steps x batch rows.
FULL_CAPS = Caps(T=60, B=6, D=5, H=32, O=5, big_B=64)
#: For backends that pay per step in Python and per truncation block (PyTorch autograd
#: step by step: BPTT(h; 1) costs T h cell calls): still long (T > 10) and wide (H > 12).
MEDIUM_CAPS = Caps(T=30, B=6, D=5, H=24, O=5)
#: For backends whose cost grows as T^2 H^3 (RTRL): no long or wide class.
SMALL_CAPS = Caps(T=8, B=3, D=3, H=5, O=3, short_T=8, narrow_H=5)
#: Backend names that get smaller caps by default.
EXPENSIVE_BACKENDS = {"rtrl": SMALL_CAPS, "torch-autograd": MEDIUM_CAPS}

SIZE_CLASSES = ("short", "long", "wide", "long+wide", "long+big batch")

# ---------------------------------------------------------------------------
# Profiles, registered in one place.

_COMMON = dict(
    deadline=None,
    print_blob=True,
    database=None,  # replay is by seed / profile, not by a local example database
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

PROFILES = {
    # Reproducible and quick: the same examples on every run and machine.
    "ci": dict(_COMMON, derandomize=True, max_examples=50),
    # Random each run (a seed is drawn and reported so a failure can be replayed).
    "dev": dict(_COMMON, max_examples=100),
    # Many examples, for a release or a new backend.
    "thorough": dict(_COMMON, max_examples=1000),
}
for _name, _kw in PROFILES.items():
    settings.register_profile(f"bptt-{_name}", **_kw)


def profile_settings(profile: str, max_examples: Optional[int] = None) -> settings:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(map(repr, PROFILES))}; got {profile!r}")
    s = settings.get_profile(f"bptt-{profile}")
    return settings(s, max_examples=max_examples) if max_examples is not None else s


# ---------------------------------------------------------------------------
# The case every property receives.


@dataclass(frozen=True)
class Problem(CaseSizes):
    """One drawn case: the arguments of ``backend.bptt`` and what was drawn to get them.
    ``c0`` is the LSTM's initial cell state (None: zeros, and always None for the other
    cells); the gated cells' parameters are gate-stacked (``CELLS[cell].shapes``)."""

    spec: RNNSpec
    params: RNNParams
    xs: np.ndarray
    targets: np.ndarray
    h0: Optional[np.ndarray]
    truncation: Optional[Truncation]
    regime: str = "random"
    seed: int = 0
    notes: tuple = field(default=())  # (label, value) of the labelled draws
    c0: Optional[np.ndarray] = None

    @property
    def cell(self):
        """The cell's row of ``reference.cells.CELLS``."""
        return CELLS[self.spec.cell]

    @property
    def gamma(self):
        return ACTIVATION_SLOPE[self.spec.activation]

    def _state_kw(self):
        """h0, and c0 only for an LSTM spec: a backend written before the gated cells
        never gets c0 (contract section 3)."""
        kw = {"h0": self.h0}
        if len(self.cell.state) > 1:
            kw["c0"] = self.c0
        return kw

    def forward_args(self):
        return (self.spec, self.params, self.xs), self._state_kw()

    def bptt_args(self, truncation="same"):
        tr = self.truncation if truncation == "same" else truncation
        return (self.spec, self.params, self.xs, self.targets), dict(self._state_kw(), truncation=tr)

    def initial_state(self):
        """(h0, c0) as float64 arrays, zeros where omitted (c0 None for non-LSTM cells)."""
        h0 = np.zeros((self.B, self.H)) if self.h0 is None else np.asarray(self.h0, dtype=np.float64)
        if len(self.cell.state) == 1:
            return h0, None
        return h0, (np.zeros((self.B, self.H)) if self.c0 is None else np.asarray(self.c0, dtype=np.float64))

    def describe(self, max_entries: int = 400) -> str:
        """The case as text: what was drawn, then every array when the case is small."""
        W_h = np.asarray(self.params.W_h, dtype=np.float64)
        sig = laws.sigma_max(W_h)
        state = f"h0={'given' if self.h0 is not None else 'None'}"
        if len(self.cell.state) > 1:
            state += f", c0={'given' if self.c0 is not None else 'None'}"
        lines = [f"cell={self.spec.cell!r} T={self.T} B={self.B} D={self.D} H={self.H} O={self.O}; {self.spec}; "
                 f"truncation={self.truncation}; {state}"]
        if self.cell.G == 1:
            rho = laws.spectral_radius(W_h)
            lines.append(f"regime={self.regime!r} seed={self.seed}: rho(W_h)={rho:.6g}, sigma_max(W_h)={sig:.6g}, "
                         f"gamma*sigma_max={self.gamma * sig:.6g}")
        else:
            b = np.asarray(self.params.b_h, dtype=np.float64)
            gates = ", ".join(f"{g}: [{b[self.cell.block(g, self.H)].min():.3g}, {b[self.cell.block(g, self.H)].max():.3g}]"
                              for g in self.cell.gates)
            lines.append(f"regime={self.regime!r} seed={self.seed}: sigma_max(W_h)={sig:.6g}; gate biases {gates}")
        if self.notes:
            lines.append("draws: " + ", ".join(f"{k}={v!r}" for k, v in self.notes))
        arrays = dict(self.params.as_dict(), xs=self.xs, targets=self.targets)
        if self.h0 is not None:
            arrays["h0"] = self.h0
        if self.c0 is not None:
            arrays["c0"] = self.c0
        if sum(np.size(a) for a in arrays.values()) <= max_entries:
            with np.printoptions(precision=17, threshold=max_entries, linewidth=120):
                for k, a in arrays.items():
                    lines.append(f"{k} = np.array({np.array2string(np.asarray(a), separator=', ')})")
        else:
            lines.append("(arrays not printed: rebuilt from the seed by the replay command)")
        return "\n".join(lines)

    __str__ = describe


# ---------------------------------------------------------------------------
# Building blocks. ``draw(strategy, label)`` is either ``data.draw`` (labelled) or a
# composite's ``draw`` wrapped to ignore the label.

Draw = Callable[..., object]


def labelled(data) -> Draw:
    """A ``draw(strategy, label)`` over ``st.data()``: the labels show in reports."""
    notes = []

    def draw(strategy, label):
        value = data.draw(strategy, label=label)
        notes.append((label, value))
        return value

    draw.notes = notes
    return draw


def _composite_draw(draw) -> Draw:
    notes = []

    def d(strategy, label):
        value = draw(strategy)
        notes.append((label, value))
        return value

    d.notes = notes
    return d


def draw_sizes(draw: Draw, caps: Caps = FULL_CAPS, min_T: int = 1, fixed: Optional[dict] = None) -> dict:
    """(T, B, D, H, O), drawn together: a size class first (short, long, wide, long+wide, long+big batch),
    then each size in its range, then which axes are forced to size 1."""
    fixed = dict(fixed or {})
    classes = [c for c in SIZE_CLASSES
               if ("long" not in c or caps.T > caps.short_T) and ("wide" not in c or caps.H > caps.narrow_H)
               and ("big" not in c or caps.big_B > caps.B)]
    size_class = draw(st.sampled_from(classes), "size class")
    long_, wide, big = "long" in size_class, "wide" in size_class, "big" in size_class
    T_lo, T_hi = (max(caps.short_T + 1, min_T), caps.T) if long_ else (min_T, max(min_T, min(caps.short_T, caps.T)))
    H_lo, H_hi = (caps.narrow_H + 1, caps.H) if wide else (1, min(caps.narrow_H, caps.H))
    sizes = {
        "T": fixed.get("T") or draw(st.integers(T_lo, T_hi), "T"),
        "B": fixed.get("B") or draw(st.integers(caps.B + 1, caps.big_B) if big else st.integers(1, caps.B), "B"),
        "D": fixed.get("D") or draw(st.integers(1, caps.D), "D"),
        "H": fixed.get("H") or draw(st.integers(H_lo, H_hi), "H"),
        "O": fixed.get("O") or draw(st.integers(1, caps.O), "O"),
    }
    free = [a for a in "BDO" if a not in fixed and not (a == "B" and big)] + ([] if long_ or min_T > 1 or "T" in fixed else ["T"]) \
        + ([] if wide or "H" in fixed else ["H"])
    if free:
        for axis in draw(st.sets(st.sampled_from(sorted(free)), max_size=len(free)), "size-1 axes"):
            sizes[axis] = 1
    return sizes


def draw_spec(draw: Draw, activations=ACTIVATIONS, outputs=OUTPUTS, targets=TARGETS, l2=True,
              cell: str = "elman") -> RNNSpec:
    """The spec of a case of ``cell``: its activation among ``activations`` that the
    cell's row accepts (tanh only for the gated cells)."""
    allowed = _activations_of(cell, activations)
    if not allowed:
        raise ValueError(f"cell {cell!r} accepts none of the activations {tuple(activations)}")
    activation = draw(st.sampled_from(allowed), "activation")
    output = draw(st.sampled_from(tuple(outputs)), "output")
    scored = draw(st.sampled_from(tuple(targets)), "targets")
    l2v = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0, allow_nan=False)), "l2") if l2 else 0.0
    return RNNSpec(activation=activation, output=output, targets=scored, l2=l2v, cell=cell)


def draw_truncation(draw: Draw, T: int, kind: str = "any") -> Optional[Truncation]:
    """kind: "any", "none", "cut" (h < T: something is cut), "full" (h >= T, any h')."""
    kinds = {
        "any": ["none", "h>=T", "h'=1", "h'=h", "general"],
        "cut": ["h'=1", "h'=h", "general"],
        "full": ["h>=T"],
        "none": ["none"],
    }[kind]
    if T == 1:
        kinds = [k for k in kinds if k in ("none", "h>=T")] or ["h>=T"]
    which = draw(st.sampled_from(kinds), "truncation kind")
    if which == "none":
        return None
    if which == "h>=T":
        h = draw(st.integers(T, T + 3), "h")
        return Truncation(h, draw(st.integers(1, h), "h'"))
    h = draw(st.integers(1, T - 1), "h")
    if which == "h'=1":
        return Truncation(h, 1)
    if which == "h'=h":
        return Truncation(h, h)
    return Truncation(h, draw(st.integers(1, h), "h'"))


#: Weight regimes of the Elman cell: how W_h (and the scales around it) are built.
REGIMES = ("random", "radius", "orthogonal", "contracting", "exploding", "saturated", "dead_relu")
#: Weight regimes of the gated cells: "saturated" drives every gate to 0 or 1 (and tanh(c) to
#: +-1 as c accumulates), "memory" / "forgetful" set the bias of the carousel gate (the
#: row's ``carousel_gate``: the LSTM's forget gate, the GRU's update gate) 1 to 6 above / below
#: the others (sigma(6) = 0.9975: a gradient carried over hundreds of steps).
GATED_REGIMES = ("random", "saturated", "memory", "forgetful")
#: The signs of the pre-activations in the "saturated" regime: both, or all of one sign.
SATURATION_SIGNS = ("mixed", "negative", "positive")


def regimes_of(cell: str) -> tuple:
    """The weight regimes drawn for ``cell``: the spectral regimes of W_h for the Elman
    cell (one gate block), the gate regimes for the gated cells."""
    return REGIMES if CELLS[cell].G == 1 else GATED_REGIMES


def _activations_of(cell, activations):
    return tuple(a for a in activations if a in CELLS[cell].activations)


def _cells_for(cells, activations, regimes):
    """The cells of ``cells`` (in table order) for which something can be drawn."""
    out = tuple(c for c in CELL_NAMES if c in tuple(cells) and _activations_of(c, activations)
                and (regimes is None or set(regimes) & set(regimes_of(c))))
    if not out:
        raise ValueError(f"no cell of {tuple(cells)} accepts the activations {tuple(activations)} "
                         f"and the regimes {regimes}")
    return out


def _fixed_draw(values: dict, notes=()) -> Draw:
    """A ``draw`` that answers each label from ``values`` (the corner cases): no
    Hypothesis choice is made."""
    notes = list(notes)

    def d(strategy, label):
        value = values[label]
        notes.append((label, value))
        return value

    d.notes = notes
    return d


#: The saturation scale of the corner cases: pre-activations of 20 to 50 in size, where
#: sigmoid is 2e-9 .. 2e-22 (representable in float32, so it must not come back as 0) and
#: tanh is +-1 to within float32's and float64's rounding.
CORNER_SCALE = 20.0


def corner_cases(caps: Caps, cells=CELL_NAMES, activations=ACTIVATIONS, outputs=OUTPUTS, targets=TARGETS,
                 regimes=None, truncation="any", min_T=1, fixed_sizes=None) -> dict:
    """name -> the draws (label -> value) of each saturating corner that a builder with
    these arguments allows: every cell and activation, all pre-activations large and
    negative or large and positive, on a small long case (T = 12, or the caps' longest)."""
    fixed = dict(fixed_sizes or {})
    T = fixed.get("T") or max(min_T, min(12, caps.T))
    sizes = {"T": T, "B": fixed.get("B") or min(3, caps.B), "D": fixed.get("D") or min(3, caps.D),
             "H": fixed.get("H") or min(6, caps.H, caps.narrow_H), "O": fixed.get("O") or min(2, caps.O)}
    tr = {"none": {"truncation kind": "none"}, "any": {"truncation kind": "none"},
          "full": {"truncation kind": "h>=T", "h": T + 1, "h'": 2},
          "cut": {"truncation kind": "general", "h": max(1, min(4, T - 1)), "h'": max(1, min(3, T - 1))}}[truncation]
    out = {}
    for cell in _cells_for(cells, activations, regimes):
        if "saturated" not in (regimes or regimes_of(cell)):
            continue
        for act in _activations_of(cell, activations):
            for sign in ("negative", "positive"):
                name = f"{cell}/{act}/{sign}"
                out[name] = dict(
                    sizes, **tr, **{"corner": name, "cell": cell, "size class": "long" if T > caps.short_T else "short",
                                    "size-1 axes": set(), "activation": act, "output": tuple(outputs)[0],
                                    "targets": tuple(targets)[0], "l2": 0.0, "regime": "saturated",
                                    "x scale": 1.0, "input/output weight scale": 1.0,
                                    "saturation scale": CORNER_SCALE, "saturation sign": sign, "logit scale": 3.0,
                                    "h0 given": True, "c0 given": True, "seed": 20240 + len(out)})
    return out


def draw_problem(draw: Draw, caps: Caps = FULL_CAPS, *, cells=CELL_NAMES, activations=ACTIVATIONS, outputs=OUTPUTS,
                 targets=TARGETS, regimes=None, truncation="any", h0="maybe", c0="maybe", min_T=1,
                 fixed_sizes=None, l2=True, corners=False) -> Problem:
    """A complete, valid case. Keyword arguments narrow what is drawn (a property
    that needs, e.g., targets="last" and a contracting W_h asks for exactly that):
    ``cells`` the cells allowed (drawn first, in table order, so that a failure shrinks
    towards "elman"), ``regimes`` the weight regimes (None: every regime of the drawn
    cell, ``regimes_of``). ``corners=True`` makes the first draw choose between a drawn
    case and the fixed saturating corners (``corner_cases``); only a builder that draws
    nothing after this call may ask for them (a corner must be a leaf of the draws)."""
    kw = dict(cells=cells, activations=activations, outputs=outputs, targets=targets, regimes=regimes,
              truncation=truncation, min_T=min_T, fixed_sizes=fixed_sizes)
    if corners:
        table = corner_cases(caps, **kw)
        pick = draw(st.sampled_from(("drawn",) + tuple(table)), "corner") if table else "drawn"
        if pick != "drawn":
            draw = _fixed_draw(table[pick], notes=[("corner", pick)])
    cell = draw(st.sampled_from(_cells_for(cells, activations, regimes)), "cell")
    row = CELLS[cell]
    sizes = draw_sizes(draw, caps, min_T=min_T, fixed=fixed_sizes)
    T, B, D, H, O = (sizes[k] for k in "TBDHO")
    spec = draw_spec(draw, activations, outputs, targets, l2, cell=cell)
    allowed = tuple(r for r in regimes_of(cell) if regimes is None or r in regimes)
    regime = draw(st.sampled_from(allowed), "regime")
    seed = draw(st.integers(0, 2 ** 32 - 1), "seed")
    rng = np.random.default_rng(seed)

    x_scale = draw(st.sampled_from([1.0, 0.3, 3.0, 0.0]), "x scale")
    w_scale = draw(st.sampled_from([1.0, 0.5, 2.0]), "input/output weight scale")
    shapes = {n: shape for n, (shape, _) in row.shapes(D, H, O).items()}
    W_x = rng.standard_normal(shapes["W_x"]) * (w_scale / math.sqrt(D))
    b_h = rng.standard_normal(shapes["b_h"]) * 0.5
    W_y = rng.standard_normal(shapes["W_y"]) * (w_scale / math.sqrt(H))
    b_y = rng.standard_normal(shapes["b_y"]) * 0.5
    extra = {n: rng.standard_normal(shapes[n]) * 0.5 for n in row.extra}   # b_hn of the GRU
    if regime == "saturated":   # |a| large: sigmoid/tanh flat (every gate at 0 or 1), softmax one-hot
        big = draw(st.sampled_from([10.0, 30.0]), "saturation scale")
        sign = draw(st.sampled_from(SATURATION_SIGNS), "saturation sign")
        if sign == "mixed":
            W_x, b_h = W_x * big, b_h * big
            extra = {n: v * big for n, v in extra.items()}
        else:   # every pre-activation of one sign: the bias dominates W_x x + W_h h (both ~1)
            s = -1.0 if sign == "negative" else 1.0
            b_h = s * big * (1.0 + 0.5 * np.abs(b_h))
            extra = {n: s * big * (1.0 + 0.5 * np.abs(v)) for n, v in extra.items()}
            x_scale = min(x_scale, 1.0)
        # sigma_max(W_h) ~ 1: identity and relu states grow at most linearly in T (no float32 overflow);
        # ~ 0.2 with one sign, so that W_h h_{t-1} (identity, relu: |h| up to ~ 2 big) cannot flip it
        W_h = rng.standard_normal(shapes["W_h"]) * ((0.5 if sign == "mixed" else 0.1) / math.sqrt(H))
        if spec.output == "softmax":  # logits in the hundreds or thousands: exp overflows unless shifted
            W_y = W_y * big * draw(st.sampled_from([3.0, 100.0]), "logit scale")
    elif row.G > 1:
        W_h = rng.standard_normal(shapes["W_h"]) * (draw(st.sampled_from([1.0, 0.5, 1.5]), "W_h scale")
                                                    / math.sqrt(H))
        if regime in ("memory", "forgetful"):   # the carousel gate near 1 (long memory) or near 0
            rows = row.block(row.carousel_gate, H)
            shift = draw(st.sampled_from([3.0, 6.0, 1.0]), "carousel gate bias")
            b_h = np.array(b_h)
            b_h[rows] += shift if regime == "memory" else -shift
    elif regime == "random":
        W_h = rng.standard_normal((H, H)) * (draw(st.sampled_from([1.0, 0.5, 1.5]), "W_h scale") / math.sqrt(H))
    elif regime == "radius":
        W_h = laws.with_spectral_radius(rng.standard_normal((H, H)), draw(st.floats(0.05, 1.5), "rho"))
    elif regime == "orthogonal":
        W_h = draw(st.floats(0.3, 1.3), "rho") * laws.orthogonal(H, rng)
    elif regime == "contracting":  # gamma * sigma_max(W_h) = c < 1
        c = draw(st.floats(0.05, 0.95), "c = gamma*sigma_max")
        W_h = laws.with_sigma_max(rng.standard_normal((H, H)), c / spec_gamma(spec))
    elif regime == "exploding":  # rho(W_h) > 1 / gamma: the linearisation grows
        rho = draw(st.floats(1.05, 1.8), "rho*gamma") / spec_gamma(spec)
        W_h = laws.with_spectral_radius(rng.standard_normal((H, H)), rho)
    else:  # dead_relu: strongly negative pre-activations (all relu units dead)
        W_h = rng.standard_normal((H, H)) * (0.5 / math.sqrt(H))
        b_h = -np.abs(b_h) - draw(st.sampled_from([5.0, 20.0]), "negative bias")
        W_x = W_x * 0.1
        x_scale = min(x_scale, 1.0)

    xs = rng.standard_normal((T, B, D)) * x_scale
    h0_arr = c0_arr = None
    if h0 == "always" or (h0 == "maybe" and draw(st.booleans(), "h0 given")):
        h0_arr = rng.standard_normal((B, H)) * 0.5
    if len(row.state) > 1 and (c0 == "always" or (c0 == "maybe" and draw(st.booleans(), "c0 given"))):
        c0_arr = rng.standard_normal((B, H))
    if spec.output == "linear":
        tg = rng.standard_normal((T, B, O))
    else:
        tg = rng.integers(0, O, size=(T, B))
    tr = draw_truncation(draw, T, truncation)
    params = RNNParams(W_x=W_x, W_h=W_h, b_h=b_h, W_y=W_y, b_y=b_y, **extra)
    return Problem(spec, params, xs, tg, h0_arr, tr, regime, seed, tuple(getattr(draw, "notes", ())), c0_arr)


def spec_gamma(spec) -> float:
    """gamma, the largest slope of the activation (the Elman laws)."""
    return ACTIVATION_SLOPE[spec.activation]


@st.composite
def problems(draw, caps: Caps = FULL_CAPS, **kwargs) -> Problem:
    """``draw_problem`` as a strategy (for use outside ``st.data()``)."""
    return draw_problem(_composite_draw(draw), caps, **kwargs)


def caps_for(backend) -> Caps:
    """The caps of EXPENSIVE_BACKENDS, SMALL_CAPS for a backend with ``expensive = True``,
    FULL_CAPS for the rest."""
    name = getattr(backend, "name", "")
    if name in EXPENSIVE_BACKENDS:
        return EXPENSIVE_BACKENDS[name]
    return SMALL_CAPS if getattr(backend, "expensive", False) else FULL_CAPS


__all__ = [
    "Caps", "FULL_CAPS", "MEDIUM_CAPS", "SMALL_CAPS", "PROFILES", "profile_settings", "Problem", "labelled",
    "draw_sizes", "draw_spec", "draw_truncation", "draw_problem", "problems", "REGIMES", "GATED_REGIMES",
    "regimes_of", "corner_cases", "caps_for",
]
