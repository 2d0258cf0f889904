"""The false-alarm sweep: correct backends checked under many seeds must never fail.

    python scripts/false_alarm_sweep.py                      # 20 dev seeds, 3 thorough seeds
    python scripts/false_alarm_sweep.py --dev-seeds 5 --thorough-seeds 0 --backend numpy

Runs ``bptt-suite check`` once per (profile, seed) over the correct backends (every
built-in in both dtypes, and the examples), writes each run's JSON under --out, and
prints one line per run and every failure with its replay command. Exit status 0 when
no correct backend failed anywhere, 1 otherwise. It is slow by design (a thorough seed
runs 1000 examples per property): a script to run before a release or after changing
a property or a tolerance, not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

#: The correct third-party examples (the built-ins are added by default).
EXAMPLES = ("examples.my_backend:MyBackend", "examples.torch_rnn:TorchRNN", "examples.torch_lstm:TorchLSTM")


def run(profile, seed, backends, out_dir, extra):
    path = os.path.join(out_dir, f"{profile}-{seed}.json")
    cmd = [sys.executable, "-m", "properties.cli", "check", "--profile", profile, "--seed", str(seed),
           "--json", path, "--quiet", *extra]
    for b in backends:
        cmd += ["--backend", b]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not os.path.exists(path):
        return seconds, None, proc
    with open(path) as fh:
        return seconds, json.load(fh), proc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev-seeds", type=int, default=20, help="dev-profile seeds 1..N (default 20)")
    ap.add_argument("--thorough-seeds", type=int, default=3, help="thorough-profile seeds 1..N (default 3)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--backend", action="append", help="backends (default: every built-in and the examples)")
    ap.add_argument("--out", default="sweep-results", help="directory for the JSON of each run")
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
    failures, rows = [], 0
    for profile, seed in runs:
        seconds, doc, proc = run(profile, seed, backends, args.out, extra)
        if doc is None:
            failures.append(f"{profile} seed {seed}: the run itself failed (exit {proc.returncode}):\n"
                            f"{proc.stderr[-2000:]}")
            print(f"{profile:8s} seed {seed:3d}: run failed (exit {proc.returncode})", flush=True)
            continue
        n = bad = 0
        for backend, entry in doc["backends"].items():
            for prop, res in entry["properties"].items():
                n += 1
                if res["status"] == "fail":
                    bad += 1
                    failures.append(f"{profile} seed {seed}: {backend} / {prop}\n{res.get('counterexample')}")
        rows += n
        print(f"{profile:8s} seed {seed:3d}: {n - bad} of {n} passed, {bad} failed ({seconds:.0f} s)", flush=True)
    print(f"\n{len(runs)} runs, {rows} (backend, property) rows, {len(failures)} failures")
    for f in failures:
        print("\nFAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
