"""Two evaluates promoting at the same moment against the team stack's server (PostgreSQL)
end with one champion, and it is the best version. Two real processes (tests/team/promoter.py)
call the evaluate stage's registry function, released together by a barrier; in the forced
round the worse one writes its stale decision last, which a plain read-then-write loses
(tests/tracking/test_registry.py shows the old code ending on the worse version)."""

from __future__ import annotations

import multiprocessing
import queue

import pytest

from cifar10_mlops.tracking import registry
from tests.team import promoter

pytestmark = pytest.mark.slow

# (kind, accuracy of the "fresh" process's run, accuracy of the "stale" process's run)
ROUNDS = [
    ("forced", 0.70, 0.60),
    ("free", 0.60, 0.70),
    ("free", 0.80, 0.50),
    ("free", 0.65, 0.65),  # a tie: the earlier version stays
]
SEED_ACCURACY = 0.10  # the forced round starts with a champion both beat
PROCESS_TIMEOUT_S = 600


def _evaluated_run(client, experiment_id: str, accuracy: float) -> str:
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "test_accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_two_processes_promoting_at_once_leave_the_best_version_champion(stack):
    client = stack.client()
    experiment_id = client.create_experiment("concurrent-promotion")
    plans: dict[str, list] = {"fresh": [], "stale": []}
    names = []
    for number, (kind, fresh, stale) in enumerate(ROUNDS):
        name = f"promotion-round-{number}"
        names.append(name)
        if kind == "forced":
            seed_run = _evaluated_run(client, experiment_id, SEED_ACCURACY)
            assert registry.register_run_model(seed_run, name, client).champion
        plans["fresh"].append((kind, name, _evaluated_run(client, experiment_id, fresh)))
        plans["stale"].append((kind, name, _evaluated_run(client, experiment_id, stale)))

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    stale_read, fresh_wrote = context.Event(), context.Event()
    results = context.Queue()
    processes = [
        context.Process(
            target=promoter.promote_rounds,
            args=(role, stack.tracking_uri, plan, barrier, stale_read, fresh_wrote, results),
        )
        for role, plan in plans.items()
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        while len(outcomes) < 2 * len(ROUNDS):
            try:
                outcome = results.get(timeout=PROCESS_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"the promoting processes gave no result; so far: {outcomes}")
            assert outcome[1] != "error", f"{outcome[0]} failed:\n{outcome[2]}"
            outcomes.append(outcome)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0, 0]

    for number, name in enumerate(names):
        versions = registry.all_versions(client, name)
        best = registry.best_version(versions, client)
        champion = client.get_model_version_by_alias(name, "champion")
        accuracies = {v.version: v.tags["test_accuracy"] for v in versions}
        print(f"round {number} ({ROUNDS[number][0]}): {accuracies}, champion {champion.version}")
        assert champion.version == best.version, (name, accuracies, champion.version)
        # The best version's own evaluate ends seeing it champion (it always reads itself).
        assert any(n == number and v == best.version and won for _, n, v, won in outcomes)
        # The audit trail: the champion records its promotion.
        assert champion.tags[registry.PROMOTED_AT]
        assert champion.tags[registry.PROMOTED_BY]

    # In the forced round the stale write really happened, and was undone: the worse version
    # held the alias for a moment (its trail says so) and handed it to the better one.
    forced = names[0]
    stale_version = next(v for r, n, v, _ in outcomes if r == "stale" and n == 0)
    stale_tags = client.get_model_version(forced, stale_version).tags
    assert registry.PROMOTED_AT in stale_tags, stale_tags
    best_forced = registry.best_version(registry.all_versions(client, forced), client).version
    assert stale_tags[registry.REPLACED_BY_VERSION] == best_forced
