"""The prefix cache: longest shared start, the last token always recomputed, LRU in tokens."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from testtime.generators.kvcache import SlotCache  # noqa: E402
from testtime.generators.prefix import PrefixCache, _common_prefix  # noqa: E402


def rows(prompt: tuple[int, ...]) -> SlotCache:
    """A 2-layer cache whose row 0 holds K = V = the prompt's token ids."""
    cache = SlotCache(2, torch.device("cpu"), torch.float32)
    cache.reserve(1, len(prompt))
    cache.write_at = torch.arange(len(prompt))[None]
    cache.write_rows = torch.zeros((1, 1), dtype=torch.long)
    cache.read_width = len(prompt)
    kv = torch.tensor(prompt, dtype=torch.float32).reshape(1, 1, -1, 1)
    for layer in range(2):
        cache.update(kv, kv, layer)
    return cache


def test_common_prefix() -> None:
    assert _common_prefix((1, 2, 3, 4), (1, 2, 9), 10) == 2
    assert _common_prefix((1, 2, 3), (1, 2, 3, 4), 10) == 3
    assert _common_prefix((1, 2, 3), (1, 2, 3, 4), 2) == 2
    assert _common_prefix((5,), (1,), 10) == 0


def test_lookup_finds_the_longest_start_and_leaves_the_last_token() -> None:
    cache = PrefixCache(100)
    cache.put((1, 2, 3), rows((1, 2, 3)), 0)
    cache.put((1, 2, 3, 4, 5), rows((1, 2, 3, 4, 5)), 0)
    entry, n = cache.lookup((1, 2, 3, 4, 9, 9))
    assert n == 4 and entry is not None
    assert entry.keys[1] is not None and entry.keys[1][0, 0, :4, 0].tolist() == [1, 2, 3, 4]
    assert cache.lookup((1, 2, 3))[1] == 2  # an exact repeat still computes its last token
    assert cache.lookup((7, 8)) == (None, 0)


def test_least_recently_used_goes_first_when_over_capacity() -> None:
    cache = PrefixCache(8)
    cache.put((1, 1, 1), rows((1, 1, 1)), 0)
    cache.put((2, 2, 2), rows((2, 2, 2)), 0)
    cache.lookup((1, 1, 1, 5))  # touch the first
    cache.put((3, 3, 3), rows((3, 3, 3)), 0)  # 9 tokens > 8: the untouched (2,2,2) goes
    assert cache.tokens == 6 and len(cache) == 2
    assert cache.lookup((2, 2, 2, 5))[1] == 0 and cache.lookup((1, 1, 1, 5))[1] == 3
