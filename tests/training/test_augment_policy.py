"""TrivialAugment in the numpy input (`train.augment_policy: trivial`): each operation does
what its name says (PIL's ImageOps / ImageEnhance as the reference where PIL has one), every
image gets exactly one, the draws are reproducible, and the default input is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from cifar10_mlops.core.params import Params
from cifar10_mlops.data.arrays import LabelledImages
from cifar10_mlops.training import augment_policy
from cifar10_mlops.training.augment_policy import FILL, OPERATIONS, trivial_augment
from cifar10_mlops.training.inputs import ImageBatches


def _photos(count: int = 6, seed: int = 0) -> np.ndarray:
    """Smooth, photo-like uint8 images (gradients plus noise), not flat noise: the colour
    operations then have histograms and edges to work on."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:32, 0:32]
    base = np.stack([xs * 6, ys * 5, (xs + ys) * 3], axis=-1)[None].astype(np.float64)
    noisy = base + rng.normal(0, 20, (count, 32, 32, 3)) + rng.uniform(0, 60, (count, 1, 1, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _ones(count: int) -> np.ndarray:
    return np.ones(count)


@pytest.mark.parametrize(
    "operation",
    [
        augment_policy.brightness,
        augment_policy.color,
        augment_policy.contrast,
        augment_policy.sharpness,
        augment_policy.posterize,
        augment_policy.solarize,
        augment_policy.shear_x,
        augment_policy.shear_y,
        augment_policy.translate_x,
        augment_policy.translate_y,
        augment_policy.rotate,
    ],
    ids=lambda op: op.__name__,
)
def test_strength_zero_leaves_the_image_as_it_is(operation):
    images = _photos()
    out = operation(images, np.zeros(len(images)), _ones(len(images)))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize(
    ("operation", "enhancer"),
    [
        (augment_policy.brightness, ImageEnhance.Brightness),
        (augment_policy.color, ImageEnhance.Color),
        (augment_policy.contrast, ImageEnhance.Contrast),
        (augment_policy.sharpness, ImageEnhance.Sharpness),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_colour_operations_match_pil_image_enhance(operation, enhancer, sign):
    images = _photos()
    strength = np.linspace(0.2, 1.0, len(images))
    out = operation(images, strength, np.full(len(images), sign))
    for image, result, level in zip(images, out, strength, strict=True):
        factor = 1.0 + sign * level * augment_policy.MAX_ENHANCE
        expected = np.asarray(enhancer(Image.fromarray(image)).enhance(factor))
        # PIL rounds in integer arithmetic (and its grayscale and mean are integers): a level
        # of 1-2 apart at most, never a different picture.
        difference = np.abs(result.astype(int) - expected.astype(int))
        assert difference.max() <= 2, operation.__name__
        assert difference.mean() < 0.6, operation.__name__


def test_equalize_and_autocontrast_match_pil_image_ops():
    images = _photos()
    equalized = augment_policy.equalize(images, _ones(6), _ones(6))
    stretched = augment_policy.autocontrast(images, _ones(6), _ones(6))
    for image, eq, ac in zip(images, equalized, stretched, strict=True):
        channels = [Image.fromarray(image[..., c]) for c in range(3)]
        expected_eq = np.stack([np.asarray(ImageOps.equalize(ch)) for ch in channels], axis=-1)
        expected_ac = np.stack([np.asarray(ImageOps.autocontrast(ch)) for ch in channels], -1)
        np.testing.assert_array_equal(eq, expected_eq)
        assert np.abs(ac.astype(int) - expected_ac.astype(int)).max() <= 1


def test_posterize_and_solarize_at_full_strength():
    images = _photos()
    np.testing.assert_array_equal(
        augment_policy.posterize(images, _ones(6), _ones(6)), images & 0xF0
    )
    np.testing.assert_array_equal(augment_policy.solarize(images, _ones(6), _ones(6)), 255 - images)


def test_translate_moves_every_pixel_by_the_drawn_shift_and_fills_gray():
    images = _photos(2)
    shift = round(augment_policy.MAX_TRANSLATE * 32)  # full strength: 10 px of 32 (0.3 x 32 = 9.6)
    out = augment_policy.translate_x(images, _ones(2), np.array([1.0, -1.0]))
    # Sign +1 samples from the right (the picture moves left), -1 from the left.
    np.testing.assert_array_equal(out[0, :, : 32 - shift], images[0, :, shift:])
    assert (out[0, :, 32 - shift :] == FILL).all()
    np.testing.assert_array_equal(out[1, :, shift:], images[1, :, : 32 - shift])
    assert (out[1, :, :shift] == FILL).all()


def test_rotate_by_its_full_angle_samples_the_rotated_position_and_fills_the_corners():
    images = _photos(1)
    out = augment_policy.rotate(images, _ones(1), _ones(1))
    assert (out[0, 0, 0] == FILL).all() and (out[0, -1, -1] == FILL).all()  # corners leave
    # Each output pixel comes from its position rotated by the angle about the centre.
    angle = np.deg2rad(augment_policy.MAX_ROTATE_DEGREES)
    row, column = 16, 24  # (x, y) from the centre = (8.5, 0.5)
    x, y = column - 15.5, row - 15.5
    sx = np.rint(np.cos(angle) * x - np.sin(angle) * y + 15.5).astype(int)
    sy = np.rint(np.sin(angle) * x + np.cos(angle) * y + 15.5).astype(int)
    np.testing.assert_array_equal(out[0, row, column], images[0, sy, sx])
    assert (sy, sx) != (row, column)


def test_every_image_gets_one_operation_reproducibly():
    images = _photos(512, seed=3)
    first = trivial_augment(images, np.random.default_rng([7, 0, 0]))
    again = trivial_augment(images, np.random.default_rng([7, 0, 0]))
    other = trivial_augment(images, np.random.default_rng([7, 0, 1]))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == images.shape and first.dtype == np.uint8
    # identity is one operation of 14 (a few others at a low strength change nothing either).
    unchanged = np.mean([np.array_equal(a, b) for a, b in zip(first, images, strict=True)])
    assert 1 / len(OPERATIONS) * 0.5 < unchanged < 0.3
    np.testing.assert_array_equal(images, _photos(512, seed=3))  # the input is not touched


def _data(count: int = 40) -> LabelledImages:
    return LabelledImages(
        images=_photos(count), labels=np.arange(count) % 10, ids=np.arange(1, count + 1)
    )


def test_the_policy_changes_batches_only_when_switched_on_and_augmenting():
    data = _data()
    plain = ImageBatches(data, 16, shuffle_seed=5, augment=True)
    trivial = ImageBatches(data, 16, shuffle_seed=5, augment=True, policy="trivial")
    off = ImageBatches(data, 16, shuffle_seed=5, augment=False, policy="trivial")
    for batch in range(len(plain)):
        plain_images, plain_labels = plain[batch]
        trivial_images, trivial_labels = trivial[batch]
        np.testing.assert_array_equal(plain_labels, trivial_labels)  # same order, same images
        assert not np.array_equal(plain_images, trivial_images)
        np.testing.assert_array_equal(off[batch][0], data.images[off.order[batch * 16 :][:16]])
    # The same (seed, epoch, batch) gives the same batch: a resumed run sees what it would have.
    again = ImageBatches(data, 16, shuffle_seed=5, augment=True, policy="trivial")
    trivial.on_epoch_end()
    again.start_at_epoch(1)
    np.testing.assert_array_equal(trivial[1][0], again[1][0])


def test_the_params_key_takes_none_or_trivial_only():
    assert Params().train.augment_policy == "none"
    assert Params.model_validate({"train": {"augment_policy": "trivial"}}).train.augment_policy
    with pytest.raises(ValueError, match="augment_policy"):
        Params.model_validate({"train": {"augment_policy": "randaugment"}})
    with pytest.raises(ValueError, match="needs train.augment: true"):
        Params.model_validate({"train": {"augment": False, "augment_policy": "trivial"}})


def test_a_policy_with_augmentation_off_is_a_one_line_params_error(tmp_path):
    from cifar10_mlops.core.errors import PipelineError
    from cifar10_mlops.core.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  augment: false\n  augment_policy: trivial\n")
    with pytest.raises(PipelineError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "train.augment_policy" in message and "needs train.augment: true" in message
    assert "\n" not in message


def test_train_model_feeds_the_policy_to_training(tmp_path):
    """The params key reaches the input train_model builds: from one seed, the policy on ends
    on other weights than off, and on twice ends on the same ones."""
    from cifar10_mlops.training.fit import train_model

    def final_weights(policy: str, run: str) -> list[np.ndarray]:
        params = Params.model_validate(
            {
                "model": {
                    "backbone": "airbench",
                    "dropout": 0.0,
                    "airbench": {"widths": [8, 8, 8]},
                },
                "train": {
                    "epochs": 1,
                    "batch_size": 20,
                    "validation_split": 0.0,
                    "augment_policy": policy,
                },
            }
        )
        out = tmp_path / run
        outcome = train_model(
            params, _data(60), out / "m.keras", out / "h.csv", out / "state", verbose=0
        )
        return outcome.model.get_weights()

    trivial, trivial_again, plain = (
        final_weights("trivial", "a"),
        final_weights("trivial", "b"),
        final_weights("none", "c"),
    )
    assert all(np.array_equal(x, y) for x, y in zip(trivial, trivial_again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(trivial, plain, strict=True))
