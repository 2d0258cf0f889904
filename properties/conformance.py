"""Run the conformance properties against one backend, with Hypothesis.

    from properties.conformance import check_backend
    report = check_backend("numpy", profile="ci")               # or a backend object
    report.passed, report.results["bptt"].status, report.to_dict()

Each property runs as its own Hypothesis test, built here, under the settings of
the chosen profile and under a time limit: a crash, a wrong shape, a NaN, or a hang
is a failure of that property and the run goes on with the next. The report holds,
per property, the status ("pass", "fail", "skip", "xfail"), the number of examples
run (every call of the property that reached a verdict, shrinking included), the
worst error as a fraction of what was allowed (the one comparable figure of every
property; the raw numbers are in ``raw``), the cells of the cases run, the features
the backend declared unsupported, and for a failure the shrunk counterexample with
the command that replays it.

Partial backends (docs/contract.md section 5): a backend raises NotImplementedError
naming a feature it lacks ("cell 'gru'", "activation 'identity'", "truncation",
"float64"); the properties raise ``properties.results.Unsupported`` (e.g. "dhs" when a
backend returns dhs=None). Either way the feature is recorded and the case is
rejected, so that supported cases keep being drawn; a property is "skip" only when no
supported case could be drawn, and ``strict=True`` turns an unsupported feature into
a failure.

Failing fast: when the first examples of a property all raise the same exception,
that exception is reported at once (with its last frames) instead of being shrunk;
the shrinking of any failure stops after ``SHRINK_EXAMPLES[profile]`` examples or
``SHRINK_S[profile]`` seconds with the smallest failing case found so far. A property that runs past its time limit
(``DEFAULT_TIMEOUT_S[profile]``) fails as a timeout; when one call of the backend
hung, the backend's remaining properties run under ``AFTER_HANG_S`` each.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import random
import re
import shlex
import signal
import sys
import threading
import time
import traceback
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from hypothesis import given, reject, seed as hypothesis_seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException, Unsatisfiable

from reference.types import CELLS as CELL_NAMES

from .checks import PROPERTIES, PropertyFailure, describe_case
from .hypothesis_helpers import PROFILES, Caps, caps_for, labelled, profile_settings
from .oracle import beyond_range

STATUSES = ("pass", "fail", "skip", "xfail")
#: Time limit of one property (seconds), per profile, when none is given.
DEFAULT_TIMEOUT_S = {"ci": 120.0, "dev": 300.0, "thorough": 3600.0}
#: The shrink budget of one failing property, per profile: at most this many further
#: examples after the first failure (which keeps ci's counterexamples reproducible) and at
#: most this many seconds (a backstop for slow backends). Past it the smallest failing case
#: found so far is reported; the replay command under dev or thorough shrinks further.
SHRINK_EXAMPLES = {"ci": 40, "dev": 200, "thorough": 1000}
SHRINK_S = {"ci": 10.0, "dev": 30.0, "thorough": 120.0}
#: When the first examples of a property all raise the same exception (the backend raises
#: on every call), it is reported after this many examples instead of being shrunk.
PERSISTENT_AFTER = 3
#: A timeout while one call had been running for at least this fraction of the limit is a
#: hang: the backend's remaining properties then run under AFTER_HANG_S each, so that a
#: backend that hangs on every call costs one time limit plus a few minutes, not 15 limits.
HANG_FRACTION = 0.5
AFTER_HANG_S = 10.0
#: Frames of a backend's exception shown in a report (the innermost ones).
FRAMES_SHOWN = 4
CONTRACT = "docs/contract.md"


@dataclass
class PropertyResult:
    status: str
    examples: int
    max_error: Optional[float]       # worst error / allowed (<= 1 when it holds)
    counterexample: Optional[str]
    replay: Optional[str] = None     # the command that replays the failure
    message: Optional[str] = None    # why it failed (or why it was skipped / expected to fail)
    seconds: float = 0.0
    raw: Optional[dict] = None       # the numbers behind max_error (worst example)
    unsupported: dict = field(default_factory=dict)  # feature -> cases rejected because of it
    cells: dict = field(default_factory=dict)        # cell -> examples run
    timed_out: bool = False
    hung: bool = False               # one call of the backend did not return within the limit
    traceback: Optional[str] = None  # the last frames of the backend's exception

    def to_dict(self):
        """The four keys of docs/contract.md section 5, then the details."""
        return {"status": self.status, "examples": self.examples, "max_error": self.max_error,
                "counterexample": self.counterexample, "message": self.message, "replay": self.replay,
                "seconds": round(self.seconds, 3), "raw": _plain(self.raw), "cells": dict(self.cells),
                "unsupported": sorted(self.unsupported), "timed_out": self.timed_out}


@dataclass
class Report:
    backend: str
    results: dict = field(default_factory=dict)   # property name -> PropertyResult
    seconds: float = 0.0
    dtype: Optional[str] = None
    seed: Optional[int] = None
    profile: Optional[str] = None

    @property
    def passed(self) -> bool:
        return all(r.status != "fail" for r in self.results.values())

    @property
    def failures(self) -> dict:
        return {n: r for n, r in self.results.items() if r.status == "fail"}

    @property
    def unsupported(self) -> list:
        """The features the backend declared unsupported, over every property run."""
        return sorted({f for r in self.results.values() for f in r.unsupported})

    def to_dict(self):
        return {"backends": {self.backend: {
            "properties": {n: r.to_dict() for n, r in self.results.items()},
            "unsupported": self.unsupported, "dtype": self.dtype, "seconds": round(self.seconds, 3)}}}

    def __str__(self):
        return format_table([self])


def _plain(obj):
    """JSON-ready: numpy scalars and arrays as python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def merge(reports, run=None) -> dict:
    """Several reports as one JSON document of docs/contract.md section 5; ``run``: what
    the run was (seed, profile, versions, ...), under the key "run"."""
    out = {"backends": {}}
    for r in reports:
        out["backends"].update(r.to_dict()["backends"])
    if run is not None:
        out["run"] = _plain(run)
    return out


