"""The JSON Schemas of the files a user writes and the result file spine writes.

``json_schema(which)`` is what ``spine schema config|batch|result`` prints. The schemas are generated
from the models that validate the files, so they accept what spine accepts.
"""

from __future__ import annotations

from typing import Any, Literal

Which = Literal["config", "batch", "result"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(which: Which | str) -> dict[str, Any]:
    """The JSON Schema of .spine.yaml (config), a batch file (batch) or result.json (result)."""
    if which == "config":
        from spine.model.config import full_config_model

        schema = full_config_model().model_json_schema(by_alias=True)
        schema["title"] = "spine configuration (.spine.yaml)"
    elif which == "batch":
        from spine.model.batch import BatchFile

        schema = BatchFile.model_json_schema(by_alias=True)
        schema["title"] = "spine batch file"
    elif which == "result":
        from spine.model.result import LaneResult

        schema = LaneResult.model_json_schema(by_alias=True)
        schema["title"] = "spine lane result (ExecutionLaneResult)"
    else:
        raise ValueError(f"no schema named {which!r}")
    schema["$schema"] = DIALECT
    _closed_patterns(schema)
    return schema


def _closed_patterns(node: Any) -> None:
    """A mapping whose keys must match a pattern (env names, modes) has no other keys."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _closed_patterns(value)
