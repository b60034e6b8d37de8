"""Sweeps that survive: per-epoch checkpoints, resuming a run dir, and stopping at a safe point."""
