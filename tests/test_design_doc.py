"""docs/design.md describes the code as it is: the files, folders, names and commands it mentions exist.

Read from the page's inline code (`...`): a path ending in `.py` (under r2r_jax/, from the repository root, or
a bare file name found in r2r_jax/; with `:name`, a function or class of that file), a folder ending in `/`, a
dotted name that starts in r2r_jax (`trainer.set_up`, `train.setup.prepare`: the module and what it defines),
and a plain identifier (a class, a function, a config field, an argument: a word of r2r_jax's source). Every
`r2r <command>` on the page is a command of `r2r`. The layer table is tests/test_layering.py's.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r2r_jax"
DESIGN = ROOT / "docs" / "design.md"
# inline code spans naming something outside r2r_jax, or plain words of the prose
NOT_OURS = {"LlamaForSequenceClassification", "TYPE_CHECKING", "false", "print", "logging", "libtpu", "r2r",
            "r2r_jax", "lora", "params", "batch", "embed", "mlp", "heads", "kv_heads", "vocab", "layers"}


def spans() -> list[str]:
    return sorted(set(re.findall(r"`([^`\n]+)`", DESIGN.read_text())))


@cache
def source_words() -> frozenset[str]:
    return frozenset(w for p in PACKAGE.rglob("*.py") for w in re.findall(r"\w+", p.read_text()))


@cache
def defined(path: Path) -> frozenset[str]:
    """Names a module defines: functions, classes and assignments at any depth (methods and class fields too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def python_file(name: str) -> Path | None:
    """`model/kv_cache.py`, `tests/test_layering.py` or a bare `dev_set.py` (the one file of that name)."""
    for base in (PACKAGE, ROOT):
        if (base / name).is_file():
            return base / name
    if "/" not in name:
        found = list(PACKAGE.rglob(name))
        return found[0] if len(found) == 1 else None
    return None


def module_of(dotted: list[str]) -> tuple[Path, list[str]] | None:
    """The longest leading part of a dotted name that is an r2r_jax module (from the package root, or a
    module of that name anywhere in it), and the rest."""
    for cut in range(len(dotted), 0, -1):
        rel = Path(*dotted[:cut])
        for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
            if candidate.is_file():
                return candidate, dotted[cut:]
        if cut == 1:
            found = list(PACKAGE.rglob(f"{dotted[0]}.py"))
            if len(found) == 1:
                return found[0], dotted[1:]
    return None


def problems(span: str) -> str | None:
    if "<" in span:  # a pattern such as `<package>/cli.py`, not a name
        return None
    if m := re.fullmatch(r"([\w/]+\.py)(?::(\w+))?", span):
        path = python_file(m.group(1))
        if path is None:
            return f"`{span}`: no such file"
        if m.group(2) and m.group(2) not in defined(path):
            return f"`{span}`: {path.relative_to(ROOT)} defines no {m.group(2)}"
        return None
    if re.fullmatch(r"[\w.]+\.(json|jsonl|yaml|png|trec|txt)", span):  # a file a command writes or reads
        return None
    if re.fullmatch(r"\w+/", span):
        return None if (PACKAGE / span).is_dir() or (ROOT / span).is_dir() else f"`{span}`: no such folder"
    if m := re.fullmatch(r"([a-z_]\w*(?:\.\w+)+)(?:\(.*\))?", span):
        dotted = m.group(1).split(".")
        ours = dotted[0] == "r2r_jax"
        found = module_of(dotted[1:] if ours else dotted)
        if found is None:  # jax.jit, logging.getLogger, nn.scan: not ours
            return f"`{span}`: no such module in r2r_jax" if ours else None
        path, rest = found
        if rest and rest[0] not in defined(path):
            return f"`{span}`: {path.relative_to(ROOT)} defines no {rest[0]}"
        return None
    if m := re.fullmatch(r"([A-Za-z_]\w*)(?:\(.*\))?", span):
        name = m.group(1)
        if name not in NOT_OURS and name not in source_words():
            return f"`{span}`: not a name in r2r_jax's source"
    return None


def test_what_design_md_names_exists():
    bad = [p for p in map(problems, spans()) if p]
    assert not bad, "docs/design.md names what the code does not have:\n" + "\n".join(bad)


def test_the_commands_design_md_names_exist():
    from r2r_jax.cli import COMMANDS

    named = set(re.findall(r"\br2r ([a-z][a-z-]+)", DESIGN.read_text()))
    assert named and named - set(COMMANDS) == set(), f"not commands of r2r: {sorted(named - set(COMMANDS))}"


def test_the_check_sees_a_stale_name():
    assert problems("train/no_such_module.py") == "`train/no_such_module.py`: no such file"
    assert problems("train/trainer.py:no_such_function")
    assert problems("trainer.no_such_function") and problems("NoSuchHook")
    assert problems("no_such_folder/")
    assert problems("config.no_such_name") and problems("r2r_jax.no_such_package")
    for real in ("train/trainer.py:train", "trainer.set_up", "train.setup.prepare", "StackedKV",
                 "write(layer, index, k, v)", "dev_set.py", "tests/test_layering.py", "trained/", "jax.jit",
                 "metrics.jsonl", "r2r_jax.testing"):
        assert problems(real) is None, real
