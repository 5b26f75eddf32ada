"""Models the serving API holds per channel: loaded once, hot-swapped from the registry, batched."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.serving.batcher import BatchPolicy, MicroBatcher, ModelUnavailable
from core.serving.channel_faults import ServingFaults
from core.serving.metrics import ServingMetrics
from db.engine import session_scope
from db.repo.datasets import get_dataset
from db.repo.models import get_version
from db.repo.serving_queries import ChannelRouting, channel_for_api_key, channel_routing

if TYPE_CHECKING:
    from core.ml.inference import Predictor

log = logging.getLogger("channelhub.serving")

RETRY_FAILED_LOAD_S = 30.0
RETIRE_GRACE_S = 30.0


@dataclass(frozen=True)
class LoadedVersion:
    """A model version in memory, with its batcher and the names of its classes."""

    version_id: int
    model_name: str
    version: int
    class_names: tuple[str, ...]
    predictor: Predictor
    batcher: MicroBatcher

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.predictor.input_shape


@dataclass(frozen=True)
class ChannelState:
    """One channel as the API routes it right now (replaced whole, never mutated). When the
    production version does not load, `fallback` answers in its place: the candidate at 100 %
    (`fallback_arm` "candidate") or the last earlier production version that loads."""

    routing: ChannelRouting
    production: LoadedVersion | None
    candidate: LoadedVersion | None
    load_error: str = ""
    fallback: LoadedVersion | None = None
    fallback_arm: str = "production"

    def choose(self, rng: random.Random) -> tuple[LoadedVersion, str]:
        """The arm for one request: the candidate with probability `candidate_traffic`."""
        share = self.routing.candidate_traffic
        if self.candidate is not None and share > 0 and rng.random() < share:
            return self.candidate, "candidate"
        if self.production is not None:
            return self.production, "production"
        if self.fallback is not None:
            return self.fallback, self.fallback_arm
        raise ModelUnavailable(self.load_error or "no production version")

    @property
    def serving(self) -> LoadedVersion | None:
        """What answers the production share: the production version, or its fallback."""
        return self.production or self.fallback


def load_version(
    version_id: int,
    *,
    database_url: str,
    batching: BatchPolicy,
    metrics: ServingMetrics | None = None,
) -> LoadedVersion:
    """Load one version after checking its artifact's sha256 against the registry."""
    # Imported here: Keras takes seconds to import, and the supervisor of `--workers N`
    # (which imports this module but serves nothing) should start its workers at once.
    from core.artifacts import verified_artifact
    from core.ml.inference import Predictor

    with session_scope(database_url) as session:
        info = get_version(session=session, version_id=version_id)
        class_names = list(get_dataset(session=session, dataset_id=info.dataset_id).class_names)
    path = verified_artifact(info)
    predictor = Predictor(path)
    if len(class_names) != predictor.num_classes:
        names, outputs = len(class_names), predictor.num_classes
        log.warning("%s: %d class names for %d outputs", info.label, names, outputs)
        class_names = [str(i) for i in range(predictor.num_classes)]
    on_batch = metrics.batch_size.labels(info.label).observe if metrics is not None else None
    batcher = MicroBatcher(
        predictor.predict_batch,
        policy=batching,
        in_flight=(lambda: metrics.in_flight) if metrics is not None else None,
        name=info.label,
        on_batch=on_batch,
    )
    log.info("loaded %s from %s", info.label, path)
    return LoadedVersion(
        version_id, info.model_name, info.version, tuple(class_names), predictor, batcher
    )


