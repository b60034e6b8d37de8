"""Experiment tracking (`logger=`): MLflow and TensorBoard mirror a run's own files, the source of truth."""
