"""Comparing experiments as a person does: two real pipeline runs (`dvc repro`, then
`dvc exp run -n lr-0.01 -S train.learning_rate=0.01`), read back from the store, then in the real
`mlflow ui` on 127.0.0.1 in headless Chromium: the runs list, the compare page, a run's page.

The pictures it takes go to CIFAR10_MLOPS_SCREENSHOTS when set (docs/make_screenshot.py sets
it to docs/), else to a temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cifar10_mlops.tracking.datasets import EVALUATION, TRAINING, logged_input
from cifar10_mlops.tracking.description import NOTE_TAG
from tests.helpers.mlflow_ui import (
    EXPERIMENT,
    Browser,
    MlflowUI,
    chromium_path,
    runs_table,
    screenshot,
    show_runs_table,
    tidy_compare_page,
    two_pipeline_runs,
    wait_for_texts,
)

pytestmark = pytest.mark.slow

# What the two runs are called in the list: the first has no DVC experiment, so its name
# says what it trained (the tiny params: the small backbone, 2 epochs, 160 of the 200
# generated images); the second is the DVC experiment's name.
NAMES = ["cifar_resnet-2ep-synthetic-160", "lr-0.01"]
LEARNING_RATES = ["0.003", "0.01"]  # the committed default, then the variant
DATASETS = ["synthetic-train", "synthetic-test"]
SCREENSHOTS_ENV = "CIFAR10_MLOPS_SCREENSHOTS"
LIST_HEIGHT = 480  # two rows: the picture needs no more


@dataclass
class Store:
    root: Path
    client: object
    experiment_id: str
    runs: list

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    from mlflow import MlflowClient

    root = two_pipeline_runs(tmp_path_factory.mktemp("mlflow-ui"))
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return Store(root, client, experiment.experiment_id, runs)


@pytest.fixture(scope="module")
def ui(store):
    with MlflowUI(store.tracking_uri, store.root.parent) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        message = "no chromium on PATH: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: missing there is a broken CI, not a skip
        pytest.skip(message)
    with Browser(executable) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")


# --- the store, as the UI will read it -------------------------------------------------------


def test_runs_are_named_for_what_they_are(store):
    assert [run.info.run_name for run in store.runs] == NAMES
    assert [run.info.status for run in store.runs] == ["FINISHED", "FINISHED"]
    assert store.runs[1].data.tags["dvc_experiment"] == "lr-0.01"
    assert "dvc_experiment" not in store.runs[0].data.tags


def test_each_run_logs_the_data_it_trained_and_was_tested_on(store):
    for run in store.runs:
        version = run.data.tags["data_version"]
        for context, name, images in (
            (TRAINING, DATASETS[0], "160"),
            (EVALUATION, DATASETS[1], "40"),
        ):
            found = logged_input(run, context)
            assert found is not None, f"{run.info.run_name}: no {context} dataset"
            assert (found.dataset.name, found.dataset.digest) == (name, version)
            tags = {tag.key: tag.value for tag in found.tags}
            assert tags["images"] == images and tags["split"] == name.split("-")[1]
            assert found.dataset.source_type == "code"
            assert '"generator": "cifar10_mlops.data.synthetic"' in found.dataset.source
            assert '"features_shape": [' + images in found.dataset.profile
        assert run.data.tags["train_dataset"] == DATASETS[0]
        assert run.data.tags["test_dataset"] == DATASETS[1]


def test_registered_versions_point_back_to_the_data(store):
    by_run = {
        version.run_id: version
        for version in store.client.search_model_versions("name = 'cifar10-resnet50'")
    }
    for run in store.runs:
        version = by_run[run.info.run_id]
        assert (version.tags["train_dataset"], version.tags["test_dataset"]) == tuple(DATASETS)
        model = store.client.get_logged_model(version.source.removeprefix("models:/"))
        linked = {(m.key, m.dataset_name, m.dataset_digest) for m in model.metrics}
        digest = run.data.tags["data_version"]
        assert ("test_accuracy", DATASETS[1], digest) in linked
        assert ("kept_val_accuracy", DATASETS[0], digest) in linked


def test_each_run_has_a_description_and_system_metrics(store):
    for run in store.runs:
        note = run.data.tags[NOTE_TAG]
        assert "up to 2 epochs, trained on synthetic-train (160 images)" in note
        accuracy = run.data.metrics["test_accuracy"]
        assert f"Test accuracy {accuracy:.4f}" in note and "40 held-out images" in note
        for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
            assert store.client.get_metric_history(run.info.run_id, key), key


# --- in the browser ----------------------------------------------------------------------


def test_the_runs_list_tells_the_runs_apart_and_shows_their_data(store, ui, browser, shots):
    page = browser.open(ui.runs_url(store.experiment_id), NAMES, height=LIST_HEIGHT)
    show_runs_table(page, ["train.learning_rate", "test_accuracy", "test_loss"])
    version = store.runs[0].data.tags["data_version"]
    rows = {row["Run Name"].split()[-1]: row for row in runs_table(page)}  # after the colour
    assert sorted(rows) == sorted(NAMES)
    for run, learning_rate in zip(store.runs, LEARNING_RATES, strict=True):
        row = rows[run.info.run_name]
        assert row["Dataset"] == (
            f"{DATASETS[0]} ({version}) Training {DATASETS[1]} ({version}) Evaluation"
        )
        assert row["train.learning_rate"] == learning_rate
        assert float(row["test_accuracy"]) == pytest.approx(run.data.metrics["test_accuracy"])
        assert float(row["test_loss"]) == pytest.approx(run.data.metrics["test_loss"])
    screenshot(page, shots / "mlflow-runs.png", height=LIST_HEIGHT, grow=False)


def test_the_compare_page_shows_what_changed_and_the_results(store, ui, browser, shots):
    run_ids = [run.info.run_id for run in store.runs]
    expected = [*NAMES, "train.learning_rate"]
    page = browser.open(ui.compare_url(store.experiment_id, run_ids), expected)
    rows = page.get_by_role("row")
    changed = rows.filter(has_text="train.learning_rate").first.inner_text().split()
    assert changed == ["train.learning_rate", *LEARNING_RATES]
    for tag in ("train_dataset", "test_dataset"):  # the data each run saw, per run
        assert rows.filter(has_text=tag).first.inner_text().split()[1:] == (
            [DATASETS[0]] * 2 if tag == "train_dataset" else [DATASETS[1]] * 2
        )
    tidy_compare_page(page)  # diff only: what a person compares
    # Two different models: their test loss differs, so it stays in the diff
    wait_for_texts(page, ["test_loss", "kept_loss", "system/cpu_utilization_percentage"])
    assert rows.filter(has_text="train.learning_rate").count() == 1
    assert rows.filter(has_text="data.source").count() == 0  # the same in both: hidden
    screenshot(page, shots / "mlflow-compare.png")


def test_a_run_page_shows_its_description_and_datasets(store, ui, browser, shots):
    run = store.runs[1]
    url = f"{ui.url}/#/experiments/{store.experiment_id}/runs/{run.info.run_id}"
    first_line = run.data.tags[NOTE_TAG].splitlines()[0]
    page = browser.open(url, [NAMES[1], first_line, "Datasets", DATASETS[0]])
    assert page.get_by_text("System metrics", exact=False).count() >= 1
    screenshot(page, shots / "mlflow-run.png", max_height=2000)


def test_each_registered_version_carries_its_model_card(store):
    from cifar10_mlops.tracking.model_card import CARD_ARTIFACT

    for version in store.client.search_model_versions("name = 'cifar10-resnet50'"):
        card = version.description
        assert card.startswith(f"# Model card: cifar10-resnet50 version {version.version}\n")
        assert "Trained on: `synthetic-train`, 160 images" in card
        assert "Weakest classes: " in card and "## Known limits" in card
        local = store.client.download_artifacts(version.run_id, CARD_ARTIFACT)
        assert Path(local).read_text() == card


def test_the_model_card_renders_on_the_version_page(store, ui, browser, shots):
    import re

    version = store.client.get_model_version_by_alias("cifar10-resnet50", "champion")
    url = f"{ui.url}/#/models/cifar10-resnet50/versions/{version.version}"
    page = browser.open(url, ["Model card: cifar10-resnet50", "Intended use", "Weakest classes"])
    # rendered as markdown: headings and the per-class table, not the raw text
    assert page.get_by_role("heading", name=re.compile("Known limits")).count() >= 1
    assert page.locator("table", has_text="precision").count() >= 1
    assert page.get_by_text("| class |", exact=False).count() == 0
    screenshot(page, shots / "mlflow-model-card.png", max_height=2400)
