"""`r2r export` and `r2r check-parity --checkpoint`: every format loads with transformers / peft and
matches the JAX student; bf16 within its bound; streaming memory; atomic output.

One student is trained for a few steps on the synthetic task over a tiny HF base and shared by the module.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import torch
from hf_tiny import save_tiny_hf, tiny_hf_config
from safetensors import safe_open

from r2r_jax.atomic import OutputRefused
from r2r_jax.checkpoint import CheckpointError
from r2r_jax.cli import main
from r2r_jax.config import LoraConfig, MeshConfig, ModelConfig, OptimConfig, TrainConfig
from r2r_jax.convert import export_parity as ep
from r2r_jax.convert import safetensors_writer
from r2r_jax.convert.hf_export import ExportError, export_checkpoint, export_prepared
from r2r_jax.convert.safetensors_writer import TensorEntry, parse_size, plan_shards
from r2r_jax.data.records import write_records
from r2r_jax.data.templates import special_ids
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.testing.synthetic import make_synthetic_records, synthetic_data_config, synthetic_tokenizer
from r2r_jax.trained.restore import load_trained

F32_TOL = 1e-4
BF16_RELATIVE = 5e-2  # the stated bound for bfloat16 exports (measured ~1-2.5%, see docs/export.md)


def _train_cfg(root: Path, base: str, steps: int) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(dtype="float32", param_dtype="float32"), lora=LoraConfig(rank=4, alpha=8.0),
        mesh=MeshConfig(data=-1), optim=OptimConfig(learning_rate=1e-2, warmup_steps=1),
        data=synthetic_data_config(train_path=str(root / "teacher.jsonl"), tokenizer=str(root / "tokenizer")),
        base_model=base, output_dir=str(root / "run"), steps=steps, batch_size=8, save_every=steps, log_every=steps)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from r2r_jax.train.trainer import train

    root = tmp_path_factory.mktemp("export")
    save_tiny_hf(root / "base", tiny_hf_config(vocab=160, hidden=64, layers=2))
    tok = synthetic_tokenizer()
    tok.save_pretrained(root / "tokenizer")
    write_records(root / "teacher.jsonl", make_synthetic_records(8, seed=0))
    train(_train_cfg(root, str(root / "base"), steps=3))
    prepared, step = load_trained(root / "run", make_mesh(MeshConfig(data=1, fsdp=-1)))
    prompts = ep.scoring_prompts(tok, ep.load_queries(root / "teacher.jsonl")[:4], prepared.cfg.data.prompt_template,
                                 prepared.cfg.data.max_prompt_len)
    return SimpleNamespace(root=root, ckpt=root / "run", base=root / "base", prepared=prepared, step=step,
                           ref=ep.StudentRef(prepared), tok=tok, pad=special_ids(tok).pad, eot=special_ids(tok).eot,
                           prompts=prompts)


@pytest.fixture(scope="module")
def exports(trained):
    out = trained.root / "exports"
    folders = {}
    for fmt in ("seq-cls", "causal-lm", "peft"):  # the restored student is shared, saving a restore per format
        folders[fmt] = export_prepared(trained.prepared, trained.step, trained.ckpt, out / fmt, fmt, "float32",
                                       max_shard_size="40KB")
    # from the checkpoint, with the default dtype (bfloat16), through the command line
    assert main(["export", "--checkpoint", str(trained.ckpt), "--format", "seq-cls", "--output",
                 str(out / "seq-cls-bf16")]) == 0
    folders["seq-cls-bf16"] = out / "seq-cls-bf16"
    return folders


def _loading_info_is_clean(info: dict) -> None:
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


def test_training_changed_the_student(trained):
    """Otherwise 'matches the student' would also hold for an export that dropped LoRA."""
    lora = trained.prepared.state.trainable["lora"]["model"]["layers"]["self_attn"]["q_proj"]
    assert float(np.abs(np.asarray(lora["lora_b"])).max()) > 1e-3


def test_seq_cls_loads_cleanly_and_matches_student(trained, exports):
    from transformers import AutoModelForSequenceClassification

    folder = exports["seq-cls"]
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    _loading_info_is_clean(info)
    assert model.config.num_labels == 1 and model.config.pad_token_id == trained.pad
    assert len(list(folder.glob("model-*.safetensors"))) > 2
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in folder.glob("model-*.safetensors")}
    report = ep.compare(model.eval(), "seq-cls", trained.prompts, trained.pad, trained.ref)
    print(f"seq-cls float32: {report}")
    assert report.max_abs_score_diff < F32_TOL and report.max_abs_logit_diff < F32_TOL
    assert report.same_order == report.queries == 4  # the export ranks every query's candidates identically
    # the user's path: the exported tokenizer pads batches itself; scores still match the student
    tok = __import__("transformers").AutoTokenizer.from_pretrained(folder)
    query, passages = ep.load_queries(trained.root / "teacher.jsonl")[0]
    texts = [trained.prepared.cfg.data.prompt_template.format(query=query, passage=p) for p in passages]
    with torch.no_grad():
        user = model(**tok(texts, return_tensors="pt", padding=True)).logits[:, 0].numpy()
    ours, _ = trained.ref.outputs(trained.prompts.ids[trained.prompts.groups[0]],
                                  trained.prompts.mask[trained.prompts.groups[0]])
    np.testing.assert_allclose(user, ours, atol=F32_TOL)


def test_seq_cls_in_sentence_transformers_scores_as_the_student(trained, exports):
    """`CrossEncoder(DIR, trust_remote_code=True)` renders the template and fits the prompt as training did, and
    returns the raw score (identity activation): every query's scores are the student's. SmolLM2 on DL19
    text, the ONNX backend and the card's snippets: tests/test_crossencoder.py."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(exports["seq-cls"]), trust_remote_code=True)
    queries = ep.load_queries(trained.root / "teacher.jsonl")[:4]
    got = model.predict([(q, p) for q, passages in queries for p in passages])
    ours, _ = trained.ref.outputs(trained.prompts.ids, trained.prompts.mask)
    np.testing.assert_allclose(got, ours, atol=F32_TOL)
    assert np.ptp(ours) > 10 * F32_TOL  # scores that differ, so equal ones are not a constant head


