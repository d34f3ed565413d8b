"""``spine schema config|result|batch``: JSON Schemas generated from the models."""

from __future__ import annotations

import json

import click


@click.command("schema")
@click.argument("which", type=click.Choice(["config", "result", "batch"]))
def command(which: str) -> int:
    """Print the JSON Schema of .spine.yaml (config), result.json (result) or a batch file (batch)."""
    from spine.model.schemas import json_schema

    click.echo(json.dumps(json_schema(which), indent=2))
    return 0
