"""Fill a SQLite registry at dashboard scale for bench/dashboard_scale.py.

Predictions (30 days, five channels, two of them with a candidate arm), feedback with
annotations, versions and jobs, and the rollups the prediction log and the feedback writers
would have kept for exactly those rows: the same minute/hour buckets (db.repo.rollups.bucket_start)
and the same histogram bins (core.ml.monitoring_stats), computed in bulk with numpy. The big
tables go in through one raw sqlite3 connection with executemany and fill-only PRAGMAs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scale_base import CHANNELS, DAYS, fill_base, fill_jobs

from core.ml import monitoring_stats as stats
from db.models import ROLLUP_RESOLUTIONS

CHUNK = 500_000
NUM_CLASSES = 10
ARMS = ("production", "candidate")
STATUSES = ("pending", "confirmed", "corrected", "rejected")
FILL_PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000",
                "temp_store=MEMORY", "locking_mode=EXCLUSIVE")  # fmt: skip


@dataclass
class Traffic:
    """The generated predictions, column by column (index = prediction number, oldest first)."""

    epoch_us: np.ndarray  # int64 microseconds since the epoch
    channel: np.ndarray  # 0-based channel index
    arm: np.ndarray  # 0 production, 1 candidate
    version: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray  # rounded as stored
    latency: np.ndarray  # rounded as stored
    simulated: np.ndarray


def fixed_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per value, as monitoring_stats._fixed_histogram assigns it (checked in
    `check_against_prediction_log`)."""
    clipped = np.clip(values, edges[0], edges[-1])
    return np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)


def make_traffic(n: int, now: datetime, rng: np.random.Generator) -> Traffic:
    end_us = int(now.timestamp() * 1_000_000)
    epoch_us = np.sort(rng.integers(end_us - DAYS * 86_400 * 1_000_000, end_us, n))
    channel = rng.integers(0, len(CHANNELS), n)
    share = np.array([c.candidate_share for c in CHANNELS])
    arm = (rng.random(n) < share[channel]).astype(np.int64)
    serving = np.array([[c.production_version, c.candidate_version or 0] for c in CHANNELS])
    mix = rng.dirichlet(np.full(NUM_CLASSES, 20.0))
    return Traffic(
        epoch_us, channel, arm, serving[channel, arm],
        rng.choice(NUM_CLASSES, n, p=mix), np.round(rng.beta(8, 2, n), 4),
        np.round(rng.gamma(3.0, 6.0, n) + 2.0, 2), rng.random(n) < 0.05,
    )  # fmt: skip


PREDICTION_SQL = (
    "INSERT INTO predictions (id, channel_id, version_id, arm, predicted_class, confidence,"
    " probabilities, latency_ms, input_path, created_at, simulated) VALUES (printf('%032x', ?1),"
    " ?2, ?3, ?4, ?5, ?6, '[' || "
    + " || ',' || ".join(f"iif(?5 = {k}, ?6, round((1 - ?6) / 9, 4))" for k in range(NUM_CLASSES))
    + " || ']', ?7, NULL, strftime('%Y-%m-%d %H:%M:%S', ?8, 'unixepoch') || printf('.%06d', ?9),"
    " ?10)"
)


def insert_predictions(db: sqlite3.Connection, t: Traffic) -> None:
    arm_names = np.array(ARMS, dtype=object)
    for start in range(0, len(t.epoch_us), CHUNK):
        s = slice(start, start + CHUNK)
        seconds, micros = np.divmod(t.epoch_us[s], 1_000_000)
        rows = zip(
            range(start, start + len(seconds)), (t.channel[s] + 1).tolist(),
            t.version[s].tolist(), arm_names[t.arm[s]].tolist(), t.predicted[s].tolist(),
            t.confidence[s].tolist(), t.latency[s].tolist(), seconds.tolist(), micros.tolist(),
            t.simulated[s].astype(int).tolist(), strict=True,
        )  # fmt: skip
        db.executemany(PREDICTION_SQL, rows)


