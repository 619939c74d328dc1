"""Image rewards from a local CLIP model directory (transformers `CLIPModel`): CLIPScore,
100 x cosine(image, prompt) (Hessel et al. 2021, unclipped), and an aesthetic-style score,
a linear head on the normalised CLIP image embedding (as LAION's aesthetic predictor),
read from `aesthetic_head.npz` (arrays `weight`, `bias`) in the same folder.

Images are resized and normalised in torch with the folder's preprocessor_config.json;
FLOPs per image are measured once with FlopCounterMode. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.types import Problem
from testtime.diffusion.pipelines import measured_flops

HEAD = "aesthetic_head.npz"


def open_reward(path: Path, device: str | None = None) -> ClipReward:
    """CLIPScore, or the aesthetic head when the folder has one."""
    if not (path / "config.json").is_file() or not (path / "preprocessor_config.json").is_file():
        raise ModelNotFoundError(
            f"{path} is not a CLIP reward folder: it needs config.json, preprocessor_config.json "
            "and tokenizer files (CLIPModel.save_pretrained + the processor's save_pretrained)"
        )
    try:
        from transformers import AutoTokenizer, CLIPModel

        model: Any = CLIPModel.from_pretrained(path, local_files_only=True)
        model = model.to(device or "cpu").eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFoundError(f"cannot load the CLIP reward at {path}: {e}") from None
    pre = json.loads((path / "preprocessor_config.json").read_text())
    if (path / HEAD).is_file():
        return AestheticReward(model, tokenizer, pre, path / HEAD)
    return ClipReward(model, tokenizer, pre)


class ClipReward:
    """r(image) = 100 x cosine similarity of CLIP's image and prompt embeddings."""

    name = "clip_score"

    def __init__(self, model: Any, tokenizer: Any, pre: dict[str, Any]) -> None:
        self.model, self.tokenizer = model, tokenizer
        crop = pre.get("crop_size", pre.get("size", 224))
        self.side = int(crop["height"] if isinstance(crop, dict) else crop)
        self.mean = torch.tensor(pre.get("image_mean", [0.48145466, 0.4578275, 0.40821073]))
        self.std = torch.tensor(pre.get("image_std", [0.26862954, 0.26130258, 0.27577711]))
        self._prompts: dict[str, Tensor] = {}
        probe = torch.zeros((1, 3, self.side, self.side))
        _, self._flops = measured_flops(self.image_embeddings, probe)

    def check(self, image_shape: tuple[int, ...]) -> None:
        if len(image_shape) != 3 or image_shape[0] != 3:
            raise ConfigError(
                f"the CLIP reward scores RGB images (3 x H x W); this model makes "
                f"{'x'.join(map(str, image_shape))} samples. Use it with a text-to-image pipeline"
            )

    def image_embeddings(self, images: Tensor) -> Tensor:
        """Unit CLIP image embeddings of images in [0, 1] (any size: resized, centre-cropped)."""
        x = images.float()
        scale = self.side / min(x.shape[-2:])
        if scale != 1.0:
            x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic",
                                                antialias=True, align_corners=False)  # fmt: skip
        top, left = (x.shape[-2] - self.side) // 2, (x.shape[-1] - self.side) // 2
        x = x[..., top : top + self.side, left : left + self.side]
        x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        device = next(self.model.parameters()).device
        emb = _tensor(self.model.get_image_features(pixel_values=x.to(device)))
        return torch.nn.functional.normalize(emb.float().cpu(), dim=-1)

    def _prompt(self, text: str) -> Tensor:
        if text not in self._prompts:
            tokens = self.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
            device = next(self.model.parameters()).device
            emb = _tensor(self.model.get_text_features(**tokens.to(device)))
            self._prompts[text] = torch.nn.functional.normalize(emb.float().cpu(), dim=-1)[0]
        return self._prompts[text]

    def __call__(self, images: Tensor, problem: Problem) -> Tensor:
        return 100.0 * self.image_embeddings(images) @ self._prompt(problem.prompt)

    def labels(self, images: Tensor, problem: Problem) -> list[str | None]:
        return [None] * len(images)

    def flops_per_image(self) -> float:
        return self._flops


class AestheticReward(ClipReward):
    """r(image) = w . e + b on the unit CLIP image embedding e (prompt-independent)."""

    name = "aesthetic"

    def __init__(self, model: Any, tokenizer: Any, pre: dict[str, Any], head: Path) -> None:
        super().__init__(model, tokenizer, pre)
        with np.load(head, allow_pickle=False) as f:
            self.weight = torch.tensor(f["weight"], dtype=torch.float32).reshape(-1)
            self.bias = float(np.asarray(f["bias"]).reshape(-1)[0])
        dim = int(model.config.projection_dim)
        if len(self.weight) != dim:
            raise ConfigError(
                f"{head} has a head of {len(self.weight)} inputs but the CLIP model embeds "
                f"images in {dim} dimensions; use the head trained for this CLIP model"
            )

    def __call__(self, images: Tensor, problem: Problem) -> Tensor:
        return self.image_embeddings(images) @ self.weight + self.bias


def _tensor(out: Any) -> Tensor:
    """transformers 5 may return a model output where 4 returned a tensor."""
    if isinstance(out, Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, Tensor):
        return pooled
    raise ConfigError(f"unexpected CLIP output {type(out).__name__}")
