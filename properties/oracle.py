"""What the reference says about a case and how sure it can be: the reference result,
its measured conditioning (its response to rounding-sized changes of the inputs), and
the rounding floors that no input perturbation shows (saturated tanh/sigmoid, softmax).
``agree_with`` compares a backend with a reference answer under all of them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import reference
from reference.types import RNNParams, RNNSpec

from .hypothesis_helpers import Problem
from .results import PARAM_NAMES, Comparison, backend_bptt, compare_bptt, dtype_of, result_scale
from .tolerances import perturb, tolerance_for


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


def spread_of(ref, outs, get):
    """The largest |ref - out| over the perturbed runs, elementwise (None where ref has none)."""
    a = get(ref)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    return np.max([np.abs(a - np.asarray(get(o), dtype=np.float64)) for o in outs], axis=0)


def reference_spread(p: Problem, u: float, truncation="same"):
    """(the reference BPTT, its spread): the spread is a BPTTResult of the largest
    response of each entry to the perturbations of the inputs (PERTURBATIONS), the
    measured conditioning of this case."""
    ref = reference_bptt(p, truncation)
    outs = [reference_bptt(perturbed(p, u, m), truncation) for m in PERTURBATIONS]
    grads = RNNParams(**{n: spread_of(ref, outs, lambda r, n=n: getattr(r.grads, n)) for n in PARAM_NAMES})
    return ref, reference.BPTTResult(loss=float(spread_of(ref, outs, lambda r: np.array(r.loss))), grads=grads,
                                     dh0=spread_of(ref, outs, lambda r: r.dh0), dhs=spread_of(ref, outs, lambda r: r.dhs))


def reference_bptt(p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return reference.bptt(*args, **kw)


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
    ref = reference_bptt(p, None) if full is None else full
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


def loss_magnitude(p: Problem) -> float:
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


def agree_with(backend, p, want, spread, truncation="same", full=None):
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p, truncation)
    cmp = Comparison(tol, dtype_of(backend), result_scale(want))
    return compare_bptt(cmp, got, want, spread, floor=rounding_floor(p, truncation, full))
