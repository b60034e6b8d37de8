"""Running several jobs of a sweep at once: which device and how many threads each one gets."""
