"""The conformance properties: each is a plain function ``prop(backend, case)``.

A property returns the worst error it saw (a float, relative; 0.0 for exact
properties, None when nothing numeric was compared) and raises ``PropertyFailure``
(an AssertionError) with the worst absolute and relative error, where it occurred
(array, index, time step) and the tolerance, when the backend breaks it. Each
property comes with the builder of its cases (``PROPERTIES[name].build(draw, caps)``),
so that ``conformance.check_backend`` can drive it with Hypothesis and a user can
call it directly on a case of their own.

The oracles are the float64 reference (``reference.forward``/``bptt``), its RTRL
and finite differences, ``numpy.linalg`` for the identity-activation laws, and a
direct evaluation of truncation built from the reference's full BPTT. Nothing here
validates input or loops over time steps backwards: that is the backends' job.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st

import reference
from reference.bptt import loss_terms as _ref_loss_terms
from reference.bptt import run_forward as _ref_forward_case
from reference.types import RNNParams, RNNSpec, Truncation
from reference.validation import validate_bptt

from . import laws
from .hypothesis_helpers import SMALL_CAPS, Caps, Problem, draw_problem
from .tolerances import Tolerance, perturb, tolerance_for

PARAM_NAMES = RNNParams.names()


class PropertyFailure(AssertionError):
    """A property does not hold. ``error`` is the worst relative error (or None)."""

    def __init__(self, message, error=None):
        super().__init__(message)
        self.error = error


# ---------------------------------------------------------------------------
# Result checking and comparison


def _index_text(name, idx, time_axis):
    text = f"{name}[{', '.join(map(str, idx))}]" if idx else name
    if time_axis and idx:
        text += f" (time step t={idx[0] + 1})"
    return text


def _check_array(name, a, shape, time_axis=False):
    """A result array must be a finite numpy float64 array of the contract's shape."""
    if not isinstance(a, np.ndarray):
        raise PropertyFailure(f"{name} must be a numpy array; got {type(a).__name__}")
    if a.dtype != np.float64:
        raise PropertyFailure(f"{name} must be numpy float64 (contract section 3); got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise PropertyFailure(f"{name} has shape {a.shape}; the contract says {tuple(shape)}")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PropertyFailure(f"{_index_text(name, idx, time_axis)} is {a[idx]} although no error was raised "
                              f"(a non-finite result must be a FloatingPointError, contract section 4)")
    return a


def check_forward_result(res, p: Problem):
    for attr in ("hs", "ys"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"forward returned {type(res).__name__}, which has no attribute {attr!r}")
    _check_array("hs", res.hs, (p.T, p.B, p.H), True)
    _check_array("ys", res.ys, (p.T, p.B, p.O), True)
    return res


def check_bptt_result(res, p: Problem, truncation="same"):
    """Types, shapes, finiteness, and dhs None exactly when truncation cuts."""
    tr = p.truncation if truncation == "same" else truncation
    for attr in ("loss", "grads", "dh0", "dhs"):
        if not hasattr(res, attr):
            raise PropertyFailure(f"bptt returned {type(res).__name__}, which has no attribute {attr!r}")
    if isinstance(res.loss, bool) or not isinstance(res.loss, (float, int, np.floating)):
        raise PropertyFailure(f"loss must be a python float; got {type(res.loss).__name__}")
    if not math.isfinite(res.loss):
        raise PropertyFailure(f"loss is {res.loss} although no error was raised")
    shapes = {"W_x": (p.H, p.D), "W_h": (p.H, p.H), "b_h": (p.H,), "W_y": (p.O, p.H), "b_y": (p.O,)}
    for n in PARAM_NAMES:
        if not hasattr(res.grads, n):
            raise PropertyFailure(f"grads has no {n!r} (must be an RNNParams)")
        _check_array(f"grads.{n}", getattr(res.grads, n), shapes[n])
    _check_array("dh0", res.dh0, (p.B, p.H))
    cuts = tr is not None and tr.h < p.T
    if cuts and res.dhs is not None:
        raise PropertyFailure(f"dhs must be None when the truncation cuts ({tr} with T={p.T}); "
                              f"got an array of shape {getattr(res.dhs, 'shape', '?')}")
    if not cuts:
        if res.dhs is None:
            raise PropertyFailure(f"dhs is None but nothing is cut (truncation={tr}, T={p.T}): "
                                  f"it must be the (T, B, H) array of dL/dh_t")
        _check_array("dhs", res.dhs, (p.T, p.B, p.H), True)
    return res


