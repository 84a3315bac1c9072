"""The seeded, stratified train/test split (the split sklearn's train_test_split makes)."""

from __future__ import annotations

import numpy as np

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.data.arrays import LabelledImages, subset


def stratified_split(
    data: LabelledImages, test_size: float, seed: int, key: str = "split.test_size"
) -> tuple[LabelledImages, LabelledImages]:
    """Seeded, stratified split: each class keeps its share in both halves."""
    train_index, test_index = split_indices(data, test_size, seed, key)
    return subset(data, train_index), subset(data, test_index)


def split_indices(
    data: LabelledImages, test_size: float, seed: int, key: str = "split.test_size"
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `data` in the train and the test half of stratified_split, each sorted."""
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    present = np.flatnonzero(counts)
    smallest = int(present[counts[present].argmin()])
    n_test = int(np.ceil(test_size * len(data.labels)))
    n_train = len(data.labels) - n_test
    # A stratified split needs two images per class and at least one per class on each side.
    if counts[smallest] < 2 or min(n_test, n_train) < len(present):
        raise PipelineError(
            f"{key}={test_size}: class '{data.class_names[smallest]}' has "
            f"{counts[smallest]} image(s) of {len(data.labels)}, too few for a stratified split; "
            f"add images or change {key}"
        )
    return _stratified_indices(data.labels, n_train, n_test, seed)


def _stratified_indices(
    labels: np.ndarray, n_train: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows that sklearn's train_test_split(np.arange(len(labels)), test_size=n_test,
    random_state=seed, stratify=labels) puts in train and in test, each sorted.

    StratifiedShuffleSplit._iter_indices (scikit-learn 1.9, BSD-3-Clause) step for step: the
    same RandomState draws in the same order, so the split is the one sklearn has always made
    here. Not imported because `sklearn.model_selection` alone costs ~130 MiB of RSS, next to
    the 146 MiB of pixels. tests/data/test_split_and_arrays.py compares the two on many inputs.
    sklearn's last step, a shuffle of each half, is left out: both halves are sorted anyway.
    """
    rng = np.random.RandomState(seed)
    _, class_of_row, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    # The rows of each class, in row order.
    class_rows = np.split(np.argsort(class_of_row, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for i in range(len(class_counts)):
        shuffled = class_rows[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.append(shuffled[: n_i[i]])
        test.append(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _approximate_mode(
    class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState
) -> np.ndarray:
    """sklearn.utils.extmath._approximate_mode (scikit-learn 1.9, BSD-3-Clause), unchanged:
    how many of `n_draws` each class gets, proportional to `class_counts`; the rounding
    remainders go to the largest fractions, ties broken by `rng`."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        values = np.sort(np.unique(remainder))[::-1]
        for value in values:
            (inds,) = np.where(remainder == value)
            # Drawn even when every tie is taken: the draw moves rng on, as in sklearn.
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
