"""Versioned teacher prompts: `prompts/<name>_<version>.txt`, one file per prompt and version.

A file holds `### system`, `### user`, `### reask` and `### schema` sections (`#` lines before the first
section are comments). Texts are `string.Template`s, so passages may contain braces and dollar signs freely.
The schema section is the JSON schema asked for as structured output where the endpoint supports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

SECTIONS = ("system", "user", "reask", "schema")
RESPONSE_FORMATS = ("json_schema", "json_object", "text")


class PromptError(ValueError):
    """A prompt file that is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: Template
    reask: Template
    schema: dict[str, Any]

    def messages(self, **values: Any) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user.substitute(**values)}]

    def reask_message(self, problem: str) -> dict[str, str]:
        return {"role": "user", "content": self.reask.substitute(problem=problem)}

    def response_format(self, kind: str) -> dict[str, Any] | None:
        """The `response_format` request field: strict JSON schema, any JSON object, or none (plain text)."""
        if kind == "json_schema":
            return {"type": "json_schema", "json_schema": {**self.schema, "strict": True}}
        if kind == "json_object":
            return {"type": "json_object"}
        if kind == "text":
            return None
        raise PromptError(f"unknown response format {kind!r} (choose from {RESPONSE_FORMATS})")


def parse_prompt(text: str, name: str, version: str, where: str) -> Prompt:
    parts: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            if current not in SECTIONS:
                raise PromptError(f"{where}: unknown section {current!r} (expected {SECTIONS})")
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
        elif line.strip() and not line.startswith("#"):
            raise PromptError(f"{where}: text before the first '### section' line")
    missing = [s for s in SECTIONS if s not in parts]
    if missing:
        raise PromptError(f"{where}: missing sections {missing}")
    body = {k: "\n".join(v).strip() for k, v in parts.items()}
    try:
        schema = json.loads(body["schema"])
    except json.JSONDecodeError as e:
        raise PromptError(f"{where}: schema section is not JSON ({e.msg})") from None
    if not isinstance(schema, dict) or "name" not in schema or "schema" not in schema:
        raise PromptError(f"{where}: schema section must be {{'name': ..., 'schema': {{...}}}}")
    return Prompt(name, version, body["system"], Template(body["user"]), Template(body["reask"]), schema)


def load_prompt(name: str, version: str) -> Prompt:
    """The packaged prompt `name` (rank, compare) at `version` (v1, ...)."""
    filename = f"{name}_{version}.txt"
    folder = resources.files("r2r_jax.teacher") / "prompts"
    path = folder / filename
    if not version or "/" in version or "\\" in version or not path.is_file():
        known = sorted({p.name.split("_", 1)[1][:-4] for p in folder.iterdir() if p.name.endswith(".txt")})
        raise PromptError(f"--prompt-version {version!r}: there is no prompt {filename} in r2r_jax/teacher/prompts "
                          f"(versions: {', '.join(known)})")
    return parse_prompt(path.read_text(encoding="utf-8"), name, version, f"prompts/{filename}")


def format_passage(text: str, max_words: int) -> str:
    """One line per passage (newlines folded) and at most `max_words` words, as RankGPT does."""
    words = text.split()
    return " ".join(words[:max_words]) if max_words > 0 else " ".join(words)
