"""Real text-to-image pipelines from a local diffusers directory, as `Denoiser`s, so the
same searches and steering drive Stable Diffusion, SDXL and Flux-style flow models.

Only the pipeline's parts are used (text encoders, the UNet or transformer, the VAE, the
scheduler's noise table); sampling is ours, so every function evaluation is counted.
FLOPs are measured with torch's FlopCounterMode on one evaluation per prompt (that probe
is charged too). diffusers is imported lazily: it is the optional `diffusion` extra, and
nothing is ever downloaded (`local_files_only`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.types import Problem
from testtime.diffusion.denoisers import Prediction
from testtime.diffusion.schedule import Discrete, Flow, Schedule

NEEDS: dict[str, tuple[str, ...]] = {
    "StableDiffusionPipeline": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "StableDiffusionXLPipeline": (
        "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler",
    ),
    "FluxPipeline": (
        "transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
        "scheduler",
    ),
}  # fmt: skip
PREDICTION: dict[str, Prediction] = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def open_pipeline(
    path: Path,
    *,
    guidance: float | None = None,
    size: tuple[int, int] | None = None,
    device: str | None = None,
) -> PipelineDenoiser:
    """The pipeline stored at `path` as a denoiser; clear errors for what is missing."""
    kind = pipeline_kind(path)
    try:
        import diffusers
    except ImportError:
        raise ConfigError("pipelines need diffusers: pip install 'testtime[diffusion]'") from None
    diffusers.utils.logging.disable_progress_bar()
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
            path, local_files_only=True
        )
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ModelNotFoundError(f"cannot load the {kind} at {path}: {e}") from None
    pipe.to(device or "cpu")
    cls = FluxDenoiser if kind == "FluxPipeline" else UNetDenoiser
    return cls(pipe, kind, guidance=guidance, size=size)


def pipeline_kind(path: Path) -> str:
    """The pipeline class named by `model_index.json`, after checking its parts exist."""
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelNotFoundError(
            f"{path} is not a diffusers pipeline folder (no model_index.json); save one with "
            "pipeline.save_pretrained(DIR)"
        )
    kind = str(json.loads(index.read_text()).get("_class_name"))
    if kind not in NEEDS:
        raise ConfigError(f"pipeline {kind!r} at {path} is not supported; supported: "
                          f"{', '.join(sorted(NEEDS))}")  # fmt: skip
    missing = [part for part in NEEDS[kind] if not (path / part).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"the {kind} at {path} lacks {', '.join(missing)}; it needs the folders "
            f"{', '.join(NEEDS[kind])} (save the whole pipeline with save_pretrained)"
        )
    return kind


def measured_flops(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """fn's output and the FLOPs it ran (torch's own count of matmuls and convolutions)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return out, float(counter.get_total_flops())


