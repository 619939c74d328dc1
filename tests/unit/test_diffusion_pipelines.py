"""Real diffusers pipelines and CLIP rewards, from local folders the test builds itself
(tiny, randomly initialised; nothing is downloaded): Stable Diffusion and Flux run every
strategy, the flow path reproduces diffusers' own Flux sampler, and broken folders or
mismatched rewards are refused with what to do."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from testtime.cli import main
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.types import Problem
from testtime.diffusion.digits import DigitReward, DigitsDenoiser
from testtime.diffusion.pipelines import open_pipeline
from testtime.diffusion.rewards import open_reward
from testtime.diffusion.run import solve, strategy_spec

P = Problem.from_prompt("a red cat", id="prompt")
SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _clip_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    vocab_file, merges = str(folder / "vocab.json"), str(folder / "merges.txt")
    return CLIPTokenizer(vocab_file, merges, model_max_length=77)


def _text_config(vocab: int) -> dict[str, Any]:
    return {**SMALL, "vocab_size": vocab, "max_position_embeddings": 77, "bos_token_id": 0,
            "eos_token_id": 1, "pad_token_id": 1, "projection_dim": 16}  # fmt: skip


def _vae(**config: float) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, sample_size=16,
                         up_block_types=("UpDecoderBlock2D",) * 2, **config)  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD, SDXL and Flux pipelines and a tiny CLIP reward, saved to disk."""
    from diffusers import (
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )  # fmt: skip
    from tokenizers import Tokenizer, models
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
        T5TokenizerFast,
    )  # fmt: skip

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    tok = _clip_tokenizer(root / "vocab")
    text = CLIPTextModel(CLIPTextConfig(**_text_config(len(tok))))
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, cross_attention_dim=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), norm_num_groups=4,
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
    )  # fmt: skip
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, steps_offset=1)  # fmt: skip
    StableDiffusionPipeline(vae=_vae(), text_encoder=text, tokenizer=tok, unet=unet,
                            scheduler=sched, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(root / "sd")  # fmt: skip
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(c, -1.0) for c in "abcdefghijklmnopqrstuvwxyz▁"]
    t5_tok = T5TokenizerFast(tokenizer_object=Tokenizer(models.Unigram(pieces, unk_id=2)),
                             pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                             model_max_length=16, extra_ids=0)  # fmt: skip
    t5 = T5EncoderModel(T5Config(vocab_size=len(pieces), d_model=16, d_ff=32, d_kv=8,
                                 num_layers=1, num_heads=2, decoder_start_token_id=0))  # fmt: skip
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16,
        axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    flux_vae = _vae(scaling_factor=1.5, shift_factor=0.06)
    FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=flux_vae, text_encoder=text,
                 tokenizer=tok, text_encoder_2=t5, tokenizer_2=t5_tok,
                 transformer=transformer).save_pretrained(root / "flux")  # fmt: skip
    vision = {**SMALL, "image_size": 16, "patch_size": 8}
    clip = CLIPModel(CLIPConfig(text_config=_text_config(len(tok)), vision_config=vision,
                                projection_dim=8))  # fmt: skip
    clip.save_pretrained(root / "clip")
    tok.save_pretrained(root / "clip")
    pre = {"crop_size": {"height": 16, "width": 16}, "image_mean": [0.5] * 3,
           "image_std": [0.5] * 3}  # fmt: skip
    (root / "clip" / "preprocessor_config.json").write_text(json.dumps(pre))
    xl_unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), norm_num_groups=4,
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=4 * 6 + 16,  # 6 size/crop ids + pooled text
    )  # fmt: skip
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(len(tok))))
    StableDiffusionXLPipeline(vae=_vae(), text_encoder=text, text_encoder_2=text_2, tokenizer=tok,
                              tokenizer_2=tok, unet=xl_unet, scheduler=sched,
                              ).save_pretrained(root / "xl")  # fmt: skip
    return {"sd": root / "sd", "xl": root / "xl", "flux": root / "flux", "clip": root / "clip"}


