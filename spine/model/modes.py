"""Modes: what kind of work a lane does, what evidence makes it count, and how an objective is classified.

A mode (PIPELINE, TOOLSMITH, SERVICE, CONTRACT, GOVERNANCE, CONTACT) names a craft. Its evidence
pattern is data: a list of ``EvidenceRule`` that are checked against the facts a lane leaves behind
(files it changed, files in its worktree, its artifacts, its checks). Defaults ship here; a team
replaces them per mode under ``modes:`` in ``.spine.yaml``. See docs/operators.md.
"""

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from spine.base.files import glob_regex, inside, read_inside
from spine.model.values import empty_keys_in_schema, without_empty_keys


class Mode(StrEnum):
    """The six modes, in registry order (ties in the classifier go to the earlier one)."""

    PIPELINE = "PIPELINE"
    TOOLSMITH = "TOOLSMITH"
    SERVICE = "SERVICE"
    CONTRACT = "CONTRACT"
    GOVERNANCE = "GOVERNANCE"
    CONTACT = "CONTACT"


def parse_mode(value: object) -> object:
    """Accept mode names in any case ('pipeline', 'Pipeline'), with spaces around them."""
    if isinstance(value, Mode) or not isinstance(value, str):
        return value
    try:
        return Mode(value.strip().upper())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a mode; use one of {', '.join(m.value for m in Mode)} (any case)"
        ) from None


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


ModeName = Annotated[
    Mode,
    BeforeValidator(parse_mode),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*(" + "|".join(_any_case(m.value) for m in Mode) + r")\s*$",
            "description": "a mode, in any case: " + ", ".join(m.value for m in Mode),
        }
    ),
]


def _listify(value: object) -> object:
    return [value] if isinstance(value, str) else value


