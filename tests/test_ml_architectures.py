"""Tests for core.ml.architectures: registry, preprocessing inside the model, seed-cnn structure."""

import keras
import numpy as np
import pytest

from core.ml.architectures import ARCHITECTURES, DEFAULT_ARCHITECTURE, build_model


def _body_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers after preprocessing (a resize where the size differs, then the rescale)."""
    names = [layer.name for layer in model.layers]
    return model.layers[names.index("rescale") + 1 :]


def test_registry_has_default() -> None:
    assert DEFAULT_ARCHITECTURE in ARCHITECTURES
    assert {"seed-cnn", "resnet-small"} <= set(ARCHITECTURES)
    for name, arch in ARCHITECTURES.items():
        assert arch.name == name and arch.input_size == (32, 32) and arch.description


def test_unknown_architecture_lists_names() -> None:
    with pytest.raises(ValueError, match="seed-cnn"):
        build_model("vgg-huge", (8, 8, 1), 10, augmentation=False)


def test_seed_cnn_matches_founding_network() -> None:
    model = build_model("seed-cnn", (32, 32, 3), 10, augmentation=False)
    # Images already 32x32 go straight to the rescale (no resize to the same size).
    assert [layer.name for layer in model.layers][1] == "rescale"
    body = _body_layers(model)
    kinds = [type(layer).__name__ for layer in body]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense",
    ]  # fmt: skip
    convs = [layer for layer in body if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    hidden, out = body[-2], body[-1]
    assert hidden.units == 64 and hidden.activation.__name__ == "relu"
    assert out.units == 10 and out.dtype_policy.name == "float32"
    # The founding network has 122,570 parameters on 32x32x3 inputs.
    assert model.count_params() == 122_570


def test_preprocessing_inside_model() -> None:
    model = build_model("resnet-small", (8, 8, 1), 4, augmentation=True, seed=1)
    names = [layer.name for layer in model.layers]
    assert names[1:3] == ["resize", "rescale"]
    assert {"aug_translate", "aug_rotate", "aug_zoom"} <= set(names)
    assert not any("flip" in type(layer).__name__.lower() for layer in model.layers)
    x = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 1)).astype("float32")
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Augmentation is off at inference: two calls agree exactly.
    np.testing.assert_array_equal(probs, keras.ops.convert_to_numpy(model(x, training=False)))


def test_mixed_precision_keeps_float32_output() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("resnet-small", (8, 8, 1), 3, augmentation=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.outputs[0].dtype == "float32"


def test_keras_free_catalog_names_every_architecture():
    from core.ml.catalog import ARCHITECTURE_DESCRIPTIONS
    from core.ml.catalog import DEFAULT_ARCHITECTURE as catalog_default

    assert set(ARCHITECTURE_DESCRIPTIONS) == set(ARCHITECTURES)
    assert catalog_default == DEFAULT_ARCHITECTURE
    for name, arch in ARCHITECTURES.items():
        assert arch.description == ARCHITECTURE_DESCRIPTIONS[name]


def test_builders_and_catalog_cannot_drift():
    from core.ml.architectures import BUILDERS
    from core.ml.catalog import ARCHITECTURE_NAMES, require_same_names

    assert set(BUILDERS) == set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)
    with pytest.raises(RuntimeError, match=r"listed but not implemented \['seed-cnn'\]"):
        require_same_names(
            "architecture builders", ARCHITECTURE_NAMES, set(BUILDERS) - {"seed-cnn"}
        )
    with pytest.raises(RuntimeError, match=r"implemented but not listed \['vgg'\]"):
        require_same_names("architecture builders", ARCHITECTURE_NAMES, {*BUILDERS, "vgg"})
