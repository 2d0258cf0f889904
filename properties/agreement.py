"""Agreement with the reference and with the independent oracles: forward, full BPTT,
RTRL (forward mode) and central finite differences, for every cell."""
from __future__ import annotations

import numpy as np
from hypothesis import reject

import reference
from reference.bptt import run_forward
from reference.types import RNNParams
from reference.validation import validate_bptt

from .hypothesis_helpers import Problem
from .oracle import (PERTURBATIONS, agree_with, gru_forward_floor, loss_magnitude, perturbed, reference_forward,
                     reference_spread, rounding_floor, spread_of, summation_floor)
from .results import (Comparison, Measured, PropertyFailure, backend_bptt, check_forward_result, dtype_of, max_abs,
                      num, param_names)
from .tolerances import tolerance_for


def prop_forward(backend, p: Problem):
    """forward: hs, ys (and the LSTM's cs) agree with the reference."""
    tol = tolerance_for(dtype_of(backend))
    (spec, params, xs), kw = p.forward_args()
    got = check_forward_result(backend.forward(spec, params, xs, **kw), p)
    want = reference_forward(p)
    outs = [reference_forward(perturbed(p, tol.u, m)) for m in PERTURBATIONS]
    names = ("hs", "ys") + (("cs",) if want.cs is not None else ())
    cmp = Comparison(tol, dtype_of(backend), max_abs(*(getattr(want, n) for n in names)))
    floor = gru_forward_floor(p)
    for n in names:
        cmp.add(n, getattr(got, n), getattr(want, n), spread_of(want, outs, lambda r, n=n: getattr(r, n)),
                time_axis=True, floor=floor.get(n, 0.0))
    return cmp.verdict()


def prop_bptt(backend, p: Problem):
    """Full BPTT: loss, grads, dh0 and dhs (the LSTM's dc0 and dcs, the GRU's b_hn)
    agree with the reference."""
    tol = tolerance_for(dtype_of(backend))
    ref, spread = reference_spread(p, tol.u, None)
    return agree_with(backend, p, ref, spread, None, full=ref)


def prop_rtrl(backend, p: Problem):
    """Agreement with real-time recurrent learning (forward mode, any truncation):
    an oracle that shares no backward loop with the reference."""
    tol = tolerance_for(dtype_of(backend))
    args, kw = p.bptt_args()
    want = reference.rtrl(*args, **kw)
    # The conditioning is measured on the reference BPTT (same function, same conditioning).
    _, spread = reference_spread(p, tol.u)
    return agree_with(backend, p, want, spread)


