"""Search beyond grids: our Optuna sweeper (hydra/sweeper=optuna) and a trial run's pruning reports."""
