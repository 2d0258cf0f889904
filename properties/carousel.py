"""The exact laws of the gated cells (section 6): with W_h = 0, targets="last" and no
truncation the gates depend on x_t alone, and the gradient is carried back one step by
one gate (the row's ``carousel_gate``, given by ``laws.carousel_gates``):

    LSTM   dL/dh_t = 0 for t < T,  dL/dc_{t-1} = dL/dc_t * f_t (t = 2..T),  dL/dc0 = dL/dc_1 * f_1
    GRU    dL/dh_{t-1} = dL/dh_t * z_t (t = 2..T),  dL/dh0 = dL/dh_1 * z_1

the constant error carousel: with f_t (z_t) near 1 the gradient crosses hundreds of
steps, where an Elman cell with gamma * sigma_max(W_h) < 1 loses it geometrically.
Each step is compared on the backend's own numbers: its dL/d(state)_{t-1} against its
dL/d(state)_t times the gate, so that no error accumulates along the chain.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from reference.cells import CELLS

from . import laws
from .hypothesis_helpers import Caps, Problem, draw_problem
from .oracle import reference_spread, saturation_floor
from .results import Measured, PropertyFailure, backend_bptt, dtype_of, need, num
from .tolerances import tolerance_for


def carousel_case(draw, caps: Caps, cells) -> Problem:
    """A case of a gated cell among ``cells`` with W_h = 0, targets="last", no truncation."""
    p = draw_problem(draw, caps, cells=cells, targets=("last",), truncation="none", corners=True)
    return replace(p, params=replace(p.params, W_h=np.zeros(np.shape(p.params.W_h))))


def _gate_slack(p: Problem, tol, gates):
    """The relative error a correct backend's gate value may carry, per entry (T, B, H):
    its pre-activation W_x x_t + b in the dtype rounds D + 1 products and sums of terms up
    to m = |W_x| |x_t| + |b| and the inputs themselves (together (D + 2) u m absolutely),
    which sigma turns into a relative error (1 - gate) (D + 2) u m (sigma'/sigma = 1 - sigma);
    x2 for the rounding of sigma itself compounding with it. The rest (sigma's own and the
    product's rounding, a few u) is inside tol.law."""
    cell = CELLS[p.spec.cell]
    rows = cell.block(cell.carousel_gate, p.H)
    W = np.abs(np.asarray(p.params.W_x, dtype=np.float64)[rows])
    b = np.abs(np.asarray(p.params.b_h, dtype=np.float64)[rows])
    m = np.abs(p.xs) @ W.T + b
    return 2 * (p.D + 2) * tol.u * (1 - gates) * m + tol.law


def _carousel(backend, p: Problem, res, state: str, law: str, last=0.0):
    """Compares the backend's d(state)_{t-1} (and d(state)_0) with its d(state)_t times the
    gate; ``last`` (B, H) is extra slack of the comparison at t = T."""
    tol = tolerance_for(dtype_of(backend))
    totals = need(res, f"d{state}s")                           # (T, B, H): dL/dc_t or dL/dh_t
    initial = getattr(res, f"d{state}0")                        # dL/dc0 or dL/dh0
    gates = laws.carousel_gates(p.spec, p.params, p.xs)        # f_t or z_t, float64
    want = totals * gates                                       # d(state)_{t-1} from d(state)_t
    got = np.concatenate([initial[None], totals[:-1]])          # d(state)_0 .. d(state)_{T-1}
    # absolute: tiny, for a product that underflows (a backend may flush it to zero), and
    # |d(state)_t| tiny for a gate below the dtype's smallest normal number (sigmoid(-92) =
    # 1e-40 in float32 is subnormal or flushed to 0: known only to tiny absolutely)
    allowed = np.abs(want) * _gate_slack(p, tol, gates) + np.abs(totals) * tol.tiny + tol.tiny
    allowed[-1] += np.asarray(last) * gates[-1]
    ratio = np.abs(got - want) / allowed
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    worst = float(ratio[idx])
    t = idx[0] + 1
    raw = {"t": t, "where": list(idx), "got": float(got[idx]), "want": float(want[idx]),
           "abs_error": float(abs(got[idx] - want[idx])), "allowed": float(allowed[idx])}
    if worst > 1:
        prev = f"d{state}0" if t == 1 else f"d{state}s[{t - 2}, {idx[1]}, {idx[2]}] (dL/d{state}_{t - 1})"
        gate = CELLS[p.spec.cell].carousel_gate
        raise PropertyFailure(
            f"{law}: dL/d{state}_{t - 1} = dL/d{state}_{t} * {gate}_{t} fails at time step t={t}, batch row "
            f"b={idx[1]}, unit {idx[2]}: {prev} = {num(got[idx])}, but dL/d{state}_{t} * {gate}_{t} = "
            f"{num(totals[idx])} x {num(gates[idx])} = {num(want[idx])}: |error| {raw['abs_error']:.3g} = "
            f"{worst:.3g} x allowed {raw['allowed']:.3g}", error=worst, raw=raw)
    return Measured(worst, raw)


def prop_lstm_carousel(backend, p: Problem):
    """LSTM with W_h = 0, targets="last": dL/dh_t = 0 for t < T and
    dL/dc_{t-1} = dL/dc_t * f_t, dL/dc0 = dL/dc_1 * f_1 (the constant error carousel)."""
    tol = tolerance_for(dtype_of(backend))
    res = backend_bptt(backend, p, None)
    dhs, dcs = need(res, "dhs", "dcs")
    # exactly 0 in any arithmetic (the only path from h_t to the loss is W_h = 0); atol x the
    # largest dL/dh_T for a backend that adds rounding-sized terms
    allowed = tol.atol * float(np.abs(dhs[-1]).max(initial=0.0)) + tol.tiny
    early = np.abs(dhs[:-1])
    zero_ratio = float(early.max(initial=0.0)) / allowed
    if zero_ratio > 1:
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(early)), early.shape))
        raise PropertyFailure(
            f"lstm_carousel: dL/dh_t must be 0 for t < T when W_h = 0 and only step T is scored; "
            f"dhs[{', '.join(map(str, idx))}] (time step t={idx[0] + 1}) = {num(dhs[idx])}: {zero_ratio:.3g} x "
            f"allowed {allowed:.3g}", error=zero_ratio, raw={"where": list(idx), "got": float(dhs[idx])})
    # dL/dc_T = dL/dh_T o_T tanh'(c_T) is the one value a backend may report computed apart
    # from the one it carries back (e.g. the path through h_T added to the module's gradient
    # of c_T). Each is a correct computation, within the agreement tolerance of the exact
    # value (rtol, the measured conditioning, the rounding floor of tanh'(c_T)), so the two
    # differ by at most twice that.
    _, spread = reference_spread(p, tol.u, None)
    floor = np.asarray(saturation_floor(p).get("dcs", 0.0))
    last = 2 * (tol.rtol * np.abs(dcs[-1]) + tol.cond * spread.dcs[-1] + tol.slope * tol.u * floor[-1])
    chain = _carousel(backend, p, res, "c", "lstm_carousel", last)
    return chain if chain >= zero_ratio else Measured(zero_ratio, {"law": "dL/dh_t = 0 for t < T"})


def prop_gru_carousel(backend, p: Problem):
    """GRU with W_h = 0, targets="last": dL/dh_{t-1} = dL/dh_t * z_t and
    dL/dh0 = dL/dh_1 * z_1."""
    return _carousel(backend, p, backend_bptt(backend, p, None), "h", "gru_carousel")
