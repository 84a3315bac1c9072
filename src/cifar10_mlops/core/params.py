"""params.yaml: one validated schema, so a typo or a bad value fails before any work starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cifar10_mlops.core.errors import PipelineError, quote

# The committed file is ~4 KB; a params file is read whole, so its size is capped first.
MAX_PARAMS_BYTES = 1024 * 1024
MAX_NESTING = 32  # params.yaml has three levels; a preset or a list of ranges a few more


class _Strict(BaseModel):
    # Unknown keys are an error: a misspelt key must not be silently ignored. strict: no
    # coercion, so `epochs: "8"` or `augment: 1` is a wrong type, not quietly converted.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# numpy and TensorFlow take seeds in 0..2**32-1; outside, the run would fail with a traceback.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
_HEX_MD5 = r"^[0-9a-f]{32}$"
_HEX_SHA256 = r"^[0-9a-f]{64}$"


class SyntheticParams(_Strict):
    count: Annotated[int, Field(ge=20, le=1_000_000)] = 1500
    seed: Seed = 0


class KaggleParams(_Strict):
    """data.source: kaggle -- the competition files through opendatasets."""

    competition: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")] = "cifar-10"
    # Kaggle publishes no checksums; pin the files you expect (sha256sum train.7z) to refuse
    # anything else.
    train_7z_sha256: Annotated[str, Field(pattern=_HEX_SHA256)] | None = None
    labels_sha256: Annotated[str, Field(pattern=_HEX_SHA256)] | None = None
    timeout_s: Annotated[int, Field(ge=1, le=86_400)] = 3600


class Cifar10Params(_Strict):
    """data.source: cifar10 -- the official binary archive over HTTPS, MD5-checked."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$")] = (
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    )
    # The MD5 the CIFAR-10 page publishes for cifar-10-binary.tar.gz; change it only with url.
    md5: Annotated[str, Field(pattern=_HEX_MD5)] = "c32a1d4ab5d03f1284b67883e8d87530"
    timeout_s: Annotated[int, Field(ge=1, le=86_400)] = 1800


class DataParams(_Strict):
    source: Literal["synthetic", "kaggle", "cifar10", "local"] = "synthetic"
    path: str | None = None
    synthetic: SyntheticParams = SyntheticParams()
    kaggle: KaggleParams = KaggleParams()
    cifar10: Cifar10Params = Cifar10Params()


class SplitParams(_Strict):
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: Seed = 42
    # CIFAR-10 binary archive only: evaluate on its official 10,000-image test_batch.bin and
    # train on all 50,000 training images instead of the stratified split.
    official_test: bool = False


class CifarResNetParams(_Strict):
    """The compact CIFAR-style ResNet (He et al. 2016, section 4.2): 6n+2 layers."""

    depth: Annotated[int, Field(ge=8, le=1202)] = 20
    width: Annotated[int, Field(ge=4, le=256)] = 16  # filters of the first stage; x2, x4 after

    @field_validator("depth")
    @classmethod
    def _six_n_plus_two(cls, value: int) -> int:
        if (value - 2) % 6:
            raise ValueError("must be 6n+2 (8, 14, 20, 32, 44, 56, 110)")
        return value


class AirbenchParams(_Strict):
    """The airbench-style network (model/airbench.py): one width per conv group."""

    widths: Annotated[
        list[Annotated[int, Field(ge=4, le=2048)]], Field(min_length=1, max_length=5)
    ] = [64, 256, 256]
    # The whitening layer's bias learns during the first N epochs, then stays (its filters
    # stay as the training images set them); 0: the whole layer is fixed from the start.
    whiten_bias_epochs: Annotated[int, Field(ge=0, le=10_000)] = 0


