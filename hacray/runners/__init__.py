"""Ways to run the algorithm: one process (local) or Ray actors (distributed)."""
