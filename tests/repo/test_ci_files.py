"""The CI wiring: the GitHub workflow is schema-valid, and .ci/run, .ci/check.sh, the workflow
and the README all name the same steps and the same test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

REPO_ROOT = REPO
CI_RUN = REPO_ROOT / ".ci" / "run"
CHECK_SH = REPO_ROOT / ".ci" / "check.sh"
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
README = REPO_ROOT / "README.md"

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

CHECK_SH_CALL = re.compile(r"bash\s+\.ci/check\.sh\s+([\w-]+)")


def _workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


def _check_jsonschema() -> Path:
    exe = Path(sys.executable).parent / (
        "check-jsonschema.exe" if os.name == "nt" else "check-jsonschema"
    )
    assert exe.is_file(), (
        f"{exe} not found: install the dev extras (pip install -e '.[dev]') into this venv"
    )
    return exe


def _validate_workflows(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(_check_jsonschema()),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _code_lines(text: str) -> list[str]:
    """Shell lines with comments and blank lines dropped (good enough for these scripts)."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def _function_body(script: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\(\)\s*\{{\n(.*?)^\}}", script, re.M | re.S)
    assert match, f"{CHECK_SH} has no function {name}()"
    return match.group(1)


def _runs_command(body: str, command: str) -> bool:
    pattern = re.compile(rf"(?<![\w./-]){re.escape(command)}(?![\w-])")
    return any(pattern.search(line) for line in _code_lines(body))


def _all_steps() -> list[str]:
    match = re.search(r"^ALL_STEPS=\(([^)]*)\)", CHECK_SH.read_text(encoding="utf-8"), re.M)
    assert match, f"{CHECK_SH} must define ALL_STEPS=(...) for the 'all' step"
    return match.group(1).split()


def _workflow_check_sh_calls(path: Path) -> list[tuple[str, dict]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    calls = []
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            for name in CHECK_SH_CALL.findall(step.get("run", "")):
                calls.append((name, step))
    return calls


# --- the workflow is valid, and the validation really catches breakage ----------------------


def test_workflow_files_exist():
    assert _workflow_files(), f"no workflow files in {WORKFLOWS_DIR}"


@pytest.mark.parametrize("workflow", _workflow_files(), ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow):
    result = _validate_workflows(workflow)
    assert result.returncode == 0, (
        f"{workflow} fails the GitHub workflow schema:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("runs-on:", "runs_on:"),  # unknown job key, required key missing
        ("timeout-minutes: 60", "timeout-minutes: [60]"),  # wrong type
        ("steps:", "steps: {oops: 1}\n    old_steps:"),  # steps must be a list
    ],
)
def test_schema_check_rejects_a_broken_workflow(tmp_path, old, new):
    original = (WORKFLOWS_DIR / "ci.yml").read_text(encoding="utf-8")
    assert old in original, f"ci.yml no longer contains {old!r}; update this negative test"
    broken = tmp_path / "ci.yml"
    broken.write_text(original.replace(old, new, 1), encoding="utf-8")
    result = _validate_workflows(broken)
    assert result.returncode != 0, (
        f"check-jsonschema accepted a broken workflow ({old!r} -> {new!r})"
    )
    output = result.stdout + result.stderr
    assert "ci.yml" in output
    assert "Failed to parse" not in output  # rejected by the schema, not by the YAML parser


def test_lint_step_validates_workflows_with_the_same_schema():
    lint = _function_body(CHECK_SH.read_text(encoding="utf-8"), "step_lint")
    assert _runs_command(lint, "--builtin-schema vendor.github-workflows")
    assert ".github/workflows/*.yml" in lint


def _make_target(name: str) -> str:
    """The recipe lines of one Makefile target."""
    lines = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return "\n".join(recipe)


def test_lint_step_runs_make_lint_which_checks_style_format_and_types():
    lint = _function_body(CHECK_SH.read_text(encoding="utf-8"), "step_lint")
    assert _runs_command(lint, "make lint")
    target = _make_target("lint")
    assert "ruff check" in target
    assert "ruff format --check" in target
    assert "mypy" in target


def test_make_test_fast_skips_only_the_slow_tests_and_make_test_runs_everything():
    assert '-m "not slow"' in _make_target("test-fast")
    full = _make_target("test")
    assert "not slow" not in full and " -k " not in full, full


def test_pre_commit_runs_ruff_and_ruff_format():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    entries = [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]
    assert any(entry.startswith("ruff check") for entry in entries), entries
    assert any(entry.startswith("ruff format") for entry in entries), entries


# --- one script, one set of steps ------------------------------------------------------------


def test_ci_run_execs_check_sh_all():
    lines = _code_lines(CI_RUN.read_text(encoding="utf-8"))
    assert lines[0].startswith("#!") or lines[0].startswith("set "), lines[0]
    assert "set -euo pipefail" in lines
    assert any(re.match(r"exec bash \.ci/check\.sh all(\s|$)", line) for line in lines), (
        ".ci/run must end in `exec bash .ci/check.sh all`"
    )
    assert any("DVC_NO_ANALYTICS=1" in line for line in lines)


def test_check_sh_all_runs_install_lint_test_pipeline():
    assert _all_steps() == ["install", "lint", "test", "pipeline"]


def test_check_sh_test_step_runs_make_test():
    body = _function_body(CHECK_SH.read_text(encoding="utf-8"), "step_test")
    assert _runs_command(body, "make test"), "check.sh's test step must run `make test`"


