"""Bad input, tried as a new user would: each gets one line on stderr and exit code 2, never
a traceback, and nothing is half-written. Runs on the fake model and small temp stores."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from testtime.cli import main
from testtime.core.errors import ConfigError, DataError, ModelNotFoundError
from testtime.generators.fake import FakeGenerator
from testtime.generators.models import load_generator
from testtime.lab.data.store import open_store
from testtime.server import Settings, create_app

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["testtime", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        got = capsys.readouterr()
        return code, got.out, got.err

    return call


def one_line_error(code: int, err: str, *says: str) -> str:
    """The CLI's user-error shape: exit 2, the last stderr line 'error: ...', no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for word in says:
        assert word in last, last
    return last


# -- the experiment store ------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path, cli: Cli) -> tuple[Path, str]:
    """A small finished store (fake model, 5 problems) and its run id."""
    path = tmp_path / "store.sqlite"
    code, _, err = cli("lab", "run", "-m", "fake", "-n", "5", "--budgets", "1,2,4",
                       "--store", str(path), "--no-report")  # fmt: skip
    assert code == 0, err
    with open_store(path, readonly=True) as db:
        (run,) = db.runs()
    return path, run["id"]


def damage(path: Path) -> None:
    """8 KB of random bytes over the middle of the file."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2 - 4096)
        f.write(random.Random(0).randbytes(8192))


def test_a_damaged_store_is_one_line_for_ls_report_and_run(cli: Cli, store: Any) -> None:
    path, run_id = store
    damage(path)
    before = path.read_bytes()
    for args in (
        ("lab", "ls"),
        ("lab", "report", run_id),
        ("lab", "run", "-m", "fake", "-n", "5", "--budgets", "1,2,4,8"),  # a new run: writes
    ):
        code, _, err = cli(*args, "--store", str(path))
        one_line_error(code, err, str(path), "damaged", "backup", ".recover")
    assert path.read_bytes() == before  # nothing written into it


def test_a_read_only_store_refuses_a_run_and_writes_nothing(
    cli: Cli, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite opened read-only, as it is for a file we may not write (as root, chmod does not
    stop writes, so the connection is opened `mode=ro`: SQLite's own readonly error)."""
    path, _ = store
    connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda db, **kw: connect(f"{db.split('?')[0]}?mode=ro", **kw)
    )
    before = path.read_bytes()
    code, _, err = cli("lab", "run", "-m", "fake", "-n", "6", "--store", str(path))
    one_line_error(code, err, str(path), "readonly", "writable")
    assert path.read_bytes() == before


def test_a_locked_store_says_who_holds_it(tmp_path: Path) -> None:
    from testtime.lab.data.store import store_error

    path = tmp_path / "s.sqlite"
    with open_store(path):
        pass
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as raised:
        waiter.execute("BEGIN IMMEDIATE")  # a second writer
    holder.close()
    waiter.close()
    assert "another process holds it" in str(store_error(path, raised.value))


def test_a_folder_as_the_store_is_one_line(cli: Cli, tmp_path: Path) -> None:
    for args in (("lab", "ls"), ("lab", "run", "-m", "fake", "-n", "2")):
        code, _, err = cli(*args, "--store", str(tmp_path))
        one_line_error(code, err, "is a folder")


def test_an_error_inside_the_store_block_leaves_it_as_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with pytest.raises(DataError, match="no such table"), open_store(path) as db:
        db.db.execute("SELECT * FROM no_such_table")


# -- models --------------------------------------------------------------------------------
def model_dir(tmp_path: Path, config: str, weights: bytes) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(config)
    (d / "model.safetensors").write_bytes(weights)
    return d


