"""`r2r train`: the command line of the trainer. `--help` is answered from the config's dataclasses alone,
without importing the trainer (which loads jax, flax and orbax: seconds); the run itself is `trainer.train`.
Prints the final step, losses and dev figures as JSON; exits 2 on bad input, 1 after a non-finite loss,
128 + signal after SIGTERM or Ctrl-C (the step is saved first)."""

from __future__ import annotations

import json
import sys

EXAMPLE = ("r2r train --config configs/smollm2_135m.yaml --base-model runs/bases/smollm2-135m "
           "--data.tokenizer runs/bases/smollm2-135m --data.train-path teacher.jsonl --output-dir runs/r2r")
DESCRIPTION = "Train a student from teacher records: LoRA adapters and a score head on a Llama base."


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        from r2r_jax.config import TrainConfig
        from r2r_jax.config_help import config_help

        print(config_help(TrainConfig, "r2r train", DESCRIPTION, EXAMPLE), end="")
        return 0
    import jax

    from r2r_jax.checkpoint import CheckpointError
    from r2r_jax.config import TrainConfig
    from r2r_jax.config_io import ConfigError, load_config
    from r2r_jax.data.records import RecordError
    from r2r_jax.train.trainer import train

    try:
        cfg = load_config(TrainConfig, argv, prog="r2r train")
        report = train(cfg)
    except (ConfigError, RecordError, CheckpointError, FileNotFoundError) as e:
        print(f"r2r train: error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(json.dumps({k: report[k] for k in ("final_step", "last_metrics", "dev_before", "dev_after")
                          if k in report}, indent=2))
    return int(report["exit_code"])
