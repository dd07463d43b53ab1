"""A seq-cls export in sentence-transformers, on the real SmolLM2-135M base and real DL19 passages:
`CrossEncoder(DIR, trust_remote_code=True)` renders the student's prompt and cuts the passage as `r2r rerank`
does, so its scores are the JAX student's within 1e-4; `backend="onnx"` too; the model card's metadata is right
and every ```python block in it runs as written (one of them makes the int8 copy, which loads).

The student is the base with random LoRA and head offsets (as a trained one has), exported in float32; prompts
are limited to 80 tokens, so most DL19 passages are cut and some are not.
"""

import re

import jax
import numpy as np
import pytest
from scipy.stats import spearmanr

from r2r_jax import Reranker
from r2r_jax.config import DataConfig, LoraConfig, MeshConfig, TrainConfig
from r2r_jax.convert.hf_export import export_prepared
from r2r_jax.data.candidates import read_candidates
from r2r_jax.data.templates import TruncationStats, fit_prompts, load_tokenizer, render_prompt
from r2r_jax.parallel.mesh import make_mesh
from r2r_jax.train.setup import prepare

pytest.importorskip("sentence_transformers")

TEMPLATE = "Query: {query}\nPassage: {passage}\nDoes the passage answer the query? Answer yes or no.\nAnswer:"
MAX_LEN = 80
CE_TOL = 1e-4  # float32 torch against float32 JAX (measured: see docs/export.md)
ONNX_TOL = 1e-4  # float32 onnxruntime against float32 JAX (measured: see docs/export.md)


@pytest.fixture(scope="module")
def export(smollm2_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("crossencoder")
    data = DataConfig(tokenizer=str(smollm2_base), group_size=3, random_negatives=1, max_prompt_len=MAX_LEN,
                      max_target_len=12, comparisons_per_query=0, prompt_template=TEMPLATE)
    cfg = TrainConfig(base_model=str(smollm2_base), data=data, lora=LoraConfig(rank=4, alpha=8.0),
                      mesh=MeshConfig(data=1, fsdp=1, tensor=1), output_dir=str(root / "run"),
                      score_init_tokens=[" yes", " no"])
    cfg.model.remat_policy = "none"
    prepared = prepare(cfg, make_mesh(cfg.mesh, jax.devices()[:1]))
    keys = iter(jax.random.split(jax.random.key(0), 1024))  # LoRA B starts at zero: give it what training would
    trainable = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(next(keys), x.shape, x.dtype),
                             prepared.state.trainable)
    prepared.state = prepared.state.replace(trainable=trainable)
    return export_prepared(prepared, 0, root / "run", root / "seq-cls", "seq-cls", "float32")


@pytest.fixture(scope="module")
def reranker(export):
    return Reranker.load(export, dtype="float32", student_only=True)


@pytest.fixture(scope="module")
def sample(shared_data):
    """Two DL19 queries, 20 BM25 passages each."""
    items = read_candidates(shared_data / "dl19" / "bm25_top100.json")[:2]
    return [(qc.query, [c.text for c in qc.candidates[:20]]) for qc in items]


def jax_scores(reranker, items) -> list[np.ndarray]:
    """`r2r rerank`'s scores of each item's passages, in the passages' order."""
    out = []
    for (_, passages), ranked in zip(items, reranker.rerank_batch(items), strict=True):
        scores = np.zeros(len(passages))
        for r in ranked:
            scores[r.index] = r.score
        out.append(scores)
    return out


@pytest.fixture(scope="module")
def reference(reranker, sample):
    return jax_scores(reranker, sample)


