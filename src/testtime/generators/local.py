"""The local backend: a packaged model, a transformers model directory or a .gguf file,
served by the batching engine (`TransformersGenerator`).

It is the fallback backend: a name no other backend claims comes here, and `resolve` says
what is wrong with it (not installed, not found, a Hub id, unknown). Its fingerprint,
parameter count and KV shape are read from the model's files without loading it.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.core.kinetics import KVShape
from testtime.generators.backends import Backend, backend
from testtime.generators.base import Generator
from testtime.generators.models import PACKAGED, check_model_dir, resolve

WEIGHTS = {".gguf", ".safetensors", ".bin"}  # the files whose bytes make the fingerprint


@backend
class Local(Backend):
    """A local model: packaged name, transformers directory or .gguf file."""

    name = "local"
    usage = "a packaged name, or a path to a transformers model directory or a .gguf file"
    fallback = True

    def claims(self, model: str) -> bool:
        return True  # any name left: `resolve` takes it or says what is wrong with it

    def open(self, model: str, **opts: Any) -> Generator:
        from testtime.generators.transformers import TransformersGenerator

        path = resolve(model)
        name = model if model in PACKAGED else path.name
        return TransformersGenerator.from_dir(path, name=name, **opts)

    def fingerprint(self, model: str) -> str:
        """sha256 of the weights file(s) as the user named them (the packaged GGUF for a
        packaged name), so a stored run records exactly which model produced it."""
        if model in PACKAGED:
            files = [PACKAGED[model].gguf()]
        else:
            path = Path(model).expanduser()
            if path.is_dir():
                files = sorted(
                    p for p in path.iterdir() if p.suffix in WEIGHTS or p.name == "config.json"
                )
            else:
                resolve(model)  # the same error as loading would give
                files = [path]
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def n_params(self, model: str) -> int:
        """Parameters in the safetensors files (tied weights stored once count once)."""
        path = resolve(model)
        check_model_dir(path)  # a corrupt header is named, not a traceback
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(f"model {model!r} has no safetensors weights to count")
        total = 0
        for f in files:
            with f.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
        return total

    def kv_shape(self, model: str) -> KVShape | None:
        """From the model's config.json (None for a model not installed here)."""
        try:
            path = resolve(model) / "config.json"
        except (ConfigError, ModelNotFoundError):
            return None
        config: dict[str, Any] = json.loads(path.read_text())
        text = config.get("text_config") or config  # multimodal configs nest the language model
        heads = int(text["num_attention_heads"])
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        kv_heads = int(text.get("num_key_value_heads") or heads)
        return KVShape(int(text["num_hidden_layers"]), kv_heads, head_dim)
