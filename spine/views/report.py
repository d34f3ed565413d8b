"""A run as one self-contained HTML file: ``spine report RUN`` (and a gate verdict, ``spine gate --report``).

``gather`` reads what the run left (run.json, events.jsonl, every lane's result, debug packet and
earlier attempts) and asks git for each lane's changes (``Repository.numstat`` and a diff cut at a
size limit); it writes nothing. ``render_run`` turns that into a page: a timeline of the lanes'
steps, a table of lanes with their status, then each lane in full: summary, checks with their output
tails, invariants, diff stat and the diff (collapsed), artifacts with sizes and hashes, the debug
packet, the promotion and attempts side by side. Every text goes through ``esc`` (secrets masked,
HTML escaped); the page loads nothing (``spine.views.html``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from spine.base.errors import SpineError
from spine.base.ids import format_duration, now_iso
from spine.model.result import LaneResult
from spine.model.state import STEPS, LaneState, RunState
from spine.views.html import badge, esc, page
from spine.views.status import load_result_if_any, parse_time, run_view
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore

if TYPE_CHECKING:
    from spine.landing.gate import GateVerdict

LANE_DIFF_BYTES = 256 << 10
"""The most of one lane's diff a report shows; the rest is named, with the command that shows it."""
REPORT_DIFF_BYTES = 4 << 20
"""The most diff text one report holds across all its lanes."""
MAX_EVENTS_BYTES = 32 << 20
"""How much of events.jsonl is read for the timeline."""
MAX_NUMSTAT_ROWS = 200


@dataclass
class StepSpan:
    """One step of one lane on the timeline: when it started and ended (None while it runs)."""

    step: str
    start: float
    end: float | None = None
    outcome: str = "running"  # done, halted, interrupted, running


@dataclass
class Attempt:
    """One attempt of a lane: its number and its result (an earlier one kept by ``--retry``, or the current)."""

    label: str
    result: LaneResult


@dataclass
class LaneReport:
    lane_id: str
    state: LaneState
    view: dict[str, Any]
    result: LaneResult | None
    spans: list[StepSpan] = field(default_factory=list)
    numstat: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    diff: str | None = None
    diff_cut: bool = False
    diff_note: str | None = None
    debug: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class RunReport:
    run: RunState
    view: dict[str, Any]
    lanes: list[LaneReport]
    start: float
    end: float
    generated_at: str


def gather(
    ctx: ExecutionContext,
    run_id: str,
    *,
    lane_diff_bytes: int = LANE_DIFF_BYTES,
    report_diff_bytes: int = REPORT_DIFF_BYTES,
) -> RunReport:
    """Everything the report of run ``run_id`` shows, read from its state and git; writes nothing."""
    run = RunStore(ctx.state, run_id).load()
    view = run_view(ctx, run)
    views = {entry["id"]: entry for entry in view["lanes"]}
    spans = _spans(ctx, run_id)
    budget = report_diff_bytes
    lanes: list[LaneReport] = []
    for lane_id, lane in run.lanes.items():
        result = load_result_if_any(ctx, run_id, lane_id) if lane.complete else None
        report = LaneReport(lane_id, lane, views[lane_id], result, spans.get(lane_id, []))
        if result is not None and result.head_sha and result.head_sha != result.base_sha:
            budget -= _changes(ctx, report, result, min(lane_diff_bytes, max(0, budget)))
        report.debug = _debug_packet(ctx, run_id, lane_id, result)
        report.attempts = _attempts(ctx, run_id, lane_id, result)
        lanes.append(report)
    times = [s.start for spans_ in spans.values() for s in spans_]
    times += [s.end for spans_ in spans.values() for s in spans_ if s.end is not None]
    created = parse_time(run.created_at)
    start = min([*times, *([created.timestamp()] if created else [])], default=0.0)
    now = datetime.now(UTC).timestamp()
    # A run being driven goes on until now; any other ends with its last recorded event.
    end = now if view["driven"] else max(times, default=start)
    return RunReport(run, view, lanes, start, max(end, start + 0.001), now_iso())


