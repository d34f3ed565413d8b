"""`.spine.yaml`: validation errors a person can act on, flags over file, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine.base.errors import ConfigError
from spine.base.ids import parse_duration
from spine.model.config import SpineConfig, full_config_model, load_config
from tests.conftest import Spine, write_files

EXAMPLE = Path(__file__).resolve().parent.parent / ".spine.yaml.example"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tiemout: 10m\n", ["unknown key 'tiemout'", "valid keys here:", "timeout"]),
        ("timeout: soon\n", ["key 'timeout'", "not a duration"]),
        ("checks:\n  - name: t\n", ["key 'checks.0.command' is required"]),
        ("checks:\n  - {name: t, command: x, cmd: y}\n", ["unknown key 'checks.0.cmd'", "command"]),
        ("setup:\n  copy: .env\n", ["key 'setup.copy'", "list"]),
        ("commit:\n  message: '{objectiv}'\n", ["commit.message", "unknown field(s) objectiv"]),
        ("checks:\n  - {name: t, command: a}\n  - {name: t, command: b}\n", ["two checks are named 't'"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("timeout: [1\n", ["invalid YAML", "line"]),
    ],
)
def test_config_errors_name_file_key_and_expected_form(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / ".spine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert str(path) in message
    for word in words:
        assert word in message


def test_bad_config_is_exit_2_without_traceback(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "backend: local-worktree\nidle_timeout: -5\n"})
    proc = spine("run", "x", "--", "true", cwd=repo)
    assert proc.returncode == 2
    assert ".spine.yaml" in proc.stderr and "idle_timeout" in proc.stderr and "Traceback" not in proc.stderr


def test_flags_override_the_file(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "timeout: 1h\n"})
    result = spine.json("run", "--json", "--timeout", "1", "slow", "--", "sleep", "30", cwd=repo, expect=1)
    assert result["timeoutKind"] == "wall"


def test_missing_and_empty_file_mean_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yaml") == SpineConfig()
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert load_config(tmp_path / "empty.yaml") == SpineConfig()


def test_example_file_is_valid_and_mentions_every_key() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, SpineConfig)
    text = EXAMPLE.read_text()

    def keys(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            out.append(field.alias or name)
            inner = field.annotation
            if isinstance(inner, type) and hasattr(inner, "model_fields"):
                out += keys(inner)
        return out

    missing = [key for key in keys(full_config_model()) if f"{key}:" not in text]
    assert not missing, f".spine.yaml.example does not document: {missing}"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400),
                                               ("2.5m", 150), (45, 45)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5", "0", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_duration_flag(spine: Spine, repo: Path) -> None:
    proc = spine("run", "--timeout", "soon", "x", "--", "true", cwd=repo)
    assert proc.returncode == 2 and "not a duration" in proc.stderr


@pytest.mark.parametrize("which", ["config", "result"])
def test_schemas(spine: Spine, repo: Path, which: str) -> None:
    schema = spine.json("schema", which, cwd=repo)
    assert schema["$schema"].startswith("https://json-schema.org/")
    props = schema["properties"]
    if which == "config":
        assert {"base", "backend", "timeout", "checks", "setup", "commit", "gate"} <= set(props)
    else:
        assert {"objective", "status", "sandboxBackend", "branch", "worktreePath", "logPath", "providerRunId",
                "commits", "artifacts", "validation", "summary", "nextAction", "startedAt", "completedAt",
                "runId", "laneId", "baseSha", "headSha", "exitCode", "timedOut", "durationSeconds",
                "diffStat", "schemaVersion"} <= set(props)
        assert json.dumps(schema)
