"""Tournaments in the lab: a pool's pairs are judged once (both orders, stored with their
cost), and a tournament of any k of its samples is replayed from those verdicts through the
strategy's own bracket logic. Replayed accuracy and judge FLOPs equal the real strategy's,
averaged over every ordered k-subset; a judge whose verdict depends on call order runs per
budget, and the report says which arms were replayed and which ran."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest

from testtime.core.cost import flops
from testtime.core.errors import ConfigError, DataError
from testtime.core.types import Problem, Request
from testtime.generators.fake import FakeGenerator, Texts, render
from testtime.lab.analysis.pools import rule, selection_flops
from testtime.lab.analysis.replay import _pools, analyse
from testtime.lab.data import store as store_module
from testtime.lab.data.arms import judge_key, run_reason
from testtime.lab.data.spec import parse_spec, spec_key
from testtime.lab.data.store import SCHEMA_VERSION, open_store
from testtime.lab.execution import runner
from testtime.lab.execution.work import at_budget, load_problems
from testtime.lab.reports.llm import summary
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve

SAMPLED = {"judge_temperature": 0.7}
SPEC = {
    "name": "tour", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 40}},
    "problems": 3, "budgets": [1, 2, 3, 5], "pool": 5, "concurrency": 1,
    "strategies": [
        {"name": "tournament", "label": "knockout"},
        {"name": "tournament", "label": "round robin", "params": {"format": "round_robin"}},
        "self_consistency",
        {"name": "tournament", "label": "sampled judge", "params": SAMPLED, "budgets": [2, 3]},
    ],
}  # fmt: skip
RUN = parse_spec(SPEC)
K = 5
ANSWERS = {
    p.messages[-1].content: str(p.answer) for p in next(iter(load_problems(RUN).values()))[1]
}
SHOWN = re.compile(r"\[Response ([AB])\]\n(.*?)\n\[End of Response \1\]", re.S)
JUDGE_ASKS = "Which response answers the request better?"


def _answer(text: str) -> str:
    return text.rsplit("Answer: ", 1)[-1].strip()


def judge(prompt: str) -> dict[str, float]:
    """A scripted judge, a function of the prompt alone: the right answer wins (one pair in
    five it errs), between two right or two wrong it says A, B or nothing. Greedy, it gives
    the likelier reply; sampled, either."""
    request = prompt.split("Request:\n", 1)[1].split("\n\n[Response A]", 1)[0]
    shown = dict(SHOWN.findall(prompt))
    right = {k: _answer(t) == ANSWERS[request] for k, t in shown.items()}
    mix = zlib.crc32(prompt.encode())
    if right["A"] != right["B"]:
        reply = ("A" if right["A"] else "B") if mix % 5 else ("B" if right["A"] else "A")
    else:
        reply = ("A", "B", "Both have merit.")[mix % 3]
    other = "B" if reply == "A" else "A"
    return {reply: 0.6, other: 0.4}


def policy(prompt: str) -> Texts:
    """Four answers (right about a third of the time), each in three wordings, one of them
    the same text but for trailing space (one entrant to a tournament)."""
    if prompt.startswith(JUDGE_ASKS):
        return judge(prompt)
    right = int(ANSWERS[prompt])
    texts: dict[str, float] = {}
    for value, w in ((right, 0.35), (right + 1, 0.3), (right - 1, 0.2), (right + 10, 0.15)):
        text = render(str(value))
        texts[text] = 0.5 * w
        texts["Sure. " + text] = 0.3 * w
        texts[text + "  "] = 0.2 * w
    return texts


def fake() -> FakeGenerator:
    return FakeGenerator(default=policy)


def _run(path: Path, spec: dict[str, Any] = SPEC, gen: FakeGenerator | None = None) -> None:
    s = parse_spec(spec)
    gen = gen or fake()
    with open_store(path) as db:
        plan = runner.prepare(db, s, "test")
        runner.execute(db, s, plan, lambda: runner.run_local(db, s, plan, generators=lambda _: gen))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakeGenerator]:
    path = tmp_path_factory.mktemp("tour") / "s.db"
    gen = fake()
    _run(path, gen=gen)
    return path, gen


def _texts(path: Path, problem: str, pool: str = "T0.8-p1") -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT text FROM samples WHERE problem = ? AND pool = ? ORDER BY idx", (problem, pool)
        ).fetchall()
    return [r[0] for r in rows]


def _served(problem: Problem, texts: list[str]) -> FakeGenerator:
    """The policy answering the problem with `texts` in turn, and judging as the lab's did."""
    prompt = problem.messages[-1].content
    return FakeGenerator(default=lambda p: list(texts) if p == prompt else judge(p))


