"""The `r2r` entry point itself: its version and its command list."""

from __future__ import annotations

import subprocess
import sys

import r2r_jax
from r2r_jax.cli import COMMANDS


def test_version_and_command_list_come_from_the_executable():
    version = subprocess.run([sys.executable, "-m", "r2r_jax.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"r2r-jax {r2r_jax.__version__}"
    listing = subprocess.run([sys.executable, "-m", "r2r_jax.cli", "--help"], capture_output=True, text=True)
    assert listing.returncode == 0
    assert all(f"  {name} " in listing.stdout for name in COMMANDS)
