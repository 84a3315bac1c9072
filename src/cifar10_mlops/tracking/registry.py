"""MLflow Model Registry: each evaluated model becomes a version; the best carries `champion`.

At the end of a successful evaluate, the run's logged model (`runs:/<run id>/model`) is
registered as a new version of `mlflow.registered_model` (default `cifar10-resnet50`), with
tags (data_version, params_digest, test_accuracy, test_macro_f1, git_commit, dvc_experiment)
and a short description.

Promotion rule: the new version gets the alias `champion` when its held-out test accuracy is
strictly higher than the current champion's (read from that version's `test_accuracy` tag),
or when there is no champion yet (or the champion has no readable `test_accuracy` tag). A tie
keeps the current champion: a retrain that only matches it is no reason to change the model
users load. Accuracies are compared as logged; they are only meaningful against each other
when measured on the same test set (compare the `data_version` tags).

Users load the champion with `mlflow.pyfunc.load_model("models:/<name>@champion")`; every
version stays loadable as `models:/<name>/<version>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.tracking.runs import DIGEST_TAG, MODEL_ARTIFACT
from cifar10_mlops.tracking.store import client

CHAMPION = "champion"
BACKBONES = {"resnet50": "ResNet50", "vgg16": "VGG16"}


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    accuracy: float
    champion: bool
    previous_champion: str | None
    previous_accuracy: float | None

    def message(self) -> str:
        """One line for the stage's output."""
        new = f"registry: {self.name} version {self.version} (test accuracy {self.accuracy:.4f})"
        if self.champion and self.previous_champion is None:
            return f"{new} is the first champion"
        if self.champion:
            return f"{new} is the new champion, replacing version {self.previous_champion}"
        return (
            f"{new} did not beat champion version {self.previous_champion} "
            f"({_format(self.previous_accuracy)}); champion unchanged"
        )


def _format(accuracy: float | None) -> str:
    return "no accuracy" if accuracy is None else f"test accuracy {accuracy:.4f}"


def register_run_model(run_id: str, name: str, mlflow_client=None) -> Registration:
    """Register the run's model as a new version of `name` and apply the promotion rule."""
    mlflow_client = mlflow_client or client()
    run = mlflow_client.get_run(run_id)
    accuracy = run.data.metrics.get("test_accuracy")
    if accuracy is None:
        raise PipelineError(f"MLflow run {run_id} has no test_accuracy; run the evaluate stage")
    _ensure_registered_model(mlflow_client, name)
    model_id = logged_model_id(mlflow_client, run)
    version = mlflow_client.create_model_version(
        name,
        # MLflow 3 keeps a logged model beside the run (a LoggedModel), not in its artifacts:
        # its models:/ URI is the source that loads; runs:/ only for older runs.
        source=f"models:/{model_id}" if model_id else f"runs:/{run_id}/{MODEL_ARTIFACT}",
        run_id=run_id,
        model_id=model_id,
        tags=version_tags(run),
        description=describe(run),
    )
    return _promote(mlflow_client, name, version.version, accuracy)


def logged_model_id(mlflow_client, run) -> str | None:
    """The newest model logged as `model` by this run (a retried evaluate logs it again)."""
    models = mlflow_client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"name = '{MODEL_ARTIFACT}'",
    )
    mine = [m for m in models if m.source_run_id == run.info.run_id]
    return max(mine, key=lambda m: m.creation_timestamp).model_id if mine else None


def _ensure_registered_model(mlflow_client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(
            name,
            description=(
                "CIFAR-10 classifiers from the cifar10-mlops pipeline, one version per evaluated "
                f"run. Alias `{CHAMPION}`: the best held-out test accuracy; load it with "
                f"models:/{name}@{CHAMPION}"
            ),
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def version_tags(run) -> dict[str, str]:
    tags = run.data.tags
    metrics = run.data.metrics
    candidates = {
        "data_version": tags.get("data_version"),
        "params_digest": tags.get(DIGEST_TAG),
        "test_accuracy": _number(metrics.get("test_accuracy")),
        "test_macro_f1": _number(metrics.get("test_macro_f1")),
        "git_commit": tags.get("mlflow.source.git.commit"),
        "dvc_experiment": tags.get("dvc_experiment"),
    }
    return {key: value for key, value in candidates.items() if value is not None}


def _number(value: float | None) -> str | None:
    return None if value is None else repr(float(value))


def describe(run) -> str:
    """Two lines: what was trained, and how it scored on which data."""
    params = run.data.params
    backbone = params.get("model.backbone", "?")
    first = (
        f"{BACKBONES.get(backbone, backbone)} backbone, {params.get('model.head', '?')} head, "
        f"weights {params.get('model.weights', '?')}, up to {params.get('train.epochs', '?')} "
        "epochs."
    )
    metrics = run.data.metrics
    images = metrics.get("test_n_test")
    on = f" on {int(images)} held-out images" if images is not None else ""
    second = (
        f"Test accuracy {metrics['test_accuracy']:.4f}, macro-F1 "
        f"{metrics.get('test_macro_f1', float('nan')):.4f}{on}; data "
        f"{run.data.tags.get('data_source', '?')} {run.data.tags.get('data_version', '?')}."
    )
    return f"{first}\n{second}"


def current_champion(mlflow_client, name: str):
    """The version holding the `champion` alias, or None."""
    version = mlflow_client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else mlflow_client.get_model_version(name, version)


def _tag_accuracy(version) -> float | None:
    try:
        return float(version.tags["test_accuracy"])
    except (KeyError, TypeError, ValueError):
        return None


def _promote(mlflow_client, name: str, version: str, accuracy: float) -> Registration:
    champion = current_champion(mlflow_client, name)
    champion_accuracy = _tag_accuracy(champion) if champion is not None else None
    promote = champion_accuracy is None or accuracy > champion_accuracy
    if promote:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    return Registration(
        name=name,
        version=str(version),
        accuracy=accuracy,
        champion=promote,
        previous_champion=None if champion is None else str(champion.version),
        previous_accuracy=champion_accuracy,
    )
