"""A run while it lives: its record (results.json, metrics.csv), its statuses, and whether a
record that says `running` is really alive. Training, resuming, launching and tracking use it;
the analysis of finished runs (alexnet/results/) reads what it wrote."""
