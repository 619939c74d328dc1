"""Training data for learned probes, from a stored run: each pool sample's text, the
problem it answers, and whether it was correct."""

from __future__ import annotations

import json

from testtime.core.errors import DataError
from testtime.core.types import Message, Request
from testtime.lab.data.spec import spec_from_dict
from testtime.lab.data.store import Store


def probe_examples(store: Store, run_id: str) -> tuple[str, list[Request], list[int], list[str]]:
    """(model, one request per graded sample - the problem with the sample as its prefix -,
    labels 1/0, problem ids). Refuses runs with several models or no graded samples."""
    models = spec_from_dict(store.run(run_id)["spec"]).models  # refuses a diffusion run
    if len(models) != 1:
        raise DataError(f"run {run_id} used {len(models)} models; a probe is trained for one")
    prompts: dict[tuple[str, str], tuple[Message, ...]] = {}
    for task in {t for _, t, *_ in store.samples(run_id)}:
        for row in store.problems(run_id, task):
            msgs = tuple(Message(role, content) for role, content in json.loads(row.prompt))
            prompts[(task, row.problem)] = msgs
    requests, labels, groups = [], [], []
    for row in store.db.execute(
        "SELECT task, problem, text, correct FROM samples WHERE run = ? AND correct IS NOT NULL"
        " ORDER BY task, problem, pool, seed, idx", (run_id,),
    ):  # fmt: skip
        task, problem, text, correct = row
        requests.append(Request(prompts[(task, problem)], prefix=text))
        labels.append(int(correct))
        groups.append(f"{task}/{problem}")
    if not requests:
        raise DataError(f"run {run_id} has no graded samples to train a probe on")
    return models[0], requests, labels, groups
