"""What the per-channel reads (the Loop, the Overview) start from: every channel with the
version numbers it serves and its open alerts, in two queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.models import Channel, Model, ModelVersion
from db.repo.alerts import AlertInfo, list_alerts


@dataclass(frozen=True)
class ServingRow:
    channel: Channel
    model_name: str | None
    production_version: int | None
    production_accuracy: float | None
    candidate_version: int | None
    open_alerts: list[AlertInfo] = field(default_factory=list)

    def serving_fields(self) -> dict[str, Any]:
        """The fields every per-channel row shares (who the channel is and what it serves),
        by name, to build a ChannelLoop or a ChannelHealth from."""
        c = self.channel
        return {
            "id": c.id,
            "slug": c.slug,
            "name": c.name,
            "production_version_id": c.production_version_id,
            "production_version": self.production_version,
            "candidate_version_id": c.candidate_version_id,
            "candidate_version": self.candidate_version,
            "candidate_traffic": c.candidate_traffic,
        }


def open_alerts_by_channel(session: Session) -> dict[int, list[AlertInfo]]:
    """channel id -> its open alerts, newest first."""
    alerts: dict[int, list[AlertInfo]] = {}
    for alert in list_alerts(session=session, open_only=True, limit=1000):
        alerts.setdefault(alert.channel_id, []).append(alert)
    return alerts


def serving_rows(session: Session) -> list[ServingRow]:
    """Every channel, ordered by slug, with its model's name, its production and candidate
    version numbers (and production's accuracy) and its open alerts."""
    prod, cand = aliased(ModelVersion), aliased(ModelVersion)
    rows = session.execute(
        select(Channel, Model.name, prod.version, prod.accuracy, cand.version)
        .outerjoin(Model, Model.id == Channel.model_id)
        .outerjoin(prod, prod.id == Channel.production_version_id)
        .outerjoin(cand, cand.id == Channel.candidate_version_id)
        .order_by(Channel.slug)
    )
    alerts = open_alerts_by_channel(session)
    return [ServingRow(*row, alerts.get(row[0].id, [])) for row in rows]