class ModelParams(_Strict):
    backbone: Literal["resnet50", "vgg16", "cifar_resnet", "airbench"] = "resnet50"
    # none | imagenet | path to a weights file (.weights.h5 / .h5) for the backbone
    weights: str = "none"
    input_size: Annotated[int, Field(ge=32, le=512)] = 32
    head: Literal["gap_dense", "upsample_dense", "residual_sepconv"] = "gap_dense"
    freeze_backbone: bool = False
    dense_units: Annotated[int, Field(ge=1, le=8192)] = 256
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.3
    # Keras' ResNet50/VGG16 use 0.99: their moving statistics then need hundreds of steps to
    # reflect the data, and short schedules evaluate on stale statistics. 0.9 tracks faster.
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    cifar_resnet: CifarResNetParams = CifarResNetParams()
    airbench: AirbenchParams = AirbenchParams()

    @field_validator("weights")
    @classmethod
    def _weights_choice(cls, value: str) -> str:
        if value in ("none", "imagenet") or value.endswith(".h5"):
            return value
        raise ValueError("must be 'none', 'imagenet' or a path to a .weights.h5/.h5 file")


class TrainParams(_Strict):
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 5
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)] = 0.003
    # cosine: linear warmup, then cosine decay to zero over the remaining epochs;
    # plateau: halve on a stalled validation metric; constant: as given.
    lr_schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_epochs: Annotated[int, Field(ge=0, le=1000)] = 1
    # Decoupled weight decay (Keras 3 optimizers), and label smoothing of the targets.
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    # On the fly in the numpy input (training/inputs.py), training only: random crop after
    # `crop_padding` pixels of reflection padding, and a horizontal flip.
    augment: bool = True
    crop_padding: Annotated[int, Field(ge=0, le=16)] = 2
    # random: each image flipped with probability 1/2 every epoch; alternate: each image
    # flipped on every other epoch (a random half on the first), so consecutive epochs show
    # both sides of every photo.
    flip: Literal["random", "alternate"] = "random"
    # trivial: after the crop and flip, TrivialAugment gives each image one random operation
    # (shear, translate, rotate, colour, contrast, posterize, ...: training/augment_policy.py).
    augment_policy: Literal["none", "trivial"] = "none"
    # The learning rate of batch-norm shifts (beta) is this multiple of the others'.
    norm_bias_lr_scale: Annotated[float, Field(gt=0.0, le=1000.0)] = 1.0
    # Lookahead: every N steps the weights move to a slow average of themselves (0: off).
    lookahead_every: Annotated[int, Field(ge=0, le=10_000)] = 0
    validation_split: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    # The epoch kept (models/model.keras) is the best by this validation metric.
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    # null: train all epochs (the schedule decides); a number: stop after that many epochs
    # without improvement of `monitor`.
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = None
    reduce_lr_patience: Annotated[int, Field(ge=0)] = 2  # lr_schedule: plateau only
    seed: Seed = 42
    # Seeds plus TensorFlow's op determinism: the same params give the same metrics.
    deterministic: bool = True
    # auto: mixed float16 and XLA on a GPU, float32 without XLA on a CPU (where neither helps).
    mixed_precision: Literal["auto", "off", "float16", "bfloat16"] = "auto"
    jit_compile: Literal["auto", "on", "off"] = "auto"
    # The Keras backend that trains (set before Keras is imported): tensorflow (the fastest on
    # a CPU, docs/training.md) or jax (GPUs, several devices, several machines).
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    # keras.distribution.DataParallel (train.backend jax): mirrored over this machine's devices
    # (GPUs); multi_worker over several processes (docs/distributed.md).
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    # multi_worker: how long the chief waits for every worker to join, and for a silent one
    # before training stops with an error (no hang).
    cluster_timeout_s: Annotated[int, Field(ge=5, le=86_400)] = 300

    @field_validator("augment_policy")
    @classmethod
    def _policy_needs_augment(cls, value: str, info: ValidationInfo) -> str:
        # The policy runs after the crop and flip: with augment off it would silently do nothing.
        if value != "none" and info.data.get("augment") is False:
            raise ValueError(
                f"'{value}' needs train.augment: true; set it, or augment_policy: none"
            )
        return value


