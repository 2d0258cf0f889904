"""Every available backend (or those named with --bptt-backend) against every
conformance property, one test per pair."""
import pytest


def test_property(bptt_backend_name, bptt_property, bptt_result):
    res = bptt_result(bptt_backend_name, bptt_property)
    if res.status == "skip":
        pytest.skip(res.message)
    assert res.status == "pass", res.counterexample
    assert res.examples > 0, res.message
