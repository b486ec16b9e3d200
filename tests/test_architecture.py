"""The package's import graph keeps its layers: read with ``ast`` (nothing is imported, no
TensorFlow), every ``import`` and ``from ... import`` of every module of ``deepcurator``
counted, function-level and ``TYPE_CHECKING`` ones included, relative ones resolved; a
dynamic ``importlib.import_module(...)`` counts as importing the module it names, or, for an
f-string such as ``f"deepcurator.commands.{name}"``, every module under the named package.

It fails on

- an import cycle between modules (each cycle is reported as a path ``a -> b -> a``);
- a forbidden edge (see :data:`LAYERS` and :data:`MAY_IMPORT`): a foundation importing a
  stage or the commands, a stage importing another stage (serving importing training named
  as such), anything outside the commands layer importing ``deepcurator.cli`` or
  ``deepcurator.commands``;
- a module that no row of :data:`LAYERS` covers (a new subpackage must be given a layer).

To see it fail on the real package, add an import that breaks a rule and run
``pytest tests/test_architecture.py``, for instance ``from deepcurator.serving import
scoring`` in deepcurator/training/report.py (a stage importing another stage), or
``from deepcurator import cli`` in deepcurator/store.py (a foundation importing the commands
and, through them, a cycle). :func:`test_the_checker_finds_cycles_and_forbidden_edges` runs
the checker on a small package with deliberate faults, so a checker that finds nothing
cannot pass unnoticed.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.cli import REPO

# The layer table: which layer each part of the package is in, by module name. A module
# belongs to the row of the longest name that is the module itself or a package above it.
#
# - "foundation": deepcurator itself and every module directly under deepcurator/ that is
#   not listed here (errors, config, store, audio, features, ...: the row "deepcurator");
#   only a module directly under deepcurator/ may fall to that row, so a new subpackage
#   fails the test until it has a row of its own.
# - "container": a package that only groups stages (its __init__ holds a docstring).
# - "stage": each row is one stage; modules of one stage may import each other.
# - "commands": the command line: deepcurator.cli, deepcurator.commands.*, __main__.
LAYERS: dict[str, str] = {
    "deepcurator": "foundation",
    "deepcurator.stages": "container",
    "deepcurator.stages.labels": "stage",
    "deepcurator.stages.download": "stage",
    "deepcurator.stages.process": "stage",
    "deepcurator.discogs": "stage",
    "deepcurator.training": "stage",
    "deepcurator.serving": "stage",
    "deepcurator.demo": "stage",
    "deepcurator.cli": "commands",
    "deepcurator.commands": "commands",
    "deepcurator.__main__": "commands",
}

# Which layers each layer may import ("stage" here means: the importer's own stage only).
MAY_IMPORT: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "container": {"foundation"},
    "stage": {"foundation", "container", "stage"},
    "commands": {"foundation", "container", "stage", "commands"},
}

# Forbidden edges worth their own words (by row of LAYERS): importer row -> imported row.
NAMED_EDGES: dict[tuple[str, str], str] = {
    ("deepcurator.serving", "deepcurator.training"):
        "serving imports training: the server loads a saved model and must run without the trainer's code",
}


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # module name (a module of the package)
    line: int


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file for every .py file of the package at ``root`` (its folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([package, *parts])] = path
    return names


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import of the module ``name`` (file ``path``) that reaches a module of ``modules``:
    ``from P import x`` is an import of ``P.x`` when that is a module, else of ``P``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            targets = _dynamic_targets(node.args[0], modules)
        for target in targets:
            while target and target not in modules:  # import a.b.c where a.b.c is a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append(Import(name, target, node.lineno))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module``, ``import_module`` or ``__import__``."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def _dynamic_targets(arg: ast.expr, modules: Mapping[str, Path]) -> list[str]:
    """The modules a dynamic import may load: the literal name, or for an f-string, every
    module under the package its literal head names (``f"deepcurator.commands.{name}"``:
    each command module)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr):
        head = ""
        for part in arg.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            head += part.value
        package = head.rpartition(".")[0]
        return sorted(m for m in modules if package and m.startswith(package + ".")) if package else []
    return []


