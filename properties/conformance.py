"""Run the conformance properties against one backend, with Hypothesis.

    from properties.conformance import check_backend
    report = check_backend("numpy", profile="ci")               # or a backend object
    report.passed, report.results["bptt"].status, report.to_dict()

Each property runs as its own Hypothesis test, built here, under the settings of
the chosen profile and under a time limit: a crash, a wrong shape, a NaN, or a hang
is a failure of that property and the run goes on with the next. The report holds,
per property, the status ("pass", "fail", "skip", "xfail"), the number of examples
actually run (every call of the property, shrinking included), the largest error
seen, and for a failure the shrunk counterexample with the command that replays it.
"""
from __future__ import annotations

import random
import re
import shlex
import signal
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

from hypothesis import given, seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from .checks import PROPERTIES, PropertyFailure, describe_case
from .hypothesis_helpers import PROFILES, Caps, caps_for, labelled, profile_settings

STATUSES = ("pass", "fail", "skip", "xfail")
#: Time limit of one property (seconds), per profile, when none is given.
DEFAULT_TIMEOUT_S = {"ci": 120.0, "dev": 300.0, "thorough": 3600.0}


@dataclass
class PropertyResult:
    status: str
    examples: int
    max_error: Optional[float]
    counterexample: Optional[str]
    replay: Optional[str] = None     # the command that replays the failure
    message: Optional[str] = None    # why it failed (or why it was skipped / expected to fail)
    seconds: float = 0.0

    def to_dict(self):
        """The four keys of contract section 5."""
        return {"status": self.status, "examples": self.examples, "max_error": self.max_error,
                "counterexample": self.counterexample}


@dataclass
class Report:
    backend: str
    results: dict = field(default_factory=dict)   # property name -> PropertyResult
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.status != "fail" for r in self.results.values())

    @property
    def failures(self) -> dict:
        return {n: r for n, r in self.results.items() if r.status == "fail"}

    def to_dict(self):
        return {"backends": {self.backend: {"properties": {n: r.to_dict() for n, r in self.results.items()}}}}

    def __str__(self):
        return format_table([self])


def merge(reports) -> dict:
    """Several reports as one JSON document of section 5."""
    out = {"backends": {}}
    for r in reports:
        out["backends"].update(r.to_dict()["backends"])
    return out


