"""The property suite: Hypothesis strategies, the conformance properties of the
backend contract, the checker that runs them against a backend, and the command
line ``bptt-suite``."""
from .conformance import PropertyResult, Report, check_backend

__all__ = ["check_backend", "Report", "PropertyResult"]
