"""``spine schema config|result``: JSON Schemas generated from the models."""

from __future__ import annotations

import json

import click


@click.command("schema")
@click.argument("which", type=click.Choice(["config", "result", "batch"]))
def command(which: str) -> int:
    """Print the JSON Schema of .spine.yaml (config), result.json (result) or a batch file (batch)."""
    if which == "config":
        from spine.model.config import full_config_model

        schema = full_config_model().model_json_schema(by_alias=True)
        schema["title"] = "spine configuration (.spine.yaml)"
    elif which == "batch":
        from spine.model.batch import BatchFile

        schema = BatchFile.model_json_schema(by_alias=True)
        schema["title"] = "spine batch file"
    else:
        from spine.model.result import LaneResult

        schema = LaneResult.model_json_schema(by_alias=True)
        schema["title"] = "spine lane result (ExecutionLaneResult)"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    click.echo(json.dumps(schema, indent=2))
    return 0
