"""The embedded digit models' networks: a class-conditional noise predictor and a classifier
for 8x8 handwritten digits (scikit-learn's bundled `load_digits`), small enough to train
in minutes on two CPU cores and to ship inside the package.

Pixels are scaled to [-1, 1]. Class 10 is "no class", so one network serves conditional,
unconditional and classifier-free-guided sampling (Ho & Salimans 2022).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PIXELS = 64
CLASSES = 10
NULL = CLASSES  # the "no class" label (trained with probability `drop`)


def time_features(t: Tensor, dim: int = 32) -> Tensor:
    """Sinusoidal features of t in [0, 1], frequencies 1 .. 1000 in geometric steps."""
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2, dtype=t.dtype))
    angles = t[:, None] * freqs[None] * (math.pi / 2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Block(nn.Module):
    """A pre-norm residual MLP block whose hidden layer is shifted by the conditioning."""

    def __init__(self, width: int, cond: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.shift = nn.Linear(cond, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        z = nn.functional.silu(self.fc1(self.norm(h)) + self.shift(c))
        out: Tensor = h + self.fc2(z)
        return out


class DigitDenoiser(nn.Module):
    """eps(x_t, t, class): an MLP over the 64 pixels with time and class conditioning."""

    def __init__(self, width: int = 256, blocks: int = 3, cond: int = 64) -> None:
        super().__init__()
        self.config = {"width": width, "blocks": blocks, "cond": cond}
        self.label = nn.Embedding(CLASSES + 1, cond)
        self.time = nn.Sequential(nn.Linear(32, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.inp = nn.Linear(PIXELS, width)
        self.blocks = nn.ModuleList([Block(width, cond) for _ in range(blocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, PIXELS))

    def forward(self, x: Tensor, t: Tensor, label: Tensor) -> Tensor:
        c = nn.functional.silu(self.label(label) + self.time(time_features(t)))
        h = self.inp(x.reshape(len(x), PIXELS))
        for block in self.blocks:
            h = block(h, c)
        out: Tensor = self.out(h)
        return out.reshape(x.shape)


class DigitClassifier(nn.Module):
    """p(class | image): an MLP over the 64 pixels (in [-1, 1])."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.config = {"width": width}
        self.net = nn.Sequential(
            nn.Linear(PIXELS, width), nn.SiLU(), nn.Dropout(0.1),
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, CLASSES),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """Logits, (batch, 10)."""
        out: Tensor = self.net(x.reshape(len(x), PIXELS))
        return out


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear_flops(module: nn.Module) -> float:
    """FLOPs of one sample through a module's linear layers (2 per weight), which is
    nearly all an MLP computes."""
    return float(sum(2 * m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear)))
