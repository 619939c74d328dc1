"""One notion of "the same answer" per task: votes group only answers the task's own check
grades alike, in strategies (Task.same) and in lab replays (Pool.canonical) alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

import testtime.tasks  # noqa: F401  (registers the tasks)
from testtime.core.answers import equivalent
from testtime.core.types import Candidate, Problem
from testtime.core.voting import group, majority
from testtime.lab.analysis.pools import Pool
from testtime.tasks.base import TASKS, Task

ARITHMETIC = TASKS.build(TASKS.spec("arithmetic", {"size": 40}))
PROBLEMS = ARITHMETIC.problems()


def spellings(n: int) -> list[str]:
    """Ways a model writes the number n, some of which the task's check accepts."""
    out = [str(n), f"{n}.0", f" {n} ", f"+{n}", f"0{n}" if n >= 0 else str(n), f"{n}.",
           f"{2 * n}/2", f"${n}", f"**{n}**", f"\\frac{{{2 * n}}}{{2}}", f"{n} apples"]  # fmt: skip
    return out + (["-0", "0.00"] if n == 0 else [])


@st.composite
def answers(draw: st.DrawFn, gold: int) -> str:
    """An answer string the default task's samples could hold for a problem with this gold."""
    n = draw(st.integers(gold - 3, gold + 3))
    a, b = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    return draw(st.sampled_from([
        *spellings(n), f"{a} + {b} = {n}", f"{a} - {b} = {n}", f"{a} - {b}", f"{a} + {b}",
        "Five", "I don't know", f"{n} = {a} + {b}",
    ]))  # fmt: skip


@st.composite
def pools(draw: st.DrawFn) -> tuple[Problem, list[str | None]]:
    problem = draw(st.sampled_from(PROBLEMS))
    gold = int(problem.answer or 0)
    pool = draw(st.lists(st.one_of(st.none(), answers(gold)), min_size=1, max_size=16))
    return problem, pool


def graded(task: Task, problem: Problem, groups: Sequence[Sequence[str]]) -> list[set[bool]]:
    return [{task.check(problem, a) for a in members} for members in groups]


@settings(max_examples=300, deadline=None)
@given(pools())
def test_every_vote_group_is_all_correct_or_all_wrong(
    drawn: tuple[Problem, list[str | None]],
) -> None:
    problem, pool = drawn
    cands = [Candidate("", a, id=i) for i, a in enumerate(pool)]
    voted = [[pool[i] or "" for i in g.members] for g in group(cands, same=ARITHMETIC.same)]
    assert all(len(grades) == 1 for grades in graded(ARITHMETIC, problem, voted)), voted

    replayed: dict[str, list[str]] = defaultdict(list)  # as the lab's replay groups them
    store = Pool(answers=list(pool), correct=[0.0] * len(pool))
    for answer, key in zip(pool, store.canonical(), strict=True):
        if answer is not None and key is not None:
            replayed[key].append(answer)
    assert sorted(map(sorted, replayed.values())) == sorted(map(sorted, voted))


def test_the_old_equivalence_pooled_a_wrong_answer_with_a_right_one() -> None:
    """core's `equivalent` merged '2 + 3 = 5' (graded wrong) with '5' (right): majority
    over it read the wrong group as right."""
    problem = next(p for p in PROBLEMS if p.answer == "5")
    pool = ["2 + 3 = 5", "2 + 3 = 5", "2 + 3 = 5", "5", "5", "4"]
    assert equivalent("2 + 3 = 5", "5") and not ARITHMETIC.check(problem, "2 + 3 = 5")
    cands = [Candidate("", a, id=i) for i, a in enumerate(pool)]
    loose = majority(cands, same=equivalent)
    assert loose is not None and loose.count == 5  # the 3 wrong and 2 right, as one vote
    top = majority(cands, same=ARITHMETIC.same)
    assert top is not None and (top.answer, top.count) == ("2 + 3 = 5", 3)
    assert not ARITHMETIC.check(problem, top.answer)  # the vote is wrong, and says so


def test_the_lab_replays_votes_with_every_tasks_notion() -> None:
    """The lab groups stored answers by each task's `canonical` (analysis.replay.canonicals), so a
    task may refine `canonical` but never vote by a `same` of its own, which the lab could not
    replay; and the lab does take each task's canonical."""
    from testtime.lab.analysis.replay import canonicals
    from testtime.lab.data.spec import parse_spec, spec_key

    assert [cls for cls in _subclasses(Task) if "same" in vars(cls)] == [Task]
    spec = parse_spec({
        "model": "fake", "tasks": ["arithmetic", "pyfunc", "instructions"],
        "budgets": [1], "strategies": ["self_consistency"],
    })  # fmt: skip

    class Stored:
        def run(self, run_id: str) -> dict[str, object]:
            return {"spec": spec.to_dict()}

    canon = canonicals(Stored(), "run")  # type: ignore[arg-type]
    program = "def f(x):\n    return x  # same"
    assert canon[spec_key(spec.tasks[0])]("-0") == canon[spec_key(spec.tasks[0])]("0")
    assert canon[spec_key(spec.tasks[1])](program) == "def f(x):\n    return x"
    assert canon[spec_key(spec.tasks[2])]("  Hello  ") == "Hello"


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out