class EvaluateParams(_Strict):
    misclassified_grid: Annotated[int, Field(ge=0, le=400)] = 36
    # Test-time augmentation: average the predictions over horizontal flips and 1-pixel
    # translations; used alike by evaluate, `cifar10-mlops predict` and the logged model.
    tta: bool = False


# A registered-model name that stays one path segment of `models:/<name>@champion`.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class MlflowParams(_Strict):
    # MLflow's SQL stores keep 256 characters of a name; longer fails inside MLflow.
    experiment: Annotated[str, Field(min_length=1, max_length=256)] = "cifar10-mlops"
    # evaluate registers each model as a new version of this registered model; empty or null
    # switches registration off.
    registered_model: str | None = "cifar10-resnet50"
    # CPU, memory, disk and network use while train runs (MLflow's system/* metrics, through
    # psutil when it is installed): one sample every system_metrics_interval_s seconds.
    system_metrics: bool = True
    system_metrics_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 10.0

    @field_validator("registered_model")
    @classmethod
    def _registered_model_name(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if _MODEL_NAME.match(value):
            return value
        raise ValueError(
            "must be up to 100 letters, digits, '.', '_' or '-' starting with a letter or digit, "
            "or empty to switch registration off"
        )


# Every default equals params.yaml's value (tests/repo/test_one_source_of_truth.py): deleting a
# key from params.yaml does not change the run.
class Params(_Strict):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()


def _describe(error: Mapping[str, Any], source: Path) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{source}: unknown key {quote(key)}; remove it or fix its spelling"
    value = error.get("input")
    # quote: a value may be huge (a long string, a big list); only a short prefix is shown.
    return f"{source}: key {quote(key)} = {quote(value)}: {error['msg']}; fix the value"


def parse_params(raw: Any, source: Path) -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        # One line: the first problem; the rest come back after it is fixed.
        raise PipelineError(_describe(exc.errors()[0], source)) from None


def load_params(path: Path) -> Params:
    raw = read_params_yaml(path)
    if raw is None:  # an empty file would silently run the code defaults, not the project's
        raise PipelineError(
            f"{path}: empty; restore it (git checkout params.yaml) or write the sections you want"
        )
    return parse_params(raw, Path(path))


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases: `*name` could expand a few lines into billions of values
    ("billion laughs"), and params.yaml never needs them."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", mark
            )
        # A few thousand `[` would end in a RecursionError traceback (the composer recurses).
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_params_yaml(path: Path) -> Any:
    """A params file's YAML (None when empty), size-capped, UTF-8, without aliases."""
    path = Path(path)
    try:
        if not path.is_file():  # a FIFO would block the read
            if path.exists():
                raise PipelineError(f"{path}: not a regular file; params must be a YAML file")
            raise FileNotFoundError(path)
        with path.open("rb") as file:
            data = file.read(MAX_PARAMS_BYTES + 1)
    except FileNotFoundError:
        raise PipelineError(
            f"{path}: params file not found; run from the repository root"
        ) from None
    if len(data) > MAX_PARAMS_BYTES:
        raise PipelineError(
            f"{path}: larger than {MAX_PARAMS_BYTES} bytes; this is not a params file, restore "
            "it (git checkout params.yaml)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(
            f"{path}: byte {exc.start} is not UTF-8; save the file as UTF-8 text"
        ) from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        if problem and "aliases" in problem:
            raise PipelineError(f"{path}:{where}: {problem}; write the value out in full") from None
        if problem and problem.startswith("nested deeper"):
            raise PipelineError(
                f"{path}:{where}: {problem}; params.yaml needs a few levels at most"
            ) from None
        raise PipelineError(f"{path}:{where} is not valid YAML; fix the syntax") from None


def flatten(params: Params) -> dict[str, Any]:
    """{'train.epochs': 8, ...}: the form MLflow logs and `dvc exp run -S` uses."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            flat[prefix] = node

    walk("", params.model_dump())
    return flat
