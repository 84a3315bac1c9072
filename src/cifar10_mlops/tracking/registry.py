"""MLflow Model Registry: each evaluated model becomes a version; the best carries `champion`.

At the end of a successful evaluate, the run's logged model (`runs:/<run id>/model`) is
registered as a new version of `mlflow.registered_model` (default `cifar10-resnet50`), with
tags (data_version, params_digest, test_accuracy, test_macro_f1, git_commit, dvc_experiment,
train_dataset, test_dataset) and a short description.

Promotion rule: the champion is the version with the highest held-out test accuracy, the
earliest of equals. The accuracy is the `test_accuracy` metric of the version's own run, never
its `test_accuracy` tag (a copy for people: anyone can edit a tag, and `inf` or `nan` there
decided the champion); only a finite value in [0, 1] competes. Versions tagged
`champion.excluded` (`true`, `yes` or `1`, any case: taken out by hand, e.g. a model found
faulty) and versions without such an accuracy never are. Registered one after another, that
is the rule "a new version takes `champion` only when it is strictly better than the current
one": a tie keeps the current champion. Accuracies are
compared as logged; they are only meaningful against each other when measured on the same test
set (compare the `data_version` tags).

Concurrent evaluates (a team on one tracking server, `dvc queue start -j 2`): MLflow's alias
update is a plain write, with no compare-and-set, so two evaluates that both read the old
champion and then both move the alias would leave whichever wrote last. Instead each evaluate,
after registering its version, loops: read every version, pick the best, read the alias, and
stop when it already names the best; otherwise set it and go round again. Whoever writes last
reads everything again after its write, and a version registered after that read is checked by
its own evaluate, which reads everything later still: the alias ends on the best version
whatever the interleaving (tests/tracking/test_registry.py forces the bad interleaving;
tests/team/test_concurrent_promotion.py runs two processes against a server on PostgreSQL).

Audit trail, as model-version tags: the version that takes the alias gets
champion.promoted_at (UTC), champion.replaced_version (the version it took the alias from, as
read just before, or `none`), champion.promoted_by (user@host, pid) and champion.git_commit
(of the code that decided) and champion.accuracy (the run metric it was chosen by); the
version that lost it gets champion.replaced_at and champion.replaced_by_version.

Users load the champion with `mlflow.pyfunc.load_model("models:/<name>@champion")`; every
version stays loadable as `models:/<name>/<version>`.
"""

from __future__ import annotations

import datetime
import functools
import getpass
import math
import os
import socket
from dataclasses import dataclass

from cifar10_mlops.core import config
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.tracking.datasets import EVALUATION, TRAINING, logged_input
from cifar10_mlops.tracking.description import describe  # the run's two lines
from cifar10_mlops.tracking.final_results import MODEL_ARTIFACT
from cifar10_mlops.tracking.provenance import git_commit
from cifar10_mlops.tracking.run_opening import DIGEST_TAG
from cifar10_mlops.tracking.store import client

CHAMPION = "champion"
# Model-version tags of the audit trail, and the one that takes a version out of the running.
PROMOTED_AT = "champion.promoted_at"
REPLACED_VERSION = "champion.replaced_version"
PROMOTED_BY = "champion.promoted_by"
PROMOTED_GIT_COMMIT = "champion.git_commit"
REPLACED_AT = "champion.replaced_at"
REPLACED_BY_VERSION = "champion.replaced_by_version"
PROMOTED_ACCURACY = "champion.accuracy"
EXCLUDED = "champion.excluded"
EXCLUDED_VALUES = {"true", "yes", "1"}
# Each round either finds the alias on the best version or moves it there; rounds repeat only
# while other evaluates write between a read and a write.
MAX_ROUNDS = 50
UPSERT_ATTEMPTS = 5


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
        # The data the model was trained and tested on, as the run's Datasets panel names them
        # (digest: data_version); the version's logged model lists them under "Datasets used".
        "train_dataset": _dataset_name(run, TRAINING),
        "test_dataset": _dataset_name(run, EVALUATION),
    }
    return {key: value for key, value in candidates.items() if value is not None}


def _dataset_name(run, context: str) -> str | None:
    found = logged_input(run, context)
    return None if found is None else found.dataset.name


def _number(value: float | None) -> str | None:
    return None if value is None else repr(float(value))


def current_champion(mlflow_client, name: str):
    """The version holding the `champion` alias, or None."""
    version = _alias_holder(mlflow_client, name)
    return None if version is None else mlflow_client.get_model_version(name, version)