# -- replay equals running ----------------------------------------------------------------


@pytest.mark.parametrize("arm_index", [0, 1])
def test_a_replayed_tournament_is_the_strategy_averaged_over_every_ordered_subset(
    stored: tuple[Path, FakeGenerator], arm_index: int
) -> None:
    """Accuracy and the judge's FLOPs at k: the strategy run on every ordered k-subset of
    the pool (its first k samples are what it draws), judged by the same judge, averaged."""
    path, _ = stored
    arm = RUN.arms[arm_index]
    task, problems = next(iter(load_problems(RUN).values()))
    with open_store(path, readonly=True) as db:
        pools = _pools(db, RUN.run_id)[("fake", "arithmetic(size=40)", "T0.8-p1")]
    record = {**arm.to_dict(), "verifier_key": ""}
    value, estimator = rule("tournament", record, draws=10_000, seed=0)
    judged = selection_flops("tournament", record, draws=10_000, seed=0)
    assert estimator == "monte-carlo"
    seen = 0.0
    for problem in problems:
        (pool,) = pools[problem.id]
        texts = _texts(path, problem.id)
        assert len(texts) == K and pool.texts == texts
        for k in (1, 2, 3):
            right, judge_flops = [], []
            for order in itertools.permutations(range(K), k):
                got = asyncio.run(solve(problem, at_budget(arm, k),
                                        _served(problem, [texts[i] for i in order]), task=task,
                                        max_tokens=RUN.max_tokens))  # fmt: skip
                right.append(float(bool(got.correct)))
                judge_flops.append(flops(got_n_params(), got.cost.verifier_tokens))
                seen += got.cost.verifier_calls
            want = sum(right) / len(right)
            assert value(pool, [k])[0] == pytest.approx(want, abs=1e-9), (arm.label, k)
            spent = sum(judge_flops) / len(judge_flops)
            assert judged(pool, k) == pytest.approx(spent, rel=1e-9), (arm.label, k)
    assert seen > 0  # the judge was asked


def got_n_params() -> int:
    return fake().n_params


def test_replayed_points_carry_the_judges_flops_on_the_cost_axes(
    stored: tuple[Path, FakeGenerator],
) -> None:
    path, _ = stored
    with open_store(path, readonly=True) as db:
        analysis = analyse(db, RUN.run_id)
    curves = {c.label: c for c in analysis.curves}
    sc, ko, rr = curves["self_consistency"], curves["knockout"], curves["round robin"]
    assert ko.replayed and ko.estimator == "monte-carlo"
    assert [p.budget for p in ko.points] == [1, 2, 3, 4, 5]
    by_k = {p.budget: p for p in sc.points}
    for p in ko.points:  # the same samples, and the judge's calls on top of them
        assert p.samples == by_k[p.budget].samples and p.tokens == by_k[p.budget].tokens
        more = p.flops - by_k[p.budget].flops
        assert more == 0 if p.budget == 1 else more > 0
    assert rr.points[-1].flops > ko.points[-1].flops  # all 10 pairs against a bracket's 4


# -- what is stored, once -------------------------------------------------------------------


