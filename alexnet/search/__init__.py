"""Search, not only grids: our Optuna sweeper (hydra/sweeper=optuna) and what a trial's run does
for it (report each epoch's score to the study, stop when the pruner says so)."""
