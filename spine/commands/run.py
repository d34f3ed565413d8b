"""``spine run OBJECTIVE -- COMMAND``: one lane, end to end."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import click

from spine.commands.complete import BACKEND, MODE, OPERATOR
from spine.commands.options import DURATION

if TYPE_CHECKING:
    from spine.workspace.context import ExecutionContext

RAW_ARGS = "spine.run.raw_args"


class RunCommand(click.Command):
    """`spine run`, remembering its raw arguments to tell `OBJECTIVE -- CMD` from `-- CMD`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)


@click.command("run", cls=RunCommand, context_settings={"ignore_unknown_options": False})
@click.argument("objective", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--lane", "lane_id", metavar="ID", help="Lane id (default: derived from the objective).")
@click.option("--run-id", metavar="ID", help="Run id (default: a timestamp plus a random suffix).")
@click.option(
    "--base", metavar="REF", help="Ref the lane starts from (default: config, else the primary HEAD)."
)
@click.option(
    "--backend",
    metavar="NAME",
    shell_complete=BACKEND,
    help="Isolation backend (default: config, else local-worktree).",
)
@click.option("--timeout", type=DURATION, help="Wall-clock limit: seconds, 90s, 10m, 1h, or 'none'.")
@click.option("--idle-timeout", type=DURATION, help="Stop the command after this long without output.")
@click.option(
    "--stall-timeout",
    type=DURATION,
    help="Stop the command after this long without output and without file changes.",
)
@click.option(
    "--op",
    "op_id",
    metavar="ID",
    shell_complete=OPERATOR,
    help="Run the operator ID from .spine.yaml (no COMMAND needed).",
)
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
    shell_complete=MODE,
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
    "--checks-on-host/--checks-in-sandbox",
    "checks_on_host",
    default=None,
    help="Run setup commands and checks on the host instead of in the lane's isolation (default: config, else in it).",
)
@click.option(
    "--attempts",
    type=int,
    metavar="N",
    help="Best of N: run N attempts side by side, each in a lane LANE.1..N of its own, and pick one.",
)
@click.option(
    "--attempt-command",
    "attempt_commands",
    multiple=True,
    metavar="CMD",
    help="What an attempt runs, as a shell command (repeatable); the attempts take the command after -- "
    "and these in turn.",
)
@click.option(
    "--pick",
    "pick_rule",
    metavar="RULE",
    help="How to pick an attempt: smallest, first, fastest or agreement (default: config, else smallest).",
)
@click.option("--stop-on-pass", is_flag=True, help="Stop the other attempts once one passed every check.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Attempts at work at once (default: all of them).",
)
@click.option(
    "--iterations",
    type=int,
    metavar="K",
    help="Repair loop: while checks fail, run the command again with their output (SPINE_FEEDBACK), "
    "at most K times in all.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result file on stdout, in the spine JSON envelope (command output goes to stderr).",
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
    checks_on_host: bool | None,
    attempts: int | None,
    attempt_commands: tuple[str, ...],
    pick_rule: str | None,
    stop_on_pass: bool,
    jobs: int | None,
    iterations: int | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """Run COMMAND for OBJECTIVE in a new worktree and branch, commit what it leaves, run the checks.

    \b
    Examples:
      spine run "make the greeting friendlier" -- ./tools/agent.sh --task greeting
      spine run --op ingest-csv --input source=data/in.csv "ingest the March export"
      spine run --attempts 3 --check "make test" "fix the parser" -- ./tools/agent.sh
      spine run --iterations 3 --check "make test" "fix the parser" -- ./tools/agent.sh

    The result file is written under the repository's git directory; its path, a summary and the
    next action are printed at the end. Exit 0 when the lane succeeded, 1 when it failed.
    """
    from spine import api
    from spine.base.errors import UsageError
    from spine.lane.runtime import Echo
    from spine.lane.spec import LaneRequest, parse_env_pairs
    from spine.views.result import print_result

    ctx = click.get_current_context()
    given: dict[str, object] = {}
    if _objective_after_dash_dash(ctx, objective):
        raise UsageError(
            "the objective is missing: everything after -- is the command",
            'put the objective before --, e.g.: spine run "say hi" -- echo hi',
        )
    if op_id is not None:
        from spine.model.operators import parse_input_pairs  # operator models, only for an operator

        given["op"] = op_id
        given["inputs"] = parse_input_pairs(input_pairs)
        if command:
            raise UsageError(
                f"operator {op_id!r} brings its own command; do not give one after --",
                f'run it as: spine run --op {op_id} --input NAME=VALUE "OBJECTIVE"',
            )
    elif input_pairs:
        raise UsageError("--input is given without --op", "inputs belong to an operator: add --op ID")
    if objective is not None:
        given["objective"] = objective
    if command:
        argv: list[str] | str = list(command)
        if len(command) == 1 and " " in command[0].strip() and not shutil.which(command[0]):
            argv = command[0]  # one quoted string: let the shell run it
        given["command"] = argv
    for name, value in (
        ("id", lane_id),
        ("base", base),
        ("backend", backend),
        ("mode", mode),
        ("network", network),
    ):
        if value is not None:
            given[name] = value
    for name in ("timeout", "idle_timeout", "stall_timeout"):
        if _given(name):
            given[name] = ctx.params[name]
    if env_pairs:
        given["env"] = parse_env_pairs(env_pairs)
    if pass_env:
        given["env_passthrough"] = list(pass_env)
    if checks:
        given["checks"] = list(checks)
    if artifacts:
        given["artifacts"] = list(artifacts)
    if commit_in_place:
        given["commit_in_place"] = True
    if keep_worktree:
        given["keep_worktree"] = True
    if checks_on_host is not None:
        given["checks_on_host"] = checks_on_host
    if attempts is not None:
        given["attempts"] = attempts
    if attempt_commands:
        given["attempt_commands"] = list(attempt_commands)
    if pick_rule is not None:
        given["pick"] = pick_rule
    if stop_on_pass:
        given["stop_on_pass"] = True
    if iterations is not None:
        given["iterations"] = iterations
    if jobs is not None and attempts is None and not attempt_commands:
        raise UsageError(
            "-j/--jobs only applies to a lane with attempts", "add --attempts N, or leave -j out"
        )
    request = LaneRequest(**given)  # type: ignore[arg-type]
    context = api.context(base=base, backend=backend)
    if request.base is None:
        _note_uncommitted(context)
    several = (attempts or 0) > 1 or len(attempt_commands) > 0
    echo: Echo = "none" if quiet else ("prefixed" if several else "stderr" if as_json else "raw")
    run, result = api.run_lane(context, request, run_id=run_id, jobs=jobs, echo=echo)
    from spine.drive.runs import exit_code_for

    code = exit_code_for([result.status], run)
    path = context.state.result_file(run.run_id, result.lane_id)
    if as_json:
        import json

        from spine.commands.driving import run_errors
        from spine.commands.output import emit

        data = json.loads(path.read_text(encoding="utf-8"))  # the result file itself
        return emit(data, code, errors=run_errors(run, code))
    print_result(result, str(path), as_json=False)
    return code


def _note_uncommitted(ctx: ExecutionContext) -> None:
    """Say so when the lane starts from the commit checked out here while this checkout has changes
    that are not committed: the lane's worktree does not have them."""
    from spine.backends.registry import load_backend
    from spine.base.git import git

    if load_backend(ctx.backend, ctx.config.backends.get(ctx.backend, {})).in_place:
        return  # the command runs right here, with them
    here = ctx.workspace.current_worktree
    head = git("rev-parse", "-q", "--verify", "HEAD", cwd=here, check=False).stdout.strip()
    if head != ctx.refs.base_sha:
        return
    changed = git("diff", "--quiet", "--no-ext-diff", "HEAD", "--", cwd=here, check=False).returncode == 1
    if changed:
        click.echo(
            f"spine: note: {here} has uncommitted changes; the lane starts from {ctx.refs.base_ref} at "
            f"{ctx.refs.base_sha[:12]} without them (commit them first to give them to the lane)",
            err=True,
        )


def _given(name: str) -> bool:
    """True when the option was given on the command line (even as 'none')."""
    ctx = click.get_current_context()
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _objective_after_dash_dash(ctx: click.Context, objective: str | None) -> bool:
    """True for `spine run -- CMD ARGS`: click then takes the command's first word as the objective."""
    raw: list[str] = ctx.meta.get(RAW_ARGS, [])
    if "--" not in raw or objective is None:
        return False
    cut = raw.index("--")
    return objective not in raw[:cut] and raw[cut + 1 : cut + 2] == [objective]
