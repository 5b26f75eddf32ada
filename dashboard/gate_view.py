"""The promotion gate on the Channels page: before a promotion or a canary is confirmed, the
gate's evidence side by side (holdout and feedback slice, overall and per class, with 95 %
intervals) and its verdict; on refusal the failed rules and an override reason (managers).
Stored decisions are drawn on the timeline the same way.

The comparison loads models, so core.gate is imported only when evidence is drawn."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.actions.gate import preview_gate
from dashboard import ui
from db.queries.gate import GateDecisionInfo
from db.queries.lookups import ChannelInfo

OUTCOME_BADGES = {"passed": ":green-badge[gate passed]", "overridden": ":orange-badge[overridden]",
                  "refused": ":red-badge[gate refused]"}  # fmt: skip


def evidence_tables(evidence: dict[str, Any], key: str) -> None:
    """Overall side-by-side table, per-class bars for the holdout and the slice, the rules."""
    from core.gate import check_lines, evidence_rows

    rows = evidence_rows(evidence)
    if rows:
        overall = pd.DataFrame([r for r in rows if r["class"] == "all"]).drop(columns="class")
        st.dataframe(overall, hide_index=True, width="stretch", key=f"{key}_overall")
    for part, title in (("holdout", "Holdout"), ("slice", "Feedback slice")):
        found = evidence.get(part) or {}
        bars = {
            role: {c["name"]: c["accuracy"] for c in (found.get(role) or {}).get("per_class", [])}
            for role in ("production", "candidate")
        }
        if any(bars.values()):
            st.caption(f"{title}: accuracy per class")
            st.bar_chart(pd.DataFrame(bars), stack=False, height=180)
    notes = [f"{k}: {evidence[k]['note']}" for k in ("holdout", "slice")
             if (evidence.get(k) or {}).get("note")]  # fmt: skip
    for line in notes + check_lines(evidence):
        st.text(line)
    per_class = [r for r in rows if r["class"] != "all"]
    if per_class:
        with st.popover("Per-class table"):
            st.dataframe(pd.DataFrame(per_class), hide_index=True, key=f"{key}_per_class")


def gate_check(
    c: ChannelInfo, version_id: int | None, action_name: str, key: str, offer_override: bool = True
) -> tuple[bool, str]:
    """Draw the gate's verdict on making `version_id` serve; returns (may proceed, override
    reason). No version chosen: (True, "") — nothing to judge (the button decides)."""
    if version_id is None:
        return True, ""
    try:
        found = ui.read(preview_gate, slug=c.slug, version_id=version_id, action_name=action_name)
    except Exception as exc:  # noqa: BLE001 - a message, never a traceback
        st.error(f"The gate could not compare this version: {exc}")
        return False, ""
    if found["exempt"]:
        st.caption(f":material/verified: Gate not run: {ui.md_text(found['exempt'])}")
        return True, ""
    verb = "promotion" if action_name == "channel.promote" else "canary"
    if found["passed"]:
        st.success(f"The gate passes this {verb}.", icon=":material/verified:")
    else:
        st.error("The gate refuses this " + verb + ":\n\n" + "\n".join(
            f"- {ui.md_text(f)}" for f in found["failed"]))  # fmt: skip
    with st.expander("Gate evidence", expanded=not found["passed"]):
        evidence_tables(found["evidence"], key)
    if found["passed"] or not offer_override:
        return found["passed"], ""
    reason = st.text_input(
        "Override reason (recorded with the change)", key=f"{key}_override",
        placeholder="required to override", disabled=not ui.allowed("manager"),
    )  # fmt: skip
    return bool(reason.strip()), reason.strip()


def decision_summary(d: GateDecisionInfo) -> str:
    """One line: outcome badge, who, and the override reason."""
    text = f"{OUTCOME_BADGES.get(d.outcome, d.outcome)} by {ui.md_text(d.actor)}"
    if d.override_reason:
        text += f" — override: {ui.md_text(d.override_reason)}"
    if d.failed:
        text += " · failed: " + "; ".join(ui.md_text(f) for f in d.failed)
    return text


def stored_decision(d: GateDecisionInfo, key: str) -> None:
    """A stored gate decision behind a timeline entry, in a popover."""
    with st.popover("Gate evidence", icon=":material/fact_check:", key=f"{key}_pop"):
        st.markdown(decision_summary(d))
        holdout = d.holdout_fingerprint
        st.caption(f"Holdout `{holdout[:12]}`" if holdout else "Holdouts not compared")
        evidence_tables(d.evidence, key)
