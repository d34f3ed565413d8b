"""Secrets (values of variables whose names look like tokens, keys or passwords) never reach the
lane log, the terminal echo, run.json's output tail or the result file, on any backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine.base.redact import MASK, Redactor, StreamRedactor, looks_secret
from tests.conftest import Spine, data_of


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "OPENAI_API_KEY",
        "E2B_API_KEY",
        "SSH_KEY",
        "npm_config__authToken",
        "VERCEL_OIDC_TOKEN",
        "SANDBOX_API_KEY",
        "PGPASSWD",
        "SENTRY_DSN",
        "GH_PAT",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "GIT_AUTHOR_NAME", "KEYBOARD", "MONKEY", "LANG", "SPINE_LANE_ID"]
)
def test_ordinary_names(name: str) -> None:
    assert not looks_secret(name)


def test_redactor_masks_values_and_ignores_trivial_ones() -> None:
    redactor = Redactor.from_env(
        {"API_TOKEN": "abc123xyz", "FLAG_SECRET": "true", "SHORT_KEY": "ab", "PATH": "/usr/bin"}
    )
    assert redactor.redact(b"x abc123xyz y abc123xyz") == b"x " + MASK + b" y " + MASK
    assert redactor.redact(b"true ab /usr/bin") == b"true ab /usr/bin"
    quoted = Redactor(['pa"ss\\word'])
    assert quoted.redact_text(json.dumps({"k": 'pa"ss\\word'})) == '{"k": "[REDACTED]"}'


def test_stream_redactor_catches_secrets_split_across_chunks() -> None:
    stream = StreamRedactor(Redactor(["s3cr3t-value"]))
    data = b"before s3cr3t-value middle s3cr3t-value after s3cr3"
    out = b"".join(stream.feed(data[i : i + 3]) for i in range(0, len(data), 3)) + stream.flush()
    assert out == b"before " + MASK + b" middle " + MASK + b" after s3cr3"


def test_secrets_are_masked_for_a_local_lane(spine: Spine, repo: Path) -> None:
    (repo / ".spine.yaml").write_text("env:\n  SERVICE_TOKEN: tok-from-config-314\n")
    script = 'echo "config=$SERVICE_TOKEN shell=$SHELL_PASSWORD"; echo "$SHELL_PASSWORD" >&2; exit 1'
    proc = spine(
        "run",
        "--json",
        "leak",
        "--",
        "sh",
        "-c",
        script,
        cwd=repo,
        env={"SHELL_PASSWORD": "pw-from-shell-271"},
    )
    assert proc.returncode == 1
    result = data_of(proc)
    run_json = (Path(result["logPath"]).parents[2] / "run.json").read_text()
    for text in (
        proc.stdout,
        proc.stderr,
        Path(result["logPath"]).read_text(),
        json.dumps(result),
        run_json.split('"facts"', 1)[1],
    ):
        assert "pw-from-shell-271" not in text
        assert "tok-from-config-314" not in text
    assert "config=[REDACTED] shell=[REDACTED]" in result["outputTail"]
    assert "[REDACTED]" in result["nextAction"]  # the last line is quoted there, masked
