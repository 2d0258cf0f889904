"""What a backend call must not do: answer differently twice, or touch its inputs."""
from __future__ import annotations

import numpy as np

from reference.types import RNNParams

from .hypothesis_helpers import Problem
from .results import PARAM_NAMES, PropertyFailure, backend_bptt


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
    r1, r2 = backend_bptt(backend, p), backend_bptt(backend, p)
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
