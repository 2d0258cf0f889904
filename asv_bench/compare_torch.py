"""One-run speed comparison of the shared engine against torch.nn.RNN / LSTM / GRU + autograd.

    python -m asv_bench.compare_torch [--repeats N] [--sizes T,B,D,H ...] [--cells C ...] [--no-memory] [--clock thread]

The model and loss are the same everywhere: a recurrent cell (the tanh Elman RNN, the
LSTM or the GRU of the README's model section), a linear output layer with O = D,
squared error at every step averaged over the batch,

    L = (1/B) sum_t sum_b 1/2 |W_y h_t + b_y - d_t|^2 ,

computed in float32, forward + backward (all parameter gradients).

- the baseline of each cell (ratio 1.00): ``nn.RNN(D, H)`` (tanh), ``nn.LSTM(D, H)``
  or ``nn.GRU(D, H)``, + ``nn.Linear(H, O)``, the model's weights mapped in (b_h as
  bias_ih_l0, bias_hh_l0 = 0, for the GRU bias_hh_l0 = [0; 0; b_hn]), inputs already
  float32 tensors, gradients by autograd (``loss.backward()``); the parameter grads are
  set to None before each call. On the CPU torch.nn.LSTM runs oneDNN's fused LSTM
  (``aten::mkldnn_rnn_layer``); torch.nn.GRU runs a ``linear`` per step.
- ``numpy`` / ``torch``: the full public call that users get,
  ``get_backend(name, "float32").bptt(spec, params, xs, targets)`` on float64 numpy
  input, so validation (shape and finiteness checks of every input), the float32 computation,
  the float64 results (loss, all grads, dh0 and dhs, for the LSTM dc0 and dcs) and the
  overflow check are all inside the timed call.
  Before the timing, each result is checked against the baseline's.

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
load. ``--clock thread`` (with ``BPTT_BENCH_THREADS=1``) times the CPU time of
the calling thread instead, which other processes disturb far less (only through
the caches they share): single-threaded ratios on a busy machine.

Also printed, in the same run:

- the float32 GEMM throughput of this machine: the median time of a numpy
  (4096 x 4096) @ (4096 x 4096) float32 product, 2 n^3 flops, at the start, and of
  a 2048^3 one timed in the same rounds as the Elman cell's largest size (the
  reference for the percentage, as it sees the same machine load);
- the achieved GFLOP/s of the numpy backend's Elman cell at the largest size, counting
  6 T B H (D + H + O) flops for forward + backward (the usual 2 for forward,
  4 for backward per multiply-add of the three weight matrices), and its share of
  the GEMM throughput;
- for every cell and size, the unavoidable GEMMs alone, timed in the
  same rounds as the contenders, once with numpy and once with torch: the T per-step
  products h_{t-1} W_h^T (B, H) x (H, G H) and dL/dz_t W_h (B, G H) x (G H, H), and
  the GEMMs over all T B rows at once, the input projection (T B, D) x (D, G H), dW_x
  and dW_h (G H, T B) x (T B, D or H), and the output layer's y, dW_y and dL/dh
  (G gates: 1, 4, 3). Their time as a share of each contender's is how close it
  comes to the GEMMs it cannot avoid; the rest is elementwise work and overhead, and their time over the torch.nn module's: the ratio a backend
  on that GEMM library would reach if everything else took no time;
- for every cell and size, the forward pass's exponentials and tanh alone
  (``TRANSCENDENTALS``), one numpy call per kind and step as the engine makes them:
  with numpy's GEMM floor, a lower bound for the numpy backend's time, as a ratio
  to the torch.nn module's;
- the peak memory of the numpy backend's full BPTT, measured with tracemalloc
  (numpy reports its array buffers to it) as the peak traced during one call,
  against what the call must hold at once: the states (h, and c for the LSTM,
  (T+1, B, H) each) and the gate activations a backward pass needs (the LSTM's four
  gates, the GRU's three and W_hn h_{t-1} + b_hn, which PyTorch's fused GRU cell also
  keeps) in the compute dtype, and the float64 results it returns, dhs (and dcs), dh0
  (and dc0) and the parameter gradients. Float64 input is not copied by validation
  (it keeps read-only views).
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
CELLS = ("elman", "lstm", "gru")
BASELINES = {"elman": "torch.nn.RNN", "lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU"}

#: Seconds of pause before each contender's untimed and timed calls, and seconds
#: of untimed calls before each timed one (see above); a lone callable is timed
#: back to back.
GAP = 0.3
WARM = 0.05


def median_times(fns, repeats, warmup=2, fastest=None, clock=time.perf_counter):
    """Median time of each callable; the callables take turns in every round, so a
    change in machine load during the run shifts them alike (the ratios hold up).
    ``fastest``, a dict, receives the minimum of each. With ``clock=time.thread_time``
    (one thread everywhere: the CPU time of the calling thread) there is no pause and
    no untimed call: no other thread is there to sleep or to wake."""
    walled = clock is time.perf_counter
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if len(fns) > 1 and walled:
                time.sleep(GAP)  # the previous contender's threads stop spinning
                t0 = time.perf_counter()
                while True:      # untimed: wakes fn's own threads
                    fn()
                    if time.perf_counter() - t0 >= WARM:
                        break
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    if fastest is not None:
        fastest.update({name: min(ts) for name, ts in times.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def inputs_and_baseline(cell, size):
    """(params, xs, targets, the torch.nn module baseline) of ``cell`` at ``size``:
    asv_bench.common's inputs and baseline, the ones the asv benchmarks time."""
    params, xs, targets = common.make_inputs(size, cell=cell)
    return params, xs, targets, common.TorchBaseline(params, xs, targets, cell=cell)


