"""What a run shows in the MLflow UI, against a real sqlite store: its name, its datasets, its
description and system metrics. tests/tracking/test_mlflow_ui.py looks at the same in a browser
after two real pipeline runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mlflow.tracking import fluent

from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.tracking import final_results, kept_epoch, naming, run_opening
from cifar10_mlops.tracking.datasets import TRAINING, logged_input
from cifar10_mlops.tracking.description import NOTE_TAG

VERSION = "sha256:00000000000000aa"


def images(count: int) -> LabelledImages:
    return LabelledImages(
        images=np.zeros((count, 32, 32, 3), np.uint8),
        labels=np.arange(count) % 10,
        ids=np.arange(1, count + 1),
    )


def params(**train) -> Params:
    return Params.model_validate(
        {
            "model": {"backbone": "vgg16"},
            "train": {"epochs": 7, **train},
            "data": {"source": "synthetic"},
        }
    )


def test_a_run_without_a_dvc_experiment_is_named_by_what_it_trains(store, tmp_path):
    run_id = run_opening.start_pipeline_run(
        params(), VERSION, tmp_path / "run.json", train_data=images(30)
    )
    run_opening.end_run()
    assert store.get_run(run_id).info.run_name == "vgg16-7ep-synthetic-30"


def test_a_dvc_experiment_gives_its_name_and_names_stay_unique(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lr-0.01")
    names = []
    for seed in (1, 2, 3):  # three different trainings under the same experiment name
        run_id = run_opening.start_pipeline_run(params(seed=seed), VERSION, tmp_path / "run.json")
        run_opening.end_run()
        names.append(store.get_run(run_id).info.run_name)
    assert names == ["lr-0.01", "lr-0.01-2", "lr-0.01-3"]


def test_a_resumed_attempt_keeps_its_run_and_name(store, tmp_path):
    first = run_opening.start_pipeline_run(
        params(), VERSION, tmp_path / "run.json", train_data=images(30)
    )
    run_opening.end_run("KILLED")  # the attempt was stopped; the next train reopens the same run
    again = run_opening.start_pipeline_run(
        params(), VERSION, tmp_path / "run.json", train_data=images(30)
    )
    run_opening.end_run()
    assert again == first
    run = store.get_run(first)
    assert run.info.run_name == "vgg16-7ep-synthetic-30"
    assert run.data.tags[run_opening.ATTEMPTS_TAG] == "2"
    assert len(run.inputs.dataset_inputs) == 1  # logged again, recorded once


def test_the_training_data_is_a_dataset_and_the_run_is_described(store, tmp_path):
    run_id = run_opening.start_pipeline_run(
        params(), VERSION, tmp_path / "run.json", train_data=images(30)
    )
    run_opening.end_run()
    run = store.get_run(run_id)
    found = logged_input(run, TRAINING)
    assert (found.dataset.name, found.dataset.digest) == ("synthetic-train", VERSION)
    assert {tag.key: tag.value for tag in found.tags}["images"] == "30"
    assert run.data.tags["train_dataset"] == "synthetic-train"
    assert run.data.tags[NOTE_TAG] == (
        "VGG16 backbone, gap_dense head, weights none, up to 7 epochs, trained on "
        f"synthetic-train (30 images).\n\nNot evaluated yet; data synthetic {VERSION}."
    )


@pytest.mark.parametrize(
    "source, expected_type, expected_source",
    [
        (
            {"source": "cifar10", "cifar10": {"url": "https://u:p@mirror.example/c.tar.gz"}},
            "http",
            "https://***@mirror.example/c.tar.gz",
        ),
        ({"source": "kaggle"}, "http", "https://www.kaggle.com/competitions/cifar-10"),
    ],
)
def test_the_dataset_source_says_where_the_images_came_from(
    store, tmp_path, source, expected_type, expected_source
):
    chosen = Params.model_validate({"data": source})
    run_id = run_opening.start_pipeline_run(
        chosen, VERSION, tmp_path / "run.json", train_data=images(20)
    )
    run_opening.end_run()
    dataset = logged_input(store.get_run(run_id), TRAINING).dataset
    assert dataset.source_type == expected_type
    assert expected_source in dataset.source
    assert dataset.name == f"{source['source']}-train"


@pytest.mark.parametrize("enabled", [True, False])
def test_system_metrics_follow_the_param(store, tmp_path, enabled):
    chosen = Params.model_validate({"mlflow": {"system_metrics": enabled}})
    run_id = run_opening.start_pipeline_run(chosen, VERSION, tmp_path / "run.json")
    # MLflow keeps one monitor thread per run that logs system metrics.
    assert (run_id in fluent.run_id_to_system_metrics_monitor) is enabled
    run_opening.end_run()
    assert run_id not in fluent.run_id_to_system_metrics_monitor  # stopped with the run


def test_summary_names():
    assert naming.summary_name(Params(), 1200) == "resnet50-5ep-synthetic-1200"
    assert naming.summary_name(Params(), None) == "resnet50-5ep-synthetic"
    assert naming.base_name(Params(), 1200, "my-exp") == "my-exp"


@pytest.mark.parametrize(
    "mlflow_params, key",
    [
        ({"system_metrics": "yes"}, "mlflow.system_metrics"),
        ({"system_metrics_interval_s": 0}, "mlflow.system_metrics_interval_s"),
    ],
)
def test_the_system_metrics_params_are_validated(tmp_path, mlflow_params, key):
    from cifar10_mlops.core.errors import PipelineError
    from cifar10_mlops.core.params import parse_params

    with pytest.raises(PipelineError, match=f"key '{key}' = "):
        parse_params({"mlflow": mlflow_params}, tmp_path / "params.yaml")


def test_the_logged_model_lists_the_data_it_was_trained_and_tested_on(store, tmp_path):
    from cifar10_mlops.tracking.datasets import log_split
    from cifar10_mlops.tracking.kept_epoch import log_kept_epoch_scores
    from tests.helpers.models import tiny_keras_model_file

    chosen = params()
    run_id = run_opening.start_pipeline_run(
        chosen, VERSION, tmp_path / "run.json", train_data=images(30)
    )
    kept_epoch.log_kept_epoch(1)
    run_opening.end_run()
    history = tmp_path / "history.csv"  # no validation: Keras' CSVLogger writes NA there
    history.write_text("epoch,accuracy,loss,val_accuracy\n0,0.2,2.0,NA\n1,0.3,1.5,NA\n")
    with run_opening.resume_run(run_id):
        test = log_split(chosen.data, images(10), "test", VERSION)
        model = tiny_keras_model_file(tmp_path / "model.keras")
        info = final_results.log_final_results({"accuracy": 0.5}, [], model, images(2).images, test)
        kept = log_kept_epoch_scores(history, info.model_id)
    assert kept == {"kept_accuracy": 0.3, "kept_loss": 1.5}
    linked = {
        (m.key, m.dataset_name, m.dataset_digest)
        for m in store.get_logged_model(info.model_id).metrics
    }
    assert ("test_accuracy", "synthetic-test", VERSION) in linked
    assert ("kept_loss", "synthetic-train", VERSION) in linked


def test_a_local_data_path_is_its_datasets_source_without_mlflows_ambiguity_warning(tmp_path):
    from cifar10_mlops.core.params import DataParams
    from cifar10_mlops.tracking.datasets import _source

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would land on the stage's stderr
        source = _source(DataParams(source="local", path=str(tmp_path)))
    assert source.to_dict() == {"uri": str(tmp_path)}
