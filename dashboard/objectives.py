"""A channel's live objectives, alerting settings and open alerts (used by the Channels page)."""

from __future__ import annotations

import streamlit as st

from core.actions.alerts import acknowledge_alert
from core.actions.channels import set_objectives
from dashboard import ui
from db.errors import RegistryError
from db.queries.lookups import ChannelInfo, list_alerts


def objectives_form(c: ChannelInfo) -> None:
    """Error rate, drift, feedback count for accuracy, M of N, webhook: one form, one action."""
    o = c.objectives
    with st.form(f"objectives-{c.slug}"):
        a, b, d = st.columns(3)
        error_rate = a.number_input(
            "Max error rate (%)",
            0.0,
            100.0,
            step=0.5,
            placeholder="none",
            key="obj_errors",
            value=None if o.get("slo_max_error_rate") is None else o["slo_max_error_rate"] * 100,
        )
        drift = b.number_input(
            "Max drift (PSI)",
            0.0,
            10.0,
            value=o.get("slo_max_drift_psi"),
            step=0.05,
            placeholder="none",
            key="obj_drift",
        )
        min_feedback = d.number_input(
            "Annotated items to judge accuracy",
            1,
            1_000_000,
            value=o.get("slo_min_feedback") or 20,
            key="obj_feedback",
        )
        a, b, d = st.columns(3)
        m = a.number_input(
            "Alert after M breaching buckets", 1, 100, value=o.get("alert_m") or 3, key="obj_m"
        )
        n = b.number_input("… of the last N", 1, 100, value=o.get("alert_n") or 5, key="obj_n")
        min_count = d.number_input(
            "Requests per bucket for a drift verdict",
            1,
            10_000_000,
            value=o.get("drift_min_count") or 200,
            key="obj_min_count",
        )
        webhook = st.text_input(
            "Webhook URL (JSON POST on alert open and clear)",
            value=o.get("webhook_url") or "",
            key="obj_webhook",
        )
        reason = st.text_input("Why (audit log)", key="obj_reason")
        submitted = st.form_submit_button("Save objectives", key="obj_save")
    if not submitted:
        return
    values = {
        "slo_max_error_rate": None if error_rate is None else error_rate / 100.0,
        "slo_max_drift_psi": drift,
        "slo_min_feedback": int(min_feedback),
        "alert_m": int(m),
        "alert_n": int(n),
        "drift_min_count": int(min_count),
        "webhook_url": webhook or None,
    }
    try:
        ui.perform(set_objectives, slug=c.slug, reason=reason, **values)
    except RegistryError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    ui.flash(f"Saved the objectives of {c.slug}.")
    st.rerun()


def open_alerts(c: ChannelInfo) -> None:
    """Open alerts first, each with who acknowledged it or a button to do so."""
    alerts = ui.read(list_alerts, channel_id=c.id, open_only=True)
    if not alerts:
        st.caption("No open alerts (the controller checks the live objectives every 30 s).")
        return
    for alert in alerts:
        with st.container(border=True):
            st.markdown(f":red-badge[{alert.signal}] opened {ui.when(alert.opened_at)}")
            st.text(alert.message)
            if alert.acknowledged_by:
                st.caption(
                    f"Acknowledged by {alert.acknowledged_by} {ui.when(alert.acknowledged_at)}"
                )
            elif st.button("Acknowledge", key=f"ack_{alert.id}", icon=":material/done:"):
                if ui.act(acknowledge_alert, alert_id=alert.id):
                    st.rerun()
