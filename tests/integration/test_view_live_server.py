"""The server's live page in headless Chromium (issue 18): `testtime serve`'s /testtime/live
lists a beam search in flight, its page shows samples, leader, cost and the growing tree
changing without a reload, then how it ended; screenshot live-server-request.png.

The fake generator's calls wait for the test's go, one at a time: each step is seen on the
page however slow the machine is. (With a fixed latency, beam search on the fake's
three-step arithmetic ends in about a second: before a fresh browser has polled twice.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
from viewer_browser import Viewer, viewer  # noqa: F401

from testtime.core.types import Request
from testtime.generators.base import Generation
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app

QUESTION = "What is (3 + 4) * 5?"
STEPS = ["Let me think step by step.", "3 + 4 = 7.", "7 * 5 = 35.", "Check: 35 / 5 = 7.",
         "Check: 7 - 4 = 3."]  # fmt: skip
WRONG = {2: "7 * 5 = 36.", 3: "Check: 35 / 5 = 8.", 4: "Check: 7 - 4 = 2."}  # a slip at a step


def _texts() -> dict[str, float]:
    """A right six-step solution and slips at steps 3-5, so beams branch and get pruned."""
    right = "\n\n".join([*STEPS, "Answer: 35"])
    out = {right: 0.4}
    for at, slip in WRONG.items():
        steps = [*STEPS[:at], slip, *STEPS[at + 1 :]]
        out["\n\n".join([*steps, f"Answer: {36 if at == 2 else 35}"])] = 0.2
    return out


class Gated(FakeGenerator):
    """The scripted fake generator, each call waiting for a go from the test (`go`)."""

    def __init__(self) -> None:
        super().__init__({QUESTION: _texts()})
        self.go = threading.Semaphore(0)
        self.waiting = 0  # calls waiting for a go now

    async def generate(self, request: Request) -> Generation:
        self.waiting += 1
        try:
            while not self.go.acquire(blocking=False):  # polled: the loop keeps serving
                await asyncio.sleep(0.01)
        finally:
            self.waiting -= 1
        return await super().generate(request)


def _text(v: Viewer, selector: str) -> str:
    """An element's text read in the page (the page redraws its elements as it polls)."""
    return str(
        v.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''",
            selector,
        )
    )


def _count(v: Viewer, selector: str) -> int:
    return int(v.driver.execute_script("return document.querySelectorAll(arguments[0]).length",
                                       selector))  # fmt: skip


def test_a_search_in_flight_changes_on_the_server_live_page(
    viewer: Callable[[Any], Viewer],  # noqa: F811
) -> None:
    gen = Gated()
    v = viewer(create_app(Settings("fake"), gen))
    v.open("/testtime/live")
    assert "no request yet" in _text(v, "#none")
    body = {"model": "fake", "messages": [{"role": "user", "content": QUESTION}], "seed": 7,
            "testtime": {"strategy": "beam_search", "verifier": "step_check",
                         "params": {"width": 2, "n": 4, "max_steps": 8}}}  # fmt: skip
    answered: dict[str, Any] = {}

    def ask() -> None:
        r = httpx.post(v.url + "/v1/chat/completions", json=body, timeout=60)
        answered.update(status=r.status_code, body=r.json())

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    try:
        # the list shows the request while it runs, its samples growing without a reload
        v.wait(lambda d: _text(v, "#requests tbody .state") == "running", 15)
        assert _text(v, "#requests tbody .samples") == "0"
        assert "beam_search" in _text(v, "#requests tbody")
        gen.go.release()
        v.wait(lambda d: int(_text(v, "#requests tbody .samples") or 0) > 0, 15)
        # the request's own page: samples, leader, cost and the tree grow call by call
        v.css("#requests tbody a").click()
        v.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"), 15)
        seen: list[tuple[int, int, str]] = []  # (samples, tree nodes, cost) as shown
        while thread.is_alive() and len(seen) < 6:
            v.wait(lambda d: gen.waiting > 0 or not thread.is_alive(), 15)
            if not thread.is_alive():
                break
            shown = int(_text(v, "#samples") or 0)
            gen.go.release()  # one more call
            v.wait(lambda d, s=shown: int(_text(v, "#samples") or 0) > s, 15)
            assert _text(v, "#state") == "running"
            seen.append((int(_text(v, "#samples")), _count(v, "#tree .node"), _text(v, "#cost")))
            if len(seen) == 5:
                v.screenshot("live-server-request")  # a search in flight, its tree so far
        samples = [s for s, _, _ in seen]
        nodes = [n for _, n, _ in seen]
        assert len(seen) == 6 and samples == sorted(set(samples))  # it grew, call by call
        assert nodes[-1] > nodes[0] > 0 and len({c for _, _, c in seen}) == len(seen)
        gen.go.release(1000)  # the rest at once
        thread.join(30)
    finally:
        gen.go.release(1000)  # never leave the server waiting
    assert answered["status"] == 200, answered
    v.wait(lambda d: d.execute_script("return document.body.dataset.finished === '1'"), 15)
    assert _text(v, "#state") == "served (finished)" and _text(v, "#tree") != ""
    content = answered["body"]["choices"][0]["message"]["content"]
    assert _text(v, "#answer") == "answer " + " ".join(content.split())
    final = int(_text(v, "#samples"))
    assert final >= samples[-1] and _count(v, "#tree .node") == final + 1  # + the problem
    labels = v.driver.execute_script(
        "return [...document.querySelectorAll('#tree text')].map((t) => t.textContent)"
    )  # each node's step: what it added to the sample it continued
    assert {"the problem", "3 + 4 = 7.", "7 * 5 = 35.", "Answer: 35"} <= set(labels)
    assert v.error() == "" and "null" not in _text(v, "#live")
    v.open("/testtime/live")  # the list shows how it ended
    assert _text(v, "#requests tbody .state") == "served"
    assert _text(v, "#requests tbody .samples") == str(final)
