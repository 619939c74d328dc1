"""The task interface: a source of problems, plus how to read and check an answer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from testtime.core.answers import equivalent, extract
from testtime.core.registry import Registry
from testtime.core.types import Problem


class Task(ABC):
    """Problems, answer extraction, and the gold check (the oracle)."""

    name: str = "task"
    extractor: str = "auto"

    @abstractmethod
    def problems(self) -> Sequence[Problem]:
        """All problems of this task, in a fixed order."""

    def extract(self, text: str) -> str | None:
        """The final answer in a completion, or None if it has none."""
        return extract(text, self.extractor)

    def check(self, problem: Problem, answer: str | None) -> bool:
        """Whether `answer` is correct for `problem` (False without a gold answer)."""
        if answer is None or problem.answer is None:
            return False
        return equivalent(answer, problem.answer)


TaskFactory = Callable[..., Task]
TASKS: Registry[TaskFactory] = Registry("task")


class FreeForm(Task):
    """Ad-hoc prompts: default extraction, equivalence with a gold answer when one is given."""

    name = "prompt"

    def problems(self) -> Sequence[Problem]:
        return ()
