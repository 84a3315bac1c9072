"""What each of the two promoting processes of test_concurrent_promotion.py runs.

A process registers one run's model per round with the evaluate stage's own function
(registry.register_run_model) against the tracking server. Each round is its own registered
model, so the parent can check every round's champion afterwards. The processes are
synchronised by multiprocessing's Barrier and Event (OS semaphores), never by sleeping:

- a free round: both pass a barrier, then register and promote at the same moment;
- the forced round: the lost update of a plain read-then-write, made to happen. The "stale"
  process registers its (worse) version and reads the versions and the alias, then waits
  until the "fresh" process has registered its better version and moved the alias; only then
  does it write its own, stale decision.
"""

from __future__ import annotations

import os
import traceback


class HookedClient:
    """The real MlflowClient; `before[m]()` / `after[m]()` run once around the first call of m."""

    def __init__(self, inner, before=None, after=None):
        self._inner = inner
        self._before = dict(before or {})
        self._after = dict(after or {})

    def __getattr__(self, name):
        target = getattr(self._inner, name)
        if name not in self._before and name not in self._after:
            return target

        def call(*args, **kwargs):
            hook = self._before.pop(name, None)
            if hook:
                hook()
            result = target(*args, **kwargs)
            hook = self._after.pop(name, None)
            if hook:
                hook()
            return result

        return call


def promote_rounds(role, tracking_uri, rounds, barrier, stale_read, fresh_wrote, results):
    """rounds: [(kind, model name, run id)]; kind "free" or "forced". Puts (role, round,
    version, champion) per round on `results`, or (role, "error", traceback)."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    timeout = 300  # a dead partner fails the round instead of hanging it
    try:
        from mlflow import MlflowClient

        from cifar10_mlops.tracking import registry

        for number, (kind, name, run_id) in enumerate(rounds):
            client = MlflowClient(tracking_uri=tracking_uri)
            if kind == "forced" and role == "stale":
                client = HookedClient(
                    client,
                    after={"get_registered_model": stale_read.set},  # read the alias: v1
                    before={"set_registered_model_alias": lambda: fresh_wrote.wait(timeout)},
                )
            elif kind == "forced":
                client = HookedClient(
                    client,
                    before={"create_model_version": lambda: stale_read.wait(timeout)},
                    after={"set_registered_model_alias": fresh_wrote.set},
                )
            barrier.wait(timeout)
            outcome = registry.register_run_model(run_id, name, client)
            results.put((role, number, outcome.version, outcome.champion))
    except BaseException:
        results.put((role, "error", traceback.format_exc()))
        barrier.abort()
        raise
