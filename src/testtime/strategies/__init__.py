"""Strategies: how compute is spent on one problem."""
