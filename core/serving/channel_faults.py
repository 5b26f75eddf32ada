"""A channel whose production version does not load: where its fallback comes from (the earlier
production versions on its timeline) and how the failure shows on the channel (an open alert on
the `serving` signal, cleared by the serving process once the production version loads again)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from core.actions.alerts import clear_alert, open_alert
from core.actions.base import SYSTEM
from db.engine import session_scope
from db.errors import ConflictError
from db.queries.timeline import channel_timeline
from db.repo.alerts import open_alert_for
from db.repo.serving_queries import ChannelRouting

log = logging.getLogger("channelhub.serving")

SIGNAL = "serving"


class ServingFaults:
    """Opens and clears the `serving` alert of channels as the model cache finds them broken or
    mended; each process remembers what it did, so a refresh costs no query in the steady state."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._open: set[int] = set()
        self._checked: set[int] = set()

    def earlier_productions(self, routing: ChannelRouting) -> list[int]:
        """The channel's earlier production versions, newest first (from its timeline)."""
        try:
            with session_scope(self.database_url) as session:
                entries = channel_timeline(session=session, slug=routing.slug)
        except Exception as exc:  # no fallback beats no answer at all
            log.warning("timeline of %s unreadable: %s", routing.slug, exc)
            return []
        seen: list[int] = []
        for entry in entries:
            version_id = entry.production_version_id
            if version_id and version_id not in (routing.production_version_id, *seen):
                seen.append(version_id)
        return seen

    def failed(self, routing: ChannelRouting, message: str) -> None:
        """The production version of `routing` does not load: open the channel's alert once."""
        if routing.id in self._open:
            return
        log.error("channel %s: %s", routing.slug, message)

        def write(session: Session) -> None:
            open_alert(
                actor=SYSTEM, session=session, channel_id=routing.id, signal=SIGNAL,
                message=message[:2000], arm="production",
                version_id=routing.production_version_id,
            )  # fmt: skip

        if not self._write(routing, "record the serving failure", write):
            return
        self._open.add(routing.id)
        self._checked.add(routing.id)

    def recovered(self, routing: ChannelRouting) -> None:
        """The production version of `routing` loads: clear the alert if one is open (checked
        once per channel after start, then only after this process saw it fail)."""
        if routing.id in self._checked and routing.id not in self._open:
            return

        def write(session: Session) -> None:
            alert = open_alert_for(session=session, channel_id=routing.id, signal=SIGNAL)
            if alert is not None:
                reason = f"production version {routing.production_version_id} loads again"
                clear_alert(actor=SYSTEM, session=session, alert_id=alert.id, reason=reason)

        if not self._write(routing, "clear the serving alert", write):
            return
        self._open.discard(routing.id)
        self._checked.add(routing.id)

    def _write(self, routing: ChannelRouting, doing: str, write: Callable[[Session], None]) -> bool:
        """Run `write` in its own transaction; False (logged) when it could not. A conflict
        means another serving process opened or cleared the alert first: done all the same."""
        try:
            with session_scope(self.database_url) as session:
                write(session)
        except ConflictError:
            return True
        except Exception as exc:
            log.warning("could not %s of %s: %s", doing, routing.slug, exc)
            return False
        return True
