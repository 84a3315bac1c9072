"""Make the MLflow UI pictures in docs/: the runs list, the compare page and a run's page.

A docs tool over the browser test's own code (tests/helpers/mlflow_ui.py: `mlflow ui` on
127.0.0.1 and Debian's Chromium driven by Playwright, both in the project's .venv; apt-get
install chromium if it is missing).

    .venv/bin/python docs/make_screenshot.py                    # the pictures the test takes
    .venv/bin/python docs/make_screenshot.py --store mlflow.db  # your own two newest runs

Without --store it runs the browser test, tests/tracking/test_mlflow_ui.py, with
CIFAR10_MLOPS_SCREENSHOTS=docs/: two real pipeline runs in a throwaway repository (`dvc repro`,
then `dvc exp run -n lr-0.01 -S train.learning_rate=0.01`), checked in the browser, and the
pages saved as docs/mlflow-runs.png, docs/mlflow-compare.png and docs/mlflow-run.png (about
2 minutes on 2 cores). With --store it takes the two newest finished runs of that store and
the param that differs between them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' helpers, shared with the browser test

from tests.helpers.mlflow_ui import (  # noqa: E402
    EXPERIMENT,
    Browser,
    MlflowUI,
    chromium_path,
    screenshot,
    show_runs_table,
    tidy_compare_page,
)

TEST = "tests/tracking/test_mlflow_ui.py"


def from_the_test(output: Path) -> None:
    env = {**os.environ, "CIFAR10_MLOPS_SCREENSHOTS": str(output)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
    sys.exit(subprocess.run(command, cwd=REPO, env=env).returncode)


def from_a_store(store: Path, output: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{store.resolve()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        sys.exit(f"error: no experiment {EXPERIMENT!r} in {store}")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=2,
    )[::-1]
    if len(runs) < 2:
        sys.exit(f"error: {store} holds {len(runs)} finished run(s) in {EXPERIMENT!r}; need 2")
    names = [run.info.run_name for run in runs]
    changed = [k for k, v in runs[0].data.params.items() if runs[1].data.params.get(k) != v]
    executable = chromium_path()
    if executable is None:
        sys.exit("error: no chromium on PATH; apt-get install chromium (or set CHROMIUM=path)")
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-") as workdir:
        with MlflowUI(uri, Path(workdir)) as ui, Browser(executable) as browser:
            page = browser.open(ui.runs_url(experiment.experiment_id), names, height=480)
            show_runs_table(page, [*changed[:2], "test_accuracy", "test_loss"])
            screenshot(page, output / "mlflow-runs.png", height=480, grow=False)
            run_ids = [run.info.run_id for run in runs]
            page = browser.open(ui.compare_url(experiment.experiment_id, run_ids), names)
            tidy_compare_page(page)
            screenshot(page, output / "mlflow-compare.png")
            url = f"{ui.url}/#/experiments/{experiment.experiment_id}/runs/{run_ids[1]}"
            screenshot(browser.open(url, names[1:]), output / "mlflow-run.png", max_height=2000)
    print(
        f"wrote {output}/mlflow-runs.png, mlflow-compare.png, mlflow-run.png ({', '.join(names)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="an MLflow sqlite file: its two newest runs")
    parser.add_argument("--output", type=Path, default=REPO / "docs", help="where the PNGs go")
    args = parser.parse_args()
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    if args.store:
        from_a_store(args.store, output)
    else:
        from_the_test(output)


if __name__ == "__main__":
    main()
