"""Training workers: registration, heartbeats, and who is alive to take which jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Worker, utcnow

# A worker that has not beaten for this long is considered gone (its job is then lost).
WORKER_STALE_AFTER_S = 30.0


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    name: str
    host: str
    pid: int
    gpus: list[str]
    accepts: list[str]
    status: str
    current_job_id: int | None
    started_at: datetime
    heartbeat_at: datetime
    alive: bool


def _info(row: Worker, now: datetime, stale_after_s: float) -> WorkerInfo:
    alive = row.status == "online" and (now - row.heartbeat_at).total_seconds() < stale_after_s
    return WorkerInfo(
        row.id,
        row.name,
        row.host,
        row.pid,
        list(row.gpus or []),
        row.accepts.split(","),
        row.status if alive or row.status == "stopped" else "unresponsive",
        row.current_job_id,
        row.started_at,
        row.heartbeat_at,
        alive,
    )


def accepted_requests(gpus: list[str]) -> list[str]:
    """Device requests a worker takes: a GPU worker takes everything, a CPU one no 'gpu' job."""
    return ["gpu", "auto", "cpu"] if gpus else ["auto", "cpu"]


def register_worker(*, session: Session, host: str, pid: int, gpus: list[str]) -> WorkerInfo:
    row = Worker(
        name=f"{host}:{pid}",
        host=host,
        pid=pid,
        gpus=list(gpus),
        accepts=",".join(accepted_requests(gpus)),
    )
    session.add(row)
    session.flush()
    return _info(row, utcnow(), WORKER_STALE_AFTER_S)


def heartbeat_worker(*, session: Session, worker_id: int, current_job_id: int | None) -> None:
    session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(heartbeat_at=utcnow(), current_job_id=current_job_id, status="online")
    )


def stop_worker(*, session: Session, worker_id: int) -> None:
    session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(status="stopped", current_job_id=None, heartbeat_at=utcnow())
    )


def list_workers(
    *, session: Session, include_stopped: bool = False, stale_after_s: float = WORKER_STALE_AFTER_S
) -> list[WorkerInfo]:
    now = utcnow()
    query = select(Worker).order_by(Worker.heartbeat_at.desc())
    if not include_stopped:
        cutoff = now - timedelta(hours=24)
        query = query.where(Worker.status == "online", Worker.heartbeat_at >= cutoff)
    return [_info(r, now, stale_after_s) for r in session.scalars(query)]


def live_workers_for(*, session: Session, device_request: str) -> list[WorkerInfo]:
    """Workers alive now that would claim a job asking for `device_request`."""
    return [w for w in list_workers(session=session) if w.alive and device_request in w.accepts]
