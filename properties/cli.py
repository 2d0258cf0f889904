"""The command line: ``bptt-suite check`` and ``bptt-suite laws``.

    bptt-suite check [--backend NAME ...] [--profile ci|dev|thorough]
                     [--max-examples N] [--seed N] [--json PATH]
                     [--property NAME ...] [--dtype float64|float32 ...]
    bptt-suite laws --plot PATH.png

Exit status: 0 all pass, 1 a property fails, 2 usage error (bad flag, unknown
backend or property).

Backends: by default every name of ``available_backends()`` in float64, and in
float32 as well where the backend supports it (reported as "numpy[float32]").
``--dtype`` picks the dtypes instead; a name may also carry its dtype,
``--backend numpy[float32]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .checks import PROPERTIES
from .conformance import backend_targets, check_backend, format_table, merge
from .hypothesis_helpers import PROFILES

USAGE_ERROR = 2


def _parser():
    p = argparse.ArgumentParser(prog="bptt-suite", description="Conformance checks of BPTT backends.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="run the conformance properties against backends")
    c.add_argument("--backend", action="append", metavar="NAME",
                   help="backend name (repeatable; default: all available). NAME[float32] picks the dtype")
    c.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    c.add_argument("--max-examples", type=int, metavar="N", help="examples per property (default: the profile's)")
    c.add_argument("--seed", type=int, metavar="N", help="seed of the example generation (replays a failure)")
    c.add_argument("--json", metavar="PATH", help="write the results as JSON (contract section 5)")
    c.add_argument("--property", action="append", metavar="NAME", choices=list(PROPERTIES),
                   help="run only this property (repeatable)")
    c.add_argument("--dtype", action="append", choices=["float64", "float32"],
                   help="dtypes to check (repeatable; default: float64, plus float32 where supported)")
    c.add_argument("--timeout", type=float, metavar="S", help="time limit of one property in seconds")
    lw = sub.add_parser("laws", help="draw the decay/growth laws")
    lw.add_argument("--plot", required=True, metavar="PATH.png")
    return p


def _progress(stream):
    state = {"t0": None}

    def progress(backend, prop, result):
        if result is None:
            state["t0"] = time.perf_counter()
            stream.write(f"\r\033[K{backend}: {prop} ...")
        else:
            stream.write(f"\r\033[K{backend}: {prop} {result.status} ({result.examples} examples, "
                         f"{time.perf_counter() - state['t0']:.1f} s)\n")
        stream.flush()
    return progress


def check(args) -> int:
    try:
        targets = backend_targets(args.backend, args.dtype)
    except (ValueError, RuntimeError) as exc:
        print(f"bptt-suite check: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if args.max_examples is not None and args.max_examples < 1:
        print("bptt-suite check: error: --max-examples must be >= 1", file=sys.stderr)
        return USAGE_ERROR
    progress = _progress(sys.stderr) if sys.stderr.isatty() else None
    reports = []
    t0 = time.perf_counter()
    for name in targets:
        reports.append(check_backend(name, profile=args.profile, max_examples=args.max_examples, seed=args.seed,
                                     properties=args.property, timeout_s=args.timeout, progress=progress))
    print(format_table(reports))
    failed = [(rep.backend, n, r) for rep in reports for n, r in rep.results.items() if r.status == "fail"]
    for backend, name, r in failed:
        print(f"\nFAIL {backend} / {name}\n{r.counterexample}")
    total = sum(len(rep.results) for rep in reports)
    print(f"\n{total - len(failed)} of {total} passed, {len(failed)} failed "
          f"({len(reports)} backends, profile {args.profile}, {time.perf_counter() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(merge(reports), fh, indent=2)
    return 1 if failed else 0


def laws(args) -> int:
    from properties.laws import plot_laws

    try:
        plot_laws(args.plot)
    except ImportError as exc:  # matplotlib is an optional dependency (the plot extra)
        print(f"bptt-suite laws: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # "module:attr" backends from the current directory, as with python -m
    if args.command == "check":
        return check(args)
    return laws(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
