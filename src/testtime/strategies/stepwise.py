"""Growing a solution one step at a time: what every step-level search shares.

A candidate's text is its steps joined by the step separator; extending it asks the
generator to continue that text (`prefix`) until the next separator (a stop string), and
records the new step on the child, whose `parent` is the candidate it grew from.
"""

from __future__ import annotations

from dataclasses import replace

from testtime.core.types import Candidate
from testtime.strategies.base import Context

ROOT = Candidate("", id=-1)  # the empty solution every search starts from


async def extend(
    ctx: Context,
    parent: Candidate,
    k: int,
    *,
    stop: str,
    max_tokens: int,
    temperature: float,
    top_p: float,
) -> list[Candidate]:
    """Up to k children of `parent`, each one sampled step longer (fewer if the budget
    refuses)."""
    prefix = parent.text + stop if parent.text else ""
    got = await ctx.sample(
        k,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=[stop],
        prefix=prefix,
        parent=None if parent.id == ROOT.id else parent.id,
    )
    return [replace(c, steps=(*parent.steps, c.text[len(prefix) :].strip())) for c in got]


def finished(c: Candidate) -> bool:
    """Whether a candidate's last step ended the solution (rather than a step boundary)."""
    return c.id != ROOT.id and (c.completion is None or c.completion.finish_reason != "stop")