StrList = Annotated[
    list[str],
    BeforeValidator(_listify),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class ConfigModel(BaseModel):
    """Base of the mode and operator config models: unknown keys are errors, frozen once loaded.

    Strict, as the rest of the configuration (spine.model.config): a value of the wrong type is an
    error, never converted.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, json_schema_extra=empty_keys_in_schema
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return without_empty_keys(cls, data)


class EvidenceRule(ConfigModel):
    """One piece of evidence a mode (or an operator) asks for, checkable from the lane's facts.

    Kinds: ``artifact`` (kept artifacts), ``file`` (files in the worktree, or changed by the lane),
    ``manifest`` (a JSON file carrying given keys), ``check`` (a passing check or acceptance check).
    """

    id: str = Field(min_length=1, description="short name shown in results, e.g. 'manifest'")
    kind: Literal["artifact", "file", "manifest", "check"] = Field(description="what is inspected")
    description: str = Field(default="", description="what must exist, in words; shown when it is missing")
    glob: StrList = Field(
        default_factory=list,
        description="path globs (case-insensitive; a pattern without '/' matches the file name at any depth)",
    )
    changed: bool = Field(
        default=False,
        description="file/manifest: only files the lane added or changed (or its artifacts) count",
    )
    min_count: int = Field(default=1, ge=1, description="how many matching items are needed")
    min_size: int = Field(default=1, ge=0, description="artifact/file/manifest: minimum size in bytes")
    keys: StrList = Field(
        default_factory=list,
        description="manifest: keys that must appear somewhere in the JSON; 'a|b' means either",
    )
    name: StrList = Field(default_factory=list, description="check: globs on the check's name")
    command: str | None = Field(default=None, description="check: regular expression searched in its command")
    required: bool = Field(default=True, description="false: missing evidence is a warning, not a failure")

    @model_validator(mode="after")
    def _complete(self) -> "EvidenceRule":
        if self.kind in ("file", "manifest") and not self.glob:
            raise ValueError(f"evidence rule {self.id!r} of kind {self.kind} needs 'glob'")
        if self.kind == "manifest" and not self.keys:
            raise ValueError(f"evidence rule {self.id!r} of kind manifest needs 'keys', e.g. [count, sha256]")
        if self.kind == "check" and not (self.name or self.command):
            raise ValueError(f"evidence rule {self.id!r} of kind check needs 'name' or 'command'")
        if self.command is not None:
            try:
                re.compile(self.command)
            except re.error as exc:
                raise ValueError(
                    f"evidence rule {self.id!r}: 'command' is not a regular expression: {exc}"
                ) from exc
        return self

    def what(self) -> str:
        return self.description or f"{self.kind} evidence {self.id!r}"


class ModeSettings(ConfigModel):
    """Overrides for one mode under ``modes:``; an omitted key keeps the shipped default."""

    evidence: list[EvidenceRule] | None = Field(
        default=None, description="the mode's evidence pattern (replaces the default list)"
    )
    keywords: list[str] | None = Field(
        default=None, description="classifier keywords for this mode (replace the default list)"
    )
    stop_rule: str | None = Field(
        default=None, description="next pointer written when a lane in this mode is stopped by a stop rule"
    )


_TEST_GLOBS = [
    "test_*",
    "*_test.*",
    "*.test.*",
    "*_spec.*",
    "*.spec.*",
    "tests/**",
    "test/**",
    "spec/**",
    "**/tests/**",
    "**/test/**",
]

DEFAULT_EVIDENCE: dict[Mode, list[EvidenceRule]] = {
    Mode.PIPELINE: [
        EvidenceRule(
            id="artifact",
            kind="artifact",
            description="at least one non-empty artifact (declare it with outputs: or --artifact)",
        ),
        EvidenceRule(
            id="manifest",
            kind="manifest",
            glob=["*manifest*.json"],
            keys=["count|counts|rows|records|items|total", "sha256|hash|hashes|digest|checksum"],
            description="a JSON manifest (*manifest*.json) with counts and hashes",
        ),
    ],
    Mode.TOOLSMITH: [
        EvidenceRule(
            id="help",
            kind="check",
            command=r"(^|\s)(--help|-h|help|usage)(\s|$)",
            description="a passing check that runs the interface's --help (or usage)",
        ),
        EvidenceRule(
            id="smoke",
            kind="check",
            name=["*smoke*"],
            command=r"\bsmoke\b",
            description="a passing smoke-run check (named or running smoke; expect_exit pins its exit codes)",
        ),
    ],
    Mode.SERVICE: [
        EvidenceRule(
            id="health",
            kind="check",
            name=["*health*"],
            command=r"health",
            description="a passing health check (a check named or running *health*)",
        ),
    ],
    Mode.CONTRACT: [
        EvidenceRule(
            id="repro",
            kind="file",
            glob=["*repro*"],
            changed=True,
            description="a minimal repro (a file named *repro*) added or changed by the lane",
        ),
        EvidenceRule(
            id="regression-test",
            kind="file",
            glob=_TEST_GLOBS,
            changed=True,
            description="an added or changed regression test",
        ),
    ],
    Mode.GOVERNANCE: [
        EvidenceRule(
            id="decision",
            kind="file",
            glob=["**/adr/**", "**/decisions/**", "*decision*", "*adr-*"],
            changed=True,
            description="a decision artifact (an ADR or decision record) added or changed by the lane",
        ),
    ],
    Mode.CONTACT: [
        EvidenceRule(
            id="touches",
            kind="file",
            glob=["*touch*", "**/outreach/**", "*contact*log*", "*follow*up*"],
            changed=True,
            description="a record of touches (e.g. touches.jsonl) added or changed by the lane",
        ),
    ],
}

DEFAULT_KEYWORDS: dict[Mode, list[str]] = {
    Mode.SERVICE: [
        "deploy", "domain", "hosting", "apache", "systemd", "timer", "bot", "stability", "vercel",
        "github pages", "health", "uptime", "restart", "monitor", "cron", "service",
    ],
    Mode.CONTRACT: [
        "api", "integration", "config", "env", "keyring", "abi", "postgres", "promptflow",
        "bug", "fix", "regression", "repro", "crash", "flaky",
    ],
    Mode.TOOLSMITH: [
        "cli", "tool", "script", "framework", "template", "schema", "setup", "playbook", "scaffold",
        "command",
    ],
    Mode.PIPELINE: [
        "etl", "ingest", "normalize", "backfill", "export", "jsonl", "mdx", "csv", "pipeline",
        "dataset", "transform", "import",
    ],
    Mode.GOVERNANCE: [
        "strategy", "review", "roadmap", "triage", "prioritize", "control tower", "standards", "wip",
        "decision", "decide", "adr", "policy",
    ],
    Mode.CONTACT: [
        "outreach", "lead", "linkedin", "crm", "follow-up", "qualification", "email",
        "stakeholder", "customer",
    ],
}  # fmt: skip

DEFAULT_STOP_RULES: dict[Mode, str] = {
    Mode.PIPELINE: "outputs could not be verified in the timebox: capture a minimal repro (CONTRACT) or add a gate (TOOLSMITH)",
    Mode.TOOLSMITH: "no adoption path yet: write the usage and one consumer example, or pause the tool",
    Mode.SERVICE: "changes were unbounded: bound the live change and add a health check first",
    Mode.CONTRACT: "no narrowing: force a minimal repro, then test one axis at a time",
    Mode.GOVERNANCE: "plans without constraints: write one decision that changes what gets selected next",
    Mode.CONTACT: "drafting without sending: send the message, then schedule the follow-up",
}


@dataclass(frozen=True)
class ModeProfile:
    """A mode as configured: its evidence pattern, classifier keywords and stop rule."""

    mode: Mode
    evidence: tuple[EvidenceRule, ...]
    keywords: tuple[str, ...]
    stop_rule: str


def mode_profile(mode: Mode, overrides: Mapping[Mode, ModeSettings] | None = None) -> ModeProfile:
    """The shipped defaults for ``mode`` with the config's ``modes:`` overrides applied."""
    settings = (overrides or {}).get(mode) or ModeSettings()
    return ModeProfile(
        mode=mode,
        evidence=tuple(settings.evidence if settings.evidence is not None else DEFAULT_EVIDENCE[mode]),
        keywords=tuple(settings.keywords if settings.keywords is not None else DEFAULT_KEYWORDS[mode]),
        stop_rule=settings.stop_rule or DEFAULT_STOP_RULES[mode],
    )


# --- classifier ----------------------------------------------------------------------------------

# Common English endings, so that 'deploy' matches 'deployment' and 'normalize' matches 'normalized',
# while 'bot' does not match 'bottom'.
_SUFFIXES = r"(?:s|es|d|ed|ing|ment|ments|er|ers|ion|ions)?"


@lru_cache(maxsize=512)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s-]+", keyword.strip().lower()) if w]
    return re.compile(r"(?<![a-z0-9])" + r"[\s-]+".join(words) + _SUFFIXES + r"(?![a-z0-9])")


