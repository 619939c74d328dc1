"""Core: types, budget and cost, answer extraction and equivalence, voting, registry.

Everything above builds on these; nothing here imports a backend or a model library.
"""
