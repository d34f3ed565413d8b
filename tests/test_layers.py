"""The shape of the code: imports only go down the layers, no module imports itself back, and only
the execution context derives state paths and the names of spine's refs (docs/adr/0001)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import modules of its own layer or of layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("spine.base",)),
    ("model", ("spine.model",)),
    ("workspace", ("spine.workspace",)),
    ("backends", ("spine.backends", "spine.adapters")),
    ("lane", ("spine.lane",)),
    ("drive", ("spine.drive",)),
    ("landing", ("spine.landing",)),
    ("maintenance", ("spine.maintenance",)),
    ("api", ("spine.api", "spine.views")),
    ("interface", ("spine.commands", "spine.cli", "spine.__main__")),
]


def modules() -> dict[str, Path]:
    """Every module of spine (adapters/ installs as spine.adapters), by dotted name."""
    found = {}
    for base, package in ((ROOT / "spine", "spine"), (ROOT / "adapters", "spine.adapters")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    return skip


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The spine modules ``module`` imports: at module level and inside functions, not for type checking."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in (module, "spine"):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if name != "spine" and layer_of(name) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS and docs/adr/0001): {unplaced}"


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for module, targets in graph().items():
        here = layer_of(module)
        if here is None:
            continue
        for target in targets:
            there = layer_of(target)
            if there is not None and there > here:
                upward.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert not upward, "imports that climb the layers:\n" + "\n".join(sorted(upward))


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_the_layer_checks_see_an_upward_import() -> None:
    """The checks above read real imports: a planted one that climbs is found."""
    known = modules()
    planted = ROOT / "spine" / "base" / "errors.py"
    tree_imports = imports("spine.base.errors", planted, known)
    assert all(layer_of(t) == 0 for t in tree_imports)
    fake = ROOT / "tests" / "_layer_probe.py"
    fake.write_text("def f():\n    from spine.drive.loop import Driver\n    return Driver\n")
    try:
        assert imports("spine.base.probe", fake, known) == {"spine.drive.loop"}
    finally:
        fake.unlink()


# --- one resolver of paths and names --------------------------------------------------------------

# Building a path under the state directory by hand, or a name of spine's refs.
_STATE_PATH = re.compile(r"(\.state\.\w+(\([^)]*\))?|\brun_dir|\bstate_dir|\.root)\s*/\s*[\"f]")
_REF_NAME = re.compile(r"[\"'](spine/\{|refs/spine)|f[\"']spine/")


def test_only_the_context_derives_state_paths_and_ref_names() -> None:
    offenders = []
    for name, path in modules().items():
        if name == "spine.workspace.context":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _STATE_PATH.search(code) or _REF_NAME.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "paths or ref names built outside spine.workspace.context:\n" + "\n".join(offenders)


def test_the_path_check_sees_a_hand_built_path() -> None:
    assert _STATE_PATH.search('log = ctx.state.run_dir(run_id) / "output.log"')
    assert _STATE_PATH.search('x = store.run_dir / "attempts"')
    assert _REF_NAME.search('branch = f"spine/{run_id}/{lane_id}"')
    assert _REF_NAME.search('prefix = "refs/spine/attempts"')
    assert not _STATE_PATH.search("path = ctx.state.result_file(run_id, lane_id)")


def test_nothing_imports_adapters_as_a_top_level_package() -> None:
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "adapters" for a in node.names):
                offenders.append(name)
            if (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and (node.module or "").split(".")[0] == "adapters"
            ):
                offenders.append(name)
    assert not offenders
