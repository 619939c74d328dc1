"""What a chat request asks for: model names, strategies, budgets, limits, continuations."""

from __future__ import annotations

from typing import Any

import pytest

from testtime.core.budget import Budget
from testtime.server.errors import ApiError
from testtime.server.plan import Plain, Strategic, plan, strategy_in_model
from testtime.server.schemas import ChatRequest
from testtime.server.settings import Settings

SERVED = "smollm2-135m"
USER = [{"role": "user", "content": "What is 3 + 4?"}]


def planned(settings: Settings | None = None, **body: Any) -> Plain | Strategic:
    req = ChatRequest.model_validate({"model": SERVED, "messages": USER, **body})
    return plan(req, settings or Settings(SERVED))


def refused(status: int = 400, settings: Settings | None = None, **body: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        planned(settings, **body)
    assert info.value.status == status, info.value.message
    return info.value


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (SERVED, None),
        (f"self_consistency@{SERVED}", ("self_consistency", {})),
        (
            f"self_consistency:n=4,temperature=0.6@{SERVED}",
            ("self_consistency", {"n": 4, "temperature": 0.6}),
        ),
        (f"beam_search:split=blank_line@{SERVED}", ("beam_search", {"split": "blank_line"})),
    ],
)
def test_model_names_pick_a_strategy(model: str, expected: Any) -> None:
    assert strategy_in_model(model, SERVED) == expected


@pytest.mark.parametrize("model", ["gpt-4o", f"x@{SERVED}x", f"@{SERVED}", SERVED + "@"])
def test_unknown_models_are_404s_naming_the_served_one(model: str) -> None:
    with pytest.raises(ApiError) as info:
        strategy_in_model(model, SERVED)
    err = info.value
    if model == f"@{SERVED}":
        assert err.status == 404
    assert err.status == 404 and SERVED in err.message and "/v1/models" in err.message


def test_a_plain_request_keeps_every_sampling_field() -> None:
    got = planned(
        n=3,
        max_tokens=17,
        temperature=0.3,
        top_p=0.9,
        stop="\n",
        seed=5,
        logprobs=True,
        top_logprobs=2,
    )
    assert isinstance(got, Plain)
    r = got.request
    assert (r.n, r.max_tokens, r.temperature, r.top_p, r.stop, r.seed) == (
        3,
        17,
        0.3,
        0.9,
        ("\n",),
        5,
    )
    assert r.logprobs and r.top_logprobs == 2 and r.prefix == ""


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    got = planned(max_tokens=10, max_completion_tokens=20)
    assert isinstance(got, Plain) and got.request.max_tokens == 20


def test_continue_final_message_continues_the_assistant_text() -> None:
    msgs = [*USER, {"role": "assistant", "content": "Let me see. 3 + 4"}]
    got = planned(messages=msgs, continue_final_message=True, add_generation_prompt=False)
    assert isinstance(got, Plain)
    assert got.request.prefix == "Let me see. 3 + 4"
    assert [m.role for m in got.request.messages] == ["user"]


def test_continuation_errors_say_what_to_set() -> None:
    msgs = [*USER, {"role": "assistant", "content": "so"}]
    assert "add_generation_prompt" in refused(messages=msgs, continue_final_message=True).message
    assert "assistant" in refused(continue_final_message=True, add_generation_prompt=False).message
    assert "continue_final_message" in refused(add_generation_prompt=False).message


def test_developer_messages_and_text_parts_are_read() -> None:
    msgs = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "3 + 4?"}],
        },
    ]
    got = planned(messages=msgs)
    assert isinstance(got, Plain)
    assert [(m.role, m.content) for m in got.request.messages] == [
        ("system", "Be brief."),
        ("user", "What is 3 + 4?"),
    ]


def test_a_strategy_from_extra_body_or_model_name() -> None:
    a = planned(testtime={"strategy": "self_consistency", "params": {"n": 4}, "budget": "8"})
    b = planned(model=f"self_consistency:n=4@{SERVED}", testtime={"budget": 8})
    for got in (a, b):
        assert isinstance(got, Strategic)
        assert got.spec.name == "self_consistency" and got.spec.params.n == 4  # type: ignore[attr-defined]
        assert got.budget == Budget(samples=8)
        assert got.seed == 0 and got.max_tokens == 256


