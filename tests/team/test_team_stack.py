"""The team stack for real: the pipeline against an MLflow server on PostgreSQL with artifacts in
S3 (SeaweedFS), `dvc push` to an S3 remote on the same server, a fresh clone that pulls and has
nothing to reproduce, and three queued experiments run two at a time.

Every command is the one docs/team-setup.md shows. The stack is started once for the module
(`make team-stack`, conftest.py); the pipeline is the tiny one (tests/helpers/pipeline.py).
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from cifar10_mlops.tracking import registry
from tests.helpers.pipeline import TINY_PARAMS, VENV_BIN, dvc, make_pipeline_repo, run
from tests.helpers.tracking_server import EXPERIMENT, artifact_files, run_with_env

pytestmark = pytest.mark.slow

MODEL_NAME = "cifar10-resnet50"  # params.yaml mlflow.registered_model
QUEUE_SEEDS = (11, 12, 13)
QUEUE_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def repo(stack, tmp_path_factory):
    """A pipeline copy with the S3 remote configured as the docs say, after one `dvc repro`."""
    root = make_pipeline_repo(tmp_path_factory.mktemp("team-pipeline") / "repo", TINY_PARAMS)
    dvc(root, "remote", "add", "-d", "storage", "s3://ml-team/dvc")
    dvc(root, "remote", "modify", "storage", "endpointurl", stack.env["TEAM_S3_ENDPOINT_URL"])
    run(root, "git", "add", ".dvc/config")
    run(root, "git", "commit", "-qm", "DVC remote: s3://ml-team/dvc")
    try:
        result = run_with_env(root, str(VENV_BIN / "dvc"), "repro", extra_env=stack.env)
    except AssertionError as error:
        raise AssertionError(
            f"{error}\nmlflow server log:\n{stack.log('mlflow')[-4000:]}"
        ) from None
    assert "Running stage 'evaluate'" in result.stdout
    print(result.stdout[-600:])
    return root


@pytest.fixture(scope="module")
def pipeline_run(stack, repo):
    client = stack.client()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} on the server"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def test_the_pipeline_logs_params_metrics_artifacts_and_the_model_to_the_stack(
    stack, repo, pipeline_run, tmp_path, monkeypatch
):
    client, mlrun = pipeline_run
    run_id = mlrun.info.run_id
    assert json.loads((repo / "reports/mlflow_run.json").read_text())["run_id"] == run_id
    assert mlrun.info.status == "FINISHED"
    print(f"run {run_id} on {stack.tracking_uri}, artifact_uri {mlrun.info.artifact_uri}")

    # The run is a row of MLflow's PostgreSQL database.
    rows = stack.sql("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
    assert rows == [("FINISHED",)]

    params = mlrun.data.params
    assert params["train.epochs"] == "2"
    assert params["data.synthetic.count"] == "200"
    assert params["model.backbone"] == TINY_PARAMS["model"]["backbone"]

    history_rows = (repo / "reports/history.csv").read_text().strip().splitlines()[1:]
    assert 1 <= len(history_rows) <= 2  # early stopping may end sooner
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        steps = [m.step for m in client.get_metric_history(run_id, name)]
        assert sorted(steps) == list(range(len(history_rows))), (name, steps)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert mlrun.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert mlrun.data.metrics["test_macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert mlrun.data.metrics["test_loss"] == pytest.approx(metrics["loss"])

    # Artifacts go through the server (proxied) into the bucket: listed with boto3 there.
    assert mlrun.info.artifact_uri.startswith("mlflow-artifacts:"), mlrun.info.artifact_uri
    logged = artifact_files(client, run_id, "reports")
    assert "reports/metrics.json" in logged
    downloaded = client.download_artifacts(run_id, "reports/metrics.json", str(tmp_path))
    assert open(downloaded, "rb").read() == (repo / "reports/metrics.json").read_bytes()
    keys = stack.s3_keys("mlflow/")
    print("bucket ml-team, mlflow/:\n  " + "\n  ".join(keys))
    prefix = f"mlflow/{mlrun.info.experiment_id}/{run_id}/artifacts/"
    assert {prefix + path for path in logged} <= set(keys)
    assert any(key.endswith("model.keras") for key in keys), keys  # the logged model's file
    assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists()

    # The registered model, read back through the client and loaded from the bucket.
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.run_id == run_id and champion.version == "1"
    assert champion.tags["test_accuracy"] == repr(mlrun.data.metrics["test_accuracy"])
    assert champion.tags[registry.REPLACED_VERSION] == "none"
    assert champion.tags[registry.PROMOTED_BY].endswith(")")
    print("champion version 1 tags:", dict(sorted(champion.tags.items())))

    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
    mlflow.set_tracking_uri(stack.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    finally:
        mlflow.set_tracking_uri(None)
    with np.load(repo / "data/processed/test.npz") as test:
        predictions = model.predict(test["images"][:4])
    assert len(predictions) == 4


def test_dvc_push_to_s3_then_a_fresh_clone_pulls_and_has_nothing_to_reproduce(
    stack, repo, pipeline_run, tmp_path
):
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "pipeline run")
    pushed = run_with_env(repo, str(VENV_BIN / "dvc"), "push", extra_env=stack.env)
    print("dvc push:", pushed.stdout.strip())

    count = int(re.search(r"(\d+) files? pushed", pushed.stdout).group(1))
    in_bucket = stack.s3_keys("dvc/")
    print(f"bucket ml-team, dvc/: {len(in_bucket)} objects, e.g. {sorted(in_bucket)[:3]}")
    assert len(in_bucket) == count > 0
    assert all(key.startswith("dvc/files/md5/") for key in in_bucket)
    in_sync = run_with_env(repo, str(VENV_BIN / "dvc"), "status", "--cloud", extra_env=stack.env)
    assert "in sync" in in_sync.stdout, in_sync.stdout

    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "models/model.keras").exists()
    pulled = run_with_env(clone, str(VENV_BIN / "dvc"), "pull", extra_env=stack.env)
    print("dvc pull in a fresh clone:\n" + pulled.stdout.strip())
    for path in ("models/model.keras", "data/processed/test.npz", "reports/mlflow_run.json"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path

    repro = run_with_env(clone, str(VENV_BIN / "dvc"), "repro", extra_env=stack.env)
    print("dvc repro in the clone:", repro.stdout.strip())
    assert "Running stage" not in repro.stdout
    assert "up to date" in repro.stdout
    client, _ = pipeline_run
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == 1


def _queue_status(root, env) -> str:
    return run_with_env(root, str(VENV_BIN / "dvc"), "queue", "status", extra_env=env).stdout


def test_three_queued_experiments_run_two_at_a_time_and_all_finish_on_postgresql(
    stack, repo, pipeline_run
):
    for seed in QUEUE_SEEDS:
        queued = run_with_env(
            repo,
            str(VENV_BIN / "dvc"),
            "exp",
            "run",
            "--queue",
            "-n",
            f"seed-{seed}",
            "-S",
            f"train.seed={seed}",
            extra_env=stack.env,
        )
        assert "Queued experiment" in queued.stdout
    # The workers are started with the client's environment (MLFLOW_TRACKING_URI, the keys):
    # each experiment runs in a copy under .dvc/tmp/exps and must still log to the server.
    run_with_env(repo, str(VENV_BIN / "dvc"), "queue", "start", "-j", "2", extra_env=stack.env)

    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    status = _queue_status(repo, stack.env)
    while re.search(r"\b(Queued|Running)\b", status) or not re.search(
        r"Worker status: 0 active, 0 idle", status
    ):
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(5)  # polling the queue's state, not timing anything
        status = _queue_status(repo, stack.env)
    print("dvc queue status:\n" + status)
    assert status.count("Success") == len(QUEUE_SEEDS), status

    logs = ""
    for seed in QUEUE_SEEDS:
        logs += run_with_env(
            repo, str(VENV_BIN / "dvc"), "queue", "logs", f"seed-{seed}", extra_env=stack.env
        ).stdout
    for text in (logs, stack.log("mlflow")):
        assert "database is locked" not in text.lower()
    assert "Running stage 'evaluate'" in logs

    # Three FINISHED runs in PostgreSQL, one per experiment, none lost.
    rows = stack.sql(
        "SELECT t.value, r.status, r.start_time, r.end_time FROM runs r "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'dvc_experiment' ORDER BY t.value"
    )
    print("runs of the queued experiments in PostgreSQL:", [row[:2] for row in rows])
    assert [(name, status) for name, status, *_ in rows] == [
        (f"seed-{seed}", "FINISHED") for seed in QUEUE_SEEDS
    ]
    # -j 2 really ran two at once: some two runs were open at the same time.
    spans = [(start, end) for *_, start, end in rows]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :]), (
        spans
    )
    assert not list(repo.rglob("mlflow.db")), "an experiment logged to a local sqlite store"

    # Four versions now (the first pipeline run and three experiments, two of them evaluated
    # side by side): the champion is the best of them.
    client, _ = pipeline_run
    versions = registry.all_versions(client, MODEL_NAME)
    assert len(versions) == 1 + len(QUEUE_SEEDS)
    best = registry.best_version(versions, client)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    print(
        "versions:",
        {v.version: v.tags["test_accuracy"] for v in versions},
        "champion:",
        champion.version,
    )
    assert champion.version == best.version
