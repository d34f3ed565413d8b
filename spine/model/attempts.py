"""Lanes with attempts (best of N): what one attempt may run, what spine measures, and the pick rules.

Everything here is pure: figures come from an attempt's result file and the text of its diff, which
the ``compare`` step (``spine.lane.attempts``) reads; the pick is a function of the figures. A rule
only ever picks an attempt that passed (status ``succeeded``: every check and acceptance check
passed, its evidence was found, it broke no invariant). When none did, nothing is picked and the
reason names the attempt that came closest. See docs/attempts.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spine.model.config import PICK_RULES
from spine.model.result import Agreement, AttemptFigures, CheckStatus, LaneResult, Pick, Verdict
from spine.model.score import grade

MAX_FILES_LISTED = 200
MAX_TOKENS = 20_000
"""The most changed lines of one attempt that the agreement measure reads."""

Token = tuple[str, str, str]
"""One changed line: (path, '+' or '-', its text without surrounding blanks)."""


class AttemptEntry(BaseModel):
    """What one attempt runs when the attempts differ: a command, or an operator with its inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | list[str] | None = Field(
        default=None, description="a string run by /bin/sh -c, or a list run as argv"
    )
    op: str | None = Field(default=None, description="an operator from .spine.yaml, instead of a command")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the operator's inputs")
    mode: str | None = Field(default=None, description="the attempt's mode (or 'auto')")

    @model_validator(mode="after")
    def _command_or_operator(self) -> AttemptEntry:
        if (self.command is None) == (self.op is None):
            raise ValueError("an attempt gives exactly one of `command` or `op`")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("the attempt's command is empty")
        if isinstance(self.command, str) and not self.command.strip():
            raise ValueError("the attempt's command is empty")
        if self.inputs and self.op is None:
            raise ValueError("`inputs` only apply to an attempt that runs an operator (`op`)")
        return self


def attempt_entry(value: object) -> AttemptEntry:
    """An AttemptEntry from a command string, an argv list or a mapping (ValueError if none of them)."""
    if isinstance(value, AttemptEntry):
        return value
    if isinstance(value, str | list):
        return AttemptEntry(command=value)
    if isinstance(value, Mapping):
        return AttemptEntry.model_validate(dict(value))
    raise ValueError(f"an attempt is a command or a mapping with `command` or `op`, not {value!r}")


# --- what one attempt did ------------------------------------------------------------------------


def diff_tokens(patch: str, limit: int = MAX_TOKENS) -> frozenset[Token]:
    """The changed lines of a unified diff (``git diff -U0``), as tokens; blank lines are left out."""
    tokens: set[Token] = set()
    path = ""
    for line in patch.splitlines():
        if line.startswith("+++ "):
            target = line[4:]
            path = target[2:] if target.startswith("b/") else target
            continue
        if line.startswith("--- "):
            source = line[4:]
            if source != "/dev/null":
                path = source[2:] if source.startswith("a/") else source
            continue
        if line[:1] in ("+", "-") and not line.startswith(("+++", "---")):
            text = line[1:].strip()
            if text:
                tokens.add((path, line[0], text))
                if len(tokens) >= limit:
                    break
    return frozenset(tokens)


def figures_of(attempt: int, result: LaneResult, files: Sequence[str]) -> AttemptFigures:
    """What spine measured about one attempt, from its result file and the files it changed."""
    passed = sum(1 for c in result.validation if c.status == CheckStatus.PASSED)
    passed += sum(1 for a in result.acceptance if a.verdict in (Verdict.PASS, Verdict.WARN))
    failed = sum(1 for c in result.validation if c.status == CheckStatus.FAILED)
    failed += sum(1 for a in result.acceptance if a.verdict == Verdict.FAIL)
    stat = result.diff_stat
    return AttemptFigures(
        attempt=attempt,
        lane_id=result.lane_id,
        status=result.status,
        failure_kind=result.failure_kind,
        command=list(result.command),
        branch=result.branch,
        head_sha=result.head_sha,
        checks_passed=passed,
        checks_failed=failed,
        checks_total=len(result.validation) + len(result.acceptance),
        verdict=result.verdict,
        evidence_found=sum(1 for e in result.evidence if e.found),
        evidence_missing=[e.id for e in result.evidence if e.required and not e.found],
        score=grade(result).score,
        files_changed=stat.files_changed if stat else 0,
        insertions=stat.insertions if stat else 0,
        deletions=stat.deletions if stat else 0,
        files=list(files)[:MAX_FILES_LISTED],
        duration_seconds=result.duration_seconds,
        iterations=max(1, len(result.iterations)),
        completed_at=result.completed_at,
        summary=result.summary,
    )


def jaccard(a: Iterable[object], b: Iterable[object]) -> float:
    one, two = set(a), set(b)
    union = one | two
    return round(len(one & two) / len(union), 3) if union else 1.0


