"""Benchmark: ChannelHub's training path against a plain Keras script, then accuracy on digits."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ml.architectures import DEFAULT_ARCHITECTURE  # noqa: E402
from core.ml.datasets import LabelledImages, Split, load_dataset, split_dataset  # noqa: E402
from core.ml.hparams import Hyperparameters  # noqa: E402
from core.ml.training import TrainConfig, train  # noqa: E402

BATCH_SIZE = 64
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


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, measured exactly as ChannelHub's ProgressCallback measures it."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


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
    timer = EpochTimer()
    model.fit(
        train_x,
        split.train.y,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        validation_data=(val_x, split.val.y),
        callbacks=[timer],
        verbose=0,
    )
    return split.train.num_samples * (epochs - 1) / sum(timer.seconds[1:])


def channelhub_images_per_s(split: Split, epochs: int, workdir: Path) -> float:
    """The same network and data through core.ml.training.train (no augmentation, no stopping)."""
    keras.backend.clear_session()
    hp = Hyperparameters(
        epochs=epochs, batch_size=BATCH_SIZE, augmentation=False, early_stopping_patience=0
    )
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
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 is warm-up, not timed")
    parser.add_argument("--rounds", type=int, default=2, help="ABAB repetitions")
    args = parser.parse_args()
    split = synthetic_split(args.images)
    ours: list[float] = []
    base: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            ours.append(channelhub_images_per_s(split, args.epochs, Path(tmp) / f"t{round_no}"))
            base.append(baseline_images_per_s(split, args.epochs))
            print(f"round {round_no + 1}: channelhub {ours[-1]:.0f} img/s, baseline {base[-1]:.0f}")
        seed_acc, seed_s = digits_accuracy("seed-cnn", Path(tmp) / "seed")
        print(f"digits seed-cnn: test accuracy {seed_acc:.4f} in {seed_s:.1f}s")
        default_acc, default_s = digits_accuracy(DEFAULT_ARCHITECTURE, Path(tmp) / "default")
        print(f"digits {DEFAULT_ARCHITECTURE}: test accuracy {default_acc:.4f} in {default_s:.1f}s")
    print(
        f"median of rounds: channelhub {statistics.median(ours):.0f}, "
        f"baseline {statistics.median(base):.0f} img/s; ratio uses the best of each"
    )
    summary = {
        "ratio": round(max(ours) / max(base), 4),
        "images_per_s": round(max(ours), 1),
        "baseline_images_per_s": round(max(base), 1),
        "seed_cnn_accuracy": round(seed_acc, 4),
        "default_accuracy": round(default_acc, 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
