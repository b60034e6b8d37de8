"""`python -m alexnet.bench`: what the speed work is worth, measured (see __main__.py)."""