def test_the_pool_is_judged_once_per_pair_in_both_orders(
    stored: tuple[Path, FakeGenerator],
) -> None:
    path, gen = stored
    assert RUN.pool_judges((0.8, 1.0)).keys() == {judge_key(RUN.arms[0].strategy)}
    assert judge_key(RUN.arms[0].strategy) == judge_key(RUN.arms[1].strategy)  # formats share
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT problem, i, j, swapped, reply, parsed, vote, refused, flops FROM verdicts"
        ).fetchall()
        arms = {r[0] for r in db.execute("SELECT DISTINCT arm FROM results")}
        units = db.execute("SELECT count(*) FROM results WHERE arm = 'sampled judge'").fetchone()
    assert len(rows) == 3 * K * (K - 1)  # every pair i < j, both orders, one judge
    asked = set()
    for problem, i, j, swapped, reply, parsed, vote, refused, cost in rows:
        texts = _texts(path, problem)
        a, b = (i, j) if not swapped else (j, i)
        if texts[i].strip() == texts[j].strip():
            assert refused == "same" and reply is None and cost == 0
            continue
        assert refused is None and reply in ("A", "B", "Both have merit.") and cost > 0
        assert vote == {"A": a, "B": b}.get(parsed)
        asked.add((texts[a], texts[b]))
    assert any(r[7] == "same" for r in rows) and any(r[6] is None for r in rows if not r[7])
    judge_calls = [q for q in gen.requests if q.messages[-1].content.startswith(JUDGE_ASKS)]
    greedy = [q for q in judge_calls if q.temperature == 0]
    assert len(greedy) == len(asked)  # each ordered pair of distinct texts asked once
    assert arms == {"sampled judge"} and units == (2 * 3,)  # replayed arms run nothing


def test_a_judged_pool_is_one_unit_per_problem() -> None:
    units = list(runner.plan_units(RUN, {"arithmetic(size=40)": ["a", "b"]}))
    pooled = [u for u in units if u.pool is not None]
    assert [(u.first, u.count) for u in pooled] == [(0, K), (0, K)]
    unjudged = parse_spec({**SPEC, "pool": 12, "strategies": ["self_consistency"]})
    sliced = list(runner.plan_units(unjudged, {"arithmetic(size=40)": ["a"]}))
    assert [(u.first, u.count) for u in sliced] == [(0, 8), (8, 4)]


# -- a judge that depends on call order runs per budget ----------------------------------------


def test_an_order_dependent_judge_runs_per_budget_and_the_report_says_so(
    stored: tuple[Path, FakeGenerator],
) -> None:
    path, _ = stored
    replay = {a.label: a.replay for a in RUN.arms}
    assert replay == {"knockout": "tournament", "round robin": "tournament",
                      "self_consistency": "majority", "sampled judge": None}  # fmt: skip
    why = run_reason(RUN.arms[3].strategy)
    assert "judge_temperature=0.7" in why and "call order" in why
    with open_store(path, readonly=True) as db:
        analysis = analyse(db, RUN.run_id)
    sampled = next(c for c in analysis.curves if c.label == "sampled judge")
    assert sampled.estimator == "run" and not sampled.replayed
    assert [p.budget for p in sampled.points] == [2, 3]
    lines = summary(analysis)
    assert (
        "replayed from stored pools: knockout (tournament); round robin (tournament); "
        "self_consistency (majority)"
    ) in lines
    assert f"run at each budget: sampled judge ({why})" in lines


async def test_a_sampled_judge_is_asked_at_its_temperature_and_a_greedy_one_at_zero() -> None:
    problem = next(iter(load_problems(RUN).values()))[1][0]
    texts = [render("1"), render("2")]
    for params, temperature in (({}, 0.0), (SAMPLED, 0.7)):
        gen = _served(problem, texts)
        await solve(problem, STRATEGIES.spec("tournament", {"n": 2, **params}), gen)
        asked = [q for q in gen.requests if q.messages[-1].content.startswith(JUDGE_ASKS)]
        assert len(asked) == 2 and {q.temperature for q in asked} == {temperature}
    with pytest.raises(ConfigError, match="'judge_temperature' must be >= 0"):
        STRATEGIES.spec("tournament", {"judge_temperature": -1})


