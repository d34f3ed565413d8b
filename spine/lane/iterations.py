"""The repair loop (``--iterations K``): when a lane's checks fail, run its command again.

It lives inside the step machine. ``validate`` ends each pass by recording it (``LaneFacts.iterations``:
its commits, what it changed, its checks). When checks failed, passes remain and the pass changed
something (the first pass always counts), it writes the failing checks' output to a feedback file,
clears the pass's execute, commit and validation facts, and sends the lane back to ``execute``: the
drive loop then takes ``execute``, ``commit`` and ``validate`` out of ``stepsDone``
(docs/adr/0063). So a crash anywhere resumes in the right pass: the facts and ``stepsDone`` change in
one write of run.json.

Before the command runs again, ``execute`` puts the feedback into the worktree
(``runtime.FEEDBACK_NAME``, named by ``SPINE_FEEDBACK``) and takes it away when the command ends;
the copy under the lane's state stays. Feedback is bounded (``MAX_FEEDBACK``) and secrets are masked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from spine.base.files import atomic_write_text, read_inside, write_new_file
from spine.lane.runtime import FEEDBACK_NAME, LaneOutput, LaneRuntime
from spine.model.facts import ValidateFacts
from spine.model.result import CheckStatus, DiffStat, Iteration, Verdict
from spine.workspace.worktrees import LaneWorktree

MAX_FEEDBACK = 32 * 1024
"""The most characters of failing-check output handed to the next pass."""


def failing(validated: ValidateFacts) -> list[tuple[str, str, str, int | None, list[str]]]:
    """(name, command, summary, exit code, output tail) of every check and acceptance check that failed."""
    found = [
        (c.name, c.command, c.summary, c.exit_code, list(c.output_tail))
        for c in validated.checks
        if c.status == CheckStatus.FAILED
    ]
    found += [
        (a.name, a.command, a.summary, a.exit_code, list(a.output_tail))
        for a in validated.acceptance
        if a.verdict == Verdict.FAIL
    ]
    return found


def end_of_pass(rt: LaneRuntime, iteration: int, validated: ValidateFacts, out: LaneOutput) -> str | None:
    """Record pass ``iteration`` of the repair loop; return ``"execute"`` to run the command again."""
    lane = rt.lane
    facts, spec = lane.facts, lane.spec
    before = facts.iterations[-1].head_sha if facts.iterations else lane.base_sha
    commit, ex = facts.commit, facts.execute
    head = commit.head_sha if commit is not None else None
    changed = head is not None and head != before
    record = Iteration(
        iteration=iteration,
        exit_code=ex.exit_code if ex else None,
        duration_seconds=ex.duration_seconds if ex else None,
        started_at=ex.started_at if ex else None,
        head_sha=head,
        changed=changed,
        checks=list(validated.checks),
        acceptance=list(validated.acceptance),
    )
    if changed and head is not None and before is not None:
        shas = [c.sha for c in commit.commits] if commit else []
        record.commits = shas[shas.index(before) + 1 :] if before in shas else shas
        record.diff_stat, record.files = _pass_change(rt.worktree(), before, head)
    failed = failing(validated)
    again = (
        bool(failed)
        and iteration < spec.iterations
        and (changed or iteration == 1)
        and not rt.cancel.is_set()
        and not (commit is not None and commit.violations)
    )
    if not again:
        facts.iterations.append(record)
        if failed and iteration > 1 and not changed:
            out.note(f"iteration {iteration} changed nothing: the repair loop stops")
        return None
    path = rt.ctx.state.feedback_file(rt.run.run_id, rt.lane_id, iteration + 1)
    atomic_write_text(path, feedback_text(rt, iteration, failed, validated))
    record.feedback = str(path)
    facts.iterations.append(record)
    if commit is not None:
        facts.spine_commits += [c.sha for c in commit.commits if c.made_by == "spine"]
    facts.commit_token = None  # the next pass can read this one's token in its history
    facts.execute = facts.commit = facts.validation = None
    names = ", ".join(name for name, *_ in failed)
    out.note(f"iteration {iteration} of {spec.iterations}: {names} failed; running the command again")
    rt.store.event("iteration", rt.lane_id, iteration=iteration + 1, failed=[n for n, *_ in failed])
    return "execute"


def _pass_change(wt: LaneWorktree, before: str, head: str) -> tuple[DiffStat, list[str]]:
    """What one pass changed: its diff stat and files, from ``git diff --numstat``."""
    out = wt.git(
        "diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", before, head
    ).stdout
    stat, files = DiffStat(), []
    for record in out.split("\0"):
        if not record:
            continue
        added, deleted, path = record.split("\t", 2)
        files.append(path)
        stat.files_changed += 1
        stat.insertions += int(added) if added.isdigit() else 0
        stat.deletions += int(deleted) if deleted.isdigit() else 0
    return stat, files


def feedback_text(
    rt: LaneRuntime,
    iteration: int,
    failed: list[tuple[str, str, str, int | None, list[str]]],
    validated: ValidateFacts,
) -> str:
    """The file the next pass reads: which checks failed after pass ``iteration``, with their output."""
    spec = rt.lane.spec
    redactor = rt.redactor()
    passed = [c.name for c in validated.checks if c.status == CheckStatus.PASSED]
    passed += [a.name for a in validated.acceptance if a.verdict != Verdict.FAIL]
    head = [
        f"# Feedback for iteration {iteration + 1} of {spec.iterations}",
        "",
        f"Objective: {spec.objective}",
        "",
        f"After iteration {iteration}, {len(failed)} check{'s' if len(failed) != 1 else ''} failed "
        "in this worktree. Make them pass; spine runs every check again when this command ends.",
    ]
    if passed:
        head += ["", f"Passing (keep them passing): {', '.join(passed)}"]
    parts = ["\n".join(head)]
    room = MAX_FEEDBACK - len(parts[0])
    for name, command, summary, code, tail in failed:
        exit_text = f" (exit {code})" if code is not None else ""
        section = [f"## {name}: {summary}", "", f"Command: `{command}`{exit_text}"]
        if tail:
            section += ["", "Last lines of its output:", "", "```", *tail, "```"]
        text = "\n".join(section)
        if len(text) + 2 > room:
            parts.append(f"## {name}: {summary}\n\n(output left out: the feedback is bounded)")
            room = 0
            continue
        parts.append(text)
        room -= len(text) + 2
    return redactor.redact_text("\n\n".join(parts) + "\n")


@contextlib.contextmanager
def feedback_in_worktree(rt: LaneRuntime, out: LaneOutput) -> Iterator[Path | None]:
    """For a pass after the first, put its feedback at ``SPINE_FEEDBACK`` while the command runs."""
    iteration = rt.lane.iteration
    if rt.lane.spec.iterations <= 1 or iteration <= 1:
        yield None
        return
    record = rt.ctx.state.feedback_file(rt.run.run_id, rt.lane_id, iteration)
    target = rt.worktree_path / FEEDBACK_NAME
    try:
        text = record.read_text(encoding="utf-8")
    except OSError:
        text = f"# Feedback for iteration {iteration}\n\n(the feedback of the previous pass was not kept)\n"
    try:
        write_new_file(target, text)  # the worktree is the lane's: never follow what it put there
    except FileExistsError as exc:
        if not _placed_before(target, text):  # not spine's own, left by a driver that died
            out.note(
                f"iteration {iteration}: cannot put the feedback at {target} ({exc.strerror or exc}: "
                f"the lane has its own); it is kept at {record}"
            )
            yield None
            return
    except OSError as exc:
        out.note(
            f"iteration {iteration}: cannot put the feedback at {target} ({exc.strerror or exc}); "
            f"it is kept at {record}"
        )
        yield None
        return
    out.note(f"iteration {iteration} of {rt.lane.spec.iterations}: feedback at {target}")
    try:
        yield target
    finally:
        with contextlib.suppress(OSError):
            target.unlink()


def _placed_before(target: Path, text: str) -> bool:
    """True when ``target`` is a plain file (not a link) holding exactly ``text``: spine's feedback."""
    data = text.encode()
    return read_inside(target.parent, target.name, limit=len(data) + 1) == data
