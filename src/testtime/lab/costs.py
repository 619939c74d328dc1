"""What the lab needs to price a model beyond FLOPs: its KV-cache shape (for Kinetics's
memory-aware cost) and its parameter count (for Snell's exchange rate), read from the
installed model's files without loading it.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.kinetics import KVShape, exchange_rate
from testtime.generators.models import is_url, resolve

FAKE_SHAPE = KVShape(layers=4, kv_heads=2, head_dim=32)  # the fake model's pretend cache
FAKE_PARAMS = 1_000_000
SNELL_RATIOS = (0.16, 0.79, 22.0)  # the inference:pretraining token ratios Snell et al. compare


def kv_shape(model: str) -> KVShape | None:
    """The model's KV shape from its config (None for a served model, or one not installed)."""
    if model == "fake":
        return FAKE_SHAPE
    config = _config(model)
    if config is None:
        return None
    text = config.get("text_config") or config  # multimodal configs nest the language model
    heads = int(text["num_attention_heads"])
    head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    return KVShape(int(text["num_hidden_layers"]), int(text.get("num_key_value_heads") or heads),
                   head_dim)  # fmt: skip


def n_params(model: str) -> int:
    """Parameters in the model's safetensors files (tied weights stored once count once)."""
    if model == "fake":
        return FAKE_PARAMS
    if is_url(model):
        raise ConfigError(f"{model} is served remotely; its parameter count is unknown here")
    files = sorted(resolve(model).glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"model {model!r} has no safetensors weights to count")
    total = 0
    for f in files:
        with f.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def exchange_lines(params: dict[str, int], ratios: tuple[float, ...] = SNELL_RATIOS) -> list[str]:
    """Snell's exchange rate for each pair of models: inference tokens the smaller may spend
    per token of the larger at equal total FLOPs, at each inference:pretraining ratio R."""
    lines = []
    names = sorted(params, key=params.__getitem__)
    for i, small in enumerate(names):
        for large in names[i + 1 :]:
            m = params[large] / max(params[small], 1)
            if m < 1:
                continue
            rates = ", ".join(f"R={r:g}: K={exchange_rate(m, r):.3g}" for r in ratios)
            lines.append(
                f"exchange rate {small} vs {large} (M={m:.3g}x the parameters): the smaller "
                f"may spend K times the larger's inference tokens at equal FLOPs; {rates}"
            )
    return lines


def _config(model: str) -> dict[str, Any] | None:
    if is_url(model):
        return None
    try:
        path = resolve(model) / "config.json"
    except (ConfigError, ModelNotFoundError):
        return None
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data
