"""A slot KV cache for batched decoding: one row per live sequence, written in place.

Each layer keeps K and V as `[rows, kv_heads, width, head_dim]` buffers; a sequence sits
left-aligned in its row. Before every forward the engine says where each new token's K/V
goes (`write_at`) and how many columns attention reads; the model calls `update` per layer.
Rows are copied (a shared prompt into n samples) or moved (to close a finished row's gap)
without any model compute. Duck-types the part of transformers' `Cache` its models use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class SlotCache:
    """Per-layer K/V buffers with row/column capacity that grows on demand."""

    is_compileable = False

    def __init__(
        self,
        n_layers: int,
        device: torch.device,
        dtype: torch.dtype,
        *,
        token_bytes: int = 0,
        max_bytes: int | None = None,
    ) -> None:
        self.n_layers = n_layers
        self.token_bytes = token_bytes  # K and V of one token over all layers
        self.max_bytes = max_bytes  # geometric growth stops here (the engine's ceiling)
        self.device = device
        self.dtype = dtype
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.rows = 0  # row capacity
        self.width = 0  # column capacity; the last column is scratch for padding queries
        self.write_rows: torch.Tensor | None = None  # [B, 1] row of each query
        self.write_at: torch.Tensor | None = None  # [B, Q] column of each query's K/V
        self.read_width = 0  # columns attention reads in this forward

    @property
    def scratch(self) -> int:
        """A column never read: padding queries write their K/V here."""
        return self.width - 1

    @staticmethod
    def bytes_for(rows: int, width: int, token_bytes: int) -> int:
        """What `rows` rows of `width` readable columns (plus scratch) take."""
        return rows * (width + 1) * token_bytes

    @property
    def nbytes(self) -> int:
        """What the buffers take now (0 before the first forward allocates them)."""
        buffers = (b for b in (*self.keys, *self.values) if b is not None)
        return sum(b.numel() * b.element_size() for b in buffers)

    def reserve(self, rows: int, width: int) -> None:
        """Make room for `rows` rows and `width` readable columns (plus scratch), keeping data."""
        new_rows, new_width = max(rows, self.rows), max(width + 1, self.width)
        if new_rows == self.rows and new_width == self.width:
            return
        # grow geometrically so a growing batch or sequence reallocates rarely, but never
        # past the ceiling (the engine admits only work whose exact need fits under it)
        grown_rows = max(new_rows, int(self.rows * 1.5)) if new_rows > self.rows else new_rows
        grown_width = max(new_width, int(self.width * 1.5)) if new_width > self.width else new_width
        if self.max_bytes is None or grown_rows * grown_width * self.token_bytes <= self.max_bytes:
            new_rows, new_width = grown_rows, grown_width
        self._resize(new_rows, new_width)

    def fit(self, rows: int, width: int) -> None:
        """Give memory back: shrink to `rows` x `width` (+ scratch) when that halves a side."""
        if rows == 0:
            self.clear()
        elif rows * 2 <= self.rows or (width + 1) * 2 <= self.width:
            self._resize(rows, width + 1)

    def clear(self) -> None:
        """Drop every buffer (they come back at the next forward)."""
        self.keys = [None] * self.n_layers
        self.values = [None] * self.n_layers
        self.rows = self.width = 0

    def _resize(self, new_rows: int, new_width: int) -> None:
        keep_rows, keep_cols = min(self.rows, new_rows), min(self.width, new_width) - 1
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                if old is None:
                    continue
                new = old.new_zeros((new_rows, old.shape[1], new_width, old.shape[3]))
                if keep_cols > 0:
                    new[:keep_rows, :, :keep_cols] = old[:keep_rows, :, :keep_cols]
                store[i] = new
        self.rows, self.width = new_rows, new_width

    def prepare(self, write_at: torch.Tensor, read_width: int) -> None:
        """Set where this forward's queries write and how far attention reads."""
        import torch

        if read_width + 1 > self.width or write_at.shape[0] > self.rows:
            raise RuntimeError("SlotCache.prepare called without reserve()")
        self.write_at = write_at
        self.write_rows = torch.arange(write_at.shape[0], device=write_at.device)[:, None]
        self.read_width = read_width

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this layer's new K/V (`[B, heads, Q, dim]`) and return what attention reads."""
        if self.write_at is None or self.write_rows is None:
            raise RuntimeError("SlotCache.update called before prepare()")
        batch = key_states.shape[0]
        out = []
        for store, new in ((self.keys, key_states), (self.values, value_states)):
            buf = store[layer_idx]
            if buf is None:
                shape = (self.rows, new.shape[1], self.width, new.shape[3])
                buf = store[layer_idx] = new.new_zeros(shape)
            # [rows, width, heads, dim] view: index rows and columns together, write in place
            buf.transpose(1, 2)[self.write_rows, self.write_at] = new.transpose(1, 2).to(buf.dtype)
            out.append(buf[:batch, :, : self.read_width])
        return out[0], out[1]

    def copy_rows(
        self, src: SlotCache, src_rows: list[int], dst_rows: list[int], columns: int
    ) -> None:
        """Copy the first `columns` columns of `src`'s rows into this cache's rows."""
        import torch

        idx_src = torch.tensor(src_rows, device=self.device)
        idx_dst = torch.tensor(dst_rows, device=self.device)
        for mine, theirs in ((self.keys, src.keys), (self.values, src.values)):
            for i, s in enumerate(theirs):
                if s is None:
                    continue
                if mine[i] is None:
                    mine[i] = s.new_zeros((self.rows, s.shape[1], self.width, s.shape[3]))
                buf = mine[i]
                assert buf is not None
                buf[idx_dst, :, :columns] = s[idx_src, :, :columns]

    def move_row(self, src: int, dst: int, columns: int) -> None:
        """Move row `src` into row `dst` (the freed slot of a finished sequence)."""
        for store in (self.keys, self.values):
            for buf in store:
                if buf is not None:
                    buf[dst, :, :columns] = buf[src, :, :columns]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.read_width

    def __len__(self) -> int:
        return self.n_layers
