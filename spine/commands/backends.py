"""``spine backends``: every backend spine knows, whether it is usable here and, if not, why."""

from __future__ import annotations

import click

from spine.commands.complete import BACKEND


@click.command("backends")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=BACKEND)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the spine JSON envelope, docs/json.md).")
def command(names: tuple[str, ...], as_json: bool) -> int:
    """List the isolation backends: built-in ones first, then installed plugins.

    \b
    With NAMEs, list only those and exit 3 when one of them is not usable here
    (2 when a name is unknown), so a script can check before starting lanes:
      spine backends bubblewrap && spine run --backend bubblewrap "..." -- make test
    """
    from spine.backends.registry import backend_info
    from spine.base.backend_names import backend_target, known_backend_names
    from spine.base.errors import ExitCode, NotARepository
    from spine.workspace.context import resolve_context

    settings: dict[str, dict[str, object]] = {}
    default = "local-worktree"
    try:
        ctx = resolve_context()
        settings, default = dict(ctx.config.backends), ctx.backend
    except NotARepository:
        pass  # outside a repository the defaults apply; listing still works
    for name in names:
        backend_target(name)  # unknown names are a usage error
    infos = [backend_info(name, settings.get(name, {})) for name in (names or known_backend_names())]
    code = ExitCode.ENVIRONMENT if names and not all(info.usable for info in infos) else ExitCode.OK
    if as_json:
        from spine.commands.output import emit, error_entry

        unusable = [
            error_entry(f"backend {info.name} is not usable here: {info.reason}", code)
            for info in infos
            if names and not info.usable
        ]
        return emit(
            {"default": default, "backends": [info.to_json() for info in infos]}, code, errors=unusable
        )
    else:
        width = max(len(info.name) for info in infos)
        for info in infos:
            mark = "*" if info.name == default else " "
            state = click.style("usable", fg="green") if info.usable else click.style("unusable", fg="red")
            detail = info.description if info.usable else (info.reason or "")
            plugin = " (plugin)" if info.source == "plugin" else ""
            click.echo(
                f"{mark} {info.name.ljust(width)}  {state.ljust(8 + len(state) - len(click.unstyle(state)))}  {detail}{plugin}"
            )
        click.echo(
            f"\n* default backend ({default}); choose one with --backend NAME or 'backend:' in .spine.yaml"
        )
    return code
