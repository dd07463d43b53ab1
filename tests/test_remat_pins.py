"""The shipped 8B platform files run at the remat policy and micro-batch count `remat_policy: auto` chose.

Beside each platform file, `<file>.auto.json` is the `r2r compile --json` report of the `auto` run that chose
them (the command is in docs/scaling.md): the attempts with the compiler's per-chip memory, the figures, and
the configuration compiled. Choosing again takes real 8B compiles (minutes to half an hour each on a CPU host),
so these tests check without compiling that the record and the file cannot drift apart:

- `auto`'s walk (`choose_remat`, the real code) replayed on the compiler's recorded figures, with the current
  policy order, headroom and chip memory, lands on the file's pinned policy and micro-batch count;
- the configuration `r2r compile` builds from the shipped file is, field by field, the one the `auto` run
  compiled, so any later edit of the platform file or of llama3_1_8b.yaml fails here until the `auto` run is
  repeated;
- the file's comment gives the record's figures.

A change to the model code that moves the compiler's memory figures is not seen here: it calls for the `auto`
runs again.
"""

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest

from r2r_jax.compile import cli
from r2r_jax.compile.chips import CHIPS, parse_topology
from r2r_jax.config import TrainConfig
from r2r_jax.train import remat_choice

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PLATFORM = sorted(CONFIGS.glob("llama3_1_8b_*.yaml"))


def _record(path: Path) -> dict:
    record = path.with_suffix(".auto.json")
    assert record.is_file(), f"{record.name} missing: run the `auto` compile of docs/scaling.md with --json"
    return json.loads(record.read_text())


def _shipped(path: Path, topology: str):
    """The configuration `r2r compile --config PATH --topology TOPOLOGY` compiles (GPU attention substituted)."""
    cfg, _ = cli._load(argparse.Namespace(config=str(path), set=[], topology=topology))
    return cfg


@dataclasses.dataclass
class _Mesh:
    shape: dict


def _replayed_choice(record: dict, cfg, monkeypatch) -> remat_choice.RematChoice:
    """`choose_remat` from micro-batch 1, each compile answered by the record's figures for that attempt."""
    recorded = {(a["policy"], a["micro_batches"]): a for a in record["remat"]["attempts"]}

    def replay(_cfg, _mesh, budget, policy, micro_batches):
        attempt = recorded.get((policy, micro_batches))
        if attempt is None:
            pytest.fail(f"auto now tries remat {policy} with {micro_batches} micro-batches, which the record "
                        "has not compiled: run the `auto` compile again")
        total = attempt["total"]
        fits = total is not None and total <= budget
        return remat_choice.Attempt(policy, micro_batches, total, attempt["temporaries"], fits), object()

    monkeypatch.setattr(remat_choice, "_try", replay)
    chip = CHIPS[parse_topology(record["topology"])[0]]
    start = remat_choice.with_policy(cfg, "auto", 1)
    return remat_choice.choose_remat(start, _Mesh(record["mesh"]), chip.hbm_bytes)


@pytest.mark.parametrize("path", PLATFORM, ids=[p.name for p in PLATFORM])
def test_pinned_policy_is_what_auto_chose(path, monkeypatch):
    record = _record(path)
    topology = record["topology"]
    assert f"--topology {topology}" in path.read_text()  # the file's own compile command names this target
    cfg = _shipped(path, topology)
    choice = _replayed_choice(record, cfg, monkeypatch)
    pinned, chosen = (cfg.model.remat_policy, cfg.micro_batches), (choice.policy, choice.micro_batches)
    assert pinned == chosen, f"{path.name} pins {pinned}, auto chose {chosen}"
    assert choice.attempts[-1].fits  # something fits: the pinned step is the compiled one, not a fallback
    assert (record["remat"]["policy"], record["remat"]["micro_batches"]) == chosen


@pytest.mark.parametrize("path", PLATFORM, ids=[p.name for p in PLATFORM])
def test_shipped_file_compiles_what_auto_compiled(path):
    record = _record(path)
    drifted = _differences(dataclasses.asdict(_shipped(path, record["topology"])), record["config"],
                           dataclasses.asdict(TrainConfig()))
    assert not drifted, f"{path.name} differs from what its auto run compiled in {drifted}: run it again"


def _differences(shipped: dict, recorded: dict, defaults: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between the shipped config and the recorded one. A setting the
    record predates counts as the same while the shipped file leaves it at its default: every setting starts
    with a default that keeps the code's earlier behaviour."""
    out = []
    for key in sorted(shipped.keys() | recorded.keys()):
        x, y, default = shipped.get(key), recorded.get(key), defaults.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, default if isinstance(default, dict) else {}, f"{prefix}{key}.")
        elif key not in recorded and key in defaults and x == default:
            continue
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


@pytest.mark.parametrize("path", PLATFORM, ids=[p.name for p in PLATFORM])
def test_comment_gives_the_recorded_figures(path):
    flops = _record(path)["train_flops"]
    ratio = flops["executed"] / flops["analytic_model"]
    comment = re.search(r"^ *# remat .*$", path.read_text(), re.M)
    assert comment, f"{path.name}: no '# remat ...' line with auto's figures"
    assert f"{ratio:.3f}" in comment.group() and f"MFU <= {flops['mfu_bound']:.0%}" in comment.group()
