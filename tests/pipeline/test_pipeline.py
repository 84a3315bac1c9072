"""Real `dvc repro` runs in a temporary copy of the repository, read back through MLflow."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import yaml

from tests.helpers.pipeline import TINY_PARAMS, VENV_BIN, deep_update, dvc, make_pipeline_repo, run

pytestmark = pytest.mark.slow

# The tiny pipeline, with enough images and epochs that the small backbone really learns (about
# 0.5 accuracy on these 120 test images, 20 s of training): a model that answers one class, or
# an evaluate that scores the wrong thing, fails here.
LEARNING_PARAMS = deep_update(
    json.loads(json.dumps(TINY_PARAMS)),
    {"data": {"synthetic": {"count": 600}}, "train": {"epochs": 10, "learning_rate": 0.005}},
)
N_TEST = 120  # 20% of 600, stratified


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_pipeline_repo(tmp_path_factory.mktemp("pipeline") / "repo", LEARNING_PARAMS)
    result = dvc(root, "repro")
    assert "Running stage 'evaluate'" in result.stdout
    FIRST_RUN_METRICS.append((root / "reports/metrics.json").read_bytes())
    return root


FIRST_RUN_METRICS: list[bytes] = []  # reports/metrics.json as the module's first run wrote it


def mlflow_client(root):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def pipeline_runs(root):
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("cifar10-mlops")
    return client, client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )


def test_outputs_follow_the_contract(repo):
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert {"accuracy", "loss", "macro_f1"} <= set(metrics)
    assert metrics["n_test"] == N_TEST
    assert metrics["accuracy"] >= 0.3 and metrics["macro_f1"] >= 0.25  # chance: 0.1

    with open(repo / "reports/confusion.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == N_TEST and set(rows[0]) == {"actual", "predicted"}
    accuracy = np.mean([row["actual"] == row["predicted"] for row in rows])
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)

    with open(repo / "reports/history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert len(history) == LEARNING_PARAMS["train"]["epochs"] and {
        "epoch",
        "accuracy",
        "loss",
        "val_accuracy",
        "val_loss",
    } <= set(history[0])

    for name in ("confusion_matrix.png", "training_curves.png", "misclassified.png"):
        assert (repo / "reports/plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with (
        np.load(repo / "data/processed/train.npz") as train,
        np.load(repo / "data/processed/test.npz") as test,
    ):
        assert train["images"].dtype == np.uint8 and train["images"].shape[1:] == (32, 32, 3)
        assert len(train["labels"]) == 600 - N_TEST and len(test["labels"]) == N_TEST
        assert not set(train["ids"]) & set(test["ids"])  # no train/test leak


def test_the_model_file_on_raw_uint8_test_images_gives_the_reported_metrics(repo):
    from cifar10_mlops.model.build import load_model

    model = load_model(repo / "models/model.keras")
    with np.load(repo / "data/processed/test.npz") as test:
        images, labels = test["images"], test["labels"]
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (N_TEST, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    # What evaluate reported is what this file does on these images: no other model, no
    # other test set, no float or resized copy in between.
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    predictions = probabilities.argmax(axis=1)
    assert np.mean(predictions == labels) == pytest.approx(metrics["accuracy"], abs=1e-6)
    true_class = probabilities[np.arange(N_TEST), labels]
    assert -np.mean(np.log(np.clip(true_class, 1e-7, 1))) == pytest.approx(
        metrics["loss"], abs=1e-4
    )
    assert len(set(predictions.tolist())) >= 5  # not one class for everything


def test_one_mlflow_run_holds_train_and_evaluate(repo):
    client, runs = pipeline_runs(repo)
    assert len(runs) == 1
    run_info = json.loads((repo / "reports/mlflow_run.json").read_text())
    mlrun = runs[0]
    assert mlrun.info.run_id == run_info["run_id"]
    assert mlrun.info.status == "FINISHED"
    # every param of params.yaml, flattened
    assert mlrun.data.params["train.epochs"] == "10"
    assert mlrun.data.params["model.backbone"] == LEARNING_PARAMS["model"]["backbone"]
    assert mlrun.data.params["data.synthetic.count"] == "600"
    # per-epoch metrics with step=epoch, and the final metrics from evaluate
    steps = [m.step for m in client.get_metric_history(mlrun.info.run_id, "val_loss")]
    history_rows = (repo / "reports/history.csv").read_text().strip().splitlines()[1:]
    assert steps == list(range(len(history_rows)))
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert mlrun.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert mlrun.data.metrics["test_macro_f1"] == pytest.approx(metrics["macro_f1"])
    # the git commit and the data version
    commit = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert mlrun.data.tags["mlflow.source.git.commit"].startswith(commit)
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", mlrun.data.tags["data_version"])
    # reports, plots and the model with its signature
    reports = {a.path for a in client.list_artifacts(mlrun.info.run_id, "reports")}
    assert {
        "reports/metrics.json",
        "reports/confusion_matrix.png",
        "reports/history.csv",
    } <= reports
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    logged = mlflow.models.get_model_info(f"runs:/{mlrun.info.run_id}/model")
    # The served model takes photo files or uint8 arrays: MLflow's signature describes the
    # output; the input is described in the MLmodel's metadata (tracking/serving.py).
    assert logged.signature is not None and logged.signature.inputs is None
    assert logged.signature.outputs is not None
    assert "uint8" in logged.metadata["input"] and "photo" in logged.metadata["input"]


def test_second_repro_runs_nothing_and_logs_no_run(repo):
    result = dvc(repo, "repro")
    assert "Running stage" not in result.stdout
    _, runs = pipeline_runs(repo)
    assert len(runs) == 1


def _set_epochs(repo, epochs):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    deep_update(params, {"train": {"epochs": epochs}})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_changing_epochs_reruns_only_train_and_evaluate_and_a_run_cache_hit_logs_nothing(repo):
    first_run_id = json.loads((repo / "reports/mlflow_run.json").read_text())["run_id"]
    _set_epochs(repo, 1)
    ran = dvc(repo, "repro").stdout
    assert "Running stage 'train'" in ran and "Running stage 'evaluate'" in ran
    assert "Running stage 'download'" not in ran and "Running stage 'preprocess'" not in ran
    _, runs = pipeline_runs(repo)
    assert len(runs) == 2

    # Back to the first value: DVC restores both stages from its run cache, runs no code,
    # and MLflow gets no new run; mlflow_run.json names the run that made the outputs.
    _set_epochs(repo, LEARNING_PARAMS["train"]["epochs"])
    restored = dvc(repo, "repro").stdout
    assert "Running stage" not in restored
    assert "Stage 'train' is cached" in restored
    _, runs = pipeline_runs(repo)
    assert len(runs) == 2
    assert json.loads((repo / "reports/mlflow_run.json").read_text())["run_id"] == first_run_id


def test_dvc_experiments_log_to_the_same_mlflow_store_with_their_name(repo):
    """`dvc exp run --temp` runs in a copy under .dvc/tmp/exps; it must still log to the
    repository's own mlflow.db, tagged with the experiment's name."""
    _, before = pipeline_runs(repo)
    dvc(repo, "exp", "run", "--temp", "-n", "three-epochs", "-S", "train.epochs=3")
    client, after = pipeline_runs(repo)
    assert len(after) == len(before) + 1
    newest = after[-1]
    assert newest.data.tags["dvc_experiment"] == "three-epochs"
    assert newest.data.params["train.epochs"] == "3"
    assert newest.info.status == "FINISHED"
    assert "test_accuracy" in newest.data.metrics
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # no stray store in the copy
    shown = dvc(repo, "exp", "show", "--csv").stdout
    assert "three-epochs" in shown


def test_cli_predict_on_a_directory_of_pngs(repo, tmp_path):
    from PIL import Image

    with np.load(repo / "data/processed/test.npz") as test:
        for index, image in enumerate(test["images"][:3]):
            Image.fromarray(image).save(tmp_path / f"img{index}.png")
    output = tmp_path / "predictions.csv"
    run(
        repo,
        str(VENV_BIN / "cifar10-mlops"),
        "predict",
        "--model",
        "models/model.keras",
        str(tmp_path),
        "--output",
        str(output),
    )
    with open(output) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["path", "label", "confidence"]  # the documented CSV contract
    assert len(rows) == 3 and all(0.0 <= float(row["confidence"]) <= 1.0 for row in rows)


def _outputs(repo):
    """Every output file DVC manages, with its bytes' digest."""
    import hashlib

    files = [
        p
        for d in ("data/raw", "data/processed", "models", "reports")
        for p in (repo / d).rglob("*")
    ]
    return {
        str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


@pytest.mark.parametrize(
    "change, failing_stage, message",
    [
        (
            {"train": {"epochs": 0}},
            "train",
            "params.yaml: key 'train.epochs' = 0: Input should be greater",
        ),
        # Valid params, impossible split: 0.999 of 200 images leaves one to train on.
        ({"split": {"test_size": 0.999}}, "preprocess", "too few for a stratified split"),
    ],
    ids=["bad-param-in-train", "impossible-split-in-preprocess"],
)
def test_a_failing_stage_keeps_the_last_good_outputs(repo, change, failing_stage, message):
    """`dvc repro` deletes a stage's outputs before running it; when the stage fails, the
    outputs dvc.lock records are put back from the DVC cache, byte for byte."""
    params_text = (repo / "params.yaml").read_text()
    dvc(repo, "repro")  # start from an up-to-date pipeline
    before = _outputs(repo)
    params = yaml.safe_load(params_text)
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_update(params, change), sort_keys=False))
    try:
        result = dvc(repo, "repro", check=False)
        assert result.returncode != 0
        assert f"Running stage '{failing_stage}'" in result.stdout
        ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(ours) == 1 and message in ours[0], result.stderr
        assert "Traceback" not in result.stderr
        assert "kept the last good outputs" in result.stdout
        assert _outputs(repo) == before
    finally:
        (repo / "params.yaml").write_text(params_text)
    assert "Running stage" not in dvc(repo, "repro").stdout  # still up to date


# Last in this module: it adds a run to the MLflow store, which the tests above count.
def test_deterministic_training_gives_identical_metrics_twice(repo):
    """`train.deterministic: true`: `dvc repro --force` reruns every stage and writes the
    same reports/metrics.json, byte for byte, as the first run."""
    result = dvc(repo, "repro", "--force")
    assert "Running stage 'train'" in result.stdout
    assert (repo / "reports/metrics.json").read_bytes() == FIRST_RUN_METRICS[0]
