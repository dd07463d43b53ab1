"""The accelerators `r2r compile` targets, and its --topology spelling, without jax: a wrong topology is refused
before JAX (or libtpu) starts and before the config is compiled."""

from __future__ import annotations

from dataclasses import dataclass

from r2r_jax.config_io import ConfigError

GiB = 1024**3


@dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: int
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bandwidth: float  # bytes/s


CHIPS = {  # the vendors' published figures
    "v5p": Chip("TPU v5p", 95 * GiB, 459e12, 2765e9),
    "v5e": Chip("TPU v5e", 16 * GiB, 197e12, 819e9),
    "v6e": Chip("TPU v6e", 32 * GiB, 918e12, 1640e9),
    "h100": Chip("NVIDIA H100", 80 * GiB, 989e12, 3350e9),
}


def parse_topology(topology: str) -> tuple[str, list[int]]:
    """(chip kind, dimensions) of `v5p:2x2x1`, `v5e:4x4`, `h100:8` (`h100` alone: 8); a ConfigError naming
    --topology for an unknown chip or a shape that is not positive integers joined by 'x'."""
    kind, _, shape = topology.partition(":")
    kind = kind.lower()
    if kind not in CHIPS:
        raise ConfigError(f"--topology {topology}: unknown chip {kind!r}; known: {', '.join(sorted(CHIPS))} "
                         "(e.g. v5p:2x2x1, v5e:4x4, h100:8)")
    if kind == "h100" and not shape:
        return kind, [8]
    try:
        dims = [int(x) for x in shape.split("x")]
    except ValueError:  # not integers
        dims = []
    if not dims or min(dims) < 1 or (kind == "h100" and len(dims) != 1):
        example = "h100:8" if kind == "h100" else f"{kind}:2x2" + ("x1" if kind == "v5p" else "")
        raise ConfigError(f"--topology {topology}: expected {kind}:<positive sizes joined by x>, e.g. {example}")
    return kind, dims
