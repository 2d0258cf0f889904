"""Where the shared engine's time goes: one full BPTT (float32, linear output, squared
error, the inputs of ``common.make_inputs``) split into its phases.

    python -m asv_bench.phases --cells lstm --sizes 1000,16,32,128 100,32,64,256
    python -m asv_bench.phases --backend torch --cells gru --repeats 9

The phases are the engine's pieces (``implementations.engine`` and the cell's kernel,
``implementations.kernels``): ``project`` (the input projections, one GEMM per time
chunk), ``step`` (the forward recurrence, one call per step), ``output`` (the output
layer and the loss, per chunk), ``prepare`` (the backward pass's derivative factors,
per chunk), ``back`` (the backward recurrence, one call per step), ``grads`` (the
weight-gradient GEMMs, per chunk); ``rest`` is the run's time outside them
(validation, dtype conversions, the finiteness check of the result). Each phase is
timed by wrapping the kernel's method for the run, one extra Python call per call of
the phase (well under a microsecond). Printed: the milliseconds of each phase in the
fastest of ``--repeats`` runs, with its number of calls.

The thread count is ``common``'s (``BPTT_BENCH_THREADS``, default 2). Time only on a
quiet machine, as for ``compare_torch``.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict

from asv_bench import common

#: The phases, in the order a run reaches them.
PHASES = ("project", "step", "output", "prepare", "back", "grads", "rest")


@contextlib.contextmanager
def timed_phases(totals, counts):
    """Within the block, every engine run adds each phase's seconds to ``totals`` and
    its calls to ``counts`` (dicts by phase name)."""
    from implementations import engine

    def wrap(name, fn):
        def timed(*args):
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                totals[name] += time.perf_counter() - t
                counts[name] += 1
        return timed

    kernel_for, errors = engine.kernel_for, engine._Output.errors

    def timed_kernel_for(*args):
        kern = kernel_for(*args)
        for name in ("project", "prepare", "grads"):
            setattr(kern, name, wrap(name, getattr(kern, name)))
        kern.step = wrap("step", kern.step)
        backward_buffers = kern.backward_buffers

        def timed_backward_buffers():   # ``back`` is made here
            backward_buffers()
            kern.back = wrap("back", kern.back)
        kern.backward_buffers = timed_backward_buffers
        return kern

    engine.kernel_for = timed_kernel_for
    engine._Output.errors = wrap("output", errors)   # a plain function: called as a method
    try:
        yield
    finally:
        engine.kernel_for, engine._Output.errors = kernel_for, errors


def phases(backend, cell, size, repeats=5):
    """(total seconds, {phase: seconds}, {phase: calls}) of the fastest of ``repeats``
    full BPTT runs of ``backend`` (an engine backend name) in float32."""
    params, xs, targets = common.make_inputs(size, cell=cell)
    spec = common.make_spec(cell)
    be = common.engine_backend(backend, "float32")
    sync = common.sync_for(backend)
    best = None
    be.bptt(spec, params, xs, targets)   # warm-up
    for _ in range(repeats):
        totals, counts = defaultdict(float), defaultdict(int)
        with timed_phases(totals, counts):
            sync()
            t = time.perf_counter()
            be.bptt(spec, params, xs, targets)
            sync()
            total = time.perf_counter() - t
        if best is None or total < best[0]:
            totals["rest"] = total - sum(totals.values())
            best = (total, dict(totals), dict(counts))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numpy", help="an engine backend: numpy, torch, torch:cuda")
    ap.add_argument("--cells", nargs="*", default=list(common.CELLS), choices=common.CELLS)
    ap.add_argument("--sizes", nargs="*", type=common.size_arg, default=common.SIZES, help="T,B,D,H ... (O = D)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1; got {args.repeats}")
    print(f"{args.backend}, float32, full BPTT, {common.THREADS} thread(s); ms in the fastest of "
          f"{args.repeats} runs (calls)")
    print(f"{'cell':6} {'T, B, D, H':20} {'total':>8} " + " ".join(f"{p:>15}" for p in PHASES))
    for cell in args.cells:
        for dims in args.sizes:
            total, secs, calls = phases(args.backend, cell, dims, args.repeats)
            cols = " ".join(f"{secs.get(p, 0.0) * 1e3:8.1f} ({calls[p]:>4})" if p in calls
                            else f"{secs.get(p, 0.0) * 1e3:8.1f}       " for p in PHASES)
            print(f"{cell:6} {str(dims):20} {total * 1e3:8.1f} {cols}", flush=True)


if __name__ == "__main__":
    main()
