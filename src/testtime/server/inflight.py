"""The server's requests in flight, and the last ones that ended, for its live page.

`GET /testtime/requests` lists them and `GET /testtime/requests/{id}` shows one: what was
asked (model, strategy, the problem's last message, shortened), its state (running, then
served, failed or cancelled), and its progress as the stream shows it (`Observed.snapshot`:
samples so far, the leader, the cost so far). A search (a sample continuing an earlier one)
also carries its tree so far: each sample with the sample it continued. Ended requests are
kept (the last `KEEP`) so a page watching one shows how it ended, with its progress as it
was when it ended (its seconds stop there).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from testtime.server.limits import Key
from testtime.server.plan import Completions, Plain, Strategic
from testtime.server.work import Job

KEEP = 20  # ended requests remembered
SHOWN = 200  # characters of a prompt or answer shown
TREE = 2000  # nodes of a tree sent at most


@dataclass
class Watched:
    """A request on the live page: its job, when it started (epoch seconds), and its
    progress as it was when its task ended (None while it runs)."""

    job: Job
    started: float
    final: dict[str, Any] | None = None

    def progress(self) -> dict[str, Any]:
        """Progress so far, or at the end: an ended request's seconds do not go on growing."""
        return self.final if self.final is not None else self.job.generator.snapshot()


class InFlight:
    """Requests by id: the running ones and the last `KEEP` that ended."""

    def __init__(self) -> None:
        self.jobs: OrderedDict[str, Watched] = OrderedDict()

    def add(self, job: Job) -> None:
        """Watch a started job (its `cid` set, its task created)."""
        watched = self.jobs[job.cid] = Watched(job, time.time())
        if job.task is not None:  # its progress is kept as it was when it ended
            job.task.add_done_callback(lambda _: _end(watched))
        ended = [cid for cid, w in self.jobs.items() if w.job.task is None or w.job.task.done()]
        for cid in ended[: max(0, len(ended) - KEEP)]:
            del self.jobs[cid]

    def listed(self, key: Key | None) -> list[dict[str, Any]]:
        """Every request this key may see (all of them on a server without keys), newest
        first, without trees."""
        shown = [described(w, tree=False) for w in self.jobs.values() if _visible(w.job, key)]
        return shown[::-1]

    def one(self, cid: str, key: Key | None) -> dict[str, Any] | None:
        """One request with its tree so far, or None if unknown (or another key's)."""
        found = self.jobs.get(cid)
        if found is None or not _visible(found.job, key):
            return None
        return described(found)


def _end(watched: Watched) -> None:
    watched.final = watched.job.generator.snapshot()


def _visible(job: Job, key: Key | None) -> bool:
    return key is None or job.key is key


def described(watched: Watched, *, tree: bool = True) -> dict[str, Any]:
    """A request's state and progress; an ended one its outcome (the answer, or why not);
    with `tree`, a search's tree so far."""
    job = watched.job
    plan, task = job.plan, job.task
    state = "running"
    outcome: dict[str, Any] = {}
    if task is not None and task.done():
        if task.cancelled():
            state = "cancelled"
        elif (exc := task.exception()) is not None:
            state, outcome = "failed", {"error": _short(str(exc) or type(exc).__name__)}
        else:
            state, outcome = "served", {"answer": _answer(task.result())}
    strategy = plan.spec.to_dict() if isinstance(plan, Strategic) else None
    return {
        "id": job.cid,
        "model": job.model,
        "kind": "strategy" if isinstance(plan, Strategic) else "plain",
        "strategy": strategy,
        "budget": str(plan.budget) if isinstance(plan, Strategic) else None,
        "prompt": _short(_prompt(plan)),
        "state": state,
        "finished": state != "running",
        "started": watched.started,
        "progress": watched.progress(),
        **outcome,
        **({"tree": search_tree(job)} if tree else {}),
    }


def search_tree(job: Job) -> dict[str, Any] | None:
    """The samples as a tree (a sample's parent: the sample whose text it continued), when
    any sample continued another; else None (independent samples are no tree). Each node
    carries its step too: the text it added to its parent's, what tells siblings apart."""
    found = job.generator.candidates
    if not any(c.parent is not None for c in found):
        return None
    texts = {c.id: c.text for c in found}
    nodes = [
        {"id": c.id, "parent": c.parent, "answer": c.answer, "text": _short(c.text),
         "step": _short(c.text[len(texts.get(c.parent, "")) :] if c.parent is not None else c.text)}
        for c in found[:TREE]
    ]  # fmt: skip
    return {"nodes": nodes, "more": max(0, len(found) - TREE)}


def _prompt(plan: Plain | Strategic | Completions) -> str:
    if isinstance(plan, Strategic):
        messages = plan.problem.messages
    elif isinstance(plan, Plain):
        messages = plan.request.messages
    else:
        prompt = plan.requests[0].prompt if plan.requests else ""
        return prompt if isinstance(prompt, str) else f"({len(prompt or ())} token ids)"
    return messages[-1].content if messages else ""


def _answer(body: dict[str, Any]) -> str | None:
    choices = body.get("choices") or [{}]
    first = choices[0]
    text = first.get("text") if "text" in first else (first.get("message") or {}).get("content")
    return None if text is None else _short(str(text))


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"
