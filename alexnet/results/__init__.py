"""What runs leave on disk (records) and what is made of many runs (tables, plots)."""
