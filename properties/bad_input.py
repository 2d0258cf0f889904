"""Bad input (section 4 of the contract): a generator of bad calls, each with the error
the contract expects, and the property that the backend raises it."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from hypothesis import strategies as st

import reference
from reference.types import RNNParams, RNNSpec, Truncation

from .hypothesis_helpers import Caps, Problem, draw_problem
from .results import PARAM_NAMES, PropertyFailure, dtype_of


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
    step_of_reference: Optional[int] = None  # overflow: the step the reference names

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


def _array(P, xs, h0, tg, target, p):
    """The input array called ``target`` (a parameter, xs, h0 or targets); zeros for an omitted h0."""
    return {**P, "xs": xs, "h0": h0 if h0 is not None else np.zeros((p.B, p.H)), "targets": tg}[target]


def _replace(P, xs, h0, tg, target, value):
    """Puts ``value`` in place of the input called ``target``: a parameter goes into P;
    returns the (possibly new) xs, h0, targets."""
    if target in P:
        P[target] = value
    return (value if target == "xs" else xs, value if target == "h0" else h0,
            value if target == "targets" else tg)


def build_bad_input(draw, caps: Caps) -> BadInput:
    kinds = ("extra_axis", "mismatch", "empty", "class_range", "class_float", "spec_name", "l2",
             "truncation", "wrong_type", "non_numeric", "nonfinite", "overflow_states", "overflow_loss")
    kind = draw(st.sampled_from(kinds), "bad input kind")
    outputs = ("softmax",) if kind in ("class_range", "class_float") else ("linear", "softmax")
    if kind in ("overflow_states", "overflow_loss"):
        outputs = ("linear",)
    acts = ("identity",) if kind == "overflow_states" else ("tanh", "sigmoid", "relu", "identity")
    p = draw_problem(draw, caps, outputs=outputs, activations=acts, truncation="none", l2=False,
                     min_T=2 if kind != "overflow_states" else 1)
    P = dict(p.params.as_dict())
    xs, tg, h0 = p.xs, p.targets, p.h0
    spec = p.spec
    tr = None
    method = "bptt"
    VT = (ValueError, TypeError)
    names: tuple
    expected = VT
    step = None
    if kind == "extra_axis":
        target = draw(st.sampled_from(PARAM_NAMES + ("xs", "h0", "targets")), "array")
        method = "forward" if target not in ("targets",) and draw(st.booleans(), "via forward") else "bptt"
        a = _array(P, xs, h0, tg, target, p)
        bad = np.asarray(a)[..., None] if draw(st.booleans(), "add (else drop) an axis") or np.ndim(a) == 1 \
            else np.asarray(a)[..., 0]
        xs, h0, tg = _replace(P, xs, h0, tg, target, bad)
        names = (target,)
    elif kind == "mismatch":
        options = {
            "xs D": ("xs", "W_x"), "h0 B": ("h0", "xs"), "h0 H": ("h0", "W_h"), "targets T": ("targets", "xs"),
            "targets B": ("targets", "xs"), "b_h H": ("b_h", "W_h"), "b_y O": ("b_y", "W_y"),
            "W_y H": ("W_y", "W_h"), "W_x H": ("W_x", "W_h"), "W_h square": ("W_h",),
        }
        if p.spec.output == "linear":
            options["targets O"] = ("targets", "W_y")
        which = draw(st.sampled_from(sorted(options)), "mismatch")
        names = options[which]

        def grow(a, axis):
            a = np.asarray(a)
            pad = [(0, 0)] * a.ndim
            pad[axis] = (0, 1)
            return np.pad(a, pad, constant_values=1 if a.dtype.kind == "i" else 0.5)

        if which == "xs D":
            xs = grow(xs, 2)
        elif which == "h0 B":
            h0 = grow(np.zeros((p.B, p.H)) if h0 is None else h0, 0)
        elif which == "h0 H":
            h0 = grow(np.zeros((p.B, p.H)) if h0 is None else h0, 1)
        elif which == "targets T":
            tg = grow(tg, 0)
        elif which == "targets B":
            tg = grow(tg, 1)
        elif which == "targets O":
            tg = grow(tg, 2)
        elif which == "b_h H":
            P["b_h"] = grow(P["b_h"], 0)
        elif which == "b_y O":
            P["b_y"] = grow(P["b_y"], 0)
        elif which == "W_y H":
            P["W_y"] = grow(P["W_y"], 1)
        elif which == "W_x H":
            P["W_x"] = grow(P["W_x"], 0)
        else:
            P["W_h"] = grow(P["W_h"], 1)
        if which.startswith(("xs", "h0", "b_h", "W_")) and draw(st.booleans(), "via forward"):
            method = "forward"
    elif kind == "empty":
        axis = draw(st.sampled_from(["T", "B"]), "empty axis")
        if axis == "T":
            xs, tg = xs[:0], tg[:0]
        else:
            xs, tg, h0 = xs[:, :0], tg[:, :0], None
        names = ("xs", axis)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "class_range":
        tg = np.array(tg)
        t = p.T - 1 if spec.targets == "last" else draw(st.integers(0, p.T - 1), "step index")
        tg[t, draw(st.integers(0, p.B - 1), "row")] = draw(st.sampled_from([p.O, -1, p.O + 7]), "class")
        names = ("targets",)
    elif kind == "class_float":
        tg = np.asarray(tg, dtype=np.float64) + draw(st.sampled_from([0.0, 0.5]), "fraction")
        names = ("targets",)
    elif kind == "spec_name":
        field = draw(st.sampled_from(["activation", "output", "targets"]), "spec field")
        fields = dict(activation=spec.activation, output=spec.output, targets=spec.targets, l2=spec.l2)
        fields[field] = draw(st.sampled_from(["softplus", "", "TANH"]), "bad name")
        spec = _bypass(RNNSpec, **fields)
        names = (field,)
        method = "forward" if field == "activation" and draw(st.booleans(), "via forward") else "bptt"
    elif kind == "l2":
        spec = _bypass(RNNSpec, activation=spec.activation, output=spec.output, targets=spec.targets,
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
        target = draw(st.sampled_from(PARAM_NAMES + ("xs", "h0")), "array")
        a = {**P, "xs": xs, "h0": h0 if h0 is not None else np.zeros((p.B, p.H))}[target]
        bad = np.full(np.shape(a), "x", dtype=object) if draw(st.booleans(), "objects (else strings)") \
            else np.full(np.shape(a), "1.0")
        if target in P:
            P[target] = bad
        elif target == "xs":
            xs = bad
        else:
            h0 = bad
        names = (target,)
        method = "forward" if draw(st.booleans(), "via forward") else "bptt"
    elif kind == "nonfinite":
        choices = PARAM_NAMES + ("xs", "h0") + (("targets",) if spec.output == "linear" else ())
        target = draw(st.sampled_from(choices), "array")
        a = np.array(_array(P, xs, h0, tg, target, p), dtype=np.float64)
        flat = a.reshape(-1)
        if target == "targets" and spec.targets == "last":
            flat = a[-1].reshape(-1)  # a value that is read
        flat[draw(st.integers(0, flat.size - 1), "index")] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]), "value")
        xs, h0, tg = _replace(P, xs, h0, tg, target, a)
        names = (target,)
        expected = (ValueError,)
        method = "forward" if target != "targets" and draw(st.booleans(), "via forward") else "bptt"
    else:
        # Finite input that overflows: identity states growing by g per step from h0 = 1
        # (float64 overflows at step k, a float32 backend earlier), or huge finite outputs
        # whose squared error overflows in the loss.
        expected = (FloatingPointError,)
        names = ()
        if kind == "overflow_states":
            k = draw(st.integers(9, 12), "float64 overflow step")
            T = draw(st.integers(k, k + 3), "T")
            g = 10.0 ** (309.0 / k)
            P["W_h"] = g * np.eye(p.H)
            P["b_h"] = np.zeros(p.H)
            xs = np.zeros((T,) + p.xs.shape[1:])
            h0 = np.ones((p.B, p.H))
            tg = np.zeros((T, p.B, p.O))
            method = "forward" if draw(st.booleans(), "via forward") else "bptt"
        else:
            P["W_y"] = np.full_like(np.asarray(P["W_y"]), 1e200 / p.H)
            spec = replace(spec, activation="tanh")
            xs = xs + 1.0
        try:
            if method == "forward":
                reference.forward(spec, RNNParams(**P), xs, h0)
            else:
                reference.bptt(spec, RNNParams(**P), xs, tg, h0)
            raise AssertionError("the overflow case did not overflow in the reference")  # a bug in this builder
        except FloatingPointError as exc:
            m = _STEP.search(str(exc))
            step = int(m.group(1)) if m else None
    params = dict(p.params.as_dict()) if P is None else _bypass(RNNParams, **P)
    if method == "forward":
        args, kwargs = (spec, params, xs), {"h0": h0}
    else:
        args, kwargs = (spec, params, xs, tg), {"h0": h0, "truncation": tr}
    return BadInput(p, kind, method, args, kwargs, expected, names, step)


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
        if bad.step_of_reference is not None:
            m = _STEP.search(msg)
            if not m:
                raise PropertyFailure(f"{bad.kind}: FloatingPointError does not name the time step "
                                      f"(expected e.g. 't={bad.step_of_reference}'): {msg!r}") from None
            step = int(m.group(1))
            ok = step == bad.step_of_reference if dtype_of(backend) == "float64" \
                else 1 <= step <= bad.step_of_reference
            if not ok:
                raise PropertyFailure(f"{bad.kind}: FloatingPointError names step {step}; the first non-finite "
                                      f"value appears at t={bad.step_of_reference} in float64: {msg!r}") from None
        return None
    except Exception as exc:  # noqa: BLE001 - the wrong error is the finding
        raise PropertyFailure(f"{bad.kind}: expected {'/'.join(e.__name__ for e in bad.expected)}"
                              f"{' naming ' + ' or '.join(map(repr, bad.names)) if bad.names else ''}; got "
                              f"{type(exc).__name__}: {exc}") from exc
    raise PropertyFailure(f"{bad.kind}: {bad.method} returned {type(out).__name__} instead of raising "
                          f"{'/'.join(e.__name__ for e in bad.expected)}")
