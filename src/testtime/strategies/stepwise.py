"""Growing a solution one step at a time: what every step-level search shares.

A candidate's text is its steps joined by the step separator; extending it asks the
generator to continue that text (`prefix`) until the next separator (a stop string), and
records the new step on the child, whose `parent` is the candidate it grew from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.steps import SplitMode, StepSplitter
from testtime.core.types import Candidate
from testtime.strategies.base import Context
from testtime.strategies.parallel import check_sampling

ROOT = Candidate("", id=-1)  # the empty solution every search starts from


@dataclass(frozen=True)
class StepParams(Params):
    """How a search samples one step and where a step ends (shared by every search)."""

    step_tokens: int = 96  # the most tokens one step may take
    temperature: float = 0.8  # HF search-and-learn
    top_p: float = 1.0
    split: SplitMode = "blank_line"  # steps end at a blank line, a 'Step k:' marker, or a stop
    pattern: str = ""  # the stop string for split=stop

    def validate(self) -> None:
        self.positive("step_tokens")
        check_sampling(self.temperature, self.top_p)
        if StepSplitter(self.split, self.pattern).stop is None:
            raise ConfigError(
                "a step-level search generates one step at a time and needs a step mode "
                "that ends a step with a stop string: blank_line, markers or stop"
            )

    @property
    def stop(self) -> str:
        """The separator a step ends at (a stop string while generating)."""
        return StepSplitter(self.split, self.pattern).stop or ""


async def extend(ctx: Context, parent: Candidate, k: int, p: StepParams) -> list[Candidate]:
    """Up to k children of `parent`, each one sampled step longer (fewer if the budget
    refuses)."""
    prefix = parent.text + p.stop if parent.text else ""
    got = await ctx.sample(
        k,
        temperature=p.temperature,
        top_p=p.top_p,
        max_tokens=p.step_tokens,
        stop=[p.stop],
        prefix=prefix,
        parent=None if parent.id == ROOT.id else parent.id,
    )
    return [replace(c, steps=(*parent.steps, c.text[len(prefix) :].strip())) for c in got]


def finished(c: Candidate) -> bool:
    """Whether a candidate's last step ended the solution (rather than a step boundary)."""
    return c.id != ROOT.id and (c.completion is None or c.completion.finish_reason != "stop")