def _spans(ctx: ExecutionContext, run_id: str) -> dict[str, list[StepSpan]]:
    """Each lane's steps from the run's journal: step-started opens one, done/halted/interrupted closes it."""
    path = ctx.state.events_file(run_id)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(MAX_EVENTS_BYTES)
    except OSError:
        return {}
    lanes: dict[str, list[StepSpan]] = {}
    open_steps: dict[str, StepSpan] = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        lane_id, step, kind = event.get("lane"), event.get("step"), event.get("event")
        when = parse_time(event.get("at"))
        if not isinstance(lane_id, str) or not isinstance(step, str) or when is None:
            continue
        at = when.timestamp()
        if kind == "step-started":
            previous = open_steps.pop(lane_id, None)
            if previous is not None:  # its driver died before recording the end
                previous.end, previous.outcome = at, "interrupted"
            span = StepSpan(step, at)
            if step in STEPS:  # the scheduler's pseudo-steps (block, skip) take no time
                lanes.setdefault(lane_id, []).append(span)
            open_steps[lane_id] = span
        elif kind in ("step-done", "step-halted", "step-interrupted"):
            span_open = open_steps.pop(lane_id, None)
            if span_open is not None:
                span_open.end = at
                span_open.outcome = {"step-done": "done", "step-halted": "halted"}.get(kind, "interrupted")
    return lanes


def _changes(ctx: ExecutionContext, report: LaneReport, result: LaneResult, limit: int) -> int:
    """Fill in the lane's changed files and diff (at most ``limit`` bytes); return the bytes used."""
    base, head = result.base_sha, result.head_sha or result.base_sha
    try:
        report.numstat = ctx.git.numstat(base, head)
        if limit <= 0:
            report.diff_note = "left out: this report holds no more diff text"
            return 0
        report.diff, report.diff_cut = ctx.git.diff(base, head, max_bytes=limit)
    except (SpineError, OSError) as exc:  # the commits may be gone (gc'd, or another clone)
        report.diff_note = f"not available: {getattr(exc, 'message', exc)}"
        return 0
    return len(report.diff.encode("utf-8", "replace"))


def _debug_packet(
    ctx: ExecutionContext, run_id: str, lane_id: str, result: LaneResult | None
) -> dict[str, Any] | None:
    path = ctx.state.debug_file(run_id, lane_id)
    if result is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _attempts(ctx: ExecutionContext, run_id: str, lane_id: str, result: LaneResult | None) -> list[Attempt]:
    """Earlier tries kept by ``spine resume --retry``, oldest first, then the current one."""
    folder = ctx.state.attempts_dir(run_id, lane_id)
    found: list[Attempt] = []
    if folder.is_dir():
        numbers = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
        for number in numbers:
            path = ctx.state.attempt_result_file(run_id, lane_id, number)
            try:
                found.append(
                    Attempt(f"try {number}", LaneResult.model_validate_json(path.read_text(encoding="utf-8")))
                )
            except (OSError, ValueError):
                continue
    if found and result is not None:
        found.append(Attempt(f"try {len(found) + 1} (current)", result))
    return found


# --- rendering ------------------------------------------------------------------------------------

_FILTER_SCRIPT = """
document.querySelectorAll('button[data-filter]').forEach(function (button) {
  button.addEventListener('click', function () {
    var want = document.body.dataset.only === button.dataset.filter ? '' : button.dataset.filter;
    document.body.dataset.only = want;
    document.querySelectorAll('[data-lane][data-status]').forEach(function (el) {
      el.hidden = want !== '' && el.dataset.status !== want;
    });
  });
});
"""


