"""Benchmark: ChannelHub's training path against a plain Keras script, then accuracy on digits.

    .venv/bin/python bench/train_throughput.py [--images 50000] [--epochs 3] [--rounds 3]

Both sides train the founding network (`seed-cnn`, batch 32, no augmentation, float32 on both
sides, validation every epoch) on the same synthetic 32x32 colour images; epoch 1 (tracing) is
not timed. Rounds alternate (ChannelHub, plain, ChannelHub, ...) so a load change on a shared
machine hits both; `ratio` is the median over rounds of each round's ChannelHub/plain ratio,
`best_ratio` the best ChannelHub speed over the best plain one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ml.architectures import DEFAULT_ARCHITECTURE  # noqa: E402
from core.ml.datasets import LabelledImages, Split, load_dataset, split_dataset  # noqa: E402
from core.ml.hparams import Hyperparameters  # noqa: E402
from core.ml.training import ProgressCallback, TrainConfig, train  # noqa: E402

BATCH_SIZE = 32  # the founding script's
NUM_CLASSES = 10


def synthetic_split(n_train: int, seed: int = 0) -> Split:
    """Random 32x32x3 uint8 images with 10 labels; validation and test sets of 512 and 256."""
    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "val": 512, "test": 256}
    parts = {
        name: LabelledImages(
            rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, NUM_CLASSES, size=n).astype(np.int64),
            tuple(str(i) for i in range(NUM_CLASSES)),
        )
        for name, n in sizes.items()
    }
    starts = np.cumsum([0, *sizes.values()])
    idx = [np.arange(starts[i], starts[i + 1]) for i in range(3)]
    return Split(parts["train"], parts["val"], parts["test"], *idx)


def baseline_images_per_s(split: Split, epochs: int) -> float:
    """The founding document's script: Sequential CNN, x/255 outside, compile, fit."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    train_x, val_x = split.train.x / 255.0, split.val.x / 255.0
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = ProgressCallback(epochs)  # times each epoch exactly as the worker does
    model.fit(
        train_x,
        split.train.y,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        validation_data=(val_x, split.val.y),
        callbacks=[timer],
        verbose=0,
    )
    seconds = [row["seconds"] for row in timer.rows]
    return split.train.num_samples * (epochs - 1) / sum(seconds[1:])


def channelhub_images_per_s(split: Split, epochs: int, workdir: Path) -> float:
    """The same network and data through core.ml.training.train (no augmentation, no stopping)."""
    keras.backend.clear_session()
    # The founding script's recipe: Adam at a constant rate, no smoothing or decay, float32.
    hp = Hyperparameters(
        epochs=epochs, batch_size=BATCH_SIZE, augmentation=False, early_stopping_patience=0,
        optimizer="adam", learning_rate=1e-3, schedule="constant", weight_decay=0.0,
        label_smoothing=0.0, precision="float32",
    )  # fmt: skip
    result = train(TrainConfig("seed-cnn", hp, workdir), split, report=lambda row: None)
    seconds = [row["seconds"] for row in result.history[1:]]
    return split.train.num_samples * (epochs - 1) / sum(seconds)


def digits_accuracy(architecture: str, workdir: Path) -> tuple[float, float]:
    """Test accuracy and training seconds on digits with the project's default hyperparameters."""
    keras.backend.clear_session()
    split = split_dataset(load_dataset("digits"), seed=0)
    result = train(TrainConfig(architecture, Hyperparameters(), workdir), split)
    return result.evaluation["accuracy"], result.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50_000, help="CIFAR-10's training size")
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 is warm-up, not timed")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 3)")
    parser.add_argument("--skip-digits", action="store_true", help="throughput only")
    args = parser.parse_args()
    if args.rounds < 3 or args.epochs < 2:
        parser.error("--rounds must be at least 3 and --epochs at least 2 (epoch 1 is not timed)")
    split = synthetic_split(args.images)
    ours: list[float] = []
    base: list[float] = []
    seed_acc = default_acc = None
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            ours.append(channelhub_images_per_s(split, args.epochs, Path(tmp) / f"t{round_no}"))
            base.append(baseline_images_per_s(split, args.epochs))
            print(f"round {round_no + 1}: channelhub {ours[-1]:.0f} img/s, baseline {base[-1]:.0f}")
        if not args.skip_digits:
            seed_acc, seed_s = digits_accuracy("seed-cnn", Path(tmp) / "seed")
            print(f"digits seed-cnn: test accuracy {seed_acc:.4f} in {seed_s:.1f}s")
            default_acc, default_s = digits_accuracy(DEFAULT_ARCHITECTURE, Path(tmp) / "default")
            print(f"digits {DEFAULT_ARCHITECTURE}: accuracy {default_acc:.4f} in {default_s:.1f}s")
    ratios = [a / b for a, b in zip(ours, base, strict=True)]
    summary = {
        "ratio": round(statistics.median(ratios), 4),
        "best_ratio": round(max(ours) / max(base), 4),
        "round_ratios": [round(r, 4) for r in ratios],
        "images_per_s": round(statistics.median(ours), 1),
        "baseline_images_per_s": round(statistics.median(base), 1),
        "images": args.images,
        "timed_epochs": args.epochs - 1,
        "seed_cnn_accuracy": seed_acc and round(seed_acc, 4),
        "default_accuracy": default_acc and round(default_acc, 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
