"""Training logs: metrics.jsonl (one JSON object a line), TensorBoard event files, a loss-curve PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

from r2r_jax.atomic import atomic_path


class MetricsLog:
    def __init__(self, out_dir: Path, enabled: bool = True):
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(out_dir / "tensorboard"))

    def _append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._append({"step": step, **metrics})
        for k, v in metrics.items():
            self._tb.add_scalar(f"train/{k}", v, step)

    def write_eval(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._append({"step": step, "eval": True, **{f"dev_{k}": v for k, v in metrics.items()}})
        for k, v in metrics.items():
            self._tb.add_scalar(f"dev/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


LOSS_KEYS = ("loss", "loss_pair", "loss_list", "loss_gen", "loss_gen_cmp")  # the train step's loss metrics


def plot_losses(metrics_path: Path, png: Path) -> Path | None:
    """Loss terms over steps (and dev nDCG on a second axis when present)."""
    if not metrics_path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if not r.get("eval")]
    evals = [r for r in rows if r.get("eval")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in LOSS_KEYS:
        if train and any(r.get(key) for r in train):  # loss_gen_cmp only when comparisons have their own weight
            ax.plot([r["step"] for r in train], [r[key] for r in train], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper left")
    if evals:
        ax2 = ax.twinx()
        for key in ("dev_ndcg@10", "dev_ndcg@5"):
            ax2.plot([r["step"] for r in evals], [r[key] for r in evals], "o--", label=key)
        ax2.set_ylabel("dev nDCG")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return png
