"""The training worker: claims queued jobs one at a time, trains, and registers the new version."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.actions.base import Actor, audit
from db.artifact_store import artifact_store
from db.engine import session_scope
from db.repo import feedback as feedback_repo
from db.repo import jobs as job_repo
from db.repo import workers as worker_repo
from db.repo.datasets import get_dataset, holdout_digests
from db.repo.jobs import JobInfo
from db.repo.models import get_version, register_version
from db.settings import artifact_dir, relative_artifact

log = logging.getLogger("channelhub.worker")


class JobFailure(RuntimeError):
    """A job that cannot run; the message is stored on the job for the manager to read."""


class Unlearnable(ValueError):
    """An annotated item no retrain can learn: its input is gone or unreadable, or its class is
    not one of the dataset's. (A store that is away for a moment is not this: the next retrain
    tries again.)"""


@dataclass
class WorkerOptions:
    poll_interval_s: float = 1.0
    heartbeat_interval_s: float = 2.0
    lost_after_s: float = worker_repo.WORKER_STALE_AFTER_S
    exit_when_idle: bool = False
    max_jobs: int | None = None
    gpu_ids: list[int] | None = None  # pinned by `run_worker` (--gpus); None: every GPU seen
    cpu_devices: int = 1  # >1: the CPU split into logical devices, trained on as replicas


class TrainingWorker:
    """One worker process. `run()` loops until stopped (SIGINT/SIGTERM) or idle/limit reached."""

    def __init__(self, options: WorkerOptions | None = None) -> None:
        from core.training.devices import detect_gpus

        self.options = options or WorkerOptions()
        self.gpus = _physical_names(detect_gpus(), self.options.gpu_ids)
        self.stop_event = threading.Event()
        self.current_job_id: int | None = None
        with session_scope() as s:
            info = worker_repo.register_worker(
                session=s, host=socket.gethostname(), pid=os.getpid(), gpus=self.gpus
            )
        self.worker_id = info.id
        log.info("worker %s started; GPUs: %s", info.name, self.gpus or "none")

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(self.options.heartbeat_interval_s):
            try:
                with session_scope() as s:
                    job_id = self.current_job_id
                    worker_repo.heartbeat_worker(
                        session=s, worker_id=self.worker_id, current_job_id=job_id
                    )
                    if job_id is not None:
                        job_repo.heartbeat_job(session=s, job_id=job_id, worker_id=self.worker_id)
            except Exception:  # a busy database must not kill the heartbeat
                log.exception("heartbeat failed")

    def run(self) -> int:
        """Returns the number of jobs run."""
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        done = 0
        try:
            self._mark_holdout_copies()
            while not self.stop_event.is_set():
                if self.options.max_jobs is not None and done >= self.options.max_jobs:
                    break
                job = self._claim()
                if job is None:
                    if self.options.exit_when_idle:
                        break
                    self.stop_event.wait(self.options.poll_interval_s)
                    continue
                self.run_job(job)
                done += 1
        finally:
            self.stop_event.set()
            with session_scope() as s:
                worker_repo.stop_worker(session=s, worker_id=self.worker_id)
        return done

    def _mark_holdout_copies(self) -> None:
        """Before the first job: feedback from before migration 0016 whose input is a holdout
        image, found and marked so it stops counting as waiting (core/training/holdout_copies)."""
        from core.training.holdout_copies import mark_holdout_copies

        try:
            mark_holdout_copies(log.info)
        except Exception:  # the counts stay as they were; the next retrain leaves them out
            log.exception("marking feedback on holdout images failed")

    def _claim(self) -> JobInfo | None:
        with session_scope() as s:
            lost = job_repo.reap_lost_jobs(session=s, stale_after_s=self.options.lost_after_s)
            if lost:
                log.warning("marked lost (worker stopped heartbeating): jobs %s", lost)
        with session_scope() as s:
            return job_repo.claim_next_job(session=s, worker_id=self.worker_id, gpus=self.gpus)

    def run_job(self, job: JobInfo) -> None:
        self.current_job_id = job.id
        self._log(job.id, f"claimed by worker {self.worker_id} ({socket.gethostname()})")
        try:
            JobRunner(self, job).run()
        except Exception as exc:
            message = str(exc) if isinstance(exc, JobFailure) else f"{type(exc).__name__}: {exc}"
            self._log(job.id, traceback.format_exc()[-3000:], level="error")
            with session_scope() as s:
                job_repo.finish_job(
                    session=s, job_id=job.id, worker_id=self.worker_id, status="failed",
                    error=message,
                )  # fmt: skip
            log.error("job %s failed: %s", job.id, message)
        finally:
            self.current_job_id = None

    def _log(self, job_id: int, message: str, level: str = "info") -> None:
        with session_scope() as s:
            job_repo.append_log(session=s, job_id=job_id, message=message, level=level)


class JobRunner:
    """Everything needed to turn one claimed job into a registered model version."""

    def __init__(self, worker: TrainingWorker, job: JobInfo) -> None:
        from core.ml.hparams import Hyperparameters

        self.worker, self.job = worker, job
        self.hp = Hyperparameters.from_dict(job.hyperparameters)
        self.use_gpu = bool(worker.gpus) and job.device_request != "cpu"
        self.lost = False

    def log(self, message: str) -> None:
        self.worker._log(self.job.id, message)

    def report(self, row: dict) -> None:
        with session_scope() as s:
            ours = job_repo.record_epoch(
                session=s, job_id=self.job.id, worker_id=self.worker.worker_id,
                epoch=int(row["epoch"]), total=int(row.get("epochs_total", self.job.total_epochs)),
                metrics={k: v for k, v in row.items() if k not in ("epoch", "epochs_total")},
            )  # fmt: skip
        self.lost = self.lost or not ours

    def should_cancel(self) -> bool:
        if self.lost or self.worker.stop_event.is_set():
            return True
        with session_scope() as s:
            return job_repo.is_cancel_requested(session=s, job_id=self.job.id)

    def run(self) -> None:
        from core.ml.distribution import strategy_scope
        from core.ml.training import TrainConfig, train

        split, fingerprint, dataset, holdout = self._load_data()
        extra, items, left_out = self._feedback_samples(dataset)
        config = TrainConfig(
            architecture=self.job.architecture,
            hyperparameters=self.hp,
            output_dir=artifact_dir() / "models" / self.job.model_name / f"job-{self.job.id}",
            base_model_path=self._base_artifact(holdout.fingerprint),
            mixed_precision=self.use_gpu,
            flip_safe=dataset.flip_safe,
        )
        device, replicas = self._devices()
        with session_scope() as s:
            job_repo.start_job(
                session=s, job_id=self.job.id, worker_id=self.worker.worker_id, device=device,
                total_epochs=self.hp.epochs,
            )  # fmt: skip
        self.log(f"device {device}; mixed precision {'on' if self.use_gpu else 'off'}")
        with _device_scope(self.use_gpu, bool(self.worker.gpus)), strategy_scope(replicas) as n:
            if n > 1:
                self.log(f"{n} replicas in sync on {', '.join(replicas)}")
            result = train(
                config, split, self.report, self.should_cancel, extra_train=extra, log=self.log
            )
        if result.cancelled:
            self._finish_cancelled()
            return
        self._register(result, fingerprint, device, items, holdout, left_out)

    def _load_data(self):
        """The dataset split by its fixed holdout (never by the job's seed)."""
        from core.datasets import dataset_holdout
        from core.ml.datasets import DatasetError, load_dataset
        from core.ml.holdout import split_by_holdout

        with session_scope() as s:
            dataset = get_dataset(session=s, dataset_id=self.job.dataset_id)
        try:
            data = load_dataset(dataset.source, dataset.location)
            with session_scope() as s:
                holdout = dataset_holdout(session=s, dataset=dataset, data=data)
            split = split_by_holdout(data, holdout)
        except DatasetError as exc:
            raise JobFailure(f"dataset {dataset.name!r}: {exc}") from exc
        fingerprint = data.fingerprint  # a hash over every image: computed once
        if fingerprint != dataset.fingerprint:
            self.log(f"dataset {dataset.name!r} changed since it was registered (new fingerprint)")
        self.log(
            f"dataset {dataset.name}: {data.num_samples} images, {data.num_classes} classes; "
            f"train/val/test {len(split.train.y)}/{len(split.val.y)}/{len(split.test.y)} "
            f"(holdout {holdout.fingerprint[:12]}, {holdout.origin} test split)"
        )
        return split, fingerprint, dataset, holdout

    def _feedback_samples(self, dataset):
        """Annotated feedback images (fit to the dataset's shape), their registry ids, and the
        ids of the items left out: their images are holdout images, or no retrain can learn
        them (`Unlearnable`).

        Feedback is live input, never a dataset sample, so it only ever joins training; an
        image identical to a holdout image (traffic replaying the test set) is left out so the
        version is never scored on what it learned from.
        """
        if not self.job.include_feedback:
            return None, [], []
        from core.ml.images import image_digest

        with session_scope() as s:
            items = feedback_repo.training_items(session=s, model_id=self.job.model_id)
            # Stored at registration, or by `dataset_holdout` as this job read the holdout.
            held_out = holdout_digests(session=s, dataset_id=dataset.id) if items else set()
        xs, ys, used, overlapping, unlearnable = [], [], [], [], []
        for item in items:
            try:
                image = self._feedback_image(
                    item, tuple(dataset.input_shape), len(dataset.class_names)
                )
            except Unlearnable as exc:
                self.log(f"left out feedback {item.feedback_id}: {exc}")
                unlearnable.append(item.feedback_id)
                continue
            if image is None:
                continue
            if image_digest(image) in held_out:
                overlapping.append(item.feedback_id)
                continue
            xs.append(image)
            ys.append(item.true_class)
            used.append((item.feedback_id, item.annotation_id, item.true_class))
        if overlapping:
            self.log(
                f"left out {len(overlapping)} feedback images identical to holdout images "
                f"(feedback {', '.join(map(str, overlapping[:20]))})"
            )
        self.log(
            f"added {len(used)} annotated feedback images to the training set"
            + (f" (feedback {', '.join(str(f) for f, _, _ in used[:50])})" if used else "")
        )
        left_out = overlapping + unlearnable
        if not used:
            return None, [], left_out
        return (np.stack(xs), np.asarray(ys, dtype=np.int64)), used, left_out

    def _feedback_image(self, item, input_shape, num_classes: int) -> np.ndarray | None:
        """The item's input fit to `input_shape`; None when the store cannot be read just now
        (the next retrain tries again); `Unlearnable` when no retrain ever could."""
        from core.ml.images import ImageError, decode_image, fit_to_shape

        if not 0 <= item.true_class < num_classes:
            raise Unlearnable(f"class {item.true_class} is not one of the dataset's")
        try:
            data = artifact_store().read_bytes(item.input_path)
        except FileNotFoundError as exc:
            raise Unlearnable(f"its input {item.input_path} is gone") from exc
        except OSError as exc:
            self.log(f"skipped feedback {item.feedback_id} for now: {exc}")
            return None
        try:
            return fit_to_shape(decode_image(data), input_shape)
        except ImageError as exc:
            raise Unlearnable(f"its input {item.input_path} cannot be read: {exc}") from exc

    def _base_artifact(self, holdout_fingerprint: str) -> Path | None:
        if self.job.base_version_id is None:
            return None
        from core.artifacts import ArtifactError, verified_artifact

        with session_scope() as s:
            base = get_version(session=s, version_id=self.job.base_version_id)
        try:
            path = verified_artifact(base)
        except ArtifactError as exc:
            raise JobFailure(f"cannot fine-tune: {exc}") from exc
        self.log(f"fine-tuning from {base.label}")
        if base.holdout_fingerprint != holdout_fingerprint:
            self.log(
                f"warning: {base.label} was not scored on this dataset's holdout "
                f"({'holdout unknown' if base.holdout_fingerprint is None else 'another one'}): "
                "its weights may have seen test images, so this version's score may be optimistic"
            )
        return path

    def _devices(self) -> tuple[str, list[str]]:
        """The version's device label and the devices to replicate over (none: just one)."""
        from core.ml.distribution import device_label, local_devices, replicates_any_batch

        kind = "gpu" if self.use_gpu else "cpu"
        several = len(self.worker.gpus) > 1 if self.use_gpu else self.worker.options.cpu_devices > 1
        replicas = local_devices(kind) if several else []
        if len(replicas) > 1 and not replicates_any_batch():
            self.log(f"{len(replicas)} {kind.upper()}s seen; this backend trains on one of them")
            replicas = []
        # "CUDA 2: gpu:0 NVIDIA H200" (a pinned worker's record) -> "NVIDIA H200"
        name = re.sub(r"^(CUDA \d+: )?\S+:\d+ ", "", self.worker.gpus[0]) if self.use_gpu else ""
        return device_label(kind, len(replicas), name), replicas

    def _finish_cancelled(self) -> None:
        reason = "job lost by this worker" if self.lost else "cancelled at an epoch end"
        if self.worker.stop_event.is_set() and not self.lost:
            reason = "worker was stopped during the job; retry it"
        self.log(reason)
        status = "failed" if self.worker.stop_event.is_set() else "cancelled"
        with session_scope() as s:
            job_repo.finish_job(
                session=s, job_id=self.job.id, worker_id=self.worker.worker_id, status=status,
                error=reason if status == "failed" else None,
            )  # fmt: skip

    def _register(
        self, result, fingerprint: str, device: str, items, holdout, left_out: list[int]
    ) -> None:
        artifact = relative_artifact(result.artifact_path)
        predictions = result.predictions_path and relative_artifact(result.predictions_path)
        for path in filter(None, (artifact, predictions)):
            artifact_store().publish(path)  # an object store holds them before the registry does
        with session_scope() as s:
            version = register_version(
                session=s, model_id=self.job.model_id, architecture=self.job.architecture,
                artifact_path=artifact, artifact_sha256=result.artifact_sha256,
                hyperparameters=self.hp.to_dict(), dataset_id=self.job.dataset_id,
                dataset_fingerprint=fingerprint, evaluation=result.evaluation,
                history=result.history, framework_versions=result.framework_versions,
                device=device, train_seconds=result.train_seconds,
                parent_version_id=self.job.base_version_id, job_id=self.job.id,
                test_predictions_path=predictions,
                split_seed=holdout.seed, training_items=items, actor=self.job.requested_by,
                holdout_fingerprint=holdout.fingerprint,
            )  # fmt: skip
            audit(
                s, Actor("worker", "admin"), "model.register_version", "model_version",
                version.id, model=version.model_name, version=version.version, job_id=self.job.id,
            )  # fmt: skip
            feedback_repo.mark_used(
                session=s, feedback_ids=[f for f, _, _ in items], version_id=version.id,
                left_out=left_out,
            )  # fmt: skip
            if not job_repo.finish_job(
                session=s, job_id=self.job.id, worker_id=self.worker.worker_id,
                status="succeeded", result_version_id=version.id,
            ):  # fmt: skip
                raise JobFailure(
                    "job was taken away from this worker (marked lost) before it ended"
                )
        self.log(f"registered {version.label} (test accuracy {version.accuracy:.4f})")


def _device_scope(use_gpu: bool, has_gpu: bool):
    """Pins a CPU-requested job to the CPU on a GPU machine; a no-op otherwise."""
    if use_gpu or not has_gpu:
        return nullcontext()
    import keras

    return keras.device("cpu:0")


def _physical_names(gpus: list[str], pinned: list[int] | None) -> list[str]:
    """Pinned GPUs renumber from 0 inside the process: the worker record shows the machine's
    numbers (`CUDA 1: gpu:0 NVIDIA …`) so two workers on one machine are told apart."""
    if not pinned:
        return gpus
    return [f"CUDA {pinned[i]}: {name}" if i < len(pinned) else name for i, name in enumerate(gpus)]


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--exit-when-idle", action="store_true", help="stop when no job is waiting")
    parser.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs")
    parser.add_argument(
        "--lost-after",
        type=float,
        default=worker_repo.WORKER_STALE_AFTER_S,
        help="seconds without a heartbeat after which a running job is marked lost",
    )
    parser.add_argument(
        "--gpus",
        default=None,
        help="GPU numbers this worker uses, like 0,1 (several: one replica each); "
        "default every GPU; start one worker per set to share a machine",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        help="split the CPU into this many devices and replicate across them "
        "(runs the multi-GPU path without a GPU: tests, CI)",
    )


def run_worker(args: argparse.Namespace) -> int:
    from core.training.devices import DeviceError, parse_gpu_ids, pin_gpus, split_cpu

    try:  # before anything starts TensorFlow or JAX
        gpu_ids = parse_gpu_ids(args.gpus) if args.gpus is not None else None
        if gpu_ids is not None:
            pin_gpus(gpu_ids)
        split_cpu(args.cpu_devices)
    except DeviceError as exc:
        print(f"channelhub worker: {exc}", file=sys.stderr)
        return 2
    options = WorkerOptions(
        poll_interval_s=args.poll_interval,
        exit_when_idle=args.exit_when_idle,
        max_jobs=args.max_jobs,
        lost_after_s=args.lost_after,
        gpu_ids=gpu_ids,
        cpu_devices=args.cpu_devices,
    )
    worker = TrainingWorker(options)

    def stop(signum, _frame) -> None:
        log.info("signal %s: stopping after the current epoch", signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    from core.logs import run_process

    return run_process("worker", __doc__, add_worker_arguments, run_worker, argv)


if __name__ == "__main__":
    raise SystemExit(main())
