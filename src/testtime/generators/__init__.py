"""Generators: the policy model behind one backend (transformers engine, fake, ...)."""

from testtime.generators.base import Generation, Generator

__all__ = ["Generation", "Generator"]
