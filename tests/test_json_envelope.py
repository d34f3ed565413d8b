"""Every command that takes --json prints spine's one envelope (docs/json.md); the docs list them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from spine.cli import COMMANDS, cli
from tests.conftest import Spine, check_envelope, write_files

ROOT = Path(__file__).resolve().parent.parent


def commands_with_json() -> set[str]:
    ctx = click.Context(cli)
    found = set()
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        if any(param.name == "as_json" for param in command.params):
            found.add(name)
    return found


def test_the_docs_list_every_command_with_json() -> None:
    table = (ROOT / "docs" / "json.md").read_text().split("## `data` of each command", 1)[1]
    documented = set(re.findall(r"^\| `spine (\w+)", table, re.M)) | set(re.findall(r", `spine (\w+)", table))
    assert documented - {"schema"} == commands_with_json()


@pytest.fixture
def world(repo: Path, spine: Spine, tmp_path: Path) -> dict[str, str]:
    """A run with a succeeded and a failed lane, and two planned batch runs."""
    lanes = tmp_path / "lanes.yaml"
    lanes.write_text(
        "lanes:\n  - {id: ok, objective: add a file, command: 'echo x > ok.txt'}\n"
        "  - {id: bad, objective: fail, command: 'exit 3'}\n"
    )
    assert spine("batch", str(lanes), "--run-id", "done", cwd=repo).returncode == 1
    one = tmp_path / "one.yaml"
    one.write_text("lanes:\n  - {id: one, objective: one, command: 'true'}\n")
    tries = tmp_path / "tries.yaml"
    tries.write_text("lanes:\n  - {id: two, objective: two tries, command: 'echo x > t.txt', attempts: 2}\n")
    assert spine("batch", str(tries), "--run-id", "tries", cwd=repo).returncode == 0
    for run_id in ("planned", "stepped"):
        assert spine("batch", str(one), "--run-id", run_id, "--plan", cwd=repo).returncode == 0
    write_files(
        repo,
        {
            ".spine.yaml": "operators:\n  - {id: op, name: Op, modes: [PIPELINE], command: 'true',"
            " timebox: 10m, acceptance: [test -n x], env: {MY_VAR: x}}\n"
        },
    )
    return {"lanes": str(one)}


CALLS: list[tuple[list[str], int]] = [
    (["run", "--json", "-q", "x", "--", "true"], 0),
    (["show", "done/ok", "--json"], 0),
    (["show", "done", "--json"], 0),
    (["status", "--json"], 0),
    (["status", "done", "--json"], 0),
    (["batch", "{lanes}", "--plan", "--json"], 0),
    (["resume", "planned", "--json"], 0),
    (["step", "stepped", "--json"], 0),
    (["debug", "done/bad", "--json"], 0),
    (["gate", "--into", "main", "--check", "true", "--json"], 0),
    (["score", "done/ok", "--json"], 0),
    (["compare", "tries/two", "--json"], 0),
    (["pick", "tries/two", "2", "--json"], 0),
    (["promote", "done/ok", "--json"], 0),
    (["gc", "--dry-run", "--json"], 0),
    (["land", "done", "ok", "--json"], 0),
    (["backends", "--json"], 0),
    (["context", "--json"], 0),
    (["ops", "--json"], 0),
    (["classify", "backfill the csv export", "--json"], 0),
]


def test_every_json_command_prints_the_envelope(world: dict[str, str], repo: Path, spine: Spine) -> None:
    covered = set()
    for args, code in CALLS:
        args = [arg.format(**world) for arg in args]
        proc = spine(*args, cwd=repo)
        assert proc.returncode == code, (args, proc.stderr)
        document = json.loads(proc.stdout)
        check_envelope(document, code, args)
        assert isinstance(document["data"], dict), args
        covered.add(args[0])
    assert covered == commands_with_json()


def test_keys_are_camel_case_but_user_names_are_kept(world: dict[str, str], repo: Path, spine: Spine) -> None:
    [op] = spine.json("ops", "--json", cwd=repo)["operators"]
    assert "failurePaths" in op and "failure_paths" not in op
    assert op["env"] == {"MY_VAR": "x"} and "expectExit" in op["acceptance"][0]

    def keys(value: object) -> list[str]:
        if isinstance(value, dict):
            return [k for k, v in value.items() for k in [k, *keys(v)] if k != "env"]
        if isinstance(value, list):
            return [k for item in value for k in keys(item)]
        return []

    assert [k for k in keys(op) if "_" in k and k != "MY_VAR"] == []


def test_run_data_is_the_result_file_byte_for_byte(repo: Path, spine: Spine) -> None:
    result = spine.json("run", "--json", "-q", "--run-id", "r", "--lane", "l", "x", "--", "true", cwd=repo)
    on_disk = (repo / ".git" / "spine" / "runs" / "r" / "lanes" / "l" / "result.json").read_text()
    assert result == json.loads(on_disk)
    assert spine.json("show", "r/l", "--json", cwd=repo) == json.loads(on_disk)
