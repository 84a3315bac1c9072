"""params.yaml validation: every key checked, one-line errors that name the key path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cifar10_mlops.core.errors import PipelineError
from cifar10_mlops.core.params import Params, flatten, load_params, parse_params
from tests.helpers import REPO

REPO_PARAMS = REPO / "params.yaml"


def write_params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_dict(tmp_path: Path, data: dict) -> Params:
    return load_params(write_params(tmp_path, yaml.safe_dump(data)))


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_params_file_is_refused_not_run_with_the_code_defaults(tmp_path, text):
    # The code defaults differ from the committed params.yaml (synthetic.count among others).
    path = write_params(tmp_path, text)
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert str(error.value) == (
        f"{path}: empty; restore it (git checkout params.yaml) or write the sections you want"
    )


def test_parse_params_none_is_defaults():
    assert parse_params(None, Path("p.yaml")) == Params()


def test_repo_params_yaml_validates():
    assert REPO_PARAMS.is_file(), REPO_PARAMS
    params = load_params(REPO_PARAMS)
    # Every key the file sets is a schema key: nothing was silently dropped.
    raw = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    flat = flatten(params)

    def keys(prefix, node):
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                yield from keys(dotted, value)
            else:
                yield dotted, value

    for dotted, value in keys("", raw):
        assert dotted in flat
        assert flat[dotted] == value


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"epoch": 3}}, "train.epoch"),
        ({"data": {"synthetic": {"cuont": 100}}}, "data.synthetic.cuont"),
        ({"trian": {"epochs": 3}}, "trian"),
    ],
)
def test_unknown_key_names_the_key_path(tmp_path, data, key):
    with pytest.raises(PipelineError) as info:
        load_dict(tmp_path, data)
    message = str(info.value)
    assert f"'{key}'" in message
    assert "unknown key" in message
    assert str(tmp_path / "params.yaml") in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "data, key",
    [
        ({"train": {"epochs": "many"}}, "train.epochs"),
        ({"train": {"batch_size": 3.5}}, "train.batch_size"),
        ({"model": {"freeze_backbone": "perhaps"}}, "model.freeze_backbone"),
        ({"train": {"optimizer": "adagrad"}}, "train.optimizer"),
        ({"data": {"source": "s3"}}, "data.source"),
        ({"train": "fast"}, "train"),
        ({"split": {"test_size": [0.2]}}, "split.test_size"),
    ],
)
def test_wrong_type_or_choice_names_the_key(tmp_path, data, key):
    with pytest.raises(PipelineError) as info:
        load_dict(tmp_path, data)
    assert f"key '{key}'" in str(info.value)


@pytest.mark.parametrize(
    "data, key, value",
    [
        ({"split": {"test_size": 1.5}}, "split.test_size", "1.5"),
        ({"split": {"test_size": 0.0}}, "split.test_size", "0.0"),
        ({"split": {"test_size": 1.0}}, "split.test_size", "1.0"),
        ({"train": {"epochs": 0}}, "train.epochs", "0"),
        ({"train": {"batch_size": -1}}, "train.batch_size", "-1"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate", "0"),
        ({"train": {"validation_split": 1.0}}, "train.validation_split", "1.0"),
        ({"model": {"dropout": 1.0}}, "model.dropout", "1.0"),
        ({"model": {"input_size": 16}}, "model.input_size", "16"),
        ({"data": {"synthetic": {"count": 5}}}, "data.synthetic.count", "5"),
        ({"evaluate": {"misclassified_grid": -1}}, "evaluate.misclassified_grid", "-1"),
        ({"mlflow": {"experiment": ""}}, "mlflow.experiment", "''"),
    ],
)
def test_out_of_range_values_name_key_and_value(tmp_path, data, key, value):
    with pytest.raises(PipelineError) as info:
        load_dict(tmp_path, data)
    message = str(info.value)
    assert f"key '{key}' = {value}" in message
    assert "fix the value" in message


def test_in_range_edges_are_accepted(tmp_path):
    params = load_dict(
        tmp_path,
        {
            "split": {"test_size": 0.5},
            "train": {"epochs": 1, "batch_size": 1, "validation_split": 0.0},
            "data": {"synthetic": {"count": 20}},
        },
    )
    assert params.train.epochs == 1
    assert params.train.batch_size == 1


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write_params(tmp_path, "train:\n  epochs: 3\n bad_indent: [\n")
    with pytest.raises(PipelineError) as info:
        load_params(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(PipelineError, match="mapping"):
        load_params(write_params(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "params.yaml"
    with pytest.raises(PipelineError) as info:
        load_params(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


@pytest.mark.parametrize(
    "weights", ["none", "imagenet", "models/backbone.weights.h5", "/abs/path/w.h5"]
)
def test_model_weights_accepted(tmp_path, weights):
    assert load_dict(tmp_path, {"model": {"weights": weights}}).model.weights == weights


@pytest.mark.parametrize("weights", ["None", "random", "backbone.keras", "w.h5.bak", ""])
def test_model_weights_rejected(tmp_path, weights):
    with pytest.raises(PipelineError) as info:
        load_dict(tmp_path, {"model": {"weights": weights}})
    assert "key 'model.weights'" in str(info.value)


def test_params_are_frozen():
    params = Params()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError on a frozen model
        params.train.epochs = 3  # type: ignore[misc]


def test_flatten_gives_dotted_keys():
    flat = flatten(Params())
    assert flat["train.epochs"] == Params().train.epochs
    assert flat["data.synthetic.count"] == 1500
    assert flat["data.path"] is None
    assert flat["model.weights"] == "none"
    assert "data.synthetic" not in flat  # only leaves
    assert all(not isinstance(value, dict) for value in flat.values())
    sections = {key.split(".")[0] for key in flat}
    assert sections == {"data", "split", "model", "train", "evaluate", "mlflow"}
    # Leaves only, each reached by exactly one dotted path.
    assert len(flat) == len(set(flat))


# --- hostile params files (issue 15) ------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """Each level is nine aliases of the one before: 9**levels strings from ~1 KB of YAML."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        items = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{items}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded_or_quoted(tmp_path):
    # The bomb sits under an unknown key, the alias under a real one: both would be quoted.
    bomb = "".join(f"  {line}\n" for line in billion_laughs().splitlines())
    path = write_params(tmp_path, f"x:\n{bomb}train:\n  epochs: *l8\n")
    with pytest.raises(PipelineError) as error:
        load_params(path)
    # The first alias (line 3, the second level) is refused: nothing is expanded.
    assert str(error.value) == (
        f"{path}: line 3: YAML aliases (*name) are not allowed; write the value out in full"
    )


