"""core/failures.py: how a stage or CLI command fails (the last good outputs put back are tested
with a real `dvc repro` in tests/pipeline)."""

from __future__ import annotations

import pytest

from cifar10_mlops.core.errors import DEBUG_ENV, EXIT_BAD_INPUT, PipelineError
from cifar10_mlops.core.failures import report_errors


@pytest.fixture(autouse=True)
def outside_dvc_without_debug(monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr("sys.argv", ["stage.py"])


@report_errors
def fails_on_bad_input() -> None:
    raise PipelineError("data/raw/trainLabels.csv: line 3 has 1 fields; expected id,label")


def test_bad_input_is_one_line_on_stderr_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        fails_on_bad_input()
    assert stopped.value.code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.err == (
        "error: data/raw/trainLabels.csv: line 3 has 1 fields; expected id,label\n"
    )
    assert captured.out == ""  # nothing to restore outside a DVC stage


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_before_the_line(monkeypatch, capsys, how):
    if how == "flag":
        monkeypatch.setattr("sys.argv", ["cifar10-mlops", "--debug", "predict"])
    else:
        monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(SystemExit):
        fails_on_bad_input()
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("error: data/raw/trainLabels.csv: line 3 has 1 fields; expected id,label\n")


def test_a_bug_keeps_its_traceback_and_a_success_its_value():
    @report_errors
    def buggy() -> None:
        raise ZeroDivisionError("a bug, not bad input")

    @report_errors
    def works() -> int:
        return 7

    with pytest.raises(ZeroDivisionError):
        buggy()
    assert works() == 7
