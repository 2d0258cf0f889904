"""What the reference says about a case and how sure it can be: the reference result,
its measured conditioning (its response to rounding-sized changes of the inputs), and
the rounding floors that no input perturbation shows (saturated tanh/sigmoid and
gates, softmax). ``agree_with`` compares a backend with a reference answer under all
of them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import reference
from reference.bptt import loss_terms, run_bptt, run_forward, scored_steps
from reference.cells import ACTIVATION
from reference.types import RNNParams
from reference.validation import validate_bptt

from .hypothesis_helpers import Problem
from .results import Comparison, backend_bptt, compare_bptt, dtype_of, param_names, result_scale
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
    c0 = None if p.c0 is None else move(p.c0)
    targets = move(p.targets) if p.spec.output == "linear" else p.targets
    return replace(p, params=params, xs=move(p.xs), h0=h0, c0=c0, targets=targets)


def spread_of(ref, outs, get):
    """The largest |ref - out| over the perturbed runs, elementwise (None where ref has none)."""
    a = get(ref)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    return np.max([np.abs(a - np.asarray(get(o), dtype=np.float64)) for o in outs], axis=0)


_LAST = {"case": None, "values": {}}


def _memo(p: Problem, key, compute):
    """The reference's computations on one case, shared by the oracle, the spread and the
    floors of a property call (a case is immutable; only the last case is kept)."""
    if _LAST["case"] is not p:
        _LAST["case"], _LAST["values"] = p, {}
    values = _LAST["values"]
    if key not in values:
        values[key] = compute()
    return values[key]


def reference_bptt(p: Problem, truncation="same"):
    args, kw = p.bptt_args(truncation)
    return _memo(p, ("bptt", kw["truncation"]), lambda: reference.bptt(*args, **kw))


def reference_forward(p: Problem):
    (spec, params, xs), kw = p.forward_args()
    return _memo(p, "forward", lambda: reference.forward(spec, params, xs, **kw))


def reference_spread(p: Problem, u: float, truncation="same"):
    """(the reference BPTT, its spread): the spread is a BPTTResult of the largest
    response of each entry to the perturbations of the inputs (PERTURBATIONS), the
    measured conditioning of this case."""
    ref = reference_bptt(p, truncation)
    outs = [reference_bptt(perturbed(p, u, m), truncation) for m in PERTURBATIONS]
    grads = RNNParams(**{n: spread_of(ref, outs, lambda r, n=n: getattr(r.grads, n)) for n in param_names(p)})
    return ref, reference.BPTTResult(
        loss=float(spread_of(ref, outs, lambda r: np.array(r.loss))), grads=grads,
        dh0=spread_of(ref, outs, lambda r: r.dh0), dhs=spread_of(ref, outs, lambda r: r.dhs),
        dc0=spread_of(ref, outs, lambda r: r.dc0), dcs=spread_of(ref, outs, lambda r: r.dcs))


# ---------------------------------------------------------------------------
# Rounding floors: what a correct backend leaves undetermined although no
# rounding-sized change of the inputs shows it.
#
# A saturating function's derivative is computed from its rounded value v (relative
# error ~u) and is then known only to an ABSOLUTE error that does not shrink with
# the derivative:
#     tanh:    1 - v^2          from v(1 + e): error 2 e v^2      -> ~2u v^2   (-> 2u at |v| -> 1)
#     sigmoid: v (1 - v)        from v(1 + e): error e v (1 - 2v) -> <= u v    (-> u at v -> 1, relative near 0)
#     1 - z (a GRU gate):       from z(1 + e): error e z          -> u z
# Where the function saturates the derivative is below u, so the rounding of v decides
# it completely: in float32 tanh(9) rounds to 1 and 1 - v^2 is 0 or 1.2e-7 while the
# true value is 6e-8. No perturbation of the inputs shows this (tanh(30 + d) rounds to 1
# whatever d), so it is added as an absolute floor: per unit u, the size of each such
# factor's uncertainty (v^2, v, z) times what multiplies it, carried one step through
# |W_h| into dL/dh_{t-1} (further steps multiply it by the next steps' derivatives,
# which the relative tolerances cover) and, where a gate carries the gradient back
# without W_h (the LSTM's c_t = f c_{t-1} + ..., the GRU's h_t = ... + z h_{t-1}), all the
# way back by the gate itself (f, z <= 1: it cannot grow). Sigmoid's lower tail is
# relative: a sigmoid that returns 0 for 2e-9 is a precision defect (issue 10), not
# rounding. Relu and identity have exact derivatives. The tolerance multiplies the
# floor by ``slope * u`` (tolerances.py).
#
# One such factor sits in a forward pass: the GRU's h_t = (1 - z) n + z h_{t-1}, computed
# as written or as n + z (h_{t-1} - n), changes by (h_{t-1} - n) dz, i.e. by up to
# u z |h_{t-1} - n| absolutely for a z rounded near 1 (where h_t ~ h_{t-1} may be far
# smaller than n, and so is everything computed from it). That error is carried to later
# states by z, reaches y_t through |W_y|, the loss through |dL/dh_t|, and the output
# layer's gradients through dL/dy_t and h_t (``gru_forward_floor``).


def gru_forward_floor(p: Problem, caches=None) -> dict:
    """The GRU forward pass's rounding floor per unit u (see above): {"local": what step t
    adds to h_t, "hs": carried through later steps by z, "ys": through |W_y|}; {} for
    the other cells, whose forward passes have no such factor."""
    if p.spec.cell != "gru":
        return {}
    X, Hp, R, Z, N, HN = _caches(p) if caches is None else caches
    local = Z * np.abs(Hp - N)
    F = np.zeros_like(local)
    for t in range(len(F)):
        F[t] = local[t] + (Z[t] * F[t - 1] if t else 0.0)
    return {"local": local, "hs": F, "ys": F @ np.abs(np.asarray(p.params.W_y, dtype=np.float64)).T}


def _run(p: Problem):
    """The reference forward pass of the validated case: (states, caches, ys, dys) with
    dys the direct errors dL/dy_t (reference.bptt.loss_terms)."""
    def compute():
        args, kw = p.bptt_args(None)
        case = validate_bptt(*args, **kw)
        with np.errstate(all="ignore"):
            states, caches, ys = run_forward(case)
            return states, caches, ys, loss_terms(case, ys)[1]
    return _memo(p, "run", compute)


def _caches(p: Problem):
    """The reference forward caches of the case (one tuple per step, laid out by the
    cell's step in reference.cells), stacked field by field into (T, B, ...) arrays."""
    def compute():
        caches = _run(p)[1]
        return [np.stack([c[k] for c in caches]) for k in range(len(caches[0]))]
    return _memo(p, "caches", compute)


def _param_floors(Ex, Eh, X, Hp):
    """The floors of W_x, W_h, b_h from the pre-activation floors of the input and the
    recurrent products (the same array for all cells but the GRU's n gate)."""
    return {"W_x": np.einsum("tbk,tbd->kd", Ex, np.abs(X)), "W_h": np.einsum("tbk,tbj->kj", Eh, np.abs(Hp)),
            "b_h": Ex.sum(axis=(0, 1))}


def _elman_floor(p: Problem, full):
    if p.spec.activation not in ("tanh", "sigmoid"):
        return {}
    X, Hp, A = _caches(p)
    v = ACTIVATION[p.spec.activation].f(A)
    E = np.abs(full.dhs) * (v ** 2 if p.spec.activation == "tanh" else v)   # dL/da_t = dL/dh_t f'(a_t)
    back = E @ np.abs(np.asarray(p.params.W_h, dtype=np.float64))           # into dL/dh_{t-1}
    return dict(_param_floors(E, E, X, Hp), dh0=back[0], dhs=np.concatenate([back[1:], np.zeros_like(back[:1])]))


def _lstm_floor(p: Problem, full):
    X, Hp, Cp, I, F, G, O, C = _caches(p)
    T = len(X)
    tc = np.tanh(C)
    dh, dc = np.abs(full.dhs), np.abs(full.dcs)      # dL/dh_t (c_t fixed), total dL/dc_t
    W = np.abs(np.asarray(p.params.W_h, dtype=np.float64))
    # the gates' derivative factors at step t: i(1-i), f(1-f), 1-g^2, o(1-o)
    local = np.concatenate([dc * np.abs(G) * I, dc * np.abs(Cp) * F, dc * I * G ** 2, dh * np.abs(tc) * O], axis=2)
    Fh = np.zeros_like(dh)                           # dL/dh_t's floor, one step back through |W_h|
    Fh[:-1] = local[1:] @ W
    Fc = np.zeros_like(dc)                           # dL/dc_t's floor: the factor 1 - tanh(c_t)^2, carried by f
    for t in range(T - 1, -1, -1):
        carried = F[t + 1] * Fc[t + 1] if t + 1 < T else 0.0
        Fc[t] = carried + dh[t] * O[t] * tc[t] ** 2 + Fh[t] * O[t] * (1 - tc[t] ** 2)
    Ez = local + np.concatenate([np.abs(G) * I * (1 - I) * Fc, np.abs(Cp) * F * (1 - F) * Fc,
                                 I * (1 - G ** 2) * Fc, np.abs(tc) * O * (1 - O) * Fh], axis=2)
    back = Ez @ W
    return dict(_param_floors(Ez, Ez, X, Hp), dh0=back[0], dhs=np.concatenate([back[1:], np.zeros_like(back[:1])]),
                dcs=Fc, dc0=F[0] * Fc[0])


def _gru_floor(p: Problem, full):
    caches = _caches(p)
    X, Hp, R, Z, N, HN = caches
    T = len(X)
    dh = np.abs(full.dhs)                            # total dL/dh_t
    W = np.abs(np.asarray(p.params.W_h, dtype=np.float64))
    W_y = np.abs(np.asarray(p.params.W_y, dtype=np.float64))
    # the forward pass's floor (gru_forward_floor) reaches dL/dy_t at the scored steps: linear
    # output dl/dy = y - d moves with y; softmax p - onehot by at most 2 max|dy| per entry
    fwd = gru_forward_floor(p, caches)
    states, _, _, dys = _run(p)
    hs = np.abs(np.stack([st[0] for st in states[1:]]))
    scored = np.zeros((T, 1, 1))
    scored[[t - 1 for t in scored_steps(p.spec, T)]] = 1.0
    yerr = fwd["ys"] * scored / p.B
    if p.spec.output == "softmax":
        yerr = np.broadcast_to(2 * yerr.max(axis=2, keepdims=True), yerr.shape)
    D = yerr @ W_y                                   # the floor of the direct error dL/dh_t
    dan = dh * (1 - Z) * (1 - N ** 2)
    # the factors (1 - z)(1 - n^2), r(1 - r), z(1 - z) and h_{t-1} - n at step t
    En = dh * (Z * (1 - N ** 2) + (1 - Z) * N ** 2)
    Er = En * np.abs(HN) * R * (1 - R) + dan * np.abs(HN) * R
    Ezg = dh * (np.abs(Hp - N) * Z + np.abs(N) * Z * (1 - Z))
    A = np.zeros_like(dh)                            # dL/dh_t's floor: direct, from later steps via z, once via |W_h|
    A[T - 1] = D[T - 1]
    for t in range(T - 1, 0, -1):
        A[t - 1] = D[t - 1] + Z[t] * A[t] + np.concatenate([Er[t], Ezg[t], En[t] * R[t]], axis=1) @ W
    add = A * (1 - Z) * (1 - N ** 2)
    En, Er, Ezg = En + add, Er + add * np.abs(HN) * R * (1 - R), Ezg + A * np.abs(Hp - N) * Z * (1 - Z)
    Ehn = En * R                                     # dL/d(W_hn h_{t-1} + b_hn)
    Egx, Egh = np.concatenate([Er, Ezg, En], axis=2), np.concatenate([Er, Ezg, Ehn], axis=2)
    into = Z * A + Egh @ W                           # the floor of dL/dh_{t-1} from step t
    return dict(_param_floors(Egx, Egh, X, Hp), b_hn=Ehn.sum(axis=(0, 1)), dh0=into[0],
                dhs=np.concatenate([into[1:] + D[:-1], D[-1:]]),
                loss=float((dh * fwd["local"]).sum()),   # the forward floor of each step, through dL/dh_t
                W_y=np.einsum("tbo,tbh->oh", np.abs(dys), fwd["hs"]) + np.einsum("tbo,tbh->oh", yerr, hs),
                b_y=yerr.sum(axis=(0, 1)))


#: cell -> its saturation floor (a rounding analysis of the cell's equations, so one per row).
SATURATION_FLOORS = {"elman": _elman_floor, "lstm": _lstm_floor, "gru": _gru_floor}


def saturation_floor(p: Problem, full=None) -> dict:
    """Magnitudes (per unit u) below which a correct backend's gradients are not
    determined where tanh, sigmoid or a gate saturates (see above): a dict keyed by
    parameter name, "dh0", "dhs", "dc0", "dcs" (missing keys: 0). ``full``: the
    reference's full BPTT of p, when the caller has it."""
    ref = reference_bptt(p, None) if full is None else full
    return SATURATION_FLOORS[p.spec.cell](p, ref)


def softmax_floor(p: Problem, truncation="same") -> dict:
    """The response to an absolute error of u in dl/dy (per unit u), for softmax.

    dl/dy = softmax(y) - onehot(d) is computed as p_d - 1 where p_d ~ 1: it is known
    only to an absolute ~u, and the loss term log(sum exp(y - m)) - (y_d - m) only to
    an absolute ~u per term. The backward pass is linear in dl/dy, so the response is
    measured exactly: the reference BPTT of the same network with a linear output and
    targets d_t = y_t - s_t has dl/dy = s_t / B, an error of one unit; s is one class
    at a time, once with random signs over steps and rows and once with all signs +1
    (random signs can cancel in a sum over rows: b_y's response to s = (+1, -1) over
    B = 2 rows is 0), and the larger response is kept; the classes' responses are
    added. The output layer's is exact: b_y[o] gets one unit per scored row, / B, and
    W_y[o, :] the |h_t[b]| / B of the scored rows. Zero for linear outputs (their
    errors are relative, and the perturbation of the inputs measures them)."""
    if p.spec.output != "softmax":
        return {}
    ys = reference_forward(p).ys
    rng = np.random.default_rng((p.seed, 0x50F7))
    lin = replace(p.spec, output="linear", l2=0.0)
    out = {}
    for o in range(p.O):  # one class at a time, and the absolute responses added: no cancellation across classes
        best = {}
        for signs in (True, False):
            s = np.zeros(ys.shape)
            s[..., o] = rng.choice((-1.0, 1.0), size=ys.shape[:2]) if signs else 1.0
            r = reference_bptt(replace(p, spec=lin, targets=ys - s), truncation)
            parts = {n: np.abs(getattr(r.grads, n)) for n in param_names(p)}
            for a in ("dh0", "dc0", "dhs", "dcs"):
                if getattr(r, a) is not None:
                    parts[a] = np.abs(getattr(r, a))
            best = {k: np.maximum(best[k], v) if k in best else v for k, v in parts.items()}
        for k, v in best.items():
            out[k] = out.get(k, 0.0) + v
    scored = [t - 1 for t in scored_steps(p.spec, p.T)]
    hs = np.abs(reference_forward(p).hs[scored])                       # (steps, B, H)
    out["b_y"] = np.full(p.O, float(len(scored)))                     # 1 / B from each of B rows, per step
    out["W_y"] = np.broadcast_to(hs.sum(axis=(0, 1)) / p.B, (p.O, p.H)).copy()
    out["loss"] = float(p.T if p.spec.targets == "every" else 1)
    return out


# ---------------------------------------------------------------------------
# Summation floor: the long sums. A parameter gradient is a sum over every (step,
# batch row) that its backward pass visits: dL/dW_h = sum_{t,b} dgh_t[b]^T h_{t-1}[b],
# T B terms in full BPTT, more under BPTT(h; h') with h > h' (a step is visited once
# per block that reaches it); the output layer's and the loss's run over the scored
# steps. Whatever order a correct backend adds them in (one GEMM over all rows, a
# running sum over steps, pairwise), a sum of n terms is exact only to about
# n u sum|terms| (the classic bound gamma_n sum|x_i|), and a plain running sum reaches
# a few percent of it when the terms round alike: with x = 0 every batch row computes
# the same numbers, and torch's float32 CPU GEMM errs by 0.03 n u (6.6e-6 relative)
# on W_y over 51 x 61 rows, by 0.03 n u (4.3e-5, over rtol = 1e-5) on W_h under
# BPTT(8; 1), which visits 23,180 rows; a float32 np.cumsum over 400 x 64 rows by
# 0.028 n u (tests/test_summation_floor.py). No perturbation of the inputs shows this
# (it is the summation order's error, not the data's), so it is a floor of its own:
# n sum|terms| per unit u, entry by entry. In float64 it stays near rtol (3840 u =
# 4e-13 for full BPTT, a few times that under truncation), far below float32's 6e-8;
# in float32 it is what lets a running sum of thousands of rows pass, and small where
# the sums are short.

#: Extra parameters and the gate block whose pre-activation gradient bounds theirs:
#: the GRU's b_hn adds to W_hn h_{t-1}, so dL/db_hn = r dL/d(n's pre-activation), r < 1.
EXTRA_GATE = {"b_hn": "n"}


def _rows(case) -> int:
    """(step, batch row) pairs the backward pass of a validated case visits: T B for
    full BPTT (also for h >= T, which validation makes full BPTT)."""
    return case.B * sum(e - s + 1 for _, e, s in reference.blocks(case.T, case.truncation))


def summation_floor(p: Problem, truncation="same") -> dict:
    """n sum|terms| (per unit u) of every parameter gradient and of the loss, for the
    BPTT of p under ``truncation``: keyed like rounding_floor."""
    args, kw = p.bptt_args(truncation)

    def compute():
        case = validate_bptt(*args, **kw)
        cell, B, H = case.cell, case.B, case.H
        eye = np.eye(B)
        S = {n: 0.0 for n in cell.recurrent_params}

        def backward(params, cache, dstate, act):
            out = cell.backward(params, cache, dstate, act)
            x, h = cache[0], cache[1]       # every cache starts with (x_t, h_{t-1}) (reference.cells)
            # with x_t = I in its place, W_x's gradient is dL/d(W_x x_t + b_h) itself, row by row
            dgx = cell.backward(params, (eye,) + tuple(cache[1:]), dstate, act)[1]["W_x"].T   # (B, G H)
            a = np.abs(dgx)
            terms = a.T @ np.abs(x)
            # the same float64 sum of B <= 64 terms twice, maybe in another order: within 2 B u sum|terms|
            if (np.abs(dgx.T @ x - out[1]["W_x"]) > 1e-12 * terms + 1e-300).any():
                raise AssertionError(f"summation_floor: the {cell.name} row's cache does not start with x_t, "
                                     f"or x_t enters its backward step beyond W_x's gradient (reference.cells)")
            S["W_x"] = S["W_x"] + terms
            # dL/d(W_h h_{t-1}) is dgx for the Elman and LSTM cells, r dgx (r < 1) in the GRU's n block
            S["W_h"] = S["W_h"] + a.T @ np.abs(h)
            S["b_h"] = S["b_h"] + a.sum(axis=0)
            for name in cell.extra:
                S[name] = S[name] + a[:, cell.block(EXTRA_GATE[name], H)].sum(axis=0)
            return out

        with np.errstate(all="ignore"):
            loss = run_bptt(case, cell=replace(cell, backward=backward)).loss
        n = _rows(case)                              # every (step, row) the backward pass visits
        out = {name: n * v for name, v in S.items()}
        states, _, _, dys = _run(p)                  # dys: dL/dy_t, zero at unscored steps
        m = len(scored_steps(p.spec, p.T)) * B
        hs = np.abs(np.stack([st[0] for st in states[1:]]))
        out["W_y"] = m * np.einsum("tbo,tbh->oh", np.abs(dys), hs)
        out["b_y"] = m * np.abs(dys).sum(axis=(0, 1))
        # the loss terms are >= 0, and so are the l2 term's (one per weight it covers)
        out["loss"] = (m + (len(cell.l2) if case.spec.l2 else 0)) * abs(loss)
        return out
    return _memo(p, ("sums", kw["truncation"]), compute)


def reference_magnitude(p: Problem) -> float:
    """The largest magnitude a correct backend meets on the way to p's BPTT result: the
    states and pre-activations, the outputs, each loss term's (y - d)^2 or log-sum-exp
    (<= 2 B L, every term being >= 0), dl/dy, dL/dh_t (dL/dc_t), and each parameter
    gradient's sum|terms|, which bounds every partial sum whatever the order. inf when
    the float64 reference itself overflows."""
    args, kw = p.bptt_args()

    def compute():
        try:
            states, caches, ys, dys = _run(p)
            full = reference_bptt(p, None)
            sums = summation_floor(p)
        except FloatingPointError:
            return float("inf")
        arrays = [a for st in states for a in st] + [a for c in caches for a in c] + [ys, p.B * dys]
        arrays += [a for a in (full.dhs, full.dcs) if a is not None]
        big = max(float(np.abs(np.asarray(a, dtype=np.float64)).max(initial=0.0)) for a in arrays)
        big = max(big, 2 * p.B * abs(full.loss))
        n = _rows(validate_bptt(*args, **kw))
        m = len(scored_steps(p.spec, p.T)) * p.B
        for name in param_names(p):
            big = max(big, float(np.max(sums[name])) / (m if name in ("W_y", "b_y") else n))
        return big
    return _memo(p, "magnitude", compute)


def beyond_range(p: Problem, dtype) -> bool:
    """Whether a correct backend computing p in ``dtype`` may overflow: the reference's
    largest magnitude is above 1/16 of the dtype's largest number (room for an
    intermediate a few times larger than any listed, e.g. 2 l computed before / 2).
    float32: 2.1e37."""
    return reference_magnitude(p) > float(np.finfo(np.dtype(str(dtype))).max) / 16


def rounding_floor(p: Problem, truncation="same", full=None) -> dict:
    """saturation_floor + softmax_floor: what a correct backend leaves undetermined
    beyond what the perturbation of the inputs measures, per unit u. ``full``: the
    reference's full BPTT of p, when the caller has it."""
    a, b = saturation_floor(p, full), softmax_floor(p, truncation)
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in set(a) | set(b)}