@dataclass
class Comparison:
    """Compares arrays with the reference under one tolerance; keeps the worst error."""

    tol: Tolerance
    dtype: str
    scale: float  # largest entry of the whole reference result
    worst: float = 0.0

    def __call__(self, name, got, want, spread, time_axis=False, floor=0.0):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        spread = np.abs(np.asarray(spread, dtype=np.float64))
        if got.shape != want.shape:
            raise PropertyFailure(f"{name} has shape {got.shape}; the reference has {want.shape}")
        err = np.abs(got - want)
        if time_axis and want.ndim > 1:
            axes = tuple(range(1, want.ndim))
            ref_scale = np.abs(want).max(axis=axes, keepdims=True)
            cond_scale = spread.max(axis=axes, keepdims=True)
        else:
            ref_scale = np.abs(want).max(initial=0.0)
            cond_scale = spread.max(initial=0.0)
        allowed = self.tol.rtol * ref_scale + self.tol.cond * cond_scale + self.tol.atol * self.scale + self.tol.tiny
        allowed = allowed + self.tol.slope * self.tol.u * np.asarray(floor, dtype=np.float64)
        allowed = np.broadcast_to(allowed, err.shape)
        ratio = err / allowed  # allowed >= tiny > 0
        amax = float(np.abs(want).max(initial=0.0))
        denom = max(amax, self.tol.atol / self.tol.rtol * self.scale, self.tol.tiny)
        rel = float(err.max(initial=0.0)) / denom
        self.worst = max(self.worst, rel)
        if ratio.size and ratio.max() > 1.0:
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
            where = _index_text(name, idx, time_axis)
            scale_txt = f"max|want| over that step = {float(np.broadcast_to(ref_scale, err.shape)[idx]):.3g}" \
                if time_axis and want.ndim > 1 else f"max|want| = {amax:.3g}"
            raise PropertyFailure(
                f"{where} differs from the reference: got {got[idx]!r}, want {want[idx]!r}, "
                f"|error| = {err[idx]:.3g} > allowed {allowed[idx]:.3g} "
                f"({self.dtype}: rtol {self.tol.rtol:g} x {scale_txt} + cond {self.tol.cond:g} x measured "
                f"rounding response {float(np.broadcast_to(cond_scale, err.shape)[idx]):.3g} + atol "
                f"{self.tol.atol:.3g} x result scale {self.scale:.3g} + tiny {self.tol.tiny:.3g} + rounding floor "
                f"{self.tol.slope:g} u x {float(np.broadcast_to(floor, err.shape)[idx]):.3g}); worst error in {name}: "
                f"abs {float(err.max()):.3g}, relative to max|want| {rel:.3g}; "
                f"{float(ratio.max()):.3g} times the tolerance",
                error=rel,
            )
        return rel


def _scale(*arrays):
    return max((float(np.abs(np.asarray(a)).max(initial=0.0)) for a in arrays if a is not None), default=0.0)


PERTURBATIONS = ("signs", "coherent")


def perturbed(p: Problem, u: float, mode: str = "signs") -> Problem:
    """The case with every float input moved by a relative u: with random signs (from
    the case's seed) or all in the same direction (which moves sums coherently)."""
    rng = np.random.default_rng((p.seed, 0x5EED))

    def move(a):
        return perturb(rng, a, u) if mode == "signs" else np.asarray(a, dtype=np.float64) * (1 + u)
    params = RNNParams(**{n: move(w) for n, w in p.params.as_dict().items()})
    h0 = None if p.h0 is None else move(p.h0)
    targets = move(p.targets) if p.spec.output == "linear" else p.targets
    return replace(p, params=params, xs=move(p.xs), h0=h0, targets=targets)


def _spread(ref, outs, get):
    """The largest |ref - out| over the perturbed runs, elementwise (None where ref has none)."""
    a = get(ref)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    return np.max([np.abs(a - np.asarray(get(o), dtype=np.float64)) for o in outs], axis=0)


def _ref_spread(p: Problem, u: float, truncation="same"):
    """(the reference BPTT, its spread): the spread is a BPTTResult of the largest
    response of each entry to the perturbations of the inputs (PERTURBATIONS), the
    measured conditioning of this case."""
    ref = _ref_bptt(p, truncation)
    outs = [_ref_bptt(perturbed(p, u, m), truncation) for m in PERTURBATIONS]
    grads = RNNParams(**{n: _spread(ref, outs, lambda r, n=n: getattr(r.grads, n)) for n in PARAM_NAMES})
    return ref, reference.BPTTResult(loss=float(_spread(ref, outs, lambda r: np.array(r.loss))), grads=grads,
                                     dh0=_spread(ref, outs, lambda r: r.dh0), dhs=_spread(ref, outs, lambda r: r.dhs))


