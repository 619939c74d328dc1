"""`testtime serve` refuses bad options with one line and exit code 2, before loading a model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from testtime.cli import main


def serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["testtime", "serve", "-m", "fake", *args])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "serving" not in err  # refused before the model was loaded or the port bound
    return err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--max-queue", "4", "--max-concurrent", "8"), "at least --max-concurrent"),
        (("--max-budget", "lots"), "cannot read budget"),
        (("--deadline", "0"), "--deadline"),
        (("--upstream", "http://127.0.0.1:9/v1"), "go together"),
        (("--keys", "/no/such/keys.json"), "cannot read --keys"),
    ],
)
def test_bad_options_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    says: str,
) -> None:
    assert says in serve(monkeypatch, capsys, *args)


def test_a_keys_file_of_the_wrong_shape_shows_the_right_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"sk-1": {"cap_tokens": "lots"}}')
    err = serve(monkeypatch, capsys, "--keys", str(keys))
    assert "cap_tokens" in err and "sk-1" not in err
