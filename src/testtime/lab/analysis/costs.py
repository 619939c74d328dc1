"""What the lab needs to price a model beyond FLOPs: its KV-cache shape (for Kinetics's
memory-aware cost) and its parameter count (for Snell's exchange rate), each from the
backend that serves the model (`generators/backends.py`), without loading it.
"""

from __future__ import annotations

from testtime.core.kinetics import KVShape, exchange_rate
from testtime.generators.backends import BACKENDS

SNELL_RATIOS = (0.16, 0.79, 22.0)  # the inference:pretraining token ratios Snell et al. compare


def kv_shape(model: str) -> KVShape | None:
    """The model's KV shape (None where its backend cannot tell: a served model, say)."""
    return BACKENDS.find(model).kv_shape(model)


def n_params(model: str) -> int:
    """The model's parameter count from its backend (refused where it is unknown)."""
    return BACKENDS.find(model).n_params(model)


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