def test_request_params_override_the_model_names() -> None:
    got = planned(model=f"self_consistency:n=4@{SERVED}", testtime={"params": {"n": 6}})
    assert isinstance(got, Strategic) and got.spec.params.n == 6  # type: ignore[attr-defined]


def test_an_unknown_strategy_lists_the_available_ones() -> None:
    err = refused(testtime={"strategy": "majority_vote"})
    assert "self_consistency" in err.message and "beam_search" in err.message
    assert err.param == "testtime.strategy"


def test_bad_params_name_what_exists() -> None:
    err = refused(testtime={"strategy": "self_consistency", "params": {"samples": 4}})
    assert "'n'" in err.message or "n," in err.message
    assert (
        "must be > 0"
        in refused(testtime={"strategy": "self_consistency", "params": {"n": 0}}).message
    )


def test_a_strategy_and_a_model_name_strategy_must_agree() -> None:
    err = refused(model=f"best_of_n@{SERVED}", testtime={"strategy": "self_consistency"})
    assert "give one" in err.message


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 2), ("stop", "\n"), ("logprobs", True), ("continue_final_message", True)],
)
def test_fields_a_strategy_cannot_honour_are_refused(field: str, value: Any) -> None:
    err = refused(testtime={"strategy": "single"}, **{field: value})
    assert err.param == field and "strategy" in err.message


def test_budgets_above_the_maximum_are_refused_with_the_maximum() -> None:
    settings = Settings(SERVED, max_budget=Budget(samples=16, tokens=4096))
    err = refused(settings=settings, testtime={"strategy": "single", "budget": 1e12})
    assert "16 samples" in err.message and "at most 16" in err.message
    got = planned(settings, testtime={"strategy": "single", "budget": {"flops": 1e12}})
    assert isinstance(got, Strategic)
    assert got.budget == Budget(samples=16, tokens=4096, flops=1e12)  # the maximum fills in


@pytest.mark.parametrize(
    "budget", [0, -1, "0 samples", "lots", {}, 2.5, {"samples": 0}, "tokens=1.5"]
)
def test_bad_budgets_are_400s(budget: Any) -> None:
    if isinstance(budget, dict) and budget.get("samples") == 0:
        with pytest.raises(Exception):  # noqa: B017  (pydantic refuses it before plan)
            planned(testtime={"strategy": "single", "budget": budget})
        return
    err = refused(testtime={"strategy": "single", "budget": budget})
    assert err.param == "testtime.budget"


def test_huge_integer_params_are_refused() -> None:
    err = refused(testtime={"strategy": "mcts", "params": {"iterations": 10**9}})
    assert "iterations" in err.message and "4096" in err.message


def test_absurd_n_and_max_tokens_are_refused() -> None:
    assert "64" in refused(n=500).message
    assert "4096" in refused(max_tokens=100_000).message
    settings = Settings(SERVED, max_budget=Budget(samples=64, tokens=1000))
    assert "1000 tokens" in refused(settings=settings, n=8, max_tokens=200).message


def test_verifiers_that_load_files_need_permission() -> None:
    err = refused(testtime={"strategy": "best_of_n", "verifier": "prm"})
    assert "--allow-file-verifiers" in err.message
    settings = Settings(SERVED, allow_file_verifiers=True)
    err = refused(
        settings=settings, testtime={"strategy": "best_of_n", "verifier": {"name": "prm"}}
    )
    assert "path=DIR" in err.message  # allowed now: the complaint is about its parameters


def test_an_unknown_verifier_lists_the_available_ones() -> None:
    err = refused(testtime={"strategy": "best_of_n", "verifier": "gold"})
    assert "self_certainty" in err.message and err.param == "testtime.verifier"


def test_testtime_options_without_a_strategy_are_refused() -> None:
    assert "need a strategy" in refused(testtime={"budget": 8}).message


def test_empty_prompts_and_too_many_messages_are_refused() -> None:
    assert "no text" in refused(messages=[{"role": "user", "content": "  "}]).message
    settings = Settings(SERVED, max_messages=2)
    assert "at most 2" in refused(settings=settings, messages=USER * 3).message
