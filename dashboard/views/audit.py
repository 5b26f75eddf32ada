"""Audit: who did what to which object, when, before and after, and why — filtered and
exported as CSV. Every cell is plain text: names and reasons come from people and the API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboard import ui
from db.queries.audit import AuditChoices, AuditFilter, audit_choices, audit_rows, audit_trail

ANY = "(any)"
LIMIT = 2000
# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _pick(label: str, options: list[str], key: str) -> str | None:
    chosen = ui.select(st, label, [ANY, *options], key)
    return None if chosen == ANY else chosen


def _nouns(actions: list[str]) -> list[str]:
    """Each noun (`channel`) before its actions (`channel.promote`), so either can be chosen."""
    nouns = sorted({a.split(".", 1)[0] for a in actions if "." in a})
    return sorted(set(nouns) | set(actions))


def filters(choices: AuditChoices) -> AuditFilter:
    """The filter widgets; the default is the last 30 days of everything."""
    person, action, kind, obj = st.columns(4)
    with person:
        actor = _pick("Person", choices.actors, "audit_actor")
    with action:
        action_name = _pick("Action", _nouns(choices.actions), "audit_action")
    with kind:
        object_type = _pick("Object type", choices.object_types, "audit_object_type")
    with obj:
        object_id = st.text_input("Object id", key="audit_object_id").strip() or None
    today = datetime.now(UTC).date()
    days = st.date_input(
        "Between (UTC)", value=(today - timedelta(days=30), today), key="audit_days"
    )
    start, end = (days[0], days[-1]) if isinstance(days, tuple | list) and days else (None, None)
    return AuditFilter(
        actor=actor,
        action=action_name,
        object_type=object_type,
        object_id=object_id,
        since=_midnight(start),
        until=_midnight(end + timedelta(days=1)) if isinstance(end, date) else None,
    )


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


def as_csv(rows: list[dict[str, str]]) -> bytes:
    """The rows as CSV; a cell a spreadsheet would run as a formula is quoted with '."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: f"'{v}" if str(v).startswith(FORMULA_STARTS) else v for k, v in row.items()}
            )
    return out.getvalue().encode()


def main() -> None:
    ui.page_header("Audit", "Who did what to which object, when, before and after, and why.")
    if not ui.role_note("manager"):
        return
    try:
        choices = ui.read_fresh(audit_choices)
        where = filters(choices)
        rows = audit_rows(ui.read_fresh(audit_trail, where=where, limit=LIMIT))
    except Exception as exc:  # noqa: BLE001 - a clear message, never a traceback
        ui.show_failure("read the audit trail", exc)
        return
    shown = f"{len(rows)} events" + (f" (the newest {LIMIT})" if len(rows) == LIMIT else "")
    st.caption(shown + "; audit rows cannot be changed or deleted.")
    st.download_button(
        "Download CSV",
        data=as_csv(rows),
        file_name="channelhub-audit.csv",
        mime="text/csv",
        icon=":material/download:",
        key="audit_csv",
        disabled=not rows,
    )
    st.dataframe(rows, hide_index=True, width="stretch")


main()
