"""``spine run OBJECTIVE -- COMMAND``: one lane, end to end."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import click

from spine.commands.options import DURATION, check_name, parse_env_pairs

if TYPE_CHECKING:
    from spine.model.config import SpineConfig
    from spine.model.operators import OpBinding


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("objective", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--lane", "lane_id", metavar="ID", help="Lane id (default: derived from the objective).")
@click.option("--run-id", metavar="ID", help="Run id (default: a timestamp plus a random suffix).")
@click.option(
    "--base", metavar="REF", help="Ref the lane starts from (default: config, else the primary HEAD)."
)
@click.option("--backend", metavar="NAME", help="Isolation backend (default: config, else local-worktree).")
@click.option("--timeout", type=DURATION, help="Wall-clock limit: seconds, 90s, 10m, 1h, or 'none'.")
@click.option("--idle-timeout", type=DURATION, help="Stop the command after this long without output.")
@click.option(
    "--stall-timeout",
    type=DURATION,
    help="Stop the command after this long without output and without file changes.",
)
@click.option("--op", "op_id", metavar="ID", help="Run the operator ID from .spine.yaml (no COMMAND needed).")
@click.option(
    "--input",
    "input_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input of the operator (repeatable).",
)
@click.option(
    "--mode",
    metavar="MODE",
    help="The lane's mode (PIPELINE, TOOLSMITH, SERVICE, CONTRACT, GOVERNANCE, CONTACT) or 'auto'; "
    "its evidence pattern decides whether the lane counts.",
)
@click.option(
    "--check", "checks", multiple=True, metavar="CMD", help="A check to run after the command (repeatable)."
)
@click.option(
    "--artifact", "artifacts", multiple=True, metavar="GLOB", help="Files to keep as artifacts (repeatable)."
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Extra environment variable (repeatable)."
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Pass this variable from your environment into an isolating backend (repeatable).",
)
@click.option(
    "--network/--no-network",
    default=None,
    help="Allow (or block) network access in backends that can block it (default: config, else blocked).",
)
@click.option(
    "--commit/--no-commit",
    "commit_in_place",
    default=False,
    help="With an in-place backend (none), commit the changes in the current checkout.",
)
@click.option(
    "--keep-worktree",
    is_flag=True,
    help="Keep the lane's worktree after it succeeds instead of returning it to the worktree pool.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result file on stdout (command output goes to stderr)."
)
@click.option("-q", "--quiet", is_flag=True, help="Do not echo the command's output (it is still logged).")
def command(
    objective: str | None,
    command: tuple[str, ...],
    lane_id: str | None,
    run_id: str | None,
    base: str | None,
    backend: str | None,
    timeout: float | None,
    idle_timeout: float | None,
    stall_timeout: float | None,
    op_id: str | None,
    input_pairs: tuple[str, ...],
    mode: str | None,
    checks: tuple[str, ...],
    artifacts: tuple[str, ...],
    env_pairs: tuple[str, ...],
    pass_env: tuple[str, ...],
    network: bool | None,
    commit_in_place: bool,
    keep_worktree: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Run COMMAND for OBJECTIVE in a new worktree and branch, commit what it leaves, run the checks.

    \b
    Examples:
      spine run "make the greeting friendlier" -- ./tools/agent.sh --task greeting
      spine run --op ingest-csv --input source=data/in.csv "ingest the March export"

    The result file is written under the repository's git directory; its path, a summary and the
    next action are printed at the end. Exit 0 when the lane succeeded, 1 when it failed.
    """
    from spine.base.errors import UsageError
    from spine.base.ids import check_id, new_run_id, slugify
    from spine.drive.runs import create_run, drive_run, exit_code_for, print_lane_result
    from spine.lane.steps import Echo
    from spine.model.config import CheckSpec
    from spine.model.state import LaneSpec
    from spine.workspace.context import resolve_context

    if op_id is not None:
        if command:
            raise UsageError(
                f"operator {op_id!r} brings its own command; do not give one after --",
                f'run it as: spine run --op {op_id} --input NAME=VALUE "OBJECTIVE"',
            )
        return _run_operator(
            op_id,
            objective,
            input_pairs=input_pairs,
            mode=mode,
            lane_id=lane_id,
            run_id=run_id,
            base=base,
            backend=backend,
            timeout=timeout,
            idle_timeout=idle_timeout,
            stall_timeout=stall_timeout,
            checks=checks,
            artifacts=artifacts,
            env_pairs=env_pairs,
            commit_in_place=commit_in_place,
            keep_worktree=keep_worktree,
            as_json=as_json,
            quiet=quiet,
        )
    if input_pairs:
        raise UsageError("--input is given without --op", "inputs belong to an operator: add --op ID")
    if objective is None or not objective.strip():
        raise UsageError(
            "the objective is empty", 'say what the lane should achieve: spine run "fix the parser" -- CMD'
        )
    if not command:
        raise UsageError(
            "no command given",
            'put the command after --, e.g.: spine run "fix the parser" -- ./scripts/agent.sh --task parser',
        )
    argv: list[str] | str = list(command)
    if len(command) == 1 and " " in command[0].strip() and not shutil.which(command[0]):
        argv = command[0]  # one quoted string: let the shell run it
    ctx = resolve_context(base=base, backend=backend)
    lane = check_id("lane id", lane_id) if lane_id else slugify(objective)
    rid = check_id("run id", run_id) if run_id else new_run_id()
    taken = {c.name for c in ctx.config.checks}
    spec = LaneSpec(
        id=lane,
        objective=objective.strip(),
        command=argv,
        timeout=timeout if timeout is not None or _given("timeout") else ctx.config.timeout,
        idle_timeout=idle_timeout
        if idle_timeout is not None or _given("idle_timeout")
        else ctx.config.idle_timeout,
        env=parse_env_pairs(env_pairs),
        env_passthrough=list(pass_env),
        network=network,
        checks=[CheckSpec(name=check_name(c, taken), command=c) for c in checks],
        artifacts=list(artifacts),
        commit_in_place=commit_in_place,
        keep_worktree=keep_worktree,
        stall_timeout=stall_timeout
        if stall_timeout is not None or _given("stall_timeout")
        else ctx.config.stall_timeout,
        op=_mode_binding(ctx.config, objective.strip(), mode).as_data() if mode else None,
    )
    store, run = create_run(ctx, rid, [spec], kind="run")
    echo: Echo = "none" if quiet else ("stderr" if as_json else "raw")
    run = drive_run(ctx, store, run, jobs=1, echo=echo)
    result = print_lane_result(ctx, run, lane, as_json=as_json)
    return exit_code_for([result.status])


