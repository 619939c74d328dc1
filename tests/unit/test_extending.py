"""docs/extending.md is true: a strategy, a verifier, a task and a backend are each one new file
plus one registry line, and nothing else.

The test follows the page literally. It copies the package, writes each file the page shows
(```python file=PATH) where the page says, and adds each registry line it shows
(```python registry=PATH) to that file's list, in the sorted place a person would put it.
It checks the copy differs from the package by exactly those files and lines; then, in fresh
interpreters that import the copy, each throwaway component works end to end through the
public API (`import testtime as tt`), the CLI, the lab and the server, and the invariant
suite (tests/unit/test_invariants.py) runs the new strategy with no edit to any test.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"```python (file|registry)=(\S+)\n(.*?)```", re.S)
KINDS = {
    "strategies": "strategy",
    "verifiers": "verifier",
    "tasks": "task",
    "generators": "backend",
}


@dataclass(frozen=True)
class Step:
    """One kind's steps as the page gives them: the new file and the registry line."""

    kind: str
    file: str  # e.g. src/testtime/strategies/first_agreement.py
    code: str
    registry: str  # e.g. src/testtime/strategies/__init__.py
    line: str

    @property
    def name(self) -> str:
        return Path(self.file).stem


def steps() -> dict[str, Step]:
    """Each kind's new file and registry line, read from the page."""
    files: dict[str, tuple[str, str]] = {}
    lines: dict[str, tuple[str, str]] = {}
    for what, path, body in BLOCK.findall(PAGE.read_text()):
        kind = KINDS[Path(path).parent.name]
        (files if what == "file" else lines)[kind] = (path, body)
    assert set(files) == set(lines) == set(KINDS.values()), "the page shows each kind's steps"
    out = {}
    for kind in KINDS.values():
        (file, code), (registry, line) = files[kind], lines[kind]
        assert line.count("\n") == 1, f"the {kind}'s registry step is one line"
        out[kind] = Step(kind, file, code, registry, line.rstrip("\n"))
    return out


STEPS = steps()


def add_entry(text: str, entry: str, name: str) -> str:
    """`text` with `entry` added to the list it belongs to, in sorted order: among the lines
    of its shape (one entry per line), or inside the one line that holds such entries."""
    shape = re.escape(entry.strip()).replace(name, r"\w+")
    lines = text.splitlines(keepends=True)
    own = [i for i, line in enumerate(lines) if re.fullmatch(shape, line.strip())]
    if own:
        at = next((i for i in own if lines[i].strip() > entry.strip()), own[-1] + 1)
        first = lines[own[0]]
        indent = first[: len(first) - len(first.lstrip())]  # as its neighbours are indented
        return "".join([*lines[:at], indent + entry.strip() + "\n", *lines[at:]])
    item, inline = entry.strip().rstrip(","), shape.rstrip(",")
    for i, line in enumerate(lines):
        items = re.findall(inline, line)
        if items:
            later = next((x for x in items if x > item), None)
            new = f"{item}, {later}" if later else f"{items[-1]}, {item}"
            lines[i] = line.replace(later or items[-1], new, 1)
            return "".join(lines)
    raise AssertionError(f"no list in the registry file takes {entry!r}")


def tree(root: Path) -> dict[str, bytes]:
    """Every file of the package under `root` (weights too), by path relative to it."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / "src" / "testtime").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@dataclass(frozen=True)
class Extended:
    before: Path  # a copy of the package as it is
    after: Path  # the same copy with the page's steps followed
    env: dict[str, str]  # imports the extended copy
    api: dict[str, Any]  # what the public API gave (the script below)


API = r"""
import asyncio, json, sys
import httpx
import testtime as tt
from testtime.core.types import Candidate
from testtime.generators.backends import forms
from testtime.server import Settings, create_app

Q = tt.Problem.from_prompt("What is 17 + 25?", answer="42", id="q")


