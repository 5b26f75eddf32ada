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
DEFAULT_ARCHITECTURE = "resnet-small"

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