@dataclass(frozen=True)
class Classification:
    """The classifier's answer: a mode (or None) and why."""

    mode: Mode | None
    reason: str
    matches: dict[Mode, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value if self.mode else None,
            "reason": self.reason,
            "matches": {m.value: words for m, words in self.matches.items()},
        }


def classify(
    objective: str,
    overrides: Mapping[Mode, ModeSettings] | None = None,
    among: Sequence[Mode] | None = None,
) -> Classification:
    """Pick the mode whose keywords occur most often in ``objective`` (restricted to ``among``).

    Ties go to the mode listed first (``among``'s order, else the registry order). No match gives
    ``mode=None``: the caller decides whether that is an error or falls back to something explicit.
    """
    text = objective.lower()
    candidates = list(among) if among else list(Mode)
    matches: dict[Mode, list[str]] = {}
    for mode in candidates:
        found = [kw for kw in mode_profile(mode, overrides).keywords if _keyword_pattern(kw).search(text)]
        if found:
            matches[mode] = found
    if not matches:
        scope = f" of {', '.join(m.value for m in candidates)}" if among else ""
        return Classification(None, f"no keyword of any mode{scope} occurs in the objective", {})
    best = max(len(words) for words in matches.values())
    leaders = [m for m in candidates if len(matches.get(m, [])) == best]
    chosen = leaders[0]
    reason = f"{chosen.value}: matched {', '.join(repr(w) for w in matches[chosen])}"
    if len(leaders) > 1:
        others = ", ".join(m.value for m in leaders[1:])
        reason += f" (tied with {others}; {chosen.value} comes first)"
    return Classification(chosen, reason, matches)


# --- evidence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactFact:
    path: str
    size: int
    stored_at: str | None = None


@dataclass(frozen=True)
class CheckFact:
    name: str
    command: str
    passed: bool


@dataclass
class EvidenceFacts:
    """What a lane left behind, as far as evidence rules can see it."""

    root: Path | None
    changed: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    artifacts: list[ArtifactFact] = field(default_factory=list)
    checks: list[CheckFact] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """The outcome of one evidence rule."""

    rule: EvidenceRule
    found: bool
    detail: str
    paths: tuple[str, ...] = ()


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """An evidence glob: a pattern without '/' matches a file name at any depth; case does not matter."""
    pattern = pattern.strip().lstrip("/")
    if "/" not in pattern:
        pattern = "**/" + pattern
    return glob_regex(pattern, re.IGNORECASE)


def glob_match(path: str, patterns: Iterable[str]) -> bool:
    """True when ``path`` (relative, '/'-separated) matches any pattern; see ``EvidenceRule.glob``."""
    return any(_glob_regex(p).match(path) for p in patterns)


def evaluate(rules: Iterable[EvidenceRule], facts: EvidenceFacts) -> list[Finding]:
    """Check every rule against ``facts``."""
    return [_evaluate_one(rule, facts) for rule in rules]


