"""Reward models from a local directory, on tiny random models the test builds (a one-label
and a three-label LlamaForSequenceClassification, a causal LM); nothing is downloaded."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.verifiers.base import traits_of

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

P = Problem.from_prompt("What is 3 + 4?", id="q", system="Answer briefly.")
TEXTS = ["3 + 4 = 7. Answer: 7", "Answer: 8", "It is 7 and 7 * 2 = 14. Answer: 7"]
TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def _tokenizer(chat: bool = True) -> Any:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    corpus = ["system user assistant: What is 3 + 4 = 7 and 7 * 2 = 14. Answer: 14 8 briefly"]
    bpe.train_from_iterator(corpus * 20, vocab_size=300, special_tokens=["<s>", "<pad>"])
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", pad_token="<pad>"
    )
    if chat:
        tok.chat_template = TEMPLATE
    return tok


def _build(path: Path, kind: str) -> Path:
    tok = _tokenizer(chat=kind != "nochat")
    labels = {"three": {0: "bad", 1: "ok", 2: "good"}}.get(kind, {0: "reward"})
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    cls = transformers.LlamaForCausalLM if kind == "causal" else (
        transformers.LlamaForSequenceClassification
    )  # fmt: skip
    cls(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rm")
    built = {k: _build(root / k, k) for k in ("one", "three", "causal", "nochat")}
    # a config that claims a reward head over a causal LM's weights: the head is missing
    headless = root / "headless"
    shutil.copytree(built["causal"], headless)
    config = json.loads((headless / "config.json").read_text())
    config.update(architectures=["LlamaForSequenceClassification"], num_labels=1)
    (headless / "config.json").write_text(json.dumps(config))
    return {**built, "headless": headless}


def rm(path: Path, **params: Any) -> Any:
    return build_verifier("reward_model", {"path": str(path), "dtype": "fp32", **params})


def _direct(path: Path, text: str) -> tuple[list[int], Any]:
    """The conversation's ids and logits, straight from transformers (no verifier code)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(path), local_files_only=True, dtype=torch.float32
    ).eval()
    chat = [{"role": m.role, "content": m.content} for m in P.messages]
    rendered = tok.apply_chat_template([*chat, {"role": "assistant", "content": text}],
                                       tokenize=False)  # fmt: skip
    assert rendered.count("assistant: ") == 1 and text in rendered
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return ids, model(torch.tensor([ids])).logits[0]


def test_the_score_is_the_heads_logit_on_the_whole_conversation(models) -> None:
    verifier = rm(models["one"])
    got = asyncio.run(verifier.score(P, [Candidate(t) for t in TEXTS]))
    direct = [_direct(models["one"], t) for t in TEXTS]
    assert got.values == pytest.approx([float(logits[0]) for _, logits in direct], abs=1e-5)
    assert len(set(got.values)) == 3  # the text matters
    again = asyncio.run(verifier.score(P, [Candidate(t) for t in reversed(TEXTS)]))
    assert again.values == got.values[::-1]  # deterministic, whatever the order
    n_params = sum(t.numel() for t in verifier.model.parameters())
    tokens = sum(len(ids) for ids, _ in direct)
    assert got.cost.verifier_tokens == tokens and got.cost.verifier_calls == 3
    assert got.cost.flops == 2 * n_params * tokens
    assert got.cost.generated_tokens == 0 and got.cost.samples == 0


def test_batches_score_as_one_at_a_time(models) -> None:
    cands = [Candidate(t) for t in TEXTS]
    one = asyncio.run(rm(models["one"], batch_size=1).score(P, cands))
    batched = asyncio.run(rm(models["one"], batch_size=8).score(P, cands))
    assert batched.values == pytest.approx(one.values, abs=1e-5)
    assert batched.cost == one.cost


def test_long_inputs_keep_their_end_and_the_worst_case_holds(models) -> None:
    verifier = rm(models["one"], max_length=8)
    full, _ = _direct(models["one"], TEXTS[2])
    assert verifier.encode(P, TEXTS[2]) == full[-8:]
    got = asyncio.run(verifier.score(P, [Candidate(t) for t in TEXTS]))
    assert got.cost.verifier_tokens == 3 * 8
    assert got.cost.flops <= 3 * verifier.flops_per_candidate(P)
    assert verifier.flops_per_candidate(P) == 2 * verifier.n_params * 8


