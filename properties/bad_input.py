"""Bad input (section 4 of the contract): a generator of bad calls, each with the error
the contract expects, and the property that the backend raises it.

The bad input of the gated cells (an activation other than tanh, a gate-stacked array
with the wrong number of rows, b_hn missing for "gru" or given to the LSTM, c0 given to
the GRU, c0 of the wrong shape or not finite) is drawn with gated specs only: a backend
written before the gated cells is never handed a b_hn or a c0 with an Elman spec.

Overflow names a step: the first step where a non-finite value appeared, in the order
of the computation. When several quantities overflow at once the order decides which
step that is: in ``overflow_loss`` every scored loss term overflows (the first one in
the forward order, t=1 when every step is scored) and so does the backward pass (its
first step is the last scored one, t=T); a backend may compute the loss terms before or
after the backward pass, so either step is right. A float32 backend overflows earlier
in its order (a smaller step forwards, a larger one backwards)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from hypothesis import strategies as st

import reference
from reference.types import RNNParams, RNNSpec, Truncation

from reference.bptt import run_forward, scored_steps
from reference.cells import CELL_NAMES
from reference.validation import first_nonfinite_step, validate_bptt

from .hypothesis_helpers import Caps, Problem, draw_problem
from .results import PropertyFailure, dtype_of, param_names


_STEP = re.compile(r"(?:\bt\s*=\s*|\bstep\s+)(\d+)")


def _names_any(message, names):
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names)


@dataclass(frozen=True)
class BadInput:
    """A bad call: which method, its arguments, and what the contract expects."""

    problem: Problem
    kind: str
    method: str              # "forward" or "bptt"
    args: tuple
    kwargs: dict
    expected: tuple          # exception types
    names: tuple             # the message must name one of these
    #: overflow: the first step where float64 sees a non-finite value when the backend
    #: computes in the forward order (loss terms included) or reaches the backward pass first
    first_steps: Optional[dict] = None

    def describe(self):
        return f"bad input {self.kind!r} via {self.method}; expect {'/'.join(e.__name__ for e in self.expected)} " \
               f"naming {' or '.join(map(repr, self.names))}\n{self.problem.describe(max_entries=120)}"

    __str__ = describe


def _bypass(cls, **fields):
    """A frozen dataclass built around its own checks (as a careless caller might)."""
    obj = object.__new__(cls)
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
    return obj


def _array(P, inputs, target, p):
    """The input array called ``target`` (a parameter, xs, h0, c0 or targets); zeros for an
    omitted h0 or c0."""
    if target in P:
        return P[target]
    if target in ("h0", "c0") and inputs.get(target) is None:
        return np.zeros((p.B, p.H))
    return inputs[target]


def _put(P, inputs, target, value):
    """Puts ``value`` in place of the input called ``target`` (a parameter goes into P)."""
    if target in P:
        P[target] = value
    else:
        inputs[target] = value


#: The kinds of bad input, and the cells each needs (None: any cell).
KINDS = {
    "extra_axis": None, "mismatch": None, "empty": None, "class_range": None, "class_float": None,
    "spec_name": None, "l2": None, "truncation": None, "wrong_type": None, "non_numeric": None, "nonfinite": None,
    "overflow_states": ("elman",), "overflow_loss": None,
    # the gated cells' bad input (contract section 4)
    "gated_activation": ("lstm", "gru"), "gate_rows": ("lstm", "gru"), "b_hn_missing": ("gru",),
    "b_hn_extra": ("lstm",), "c0_wrong_cell": ("gru",), "c0_shape": ("lstm",), "c0_nonfinite": ("lstm",),
}


def _overflow_steps(spec, P, xs, tg, h0, c0):
    """The first non-finite step in float64 in each order (see the module docstring):
    {"forward": first step of the forward pass or of the loss terms, "backward": first
    step of the backward pass (None when the forward order fails before it)}."""
    try:
        reference.bptt(spec, RNNParams(**P), xs, tg, h0, c0=c0)
    except FloatingPointError as exc:
        m = _STEP.search(str(exc))
        forward = int(m.group(1)) if m else None
        in_loss = "loss" in str(exc)
    else:
        raise AssertionError("the overflow case did not overflow in the reference")  # a bug in this builder
    backward = None
    if in_loss:   # the forward pass was finite: where does the backward pass meet the non-finite errors?
        case = validate_bptt(spec, RNNParams(**P), xs, tg, h0, c0=c0)
        with np.errstate(all="ignore"):
            _, _, ys = run_forward(case)
            e = np.zeros_like(ys[..., :1].repeat(case.H, axis=-1))
            for t in scored_steps(spec, case.T):   # dL/dh_t direct = (y_t - d_t) / B W_y (linear output)
                e[t - 1] = ((ys[t - 1] - case.targets[t - 1]) / case.B) @ case.params.W_y
        backward = first_nonfinite_step(e, backward=True)
    return {"forward": forward, "backward": backward}


def build_bad_input(draw, caps: Caps, cells=CELL_NAMES) -> BadInput:
    kinds = tuple(k for k, need in KINDS.items() if need is None or set(need) & set(cells))
    kind = draw(st.sampled_from(kinds), "bad input kind")
    need = KINDS[kind]
    outputs = ("softmax",) if kind in ("class_range", "class_float") else ("linear", "softmax")
    if kind in ("overflow_states", "overflow_loss"):
        outputs = ("linear",)
    acts = ("identity",) if kind == "overflow_states" else ("tanh", "sigmoid", "relu", "identity")
    p = draw_problem(draw, caps, cells=tuple(c for c in cells if need is None or c in need), outputs=outputs,
                     activations=acts, truncation="none", l2=False, min_T=2 if kind != "overflow_states" else 1)
    P = dict(p.params.as_dict())
    lstm = len(p.cell.state) > 1
    inputs = {"xs": p.xs, "targets": p.targets, "h0": p.h0, "c0": p.c0}
    arrays = param_names(p) + ("xs", "h0") + (("c0",) if lstm else ())
    spec = p.spec
    tr = None
    method = "bptt"
    VT = (ValueError, TypeError)
    names: tuple
    expected = VT
    steps = None
    if kind == "extra_axis":
        target = draw(st.sampled_from(arrays + ("targets",)), "array")
        method = "forward" if target not in ("targets",) and draw(st.booleans(), "via forward") else "bptt"
        a = _array(P, inputs, target, p)
        bad = np.asarray(a)[..., None] if draw(st.booleans(), "add (else drop) an axis") or np.ndim(a) == 1 \
            else np.asarray(a)[..., 0]
        _put(P, inputs, target, bad)
        names = (target,)
    elif kind == "mismatch":
        options = {
            "xs D": ("xs", "W_x"), "h0 B": ("h0", "xs"), "h0 H": ("h0", "W_h"), "targets T": ("targets", "xs"),
            "targets B": ("targets", "xs"), "b_h H": ("b_h", "W_h"), "b_y O": ("b_y", "W_y"),
            "W_y H": ("W_y", "W_h"), "W_x H": ("W_x", "W_h"), "W_h square": ("W_h",),
        }
        if p.spec.output == "linear":
            options["targets O"] = ("targets", "W_y")
        if "b_hn" in P:
            options["b_hn H"] = ("b_hn", "W_h")
        which = draw(st.sampled_from(sorted(options)), "mismatch")
        names = options[which]

        def grow(a, axis):
            a = np.asarray(a)
            pad = [(0, 0)] * a.ndim
            pad[axis] = (0, 1)
            return np.pad(a, pad, constant_values=1 if a.dtype.kind == "i" else 0.5)

        target, axis = {"xs D": ("xs", 2), "h0 B": ("h0", 0), "h0 H": ("h0", 1), "targets T": ("targets", 0),
                        "targets B": ("targets", 1), "targets O": ("targets", 2), "b_h H": ("b_h", 0),
                        "b_y O": ("b_y", 0), "W_y H": ("W_y", 1), "W_x H": ("W_x", 0), "W_h square": ("W_h", 1),
                        "b_hn H": ("b_hn", 0)}[which]
        _put(P, inputs, target, grow(_array(P, inputs, target, p), axis))
        if which.startswith(("xs", "h0", "b_h", "W_")) and draw(st.booleans(), "via forward"):
            method = "forward"
    elif kind == "empty":
        axis = draw(st.sampled_from(["T", "B"]), "empty axis")
        if axis == "T":
            inputs["xs"], inputs["targets"] = p.xs[:0], p.targets[:0]
        else:
            inputs.update(xs=p.xs[:, :0], targets=p.targets[:, :0], h0=None, c0=None)
        names = ("xs", axis)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "class_range":
        tg = np.array(p.targets)
        t = p.T - 1 if spec.targets == "last" else draw(st.integers(0, p.T - 1), "step index")
        tg[t, draw(st.integers(0, p.B - 1), "row")] = draw(st.sampled_from([p.O, -1, p.O + 7]), "class")
        inputs["targets"] = tg
        names = ("targets",)
    elif kind == "class_float":
        inputs["targets"] = np.asarray(p.targets, dtype=np.float64) + draw(st.sampled_from([0.0, 0.5]), "fraction")
        names = ("targets",)
    elif kind == "spec_name":
        field = draw(st.sampled_from(["activation", "output", "targets"]), "spec field")
        fields = dict(activation=spec.activation, output=spec.output, targets=spec.targets, l2=spec.l2, cell=spec.cell)
        fields[field] = draw(st.sampled_from(["softplus", "", "TANH"]), "bad name")
        spec = _bypass(RNNSpec, **fields)
        names = (field,)
        method = "forward" if field == "activation" and draw(st.booleans(), "via forward") else "bptt"
    elif kind == "l2":
        spec = _bypass(RNNSpec, activation=spec.activation, output=spec.output, targets=spec.targets, cell=spec.cell,
                       l2=draw(st.sampled_from([-0.5, -1e-12, float("nan"), float("inf")]), "l2"))
        names = ("l2",)
    elif kind == "truncation":
        which = draw(st.sampled_from(["h=0", "h'=0", "h'>h", "h<0"]), "bad truncation")
        h = max(1, p.T // 2)
        tr = {"h=0": _bypass(Truncation, h=0, h_prime=None), "h<0": _bypass(Truncation, h=-3, h_prime=None),
              "h'=0": _bypass(Truncation, h=h, h_prime=0), "h'>h": _bypass(Truncation, h=h, h_prime=h + 1)}[which]
        names = ("h",) if which in ("h=0", "h<0") else ("h_prime", "h'")
    elif kind == "wrong_type":
        which = draw(st.sampled_from(["params", "spec", "truncation"]), "argument")
        if which == "params":
            P = None  # a dict instead of an RNNParams
        elif which == "spec":
            spec = "tanh"
        else:
            tr = draw(st.sampled_from(["2", 2.5]), "truncation value")
        names = (which,)
        method = "forward" if which != "truncation" and draw(st.booleans(), "via forward") else "bptt"
    elif kind == "non_numeric":
        target = draw(st.sampled_from(arrays), "array")
        a = _array(P, inputs, target, p)
        bad = np.full(np.shape(a), "x", dtype=object) if draw(st.booleans(), "objects (else strings)") \
            else np.full(np.shape(a), "1.0")
        _put(P, inputs, target, bad)
        names = (target,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind in ("nonfinite", "c0_nonfinite"):
        choices = ("c0",) if kind == "c0_nonfinite" else \
            arrays + (("targets",) if spec.output == "linear" else ())
        target = draw(st.sampled_from(choices), "array")
        a = np.array(_array(P, inputs, target, p), dtype=np.float64)
        flat = a.reshape(-1)
        if target == "targets" and spec.targets == "last":
            flat = a[-1].reshape(-1)  # a value that is read
        flat[draw(st.integers(0, flat.size - 1), "index")] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]), "value")
        _put(P, inputs, target, a)
        names = (target,)
        expected = (ValueError,)
        method = "forward" if target != "targets" and draw(st.booleans(), "via forward") else "bptt"
    elif kind == "gated_activation":
        spec = _bypass(RNNSpec, activation=draw(st.sampled_from(["sigmoid", "relu", "identity"]), "activation"),
                       output=spec.output, targets=spec.targets, l2=spec.l2, cell=spec.cell)
        names = ("activation",)
        expected = (ValueError,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "gate_rows":
        target = draw(st.sampled_from(["W_x", "W_h", "b_h"]), "array")
        G = p.cell.G
        k = draw(st.sampled_from(sorted({1, G - 1, G + 1} - {G})), "gate blocks")
        a = np.asarray(P[target])
        P[target] = np.concatenate([a] * 2)[:k * p.H]    # k H rows instead of G H
        names = (target,)
        expected = (ValueError,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind in ("b_hn_missing", "b_hn_extra"):
        P["b_hn"] = None if kind == "b_hn_missing" else np.zeros(p.H)
        names = ("b_hn",)
        expected = (ValueError,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "c0_wrong_cell":
        inputs["c0"] = np.zeros((p.B, p.H))
        names = ("c0",)
        expected = (ValueError,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "c0_shape":
        which = draw(st.sampled_from(["B", "H", "1-d"]), "c0 shape")
        inputs["c0"] = {"B": np.zeros((p.B + 1, p.H)), "H": np.zeros((p.B, p.H + 1)), "1-d": np.zeros(p.H)}[which]
        names = ("c0",)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    else:
        # Finite input that overflows: identity states growing by g per step from h0 = 1
        # (float64 overflows at step k, a float32 backend earlier), or huge finite outputs
        # whose squared error overflows in the loss at every scored step, whatever the
        # states: with tanh, |h_t| <= m = max(1, |h0|) (a GRU's h_t mixes n_t and h_{t-1}),
        # so |W_y h_t| <= 1e200 m and b_y = 2e200 m keeps y_t within [1e200 m, 3e200 m]
        # (a saturated GRU can keep h_t = 0 exactly, where W_y alone gives y_t = b_y).
        expected = (FloatingPointError,)
        names = ()
        if kind == "overflow_states":
            k = draw(st.integers(9, 12), "float64 overflow step")
            T = draw(st.integers(k, k + 3), "T")
            g = 10.0 ** (309.0 / k)
            P["W_h"] = g * np.eye(p.H)
            P["b_h"] = np.zeros(p.H)
            inputs.update(xs=np.zeros((T,) + p.xs.shape[1:]), h0=np.ones((p.B, p.H)), targets=np.zeros((T, p.B, p.O)))
            method = "forward" if draw(st.booleans(), "via forward") else "bptt"
        else:
            P["W_y"] = np.full_like(np.asarray(P["W_y"]), 1e200 / p.H)
            m = max(1.0, float(np.abs(p.initial_state()[0]).max()))
            P["b_y"] = np.full_like(np.asarray(P["b_y"]), 2e200 * m)
            if spec.activation != "tanh":
                spec = replace(spec, activation="tanh")
            inputs["xs"] = p.xs + 1.0
        steps = _overflow_steps(spec, P, inputs["xs"], inputs["targets"], inputs["h0"], inputs["c0"] if lstm else None)
        if method == "forward":
            steps["backward"] = None
    params = dict(p.params.as_dict()) if P is None else _bypass(RNNParams, **P)
    kwargs = {"h0": inputs["h0"]}
    if lstm or kind == "c0_wrong_cell":   # c0 only with an LSTM spec (and as the bad input itself)
        kwargs["c0"] = inputs["c0"]
    if method == "forward":
        args = (spec, params, inputs["xs"])
    else:
        args, kwargs["truncation"] = (spec, params, inputs["xs"], inputs["targets"]), tr
    return BadInput(p, kind, method, args, kwargs, expected, names, steps)


def prop_errors(backend, bad: BadInput):
    """Bad input gets the contract's errors: ValueError/TypeError naming the argument,
    ValueError naming the array for NaN/inf, FloatingPointError naming the first
    non-finite step for overflow; never a silent answer."""
    call = getattr(backend, bad.method)
    try:
        out = call(*bad.args, **bad.kwargs)
    except bad.expected as exc:
        msg = str(exc)
        if bad.names and not _names_any(msg, bad.names):
            raise PropertyFailure(f"{bad.kind}: {type(exc).__name__} raised but its message does not name "
                                  f"{' or '.join(map(repr, bad.names))}: {msg!r}") from None
        if bad.first_steps is not None:
            m = _STEP.search(msg)
            fwd, bwd = bad.first_steps.get("forward"), bad.first_steps.get("backward")
            expected_txt = " or ".join(f"t={s}" for s in (fwd, bwd) if s is not None)
            if not m:
                raise PropertyFailure(f"{bad.kind}: FloatingPointError does not name the time step "
                                      f"(expected e.g. {expected_txt}): {msg!r}") from None
            step = int(m.group(1))
            if dtype_of(backend) == "float64":
                ok = step in (fwd, bwd)
            else:   # a float32 backend overflows earlier in either order
                T = np.shape(bad.args[2])[0]
                ok = (fwd is not None and 1 <= step <= fwd) or (bwd is not None and bwd <= step <= T)
            if not ok:
                raise PropertyFailure(
                    f"{bad.kind}: FloatingPointError names step {step}; in float64 the first non-finite value "
                    f"appears at t={fwd} in the forward order (forward pass, then the loss terms)"
                    + (f" and at t={bwd} in the backward pass" if bwd is not None else "")
                    + f" ({dtype_of(backend)} backend): {msg!r}") from None
        return None
    except Exception as exc:  # noqa: BLE001 - the wrong error is the finding
        raise PropertyFailure(f"{bad.kind}: expected {'/'.join(e.__name__ for e in bad.expected)}"
                              f"{' naming ' + ' or '.join(map(repr, bad.names)) if bad.names else ''}; got "
                              f"{type(exc).__name__}: {exc}") from exc
    raise PropertyFailure(f"{bad.kind}: {bad.method} returned {type(out).__name__} instead of raising "
                          f"{'/'.join(e.__name__ for e in bad.expected)}")
