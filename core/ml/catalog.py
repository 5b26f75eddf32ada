"""Names and descriptions of the architectures, importable without loading Keras (forms, CLI)."""

from __future__ import annotations

ARCHITECTURE_DESCRIPTIONS: dict[str, str] = {
    "resnet-small": "Small residual CNN with batch normalisation: strided stem 32, "
    "stages 32/64/128, global average pooling, dropout.",
    "seed-cnn": "The founding CIFAR-10 network: 3 convolutions (32/64/64), 2 max-pools, "
    "Dense 64, Dense classes.",
}
DEFAULT_ARCHITECTURE = "resnet-small"
