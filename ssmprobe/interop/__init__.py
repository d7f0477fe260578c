"""Checkpoints of other code bases: the paper's reference code (`reference`)."""
