"""The names of what can be trained on and with, importable without Keras or numpy (forms, CLI).

These are the only lists of architecture names and dataset sources: `core.ml.architectures` and
`core.ml.datasets` refuse to import if their builders or loaders do not match them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchitectureSpec:
    """A named network as forms show it: what it is and the image size it works at."""

    name: str
    description: str
    input_size: tuple[int, int]


ARCHITECTURE_SPECS: dict[str, ArchitectureSpec] = {
    spec.name: spec
    for spec in (
        ArchitectureSpec(
            "resnet-fast",
            "Fast residual CNN for natural images (in the spirit of the fast CIFAR-10 recipes): "
            "stem 16, stages 32/64/128 each a convolution and max-pool, residual pairs after the "
            "first and last, global max pooling.",
            (32, 32),
        ),
        ArchitectureSpec(
            "resnet-small",
            "Small residual CNN with batch normalisation: strided stem 32, "
            "stages 32/64/128, global average pooling, dropout.",
            (32, 32),
        ),
        ArchitectureSpec(
            "seed-cnn",
            "The founding CIFAR-10 network: 3 convolutions (32/64/64), 2 max-pools, "
            "Dense 64, Dense classes.",
            (32, 32),
        ),
    )
}
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(ARCHITECTURE_SPECS)
ARCHITECTURE_DESCRIPTIONS: dict[str, str] = {
    name: spec.description for name, spec in ARCHITECTURE_SPECS.items()
}
DEFAULT_ARCHITECTURE = "resnet-fast"

# Whether a mirrored image keeps its class, by source when a dataset is registered (a folder or
# an .npz file says nothing, so flips stay off unless the manager turns them on): a mirrored
# photograph (cifar10) or garment (fashion_mnist) is the same class; a mirrored digit is not.
KERAS_FLIP_SAFE: dict[str, bool] = {"cifar10": True, "fashion_mnist": True, "mnist": False}


def default_flip_safe(source: str, location: str | None = None) -> bool:
    """Whether mirroring keeps the class, as far as the source alone tells (False if unsure)."""
    return source == "keras" and KERAS_FLIP_SAFE.get(location or "", False)


def augmentation_layers(flip_safe: bool) -> tuple[str, ...]:
    """What the default augmentation applies to a dataset, in words (forms show this).

    Mirror-safe data (photographs) gets horizontal flips and translations of up to 4 pixels in
    32, the fast CIFAR-10 recipes' pair; other data (digits, letters) gets no flip but small
    shifts, rotations and zooms, as handwriting varies.
    """
    if flip_safe:
        return ("horizontal flip", "translation ±12.5 % (reflected edges)")
    return ("translation ±10 %", "rotation ±14°", "zoom ±10 %")


# Where a registered dataset's images come from (see core.ml.datasets.load_dataset).
DATASET_SOURCES: tuple[str, ...] = ("digits", "folder", "npz", "keras")


def require_same_names(what: str, listed: tuple[str, ...], implemented: set[str]) -> None:
    """Refuse (at import) an implementation whose names differ from the catalog's list."""
    missing, extra = set(listed) - implemented, implemented - set(listed)
    if missing or extra:
        raise RuntimeError(
            f"{what} out of step with core.ml.catalog: "
            f"listed but not implemented {sorted(missing)}, implemented but not listed "
            f"{sorted(extra)}"
        )
