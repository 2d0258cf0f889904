"""What a backend call must not do: answer differently twice, or touch its inputs."""
from __future__ import annotations

import numpy as np

from reference.types import RNNParams

from .hypothesis_helpers import Problem
from .results import PropertyFailure, backend_bptt, param_names, result_arrays


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def _diff(a, b):
    if a is None or b is None or np.shape(a) != np.shape(b):
        return "n/a"
    return f"{float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max(initial=0.0)):.3g}"


def prop_determinism(backend, p: Problem):
    """The same call twice gives the same answer, bit for bit."""
    (spec, params, xs), kw = p.forward_args()
    f1, f2 = backend.forward(spec, params, xs, **kw), backend.forward(spec, params, xs, **kw)
    for n in ("hs", "ys", "cs"):
        a, b = getattr(f1, n, None), getattr(f2, n, None)
        if not _same(a, b):
            raise PropertyFailure(f"forward {n} differs between two identical calls (max diff {_diff(a, b)})")
    r1, r2 = backend_bptt(backend, p), backend_bptt(backend, p)
    a1, a2 = result_arrays(r1, param_names(p)), result_arrays(r2, param_names(p))
    for n in sorted(set(a1) | set(a2)):
        if not _same(a1.get(n), a2.get(n)):
            raise PropertyFailure(f"bptt {n} differs between two identical calls (max diff "
                                  f"{_diff(a1.get(n), a2.get(n))})")
    return None


def prop_inputs_untouched(backend, p: Problem):
    """forward and bptt leave every input array as it was (values, shape, dtype) and
    the params object as it was."""
    arrays = {n: np.array(w, dtype=np.float64) for n, w in p.params.as_dict().items()}
    params = RNNParams(**arrays)
    inputs = dict(arrays, xs=np.array(p.xs, dtype=np.float64), targets=np.array(p.targets))
    for n in ("h0", "c0"):
        if getattr(p, n) is not None:
            inputs[n] = np.array(getattr(p, n), dtype=np.float64)
    before = {k: v.copy() for k, v in inputs.items()}
    ids = {n: id(getattr(params, n)) for n in arrays}
    kw = {"h0": inputs.get("h0")}
    if len(p.cell.state) > 1:   # c0 only for an LSTM spec
        kw["c0"] = inputs.get("c0")
    backend.forward(p.spec, params, inputs["xs"], **kw)
    backend.bptt(p.spec, params, inputs["xs"], inputs["targets"], truncation=p.truncation, **kw)
    for n in arrays:
        if id(getattr(params, n)) != ids[n]:
            raise PropertyFailure(f"params.{n} was replaced by the backend")
    for k, v in inputs.items():
        if not _same(v, before[k]):
            if v.shape == before[k].shape:
                idx = tuple(int(i) for i in np.argwhere(v != before[k])[0])
                raise PropertyFailure(f"input {k}{list(idx)} was changed from {float(before[k][idx])} to "
                                      f"{float(v[idx])}")
            raise PropertyFailure(f"input {k} was changed (shape {before[k].shape} -> {v.shape})")
    return None
