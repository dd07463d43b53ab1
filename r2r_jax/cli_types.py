"""What every `r2r` command's flags share: argparse value types that reject out-of-range numbers with a message
naming the flag (`r2r teach: error: argument --max-queries: must be >= 1, got -3`, exit 2 — never a bad value
quietly accepted), the mesh flags, renamed flags that keep their old spelling for a release, and the help
formatter that shows every default (docs/cli.md lists the flags)."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable


class Terminated(KeyboardInterrupt):
    """SIGTERM (a preempted job, `timeout`, `kill`), raised where the main thread is, as Ctrl-C is: the command
    unwinds the same way (temporary files and staged folders removed on the way out) and `r2r` exits 143."""


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
    group.add_argument("--mesh.data", dest="mesh_data", type=mesh_size, default=-1, metavar="N",
                       help="data-parallel size (-1: rest)")
    group.add_argument("--mesh.fsdp", dest="mesh_fsdp", type=mesh_size, default=1, metavar="N",
                       help="parameter-sharding size")
    group.add_argument("--mesh.tensor", dest="mesh_tensor", type=mesh_size, default=1, metavar="N",
                       help="tensor-parallel size")


def add_renamed(container, flag: str, *old: str, **kwargs) -> argparse.Action:
    """`container.add_argument(flag, **kwargs)` that still accepts the flag's old spellings `old` (kept for one
    release after a rename, so scripts keep working); `--help` and usage show only `flag` (`HelpFormatter`)."""
    action = container.add_argument(flag, *old, **kwargs)
    action.old_spellings = old
    return action


def old_spellings(action: argparse.Action) -> tuple[str, ...]:
    """The renamed flag spellings an action still accepts but does not show (`add_renamed`)."""
    return getattr(action, "old_spellings", ())


def shows_default(action: argparse.Action) -> bool:
    """Whether `--help` must show this option's default: it has a value a user could not guess (not None, not
    an on/off switch's False/True, not an empty list)."""
    if not action.option_strings or action.default in (None, argparse.SUPPRESS):
        return False
    if action.nargs == 0:  # store_true / store_false / count: the flag's presence is the whole story
        return False
    return not (isinstance(action.default, list | tuple) and not action.default)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every `r2r` command's help: each option's default appended unless its help already states one, old
    spellings of renamed flags hidden, and the description and the example epilog kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if shows_default(action) and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = old_spellings(action)
        if not hidden:
            return super()._format_action_invocation(action)
        shown = copy.copy(action)
        shown.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(shown)
