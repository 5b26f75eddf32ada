"""`channelhub controller`: evaluates every channel's live SLOs on a schedule, opens and clears
alerts (M breaching buckets of the last N), posts webhooks, and reaps lost training jobs."""

from __future__ import annotations

import argparse
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.actions.alerts import clear_alert, open_alert
from core.actions.base import Actor
from core.actions.canary import DEFAULT_MIN_REQUESTS, DEFAULT_MIN_SECONDS, start_canary_plan
from core.actions.gate import GateRefused, record_gate_refusal
from core.actions.jobs import reap_lost_jobs
from core.ml import monitoring_stats as stats
from core.monitoring import (
    Reference,
    SignalState,
    accuracy_state,
    drift_state,
    error_state,
    holdout_reference,
    latency_state,
)
from core.ops.canary import CanaryJudge
from db.engine import session_scope
from db.errors import RegistryError
from db.models import utcnow
from db.queries.monitoring import LiveObjectives, live_objectives, recent_buckets
from db.repo.alerts import AlertInfo, open_alert_for
from db.repo.jobs import JobInfo, jobs_awaiting_canary, mark_handed_to_canary
from db.repo.models import get_version
from db.repo.workers import WORKER_STALE_AFTER_S
from db.settings import resolve_artifact

log = logging.getLogger("channelhub.controller")

CONTROLLER = Actor("controller", "manager")
DEFAULT_BUCKET_S = 300
DEFAULT_INTERVAL_S = 30.0
# Lost jobs are looked for this often between passes too: a dead worker's job is marked lost
# within WORKER_STALE_AFTER_S + this (40 s by default), not a whole pass later.
REAP_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Check:
    """One signal of one channel over its last N buckets."""

    signal: str
    states: list[SignalState]
    threshold: float
    message: str


def _checks(obj: LiveObjectives, buckets: list, reference: Reference | None) -> list[Check]:
    """One check per objective the channel sets, each over the signals of its last buckets."""
    signals = [s for _, s in buckets]
    rules: list[tuple[str, float | None, Callable[[Any, float], SignalState], str]] = [
        ("latency", obj.slo_max_p95_ms, latency_state, "p95 latency above {:.0f} ms"),
        ("errors", obj.slo_max_error_rate, error_state, "error rate above {:.1%}"),
        ("accuracy", obj.slo_min_accuracy,
         lambda s, floor: accuracy_state(s, floor, obj.slo_min_feedback),
         "feedback accuracy below {:.1%}"),
    ]  # fmt: skip
    if reference is not None:
        rules.append((
            "drift", obj.slo_max_drift_psi,
            lambda s, psi: drift_state(
                s, reference, min_count=obj.drift_min_count, psi_threshold=psi
            ),
            "drift (PSI) above {:.2f}",
        ))  # fmt: skip
    return [
        Check(signal, [state(s, threshold) for s in signals], threshold, message.format(threshold))
        for signal, threshold, state, message in rules
        if threshold is not None
    ]


def _latest_value(states: list[SignalState]) -> SignalState | None:
    seen = [s for s in states if s.state != "not_enough_data"]
    return seen[-1] if seen else None


