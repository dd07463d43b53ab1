"""r2r-jax: Reason-to-Rank students in JAX — rank with a LoRA LLaMA, explain with its reasons."""

__version__ = "0.1.0"
