"""Config dataclasses in and out of text: YAML files, `include:` chains and dotted command-line overrides.

`load_config(TrainConfig, argv)` accepts `--config FILE` plus overrides such as `--model.num-hidden-layers=2`
(through draccus) and calls the result's `validate()`. Every problem — a missing or broken file, an unknown
or ill-formed flag, a wrong type — is a one-line `ConfigError` naming the file or the flag as the user spells
it. Nothing here knows the fields of any config: the typed dataclasses and their checks are `config.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

import draccus
import yaml
from draccus.utils import DecodingError, DraccusException

from r2r_jax.config_help import canonical_flag, user_flag


class ConfigError(ValueError):
    """A configuration that cannot work: a config file or flag that does not parse, or one that parses into an
    impossible combination (an impossible mesh, a bad loss weight, ...), raised by the configs' `validate()`."""


INCLUDE_KEY = "include"  # a config file may name a base file whose fields it overrides
# the repository's configs/, shipped inside the package as r2r_jax/configs (a link to it in a checkout)
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def find_config(path: str) -> str:
    """`path` when it exists; otherwise, for `configs/NAME.yaml` or `NAME.yaml`, the config of that name shipped
    in the package, so the documented `--config configs/...` commands work from any folder after a
    `pip install` (a file of that name in the working folder always wins)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return path
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    shipped = SHIPPED_CONFIGS.joinpath(*parts) if parts else None
    return str(shipped) if shipped is not None and shipped.is_file() else path


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    rest: list[str] = []
    path = None
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file")
            path = argv[i + 1]
            next(it, None)
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return path, rest


def load_config(cls: type, argv: list[str], prog: str = "r2r", spell: Callable[[str], str] | None = None):
    """Parse `--config FILE` and dotted overrides into `cls`; validate when it has `validate()`.

    Every problem is a one-line ConfigError naming the option as the user spells it (`spell` maps a field
    path to that spelling; default `--data.train-path`): draccus would print its 49-line usage first."""
    spell = spell or user_flag
    path, rest = _split_config_flag(argv)
    path = None if path is None else find_config(path)
    rest = _quote_strings(cls, [canonical_flag(arg) for arg in rest])  # --output-dir and --output_dir are one flag
    fields, included = ({}, False) if path is None else _resolve_includes(path, ())
    if path is not None and not fields:
        raise ConfigError(f"--config {path}: the file is empty (leave --config out to use the defaults)")
    with tempfile.TemporaryDirectory() as tmp:
        parsed_path = path
        if included:
            parsed_path = str(Path(tmp) / Path(path).name)  # the merged file draccus reads
            Path(parsed_path).write_text(yaml.safe_dump(fields, sort_keys=False))
        try:
            cfg = draccus.parse(config_class=cls, config_path=parsed_path, args=rest, prog=prog, exit_on_error=False)
        except DecodingError as e:  # a wrong type, in the file or on the command line: names the field
            raise ConfigError(f"{path + ': ' if path else ''}{e}") from None
        except argparse.ArgumentError as e:  # a bad choice, a flag without its value
            name = (e.argument_name or "").split("/")[0].removeprefix("--")
            raise ConfigError(f"{spell(name) if name else 'an option'}: {e.message} ({prog} --help lists the "
                              "options)") from None
        except DraccusException as e:  # "unrecognized arguments: --a.b=1 ..."
            raise ConfigError(f"{_unrecognized(str(e), spell)} ({prog} --help lists the options)") from None
        except yaml.YAMLError as e:  # a value draccus cannot read as YAML: `--lora.targets=[q_proj`
            raise ConfigError(_not_yaml(rest, spell, e)) from None
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _unrecognized(message: str, spell: Callable[[str], str]) -> str:
    """The first unknown option of draccus' "unrecognized arguments: ..." message, as the user spells it."""
    words = message.partition(":")[2].split()
    flag = next((w for w in words if w.startswith("--")), None)
    if flag is not None:
        return f"unknown option {spell(flag[2:].partition('=')[0])}"
    return f"unexpected argument {words[0]!r} (options are spelled --name=value)" if words else message


def _not_yaml(args: list[str], spell: Callable[[str], str], error: yaml.YAMLError) -> str:
    """The first option whose value is not YAML, as the user spells it (yaml's own message names no option)."""
    problem = getattr(error, "problem", None) or str(error)
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
        try:
            yaml.safe_load(value)
        except yaml.YAMLError:
            return f"{spell(key)}: {value!r} is not a YAML value ({problem}); lists are written [a, b]"
    return f"a value is not YAML: {' '.join(str(error).split())}"


def _field_type(cls: type, path: str) -> object:
    """The declared type of the dotted field `path` of the config class `cls` (None for no such field)."""
    kind: object = cls
    for part in path.split("."):
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            return None
        kind = typing.get_type_hints(kind).get(part)
        sections = [a for a in typing.get_args(kind) if dataclasses.is_dataclass(a)]  # `X | None`
        kind = sections[0] if sections else kind
    return kind


def _quote_strings(cls: type, args: list[str]) -> list[str]:
    """Values of `str` fields quoted for draccus, which reads every value as YAML: unquoted, a template such
    as `Q: {query}` would become a mapping and `123` a number. A string field takes the text as written."""
    out = list(args)
    for i, arg in enumerate(out):
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if _field_type(cls, key) is not str:
            continue
        if eq:
            out[i] = f"--{key}={json.dumps(value)}"
        elif i + 1 < len(out) and not out[i + 1].startswith("--"):
            out[i + 1] = json.dumps(out[i + 1])
    return out


def _merged(base: dict, over: dict) -> dict:
    """`over` laid on `base`, mapping by mapping (a list or scalar in `over` replaces the base's)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _resolve_includes(path: str, seen: tuple[str, ...]) -> tuple[dict, bool]:
    """(the file's fields laid over those of the file its `include:` names (relative to it), recursively;
    whether it includes one): a platform config states only what differs from the base it includes, so the
    two cannot drift apart."""
    fields = dict(_read_yaml_mapping(path) or {})
    base = fields.pop(INCLUDE_KEY, None)
    if base is None:
        return fields, False
    if not isinstance(base, str) or not base:
        raise ConfigError(f"--config {path}: {INCLUDE_KEY}: expected the path of a config file")
    base_path = str(Path(path).parent / base)
    chain = (*seen, str(Path(path).resolve()))
    if str(Path(base_path).resolve()) in chain:
        raise ConfigError(f"--config {path}: {INCLUDE_KEY}: {base} includes itself")
    return _merged(_resolve_includes(base_path, chain)[0], fields), True


def _read_yaml_mapping(path: str) -> dict | None:
    """The config file's top-level mapping (None when it is empty), or a ConfigError naming the file and, for
    broken YAML, its line and column — before draccus, whose errors name neither."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: " + ("is a directory, not a file" if p.is_dir() else "no such file"))
    try:
        data = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config {path}: not valid UTF-8 (byte {e.start + 1})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"--config {path}: {where}{problem}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of fields (field: value), got {type(data).__name__}")
    return data


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def save_yaml(cfg, path: str | Path) -> None:
    with open(path, "w") as f:
        draccus.dump(cfg, f)