def loss_magnitude(p: Problem) -> float:
    """The size of the numbers L is computed from, which sets its rounding error:
    L itself plus, per scored term, |y| |y - d| (linear) or max|y| (softmax: the
    log-sum-exp of logits in the thousands is exact only to u max|y|), plus the
    saturation floor of the forward pass (the GRU's 1 - z_t: a z_t rounded near 1 moves
    h_t, and L through dL/dh_t, far more than the size of L shows)."""
    ys = reference_forward(p).ys
    steps = range(p.T) if p.spec.targets == "every" else [p.T - 1]
    (spec, params, xs, targets), kw = p.bptt_args(None)
    kw.pop("truncation")
    total = reference.loss(spec, params, xs, targets, **kw)
    for i in steps:
        y = np.abs(ys[i])
        if p.spec.output == "linear":
            total += float((y * (1 + np.abs(ys[i] - p.targets[i]))).sum()) / p.B
        else:
            total += float(y.max(axis=1).sum()) / p.B
    return total + saturation_floor(p).get("loss", 0.0)


def agree_with(backend, p, want, spread, truncation="same", full=None):
    """The backend's BPTT of p against ``want``: every array compared, the failure
    lists each one over its tolerance, worst first; returns the worst ratio."""
    tol = tolerance_for(dtype_of(backend))
    got = backend_bptt(backend, p, truncation)
    cmp = Comparison(tol, dtype_of(backend), result_scale(want))
    compare_bptt(cmp, got, want, spread, param_names(p), floor=rounding_floor(p, truncation, full),
                 sums=summation_floor(p, truncation))
    return cmp.verdict()
