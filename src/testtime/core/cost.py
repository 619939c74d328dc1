"""The one cost ledger: every generator and verifier call adds to it, in real units.

FLOPs are 2 x parameters x tokens processed (Kaplan et al. 2020), for policy and verifier
models alike; prompt tokens served from a cache are counted apart and cost no FLOPs.
Diffusion models are counted in function evaluations (NFE) and their measured FLOPs.
`seconds` adds up like every other field, call by call: calls that run concurrently each add
their own wall time, so it is time spent in calls, summed, and may exceed the wall time of the
run (a tournament's comparisons run side by side); a seconds budget is a deadline instead.
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
    seconds: float = 0.0  # each call's wall time, summed over calls (overlapping calls add up)
    nfe: int = 0  # denoiser function evaluations (diffusion), one per sample per call
    sandbox_seconds: float = 0.0  # wall seconds model-written code ran in the sandbox
    # of generated_tokens, those spent reasoning (an upstream's reported count; budget-forced
    # thinking), as OpenAI's usage.completion_tokens_details.reasoning_tokens
    reasoning_tokens: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: Cost) -> Cost:
        """What was spent between two readings of one ledger (`other` the earlier)."""
        return Cost(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k: int) -> Cost:
        """The cost of `k` of these."""
        return Cost(*(getattr(self, f.name) * k for f in fields(self)))

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

    def asked(self, n_params: int) -> Cost:
        """This generator call's cost as `Context.ask` counts it (a judge's or aggregator's
        reply is no sample): one verifier call whose tokens, prompt and generated, are
        verifier tokens at the FLOPs of the model asked (`n_params`); cached prompt tokens
        stay counted apart."""
        tokens = self.prompt_tokens + self.generated_tokens
        return Cost.of_verification(n_params, tokens, seconds=self.seconds) + Cost(
            cached_prompt_tokens=self.cached_prompt_tokens
        )


@dataclass(frozen=True, slots=True)
class UnitCost:
    """The most one unit of work may cost (`each`), and what any number of units run
    together share once (`once`: a prompt prefilled once for all its samples).

    Contexts are granted work in such units: an LLM sample at its worst case (`sample`), a
    denoising pass at its exact NFE and FLOPs.
    """

    each: Cost
    once: Cost = Cost()

    def of(self, k: int) -> Cost:
        """The most `k` units may cost together (nothing when k is 0)."""
        return self.once + self.each * k if k > 0 else Cost()

    @classmethod
    def sample(
        cls, n_params: int, prompt_tokens: int, max_tokens: int, verifier_flops: float = 0.0
    ) -> UnitCost:
        """One LLM sample at its worst case: it generates its full `max_tokens` and a
        verifier (`verifier_flops`) scores it; the prompt is prefilled once for all."""
        return cls(
            each=Cost(
                samples=1,
                generated_tokens=max_tokens,
                flops=flops(n_params, max_tokens) + verifier_flops,
            ),
            once=Cost(flops=flops(n_params, prompt_tokens)),
        )


def flops(n_params: int, tokens: float) -> float:
    """Inference FLOPs: 2 x parameters x tokens processed."""
    return 2.0 * n_params * tokens


def human(x: float) -> str:
    """A count for people, in SI steps: 1234567 -> '1.23M' (FLOPs, tokens)."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
