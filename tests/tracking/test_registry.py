"""Model registry against a real sqlite store: versions, tags, the champion rule, loading."""

from __future__ import annotations

import os
import re
import socket

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cifar10_mlops.core import config
from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Params, parse_params
from cifar10_mlops.tracking import final_results, registry, run_opening
from tests.helpers.models import tiny_keras_model_file

NAME = "cifar10-test-model"


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-registry")
    monkeypatch.setattr(config, "TRAINING_STATE_DIR", tmp_path / ".training_state")
    yield MlflowClient(tracking_uri=uri)
    while mlflow.active_run():
        mlflow.end_run()


def evaluated_run(tmp_path, accuracy: float, seed: int) -> str:
    """A pipeline run as train + evaluate leave it: params, tags, test metrics, the model."""
    params = Params.model_validate({"train": {"seed": seed}})  # a different training each time
    run_id = run_opening.start_pipeline_run(
        params, "sha256:00000000000000aa", tmp_path / "run.json"
    )
    final_results.log_final_results(
        {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "n_test": 40},
        [],
        tiny_keras_model_file(tmp_path / f"model{seed}.keras", seed),
        np.zeros((2, 32, 32, 3), np.uint8),
    )
    run_opening.end_run()
    return run_id


def test_versions_and_the_champion_rule(store, tmp_path, capsys):
    outcomes = [
        registry.register_run_model(evaluated_run(tmp_path, accuracy, seed), NAME)
        for seed, accuracy in enumerate([0.5, 0.4, 0.6])
    ]

    assert [o.version for o in outcomes] == ["1", "2", "3"]
    assert [o.champion for o in outcomes] == [True, False, True]
    assert [o.previous_champion for o in outcomes] == [None, "1", "1"]
    assert outcomes[0].message().endswith("is the first champion")
    assert "did not beat champion version 1 (test accuracy 0.5000)" in outcomes[1].message()
    assert outcomes[2].message().endswith("is the new champion, replacing version 1")
    assert str(store.get_model_version_by_alias(NAME, "champion").version) == "3"


def test_a_tie_keeps_the_champion(store, tmp_path):
    first = registry.register_run_model(evaluated_run(tmp_path, 0.5, 0), NAME)
    tie = registry.register_run_model(evaluated_run(tmp_path, 0.5, 1), NAME)
    assert first.champion and not tie.champion
    assert str(store.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_version_tags_description_and_loading_the_champion(store, tmp_path):
    run_id = evaluated_run(tmp_path, 0.625, 7)
    registry.register_run_model(run_id, NAME)

    version = store.get_model_version(NAME, "1")
    run = store.get_run(run_id)
    assert version.run_id == run_id
    assert version.source.startswith("models:/m-")  # the run's LoggedModel
    assert version.tags["test_accuracy"] == "0.625"
    assert version.tags["test_macro_f1"] == "0.525"
    assert version.tags["data_version"] == "sha256:00000000000000aa"
    assert version.tags["params_digest"] == run.data.tags[run_opening.DIGEST_TAG]
    assert version.tags["git_commit"] == run.data.tags["mlflow.source.git.commit"]
    assert version.tags["dvc_experiment"] == "exp-registry"
    lines = version.description.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ResNet50 backbone, gap_dense head")
    assert "Test accuracy 0.6250" in lines[1] and "40 held-out images" in lines[1]
    assert "sha256:00000000000000aa" in lines[1]
    assert f"models:/{NAME}@champion" in store.get_registered_model(NAME).description

    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert champion.predict(np.zeros((3, 32, 32, 3), np.uint8)).shape == (
        3,
        12,
    )  # label, confidence, p_<class> x 10


def test_a_run_without_test_accuracy_is_refused(store, tmp_path):
    run_id = run_opening.start_pipeline_run(Params(), "sha256:0", tmp_path / "run.json")
    run_opening.end_run()
    with pytest.raises(PipelineError, match="has no test_accuracy"):
        registry.register_run_model(run_id, NAME)


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_registered_model_switches_registration_off(value):
    params = parse_params({"mlflow": {"registered_model": value}}, config.PARAMS_FILE)
    assert params.mlflow.registered_model is None


def test_the_default_registered_model_name():
    assert Params().mlflow.registered_model == "cifar10-resnet50"


@pytest.mark.parametrize("value", ["a/b", "name@alias", "has space", "-dash-first", "x" * 101, 3])
def test_registered_model_names_are_validated(value):
    with pytest.raises(PipelineError, match="mlflow.registered_model"):
        parse_params({"mlflow": {"registered_model": value}}, config.PARAMS_FILE)


def _tags(store, version: str) -> dict[str, str]:
    return store.get_model_version(NAME, version).tags


def test_every_promotion_leaves_an_audit_trail_on_the_versions(store, tmp_path):
    for seed, accuracy in enumerate([0.5, 0.4, 0.6]):
        registry.register_run_model(evaluated_run(tmp_path, accuracy, seed), NAME)

    first, second, third = (_tags(store, v) for v in ("1", "2", "3"))
    commit = store.get_run(store.get_model_version(NAME, "1").run_id).data.tags[
        "mlflow.source.git.commit"
    ]
    assert first[registry.REPLACED_VERSION] == "none"
    assert third[registry.REPLACED_VERSION] == "1"
    for promoted in (first, third):
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", promoted[registry.PROMOTED_AT]
        )
        assert f"@{socket.gethostname()} (pid {os.getpid()})" in promoted[registry.PROMOTED_BY]
        assert promoted[registry.PROMOTED_GIT_COMMIT] == commit  # this checkout decided
    assert first[registry.REPLACED_BY_VERSION] == "3"
    assert first[registry.REPLACED_AT] >= first[registry.PROMOTED_AT]
    assert not any(key.startswith("champion.") for key in second)  # never promoted


