"""Make docs/mlflow-compare.png: the MLflow UI comparing two real pipeline runs.

A docs tool, not part of the tests or CI. Needs Chromium (Debian: `apt-get install chromium`)
and, for the clean picture, Playwright in a separate throwaway environment (never the
project's):

    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    .venv/bin/python docs/make_screenshot.py --playwright-python /tmp/pw/bin/python
    .venv/bin/python docs/make_screenshot.py --store path/to/mlflow.db ...   # reuse a store

Without --store it copies the pipeline into a throwaway git + DVC repository (the slow tests'
copy, with their tiny params but 1,000 images), and runs two variants there,
`dvc exp run -n epochs-2 -S train.epochs=2` and `dvc exp run -n epochs-6 -S train.epochs=6`
(a few minutes on 2 cores), so both are real pipeline runs in that repository's mlflow.db,
tagged `dvc_experiment`. With --store it takes the two newest finished runs there.

Then it starts `mlflow ui` on a free port and opens the compare page of the two runs in
headless Chromium (used offline: no network, no first-run or sync traffic). With Playwright it
closes the assistant panel, turns on "Show diff only" for params, metrics and tags, grows the
window to the page's full height and takes the picture; without --playwright-python it falls
back to Chromium's own `--screenshot` with a tall window (the assistant panel then stays
open). Either way it first checks that the page really shows both runs and their params.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "cifar10-mlops"
SCREENSHOT_DATA = {"data": {"synthetic": {"count": 1000}}}  # on top of the tests' TINY_PARAMS
VARIANTS = [("epochs-2", "train.epochs=2"), ("epochs-6", "train.epochs=6")]
WIDTH = 1600
# Offline-safe flags: no sandbox (root in a container), no GPU, no network chatter.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_runs(workdir: Path) -> Path:
    """Two real pipeline runs (dvc exp run) in a throwaway repository; returns its mlflow.db."""
    sys.path.insert(0, str(REPO))  # the slow tests' throwaway-repository helper
    from tests.helpers.pipeline import TINY_PARAMS, deep_update, dvc, make_pipeline_repo

    params = deep_update(json.loads(json.dumps(TINY_PARAMS)), SCREENSHOT_DATA)
    root = make_pipeline_repo(workdir / "repo", params)
    for name, change in VARIANTS:
        print(f"dvc exp run -n {name} -S {change} ...", flush=True)
        dvc(root, "exp", "run", "-n", name, "-S", change)
    shown = dvc(
        root,
        "exp",
        "show",
        "--no-pager",
        "--md",
        "--only-changed",
        "--drop",
        "Created|src/|data/|models/|reports/",
    )
    print(shown.stdout)
    return root / "mlflow.db"


def newest_runs(tracking_uri: str, count: int = 2):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        sys.exit(f"error: no experiment {EXPERIMENT!r} in {tracking_uri}")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=count,
    )
    if len(runs) < count:
        sys.exit(f"error: {tracking_uri} holds {len(runs)} finished run(s); need {count}")
    return experiment.experiment_id, list(reversed(runs))


class MlflowUI:
    def __init__(self, tracking_uri: str, workdir: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = workdir / "mlflow-ui.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no GenAI job workers needed
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "mlflow"),
                    "ui",
                    "--backend-store-uri",
                    tracking_uri,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    self.url.rsplit(":", 1)[1],
                    "--workers",
                    "1",
                ],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # one group: stop() ends all
            )

    def wait(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        sys.exit(
            f"error: mlflow ui did not come up on {self.url}; its log:\n{self.log.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                return
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    query = urllib.parse.urlencode(
        {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
    )
    return f"{base}/#/compare-runs?{query}"


# The params/metrics/tags tables are virtualized grids 300 px high that scroll on their own:
# make each as tall as its rows so that no row is cut off in the picture.
GROW_TABLES_JS = """() => {
  for (const grid of document.querySelectorAll('.ReactVirtualized__Grid')) {
    const full = grid.scrollHeight, shown = grid.clientHeight;
    if (full <= shown) continue;
    grid.style.height = full + 'px';
    for (let e = grid.parentElement; e && e.clientHeight === shown; e = e.parentElement) {
      e.style.height = full + 'px';
    }
  }
}"""


# --- capture with Playwright (runs under --playwright-python, stdlib + playwright only) -------


def capture_with_playwright(job: dict) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=job["browser"], args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(job["url"])
            for text in job["expected"]:  # the runs and their params and metrics are on screen
                page.get_by_text(text).first.wait_for(timeout=120_000)
            close = page.get_by_role("button", name="Close")  # the assistant side panel
            if close.count():
                close.first.click()
            for section in ("Parameters", "Metrics", "Tags"):
                toggle = page.get_by_label(f"{section} - Show diff only")
                if toggle.count():
                    toggle.first.click()
            # Fold away what says little here: the parallel-coordinates plot (two flat lines for
            # two runs) and the artifact section ("No common artifacts to display" for these).
            for section in ("Visualizations", "Artifacts"):
                header = page.get_by_text(section, exact=True)
                if header.count():
                    header.first.click()
            page.wait_for_timeout(1000)
            page.evaluate(GROW_TABLES_JS)
            page.wait_for_timeout(1000)
            # The page scrolls inside a container, so a full-page shot would cut it: grow the
            # window by what that container hides instead.
            hidden = page.evaluate(
                "() => Math.max(0, ...[...document.querySelectorAll('*')]"
                ".filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowY))"
                ".map(e => e.scrollHeight - e.clientHeight))"
            )
            page.set_viewport_size({"width": WIDTH, "height": min(1000 + hidden + 20, 4000)})
            page.wait_for_timeout(1500)
            page.screenshot(path=job["output"])
        finally:
            browser.close()


# --- capture with the Chromium CLI (no Playwright) -------------------------------------------


def chromium_cli(
    browser: str, url: str, *extra: str, budget_ms: int
) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [
                browser,
                "--headless",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},2000",
                f"--virtual-time-budget={budget_ms}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )


def capture_with_chromium_cli(job: dict) -> None:
    for budget_ms in (15_000, 30_000, 60_000):
        dom = chromium_cli(job["browser"], job["url"], "--dump-dom", budget_ms=budget_ms).stdout
        missing = [text for text in job["expected"] if text not in dom]
        if not missing:
            break
        print(f"page not ready after {budget_ms} ms of virtual time (missing {missing}); retrying")
    else:
        sys.exit(f"error: the compare page never showed {missing}: {job['url']}")
    chromium_cli(job["browser"], job["url"], f"--screenshot={job['output']}", budget_ms=budget_ms)


def capture(job: dict, playwright_python: str | None) -> None:
    Path(job["output"]).unlink(missing_ok=True)
    if playwright_python:
        subprocess.run(
            [playwright_python, __file__, "--capture-job", json.dumps(job)], check=True, timeout=600
        )
    else:
        capture_with_chromium_cli(job)
    if not Path(job["output"]).is_file():
        sys.exit("error: no screenshot was written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", type=Path, help="an existing MLflow sqlite file (skips the two runs)"
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "mlflow-compare.png")
    parser.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--playwright-python", help="python of a separate venv with playwright")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory")
    parser.add_argument("--capture-job", help=argparse.SUPPRESS)  # internal: the Playwright half
    args = parser.parse_args()
    if args.capture_job:
        capture_with_playwright(json.loads(args.capture_job))
        return
    if not Path(args.browser).exists():
        sys.exit(
            f"error: no Chromium at {args.browser}; install it (apt-get install chromium) or pass --browser"
        )

    workdir = Path(tempfile.mkdtemp(prefix="mlflow-screenshot-"))
    ui = None
    try:
        store = args.store.resolve() if args.store else build_runs(workdir)
        tracking_uri = f"sqlite:///{store}"
        experiment_id, runs = newest_runs(tracking_uri)
        for run in runs:
            print(
                f"run {run.info.run_id} ({run.info.run_name}): "
                f"dvc_experiment={run.data.tags.get('dvc_experiment')} "
                f"train.epochs={run.data.params.get('train.epochs')} "
                f"test_accuracy={run.data.metrics.get('test_accuracy')}"
            )
        ui = MlflowUI(tracking_uri, workdir)
        ui.wait()
        job = {
            "url": compare_url(ui.url, experiment_id, [run.info.run_id for run in runs]),
            "output": str(args.output.resolve()),
            "browser": args.browser,
            "expected": [run.info.run_name for run in runs] + ["train.epochs", "test_accuracy"],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        capture(job, args.playwright_python)
        print(f"wrote {args.output} ({job['url']})")
    finally:
        if ui is not None:
            ui.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
