"""One batched forward pass of a Hugging Face causal LM over a `SlotCache`.

Rows may sit at different positions and be padded on the left; we give the model explicit
position ids and our own 4D attention masks (one per attention type, so sliding-window
layers such as Gemma 3's keep their window), and keep only the last position's logits.
Shapes are padded so a row's numbers never depend on what else is in the batch (measured
on CPU in bf16: unpadded, a logit moved by up to 1.4 with the batch), which is what makes
a seeded sample reproducible under any load.
"""

from __future__ import annotations

import ctypes
import inspect
from typing import TYPE_CHECKING, Any

from testtime.generators import attention
from testtime.generators.kvcache import SlotCache

if TYPE_CHECKING:
    import torch


class Runner:
    """Runs a transformers causal LM one batched step at a time."""

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model
        cfg = model.config
        self.n_layers: int = int(cfg.num_hidden_layers)
        self.layer_types: set[str] = set(getattr(cfg, "layer_types", None) or [])
        self.window: int | None = getattr(cfg, "sliding_window", None)
        param = next(model.parameters())
        self.device: torch.device = param.device
        if self.device.type == "cpu":  # on GPUs the fused kernels are the fast path
            attention.install(model)
        self.bool_mask = cfg._attn_implementation in ("sdpa", attention.NAME)
        self.dtype: torch.dtype = param.dtype
        self.max_positions: int = int(getattr(cfg, "max_position_embeddings", 0) or 1 << 30)
        self.cache_arg = cache_argument(model)
        heads = int(cfg.num_attention_heads)
        kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        # K and V of one token over every layer: what each cache column costs per row
        self.token_bytes = 2 * self.n_layers * kv_heads * head_dim * itemsize

    def new_cache(self, max_bytes: int | None = None) -> SlotCache:
        return SlotCache(
            self.n_layers,
            self.device,
            self.dtype,
            token_bytes=self.token_bytes,
            max_bytes=max_bytes,
        )

    def forward(
        self, cache: SlotCache, ids: torch.Tensor, pos: torch.Tensor, prefill: bool = False
    ) -> torch.Tensor:
        """Logits (float32, `[B, V]`) after the last query of each row.

        `ids` and `pos` are `[B, Q]`; `pos` is each query's position in its sequence, or -1
        for left padding. Every row's earlier tokens must already be in `cache`. A prefill
        (prompt tokens, possibly after a cached start) always runs the prefill kernels.
        """
        import torch

        batch = ids.shape[0]
        ids, pos = _batch_invariant(ids, pos, prefill)
        width = _round_up(int(pos.max()) + 1)
        cache.reserve(ids.shape[0], width)
        real = pos >= 0
        write = torch.where(real, pos, torch.full_like(pos, cache.scratch))
        cache.prepare(write, width)
        out = self.model(
            input_ids=ids,
            attention_mask=self._masks(pos, real, width),
            position_ids=pos.clamp(min=0),
            use_cache=True,
            **{self.cache_arg: cache},
            logits_to_keep=1,
        )
        logits: torch.Tensor = out.logits[:batch, -1].float()
        return logits

    def _masks(self, pos: torch.Tensor, real: torch.Tensor, width: int) -> Any:
        import torch

        cols = torch.arange(width, device=pos.device)[None, None, :]
        q = pos[:, :, None]
        pad = ~real[:, :, None]
        # padding queries look at column 0 only, so no softmax row is empty (no NaN)
        full = ((cols <= q) & ~pad) | (pad & (cols == 0))
        masks = {"full_attention": full}
        if "sliding_attention" in self.layer_types and self.window:
            masks["sliding_attention"] = (full & (q - cols < self.window)) | (pad & (cols == 0))
        masks = {k: self._format(m[:, None]) for k, m in masks.items()}
        return masks if self.layer_types - {"full_attention"} else masks["full_attention"]

    def _format(self, mask: torch.Tensor) -> torch.Tensor:
        """Boolean for SDPA; an additive float mask for eager and other attentions."""
        import torch

        if self.bool_mask:
            return mask
        zero = torch.zeros((), dtype=self.dtype, device=mask.device)
        return torch.where(mask, zero, torch.finfo(self.dtype).min)


ALIGN = 64


def cache_argument(model: Any) -> str:
    """The name the model's forward takes its KV cache by: `cache` from transformers 5.24 on
    (`past_key_values` is deprecated there and warns), `past_key_values` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _batch_invariant(
    ids: torch.Tensor, pos: torch.Tensor, prefill: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the batch so every kernel takes the same path for a row whatever its neighbours.

    A lone token goes through a matrix-vector kernel that rounds differently from the
    batched one (so: two rows); attention rounds a query or key differently in a block's
    tail (so: query and key widths in multiples of 64, queries left-padded); and a prefill
    of one token must not take the decode path its neighbours' K/V were not computed by.
    """
    import torch

    if ids.numel() == 1 and not prefill:
        return ids.repeat(2, 1), torch.cat([pos, torch.full_like(pos, -1)])
    q = ids.shape[1]
    if (q > 1 or prefill) and q % ALIGN:
        pad = _round_up(q) - q
        ids = torch.cat([ids.new_zeros((ids.shape[0], pad)), ids], dim=1)
        pos = torch.cat([pos.new_full((pos.shape[0], pad), -1), pos], dim=1)
    return ids, pos


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed blocks up to 32 MB instead of returning them to the OS.

    Each decode step allocates activations and vocabulary-sized logits afresh; served by
    mmap, every step page-faults them in again (measured 5-10% of a Gemma 3 step on CPU).
    A no-op where glibc is not the allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