def row_of(module: str, path: Path, layers: Mapping[str, str], package: str) -> str | None:
    """The row of ``layers`` that ``module`` (file ``path``) belongs to, or None when no row
    covers it: the package's own row only takes the package itself and the plain modules
    directly in it, not a subpackage or what is in one."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in layers:
            if prefix == package and (len(parts) > 2 or (len(parts) == 2 and path.name == "__init__.py")):
                return None
            return prefix
    return None


def find_cycles(graph: Mapping[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """``(group, cycle)`` for each strongly connected group of modules (Tarjan): the group's
    modules, and one shortest cycle through its first module (``[a, b, ..., a]``)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for group in groups:  # a shortest path back to the group's first module, by breadth-first search
        members, start = set(group), group[0]
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, ())):
                    if w in members and w not in previous:
                        previous[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        v = previous[start]
        while v != start:
            path.append(v)
            v = previous[v]
        path.append(start)
        cycles.append((group, path[::-1]))
    return cycles


def check(root: Path, package: str, layers: Mapping[str, str] = LAYERS,
          may_import: Mapping[str, set[str]] = MAY_IMPORT,
          named: Mapping[tuple[str, str], str] = NAMED_EDGES) -> list[str]:
    """Every problem of the package at ``root``, one line each (empty when it keeps its layers)."""
    modules = module_names(root, package)
    problems = []
    graph: dict[str, set[str]] = defaultdict(set)
    edge_at: dict[tuple[str, str], str] = {}  # (importer, imported) -> "file:line" of its first import
    rows = {m: row_of(m, path, layers, package) for m, path in modules.items()}
    for module, row in sorted(rows.items()):
        if row is None:
            problems.append(f"unclassified module {module}: give it a row in LAYERS")
    for module, path in sorted(modules.items()):
        for imp in imports_of(module, path, modules):
            graph[module].add(imp.target)
            edge_at.setdefault((module, imp.target), f"{path.relative_to(root.parent)}:{imp.line}")
            src, dst = rows[module], rows[imp.target]
            if src is None or dst is None:
                continue
            where = f"{edge_at[module, imp.target]}: {module} imports {imp.target}"
            src_layer, dst_layer = layers[src], layers[dst]
            if (src, dst) in named:
                problems.append(f"{where} ({named[src, dst]})")
            elif dst_layer == "commands" and src_layer != "commands":
                problems.append(f"{where} (only the commands layer may import the commands layer)")
            elif dst_layer not in may_import[src_layer]:
                problems.append(f"{where} (a {src_layer} must not import a {dst_layer})")
            elif src_layer == dst_layer == "stage" and src != dst:
                problems.append(f"{where} (a stage must not import another stage: {src} -> {dst})")
    for group, cycle in find_cycles(graph):
        lines = ", ".join(edge_at[a, b] for a, b in itertools.pairwise(cycle))
        others = sorted(set(group) - set(cycle))
        problems.append("import cycle: " + " -> ".join(cycle) + f" ({lines})"
                        + (f"; in the same knot: {', '.join(others)}" if others else ""))
    return problems


def test_the_package_keeps_its_layers_and_has_no_import_cycle() -> None:
    problems = check(REPO / "deepcurator", "deepcurator")
    assert not problems, "\n".join(["", *problems])


def test_the_layer_table_names_real_modules() -> None:
    """Every row of LAYERS is a module or package of deepcurator (no stale rows)."""
    modules = module_names(REPO / "deepcurator", "deepcurator")
    assert [row for row in LAYERS if row not in modules] == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_cycles_and_forbidden_edges(tmp_path: Path) -> None:
    """A package with one fault of each kind: each is reported, and nothing else."""
    _write(tmp_path, {
        "fake/__init__.py": "",
        "fake/errors.py": "class Oops(Exception): ...\n",
        "fake/config.py": "from fake.errors import Oops\n\ndef load():\n    from fake import store  # function level\n",
        "fake/store.py": "from . import config\nfrom .errors import Oops\n",  # relative; with config: a cycle
        "fake/audio.py": "import fake.stages.one\n",  # a foundation importing a stage
        "fake/stages/__init__.py": "",
        "fake/stages/one.py": "from fake.stages import two\nfrom fake import errors\n",  # a stage importing another
        "fake/stages/two.py": "from fake.errors import Oops\n",
        "fake/serving/__init__.py": "",
        "fake/serving/app.py": "from .scoring import score\n",  # within one stage: fine
        "fake/serving/scoring.py": "from ..training.model import build\n\ndef score(): ...\n",
        "fake/training/__init__.py": "",
        "fake/training/model.py": "def build():\n    from fake.commands import go\n",  # a stage importing commands
        "fake/cli.py": "from fake.stages import one\nCOMMANDS = {}\n",
        "fake/commands/__init__.py": "",
        "fake/commands/go.py": "from fake.cli import COMMANDS\n",  # commands importing commands: fine
        "fake/extra/__init__.py": "",  # a subpackage no row covers
        "fake/extra/thing.py": "",
    })
    layers = {
        "fake": "foundation", "fake.stages": "container", "fake.stages.one": "stage", "fake.stages.two": "stage",
        "fake.serving": "stage", "fake.training": "stage", "fake.cli": "commands", "fake.commands": "commands",
    }
    named = {("fake.serving", "fake.training"): "serving imports training"}
    problems = check(tmp_path / "fake", "fake", layers, MAY_IMPORT, named)
    expected = [
        "unclassified module fake.extra: give it a row in LAYERS",
        "unclassified module fake.extra.thing: give it a row in LAYERS",
        "fake/audio.py:1: fake.audio imports fake.stages.one (a foundation must not import a stage)",
        "fake/serving/scoring.py:1: fake.serving.scoring imports fake.training.model (serving imports training)",
        "fake/stages/one.py:1: fake.stages.one imports fake.stages.two"
        " (a stage must not import another stage: fake.stages.one -> fake.stages.two)",
        "fake/training/model.py:2: fake.training.model imports fake.commands.go"
        " (only the commands layer may import the commands layer)",
        "import cycle: fake.config -> fake.store -> fake.config (fake/config.py:4, fake/store.py:1)",
    ]
    assert problems == expected


def test_the_checker_reports_a_cycle_through_the_commands(tmp_path: Path) -> None:
    """A command module importing a helper from cli.py, which loads the commands by name
    (``importlib.import_module`` of an f-string): a cycle, and nothing else (the commands
    layer may import itself)."""
    _write(tmp_path, {
        "fake/__init__.py": "",
        "fake/cli.py": "import importlib\n\ndef load(name):\n"
                       "    return importlib.import_module(f'fake.commands.{name}')"
                       "\n\ndef int_in(lo, hi): ...\n",
        "fake/commands/__init__.py": "",
        "fake/commands/go.py": "from fake.cli import int_in\n",
    })
    problems = check(tmp_path / "fake", "fake", {"fake": "foundation", "fake.cli": "commands",
                                                 "fake.commands": "commands"})
    assert problems == ["import cycle: fake.cli -> fake.commands.go -> fake.cli (fake/cli.py:4, fake/commands/go.py:1)"]


def test_tests_and_benches_import_helpers_the_supported_way() -> None:
    """Tests import helpers from ``tests.helpers`` (never ``conftest`` or the old flat helper
    modules) and ask for fixtures by name; bench scripts import nothing from ``tests``."""
    old = {"conftest", "audio_fixtures", "audio_server", "serve_helpers", "train_fixtures", "discogs_fixtures"}
    bad = []
    for folder, forbidden in ((REPO / "tests", old | {f"tests.{m}" for m in old}), (REPO / "bench", {"tests"})):
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                for n in names:
                    if n in forbidden or n.split(".")[0] in forbidden:
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {n}")
    assert bad == []
