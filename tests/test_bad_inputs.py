"""A corpus of bad inputs: each exits non-zero with one line naming the file:line or field."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneship.cli import app

runner = CliRunner()

GOOD_CONFIG = "name: bad-inputs\npublish:\n  repo_id: me/bad-inputs\n"
GOOD_ROW = json.dumps({"prompt": "What is 2 plus 2?", "completion": "4"})
BAD_UTF8_ROWS = (GOOD_ROW + "\n").encode() * 2 + b'{"prompt": "caf\xe9", "completion": "x"}\n'


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _data(tmp: Path, content: str | bytes, name: str = "rows.jsonl") -> Path:
    return _write(tmp / name, content)


def _model(tmp: Path, tiny: Path, keep: Callable[[str], bool]) -> Path:
    dest = tmp / "model"
    dest.mkdir()
    for file in tiny.iterdir():
        if keep(file.name):
            shutil.copy(file, dest / file.name)
    return dest


def _malformed_config(tmp: Path, tiny: Path) -> Path:
    folder = _model(tmp, tiny, lambda name: True)
    _write(folder / "config.json", "{oops")
    return folder


# Each case writes its inputs under tmp and returns (config text, --set items, expected text).
Case = Callable[[Path, Path], tuple[str | bytes, list[str], str]]

CASES: dict[str, Case] = {
    "empty config": lambda tmp, tiny: ("", [], "config file is empty"),
    "comment-only config": lambda tmp, tiny: ("# nothing\n\n# here\n", [], "empty"),
    "duplicate key": lambda tmp, tiny: (
        "name: a\ntraining:\n  max_steps: 3\ntraining:\n  max_steps: 4\n",
        [],
        "config.yaml:4: duplicate key 'training' (first at line 2)",
    ),
    "config not utf-8": lambda tmp, tiny: (
        b"name: a\npublish:\n  repo_id: me/x\n# caf\xe9\n",
        [],
        "config.yaml:4: not UTF-8",
    ),
    "missing repo_id": lambda tmp, tiny: ("name: a\n", [], "publish.repo_id is missing"),
    "max_steps 0": lambda tmp, tiny: (GOOD_CONFIG, ["training.max_steps=0"], "training.max_steps"),
    "data not utf-8": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"data.path={_data(tmp, BAD_UTF8_ROWS)}"],
        "rows.jsonl:3: not UTF-8 text (byte",
    ),
    "messages null": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"data.path={_data(tmp, json.dumps({'messages': None}) + chr(10))}"],
        "field 'messages' is null",
    ),
    "folder of stray text": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"data.path={_write(tmp / 'folder' / 'notes.txt', 'hello').parent}"],
        "neither a datasets.save_to_disk folder",
    ),
    "model with only config.json": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"model.base={_model(tmp, tiny, lambda n: n == 'config.json')}"],
        "has no weights",
    ),
    "model config malformed": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"model.base={_malformed_config(tmp, tiny)}"],
        "config.json:1: not valid JSON",
    ),
    "model without tokenizer": lambda tmp, tiny: (
        GOOD_CONFIG,
        [f"model.base={_model(tmp, tiny, lambda n: 'token' not in n and 'vocab' not in n)}"],
        "tokenizer",
    ),
    # Tests run with HF_HUB_OFFLINE=1: a Hub base model is unreachable by design.
    "hub model while offline": lambda tmp, tiny: (
        GOOD_CONFIG,
        ["model.base=nobody/no-such-model"],
        "cannot reach the Hub at",
    ),
}


def test_no_network_is_reported_at_the_first_failure_without_retries() -> None:
    import httpx

    from tuneship.hub.client import HubUnreachableError, call_with_retries

    sleeps: list[float] = []

    def offline() -> None:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(HubUnreachableError, match=r"cannot reach the Hub at .*name resolution"):
        call_with_retries(offline, what="whoami", sleep=sleeps.append)
    assert sleeps == []


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_fails_with_one_line(case: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    config_text, sets, expected = CASES[case](tmp_path, tiny_model_dir)
    config = _write(tmp_path / "config.yaml", config_text)
    args = ["validate", str(config), "--set", f"model.base={tiny_model_dir}"]
    args += ["--set", f"data.path={_data(tmp_path, GOOD_ROW + chr(10), 'good.jsonl')}"]
    for item in sets:
        args += ["--set", item]
    args += ["--set", f"registry.url=sqlite:///{tmp_path / 'registry.db'}"]
    args += ["--set", f"publish.store_path={tmp_path / 'store'}", "--set", "serve.target=none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    # Data reports list each bad row under the error line; the rest is one line.
    assert expected in (result.output if "rows.jsonl" in errors[0] else errors[0]), result.output
    assert "Traceback" not in result.output
    # Nothing trained or published (validate may create the empty store to test it).
    assert not list((tmp_path / "store").rglob("*.safetensors"))
    assert not (Path(os.environ["TUNESHIP_HOME"]) / "runs").exists()
