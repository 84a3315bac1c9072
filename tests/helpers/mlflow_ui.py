"""The MLflow UI as a person sees it: `mlflow ui` on 127.0.0.1 and Debian's Chromium driven by
Playwright. Shared by tests/tracking/test_mlflow_ui.py and docs/make_screenshot.py, so the
docs' pictures are taken by the code the test checks.

- two_pipeline_runs(): a throwaway git + DVC repository with two real pipeline runs, the way
  a user makes them: `dvc repro`, then a variant `dvc exp run -n lr-0.01 -S train.learning_rate=0.01`.
- MlflowUI: `mlflow ui` over a store on a free port, stopped with its whole process group.
- Browser: headless Chromium (the system's binary: Playwright's own browser download is not
  reachable from CI) that opens the runs list and the compare page, waits for what must be on
  them, tidies them for a picture and takes it.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.pipeline import TINY_PARAMS, deep_update, dvc, make_pipeline_repo
from tests.helpers.tracking_server import MlflowProcess

EXPERIMENT = "cifar10-mlops"
# The `dvc exp run` after the first `dvc repro`. A learning rate, not the epochs: the tiny
# runs keep the epoch with the best val_accuracy on 16 validation images, often epoch 0,
# whose weights do not depend on the number of epochs; the learning rate changes every epoch.
VARIANT = ("lr-0.01", "train.learning_rate=0.01")
# The slow tests' tiny pipeline (200 images, the small backbone, 2 epochs: seconds per run),
# sampling system metrics every second so that even these short trainings record some.
UI_PARAMS = deep_update(
    json.loads(json.dumps(TINY_PARAMS)), {"mlflow": {"system_metrics_interval_s": 1.0}}
)
STARTUP_TIMEOUT_S = 120  # a first start creates the schema; slower on 2 busy cores
PAGE_TIMEOUT_MS = 60_000  # generous: the cores may be busy training elsewhere
WIDTH = 1600
# No sandbox (root in a container), no GPU, no network chatter: it runs offline.
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


def chromium_path() -> str | None:
    """Debian's chromium (or any chromium on PATH); CHROMIUM=path overrides."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def two_pipeline_runs(workdir: Path, params: dict | None = None) -> Path:
    """`dvc repro`, then the VARIANT with `dvc exp run`, in a fresh copy of the pipeline: two
    real runs in that repository's mlflow.db. Returns the repository."""
    root = make_pipeline_repo(workdir / "repo", params or UI_PARAMS)
    dvc(root, "repro")
    name, change = VARIANT
    dvc(root, "exp", "run", "-n", name, "-S", change)
    return root


class MlflowUI(MlflowProcess):
    """`mlflow ui --backend-store-uri URI` on 127.0.0.1."""

    name = "mlflow ui"
    log_name = "mlflow-ui.log"
    startup_timeout_s = STARTUP_TIMEOUT_S

    def __init__(self, tracking_uri: str, workdir: Path):
        super().__init__(workdir)
        self.tracking_uri = tracking_uri

    def arguments(self) -> list[str]:
        return ["ui", "--backend-store-uri", self.tracking_uri]

    def runs_url(self, experiment_id: str) -> str:
        return f"{self.url}/#/experiments/{experiment_id}/runs"

    def compare_url(self, experiment_id: str, run_ids: list[str]) -> str:
        query = urllib.parse.urlencode(
            {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
        )
        return f"{self.url}/#/compare-runs?{query}"


# The compare page's params/metrics/tags tables are virtualized grids 300 px high that scroll
# on their own: make each as tall as its rows so that no row is cut off in the picture.
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
# The page scrolls inside a container, so a full-page shot would cut it: how much it hides.
HIDDEN_HEIGHT_JS = """() => Math.max(0, ...[...document.querySelectorAll('*')]
  .filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowY))
  .map(e => e.scrollHeight - e.clientHeight))"""


# The UI polls the server, so the network never goes idle: wait for two painted frames after
# a change of size instead.
SETTLED_JS = """() => new Promise(done =>
  requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"""


@dataclass
class Browser:
    """Headless Chromium under Playwright; use as a context manager."""

    executable: str

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, args=CHROMIUM_FLAGS
            )
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._playwright.stop()

    def open(self, url: str, expected: Iterable[str], height: int = 1000):
        """A new page at `url`, once every text of `expected` is visible on it."""
        page = self._browser.new_page(viewport={"width": WIDTH, "height": height})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.goto(url)
        wait_for_texts(page, expected)
        close = page.get_by_role("button", name="Close")  # the assistant side panel, if shown
        if close.count():
            close.first.click()
        return page


