"""A PNG grid of a result's candidates, each captioned with its reward and label (the
chosen one framed in red). Needs Pillow (the `diffusion` extra)."""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from testtime.core.errors import ConfigError
from testtime.core.types import Result

if TYPE_CHECKING:
    from PIL.Image import Image

CELL = 96  # pixels per image side in the grid (small images are scaled up, nearest)
CAPTION = 14


def png(images: Tensor, result: Result, reward: str, columns: int = 8) -> bytes:
    """The grid as PNG bytes: images (n, C, H, W) in [0, 1], one cell per candidate."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ConfigError("image grids need Pillow: pip install 'testtime[diffusion]'") from None
    n = len(images)
    if n == 0:
        raise ConfigError("the result has no finished images to draw (the budget stopped it)")
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    sheet = Image.new("RGB", (cols * CELL, rows * (CELL + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, cand) in enumerate(zip(images, result.candidates, strict=True)):
        x, y = (i % cols) * CELL, (i // cols) * (CELL + CAPTION)
        sheet.paste(_image(image).resize((CELL - 4, CELL - 4), Image.Resampling.NEAREST),
                    (x + 2, y + 2))  # fmt: skip
        if cand.id == result.chosen:
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), outline="red", width=2)
        label = f"{cand.scores[reward]:.3g}" + (f" [{cand.answer}]" if cand.answer else "")
        draw.text((x + 3, y + CELL), label, fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def data_urls(images: Tensor) -> list[str]:
    """Each image (n, C, H, W) in [0, 1] as a PNG data URL, at its own size (a trace's)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ConfigError("image traces need Pillow: pip install 'testtime[diffusion]'") from None
    urls = []
    for image in images:
        buf = io.BytesIO()
        _image(image).save(buf, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return urls


def _image(image: Tensor) -> Image:
    from PIL import Image as PILImage

    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3):
        pixels = pixels.permute(1, 2, 0)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ConfigError(f"cannot draw samples of shape {tuple(image.shape)} as images")
    array = pixels.numpy()
    return PILImage.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
