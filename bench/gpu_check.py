"""GPU check: one short real training job through the worker, against plain `model.fit` of the
same model on the same data and device. Prints a JSON object as its last line: device, backend,
mixed precision, the worker's and bare Keras's images/s (epoch 1, the compile, is not timed)
and their ratio. Runs on a GPU where one is visible (mixed precision on), else on the CPU; with
KERAS_BACKEND=jax too. Works in a throw-away registry, never the project's own.

    python bench/gpu_check.py [--images 8192] [--epochs 3] [--batch-size 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUM_CLASSES = 10


def write_dataset(path: Path, images: int, seed: int = 0) -> None:
    """32x32 colour images whose class sets a brighter square: learnable, not just noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, size=images)
    x = rng.integers(0, 128, size=(images, 32, 32, 3), dtype=np.uint8)
    for label in range(NUM_CLASSES):
        row, col = divmod(label, 4)
        x[y == label, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8, :] += 120
    np.savez(path, x=x, y=y)


def images_per_s(train_images: int, epoch_seconds: list[float]) -> float:
    """Training images per second over the timed epochs (all but the first)."""
    timed = epoch_seconds[1:] or epoch_seconds
    return train_images * len(timed) / sum(timed)


def run_worker_job(data_path: Path, args: argparse.Namespace) -> dict:
    """Queue a seed-cnn job on the dataset and let one in-process worker run it."""
    from core.datasets import register_loaded_dataset
    from core.ml.datasets import load_dataset
    from core.training.jobs import enqueue_job
    from core.training.worker import TrainingWorker, WorkerOptions
    from db.engine import session_scope
    from db.repo import jobs as job_repo
    from db.repo import models
    from db.repo.jobs import JobRequest

    hp = {"epochs": args.epochs, "batch_size": args.batch_size, "augmentation": False,
          "early_stopping_patience": 0}  # fmt: skip
    with session_scope() as s:
        data = load_dataset("npz", str(data_path))
        dataset = register_loaded_dataset(
            session=s, name="gpu-check", source="npz", location=str(data_path), data=data
        )
        model = models.get_or_create_model(session=s, name="gpu-check")
        job = enqueue_job(session=s, request=JobRequest(
            model_id=model.id, dataset_id=dataset.id, architecture="seed-cnn",
            hyperparameters=hp, requested_by="gpu-check", device_request=args.device,
        ))  # fmt: skip
    worker = TrainingWorker(WorkerOptions(exit_when_idle=True, max_jobs=1, poll_interval_s=0.1))
    worker.run()
    with session_scope() as s:
        done = job_repo.get_job(session=s, job_id=job.id)
        epochs = job_repo.job_epochs(session=s, job_id=job.id)
        logs = job_repo.job_logs(session=s, job_id=job.id, limit=5)
    if done.status != "succeeded":
        raise SystemExit(f"the worker's job {done.status}: {done.error}; last log {logs[-1:]}")
    return {"job": done, "epochs": epochs, "dataset": dataset, "gpus": worker.gpus}


def worker_split(dataset):
    """The split the worker trained on: the dataset by its registered holdout."""
    from core.datasets import dataset_holdout
    from core.ml.datasets import load_dataset
    from core.ml.holdout import split_by_holdout
    from db.engine import session_scope

    data = load_dataset("npz", dataset.location)
    with session_scope() as s:
        return split_by_holdout(data, dataset_holdout(session=s, dataset=dataset, data=data))


def bare_keras_images_per_s(split, run: dict, args: argparse.Namespace, mixed: bool) -> float:
    """Plain compile + fit of the same network on the same split, device and precision."""
    import keras

    from core.ml.architectures import build_model
    from core.ml.training import ProgressCallback

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        model = build_model(
            "seed-cnn", split.train.input_shape, split.train.num_classes, augmentation=False
        )
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    timer = ProgressCallback(args.epochs)  # times each epoch exactly as the worker does
    with _bare_device(run, args):
        model.fit(
            split.train.x, split.train.y, batch_size=args.batch_size, epochs=args.epochs,
            validation_data=(split.val.x, split.val.y), callbacks=[timer], verbose=0,
        )  # fmt: skip
    return images_per_s(len(split.train.y), [row["seconds"] for row in timer.rows])


def _bare_device(run: dict, args: argparse.Namespace):
    from contextlib import nullcontext

    import keras

    if run["gpus"] and args.device == "cpu":
        return keras.device("cpu:0")  # as the worker pins a CPU job on a GPU machine
    return nullcontext()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8192, help="dataset size (70%% trained on)")
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 is warm-up, not timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.images < 100:
        parser.error("--epochs must be at least 2 (the first is not timed), --images 100 or more")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        os.environ["CHANNELHUB_HOME"] = str(Path(tmp) / "home")
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'home' / 'channelhub.db'}"
        os.environ.pop("CHANNELHUB_ARTIFACTS", None)
        (Path(tmp) / "home").mkdir()
        data_path = Path(tmp) / "gpu-check.npz"
        write_dataset(data_path, args.images)
        run = run_worker_job(data_path, args)
        job, split = run["job"], worker_split(run["dataset"])
        mixed = job.device != "cpu" and "CPU" not in job.device  # the worker's rule: GPU jobs
        ours = images_per_s(len(split.train.y), [float(e["seconds"]) for e in run["epochs"]])
        bare = bare_keras_images_per_s(split, run, args, mixed)
    import keras

    summary = {
        "device": job.device,
        "backend": keras.backend.backend(),
        "mixed_precision": mixed,
        "images_per_s": round(ours, 1),
        "bare_keras_images_per_s": round(bare, 1),
        "ratio": round(ours / bare, 4),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_images": len(split.train.y),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
