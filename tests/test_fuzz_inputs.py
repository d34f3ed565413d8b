"""Property-based fuzzing of the two files a user writes: ``.spine.yaml`` and batch files.

Documents are drawn from the real keys with plausible, hostile and junk values, written as YAML or
JSON (sometimes truncated, sometimes with bytes that are not UTF-8), and loaded the way spine loads
them. The properties:

- loading never raises anything but ``ConfigError``/``UsageError`` (exit 2), and the message names the
  file and, for each problem, the key and the expected form;
- a document that loads only holds values that work where spine uses them (durations, templates,
  environment names and values, artifact globs, refs), so nothing fails later at run time;
- a document that loads is also valid under ``spine schema config|batch``.

The runs are derandomized with no example database, so CI runs the same fixed examples every time.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spine.base.errors import ConfigError, UsageError
from spine.lane.spec import artifact_problem, batch_lane_specs
from spine.model.batch import parse_batch, read_batch
from spine.model.config import COMMIT_TEMPLATE_FIELDS, SpineConfig, load_config
from spine.model.schemas import json_schema
from spine.model.state import LaneSpec

# Hypothesis warns when it renders a large strategy for its report; the strategies here are large.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

# --- values --------------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\0",
    "a\0b",
    "-x",
    "--help",
    "..",
    "../x",
    "/abs",
    "/etc/hostname",
    "~",
    "~/x",
    ".",
    "./",
    "a**",
    "**",
    "**/*.json",
    "reports/*.json",
    "[",
    "*/",
    "a//b",
    "10m",
    "1h30m",
    "90",
    "90s",
    "0",
    "-5",
    "soon",
    ".nan",
    "nan",
    "inf",
    "1e400",
    "{objective}",
    "{objective!x}",
    "{objective!r}",
    "{objective:d}",
    "{objective:>{branch}}",
    "{objective:{x}}",
    "{",
    "}",
    "{}",
    "{0}",
    "{objective.upper}",
    "{objective[0]}",
    "{{literal}}",
    "{run_id}-{lane_id}",
    "A=B",
    "=x",
    "PATH",
    "API_TOKEN",
    "1X",
    "X\0",
    "X Y",
    "\udcff",
    "caf\u00e9",
    "line\nbreak",
    "tab\there",
    "lane:a",
    "lane:",
    "lane:../x",
    "main",
    "HEAD",
    "HEAD~1",
    "refs/heads/main",
    "nosuch-ref",
    "local-worktree",
    "none",
    "bubblewrap",
    "docker",
    "nosuch-backend",
    "local-worktre",
    "PIPELINE",
    "pipeline",
    " Pipeline ",
    "contract",
    "auto",
    "bogus-mode",
    "true",
    "yes",
    "off",
    "1",
    "skip",
    "update",
]
texts = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=12)
numbers = (
    st.integers(min_value=-3, max_value=10**6)
    | st.sampled_from([0.0, -1.5, 1.5, 1e300, math.inf, -math.inf, math.nan])
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | texts
keys = st.sampled_from(["a", "X", "name", "command", "1", "", "A=B", "id"]) | st.text(max_size=6)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def pick(
    hostile: bool, good: list[Any], bad: list[Any] = (), *, more: st.SearchStrategy[Any] = texts
) -> st.SearchStrategy[Any]:
    """The good values; in a hostile document also the bad ones and arbitrary text."""
    if not hostile:
        return st.sampled_from(good)
    return st.sampled_from([*good, *bad]) | more


def documents(hostile: bool) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(.spine.yaml documents, batch documents), drawn from the real keys.

    Hostile documents hold wrong values and, one value in eight, junk of any type; the others hold
    values spine should accept, so what spine accepts is explored as widely as what it refuses.
    """

    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if not hostile:
            return strategy
        return st.integers(0, 7).flatmap(lambda n: junk if n == 0 else strategy)

    durations = maybe(
        pick(
            hostile,
            ["10m", "1h", "1h30m", "90s", 90, 2.5, None],
            ["0", 0, -5, math.nan, math.inf, ".nan", "soon", "9999999h"],
            more=numbers,
        )
        | (
            st.lists(st.integers(1, 9), max_size=2)
            | st.dictionaries(st.sampled_from(["m", "s"]), st.integers(1, 9), max_size=2)
            if hostile
            else st.nothing()
        )
    )
    words = pick(hostile, ["fix the parser", "make test", "caf\u00e9 au lait", "a|b", "tabs\tand\rreturns"])
    text_lists = maybe(st.lists(words, max_size=3))
    env_names = pick(hostile, ["PYTHONUNBUFFERED", "API_TOKEN", "_ok", "X1"], ["A=B", "X\0", "1X", "", "X Y"])
    env_values = (
        words
        | st.integers(0, 99)
        | st.floats(allow_nan=False, allow_infinity=False)
        | (st.booleans() | st.none() | junk if hostile else st.nothing())
    )
    env_maps = maybe(st.dictionaries(env_names, env_values, max_size=3))
    globs = maybe(
        st.lists(
            pick(
                hostile,
                ["reports/*.json", "out.txt", "**/*.log", "a/b/c"],
                ["/etc/hostname", "../x", "", "a**", ".", "./", "~/x", "a\0b"],
            ),
            max_size=3,
        )
    )
    refs = maybe(pick(hostile, ["main", "HEAD", "HEAD~1"], ["nosuch", "", "-x", "a\0b", "a b", "\udcff"]))
    templates = maybe(
        pick(
            hostile,
            [
                "{objective}",
                "{objective!r}",
                "{run_id}-{lane_id}",
                "{{literal}}",
                "{objective:>60}",
                "no fields",
            ],
            [h for h in HOSTILE_TEXT if "{" in h or "}" in h],
        )
    )
    pointers = maybe(
        pick(
            hostile,
            ["inspect {log}", "rerun {op} on {branch}", "no fields"],
            ["{objective}", "{", "two\nlines", "{log!x}"],
        )
    )
    bools = maybe(st.booleans() | (st.sampled_from(["true", "yes", 1, 0, None]) if hostile else st.nothing()))
    check_names = pick(hostile, ["tests", "lint", "a|b", "smoke"])
    check = maybe(
        st.fixed_dictionaries(
            {"name": maybe(check_names), "command": maybe(words)},
            optional={"timeout": durations, **({"cmd": texts} if hostile else {})},
        )
    )
    checks = maybe(
        st.lists(check, max_size=3, unique_by=lambda c: repr(c.get("name") if isinstance(c, dict) else c))
    )
    mode_names = pick(hostile, ["PIPELINE", "pipeline", " Toolsmith ", "SERVICE", "contact"], ["bogus", ""])
    modes = maybe(mode_names)
    evidence_rule = maybe(
        st.fixed_dictionaries(
            {
                "id": maybe(pick(hostile, ["rows", "repro"])),
                "kind": maybe(st.sampled_from(["artifact", "check"])),
            },
            optional={
                "glob": maybe(words | st.lists(words, max_size=2)),
                "name": text_lists,
                "required": bools,
                "command": maybe(pick(hostile, ["smoke", "ok"], ["(", "[a-"])),
                "min_count": maybe(pick(hostile, [1, 2], [0, -1, "2"])),
            },
        )
    )
    acceptance = maybe(
        pick(hostile, ["test -n x", "make check"], ["", " "])
        | st.fixed_dictionaries(
            {"name": maybe(pick(hostile, ["rows"])), "command": maybe(words)},
            optional={
                "expect_exit": maybe(st.integers(0, 3) | st.lists(st.integers(0, 3), min_size=1, max_size=2)),
                "severity": maybe(pick(hostile, ["fail", "warn"], ["bogus"])),
                "timeout": durations,
            },
        )
    )
    operator = maybe(
        st.fixed_dictionaries(
            {
                "id": maybe(pick(hostile, ["ingest", "op-1"], ["bad/id", ""])),
                "name": maybe(words),
                "modes": maybe(
                    st.lists(modes, min_size=1, max_size=2) | (modes if hostile else st.nothing())
                ),
                "timebox": durations,
                "acceptance": maybe(st.lists(acceptance, min_size=1, max_size=1)),
                "command": maybe(pick(hostile, ["echo {{source}}", "make"], ["echo {{nope}}"])),
                "inputs": maybe(
                    st.fixed_dictionaries(
                        {
                            "source": maybe(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "type": maybe(pick(hostile, ["string", "path"], ["bogus", "choice"])),
                                        "default": maybe(pick(hostile, ["data/in.csv"], [1, True, None])),
                                        "pattern": maybe(pick(hostile, ["[a-z/.]+", ".*"], ["("])),
                                    },
                                )
                            )
                        }
                    )
                ),
            },
            optional={
                "outputs": globs,
                "stall_timeout": durations,
                "env": env_maps,
                "evidence": maybe(st.lists(evidence_rule, max_size=2)),
                "next": pointers,
                "failure_paths": maybe(
                    st.fixed_dictionaries({}, optional={"timeout": pointers, "stall": pointers})
                ),
                **({"steps": text_lists} if hostile else {}),
            },
        )
    )
    config = st.fixed_dictionaries(
        {},
        optional={
            "base": refs,
            "target": refs,
            "backend": maybe(pick(hostile, ["local-worktree", "none"], ["nosuch", "local-worktre", ""])),
            "worktree_root": maybe(pick(hostile, ["../lanes", None], [""])),
            "timeout": durations,
            "idle_timeout": durations,
            "stall_timeout": durations,
            "lock_timeout": maybe(pick(hostile, ["2m", 30], [None, 0])),
            "env": maybe(env_maps | (st.none() if not hostile else st.nothing())),
            "env_passthrough": maybe(st.lists(env_names, max_size=2) | st.none()),
            "network": bools,
            "checks_on_host": bools,
            "setup": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "copy": text_lists,
                        "commands": text_lists,
                        "submodules": maybe(pick(hostile, ["skip", "update"], ["Update"])),
                        **({"copy_files": text_lists} if hostile else {}),
                    },
                )
                | st.none()
            ),
            "commit": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "message": templates,
                        "author_name": maybe(words),
                        "author_email": maybe(words),
                    },
                )
            ),
            "artifacts": globs,
            "checks": checks,
            "gate": maybe(st.fixed_dictionaries({}, optional={"into": refs, "checks": checks})),
            "gc": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "retention_days": maybe(pick(hostile, [30, 0.5, None], [0, -1, "30"], more=numbers))
                    },
                )
            ),
            "pool": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "enabled": bools,
                        "size": maybe(pick(hostile, [1, 4, 64], [0, 65, "4", 4.0, 4.5])),
                        "keep": maybe(
                            st.lists(
                                pick(hostile, ["node_modules/", ".venv/"], ["!x", "", ".git", "../x"]),
                                max_size=2,
                            )
                        ),
                    },
                )
            ),
            "backends": maybe(
                st.dictionaries(
                    pick(hostile, ["docker"]), st.dictionaries(st.sampled_from(["image"]), words), max_size=1
                )
            ),
            "operators": maybe(
                st.lists(
                    operator, max_size=2, unique_by=lambda o: repr(o.get("id") if isinstance(o, dict) else o)
                )
            ),
            "modes": maybe(
                st.dictionaries(
                    mode_names,
                    maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "keywords": text_lists,
                                "stop_rule": pointers,
                                "evidence": maybe(st.lists(evidence_rule, max_size=1)),
                            },
                        )
                    ),
                    max_size=2,
                )
            ),
            **({"tiemout": texts} if hostile else {}),
        },
    )
    lane = st.fixed_dictionaries(
        {
            "id": maybe(pick(hostile, ["a", "b", "c", "lane_2"], ["bad/id", "-x", "", 12])),
            "objective": maybe(words),
            "command": maybe(
                pick(hostile, ["make test", ["echo", "hi"], "./run.sh --task x"])
                | st.lists(words, min_size=1, max_size=3)
            ),
        },
        optional={
            "base": maybe(
                refs
                | st.sampled_from(["lane:a", "lane:b"])
                | (st.sampled_from(["lane:", "lane:../x"]) if hostile else st.nothing())
            ),
            "backend": maybe(pick(hostile, ["local-worktree", "none"], ["nosuch", ""])),
            "mode": modes,
            "timeout": durations,
            "idle_timeout": durations,
            "stall_timeout": durations,
            "env": env_maps,
            "checks": maybe(st.lists(words | check, max_size=2)),
            "artifacts": globs,
            "needs": maybe(
                st.lists(
                    st.sampled_from(["a", "b", "c"] + (["zz"] if hostile else [])), max_size=2, unique=True
                )
            ),
            "keep_worktree": bools,
            "env_passthrough": maybe(st.lists(env_names, max_size=2)),
            "network": bools,
            "commit_in_place": bools,
            "checks_on_host": bools,
            **(
                {
                    "extra": texts,
                    "op": st.sampled_from(["ingest", "nosuch"]),
                    "inputs": st.dictionaries(st.sampled_from(["source", "nope"]), scalars, max_size=2),
                }
                if hostile
                else {}
            ),
        },
    )
    op_lane = st.fixed_dictionaries(
        {
            "id": pick(hostile, ["d", "e"]),
            "op": maybe(pick(hostile, ["ingest"], ["nosuch"])),
            "inputs": maybe(
                st.fixed_dictionaries(
                    {"source": maybe(pick(hostile, ["data/in.csv", "x"], ["/abs", "../x", 3]))}
                )
            ),
        },
        optional={
            "objective": maybe(words),
            "mode": maybe(pick(hostile, ["PIPELINE", "pipeline"], ["CONTACT"])),
        },
    )
    lanes = st.lists(
        maybe(lane | op_lane),
        min_size=0 if hostile else 1,
        max_size=4,
        unique_by=lambda entry: repr(entry.get("id") if isinstance(entry, dict) else entry),
    )
    batch = maybe(st.fixed_dictionaries({"lanes": maybe(lanes)}, optional={"other": junk} if hostile else {}))
    return config, batch


