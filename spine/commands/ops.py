"""``spine ops [ID] [--json]``: the operators configured in .spine.yaml."""

from __future__ import annotations

from typing import Any

import click

from spine.commands.complete import OPERATOR


@click.command("ops")
@click.argument("op_id", required=False, metavar="[ID]", shell_complete=OPERATOR)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: each operator with its resolved evidence.")
def command(op_id: str | None, as_json: bool) -> int:
    """List the operators (or show one): modes, inputs, timebox, acceptance checks, evidence."""
    from spine.base.ids import format_duration
    from spine.lane.binding import find_operator
    from spine.model.modes import mode_profile
    from spine.workspace.context import resolve_context

    ctx = resolve_context()
    config = ctx.config
    ops = [find_operator(config, op_id)] if op_id else list(config.operators)
    if as_json:
        data: list[dict[str, Any]] = []
        for op in ops:
            entry = op.model_dump(mode="json", exclude_none=True)
            entry["evidence"] = {
                mode.value: [
                    r.model_dump(mode="json", exclude_defaults=True)
                    for r in mode_profile(mode, config.mode_settings()).evidence
                ]
                + [r.model_dump(mode="json", exclude_defaults=True) for r in op.evidence]
                for mode in op.modes
            }
            data.append(entry)
        from spine.commands.output import camel_keys, emit

        return emit({"operators": camel_keys(data, keep=frozenset({"inputs", "env", "evidence"}))})
    if not ops:
        click.echo(
            "no operators configured; declare them under operators: in .spine.yaml (docs/operators.md)"
        )
        return 0
    for n, op in enumerate(ops):
        if n:
            click.echo("")
        click.echo(f"{op.id}: {op.name}" + (f" — {op.description}" if op.description else ""))
        rows: list[tuple[str, str]] = [
            ("modes", ", ".join(m.value for m in op.modes)),
            ("timebox", format_duration(op.timebox or 0)),
        ]
        if op.stall_timeout:
            rows.append(("stall", format_duration(op.stall_timeout)))
        for name, spec in op.inputs.items():
            flags = (
                "required"
                if spec.is_required
                else f"default {spec.default!r}"
                if spec.default is not None
                else "optional"
            )
            kind = f"choice of {'|'.join(spec.choices)}" if spec.type == "choice" else spec.type
            rows.append(
                (f"input {name}", f"{kind}, {flags}" + (f": {spec.description}" if spec.description else ""))
            )
        if op.outputs:
            rows.append(("outputs", ", ".join(op.outputs)))
        for check in op.acceptance:
            extra = (
                f" (expect exit {'/'.join(map(str, check.expect_exit))})" if check.expect_exit != [0] else ""
            )
            level = " [warn]" if check.severity == "warn" else ""
            rows.append((f"accept {check.name}", f"{check.command}{extra}{level}"))
        for mode in op.modes:
            rules = [*mode_profile(mode, config.mode_settings()).evidence, *op.evidence]
            rows.append((f"evidence {mode.value}", "; ".join(r.what() for r in rules) or "none"))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            click.echo(f"  {key.ljust(width)}  {value}")
        if not op_id:
            continue
        usage = " ".join(f"--input {name}=..." for name, s in op.inputs.items() if s.is_required)
        click.echo(f'\n  run it: spine run --op {op.id} {usage} "OBJECTIVE"'.replace('  "', ' "'))
    return 0