def test_garbage_weights_name_the_file(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    d = model_dir(tmp_path, '{"model_type": "llama"}', random.Random(1).randbytes(8000))
    code, _, err = cli("run", "2+2?", "-m", str(d), "--device", "cpu")
    one_line_error(code, err, str(d / "model.safetensors"), "safetensors")


def test_truncated_weights_say_truncated(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}})
    blob = len(header).to_bytes(8, "little") + header.encode() + b"\0" * 100
    d = model_dir(tmp_path, '{"model_type": "llama"}', blob)
    with pytest.raises(ModelNotFoundError, match="truncated"):
        load_generator(str(d), device="cpu")


def test_a_config_that_is_not_json_names_the_file(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    d = model_dir(tmp_path, "not json {", b"")
    code, _, err = cli("run", "2+2?", "-m", str(d), "--device", "cpu")
    one_line_error(code, err, str(d / "config.json"), "not valid JSON")


def test_cuda_without_cuda_says_what_to_use(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from testtime.generators.transformers import pick_device

    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="does not exist"):
            pick_device(f"cuda:{torch.cuda.device_count()}")
        return
    d = model_dir(tmp_path, '{"model_type": "llama"}', b"")
    with pytest.raises(ConfigError, match=r"device 'cuda'.*use cpu"):
        load_generator(str(d), device="cuda")


@pytest.mark.parametrize(
    ("device", "says"),
    [("bogus", "unknown device 'bogus'"), ("cuda", "--device cuda would do nothing")],
)
def test_a_device_for_the_fake_is_checked_not_ignored(cli: Cli, device: str, says: str) -> None:
    code, _, err = cli("run", "2+2?", "-m", "fake", "--device", device)
    one_line_error(code, err, says)


def test_a_device_for_diffusion_is_checked_before_anything_loads(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("diffuse", "--digit", "3", "--device", "cuda")
    one_line_error(code, err, "--device cuda", "--pipeline")
    pipe = ("--prompt", "a cat", "--pipeline", str(tmp_path), "--reward", str(tmp_path))
    code, _, err = cli("diffuse", *pipe, "--device", "bogus")
    one_line_error(code, err, "unknown device 'bogus'")


def test_the_fake_takes_cpu_and_a_served_model_takes_no_device() -> None:
    assert isinstance(load_generator("fake", device="cpu"), FakeGenerator)
    with pytest.raises(ConfigError, match="served model"):
        load_generator("http://127.0.0.1:9/v1#m", device="cuda")


def test_a_hub_id_says_models_are_never_downloaded(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", "2+2?", "-m", "HuggingFaceTB/SmolLM2-135M-Instruct")
    one_line_error(code, err, "never downloads", "smollm2-135m", "hf download", ".gguf")


def test_the_library_loads_the_fake_like_the_cli() -> None:
    assert isinstance(load_generator("fake"), FakeGenerator)


# -- serve ---------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999", "0", "-5", "65536"])
def test_a_port_out_of_range_is_one_line(cli: Cli, port: str) -> None:
    code, _, err = cli("serve", "-m", "fake", "--port", port)
    one_line_error(code, err, "--port must be 1 to 65535")


def test_a_port_in_use_is_one_line_before_the_model_loads(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli("serve", "-m", "fake", "--port", str(port))
    one_line_error(code, err, f"127.0.0.1:{port}", "another process")
    assert "loading model" not in err


def test_a_host_not_of_this_machine_is_one_line(cli: Cli) -> None:
    code, _, err = cli("serve", "-m", "fake", "--host", "192.0.2.1", "--port", "8123")
    one_line_error(code, err, "192.0.2.1", "127.0.0.1")  # 192.0.2.0/24: for documentation


# -- tasks and budgets ---------------------------------------------------------------------
def test_more_problems_than_the_default_size_are_generated(cli: Cli) -> None:
    code, out, err = cli("run", "-m", "fake", "-n", "60", "--json")
    assert code == 0, err
    ids = [r["problem_id"] for r in json.loads(out)["results"]]
    assert len(ids) == 60 and ids[-1] == "chain_sum-0-59"


def test_fewer_problems_than_asked_are_said(cli: Cli) -> None:
    code, out, err = cli("run", "-m", "fake", "-n", "60", "--task-param", "size=50", "--json")
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 50
    assert "has 50 problems; running all of them (-n asked for 60)" in err


def test_a_lab_spec_asking_too_many_problems_of_a_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "two.jsonl"
    data.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+1?", "answer": "3"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: fake\nproblems: 2000\ntask: {{name: jsonl, params: {{path: {data}}}}}\n"
        "budgets: [1]\nstrategies: [self_consistency]\n"
    )
    store = tmp_path / "s.sqlite"
    code, _, err = cli("lab", "run", str(spec), "--store", str(store))
    one_line_error(code, err, "has 2 problems", "asks for 2000")
    assert not store.exists()


def test_a_lab_spec_generates_the_problems_it_asks_for(tmp_path: Path) -> None:
    from testtime.lab.data.spec import parse_spec
    from testtime.lab.execution.runner import checked_problems

    spec = parse_spec({"model": "fake", "problems": 80, "strategies": ["self_consistency"]})
    ((_, problems),) = checked_problems(spec).values()
    assert len(problems) == 80
    small = parse_spec({"model": "fake", "problems": 30, "strategies": ["self_consistency"]})
    assert small.tasks[0].params.size == 50  # unchanged below the default: same run ids


def test_a_budget_says_what_ran_under_it(cli: Cli) -> None:
    code, _, err = cli("run", "2+2?", "-m", "fake", "--budget", "16 samples")
    assert code == 0, err
    assert "spent at most 8 of 16 samples" in err and "-p n=16" in err


# -- the server's request schema -----------------------------------------------------------
@pytest.mark.parametrize(
    "field",
    [
        {"stream": "yes"},
        {"logprobs": "true"},
        {"logprobs": 1},
        {"n": "4"},
        {"temperature": "0.5"},
        {"top_p": "1"},
        {"seed": "7"},
        {"max_tokens": "16"},
        {"top_logprobs": "2"},
        {"continue_final_message": "false"},
        {"stream": True, "stream_options": {"include_usage": "yes"}},
        {"testtime": {"budget": {"samples": "8"}}},
    ],
)
async def test_a_value_of_the_wrong_type_is_a_400(field: dict[str, Any]) -> None:
    app = create_app(Settings("fake"), FakeGenerator())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = {"model": "fake", "messages": [{"role": "user", "content": "2+2?"}], **field}
        r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "Input should be" in error["message"]


async def test_an_integer_is_still_a_number() -> None:
    app = create_app(Settings("fake"), FakeGenerator())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = {"model": "fake", "messages": [{"role": "user", "content": "2+2?"}]}
        r = await c.post("/v1/chat/completions", json={**body, "temperature": 1, "top_p": 1})
    assert r.status_code == 200, r.text


# -- progress without a terminal -----------------------------------------------------------
def test_progress_prints_plain_lines_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "testtime", "run", "-m", "fake", "-n", "5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "self_consistency: 0/5 to do" in done.stderr
    assert "self_consistency: 5/5 done in" in done.stderr


def test_progress_lines_come_at_most_every_ten_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from testtime.cli.common import ProgressLines

    now = [0.0]
    lines = ProgressLines(10, "job", clock=lambda: now[0])
    for t in (1, 2, 12, 13, 25):
        now[0] = t
        lines.advance()
    lines.finish()
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "job: 0/10 to do",
        "job: 3/10 done (30%), 12s elapsed, ~28s left",
        "job: 5/10 done (50%), 25s elapsed, ~25s left",
        "job: 5/10 done in 25s",
    ]


def test_max_tokens_has_a_ceiling() -> None:
    from testtime.core.types import MAX_TOKENS, Message, Request

    with pytest.raises(ConfigError, match=f"1..{MAX_TOKENS}"):
        Request((Message("user", "hi"),), max_tokens=100_000_000)
