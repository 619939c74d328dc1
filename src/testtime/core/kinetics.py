"""Cost beyond FLOPs: the KV-cache traffic of decoding (Kinetics, Sadhukhan et al. 2025) and
the exchange rate between inference on a small model and pretraining a larger one (Snell
et al. 2024).

KV traffic. Decoding token t of a sample reads the keys and values of every earlier token
in every layer: 2 (K and V) x layers x kv_heads x head_dim x bytes per element per token.
A sample with a prompt of P tokens that generates L reads, summed over its L steps,

    bytes = 2 * layers * kv_heads * head_dim * bytes_per_element * (P*L + L*(L+1)/2),

so N samples of length L cost N * (P*L + L^2/2): the traffic grows with samples x generated
length, and quadratically in length. Each sample is counted with its own copy of the
prompt's cache, as testtime's engine keeps one row per sample (Kinetics assumes the prompt's
cache is shared, which counts the P*L term once per batch). Parameters are read once per
step for the whole batch and are left out, as in Kinetics. The memory-aware cost is
eFLOPs = FLOPs + I * bytes, with I = 562.5 FLOPs per byte, Kinetics's arithmetic intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

from testtime.core.errors import ConfigError

INTENSITY = 562.5  # FLOPs per byte of memory traffic (Kinetics's value for its GPU)


@dataclass(frozen=True, slots=True)
class KVShape:
    """What one token's KV cache holds, from the model's config."""

    layers: int
    kv_heads: int
    head_dim: int
    bytes_per_element: int = 2  # bf16

    def __post_init__(self) -> None:
        if min(self.layers, self.kv_heads, self.head_dim, self.bytes_per_element) < 1:
            raise ConfigError(f"a KV shape needs positive sizes, got {self}")

    @property
    def bytes_per_token(self) -> int:
        """K and V of one token across every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_element


def kv_bytes(shape: KVShape, prompt: int, generated: int) -> float:
    """Bytes of KV cache one sample reads while generating `generated` tokens after `prompt`."""
    return float(shape.bytes_per_token * (prompt * generated + generated * (generated + 1) / 2))


def eflops(flops: float, kv: float, intensity: float = INTENSITY) -> float:
    """Kinetics's memory-aware cost: compute plus memory traffic weighted by intensity."""
    return flops + intensity * kv


def exchange_rate(size_ratio: float, inference_ratio: float) -> float:
    """Snell et al.'s K = M + 3(M - 1)/R: how many times more inference tokens a model M
    times smaller may spend for the same total FLOPs (pretraining + inference), where R is
    the ratio of inference tokens to pretraining tokens (both models pretrained alike)."""
    if size_ratio < 1 or inference_ratio <= 0:
        raise ConfigError(
            f"the size ratio M must be >= 1 (larger / smaller) and R > 0; got M={size_ratio}, "
            f"R={inference_ratio}"
        )
    return size_ratio + 3.0 * (size_ratio - 1.0) / inference_ratio