def _readme_test_commands() -> list[str]:
    commands, fenced = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            command = re.sub(r"^\$\s+", "", stripped)
            command = re.sub(r"\s+#.*$", "", command)  # a trailing shell comment is not the command
            if re.match(r"make\s+test(\s|$)", command):
                commands.append(command)
    return commands


def test_check_sh_test_step_runs_the_readme_test_command():
    if not README.is_file():
        pytest.skip("README.md does not exist yet; cannot compare its test command")
    commands = _readme_test_commands()
    assert commands, "README.md has no fenced `make test` line for users to run"
    body = _function_body(CHECK_SH.read_text(encoding="utf-8"), "step_test")
    for command in commands:
        assert _runs_command(body, command), (
            f"README.md tells users to run `{command}` but .ci/check.sh's test step does not"
        )


def test_check_sh_pipeline_step_runs_repro_and_gates_the_gate_recipe():
    script = CHECK_SH.read_text(encoding="utf-8")
    body = _function_body(script, "step_pipeline")
    assert any(re.search(r"\bmake\s+repro\b", line) for line in _code_lines(body))
    assert _runs_command(body, "gate_recipe_run")
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^repro:.*\n\t\S*dvc repro$", makefile, re.MULTILINE)
    # The gate's recipe through `dvc exp run` with the preset, its metrics against the baseline.
    gate = " ".join(_code_lines(_function_body(script, "gate_recipe_run"))).replace("\\ ", "")
    assert re.search(r"dvc\" exp run\s+\$\(\S*cifar10-mlops\" preset ci-gate\)", gate), gate
    assert re.search(
        r"cifar10-mlops\" gate --metrics reports/ci-gate/metrics.json\s+--baseline "
        r"\.ci/baseline\.json",
        gate,
    ), gate


@pytest.mark.parametrize("workflow", _workflow_files(), ids=lambda p: p.name)
def test_workflow_calls_the_same_check_sh_steps_in_order(workflow):
    calls = _workflow_check_sh_calls(workflow)
    script = CHECK_SH.read_text(encoding="utf-8")
    for name, _step in calls:
        _function_body(script, f"step_{name.replace('-', '_')}")  # the step exists
    names = [name for name, _ in calls if name != "metrics-diff"]
    assert names == _all_steps(), (
        f"{workflow.name} runs check.sh steps {names}, but `check.sh all` runs {_all_steps()}"
    )


def test_workflow_runs_metrics_diff_only_on_pull_requests():
    calls = _workflow_check_sh_calls(WORKFLOWS_DIR / "ci.yml")
    diff_steps = [step for name, step in calls if name == "metrics-diff"]
    assert len(diff_steps) == 1
    assert "pull_request" in str(diff_steps[0].get("if", ""))
    assert "metrics-diff.md" in diff_steps[0]["run"]


def test_workflow_uploads_reports_always():
    doc = yaml.safe_load((WORKFLOWS_DIR / "ci.yml").read_text(encoding="utf-8"))
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload and upload[0].get("if") == "always()"
    assert str(upload[0]["with"]["path"]).rstrip("/") == "reports"


# --- the scripts themselves -------------------------------------------------------------------


@needs_bash
@pytest.mark.parametrize("script", [CI_RUN, CHECK_SH], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_script_syntax(script):
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, f"bash -n {script}:\n{result.stderr}"


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize("script", [CI_RUN, CHECK_SH], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_script_is_executable(script):
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(REPO_ROOT)}"


@needs_bash
@pytest.mark.parametrize("args", [[], ["bogus"], ["metrics-diff"], ["lint", "extra"]])
def test_check_sh_rejects_bad_usage(args):
    result = subprocess.run(
        [BASH, str(CHECK_SH), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "check.sh" in result.stderr


def _run_test_step_with_fake_make(tmp_path: Path, output: str, rc: int):
    """Run `check.sh test` with a stand-in `make` that prints `output` and exits `rc`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "out.txt").write_text(output, encoding="utf-8")
    fake = bin_dir / "make"
    fake.write_text(f'#!/bin/sh\ncat "{tmp_path / "out.txt"}"\nexit {rc}\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [BASH, str(CHECK_SH), "test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@needs_bash
@pytest.mark.skipif(os.name == "nt", reason="fake make is a POSIX shell script")
@pytest.mark.parametrize(
    ("output", "rc", "ok", "message"),
    [
        ("....\n4 passed in 0.12s\n", 0, True, "test OK"),
        (
            "\nno tests ran in 0.01s\nmake: *** [Makefile:9: test] Error 5\n",
            2,
            False,
            "collected no tests",
        ),
        ("=== no tests ran in 0.01s ===\n", 0, False, "collected no tests"),
        (
            "F\n1 failed in 0.2s\nmake: *** [Makefile:9: test] Error 1\n",
            2,
            False,
            "'make test' failed",
        ),
    ],
    ids=["pass", "exit-5-via-make", "no-tests-swallowed", "failure"],
)
def test_check_sh_test_step_exit_codes(tmp_path, output, rc, ok, message):
    result = _run_test_step_with_fake_make(tmp_path, output, rc)
    assert (result.returncode == 0) is ok, result.stderr
    assert message in result.stderr
    assert output.strip().splitlines()[-1] in result.stdout + result.stderr  # output shown
