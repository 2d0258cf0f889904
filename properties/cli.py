"""The command line: ``bptt-suite check`` and ``bptt-suite laws``.

    bptt-suite check [--backend NAME ...] [--profile ci|dev|thorough]
                     [--max-examples N] [--seed N] [--json PATH]
                     [--property NAME ...] [--cell elman|lstm|gru ...] [--strict]
                     [--dtype float64|float32 ...] [--timeout S] [--quiet] [--in-process]
                     [--database DIR]
    bptt-suite laws --plot PATH.png

Exit status: 0 all pass, 1 a property fails, 2 usage error (bad flag, unknown
backend or property, a --json path that cannot be written), 130 interrupted (Ctrl-C:
the table of what finished is printed and the JSON written).

Backends: by default every name of ``available_backends()`` in float64, and in
float32 as well where the backend supports it (reported as "numpy[float32]").
``--dtype`` picks the dtypes instead; a name may also carry its dtype,
``--backend numpy[float32]``. Each backend runs in a child process of its own
(``properties.isolation``) unless ``--in-process`` is given.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import threading
import time

from .checks import PROPERTIES
from .conformance import (CONTRACT, DEFAULT_TIMEOUT_S, SHRINK_EXAMPLES, SHRINK_S, Report, backend_targets,
                          check_backend, default_seed, format_table, merge)
from .hypothesis_helpers import PROFILES

USAGE_ERROR = 2
INTERRUPTED = 130
CELLS = ("elman", "lstm", "gru")


def _limits_text():
    return ", ".join(f"{p} {DEFAULT_TIMEOUT_S[p]:g} s" for p in PROFILES)


def _shrink_text():
    return ", ".join(f"{p} {SHRINK_EXAMPLES[p]} examples or {SHRINK_S[p]:g} s" for p in PROFILES)


def _parser():
    p = argparse.ArgumentParser(prog="bptt-suite", description="Conformance checks of BPTT backends.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "check", help="run the conformance properties against backends",
        description="Run every conformance property against each backend and print a table backend x property.",
        epilog=f"Time limits per property (--timeout): {_limits_text()}; a property past it fails as a timeout, "
               f"and when one call of the backend hung, the backend's remaining properties are not run. "
               f"Shrinking of a failure stops after {_shrink_text()}, with the smallest failing case so far. "
               f"Exit status: 0 all pass, 1 a property fails, 2 usage error, 130 interrupted. "
               f"The contract the properties check is {CONTRACT}.")
    c.add_argument("--backend", action="append", metavar="NAME",
                   help="backend name (repeatable; default: all available). NAME[float32] picks the dtype")
    c.add_argument("--profile", choices=sorted(PROFILES), default="ci",
                   help="ci: the same 50 examples per property every run; dev: 100 random ones; thorough: 1000")
    c.add_argument("--max-examples", type=int, metavar="N", help="examples per property (default: the profile's)")
    c.add_argument("--seed", type=int, metavar="N",
                   help="seed of the example generation (default: 0 for ci, random otherwise; printed, replays a run)")
    c.add_argument("--json", metavar="PATH",
                   help=f"write the results as JSON ({CONTRACT} section 5), updated as each property finishes")
    c.add_argument("--property", action="append", metavar="NAME", choices=list(PROPERTIES),
                   help="run only this property (repeatable)")
    c.add_argument("--cell", action="append", choices=CELLS,
                   help="draw only cases of this cell (repeatable; default: all three)")
    c.add_argument("--strict", action="store_true",
                   help="a feature the backend declares unsupported (NotImplementedError) is a failure")
    c.add_argument("--dtype", action="append", choices=["float64", "float32"],
                   help="dtypes to check (repeatable; default: float64, plus float32 where supported)")
    c.add_argument("--timeout", type=float, metavar="S",
                   help=f"time limit of one property in seconds (default: {_limits_text()})")
    c.add_argument("--quiet", action="store_true", help="no progress on stderr (it is shown only on a terminal)")
    c.add_argument("--in-process", action="store_true",
                   help="run the backends in this process (default: each in a child process, so that a crash "
                        "of the backend loses only the property that was running)")
    c.add_argument("--database", metavar="DIR",
                   help="Hypothesis example database directory, shared by runs, processes or machines: failing "
                        "cases found once are tried first next time (dev and thorough; ci is derandomised and "
                        "replays by its seed)")
    lw = sub.add_parser("laws", help="draw the decay/growth laws")
    lw.add_argument("--plot", required=True, metavar="PATH.png")
    return p, c


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("bptt-suite", "numpy", "hypothesis", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_json(path, doc):
    """Write the document to ``path`` through a temporary file: a reader never sees half of it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.replace(tmp, path)


