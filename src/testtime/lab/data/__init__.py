"""Experiment data: run specs, the units a run is cut into, the rows they store, the store."""
