"""``spine context``: print the resolved ExecutionContext."""

from __future__ import annotations

import click

from spine.commands.complete import BACKEND


@click.command("context")
@click.option("--base", metavar="REF", help="Override the base ref.")
@click.option("--target", metavar="REF", help="Override the target ref.")
@click.option("--backend", metavar="NAME", shell_complete=BACKEND, help="Override the backend.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(base: str | None, target: str | None, backend: str | None, as_json: bool) -> int:
    """Show where everything lives: repository, refs, state directory, worktree root, config, backend."""
    from spine.workspace.context import resolve_context

    ctx = resolve_context(base=base, target=target, backend=backend)
    if as_json:
        from spine.commands.output import emit

        return emit(ctx.to_json())
    rows = [
        ("repository", f"{ctx.repo.name} ({ctx.repo.id})"),
        ("primary checkout", str(ctx.repo.primary_checkout)),
        ("git common dir", str(ctx.repo.git_common_dir)),
        (
            "current worktree",
            f"{ctx.workspace.current_worktree}" + (" (primary)" if ctx.workspace.is_primary else " (linked)"),
        ),
        ("base", f"{ctx.refs.base_ref} {ctx.refs.base_sha[:12]}"),
        ("target", f"{ctx.refs.target_ref} {ctx.refs.target_sha[:12]}"),
        ("state dir", str(ctx.state.root)),
        ("worktree root", str(ctx.workspace.worktree_root)),
        (
            "config",
            str(ctx.config_path)
            if ctx.config_found
            else f"none ({ctx.config_path.name} not found; defaults)",
        ),
        ("backend", ctx.backend),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
    return 0
