"""Agreement with the reference and with the independent oracles: forward, full BPTT,
RTRL (forward mode) and central finite differences."""
from __future__ import annotations

import numpy as np
from hypothesis import reject

import reference
from reference.bptt import run_forward
from reference.types import RNNParams
from reference.validation import validate_bptt

from .hypothesis_helpers import Problem
from .oracle import PERTURBATIONS, agree_with, loss_magnitude, perturbed, reference_spread, rounding_floor, spread_of
from .results import PARAM_NAMES, Comparison, PropertyFailure, backend_bptt, check_forward_result, dtype_of, max_abs
from .tolerances import tolerance_for


def prop_forward(backend, p: Problem):
    """forward: hs and ys agree with the reference."""
    tol = tolerance_for(dtype_of(backend))
    (spec, params, xs), kw = p.forward_args()
    got = check_forward_result(backend.forward(spec, params, xs, **kw), p)
    want = reference.forward(spec, params, xs, **kw)
    outs = [reference.forward(q.spec, q.params, q.xs, h0=q.h0) for q in (perturbed(p, tol.u, m) for m in PERTURBATIONS)]
    cmp = Comparison(tol, dtype_of(backend), max_abs(want.hs, want.ys))
    return max(cmp("hs", got.hs, want.hs, spread_of(want, outs, lambda r: r.hs), time_axis=True),
               cmp("ys", got.ys, want.ys, spread_of(want, outs, lambda r: r.ys), time_axis=True))


def prop_bptt(backend, p: Problem):
    """Full BPTT: loss, grads, dh0 and dhs agree with the reference."""
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
    """The backend's gradient, along a random direction in each parameter and in h0,
    agrees with central finite differences of the reference loss (full BPTT)."""
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p, None)
    rng = np.random.default_rng((p.seed, 0xFD))
    eps = 1e-5
    h0 = np.zeros((p.B, p.H)) if p.h0 is None else p.h0
    loss_mag = loss_magnitude(p)
    ref, spread = reference_spread(p, tol.u, None)  # the case's conditioning
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


def _preactivations(p, params, h0):
    case = validate_bptt(p.spec, params, p.xs, p.targets, h0)
    with np.errstate(all="ignore"):
        return np.stack([cache[-1] for cache in run_forward(case)[1]])  # Elman caches end with a_t


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
