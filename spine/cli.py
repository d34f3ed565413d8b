"""The command line: parse, dispatch to ``spine.commands.<name>``, turn errors into exit codes.

Subcommands are imported only when invoked, so ``spine --help`` does not pay for pydantic or the
lane machinery.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import Any

import click

from spine.base.version import __version__

# name -> (module, one-line help). The help is here so that `spine --help` imports nothing else.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("spine.commands.run", "Run a command in a new lane: worktree, branch, commit, checks, result."),
    "context": ("spine.commands.context", "Show the resolved execution context of this repository."),
    "show": ("spine.commands.show", "Show the result of a run or a lane."),
    "score": ("spine.commands.score", "Grade result files for completeness and consistency."),
    "batch": (
        "spine.commands.batch",
        "Run many lanes from a YAML/JSON file, in parallel and in dependency order.",
    ),
    "resume": ("spine.commands.resume", "Continue a halted, interrupted or crashed run where it stopped."),
    "step": ("spine.commands.step", "Fire exactly one ready step of a run, then stop."),
    "status": ("spine.commands.status", "Show all runs, or one run's lanes with status and next action."),
    "logs": ("spine.commands.logs", "Print (or follow) a lane's output log."),
    "cancel": ("spine.commands.cancel", "Stop a run's lanes (or one lane) from any terminal."),
    "schema": ("spine.commands.schema", "Print the JSON Schema of the config or the result file."),
    "backends": ("spine.commands.backends", "List isolation backends: usable here or why not."),
    "gate": ("spine.commands.gate", "Test the merge of a revision into a branch; cache the verdict."),
    "promote": ("spine.commands.promote", "Land a finished lane on its target branch."),
    "land": ("spine.commands.land", "Land many lanes through a merge queue: each tested on what lands."),
    "gc": ("spine.commands.gc", "Clean up finished and dead lanes without losing uncommitted work."),
    "hooks": ("spine.commands.hooks", "Install the git hooks that run the gate (pre-push)."),
    "ops": ("spine.commands.ops", "List the operators (named lane recipes) configured in .spine.yaml."),
    "classify": ("spine.commands.classify", "Show which mode an objective falls in, and why."),
    "debug": ("spine.commands.debug", "Print the debug packet of a failed or stopped lane."),
    "report": ("spine.commands.report", "Write a run as one self-contained HTML file."),
    "dashboard": ("spine.commands.dashboard", "Serve a read-only, live web view of this repository's runs."),
    "compare": ("spine.commands.compare", "Show the attempts of a lane side by side, and its pick."),
    "pick": ("spine.commands.pick", "Make attempt N the pick of a lane with attempts."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command: click.Command = importlib.import_module(entry[0]).command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spine")
@click.option(
    "-C",
    "directory",
    metavar="PATH",
    type=click.Path(file_okay=False),
    help="Run as if spine was started in PATH.",
)
def cli(directory: str | None) -> None:
    """spine runs unattended commands in isolated git worktrees and leaves one reviewable result per lane.

    \b
    Start with:   spine run "OBJECTIVE" -- COMMAND [ARGS...]
    Exit codes:   0 ok · 1 work failed · 2 bad input · 3 environment · 4 internal error · 130 interrupted
    """
    if directory:
        try:
            previous: str | None = os.getcwd()
        except OSError:  # the directory spine was started in is gone: nothing to go back to
            previous = None
        try:
            os.chdir(directory)
        except OSError as exc:
            raise click.BadParameter(
                f"cannot change to {directory!r}: {exc.strerror}", param_hint="-C"
            ) from None
        if previous is not None:
            # run_cli returns to its caller: leave the caller's working directory as it was.
            click.get_current_context().call_on_close(lambda: _change_back(previous))


def _change_back(path: str) -> None:
    with contextlib.suppress(OSError):
        os.chdir(path)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``spine`` and ``git-spine`` scripts."""
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code instead of exiting.

    With ``--json``, an error is also printed on stdout as the JSON envelope (spine.commands.output).
    """
    from spine.base.errors import ExitCode, SpineError

    args = sys.argv[1:] if argv is None else list(argv)
    json_command = _json_command(args)
    if json_command is not None:
        from spine.commands.output import reset

        reset()
    try:
        result: Any = cli.main(args=argv, prog_name="spine", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("spine: interrupted", err=True)
        return _json_error(json_command, "interrupted", ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        return _json_error(json_command, exc.format_message(), ExitCode.USAGE)
    except SpineError as exc:
        click.echo(exc.render(), err=True)
        return _json_error(
            json_command, exc.message, exc.exit_code, hint=exc.hint, problems=getattr(exc, "parts", None)
        )
    except SystemExit as exc:  # shell completion (_SPINE_COMPLETE) answers, then exits
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except OSError as exc:
        # The file system said no (disk full, read-only, permissions): the environment, not a bug.
        text = _render_os_error(exc)
        click.echo(text, err=True)
        return _json_error(
            json_command, text.removeprefix("spine: error: ").split("\n")[0], ExitCode.ENVIRONMENT
        )
    except Exception:
        return _report_crash(sys.argv if argv is None else ["spine", *argv], json_command)
    return int(result or 0)


def _render_os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return (
        f"spine: error: cannot use{where}: {exc.strerror or exc}\n"
        "  hint: free disk space or make spine's state directory writable, then run the same command "
        "again (`spine resume RUN` continues a run)"
    )


def _json_command(args: list[str]) -> str | None:
    """The command's name when ``--json`` was given to spine (not to the lane's command after --)."""
    words = args[: args.index("--")] if "--" in args else args
    if "--json" not in words:
        return None
    return next((word for word in words if word in COMMANDS), "")


def _json_error(command: str | None, message: str, code: int, **more: Any) -> int:
    """Print the error envelope on stdout when --json was given; return ``code``."""
    if command is not None:
        from spine.commands.output import error_entry, error_envelope

        text = error_envelope(command, error_entry(message, code, **more))
        if text is not None:
            from spine.base.redact import redact_text

            click.echo(redact_text(text))
    return code


def _report_crash(argv: list[str], json_command: str | None = None) -> int:
    # Imported here, not at the top: they cost `spine --help` several milliseconds on every start.
    import tempfile
    import traceback

    from spine.base.errors import ExitCode
    from spine.base.redact import MASK, looks_secret, redact_text

    def masked(arg: str) -> str:
        name, sep, _ = arg.partition("=")
        return f"{name}={MASK.decode()}" if sep and looks_secret(name) else arg

    shown = [masked(arg) for arg in argv]
    fd, path = tempfile.mkstemp(prefix="spine-crash-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        header = f"spine {__version__}, python {sys.version.split()[0]}\nargv: {shown}\n\n"
        handle.write(redact_text(header + traceback.format_exc()))
    kind, value = sys.exc_info()[:2]
    name = kind.__name__ if kind else "error"
    message = redact_text(f"internal error ({name}: {value}); this is a bug in spine.")
    click.echo(f"spine: {message}", err=True)
    click.echo(f"  details: {path}", err=True)
    return _json_error(json_command, message, ExitCode.INTERNAL, hint=f"details: {path}", details=path)
