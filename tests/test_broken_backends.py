"""The power of the suite: every deliberately broken backend is flagged by the ci
profile, by a real finding (not by an exception of the suite or a missing feature).
(That every correct built-in backend passes is properties/test_conformance.py.)"""
import pytest

from broken_backends import BROKEN
from properties.conformance import check_backend


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_backend_is_flagged(name):
    report = check_backend(BROKEN[name](), profile="ci", fail_fast=True)
    failed = report.failures
    assert failed, f"{name} ({BROKEN[name].__doc__.strip()}) passed every property: {report}"
    for prop, res in failed.items():
        # a failure is reported with its counterexample and the command that replays it
        assert res.counterexample and "bptt-suite check" in res.counterexample and res.replay
        assert res.examples > 0
        # ... and it is a finding about the numbers or the errors, not a crash or a missing feature
        assert "NotImplementedError" not in res.message and "a bug in the suite" not in res.message, res.message
