"""argparse value types that reject out-of-range numbers with a message naming the flag (argparse adds it):
`r2r teach: error: argument --limit: must be >= 1, got -3`, exit 2 — never a bad value quietly accepted."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _bounded(kind: type, minimum: float, inclusive: bool = True) -> Callable[[str], int | float]:
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):  # nan / inf
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {relation} {minimum}"  # how argparse names the type in its messages
    return parse


positive_int = _bounded(int, 1)  # counts of things that must exist: batch sizes, top-k, lengths
non_negative_int = _bounded(int, 0)  # counts that may be zero: retries, explanations, seeds
positive_float = _bounded(float, 0.0, inclusive=False)  # timeouts, tolerances, intervals
non_negative_float = _bounded(float, 0.0)  # temperatures, prices, budgets, BM25 k1


def unit_float(text: str) -> float:
    """A number in [0, 1] (BM25 b, discounts)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def mesh_size(text: str) -> int:
    """A device-mesh axis size: a positive count, or -1 for all the devices the other axes leave."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be a positive size or -1 (all remaining devices), got {text}")
    return value


def add_mesh_arguments(group) -> None:
    """This host's device mesh, the same three flags on every command that loads a student (`r2r rerank`,
    `r2r evaluate-reasons`); -1 takes the devices the other axes leave."""
    group.add_argument("--mesh.data", dest="mesh_data", type=mesh_size, default=-1,
                       help="data-parallel size (-1: rest)")
    group.add_argument("--mesh.fsdp", dest="mesh_fsdp", type=mesh_size, default=1, help="parameter-sharding size")
    group.add_argument("--mesh.tensor", dest="mesh_tensor", type=mesh_size, default=1, help="tensor-parallel size")