class Controller:
    """One evaluation pass per `tick()`; `run()` repeats it every `interval_s`."""

    def __init__(
        self,
        *,
        bucket_s: int = DEFAULT_BUCKET_S,
        interval_s: float = DEFAULT_INTERVAL_S,
        lost_after_s: float = WORKER_STALE_AFTER_S,
        canary_min_requests: int = DEFAULT_MIN_REQUESTS,
        canary_min_seconds: int = DEFAULT_MIN_SECONDS,
    ):
        self.bucket_s = bucket_s
        self.interval_s = interval_s
        self.lost_after_s = lost_after_s
        # What each step of a "canary when done" plan needs: requests per arm, seconds.
        self.canary_limits = dict(min_requests=canary_min_requests, min_seconds=canary_min_seconds)
        self.webhooks = WebhookSender()
        self._references: dict[int, Reference | None] = {}
        self.canaries = CanaryJudge(CONTROLLER, self.reference)

    def reference(self, version_id: int) -> Reference | None:
        """The serving version's holdout behaviour, computed once per version."""
        if version_id not in self._references:
            self._references[version_id] = self._load_reference(version_id)
        return self._references[version_id]

    def _load_reference(self, version_id: int) -> Reference | None:
        from core.ml.datasets import load_dataset
        from db.repo.datasets import get_dataset

        with session_scope() as s:
            version = get_version(session=s, version_id=version_id)
            dataset = get_dataset(session=s, dataset_id=version.dataset_id)
        if not version.test_predictions_path:
            return None
        try:
            path = resolve_artifact(version.test_predictions_path)
            from core.ml.holdout_predictions import read_holdout_predictions

            indices = read_holdout_predictions(path).indices
            images = load_dataset(dataset.source, dataset.location).x[indices]
            return holdout_reference(str(path), images)
        except Exception as exc:  # a missing file or dataset: drift is then not evaluated
            log.warning("no drift reference for version %d: %s", version_id, exc)
            return None

    def tick(self, now: datetime | None = None) -> list[str]:
        """Evaluate every channel once; returns what changed, one line each. The canaries are
        judged at `now`, else at the time their turn comes: a hand-over in this pass (the gate
        takes seconds) starts a step after the pass began."""
        started = now or utcnow()
        changes = []
        changes += self.reap_lost_jobs()
        with session_scope() as s:
            objectives = live_objectives(session=s)
        changes += self.hand_over_finished_retrains()
        for obj in objectives:
            changes += self.evaluate(obj, started)
        changes += self.canaries.tick(now or utcnow())  # advance, hold, roll back, promote
        return changes

    def reap_lost_jobs(self) -> list[str]:
        """Running jobs whose worker stopped heartbeating become "lost" (then retryable)."""
        lost = reap_lost_jobs(actor=CONTROLLER, stale_after_s=self.lost_after_s)
        return [f"job {job_id} marked lost" for job_id in lost]

    def hand_over_finished_retrains(self) -> list[str]:
        """Versions of "canary when done" retrains go into a canary on their channel."""
        with session_scope() as s:
            jobs = jobs_awaiting_canary(session=s)
        changes = []
        for job in jobs:
            with session_scope() as s:
                if not mark_handed_to_canary(session=s, job_id=job.id):
                    continue  # another controller took it
            changes.append(self._start_canary(job))
        return changes

    def _start_canary(self, job: JobInfo) -> str:
        reason = f"canary when done: retrain job {job.id}"
        try:
            start_canary_plan(  # stepped: the canary judge takes it from its first step
                actor=CONTROLLER, slug=job.channel_slug, version_id=job.result_version_id,
                reason=reason, **self.canary_limits,
            )  # fmt: skip
        except GateRefused as exc:  # stored with its evidence and audited (gate.refuse)
            decision = record_gate_refusal(CONTROLLER, exc)
            log.warning("job %d: gate decision %d refused version %s: %s", job.id, decision,
                        job.result_version_id, exc)  # fmt: skip
            return f"{job.channel_slug}: job {job.id}'s version not put in a canary: {exc}"
        except RegistryError as exc:
            log.warning("job %d: no canary for version %s: %s", job.id, job.result_version_id, exc)
            return f"{job.channel_slug}: job {job.id}'s version not put in a canary: {exc}"
        return f"{job.channel_slug}: version {job.result_version} of job {job.id} in a canary"

    def evaluate(self, obj: LiveObjectives, now: datetime) -> list[str]:
        with session_scope() as s:
            buckets = recent_buckets(
                session=s,
                channel_id=obj.channel_id,
                arm="production",
                bucket_s=self.bucket_s,
                count=obj.alert_n,
                version_id=obj.production_version_id,  # each version judged on its own traffic
                now=now,
            )
        reference = self.reference(obj.production_version_id) if obj.slo_max_drift_psi else None
        changes = []
        for check in _checks(obj, buckets, reference):
            changes += self._apply(obj, check)
        return changes

    def _apply(self, obj: LiveObjectives, check: Check) -> list[str]:
        names = [s.state for s in check.states]
        breach = stats.breaching(names, min(obj.alert_m, obj.alert_n), obj.alert_n)
        recovered = "ok" in names and not any(n in stats.BREACHING_STATES for n in names)
        with session_scope() as s:
            current = open_alert_for(session=s, channel_id=obj.channel_id, signal=check.signal)
        changes = []
        if current is not None and current.version_id not in (None, obj.production_version_id):
            reason = (f"v{obj.production_version} replaced the version this alert was opened on; "
                      "it is judged on its own traffic")  # fmt: skip
            changes.append(self._clear(obj, current, reason))
            current = None
        latest = _latest_value(check.states)
        if breach and current is None:
            bad = sum(n in stats.BREACHING_STATES for n in names)
            message = (
                f"{check.message} on v{obj.production_version} in {bad} of the last {len(names)}"
                f" buckets of {self.bucket_s // 60} min" + (f" ({latest.detail})" if latest else "")
            )
            info = open_alert(
                actor=CONTROLLER,
                channel_id=obj.channel_id,
                signal=check.signal,
                message=message,
                value=latest.value if latest else None,
                threshold=check.threshold,
                version_id=obj.production_version_id,
            )
            self.webhooks.send(obj.webhook_url, "alert.opened", info)
            changes.append(f"{obj.slug}: opened {check.signal} alert: {message}")
        elif current is not None and recovered:
            changes.append(self._clear(obj, current, f"{check.signal} back within its objective"))
        return changes

    def _clear(self, obj: LiveObjectives, alert: AlertInfo, reason: str) -> str:
        info = clear_alert(actor=CONTROLLER, alert_id=alert.id, reason=reason)
        self.webhooks.send(obj.webhook_url, "alert.cleared", info)
        return f"{obj.slug}: cleared {alert.signal} alert: {reason}"

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                for line in self.tick():
                    log.info(line)
            except Exception:  # one bad pass must not stop the controller
                log.exception("controller pass failed")
            self._reap_until(time.monotonic() + self.interval_s, stop)
        self.webhooks.close()

    def _reap_until(self, deadline: float, stop: threading.Event) -> None:
        while not stop.wait(min(REAP_INTERVAL_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            try:
                for line in self.reap_lost_jobs():
                    log.info(line)
            except Exception:  # a busy database: the next look or pass tries again
                log.exception("looking for lost jobs failed")


def alert_payload(event: str, info: AlertInfo) -> dict[str, Any]:
    return {
        "event": event,
        "alert_id": info.id,
        "channel": info.channel_slug,
        "signal": info.signal,
        "arm": info.arm,
        "version_id": info.version_id,
        "message": info.message,
        "value": info.value,
        "threshold": info.threshold,
        "opened_at": info.opened_at.isoformat(),
        "cleared_at": info.cleared_at.isoformat() if info.cleared_at else None,
    }


class WebhookSender:
    """Posts alert events as JSON from its own thread, retrying with backoff; never blocks."""

    def __init__(self, attempts: int = 4, backoff_s: float = 1.0, timeout_s: float = 5.0):
        self.attempts, self.backoff_s, self.timeout_s = attempts, backoff_s, timeout_s
        self._queue: queue.Queue = queue.Queue()
        self.delivered: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def send(self, url: str | None, event: str, info: AlertInfo) -> None:
        if url:
            self._queue.put((url, alert_payload(event, info)))

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued event was delivered or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        import httpx

        while (item := self._queue.get()) is not None:
            url, payload = item
            for attempt in range(self.attempts):
                try:
                    httpx.post(url, json=payload, timeout=self.timeout_s).raise_for_status()
                    self.delivered.append(payload)
                    break
                except httpx.HTTPError as exc:
                    log.warning("webhook %s failed (attempt %d): %s", url, attempt + 1, exc)
                    time.sleep(self.backoff_s * 2**attempt)
            else:
                self.failed.append(payload)
            self._queue.task_done()
        self._queue.task_done()


def add_controller_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between evaluations"
    )
    parser.add_argument(
        "--bucket-seconds",
        type=int,
        default=DEFAULT_BUCKET_S,
        help="width of one evaluated bucket (alerts need M of the last N)",
    )
    parser.add_argument("--once", action="store_true", help="evaluate once and exit")
    parser.add_argument(
        "--lost-after",
        type=float,
        default=WORKER_STALE_AFTER_S,
        help="seconds without a heartbeat after which a running job is marked lost",
    )
    parser.add_argument(
        "--canary-min-requests",
        type=int,
        default=DEFAULT_MIN_REQUESTS,
        help="requests per arm each step of a 'canary when done' plan needs before a decision",
    )
    parser.add_argument(
        "--canary-min-seconds",
        type=int,
        default=DEFAULT_MIN_SECONDS,
        help="seconds each step of a 'canary when done' plan lasts at least",
    )


def run_controller(args: argparse.Namespace) -> int:
    controller = Controller(
        bucket_s=args.bucket_seconds,
        interval_s=args.interval,
        lost_after_s=args.lost_after,
        canary_min_requests=args.canary_min_requests,
        canary_min_seconds=args.canary_min_seconds,
    )
    if args.once:
        for line in controller.tick():
            print(line)
        controller.webhooks.drain()
        return 0
    log.info(
        "controller evaluating every %.0f s (buckets of %d s)", args.interval, args.bucket_seconds
    )
    try:
        controller.run()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    from core.logs import run_process

    return run_process("controller", __doc__, add_controller_arguments, run_controller, argv)


if __name__ == "__main__":
    raise SystemExit(main())
