"""A small byte-level BPE tokenizer trained on the shipped demo data (`tokenizers` library).

It behaves like Llama-3's where the features care: the post-processor adds `<|begin_of_text|>`, targets
end in `<|eot_id|>`, and `<|finetune_right_pad_id|>` is the pad token. Saved as a transformers
`PreTrainedTokenizerFast` folder, so `AutoTokenizer.from_pretrained(folder)` loads it like any other.
Training is deterministic: the same texts give the same vocabulary and merges.
"""

from __future__ import annotations

import json
from pathlib import Path

from r2r_jax.config import DataConfig
from r2r_jax.data.templates import BOS_TOKEN, EOT_TOKEN, PAD_TOKEN
from r2r_jax.demo import DEMO_DATA

SPECIAL_TOKENS = [BOS_TOKEN, EOT_TOKEN, PAD_TOKEN]


def demo_texts(data_dir: str | Path = DEMO_DATA) -> list[str]:
    """Queries, passages and reasons of the demo set, plus the default templates (repeated, as every
    training sequence holds one, so their words become single tokens)."""
    data_dir = Path(data_dir)
    cfg = DataConfig()
    texts = [cfg.prompt_template, cfg.comparison_template] * 200
    with open(data_dir / "teacher.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(rec["query"])
            texts += [c["text"] for c in rec["candidates"]]
            texts += list(rec["direct_reasons"].values())
            texts += [c["reason"] for c in rec["comparisons"]]
    with open(data_dir / "dev_candidates.jsonl", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            texts.append(obj["query"]["text"])
            texts += [c["doc"]["contents"] for c in obj["candidates"]]
    return texts


def train_demo_tokenizer(texts: list[str], vocab_size: int = 1000):
    """Byte-level BPE (so no text is ever unknown) with the Llama-3 special tokens at ids 0, 1, 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B",
                                                       special_tokens=[(BOS_TOKEN, bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOT_TOKEN,
                                   pad_token=PAD_TOKEN)


def build_demo_tokenizer(out_dir: str | Path, vocab_size: int = 1000, data_dir: str | Path = DEMO_DATA) -> Path:
    """Train on the demo texts and save the folder; returns it."""
    out_dir = Path(out_dir)
    train_demo_tokenizer(demo_texts(data_dir), vocab_size).save_pretrained(str(out_dir))
    return out_dir
