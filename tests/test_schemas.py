"""`spine schema config|batch|result` accept what spine accepts: the shipped example, every snippet in
the docs, the forms spine takes besides the canonical one, and result files with added fields."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spine.model.batch import parse_batch
from spine.model.config import validate_config
from spine.model.result import LaneResult
from spine.model.schemas import json_schema
from tests.conftest import ENVELOPE_KEYS, Spine

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".spine.yaml.example"


def validator(which: str) -> jsonschema.protocols.Validator:
    schema = json_schema(which)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(which: str, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(which).iter_errors(document)
    ]


@pytest.mark.parametrize("which", ["config", "batch", "result"])
def test_the_printed_schema_is_the_one_tested_here(spine: Spine, repo: Path, which: str) -> None:
    printed = json.loads(spine("schema", which, cwd=repo).stdout)
    assert printed == json_schema(which)
    jsonschema.validators.validator_for(printed).check_schema(printed)


def test_the_shipped_example_validates() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    assert errors("config", document) == []
    validate_config(document, str(EXAMPLE))


# --- snippets in the docs -------------------------------------------------------------------------

FENCE = re.compile(r"^```(yaml|json)\n(.*?)^```", re.S | re.M)
# Snippets of files that are not spine's, recognised by their top-level keys.
NOT_SPINE = {
    frozenset({"repos"}): ".pre-commit-config.yaml",
    frozenset({"name", "on", "jobs"}): "a GitHub Actions workflow",
    frozenset({"steps"}): "the steps of a GitHub Actions job",
}


def snippets() -> list[tuple[str, str, Any]]:
    """(where, kind, document) for every YAML/JSON block in docs/ and the README that is spine's."""
    found = []
    for path in sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]):
        text = path.read_text()
        for match in FENCE.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
            body = match.group(2)
            document = json.loads(body) if match.group(1) == "json" else yaml.safe_load(body)
            keys = frozenset(document) if isinstance(document, dict) else frozenset()
            if keys in NOT_SPINE or {True} <= keys:  # YAML 1.1 reads a workflow's `on:` as true
                continue
            if "spineJson" in keys:  # docs/json.md: the --json envelope, checked here for its keys
                assert keys == ENVELOPE_KEYS, where
                continue
            kind = "batch" if "lanes" in keys else "result" if "schemaVersion" in keys else "config"
            found.append((where, kind, document))
    return found


SNIPPETS = snippets()


def test_the_docs_have_snippets_of_each_kind() -> None:
    kinds = {kind for _, kind, _ in SNIPPETS}
    assert kinds == {"config", "batch", "result"}, SNIPPETS
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize(("where", "kind", "document"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_every_documented_snippet_validates_and_loads(where: str, kind: str, document: Any) -> None:
    assert errors(kind, document) == [], where
    if kind == "config":
        validate_config(document, where)
    elif kind == "batch":
        parse_batch(document, where)
    else:
        LaneResult.model_validate(document)


# --- the forms spine accepts besides the canonical one ----------------------------------------------

ACCEPTED_CONFIG = [
    # An empty key (every entry commented out) means its default.
    "env:\nenv_passthrough:\nchecks:\nartifacts:\nsetup:\ngate:\ngc:\npool:\noperators:\nmodes:\nbackends:\ncommit:\n",
    "setup:\n  copy:\n  commands:\ngate:\n  checks:\npool:\n  keep:\n",
    # Mode names in any case, as keys and in an operator's modes.
    "modes:\n  pipeline: {keywords: [etl]}\n  Service: {stop_rule: stop}\n",
    "operators:\n  - {id: op, name: Op, modes: [pipeline, ' Contract '], command: make, timebox: 10m,"
    " acceptance: [make test]}\n",
    # expect_exit as one exit code; an acceptance check as a bare command; a glob as one string.
    "operators:\n  - id: op\n    name: Op\n    modes: [TOOLSMITH]\n    command: make\n    timebox: 600\n"
    "    acceptance:\n      - {name: usage, command: ./tool --bogus, expect_exit: 2}\n      - make test\n"
    "    evidence:\n      - {id: readme, kind: file, glob: README.md}\n",
    # Numbers as environment values, and durations in every form.
    "env: {X: 1, Y: 2.5, Z: text}\ntimeout: 90\nidle_timeout: 1h30m\nstall_timeout: 2.5\nlock_timeout: 10s\n",
    "timeout: null\ngc: {retention_days: null}\n",
]


@pytest.mark.parametrize("text", ACCEPTED_CONFIG)
def test_what_spine_accepts_the_config_schema_accepts(text: str) -> None:
    document = yaml.safe_load(text)
    validate_config(document, ".spine.yaml")
    assert errors("config", document) == []


REFUSED_CONFIG = [
    "network: 'yes'\n",
    "pool: {size: '4'}\n",
    "timeout: [10m]\n",
    "timeout: 0\n",
    "env: {A=B: x}\n",
    "env: {X: true}\n",
    "modes: {bogus: {keywords: [x]}}\n",
    "setup: {copy_files: [.env]}\n",
    "tiemout: 1\n",
]


@pytest.mark.parametrize("text", REFUSED_CONFIG)
def test_what_spine_refuses_for_its_type_the_config_schema_refuses(text: str) -> None:
    from spine.base.errors import ConfigError

    document = yaml.safe_load(text)
    with pytest.raises(ConfigError):
        validate_config(document, ".spine.yaml")
    assert errors("config", document) != []


def test_env_numbers_are_accepted_alike_in_batch_and_config() -> None:
    lanes = {"lanes": [{"id": "a", "objective": "x", "command": "true", "env": {"X": 1, "Y": 2.5}}]}
    assert parse_batch(lanes, "lanes.yaml").lanes[0].env == {"X": "1", "Y": "2.5"}
    assert validate_config({"env": {"X": 1, "Y": 2.5}}, ".spine.yaml").env == {"X": "1", "Y": "2.5"}
    assert errors("batch", lanes) == [] and errors("config", {"env": {"X": 1}}) == []
    for refused in (True, None, [1]):
        assert errors("batch", {"lanes": [{**lanes["lanes"][0], "env": {"X": refused}}]}) != []
        assert errors("config", {"env": {"X": refused}}) != []


# --- the result file ---------------------------------------------------------------------------------


def test_the_result_schema_allows_added_fields(spine: Spine, repo: Path) -> None:
    """docs/result-format.md: readers ignore fields they do not know; later versions may add some."""
    schema = json_schema("result")
    assert schema.get("additionalProperties") is True
    result = spine.json("run", "--json", "say hi", "--", "echo", "hi", cwd=repo)
    assert errors("result", result) == []
    assert errors("result", {**result, "addedLater": {"any": "thing"}}) == []
    assert errors("result", {k: v for k, v in result.items() if k != "status"}) != []
