"""Train the embedded digit models: `python -m testtime.diffusion.train` (or `testtime
diffuse train`).

Data: scikit-learn's bundled 8x8 digits (1797 images, no download), split 80/20 by a
seeded permutation. The denoiser learns eps under the VP schedule with the class dropped
10% of the time (for unconditional and guided sampling); the classifier (the reward)
learns from the training split with pixel noise, and its held-out accuracy is stored with
the weights. Seeded and single-process, so a run repeats bit for bit on one machine.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from testtime.core.errors import ConfigError
from testtime.core.files import write_atomic
from testtime.diffusion.nets import NULL, DigitClassifier, DigitDenoiser, n_params
from testtime.diffusion.schedule import VP

WEIGHTS = Path(__file__).parent / "weights" / "digits.npz"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    denoiser_steps: int = 10000
    classifier_steps: int = 3000
    batch: int = 256
    lr: float = 2e-3
    drop: float = 0.1  # probability of training a sample without its class
    width: int = 128
    blocks: int = 3


def load_data(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train x, train y, test x, test y): pixels in [-1, 1], an 80/20 seeded split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "training needs scikit-learn: pip install 'testtime[diffusion]'"
        ) from None
    data = load_digits()
    x = torch.tensor(data.images / 8.0 - 1.0, dtype=torch.float32)[:, None]  # (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def train_denoiser(x: Tensor, y: Tensor, cfg: TrainConfig, log: Any = print) -> DigitDenoiser:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    model, sched = DigitDenoiser(cfg.width, cfg.blocks), VP()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_at = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.denoiser_steps)
    for step in range(cfg.denoiser_steps):
        idx = torch.randint(0, len(x), (cfg.batch,), generator=gen)
        x0, label = x[idx], y[idx].clone()
        label[torch.rand(cfg.batch, generator=gen) < cfg.drop] = NULL
        t = torch.rand(cfg.batch, generator=gen) * (1 - 1e-3) + 1e-3
        log_a = -0.5 * (sched.b0 * t + 0.5 * (sched.b1 - sched.b0) * t * t)  # VP, vectorised
        a = log_a.exp()[:, None, None, None]
        s = (1 - a * a).sqrt()
        eps = torch.randn(x0.shape, generator=gen)
        loss = nn.functional.mse_loss(model(a * x0 + s * eps, t, label), eps)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        lr_at.step()
        if (step + 1) % 5000 == 0:
            log(f"denoiser step {step + 1}/{cfg.denoiser_steps}: loss {loss.item():.4f}")
    return model.eval()


def train_classifier(x: Tensor, y: Tensor, cfg: TrainConfig) -> DigitClassifier:
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    torch.manual_seed(cfg.seed + 2)
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    for _ in range(cfg.classifier_steps):
        idx = torch.randint(0, len(x), (cfg.batch,), generator=gen)
        noise = torch.rand(cfg.batch, 1, 1, 1, generator=gen) * 0.3
        xb = (x[idx] + noise * torch.randn(x[idx].shape, generator=gen)).clamp(-1, 1)
        loss = nn.functional.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return model.eval()


def accuracy(model: DigitClassifier, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(cfg: TrainConfig, out: Path = WEIGHTS, log: Any = print) -> dict[str, Any]:
    """Train both models and write them to `out` (atomically); returns the metadata.

    One thread: the result does not depend on the machine's core count, and on small
    MLPs one thread is as fast as two.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(cfg, out, log)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, out: Path, log: Any) -> dict[str, Any]:
    started = time.perf_counter()
    xtr, ytr, xte, yte = load_data(cfg.seed)
    denoiser = train_denoiser(xtr, ytr, cfg, log)
    classifier = train_classifier(xtr, ytr, cfg)
    meta = {
        "config": cfg.__dict__, "denoiser": denoiser.config, "classifier": classifier.config,
        "classifier_test_accuracy": accuracy(classifier, xte, yte),
        "denoiser_params": n_params(denoiser), "classifier_params": n_params(classifier),
        "train_seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__,
    }  # fmt: skip
    arrays = {f"denoiser.{k}": v.numpy() for k, v in denoiser.state_dict().items()}
    arrays |= {f"classifier.{k}": v.numpy() for k, v in classifier.state_dict().items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    save(out, arrays)
    return meta


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The arrays as one .npz file, written atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TrainConfig.denoiser_steps)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    meta = train(TrainConfig(seed=args.seed, denoiser_steps=args.steps), args.out)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
