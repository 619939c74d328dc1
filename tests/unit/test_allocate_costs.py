"""Cost axes beyond FLOPs: Kinetics's KV traffic (eFLOPs) and Snell's exchange rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.errors import ConfigError
from testtime.core.kinetics import INTENSITY, KVShape, eflops, exchange_rate, kv_bytes
from testtime.generators.fake import FAKE_SHAPE
from testtime.generators.models import PACKAGED
from testtime.lab.analysis.costs import exchange_lines, kv_shape, n_params
from testtime.lab.analysis.replay import analyse, stored_pools
from testtime.lab.data.spec import parse_spec
from testtime.lab.data.store import open_store
from testtime.lab.execution import runner
from testtime.lab.reports.llm import write_report


@given(
    layers=st.integers(1, 40), heads=st.integers(1, 8), dim=st.integers(1, 256),
    prompt=st.integers(0, 500), generated=st.integers(0, 300),
)  # fmt: skip
def test_kv_traffic_is_every_earlier_tokens_cache_read_at_every_step(
    layers: int, heads: int, dim: int, prompt: int, generated: int
) -> None:
    shape = KVShape(layers, heads, dim, 2)
    per_token = 2 * layers * heads * dim * 2  # K and V, every layer, bf16
    brute = sum(per_token * (prompt + t) for t in range(1, generated + 1))
    assert kv_bytes(shape, prompt, generated) == pytest.approx(brute)
    assert eflops(10.0, brute) == pytest.approx(10.0 + INTENSITY * brute)


def test_traffic_grows_with_samples_times_length_and_quadratically_in_length() -> None:
    one = kv_bytes(FAKE_SHAPE, 0, 100)
    assert 3.9 < kv_bytes(FAKE_SHAPE, 0, 200) / one < 4.0  # twice the length: ~4x
    assert 8 * one == pytest.approx(sum(kv_bytes(FAKE_SHAPE, 0, 100) for _ in range(8)))


def test_snells_exchange_rate() -> None:
    assert exchange_rate(14, 0.16) == pytest.approx(14 + 3 * 13 / 0.16)
    assert exchange_rate(1, 5.0) == 1.0  # the same model: no exchange
    assert exchange_rate(14, 1e9) == pytest.approx(14, rel=1e-6)  # R >> 1: only M
    with pytest.raises(ConfigError, match="M must be >= 1"):
        exchange_rate(0.5, 1.0)
    (line,) = exchange_lines({"small": 100, "large": 1400})
    assert "M=14x" in line and "R=0.16: K=258" in line and "R=22: K=15.8" in line


def test_the_embedded_models_shape_and_size_come_from_their_files() -> None:
    if not PACKAGED["smollm2-135m"].installed:
        pytest.skip("the embedded model is not installed")
    assert kv_shape("smollm2-135m") == KVShape(layers=30, kv_heads=3, head_dim=64)
    assert n_params("smollm2-135m") == 134_515_008  # what the loaded model reports
    assert kv_shape("http://127.0.0.1:1/v1#m") is None


def test_the_lab_prices_every_point_in_eflops_too(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "kv", "model": "fake", "task": {"name": "arithmetic", "params": {"size": 4}},
        "budgets": [1, 4], "strategies": ["self_consistency", {"name": "revise", "budgets": [2]}],
    })  # fmt: skip
    with open_store(tmp_path / "s.db") as db:
        plan = runner.prepare(db, spec, "test")
        runner.execute(db, spec, plan, lambda: runner.run_local(db, spec, plan))
        analysis = analyse(db, plan.run_id)
        pools = stored_pools(db, plan.run_id)
    curves = {c.label: c for c in analysis.curves}
    (pool_map,) = pools.values()
    for p in curves["self_consistency"].points:
        kv = np.mean([
            np.mean([kv_bytes(FAKE_SHAPE, pool.prompt_tokens, t) for t in pool.tokens])
            for (pool,) in pool_map.values()
        ])  # fmt: skip
        assert p.eflops == pytest.approx(p.flops + INTENSITY * p.budget * kv)
    (revised,) = curves["revise"].points
    assert revised.eflops > revised.flops > 0
    assert "eflops" in analysis.pareto
    files = write_report(analysis, tmp_path / "r")
    assert "accuracy_eflops.png" in {f.name for f in files.pngs}