class PipelineDenoiser:
    """What SD, SDXL and Flux share: the VAE, the device, the measured costs."""

    prediction: Prediction
    schedule: Schedule
    shape: tuple[int, ...]
    image_shape: tuple[int, ...]
    evals_per_call: int

    def __init__(self, pipe: Any, kind: str, guidance: float | None, size: tuple[int, int]) -> None:
        self.pipe, self.name = pipe, kind
        self.device = pipe.device
        self.vae_scale = int(pipe.vae_scale_factor)
        self.height, self.width = size
        if self.height % (2 * self.vae_scale) or self.width % (2 * self.vae_scale):
            raise ConfigError(
                f"image size {self.height}x{self.width} must be a multiple of "
                f"{2 * self.vae_scale} for this pipeline's VAE"
            )
        self.guidance = guidance
        self.image_shape = (3, self.height, self.width)
        self._eval_flops = 0.0
        latent = torch.zeros((1, *self._latent_shape()), device=self.device)
        _, self._decode_flops = measured_flops(self.decode, latent)

    def _latent_shape(self) -> tuple[int, ...]:
        return (int(self.pipe.vae.config.latent_channels), self.height // self.vae_scale,
                self.width // self.vae_scale)  # fmt: skip

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        raise NotImplementedError

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        raise NotImplementedError

    def flops_per_eval(self) -> float:
        return self._eval_flops

    def decode(self, x0: Tensor) -> Tensor:
        cfg = self.pipe.vae.config
        latents = x0.to(self.device) / cfg.scaling_factor + (getattr(cfg, "shift_factor", 0) or 0)
        images: Tensor = self.pipe.vae.decode(latents).sample
        return ((images.float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)

    def decode_flops(self) -> float:
        return self._decode_flops


class UNetDenoiser(PipelineDenoiser):
    """Stable Diffusion and SDXL: a UNet predicting eps, v or x0 on the scheduler's
    discrete noise table, with classifier-free guidance (2 evaluations per sample)."""

    def __init__(self, pipe: Any, kind: str, guidance: float | None, size: Any) -> None:
        unet = pipe.unet
        side = int(unet.config.sample_size) * int(pipe.vae_scale_factor)
        super().__init__(pipe, kind, 7.5 if guidance is None else guidance, size or (side, side))
        self.xl = kind == "StableDiffusionXLPipeline"
        sched = pipe.scheduler.config
        if sched.get("prediction_type", "epsilon") not in PREDICTION:
            raise ConfigError(f"unknown prediction type {sched.get('prediction_type')!r}")
        self.prediction = PREDICTION[sched.get("prediction_type", "epsilon")]
        self.table = Discrete(pipe.scheduler.alphas_cumprod)
        self.schedule = self.table
        self.shape = self._latent_shape()
        self.evals_per_call = 2 if (self.guidance or 0) > 1.0 else 1

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        cfg = self.evals_per_call == 2
        enc, flops = measured_flops(
            self.pipe.encode_prompt, problem.prompt, device=self.device,
            num_images_per_prompt=1, do_classifier_free_guidance=cfg,
        )  # fmt: skip
        cond: dict[str, Any] = {"embeds": enc[0], "negative": enc[1]}
        if self.xl:
            cond |= {"pooled": enc[2], "negative_pooled": enc[3]}
            cond["time_ids"] = self._time_ids(enc[2])
        probe = torch.zeros((1, *self.shape), device=self.device)
        _, self._eval_flops = measured_flops(self._forward, probe, 0.5, cond, False)
        return cond, Cost(flops=flops + self._eval_flops, generator_calls=1)

    def _time_ids(self, pooled: Tensor) -> Tensor:
        size = (self.height, self.width)
        dim = int(pooled.shape[-1])
        ids: Tensor = self.pipe._get_add_time_ids(
            size, (0, 0), size, dtype=pooled.dtype, text_encoder_projection_dim=dim
        )
        return ids

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        out: Tensor = self._forward(x.to(self.device), t, condition, self.evals_per_call == 2)
        return out.to(x.device)

    def _forward(self, x: Tensor, t: float, c: dict[str, Any], guided: bool) -> Tensor:
        n = len(x)
        embeds = [c["embeds"]] + ([c["negative"]] if guided else [])
        hidden = torch.cat([e.expand(n, -1, -1) for e in embeds])
        extra = {}
        if self.xl:
            pooled = [c["pooled"]] + ([c["negative_pooled"]] if guided else [])
            extra = {"added_cond_kwargs": {
                "text_embeds": torch.cat([p.expand(n, -1) for p in pooled]),
                "time_ids": c["time_ids"].to(self.device).expand(len(hidden), -1),
            }}  # fmt: skip
        inp = torch.cat([x] * (2 if guided else 1))
        timestep = torch.full((len(inp),), self.table.index(t), device=self.device)
        out: Tensor = self.pipe.unet(inp, timestep, encoder_hidden_states=hidden, **extra).sample
        if not guided:
            return out
        cond, uncond = out[:n], out[n:]
        return uncond + float(self.guidance or 1.0) * (cond - uncond)


class FluxDenoiser(PipelineDenoiser):
    """Flux-style rectified flow: a transformer predicting the velocity eps - x0 on packed
    2x2 latent patches, guidance as an embedding (1 evaluation per sample)."""

    prediction: Prediction = "velocity"
    evals_per_call = 1

    def __init__(self, pipe: Any, kind: str, guidance: float | None, size: Any) -> None:
        side = int(pipe.default_sample_size) * int(pipe.vae_scale_factor)
        super().__init__(pipe, kind, 3.5 if guidance is None else guidance, size or (side, side))
        self.shape = self._latent_shape()
        _, h, w = self.shape
        sched = pipe.scheduler.config
        shift = float(sched.get("shift", 1.0))
        if sched.get("use_dynamic_shifting"):
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift

            limits = ("base_image_seq_len", "max_image_seq_len", "base_shift", "max_shift")
            mu = calculate_shift((h // 2) * (w // 2), *(sched[k] for k in limits))
            shift = float(torch.tensor(mu).exp())
        self.schedule = Flow(shift)
        self.img_ids = pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device, torch.float32)

    def _latent_shape(self) -> tuple[int, ...]:
        c = int(self.pipe.transformer.config.in_channels) // 4
        h = 2 * (self.height // (self.vae_scale * 2))
        return (c, h, 2 * (self.width // (self.vae_scale * 2)))

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        enc, flops = measured_flops(
            self.pipe.encode_prompt, problem.prompt, problem.prompt, device=self.device,
            max_sequence_length=self._max_len(),
        )  # fmt: skip
        cond = {"embeds": enc[0], "pooled": enc[1], "text_ids": enc[2]}
        probe = torch.zeros((1, *self.shape), device=self.device)
        _, self._eval_flops = measured_flops(self.__call__, probe, 0.5, cond)
        return cond, Cost(flops=flops + self._eval_flops, generator_calls=1)

    def _max_len(self) -> int:
        return min(512, int(self.pipe.tokenizer_2.model_max_length))

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        n, (c, h, w) = len(x), self.shape
        packed = self.pipe._pack_latents(x.to(self.device), n, c, h, w)
        cfg = self.pipe.transformer.config
        guidance = torch.full((n,), float(self.guidance or 0.0)) if cfg.guidance_embeds else None
        out = self.pipe.transformer(
            hidden_states=packed, timestep=torch.full((n,), t, device=self.device),
            guidance=guidance, pooled_projections=condition["pooled"].expand(n, -1),
            encoder_hidden_states=condition["embeds"].expand(n, -1, -1),
            txt_ids=condition["text_ids"], img_ids=self.img_ids, return_dict=False,
        )[0]  # fmt: skip
        velocity: Tensor = self.pipe._unpack_latents(out, self.height, self.width, self.vae_scale)
        return velocity.to(x.device)
