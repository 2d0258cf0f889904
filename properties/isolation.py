"""Each backend checked in a child process of its own, so that a crash of the backend
(a segfault, an abort, memory exhausted, a hang in C code that no signal interrupts)
loses at most the property that was running.

    report = check_isolated("numpy[float32]", on_start=..., on_result=..., profile="ci", ...)

The child runs ``conformance.check_backend`` on the backend's name and sends each
property's result back as it finishes. When the child dies, the running property is
a failure that says how the process ended, and a new child runs the properties that
are left. When a property runs past its time limit plus ``GRACE_S`` without the
child's own timer stopping it, the child is killed (a hang is a failure) and the
backend's remaining properties run in a new child under a short limit each
(``conformance.AFTER_HANG_S``), as in-process after a hang. The child
ignores Ctrl-C: the parent handles it (kills the child and keeps what finished). A
child whose parent is gone (killed by SIGTERM, say) stops at its next report, quietly.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import traceback

from .conformance import DEFAULT_TIMEOUT_S, PropertyResult, Report, after_hang_limit, replay_command

#: How long past a property's time limit the parent waits before it kills the child.
GRACE_S = 30.0


def _child(conn, name, kwargs):
    """The child: check the backend, sending ("start", prop), ("result", prop, result) and
    ("done", dtype, seconds), or ("error", text) when the check itself cannot run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from .conformance import check_backend

        def progress(backend, prop, res):
            conn.send(("start", prop) if res is None else ("result", prop, res))

        report = check_backend(name, progress=progress, **kwargs)
        conn.send(("done", report.dtype, report.seconds))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        # (a parent that is gone, killed by SIGTERM say, leaves no one to tell: stop quietly)
        with contextlib.suppress(BrokenPipeError):
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def _context():
    """Children forked from a server that has imported the suite, numpy, the built-in
    backends and torch (when installed) once, instead of a fresh interpreter per backend
    that pays ~2 s of imports; a fresh interpreter ("spawn") where there is no fork."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["properties.conformance", "implementations.backends", "torch"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _sigint_held():
    """SIGINT blocked (delivered when the block ends) where the platform can block
    signals; else ignored for the duration."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    else:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)


def _how_it_ended(proc):
    code = proc.exitcode
    if code is None:
        return "did not end"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _dead(prop, why, replay, rest=True):
    msg = f"{prop}: {why}" + ("; the properties before it are kept and the rest run in a new process" if rest else "")
    return PropertyResult("fail", 0, None, f"{msg}\nreplay: {replay}", replay, msg)


def check_isolated(name, *, on_start=None, on_result=None, properties, profile="ci", seed=None, max_examples=None,
                   timeout_s=None, cells=None, strict=False, **kwargs) -> Report:
    """check_backend(name, ...) in child processes; on_start(prop) and on_result(prop,
    result) are called as the child reports. ``name`` must be a backend name (the child
    builds the backend itself)."""
    ctx = _context()
    kw = dict(kwargs, properties=None, profile=profile, seed=seed, max_examples=max_examples, timeout_s=timeout_s,
              cells=cells, strict=strict)
    limit = DEFAULT_TIMEOUT_S.get(profile, 300.0) if timeout_s is None else timeout_s
    report = Report(name, seed=seed, profile=profile)
    remaining = list(properties)
    t0 = time.perf_counter()

    def record(prop, res):
        report.results[prop] = res
        if prop in remaining:
            remaining.remove(prop)
        if on_result:
            on_result(prop, res)

    while remaining:
        kw["properties"] = list(remaining)
        parent, child = ctx.Pipe(duplex=False)
        # The child starts with Ctrl-C held back (and ignores it from its first line on); the
        # parent's own Ctrl-C during the start is held too, not dropped, and raised right after.
        with _sigint_held():
            proc = ctx.Process(target=_child, args=(child, name, kw), daemon=True, name=f"bptt-suite {name}")
            proc.start()
        child.close()
        running, started, done, hung, error = None, None, False, False, None
        try:
            while True:
                if parent.poll(0.5):
                    try:
                        msg = parent.recv()
                    except EOFError:
                        break
                    if msg[0] == "start":
                        running, started = msg[1], time.perf_counter()
                        if on_start:
                            on_start(running)
                    elif msg[0] == "result":
                        record(msg[1], msg[2])
                        running = None
                        if msg[2].hung:  # the child cuts the limit of the rest; so does the watchdog
                            limit = after_hang_limit(profile, timeout_s)
                    elif msg[0] == "done":
                        report.dtype, done = msg[1], True
                        break
                    else:  # the check itself could not run there: every property left says why
                        error = msg[1]
                        break
                elif running is not None and time.perf_counter() - started > limit + GRACE_S:
                    hung = True
                    break
                elif not proc.is_alive() and not parent.poll(0):
                    break
        finally:
            if proc.is_alive() and not done:
                proc.kill()
            proc.join(10)
            parent.close()
        if done:
            break
        replay = replay_command(name, running or remaining[0], profile, seed, max_examples, cells, strict)
        if error is not None:
            for prop in list(remaining):
                record(prop, _dead(prop, f"the check could not run in the backend's process: {error}", replay,
                                   rest=False))
            break
        if hung:
            res = _dead(running, f"timed out: no result within {limit:g} s + {GRACE_S:g} s, and the backend's "
                                 f"process did not respond (killed; a hang is a failure; if the backend is just "
                                 f"slow, raise --timeout)", replay)
            res.timed_out = res.hung = True
            record(running, res)
            kw["timeout_s"] = limit = after_hang_limit(profile, timeout_s)  # the rest: a short limit each
            continue
        if running is None:  # died before starting a property: loading the backend crashed it
            why = f"the backend's process {_how_it_ended(proc)} before running any property"
            for prop in list(remaining):
                record(prop, _dead(prop, why, replay, rest=False))
            break
        record(running, _dead(running, f"the backend's process {_how_it_ended(proc)} while running this property "
                                       f"(a crash of the backend)", replay))
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["check_isolated", "GRACE_S"]