def test_logprob_is_the_log_sigmoid_of_the_logit(models) -> None:
    cands = [Candidate(t) for t in TEXTS]
    logits = asyncio.run(rm(models["one"]).score(P, cands)).values
    logprobs = asyncio.run(rm(models["one"], score="logprob").score(P, cands)).values
    expected = [-math.log1p(math.exp(-x)) for x in logits]
    assert logprobs == pytest.approx(expected, abs=1e-5)
    assert all(x < 0 for x in logprobs)


def test_a_head_with_several_labels_needs_one_named(models) -> None:
    with pytest.raises(ConfigError, match=r"3 labels \(bad, ok, good\).*label=NAME"):
        rm(models["three"])
    with pytest.raises(ConfigError, match=r"'great' is not a class.*bad, ok, good"):
        rm(models["three"], label="great")
    _, logits = _direct(models["three"], TEXTS[0])
    one = [Candidate(TEXTS[0])]
    got = asyncio.run(rm(models["three"], label="good").score(P, one))
    assert got.values[0] == pytest.approx(float(logits[2]), abs=1e-5)
    lp = asyncio.run(rm(models["three"], label="ok", score="logprob").score(P, one))
    assert lp.values[0] == pytest.approx(float(logits.log_softmax(-1)[1]), abs=1e-5)


def test_bad_reward_directories_are_refused_in_one_line(models, tmp_path: Path) -> None:
    cases = [
        ({}, "needs path=DIR"),
        ({"path": str(tmp_path / "nowhere")}, "does not exist"),
        ({"path": str(tmp_path)}, r"not a model directory \(no config\.json\)"),
        ({"path": str(models["causal"])}, "holds a LlamaForCausalLM, not a reward model"),
        ({"path": str(models["headless"])}, "no trained classification head: score.weight"),
        ({"path": str(models["nochat"])}, "no chat template"),
        ({"path": str(models["one"]), "label": "good"}, "'good' is not a class"),
        ({"path": str(models["one"]), "max_length": 0}, "'max_length' must be > 0"),
        ({"path": str(models["one"]), "device": "gpu"}, "unknown device 'gpu'"),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            build_verifier("reward_model", params)
        assert "\n" not in str(info.value)


def test_best_of_n_keeps_the_highest_reward(models) -> None:
    gen = FakeGenerator({P.prompt: {t: 1.0 for t in TEXTS}})
    verifier = rm(models["one"])
    r = asyncio.run(solve(P, STRATEGIES.spec("best_of_n", {"n": 6}), gen, verifier=verifier))
    scores = {c.id: c.scores["reward_model"] for c in r.candidates}
    assert r.chosen is not None and scores[r.chosen] == max(scores.values())
    assert r.cost.verifier_tokens > 0 and r.cost.verifier_calls >= 1
    json.dumps(r.to_dict())


def test_weighted_majority_weighs_each_vote_by_exp_of_the_reward(models) -> None:
    gen = FakeGenerator({P.prompt: {t: 1.0 for t in TEXTS}})
    verifier = rm(models["one"])
    r = asyncio.run(solve(P, STRATEGIES.spec("weighted_majority", {"n": 6}), gen,
                          verifier=verifier))  # fmt: skip
    assert traits_of("reward_model").weight == "exp" and traits_of("reward_model").loads_file
    expected: dict[str, float] = {}
    for c in r.candidates:
        if c.answer is not None:
            expected[c.answer] = expected.get(c.answer, 0.0) + math.exp(c.scores["reward_model"])
    assert r.trace is not None and r.trace["votes"] == pytest.approx(expected)
    assert r.answer == max(expected, key=expected.__getitem__)


def test_a_served_request_needs_the_file_verifier_flag() -> None:
    from testtime.server.errors import ApiError
    from testtime.server.plan import verifier_spec
    from testtime.server.settings import Settings

    with pytest.raises(ApiError, match="--allow-file-verifiers"):
        verifier_spec("reward_model", Settings("m"))
