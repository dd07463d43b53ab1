"""A real pretrained base from a GGUF file: a Llama-architecture GGUF -> a Hugging Face folder.

Hugging Face Hub downloads are not always possible (air-gapped clusters, CI), but pretrained weights often
travel as GGUF files inside ordinary packages. This module checks the architecture first and that the file
holds every tensor its config describes (gguf_header.py), then writes config, safetensors (dequantized by the
`gguf` package's numpy code, no torch: gguf_to_hf.py), tokenizer and chat template into a staged folder that is
renamed into place only when complete.
`r2r_base.json` records where the weights came from (file, SHA-256) and every file written (size, and SHA-256
of the small ones), so a second call with the same source is a no-op while the folder is as written, a folder
that lost or changed a file is written again, and `--overwrite` only ever replaces a folder this command wrote.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from r2r_jax.atomic import current_umask, output_lock, staged_folder
from r2r_jax.convert.gguf_fetch import DEFAULT_BASE as DEFAULT_BASE  # the known bases: where their files come from
from r2r_jax.convert.gguf_fetch import KNOWN_BASES, find_packaged_gguf
from r2r_jax.convert.gguf_fetch import sha256_of as file_sha256
from r2r_jax.convert.gguf_header import check_tensors, gguf_architecture, read_header
from r2r_jax.model.hf_mapping import ConversionError

logger = logging.getLogger(__name__)

MARKER = "r2r_base.json"
SUPPORTED_ARCHITECTURES = ("llama",)


def resolve_source(source: str) -> Path:
    """A known base name or a path to a .gguf file."""
    if source in KNOWN_BASES:
        return find_packaged_gguf(source)
    path = Path(source)
    if path.suffix != ".gguf":
        raise ConversionError(f"{source}: neither a known base ({', '.join(sorted(KNOWN_BASES))}) nor a .gguf file")
    if not path.is_file():
        raise ConversionError(f"{source}: no such file")
    return path


SMALL_FILE = 16 << 20  # recorded with its SHA-256 too (config, tokenizer): cheap to verify on every call


def _record(folder: Path) -> dict[str, dict]:
    """Every file in `folder` with its size, and the SHA-256 of the small ones: what `r2r_base.json` lists."""
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        entry: dict = {"bytes": f.stat().st_size}
        if entry["bytes"] <= SMALL_FILE:
            entry["sha256"] = file_sha256(f)
        files[str(f.relative_to(folder))] = entry
    return files


def _missing(folder: Path, files: object) -> str | None:
    """What makes `folder` differ from the files its marker lists (None: nothing)."""
    if not isinstance(files, dict) or not files:
        return f"its {MARKER} lists no files"
    for name, entry in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if not isinstance(entry, dict) or f.stat().st_size != entry.get("bytes"):
            return f"{name} is not the size it was written with"
        if "sha256" in entry and file_sha256(f) != entry["sha256"]:
            return f"{name} changed since it was written"
    return None


def _existing(output: Path, sha: str, dtype: str) -> tuple[str, str | None]:
    """('absent' | 'same' | 'incomplete' | 'ours' | 'foreign', what is missing). 'same': this command wrote it
    from the same file in the same dtype and every file it wrote is there as written; 'incomplete': the same,
    but a file is missing or changed; 'ours': from another file or in another dtype. A foreign folder whose
    marker cannot be read comes with why."""
    if not output.exists():
        return "absent", None
    marker = output / MARKER
    if not marker.is_file():
        return "foreign", None
    try:
        info = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "foreign", f"its {MARKER} is not readable JSON"
    if not isinstance(info, dict):
        return "foreign", f"its {MARKER} is not a JSON object"
    wrong = [k for k, kind in (("sha256", str), ("dtype", str), ("files", dict))
             if (k in info or k == "sha256") and not isinstance(info.get(k), kind)]
    if wrong:  # not what `r2r base` writes: never taken as ours, so --overwrite cannot replace it
        return "foreign", f"its {MARKER} has {', '.join(wrong)} of a type `r2r base` does not write"
    if info.get("sha256") != sha or info.get("dtype", "float32") != dtype:
        return "ours", None
    missing = _missing(output, info.get("files"))
    return ("incomplete", missing) if missing else ("same", None)


def convert_gguf(source: str, output: str | Path, overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write the HF folder for `source` (a known base name or a .gguf path) at `output`; returns it.

    An existing folder written from the same file in the same dtype is kept as it is while every file it was
    written with is there as written, and written again when one is missing or changed (or its marker lists
    none). `overwrite` replaces a folder this command wrote from another file or in another dtype, never a
    folder it did not write. The output is held (`atomic.output_lock`) from its check to its rename, so a second
    `r2r base` to it is refused."""
    path = resolve_source(source)
    arch = gguf_architecture(path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(f"{path}: architecture {arch!r} is not supported (r2r students are Llama-architecture "
                              f"models: {', '.join(SUPPORTED_ARCHITECTURES)})")
    output = Path(output)
    sha = file_sha256(path)
    with output_lock(output, "r2r base"):
        state, missing = _existing(output, sha, dtype)
        if state == "same":
            return output
        if state == "foreign":
            why = f" ({missing})" if missing else ""
            raise ConversionError(f"{output} exists and was not written by `r2r base`{why}; choose another "
                                  "--output-dir")
        if state == "ours" and not overwrite:
            raise ConversionError(f"{output} holds a base converted from another file or to another --dtype; "
                                  "pass --overwrite to replace it")
        if state == "incomplete":  # this command wrote it, from this file: nothing but its own files to lose
            logger.warning("%s is incomplete (%s); writing it again", output, missing)
        check_tensors(path, read_header(path))  # before a model of whatever the header says is built
        _convert(path, output, arch, sha, dtype)
    return output


def _convert(path: Path, output: Path, arch: str, sha: str, dtype: str) -> None:
    from r2r_jax.convert.gguf_to_hf import write_hf_folder  # only now: a no-op or a refusal loads nothing

    with staged_folder(output, overwrite=True) as tmp:
        write_hf_folder(path, tmp, dtype)
        mode = 0o666 & ~current_umask()  # some writers create their files private
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(mode)
        info = {"source": str(path.absolute()), "sha256": sha, "architecture": arch, "dtype": dtype,
                "name": next((n for n, b in KNOWN_BASES.items() if b.filename == path.name), None),
                "files": _record(tmp)}  # a folder is current only while every one of them is there as written
        (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
        (tmp / MARKER).chmod(mode)
