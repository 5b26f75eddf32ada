"""Channels: the paths by which a model reaches users, with their SLOs, versions and API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import ConflictError, RegistryError
from db.models import CHANNEL_KINDS, Channel, Dataset, Model, ModelVersion, utcnow
from db.repo.lookup import get_row, must_exist

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,48}[a-z0-9]$")
API_KEY_PREFIX = "chk_"
MAX_KEY_GRACE_S = 30 * 24 * 3600
MAX_RATE_LIMIT_PER_S = 100_000


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    slug: str
    name: str
    kind: str
    dataset_id: int | None
    dataset_name: str | None
    model_id: int | None
    model_name: str | None
    production_version_id: int | None
    candidate_version_id: int | None
    candidate_traffic: float
    slo_min_accuracy: float | None
    slo_max_p95_ms: float | None
    status: str
    status_reason: str
    api_key_prefix: str | None
    created_at: datetime
    updated_at: datetime
    # Live objectives and alerting (see LIVE_OBJECTIVES), by field name.
    objectives: dict[str, Any] = field(default_factory=dict)
    # API key operations: requests/s per key (None = unlimited), last use, old key's grace end.
    rate_limit_per_s: float | None = None
    api_key_last_used_at: datetime | None = None
    previous_key_expires_at: datetime | None = None


@dataclass(frozen=True)
class Objective:
    """A live objective or alerting setting a manager may change: its type and allowed range."""

    kind: type
    low: float
    high: float
    meaning: str
    optional: bool = True


LIVE_OBJECTIVES: dict[str, Objective] = {
    "slo_min_feedback": Objective(int, 1, 1_000_000, "annotated items to judge accuracy", False),
    "slo_max_error_rate": Objective(float, 0.0, 1.0, "largest share of failed requests"),
    "slo_max_drift_psi": Objective(float, 0.0, 10.0, "largest PSI against the holdout"),
    "alert_m": Objective(int, 1, 100, "breaching buckets that open an alert", False),
    "alert_n": Objective(int, 1, 100, "of the last N buckets", False),
    "drift_min_count": Objective(int, 1, 10_000_000, "requests for a drift verdict", False),
    "webhook_url": Objective(str, 0, 500, "JSON POST on alert open and clear"),
}  # fmt: skip


def hash_api_key(key: str) -> str:
    """Keys are 190 random bits, so a plain SHA-256 is enough (no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(24)


def _info(session: Session, row: Channel) -> ChannelInfo:
    dataset_name = session.scalar(select(Dataset.name).where(Dataset.id == row.dataset_id))
    model_name = session.scalar(select(Model.name).where(Model.id == row.model_id))
    return ChannelInfo(
        row.id,
        row.slug,
        row.name,
        row.kind,
        row.dataset_id,
        dataset_name,
        row.model_id,
        model_name,
        row.production_version_id,
        row.candidate_version_id,
        row.candidate_traffic,
        row.slo_min_accuracy,
        row.slo_max_p95_ms,
        row.status,
        row.status_reason,
        row.api_key_prefix,
        row.created_at,
        row.updated_at,
        {name: getattr(row, name) for name in LIVE_OBJECTIVES},
        row.rate_limit_per_s,
        row.api_key_last_used_at,
        row.previous_key_expires_at,
    )


def _row(session: Session, slug: str) -> Channel:
    row = session.scalar(select(Channel).where(Channel.slug == slug))
    return must_exist(row, f"channel {slug!r}")


@dataclass(frozen=True)
class ChannelSpec:
    """What a manager sets on a channel: name and kind, what it serves, its SLOs, its rate limit.

    The fields are named as on ChannelInfo; `create_channel` and `update_channel` take one."""

    name: str
    kind: str = "web"
    dataset_id: int | None = None
    model_id: int | None = None
    slo_min_accuracy: float | None = None
    slo_max_p95_ms: float | None = None
    rate_limit_per_s: float | None = None  # requests per second per API key; None = unlimited

    @classmethod
    def of(cls, info: ChannelInfo) -> ChannelSpec:
        """The settings a channel has now."""
        return cls(**{f.name: getattr(info, f.name) for f in fields(cls)})


def _validate_spec(session: Session, spec: ChannelSpec) -> None:
    if not isinstance(spec, ChannelSpec):
        raise RegistryError(f"channel settings must be a ChannelSpec (got {type(spec).__name__})")
    if not spec.name or not spec.name.strip():
        raise RegistryError("a channel needs a name")
    if spec.kind not in CHANNEL_KINDS:
        raise RegistryError(f"kind must be one of {', '.join(CHANNEL_KINDS)} (got {spec.kind!r})")
    if spec.dataset_id is not None:
        get_row(session, Dataset, spec.dataset_id, "dataset")
    if spec.model_id is not None:
        get_row(session, Model, spec.model_id, "model")
    accuracy, p95 = spec.slo_min_accuracy, spec.slo_max_p95_ms
    if accuracy is not None and not 0.0 <= accuracy <= 1.0:
        raise RegistryError(f"minimum accuracy must be between 0 and 1 (got {accuracy})")
    if p95 is not None and not 0.0 < p95 <= 600_000:
        raise RegistryError(f"maximum p95 latency must be between 0 and 600000 ms (got {p95})")
    rate = spec.rate_limit_per_s
    if rate is not None and not 0 < rate <= MAX_RATE_LIMIT_PER_S:
        raise RegistryError(
            f"rate limit must be between 0 and {MAX_RATE_LIMIT_PER_S} requests per second "
            f"(got {rate}); leave it empty for no limit"
        )


def _apply_spec(session: Session, row: Channel, spec: ChannelSpec) -> None:
    """Check every setting, then set them all on the row."""
    _validate_spec(session, spec)
    for f in fields(ChannelSpec):
        setattr(row, f.name, getattr(spec, f.name))
    row.name = spec.name.strip()


def create_channel(*, session: Session, slug: str, spec: ChannelSpec) -> tuple[ChannelInfo, str]:
    """Create a channel; returns it and its API key, which is shown this once and stored hashed."""
    if not SLUG_PATTERN.match(slug or ""):
        raise RegistryError(
            f"slug must be 2-50 characters of lowercase letters, digits and dashes (got {slug!r})"
        )
    if session.scalar(select(Channel.id).where(Channel.slug == slug)) is not None:
        raise ConflictError(f"a channel {slug!r} already exists")
    key = new_api_key()
    row = Channel(slug=slug, api_key_hash=hash_api_key(key), api_key_prefix=key[:8])
    _apply_spec(session, row, spec)
    session.add(row)
    session.flush()
    return _info(session, row), key


def update_channel(*, session: Session, slug: str, spec: ChannelSpec) -> ChannelInfo:
    """Replace every setting of the channel with `spec`'s."""
    row = _row(session, slug)
    _apply_spec(session, row, spec)
    return _info(session, row)


def _check_objective(name: str, value: Any) -> Any:
    spec = LIVE_OBJECTIVES.get(name)
    if spec is None:
        raise RegistryError(f"a channel has no objective {name!r}")
    if value is None or value == "":
        if not spec.optional:
            raise RegistryError(f"{name} needs a value ({spec.meaning})")
        return None
    if spec.kind is str:
        value = str(value).strip()
        if not value.startswith(("http://", "https://")) or len(value) > spec.high:
            raise RegistryError(f"{name} must be an http(s) URL of at most 500 characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"{name} must be a number (got {value!r})")
    if spec.kind is int and value != int(value):
        raise RegistryError(f"{name} must be a whole number (got {value})")
    if not spec.low <= value <= spec.high:
        raise RegistryError(f"{name} must be between {spec.low:g} and {spec.high:g} (got {value})")
    return spec.kind(value)


def set_objectives(*, session: Session, slug: str, values: dict[str, Any]) -> ChannelInfo:
    """Change live objectives and alerting settings; every value is checked before any is set."""
    row = _row(session, slug)
    checked = {name: _check_objective(name, value) for name, value in values.items()}
    m = checked.get("alert_m", row.alert_m)
    n = checked.get("alert_n", row.alert_n)
    if m > n:
        raise RegistryError(f"alert_m must not exceed alert_n (got {m} of {n})")
    for name, value in checked.items():
        setattr(row, name, value)
    session.flush()
    return _info(session, row)


def set_channel_status(
    *, session: Session, slug: str, status: str, reason: str = ""
) -> ChannelInfo:
    """Pause (with a reason shown to API clients) or resume a channel."""
    if status not in ("active", "paused"):
        raise RegistryError(f"status must be 'active' or 'paused' (got {status!r})")
    row = _row(session, slug)
    row.status = status
    row.status_reason = reason.strip() if status == "paused" else ""
    return _info(session, row)


def rotate_api_key(*, session: Session, slug: str, grace_seconds: float = 0.0) -> str:
    """Replace the channel's key; the old one keeps working for `grace_seconds` (0: stops at
    once; a key still in an earlier grace period stops now). Returns the new key."""
    if not 0 <= grace_seconds <= MAX_KEY_GRACE_S:
        raise RegistryError(
            f"grace period must be between 0 and {MAX_KEY_GRACE_S} seconds (got {grace_seconds})"
        )
    row = _row(session, slug)
    row.previous_api_key_hash = row.api_key_hash if grace_seconds > 0 else None
    row.previous_key_expires_at = (
        utcnow() + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
    )
    key = new_api_key()
    row.api_key_hash, row.api_key_prefix = hash_api_key(key), key[:8]
    return key


def key_matches_hash(stored_hash: str | None, key: str | None) -> bool:
    """Constant-time check of a presented key against a stored hash (either may be missing)."""
    return bool(key and stored_hash and hmac.compare_digest(stored_hash, hash_api_key(key)))


def check_api_key(*, session: Session, slug: str, key: str | None) -> bool:
    return key_matches_hash(_row(session, slug).api_key_hash, key)


def _check_version_fits(session: Session, row: Channel, version_id: int) -> ModelVersion:
    version = get_row(session, ModelVersion, version_id, "model version")
    if row.model_id is not None and version.model_id != row.model_id:
        raise ConflictError(
            f"version {version_id} belongs to another model than channel {row.slug!r}"
        )
    return version


def promote_version(*, session: Session, slug: str, version_id: int) -> ChannelInfo:
    """Make `version_id` the channel's production version (clears it as candidate)."""
    row = _row(session, slug)
    version = _check_version_fits(session, row, version_id)
    row.production_version_id = version_id
    row.model_id = version.model_id
    if row.candidate_version_id == version_id:
        row.candidate_version_id, row.candidate_traffic = None, 0.0
    return _info(session, row)


def set_candidate(
    *,
    session: Session,
    slug: str,
    version_id: int | None,
    traffic: float = 0.0,
) -> ChannelInfo:
    """Route `traffic` (0..1) of requests to a candidate version; `None` ends the canary."""
    row = _row(session, slug)
    if version_id is not None:
        _check_version_fits(session, row, version_id)
        if not 0.0 < traffic <= 1.0:
            raise RegistryError(f"candidate traffic share must be in (0, 1] (got {traffic})")
    row.candidate_version_id = version_id
    row.candidate_traffic = traffic if version_id is not None else 0.0
    return _info(session, row)


def get_channel(*, session: Session, slug: str) -> ChannelInfo:
    return _info(session, _row(session, slug))


def list_channels(*, session: Session) -> list[ChannelInfo]:
    return [_info(session, r) for r in session.scalars(select(Channel).order_by(Channel.slug))]
