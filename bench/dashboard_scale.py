"""Dashboard at scale: fill a fresh SQLite registry (1M predictions, 100k feedback, 1k versions),
then time each page's script with AppTest. The last line printed is one JSON object.

    python bench/dashboard_scale.py [--home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_PREDICTIONS, N_FEEDBACK, N_VERSIONS, N_MODELS, N_JOBS = 1_000_000, 100_000, 1_000, 5, 2_000
CHANNELS = ("web", "mobile", "partner-api", "kiosk", "batch-scoring")
DAYS = 30
CHUNK = 50_000
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "overview": ("views/overview.py", {}),
    "models": ("views/models.py", {}),
    "models_version": ("views/models.py", {"version": "500"}),
    "models_compare": ("views/models.py", {"compare": "999,1000"}),
    "retrain": ("views/retrain.py", {}),
    "jobs": ("views/jobs.py", {}),
    "feedback": ("views/feedback.py", {}),
    "channels": ("views/channels.py", {}),
}


def _evaluation(rng: np.random.Generator, accuracy: float) -> dict:
    per_class = [
        {
            "class": i,
            "name": str(i),
            "precision": float(rng.uniform(accuracy - 0.05, 1)),
            "recall": float(rng.uniform(accuracy - 0.05, 1)),
            "f1": float(accuracy),
            "support": 36,
        }
        for i in range(10)
    ]
    matrix = (np.eye(10) * 33 + rng.integers(0, 2, (10, 10))).astype(int).tolist()
    return {
        "accuracy": accuracy,
        "loss": 1 - accuracy,
        "precision_macro": accuracy,
        "recall_macro": accuracy,
        "f1_macro": accuracy,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "num_test": 360,
    }


def _history(epochs: int, accuracy: float) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": 2 / e,
            "accuracy": accuracy * (1 - 0.5 / e),
            "val_loss": 2.1 / e,
            "val_accuracy": accuracy * (1 - 0.55 / e),
        }
        for e in range(1, epochs + 1)
    ]


HYPERPARAMETERS = {"epochs": 20, "batch_size": 64, "learning_rate": 1e-3, "optimizer": "adam",
                   "augmentation": True, "seed": 0, "early_stopping_patience": 5}  # fmt: skip


def _version_row(i: int, rng: np.random.Generator, now) -> dict:
    """Version `i` (1-based) of model (i-1) % N_MODELS + 1; unset columns take their defaults."""
    acc = float(rng.uniform(0.85, 0.99))
    return {
        "id": i, "model_id": (i - 1) % N_MODELS + 1, "version": (i - 1) // N_MODELS + 1,
        "architecture": ("seed-cnn", "resnet-small")[i % 2], "artifact_path": f"m/{i}.keras",
        "artifact_sha256": "0" * 64, "hyperparameters": HYPERPARAMETERS, "dataset_id": 1,
        "dataset_fingerprint": "f" * 64,
        "parent_version_id": i - N_MODELS if i > N_MODELS else None,
        "history": _history(20, acc), "evaluation": _evaluation(rng, acc), "accuracy": acc,
        "f1_macro": acc, "created_by": "bench", "created_at": now - timedelta(hours=N_VERSIONS - i),
    }  # fmt: skip


def fill_base(conn, rng: np.random.Generator, now) -> None:
    """Dataset, models, 1,000 versions, and channels serving the newest versions."""
    from sqlalchemy import insert

    from db.models import Channel, Dataset, Model, ModelVersion

    conn.execute(insert(Dataset), [{
        "id": 1, "name": "digits", "source": "digits", "location": None,
        "class_names": [str(i) for i in range(10)], "input_shape": [8, 8, 1],
        "num_samples": 1797, "fingerprint": "f" * 64,
    }])  # fmt: skip
    conn.execute(insert(Model), [{"id": m, "name": f"model-{m}"} for m in range(1, N_MODELS + 1)])
    conn.execute(
        insert(ModelVersion), [_version_row(i, rng, now) for i in range(1, N_VERSIONS + 1)]
    )
    conn.execute(insert(Channel), [{
        "id": c + 1, "slug": slug, "name": slug.title(), "kind": "web", "dataset_id": 1,
        "model_id": c + 1, "production_version_id": N_VERSIONS - c, "slo_min_accuracy": 0.9,
        "slo_max_p95_ms": 250.0,
    } for c, slug in enumerate(CHANNELS)])  # fmt: skip


def fill_predictions(conn, rng: np.random.Generator, now) -> tuple[np.ndarray, ...]:
    from sqlalchemy import insert

    from db.models import Prediction

    channel = rng.integers(1, len(CHANNELS) + 1, N_PREDICTIONS)
    version = N_VERSIONS - (channel - 1)
    predicted = rng.integers(0, 10, N_PREDICTIONS)
    confidence = rng.beta(8, 2, N_PREDICTIONS)
    age_s = np.sort(rng.uniform(0, DAYS * 86400, N_PREDICTIONS))[::-1]
    latency = rng.gamma(4.0, 30.0, N_PREDICTIONS)
    ids = [f"{i:032x}" for i in range(N_PREDICTIONS)]
    for start in range(0, N_PREDICTIONS, CHUNK):
        rows = [
            {
                "id": ids[i],
                "channel_id": int(channel[i]),
                "version_id": int(version[i]),
                "arm": "production",
                "predicted_class": int(predicted[i]),
                "confidence": round(float(confidence[i]), 4),
                "probabilities": [round(float(confidence[i]), 4)] + [0.0] * 9,
                "latency_ms": round(float(latency[i]), 2),
                "input_path": None,
                "created_at": now - timedelta(seconds=float(age_s[i])),
            }
            for i in range(start, min(start + CHUNK, N_PREDICTIONS))
        ]
        conn.execute(insert(Prediction), rows)
    return channel, version, predicted, confidence, age_s


def fill_feedback(conn, rng: np.random.Generator, now, predictions: tuple) -> None:
    """100k feedback items on random predictions; 40 % already annotated."""
    from sqlalchemy import insert

    from db.models import Annotation, Feedback

    channel, version, predicted, confidence, age_s = predictions
    picked = np.sort(rng.choice(N_PREDICTIONS, N_FEEDBACK, replace=False))
    up = rng.random(N_FEEDBACK) < 0.6
    claimed = np.where(up, -1, (predicted[picked] + 1) % 10)
    label = np.where(up, predicted[picked], claimed)  # what a confirmed item is labelled
    status = rng.choice(["pending", "confirmed", "corrected", "rejected"], N_FEEDBACK,
                        p=[0.6, 0.2, 0.1, 0.1])  # fmt: skip
    rows = [{
        "id": n + 1, "prediction_id": f"{i:032x}", "channel_id": int(channel[i]),
        "version_id": int(version[i]), "predicted_class": int(predicted[i]),
        "confidence": round(float(confidence[i]), 4), "rating": "up" if up[n] else "down",
        "claimed_class": None if up[n] else int(claimed[n]), "review_status": str(status[n]),
        "created_at": now - timedelta(seconds=float(age_s[i]) - 60),
    } for n, i in enumerate(picked)]  # fmt: skip
    notes = [{
        "feedback_id": n + 1, "verdict": str(status[n]), "author": "bench",
        "true_class": None if status[n] == "rejected" else int(label[n]),
    } for n in range(N_FEEDBACK) if status[n] != "pending"]  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(Feedback), rows[start : start + CHUNK])
    for start in range(0, len(notes), CHUNK):
        conn.execute(insert(Annotation), notes[start : start + CHUNK])


def fill_jobs(conn, rng: np.random.Generator, now) -> None:
    """Job history: mostly succeeded, some failed, cancelled, or still queued."""
    from sqlalchemy import insert

    from db.models import TrainingJob

    statuses = rng.choice(["succeeded", "failed", "cancelled", "queued"], N_JOBS,
                          p=[0.8, 0.1, 0.05, 0.05])  # fmt: skip
    conn.execute(insert(TrainingJob), [{
        "model_id": j % N_MODELS + 1, "channel_id": j % len(CHANNELS) + 1, "dataset_id": 1,
        "architecture": "resnet-small", "hyperparameters": HYPERPARAMETERS, "status": str(s),
        "progress": 1.0 if s == "succeeded" else 0.0, "total_epochs": 20,
        "error": "boom" if s == "failed" else None, "requested_by": "bench",
        "created_at": now - timedelta(minutes=N_JOBS - j),
    } for j, s in enumerate(statuses)])  # fmt: skip


def fill(home: Path) -> float:
    os.environ["CHANNELHUB_HOME"] = str(home)
    os.environ["DATABASE_URL"] = f"sqlite:///{home / 'channelhub.db'}"
    from db.engine import get_engine
    from db.models import utcnow

    started, rng, now = time.perf_counter(), np.random.default_rng(0), utcnow()
    with get_engine().begin() as conn:
        fill_base(conn, rng, now)
        fill_feedback(conn, rng, now, fill_predictions(conn, rng, now))
        fill_jobs(conn, rng, now)
    return time.perf_counter() - started


def time_page(path: str, params: dict) -> float:
    """Seconds for one run of the page's script, every Streamlit cache cleared first."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    st.cache_data.clear()
    st.cache_resource.clear()
    at.switch_page(path)
    for name, value in params.items():
        at.query_params[name] = value
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    if at.exception or at.error:
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        raise SystemExit(f"{path} {params} failed: {problems}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="folder for the registry (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the registry afterwards")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="channelhub-bench-"))
    if (home / "channelhub.db").exists():
        raise SystemExit(f"{home} already holds a registry; give an empty folder")
    print(f"filling {home} ...", flush=True)
    print(f"filled in {fill(home):.1f} s", flush=True)
    for path, params in PAGES.values():  # warm-up: imports, not data, are paid here
        time_page(path, params)
    results = {}
    for page, (path, params) in PAGES.items():
        results[page] = round(time_page(path, params), 3)
        print(f"{page:16} {results[page]:.3f} s", flush=True)
    results["max_s"] = max(results.values())
    if not args.keep and not args.home:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