# -- resume, and the store's schema -----------------------------------------------------------


def _rows(path: Path, table: str, columns: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}").fetchall()


VERDICT = "model, task, pool, judge, seed, problem, i, j, swapped, reply, parsed, vote, flops"


def test_a_run_killed_while_judging_resumes_without_recomputing_or_duplicating(
    tmp_path: Path, stored: tuple[Path, FakeGenerator]
) -> None:
    full, _ = stored
    path = tmp_path / "s.db"
    prompts = {x.id: x.messages[-1].content for x in next(iter(load_problems(RUN).values()))[1]}
    second = list(prompts.values())[1]  # dies judging the second problem's pool (in turn)

    class Killed(FakeGenerator):
        async def generate(self, request: Request):  # type: ignore[no-untyped-def]
            prompt = request.messages[-1].content
            if prompt.startswith(JUDGE_ASKS) and second in prompt:
                raise RuntimeError("killed")
            return await super().generate(request)

    with pytest.raises(RuntimeError, match="killed"):
        _run(path, gen=Killed(default=policy))
    with sqlite3.connect(path) as db:
        drawn = {r[0] for r in db.execute("SELECT DISTINCT problem FROM samples")}
        judged = dict(db.execute("SELECT problem, count(*) FROM verdicts GROUP BY problem"))
    assert len(drawn) == 1 and judged == dict.fromkeys(drawn, K * (K - 1))  # a unit, whole
    again = fake()
    _run(path, gen=again)
    kept = prompts[next(iter(drawn))]
    pooled = [q for q in again.requests if q.n == K or q.temperature == 0]  # not 'sampled judge'
    assert pooled and not any(kept in q.messages[-1].content for q in pooled)  # nor rejudged
    assert _rows(path, "verdicts", VERDICT) == _rows(full, "verdicts", VERDICT)
    sample = "model, task, pool, seed, problem, idx, text"
    assert _rows(path, "samples", sample) == _rows(full, "samples", sample)
    with open_store(path) as db:
        plan = runner.prepare(db, RUN, "test")
    assert plan.pending == ()


def _v1(path: Path) -> None:
    """A store as testtime wrote it before verdicts (schema version 1), with one run."""
    with sqlite3.connect(path) as db:
        db.executescript(store_module.MIGRATIONS[1])
        db.execute("INSERT INTO runs (id, name, created, status, source, spec, environment)"
                   " VALUES ('r', 'r', 0, 'success', '', '{}', '{}')")  # fmt: skip
        db.execute("PRAGMA user_version = 1")


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_version_1_store_gains_verdicts_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v1(path)
    with pytest.raises(DataError, match="needs upgrading"):
        open_store(path, readonly=True)
    with open_store(path) as db:
        assert db.run("r")["status"] == "success"
        assert db.verdicts("r") == [] and db.judged("r") == {}
    assert _version(path) == SCHEMA_VERSION >= 2 and "verdicts" in _tables(path)


def test_a_failed_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    _v1(path)
    broken = store_module.MIGRATIONS[2] + ";\nCREATE TABLE broken (a b c d e f"
    monkeypatch.setitem(store_module.MIGRATIONS, 2, broken)
    with pytest.raises(DataError):
        open_store(path)
    assert _version(path) == 1 and "verdicts" not in _tables(path)  # nothing half-written
    monkeypatch.undo()
    with open_store(path) as db:
        assert db.run("r")["name"] == "r"
    assert _version(path) == SCHEMA_VERSION


# -- a reward model scores each sample on its own: replayed from the pool ------------------------


