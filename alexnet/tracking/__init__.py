"""Experiment tracking (`logger=` config group): MLflow and TensorBoard mirror what a run writes
to its own files, which stay the source of truth."""
