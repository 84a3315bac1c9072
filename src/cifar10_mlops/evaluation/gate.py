"""CI regression gate: compare reports/metrics.json with the bounds in .ci/baseline.json.

Baseline format (``.ci/baseline.json``)::

    {
      "tolerance": 0.05,
      "metrics": {
        "accuracy": {"min": 0.50},
        "macro_f1": {"min": 0.45},
        "loss":     {"max": 1.50, "tolerance": 0.10}
      }
    }

* Each metric has exactly one bound: ``min`` (higher is better) or ``max`` (lower is better).
* ``tolerance`` is absolute. The top-level value is the default (0 when absent); a per-metric
  ``tolerance`` overrides it.
* A ``min`` metric fails when its value is below ``min - tolerance``; a ``max`` metric fails
  when it is above ``max + tolerance``. A value exactly on that limit passes.
* A metric named in the baseline but missing from metrics.json (or not a finite number there)
  fails. Metrics that the baseline does not name (``n_test``, ...) are ignored.

A broken baseline (unknown keys, both or neither of min/max, negative tolerance, ...) is not a
metric failure: it raises :class:`PipelineError`, as does an unreadable or invalid JSON file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_mlops.core.errors import PipelineError

EXIT_OK = 0
EXIT_FAILED = 1

# Slack for float round-off in `min - tolerance` / `max + tolerance`, so that a value written
# exactly on the limit passes (0.04 - 0.03 is 0.010000000000000002 in binary floating point).
_EPS = 1e-9

_BOUND_KINDS = ("min", "max")
_METRIC_KEYS = frozenset({"min", "max", "tolerance"})
_TOP_KEYS = frozenset({"tolerance", "metrics"})


@dataclass(frozen=True)
class Bound:
    """One metric's bound from the baseline."""

    name: str
    kind: str  # "min" or "max"
    target: float
    tolerance: float

    @property
    def limit(self) -> float:
        """The worst value that still passes."""
        if self.kind == "min":
            return self.target - self.tolerance
        return self.target + self.tolerance

    @property
    def op(self) -> str:
        return ">=" if self.kind == "min" else "<="

    def describe(self) -> str:
        sign = "-" if self.kind == "min" else "+"
        return f"{self.kind} {self.target:g} {sign} tolerance {self.tolerance:g}"

    def accepts(self, value: float) -> bool:
        if self.kind == "min":
            return value >= self.limit - _EPS
        return value <= self.limit + _EPS


@dataclass(frozen=True)
class MetricResult:
    """The verdict on one metric."""

    bound: Bound
    value: Any  # the raw value from metrics.json; None when missing
    failure: str | None  # human-readable reason; None when the metric passes

    @property
    def ok(self) -> bool:
        return self.failure is None

    def line(self, name_width: int = 0) -> str:
        """One report line: name, value, bound, OK/FAIL."""
        b = self.bound
        if _is_number(self.value):
            shown = f"{float(self.value):.4f}"
        elif self.value is None:
            shown = "missing"
        else:
            shown = repr(self.value)
        status = "OK" if self.ok else "FAIL"
        return (
            f"{b.name:<{name_width}}  {shown:>8}  {b.op} {b.limit:.4f}  ({b.describe()})  {status}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any, where: str, source: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise PipelineError(
            f"{source}: {where} must be a finite number, got {value!r}; fix the baseline"
        )
    return float(value)


def _tolerance(value: Any, where: str, source: str) -> float:
    tol = _number(value, where, source)
    if tol < 0:
        raise PipelineError(f"{source}: {where} must be >= 0, got {tol:g}; fix the baseline")
    return tol


def parse_baseline(baseline: Any, source: str = "baseline") -> list[Bound]:
    """Validate a baseline document and return its bounds, in file order.

    `source` names the baseline in error messages (run_gate passes the file path).
    """
    if not isinstance(baseline, dict):
        raise PipelineError(
            f"{source}: must be a JSON object with a 'metrics' object, "
            f"got {type(baseline).__name__}; fix the baseline"
        )
    unknown = sorted(set(baseline) - _TOP_KEYS)
    if unknown:
        raise PipelineError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    default_tol = _tolerance(baseline.get("tolerance", 0.0), "tolerance", source)
    metrics = baseline.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise PipelineError(
            f"{source}: 'metrics' must be a non-empty object such as "
            '{"accuracy": {"min": 0.5}}; fix the baseline'
        )

    bounds: list[Bound] = []
    for name, spec in metrics.items():
        where = f"metrics.{name}"
        if not isinstance(spec, dict):
            raise PipelineError(
                f'{source}: {where} must be an object like {{"min": 0.5}}, got {spec!r}'
            )
        unknown = sorted(set(spec) - _METRIC_KEYS)
        if unknown:
            raise PipelineError(
                f"{source}: {where} has unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(_METRIC_KEYS))}"
            )
        kinds = [k for k in _BOUND_KINDS if k in spec]
        if len(kinds) != 1:
            raise PipelineError(
                f"{source}: {where} needs exactly one of 'min' (higher is better) or "
                f"'max' (lower is better), got {kinds or 'neither'}"
            )
        kind = kinds[0]
        target = _number(spec[kind], f"{where}.{kind}", source)
        tol = (
            _tolerance(spec["tolerance"], f"{where}.tolerance", source)
            if "tolerance" in spec
            else default_tol
        )
        bounds.append(Bound(name=name, kind=kind, target=target, tolerance=tol))
    return bounds