def render_run(report: RunReport) -> str:
    """The report of a run as one HTML document."""
    run, view = report.run, report.view
    created = esc(run.created_at)
    exit_code = view.get("exitCode")
    sub = (
        f"{esc(run.kind)} · {len(run.lanes)} lane{'s' if len(run.lanes) != 1 else ''} · "
        f"{badge(view['state'])}"
        + (f" · exit code {esc(exit_code)}" if exit_code is not None else "")
        + f" · created {created} · base <code>{esc(run.base_ref)}</code> @ <code>{esc(run.base_sha[:12])}</code>"
        + f" → target <code>{esc(run.target_ref)}</code> @ <code>{esc(run.target_sha[:12])}</code>"
    )
    counts = "".join(
        f'<li><button type="button" data-filter="{esc(status)}" title="show only {esc(status)} lanes">'
        f'<span class="badge s-{esc(status)}">{n} {esc(status)}</span></button></li>'
        for status, n in view["counts"].items()
    )
    body = [
        f'<header><h1>spine run <code>{esc(run.run_id)}</code></h1><p class="sub">{sub}</p>'
        f'<ul class="counts" id="counts">{counts}</ul>'
        f'<p class="muted">Report made {esc(report.generated_at)}. Click a count to show only those lanes.</p></header>',
        _timeline(report),
        _lane_table(report),
        *(_lane_section(lane) for lane in report.lanes),
    ]
    return page(f"spine run {run.run_id}", "\n".join(body), script=_FILTER_SCRIPT)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _timeline(report: RunReport) -> str:
    span = report.end - report.start
    rows = []
    for lane in report.lanes:
        bars = []
        for s in lane.spans:
            end = s.end if s.end is not None else report.end
            left = 100 * (s.start - report.start) / span
            width = max(0.25, 100 * (end - s.start) / span)
            took = format_duration(max(0.0, end - s.start))
            klass = f"span step-{esc(s.step)}" + (" halted" if s.outcome == "halted" else "")
            klass += " open" if s.end is None else ""
            title = f"{s.step}: {took} ({_clock(s.start)} to {_clock(end)}; {s.outcome})"
            bars.append(
                f'<div class="{klass}" style="left:{left:.3f}%;width:{min(width, 100 - left):.3f}%" '
                f'title="{esc(title)}"></div>'
            )
        ends = lane.view.get("durationSeconds")
        rows.append(
            f'<a class="mono" href="#lane-{esc(lane.lane_id)}">{esc(lane.lane_id)}</a>'
            f'<div class="track" data-lane-track="{esc(lane.lane_id)}">{"".join(bars)}</div>'
            f"<span>{badge(lane.view['status'])}"
            + (f' <span class="muted">{esc(format_duration(ends))}</span>' if ends is not None else "")
            + "</span>"
        )
    legend = "".join(
        f'<span><i class="step-{step}"></i>{esc(step.replace("_", " "))}</span>' for step in STEPS
    )
    axis = (
        f'<span></span><div class="axis"><span>{_clock(report.start)}</span>'
        f"<span>{esc(format_duration(span))}</span><span>{_clock(report.end)}</span></div><span></span>"
    )
    return (
        f'<section id="timeline"><h2>Timeline</h2><div class="legend">{legend}</div>'
        f'<div class="timeline">{"".join(rows)}{axis}</div></section>'
    )