class Progress:
    """One line on stderr, rewritten each second: backend b/B, property n/m, elapsed."""

    def __init__(self, stream, n_backends, n_props):
        self.stream, self.n_backends, self.n_props = stream, n_backends, n_props
        self.t0 = time.perf_counter()
        self.line = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True, name="bptt-suite progress")
        self.thread.start()

    def _tick(self):
        while not self.stop.wait(1.0):
            self._draw()

    def _draw(self):
        with self.lock:
            if self.line is not None:
                b, backend, n, prop, since = self.line
                now = time.perf_counter()
                self.stream.write(f"\r\033[K[backend {b}/{self.n_backends}] {backend}: property {n}/{self.n_props} "
                                  f"{prop} {now - since:.0f} s (run {now - self.t0:.0f} s)")
                self.stream.flush()

    def start(self, b, backend, n, prop):
        with self.lock:
            self.line = (b, backend, n, prop, time.perf_counter())
        self._draw()

    def close(self):
        self.stop.set()
        with self.lock:
            self.line = None
            self.stream.write("\r\033[K")
            self.stream.flush()


def _error(parser, message):
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def check(args, parser) -> int:
    if args.max_examples is not None and args.max_examples < 1:
        return _error(parser, f"argument --max-examples: must be >= 1; got {args.max_examples}")
    if args.timeout is not None and not args.timeout > 0:
        return _error(parser, f"argument --timeout: must be a number of seconds > 0; got {args.timeout:g}")
    names = args.property or list(PROPERTIES)
    seed = default_seed(args.profile, args.seed)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run = {"profile": args.profile, "seed": seed, "derandomized": bool(PROFILES[args.profile].get("derandomize")),
           "max_examples": args.max_examples, "timeout_s": args.timeout or DEFAULT_TIMEOUT_S[args.profile],
           "shrink": {"examples": SHRINK_EXAMPLES[args.profile], "seconds": SHRINK_S[args.profile]},
           "cells": list(args.cell or CELLS), "strict": args.strict, "properties": names,
           "isolated": not args.in_process, "versions": versions(), "started": started,
           "argv": ["bptt-suite"] + list(args.argv), "complete": False, "interrupted": False, "seconds": 0.0}
    reports = []

    def save():
        if args.json:
            write_json(args.json, merge(reports, run))

    if args.json:  # a path that cannot be written is a usage error now, not after the whole run
        try:
            save()
        except OSError as exc:
            return _error(parser, f"argument --json: cannot write {args.json!r}: {exc.strerror or exc}")
    try:
        targets = backend_targets(args.backend, args.dtype)
    except (ValueError, RuntimeError) as exc:
        return _error(parser, str(exc))
    run["backends"] = targets
    derand = " (derandomised: the same examples every run)" if run["derandomized"] else ""
    print(f"bptt-suite check: profile {args.profile}, seed {seed}{derand}; {len(targets)} backends x {len(names)} "
          f"properties; time limit {run['timeout_s']:g} s per property; cells {', '.join(run['cells'])}"
          f"{'; strict' if args.strict else ''}", flush=True)
    progress = Progress(sys.stderr, len(targets), len(names)) \
        if sys.stderr.isatty() and not args.quiet else None
    kw = dict(profile=args.profile, max_examples=args.max_examples, seed=seed, properties=names,
              timeout_s=args.timeout, cells=args.cell, strict=args.strict, database=args.database)
    t0 = time.perf_counter()
    interrupted = False
    try:
        for b, name in enumerate(targets, 1):
            report = Report(name, seed=seed, profile=args.profile)
            reports.append(report)

            def on_start(prop, b=b, name=name):
                if progress:
                    progress.start(b, name, names.index(prop) + 1, prop)

            def on_result(prop, res, report=report):
                report.results[prop] = res
                run["seconds"] = round(time.perf_counter() - t0, 3)
                save()

            if args.in_process:
                done = check_backend(name, progress=lambda _b, p, r: on_start(p) if r is None else on_result(p, r),
                                     **kw)
            else:
                from .isolation import check_isolated

                done = check_isolated(name, on_start=on_start, on_result=on_result, **kw)
            report.dtype, report.seconds = done.dtype, done.seconds
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress:
            progress.close()
    run.update(seconds=round(time.perf_counter() - t0, 3), complete=not interrupted, interrupted=interrupted)
    print(format_table(reports))
    failed = [(rep.backend, n, r) for rep in reports for n, r in rep.results.items() if r.status == "fail"]
    for backend, name, r in failed:
        print(f"\nFAIL {backend} / {name}\n{r.counterexample}")
    total = sum(len(rep.results) for rep in reports)
    skipped = sum(r.status == "skip" for rep in reports for r in rep.results.values())
    print(f"\n{total - len(failed) - skipped} of {total} passed, {len(failed)} failed, {skipped} skipped "
          f"({len(reports)} backends, profile {args.profile}, seed {seed}, {run['seconds']:.1f} s)")
    if failed:
        print(f"The contract sections cited are those of {CONTRACT}.")
    if interrupted:
        print("interrupted: the table holds the properties that finished", file=sys.stderr)
    try:
        save()
    except OSError as exc:
        print(f"bptt-suite check: error: cannot write {args.json!r}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if args.json:
        print(f"wrote {args.json}")
    if interrupted:
        return INTERRUPTED
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, check_parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a mistyped flag of a subcommand: that subcommand's usage, not the top-level one
        (check_parser if args.command == "check" else parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # "module:attr" backends from the current directory, as with python -m
    if args.command == "check":
        args.argv = argv
        return check(args, check_parser)
    status = laws(args)
    if status == 0:
        print(f"wrote {args.plot}: gradient norms against the lag, measured and the laws ({CONTRACT} section 6)")
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
