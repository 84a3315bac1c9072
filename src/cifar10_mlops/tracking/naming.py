"""Run names that say what a run is, so the MLflow runs list tells variants apart.

Under `dvc exp run` the name is the DVC experiment's (`-n epochs-6`, or DVC's generated one);
otherwise a short summary of what was chosen: backbone, epochs, data source and training
images, e.g. `resnet50-5ep-synthetic-1200`. A name already taken in the experiment gets
`-2`, `-3`, ... A reopened run (a resumed attempt) keeps the name it was given first.
"""

from __future__ import annotations

from cifar10_mlops.core.params import Params

MAX_SUFFIX = 1000


def summary_name(params: Params, train_images: int | None) -> str:
    """What was trained, for how long, on what: `resnet50-5ep-synthetic-1200`."""
    parts = [params.model.backbone, f"{params.train.epochs}ep", params.data.source]
    if train_images is not None:
        parts.append(str(train_images))
    return "-".join(parts)


def base_name(params: Params, train_images: int | None, dvc_experiment: str | None) -> str:
    return dvc_experiment or summary_name(params, train_images)


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")


def unique_name(mlflow_client, experiment_id: str, base: str) -> str:
    """`base`, or `base-N` with the smallest N >= 2 that no run of the experiment has.

    Two trainings started at the same moment can still pick the same name: names are a
    label, the run id stays the identity."""
    for suffix in range(1, MAX_SUFFIX):
        name = base if suffix == 1 else f"{base}-{suffix}"
        taken = mlflow_client.search_runs(
            [experiment_id],
            filter_string=f"attributes.run_name = '{_quoted(name)}'",
            max_results=1,
        )
        if not taken:
            return name
    return f"{base}-{MAX_SUFFIX}"
