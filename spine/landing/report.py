"""Renderings of a gate verdict: a human table, JUnit XML, GitHub Actions annotations and step summary."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from spine.base.ids import format_duration
from spine.landing.gate import GateVerdict

# XML 1.0 forbids most control characters; test output (colour codes, NULs) is full of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", _ANSI.sub("", text))


def headline(v: GateVerdict) -> str:
    """One line: what was gated into what, and the verdict."""
    word = "PASSED" if v.passed else "FAILED"
    what = f"{v.rev} ({v.rev_sha[:12]}) into {v.into} ({v.into_sha[:12]})"
    cached = f" [cached verdict from {v.decided_at}]" if v.cached else ""
    return f"gate {word}: {what}{cached}"


def render_table(v: GateVerdict) -> str:
    """The human report: a headline, the merge, then one row per check."""
    lines = [headline(v)]
    if v.reason == "conflict":
        lines.append(
            f"  merge     CONFLICT in {len(v.conflicts)} path{'s' if len(v.conflicts) != 1 else ''}:"
        )
        lines += [f"              {path}" for path in v.conflicts]
        lines.append(
            f"  next      rebase {v.rev} on {v.into} (or merge {v.into} into it) and resolve the conflicts"
        )
        return "\n".join(lines)
    lines.append(f"  merge     clean, tree {v.merged_tree}")
    if not v.checks:
        lines.append(
            "  checks    none configured (only the merge was tested); add gate.checks to .spine.yaml"
        )
        return "\n".join(lines)
    width = max(len(c.name) for c in v.checks)
    for c in v.checks:
        mark = "ok  " if c.status == "passed" else "FAIL"
        lines.append(
            f"  {mark}      {c.name.ljust(width)}  {format_duration(c.duration_seconds):>6}  {c.summary}"
        )
    failed = [c for c in v.checks if c.status == "failed"]
    if failed:
        for c in failed:
            if c.log_path:
                lines.append(f"  log       {c.name}: {c.log_path}")
        lines.append(f"  next      reproduce: {failed[0].command}")
    if v.cached:
        lines.append("  note      answered from the cache; --retest runs the checks again")
    return "\n".join(lines)


def junit_xml(v: GateVerdict, skipped: Sequence[str] = ()) -> str:
    """JUnit XML: one test case for the merge and one per check.

    ``skipped`` names the checks the gate did not run (after a merge conflict): each is a test case
    marked skipped, so a CI report still lists it.
    """
    import xml.etree.ElementTree as ET  # only for --junit

    suites = ET.Element("testsuites", name="spine gate")
    suite = ET.SubElement(suites, "testsuite", name=f"spine gate: {v.rev} into {v.into}")
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("rev", v.rev),
        ("revSha", v.rev_sha),
        ("into", v.into),
        ("intoSha", v.into_sha),
        ("mergedTree", v.merged_tree or ""),
        ("cached", "true" if v.cached else "false"),
    ):
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    failures = 0
    merge_case = ET.SubElement(suite, "testcase", classname="spine.gate", name="merge", time="0")
    if v.conflicts:
        failures += 1
        failure = ET.SubElement(
            merge_case,
            "failure",
            message=f"merge conflict in {len(v.conflicts)} path(s)",
            type="MergeConflict",
        )
        failure.text = _xml_text("\n".join(v.conflicts))
    for c in v.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="spine.gate.checks",
            name=_xml_text(c.name),
            time=f"{c.duration_seconds:.3f}",
        )
        if c.status == "failed":
            failures += 1
            failure = ET.SubElement(case, "failure", message=_xml_text(c.summary), type="CheckFailed")
            failure.text = _xml_text(f"$ {c.command}\n" + "\n".join(c.output_tail))
        if c.output_tail:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text("\n".join(c.output_tail))
    for name in skipped:
        case = ET.SubElement(suite, "testcase", classname="spine.gate.checks", name=_xml_text(name), time="0")
        ET.SubElement(case, "skipped", message="not run: the merge conflicts")
    total = 1 + len(v.checks) + len(skipped)
    duration = f"{v.duration_seconds:.3f}"
    for element in (suites, suite):
        element.set("tests", str(total))
        element.set("failures", str(failures))
        element.set("errors", "0")
        element.set("time", duration)
    suite.set("skipped", str(len(skipped)))
    suite.set("timestamp", v.decided_at.removesuffix("Z"))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(v: GateVerdict) -> list[str]:
    """``::error`` workflow commands: one per conflicting path and one per failed check."""
    lines = []
    for path in v.conflicts:
        lines.append(
            f"::error file={_escape_property(path)},title={_escape_property('spine gate: merge conflict')}::"
            + _escape_data(f"{v.rev} conflicts with {v.into} in {path}")
        )
    for c in v.checks:
        if c.status != "failed":
            continue
        tail = "\n".join(c.output_tail[-10:])
        lines.append(
            f"::error title={_escape_property(f'spine gate: check {c.name} failed')}::"
            + _escape_data(f"{c.summary}\n$ {c.command}\n{tail}".rstrip())
        )
    return lines


def step_summary(v: GateVerdict, skipped: Sequence[str] = ()) -> str:
    """A Markdown section for ``$GITHUB_STEP_SUMMARY``, which every step of a job appends to.

    It starts and ends with a blank line, so the section before it cannot swallow its heading (an
    HTML block such as ``</details>`` runs on to the next blank line) and the next one starts clean.
    Check names and summaries are escaped for a table cell, output is shown as a terminal shows it
    (a bare ``\\r`` starts the line again) inside a fence longer than any run of backticks in it.
    ``skipped`` names the checks the gate did not run (after a merge conflict).
    """
    icon = "✅" if v.passed else "❌"
    out = [
        "",
        f"### {icon} spine gate {'passed' if v.passed else 'failed'}: {_code(v.rev)} into {_code(v.into)}",
        "",
        f"Merge of `{v.rev_sha[:12]}` into `{v.into_sha[:12]}`"
        + (f", merged tree `{v.merged_tree[:12]}`" if v.merged_tree else "")
        + (f" (cached verdict from {v.decided_at})" if v.cached else "")
        + ".",
        "",
    ]
    if v.conflicts:
        out += ["**Merge conflicts:**", ""] + [f"- {_code(p)}" for p in v.conflicts] + [""]
        if skipped:
            out += [f"Not run because the merge conflicts: {', '.join(_code(n) for n in skipped)}.", ""]
        return "\n".join(out) + "\n"
    if not v.checks:
        out += ["No gate checks are configured; only the merge was tested.", ""]
        return "\n".join(out) + "\n"
    out += ["| check | result | time | summary |", "|---|---|---|---|"]
    for c in v.checks:
        out.append(
            f"| {_cell(c.name)} | {'✅ passed' if c.status == 'passed' else '❌ failed'} | "
            f"{format_duration(c.duration_seconds)} | {_cell(c.summary)} |"
        )
    for c in v.checks:
        if c.status == "failed" and c.output_tail:
            lines = [_terminal_line(_ANSI.sub("", line)) for line in c.output_tail[-20:]]
            fence = "`" * max([3, *(len(run) + 1 for line in lines for run in _BACKTICKS.findall(line))])
            out += ["", f"<details><summary>{html.escape(c.name)} output (last lines)</summary>", ""]
            out += [fence, *lines, fence, "", "</details>"]
    return "\n".join(out) + "\n\n"


_BACKTICKS = re.compile("`+")


def _terminal_line(line: str) -> str:
    """What a terminal shows of ``line``: a bare carriage return starts it again."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: one line, no unescaped ``|``, no HTML."""
    one_line = " ".join(_terminal_line(part) for part in text.split("\n"))
    return html.escape(one_line, quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    """``text`` as an inline code span, whatever backticks it holds."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"
