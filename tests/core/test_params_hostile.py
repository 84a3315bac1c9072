"""Hostile params.yaml (issue 27, item 5): out-of-range seeds and deep nesting are one-line
errors naming the file and key, never a traceback later in the run."""

from __future__ import annotations

import pytest

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import load_params


@pytest.mark.parametrize("section", ["data.synthetic", "split", "train"])
@pytest.mark.parametrize("seed", [-1, 2**32, 10**30])
def test_a_seed_numpy_cannot_take_is_refused_by_the_schema(tmp_path, section, seed):
    # numpy's and TensorFlow's seeds are 0..2**32-1: outside, the run failed with a traceback.
    path = tmp_path / "params.yaml"
    *parents, leaf = f"{section}.seed".split(".")
    text = "".join(f"{'  ' * depth}{name}:\n" for depth, name in enumerate(parents))
    path.write_text(text + f"{'  ' * len(parents)}{leaf}: {seed}\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"key '{section}.seed' = {seed}: .*; fix the value"):
        load_params(path)


def test_the_seed_range_edges_are_accepted(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  seed: {2**32 - 1}\nsplit:\n  seed: 0\n", encoding="utf-8")
    assert load_params(path).train.seed == 2**32 - 1


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
def test_a_deeply_nested_params_file_is_one_line_not_a_recursion_error(tmp_path, opening, closing):
    path = tmp_path / "params.yaml"
    path.write_text("train: " + opening * 5000 + "1" + closing * 5000 + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as error:
        load_params(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line 1: nested deeper than ")
    assert message.endswith("; params.yaml needs a few levels at most")