def test_causal_lm_loads_cleanly_and_matches_student(trained, exports):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(exports["causal-lm"], output_loading_info=True)
    _loading_info_is_clean(info)
    report = ep.compare(model.eval(), "causal-lm", trained.prompts, trained.pad, trained.ref)
    assert report.max_abs_score_diff < F32_TOL and report.max_abs_logit_diff < F32_TOL
    # the base without the adapters is far off: the merge is what makes the match
    base = AutoModelForCausalLM.from_pretrained(trained.base).eval()
    assert ep.compare(base, "causal-lm", trained.prompts, trained.pad, trained.ref).max_abs_logit_diff > 1e-3


def test_causal_lm_greedy_decoding_equals_jax_decoder(trained, exports):
    from transformers import AutoModelForCausalLM

    from r2r_jax.model.generate import make_generate

    rows = trained.prompts.groups[0]
    ids, mask = trained.prompts.ids[rows], trained.prompts.mask[rows]
    new = 12
    gen = make_generate(trained.ref.model, new, [trained.eot], trained.pad)
    ours, lengths = jax.device_get(gen(trained.ref.variables, ids, mask, jax.random.key(0), 0.0))
    model = AutoModelForCausalLM.from_pretrained(exports["causal-lm"]).eval()
    with torch.no_grad():
        hf = model.generate(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                            max_new_tokens=new, do_sample=False, eos_token_id=trained.eot,
                            pad_token_id=trained.pad).numpy()[:, ids.shape[1]:]
    assert lengths.max() > 1  # something was generated beyond an immediate stop
    for r in range(len(ids)):
        n = int(lengths[r])
        assert list(hf[r, :n]) == list(ours[r, :n]), (r, hf[r], ours[r])


