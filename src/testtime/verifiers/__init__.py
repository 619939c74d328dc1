"""Verifiers: what judges a candidate."""