class ModelCache:
    """Every channel's loaded versions, refreshed from the registry by a background thread.

    A refresh loads new versions completely before it swaps the channel map (one reference
    assignment), so requests never see a half-loaded model; replaced versions keep answering
    what they already queued and are closed after a grace period.
    """

    def __init__(
        self,
        database_url: str,
        *,
        refresh_seconds: float = 1.0,
        batching: BatchPolicy = BatchPolicy(),
        seed: int | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.database_url = database_url
        self.metrics = metrics
        self.refresh_seconds = refresh_seconds
        self.batching = batching
        self.rng = random.Random(seed)
        self._channels: dict[str, ChannelState] = {}
        self._versions: dict[int, LoadedVersion] = {}
        self._failed: dict[int, tuple[float, str]] = {}
        self._retired: list[tuple[float, LoadedVersion]] = []
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh = 0.0
        self.last_error = ""
        self.faults = ServingFaults(database_url)

    def start(self) -> None:
        """Load what the registry routes to now, then keep polling it."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-cache", daemon=True)
        self._thread.start()

    def channel(self, slug: str) -> ChannelState | None:
        return self._channels.get(slug)

    def routing_for_key(self, key: str) -> ChannelRouting | None:
        """The registry's current routing of the channel whose key is `key` (one query)."""
        with session_scope(self.database_url) as session:
            return channel_for_api_key(session=session, key=key)

    def refresh_if_stale(self, max_age_s: float = 0.25) -> None:
        """Refresh now unless a refresh finished within `max_age_s` (bounds on-demand polls)."""
        if time.monotonic() - self.last_refresh > max_age_s:
            self.refresh()

    def refresh(self) -> None:
        """Read the channels table, load newly routed versions, swap, retire unused ones."""
        with self._refresh_lock:
            try:
                with session_scope(self.database_url) as session:
                    routings = channel_routing(session=session)
            except Exception as exc:  # keep serving what is loaded while the DB is away
                self.last_error = f"registry unreachable: {exc}"
                log.warning(self.last_error)
                return
            self._channels = {r.slug: self._state_for(r) for r in routings}
            self.last_refresh = time.monotonic()
            self.last_error = ""
            self._retire_unrouted()
            self._close_expired()

    def _state_for(self, routing: ChannelRouting) -> ChannelState:
        production, error = self._ensure(routing.production_version_id)
        if routing.production_version_id is None:
            error = "channel has no production version"
        candidate, _ = self._ensure(routing.candidate_version_id)
        fallback, arm = None, "production"
        if production is None and routing.production_version_id is not None:
            fallback, arm = self._fallback(routing, candidate)
            serving = "nothing" if fallback is None else f"version {fallback.version_id}"
            self.faults.failed(routing, f"{error}; serving {serving} instead")
        elif production is not None:
            self.faults.recovered(routing)
        return ChannelState(routing, production, candidate, error, fallback, arm)

    def _fallback(
        self, routing: ChannelRouting, candidate: LoadedVersion | None
    ) -> tuple[LoadedVersion | None, str]:
        """The candidate at 100 % when it loaded, else the newest earlier production that loads."""
        if candidate is not None:
            return candidate, "candidate"
        for version_id in self.faults.earlier_productions(routing):
            loaded, _ = self._ensure(version_id)
            if loaded is not None:
                return loaded, "production"
        return None, "production"

    def _ensure(self, version_id: int | None) -> tuple[LoadedVersion | None, str]:
        if version_id is None:
            return None, ""
        if version_id in self._versions:
            return self._versions[version_id], ""
        failed_at, reason = self._failed.get(version_id, (0.0, ""))
        if reason and time.monotonic() - failed_at < RETRY_FAILED_LOAD_S:
            return None, reason
        started = time.perf_counter()
        try:
            loaded = load_version(
                version_id,
                database_url=self.database_url,
                metrics=self.metrics,
                batching=self.batching,
            )
        except Exception as exc:  # a broken artifact must not stop other channels
            self._observe_load(False, started)
            reason = f"model version {version_id} could not be loaded: {exc}"
            log.error(reason)
            self._failed[version_id] = (time.monotonic(), reason)
            return None, reason
        self._observe_load(True, started)
        self._failed.pop(version_id, None)
        self._versions[version_id] = loaded
        return loaded, ""

    def _observe_load(self, ok: bool, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_load(ok, time.perf_counter() - started)

    def _retire_unrouted(self) -> None:
        routed = {
            v.version_id
            for state in self._channels.values()
            for v in (state.production, state.candidate)
            if v is not None
        } | {state.fallback.version_id for state in self._channels.values() if state.fallback}
        for version_id in list(self._versions):
            if version_id not in routed:
                self._retired.append((time.monotonic(), self._versions.pop(version_id)))

    def _close_expired(self, grace_s: float = RETIRE_GRACE_S) -> None:
        now = time.monotonic()
        keep = [(t, v) for t, v in self._retired if now - t < grace_s]
        for t, loaded in self._retired:
            if now - t >= grace_s:
                loaded.batcher.close()
        self._retired = keep

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def readiness(self) -> tuple[bool, dict[str, dict]]:
        """Each channel's readiness, and the process's: ready once the registry was read, unless
        every active channel that should serve has nothing loaded (one bad channel only turns
        itself red)."""
        report: dict[str, dict] = {}
        expected = servable = 0
        for slug, state in self._channels.items():
            r = state.routing
            serving = state.serving
            needed = r.status == "active" and r.production_version_id is not None
            expected += needed
            servable += needed and serving is not None
            report[slug] = {
                "ready": serving is not None or not needed,
                "status": r.status,
                "production_version_id": r.production_version_id,
                "candidate_version_id": r.candidate_version_id,
                "loaded": state.production is not None,
                "serving_version_id": serving.version_id if serving else None,
                "fallback": state.fallback is not None,
                "error": state.load_error,
            }
        ready = self.last_refresh > 0 and (expected == 0 or servable > 0)
        return ready, report

    def close(self) -> None:
        """Stop polling and answer every queued request before the batchers stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._refresh_lock:
            for loaded in list(self._versions.values()) + [v for _, v in self._retired]:
                loaded.batcher.close()
            self._versions.clear()
            self._retired.clear()