class InterleavedClient:
    """The real client, except that `between()` runs once right after the first `method` call:
    another evaluate's whole promotion squeezed in between this one's read and its write."""

    def __init__(self, inner, method: str, between):
        self._inner, self._method, self._between, self._done = inner, method, between, False

    def __getattr__(self, attr):
        target = getattr(self._inner, attr)
        if attr != self._method or self._done:
            return target

        def call(*args, **kwargs):
            result = target(*args, **kwargs)
            if not self._done:
                self._done = True
                self._between()
            return result

        return call


def test_a_concurrent_better_promotion_between_read_and_write_is_not_lost(store, tmp_path):
    """The lost update of a plain read-then-write: B (0.6) reads the champion (v1), A (0.7)
    registers and takes the alias, then B writes its stale decision. B must hand it back."""
    registry.register_run_model(evaluated_run(tmp_path, 0.5, 0), NAME)
    run_a = evaluated_run(tmp_path, 0.7, 1)
    run_b = evaluated_run(tmp_path, 0.6, 2)
    outcome_a = []
    client_b = InterleavedClient(
        MlflowClient(),
        "get_registered_model",  # B's first read of the alias: v1, B decides to promote v2
        lambda: outcome_a.append(registry.register_run_model(run_a, NAME, MlflowClient())),
    )
    outcome_b = registry.register_run_model(run_b, NAME, client_b)

    assert outcome_a[0].version == "3" and outcome_a[0].champion
    assert outcome_a[0].previous_champion == "1"
    assert outcome_b.version == "2" and not outcome_b.champion
    assert "did not beat champion version 3 (test accuracy 0.7000)" in outcome_b.message()
    assert str(store.get_model_version_by_alias(NAME, "champion").version) == "3"
    # The trail tells the story: B moved the alias to v2 (from v1, as it had read it), then
    # handed it back to v3.
    assert _tags(store, "2")[registry.REPLACED_VERSION] == "1"
    assert _tags(store, "2")[registry.REPLACED_BY_VERSION] == "3"
    assert _tags(store, "3")[registry.REPLACED_VERSION] == "2"


def test_an_excluded_version_loses_the_champion_at_the_next_evaluate(store, tmp_path):
    for seed, accuracy in enumerate([0.5, 0.7]):
        registry.register_run_model(evaluated_run(tmp_path, accuracy, seed), NAME)
    store.set_model_version_tag(NAME, "2", registry.EXCLUDED, "true")  # found faulty

    outcome = registry.register_run_model(evaluated_run(tmp_path, 0.6, 2), NAME)

    assert outcome.champion and outcome.previous_champion == "2"
    assert str(store.get_model_version_by_alias(NAME, "champion").version) == "3"
    assert _tags(store, "2")[registry.REPLACED_BY_VERSION] == "3"


class FailsOnceLikeARace:
    """The real client, except that the first call of `method` fails the way a concurrent
    writer of the same key made it fail on the team server (PostgreSQL), after the other
    writer's row went in: the call is made, then the unique-key error is raised."""

    ERROR = (
        "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique "
        'constraint "model_version_tag_pk"'
    )

    def __init__(self, inner, method: str, error: str = ERROR):
        self._inner, self._method, self._error, self.failed = inner, method, error, 0

    def __getattr__(self, attr):
        target = getattr(self._inner, attr)
        if attr != self._method or self.failed:
            return target

        def call(*args, **kwargs):
            result = target(*args, **kwargs)
            if self.failed:
                return result
            self.failed += 1
            raise MlflowException(self._error)

        return call


@pytest.mark.parametrize("method", ["set_model_version_tag", "set_registered_model_alias"])
def test_a_unique_key_clash_with_a_concurrent_writer_is_written_again(store, tmp_path, method):
    run_id = evaluated_run(tmp_path, 0.5, 0)
    client = FailsOnceLikeARace(MlflowClient(), method)
    outcome = registry.register_run_model(run_id, NAME, client)
    assert client.failed == 1 and outcome.champion
    assert _tags(store, "1")[registry.REPLACED_VERSION] == "none"


def test_other_registry_errors_are_not_retried(store, tmp_path):
    run_id = evaluated_run(tmp_path, 0.5, 0)
    client = FailsOnceLikeARace(MlflowClient(), "set_model_version_tag", "PERMISSION_DENIED")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        registry.register_run_model(run_id, NAME, client)