def _lane_table(report: RunReport) -> str:
    rows = []
    for lane in report.lanes:
        view = lane.view
        took = view.get("durationSeconds")
        rows.append(
            f'<tr data-lane="{esc(lane.lane_id)}" data-status="{esc(view["status"])}">'
            f'<td><a class="mono" href="#lane-{esc(lane.lane_id)}">{esc(lane.lane_id)}</a></td>'
            f"<td>{badge(view['status'])}</td>"
            f'<td class="num">{esc(format_duration(took)) if took is not None else ""}</td>'
            f"<td>{esc(view['summary'])}</td><td>{esc(view['nextAction'])}</td></tr>"
        )
    return (
        '<section id="lanes"><h2>Lanes</h2><table class="lanes"><thead><tr><th>lane</th><th>status</th>'
        "<th>took</th><th>summary</th><th>next</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _facts(rows: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escaped by the caller)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows if v) + "</dl>"


def _pre(lines: list[str], klass: str = "") -> str:
    return f'<pre class="{klass}">' + esc("\n".join(lines)) + "</pre>"


def _lane_section(lane: LaneReport) -> str:
    view, result = lane.view, lane.result
    parts = [
        f'<section class="lane" id="lane-{esc(lane.lane_id)}" data-lane="{esc(lane.lane_id)}" '
        f'data-status="{esc(view["status"])}">',
        f"<h2>lane <code>{esc(lane.lane_id)}</code> {badge(view['status'])}</h2>",
        f"<p>{esc(view['summary'])}</p>",
    ]
    spec = lane.state.spec
    command = spec.command if isinstance(spec.command, str) else " ".join(spec.command)
    rows = [
        ("objective", esc(spec.objective)),
        ("next", esc(view["nextAction"])),
        ("command", f"<code>{esc(command)}</code>"),
        ("backend", esc(lane.state.backend)),
        ("branch", f"<code>{esc(lane.state.branch)}</code>" if lane.state.branch else ""),
        ("needs", esc(", ".join(spec.needs))),
        ("started", esc(view.get("startedAt") or "")),
        ("completed", esc(view.get("completedAt") or "")),
    ]
    if view.get("step") and not lane.state.complete:
        rows.append(("step", esc(view["step"])))
    if result is not None:
        rows += [
            ("base", f"<code>{esc(result.base_ref)}</code> @ <code>{esc(result.base_sha[:12])}</code>"),
            ("head", f"<code>{esc(result.head_sha[:12])}</code>" if result.head_sha else ""),
            ("exit code", esc(result.exit_code) if result.exit_code is not None else ""),
            ("timed out", esc(result.timeout_kind or "yes") if result.timed_out else ""),
            (
                "command took",
                esc(format_duration(result.duration_seconds)) if result.duration_seconds else "",
            ),
            ("failure kind", esc(result.failure_kind or "")),
            ("error", esc(result.error or "")),
            ("mode", esc(f"{result.mode} ({result.mode_source})") if result.mode else ""),
            ("operator", esc(result.operator or "")),
            ("verdict", badge(result.verdict.value) if result.verdict else ""),
            ("log", f"<code>{esc(result.log_path)}</code>"),
        ]
    parts.append(_facts(rows))
    if result is not None:
        parts += [
            _checks(result),
            _output(result),
            _invariants(result),
            _changes_html(lane, result),
            _artifacts(result),
            _debug_html(lane.debug),
            _promotion(result),
        ]
    parts.append(_attempts_html(lane, result))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _checks(result: LaneResult) -> str:
    if not result.validation and not result.acceptance and not result.evidence:
        return '<h3>Checks</h3><p class="muted">no checks configured</p>'
    rows = []
    for check in result.validation:
        took = format_duration(check.duration_seconds) if check.duration_seconds is not None else ""
        tail = (
            f"<details><summary>last {len(check.output_tail)} lines of output</summary>{_pre(check.output_tail)}</details>"
            if check.output_tail
            else ""
        )
        rows.append(
            f'<tr data-check="{esc(check.name)}"><td>{esc(check.name)}</td><td>{badge(check.status.value)}</td>'
            f'<td class="num">{esc(took)}</td><td><code>{esc(check.command)}</code></td>'
            f"<td>{esc(check.summary)}{tail}</td></tr>"
        )
    for accepted in result.acceptance:
        rows.append(
            f"<tr><td>accept {esc(accepted.name)}</td><td>{badge(accepted.verdict.value)}</td><td></td>"
            f"<td><code>{esc(accepted.command)}</code></td><td>{esc(accepted.summary)}</td></tr>"
        )
    for item in result.evidence:
        state = "found" if item.found else ("MISSING" if item.required else "missing (optional)")
        rows.append(
            f"<tr><td>evidence {esc(item.id)}</td><td>{badge('passed' if item.found else 'failed')}</td><td></td>"
            f"<td>{esc(item.kind)}</td><td>{esc(state)}: {esc(item.detail)}</td></tr>"
        )
    return (
        "<h3>Checks</h3><table><thead><tr><th>check</th><th>status</th><th>took</th><th>command</th>"
        "<th>summary</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _output(result: LaneResult) -> str:
    if not result.output_tail:
        return ""
    return f"<h3>Command output (last {len(result.output_tail)} lines)</h3>{_pre(result.output_tail)}"


def _invariants(result: LaneResult) -> str:
    if not result.invariants:
        return ""
    rows = "".join(
        f"<tr><td>{esc(i.name)}</td><td>{badge(i.status)}</td><td>{esc(i.detail)}</td></tr>"
        for i in result.invariants
    )
    return (
        "<h3>Invariants</h3><table><thead><tr><th>invariant</th><th>status</th><th>detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _diff_lines(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith(("diff --git", "index ", "--- ", "+++ ")):
            klass = "file"
        elif line.startswith("@@"):
            klass = "hunk"
        elif line.startswith("+"):
            klass = "add"
        elif line.startswith("-"):
            klass = "del"
        else:
            klass = ""
        out.append(
            f'<span class="{klass}">{esc(line) or " "}</span>'
            if klass
            else f"<span>{esc(line) or ' '}</span>"
        )
    return "".join(out)


def _changes_html(lane: LaneReport, result: LaneResult) -> str:
    parts = ["<h3>Changes</h3>"]
    stat = result.diff_stat
    if stat is not None:
        parts.append(
            f"<p>{stat.files_changed} file{'s' if stat.files_changed != 1 else ''} changed, "
            f'<span class="s-succeeded">+{stat.insertions}</span> '
            f'<span class="s-failed">-{stat.deletions}</span>'
            + (
                f" in {len(result.commits)} commit{'s' if len(result.commits) != 1 else ''}"
                if result.commits
                else ""
            )
            + "</p>"
        )
    elif not result.head_sha or result.head_sha == result.base_sha:
        parts.append('<p class="muted">no changes</p>')
    if result.commits:
        parts.append(
            '<ul class="plain">'
            + "".join(
                f"<li><code>{esc(c.sha[:12])}</code> {esc(c.subject)} "
                f'<span class="muted">({esc("by the command" if c.made_by == "command" else "by spine")})</span></li>'
                for c in result.commits
            )
            + "</ul>"
        )
    if lane.numstat:
        shown = lane.numstat[:MAX_NUMSTAT_ROWS]
        rows = "".join(
            f'<tr><td class="mono">{esc(path)}</td>'
            f'<td class="num s-succeeded">{"+" + str(a) if a is not None else "bin"}</td>'
            f'<td class="num s-failed">{"-" + str(d) if d is not None else ""}</td></tr>'
            for path, a, d in shown
        )
        more = (
            f'<p class="muted">and {len(lane.numstat) - len(shown)} more files</p>'
            if len(lane.numstat) > len(shown)
            else ""
        )
        parts.append(f"<table><tbody>{rows}</tbody></table>{more}")
    if lane.diff is not None:
        size = len(lane.diff.encode("utf-8", "replace"))
        cut = (
            f'<p class="muted">cut at {size >> 10} KiB; the whole diff: '
            f"<code>git diff {esc(result.base_sha[:12])}..{esc((result.head_sha or '')[:12])}</code></p>"
            if lane.diff_cut
            else ""
        )
        parts.append(
            f'<details class="diff"><summary>the diff ({max(1, size >> 10)} KiB)</summary>'
            f'<pre class="diff">{_diff_lines(lane.diff)}</pre>{cut}</details>'
        )
    elif lane.diff_note:
        parts.append(f'<p class="muted">diff {esc(lane.diff_note)}</p>')
    return "".join(parts)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1 << 20):.1f} MiB"


def _artifacts(result: LaneResult) -> str:
    if not result.artifacts:
        return ""
    rows = "".join(
        f'<tr><td class="mono">{esc(a.path)}</td><td class="num">{esc(_size(a.size))}</td>'
        f'<td class="mono">{esc(a.sha256)}</td><td class="mono">{esc(a.stored_at)}</td></tr>'
        for a in result.artifacts
    )
    return (
        "<h3>Artifacts</h3><table><thead><tr><th>path</th><th>size</th><th>sha256</th><th>kept at</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _debug_html(packet: dict[str, Any] | None) -> str:
    if not packet:
        return ""
    symptom = packet.get("symptom") if isinstance(packet.get("symptom"), dict) else {}
    repro = packet.get("repro") if isinstance(packet.get("repro"), dict) else {}
    assert isinstance(symptom, dict) and isinstance(repro, dict)
    parts = ["<h3>Debug packet</h3>", f"<p>{esc(symptom.get('summary', ''))}</p>"]
    hypotheses = [h for h in packet.get("hypotheses") or [] if isinstance(h, str)]
    if hypotheses:
        parts.append('<ul class="plain">' + "".join(f"<li>{esc(h)}</li>" for h in hypotheses) + "</ul>")
    rows = [
        ("reproduce", f"<code>{esc(repro.get('spine', ''))}</code>" if repro.get("spine") else ""),
        ("next", esc(packet.get("nextPointer", ""))),
    ]
    parts.append(_facts(rows))
    checks = symptom.get("checkOutput") if isinstance(symptom.get("checkOutput"), dict) else {}
    assert isinstance(checks, dict)
    for name, lines in checks.items():
        if isinstance(lines, list):
            parts.append(
                f"<details><summary>check {esc(name)}: last lines</summary>{_pre([str(x) for x in lines])}</details>"
            )
    return "".join(parts)


def _promotion(result: LaneResult) -> str:
    p = result.promotion
    if p is None:
        return ""
    rows = [
        ("landed on", f"<code>{esc(p.target)}</code> ({esc(p.strategy)})"),
        (
            "target moved",
            f"<code>{esc(p.target_before[:12])}</code> → <code>{esc(p.target_after[:12])}</code>",
        ),
        ("commits", esc(len(p.commits))),
        ("gate", esc(p.gate or "")),
        ("forced", "yes" if p.forced else ""),
        ("when", esc(p.promoted_at)),
    ]
    return "<h3>Promotion</h3>" + _facts(rows)


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, str | int | float | bool):
        return esc(value)
    return f"<code>{esc(json.dumps(value, sort_keys=True)[:600])}</code>"


def _side_by_side(labels: list[str], records: list[dict[str, Any]]) -> str:
    """A table with one column per record and one row per field any record has."""
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    head = "".join(f"<th>{esc(label)}</th>" for label in labels)
    rows = "".join(
        f"<tr><th>{esc(key)}</th>"
        + "".join(f"<td>{_cell(record.get(key))}</td>" for record in records)
        + "</tr>"
        for key in keys
    )
    return (
        f'<div class="side"><table><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    )


ATTEMPT_FIELDS = (
    "status",
    "failureKind",
    "summary",
    "exitCode",
    "durationSeconds",
    "headSha",
    "diffStat",
    "startedAt",
    "completedAt",
)


def _attempts_html(lane: LaneReport, result: LaneResult | None) -> str:
    """Side by side: the lane's earlier tries kept by ``spine resume --retry``, its attempts (best of
    N, with the pick marked) and the passes of its repair loop."""
    parts = []
    if len(lane.attempts) > 1:
        records = []
        for attempt in lane.attempts:
            data = attempt.result.model_dump(mode="json", by_alias=True)
            records.append({key: data.get(key) for key in ATTEMPT_FIELDS})
        parts.append(f"<h3>Retries</h3>{_side_by_side([a.label for a in lane.attempts], records)}")
    if result is None:
        return "".join(parts)
    if result.attempts:
        picked = result.pick.attempt if result.pick is not None else None
        labels = [
            f"attempt {f.attempt}" + (" (picked)" if f.attempt == picked else "") for f in result.attempts
        ]
        records = [
            {
                "lane": f.lane_id,
                "status": f.status.value,
                "checks passed": f"{f.checks_passed}/{f.checks_total}",
                "verdict": f.verdict.value if f.verdict is not None else None,
                "score": f.score,
                "files changed": f.files_changed,
                "lines": f"+{f.insertions} -{f.deletions}",
                "durationSeconds": f.duration_seconds,
                "iterations": f.iterations,
                "agreement (lines)": f.agreement.lines,
                "summary": f.summary,
            }
            for f in result.attempts
        ]
        why = f'<p class="sub">pick: {esc(result.pick.reason)}</p>' if result.pick is not None else ""
        parts.append(f"<h3>Attempts</h3>{why}{_side_by_side(labels, records)}")
    if result.iterations:
        labels = [f"iteration {i.iteration}" for i in result.iterations]
        records = [
            {
                "exitCode": i.exit_code,
                "durationSeconds": i.duration_seconds,
                "changed": i.changed,
                "files": ", ".join(i.files[:20]),
                "checks": ", ".join(f"{c.name}: {c.status.value}" for c in i.checks),
                "acceptance": ", ".join(f"{a.name}: {a.verdict.value}" for a in i.acceptance),
            }
            for i in result.iterations
        ]
        parts.append(f"<h3>Iterations</h3>{_side_by_side(labels, records)}")
    return "".join(parts)


# --- the gate ---------------------------------------------------------------------------------------


def render_gate(verdict: GateVerdict) -> str:
    """A gate verdict as one HTML document: the merge, each check with its output tail."""
    word = "passed" if verdict.passed else "failed"
    sub = (
        f"<code>{esc(verdict.rev)}</code> @ <code>{esc(verdict.rev_sha[:12])}</code> into "
        f"<code>{esc(verdict.into)}</code> @ <code>{esc(verdict.into_sha[:12])}</code> · decided {esc(verdict.decided_at)}"
        f" · took {esc(format_duration(verdict.duration_seconds))}"
        + (" · answered from the cache" if verdict.cached else "")
    )
    parts = [
        f'<header><h1>spine gate {badge(word)}</h1><p class="sub">{sub}</p></header>',
        _facts(
            [
                ("reason", esc(verdict.reason)),
                ("merged tree", f"<code>{esc(verdict.merged_tree)}</code>" if verdict.merged_tree else ""),
                ("merge commit", f"<code>{esc(verdict.merge_commit)}</code>" if verdict.merge_commit else ""),
            ]
        ),
    ]
    if verdict.conflicts:
        parts.append(
            f'<h2>Merge conflicts ({len(verdict.conflicts)})</h2><ul class="plain">'
            + "".join(f'<li class="mono">{esc(p)}</li>' for p in verdict.conflicts)
            + "</ul>"
        )
    elif not verdict.checks:
        parts.append('<p class="muted">No gate checks are configured; only the merge was tested.</p>')
    if verdict.checks:
        rows = []
        for c in verdict.checks:
            tail = (
                f"<details{' open' if c.status == 'failed' else ''}><summary>last {len(c.output_tail)} lines</summary>"
                f"{_pre(c.output_tail)}</details>"
                if c.output_tail
                else ""
            )
            rows.append(
                f'<tr data-check="{esc(c.name)}" data-status="{esc(c.status)}"><td>{esc(c.name)}</td>'
                f'<td>{badge(c.status)}</td><td class="num">{esc(format_duration(c.duration_seconds))}</td>'
                f"<td><code>{esc(c.command)}</code></td><td>{esc(c.summary)}{tail}"
                + (f'<div class="muted mono">{esc(c.log_path)}</div>' if c.log_path else "")
                + "</td></tr>"
            )
        parts.append(
            "<h2>Checks</h2><table><thead><tr><th>check</th><th>status</th><th>took</th><th>command</th>"
            "<th>summary</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    return page(f"spine gate {word}: {verdict.rev} into {verdict.into}", "\n".join(parts))
