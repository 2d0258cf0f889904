"""One-run speed comparison of the shared engine against torch.nn.RNN + autograd.

    python -m asv_bench.compare_torch [--repeats N] [--sizes T,B,D,H ...] [--no-memory]

The model and loss are the same everywhere: a tanh Elman RNN, a linear output layer
with O = D, squared error at every step averaged over the batch,

    L = (1/B) sum_t sum_b 1/2 |W_y h_t + b_y - d_t|^2 ,

computed in float32, forward + backward (all parameter gradients).

- ``torch.nn.RNN``: ``nn.RNN(D, H)`` + ``nn.Linear(H, O)``, inputs already float32
  tensors, gradients by autograd (``loss.backward()``); the parameter grads are
  set to None before each call. This is the baseline (ratio 1.00).
- ``numpy`` / ``torch``: the full public call that users get,
  ``get_backend(name, "float32").bptt(spec, params, xs, targets)`` on float64 numpy
  input, so validation (shape and finiteness checks of every input), the float32 computation,
  the float64 results (loss, all grads, dh0 and dhs) and the overflow check are all
  inside the timed call.

Threads: every BLAS/OpenMP pool (numpy's OpenBLAS, torch's OpenMP and MKL) gets
the count of OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS where they
are set, else BPTT_BENCH_THREADS (default 2), as in the asv benchmarks
(``asv_bench.common``); the counts are printed.

Every time is the median of ``--repeats`` calls after two warm-up calls. The
contenders take turns in every round. Before each timed call there is a pause of
GAP seconds, so that the previous contender's worker threads have gone to sleep
(OpenBLAS's keep spinning for about 0.1 s after numpy's last GEMM and would take
a core from the next contender on this 2-core machine), and then untimed calls
of the same contender for at least WARM seconds, so that its own threads are awake, as they are in a
training loop (after an idle pause, torch's first GEMM waits 8-12 ms here for its
threads to wake up, whatever its size: that would dominate the smallest size). The load average is printed at the
start and the end: on a shared machine, other processes' load inflates and scatters the
times (OpenBLAS and OpenMP threads wait on busy cores), so compare runs with a low
load.

Also printed, in the same run:

- the float32 GEMM throughput of this machine: the median time of a numpy
  (4096 x 4096) @ (4096 x 4096) float32 product, 2 n^3 flops, at the start, and of
  a 2048^3 one timed in the same rounds as the largest size (the reference for the
  percentage, as it sees the same machine load);
- the achieved GFLOP/s of the numpy backend at the largest size, counting
  6 T B H (D + H + O) flops for forward + backward (the usual 2 for forward,
  4 for backward per multiply-add of the three weight matrices), and its share of
  the GEMM throughput;
- the peak memory of the numpy backend's full BPTT, measured with tracemalloc
  (numpy reports its array buffers to it) as the peak traced during one call,
  against what the call must hold at once:
  the states hs (T+1, B, H) in the compute dtype, and the float64 results it
  returns, dhs (T, B, H), dh0 (B, H) and the parameter gradients. Float64 input
  is not copied by validation (it keeps read-only views).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc

from asv_bench import common  # first: it pins the thread pools before numpy loads OpenBLAS

import numpy as np  # noqa: E402

SIZES = common.SIZES
GFLOP_SIZE = (200, 64, 128, 512)

#: Seconds of pause before each contender's untimed and timed calls, and seconds
#: of untimed calls before each timed one (see above); a lone callable is timed
#: back to back.
GAP = 0.3
WARM = 0.05


def median_times(fns, repeats, warmup=2, fastest=None):
    """Median time of each callable; the callables take turns in every round, so a
    change in machine load during the run shifts them alike (the ratios hold up).
    ``fastest``, a dict, receives the minimum of each."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if len(fns) > 1:
                time.sleep(GAP)  # the previous contender's threads stop spinning
                t0 = time.perf_counter()
                while True:      # untimed: wakes fn's own threads
                    fn()
                    if time.perf_counter() - t0 >= WARM:
                        break
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    if fastest is not None:
        fastest.update({name: min(ts) for name, ts in times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def check_agreement(res, baseline):
    """A backend's result and torch.nn.RNN's after ``baseline.bptt()`` are the same
    loss and gradients: normwise relative differences within the float32 rtol of the
    conformance checks (two float32 computations of the same sums in other orders;
    about 1e-6 is seen here)."""
    from properties.tolerances import tolerance_for

    rtol = tolerance_for("float32").rtol
    loss = float(baseline.bptt())
    assert abs(res.loss - loss) <= rtol * abs(loss), ("loss", res.loss, loss)
    for name, g in baseline.grads().items():
        ours = getattr(res.grads, name)
        err = np.abs(ours - g.double().numpy()).max() / np.abs(ours).max()
        assert err <= rtol, (name, err)


GEMM_N = 2048
GEMM_FLOPS = 2 * GEMM_N ** 3


def gemm_call(n=GEMM_N):
    """A numpy float32 (n x n) @ (n x n) product (2 n^3 flops), as a callable."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    return lambda: np.matmul(a, b, out=c)


def peak_memory(backend, spec, params, xs, targets):
    """The peak of the memory traced during one call (tracing starts at the call)."""
    gc.collect()
    tracemalloc.start()
    backend.bptt(spec, params, xs, targets)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def must_hold(T, B, D, H, O, itemsize):
    states = (T + 1) * B * H * itemsize                       # hs_full in the compute dtype
    results = 8 * (T * B * H + B * H + H * D + H * H + H + O * H + O)  # dhs, dh0, grads in float64
    return states + results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes", nargs="*", default=None, help="T,B,D,H ... (O = D)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    args = ap.parse_args(argv)

    torch = common.import_torch()
    get_backend, _, RNNSpec, _ = common.safe_import()

    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else SIZES
    spec = RNNSpec(activation="tanh", output="linear", targets="every")
    backends = {name: get_backend(name, "float32") for name in ("numpy", "torch")}

    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(k)}
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, "
          f"cpus {os.cpu_count()}, threads: OpenBLAS {os.environ['OPENBLAS_NUM_THREADS']}, "
          f"torch {torch.get_num_threads()}; env {env}")
    print(f"float32, tanh, linear output with O = D, every step scored; median of {args.repeats} "
          f"after 2 warm-up calls\n")

    print("load average at start (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    t_big = median_times({"gemm": gemm_call(4096)}, 5, warmup=1)["gemm"]
    gflops = 2 * 4096 ** 3 / t_big / 1e9
    print(f"numpy float32 GEMM 4096^3: {t_big * 1e3:.1f} ms = {gflops:.1f} GFLOP/s\n")

    header = f"{'T, B, D, H':>20} | {'torch.nn.RNN':>12} | {'numpy':>10} {'ratio':>6} | {'torch':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rows, mins = [], []
    for size in sizes:
        params, xs, targets = common.make_inputs(size)
        baseline = common.TorchRNNBaseline(params, xs, targets)
        for be in backends.values():
            check_agreement(be.bptt(spec, params, xs, targets), baseline)
        fns = {"base": baseline.bptt}
        fns.update({name: (lambda be=be: be.bptt(spec, params, xs, targets)) for name, be in backends.items()})
        if size == GFLOP_SIZE:   # the GEMM throughput under the same load, in the same rounds
            fns["gemm"] = gemm_call()
        fastest = {}
        times = median_times(fns, args.repeats, fastest=fastest)
        if "gemm" in times:
            gemm_rounds = GEMM_FLOPS / times.pop("gemm") / 1e9
        base = times.pop("base")
        mins.append((size, {name: fastest[name] / fastest["base"] for name in backends}))
        rows.append((size, base, times))
        print(f"{str(size):>20} | {base * 1e3:9.2f} ms | {times['numpy'] * 1e3:7.2f} ms "
              f"{times['numpy'] / base:5.2f}x | {times['torch'] * 1e3:7.2f} ms {times['torch'] / base:5.2f}x",
              flush=True)

    print("ratios of the fastest calls (min / min), less sensitive to other load: "
          + "; ".join(f"{size}: " + ", ".join(f"{n} {r:.2f}x" for n, r in rs.items()) for size, rs in mins))
    for size, base, times in rows:
        if size == GFLOP_SIZE:
            T, B, D, H = size
            flops = 6 * T * B * H * (D + H + D)
            g = flops / times["numpy"] / 1e9
            print(f"\nnumpy float32 GEMM {GEMM_N}^3 measured in the same rounds: {gemm_rounds:.1f} GFLOP/s")
            print(f"numpy at {size}: {flops / 1e9:.2f} GFLOP in {times['numpy'] * 1e3:.1f} ms = {g:.1f} GFLOP/s "
                  f"= {100 * g / gemm_rounds:.0f}% of the float32 GEMM throughput of the same rounds "
                  f"({100 * g / gflops:.0f}% of the 4096^3 one at the start) "
                  f"(torch.nn.RNN: {flops / base / 1e9:.1f} GFLOP/s, torch backend: "
                  f"{flops / times['torch'] / 1e9:.1f} GFLOP/s)")

    if not args.no_memory:
        print("\nPeak memory of numpy float32 full BPTT (tracemalloc, one public call):")
        print(f"{'T, B, D, H':>20} | {'peak':>9} | {'must hold':>9} {'ratio':>6}")
        for size in sizes:
            T, B, D, H = size
            peak = peak_memory(backends["numpy"], spec, *common.make_inputs(size))
            need = must_hold(T, B, D, H, D, 4)
            print(f"{str(size):>20} | {peak / 2**20:6.2f} MiB | {need / 2**20:6.2f} MiB {peak / need:5.2f}x")
    print("\nload average at end (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