def _alias_holder(mlflow_client, name: str) -> str | None:
    version = mlflow_client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else str(version)


def run_accuracy(mlflow_client, version) -> float | None:
    """The test_accuracy metric of the version's run when it is a finite value in [0, 1]."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return None
    try:
        value = mlflow_client.get_run(version.run_id).data.metrics.get("test_accuracy")
    except MlflowException:  # the run was deleted, or is not readable
        return None
    if value is None or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None
    return float(value)


def _excluded(version) -> bool:
    return str(version.tags.get(EXCLUDED, "")).strip().lower() in EXCLUDED_VALUES


def all_versions(mlflow_client, name: str) -> list:
    """Every version of `name`, tags included, through all result pages."""
    versions, token = [], None
    while True:
        page = mlflow_client.search_model_versions(f"name = '{name}'", page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def best_version(versions, mlflow_client):
    """The highest test accuracy (of each version's run), the earliest of equals; None when no
    version can compete."""
    candidates = [
        (accuracy, -int(version.version), version)
        for version in versions
        if not _excluded(version) and (accuracy := run_accuracy(mlflow_client, version)) is not None
    ]
    return max(candidates, key=lambda c: c[:2])[2] if candidates else None


def promoter() -> str:
    """Who moved the alias: user@host and the process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


def _upsert(write) -> None:
    """MLflow's SQL store writes a tag or an alias as select-then-insert (session.merge): two
    processes writing the same key at once can make one fail on the unique key (seen on
    PostgreSQL: "duplicate key value violates unique constraint model_version_tag_pk"). The row
    exists by then, so writing again updates it."""
    from mlflow.exceptions import MlflowException

    for attempt in range(UPSERT_ATTEMPTS):
        try:
            write()
            return
        except MlflowException as exc:
            text = str(exc).lower()
            if attempt + 1 == UPSERT_ATTEMPTS or ("unique" not in text and "duplicate" not in text):
                raise


def _record_promotion(
    mlflow_client, name: str, version: str, replaced: str | None, accuracy: float | None
) -> None:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    audit = {
        PROMOTED_AT: now,
        REPLACED_VERSION: replaced or "none",
        PROMOTED_BY: promoter(),
        PROMOTED_GIT_COMMIT: git_commit(config.ROOT),
        PROMOTED_ACCURACY: repr(accuracy),
    }
    tags = [(version, key, value) for key, value in audit.items()]
    if replaced is not None and replaced != version:
        tags += [(replaced, REPLACED_AT, now), (replaced, REPLACED_BY_VERSION, version)]
    for tagged, key, value in tags:
        _upsert(functools.partial(mlflow_client.set_model_version_tag, name, tagged, key, value))


def settle_champion(mlflow_client, name: str) -> tuple[str | None, str | None]:
    """Move `champion` to the best version until a fresh read finds it there.

    Returns (the holder before, the holder now). Versions are read before the alias, so the
    last writer's final check covers every version registered before it; see the module
    docstring for why this ends on the best version under any interleaving."""
    before = None
    for round_number in range(MAX_ROUNDS):
        best = best_version(all_versions(mlflow_client, name), mlflow_client)
        holder = _alias_holder(mlflow_client, name)
        if round_number == 0:
            before = holder
        if best is None or holder == str(best.version):
            return before, holder
        _upsert(
            functools.partial(
                mlflow_client.set_registered_model_alias, name, CHAMPION, best.version
            )
        )
        accuracy = run_accuracy(mlflow_client, best)
        _record_promotion(mlflow_client, name, str(best.version), holder, accuracy)
    raise PipelineError(
        f"registry: the `{CHAMPION}` alias of {name} did not settle in {MAX_ROUNDS} rounds "
        "(other evaluates kept moving it); run evaluate again"
    )


def _promote(mlflow_client, name: str, version: str, accuracy: float) -> Registration:
    before, holder = settle_champion(mlflow_client, name)
    version = str(version)
    if holder == version:  # promoted: say what it took the alias from
        previous = before if before != version else None
    else:  # kept out by the champion now (the one before, or a concurrent better one)
        previous = holder
    previous_version = None if previous is None else mlflow_client.get_model_version(name, previous)
    return Registration(
        name=name,
        version=version,
        accuracy=accuracy,
        champion=holder == version,
        previous_champion=previous,
        previous_accuracy=(
            None if previous_version is None else run_accuracy(mlflow_client, previous_version)
        ),
    )
