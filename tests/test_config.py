"""`.spine.yaml`: validation errors a person can act on, flags over file, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine.base.errors import ConfigError
from spine.base.ids import parse_duration
from spine.model.config import SpineConfig, full_config_model, load_config
from tests.conftest import Spine, git, write_files

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
        # Values that used to pass the loader and fail only when a lane ran (or crash it).
        (
            "timeout: [10m]\n",
            ["key 'timeout'", "expected a duration such as 90, 90s, 10m or 1h30m, not a list"],
        ),
        ("idle_timeout: {m: 5}\n", ["key 'idle_timeout'", "not a mapping"]),
        ("timeout: .nan\n", ["key 'timeout'", "nan is not a duration", "finite"]),
        ("stall_timeout: .inf\n", ["key 'stall_timeout'", "inf is not a duration"]),
        ("timeout: 9999999h\n", ["key 'timeout'", "longer than a year"]),
        ('base: "ma\\0in"\n', ["key 'base'", "NUL character"]),
        ("target: -x\n", ["key 'target'", "starts with '-'"]),
        ("base: ''\n", ["key 'base'", "it is empty", "name a branch, tag or commit"]),
        ("env:\n  A=B: x\n", ["key 'env'", "'A=B' is not a variable name", "letters, digits and '_'"]),
        ('env:\n  "A\\0": x\n', ["key 'env'", "is not a variable name"]),
        ('env:\n  A: "x\\0y"\n', ["key 'env.A'", "NUL character"]),
        ("env:\n  A: [1]\n", ["key 'env.A'", "valid string"]),
        ("env_passthrough: [A=B]\n", ["key 'env_passthrough.0'", "not a variable name"]),
        (
            "commit:\n  message: '{objective!x}'\n",
            ["key 'commit.message'", "not a valid template", "Unknown conversion specifier x"],
        ),
        ("commit:\n  message: '{objective:d}'\n", ["key 'commit.message'", "Unknown format code 'd'"]),
        ("commit:\n  message: '{objective:{branch}}'\n", ["key 'commit.message'", "may not hold a field"]),
        (
            "artifacts: [/etc/hostname]\n",
            ["key 'artifacts.0'", "absolute", "relative to the lane's worktree"],
        ),
        ("artifacts: ['../up.txt']\n", ["key 'artifacts.0'", "leaves the worktree"]),
        ("artifacts: ['']\n", ["key 'artifacts.0'", "it is empty"]),
        ("artifacts: ['a**']\n", ["key 'artifacts.0'", "whole path component"]),
        ("network: 'yes'\n", ["key 'network'", "valid boolean", "(got 'yes')"]),
        ("pool:\n  size: '4'\n", ["key 'pool.size'", "valid integer"]),
        (
            "setup:\n  copy_files: [.env]\n",
            ["unknown key 'setup.copy_files'", "valid keys here: commands, copy"],
        ),
        ('checks:\n  - {name: t, command: "a\\0"}\n', ["key 'checks.0.command'", "NUL character"]),
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


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / ".spine.yaml"
    path.write_text(
        "timeout: [1]\nbase: ''\nenv: {A=B: x}\nartifacts: [/abs]\ncommit: {message: '{objective!x}'}\n"
        "tiemout: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert message.startswith(f"{path}: 6 problems:\n  - "), message
    for key in ("'timeout'", "'base'", "'env'", "'artifacts.0'", "'commit.message'", "unknown key 'tiemout'"):
        assert key in message, (key, message)


def test_a_file_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / ".spine.yaml"
    path.write_bytes(b"backend: local-worktree\ncommit:\n  message: 'caf\xe9'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message == f"{path}: not valid UTF-8 text at line 3, column 16 (byte 0xe9)"
    assert info.value.hint == "save the file as UTF-8"


def test_unknown_backend_base_and_target_name_the_file_and_key_all_at_once(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "backend: local-worktre\nbase: no-such-base\ntarget: no-such-target\n"})
    proc = spine("context", cwd=repo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    config = repo / ".spine.yaml"
    assert proc.stderr.startswith(
        f"spine: error: 3 problems:\n"
        f"  - {config}: key 'backend': unknown backend 'local-worktre'\n"
        f"  - {config}: key 'base': unknown base ref 'no-such-base': no branch, tag or commit has that name\n"
        f"  - {config}: key 'target': unknown target ref 'no-such-target': no branch, tag or commit has that name\n"
        "  hint: did you mean 'local-worktree'? known backends: "
    ), proc.stderr


def test_an_objective_that_is_not_utf8_is_exit_2(spine: Spine, repo: Path) -> None:
    objective = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of such an argv entry
    proc = spine("run", objective, "--", "true", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    assert "spine: error: the objective: it is not valid UTF-8 text" in proc.stderr
    assert not (repo / ".git" / "spine" / "runs").exists()


@pytest.mark.parametrize("where", [".spine.yaml", "batch"])
def test_env_numbers_are_text_in_both_files(spine: Spine, repo: Path, tmp_path: Path, where: str) -> None:
    """`env: {X: 1}` is the same in .spine.yaml and a batch lane: the lane's command sees X=1."""
    command = 'printf \'%s %s\' "$X" "$Y" > seen.txt'
    if where == ".spine.yaml":
        write_files(repo, {".spine.yaml": "env:\n  X: 1\n  Y: 2.5\n"})
        git("add", ".spine.yaml", cwd=repo)
        git("commit", "-qm", "config", cwd=repo)
        result = spine.json(
            "run", "--json", "--artifact", "seen.txt", "env", "--", "sh", "-c", command, cwd=repo
        )
    else:
        lanes = tmp_path / "lanes.yaml"
        lanes.write_text(
            f"lanes:\n  - id: env\n    objective: env\n    command: {json.dumps(command)}\n"
            "    artifacts: [seen.txt]\n    env: {X: 1, Y: 2.5}\n"
        )
        run = spine.json("batch", str(lanes), "--json", cwd=repo)
        result = spine.json("show", f"{run['runId']}/env", "--json", cwd=repo)
    stored = Path(result["artifacts"][0]["storedAt"]).read_text()
    assert stored == "1 2.5"


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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150), (45, 45)],
)
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
    schema = json.loads(spine("schema", which, cwd=repo).stdout)  # a schema document, not an envelope
    assert schema["$schema"].startswith("https://json-schema.org/")
    props = schema["properties"]
    if which == "config":
        assert {"base", "backend", "timeout", "checks", "setup", "commit", "gate"} <= set(props)
    else:
        assert {
            "objective",
            "status",
            "sandboxBackend",
            "branch",
            "worktreePath",
            "logPath",
            "providerRunId",
            "commits",
            "artifacts",
            "validation",
            "summary",
            "nextAction",
            "startedAt",
            "completedAt",
            "runId",
            "laneId",
            "baseSha",
            "headSha",
            "exitCode",
            "timedOut",
            "durationSeconds",
            "diffStat",
            "schemaVersion",
        } <= set(props)
        assert json.dumps(schema)
