"""`r2r train --help`: the config's fields as a readable list, and the one flag spelling every command uses.

Flags are spelled with hyphens across the CLI (`--output-dir`, `--base-model`, `--data.train-path`); the
config's field names keep underscores (YAML files, Python). `canonical_flag` turns either spelling of a
dotted config flag into the field path, so scripts written with underscores keep working.

The help is built from the dataclasses themselves: each field's type and default, and its one-line doc,
which is the comment written beside the field (or on the lines just above it) in config.py — one place
for both the code and the help.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import typing

FIELD_LINE = re.compile(r"^\s{4}(\w+):[^#]*?(?:#\s*(.*))?$")


def canonical_flag(arg: str) -> str:
    """`--data.train-path=x` -> `--data.train_path=x`: hyphens in the key of a `--` flag become
    underscores; values (after `=`, or in the next argument) are left alone."""
    if not arg.startswith("--"):
        return arg
    key, eq, value = arg[2:].partition("=")
    return "--" + key.replace("-", "_") + eq + value


def user_flag(path: str) -> str:
    """The documented spelling of a config field path: `data.train_path` -> `--data.train-path`."""
    return "--" + path.replace("_", "-")


def field_docs(cls: type) -> dict[str, str]:
    """field name -> its comment in the class's source (beside it, else the comment lines above it)."""
    docs: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = FIELD_LINE.match(line)
        if match and not stripped.startswith(("def ", "return", "if ", "raise")):
            docs[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return docs


def _is_section(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _rows(cls: type, defaults: object, prefix: str, out: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows: list[tuple[str, str, str]] = []
    nested = []
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        if _is_section(value):
            nested.append((f.name, type(value), value))
            continue
        kind = hints[f.name]
        choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
        meta = "{" + ",".join(map(str, choices)) + "}" if choices else getattr(kind, "__name__", str(kind))
        rows.append((f"{user_flag(prefix + f.name)} {meta.upper() if not choices else meta}",
                     docs.get(f.name, ""), repr(value)))
    title = prefix.rstrip(".") or "run"
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    out.append((f"{title}: {doc}" if doc else title, rows))
    for name, sub_cls, sub_default in nested:
        _rows(sub_cls, sub_default, f"{prefix}{name}.", out)


def config_help(cls: type, prog: str, description: str, example: str = "") -> str:
    """Usage, then one block per config section: flag, its doc, its default; then the example, if any."""
    sections: list[tuple[str, list[tuple[str, str, str]]]] = []
    _rows(cls, cls(), "", sections)
    lines = [f"usage: {prog} [--config FILE] [--section.field VALUE ...]", "", description, "",
             "A flag overrides the config file's value, which overrides the default. Flags are spelled with",
             "hyphens (--output-dir); the underscore spelling of a field (--output_dir) is accepted too.",
             "Lists and nested values take YAML: --lora.targets='[q_proj,v_proj]'.", "",
             "  --config FILE        a YAML file of these fields; `include: base.yaml` lays it over another file",
             "  --debug              show tracebacks (also R2R_DEBUG=1)",
             "  --quiet              log warnings and errors only",
             "  --verbose            log debugging detail too"]
    for title, rows in sections:
        lines += ["", textwrap.shorten(title, 110, placeholder="...")]
        for flag, doc, default in rows:
            text = f"{doc} (default: {default})" if doc else f"(default: {default})"
            lines.append(f"  {flag}")
            lines += textwrap.wrap(text, 104, initial_indent=" " * 8, subsequent_indent=" " * 8)
    if example:
        lines += ["", "example:", f"  {example}"]
    return "\n".join(lines) + "\n"