def _reward_model(path: Path) -> Path:
    """A tiny random LlamaForSequenceClassification with a chat template (nothing fetched)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    corpus = ["user assistant: State the final answer Let me think step by step Answer: 0123456789"]
    bpe.train_from_iterator(corpus * 20, vocab_size=300, special_tokens=["<s>", "<pad>"])
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", pad_token="<pad>"
    )
    tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    )
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        num_labels=1, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    transformers.LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


async def _solved(
    problem: Problem,
    arm: Any,
    k: int,
    served: list[list[str]],
    task: Any,
    verifier: Any,
    tokens: int,
) -> list[float]:
    """The strategy at budget k on each of `served` (its samples in turn): right or not."""
    prompt = problem.messages[-1].content
    got = await asyncio.gather(*(
        solve(problem, at_budget(arm, k), FakeGenerator({prompt: texts}), task=task,
              verifier=verifier, max_tokens=tokens)
        for texts in served
    ))  # fmt: skip
    return [float(bool(r.correct)) for r in got]


def test_reward_model_arms_replay_from_the_pool_as_the_strategy_runs(tmp_path: Path) -> None:
    """A reward model's score of a sample does not depend on the others (not `relative`):
    best-of-k and weighted vote under it are replayed from the pool's stored scores, and
    equal the strategy run with the model on every ordered k-subset."""
    rm = {"name": "reward_model", "params": {"path": str(_reward_model(tmp_path / "rm")),
                                             "dtype": "fp32", "device": "cpu"}}  # fmt: skip
    spec = parse_spec({
        "name": "rm", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 40}},
        "problems": 2, "budgets": [1, 2, 3], "pool": 4,
        "strategies": [{"name": "best_of_n", "verifier": rm},
                       {"name": "weighted_majority", "verifier": rm}],
    })  # fmt: skip
    assert [a.replay for a in spec.arms] == ["best", "weighted"]
    path = tmp_path / "s.db"
    with open_store(path) as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        pools = next(iter(_pools(db, spec.run_id).values()))
        assert db.results(spec.run_id) == []  # nothing ran per budget
    task, problems = next(iter(load_problems(spec).values()))
    verifier = build_verifier(spec.arms[0].verifier, task=task)
    for arm in spec.arms:
        record = {**arm.to_dict(), "verifier_key": spec_key(arm.verifier)}
        value, _ = rule(arm.replay or "", record, draws=10_000, seed=0)
        for problem in problems:
            (pool,) = pools[problem.id]
            texts = _texts(path, problem.id, pool="T0.8-p1")
            for k in (1, 2, 3):
                orders = list(itertools.permutations(range(len(texts)), k))
                runs = asyncio.run(_solved(problem, arm, k, [[texts[i] for i in o] for o in orders],
                                           task, verifier, spec.max_tokens))  # fmt: skip
                assert value(pool, [k])[0] == pytest.approx(sum(runs) / len(runs), abs=1e-9)


def test_a_verdict_costs_its_whole_prompt_whatever_a_cache_served(tmp_path: Path) -> None:
    """A pool's comparisons share prefixes a tournament of k would not: what the engine's
    prefix cache served is counted as if computed, so stored costs do not depend on what was
    judged beside them."""

    class Cached(FakeGenerator):
        async def generate(self, request: Request):  # type: ignore[no-untyped-def]
            got = await super().generate(request)
            half = got.cost.prompt_tokens // 2
            cost = dataclasses.replace(got.cost, prompt_tokens=got.cost.prompt_tokens - half,
                                       cached_prompt_tokens=half)  # fmt: skip
            return dataclasses.replace(got, cost=cost)

    spec = {**SPEC, "problems": 1, "pool": 3, "budgets": [2, 3],
            "strategies": [{"name": "tournament"}]}  # fmt: skip
    gen = Cached(default=policy)
    _run(tmp_path / "s.db", spec, gen)
    asked = {q.messages[-1].content: gen.count_prompt_tokens(q) for q in gen.requests
             if q.messages[-1].content.startswith(JUDGE_ASKS)}  # fmt: skip
    rows = _rows(tmp_path / "s.db", "verdicts", "prompt_tokens, generated_tokens, flops, refused")
    whole = set(asked.values())
    assert asked and all(r[3] == "same" or r[0] in whole for r in rows)
    assert all(r[2] == flops(got_n_params(), r[0] + r[1]) for r in rows if r[3] is None)
