"""r2r-jax: Reason-to-Rank students in JAX — rank with a LoRA LLaMA, explain with its reasons."""

import importlib

__version__ = "0.1.0"

# name -> module: loaded on first use, so `import r2r_jax` (and `r2r --help`) stays free of jax. Through
# importlib rather than an import statement: the package root sits in no layer of docs/design.md.
_LAZY = {"Reranker": "r2r_jax.api", "Ranked": "r2r_jax.api"}
__all__ = ["Ranked", "Reranker", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'r2r_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