def check_agreement(res, baseline):
    """A backend's result and the baseline's after ``baseline.bptt()`` are the same
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


def gemm_floor(size, G, lib):
    """The GEMMs BPTT of a cell with G gates cannot avoid, in float32, as a callable
    (numpy, or torch with ``lib="torch"``): T sequential products (B, H) x (H, G H) and
    (B, G H) x (G H, H), and over all T B rows the input projection, dW_x, dW_h and the
    output layer's three products. Returns (callable, flops)."""
    T, B, D, H = size
    O, GH, TB = D, G * H, T * B
    rng = np.random.default_rng(3)
    a = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    e = lambda *s: np.empty(s, dtype=np.float32)  # noqa: E731  (outputs: allocated once, outside the timing)
    v = dict(h=a(B, H), dz=a(B, GH), W_hT=a(H, GH), W_h=a(GH, H), X=a(TB, D), Z=a(TB, GH), Hs=a(TB, H),
             W_x=a(D, GH), W_y=a(H, O), DY=a(TB, O), f=e(B, GH), b=e(B, H), proj=e(TB, GH), dW_x=e(GH, D),
             dW_h=e(GH, H), y=e(TB, O), dW_y=e(O, H), e=e(TB, H))
    if lib == "torch":
        torch = common.import_torch()
        v = {k: torch.from_numpy(x) for k, x in v.items()}
        mm = lambda x, y, out: torch.matmul(x, y, out=out)  # noqa: E731
    else:
        mm = np.matmul

    def run():
        for _ in range(T):
            mm(v["h"], v["W_hT"], out=v["f"])        # forward: the gates of a step
            mm(v["dz"], v["W_h"], out=v["b"])        # backward: dL/dz_t W_h
        mm(v["X"], v["W_x"], out=v["proj"])          # input projections
        mm(v["Z"].T, v["X"], out=v["dW_x"])          # dW_x
        mm(v["Z"].T, v["Hs"], out=v["dW_h"])         # dW_h
        mm(v["Hs"], v["W_y"], out=v["y"])            # y
        mm(v["DY"].T, v["Hs"], out=v["dW_y"])        # dW_y
        mm(v["DY"], v["W_y"].T, out=v["e"])          # dL/dh from the output layer
    flops = 2 * TB * GH * (2 * H + 2 * D + H) + 3 * 2 * TB * H * O
    return run, flops


#: Per step and (b, h), the exponentials and tanh the forward pass of each cell must
#: evaluate (the benchmark's Elman cell is tanh; LSTM: sigma(i), sigma(f), sigma(o),
#: tanh(g), tanh(c_t); GRU: sigma(r), sigma(z), tanh(n)); a sigmoid costs at least an exp.
TRANSCENDENTALS = {"elman": (0, 1), "lstm": (3, 2), "gru": (2, 1)}


def transcendental_floor(size, cell):
    """The exponentials and tanh of the forward pass alone, as numpy evaluates them (one
    single-threaded ufunc call per kind and step, on float32 (B, k H) blocks), as a
    callable: with the GEMM floor, a lower bound for any BPTT that runs its elementwise
    work one numpy call at a time."""
    T, B, D, H = size
    n_exp, n_tanh = TRANSCENDENTALS[cell]
    rng = np.random.default_rng(4)
    a = rng.standard_normal((B, max(n_exp, n_tanh) * H), dtype=np.float32)
    e, t = a[:, :n_exp * H], a[:, :n_tanh * H]
    out = np.empty_like(a)
    oe, ot = out[:, :n_exp * H], out[:, :n_tanh * H]

    def run():
        for _ in range(T):
            if n_exp:
                np.exp(e, out=oe)
            np.tanh(t, out=ot)
    return run


