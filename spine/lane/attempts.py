"""Lanes with attempts (best of N): the ``compare`` step and the lane's result.

A lane with attempts runs no command. Its attempts are lanes of their own (``LANE.1`` ...), driven
like any lane. Once every attempt ended, the scheduler gives the lane its ``compare`` step: it reads
each attempt's result file and the diff of its branch, measures them (``spine.model.attempts``),
works out how far their changes agree, lets the pick rule choose, and records all of it as the
lane's facts (``AttemptsFacts``). ``finalize`` then renders the lane's result from those facts: the
picked attempt's result under the lane's id, with every attempt's figures and the pick, so that
``spine promote RUN/LANE`` lands the picked attempt. See docs/attempts.md.
"""

from __future__ import annotations

from spine.base.files import atomic_write_json
from spine.base.ids import now_iso
from spine.lane.outcome import classify
from spine.lane.render import Where, attempts_table, build_group_result
from spine.lane.runtime import LaneRuntime
from spine.model.attempts import Token, agreement, choose, diff_tokens, figures_of
from spine.model.facts import AttemptsFacts, PairAgreement, ResultFacts
from spine.model.result import AttemptFigures, LaneResult, LaneStatus, Pick
from spine.model.state import LaneState, RunState
from spine.workspace.context import ExecutionContext

DIFF_LIMIT = 4 << 20
"""The most bytes of one attempt's diff read for the agreement measure."""


def compare(rt: LaneRuntime) -> None:
    """Measure every attempt, pick one by the lane's rule, and record it (the lane's ``compare`` step)."""
    lane = rt.lane
    figures, pairs = measure(rt.ctx, rt.run, lane)
    pick = choose(figures, lane.spec.pick or rt.ctx.config.pick)
    pick.picked_at = now_iso()
    lane.facts.attempts = AttemptsFacts(
        figures=figures,
        pairs=[PairAgreement(a=a, b=b, files=f, lines=ln) for a, b, f, ln in pairs],
        pick=pick,
        rule_pick=pick.attempt,
    )
    out = rt.output()
    try:
        out.note(f"compared {len(figures)} attempts (pick rule: {pick.rule})")
        for line in [*attempts_table(figures, pick.attempt), f"pick: {pick.reason}"]:
            out.note(line)
    finally:
        out.close()


def measure(
    ctx: ExecutionContext, run: RunState, lane: LaneState
) -> tuple[list[AttemptFigures], list[tuple[int, int, float, float]]]:
    """The figures of each attempt of ``lane`` (unfinished ones by their status only), and how far
    each pair's changes agree. Reads result files and git; writes nothing."""
    figures: list[AttemptFigures] = []
    changes: dict[int, tuple[list[str], frozenset[Token]]] = {}
    for n, lane_id in enumerate(lane.spec.attempts, 1):
        attempt = run.lanes[lane_id]
        result = attempt_result(ctx, run.run_id, attempt)
        if result is None:
            figures.append(AttemptFigures(attempt=n, lane_id=lane_id, status=attempt.status, score=0))
            continue
        files, tokens = _change(ctx, attempt.base_sha, result.head_sha)
        changes[n] = (files, tokens)
        figures.append(figures_of(n, result, files))
    means, pairs = agreement(changes)
    return [
        f.model_copy(update={"agreement": means[f.attempt]}) if f.attempt in means else f for f in figures
    ], pairs


def attempt_result(ctx: ExecutionContext, run_id: str, attempt: LaneState) -> LaneResult | None:
    """An attempt's result file, once it has one."""
    path = ctx.state.result_file(run_id, attempt.spec.id)
    if not attempt.complete or not path.is_file():
        return None
    return LaneResult.model_validate_json(path.read_text(encoding="utf-8"))


def _change(ctx: ExecutionContext, base: str, head: str | None) -> tuple[list[str], frozenset[Token]]:
    """The files an attempt changed and its changed lines, from base to its head."""
    if not head or head == base or ctx.git.resolve_commit(head) is None:
        return [], frozenset()
    names = ctx.git.run("diff", "--name-only", "-z", "--no-renames", base, head).stdout
    files = [name for name in names.split("\0") if name]
    patch = ctx.git.run(
        "diff", "-U0", "--no-color", "--no-renames", "--no-ext-diff", "--no-textconv", base, head
    ).stdout
    return files, diff_tokens(patch[:DIFF_LIMIT])


def finalize_group(rt: LaneRuntime) -> None:
    """Write the result of a lane with attempts (its ``finalize`` step)."""
    lane = rt.lane
    result = write_group_result(rt.ctx, rt.run, lane, rt.backend.name)
    lane.status = result.status
    lane.facts.result = ResultFacts(
        path=str(rt.ctx.state.result_file(rt.run.run_id, lane.spec.id)),
        status=result.status.value,
        next_action=result.next_action,
    )


def write_group_result(ctx: ExecutionContext, run: RunState, lane: LaneState, backend: str) -> LaneResult:
    """Render and write the result of lane with attempts ``lane`` from its facts; return it."""
    outcome = classify(lane.facts, lane.spec)
    picked: LaneResult | None = None
    facts = lane.facts.attempts
    if facts is not None and facts.pick.lane_id is not None and facts.pick.lane_id in run.lanes:
        picked = attempt_result(ctx, run.run_id, run.lanes[facts.pick.lane_id])
    where = Where(
        run_id=run.run_id,
        log_path=str(ctx.state.log_file(run.run_id, lane.spec.id)),
        backend=backend,
        target=run.target_ref,
    )
    result = build_group_result(lane, outcome, where, picked)
    atomic_write_json(ctx.state.result_file(run.run_id, lane.spec.id), result.to_json())
    return result


def pick_by_hand(lane: LaneState, attempt: int) -> Pick:
    """The pick ``spine pick RUN/LANE N`` records over the rule's (the lane must have been compared)."""
    facts = lane.facts.attempts
    assert facts is not None
    figure = next(f for f in facts.figures if f.attempt == attempt)
    ruled = (
        f"the rule ({facts.pick.rule}) picked attempt {facts.rule_pick}"
        if facts.rule_pick
        else (f"the rule ({facts.pick.rule}) picked none")
    )
    state = "it passed every check" if figure.status == LaneStatus.SUCCEEDED else f"it {figure.status.value}"
    return Pick(
        attempt=attempt,
        lane_id=figure.lane_id,
        rule=facts.pick.rule,
        by="user",
        reason=f"attempt {attempt} was picked by hand with `spine pick` ({state}; {ruled})",
        picked_at=now_iso(),
    )
