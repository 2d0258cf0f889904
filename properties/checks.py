"""The conformance properties: each is a plain function ``prop(backend, case)``.

A property returns the worst error it saw and raises ``PropertyFailure`` (an
AssertionError) with the worst absolute and relative error, where it occurred
(array, index, time step) and the tolerance, when the backend breaks it. Each comes
with the builder of its cases (``PROPERTIES[name].build(draw, caps)``), so that
``conformance.check_backend`` can drive it with Hypothesis and a user can call it
directly on a case of their own.

Where to find a property:

    agreement.py    forward, bptt, rtrl, finite_differences
    truncation.py   truncation_full, truncation_cut, dhs_presence
    elman_laws.py   decay_bound, orthogonal_law, growth_law, truncation_error_bound
    clipping.py     clipping
    bad_input.py    errors (and the generator of bad calls)
    hygiene.py      determinism, inputs_untouched
    registry.py     PROPERTIES: name -> (property, case builder, what it applies to)

and what they share: ``results.py`` (result checks, ``Comparison``) and ``oracle.py``
(the reference's answer, its measured conditioning and rounding floors). This module
gathers them under one name.
"""
from .agreement import prop_bptt, prop_finite_differences, prop_forward, prop_rtrl
from .bad_input import BadInput, build_bad_input, prop_errors
from .clipping import prop_clipping
from .elman_laws import prop_decay_bound, prop_growth_law, prop_orthogonal_law, prop_truncation_error_bound
from .hygiene import prop_determinism, prop_inputs_untouched
from .oracle import perturbed, rounding_floor
from .registry import PROPERTIES, Property, describe_case
from .results import Comparison, PropertyFailure, check_bptt_result, check_forward_result
from .truncation import direct_truncated, prop_dhs_presence, prop_truncation_cut, prop_truncation_full

__all__ = ["PropertyFailure", "PROPERTIES", "Property", "Comparison", "check_bptt_result", "check_forward_result",
           "direct_truncated", "perturbed", "rounding_floor", "describe_case", "BadInput", "build_bad_input",
           "prop_forward", "prop_bptt", "prop_rtrl", "prop_finite_differences", "prop_truncation_full",
           "prop_truncation_cut", "prop_dhs_presence", "prop_decay_bound", "prop_orthogonal_law", "prop_growth_law",
           "prop_truncation_error_bound", "prop_clipping", "prop_errors", "prop_determinism",
           "prop_inputs_untouched"]
