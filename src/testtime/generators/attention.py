"""Decode-step attention for small models on CPU: two batched matmuls instead of SDPA.

With one new token per row, attention is a few kilobytes of work, and PyTorch's fused CPU
kernel spends ~0.5 ms per layer on set-up (measured: half of SmolLM2's step at batch 32).
Grouped-query heads are folded into the matmul instead of copying K/V per head. Prefill
and anything unusual (non-boolean masks, dropout, sinks) go to the standard SDPA path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NAME = "testtime_decode"


def decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention-interface function: `[B, H, 1, D]` queries -> `[B, 1, H, D]`."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    simple = (
        query.shape[2] == 1
        and dropout == 0.0
        and isinstance(attention_mask, torch.Tensor)
        and attention_mask.dtype == torch.bool
        and not kwargs.get("s_aux")
        and getattr(module, "attn_logit_softcapping", None) is None
    )
    if not simple:
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return out, None
    batch, heads, _, dim = query.shape
    groups = heads // key.shape[1]
    q = query.reshape(batch, key.shape[1], groups, dim)  # the heads that share a K/V head
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * (scaling or dim**-0.5)
    scores = scores.masked_fill(~attention_mask, float("-inf"))  # [B, 1, 1, W] broadcasts
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


def install(model: Any) -> bool:
    """Use `decode_attention` for `model` if it runs SDPA now; False if it cannot switch."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if model.config._attn_implementation != "sdpa":
        return False
    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # for transformers' own generate()
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, KeyError, AttributeError):
        return False
    return True


@contextmanager
def stock_attention(model: Any) -> Iterator[None]:
    """Run `model` with transformers' own SDPA inside the block (for reference runs)."""
    before = model.config._attn_implementation
    if before == NAME:
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if before == NAME:
            model.set_attn_implementation(NAME)
