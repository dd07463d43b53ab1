"""Imports point one way: down the layer order that docs/design.md states (its ```layers block).

Every project import in `r2r_jax/` is walked from the source with `ast` — module level, inside functions and
under `TYPE_CHECKING` alike — so a new upward or sideways import, or an import cycle, fails here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r2r_jax"
DESIGN = ROOT / "docs" / "design.md"


def layer_table(text: str) -> dict[str, int]:
    """top-level part (package or module of r2r_jax) -> layer index, from design.md's ```layers block."""
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/design.md has no ```layers block"
    table: dict[str, int] = {}
    for index, line in enumerate(block.group(1).strip().splitlines()):
        _, parts = line.split(":", 1)
        for part in parts.split():
            assert part not in table, f"{part} is in two layers"
            table[part] = index
    return table


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    local: bool  # inside a function body
    commented: bool  # a line of the import statement carries a comment


def _resolve(source: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """Project modules an import statement loads (a `from package import module` names the module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = source.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("r2r_jax.") or name == "r2r_jax":
            out.append(name)
    return out


def import_edges() -> list[Edge]:
    edges = []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        in_function = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function.update(id(sub) for sub in ast.walk(node))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _resolve(name, node, path.name == "__init__.py"):
                    if target != name:
                        edges.append(Edge(name, target, node.lineno, id(node) in in_function,
                                          any("#" in ln for ln in lines[node.lineno - 1:node.end_lineno])))
    return edges


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def direction(table: dict[str, int], source: str, target: str) -> str:
    """'same' (one package), 'down', 'sideways' (another package of the same layer) or 'upward'."""
    src, dst = part_of(source), part_of(target)
    if src == dst:
        return "same"
    return "down" if table[dst] < table[src] else "sideways" if table[dst] == table[src] else "upward"


def is_command_module(module: str) -> bool:
    """Modules that `r2r` loads for one command: their local imports keep `r2r --help` fast."""
    last = module.rsplit(".", 1)[-1]
    return last in ("cli", "demo") or last.endswith("_cli")


EDGES = import_edges()


def test_every_part_has_a_layer():
    table = layer_table(DESIGN.read_text())
    parts = {part_of(m) for m in MODULES if m != "r2r_jax"}
    assert parts - set(table) == set(), "parts of r2r_jax missing from docs/design.md's layers block"
    assert set(table) - parts == set(), "docs/design.md names layers for parts that do not exist"


def test_imports_point_down_the_layers():
    table = layer_table(DESIGN.read_text())
    bad = []
    for e in EDGES:
        if e.target == "r2r_jax":
            continue
        kind = direction(table, e.source, e.target)
        if kind in ("sideways", "upward"):
            bad.append(f"{MODULES[e.source].relative_to(ROOT)}:{e.line}: {kind} import of {e.target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        graph[e.source].add(e.target)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


def test_local_imports_say_why():
    bad = [f"{MODULES[e.source].relative_to(ROOT)}:{e.line}: function-local import of {e.target} without a comment"
           for e in EDGES if e.local and not e.commented and not is_command_module(e.source)]
    assert not bad, "\n".join(bad)


def test_product_code_never_imports_the_testing_package():
    """`r2r_jax.testing` (synthetic data, the demo tokenizer, reference implementations) is for tests only:
    no import statement of product code loads it, nor a module name in a string (`importlib`, a lazy table)."""
    bad = [f"{MODULES[e.source].relative_to(ROOT)}:{e.line}: imports {e.target}" for e in EDGES
           if part_of(e.target) == "testing" and part_of(e.source) != "testing"]
    bad += [f"{path.relative_to(ROOT)}:{line}: names r2r_jax.testing in a string" for name, path in MODULES.items()
            if part_of(name) != "testing" for line in strings_naming_testing(path.read_text())]
    assert not bad, "\n".join(bad)


def strings_naming_testing(source: str) -> list[int]:
    """Lines of a module's source with a string that names the testing package (`importlib.import_module`)."""
    return [n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and re.match(r"r2r_jax[./]testing\b", n.value)]


def test_testing_strings_are_found():
    source = 'import importlib\nimportlib.import_module("r2r_jax.testing.synthetic")\nx = "r2r_jax.testingish"\n'
    assert strings_naming_testing(source) == [2]


def print_lines(source: str) -> list[int]:
    """Lines of a module's source that write to stdout: a `print` call, `sys.stdout.write` or `.writelines`."""
    def writes(call: ast.Call) -> bool:
        f = call.func
        if isinstance(f, ast.Name):
            return f.id == "print"
        return (isinstance(f, ast.Attribute) and f.attr in ("write", "writelines")
                and isinstance(f.value, ast.Attribute) and f.value.attr == "stdout"
                and isinstance(f.value.value, ast.Name) and f.value.value.id == "sys")

    return [n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and writes(n)]


def test_command_modules_are_the_commands_of_r2r():
    """The modules exempt from the rules above (they may print, and import locally without a word) are the
    `r2r` entry point and the modules it runs as commands, no other."""
    from r2r_jax.cli import COMMANDS

    assert {m for m in MODULES if is_command_module(m)} == {"r2r_jax.cli"} | {m for m, _ in COMMANDS.values()}


def test_only_command_modules_print():
    """Library code logs (`logging.getLogger(__name__)`; `r2r` shows the records on stderr, --quiet and --verbose
    set the level) or returns what a command prints, so the trainer, the loaders and the checks run in-process
    without writing to stdout."""
    bad = [f"{path.relative_to(ROOT)}:{line}: print outside a command module"
           for name, path in MODULES.items() if not is_command_module(name)
           for line in print_lines(path.read_text())]
    assert not bad, "\n".join(bad)


def test_print_calls_are_found():
    assert print_lines('"""print(x) in a docstring"""\nprint("a")\ndef f():\n    print(1, file=None)\n') == [2, 4]
    assert print_lines("log.print(1)\nwrite = print\nsys.stderr.write('x')\nout.write('y')\n") == []
    assert print_lines("import sys\nsys.stdout.write('a')\nsys.stdout.writelines(['b'])\n") == [2, 3]


@pytest.mark.parametrize("importer, source, expect", [
    ("r2r_jax.data.records", "from r2r_jax.train.step import TrainState\n", "upward"),
    ("r2r_jax.data.records", "def f():\n    from r2r_jax.cli import main\n", "upward"),
    ("r2r_jax.retrieval.trec", "from r2r_jax.teacher.cache import Cache\n", "sideways"),
    ("r2r_jax.train.step", "from r2r_jax.model import llama\n", "down"),
    ("r2r_jax.rerank.job", "from .explain import explain_rankings\n", "same"),
])
def test_the_walk_classifies_imports(importer, source, expect):
    """The resolver and the layer order see these imports as the design says (absolute, `from package import
    module`, relative, function-local)."""
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom))
    (target,) = _resolve(importer, node, False)
    assert direction(layer_table(DESIGN.read_text()), importer, target) == expect
