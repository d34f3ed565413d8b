"""Values a user writes in ``.spine.yaml``, a batch file or a flag, and the one check of each.

Each check says why a value cannot work where spine uses it, so a bad value is refused when the file
is loaded (or the flag parsed), never when a lane runs: durations, environment variable names and
values, artifact globs, refs, and text in general (no NUL, valid UTF-8). The annotated types carry the
check and the JSON Schema of what they accept, so ``spine schema`` says the same as the loaders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, WithJsonSchema

from spine.base.ids import LONGEST_DURATION, parse_duration

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIABLE_PATTERN = _VARIABLE.pattern

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": LONGEST_DURATION},
                {
                    "type": "string",
                    "pattern": r"^(?=.*\d)\s*(\d+(\.\d+)?\s*h)?\s*(\d+(\.\d+)?\s*m)?\s*(\d+(\.\d+)?\s*s?)?\s*$",
                },
            ],
            "description": "seconds, or a duration such as 90s, 10m, 1h, 1h30m (at most a year)",
        }
    ),
]


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be passed to a process or a file name: a NUL, or text that is not UTF-8."""
    if "\0" in value:
        return "it contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8 text"
    return None


def text_problems(data: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(location, problem) for every string in parsed YAML/JSON ``data`` that ``text_problem`` refuses.

    Keys are checked too; a bad key is reported at the mapping that holds it.
    """
    if isinstance(data, str):
        problem = text_problem(data)
        if problem:
            yield loc, problem
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                yield loc, f"the key {key!r}: {problem}"
            yield from text_problems(value, (*loc, key if isinstance(key, str | int) else repr(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from text_problems(value, (*loc, index))


def variable_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an environment variable name, or None."""
    if not _VARIABLE.match(name):
        return f"{name!r} is not a variable name: use letters, digits and '_', not starting with a digit"
    return None


def artifact_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be an artifact glob (relative to the lane's worktree), or None."""
    if not pattern.strip():
        return "it is empty"
    problem = text_problem(pattern)
    if problem:
        return problem
    if pattern.startswith(("/", "~")):
        return "it is absolute; artifact globs are relative to the lane's worktree"
    parts = pattern.replace("\\", "/").split("/")
    if ".." in parts:
        return "it leaves the worktree ('..')"
    if all(part in ("", ".") for part in parts):
        return "it names the worktree itself, not files in it"
    if any("**" in part and part != "**" for part in parts):
        return "'**' must be a whole path component, e.g. 'reports/**/*.json'"
    try:
        # Whatever else pathlib cannot glob: it parses the pattern when the first match is asked for;
        # under a file that is not a directory there is nothing to scan.
        next(Path(os.devnull).glob(pattern), None)
    except (ValueError, NotImplementedError, IndexError, AttributeError) as exc:
        return f"it is not a glob pathlib can use ({exc})"
    return None


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot name a git revision (whatever the repository holds), or None."""
    if not ref.strip():
        return "it is empty"
    if ref.startswith("-"):
        return "it starts with '-' (git would read it as an option)"
    return text_problem(ref)


def _checked(check: Any, hint: str) -> Any:
    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(f"{problem}; {hint}" if hint else problem)
        return value

    return validate


def number_as_text(value: object) -> object:
    """An environment value given as a number is taken as text, as YAML wrote it (1 -> '1')."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


EnvName = Annotated[
    str,
    AfterValidator(_checked(variable_name_problem, "")),
    WithJsonSchema({"type": "string", "pattern": VARIABLE_PATTERN}),
]
EnvValue = Annotated[
    str,
    BeforeValidator(number_as_text),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}]}),
]
ArtifactGlob = Annotated[str, AfterValidator(_checked(artifact_problem, "e.g. 'reports/*.json'"))]
RefName = Annotated[str, AfterValidator(_checked(ref_problem, "name a branch, tag or commit, e.g. main"))]


def without_empty_keys(model: type[BaseModel], data: Any) -> Any:
    """A key left empty in YAML (every entry commented out) means its default, not null.

    Applies to the keys whose default is an empty list or mapping or a section (a default factory).
    """
    if not isinstance(data, dict):
        return data
    factories = {f.alias or name for name, f in model.model_fields.items() if f.default_factory is not None}
    return {key: value for key, value in data.items() if not (value is None and key in factories)}


def empty_keys_in_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON Schema side of ``without_empty_keys``: those keys may also be null."""
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.default_factory is None or key not in properties:
            continue
        prop = properties[key]
        kept = {k: prop.pop(k) for k in ("title", "description") if k in prop}
        properties[key] = {"anyOf": [prop, {"type": "null"}], **kept}