def test_a_huge_value_is_quoted_as_a_short_prefix(tmp_path):
    path = write_params(tmp_path, "train:\n  epochs: " + "x" * 1_000_000 + "\n")
    with pytest.raises(PipelineError) as error:
        load_params(path)
    message = str(error.value)
    assert len(message) < 400
    assert message == (
        f"{path}: key 'train.epochs' = {'x' * 100!r}... (1000000 characters in all): Input "
        "should be a valid integer; fix the value"
    )


def test_a_huge_list_value_is_summarised_not_formatted(tmp_path):
    path = write_params(tmp_path, "train:\n  epochs: [" + ", ".join(["12345"] * 5_000) + "]\n")
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert len(str(error.value)) < 400
    assert "[12345, 12345, 12345, 12345, 12345, 12345, ...]" in str(error.value)


def test_a_params_file_above_the_size_cap_is_refused_unread(tmp_path):
    path = write_params(tmp_path, "# padding\n" * 200_000)  # 2 MB of comments
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert str(error.value) == (
        f"{path}: larger than 1048576 bytes; this is not a params file, restore it "
        "(git checkout params.yaml)"
    )


def test_a_params_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("train:\n  epochs: 3  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert str(error.value) == f"{path}: byte 25 is not UTF-8; save the file as UTF-8 text"


def test_a_fifo_as_params_file_is_refused_without_blocking(tmp_path):
    path = tmp_path / "params.yaml"
    os.mkfifo(path)
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert str(error.value) == f"{path}: not a regular file; params must be a YAML file"


def test_an_experiment_name_longer_than_mlflow_stores_is_refused(tmp_path):
    with pytest.raises(PipelineError) as error:
        load_dict(tmp_path, {"mlflow": {"experiment": "e" * 2000}})
    assert "key 'mlflow.experiment' = 'eeee" in str(error.value)
    assert str(error.value).endswith(
        "... (2000 characters in all): String should have at most 256 characters; fix the value"
    )
    assert load_dict(tmp_path, {"mlflow": {"experiment": "e" * 256}}).mlflow.experiment
