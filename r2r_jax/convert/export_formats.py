"""The export formats and weight dtypes `r2r export` offers, in a module of their own: the command's `--help`
lists them without importing the exporter (jax)."""

FORMATS = ("seq-cls", "causal-lm", "peft")
DTYPES = ("bfloat16", "float32")
