"""What a run teaches: compute-optimal policies learned from it, and training data for probes."""
