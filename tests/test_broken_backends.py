"""The power of the suite: every deliberately broken backend is flagged by the ci
profile. (That every correct built-in backend passes is properties/test_conformance.py.)"""
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
