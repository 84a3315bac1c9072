"""The champion is decided by the runs' own metrics, not by version tags anyone can edit
(issue 27, item 3): `test_accuracy=inf` on a version blocked every better one for good, and
`nan` on the newest made it champion depending on list order."""

from __future__ import annotations

import re

import pytest
from mlflow import MlflowClient

from cifar10_mlops.tracking import registry


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # One store for the module (each new sqlite store costs seconds); a model name per test.
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry-trust') / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri)


@pytest.fixture
def store(client, request):
    global NAME
    NAME = "trust-" + re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)
    return client


def _register(store, accuracy: float) -> registry.Registration:
    """An evaluated run (its test_accuracy metric), registered as a new version."""
    experiment = store.get_experiment_by_name("trust") or store.get_experiment(
        store.create_experiment("trust")
    )
    run = store.create_run(experiment.experiment_id)
    store.log_metric(run.info.run_id, "test_accuracy", accuracy)
    store.set_terminated(run.info.run_id)
    return registry.register_run_model(run.info.run_id, NAME, store)


def _champion(store) -> str:
    return str(store.get_model_version_by_alias(NAME, registry.CHAMPION).version)


def test_an_edited_infinite_accuracy_tag_does_not_block_a_better_version(store):
    _register(store, 0.5)
    store.set_model_version_tag(NAME, "1", "test_accuracy", "inf")
    better = _register(store, 0.6)
    assert better.champion
    assert _champion(store) == "2"


@pytest.mark.parametrize("edited", ["nan", "0.99"])
def test_an_edited_tag_on_a_worse_version_does_not_make_it_champion(store, edited):
    _register(store, 0.5)
    _register(store, 0.4)
    store.set_model_version_tag(NAME, "2", "test_accuracy", edited)
    assert not _register(store, 0.45).champion  # any later evaluate settles the alias again
    assert _champion(store) == "1"


@pytest.mark.parametrize("metric", [float("nan"), 1.5])
def test_a_run_metric_outside_0_to_1_never_competes(store, metric):
    _register(store, 0.5)
    store.log_metric(store.get_model_version(NAME, "1").run_id, "test_accuracy", 0.5)
    run = store.create_run(store.get_experiment_by_name("trust").experiment_id)
    store.log_metric(run.info.run_id, "test_accuracy", 0.7)
    store.set_terminated(run.info.run_id)
    registry.register_run_model(run.info.run_id, NAME, store)
    assert _champion(store) == "2"
    store.log_metric(run.info.run_id, "test_accuracy", metric)  # the newest value counts
    _register(store, 0.3)
    assert _champion(store) == "1"


@pytest.mark.parametrize("spelling", [" True ", "yes"])
def test_an_exclusion_tag_counts_however_it_is_spelt(store, spelling):
    _register(store, 0.5)
    _register(store, 0.6)
    store.set_model_version_tag(NAME, "2", registry.EXCLUDED, spelling)
    _register(store, 0.4)
    assert _champion(store) == "1"


def test_the_audit_trail_records_who_settled_the_alias_and_by_which_accuracy(store):
    _register(store, 0.5)
    _register(store, 0.625)
    tags = store.get_model_version(NAME, "2").tags
    assert tags[registry.PROMOTED_BY].endswith(")")  # user@host (pid N)
    assert tags[registry.PROMOTED_ACCURACY] == "0.625"  # the run's metric, not the tag