def peak_memory(backend, spec, params, xs, targets):
    """The peak of the memory traced during one call (tracing starts at the call)."""
    gc.collect()
    tracemalloc.start()
    backend.bptt(spec, params, xs, targets)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


#: Per step, the (B, H) arrays of the compute dtype a backward pass needs: the
#: states (h; h and c) and the gate activations (see the module docstring).
HELD = {"elman": 1, "lstm": 2 + 4, "gru": 1 + 4}


def must_hold(cell, T, B, D, H, O, itemsize):
    from reference.cells import CELLS as ROWS

    row = ROWS[cell]
    S, G = len(row.state), row.G
    kept = HELD[cell] * T * B * H * itemsize + S * B * H * itemsize   # (and the initial states)
    n_params = G * H * (D + H + 1) + O * H + O + len(row.extra) * H
    results = 8 * (S * (T * B * H + B * H) + n_params)              # dhs (dcs), dh0 (dc0), grads in float64
    return kept + results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes", nargs="*", type=common.size_arg, default=None, help="T,B,D,H ... (O = D)")
    ap.add_argument("--cells", nargs="*", default=list(CELLS), choices=CELLS)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="wall: elapsed time (default); thread: the CPU time of the calling thread, "
                         "steadier on a busy machine, only with one thread everywhere (BPTT_BENCH_THREADS=1)")
    args = ap.parse_args(argv)
    clock = time.perf_counter
    if args.clock == "thread":
        counts = {v: os.environ[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        if set(counts.values()) != {"1"}:
            ap.error(f"--clock thread counts the calling thread's CPU time only, so every pool must have one "
                     f"thread (BPTT_BENCH_THREADS=1); got {counts}")
        clock = time.thread_time

    torch = common.import_torch()
    get_backend, _, RNNSpec, _ = common.safe_import()

    sizes = args.sizes or SIZES
    backends = {name: get_backend(name, "float32") for name in ("numpy", "torch")}

    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(k)}
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, "
          f"cpus {os.cpu_count()}, threads: OpenBLAS {os.environ['OPENBLAS_NUM_THREADS']}, "
          f"torch {torch.get_num_threads()}; env {env}")
    print(f"float32, linear output with O = D, every step scored; median of {args.repeats} "
          f"after 2 warm-up calls; {'elapsed time' if args.clock == 'wall' else 'CPU time of the calling thread'}\n")

    print("load average at start (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    t_big = median_times({"gemm": gemm_call(4096)}, 5, warmup=1, clock=clock)["gemm"]
    gflops = 2 * 4096 ** 3 / t_big / 1e9
    print(f"numpy float32 GEMM 4096^3: {t_big * 1e3:.1f} ms = {gflops:.1f} GFLOP/s")

    floors = {}   # (cell, size) -> (flops, times of the GEMM floor, times of the contenders)
    mins = []
    gemm_rounds = elman_big = None
    for cell in args.cells:
        from reference.cells import CELLS as ROWS

        spec = RNNSpec(activation="tanh", output="linear", targets="every", cell=cell)
        base_name = BASELINES[cell]
        header = (f"{'T, B, D, H':>20} | {base_name:>13} | {'numpy':>10} {'ratio':>6} | "
                  f"{'torch':>10} {'ratio':>6}")
        print(f"\n{cell}\n{header}\n{'-' * len(header)}")
        for size in sizes:
            params, xs, targets, baseline = inputs_and_baseline(cell, size)
            for be in backends.values():
                check_agreement(be.bptt(spec, params, xs, targets), baseline)
            fns = {"base": baseline.bptt}
            fns.update({name: (lambda be=be, a=(spec, params, xs, targets): be.bptt(*a)) for name, be in backends.items()})
            flops = None   # the GEMMs alone, under the same load, in the same rounds
            for lib in ("numpy", "torch"):
                fns[f"floor {lib}"], flops = gemm_floor(size, ROWS[cell].G, lib)
            fns["transcendental"] = transcendental_floor(size, cell)
            if size == GFLOP_SIZE and cell == "elman":
                fns["gemm"] = gemm_call()
            fastest = {}
            times = median_times(fns, args.repeats, fastest=fastest, clock=clock)
            if "gemm" in times:
                gemm_rounds = GEMM_FLOPS / times.pop("gemm") / 1e9
            base = times.pop("base")
            floor = {k: times.pop(f"floor {k}") for k in ("numpy", "torch")}
            floor["transcendental"] = times.pop("transcendental")
            floors[cell, size] = (flops, floor, dict(times, base=base))
            if size == GFLOP_SIZE and cell == "elman":
                elman_big = (base, dict(times))
            mins.append((cell, size, {name: fastest[name] / fastest["base"] for name in backends}))
            print(f"{str(size):>20} | {base * 1e3:10.2f} ms | {times['numpy'] * 1e3:7.2f} ms "
                  f"{times['numpy'] / base:5.2f}x | {times['torch'] * 1e3:7.2f} ms {times['torch'] / base:5.2f}x",
                  flush=True)

    print("\nratios of the fastest calls (min / min), less sensitive to other load:")
    for cell, size, rs in mins:
        print(f"  {cell:5s} {str(size):>20}: " + ", ".join(f"{n} {r:.2f}x" for n, r in rs.items()))

    if elman_big is not None and gemm_rounds is not None:
        base, times = elman_big
        T, B, D, H = GFLOP_SIZE
        flops = 6 * T * B * H * (D + H + D)
        g = flops / times["numpy"] / 1e9
        print(f"\nnumpy float32 GEMM {GEMM_N}^3 measured in the same rounds: {gemm_rounds:.1f} GFLOP/s")
        print(f"elman numpy at {GFLOP_SIZE}: {flops / 1e9:.2f} GFLOP in {times['numpy'] * 1e3:.1f} ms = {g:.1f} GFLOP/s "
              f"= {100 * g / gemm_rounds:.0f}% of the float32 GEMM throughput of the same rounds "
              f"({100 * g / gflops:.0f}% of the 4096^3 one at the start) "
              f"(torch.nn.RNN: {flops / base / 1e9:.1f} GFLOP/s, torch backend: "
              f"{flops / times['torch'] / 1e9:.1f} GFLOP/s)")
    if floors:
        print("\nThe unavoidable GEMMs alone (same rounds), their share of each contender's time, and the ratio")
        print("to torch.nn that a backend would reach if everything but its GEMMs took no time (GEMMs / torch.nn):")
        print(f"{'cell':>6} {'T, B, D, H':>20} | {'GFLOP':>6} | {'GEMMs numpy':>11} {'torch':>9} | "
              f"{'numpy backend':>17} | {'torch backend':>17} | {'torch.nn':>17} | {'GEMMs / torch.nn':>16}")
        for (cell, size), (flops, floor, t) in floors.items():
            print(f"{cell:>6} {str(size):>20} | {flops / 1e9:6.2f} | {floor['numpy'] * 1e3:8.2f} ms {floor['torch'] * 1e3:6.2f} ms | "
                  f"{t['numpy'] * 1e3:8.2f} ms {100 * floor['numpy'] / t['numpy']:4.0f}% | "
                  f"{t['torch'] * 1e3:8.2f} ms {100 * floor['torch'] / t['torch']:4.0f}% | "
                  f"{t['base'] * 1e3:8.2f} ms {100 * floor['torch'] / t['base']:4.0f}% | "
                  f"numpy {floor['numpy'] / t['base']:4.2f}x torch {floor['torch'] / t['base']:4.2f}x")
        print("(numpy backend: share of numpy's GEMMs; torch backend and torch.nn: share of torch's)")
        print("\nA lower bound for the numpy engine, whose elementwise work is one single-threaded numpy call")
        print("at a time: numpy's GEMM floor + the forward pass's exp and tanh alone (TRANSCENDENTALS), over torch.nn:")
        print(f"{'cell':>6} {'T, B, D, H':>20} | {'exp + tanh':>10} | {'GEMMs + exp/tanh':>16} | {'/ torch.nn':>10} | "
              f"{'numpy backend':>13}")
        for (cell, size), (flops, floor, t) in floors.items():
            lb = floor["numpy"] + floor["transcendental"]
            print(f"{cell:>6} {str(size):>20} | {floor['transcendental'] * 1e3:7.2f} ms | {lb * 1e3:13.2f} ms | "
                  f"{lb / t['base']:9.2f}x | {t['numpy'] / t['base']:12.2f}x")

    if not args.no_memory:
        print("\nPeak memory of numpy float32 full BPTT (tracemalloc, one public call):")
        print(f"{'cell':>6} {'T, B, D, H':>20} | {'peak':>10} | {'must hold':>10} {'ratio':>6}")
        for cell in args.cells:
            spec = RNNSpec(activation="tanh", output="linear", targets="every", cell=cell)
            for size in sizes:
                T, B, D, H = size
                params, xs, targets, _ = inputs_and_baseline(cell, size)
                peak = peak_memory(backends["numpy"], spec, params, xs, targets)
                need = must_hold(cell, T, B, D, H, D, 4)
                print(f"{cell:>6} {str(size):>20} | {peak / 2**20:6.2f} MiB | {need / 2**20:6.2f} MiB {peak / need:5.2f}x")
    print("\nload average at end (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
