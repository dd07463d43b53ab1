"""In CI a missing data set or model fails the run; on a developer's machine it is a skip with its reason."""

import pytest
from conftest import missing


def test_a_missing_input_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data here"):
        missing("no data here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no data here"):
        missing("no data here")
