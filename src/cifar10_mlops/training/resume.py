"""Resumable training: a backup after every epoch that survives a kill at any moment.

Each finished epoch is backed up (weights with the optimizer's variables, the best weights so
far, the history) into .training_state/backup-<digest>/epoch-<N>, outside DVC's outputs. A
backup is written under a temporary name and renamed when complete, so a training killed at
any moment (even with SIGKILL, even mid-write) continues after the last complete backup when
`dvc repro` runs again with the same params and data; a different digest, or no complete
backup, starts afresh.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from cifar10_mlops.core.atomic import fsync_path
from cifar10_mlops.core.history import read_history
from cifar10_mlops.core.quiet_tensorflow import keras


class EpochBackup(keras.callbacks.Callback):
    """Backs up the training state after each epoch, with the best weights by `monitor`."""

    def __init__(self, state: TrainingState, monitor: str, mode: str) -> None:
        super().__init__()
        self.state, self.monitor, self.maximise = state, monitor, mode == "max"
        self.best = state.best_value(monitor)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {})[self.monitor])
        improved = self.best is None or (value > self.best if self.maximise else value < self.best)
        if improved:
            self.best = value
        self.state.save(self.model, epoch + 1, improved)


class TrainingState:
    """.training_state/backup-<key>/: history.csv (CSVLogger's, growing) and epoch-<N>/, the
    backup after N finished epochs: the weights with the optimizer's variables, the best
    weights so far and the history up to then.

    A backup is written as epoch-<N>.tmp and renamed when complete, so a kill at any moment
    leaves the previous backup or the new one, never a torn one. The key is a digest of the
    params and data: only the same training resumes; any other key's leftovers are removed
    when a training starts."""

    def __init__(self, root: Path, key: str) -> None:
        name = "backup-" + "".join(c for c in key if c.isalnum())[-16:]
        for stale in root.glob("backup-*"):
            if stale.name != name:
                shutil.rmtree(stale, ignore_errors=True)
        self.directory = root / name
        self.history_csv = self.directory / "history.csv"
        self.latest: Path | None = None  # the newest complete backup
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def best_weights(self) -> Path:
        if self.latest is None:
            raise RuntimeError(f"{self.directory}: no epoch backed up yet")
        return self.latest / "best.weights.h5"

    def has_backup(self) -> bool:
        """Whether a backup (complete or not) is there to try."""
        return any(p.name[6:].isdigit() for p in self.directory.glob("epoch-*"))

    def restore(self, model: keras.Model) -> int:
        """Load the newest readable backup into the compiled `model` and return its epoch
        count; 0 (nothing loaded, no history) when the training starts afresh. Everything
        else in the directory (torn *.tmp, older or unreadable backups) is removed."""
        if not model.optimizer.built:  # its variables must exist to be loaded
            model.optimizer.build(model.trainable_variables)
        fresh = model.get_weights(), [v.numpy() for v in model.optimizer.variables]
        complete = [p for p in self.directory.glob("epoch-*") if p.name[6:].isdigit()]
        for backup in sorted(complete, key=lambda p: int(p.name[6:]), reverse=True):
            try:
                model.load_weights(backup / "state.weights.h5")
                # The history as it was then: rows of later epochs and a torn last line go.
                shutil.copyfile(backup / "history.csv", self.history_csv)
                self.latest = backup
                break
            except Exception as error:  # a damaged disk, not a kill: try an older one
                warnings.warn(f"{backup}: unreadable, not resumed from ({error})", stacklevel=2)
        else:  # a failed load may have overwritten some variables
            model.set_weights(fresh[0])
            for variable, value in zip(model.optimizer.variables, fresh[1], strict=True):
                variable.assign(value)
            self.history_csv.unlink(missing_ok=True)
        for path in list(self.directory.iterdir()):
            if path in (self.latest, self.history_csv):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return self.finished_epochs()

    def save(self, model: keras.Model, finished: int, best: bool) -> None:
        """Back up after `finished` epochs; `best`: this epoch's weights are the best so far."""
        tmp = self.directory / f"epoch-{finished}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / "state.weights.h5")  # the optimizer's variables included
        if best or self.latest is None:
            model.save_weights(tmp / "best.weights.h5")
        else:
            try:
                os.link(self.best_weights, tmp / "best.weights.h5")  # the same file, no copy
            except OSError:  # a file system without hard links
                shutil.copyfile(self.best_weights, tmp / "best.weights.h5")
        shutil.copyfile(self.history_csv, tmp / "history.csv")
        for path in [*tmp.iterdir(), tmp]:
            fsync_path(path)  # on disk before the rename makes the backup count
        backup = self.directory / f"epoch-{finished}"
        os.replace(tmp, backup)
        fsync_path(self.directory)
        if self.latest is not None:
            shutil.rmtree(self.latest, ignore_errors=True)
        self.latest = backup

    def history_rows(self) -> list[dict[str, float]]:
        """One row per epoch (core/history.py: the last one written wins, a torn line is
        skipped, a metric without a value is absent)."""
        return read_history(self.history_csv) if self.history_csv.is_file() else []

    def finished_epochs(self) -> int:
        """The epoch count of the newest backup: the one restored, then the last saved."""
        return int(self.latest.name[6:]) if self.latest is not None else 0

    def best_value(self, monitor: str) -> float | None:
        values = [row[monitor] for row in self.history_rows() if monitor in row]
        if not values:
            return None
        return max(values) if monitor.endswith("accuracy") else min(values)

    def finish(self) -> None:
        """Training is complete and saved: nothing left to resume."""
        shutil.rmtree(self.directory, ignore_errors=True)
