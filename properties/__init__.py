"""Properties of BPTT: the conformance checks and the vanishing/exploding gradient laws."""
