"""``spine hooks install|uninstall pre-push``: run the gate from git hooks."""

from __future__ import annotations

import click


@click.group("hooks")
def command() -> None:
    """Install or remove the git hooks that run `spine gate` (pre-push)."""


@command.command("install")
@click.argument("name", type=click.Choice(["pre-push"]))
@click.option("--chain", is_flag=True, help="Keep an existing hook and run it before spine's.")
@click.option("--replace", is_flag=True, help="Overwrite an existing hook that spine did not install.")
def install_command(name: str, chain: bool, replace: bool) -> int:
    """Install hook NAME: pre-push gates every commit being pushed (git push --no-verify skips it)."""
    from spine.base.errors import UsageError
    from spine.landing.hooks import install
    from spine.workspace.context import resolve_context

    if chain and replace:
        raise UsageError("--chain and --replace exclude each other", "pick one")
    done = install(resolve_context(), name, chain=chain, replace=replace)
    click.echo(f"installed {done.path}")
    if done.chained:
        click.echo(f"  the previous hook runs first: {done.chained}")
    if done.replaced:
        click.echo("  the previous hook was overwritten")
    return 0


@command.command("uninstall")
@click.argument("name", type=click.Choice(["pre-push"]))
def uninstall_command(name: str) -> int:
    """Remove spine's hook NAME (a hook it chained is put back)."""
    from spine.landing.hooks import uninstall
    from spine.workspace.context import resolve_context

    click.echo(uninstall(resolve_context(), name))
    return 0
