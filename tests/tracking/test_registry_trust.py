"""The champion is decided by the runs' own metrics, not by version tags anyone can edit
(issue 27, item 3): `test_accuracy=inf` on a version blocked every better one for good, and
`nan` on the newest made it champion depending on list order."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient

from cifar10_mlops.tracking import registry


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # One store for the module (each new sqlite store costs seconds); a model name per test.
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry-trust') / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri)


@dataclass
class Model:
    """A registered model of its own for one test, on the module's store."""

    client: MlflowClient
    name: str

    def register(self, accuracy: float) -> registry.Registration:
        """An evaluated run (its test_accuracy metric), registered as a new version."""
        experiment = self.client.get_experiment_by_name("trust") or self.client.get_experiment(
            self.client.create_experiment("trust")
        )
        run = self.client.create_run(experiment.experiment_id)
        self.client.log_metric(run.info.run_id, "test_accuracy", accuracy)
        self.client.set_terminated(run.info.run_id)
        return registry.register_run_model(run.info.run_id, self.name, self.client)

    def tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.name, version, key, value)

    def run_of(self, version: str) -> str:
        return self.client.get_model_version(self.name, version).run_id

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias(self.name, registry.CHAMPION).version)


@pytest.fixture
def model(client, request):
    return Model(client, "trust-" + re.sub(r"[^A-Za-z0-9-]", "-", request.node.name))


def test_an_edited_infinite_accuracy_tag_does_not_block_a_better_version(model):
    model.register(0.5)
    model.tag("1", "test_accuracy", "inf")
    better = model.register(0.6)
    assert better.champion
    assert model.champion() == "2"


@pytest.mark.parametrize("edited", ["nan", "0.99"])
def test_an_edited_tag_on_a_worse_version_does_not_make_it_champion(model, edited):
    model.register(0.5)
    model.register(0.4)
    model.tag("2", "test_accuracy", edited)
    assert not model.register(0.45).champion  # any later evaluate settles the alias again
    assert model.champion() == "1"


@pytest.mark.parametrize("metric", [float("nan"), 1.5])
def test_a_run_metric_outside_0_to_1_never_competes(model, metric):
    model.register(0.5)
    model.register(0.7)
    assert model.champion() == "2"
    model.client.log_metric(model.run_of("2"), "test_accuracy", metric)  # the newest value counts
    model.register(0.3)
    assert model.champion() == "1"


@pytest.mark.parametrize("spelling", [" True ", "yes"])
def test_an_exclusion_tag_counts_however_it_is_spelt(model, spelling):
    model.register(0.5)
    model.register(0.6)
    model.tag("2", registry.EXCLUDED, spelling)
    model.register(0.4)
    assert model.champion() == "1"


def test_the_audit_trail_records_who_settled_the_alias_and_by_which_accuracy(model):
    model.register(0.5)
    model.register(0.625)
    tags = model.client.get_model_version(model.name, "2").tags
    assert tags[registry.PROMOTED_BY].endswith(")")  # user@host (pid N)
    assert tags[registry.PROMOTED_ACCURACY] == "0.625"  # the run's metric, not the tag
