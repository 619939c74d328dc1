"""HF process reward models from a local directory, on tiny random models the test builds
(a verdict-token causal LM and a token-classification PRM); nothing is downloaded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.types import Candidate, Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

P = Problem.from_prompt("What is (3 + 4) * 2?", answer="14", id="q")
GOOD = Candidate("3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14")


def _tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    corpus = ["What is 3 + 4 = 7 and 7 * 2 = 14. Answer: 14 + -"] * 20
    bpe.train_from_iterator(corpus, vocab_size=300, special_tokens=["<s>", "<pad>"])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", pad_token="<pad>"
    )


def _build(path: Path, kind: str) -> Path:
    tok = _tokenizer()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, num_labels=2,
    )  # fmt: skip
    classes = {
        "causal": transformers.LlamaForCausalLM,
        "tokcls": transformers.LlamaForTokenClassification,
        "base": transformers.LlamaModel,
    }
    model = classes[kind](config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prm")
    return {k: _build(root / k, k) for k in ("causal", "tokcls", "base")}


@pytest.mark.parametrize("kind", ["causal", "tokcls"])
def test_both_heads_score_every_step_and_charge_their_tokens(models, kind: str) -> None:
    verifier = build_verifier("prm", {"path": str(models[kind])})
    assert verifier.head == ("good_token" if kind == "causal" else "token_classification")
    got = asyncio.run(verifier.score_steps(P, [GOOD, Candidate("3 + 4 = 8")]))
    assert [len(v) for v in got.values] == [3, 1]
    assert all(0.0 < s < 1.0 for v in got.values for s in v)
    assert got.cost.verifier_tokens > 0 and got.cost.flops > 0 and got.cost.verifier_calls == 2
    again = asyncio.run(verifier.score_steps(P, [GOOD]))
    assert again.values[0] == got.values[0]  # deterministic
    outcome = asyncio.run(verifier.score(P, [GOOD]))
    assert outcome.values == (got.values[0][-1],)  # last-step aggregation by default


def test_a_prm_drives_beam_search(models) -> None:
    gen = FakeGenerator({P.messages[-1].content: {GOOD.text: 0.5, "3 + 4 = 8\n\nAnswer: 8": 0.5}})
    verifier = build_verifier("prm", {"path": str(models["causal"])})
    r = asyncio.run(solve(P, STRATEGIES.spec("beam_search", {"n": 4, "width": 2}), gen,
                          verifier=verifier))  # fmt: skip
    assert r.answer in ("14", "8") and all("prm" in c.scores for c in r.candidates)
    assert r.cost.verifier_tokens > 0
    json.dumps(r.to_dict())


def test_bad_prm_directories_and_parameters(models, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs path="):
        build_verifier("prm")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        build_verifier("prm", {"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="not a PRM"):
        build_verifier("prm", {"path": str(models["base"])})
    with pytest.raises(ConfigError, match="not the token_classification head"):
        build_verifier("prm", {"path": str(models["causal"]), "head": "token_classification"})
    with pytest.raises(ConfigError, match="verdict"):
        build_verifier("prm", {"path": str(models["causal"]), "good": "Answer: 14 and more"})
    with pytest.raises(ConfigError, match="label 5"):
        build_verifier("prm", {"path": str(models["tokcls"]), "label": 5})
