"""Library modules log; `r2r` shows the records on stderr as the command's own lines, at the level that
--quiet / --verbose choose, and stdout stays the command's output."""

import logging
import sys

import pytest

from r2r_jax import cli

FAKE = '''
import logging

log = logging.getLogger("r2r_jax.fake")


def main(argv):
    log.debug("detail")
    log.info("resumed from step 3")
    log.warning("SIGTERM: saved step 3")
    log.error("non-finite loss at step 4")
    print("the result")
    return 0
'''


@pytest.fixture
def fake_command(tmp_path, monkeypatch):
    (tmp_path / "r2r_fake_command.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("r2r_fake_command", "logs at every level"))
    yield
    sys.modules.pop("r2r_fake_command", None)
    cli.configure_logging("fake", logging.INFO)


@pytest.mark.parametrize("flags, lines", [
    ([], ["resumed from step 3", "r2r fake: SIGTERM: saved step 3", "r2r fake: error: non-finite loss at step 4"]),
    (["--quiet"], ["r2r fake: SIGTERM: saved step 3", "r2r fake: error: non-finite loss at step 4"]),
    (["--verbose"], ["detail", "resumed from step 3", "r2r fake: SIGTERM: saved step 3",
                     "r2r fake: error: non-finite loss at step 4"]),
])
def test_log_levels_and_lines(fake_command, capsys, flags, lines):
    assert cli.main(["fake", *flags]) == 0
    captured = capsys.readouterr()
    assert captured.out == "the result\n"
    assert captured.err.splitlines() == lines


def test_a_second_command_in_one_process_replaces_the_handler(fake_command, capsys):
    cli.main(["fake"])
    cli.main(["fake", "--quiet"])
    assert capsys.readouterr().err.count("SIGTERM") == 2  # one handler each time, not one more per call