def utc_text(epoch_us: np.ndarray) -> list[str]:
    """How SQLAlchemy stores a naive UTC datetime on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return [s.replace("T", " ") for s in np.datetime_as_string(epoch_us.astype("M8[us]"))]


@dataclass
class FeedbackItems:
    prediction: np.ndarray  # prediction number of each item (ids are 1 … n)
    up: np.ndarray
    claimed: np.ndarray  # -1 where none
    status: np.ndarray  # index into STATUSES
    true_class: np.ndarray  # -1 where none (pending, rejected)


def make_feedback(n: int, t: Traffic, rng: np.random.Generator) -> FeedbackItems:
    picked = np.sort(rng.choice(len(t.epoch_us), n, replace=False))
    predicted = t.predicted[picked]
    up = rng.random(n) < 0.8
    claimed = np.where(up, -1, (predicted + 1 + rng.integers(0, NUM_CLASSES - 1, n)) % 10)
    status = rng.choice(len(STATUSES), n, p=[0.6, 0.25, 0.05, 0.1])
    # The rules of db.repo.feedback: a confirmation takes the user's word, a correction names
    # another class, a rejection says nothing.
    confirmed = np.where(up, predicted, claimed)
    true_class = np.select([status == 1, status == 2], [confirmed, (predicted + 2) % 10], -1)
    return FeedbackItems(picked, up, claimed, status, true_class)


def insert_feedback(db: sqlite3.Connection, t: Traffic, f: FeedbackItems, now: datetime) -> None:
    p = f.prediction
    now_us = int(now.timestamp() * 1_000_000)
    created = utc_text(np.minimum(t.epoch_us[p] + 60_000_000, now_us))
    ratings = np.where(f.up, "up", "down").tolist()
    claimed = [None if c < 0 else c for c in f.claimed.tolist()]
    db.executemany(
        "INSERT INTO feedback (id, prediction_id, channel_id, version_id, predicted_class,"
        " confidence, rating, claimed_class, comment, review_status, used_in_version_id,"
        " created_at) VALUES (?, printf('%032x', ?), ?, ?, ?, ?, ?, ?, '', ?, NULL, ?)",
        zip(range(1, len(p) + 1), p.tolist(), (t.channel[p] + 1).tolist(),
            t.version[p].tolist(), t.predicted[p].tolist(), t.confidence[p].tolist(), ratings,
            claimed, np.array(STATUSES)[f.status].tolist(), created, strict=True),
    )  # fmt: skip
    done = np.flatnonzero(f.status > 0)
    verdicts = np.array(STATUSES)[f.status[done]].tolist()
    db.executemany(
        "INSERT INTO annotations (feedback_id, verdict, true_class, tags, note, author,"
        " is_current, created_at) VALUES (?, ?, ?, '[]', '', 'bench', 1, ?)",
        zip((done + 1).tolist(), verdicts,
            [None if c < 0 else c for c in f.true_class[done].tolist()],
            [created[i] for i in done], strict=True),
    )  # fmt: skip


@dataclass
class Rollups:
    """Summed counts per (bucket, channel × arm) at one resolution; histograms on a last axis."""

    resolution_s: int
    first_bucket_s: int
    counts: dict[str, np.ndarray]  # name -> (buckets, groups)
    latency_sum_ms: np.ndarray  # (buckets, groups)
    histograms: dict[str, np.ndarray]  # name -> (buckets, groups, bins)


GROUPS = len(CHANNELS) * len(ARMS)


def minute_rollups(t: Traffic, f: FeedbackItems) -> Rollups:
    """What the prediction log (requests, simulated, latency, histograms) and the feedback
    writers (thumbs, verdicts in the prediction's bucket) add up to, per minute."""
    seconds = t.epoch_us // 1_000_000
    first = int(seconds.min()) // 3600 * 3600  # hour-aligned, so minutes fold into hours
    buckets = (int(seconds.max()) - first) // 3600 * 60 + 60
    key = (seconds - first) // 60 * GROUPS + t.channel * len(ARMS) + t.arm
    size = buckets * GROUPS

    def count(keys: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(keys, weights, minlength=size).reshape(buckets, GROUPS)

    def histogram(bins: np.ndarray, width: int) -> np.ndarray:
        flat = np.bincount(key * width + bins, minlength=size * width)
        return flat.reshape(buckets, GROUPS, width)

    fkey = key[f.prediction]
    right = (f.true_class >= 0) & (f.true_class == t.predicted[f.prediction])
    counts = {
        "requests": count(key),
        "simulated": count(key[t.simulated]),
        "thumbs_up": count(fkey[f.up]),
        "thumbs_down": count(fkey[~f.up]),
        "annotated_right": count(fkey[right]),
        "annotated_wrong": count(fkey[(f.true_class >= 0) & ~right]),
    }
    histograms = {
        "latency_hist": histogram(fixed_bins(t.latency, stats.LATENCY_EDGES_MS), 40),
        "confidence_hist": histogram(fixed_bins(t.confidence, stats.CONFIDENCE_BINS), 10),
        "class_counts": histogram(t.predicted, NUM_CLASSES),
    }
    return Rollups(60, first, counts, count(key, t.latency), histograms)


def coarser(r: Rollups, resolution_s: int) -> Rollups:
    """The same sums over `resolution_s` buckets (a multiple of r.resolution_s, aligned)."""
    k = resolution_s // r.resolution_s

    def fold(a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0] // k, k, *a.shape[1:]).sum(axis=1)

    return Rollups(
        resolution_s, r.first_bucket_s, {n: fold(a) for n, a in r.counts.items()},
        fold(r.latency_sum_ms), {n: fold(a) for n, a in r.histograms.items()},
    )  # fmt: skip


ROLLUP_SQL = (
    "INSERT INTO rollups (channel_id, version_id, arm, resolution_s, bucket_start, requests,"
    " errors, simulated, thumbs_up, thumbs_down, annotated_right, annotated_wrong,"
    " latency_sum_ms, latency_hist, confidence_hist, class_counts, intensity_hist) VALUES"
    " (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]')"
)
COUNT_COLUMNS = ("requests", "simulated", "thumbs_up", "thumbs_down")
COUNT_COLUMNS += ("annotated_right", "annotated_wrong")


def insert_rollups(db: sqlite3.Connection, r: Rollups) -> int:
    """One row per bucket, channel and arm that saw a request (the only rows a writer makes)."""
    bucket, group = np.nonzero(r.counts["requests"])
    starts = utc_text((r.first_bucket_s + bucket * r.resolution_s).astype(np.int64) * 1_000_000)
    channel, arm = np.divmod(group, len(ARMS))
    serving = [(c.production_version, c.candidate_version) for c in CHANNELS]
    hists = [
        [json.dumps(row) for row in r.histograms[name][bucket, group].tolist()]
        for name in ("latency_hist", "confidence_hist", "class_counts")
    ]
    rows = zip(
        (channel + 1).tolist(), [serving[c][a] for c, a in zip(channel, arm, strict=True)],
        [ARMS[a] for a in arm], [r.resolution_s] * len(bucket), starts,
        *(r.counts[name][bucket, group].tolist() for name in COUNT_COLUMNS),
        r.latency_sum_ms[bucket, group].tolist(), *hists, strict=True,
    )  # fmt: skip
    db.executemany(ROLLUP_SQL, rows)
    return len(bucket)


def row_counts(db_path: Path) -> dict[str, int]:
    """Rows of the tables the benchmark sizes (zeros when there is no registry)."""
    if not db_path.exists():
        return {"predictions": 0, "feedback": 0, "versions": 0}
    with sqlite3.connect(db_path) as db:
        tables = {
            "predictions": "predictions",
            "feedback": "feedback",
            "versions": "model_versions",
        }
        try:
            return {
                k: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for k, t in tables.items()
            }
        except sqlite3.DatabaseError:
            return {"predictions": -1, "feedback": -1, "versions": -1}


def fill(db_path: Path, n_predictions: int, n_feedback: int, seed: int = 0) -> dict[str, float]:
    """Create the schema (Alembic), then fill; returns seconds per step."""
    from db.engine import dispose_engines, get_engine
    from db.models import utcnow

    rng, now, took = np.random.default_rng(seed), utcnow(), {}
    started = time.perf_counter()
    with get_engine(f"sqlite:///{db_path}").begin() as conn:
        fill_base(conn, rng, now)
        fill_jobs(conn, rng, now)
    dispose_engines()
    db = sqlite3.connect(db_path, isolation_level=None)
    for pragma in FILL_PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    db.execute("BEGIN")
    traffic = make_traffic(n_predictions, now, rng)
    insert_predictions(db, traffic)
    took["predictions_s"] = time.perf_counter() - started
    feedback = make_feedback(n_feedback, traffic, rng)
    insert_feedback(db, traffic, feedback, now)
    took["feedback_s"] = time.perf_counter() - started - took["predictions_s"]
    minutes = minute_rollups(traffic, feedback)
    rows = sum(insert_rollups(db, coarser(minutes, res)) for res in ROLLUP_RESOLUTIONS)
    db.execute("COMMIT")
    db.execute("PRAGMA locking_mode=NORMAL")
    db.execute("PRAGMA journal_mode=WAL")  # what the application's engine sets
    took["rollups_s"] = time.perf_counter() - started - took["predictions_s"] - took["feedback_s"]
    check_against_prediction_log(db, traffic, rng)
    db.close()
    took["rollup_rows"] = rows
    took["fill_s"] = time.perf_counter() - started
    return {k: round(v, 1) for k, v in took.items()}


def _records(t: Traffic, index: np.ndarray) -> list:
    from core.serving.prediction_log import PredictionRecord

    return [
        PredictionRecord(
            f"{i:032x}",
            int(t.channel[i]) + 1,
            int(t.version[i]),
            ARMS[t.arm[i]],
            int(t.predicted[i]),
            float(t.confidence[i]),
            [0.0] * NUM_CLASSES,
            float(t.latency[i]),
            None,
            datetime.fromtimestamp(int(t.epoch_us[i]) / 1e6, UTC),
            bool(t.simulated[i]),
        )  # fmt: skip
        for i in index
    ]


def check_against_prediction_log(
    db: sqlite3.Connection, t: Traffic, rng: np.random.Generator
) -> None:
    """For a few random buckets of each resolution, the stored rollup row must equal what the
    prediction log's own `rollup_deltas` makes of the same predictions, and its thumbs and
    verdicts must equal a count over the stored feedback rows."""
    from core.serving.prediction_log import rollup_deltas
    from db.repo.rollups import add_list, bucket_start

    for resolution in ROLLUP_RESOLUTIONS:
        for i in rng.choice(len(t.epoch_us), 3, replace=False):
            start_s = int(t.epoch_us[i]) // 1_000_000 // resolution * resolution
            seconds = t.epoch_us // 1_000_000
            same = (seconds >= start_s) & (seconds < start_s + resolution)
            same &= (t.channel == t.channel[i]) & (t.arm == t.arm[i])
            expected: dict = {"requests": 0, "simulated": 0, "latency_sum_ms": 0.0}
            hist: dict[str, list[int]] = {}
            for delta in rollup_deltas([(r, None) for r in _records(t, np.flatnonzero(same))]):
                for name, value in delta.counts.items():
                    expected[name] += value
                expected["latency_sum_ms"] += delta.latency_sum_ms
                for name, values in delta.histograms.items():
                    hist[name] = add_list(hist.get(name, []), values)
            start = bucket_start(datetime.fromtimestamp(start_s, UTC), resolution)
            _compare_row(
                db, int(t.channel[i]) + 1, ARMS[t.arm[i]], resolution, start, expected, hist
            )


FEEDBACK_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE f.rating = 'up'), count(*) FILTER (WHERE f.rating = 'down'),
       count(*) FILTER (WHERE a.true_class = f.predicted_class),
       count(*) FILTER (WHERE a.true_class != f.predicted_class)
FROM predictions p JOIN feedback f ON f.prediction_id = p.id
LEFT JOIN annotations a ON a.feedback_id = f.id AND a.is_current
WHERE p.channel_id = ?1 AND p.arm = ?2 AND p.created_at >= ?3 AND p.created_at < ?4"""


def _compare_row(
    db: sqlite3.Connection, channel_id: int, arm: str, resolution: int, start: datetime,
    expected: dict, hist: dict[str, list[int]],
) -> None:  # fmt: skip
    start_text = start.strftime("%Y-%m-%d %H:%M:%S.%f")
    end_text = (start + timedelta(seconds=resolution)).strftime("%Y-%m-%d %H:%M:%S.%f")
    row = db.execute(
        "SELECT requests, simulated, latency_sum_ms, thumbs_up, thumbs_down, annotated_right,"
        " annotated_wrong, latency_hist, confidence_hist, class_counts FROM rollups"
        " WHERE channel_id = ? AND arm = ? AND resolution_s = ? AND bucket_start = ?",
        (channel_id, arm, resolution, start_text),
    ).fetchone()
    where = f"rollup {channel_id}/{arm}/{resolution} s/{start_text}"
    if row is None:
        raise SystemExit(f"{where}: no row")
    stored = dict(zip(("requests", "simulated", "latency_sum_ms"), row[:3], strict=True))
    stored["latency_sum_ms"] = round(stored["latency_sum_ms"], 6)
    expected["latency_sum_ms"] = round(expected["latency_sum_ms"], 6)
    names = ("latency_hist", "confidence_hist", "class_counts")
    stored_hist = {n: json.loads(v) for n, v in zip(names, row[7:], strict=True)}
    thumbs = db.execute(FEEDBACK_COUNTS_SQL, (channel_id, arm, start_text, end_text)).fetchone()
    if stored != expected or stored_hist != hist or tuple(row[3:7]) != thumbs:
        raise SystemExit(
            f"{where} differs from the prediction log's rollup_deltas / the feedback rows:\n"
            f"{stored} {tuple(row[3:7])} {stored_hist}\n{expected} {thumbs} {hist}"
        )