@pytest.mark.parametrize("kind", ["sd", "flux"])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("best_of_n", {"n": 2}),
        ("zero_order", {"neighbours": 2, "iterations": 1}),
        ("path_search", {"n": 1, "branches": 2, "back": 1, "forward": 2}),
        ("fk_steering", {"particles": 2, "interval": 1}),
    ],
)
def test_every_strategy_drives_a_real_pipeline(folders, kind: str, name: str, params) -> None:  # type: ignore[no-untyped-def]
    den = open_pipeline(folders[kind], size=(16, 16))
    reward = open_reward(folders["clip"])
    out = solve(P, strategy_spec(name, {"steps": 3, **params}), den, reward)
    result = out.result
    assert out.images.shape[1:] == (3, 16, 16) and len(out.images) == len(result.candidates)
    assert all(np.isfinite(c.scores["clip_score"]) for c in result.candidates)
    assert result.cost.nfe % (3 * den.evals_per_call) == 0 and result.cost.flops > 0
    assert den.evals_per_call == (2 if kind == "sd" else 1)  # CFG doubles SD's evaluations
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


@pytest.mark.parametrize("name", ["best_of_n", "fk_steering"])
def test_sdxl_runs_with_its_pooled_text_and_size_conditioning(folders, name: str) -> None:  # type: ignore[no-untyped-def]
    den = open_pipeline(folders["xl"], size=(16, 16))
    out = solve(P, strategy_spec(name, {"steps": 2}), den, open_reward(folders["clip"]))
    assert out.images.shape[1:] == (3, 16, 16) and out.result.cost.nfe > 0


def test_the_flow_path_reproduces_diffusers_own_flux_sampler(folders) -> None:  # type: ignore[no-untyped-def]
    """Our Euler steps on the flow schedule, with the same noise, give diffusers'
    FluxPipeline image (FlowMatchEulerDiscreteScheduler, same sigmas)."""
    den = open_pipeline(folders["flux"], size=(16, 16))
    spec = strategy_spec("best_of_n", {"n": 1, "steps": 4, "sampler": "euler"})
    ours = solve(P, spec, den, open_reward(folders["clip"]))
    noise = torch.randn((1, *den.shape), generator=torch.Generator().manual_seed(_noise_seed()))
    c, h, w = den.shape
    theirs = den.pipe(P.prompt, num_inference_steps=4, height=16, width=16, output_type="pt",
                      latents=den.pipe._pack_latents(noise, 1, c, h, w),
                      max_sequence_length=16).images  # fmt: skip
    assert torch.allclose(ours.images, theirs, atol=1e-4)


def _noise_seed() -> int:
    from testtime.core.ledger import stream_seed

    return stream_seed(0, P.id, "noise", bits=63)  # the diffusion context's noise stream


def test_broken_folders_and_mismatched_rewards_are_refused(folders, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "sd"
    shutil.copytree(folders["sd"], broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelNotFoundError, match="lacks vae; it needs the folders unet, vae"):
        open_pipeline(broken)
    with pytest.raises(ModelNotFoundError, match=r"no model_index\.json"):
        open_pipeline(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a CLIP reward folder"):
        open_reward(tmp_path)
    with pytest.raises(ConfigError, match="digit reward scores 1x8x8 grayscale images"):
        solve(P, strategy_spec("best_of_n"), open_pipeline(folders["sd"]), DigitReward())
    with pytest.raises(ConfigError, match="CLIP reward scores RGB images"):
        solve(P, strategy_spec("best_of_n"), DigitsDenoiser(), open_reward(folders["clip"]))
    head = tmp_path / "clip"
    shutil.copytree(folders["clip"], head)
    np.savez(head / "aesthetic_head.npz", weight=np.ones(5), bias=np.zeros(1))
    with pytest.raises(ConfigError, match="head of 5 inputs but the CLIP model embeds images in 8"):
        open_reward(head)
    np.savez(head / "aesthetic_head.npz", weight=np.ones(8), bias=np.array([0.5]))
    reward = open_reward(head)
    assert reward.name == "aesthetic"
    scores = reward(torch.rand(2, 3, 16, 16), P)
    assert scores.shape == (2,) and torch.all(scores.abs() <= 8**0.5 + 0.5)


def test_the_cli_draws_a_prompt_with_a_pipeline_and_a_reward(  # type: ignore[no-untyped-def]
    folders, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    png, trace = tmp_path / "grid.png", tmp_path / "trace.json"
    args = ["testtime", "diffuse", "--prompt", "a red cat", "--pipeline", str(folders["sd"]),
            "--reward", str(folders["clip"]), "-s", "fk_steering", "--particles", "2",
            "--steps", "2", "--out", str(png), "--trace", str(trace)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    captured = capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(trace.read_text())["cost"]["nfe"] == 2 * 2 * 2  # particles x steps x CFG
    assert "clip_score" in captured.out and "8 nfe" in captured.err