def _size(facts: EvidenceFacts, rel: str) -> int:
    for art in facts.artifacts:
        if art.path == rel:
            return art.size
    if facts.root is None:
        return 0
    path = inside(facts.root, rel)  # never through a link: it could lead outside the worktree
    if path is None:
        return -1  # listed but gone (deleted by the lane), or a link
    try:
        return os.lstat(path).st_size
    except OSError:
        return -1


def _candidates(rule: EvidenceRule, facts: EvidenceFacts) -> list[str]:
    pool = facts.changed if rule.changed else facts.files
    paths = dict.fromkeys([*pool, *(a.path for a in facts.artifacts)])
    return [p for p in paths if glob_match(p, rule.glob)]


def _evaluate_one(rule: EvidenceRule, facts: EvidenceFacts) -> Finding:
    need = rule.min_count
    if rule.kind == "artifact":
        pool = [a for a in facts.artifacts if not rule.glob or glob_match(a.path, rule.glob)]
        good = [a.path for a in pool if a.size >= rule.min_size]
        if len(good) >= need:
            return Finding(rule, True, f"{len(good)} artifact(s): {_few(good)}", tuple(good))
        if pool:
            return Finding(rule, False, f"artifact(s) {_few([a.path for a in pool])} {_too_small(rule)}")
        where = f" matching {_few(rule.glob)}" if rule.glob else ""
        return Finding(rule, False, f"no artifact was kept{where}")
    if rule.kind == "file":
        matched = _candidates(rule, facts)
        good = [p for p in matched if _size(facts, p) >= rule.min_size]
        scope = "changed by the lane" if rule.changed else "in the worktree"
        if len(good) >= need:
            return Finding(rule, True, f"{_few(good)} ({scope})", tuple(good))
        if matched:
            return Finding(rule, False, f"{_few(matched)} {scope} but {_too_small(rule)} or deleted")
        return Finding(rule, False, f"no file matching {_few(rule.glob)} {scope}")
    if rule.kind == "manifest":
        problems: list[str] = []
        good = []
        keys_seen: list[str] = []
        for rel in _candidates(rule, facts):
            problem, seen = _manifest_problem(facts, rel, rule)
            if problem is None:
                good.append(rel)
                keys_seen = keys_seen or seen
            else:
                problems.append(f"{rel}: {problem}")
        if len(good) >= need:
            return Finding(rule, True, f"{_few(good)} with keys {', '.join(keys_seen)}", tuple(good))
        if problems:
            return Finding(rule, False, "; ".join(problems[:3]))
        return Finding(rule, False, f"no manifest matching {_few(rule.glob)}")
    # check
    pattern = re.compile(rule.command) if rule.command else None
    matching = [
        c
        for c in facts.checks
        if (rule.name and glob_match(c.name, rule.name))
        or (pattern is not None and pattern.search(c.command))
    ]
    passed = [c.name for c in matching if c.passed]
    if len(passed) >= need:
        return Finding(rule, True, f"check(s) passed: {_few(passed)}", tuple(passed))
    if matching:
        return Finding(rule, False, f"check(s) {_few([c.name for c in matching])} did not pass")
    return Finding(rule, False, "no such check ran")


def _manifest_problem(facts: EvidenceFacts, rel: str, rule: EvidenceRule) -> tuple[str | None, list[str]]:
    """(why the manifest does not count, or None; the keys that satisfied the rule)."""
    stored = next((a.stored_at for a in facts.artifacts if a.path == rel and a.stored_at), None)
    raw: bytes | None = None
    if stored:
        try:
            raw = Path(stored).read_bytes()
        except OSError:
            raw = None
    elif facts.root is not None:
        raw = read_inside(facts.root, rel)
    if raw is None:
        return "cannot be read (missing, or a link)", []
    if len(raw) < rule.min_size:
        return _too_small(rule), []
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "cannot be read", []
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at line {exc.lineno})", []
    keys = _all_keys(data)
    seen: list[str] = []
    missing: list[str] = []
    for alternatives in rule.keys:
        hit = next((k for k in alternatives.split("|") if k.lower() in keys), None)
        if hit is None:
            missing.append(alternatives)
        else:
            seen.append(hit)
    if missing:
        return "no key " + " and no key ".join(repr(m) for m in missing), seen
    return None, seen


def _too_small(rule: EvidenceRule) -> str:
    return "empty" if rule.min_size <= 1 else f"smaller than {rule.min_size} bytes"


def _all_keys(data: Any, depth: int = 0) -> set[str]:
    keys: set[str] = set()
    if depth > 20:
        return keys
    if isinstance(data, dict):
        for key, value in data.items():
            keys.add(str(key).lower())
            keys |= _all_keys(value, depth + 1)
    elif isinstance(data, list):
        for item in data[:1000]:
            keys |= _all_keys(item, depth + 1)
    return keys


def _few(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
