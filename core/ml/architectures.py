"""Model architectures by name; every model takes raw 0..255 images and preprocesses them itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from core.ml.catalog import (  # noqa: F401 - DEFAULT_ARCHITECTURE is re-exported
    ARCHITECTURE_NAMES,
    ARCHITECTURE_SPECS,
    DEFAULT_ARCHITECTURE,
    require_same_names,
)

# A body maps the preprocessed 0..1 image tensor to class probabilities.
Body = Callable[[keras.KerasTensor, int], keras.KerasTensor]


@dataclass(frozen=True)
class Architecture:
    """A named network: what it is, the image size it works at, the function building its body."""

    name: str
    description: str
    input_size: tuple[int, int]
    builder: Body


def _classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # float32 output keeps softmax and the loss stable under the mixed_float16 policy.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def _seed_cnn(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return _classifier(x, num_classes)


# Small datasets give few steps per epoch; the default 0.99 leaves the moving statistics
# far from the data's for many epochs, so validation accuracy lags training badly.
BN_MOMENTUM = 0.9


def _conv_bn(x: keras.KerasTensor, filters: int, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)


def _residual_block(x: keras.KerasTensor, filters: int, strides: int) -> keras.KerasTensor:
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
    y = layers.Activation("relu")(_conv_bn(x, filters, strides))
    y = _conv_bn(y, filters)
    return layers.Activation("relu")(layers.Add()([shortcut, y]))


def _resnet_small(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # A strided stem halves the 32x32 input: a quarter of the compute, enough for small images.
    x = layers.Activation("relu")(_conv_bn(x, 32, strides=2))
    for filters, strides in ((32, 1), (64, 2), (128, 2)):
        x = _residual_block(x, filters, strides)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    return _classifier(x, num_classes)


def _conv_pool_bn(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    # Pooling before normalisation: the statistics and the activation work on a quarter the size.
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Activation("relu")(x)


def _residual_pair(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    y = layers.Activation("relu")(_conv_bn(x, filters))
    y = layers.Activation("relu")(_conv_bn(y, filters))
    return layers.Add()([x, y])


def _resnet_fast(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # ResNet-9's shape at a quarter of its width: about 24 M multiply-adds an image, so two
    # CPU cores train an epoch of CIFAR-10 in well under a minute; most of the accuracy of the
    # full width comes from the recipe (schedule, flips, label smoothing), not the width.
    x = layers.Activation("relu")(_conv_bn(x, 16))
    x = _residual_pair(_conv_pool_bn(x, 32), 32)
    x = _conv_pool_bn(x, 64)
    x = _residual_pair(_conv_pool_bn(x, 128), 128)
    x = layers.GlobalMaxPooling2D()(x)
    return _classifier(x, num_classes)


# The body of each network the catalog lists; importing fails if the two disagree.
BUILDERS: dict[str, Body] = {
    "seed-cnn": _seed_cnn,
    "resnet-small": _resnet_small,
    "resnet-fast": _resnet_fast,
}
require_same_names("architecture builders", ARCHITECTURE_NAMES, set(BUILDERS))

ARCHITECTURES: dict[str, Architecture] = {
    name: Architecture(name, spec.description, spec.input_size, BUILDERS[name])
    for name, spec in ARCHITECTURE_SPECS.items()
}


def _augmentation(seed: int, flip_safe: bool) -> list[layers.Layer]:
    """The layers `core.ml.catalog.augmentation_layers` describes; float32 whatever the policy
    (image transforms have no bfloat16 kernels on every backend)."""
    if flip_safe:
        return [
            layers.RandomFlip("horizontal", seed=seed, name="aug_flip", dtype="float32"),
            layers.RandomTranslation(
                0.125, 0.125, fill_mode="reflect", interpolation="nearest", seed=seed + 1,
                name="aug_translate", dtype="float32",
            ),
        ]  # fmt: skip
    # No flips: a mirrored digit or letter is a different (or no) class.
    return [
        layers.RandomTranslation(
            0.1, 0.1, fill_mode="constant", seed=seed, name="aug_translate", dtype="float32"
        ),
        layers.RandomRotation(
            0.04, fill_mode="constant", seed=seed + 1, name="aug_rotate", dtype="float32"
        ),
        layers.RandomZoom(
            0.1, fill_mode="constant", seed=seed + 2, name="aug_zoom", dtype="float32"
        ),
    ]


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    augmentation: bool,
    seed: int = 0,
    flip_safe: bool = False,
) -> keras.Model:
    """Build architecture `name` for raw uint8-valued images of `input_shape` (H, W, C).

    `flip_safe` (a mirrored image keeps its class) chooses the augmentation: see
    `core.ml.catalog.augmentation_layers`. Images already at the architecture's size are not
    resized (a bilinear resize to the same size still costs a pass over every image).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r} (allowed: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[name]
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if tuple(input_shape[:2]) != arch.input_size:
        x = layers.Resizing(*arch.input_size, interpolation="bilinear", name="resize")(x)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    if augmentation:
        for layer in _augmentation(seed, flip_safe):
            x = layer(x)
    outputs = arch.builder(x, num_classes)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))