def _ref_bptt(p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return reference.bptt(*args, **kw)


def _bptt(backend, p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return check_bptt_result(backend.bptt(*args, **kw), p, truncation)


def _dtype(backend):
    return str(getattr(backend, "dtype", "float64"))


def saturation_floor(p: Problem, full=None) -> dict:
    """Magnitudes below which a correct backend's gradients are not determined.

    Where tanh or sigmoid saturates, f'(a) = 1 - h^2 or h (1 - h) is tiny and is
    known only to an absolute error of about u (h is rounded near 1): a relative
    error of f' that no perturbation of the inputs shows. dL/da_t = dL/dh_t f'(a_t)
    then carries an absolute error ~u |dL/dh_t|, which reaches the gradients as
    u sum_t |dL/dh_t|^T |x_t| (W_x), ... |h_{t-1}| (W_h), 1 (b_h), and dL/dh_{t-1}
    as u |dL/dh_t| |W_h|. Returns these sums (to be multiplied by slope * u) from
    the reference's full BPTT (``full``, when the caller has it); zero for relu and
    identity, whose f' is exact."""
    zero = {n: 0.0 for n in PARAM_NAMES + ("dh0", "dhs", "loss")}
    if p.spec.activation not in ("tanh", "sigmoid"):
        return zero
    ref = _ref_bptt(p, None) if full is None else full
    A = np.abs(ref.dhs)                                            # |dL/dh_t|, (T, B, H)
    h0 = np.zeros((p.B, p.H)) if p.h0 is None else np.asarray(p.h0, dtype=np.float64)
    hs = reference.forward(p.spec, p.params, p.xs, p.h0).hs
    prev = np.abs(np.concatenate([h0[None], hs[:-1]]))             # |h_{t-1}|
    W = np.abs(np.asarray(p.params.W_h, dtype=np.float64))
    back = A @ W                                                   # |dL/dh_t| |W_h|: into h_{t-1}
    return dict(zero, W_x=np.einsum("tbh,tbd->hd", A, np.abs(p.xs)), W_h=np.einsum("tbh,tbk->hk", A, prev),
                b_h=A.sum(axis=(0, 1)), dh0=back[0], dhs=np.concatenate([back[1:], np.zeros((1, p.B, p.H))]))


def softmax_floor(p: Problem, truncation="same") -> dict:
    """The response to an absolute error of u in dl/dy (per unit u), for softmax.

    dl/dy = softmax(y) - onehot(d) is computed as p_d - 1 where p_d ~ 1: it is known
    only to an absolute ~u, and the loss term log(sum exp(y - m)) - (y_d - m) only to
    an absolute ~u per term. The backward pass is linear in dl/dy, so the response is
    measured exactly: the reference BPTT of the same network with a linear output and
    targets d_t = y_t - s_t has dl/dy = s_t / B, an error of one unit; s is one class
    at a time (random signs over steps and rows) and the absolute responses are added. Zero for linear outputs (their errors are relative, and the
    perturbation of the inputs measures them)."""
    if p.spec.output != "softmax":
        return {}
    ys = reference.forward(p.spec, p.params, p.xs, p.h0).ys
    rng = np.random.default_rng((p.seed, 0x50F7))
    lin = RNNSpec(activation=p.spec.activation, output="linear", targets=p.spec.targets, l2=0.0)
    tr = p.truncation if truncation == "same" else truncation
    out = {}
    for o in range(p.O):  # one class at a time, and the absolute responses added: no cancellation across classes
        s = np.zeros(ys.shape)
        s[..., o] = rng.choice((-1.0, 1.0), size=ys.shape[:2])
        r = reference.bptt(lin, p.params, p.xs, ys - s, h0=p.h0, truncation=tr)
        parts = {n: np.abs(getattr(r.grads, n)) for n in PARAM_NAMES}
        parts["dh0"] = np.abs(r.dh0)
        if r.dhs is not None:
            parts["dhs"] = np.abs(r.dhs)
        for k, v in parts.items():
            out[k] = out.get(k, 0.0) + v
    out["loss"] = float(p.T if p.spec.targets == "every" else 1)
    return out


def rounding_floor(p: Problem, truncation="same", full=None) -> dict:
    """saturation_floor + softmax_floor: what a correct backend leaves undetermined
    beyond what the perturbation of the inputs measures, per unit u. ``full``: the
    reference's full BPTT of p, when the caller has it."""
    a, b = saturation_floor(p, full), softmax_floor(p, truncation)
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in set(a) | set(b)}


def compare_bptt(cmp: Comparison, got, want, spread, prefix="", floor=None):
    """loss, grads, dh0 and (when both have it) dhs of ``got`` against ``want``;
    ``spread`` is the measured conditioning (``_ref_spread``), ``floor`` the
    rounding floor (``rounding_floor``)."""
    floor = floor or {}
    worst = cmp(prefix + "loss", np.array([got.loss]), np.array([want.loss]), np.array([spread.loss]),
                floor=floor.get("loss", 0.0))
    for n in PARAM_NAMES:
        worst = max(worst, cmp(f"{prefix}grads.{n}", getattr(got.grads, n), getattr(want.grads, n),
                               getattr(spread.grads, n), floor=floor.get(n, 0.0)))
    worst = max(worst, cmp(prefix + "dh0", got.dh0, want.dh0, spread.dh0, floor=floor.get("dh0", 0.0)))
    if want.dhs is not None and got.dhs is not None:
        worst = max(worst, cmp(prefix + "dhs", got.dhs, want.dhs, spread.dhs, time_axis=True,
                               floor=floor.get("dhs", 0.0)))
    return worst


def _result_scale(r):
    return _scale(np.array([r.loss]), r.dh0, r.dhs, *r.grads.as_dict().values())


def _agree_with(backend, p, want, spread, truncation="same", full=None):
    tol = tolerance_for(_dtype(backend))
    got = _bptt(backend, p, truncation)
    cmp = Comparison(tol, _dtype(backend), _result_scale(want))
    return compare_bptt(cmp, got, want, spread, floor=rounding_floor(p, truncation, full))


# ---------------------------------------------------------------------------
# Agreement with the reference


def prop_forward(backend, p: Problem):
    """forward: hs and ys agree with the reference."""
    tol = tolerance_for(_dtype(backend))
    (spec, params, xs), kw = p.forward_args()
    got = check_forward_result(backend.forward(spec, params, xs, **kw), p)
    want = reference.forward(spec, params, xs, **kw)
    outs = [reference.forward(q.spec, q.params, q.xs, h0=q.h0) for q in (perturbed(p, tol.u, m) for m in PERTURBATIONS)]
    cmp = Comparison(tol, _dtype(backend), _scale(want.hs, want.ys))
    return max(cmp("hs", got.hs, want.hs, _spread(want, outs, lambda r: r.hs), time_axis=True),
               cmp("ys", got.ys, want.ys, _spread(want, outs, lambda r: r.ys), time_axis=True))


def prop_bptt(backend, p: Problem):
    """Full BPTT: loss, grads, dh0 and dhs agree with the reference."""
    tol = tolerance_for(_dtype(backend))
    ref, spread = _ref_spread(p, tol.u, None)
    return _agree_with(backend, p, ref, spread, None, full=ref)


def prop_rtrl(backend, p: Problem):
    """Agreement with real-time recurrent learning (forward mode, any truncation):
    an oracle that shares no backward loop with the reference."""
    tol = tolerance_for(_dtype(backend))
    args, kw = p.bptt_args()
    want = reference.rtrl(*args, **kw)
    # The conditioning is measured on the reference BPTT (same function, same conditioning).
    _, spread = _ref_spread(p, tol.u)
    return _agree_with(backend, p, want, spread)


def prop_finite_differences(backend, p: Problem):
    """The backend's gradient, along a random direction in each parameter and in h0,
    agrees with central finite differences of the reference loss (full BPTT)."""
    tol = tolerance_for(_dtype(backend))
    got = _bptt(backend, p, None)
    rng = np.random.default_rng((p.seed, 0xFD))
    eps = 1e-5
    h0 = np.zeros((p.B, p.H)) if p.h0 is None else p.h0
    loss_mag = _loss_magnitude(p)
    ref, spread = _ref_spread(p, tol.u, None)  # the case's conditioning
    floor = rounding_floor(p, None, full=ref)
    worst = 0.0
    for name in PARAM_NAMES + ("h0",):
        shape = h0.shape if name == "h0" else np.shape(getattr(p.params, name))
        v = rng.standard_normal(shape)
        zero = {n: np.zeros(np.shape(w)) for n, w in p.params.as_dict().items()}
        direction = RNNParams(**dict(zero, **({name: v} if name != "h0" else {})))
        dh0_dir = v if name == "h0" else None
        if p.spec.activation == "relu":
            _reject_relu_kink(p, direction, h0, dh0_dir, eps)
        g = got.dh0 if name == "h0" else getattr(got.grads, name)
        analytic = float(np.vdot(g, v))
        mag = float(np.vdot(np.abs(g), np.abs(v)))
        fd1 = reference.directional_derivative(p.spec, p.params, p.xs, p.targets, direction, h0, dh0_dir, eps)
        fd2 = reference.directional_derivative(p.spec, p.params, p.xs, p.targets, direction, h0, dh0_dir, 2 * eps)
        # truncation error of fd1 ~ |fd2 - fd1| / 3 (Richardson); 2 |fd2 - fd1| is six times that, as
        # the estimate itself drops the higher-order terms; roundoff ~ 16 u (magnitude of L) / eps.
        sat = tol.slope * tol.u * float(np.vdot(np.broadcast_to(floor.get("dh0" if name == "h0" else name, 0.0),
                                                                 v.shape), np.abs(v)))
        s = spread.dh0 if name == "h0" else getattr(spread.grads, name)
        cond = tol.cond * float(np.vdot(s, np.abs(v)))
        allowed = tol.fd * mag + 2 * abs(fd2 - fd1) + 16 * 2.0 ** -53 * loss_mag / eps + sat + cond
        err = abs(analytic - fd1)
        noise = allowed - tol.fd * mag  # what finite differences (and saturation) cannot resolve here
        rel = err / max(mag, noise) if max(mag, noise) > 0 else 0.0
        worst = max(worst, rel)
        if err > allowed:
            what = "dh0" if name == "h0" else f"grads.{name}"
            raise PropertyFailure(
                f"{what} along a random direction v: <{what}, v> = {analytic!r} but the central finite "
                f"difference of the reference loss is {fd1!r} (eps={eps}; {fd2!r} at 2 eps): |error| = "
                f"{err:.3g} > allowed {allowed:.3g} (fd {tol.fd:g} x sum|g||v| = {mag:.3g} + 2 x Richardson "
                f"{abs(fd2 - fd1):.3g} + roundoff + saturation {sat:.3g} + conditioning {cond:.3g}); relative error "
                f"{rel:.3g}", error=rel)
    return worst


def _loss_magnitude(p: Problem) -> float:
    """The size of the numbers L is computed from, which sets its rounding error:
    L itself plus, per scored term, |y| |y - d| (linear) or max|y| (softmax: the
    log-sum-exp of logits in the thousands is exact only to u max|y|)."""
    ys = reference.forward(p.spec, p.params, p.xs, p.h0).ys
    steps = range(p.T) if p.spec.targets == "every" else [p.T - 1]
    total = reference.loss(p.spec, p.params, p.xs, p.targets, p.h0)
    for i in steps:
        y = np.abs(ys[i])
        if p.spec.output == "linear":
            total += float((y * (1 + np.abs(ys[i] - p.targets[i]))).sum()) / p.B
        else:
            total += float(y.max(axis=1).sum()) / p.B
    return total


def _preactivations(p, params, h0):
    case = validate_bptt(p.spec, params, p.xs, p.targets, h0)
    with np.errstate(all="ignore"):
        return np.stack([cache[-1] for cache in _ref_forward_case(case)[1]])  # Elman caches end with a_t


def _reject_relu_kink(p, direction, h0, dh0_dir, eps):
    """Finite differences across a kink of relu measure nothing: reject the case when
    a pre-activation changes sign anywhere in the stencil (up to 2 eps)."""
    base = _preactivations(p, p.params, h0) > 0
    for step in (-2 * eps, 2 * eps):
        moved = RNNParams(**{n: np.asarray(w, dtype=np.float64) + step * getattr(direction, n)
                             for n, w in p.params.as_dict().items()})
        h0m = h0 + (0.0 if dh0_dir is None else step * dh0_dir)
        if not np.array_equal(_preactivations(p, moved, h0m) > 0, base):
            reject()


# ---------------------------------------------------------------------------
# Truncation


def prop_truncation_full(backend, p: Problem):
    """BPTT(h; h') with h >= T, any h', is full BPTT (dhs included)."""
    tol = tolerance_for(_dtype(backend))
    assert p.truncation is not None and p.truncation.h >= p.T
    ref, spread = _ref_spread(p, tol.u, None)
    return _agree_with(backend, p, ref, spread, p.truncation, full=ref)


def direct_truncated(p: Problem):
    """BPTT(h; h') read straight from section 2 of the contract, built from the
    reference's full BPTT: every loss term l_t of block k (steps k h'+1 .. e_k) is
    backpropagated from h_t through h_{s_k}, s_k = max(1, e_k - h + 1), as the full
    BPTT of the sub-sequence s_k .. t started from the constant h_{s_k - 1} and scored
    at its last step only; the parameter gradients add up, l2 is added once, and what
    reaches h_0 (s_k = 1) is dh0. Returns a BPTTResult with dhs None."""
    spec, T, B = p.spec, p.T, p.B
    h, hp = p.truncation.h, p.truncation.h_prime
    states = np.concatenate([(np.zeros((1, B, p.H)) if p.h0 is None else np.asarray(p.h0)[None]),
                             reference.forward(spec, p.params, p.xs, p.h0).hs])  # states[k] = h_k
    one_term = RNNSpec(activation=spec.activation, output=spec.output, targets="last", l2=0.0)
    grads = {n: np.zeros(np.shape(w)) for n, w in p.params.as_dict().items()}
    dh0 = np.zeros((B, p.H))
    loss = 0.0
    for t in (range(1, T + 1) if spec.targets == "every" else [T]):
        k = (t - 1) // hp
        e = min((k + 1) * hp, T)
        s = max(1, e - h + 1)
        r = reference.bptt(one_term, p.params, p.xs[s - 1:t], p.targets[s - 1:t], h0=states[s - 1])
        loss += r.loss
        for n in PARAM_NAMES:
            grads[n] += getattr(r.grads, n)
        if s == 1:
            dh0 += r.dh0
    for n in ("W_x", "W_h", "W_y"):
        w = np.asarray(getattr(p.params, n), dtype=np.float64)
        grads[n] += spec.l2 * w
        loss += spec.l2 / 2 * float((w ** 2).sum())
    return reference.BPTTResult(loss=loss, grads=RNNParams(**grads), dh0=dh0, dhs=None)


def prop_truncation_cut(backend, p: Problem):
    """BPTT(h; h') with h < T equals the direct block-by-block evaluation of section 2,
    and dhs is None."""
    tol = tolerance_for(_dtype(backend))
    assert p.truncation is not None and p.truncation.h < p.T
    want = direct_truncated(p)
    # conditioning: how the reference's truncated BPTT responds to a rounding-sized change
    _, spread = _ref_spread(p, tol.u)
    return _agree_with(backend, p, want, spread)


def prop_dhs_presence(backend, p: Problem):
    """dhs is None exactly when the truncation cuts (h < T); otherwise it is the
    (T, B, H) array (truncation None, or h >= T with any h')."""
    _bptt(backend, p)  # check_bptt_result checks exactly this
    return None


# ---------------------------------------------------------------------------
# Decay / growth laws (section 6)


def _law_failure(text, t, b, got, bound, tol, dtype, kind="bound"):
    rel = abs(got - bound) / bound if bound > 0 else float("inf")
    return PropertyFailure(f"{text}: at time step t={t}, batch row b={b}: ||dL/dh_t|| = {got!r} vs {kind} "
                           f"{bound!r} (relative excess {rel:.3g}; slack {tol.law:.3g} per step of lag, "
                           f"{dtype})", error=rel)


def prop_decay_bound(backend, p: Problem):
    """targets="last": ||dL/dh_t[b]|| <= (gamma sigma_max(W_h))^(T-t) ||dL/dh_T[b]||."""
    tol = tolerance_for(_dtype(backend))
    dhs = _bptt(backend, p, None).dhs
    c = p.gamma * laws.sigma_max(p.params.W_h)
    norms = np.linalg.norm(dhs, axis=2)  # (T, B)
    lag = (p.T - np.arange(1, p.T + 1))[:, None]
    law = c ** lag * norms[-1]
    bad = np.argwhere(norms > law * (1 + tol.law * (lag + 1)) + tol.tiny)
    if bad.size:
        i, b = (int(k) for k in bad[0])
        raise _law_failure(f"decay bound (gamma*sigma_max = {c:.6g})", i + 1, b, float(norms[i, b]),
                           float(law[i, b]), tol, _dtype(backend))
    return 0.0  # no excess over the bound


def prop_orthogonal_law(backend, p: Problem):
    """f = identity, W_h = rho Q (Q orthogonal), targets="last":
    ||dL/dh_t[b]|| = rho^(T-t) ||dL/dh_T[b]|| exactly."""
    tol = tolerance_for(_dtype(backend))
    dhs = _bptt(backend, p, None).dhs
    rho = laws.sigma_max(p.params.W_h)
    norms = np.linalg.norm(dhs, axis=2)
    worst = 0.0
    for t in range(1, p.T + 1):
        lag = p.T - t
        law = rho ** lag * norms[-1]
        err = np.abs(norms[t - 1] - law)
        allowed = law * tol.law * (lag + 1) + tol.tiny  # tiny: values that underflow in the dtype
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(law > 0, err / np.where(law > 0, law, 1), err)
        worst = max(worst, float(rel.max(initial=0.0)))
        for b in np.flatnonzero(err > allowed):
            raise _law_failure(f"orthogonal law (rho = {rho:.6g})", t, int(b), float(norms[t - 1, b]),
                               float(law[b]), tol, _dtype(backend), kind="law rho^(T-t) ||dL/dh_T||")
    return worst


def prop_growth_law(backend, p: Problem):
    """f = identity, any W_h: with B = O = H, W_y = I and the last targets chosen so
    that dL/dh_T is the identity matrix (row b = e_b), the backend's dL/dh_t is the
    matrix W_h^(T-t), and its spectral norm is >= rho(W_h)^(T-t)."""
    tol = tolerance_for(_dtype(backend))
    got = _bptt(backend, p, None)
    W = np.asarray(p.params.W_h, dtype=np.float64)
    want = np.stack([np.linalg.matrix_power(W, p.T - t) for t in range(1, p.T + 1)])
    _, spread = _ref_spread(p, tol.u, None)
    cmp = Comparison(tol, _dtype(backend), _scale(want))
    worst = cmp("dhs (= W_h^(T-t) here)", got.dhs, want, spread.dhs, time_axis=True)
    rho = laws.spectral_radius(W)
    # dL/dh_T is I only up to the rounding of y_T - d_T (~u |y_T|): use the backend's own,
    # sigma_max(dL/dh_T W_h^k) >= sigma_min(dL/dh_T) sigma_max(W_h^k) >= sigma_min(dL/dh_T) rho^k.
    start = float(np.linalg.svd(got.dhs[-1], compute_uv=False).min())
    for t in range(1, p.T + 1):
        lag = p.T - t
        norm = laws.sigma_max(got.dhs[t - 1])
        # tol.law per step of lag (it already allows ~2 H u per step); the tightest cases drawn
        # (rho = 1, normal W_h) lose ~4 u per step, so a slack of u per step fails correct backends.
        floor = start * rho ** lag * (1 - tol.law * (lag + 1))
        if norm < floor - tol.tiny:  # below the smallest normal number the dtype cannot tell
            raise PropertyFailure(
                f"growth law: ||(W_h^T)^k|| >= rho^k fails on the backend's dL/dh_t at time step t={t} "
                f"(k={lag}): spectral norm {norm!r} < sigma_min(dL/dh_T) rho^k = {start * rho ** lag!r} "
                f"(rho = {rho:.6g}; slack {tol.law:.3g} x (k+1))", error=(floor - norm) / floor)
    return worst


def prop_truncation_error_bound(backend, p: Problem):
    """c = gamma sigma_max(W_h) < 1: ||dW(full) - dW(h; h')||_F is within the geometric
    bound of section 6 (W_h with ||h_{s-1}||, W_x with ||x_s||, b_h with 1)."""
    tol = tolerance_for(_dtype(backend))
    tr = p.truncation
    full, cut = _bptt(backend, p, None), _bptt(backend, p)
    c = p.gamma * laws.sigma_max(p.params.W_h)
    assert c < 1 and tr.h < p.T
    m = tr.h - tr.h_prime + 1
    case = validate_bptt(p.spec, p.params, p.xs, p.targets, p.h0)
    with np.errstate(all="ignore"):
        states, _, ys = _ref_forward_case(case)
        hs = np.stack([s[0] for s in states])  # hs[0] = h0
        _, dys = _ref_loss_terms(case, ys)
    e_norm = np.linalg.norm(dys @ np.asarray(p.params.W_y), axis=2)      # (T, B): ||e_t[b]||
    sums = {"W_h": np.linalg.norm(hs[:-1], axis=2).max(axis=0),         # max_s ||h_{s-1}[b]||
            "W_x": np.linalg.norm(p.xs, axis=2).max(axis=0),             # max_s ||x_s[b]||
            "b_h": np.ones(p.B)}
    factor = p.gamma * c ** m / (1 - c)
    worst = 0.0
    for n, per_b in sums.items():
        bound = factor * float((e_norm * per_b[None, :]).sum())
        gf, gc = getattr(full.grads, n), getattr(cut.grads, n)
        diff = float(np.linalg.norm(gf - gc))
        # each of the two gradients is within ~rtol of its exact value (normwise, as the agreement
        # properties check), so their difference is within rtol (|gf| + |gc|); x4 for normwise vs max-abs.
        slack = 4 * tol.rtol * (float(np.linalg.norm(gf)) + float(np.linalg.norm(gc)))
        worst = max(worst, diff / bound if bound > 0 else (0.0 if diff == 0 else float("inf")))
        if diff > bound + slack:
            raise PropertyFailure(
                f"truncation error bound for {n} ({tr}, m = h - h' + 1 = {m}, c = {c:.6g}): "
                f"||d{n}(full) - d{n}(h; h')||_F = {diff:.6g} > gamma c^m/(1-c) sum ||e_t|| max ... = "
                f"{bound:.6g} (+ rounding slack {slack:.3g})", error=diff / bound if bound > 0 else None)
    return worst


# ---------------------------------------------------------------------------
# Clipping


def prop_clipping(backend, case):
    """Global-norm clipping of the backend's gradient keeps the direction and caps
    the norm; clipping by value caps every entry and leaves the small ones; both
    agree with clipping the reference gradient."""
    p, frac_norm, frac_value = case
    tol = tolerance_for(_dtype(backend))
    got = _bptt(backend, p).grads
    flat = np.concatenate([np.ravel(getattr(got, n)) for n in PARAM_NAMES])
    norm = float(np.linalg.norm(flat))
    max_norm = frac_norm * norm if norm > 0 else 1.0
    clipped, reported = reference.clip_by_global_norm(got, max_norm)
    u64 = 2.0 ** -53
    # float64 reductions of <= ~3000 entries: a relative 64 u is ample and catches any real slip.
    if abs(reported - norm) > 64 * u64 * norm:
        raise PropertyFailure(f"clip_by_global_norm reported norm {reported!r}; the global norm is {norm!r}")
    new_norm = reference.global_norm(clipped)
    if new_norm > max_norm * (1 + 64 * u64):
        raise PropertyFailure(f"clipped global norm {new_norm!r} exceeds max_norm {max_norm!r}")
    s = min(1.0, max_norm / norm) if norm > 0 else 1.0
    for n in PARAM_NAMES:
        g, cg = getattr(got, n), getattr(clipped, n)
        dev = np.abs(cg - s * g)
        if (dev > 64 * u64 * np.abs(s * g) + 1e-300).any():
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(dev)), dev.shape))
            raise PropertyFailure(f"clipping changed the direction: clipped grads.{n}[{idx}] = {cg[idx]!r}, "
                                  f"but scale {s!r} x {g[idx]!r} = {s * g[idx]!r}")
    amax = float(np.abs(flat).max(initial=0.0))
    v = frac_value * amax if amax > 0 else 1.0
    byval = reference.clip_by_value(got, v)
    for n in PARAM_NAMES:
        g, cg = getattr(got, n), getattr(byval, n)
        if (np.abs(cg) > v).any() or not np.array_equal(cg[np.abs(g) <= v], g[np.abs(g) <= v]) \
                or not np.array_equal(cg[np.abs(g) > v], np.sign(g[np.abs(g) > v]) * v):
            raise PropertyFailure(f"clip_by_value({v!r}) of grads.{n} is not the entrywise clamp")
    # Against clipping the reference gradient (projection on a ball: 1-Lipschitz).
    ref, spread = _ref_spread(p, tol.u)
    ref_p = RNNParams(**{n: getattr(ref.grads, n) - getattr(spread.grads, n) for n in PARAM_NAMES})
    rc, _ = reference.clip_by_global_norm(ref.grads, max_norm)
    rcp, _ = reference.clip_by_global_norm(ref_p, max_norm)
    cmp = Comparison(tol, _dtype(backend), _scale(*ref.grads.as_dict().values()))
    floor = rounding_floor(p)
    worst = 0.0
    for n in PARAM_NAMES:
        worst = max(worst, cmp(f"clipped grads.{n}", getattr(clipped, n), getattr(rc, n),
                               np.abs(getattr(rc, n) - getattr(rcp, n)) + getattr(spread.grads, n),
                               floor=floor.get(n, 0.0)))
    return worst