def format_cells(cells: dict) -> str:
    return " ".join(f"{c}:{cells[c]}" for c in CELL_NAMES if cells.get(c)) or "-"


def format_table(reports) -> str:
    rows = [("backend", "property", "status", "examples", "worst/allowed", "cells", "seconds")]
    for rep in reports:
        for name, r in rep.results.items():
            err = "-" if r.max_error is None else f"{r.max_error:.2e}"
            rows.append((rep.backend, name, r.status + (" (timeout)" if r.timed_out else ""), str(r.examples),
                         err, format_cells(r.cells), f"{r.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, 2, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for rep in reports:
        if rep.unsupported:
            lines.append(f"unsupported by {rep.backend}: {', '.join(rep.unsupported)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Backends by name: "numpy", "numpy[float32]", "package.module:attr", ...

_DTYPE_SUFFIX = re.compile(r"^(?P<name>.+)\[(?P<dtype>float32|float64)\]$")


def split_name(name: str):
    """"numpy[float32]" -> ("numpy", "float32"); "numpy" -> ("numpy", None)."""
    m = _DTYPE_SUFFIX.match(name)
    return (m.group("name"), m.group("dtype")) if m else (name, None)


def display_name(name: str, dtype: str) -> str:
    return name if dtype == "float64" else f"{name}[{dtype}]"


def resolve(backend, dtype=None):
    """(backend object, display name, name for the replay command). A backend is named
    by the dtype it really computes in (``backend.dtype``), whatever was asked for."""
    if isinstance(backend, str):
        from implementations import get_backend

        name, suffix = split_name(backend)
        obj = get_backend(name, dtype=suffix or dtype or "float64")
        dt = str(getattr(obj, "dtype", suffix or dtype or "float64"))
        return obj, display_name(name, dt), display_name(name, dt)
    dt = str(getattr(backend, "dtype", "float64"))
    name = str(getattr(backend, "name", type(backend).__name__))
    cls = type(backend)
    importable = f"{cls.__module__}:{cls.__qualname__}" if "<" not in cls.__qualname__ else name
    return backend, display_name(name, dt), display_name(importable, dt)


def _built_dtype(name, dtype):
    """The dtype backend ``name`` computes in when asked for ``dtype``, or None when it
    cannot be built in it (a ValueError about the dtype)."""
    from implementations import get_backend

    try:
        return str(get_backend(name, dtype=dtype).dtype)
    except ValueError as exc:
        if "dtype" in str(exc):
            return None
        raise


def backend_targets(names=None, dtypes=None):
    """The backend names to check, with their dtype: by default every name of
    ``available_backends()`` in float64 and also in float32 where it supports it
    ("numpy[float32]"); ``dtypes`` picks the dtypes instead, and a name may carry
    its own ("numpy[float32]"). Each backend is listed once per dtype it really
    computes in (an object fixed to float32 is "name[float32]", once). Raises
    ValueError (RuntimeError for torch:cuda without CUDA) for a name that cannot be used."""
    from implementations import available_backends, get_backend

    out = []
    for raw in (names or available_backends()):
        name, suffix = split_name(raw)
        wanted = [suffix] if suffix else list(dtypes or ["float64", "float32"])
        explicit = bool(suffix or dtypes)
        get_backend(name, dtype=wanted[0] if explicit else "float64")  # unknown names fail here
        for dt in wanted:
            real = _built_dtype(name, dt) if not explicit else str(get_backend(name, dtype=dt).dtype)
            if real is None or (not explicit and real != dt):
                continue  # no such dtype, or the same backend as another row
            shown = display_name(name, real)
            if shown not in out:
                out.append(shown)
    return out


# ---------------------------------------------------------------------------
# Time limits


class CaseBuildError(RuntimeError):
    """The suite could not build a case (a bug in the suite, not in the backend)."""


class PropertyTimeout(KeyboardInterrupt):
    """Raised inside a property that ran past its time limit. An interrupt for
    Hypothesis: not a failing example to shrink, and not recorded as a run that drew
    less than before (which it would later report as FlakyStrategyDefinition, blaming
    the backend for the checker's own time limit)."""


class _Stop(KeyboardInterrupt):
    """Ends a Hypothesis run early (shrink budget spent, persistent exception, --strict);
    an interrupt for Hypothesis, like PropertyTimeout."""

    def __init__(self, why, exc=None):
        super().__init__(why)
        self.why, self.exc = why, exc


@contextmanager
def _alarm(seconds, on_alarm=None):
    def handler(signum, frame):
        if on_alarm is None or on_alarm():
            raise PropertyTimeout(f"no result within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def call_with_time_limit(fn: Callable[[], None], seconds: Optional[float], on_alarm=None):
    """Run fn; raise PropertyTimeout after ``seconds``. On the main thread of a POSIX
    process a SIGALRM interrupts the property (between Python bytecodes, so also a
    Python-level infinite loop); elsewhere fn runs in a daemon thread that is
    abandoned when it overruns (its result is ignored). ``on_alarm()``, when given,
    is called at the limit and says whether to interrupt right there (True) or to
    let fn stop itself at its next safe point (False)."""
    if not seconds:
        return fn()
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        with _alarm(seconds, on_alarm):
            return fn()
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="bptt-suite property")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if on_alarm is not None:
            on_alarm()
        raise PropertyTimeout(f"no result within {seconds:g} s (the worker thread was abandoned)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@contextmanager
def _one_torch_thread():
    """PyTorch on one intra-op thread while the properties run. The cases are tiny, and
    PyTorch's worker threads and OpenBLAS's spinning workers (numpy, the reference)
    starve each other on a small machine: the ci profile over the built-ins took 174 s
    instead of 46 s on 2 cores. The check is of results, not speed; the thread count
    is restored afterwards."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# Cases: their cell, their size, writable copies


def _problem_of(case):
    """The Problem inside a case (a Problem, a BadInput, or a tuple starting with one)."""
    if isinstance(case, tuple):
        for c in case:
            p = _problem_of(c)
            if p is not None:
                return p
        return None
    if hasattr(case, "problem"):
        return case.problem
    return case if hasattr(case, "spec") and hasattr(case, "xs") else None


def _spec_of(case):
    p = _problem_of(case)
    return getattr(p, "spec", None)


def cell_of(case) -> str:
    return str(getattr(_spec_of(case), "cell", "elman"))


def _size(case):
    """How big a case is, to keep the smallest failing one when shrinking is cut short."""
    p = _problem_of(case)
    if p is None:
        return (0, 0)
    try:
        return (sum(int(np.size(a)) for a in (p.xs, p.targets, *p.params.as_dict().values())), p.T)
    except Exception:  # noqa: BLE001 - a case without the usual arrays
        return (0, 0)


def writable_copy(obj):
    """``obj`` with every numpy array in it (in tuples, lists, dicts and dataclasses, frozen
    ones included) replaced by a writable copy: backends get arrays they may hand to any
    library (torch.as_tensor warns on read-only ones), and a backend that writes into its
    input cannot corrupt the case (``inputs_untouched`` checks that it does not)."""
    if isinstance(obj, np.ndarray):
        return np.array(obj, copy=True)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(writable_copy(v) for v in obj)
    if isinstance(obj, list):
        return [writable_copy(v) for v in obj]
    if isinstance(obj, dict):
        return {k: writable_copy(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        new = copy.copy(obj)  # no __init__: bad-input cases hold dataclasses built around their checks
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            copied = writable_copy(value)
            if copied is not value:
                object.__setattr__(new, f.name, copied)
        return new
    return obj


# ---------------------------------------------------------------------------
# Unsupported features (docs/contract.md section 5, "Partial backends")

_FEATURE_SPEC = re.compile(r"\b(cell|activation|nonlinearity|output|targets)\b\s*[=:]?\s*['\"]([A-Za-z0-9_]+)['\"]")
_FEATURE_WORDS = [(re.compile(p, re.I), f) for p, f in [
    (r"\bh_prime\b|\bh'", "truncation h' < h"), (r"truncat", "truncation"), (r"\bfloat64\b", "float64"),
    (r"\bfloat32\b", "float32"), (r"\bdhs\b", "dhs"), (r"\bdcs\b", "dcs"), (r"\bc0\b", "c0"), (r"\bh0\b", "h0"),
    (r"\bl2\b", "l2")]]


def feature_of(exc) -> str:
    """The feature a NotImplementedError names: its ``feature`` attribute
    (``properties.results.Unsupported``), else read from the message ("cell 'gru'",
    "activation 'sigmoid'" also from "nonlinearity 'sigmoid'", "truncation", "float64",
    "dhs", ...), else the message itself."""
    feature = getattr(exc, "feature", None)
    if feature:
        return str(feature)
    msg = str(exc).strip()
    m = _FEATURE_SPEC.search(msg)
    if m:
        kind = "activation" if m.group(1) == "nonlinearity" else m.group(1)
        return f"{kind} {m.group(2)!r}"
    for pattern, feature in _FEATURE_WORDS:
        if pattern.search(msg):
            return feature
    first = msg.splitlines()[0] if msg else ""
    return (first[:77] + "...") if len(first) > 80 else (first or "(a NotImplementedError without a message)")


def _declared(exc):
    """The NotImplementedError by which the backend declared a feature unsupported, or None:
    the exception itself, or what a property wrapped in its PropertyFailure."""
    if isinstance(exc, NotImplementedError):
        return exc
    cause = exc.__cause__
    if isinstance(exc, PropertyFailure) and isinstance(cause, NotImplementedError):
        return cause
    return None


def _excludes(feature, case, dtype):
    """Whether a case needs a feature already declared unsupported (a cheap test on the
    spec, so that such cases are rejected before the property runs)."""
    m = re.fullmatch(r"(cell|activation|output|targets) '([A-Za-z0-9_]+)'", feature)
    if m:
        return str(getattr(_spec_of(case), m.group(1), None)) == m.group(2)
    if feature == "truncation":  # truncated BPTT as a whole (a narrower lack names h' or h_prime)
        p = _problem_of(case)
        tr = getattr(p, "truncation", None)
        return tr is not None and getattr(tr, "h", 0) < p.T
    return feature == dtype


# ---------------------------------------------------------------------------
# Reports of exceptions


def _short_path(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_in_suite(exc) -> bool:
    """Whether the exception was raised by the property's own code (no frame below the
    innermost frame of properties/ belongs to anything else)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [i for i, f in enumerate(frames) if os.path.dirname(os.path.abspath(f.filename)) == _OWN_DIR]
    return bool(own) and own[-1] == len(frames) - 1


def frames_text(exc, n=FRAMES_SHOWN) -> str:
    """The innermost ``n`` frames of the exception (and of its cause), as file:line lines."""
    lines = []
    for e in (exc, exc.__cause__) if exc.__cause__ is not None else (exc,):
        frames = traceback.extract_tb(e.__traceback__)[-n:]
        if not frames:
            continue
        if e is not exc:
            lines.append(f"caused by {type(e).__name__}: {e}")
        lines += [f"  {_short_path(f.filename)}:{f.lineno} in {f.name}" + (f": {f.line.strip()}" if f.line else "")
                  for f in frames]
    return "\n".join(lines)


def _gated_hint(case, exc):
    """For a gated case that an Elman-only backend answered with some other error (none
    for the suite's own errors: a failed case build, or an exception raised in properties/)."""
    cell = cell_of(case)
    root = exc.__cause__ if isinstance(exc, PropertyFailure) else exc
    if cell == "elman" or root is None or isinstance(root, (PropertyFailure, NotImplementedError, CaseBuildError)):
        return ""
    if root is exc and _raised_in_suite(exc):
        return ""
    return (f"\nThe case has cell {cell!r}. A backend that does not support it declares so by raising "
            f"NotImplementedError naming the cell, e.g. raise implementations.adapter.unsupported(\"cell {cell!r}\") "
            f"(or NotImplementedError(\"cell {cell!r}\")); the checker then draws other cells "
            f"({CONTRACT} section 5, Partial backends). Or restrict the run with --cell elman.")


def replay_command(backend_name, prop, profile, seed, max_examples, cells=None, strict=False, database=None):
    cmd = ["bptt-suite", "check", "--backend", backend_name, "--property", prop, "--profile", profile]
    if database is not None and not PROFILES[profile].get("derandomize"):
        cmd += ["--database", str(database)]
    elif seed is not None:
        cmd += ["--seed", str(seed)]
    if max_examples is not None:
        cmd += ["--max-examples", str(max_examples)]
    for c in cells or ():
        cmd += ["--cell", c]
    if strict:
        cmd.append("--strict")
    return " ".join(shlex.quote(c) for c in cmd)


def _blob(exc):
    for note in getattr(exc, "__notes__", []) or []:
        m = re.search(r"@reproduce_failure\(.*\)", note)
        if m:
            return m.group(0)
    return None


def _ratio(out):
    """(ratio, raw) of what a property returned: a float, a Measured(ratio, raw), or None."""
    if out is None:
        return None, None
    if hasattr(out, "ratio"):
        return float(out.ratio), getattr(out, "raw", None)
    return float(out), None


def _accepts_cells(build) -> bool:
    try:
        params = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params) \
        or any(p.name == "cells" for p in params)


def property_cells(prop) -> tuple:
    """The cells a property applies to (all of them unless it says otherwise)."""
    return tuple(getattr(prop, "cells", None) or CELL_NAMES)


def default_seed(profile, seed=None):
    """The seed a run uses: the one given; 0 for a derandomised profile (the same examples
    every run); else a fresh random one (reported, so that the run can be replayed)."""
    if seed is not None:
        return int(seed)
    return 0 if PROFILES[profile].get("derandomize") else random.SystemRandom().getrandbits(32)


# ---------------------------------------------------------------------------


class _Run:
    """What one Hypothesis run of a property has seen so far."""

    def __init__(self):
        self.calls = 0                 # examples that reached a verdict
        self.worst = None
        self.raw = None
        self.case = None               # the case of the example running (or last run)
        self.cells = {}
        self.unsupported = {}          # feature -> cases rejected
        self.first_case = {}           # feature -> the first case that needed it
        self.first_fail_t = None
        self.shrink_calls = 0          # examples drawn after the first failure
        self.failure = None            # (exception, case) of the smallest failure so far
        self.first_kind = None
        self.outcomes = []             # exception type (or None) of the first examples
        self.in_check = False
        self.example_t0 = None
        self.deadline_passed = False
        self.in_flight = 0.0           # how long the call interrupted by the time limit had run
        self.pending = None            # a _Stop or PropertyTimeout to raise at the next example

    def count_cell(self, case):
        cell = cell_of(case)
        self.cells[cell] = self.cells.get(cell, 0) + 1


def _failure_kind(exc):
    return "PropertyFailure" if isinstance(exc, PropertyFailure) else type(exc).__name__


def run_property(backend, prop_name, *, profile="ci", max_examples=None, seed=None, caps: Optional[Caps] = None,
                 timeout_s=None, replay_name=None, cells=None, strict=False, shrink_s=None,
                 shrink_examples=None, known_unsupported=None, database=None) -> PropertyResult:
    """One property against one backend object, as a Hypothesis test.

    cells: the cells to draw (default all); strict: an unsupported feature fails;
    shrink_s, shrink_examples: the shrink budget (default SHRINK_S[profile] seconds,
    SHRINK_EXAMPLES[profile] examples after the first failure); known_unsupported: a dict
    of features already declared unsupported by this backend (updated); database: a
    directory for Hypothesis's example database (None: none)."""
    prop = PROPERTIES[prop_name]
    requested = tuple(cells) if cells else CELL_NAMES
    allowed = tuple(c for c in property_cells(prop) if c in requested)
    dtype = str(getattr(backend, "dtype", "float64"))
    known = {} if known_unsupported is None else known_unsupported
    seed = default_seed(profile, seed)
    replay = replay_command(replay_name or getattr(backend, "name", "?"), prop_name, profile, seed, max_examples,
                            cells, strict, database)
    t0 = time.perf_counter()
    run = _Run()

    def result(status, message=None, counterexample=None, error=None, raw=None, **kw):
        worst, worst_raw = run.worst, run.raw
        if error is not None and (worst is None or error >= worst):
            worst, worst_raw = error, raw if raw is not None else worst_raw
        return PropertyResult(status, run.calls, worst, counterexample, replay if status == "fail" else None,
                              message, time.perf_counter() - t0, worst_raw, dict(run.unsupported), dict(run.cells),
                              **kw)

    if not allowed:
        return result("skip", f"applies to cells {', '.join(property_cells(prop))}; the run asked for "
                              f"{', '.join(requested)}")
    needs = [n for n in getattr(prop, "needs", ()) or () if n in known]
    if needs:
        run.unsupported = {n: 0 for n in needs}
        return result("fail" if strict else "skip",
                      f"needs {', '.join(needs)}, which the backend declared unsupported"
                      + (" (--strict)" if strict else ""))

    s = profile_settings(profile, max_examples)
    s = settings(s, max_examples=s.max_examples * getattr(prop, "examples_factor", 1))
    if database is not None:
        from hypothesis.database import DirectoryBasedExampleDatabase

        s = settings(s, database=DirectoryBasedExampleDatabase(str(database)))
    build = prop.build
    with_cells = _accepts_cells(build)
    shrink_budget = SHRINK_S.get(profile, 30.0) if shrink_s is None else shrink_s
    shrink_examples = SHRINK_EXAMPLES.get(profile, 200) if shrink_examples is None else shrink_examples

    @s
    @given(data=st.data())
    def test(data):
        if run.pending is not None:
            raise run.pending
        if run.first_fail_t is not None:
            run.shrink_calls += 1
            if run.shrink_calls > shrink_examples:
                raise _Stop("shrink", f"{shrink_examples} examples")
            if time.perf_counter() - run.first_fail_t > shrink_budget:
                raise _Stop("shrink", f"{shrink_budget:g} s")
        run.case = None
        try:
            case = build(labelled(data), caps_, allowed) if with_cells else build(labelled(data), caps_)
        except HypothesisException:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as a fault of the suite, not of the backend
            raise CaseBuildError(f"building the case failed: {type(exc).__name__}: {exc}") from exc
        if cell_of(case) not in allowed:
            reject()  # a builder that does not know about cells yet
        for feature in known:
            if _excludes(feature, case, dtype):
                run.unsupported[feature] = run.unsupported.get(feature, 0) + 1
                reject()
        case = writable_copy(case)
        run.case = case
        run.example_t0 = time.perf_counter()
        run.in_check = True
        try:
            out = prop.check(backend, case)
        except HypothesisException:   # the property's own reject() (a case it cannot judge): no verdict
            run.in_check = False
            raise
        except Exception as exc:  # noqa: BLE001 - sorted out below
            run.in_check = False
            declared = _declared(exc)
            if declared is not None:
                feature = feature_of(declared)
                run.unsupported[feature] = run.unsupported.get(feature, 0) + 1
                run.first_case.setdefault(feature, case)
                known[feature] = known.get(feature, 0) + 1
                if strict:
                    raise _Stop("strict", declared) from None
                reject()
            overflow = exc if isinstance(exc, FloatingPointError) else exc.__cause__
            problem = _problem_of(case)
            if isinstance(overflow, FloatingPointError) and problem is not None and beyond_range(problem, dtype):
                # the case's numbers leave the backend's dtype (float32 at 3.4e38): its overflow is
                # right, and the case proves nothing either way (the errors property tests overflow)
                reject()
            run.calls += 1
            run.count_cell(case)
            kind = _failure_kind(exc)
            if run.first_fail_t is None:
                run.first_fail_t, run.first_kind = time.perf_counter(), kind
            if kind == run.first_kind and (run.failure is None or _size(case) <= _size(run.failure[1])):
                run.failure = (exc, case)
            if len(run.outcomes) < PERSISTENT_AFTER:
                run.outcomes.append(kind)
                if kind != "PropertyFailure" and len(run.outcomes) == PERSISTENT_AFTER \
                        and len(set(run.outcomes)) == 1:
                    raise _Stop("persistent", exc) from None
            raise
        finally:
            run.in_check = False
        run.calls += 1
        if len(run.outcomes) < PERSISTENT_AFTER:
            run.outcomes.append(None)
        run.count_cell(case)
        ratio, raw = _ratio(out)
        if ratio is not None and (run.worst is None or ratio > run.worst):
            run.worst, run.raw = ratio, raw

    caps_ = caps or caps_for(backend)
    # Each property gets its own stream of examples (a derandomized profile would
    # otherwise give every property the same one): the run seed mixed with the name.
    # With an example database the examples come from it first and then at random (Hypothesis
    # uses no database under a fixed seed): the database, not the seed, replays a failure.
    if database is None or PROFILES[profile].get("derandomize"):
        test = hypothesis_seed(zlib.crc32(prop_name.encode()) ^ seed)(test)
    limit = DEFAULT_TIMEOUT_S.get(profile, 300.0) if timeout_s is None else timeout_s

    def on_alarm():
        """At the time limit: interrupt the backend's call right away; between examples
        (inside Hypothesis) stop at the start of the next one instead."""
        run.deadline_passed = True
        if run.in_check:
            run.in_flight = time.perf_counter() - run.example_t0
            return True
        run.pending = PropertyTimeout(f"no result within {limit:g} s")
        return False

    def failure_text(msg, exc, case):
        text = f"{msg}\ncase:\n{describe_case(case) if case is not None else '(no case drawn)'}\nreplay: {replay}"
        blob = _blob(exc) if exc is not None else None
        return text + (f"\nor add {blob} to a test" if blob else "")

    def failed(exc, case, note=""):
        """The result of a failing example: what was wrong, where the backend raised it."""
        tb = None
        if isinstance(exc, PropertyFailure):
            msg, error, raw = f"{prop_name}: {exc}", exc.error, getattr(exc, "raw", None)
            if exc.__cause__ is not None:
                tb = frames_text(exc)
        elif isinstance(exc, CaseBuildError):
            msg, error, raw = f"{prop_name}: {exc} (a bug in the suite)", None, None
            tb = frames_text(exc)
        else:
            who = "the property itself raised (a bug in the suite?)" if _raised_in_suite(exc) else "the backend raised"
            msg, error, raw = f"{prop_name}: {who} {type(exc).__name__}: {exc}", None, None
            tb = frames_text(exc)
        msg += note + _gated_hint(case, exc)
        text = failure_text(msg, exc, case)
        if tb:
            text = text.replace("\ncase:\n", f"\n{tb}\ncase:\n", 1)
        return result("fail", msg, text, error, raw, traceback=tb)

    try:
        with _one_torch_thread():
            call_with_time_limit(test, limit, on_alarm)
    except PropertyTimeout as exc:
        return _timed_out(run, exc, limit, prop_name, result, failed, failure_text)
    except _Stop as stop:
        if stop.why == "strict":
            feature = feature_of(stop.exc)
            msg = (f"{prop_name}: the backend does not support {feature} (NotImplementedError: {stop.exc}); "
                   f"--strict makes an unsupported feature a failure")
            return result("fail", msg, failure_text(msg, None, run.first_case.get(feature)))
        if stop.why == "persistent":
            exc = stop.exc
            return failed(exc, run.case, f" (raised by each of the first {PERSISTENT_AFTER} examples: not shrunk)")
        exc, case = run.failure
        return failed(exc, case, f" (shrinking stopped after {stop.exc}, the budget of profile {profile}: the "
                                 f"smallest failing case found so far is shown)")
    except Unsatisfiable:
        if run.unsupported:
            feats = ", ".join(f"{f} ({n} cases)" for f, n in sorted(run.unsupported.items()))
            return result("skip", f"no supported case could be drawn: every case needed a feature the backend "
                                  f"declared unsupported: {feats}")
        return result("skip", f"no valid case of cell {', '.join(allowed)} could be drawn")
    except Exception as exc:  # noqa: BLE001 - any failure of the property is reported, not raised
        if run.deadline_passed:  # the run was cut by the checker's own time limit, not by the backend
            return _timed_out(run, PropertyTimeout(f"no result within {limit:g} s"), limit, prop_name, result,
                              failed, failure_text)
        return failed(exc, run.case)
    return result("pass")


def _timed_out(run, exc, limit, prop_name, result, failed, failure_text):
    advice = (f"if the backend is just slow (e.g. it compiles each new shape), raise the limit with "
              f"--timeout (now {limit:g} s)")
    in_flight = run.in_flight
    hung = in_flight >= HANG_FRACTION * limit
    if run.failure is not None:
        fexc, case = run.failure
        res = failed(fexc, case, f" (timed out after {limit:g} s while shrinking this failure: the smallest "
                                 f"failing case found so far is shown; {advice} for a smaller one)")
        res.timed_out, res.hung = True, hung
        return res
    what = f"one call had not returned after {in_flight:.0f} s (a hang is a failure)" if hung else \
        f"{run.calls} examples finished"
    msg = f"{prop_name}: timed out: {exc} ({what}); {advice}"
    return result("fail", msg, failure_text(msg, None, run.case), timed_out=True, hung=hung)


def after_hang_limit(profile, timeout_s=None):
    """The time limit of a backend's properties after one of them hung."""
    limit = DEFAULT_TIMEOUT_S.get(profile, 300.0) if timeout_s is None else timeout_s
    return min(limit, AFTER_HANG_S)


def check_backend(backend, expected_failures=None, *, profile="ci", max_examples=None, seed=None,
                  properties=None, timeout_s=None, progress=None, caps: Optional[Caps] = None,
                  dtype=None, fail_fast=False, cells=None, strict=False, shrink_s=None, shrink_examples=None,
                  database=None) -> Report:
    """Run the conformance properties against ``backend`` (an object, or a name for
    ``implementations.get_backend``; "name[float32]" picks the dtype).

    expected_failures: {property: reason}; such a property that fails is "xfail".
    properties: the names to run (default: all, in ``checks.PROPERTIES`` order).
    timeout_s: time limit of each property (default per profile, DEFAULT_TIMEOUT_S).
    progress: called as progress(backend_name, property, result_or_None) before and
    after each property.
    caps: the size caps of the cases (default: ``hypothesis_helpers.caps_for(backend)``).
    dtype: the dtype when ``backend`` is a name without one (default float64).
    fail_fast: stop at the first failing property (the report then holds only the
    properties run so far).
    cells: the cells to draw ("elman", "lstm", "gru"; default all).
    strict: a feature the backend declares unsupported is a failure.
    shrink_s, shrink_examples: how long the shrinking of a failure may take (default
    SHRINK_S[profile] seconds and SHRINK_EXAMPLES[profile] examples).
    seed: the run's seed (default: 0 for ci, a random one otherwise; in ``report.seed``).
    database: a directory for Hypothesis's example database, shared between runs,
    processes or machines (default none).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(map(repr, PROFILES))}; got {profile!r}")
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {', '.join(PROPERTIES)}")
    expected_failures = dict(expected_failures or {})
    unknown = [n for n in expected_failures if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"expected_failures names unknown properties {unknown}; known: {', '.join(PROPERTIES)}")
    bad_cells = [c for c in cells or () if c not in CELL_NAMES]
    if bad_cells:
        raise ValueError(f"cells must be among {', '.join(map(repr, CELL_NAMES))}; got {bad_cells}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds; got {timeout_s!r}")
    seed = default_seed(profile, seed)
    obj, shown, replay_name = resolve(backend, dtype)
    report = Report(shown, dtype=str(getattr(obj, "dtype", "float64")), seed=seed, profile=profile)
    known = {}
    hung_in = None
    t0 = time.perf_counter()
    for name in names:
        if progress:
            progress(shown, name, None)
        limit = timeout_s if hung_in is None else after_hang_limit(profile, timeout_s)
        res = run_property(obj, name, profile=profile, max_examples=max_examples, seed=seed, caps=caps,
                           timeout_s=limit, replay_name=replay_name, cells=cells, strict=strict,
                           shrink_s=shrink_s, shrink_examples=shrink_examples, known_unsupported=known,
                           database=database)
        if res.timed_out and hung_in is not None:
            res.message += (f" (the limit was cut to {limit:g} s after the backend hung in {hung_in!r}; rerun this "
                            f"property alone with --property {name})")
        if res.hung and hung_in is None:
            hung_in = name
        if name in expected_failures:
            reason = expected_failures[name]
            if res.status == "fail":
                res.status, res.message = "xfail", f"expected to fail ({reason}): {res.message}"
            elif res.status == "pass":
                res.message = f"expected to fail ({reason}) but passed"
        report.results[name] = res
        if progress:
            progress(shown, name, res)
        if fail_fast and res.status == "fail":
            break
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["check_backend", "run_property", "Report", "PropertyResult", "merge", "format_table", "resolve",
           "split_name", "display_name", "backend_targets", "PropertyTimeout", "call_with_time_limit", "STATUSES",
           "DEFAULT_TIMEOUT_S", "SHRINK_S", "SHRINK_EXAMPLES", "feature_of", "writable_copy", "default_seed", "cell_of"]
