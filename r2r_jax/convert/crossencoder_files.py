"""The sentence-transformers files of a seq-cls export, so `CrossEncoder(DIR, trust_remote_code=True)` scores
with the student's prompts and returns its raw scores (docs/export.md, "sentence-transformers").

The prompt template and the passage cut cannot be expressed in a stock CrossEncoder configuration: it
tokenizes a pair as two texts and truncates tokens off the end, while the student's prompt is one rendered
text whose passage is shortened until the prompt fits. So the folder carries a small module
(`crossencoder_module.py` as `r2r_crossencoder.py`) and the function that fits prompts (`data/templates.py`
as `r2r_templates.py`, copied verbatim: one implementation for `r2r rerank`, training and the export).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from r2r_jax.convert.export_info import write_json
from r2r_jax.data import templates

MODULE_FILE = "r2r_crossencoder.py"
TEMPLATES_FILE = "r2r_templates.py"
MODULE_CLASS = "r2r_crossencoder.R2RPromptTransformer"
MODULE_SOURCE = Path(__file__).with_name("crossencoder_module.py")
IDENTITY = "torch.nn.modules.linear.Identity"  # predict() returns the student's score, not a sigmoid of it


def write_crossencoder_files(folder: Path, prompt_template: str, max_prompt_len: int) -> None:
    """modules.json (one module: the prompt-rendering Transformer), its sentence_bert_config.json (task,
    text-only modality, template, prompt length), config_sentence_transformers.json (a CrossEncoder whose
    activation is the identity) and the two Python files the module runs."""
    shutil.copyfile(MODULE_SOURCE, folder / MODULE_FILE)
    shutil.copyfile(templates.__file__, folder / TEMPLATES_FILE)
    write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": MODULE_CLASS}])
    write_json(folder / "sentence_bert_config.json", {
        "transformer_task": "sequence-classification",
        # text only: the tokenizer's chat template (copied with the tokenizer) must not render the pairs
        "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
        "module_output_name": "scores",
        "prompt_template": prompt_template,
        "max_prompt_len": max_prompt_len,
    })
    write_json(folder / "config_sentence_transformers.json", {
        "model_type": "CrossEncoder", "activation_fn": IDENTITY, "prompts": {}, "default_prompt_name": None,
    })
