"""A run while it lives: its record, its statuses, and whether a `running` record is really alive."""
