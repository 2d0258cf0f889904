"""The power of the suite: every deliberately broken backend is flagged by the ci
profile, and every correct built-in backend passes."""
import pytest

from broken_backends import BROKEN
from properties.checks import PROPERTIES
from properties.conformance import backend_targets, check_backend


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_backend_is_flagged(name):
    report = check_backend(BROKEN[name](), profile="ci", fail_fast=True)
    failed = report.failures
    assert failed, f"{name} ({BROKEN[name].__doc__.strip()}) passed every property: {report}"
    for prop, res in failed.items():
        # a failure is reported with its counterexample and the command that replays it
        assert res.counterexample and "bptt-suite check" in res.counterexample and res.replay
        assert res.examples > 0


@pytest.mark.parametrize("name", backend_targets())
def test_correct_builtin_backend_passes(name, bptt_result):
    bad = {p: r for p in PROPERTIES if (r := bptt_result(name, p)).status == "fail"}
    assert not bad, "\n\n".join(r.counterexample for r in bad.values())
