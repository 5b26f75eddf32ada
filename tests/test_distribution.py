"""Training over several devices: the worker's strategy path, run on the CPU split into two
logical devices in a subprocess, and the `--gpus` option that pins a worker's devices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.datasets import register_builtin_dataset
from core.ml.distribution import device_label, strategy_scope
from core.training.devices import DeviceError, parse_gpu_ids
from core.training.jobs import enqueue_job
from core.training.worker import _physical_names
from db.engine import session_scope
from db.queries.lookups import get_job, get_version, job_logs
from db.repo import models
from db.repo.jobs import JobRequest


def _queue_one_epoch() -> int:
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        model = models.get_or_create_model(session=s, name="digits-classifier")
        hp = {"epochs": 1, "augmentation": False, "batch_size": 64}
        return enqueue_job(session=s, request=JobRequest(
            model_id=model.id, dataset_id=dataset.id, architecture="seed-cnn",
            hyperparameters=hp, requested_by="tester",
        )).id  # fmt: skip


def _worker(*extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "core.training.worker", "--exit-when-idle", *extra]
    return subprocess.run(
        cmd, env=dict(os.environ), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_a_worker_trains_mirrored_across_two_cpu_devices_and_registers_the_version(registry):
    job_id = _queue_one_epoch()
    done = _worker("--cpu-devices", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    with session_scope() as s:
        job = get_job(session=s, job_id=job_id)
        assert job.status == "succeeded", job.error
        version = get_version(session=s, version_id=job.result_version_id)
    assert version.device == "2 × CPU (mirrored)"
    assert job.device == version.device
    assert version.accuracy is not None and 0.0 <= version.accuracy <= 1.0
    assert len(version.history) == 1
    with session_scope() as s:
        logs = [message for _, _, message in job_logs(session=s, job_id=job_id, limit=100)]
    assert any(m.startswith("2 replicas in sync on ") for m in logs), logs


@pytest.mark.parametrize("text", ["", "a,b", "0,0", "-1", "1;2"])
def test_gpus_option_refuses_what_is_not_a_list_of_gpu_numbers(text):
    with pytest.raises(DeviceError, match="--gpus takes"):
        parse_gpu_ids(text)


def test_gpus_option_parses_a_list_and_the_worker_shows_the_machines_numbers():
    assert parse_gpu_ids("2, 3") == [2, 3]
    names = ["gpu:0 NVIDIA H200", "gpu:1 NVIDIA H200"]
    assert _physical_names(names, [2, 3]) == [
        "CUDA 2: gpu:0 NVIDIA H200",
        "CUDA 3: gpu:1 NVIDIA H200",
    ]
    assert _physical_names(names, None) == names


def test_the_worker_refuses_a_bad_gpus_option_with_a_message(registry):
    done = _worker("--gpus", "zero", timeout=120)
    assert done.returncode == 2
    assert "--gpus takes GPU numbers" in done.stderr and "Traceback" not in done.stderr


def test_gpus_pins_cuda_visible_devices_before_the_backend_starts():
    code = (
        "import sys; from core.training.devices import pin_gpus; pin_gpus([1, 3]); "
        "import os; assert 'tensorflow' not in sys.modules; "
        "print(os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1,3"


def test_device_labels_and_a_single_device_scope():
    assert device_label("cpu", 0) == "cpu"
    assert device_label("gpu", 1, "NVIDIA H200") == "gpu (NVIDIA H200)"
    assert device_label("cpu", 2) == "2 × CPU (mirrored)"
    assert device_label("gpu", 4, "NVIDIA H200") == "4 × GPU (mirrored): NVIDIA H200"
    with strategy_scope(["cpu:0"]) as replicas:
        assert replicas == 1
