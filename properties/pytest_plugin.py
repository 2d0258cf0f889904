"""pytest plugin (entry point ``pytest11``: bptt_suite): check any backend in a pytest run.

    pytest --pyargs properties --bptt-backend mypkg.backends:MyBackend
    pytest properties --bptt-backend numpy[float32] --bptt-profile dev
    pytest --pyargs properties -n 4 --bptt-database .bptt-examples     # pytest-xdist: 4 processes

Options: ``--bptt-backend NAME`` (repeatable; default: every available backend, in
float64 and in float32 where supported), ``--bptt-profile``, ``--bptt-seed``,
``--bptt-cell`` (repeatable), ``--bptt-strict``, ``--bptt-timeout`` and
``--bptt-database DIR`` (a Hypothesis example database shared by processes, runs and
machines). A test that takes the fixture ``bptt_backend_name`` (and ``bptt_property``)
is parametrized over the chosen backends (and all properties). Fixtures:

- ``bptt_result(name, property)`` -> PropertyResult, one Hypothesis run per pair and
  session (cached, so several tests can look at the same result);
- ``bptt_backend``: the backend object of ``bptt_backend_name``;
- ``bptt_assert_conforms(backend, expected_failures=None, **kw)``: runs
  ``check_backend`` and fails the test with every counterexample when a property fails.

Under pytest-xdist (``-n N``) each (backend, property) test runs in one of the worker
processes; the seed is drawn once, by the controller, and handed to every worker, so
the run is one run with one seed (shown in the header) whatever the number of workers.

A backend that cannot be built here (torch:cuda without CUDA) is skipped.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("bptt-suite", "conformance of BPTT backends")
    group.addoption("--bptt-backend", action="append", default=[], metavar="NAME",
                    help="backend to check (repeatable): a built-in name, NAME[float32], or package.module:attr")
    group.addoption("--bptt-profile", default="ci", choices=["ci", "dev", "thorough"],
                    help="Hypothesis profile of the conformance properties (default: ci)")
    group.addoption("--bptt-seed", type=int, default=None, help="seed of the example generation")
    group.addoption("--bptt-cell", action="append", default=[], choices=["elman", "lstm", "gru"],
                    help="draw only cases of this cell (repeatable; default: all)")
    group.addoption("--bptt-strict", action="store_true", help="a feature the backend declares unsupported fails")
    group.addoption("--bptt-timeout", type=float, default=None, metavar="S", help="time limit of one property")
    group.addoption("--bptt-database", default=None, metavar="DIR",
                    help="Hypothesis example database directory shared by processes, runs and machines")


def _seed(config):
    """The run's seed: the one given, the controller's (under xdist), or drawn here once."""
    if not hasattr(config, "_bptt_seed"):
        worker = getattr(config, "workerinput", None)
        if worker is not None and "bptt_seed" in worker:
            config._bptt_seed = worker["bptt_seed"]
        else:
            from .conformance import default_seed

            config._bptt_seed = default_seed(config.getoption("--bptt-profile"), config.getoption("--bptt-seed"))
    return config._bptt_seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: every worker gets the controller's seed."""
    node.workerinput["bptt_seed"] = _seed(node.config)


def pytest_report_header(config):
    if getattr(config, "workerinput", None) is None:
        return f"bptt-suite: profile {config.getoption('--bptt-profile')}, seed {_seed(config)}"
    return None


def _options(config):
    return dict(profile=config.getoption("--bptt-profile"), seed=_seed(config),
                cells=config.getoption("--bptt-cell") or None, strict=config.getoption("--bptt-strict"),
                timeout_s=config.getoption("--bptt-timeout"), database=config.getoption("--bptt-database"))


def _names(config):
    from .conformance import backend_targets

    chosen = config.getoption("--bptt-backend") or None
    if not chosen:
        return backend_targets()
    out = []
    for name in chosen:
        try:
            out.extend(backend_targets([name]))
        except RuntimeError:  # e.g. torch:cuda without CUDA: kept, and skipped by the fixture
            out.append(name)
    return out


def pytest_generate_tests(metafunc):
    if "bptt_backend_name" in metafunc.fixturenames:
        names = _names(metafunc.config)
        metafunc.parametrize("bptt_backend_name", names, ids=names)
    if "bptt_property" in metafunc.fixturenames:
        from .checks import PROPERTIES

        metafunc.parametrize("bptt_property", list(PROPERTIES))


def _build(name):
    from .conformance import resolve

    try:
        return resolve(name)[0]
    except RuntimeError as exc:  # torch:cuda without CUDA
        pytest.skip(f"backend {name!r} cannot run here: {exc}")


@pytest.fixture
def bptt_backend(bptt_backend_name):
    return _build(bptt_backend_name)


@pytest.fixture(scope="session")
def bptt_result(request):
    """result(name, property) -> PropertyResult (cached for the session)."""
    from .conformance import check_backend

    cache = {}
    options = _options(request.config)

    def result(name, prop):
        key = (name, prop)
        if key not in cache:
            backend = _build(name)
            cache[key] = check_backend(backend, properties=[prop], **options).results[prop]
        return cache[key]
    return result


@pytest.fixture
def bptt_assert_conforms(request):
    from .conformance import check_backend

    options = _options(request.config)

    def run(backend, expected_failures=None, **kw):
        for k, v in options.items():
            kw.setdefault(k, v)
        report = check_backend(backend, expected_failures, **kw)
        if not report.passed:
            pytest.fail("\n\n".join(f"{n}: {r.counterexample}" for n, r in report.failures.items()), pytrace=False)
        return report
    return run
