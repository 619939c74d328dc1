"""The one cost ledger: every generator and verifier call adds to it, in real units.

FLOPs are 2 x parameters x tokens processed (Kaplan et al. 2020), for policy and verifier
models alike; prompt tokens served from a cache are counted apart and cost no FLOPs.
Diffusion models are counted in function evaluations (NFE) and their measured FLOPs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True, slots=True)
class Cost:
    """What was spent. Costs add with `+`."""

    prompt_tokens: int = 0  # prompt tokens recomputed by the policy
    cached_prompt_tokens: int = 0  # prompt tokens served from a prefix / KV cache
    generated_tokens: int = 0
    samples: int = 0  # completions returned by the policy
    generator_calls: int = 0
    verifier_calls: int = 0
    verifier_tokens: int = 0  # tokens a model-based verifier processed or generated
    flops: float = 0.0
    seconds: float = 0.0
    nfe: int = 0  # denoiser function evaluations (diffusion), one per sample per call

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def tokens(self) -> int:
        """Every token a model computed: recomputed prompt, generated, and verifier tokens."""
        return self.prompt_tokens + self.generated_tokens + self.verifier_tokens

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def of_generation(
        cls,
        n_params: int,
        prompt_tokens: int,
        cached_prompt_tokens: int,
        generated_tokens: int,
        samples: int,
        seconds: float = 0.0,
    ) -> Cost:
        """The cost of one generator call."""
        return cls(
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached_prompt_tokens,
            generated_tokens=generated_tokens,
            samples=samples,
            generator_calls=1,
            flops=flops(n_params, prompt_tokens + generated_tokens),
            seconds=seconds,
        )

    @classmethod
    def of_verification(
        cls, n_params: int, tokens: int, calls: int = 1, seconds: float = 0.0
    ) -> Cost:
        """The cost of one verifier call that ran a model over `tokens` tokens."""
        return cls(
            verifier_calls=calls,
            verifier_tokens=tokens,
            flops=flops(n_params, tokens),
            seconds=seconds,
        )


def flops(n_params: int, tokens: float) -> float:
    """Inference FLOPs: 2 x parameters x tokens processed."""
    return 2.0 * n_params * tokens
