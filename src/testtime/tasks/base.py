"""The task interface: a source of problems, plus how to read, compare and check an answer."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from testtime.core.answers import canonical, equivalent, extract
from testtime.core.cost import Cost
from testtime.core.registry import Registry
from testtime.core.structured import canonical_json
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

    def graded(self, problem: Problem) -> bool:
        """Whether `check` can grade answers to `problem` (it has a gold answer or tests)."""
        return problem.answer is not None

    async def grade(
        self, problem: Problem, answers: Sequence[str | None]
    ) -> tuple[tuple[bool, ...], Cost]:
        """`check` on each answer, and what checking cost (sandbox seconds for code).
        A task whose check runs code overrides this to run the answers concurrently, off
        the event loop; the default runs the (cheap) `check` inline."""
        await asyncio.sleep(0)
        return tuple(self.check(problem, a) for a in answers), Cost()

    @staticmethod
    def canonical(answer: str) -> str:
        """The form this task's votes group answers by. It must never merge two answers its
        `check` could grade differently (a vote would pool a right answer with a wrong one).
        The default, core's `canonical`, merges only spellings of one number ('-0', '0.0',
        '0'), which every check here grades alike; the lab replays stored votes with it.
        Static: it depends on the kind of task, not on its data, so the lab regroups a
        stored run's answers without building its tasks (`canonical_of`)."""
        return canonical(answer)

    def same(self, a: str, b: str) -> bool:
        """Whether two answers are one vote for this task (strategies vote with this)."""
        return self.canonical(a) == self.canonical(b)


TaskFactory = Callable[..., Task]
TASKS: Registry[TaskFactory] = Registry("task")  # traits: the Task class a factory builds


def canonical_of(name: str) -> Callable[[str], str] | None:
    """Registered task `name`'s `canonical`, read from the class its registration says it
    builds, without building it (which may load a dataset); None when it declares none."""
    built = TASKS.get(name).traits
    return built.canonical if isinstance(built, type) and issubclass(built, Task) else None


class FreeForm(Task):
    """Ad-hoc prompts: default extraction, equivalence with a gold answer when one is given."""

    name = "prompt"

    def problems(self) -> Sequence[Problem]:
        return ()


class JsonAnswers(FreeForm):
    """Ad-hoc prompts answered in JSON (a response_format): a sample's answer is its JSON
    value in canonical form (`core.structured`), so votes group parsed values; a gold answer
    is right when it is the same value."""

    name = "json"

    def extract(self, text: str) -> str | None:
        return canonical_json(text)

    def check(self, problem: Problem, answer: str | None) -> bool:
        gold = None if problem.answer is None else canonical_json(problem.answer)
        return answer is not None and gold is not None and canonical_json(answer) == gold

    @staticmethod
    def canonical(answer: str) -> str:
        return canonical_json(answer) or answer.strip()
