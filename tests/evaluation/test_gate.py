"""The CI regression gate: bounds, tolerance, missing metrics, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar10_mlops.cli.main import main as cli_main
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.evaluation.gate import check_metrics, parse_baseline, run_gate
from tests.helpers import REPO

REPO_ROOT = REPO

BASELINE = {
    "tolerance": 0.05,
    "metrics": {"accuracy": {"min": 0.60}, "macro_f1": {"min": 0.55}},
}
GOOD = {"accuracy": 0.71, "loss": 0.9, "macro_f1": 0.70, "n_test": 500}


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


# --- check_metrics --------------------------------------------------------------------------


def test_all_metrics_above_min_pass():
    assert check_metrics(GOOD, BASELINE) == []


def test_metric_below_min_minus_tolerance_fails():
    failures = check_metrics({**GOOD, "accuracy": 0.54}, BASELINE)
    assert len(failures) == 1
    assert "accuracy" in failures[0] and "below" in failures[0]
    assert "0.5400" in failures[0] and "0.5500" in failures[0]


def test_metric_below_min_but_within_tolerance_passes():
    assert check_metrics({**GOOD, "accuracy": 0.57}, BASELINE) == []


@pytest.mark.parametrize(
    ("bound", "tol", "value"),
    [
        (0.60, 0.05, 0.55),
        (0.50, 0.05, 0.45),
        # 0.04 - 0.03 == 0.010000000000000002 in floating point: naive `<` would fail 0.01.
        (0.04, 0.03, 0.01),
        (0.50, 0.0, 0.50),
    ],
)
def test_value_exactly_at_min_minus_tolerance_passes(bound, tol, value):
    baseline = {"tolerance": tol, "metrics": {"accuracy": {"min": bound}}}
    assert check_metrics({"accuracy": value}, baseline) == []


def test_value_just_past_the_boundary_fails():
    baseline = {"tolerance": 0.05, "metrics": {"accuracy": {"min": 0.50}}}
    assert check_metrics({"accuracy": 0.4499}, baseline)


def test_max_metric_passes_up_to_max_plus_tolerance_and_fails_above():
    baseline = {"tolerance": 0.1, "metrics": {"loss": {"max": 1.5}}}
    assert check_metrics({"loss": 1.2}, baseline) == []
    assert check_metrics({"loss": 1.6}, baseline) == []  # exactly max + tolerance
    failures = check_metrics({"loss": 1.61}, baseline)
    assert len(failures) == 1
    assert "loss" in failures[0] and "above" in failures[0]


def test_max_boundary_with_float_round_off_passes():
    # 0.02 + 0.12 == 0.13999999999999999 in floating point.
    baseline = {"metrics": {"loss": {"max": 0.02, "tolerance": 0.12}}}
    assert check_metrics({"loss": 0.14}, baseline) == []


def test_per_metric_tolerance_overrides_global():
    baseline = {
        "tolerance": 0.05,
        "metrics": {"accuracy": {"min": 0.60, "tolerance": 0.0}, "macro_f1": {"min": 0.55}},
    }
    failures = check_metrics({"accuracy": 0.58, "macro_f1": 0.51}, baseline)
    assert len(failures) == 1 and failures[0].startswith("accuracy")


def test_missing_tolerance_means_zero():
    baseline = {"metrics": {"accuracy": {"min": 0.60}}}
    assert check_metrics({"accuracy": 0.5999}, baseline)


def test_missing_metric_fails():
    metrics = {k: v for k, v in GOOD.items() if k != "macro_f1"}
    failures = check_metrics(metrics, BASELINE)
    assert len(failures) == 1
    assert "macro_f1" in failures[0] and "missing" in failures[0]


@pytest.mark.parametrize("bad", ["0.9", None, True, float("nan"), float("inf")])
def test_non_numeric_or_non_finite_metric_fails(bad):
    failures = check_metrics({**GOOD, "accuracy": bad}, BASELINE)
    assert len(failures) == 1 and failures[0].startswith("accuracy")


def test_metrics_not_named_in_baseline_are_ignored():
    assert check_metrics({**GOOD, "n_test": -1, "extra": "x"}, BASELINE) == []


@pytest.mark.parametrize(
    ("baseline", "needle"),
    [
        ([], "JSON object"),
        ({"metrics": {}}, "non-empty"),
        ({"tolerance": 0.05}, "non-empty"),
        ({"metrics": {"accuracy": {"min": 0.5, "max": 0.9}}}, "exactly one"),
        ({"metrics": {"accuracy": {}}}, "exactly one"),
        ({"metrics": {"accuracy": {"mni": 0.5}}}, "unknown key"),
        ({"metrics": {"accuracy": {"min": "0.5"}}}, "metrics.accuracy.min"),
        ({"metrics": {"accuracy": 0.5}}, "metrics.accuracy"),
        ({"tolerance": -0.1, "metrics": {"accuracy": {"min": 0.5}}}, ">= 0"),
        ({"tolerence": 0.1, "metrics": {"accuracy": {"min": 0.5}}}, "unknown top-level"),
    ],
)
def test_malformed_baseline_raises(baseline, needle):
    with pytest.raises(PipelineError, match=needle):
        check_metrics(GOOD, baseline)


def test_committed_baseline_is_valid():
    data = json.loads((REPO_ROOT / ".ci" / "baseline.json").read_text(encoding="utf-8"))
    names = {b.name for b in parse_baseline(data)}
    assert {"accuracy", "macro_f1", "loss"} <= names


# --- run_gate -------------------------------------------------------------------------------


def test_run_gate_pass_returns_0_and_prints_one_line_per_metric(tmp_path, capsys):
    metrics = _write(tmp_path / "metrics.json", GOOD)
    baseline = _write(tmp_path / "baseline.json", BASELINE)
    assert run_gate(metrics, baseline) == 0
    lines = capsys.readouterr().out.splitlines()
    acc = next(line for line in lines if line.startswith("accuracy"))
    f1 = next(line for line in lines if line.startswith("macro_f1"))
    assert "0.7100" in acc and ">= 0.5500" in acc and acc.endswith("OK")
    assert "0.7000" in f1 and ">= 0.5000" in f1 and f1.endswith("OK")
    assert not any(line.startswith("loss") for line in lines)  # not in the baseline
    assert "PASS" in lines[-1]


def test_run_gate_fail_returns_1_and_marks_the_metric(tmp_path, capsys):
    metrics = _write(tmp_path / "metrics.json", {**GOOD, "macro_f1": 0.3})
    baseline = _write(tmp_path / "baseline.json", BASELINE)
    assert run_gate(metrics, baseline) == 1
    lines = capsys.readouterr().out.splitlines()
    acc = next(line for line in lines if line.startswith("accuracy"))
    f1 = next(line for line in lines if line.startswith("macro_f1"))
    assert acc.endswith("OK")
    assert "0.3000" in f1 and ">= 0.5000" in f1 and f1.endswith("FAIL")
    assert any(line.startswith("gate: FAIL") for line in lines)


def test_run_gate_missing_metric_returns_1(tmp_path, capsys):
    metrics = _write(tmp_path / "metrics.json", {k: v for k, v in GOOD.items() if k != "accuracy"})
    baseline = _write(tmp_path / "baseline.json", BASELINE)
    assert run_gate(metrics, baseline) == 1
    lines = capsys.readouterr().out.splitlines()
    acc = next(line for line in lines if line.startswith("accuracy"))
    assert "missing" in acc and acc.endswith("FAIL")


@pytest.mark.parametrize(
    ("which", "content", "needle"),
    [
        ("metrics", None, "not found"),
        ("metrics", "{not json", "not valid JSON"),
        ("metrics", "[1, 2]", "JSON object"),
        ("baseline", None, "not found"),
        ("baseline", '{"metrics": {"accuracy": {"min": 0.5}', "not valid JSON"),
        ("baseline", '{"metrics": {"accuracy": {"min": 0.5, "max": 1}}}', "exactly one"),
    ],
)
def test_run_gate_bad_file_raises_pipeline_error_naming_it(tmp_path, which, content, needle):
    paths = {
        "metrics": _write(tmp_path / "metrics.json", GOOD),
        "baseline": _write(tmp_path / "baseline.json", BASELINE),
    }
    bad = paths[which]
    if content is None:
        bad.unlink()
    else:
        _write(bad, content)
    with pytest.raises(PipelineError) as info:
        run_gate(paths["metrics"], paths["baseline"])
    message = str(info.value)
    assert str(bad) in message
    assert needle in message
    assert "\n" not in message
    if which == "metrics":
        assert "repro" in message  # says what to do


def test_run_gate_directory_instead_of_file_raises(tmp_path):
    baseline = _write(tmp_path / "baseline.json", BASELINE)
    with pytest.raises(PipelineError, match="cannot read"):
        run_gate(tmp_path, baseline)


def test_main_exit_codes(tmp_path, capsys):
    metrics = _write(tmp_path / "metrics.json", GOOD)
    baseline = _write(tmp_path / "baseline.json", BASELINE)
    assert cli_main(["gate", "--metrics", str(metrics), "--baseline", str(baseline)]) == 0
    _write(metrics, {**GOOD, "accuracy": 0.1})
    assert cli_main(["gate", "--metrics", str(metrics), "--baseline", str(baseline)]) == 1
    with pytest.raises(SystemExit) as info:
        cli_main(["gate", "--metrics", str(tmp_path / "absent.json"), "--baseline", str(baseline)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent.json" in err