def evaluate(metrics: Any, bounds: list[Bound]) -> list[MetricResult]:
    """Judge each bound against `metrics` (the parsed metrics.json)."""
    if not isinstance(metrics, dict):
        raise PipelineError(
            f"metrics must be a JSON object of name -> number, got {type(metrics).__name__}"
        )
    results: list[MetricResult] = []
    for b in bounds:
        if b.name not in metrics:
            value = None
            failure = (
                f"{b.name} is missing from the metrics (expected a number {b.op} {b.limit:.4f})"
            )
        else:
            value = metrics[b.name]
            if not _is_number(value):
                failure = f"{b.name} = {value!r} is not a number"
            elif not math.isfinite(value):
                failure = f"{b.name} = {value!r} is not a finite number"
            elif b.accepts(value):
                failure = None
            else:
                side = "below" if b.kind == "min" else "above"
                failure = f"{b.name} = {float(value):.4f} is {side} {b.limit:.4f} ({b.describe()})"
        results.append(MetricResult(bound=b, value=value, failure=failure))
    return results


def check_metrics(metrics: dict, baseline: dict) -> list[str]:
    """Return one human-readable message per failing metric; empty when all pass.

    Raises PipelineError when `baseline` itself is malformed.
    """
    results = evaluate(metrics, parse_baseline(baseline))
    return [r.failure for r in results if r.failure is not None]


def _load_json(path: Path, what: str, fix: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: {what} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PipelineError(f"{path}: cannot read {what} ({reason}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(
            f"{path}: {what} is not valid JSON (line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}); {fix}"
        ) from None


def markdown_table(results: list[MetricResult]) -> str:
    """The verdicts as a markdown table (CI's pull-request comment): each metric against the
    committed baseline, the difference, and the limit it must stay within."""
    rows = [
        "| metric | baseline | this run | change | limit | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        value = float(r.value) if _is_number(r.value) else None
        shown = f"{value:.4f}" if value is not None else "missing"
        change = f"{value - r.bound.target:+.4f}" if value is not None else ""
        rows.append(
            f"| {r.bound.name} | {r.bound.target:.4f} | {shown} | {change} | "
            f"{r.bound.op} {r.bound.limit:.4f} | {'pass' if r.ok else '**FAIL**'} |"
        )
    return "\n".join(rows) + "\n"


def run_gate(metrics_path: Path, baseline_path: Path, markdown: Path | None = None) -> int:
    """Print one line per baseline metric and return 0 when all pass, 1 otherwise;
    `markdown`: also write the verdicts there as a table.

    Raises PipelineError when either file is missing, unreadable, not JSON, or malformed.
    """
    metrics_path = Path(metrics_path)
    baseline_path = Path(baseline_path)
    baseline_fix = (
        f"fix it or restore it with `git checkout -- {baseline_path}` "
        "(format: see cifar10_mlops/gate.py)"
    )
    baseline = _load_json(baseline_path, "baseline file", baseline_fix)
    bounds = parse_baseline(baseline, source=str(baseline_path))

    metrics_fix = "run `make repro` (or `dvc repro`) to produce it"
    metrics = _load_json(metrics_path, "metrics file", metrics_fix)
    if not isinstance(metrics, dict):
        raise PipelineError(
            f"{metrics_path}: metrics file must be a JSON object of name -> number, "
            f"got {type(metrics).__name__}; {metrics_fix}"
        )

    results = evaluate(metrics, bounds)
    if markdown is not None:
        Path(markdown).write_text(markdown_table(results), encoding="utf-8")
    width = max(len(b.name) for b in bounds)
    for r in results:
        print(r.line(width))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"gate: FAIL - {len(failed)} of {len(results)} metric(s) out of bounds")
        for r in failed:
            print(f"  {r.failure}")
        return EXIT_FAILED
    print(f"gate: PASS - {len(results)} metric(s) within bounds")
    return EXIT_OK
