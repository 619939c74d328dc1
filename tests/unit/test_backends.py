"""The backend registry: every model name is opened, fingerprinted, counted and shaped by the
one backend that claims it, and a new backend is one file. `Scripted` below is such a file:
defined and registered here, it works with `load_generator`, the lab's fingerprints, cost
axes and exchange rate without a line changed anywhere else."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testtime.core.errors import ConfigError
from testtime.core.kinetics import INTENSITY, KVShape, kv_bytes
from testtime.core.types import Message, Request
from testtime.generators.backends import BACKENDS, Backend, backend
from testtime.generators.base import Generator
from testtime.generators.fake import FakeGenerator
from testtime.generators.models import fingerprint, load_generator, resolve
from testtime.lab.analysis import costs
from testtime.lab.analysis.replay import analyse, stored_pools
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner

SHAPE = KVShape(layers=3, kv_heads=1, head_dim=16)
PARAMS = 5_000


class Scripted(Backend):
    """`scripted:ANSWER`: the fake, always answering ANSWER (a throwaway backend)."""

    name = "scripted"
    usage = "scripted:ANSWER"
    runs_on = "a scripted model runs in this process"

    def claims(self, model: str) -> bool:
        return model.startswith("scripted:")

    def open(self, model: str, **opts: Any) -> Generator:
        answer = model.removeprefix("scripted:")
        return FakeGenerator(default=[f"It is {answer}.\nAnswer: {answer}"], n_params=PARAMS)

    def fingerprint(self, model: str) -> str:
        return hashlib.sha256(model.encode()).hexdigest()

    def n_params(self, model: str) -> int:
        return PARAMS

    def kv_shape(self, model: str) -> KVShape | None:
        return SHAPE


@pytest.fixture(autouse=True)
def scripted() -> Iterator[None]:
    backend(Scripted)  # what the backend's own file does when it is imported
    yield
    del BACKENDS.entries["scripted"]


async def test_a_new_backend_opens_through_load_generator() -> None:
    gen = load_generator("scripted:7")
    request = Request(messages=(Message("user", "What is 3 + 4?"),), n=2, seed=0)
    out = await gen.generate(request)
    assert [c.text for c in out.completions] == ["It is 7.\nAnswer: 7"] * 2
    assert out.cost.flops == pytest.approx(2 * PARAMS * (out.cost.prompt_tokens
                                                         + out.cost.generated_tokens))  # fmt: skip


def test_a_new_backend_gives_the_fingerprint_size_and_shape() -> None:
    assert fingerprint("scripted:7") == hashlib.sha256(b"scripted:7").hexdigest()
    assert costs.n_params("scripted:7") == PARAMS
    assert costs.kv_shape("scripted:7") == SHAPE
    (line,) = costs.exchange_lines({"scripted:7": costs.n_params("scripted:7"),
                                    "fake": costs.n_params("fake")})  # fmt: skip
    assert "exchange rate scripted:7 vs fake (M=200x" in line


def test_a_new_backend_refuses_a_device_like_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"runs in this process, so --device cuda would do"):
        load_generator("scripted:7", device="cuda")
    assert isinstance(load_generator("scripted:7", device="auto"), FakeGenerator)


def test_a_new_backend_is_named_where_models_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*'fake'.*scripted:ANSWER"):
        resolve("nope")


def test_the_lab_runs_and_prices_a_new_backend(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "scripted", "model": "scripted:5",
        "task": {"name": "arithmetic", "params": {"size": 3}},
        "budgets": [1, 2], "strategies": ["self_consistency"],
    })  # fmt: skip
    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        env = db.run(plan.run_id)["environment"]
        analysis = analyse(db, plan.run_id)
        pools = stored_pools(db, plan.run_id)
    assert env["models"] == {"scripted:5": hashlib.sha256(b"scripted:5").hexdigest()}
    assert env["n_params"] == {"scripted:5": PARAMS}
    ((curve,),) = [[c for c in analysis.curves if c.label == "self_consistency"]]
    (pool_map,) = pools.values()
    kv = np.mean([np.mean([kv_bytes(SHAPE, pool.prompt_tokens, t) for t in pool.tokens])
                  for (pool,) in pool_map.values()])  # fmt: skip
    for p in curve.points:  # eFLOPs from the new backend's KV shape
        assert p.flops > 0 and p.eflops == pytest.approx(p.flops + INTENSITY * p.budget * kv)


@pytest.mark.parametrize(
    ("model", "name"),
    [("fake", "fake"), ("http://127.0.0.1:1/v1#m", "http"), ("https://h/v1#m", "http"),
     ("smollm2-135m", "local"), ("./model.gguf", "local"), ("gpt-5", "local"),
     ("scripted:1", "scripted")],
)  # fmt: skip
def test_each_name_goes_to_the_backend_that_claims_it(model: str, name: str) -> None:
    assert BACKENDS.find(model).name == name


def test_two_backends_claiming_one_name_is_caught() -> None:
    class Greedy(Scripted):
        name = "greedy"

    backend(Greedy)
    try:
        with pytest.raises(ValueError, match=r"claimed by scripted and greedy"):
            BACKENDS.find("scripted:1")
        assert BACKENDS.find("fake").name == "fake"  # names nobody else claims still work
    finally:
        del BACKENDS.entries["greedy"]
    with pytest.raises(ValueError, match="registered twice"):
        backend(Scripted)


def test_the_shipped_backends_know_what_they_can() -> None:
    assert costs.kv_shape("fake") == KVShape(4, 2, 32) and costs.n_params("fake") == 1_000_000
    assert costs.kv_shape("http://127.0.0.1:1/v1#m") is None
    with pytest.raises(ConfigError, match="served remotely; its parameter count is unknown"):
        costs.n_params("http://127.0.0.1:1/v1#m")
    assert costs.kv_shape("no-such-model") is None  # not installed: no eFLOPs axis, no error
    with pytest.raises(ConfigError, match="unknown model 'no-such-model'"):
        costs.n_params("no-such-model")
