"""The reference: readable float64 BPTT of Elman, LSTM and GRU cells, and independent oracles."""
from .bptt import bptt, blocks, forward, loss_terms, run_bptt, run_forward, scored_steps, stack_states
from .cells import ACTIVATION, CELLS, Cell
from .finite_diff import directional_derivative, loss
from .jacobians import clip_by_global_norm, clip_by_value, global_norm, state_jacobian, step_jacobians
from .rtrl import rtrl, run_rtrl
from .types import ACTIVATION_SLOPE, ACTIVATIONS, OUTPUTS, TARGETS, BPTTResult, ForwardResult, RNNParams, RNNSpec, Truncation
from .validation import Case, validate_bptt, validate_forward

__all__ = [
    "RNNSpec", "RNNParams", "Truncation", "ForwardResult", "BPTTResult", "Case",
    "ACTIVATIONS", "OUTPUTS", "TARGETS", "ACTIVATION_SLOPE",
    "forward", "bptt", "rtrl", "run_forward", "run_bptt", "run_rtrl", "loss_terms", "stack_states",
    "CELLS", "Cell", "ACTIVATION", "loss", "directional_derivative", "blocks", "scored_steps",
    "step_jacobians", "state_jacobian", "global_norm", "clip_by_global_norm", "clip_by_value",
    "validate_forward", "validate_bptt",
]
