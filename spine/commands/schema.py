"""``spine schema config|result``: JSON Schemas generated from the models."""

from __future__ import annotations

import json

import click


@click.command("schema")
@click.argument("which", type=click.Choice(["config", "result"]))
def command(which: str) -> int:
    """Print the JSON Schema of .spine.yaml (config) or of result.json (result)."""
    if which == "config":
        from spine.config import SpineConfig

        schema = SpineConfig.model_json_schema(by_alias=True)
        schema["title"] = "spine configuration (.spine.yaml)"
    else:
        from spine.result import LaneResult

        schema = LaneResult.model_json_schema(by_alias=True)
        schema["title"] = "spine lane result (ExecutionLaneResult)"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    click.echo(json.dumps(schema, indent=2))
    return 0
