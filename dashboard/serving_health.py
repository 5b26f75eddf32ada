"""Whether the serving APIs' prediction logs can write, as their `/readyz` says, for the pages.

The dashboard asks each API named by `CHANNELHUB_API_URL` over HTTP (short timeout, cached a few
seconds) rather than reading a row: a database that refuses writes is the very failure to show.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import streamlit as st

from dashboard.ui import md_text
from db.settings import settings

TIMEOUT_S = 1.5
CACHE_TTL_S = 5


@dataclass(frozen=True)
class WriterHealth:
    """One API's prediction log: `problem` is why the API could not be asked ('' if it was)."""

    url: str
    problem: str = ""
    ok: bool = True
    error: str = ""
    pending: int = 0
    failed_rows: int = 0

    @property
    def cannot_write(self) -> bool:
        return not self.problem and not self.ok


def ask_readyz(url: str, timeout_s: float = TIMEOUT_S) -> WriterHealth:
    """What `url`'s `/readyz` says about its prediction log (a 503 still carries the body)."""
    if not url.startswith(("http://", "https://")):
        return WriterHealth(url, problem="not an http(s) URL")
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as answer:
        raw = answer.read()
    except (OSError, ValueError) as exc:  # refused, timed out, unknown host, malformed URL
        reason = getattr(exc, "reason", exc)
        return WriterHealth(url, problem=f"did not answer ({reason})")
    try:
        log = json.loads(raw)["prediction_log"]
        return WriterHealth(
            url,
            ok=bool(log["ok"]),
            error=str(log.get("error") or ""),
            pending=int(log.get("pending") or 0),
            failed_rows=int(log.get("failed_rows") or 0),
        )
    except (ValueError, KeyError, TypeError):
        return WriterHealth(url, problem="answered /readyz without a prediction log status")


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def writer_health(urls: tuple[str, ...]) -> list[WriterHealth]:
    return [ask_readyz(url) for url in urls]


def show_writer_health() -> None:
    """An error for each API whose prediction log cannot write, a note for each API that could
    not be asked; nothing when every one is healthy or none is configured."""
    for health in writer_health(settings().api_urls):
        url = md_text(health.url)
        if health.cannot_write:
            st.error(
                f"The serving API at {url} cannot store predictions: its prediction log's last "
                "write failed, and it answers predictions with 503 (not stored) until a write "
                f"succeeds. {health.pending:,} row(s) waiting, {health.failed_rows:,} refused "
                "so far. The database said:",
                icon=":material/database_off:",
            )
            st.code(health.error or "(no message)", language=None, wrap_lines=True)
        elif health.problem:
            st.caption(
                f":material/cloud_off: Serving API at {url}: {md_text(health.problem)}; "
                "whether its prediction log can write is unknown."
            )
