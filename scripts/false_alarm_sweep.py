"""The false-alarm sweep: correct backends checked under many seeds must never fail.

    python scripts/false_alarm_sweep.py                      # 20 dev seeds, 3 thorough seeds
    python scripts/false_alarm_sweep.py --dev-seeds 5 --thorough-seeds 0 --backend numpy
    python scripts/false_alarm_sweep.py --jobs 2             # one check per (seed, backend), 2 at a time

Runs ``bptt-suite check`` once per (profile, seed) over the correct backends (every
built-in in both dtypes, and the examples), writes each run's JSON under --out, and
prints one line per run and every failure with its replay command. Exit status 0 when
no correct backend failed anywhere, 1 otherwise. It is slow by design (a thorough seed
runs 1000 examples per property): a script to run before a release or after changing
a property or a tolerance, not a test.

The checker is mostly single-threaded Python, so ``--jobs N`` runs N checks at once,
one per (profile, seed, backend), each with one BLAS/torch thread: the examples a
backend gets depend only on the property, the seed and what the backend declares
unsupported, not on the other backends of the run, so the results are those of one
run per seed, and every replay command stays exact. On this
project's 2-core machine one dev seed over every row takes about 10 minutes on one
core; a thorough seed (ten times the examples) about 2.3 hours of core time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

#: The correct third-party examples (the built-ins are added by default).
EXAMPLES = ("examples.my_backend:MyBackend", "examples.torch_rnn:TorchRNN", "examples.torch_lstm:TorchLSTM")


def run(profile, seed, backends, out_dir, extra, tag=None, env=None):
    path = os.path.join(out_dir, f"{profile}-{seed}{'-' + tag if tag else ''}.json")
    cmd = [sys.executable, "-m", "properties.cli", "check", "--profile", profile, "--seed", str(seed),
           "--json", path, "--quiet", *extra]
    for b in backends:
        cmd += ["--backend", b]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not os.path.exists(path):
        return seconds, None, proc
    with open(path) as fh:
        return seconds, json.load(fh), proc


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev-seeds", type=int, default=20, help="dev-profile seeds 1..N (default 20)")
    ap.add_argument("--thorough-seeds", type=int, default=3, help="thorough-profile seeds 1..N (default 3)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--backend", action="append", help="backends (default: every built-in and the examples)")
    ap.add_argument("--out", default="sweep-results", help="directory for the JSON of each run")
    ap.add_argument("--jobs", type=int, default=1,
                    help="checks run at once, one per (profile, seed, backend) when > 1 (default 1)")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more arguments for bptt-suite check")
    args = ap.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.backend:
        backends = args.backend
    else:
        from implementations import available_backends

        backends = list(available_backends()) + list(EXAMPLES)
    os.makedirs(args.out, exist_ok=True)
    runs = [("dev", s) for s in range(args.first_seed, args.first_seed + args.dev_seeds)]
    runs += [("thorough", s) for s in range(args.first_seed, args.first_seed + args.thorough_seeds)]
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1; got {args.jobs}")
    if args.jobs == 1:
        tasks = [(profile, seed, tuple(backends), None) for profile, seed in runs]
        env = None
    else:
        tasks = [(profile, seed, (b,), _safe(b)) for profile, seed in runs for b in backends]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    failures, rows = [], 0

    def one(task):
        profile, seed, bs, tag = task
        return task, run(profile, seed, bs, args.out, extra, tag, env)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for (profile, seed, bs, tag), (seconds, doc, proc) in pool.map(one, tasks):
            what = f"{profile:8s} seed {seed:3d}" + (f" {bs[0]}" if tag else "")
            if doc is None:
                failures.append(f"{what}: the run itself failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
                print(f"{what}: run failed (exit {proc.returncode})", flush=True)
                continue
            n = bad = 0
            for backend, entry in doc["backends"].items():
                for prop, res in entry["properties"].items():
                    n += 1
                    if res["status"] == "fail":
                        bad += 1
                        failures.append(f"{profile} seed {seed}: {backend} / {prop}\n{res.get('counterexample')}")
            rows += n
            print(f"{what}: {n - bad} of {n} passed, {bad} failed ({seconds:.0f} s)", flush=True)
    print(f"\n{len(runs)} runs, {rows} (backend, property) rows, {len(failures)} failures")
    for f in failures:
        print("\nFAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