def wait_for_texts(page, texts: Iterable[str]) -> None:
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(state="visible")


def show_runs_table(page, columns: Iterable[str], hide: Iterable[str] = ("Source", "Models")):
    """As a person sets up the runs list: every dataset in its row (not "+1"), the chosen
    param and metric columns shown (through the Columns menu's search), some hidden, and
    the run name and dataset columns wide enough for their text."""
    page.get_by_text("Expand rows", exact=True).first.click()
    page.get_by_role("button", name="Columns").first.click()
    search = page.get_by_placeholder("Search columns")
    for column in [*columns, *hide]:  # each click toggles the column
        search.fill(column)
        page.get_by_role("dialog").get_by_text(column, exact=True).first.click()
    page.keyboard.press("Escape")
    for col_id in ("attributes.`Run Name`", "attributes.`Dataset`"):
        handle = page.locator(f'[role=columnheader][col-id="{col_id}"] .ag-header-cell-resize')
        if handle.count():
            handle.first.dblclick(force=True)  # ag-grid: fit the column to its content
    page.evaluate(SETTLED_JS)


# The runs table (ag-grid) draws a row in several containers (pinned and scrolling parts):
# gather each row's cells by aria-rowindex and name them by their column's header.
RUNS_TABLE_JS = """() => {
  const headers = {};
  for (const h of document.querySelectorAll('[role=columnheader][col-id]')) {
    headers[h.getAttribute('col-id')] = h.innerText.trim();
  }
  const rows = {};
  for (const cell of document.querySelectorAll('[role=row][aria-rowindex] [role=gridcell][col-id]')) {
    const index = cell.closest('[role=row]').getAttribute('aria-rowindex');
    const name = headers[cell.getAttribute('col-id')] || cell.getAttribute('col-id');
    (rows[index] = rows[index] || {})[name] = cell.innerText.replace(/\\s+/g, ' ').trim();
  }
  return Object.values(rows);
}"""


def runs_table(page) -> list[dict[str, str]]:
    """The runs list as it reads: one {column header: cell text} per run."""
    return [row for row in page.evaluate(RUNS_TABLE_JS) if row.get("Run Name")]


def tidy_compare_page(page) -> None:
    """What the docs' picture shows: only what differs, tables at full height, the plot and
    the artifacts folded away (two flat lines; "No common artifacts")."""
    for section in ("Parameters", "Metrics", "Tags"):
        toggle = page.get_by_label(f"{section} - Show diff only")
        if toggle.count():
            toggle.first.click()
    for section in ("Visualizations", "Artifacts"):
        header = page.get_by_text(section, exact=True)
        if header.count():
            header.first.click()
    page.evaluate(GROW_TABLES_JS)


def screenshot(
    page, path: Path, height: int = 1000, max_height: int = 4000, grow: bool = True
) -> Path:
    """The page as a PNG at `path`: a window `height` high, grown (`grow`) by what the
    page's scrolling container hides."""
    page.set_viewport_size({"width": WIDTH, "height": height})
    page.evaluate(SETTLED_JS)
    hidden = page.evaluate(HIDDEN_HEIGHT_JS) if grow else 0
    page.set_viewport_size({"width": WIDTH, "height": min(height + hidden + 20, max_height)})
    page.evaluate(SETTLED_JS)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