def format_table(reports) -> str:
    rows = [("backend", "property", "status", "examples", "max error", "seconds")]
    for rep in reports:
        for name, r in rep.results.items():
            err = "-" if r.max_error is None else f"{r.max_error:.2e}"
            rows.append((rep.backend, name, r.status, str(r.examples), err, f"{r.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
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
    """(backend object, display name, name for the replay command)."""
    if isinstance(backend, str):
        from implementations import get_backend

        name, suffix = split_name(backend)
        dt = suffix or dtype or "float64"
        obj = get_backend(name, dtype=dt)
        return obj, display_name(name, dt), display_name(name, dt)
    dt = str(getattr(backend, "dtype", "float64"))
    name = str(getattr(backend, "name", type(backend).__name__))
    cls = type(backend)
    importable = f"{cls.__module__}:{cls.__qualname__}" if "<" not in cls.__qualname__ else name
    return backend, display_name(name, dt), display_name(importable, dt)


def _supports(name, dtype):
    """Whether backend ``name`` can be built in ``dtype`` (a ValueError about the dtype says no)."""
    from implementations import get_backend

    try:
        get_backend(name, dtype=dtype)
        return True
    except ValueError as exc:
        if "dtype" in str(exc):
            return False
        raise


def backend_targets(names=None, dtypes=None):
    """The backend names to check, with their dtype: by default every name of
    ``available_backends()`` in float64 and also in float32 where it supports it
    ("numpy[float32]"); ``dtypes`` picks the dtypes instead, and a name may carry
    its own ("numpy[float32]"). Raises ValueError (RuntimeError for torch:cuda
    without CUDA) for a name that cannot be used."""
    from implementations import available_backends, get_backend

    out = []
    for raw in (names or available_backends()):
        name, suffix = split_name(raw)
        wanted = [suffix] if suffix else list(dtypes or ["float64", "float32"])
        explicit = bool(suffix or dtypes)
        get_backend(name, dtype=wanted[0] if explicit else "float64")  # unknown names fail here
        for dt in wanted:
            if not explicit and dt != "float64" and not _supports(name, dt):
                continue
            out.append(display_name(name, dt))
    return out


# ---------------------------------------------------------------------------
# Time limits


class CaseBuildError(RuntimeError):
    """The suite could not build a case (a bug in the suite, not in the backend)."""


class PropertyTimeout(BaseException):
    """Raised inside a property that ran past its time limit. A BaseException, so
    that Hypothesis does not take it for a failing example and try to shrink it."""


@contextmanager
def _alarm(seconds):
    def handler(signum, frame):
        raise PropertyTimeout(f"no result within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def call_with_time_limit(fn: Callable[[], None], seconds: Optional[float]):
    """Run fn; raise PropertyTimeout after ``seconds``. On the main thread of a POSIX
    process a SIGALRM interrupts the property (between Python bytecodes, so also a
    Python-level infinite loop); elsewhere fn runs in a daemon thread that is
    abandoned when it overruns (its result is ignored)."""
    if not seconds:
        return fn()
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
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


def replay_command(backend_name, prop, profile, seed, max_examples):
    cmd = ["bptt-suite", "check", "--backend", backend_name, "--property", prop, "--profile", profile]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if max_examples is not None:
        cmd += ["--max-examples", str(max_examples)]
    return " ".join(shlex.quote(c) for c in cmd)


def _blob(exc):
    for note in getattr(exc, "__notes__", []) or []:
        m = re.search(r"@reproduce_failure\(.*\)", note)
        if m:
            return m.group(0)
    return None


def run_property(backend, prop_name, *, profile="ci", max_examples=None, seed=None, caps: Optional[Caps] = None,
                 timeout_s=None, replay_name=None) -> PropertyResult:
    """One property against one backend object, as a Hypothesis test."""
    prop = PROPERTIES[prop_name]
    caps = caps or caps_for(backend)
    s = profile_settings(profile, max_examples)
    s = profile_settings(profile, s.max_examples * prop.examples_factor)
    state = {"calls": 0, "worst": None, "case": None}

    @s
    @given(data=st.data())
    def test(data):
        state["case"] = None
        try:
            case = prop.build(labelled(data), caps)
        except Exception as exc:  # noqa: BLE001 - reported as a fault of the suite, not of the backend
            raise CaseBuildError(f"building the case failed: {type(exc).__name__}: {exc}") from exc
        state["case"] = case
        state["calls"] += 1
        err = prop.check(backend, case)
        if err is not None:
            state["worst"] = err if state["worst"] is None else max(state["worst"], err)

    if seed is None and not PROFILES[profile].get("derandomize"):
        seed = random.SystemRandom().getrandbits(32)  # drawn here so that the failure can be replayed
    # Each property gets its own stream of examples (a derandomized profile would
    # otherwise give every property the same one): the run seed mixed with the name.
    test = hypothesis_seed(zlib.crc32(prop_name.encode()) ^ (seed or 0))(test)
    replay = replay_command(replay_name or getattr(backend, "name", "?"), prop_name, profile, seed, max_examples)
    limit = DEFAULT_TIMEOUT_S.get(profile, 300.0) if timeout_s is None else timeout_s
    t0 = time.perf_counter()

    def result(status, message=None, counterexample=None, error=None):
        worst = state["worst"]
        if error is not None:
            worst = error if worst is None else max(worst, error)
        return PropertyResult(status, state["calls"], worst, counterexample,
                              replay if status == "fail" else None, message, time.perf_counter() - t0)

    try:
        call_with_time_limit(test, limit)
    except PropertyTimeout as exc:
        case = describe_case(state["case"]) if state["case"] is not None else "(no case drawn)"
        msg = f"{prop_name}: timed out: {exc}, in example {state['calls']} (a hang is a failure)"
        return result("fail", msg, f"{msg}\n{case}\nreplay: {replay}")
    except Unsatisfiable as exc:
        return result("skip", f"no valid example could be drawn: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure of the property is reported, not raised
        if isinstance(exc, PropertyFailure):
            msg, error = f"{prop_name}: {exc}", exc.error
        elif isinstance(exc, CaseBuildError):
            msg, error = f"{prop_name}: {exc} (a bug in the suite)", None
        else:
            msg, error = f"{prop_name}: the backend raised {type(exc).__name__}: {exc}", None
        case = describe_case(state["case"]) if state["case"] is not None else "(no case drawn)"
        blob = _blob(exc)
        text = f"{msg}\ncase:\n{case}\nreplay: {replay}" + (f"\nor add {blob} to a test" if blob else "")
        return result("fail", msg, text, error)
    return result("pass")


def check_backend(backend, expected_failures=None, *, profile="ci", max_examples=None, seed=None,
                  properties=None, timeout_s=None, progress=None, caps: Optional[Caps] = None,
                  dtype=None, fail_fast=False) -> Report:
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
    obj, shown, replay_name = resolve(backend, dtype)
    report = Report(shown)
    t0 = time.perf_counter()
    for name in names:
        if progress:
            progress(shown, name, None)
        with _one_torch_thread():
            res = run_property(obj, name, profile=profile, max_examples=max_examples, seed=seed, caps=caps,
                               timeout_s=timeout_s, replay_name=replay_name)
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
           "split_name", "display_name", "backend_targets", "PropertyTimeout", "call_with_time_limit", "STATUSES"]