def test_peft_adapter_loads_on_base_and_matches_student(trained, exports):
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForSequenceClassification

    folder = exports["peft"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(trained.base.absolute())
    assert config["modules_to_save"] == ["score"] and config["r"] == 4 and config["lora_alpha"] == 8.0
    base = AutoModelForSequenceClassification.from_pretrained(trained.base, num_labels=1, pad_token_id=trained.pad)
    model = PeftModel.from_pretrained(base, folder).eval()
    # exactly the keys PEFT itself would save for this model, with the same shapes
    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    with safe_open(folder / "adapter_model.safetensors", "pt") as f:
        written = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert written == expected
    result = model.load_adapter(folder, adapter_name="again")
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if "again" in k]
    report = ep.compare(model, "peft", trained.prompts, trained.pad, trained.ref)
    assert report.max_abs_score_diff < F32_TOL and report.max_abs_logit_diff < F32_TOL


def test_bf16_export_is_bf16_and_within_the_stated_bound(trained, exports):
    from transformers import AutoModelForSequenceClassification

    folder = exports["seq-cls-bf16"]
    with safe_open(next(folder.glob("model-*.safetensors")), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "bfloat16"
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype).eval()
        report = ep.compare(model, "seq-cls", trained.prompts, trained.pad, trained.ref)
        rel_score, rel_logit = report.relative()
        print(f"bf16 export, torch {dtype}: {report}, relative {rel_score:.2e} / {rel_logit:.2e}")
        assert rel_score < BF16_RELATIVE and rel_logit < BF16_RELATIVE
        assert report.max_abs_score_diff > F32_TOL  # really rounded (the float32 test is not vacuous)


def test_side_files_name_base_template_and_pad(trained, exports):
    card = (exports["seq-cls"] / "README.md").read_text()
    meta = json.loads((exports["seq-cls"] / "r2r_student.json").read_text())
    assert trained.prepared.base_hash in card and str(trained.base.absolute()) in card
    assert trained.prepared.cfg.data.prompt_template in card and '"max_prompt_len": 40' in card
    assert meta["prompt_template"] == trained.prepared.cfg.data.prompt_template
    assert meta["base_hash"] == trained.prepared.base_hash and meta["pad_token_id"] == trained.pad
    gen = json.loads((exports["causal-lm"] / "generation_config.json").read_text())
    assert gen["eos_token_id"] == trained.eot and gen["pad_token_id"] == trained.pad
    from r2r_jax.trained.loading import read_student_json

    assert read_student_json(exports["seq-cls"])["max_prompt_len"] == 40


