"""One search's trace as the viewer draws it: read from a `--trace` file or a lab store's
results row, checked, and shaped per kind (a tree, a genealogy, a tally, a bracket).

The shapes are plain JSON made here, not in the page, so they are tested without a
browser and the page only draws: a tree's nodes with their parent, scores, visits and
whether they lie on the chosen path; a genealogy's lanes per step with the lane each
descends from; a tally's groups with their members; a tournament's comparisons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testtime.core.answers import same_answer
from testtime.core.errors import DataError
from testtime.core.resampling import normalize
from testtime.core.types import TRACE_VERSION

WRITERS = "`testtime run ... --trace FILE` or `testtime diffuse ... --trace FILE`"
STORED_KEYS = ("model", "task", "arm", "budget", "seed", "problem")


class TraceError(DataError):
    """A trace the viewer cannot show: the message says why and what to do."""


# -- reading ------------------------------------------------------------------------------
def read_file(path: Path) -> list[dict[str, Any]]:
    """The results a trace file holds (a list, as `run` writes, or one, as `diffuse` does),
    each checked for the fields the viewer reads."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"no trace file {path}; write one with {WRITERS}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"cannot read the trace file {path} ({e}); check the file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        ended = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated")
        cut = " (it ends early: truncated?)" if ended else ""
        raise TraceError(
            f"{path} is not a trace: not JSON at line {e.lineno} column {e.colno}{cut}; "
            f"write it again with {WRITERS}"
        ) from None
    results = data if isinstance(data, list) else [data]
    return [checked(r, f"{path} result {i}") for i, r in enumerate(results)]


