"""Examples for people who write their own BPTT backend (not an installed package)."""
