"""Recently prefilled prompts, kept as KV rows so later requests that share a start skip it.

A strategy that samples the same problem again (adaptive sampling, sequential rounds) or
extends a prompt (a search continuing a prefix) finds the longest cached start of its
prompt here and prefills only the rest. Only prefill-computed rows are kept, and the
runner pads shapes so reusing one gives bit-identical numbers to recomputing it: a seeded
request's output does not depend on what the cache happened to hold. LRU, bounded in tokens.
"""

from __future__ import annotations

from collections import OrderedDict

from testtime.generators.kvcache import SlotCache


class PrefixCache:
    """Prompt token ids -> a one-row `SlotCache` holding their K/V."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = capacity_tokens
        self.tokens = 0
        self._entries: OrderedDict[tuple[int, ...], SlotCache] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0

    def lookup(self, prompt: tuple[int, ...]) -> tuple[SlotCache | None, int]:
        """The entry sharing the longest start with `prompt`, and how many tokens it covers.

        At most `len(prompt) - 1`: the last prompt token is always computed, for its logits.
        """
        best, best_len = None, 0
        limit = len(prompt) - 1
        for key in self._entries:
            common = _common_prefix(key, prompt, limit)
            if common > best_len:
                best, best_len = key, common
        if best is None:
            return None, 0
        self._entries.move_to_end(best)
        return self._entries[best], best_len

    def put(self, prompt: tuple[int, ...], src: SlotCache, row: int) -> None:
        """Keep `src`'s row (the prompt's K/V in its first `len(prompt)` columns)."""
        if prompt in self._entries:
            self._entries.move_to_end(prompt)
            return
        if len(prompt) > self.capacity:
            return
        entry = SlotCache(src.n_layers, src.device, src.dtype, token_bytes=src.token_bytes)
        entry.reserve(1, len(prompt))
        entry.copy_rows(src, [row], [0], len(prompt))
        self._entries[prompt] = entry
        self.tokens += len(prompt)
        while self.tokens > self.capacity:
            old, _ = self._entries.popitem(last=False)
            self.tokens -= len(old)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...], limit: int) -> int:
    """Length of the common start of `a` and `b`, at most `limit` (binary search on slices)."""
    lo, hi = 0, min(len(a), len(b), limit)
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo]; the answer lies in [lo, hi]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