def checked(result: Any, where: str) -> dict[str, Any]:
    """`result` when it is a result this viewer reads: the current trace version (none
    written: version 1), a candidates list and a cost."""
    if not isinstance(result, dict):
        raise TraceError(f"{where} is no result object; pass a file written by {WRITERS}")
    version = result.get("trace_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version != TRACE_VERSION:
        raise TraceError(
            f"{where} was written by another testtime (trace version {version!r}; this one "
            f"reads version {TRACE_VERSION}); open it with the testtime that wrote it, or "
            "write the trace again with this one"
        )
    candidates = result.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise TraceError(
            f"{where} has no 'candidates' list, so it is no testtime trace; pass a file "
            f"written by {WRITERS}"
        )
    if not isinstance(result.get("cost", {}), dict):
        raise TraceError(f"{where} has a 'cost' that is no object; write the trace again")
    return result


def stored_result(row: Sequence[Any], key: Mapping[str, Any]) -> dict[str, Any]:
    """A lab store's results row (answer, correct, chosen, exhausted, cost, trace,
    candidates) as a result dict, as a trace file would hold it."""
    answer, correct, chosen, exhausted, cost, trace, candidates = row
    where = "stored result " + " ".join(f"{k}={key[k]}" for k in STORED_KEYS)
    try:
        result = {
            "problem_id": key["problem"],
            "answer": answer,
            "correct": None if correct is None else bool(correct),
            "chosen": chosen,
            "budget_exhausted": bool(exhausted),
            "strategy": {"name": key["arm"], "budget": key["budget"], "seed": key["seed"]},
            "cost": json.loads(cost),
            "trace": json.loads(trace) if trace else None,
            "candidates": json.loads(candidates),
        }
    except json.JSONDecodeError as e:
        raise TraceError(f"{where} is damaged ({e}); run that arm again") from None
    return checked(result, where)


# -- shaping ------------------------------------------------------------------------------
def view(result: Mapping[str, Any], where: str = "the trace") -> dict[str, Any]:
    """What the page draws for one result: its summary, candidates, cost, and the shape of
    its search (`kind`: mcts, tree, genealogy, fk, tournament, votes, scores or plain)."""
    try:
        return _view(result)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise TraceError(
            f"{where} is malformed ({type(e).__name__}: {e}); write it again with {WRITERS}"
        ) from None


def _view(result: Mapping[str, Any]) -> dict[str, Any]:
    candidates = [_candidate(c, i) for i, c in enumerate(result["candidates"])]
    trace = result.get("trace") or {}
    inner = trace.get("inner") if isinstance(trace.get("inner"), dict) else None
    search = inner or trace  # compute_optimal: the strategy it chose did the search
    chosen = result.get("chosen")
    if chosen is None:  # a trace file writes the chosen text, not its id
        chosen = next((c["id"] for c in candidates if c["text"] == result.get("text")
                       and result.get("text") is not None), None)  # fmt: skip
    kind, shape = _shape(search, candidates, chosen, result.get("images"))
    return {
        "problem_id": result.get("problem_id"),
        "answer": result.get("answer"),
        "correct": result.get("correct"),
        "chosen": chosen,
        "budget_exhausted": bool(result.get("budget_exhausted")),
        "strategy": result.get("strategy") or {},
        "cost": {k: v for k, v in (result.get("cost") or {}).items() if v},
        "candidates": candidates,
        "kind": kind,
        "shape": shape,
        "trace": trace,
    }


def _candidate(c: Mapping[str, Any], position: int) -> dict[str, Any]:
    scores = {str(k): float(v) for k, v in (c.get("scores") or {}).items()}
    return {
        "id": int(c.get("id", position)),
        "parent": c.get("parent"),
        "text": c.get("text", ""),
        "steps": list(c.get("steps") or ()),
        "answer": c.get("answer"),
        "correct": c.get("correct"),
        "scores": scores,
        "score": next(iter(scores.values()), None),
        "generated_tokens": int(c.get("generated_tokens") or 0),
        "finish_reason": c.get("finish_reason", c.get("finish")),
    }


def _shape(
    trace: Mapping[str, Any], cands: list[dict[str, Any]], chosen: int | None, images: Any
) -> tuple[str, dict[str, Any]]:
    if isinstance(trace.get("tree"), list):
        return "mcts", mcts_tree(trace["tree"], cands, chosen)
    if isinstance(trace.get("checkpoints"), list):
        return "fk", fk_genealogy(trace, cands, images)
    steps = trace.get("steps")
    if isinstance(steps, list) and steps and isinstance(steps[0], dict) and "ess" in steps[0]:
        return "genealogy", particle_genealogy(steps, cands, chosen)
    if isinstance(trace.get("comparisons"), list):
        return "tournament", bracket(trace, cands)
    if isinstance(trace.get("votes"), dict):
        return "votes", tally(trace["votes"], cands, chosen)
    if any(c["parent"] is not None for c in cands) or "rounds" in trace:
        return "tree", candidate_tree(trace, cands, chosen)
    if isinstance(trace.get("scores"), list):
        return "scores", {"scores": trace["scores"]}
    return "plain", {}


def _path(parents: Mapping[int, int | None], end: int | None) -> list[int]:
    """The nodes from `end` up to the root (cycles in a broken trace stop the walk)."""
    out: list[int] = []
    while end is not None and end in parents and end not in out:
        out.append(end)
        end = parents[end]
    return out


def candidate_tree(
    trace: Mapping[str, Any], cands: list[dict[str, Any]], chosen: int | None
) -> dict[str, Any]:
    """A tree over candidates by their parents (beam search, REBASE): a root (-1, the
    empty solution) above the first steps; each node's round, and whether a round kept it."""
    ids = {c["id"] for c in cands}
    rounds = trace.get("rounds") or []
    kept = {i for r in rounds for i in r.get("kept", [])}
    done = set(trace.get("finished") or []) | {i for r in rounds for i in r.get("finished", [])}
    round_of = {i: n for n, r in enumerate(rounds) for i in r.get("scored", [])}
    nodes = [_node(-1, None, None)]
    for c in cands:
        parent = c["parent"] if c["parent"] in ids else -1
        nodes.append(_node(c["id"], parent, c, kept=c["id"] in kept, finished=c["id"] in done,
                           round=round_of.get(c["id"])))  # fmt: skip
    parents = {n["id"]: n["parent"] for n in nodes}
    path = _path(parents, chosen)
    return {"nodes": _on_path(nodes, path), "path": path, "rounds": len(rounds)}


def mcts_tree(
    tree: Sequence[Mapping[str, Any]], cands: list[dict[str, Any]], chosen: int | None
) -> dict[str, Any]:
    """MCTS's nodes (by node index: 0 the root) with their candidate, visits, summed
    value and mean value Q; the chosen path ends at the node holding the chosen candidate."""
    by_id = {c["id"]: c for c in cands}
    nodes = []
    for i, n in enumerate(tree):
        visits = int(n["visits"])
        value = float(n["value"])
        node = _node(i, n["parent"], by_id.get(n["candidate"]), visits=visits, value=value,
                     q=value / visits if visits else None)  # fmt: skip
        node["candidate"] = n["candidate"]
        nodes.append(node)
    end = next((i for i, n in enumerate(tree) if chosen is not None and n["candidate"] == chosen
                and i > 0), None)  # fmt: skip
    path = _path({n["id"]: n["parent"] for n in nodes}, end)
    return {"nodes": _on_path(nodes, path), "path": path}


def _node(
    nid: int, parent: int | None, c: Mapping[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": nid,
        "parent": parent,
        "candidate": c["id"] if c else None,
        "score": c["score"] if c else None,
        "answer": c["answer"] if c else None,
        "steps": len(c["steps"]) if c else 0,
        **extra,
    }


def _on_path(nodes: list[dict[str, Any]], path: list[int]) -> list[dict[str, Any]]:
    on = set(path)
    return [{**n, "chosen": n["id"] in on} for n in nodes]


def particle_genealogy(
    steps: Sequence[Mapping[str, Any]], cands: list[dict[str, Any]], chosen: int | None
) -> dict[str, Any]:
    """Particle filtering's lanes: per step each particle's candidate, weight and score,
    and the lane of the previous step it descends from (the resampling's ancestor)."""
    by_id = {c["id"]: c for c in cands}
    out = []
    for t, s in enumerate(steps):
        before = steps[t - 1] if t else None
        lanes = []
        for i, cid in enumerate(s["particles"]):
            c = by_id.get(cid)
            lanes.append({
                "lane": i, "candidate": cid, "weight": float(s["weights"][i]),
                "score": c["score"] if c else None, "answer": c["answer"] if c else None,
                "from": _ancestor(before, i),
            })  # fmt: skip
        out.append({"step": t, "ess": float(s["ess"]), "resampled": bool(s["resampled"]),
                    "ancestors": s.get("ancestors"), "temperature": s.get("temperature"),
                    "lanes": lanes})  # fmt: skip
    return {"steps": out, "particles": len(steps[0]["particles"]) if steps else 0,
            "chosen": chosen}  # fmt: skip


def _ancestor(before: Mapping[str, Any] | None, lane: int) -> int | None:
    """The lane of the step before that `lane` continues: its ancestor when that step
    resampled, else itself; None at the first step."""
    if before is None:
        return None
    ancestors = before.get("ancestors")
    return int(ancestors[lane]) if before.get("resampled") and ancestors else lane


def fk_genealogy(
    trace: Mapping[str, Any], cands: list[dict[str, Any]], images: Any
) -> dict[str, Any]:
    """FK steering's checkpoints as lanes (reward, normalised weight, ancestor), the final
    weights and draw, and the images: each checkpoint's rewarded x0 estimates and the
    finished candidates' (when the trace kept them: `testtime diffuse --trace`)."""
    scored = (images or {}).get("scored") or []
    finals = (images or {}).get("candidates") or []
    out = []
    for t, s in enumerate(trace["checkpoints"]):
        weights = normalize([float(w) for w in s["log_weights"]])
        pics = scored[t]["images"] if t < len(scored) else []
        before = trace["checkpoints"][t - 1] if t else None
        lanes = [{"lane": i, "reward": float(r), "weight": weights[i], "from": _ancestor(before, i),
                  "image": pics[i] if i < len(pics) else None}
                 for i, r in enumerate(s["rewards"])]  # fmt: skip
        out.append({"step": s["step"], "t": s.get("t"), "ess": float(s["ess"]),
                    "resampled": bool(s["resampled"]), "ancestors": s.get("ancestors"),
                    "lanes": lanes})  # fmt: skip
    final = [{"candidate": c["id"], "reward": c["score"], "answer": c["answer"],
              "image": finals[i] if i < len(finals) else None}
             for i, c in enumerate(cands)]  # fmt: skip
    return {"steps": out, "final": final, "final_weights": trace.get("final_weights"),
            "final_ancestors": trace.get("final_ancestors"),
            "particles": len(trace["checkpoints"][0]["rewards"]) if out else 0}  # fmt: skip


def tally(
    votes: Mapping[str, Any], cands: list[dict[str, Any]], chosen: int | None
) -> dict[str, Any]:
    """The vote: each answer group's weight and share, and its members (candidates whose
    answer is the same by core's equivalence); the group holding the chosen one wins."""
    total = sum(float(w) for w in votes.values()) or 1.0
    members: dict[str, list[int]] = {str(a): [] for a in votes}
    for c in cands:
        home = next((a for a in members if c["answer"] is not None
                     and same_answer(str(c["answer"]), a)), None)  # fmt: skip
        if home is not None:
            members[home].append(c["id"])
    groups = [{"answer": str(a), "weight": float(w), "share": float(w) / total,
               "members": members[str(a)], "chosen": chosen in members[str(a)]}
              for a, w in votes.items()]  # fmt: skip
    unanswered = [c["id"] for c in cands if c["answer"] is None]
    return {"groups": groups, "unanswered": unanswered}


def bracket(trace: Mapping[str, Any], cands: list[dict[str, Any]]) -> dict[str, Any]:
    """A tournament's comparisons by round, both orders each (reply, letter read, vote),
    with byes, points (round robin) and the counts of what was unusual."""
    by_id = {c["id"]: c for c in cands}
    rounds: dict[int, list[dict[str, Any]]] = {}
    for comp in trace["comparisons"]:
        a, b = comp["pair"]
        rounds.setdefault(int(comp["round"]), []).append({
            **comp, "answers": [by_id.get(a, {}).get("answer"), by_id.get(b, {}).get("answer")],
        })  # fmt: skip
    keys = ("format", "judge", "samples", "entrants", "byes", "unparsed", "unfit", "ties",
            "stopped")  # fmt: skip
    points = sorted(trace.get("points") or [], key=lambda p: (-p[1], p[0]))
    return {**{k: trace.get(k) for k in keys}, "points": points,
            "rounds": [rounds[r] for r in sorted(rounds)]}  # fmt: skip


def finite(x: Any) -> Any:
    """`x` with NaN and infinities as None, so the JSON a page reads is valid."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x