hostile_config, hostile_batch = documents(hostile=True)
good_config, good_batch = documents(hostile=False)
config_docs = hostile_config | good_config
batch_docs = hostile_batch | good_batch


@st.composite
def encoded(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> tuple[bytes, str]:
    """A document as the bytes of a file (YAML or JSON, sometimes damaged) and the file's suffix."""
    doc = draw(docs)
    form = draw(st.sampled_from(["yaml", "yaml", "json", "truncated", "bytes"]))
    if form == "json":
        try:
            return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"), ".json"
        except (TypeError, ValueError):
            form = "yaml"
    text = yaml.safe_dump(doc, allow_unicode=True)
    data = text.encode("utf-8", "surrogatepass")
    if form == "truncated" and len(data) > 2:
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif form == "bytes":
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3(", b"\x00", b"\xed\xa0\x80", b"\r", b"\t"]))
            + data[at:]
        )
    return data, ".yaml"


# --- what a loaded value must be able to do --------------------------------------------------------

PROBLEM_PREFIXES = (
    "key '",
    "unknown key '",
    "invalid YAML",
    "invalid JSON",
    "the top level",
    "cannot read",
    "the batch is empty",
    "lane ",
    "dependency cycle",
    "not valid UTF-8",
)


def assert_names_file_and_keys(message: str, source: str) -> None:
    """The message starts with the file; each problem line says where (a key, a lane, the syntax)."""
    assert source in message, message
    head, _, rest = message.partition(f"{source}: ")
    assert not head.strip(), message
    lines = [rest] if "problems:\n" not in rest else rest.split("\n  - ")[1:]
    for line in lines:
        assert line.startswith(PROBLEM_PREFIXES), f"problem names no key: {line!r} in\n{message}"


def assert_duration(value: float | None) -> None:
    assert value is None or (math.isfinite(value) and value > 0), value


def assert_text(value: str) -> None:
    assert "\0" not in value, value
    value.encode("utf-8")


def assert_env(env: dict[str, str]) -> None:
    for name, value in env.items():
        assert name and "=" not in name and "\0" not in name, name
        assert_text(name)
        assert isinstance(value, str)
        assert_text(value)


def assert_globs(patterns: list[str], empty: Path) -> None:
    for pattern in patterns:
        assert artifact_problem(pattern) is None, pattern
        list(empty.glob(pattern))  # what collect_artifacts does; must not raise


def assert_ref(ref: str | None) -> None:
    if ref is not None:
        assert ref.strip() and "\0" not in ref and not ref.startswith("-"), ref
        assert_text(ref)


def assert_usable_config(config: SpineConfig, empty: Path) -> None:
    for value in (config.timeout, config.idle_timeout, config.stall_timeout, config.lock_timeout):
        assert_duration(value)
    for check in [*config.checks, *config.gate.checks]:
        assert_duration(check.timeout)
        assert_text(check.command)
    config.commit.message.format(**{name: "x" for name in COMMIT_TEMPLATE_FIELDS})
    assert_env(config.env)
    assert_globs(config.artifacts, empty)
    for ref in (config.base, config.target, config.gate.into):
        assert_ref(ref)
    for op in config.operators:
        assert_env(op.env)
        assert_globs(op.outputs, empty)
        assert_duration(op.timebox)
        assert_duration(op.stall_timeout)


def assert_usable_spec(spec: LaneSpec, empty: Path) -> None:
    for value in (spec.timeout, spec.idle_timeout, spec.stall_timeout):
        assert_duration(value)
    assert_env(spec.env)
    assert_globs(spec.artifacts, empty)
    assert_ref(spec.base)
    assert_text(spec.objective)
    for arg in [spec.command] if isinstance(spec.command, str) else spec.command:
        assert_text(arg)
    for check in spec.checks:
        assert_text(check.command)


def schema_validator(which: str) -> jsonschema.protocols.Validator:
    schema = json_schema(which)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


CONFIG_SCHEMA = schema_validator("config")
BATCH_SCHEMA = schema_validator("batch")


def parsed(data: bytes) -> Any:
    return yaml.safe_load(data.decode("utf-8"))


# --- the properties ---------------------------------------------------------------------------------


@FUZZ
@given(encoded(config_docs))
def test_config_loader_never_crashes_and_accepts_only_usable_values(
    tmp_path: Path, file: tuple[bytes, str]
) -> None:
    data, _ = file
    path = tmp_path / ".spine.yaml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert exc.exit_code == 2
        assert_names_file_and_keys(exc.message, str(path))
        return
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    assert_usable_config(config, empty)
    raw = parsed(data)
    if raw is not None:
        CONFIG_SCHEMA.validate(raw)


@pytest.fixture(scope="module")
def batch_config(tmp_path_factory: pytest.TempPathFactory) -> SpineConfig:
    """A config with an operator, so batch lanes with `op: ingest` resolve."""
    path = tmp_path_factory.mktemp("cfg") / ".spine.yaml"
    path.write_text(
        "operators:\n"
        "  - id: ingest\n    name: Ingest\n    modes: [PIPELINE]\n    timebox: 10m\n"
        "    inputs: {source: {type: path}}\n    command: cat {{source}}\n    acceptance: [test -n x]\n"
    )
    return load_config(path)


@FUZZ
@given(file=encoded(batch_docs))
def test_batch_loader_never_crashes_and_accepts_only_usable_values(
    tmp_path: Path, batch_config: SpineConfig, file: tuple[bytes, str]
) -> None:
    from spine.base.backend_names import known_backend_names

    data, suffix = file
    path = tmp_path / f"lanes{suffix}"
    path.write_bytes(data)
    source = str(path)
    try:
        name, raw = read_batch(source)
        batch = parse_batch(raw, name, known_backend_names())
        specs = batch_lane_specs(batch, batch_config, name)
    except UsageError as exc:
        assert exc.exit_code == 2
        assert_names_file_and_keys(exc.message, source)
        return
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    for spec in specs:
        assert_usable_spec(spec, empty)
    BATCH_SCHEMA.validate(raw)


def test_the_fuzz_strategies_reach_valid_documents(batch_config: SpineConfig) -> None:
    """The properties above say something only if many drawn documents load; check that they do."""
    from spine.model.config import validate_config

    loaded = {"config": 0, "batch": 0}

    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def count(data: st.DataObject) -> None:
        with contextlib.suppress(ConfigError):
            validate_config(data.draw(good_config), "x")
            loaded["config"] += 1
        with contextlib.suppress(UsageError):
            batch_lane_specs(parse_batch(data.draw(good_batch), "x"), batch_config, "x")
            loaded["batch"] += 1

    count()
    assert loaded["config"] >= 100 and loaded["batch"] >= 60, loaded