async def main():
    out = {"imported": tt.__file__}
    fake = tt.load_generator("fake")
    spec = tt.STRATEGIES.spec("first_agreement", {"n": 6})
    out["strategy"] = (await tt.solve(Q, spec, fake)).to_dict()
    small = await tt.solve(Q, spec, fake, budget=tt.Budget(samples=1))
    out["strategy_one_sample"] = [small.budget_exhausted, small.cost.samples]

    answered = tt.build_verifier("answered")
    scores = await answered.score(Q, [Candidate("x", answer="3"), Candidate("no answer")])
    out["verifier_scores"] = list(scores.values)
    best = await tt.solve(Q, tt.STRATEGIES.spec("best_of_n", {"n": 3}), fake, verifier=answered)
    out["verifier_in_best_of_n"] = [c.scores for c in best.candidates]

    task = tt.build_task("doubling", {"size": 4})
    out["task_problems"] = [[p.prompt, p.answer] for p in task.problems()]
    out["task_checks"] = [task.check(task.problems()[2], "6"), task.check(task.problems()[2], "7")]
    results = await tt.solve_many(task.problems(), tt.STRATEGIES.spec("single"), fake, task=task)
    out["task_correct"] = [r.correct for r in results]

    gen = tt.load_generator("constant:7")
    got = await tt.solve(Q, tt.STRATEGIES.spec("self_consistency", {"n": 3}), gen, task=task)
    out["backend"] = [got.answer, got.correct, got.cost.samples, got.cost.flops]
    out["backend_usage"] = forms()

    app = create_app(Settings("constant:7"), tt.load_generator("constant:7"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = {"model": "constant:7", "messages": [{"role": "user", "content": "2 * 3?"}],
                "testtime": {"strategy": "first_agreement", "params": {"n": 4},
                             "verifier": "answered"}}
        reply = await c.post("/v1/chat/completions", json=body)
    out["server"] = [reply.status_code, reply.json()["testtime"]["answer"]]
    out["names"] = [tt.STRATEGIES.names(), tt.VERIFIERS.names(), tt.TASKS.names()]
    print(json.dumps(out))


asyncio.run(main())
"""


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> Extended:
    """The package copied twice (so edits others make meanwhile cannot blur the diff), the
    second copy extended by the page's steps, and the public API run on it."""
    base = tmp_path_factory.mktemp("extending")
    before, after = base / "before", base / "after"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "src" / "testtime", before / "src" / "testtime", ignore=skip)
    shutil.copytree(before, after)
    for step in STEPS.values():
        (after / step.file).write_text(step.code)
        registry = after / step.registry
        registry.write_text(add_entry(registry.read_text(), step.line, step.name))
    env = {**os.environ, "PYTHONPATH": str(after / "src")}
    got = run([sys.executable, "-c", API], env, base)
    assert got.returncode == 0, got.stderr
    return Extended(before, after, env, json.loads(got.stdout))


@pytest.mark.parametrize("kind", list(STEPS))
def test_each_kind_is_one_new_file_and_one_registry_line(extended: Extended, kind: str) -> None:
    old, new = tree(extended.before), tree(extended.after)
    added = set(new) - set(old)
    changed = {p for p in old if new.get(p) != old[p]}
    assert added == {s.file for s in STEPS.values()} and not set(old) - set(new)
    assert changed == {s.registry for s in STEPS.values()}
    step = STEPS[kind]
    was, now = old[step.registry].decode(), new[step.registry].decode()
    diff = list(difflib.ndiff(was.splitlines(), now.splitlines()))
    plus = [d[2:] for d in diff if d.startswith("+ ")]
    minus = [d[2:] for d in diff if d.startswith("- ")]
    if minus:  # a list written on one line: that line gained the entry and nothing else
        assert len(plus) == len(minus) == 1
        entry = step.line.strip().rstrip(",")
        assert entry in plus[0] and plus[0].replace(entry + ", ", "", 1) == minus[0]
    else:
        assert [p.strip() for p in plus] == [step.line.strip()]


def test_the_copy_is_what_runs(extended: Extended) -> None:
    assert Path(extended.api["imported"]).is_relative_to(extended.after)
    strategies, verifiers, tasks = extended.api["names"]
    assert "first_agreement" in strategies and "answered" in verifiers and "doubling" in tasks


def test_a_new_strategy_runs_under_solve_and_keeps_its_budget(extended: Extended) -> None:
    result = extended.api["strategy"]
    assert result["strategy"]["name"] == "first_agreement" and result["answer"] == "42"
    assert result["trace"] == {"samples": 2, "agreed": True}  # the fake answers 42 twice
    assert result["cost"]["samples"] == 2
    assert extended.api["strategy_one_sample"] == [True, 1]  # stopped at the ceiling, said so


def test_a_new_verifier_scores_and_is_attached_by_name(extended: Extended) -> None:
    assert extended.api["verifier_scores"] == [1.0, 0.0]
    assert extended.api["verifier_in_best_of_n"] == [{"answered": 1.0}] * 3


def test_a_new_task_yields_problems_and_checks_answers(extended: Extended) -> None:
    assert extended.api["task_problems"][2] == ["What is 2 * 3?", "6"]
    assert len(extended.api["task_problems"]) == 4
    assert extended.api["task_checks"] == [True, False]
    assert all(c is not None for c in extended.api["task_correct"])  # graded by the task


def test_a_new_backend_opens_through_load_generator(extended: Extended) -> None:
    answer, correct, samples, flops = extended.api["backend"]
    assert (answer, correct, samples) == ("7", False, 3)
    assert flops > 0  # its declared size prices the tokens
    assert "'constant:ANSWER'" in extended.api["backend_usage"]


def test_the_server_takes_the_new_components(extended: Extended) -> None:
    assert extended.api["server"] == [200, "7"]


def test_the_cli_and_the_lab_take_the_new_components(extended: Extended, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "testtime"]
    one = run([*cli, "run", "--task", "doubling", "-n", "3", "-m", "constant:6",
               "-s", "first_agreement", "--json"], extended.env, tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert [r["answer"] for r in json.loads(one.stdout)["results"]] == ["6", "6", "6"]
    scored = run([*cli, "run", "--task", "doubling", "-n", "2", "-m", "fake", "-s", "best_of_n",
                  "-p", "n=2", "-v", "answered", "--json"], extended.env, tmp_path)  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["results"][0]["candidates"][0]["scores"] == {"answered": 1.0}
    lab = run([*cli, "lab", "run", "-m", "constant:6", "-t", "doubling", "-n", "3",
               "-s", "first_agreement", "-s", "best_of_n@answered", "--budgets", "1,2",
               "--store", str(tmp_path / "store.sqlite")], extended.env, tmp_path)  # fmt: skip
    assert lab.returncode == 0, lab.stderr
    assert "first_agreem" in lab.stdout and "best_of_n[an" in lab.stdout  # rows of the table
    models = run([*cli, "models"], extended.env, tmp_path)
    assert "constant:ANSWER" in models.stdout


def test_the_invariant_suite_runs_the_new_strategy_unedited(extended: Extended) -> None:
    suite = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "tests/unit/test_invariants.py", "-k", "first_agreement"],
                extended.env, ROOT)  # fmt: skip
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert re.search(r"\b([4-9]|\d\d+) passed", suite.stdout), suite.stdout


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed here")
    return subprocess.run([str(ruff), *args, "--config", str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_new_files_pass_the_linters(extended: Extended) -> None:
    paths = [str(extended.after / s.file) for s in STEPS.values()]
    checked = _ruff("check", *paths)
    assert checked.returncode == 0, checked.stdout
    formatted = _ruff("format", "--check", *paths)
    assert formatted.returncode == 0, formatted.stdout


@pytest.mark.parametrize("kind", list(STEPS))
def test_each_registry_line_leaves_its_file_lint_clean(extended: Extended, kind: str) -> None:
    registry = str(extended.after / STEPS[kind].registry)
    checked = _ruff("check", registry)
    assert checked.returncode == 0, checked.stdout
    formatted = _ruff("format", "--check", registry)
    assert formatted.returncode == 0, formatted.stdout
