"""The conformance properties: each is a plain function ``prop(backend, case)``.

A property returns the worst error it saw as a fraction of what was allowed (<= 1
when it holds; a float or ``results.Measured`` with the raw numbers; None when
nothing numeric was compared) and raises ``PropertyFailure`` (an AssertionError)
listing every quantity that broke its tolerance, worst first, with where it occurred
(array, index, time step) and the tolerance. Each comes with the builder of its cases
(``PROPERTIES[name].build(draw, caps, cells)``) and says which cells it applies to and
which backend features it needs, so that ``conformance.check_backend`` can drive it
with Hypothesis and a user can call it directly on a case of their own.

Where to find a property:

    agreement.py    forward, bptt, rtrl, finite_differences
    truncation.py   truncation_full, truncation_cut, dhs_presence
    elman_laws.py   decay_bound, orthogonal_law, growth_law, truncation_error_bound (Elman cells)
    carousel.py     lstm_carousel, gru_carousel (the exact laws of the gated cells)
    clipping.py     clipping
    bad_input.py    errors (and the generator of bad calls)
    hygiene.py      determinism, inputs_untouched
    registry.py     PROPERTIES: name -> (property, case builder, cells, needs)

and what they share: ``results.py`` (result checks, ``Comparison``, ``Measured``,
``Unsupported``) and ``oracle.py`` (the reference's answer, its measured conditioning
and rounding floors). This module gathers them under one name.
"""
from .agreement import prop_bptt, prop_finite_differences, prop_forward, prop_rtrl
from .bad_input import BadInput, build_bad_input, prop_errors
from .carousel import prop_gru_carousel, prop_lstm_carousel
from .clipping import prop_clipping
from .elman_laws import prop_decay_bound, prop_growth_law, prop_orthogonal_law, prop_truncation_error_bound
from .hygiene import prop_determinism, prop_inputs_untouched
from .oracle import perturbed, rounding_floor
from .registry import PROPERTIES, Property, describe_case
from .results import Comparison, Measured, PropertyFailure, Unsupported, check_bptt_result, check_forward_result
from .truncation import direct_truncated, prop_dhs_presence, prop_truncation_cut, prop_truncation_full

__all__ = ["PropertyFailure", "Measured", "Unsupported", "PROPERTIES", "Property", "Comparison", "check_bptt_result",
           "check_forward_result", "direct_truncated", "perturbed", "rounding_floor", "describe_case", "BadInput",
           "build_bad_input", "prop_forward", "prop_bptt", "prop_rtrl", "prop_finite_differences",
           "prop_truncation_full", "prop_truncation_cut", "prop_dhs_presence", "prop_decay_bound",
           "prop_orthogonal_law", "prop_growth_law", "prop_truncation_error_bound", "prop_lstm_carousel",
           "prop_gru_carousel", "prop_clipping", "prop_errors", "prop_determinism", "prop_inputs_untouched"]