def prop_finite_differences(backend, p: Problem):
    """The backend's gradient, along a random direction in each parameter and in h0
    (and c0), agrees with central finite differences of the reference loss (full BPTT)."""
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p, None)
    rng = np.random.default_rng((p.seed, 0xFD))
    eps = 1e-5
    h0, c0 = p.initial_state()
    loss_mag = loss_magnitude(p)
    ref, spread = reference_spread(p, tol.u, None)  # the case's conditioning
    floor, sums = rounding_floor(p, None, full=ref), summation_floor(p, None)
    zero = {n: np.zeros(np.shape(w)) for n, w in p.params.as_dict().items()}
    states = ("h0",) + (("c0",) if c0 is not None else ())
    results = []
    for name in param_names(p) + states:
        shape = np.shape(h0) if name in states else np.shape(getattr(p.params, name))
        v = rng.standard_normal(shape)
        direction = RNNParams(**dict(zero, **({name: v} if name not in states else {})))
        dirs = {"dh0_direction": v if name == "h0" else None}
        kw = {"c0": c0, "dc0_direction": v if name == "c0" else None} if c0 is not None else {}
        if p.spec.activation == "relu":
            _reject_relu_kink(p, direction, h0, dirs["dh0_direction"], eps)
        key = "d" + name if name in states else name
        g = getattr(got, key) if name in states else getattr(got.grads, name)
        analytic = float(np.vdot(g, v))
        mag = float(np.vdot(np.abs(g), np.abs(v)))

        def fd(e):
            return reference.directional_derivative(p.spec, p.params, p.xs, p.targets, direction, h0,
                                                    dirs["dh0_direction"], e, **kw)
        # truncation error of fd1 ~ |fd2 - fd1| / 3 (Richardson); 2 |fd2 - fd1| is six times that, as
        # the estimate itself drops the higher-order terms; roundoff ~ 16 u (magnitude of L) / eps.
        # The Richardson term only ever adds slack: fd2 is evaluated only when the error uses more than
        # a quarter of the rest (so a reported ratio above 1/4 always includes it).
        sat = tol.slope * tol.u * float(np.vdot(np.broadcast_to(floor.get(key, 0.0), v.shape), np.abs(v)))
        sat += tol.u * float(np.vdot(np.broadcast_to(sums.get(key, 0.0), v.shape), np.abs(v)))   # long sums
        s = getattr(spread, key) if name in states else getattr(spread.grads, name)
        cond = tol.cond * float(np.vdot(s, np.abs(v)))
        roundoff = 16 * 2.0 ** -53 * loss_mag / eps
        fd1 = fd(eps)
        err = abs(analytic - fd1)
        fd2, richardson = None, 0.0
        if err > 0.25 * (tol.fd * mag + roundoff + sat + cond):
            fd2 = fd(2 * eps)
            richardson = 2 * abs(fd2 - fd1)
        allowed = tol.fd * mag + richardson + roundoff + sat + cond
        what = key if name in states else f"grads.{name}"
        results.append((err / allowed if allowed > 0 else (0.0 if err == 0 else float("inf")), what, dict(
            analytic=analytic, fd=fd1, fd_2eps=fd2, abs_error=err, allowed=allowed, fd_term=tol.fd * mag,
            richardson=richardson, roundoff=roundoff, saturation=sat, conditioning=cond)))
    results.sort(key=lambda r: -r[0])
    bad = [r for r in results if r[0] > 1.0]
    if bad:
        lines = [f"{len(bad)} directional derivative{'s' if len(bad) > 1 else ''} disagree with central finite "
                 f"differences of the reference loss (eps={eps}), worst first: "
                 + ", ".join(f"{w} ({ratio:.3g} x tolerance)" for ratio, w, _ in bad)]
        for ratio, what, d in bad:
            lines.append(
                f"  {what} along a random direction v: <{what}, v> = {num(d['analytic'])}, central difference "
                f"{num(d['fd'])} ({num(d['fd_2eps'])} at 2 eps): |error| {d['abs_error']:.3g} = {ratio:.3g} x "
                f"allowed {d['allowed']:.3g} (fd {tol.fd:g} x sum|g||v| {d['fd_term']:.3g} + 2 x Richardson "
                f"{d['richardson']:.3g} + roundoff {d['roundoff']:.3g} + saturation and summation floors "
                f"{d['saturation']:.3g} + "
                f"conditioning {d['conditioning']:.3g})")
        raise PropertyFailure("\n".join(lines), error=bad[0][0],
                              raw={"failing": [dict(d, where=w, ratio=r) for r, w, d in bad]})
    ratio, what, d = results[0]
    return Measured(ratio, dict(d, where=what))


def _preactivations(p, params, h0):
    case = validate_bptt(p.spec, params, p.xs, p.targets, h0)
    with np.errstate(all="ignore"):
        return np.stack([cache[-1] for cache in run_forward(case)[1]])  # Elman caches end with a_t


def _reject_relu_kink(p, direction, h0, dh0_dir, eps):
    """Finite differences across a kink of relu (an Elman activation) measure nothing:
    reject the case when a pre-activation changes sign anywhere in the stencil (up to 2 eps)."""
    base = _preactivations(p, p.params, h0) > 0
    for step in (-2 * eps, 2 * eps):
        moved = RNNParams(**{n: np.asarray(w, dtype=np.float64) + step * getattr(direction, n)
                             for n, w in p.params.as_dict().items()})
        h0m = h0 + (0.0 if dh0_dir is None else step * dh0_dir)
        if not np.array_equal(_preactivations(p, moved, h0m) > 0, base):
            reject()
