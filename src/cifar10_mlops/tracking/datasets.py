"""The train and test arrays as MLflow datasets, so the UI shows which data each run saw.

Each split is logged with `mlflow.log_input` as a NumPy dataset (only its description: name,
digest, source, schema and shape profile; never the pixels): train by the train stage with
context `training`, test by evaluate with context `evaluation`. Names say where the images
came from and which split (`synthetic-train`, `cifar10-test`); the digest is the run's data
version (a hash of both processed arrays), so equal digests mean the same data; the source
says where the images came from (the archive's URL, the Kaggle competition, the local path or
the embedded generator with its seed); input tags carry the split and the image count. The
run is also tagged `train_dataset` / `test_dataset` with the names (the compare page shows
tags, not inputs).
"""

from __future__ import annotations

import warnings
from typing import Any

from cifar10_mlops.core.params import DataParams
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.tracking.secrets import redact_credentials

TRAINING = "training"
EVALUATION = "evaluation"
CONTEXTS = {"train": TRAINING, "test": EVALUATION}


def dataset_name(data: DataParams, split: str) -> str:
    return f"{data.source}-{split}"


def _source(data: DataParams):
    """Where the images came from, as one of MLflow's registered source types."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if data.source == "cifar10":
        return HTTPDatasetSource(redact_credentials(data.cifar10.url))
    if data.source == "kaggle":
        return HTTPDatasetSource(f"https://www.kaggle.com/competitions/{data.kaggle.competition}")
    if data.source == "local":
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():
            # MLflow registers its local-file source twice (schemes "" and "file") and warns
            # that a path matches both, on stderr above the stage's own lines; they are alike.
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            return resolve_dataset_source(str(data.path))
    # The embedded dataset has no file to point at: the generator and its settings recreate it.
    return CodeDatasetSource(
        {
            "generator": "cifar10_mlops.data.synthetic",
            "count": str(data.synthetic.count),
            "seed": str(data.synthetic.seed),
        }
    )


def images_dataset(data: DataParams, images: LabelledImages, split: str, version: str):
    from mlflow.data.numpy_dataset import from_numpy

    return from_numpy(
        images.images,
        source=_source(data),
        targets=images.labels,
        name=dataset_name(data, split),
        digest=version,
    )


def log_split(data: DataParams, images: LabelledImages, split: str, version: str) -> Any:
    """Log one split as an input of the active run; returns the MLflow dataset."""
    import mlflow

    dataset = images_dataset(data, images, split, version)
    tags = {"split": split, "images": str(len(images.labels))}
    mlflow.log_input(dataset, context=CONTEXTS[split], tags=tags)
    # Also a run tag: the compare page shows tags but not inputs, and it can be searched.
    mlflow.set_tag(f"{split}_dataset", dataset.name)
    return dataset


def logged_input(run, context: str):
    """The run's dataset input logged with `context` (MLflow's DatasetInput: `.dataset`, the
    entity with name and digest, and `.tags`), or None."""
    for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        if tags.get("mlflow.data.context") == context:
            return dataset_input
    return None
