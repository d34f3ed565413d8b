"""Renderings of a landing queue: a human table and JUnit XML with one test case per landing decision.

Both carry check output; callers pass them through ``spine.base.redact.redact_text`` before they
reach a terminal or a file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from spine.model.land import LandDecision, LandState

# XML 1.0 forbids most control characters; test output (colour codes, NULs) is full of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

_WORD = {"landed": "landed", "ejected": "EJECTED", "already-landed": "already", "skipped": "skipped"}


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", _ANSI.sub("", text))


def ordered(state: LandState) -> list[LandDecision]:
    """The decisions in queue order, then the lanes that were never queued."""
    position = {lane_id: i for i, lane_id in enumerate(state.queue)}
    return sorted(state.decisions, key=lambda d: position.get(d.lane_id, len(position)))


def counts(state: LandState) -> dict[str, int]:
    """How many lanes ended each way."""
    found = dict.fromkeys(_WORD, 0)
    for d in state.decisions:
        found[d.outcome] += 1
    return found


def gate_line(state: LandState) -> str:
    """The gate runs the queue needed, against one gate per lane of landing them one at a time."""
    tested = sum(1 for d in state.decisions if d.outcome == "landed" or d.kind == "check-failed")
    return (
        f"gate runs: {state.gate_runs} for {len(state.queue)} queued lanes "
        f"({state.gate_cached} more answered from the verdict cache; one lane at a time: {tested})"
    )


def headline(state: LandState) -> str:
    n = counts(state)
    parts = [f"{n['landed']} landed", f"{n['ejected']} ejected"]
    if n["already-landed"]:
        parts.append(f"{n['already-landed']} already landed")
    if n["skipped"]:
        parts.append(f"{n['skipped']} not queued")
    moved = (
        f"{state.target} {state.target_start[:12]} -> {state.target_end[:12]}"
        if state.target_end and state.target_end != state.target_start
        else f"{state.target} unchanged"
    )
    return f"land {state.run_id} into {state.target} ({state.strategy}): {', '.join(parts)}; {moved}"


def render_table(state: LandState) -> str:
    """The human report: a headline, one row per lane with its reason, the gate count, what next."""
    lines = [headline(state)]
    rows = ordered(state)
    width = max((len(d.lane_id) for d in rows), default=4)
    for d in rows:
        lines.append(f"  {d.lane_id.ljust(width)}  {_WORD[d.outcome]:<8}  {_reason(d)}")
        if d.kind == "check-failed":
            lines += [f"  {'':{width}}  {'':8}  | {line}" for line in d.output_tail[-5:]]
            if d.log_path:
                lines.append(f"  {'':{width}}  {'':8}  log: {d.log_path}")
    lines.append(gate_line(state))
    if any(d.outcome == "ejected" for d in rows):
        lines.append(
            f"next: `spine show {state.run_id}/LANE` says how to fix an ejected lane; "
            f"then `spine land {state.run_id}` lands what was fixed"
        )
    elif state.target_end and state.target_end != state.target_start:
        lines.append("next: clean up the landed lanes with `spine gc`")
    return "\n".join(lines)


def _reason(d: LandDecision) -> str:
    if d.outcome != "landed":
        return d.reason
    commit = d.commits[-1][:12] if d.commits else "?"
    gate = "gate passed" if d.gate == "passed" else "gate verdict from the cache"
    replayed = "; replayed, its merge conflicted" if d.rebased else ""
    return f"{commit}, in a batch of {len(d.batch)} ({gate}{replayed})"


def junit_xml(state: LandState) -> str:
    """JUnit XML: one test case per landing decision; an ejection is a failure, a lane that was not
    landed for another reason (already landed, not queued) is skipped."""
    suites = ET.Element("testsuites", name="spine land")
    suite = ET.SubElement(suites, "testsuite", name=f"spine land: {state.run_id} into {state.target}")
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("run", state.run_id),
        ("target", state.target),
        ("strategy", state.strategy),
        ("targetStart", state.target_start),
        ("targetEnd", state.target_end or ""),
        ("gateRuns", str(state.gate_runs)),
        ("gateCached", str(state.gate_cached)),
    ):
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    failures = skipped = 0
    for d in ordered(state):
        case = ET.SubElement(suite, "testcase", classname="spine.land", name=_xml_text(d.lane_id), time="0")
        if d.outcome == "ejected":
            failures += 1
            kind = (
                "MergeConflict"
                if d.kind == "conflict"
                else "CheckFailed"
                if d.kind == "check-failed"
                else "Ejected"
            )
            failure = ET.SubElement(case, "failure", message=_xml_text(d.reason), type=kind)
            if d.kind == "conflict":
                failure.text = _xml_text("\n".join(d.conflicts))
            elif d.kind == "check-failed":
                failure.text = _xml_text(f"$ {d.check_command or d.check}\n" + "\n".join(d.output_tail))
        elif d.outcome in ("already-landed", "skipped"):
            skipped += 1
            ET.SubElement(case, "skipped", message=_xml_text(d.reason))
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(_reason(d))
    for element in (suites, suite):
        element.set("tests", str(len(state.decisions)))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("time", "0")
    suite.set("skipped", str(skipped))
    suite.set("timestamp", state.started_at.removesuffix("Z"))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