def test_the_sample_cuts_some_passages_and_the_cut_matters(export, sample):
    """Otherwise 'truncation matches' would be vacuous: most prompts are cut, a few are not, and a stock
    tokenizer cut (tokens off the end, as a CrossEncoder truncates) reads another token and scores otherwise."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(export)
    tok.padding_side = "right"  # transformers gives left-padded rows other positions
    stats = TruncationStats()
    for query, passages in sample:
        fit_prompts(tok, lambda q, ps: render_prompt(TEMPLATE, q, ps[0]), [(query, [p]) for p in passages], MAX_LEN,
                    stats=stats)
    assert 0 < stats.truncated < stats.prompts, stats
    query, passages = sample[0]
    ours = fit_prompts(tok, lambda q, ps: render_prompt(TEMPLATE, q, ps[0]), [(query, [p]) for p in passages], MAX_LEN)
    stock = tok([TEMPLATE.format(query=query, passage=p) for p in passages], truncation=True, max_length=MAX_LEN)
    cut = [i for i, ids in enumerate(ours) if ids != stock["input_ids"][i]]
    assert cut
    model = AutoModelForSequenceClassification.from_pretrained(export).eval()
    with torch.no_grad():
        a = model(**tok.pad({"input_ids": [ours[i] for i in cut]}, return_tensors="pt")).logits[:, 0]
        b = model(**tok.pad({"input_ids": [stock["input_ids"][i] for i in cut]}, return_tensors="pt")).logits[:, 0]
    assert float((a - b).abs().max()) > 1e-2


def test_crossencoder_scores_are_r2r_reranks(export, sample, reference):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(export), trust_remote_code=True)
    pairs = [(q, p) for q, passages in sample for p in passages]
    got = model.predict(pairs, batch_size=16)
    want = np.concatenate(reference)
    diff = np.abs(got - want).max()
    print(f"CrossEncoder (torch float32) vs r2r rerank (JAX float32): max |diff| {diff:.2e}, "
          f"scores {want.min():.2f}..{want.max():.2f}")
    assert diff < CE_TOL
    for (query, passages), scores in zip(sample, reference, strict=True):
        ranked = model.rank(query, passages)
        assert [r["corpus_id"] for r in ranked] == list(np.argsort(-scores, kind="stable"))


def test_onnx_backend_scores_as_r2r_rerank(export, sample, reference):
    """`backend="onnx"` exports onnx/model.onnx on first use and runs it in onnxruntime (no optimum)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(export), backend="onnx", trust_remote_code=True)
    assert (export / "onnx" / "model.onnx").is_file()
    assert type(model[0].model).__name__ == "OnnxSequenceClassifier"
    got = model.predict([(q, p) for q, passages in sample for p in passages], batch_size=16)
    diff = np.abs(got - np.concatenate(reference)).max()
    print(f"CrossEncoder onnx (float32) vs r2r rerank (JAX float32): max |diff| {diff:.2e}")
    assert diff < ONNX_TOL


def test_model_card_metadata_and_snippets_run_as_written(export, reranker, sample, reference):
    card = (export / "README.md").read_text()
    front = card.split("\n---\n", 1)[0]
    for line in ("base_model: HuggingFaceTB/SmolLM2-135M-Instruct", "license: apache-2.0",
                 "library_name: sentence-transformers", "pipeline_tag: text-ranking"):
        assert f"\n{line}\n" in front + "\n", line
    assert "<!-- r2r:measured -->" in card
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 4 and all(str(export) in b for b in blocks)
    namespaces = []
    for code in blocks:
        ns: dict = {}
        exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the card's own snippets, as a user runs them
        namespaces.append(ns)
    first = namespaces[0]
    (want,) = jax_scores(reranker, [(first["query"], first["passages"])])
    np.testing.assert_allclose(first["scores"], want, atol=CE_TOL)
    assert [r["corpus_id"] for r in first["ranking"]] == list(np.argsort(-want))
    # the int8 copy the third snippet made loads and is really quantized (a quarter of the float32 file). It
    # does not rank like the student: docs/export.md gives the measured loss, so nothing here claims more
    from sentence_transformers import CrossEncoder

    onnx = export / "onnx"
    assert (onnx / "model_qint8.onnx").stat().st_size < 0.3 * (onnx / "model.onnx").stat().st_size
    pairs = [(q, p) for q, passages in sample for p in passages]
    int8 = CrossEncoder(str(export), backend="onnx", trust_remote_code=True,
                        model_kwargs={"file_name": "onnx/model_qint8.onnx"}).predict(pairs, batch_size=16)
    want = np.concatenate(reference)
    rho = min(spearmanr(a, b).statistic for a, b in zip(np.split(int8, len(sample)), reference, strict=True))
    print(f"int8: max |diff| {np.abs(int8 - want).max():.2e}, per-query Spearman >= {rho:.3f}")
    assert np.isfinite(int8).all() and np.abs(int8 - want).max() > ONNX_TOL
    last = namespaces[3]  # plain transformers with the shipped prompt fitting
    (want,) = jax_scores(reranker, [(last["query"], last["passages"])])
    import torch

    with torch.no_grad():
        got = last["model"](**last["batch"]).logits[:, 0].numpy()
    np.testing.assert_allclose(got, want, atol=CE_TOL)