# ---------------------------------------------------------------------------
# Bad input (section 4)

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
            ok = step == bad.step_of_reference if _dtype(backend) == "float64" \
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


# ---------------------------------------------------------------------------
# Determinism and inputs


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def prop_determinism(backend, p: Problem):
    """The same call twice gives the same answer, bit for bit."""
    (spec, params, xs), kw = p.forward_args()
    f1, f2 = backend.forward(spec, params, xs, **kw), backend.forward(spec, params, xs, **kw)
    for n in ("hs", "ys"):
        if not _same(getattr(f1, n), getattr(f2, n)):
            raise PropertyFailure(f"forward {n} differs between two identical calls "
                                  f"(max diff {np.abs(np.asarray(getattr(f1, n)) - getattr(f2, n)).max():.3g})")
    r1, r2 = _bptt(backend, p), _bptt(backend, p)
    pairs = [("loss", r1.loss, r2.loss), ("dh0", r1.dh0, r2.dh0), ("dhs", r1.dhs, r2.dhs)]
    pairs += [(f"grads.{n}", getattr(r1.grads, n), getattr(r2.grads, n)) for n in PARAM_NAMES]
    for n, a, b in pairs:
        if not _same(a, b):
            diff = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max() \
                if a is not None and b is not None and np.shape(a) == np.shape(b) else "n/a"
            raise PropertyFailure(f"bptt {n} differs between two identical calls (max diff {diff})")
    return 0.0