def test_check_parity_checkpoint_exit_codes(trained, exports, capsys, tmp_path):
    args = ["check-parity", "--checkpoint", str(trained.ckpt), "--queries", "2"]
    assert main([*args, "--hf", str(exports["seq-cls"])]) == 0
    out = capsys.readouterr().out
    assert float(out.split("max_abs_score_diff=")[1].split()[0]) < F32_TOL
    assert float(out.split("max_abs_logit_diff=")[1].split()[0]) < F32_TOL
    # a damaged export: the score head off by 2% -> above the float32 tolerance
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in exports["seq-cls"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    shard = bad / index["weight_map"]["score.weight"]
    with safe_open(shard, "np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["score.weight"] = tensors["score.weight"] * 1.02
    safetensors_writer.save_file(tensors, str(shard), metadata={"format": "pt"})
    assert main([*args, "--hf", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_failed_export_leaves_no_folder(trained, exports, monkeypatch):
    real, calls = safetensors_writer.save_file, []

    def fail_on_second_shard(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(*a, **k)

    monkeypatch.setattr(safetensors_writer, "save_file", fail_on_second_shard)
    out = trained.root / "failed" / "model"
    with pytest.raises(OSError, match="simulated"):
        export_checkpoint(trained.ckpt, out, "seq-cls", "float32", max_shard_size="40KB")
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial folder either
    # an existing export is never clobbered by a failure, and never overwritten without --overwrite
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        export_prepared(trained.prepared, trained.step, trained.ckpt, exports["seq-cls"], "seq-cls", "float32",
                        "40KB", overwrite=True)
    assert (exports["seq-cls"] / "config.json").is_file()
    assert sorted(p.name for p in exports["seq-cls"].parent.iterdir()) == sorted(
        ["seq-cls", "causal-lm", "peft", "seq-cls-bf16"])
    with pytest.raises(OutputRefused, match="already exists"):
        export_checkpoint(trained.ckpt, exports["seq-cls"], "seq-cls")


def test_export_never_replaces_its_own_run_or_a_folder_it_did_not_write(trained, exports, tmp_path, capsys):
    """`--overwrite` replaces only an earlier export; an output that is, holds or lies inside the run being
    exported is refused before anything is restored, and so are plain files and foreign folders."""
    run = trained.ckpt
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    cases = [(run, "overlaps the input"), (run / "checkpoints", "overlaps the input"),
             (run / "exported", "overlaps the input"), (run.parent, "overlaps the input"),
             (foreign, "was not written by r2r export"), (plain, "was not written by r2r export")]
    for output, message in cases:
        code = main(["export", "--checkpoint", str(run / "checkpoints"), "--format", "seq-cls", "--output",
                     str(output), "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
    assert (foreign / "keep.txt").read_text() == "mine" and plain.read_text() == "mine"
    assert not (run / "exported").exists()
    # an earlier export is replaced with --overwrite
    assert main(["export", "--checkpoint", str(run), "--format", "seq-cls", "--output", str(exports["seq-cls"]),
                 "--dtype", "float32", "--overwrite"]) == 0


def test_random_init_checkpoint_exports_merged_and_refuses_peft(trained, tmp_path):
    """No base folder: merged formats work (the base is rebuilt from its recipe), PEFT says why it cannot."""
    from r2r_jax.checkpoint import Checkpointer
    from r2r_jax.train.setup import prepare

    cfg = _train_cfg(trained.root, "", steps=1)
    cfg.model.vocab_size, cfg.output_dir = 160, str(tmp_path / "run")
    prepared = prepare(cfg, make_mesh(cfg.mesh))
    trainable = dict(prepared.state.trainable)
    key = iter(jax.random.split(jax.random.key(1), 64))
    trainable["lora"] = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(next(key), x.shape), trainable["lora"])
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints", async_save=False)
    ckpt.save(prepared.state.replace(trainable=trainable), {}, prepared.meta(), force=True)
    ckpt.close()
    prepared.state = prepared.state.replace(trainable=trainable)  # the reference: what was saved
    with pytest.raises(ExportError, match="random-init"):
        export_checkpoint(tmp_path / "run", tmp_path / "peft", "peft")
    folder = export_checkpoint(tmp_path / "run", tmp_path / "seq-cls", "seq-cls", "float32")
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    _loading_info_is_clean(info)
    report = ep.compare(model.eval(), "seq-cls", trained.prompts, trained.pad, ep.StudentRef(prepared))
    assert report.max_abs_score_diff < F32_TOL and report.max_abs_logit_diff < F32_TOL


def test_shard_plan_and_sizes():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size(1000) == 1000
    with pytest.raises(ValueError):
        parse_size("five")
    entries = [TensorEntry(f"t{i}", (n,), np.dtype(np.float32)) for i, n in enumerate([10, 10, 30, 5, 5])]
    plan = [[e.name for e in s] for s in plan_shards(entries, 80)]
    assert plan == [["t0", "t1"], ["t2"], ["t3", "t4"]]  # 30 floats = 120 bytes: a shard of its own


PEAK_SCRIPT = textwrap.dedent("""
    import sys, tempfile, threading, time
    import flax.linen as nn
    import jax, numpy as np
    from r2r_jax.config import LoraConfig, MeshConfig, ModelConfig
    from r2r_jax.convert.hf_export import ExportSource, write_tensors
    from r2r_jax.model.llama import LlamaForRanking
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.parallel.rules import tree_shardings
    from r2r_jax.model.llama import abstract_variables

    def anon_kib():  # private memory only: written files are page cache, not the exporter's copies
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

    cfg = ModelConfig(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=16,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=64)
    boxed = abstract_variables(LlamaForRanking(cfg, LoraConfig(rank=8, alpha=16.0)))
    rng = np.random.default_rng(0)  # random weights straight from numpy: much faster than a jitted init
    variables = jax.tree.map(lambda b, s: jax.device_put(rng.standard_normal(b.value.shape, np.float32) * 0.02, s),
                             boxed, tree_shardings(boxed, make_mesh(MeshConfig(data=1, fsdp=-1))),
                             is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    params = dict(variables["params"])
    source = ExportSource(cfg, params, params.pop("score")["kernel"], variables["lora"], 2.0)
    jax.block_until_ready(variables)
    size = sum(x.size * 4 for x in jax.tree.leaves(params))
    largest = max(x.size * 4 // (x.shape[0] if x.ndim == 3 else 1) for x in jax.tree.leaves(params))
    before, peak, running = anon_kib(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    with tempfile.TemporaryDirectory() as out:
        write_tensors(source, out, "causal-lm", "float32", max_shard_size=sys.argv[1])
    running[0] = False
    thread.join()
    print(before * 1024, peak[0] * 1024, size, largest)
""")


def test_export_peak_host_memory_is_one_shard_plus_a_layer():
    """The student lives in host memory here (CPU devices); writing its merged export may add about one
    output shard plus a few copies of the largest tensor (device result, host copy, float32 merge
    temporaries) and compile scratch, not another model's worth."""
    shard = 16 * 10**6
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(shard)], capture_output=True, text=True,
                         check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout.split()
    before, after, size, largest = (int(x) for x in out[-4:])
    growth = after - before
    print(f"export RSS growth {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB model "
          f"(shard {shard / 2**20:.0f} MiB, largest tensor {largest / 2**20:.0f} MiB)")
    assert growth < shard + 4 * largest + 48 * 2**20, growth / 2**20
    assert growth < size / 2  # the bound above would be meaningless otherwise


MULTIHOST_SCRIPT = textwrap.dedent("""
    import os, sys
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    import flax.linen as nn
    import numpy as np
    from r2r_jax.config import LoraConfig, MeshConfig, ModelConfig
    from r2r_jax.convert.hf_export import ExportSource, write_tensors
    from r2r_jax.model.hf_mapping import tensor_maps
    from r2r_jax.model.llama import LlamaForRanking
    from r2r_jax.parallel.mesh import make_mesh
    from r2r_jax.parallel.rules import tree_shardings
    from r2r_jax.model.llama import abstract_variables

    cfg = ModelConfig(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    boxed = abstract_variables(LlamaForRanking(cfg, LoraConfig(rank=4, alpha=8.0)))
    rng = np.random.default_rng(0)  # the same values in both processes
    host = jax.tree.map(lambda b: rng.standard_normal(b.value.shape).astype(np.float32), boxed,
                        is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    arrays = jax.tree.map(lambda h, s: jax.make_array_from_callback(h.shape, s, lambda idx, h=h: h[idx]), host,
                          tree_shardings(boxed, make_mesh(MeshConfig(data=1, fsdp=8))))
    params = dict(arrays["params"])
    source = ExportSource(cfg, params, params.pop("score")["kernel"], arrays["lora"], 2.0)
    assert not params["model"]["layers"]["self_attn"]["q_proj"]["kernel"].is_fully_addressable
    write_tensors(source, out if pid == 0 else None, "seq-cls", "float32", max_shard_size="20KB")
    if pid == 0:  # the reference, merged in numpy: W + scale * (B A)^T, then HF's (out, in)
        expected = {}
        for m in tensor_maps(cfg, with_lm_head=False, with_score=True):
            tree, lo = host["params"], host["lora"]
            for k in m.path:
                tree = tree[k]
            for k in m.path[:-1]:
                lo = lo.get(k, {}) if isinstance(lo, dict) else {}
            for i in range(cfg.num_hidden_layers) if m.per_layer else [None]:
                w = tree[i] if m.per_layer else tree
                if m.per_layer and "lora_a" in lo:
                    w = w + 2.0 * (lo["lora_b"][i] @ lo["lora_a"][i]).T
                expected[m.hf_name.format(i=i)] = w.T if m.transpose else w
        np.savez(os.path.join(out, os.pardir, "expected.npz"), **expected)
""")


def test_multihost_export_gathers_sharded_arrays_and_process_0_writes(tmp_path):
    """Two processes × 4 CPU devices, parameters FSDP-sharded over all 8 (no process holds a whole tensor):
    the gathers are collectives both join; process 0's files equal a numpy merge of the same weights."""
    import socket

    from safetensors.numpy import load_file

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", MULTIHOST_SCRIPT, str(pid), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for pid in (0, 1)]
    for p in procs:
        log = p.communicate(timeout=120)[0]
        assert p.returncode == 0, log[-3000:]
    expected = np.load(tmp_path / "expected.npz")
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    got = {}
    for f in set(index.values()):
        got.update(load_file(out / f))
    assert set(got) == set(expected.files) and len(set(index.values())) > 2
    for name in expected.files:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, err_msg=name)


def test_a_student_is_restored_only_onto_the_base_it_was_trained_on(trained, tmp_path, capsys):
    """Same shapes, other weights: the fingerprint differs and the restore refuses before loading the base."""
    save_tiny_hf(tmp_path / "other", tiny_hf_config(vocab=160, hidden=64, layers=2), seed=1)
    with pytest.raises(CheckpointError, match="trained on base .*base .*not on .*other"):
        load_trained(trained.ckpt, make_mesh(MeshConfig(data=1, fsdp=-1)), base_model=str(tmp_path / "other"))
    assert main(["export", "--checkpoint", str(trained.ckpt), "--base-model", str(tmp_path / "other"),
                 "--format", "peft", "--output", str(tmp_path / "out")]) == 2
    assert "not on" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_runs_rerank_default_travels_with_its_export(trained, tmp_path):
    """A default chosen by `r2r tune-fusion` for the run is what `r2r rerank --model EXPORT` applies too."""
    from r2r_jax.inference.fusion import DEFAULT_FILE, Fusion, read_default

    setting = Fusion("interpolate", 0.6, depth=20)
    (trained.ckpt / DEFAULT_FILE).write_text(json.dumps({"fusion": setting.to_dict(), "chosen_by": "ndcg@10"}))
    try:
        folder = export_prepared(trained.prepared, trained.step, trained.ckpt, tmp_path / "seq-cls", "seq-cls",
                                 "float32")
    finally:
        (trained.ckpt / DEFAULT_FILE).unlink()
    assert read_default(folder)[0] == setting


def test_rerank_of_the_export_gives_the_checkpoints_run(trained, exports, tmp_path):
    """`r2r rerank --model EXPORT` ranks as `r2r rerank --checkpoint RUN` does: the same order for every query
    and the same scores up to float32 noise (the export is the student, not a copy that drifted)."""
    from r2r_jax.data.candidates import write_candidates
    from r2r_jax.retrieval.trec import read_run
    from r2r_jax.testing.synthetic import make_synthetic_dev

    dev, _ = make_synthetic_dev(4, seed=9)
    write_candidates(tmp_path / "dev.jsonl", dev)
    common = ["--candidates", str(tmp_path / "dev.jsonl"), "--student-only", "--batch-size", "8"]
    assert main(["rerank", "--checkpoint", str(trained.ckpt), *common, "--output", str(tmp_path / "ckpt.trec")]) == 0
    assert main(["rerank", "--model", str(exports["seq-cls"]), "--dtype", "float32", *common,
                 "--output", str(tmp_path / "export.trec")]) == 0
    from_ckpt, from_export = read_run(tmp_path / "ckpt.trec"), read_run(tmp_path / "export.trec")
    assert list(from_ckpt) == [qc.qid for qc in dev] == list(from_export)
    for qid, hits in from_ckpt.items():
        want = dict(hits)
        assert [d for d, _ in from_export[qid]] == [d for d, _ in hits]
        np.testing.assert_allclose([s for _, s in from_export[qid]], [want[d] for d, _ in from_export[qid]],
                                   atol=F32_TOL)