def _mode_binding(config: SpineConfig, objective: str, mode: str) -> OpBinding:
    from spine.lane.grading import mode_binding  # the mode machinery, only for a lane that has a mode

    return mode_binding(config, objective, mode)


def _given(name: str) -> bool:
    """True when the option was given on the command line (even as 'none')."""
    ctx = click.get_current_context()
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _run_operator(
    op_id: str,
    objective: str | None,
    *,
    input_pairs: tuple[str, ...],
    mode: str | None,
    lane_id: str | None,
    run_id: str | None,
    base: str | None,
    backend: str | None,
    timeout: float | None,
    idle_timeout: float | None,
    stall_timeout: float | None,
    checks: tuple[str, ...],
    artifacts: tuple[str, ...],
    env_pairs: tuple[str, ...],
    commit_in_place: bool,
    keep_worktree: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """``spine run --op ID``: build the lane from the operator, then drive it like any other."""
    from spine.base.ids import check_id, new_run_id
    from spine.drive.runs import create_run, drive_run, exit_code_for, print_lane_result
    from spine.lane.grading import lane_spec_from_operator
    from spine.lane.steps import Echo
    from spine.model.config import CheckSpec
    from spine.model.operators import parse_input_pairs
    from spine.workspace.context import resolve_context

    ctx = resolve_context(base=base, backend=backend)
    taken = {c.name for c in ctx.config.checks}
    spec = lane_spec_from_operator(
        ctx.config,
        op_id,
        parse_input_pairs(input_pairs),
        objective=objective,
        lane_id=check_id("lane id", lane_id) if lane_id else None,
        mode=mode,
        timeout=timeout,
        idle_timeout=idle_timeout,
        stall_timeout=stall_timeout,
        env=parse_env_pairs(env_pairs),
        checks=[CheckSpec(name=check_name(c, taken), command=c) for c in checks],
        artifacts=artifacts,
        commit_in_place=commit_in_place,
        keep_worktree=keep_worktree,
    )
    rid = check_id("run id", run_id) if run_id else new_run_id()
    store, run = create_run(ctx, rid, [spec], kind="run")
    echo: Echo = "none" if quiet else ("stderr" if as_json else "raw")
    run = drive_run(ctx, store, run, jobs=1, echo=echo)
    result = print_lane_result(ctx, run, spec.id, as_json=as_json)
    return exit_code_for([result.status])