def prop_inputs_untouched(backend, p: Problem):
    """forward and bptt leave every input array as it was (values, shape, dtype) and
    the params object as it was."""
    arrays = {n: np.array(w, dtype=np.float64) for n, w in p.params.as_dict().items()}
    params = RNNParams(**arrays)
    inputs = dict(arrays, xs=np.array(p.xs, dtype=np.float64), targets=np.array(p.targets))
    if p.h0 is not None:
        inputs["h0"] = np.array(p.h0, dtype=np.float64)
    before = {k: v.copy() for k, v in inputs.items()}
    ids = {n: id(getattr(params, n)) for n in PARAM_NAMES}
    backend.forward(p.spec, params, inputs["xs"], h0=inputs.get("h0"))
    backend.bptt(p.spec, params, inputs["xs"], inputs["targets"], h0=inputs.get("h0"), truncation=p.truncation)
    for n in PARAM_NAMES:
        if id(getattr(params, n)) != ids[n]:
            raise PropertyFailure(f"params.{n} was replaced by the backend")
    for k, v in inputs.items():
        if not _same(v, before[k]):
            if v.shape == before[k].shape:
                idx = tuple(int(i) for i in np.argwhere(v != before[k])[0])
                raise PropertyFailure(f"input {k}{list(idx)} was changed from {before[k][idx]!r} to {v[idx]!r}")
            raise PropertyFailure(f"input {k} was changed (shape {before[k].shape} -> {v.shape})")
    return 0.0


# ---------------------------------------------------------------------------
# The registry: name -> (property, case builder)


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


__all__ = ["PropertyFailure", "PROPERTIES", "Property", "Comparison", "check_bptt_result", "check_forward_result",
           "direct_truncated", "perturbed", "describe_case", "BadInput"] + [n for n in dir() if n.startswith("prop_")]
