"""Modes: the classifier, each mode's evidence pattern on real lanes, and PASS/WARN/FAIL aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from spine.lane.grading import aggregate
from spine.model.modes import (
    ArtifactFact,
    CheckFact,
    EvidenceFacts,
    EvidenceRule,
    Mode,
    ModeSettings,
    classify,
    evaluate,
    glob_match,
)
from spine.model.result import AcceptanceResult, Verdict
from tests.conftest import Spine, write_files

# --- classifier ----------------------------------------------------------------------------------

CLASSIFIER_TABLE = [
    ("deploy the docs site to github pages", Mode.SERVICE),
    ("restart the systemd timer that posts the digest", Mode.SERVICE),
    ("keep the slack bot stable after the outage", Mode.SERVICE),
    ("fix the postgres integration when env vars are missing", Mode.CONTRACT),
    ("reproduce the crash in the api client and add a regression guard", Mode.CONTRACT),
    ("write a cli tool to scaffold new services from a template", Mode.TOOLSMITH),
    ("add a setup script for the dev environment playbook", Mode.TOOLSMITH),
    ("backfill March orders and export them to csv", Mode.PIPELINE),
    ("ingest the vendor jsonl feed and normalize the records", Mode.PIPELINE),
    ("triage the open issues and prioritize the roadmap", Mode.GOVERNANCE),
    ("review our wip limits and write down the standards", Mode.GOVERNANCE),
    ("send outreach to the qualified leads in the crm", Mode.CONTACT),
    ("follow-up with linkedin contacts from the conference", Mode.CONTACT),
    ("Deploying the new Domain", Mode.SERVICE),  # case and word endings
]


@pytest.mark.parametrize(("objective", "expected"), CLASSIFIER_TABLE)
def test_classifier_table(objective: str, expected: Mode) -> None:
    found = classify(objective)
    assert found.mode == expected, found.reason
    assert found.reason.startswith(expected.value + ": matched")


def test_classifier_does_not_match_inside_words_and_reports_no_mode() -> None:
    assert classify("the bottom of the page").mode is None  # 'bot' is not in 'bottom'
    found = classify("make it nicer")
    assert found.mode is None and "no keyword" in found.reason


def test_classifier_ties_go_to_the_earlier_mode_and_say_so() -> None:
    found = classify("export the api")  # PIPELINE 'export' vs CONTRACT 'api'
    assert found.mode == Mode.PIPELINE
    assert "tied with CONTRACT" in found.reason


def test_classifier_keywords_come_from_config_and_can_be_restricted() -> None:
    overrides = {Mode.CONTACT: ModeSettings(keywords=["newsletter"])}
    assert classify("draft the newsletter", overrides).mode == Mode.CONTACT
    assert classify("send outreach", overrides).mode is None  # the defaults were replaced
    among = classify("export the api", among=[Mode.CONTRACT, Mode.TOOLSMITH])
    assert among.mode == Mode.CONTRACT


def test_classify_command(repo: Path, spine: Spine, tmp_path: Path) -> None:
    data = spine.json("classify", "--json", "backfill the export to csv", cwd=repo)
    assert data["mode"] == "PIPELINE"
    assert set(data["matches"]["PIPELINE"]) == {"backfill", "export", "csv"}
    write_files(repo, {".spine.yaml": "modes:\n  governance:\n    keywords: [retro]\n"})
    assert spine.json("classify", "--json", "run the retro", cwd=repo)["mode"] == "GOVERNANCE"
    none = spine("classify", "hello there", cwd=repo)
    assert none.returncode == 1 and none.stdout.startswith("no mode")
    outside = tmp_path / "plain"
    outside.mkdir()
    assert spine("classify", "triage the queue", cwd=outside).stdout.startswith("GOVERNANCE")


# --- evidence rules on facts ---------------------------------------------------------------------


def test_glob_matching_rules() -> None:
    assert glob_match("tests/unit/test_parser.py", ["test_*"])  # no '/': file name at any depth
    assert glob_match("Docs/ADR/0001-x.md", ["**/adr/**"])  # case-insensitive
    assert glob_match("adr/0001.md", ["**/adr/**"])  # '**/' also matches zero directories
    assert not glob_match("src/parser.py", ["tests/**", "test_*"])
    assert not glob_match("out/a/b.csv", ["out/*.csv"])  # '*' stays inside one directory


def test_manifest_rule_reads_json_and_accepts_key_alternatives(tmp_path: Path) -> None:
    rule = EvidenceRule(id="m", kind="manifest", glob=["*manifest*.json"], keys=["count|rows", "sha256|hash"])
    write_files(
        tmp_path,
        {
            "good/manifest.json": json.dumps({"files": [{"path": "a", "rows": 2, "hash": "ab"}]}),
            "bad/manifest.json": json.dumps({"count": 2}),
            "broken/manifest.json": "{not json",
        },
    )

    def run(files: list[str]) -> Any:
        return evaluate([rule], EvidenceFacts(root=tmp_path, files=files))[0]

    assert run(["good/manifest.json"]).found
    bad = run(["bad/manifest.json"])
    assert not bad.found and "no key 'sha256|hash'" in bad.detail
    assert "not JSON" in run(["broken/manifest.json"]).detail
    assert "no manifest matching" in run([]).detail


def test_min_count_min_size_and_changed_only() -> None:
    facts = EvidenceFacts(
        root=None,
        changed=["notes/decision-1.md"],
        files=["notes/decision-1.md", "old/decision-0.md"],
        artifacts=[ArtifactFact("out/a.csv", 10), ArtifactFact("out/empty.csv", 0)],
        checks=[CheckFact("health", "curl -f localhost/healthz", False), CheckFact("smoke", "tool x", True)],
    )
    two = EvidenceRule(id="a", kind="artifact", min_count=2)
    assert not evaluate([two], facts)[0].found  # only one artifact is non-empty
    decision = EvidenceRule(id="d", kind="file", glob=["*decision*"], changed=True, min_size=0)
    assert evaluate([decision], facts)[0].paths == ("notes/decision-1.md",)
    health = evaluate([EvidenceRule(id="h", kind="check", name=["*health*"])], facts)[0]
    assert not health.found and "did not pass" in health.detail


# --- each mode's default pattern, on real lanes --------------------------------------------------

MANIFEST = 'printf \'{"count": 1, "sha256": "x"}\' > out/manifest.json'
PASSING_AND_FAILING: list[tuple[Mode, str, list[str], str, list[str], list[str]]] = [
    # (mode, passing command, extra args, failing command, extra args, missing evidence when failing)
    (
        Mode.PIPELINE,
        f"mkdir -p out && echo 1,2 > out/data.csv && {MANIFEST}",
        ["--artifact", "out/*"],
        "mkdir -p out && echo 1,2 > out/data.csv",
        ["--artifact", "out/*"],
        ["manifest"],
    ),
    (
        Mode.TOOLSMITH,
        "true",
        ["--check", "sh tool.sh --help", "--check", "sh tool.sh smoke"],
        "true",
        ["--check", "true"],
        ["help", "smoke"],
    ),
    (Mode.SERVICE, "true", ["--check", "./healthcheck.sh"], "true", ["--check", "true"], ["health"]),
    (
        Mode.CONTRACT,
        "mkdir -p tests && echo 'sh tool.sh' > repro.sh && echo 'def test_x(): pass' > tests/test_fix.py",
        [],
        "echo fixed > src/fix.txt",
        [],
        ["repro", "regression-test"],
    ),
    (
        Mode.GOVERNANCE,
        "mkdir -p docs/adr && echo '# use sqlite' > docs/adr/0001-storage.md",
        [],
        "echo 'some thoughts' > notes.txt",
        [],
        ["decision"],
    ),
    (
        Mode.CONTACT,
        'echo \'{"to": "ann", "channel": "mail"}\' > touches.jsonl',
        [],
        "echo 'draft' > draft.txt",
        [],
        ["touches"],
    ),
]


def _tool_repo(repo: Path) -> None:
    from tests.conftest import git

    write_files(
        repo,
        {
            "tool.sh": 'case "$1" in --help) echo "usage: tool.sh run|smoke"; exit 0;; smoke) exit 0;; *) exit 2;; esac\n',
            "healthcheck.sh": "#!/bin/sh\necho ok\n",
        },
    )
    (repo / "healthcheck.sh").chmod(0o755)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "tool", cwd=repo)


@pytest.mark.parametrize(
    ("mode", "good", "good_args", "bad", "bad_args", "missing"),
    PASSING_AND_FAILING,
    ids=[row[0].value for row in PASSING_AND_FAILING],
)
def test_each_mode_evidence_passes_and_fails(
    repo: Path,
    spine: Spine,
    mode: Mode,
    good: str,
    good_args: list[str],
    bad: str,
    bad_args: list[str],
    missing: list[str],
) -> None:
    _tool_repo(repo)
    ok = spine.json(
        "run", "--json", "-q", "--mode", mode.value, *good_args, "good lane", "--", "sh", "-c", good, cwd=repo
    )
    assert ok["status"] == "succeeded", ok["summary"]
    assert ok["mode"] == mode.value and ok["modeSource"] == "flag"
    assert ok["evidence"] and all(item["found"] for item in ok["evidence"]), ok["evidence"]
    assert ok["verdict"] == "PASS"
    assert ok["nextPointer"]

    no = spine.json(
        "run",
        "--json",
        "-q",
        "--mode",
        mode.value,
        *bad_args,
        "bad lane",
        "--",
        "sh",
        "-c",
        bad,
        cwd=repo,
        expect=1,
    )
    # The command itself succeeded: the status is grounded in the evidence, not in the exit code.
    assert no["exitCode"] == 0
    assert no["status"] == "failed"
    assert no["verdict"] == "FAIL"
    assert [item["id"] for item in no["evidence"] if not item["found"]] == missing
    assert "produce the missing evidence" in no["nextPointer"]
    assert Path(no["debugPacket"]).is_file()


def test_mode_evidence_can_be_replaced_in_config(repo: Path, spine: Spine) -> None:
    config = {
        "modes": {
            "governance": {
                "evidence": [{"id": "plan", "kind": "file", "glob": ["PLAN.md"], "changed": True}],
                "stop_rule": "write the constraint first",
            }
        }
    }
    write_files(repo, {".spine.yaml": yaml.safe_dump(config)})
    ok = spine.json(
        "run", "--json", "-q", "--mode", "governance", "plan", "--", "sh", "-c", "echo x > PLAN.md", cwd=repo
    )
    assert ok["status"] == "succeeded" and [e["id"] for e in ok["evidence"]] == ["plan"]
    stopped = spine.json(
        "run",
        "--json",
        "-q",
        "--mode",
        "governance",
        "--timeout",
        "1",
        "plan",
        "--",
        "sleep",
        "20",
        cwd=repo,
        expect=1,
    )
    assert "write the constraint first" in stopped["nextPointer"]


def test_mode_auto_classifies_and_refuses_to_guess(repo: Path, spine: Spine) -> None:
    result = spine.json(
        "run",
        "--json",
        "-q",
        "--mode",
        "auto",
        "record a decision on the roadmap",
        "--",
        "true",
        cwd=repo,
        expect=1,
    )
    assert result["mode"] == "GOVERNANCE" and result["modeSource"] == "classifier"
    unclear = spine("run", "--mode", "auto", "make it nicer", "--", "true", cwd=repo)
    assert unclear.returncode == 2 and "cannot classify" in unclear.stderr and "--mode" in unclear.stderr
    bad = spine("run", "--mode", "ART", "x", "--", "true", cwd=repo)
    assert bad.returncode == 2 and "unknown mode 'ART'" in bad.stderr


def test_lanes_without_a_mode_are_not_graded(repo: Path, spine: Spine) -> None:
    result = spine.json("run", "--json", "-q", "plain lane", "--", "true", cwd=repo)
    assert result["status"] == "succeeded"
    assert result["mode"] is None and result["verdict"] is None and result["evidence"] == []


# --- PASS / WARN / FAIL --------------------------------------------------------------------------


def _acc(*verdicts: Verdict) -> list[AcceptanceResult]:
    return [
        AcceptanceResult(name=f"c{i}", verdict=v, command="x", summary="") for i, v in enumerate(verdicts)
    ]


def _findings(*states: tuple[bool, bool]) -> list[Any]:
    from spine.model.modes import Finding

    return [
        Finding(EvidenceRule(id=f"r{i}", kind="artifact", required=required), found, "")
        for i, (found, required) in enumerate(states)
    ]


@pytest.mark.parametrize(
    ("acceptance", "findings", "expected"),
    [
        (_acc(Verdict.PASS, Verdict.PASS), _findings((True, True)), Verdict.PASS),
        (_acc(Verdict.PASS, Verdict.WARN), _findings((True, True)), Verdict.WARN),
        (_acc(Verdict.PASS, Verdict.WARN, Verdict.FAIL), _findings((True, True)), Verdict.FAIL),
        (_acc(Verdict.PASS), _findings((False, True)), Verdict.FAIL),  # required evidence missing
        (_acc(Verdict.PASS), _findings((True, True), (False, False)), Verdict.WARN),  # optional missing
        (_acc(), _findings((False, False)), Verdict.FAIL),  # nothing shown at all
        (_acc(Verdict.WARN), [], Verdict.FAIL),  # a warning is not evidence
        (_acc(Verdict.PASS), [], Verdict.PASS),  # an empty pattern: the passing check is the evidence
    ],
)
def test_aggregation(acceptance: list[AcceptanceResult], findings: list[Any], expected: Verdict) -> None:
    assert aggregate(acceptance, findings) == expected


def test_warn_keeps_the_lane_succeeded_and_fail_does_not(repo: Path, spine: Spine) -> None:
    op = {
        "id": "tool",
        "name": "Build the tool",
        "modes": ["TOOLSMITH"],
        "inputs": {"lint": {"type": "choice", "choices": ["pass", "fail"], "default": "pass"}},
        "command": "printf '#!/bin/sh\\n[ \"$1\" = --help ] && echo usage && exit 0\\nexit 2\\n' > tool && chmod +x tool",
        "acceptance": [
            {"name": "help", "command": "./tool --help"},
            {"name": "smoke", "command": "./tool bogus", "expect_exit": 2},
            {"name": "style", "command": "test {{lint}} = pass", "severity": "warn"},
            {"name": "docs", "command": "test -f README.md", "severity": "warn"},
        ],
        "timebox": 30,
    }
    strict = {
        **op,
        "id": "strict",
        "acceptance": [*op["acceptance"][:2], {"name": "style", "command": "test {{lint}} = pass"}],
    }
    write_files(repo, {".spine.yaml": yaml.safe_dump({"operators": [op, strict]})})

    warned = spine.json("run", "--json", "-q", "--op", "tool", "--input", "lint=fail", cwd=repo)
    assert [(a["name"], a["verdict"]) for a in warned["acceptance"]] == [
        ("help", "PASS"),
        ("smoke", "PASS"),
        ("style", "WARN"),
        ("docs", "PASS"),
    ]
    assert warned["verdict"] == "WARN" and warned["status"] == "succeeded"
    assert warned["debugPacket"] is None

    failed = spine.json("run", "--json", "-q", "--op", "strict", "--input", "lint=fail", cwd=repo, expect=1)
    assert [a["verdict"] for a in failed["acceptance"]] == ["PASS", "PASS", "FAIL"]
    assert failed["verdict"] == "FAIL" and failed["status"] == "failed"
    assert failed["nextPointer"].startswith("reproduce the failing check style:")

    clean = spine.json("run", "--json", "-q", "--op", "tool", cwd=repo)
    assert clean["verdict"] == "PASS" and [a["verdict"] for a in clean["acceptance"]] == ["PASS"] * 4


def test_score_gate_sees_evidence(repo: Path, spine: Spine, tmp_path: Path) -> None:
    failed = spine.json("run", "--json", "-q", "--mode", "CONTACT", "draft", "--", "true", cwd=repo, expect=1)
    path = repo / ".git" / "spine" / "runs" / failed["runId"] / "lanes" / failed["laneId"] / "result.json"
    honest = spine.json("score", str(path), "--json", cwd=repo, expect=None)["results"][0]
    assert honest["contradictions"] == []
    # A result claiming success without the mode's evidence is inconsistent.
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**failed, "status": "succeeded", "verdict": "PASS"}))
    graded = spine.json("score", str(forged), "--json", cwd=repo, expect=1)["results"][0]
    assert "status is succeeded but evidence touches is missing" in graded["contradictions"]