def agreement(
    changes: Mapping[int, tuple[Sequence[str], frozenset[Token]]],
) -> tuple[dict[int, Agreement], list[tuple[int, int, float, float]]]:
    """Each attempt's mean agreement with the others, and every pair's (a, b, files, lines).

    ``changes`` maps an attempt to (the files it changed, its changed lines). Only attempts that
    changed something take part: an attempt that changed nothing agrees with nobody.
    """
    changed = sorted(n for n, (files, _) in changes.items() if files)
    pairs = []
    for i, a in enumerate(changed):
        for b in changed[i + 1 :]:
            files = jaccard(changes[a][0], changes[b][0])
            lines = jaccard(changes[a][1], changes[b][1])
            pairs.append((a, b, files, lines))
    means: dict[int, Agreement] = {}
    for n in changes:
        mine = [(f, ln) for a, b, f, ln in pairs if n in (a, b)]
        if mine:
            means[n] = Agreement(
                files=round(sum(f for f, _ in mine) / len(mine), 3),
                lines=round(sum(ln for _, ln in mine) / len(mine), 3),
            )
        else:
            means[n] = Agreement()
    return means, pairs


# --- the pick ------------------------------------------------------------------------------------


def _verdict_rank(f: AttemptFigures) -> int:
    return 1 if f.verdict == Verdict.WARN else 0


def change_text(f: AttemptFigures) -> str:
    """'+9 -3 in 2 files', or 'no change'."""
    if not f.files_changed and not f.size:
        return "no change"
    files = f"{f.files_changed} file{'s' if f.files_changed != 1 else ''}"
    return f"+{f.insertions} -{f.deletions} in {files}"


RuleKey = Callable[[AttemptFigures], tuple[Any, ...]]

RULE_KEYS: dict[str, RuleKey] = {
    "smallest": lambda f: (_verdict_rank(f), f.size, f.files_changed, -f.score, f.attempt),
    "first": lambda f: (f.completed_at or "~", f.attempt),
    "fastest": lambda f: (
        f.duration_seconds if f.duration_seconds is not None else float("inf"),
        _verdict_rank(f),
        f.attempt,
    ),
    "agreement": lambda f: (
        -(f.agreement.lines if f.agreement.lines is not None else -1.0),
        -(f.agreement.files if f.agreement.files is not None else -1.0),
        _verdict_rank(f),
        f.size,
        f.attempt,
    ),
}
assert set(RULE_KEYS) == set(PICK_RULES)

RULE_TEXT = {
    "smallest": "the smallest passing change",
    "first": "the first attempt to pass",
    "fastest": "the quickest attempt to pass",
    "agreement": "the passing change the other attempts agree with most",
}


def choose(figures: Sequence[AttemptFigures], rule: str) -> Pick:
    """The attempt ``rule`` picks among those that passed, with the reason; no pick when none passed."""
    if rule not in RULE_KEYS:
        raise ValueError(f"unknown pick rule {rule!r}; rules: {', '.join(PICK_RULES)}")
    passing = [f for f in figures if f.passed]
    if not passing:
        return Pick(attempt=None, rule=rule, reason=_nothing_passed(figures))
    winner = min(passing, key=RULE_KEYS[rule])
    return Pick(attempt=winner.attempt, lane_id=winner.lane_id, rule=rule, reason=_why(winner, passing, rule))


def closest(figures: Sequence[AttemptFigures]) -> AttemptFigures | None:
    """The attempt that came nearest to passing: most checks passed, then the smallest change."""
    ran = [f for f in figures if f.checks_total or f.size]
    if not ran:
        return None
    return min(ran, key=lambda f: (-f.checks_passed, f.checks_failed, f.size, f.attempt))


def _nothing_passed(figures: Sequence[AttemptFigures]) -> str:
    text = f"none of the {len(figures)} attempts succeeded"
    near = closest(figures)
    if near is not None and near.checks_passed:
        missing = f", evidence missing: {', '.join(near.evidence_missing)}" if near.evidence_missing else ""
        text += (
            f"; the closest is attempt {near.attempt} ({near.checks_passed} of {near.checks_total} "
            f"checks passed{missing}, {change_text(near)})"
        )
    return text


def _why(winner: AttemptFigures, passing: Sequence[AttemptFigures], rule: str) -> str:
    n = winner.attempt
    if len(passing) == 1:
        return f"attempt {n} is the only attempt that passed every check"
    others = [f for f in passing if f.attempt != n]
    names = ", ".join(str(f.attempt) for f in sorted(passing, key=lambda f: f.attempt))
    head = f"attempts {names} passed every check; {RULE_TEXT[rule]} is attempt {n}"
    if rule == "smallest":
        shown = "; ".join(f"attempt {f.attempt}: {change_text(f)}" for f in others)
        return f"{head} ({change_text(winner)}; {shown})"
    if rule == "first":
        shown = "; ".join(f"attempt {f.attempt} at {f.completed_at}" for f in others)
        return f"{head} (finished at {winner.completed_at}; {shown})"
    if rule == "fastest":
        shown = "; ".join(f"attempt {f.attempt}: {_seconds(f)}" for f in others)
        return f"{head} ({_seconds(winner)}; {shown})"
    shown = "; ".join(f"attempt {f.attempt}: {_agrees(f)}" for f in others)
    return f"{head} ({_agrees(winner)}; {shown})"


def _seconds(f: AttemptFigures) -> str:
    return f"{f.duration_seconds:.1f}s" if f.duration_seconds is not None else "no duration"


def _agrees(f: AttemptFigures) -> str:
    if f.agreement.lines is None:
        return "agrees with no other change"
    return f"agreement {f.agreement.lines:.2f} of lines, {f.agreement.files:.2f} of files"
