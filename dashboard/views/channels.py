"""Channels: create and edit, pause and resume, rotate the API key, set the serving versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from core.actions import channels as actions
from core.actions.channels import ChannelSpec
from dashboard import gate_view, objectives, timeline, ui
from db.errors import RegistryError
from db.models import CHANNEL_KINDS
from db.queries.lookups import ChannelInfo, list_channels, list_datasets, list_events, list_models
from db.queries.registry import version_choices

NEW = "__new__"
# Which form field a repository message is about (the message names it).
FIELD_WORDS = (
    ("slug", "slug"),
    ("name", "name"),
    ("kind", "kind"),
    ("dataset", "dataset"),
    ("model", "model"),
    ("accuracy", "slo_min_accuracy"),
    ("latency", "slo_max_p95_ms"),
    ("rate limit", "rate_limit_per_s"),
)
# Grace periods offered when rotating a key: how long the old key keeps working.
GRACE_CHOICES = {"1 hour": 3600, "24 hours": 86400, "7 days": 7 * 86400, "none (stops now)": 0}


def version_labels() -> dict[int, str]:
    """Version id -> "model vN · offline acc", so tables name versions as people do."""
    return dict(ui.read(version_choices, limit=1000))


def channels_table(channels: list[ChannelInfo]) -> None:
    labels = version_labels()
    st.dataframe(
        pd.DataFrame(
            {
                "channel": [f"channels?channel={c.slug}" for c in channels],
                "name": [c.name for c in channels],
                "kind": [c.kind for c in channels],
                "status": [c.status for c in channels],
                "model": [c.model_name or "" for c in channels],
                "production": [labels.get(c.production_version_id, "—") for c in channels],
                "candidate": [
                    f"{labels.get(c.candidate_version_id)} ({c.candidate_traffic:.0%} of traffic)"
                    if c.candidate_version_id
                    else ""
                    for c in channels
                ],
                "min accuracy": [ui.pct(c.slo_min_accuracy) for c in channels],
                "max p95": [ui.ms(c.slo_max_p95_ms) for c in channels],
                "key": [f"{c.api_key_prefix}…" if c.api_key_prefix else "" for c in channels],
                "key last used": [_when(c.api_key_last_used_at) for c in channels],
            }
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "channel": st.column_config.LinkColumn("channel", display_text=r"channel=(.*)"),
        },
    )


def _when(at: datetime | None) -> str:
    return ui.when(at) if at else "never"


def _optional_select(column, label: str, names: dict, current: int | None, key: str):
    """`ui.optional_select` ("—" for none) preselecting `current`, else the first name."""
    default = current if current is None or current in names else next(iter(names), None)
    return ui.optional_select(column, label, names, key, none="—", default=default)


def slo_fields(current: ChannelInfo | None, slots: dict, sfx: str) -> dict:
    a, b = st.columns(2)
    accuracy = current.slo_min_accuracy if current else None
    min_accuracy = a.number_input(
        "SLO: minimum offline accuracy (%)", value=None if accuracy is None else accuracy * 100,
        step=0.5, key=f"ch_slo_accuracy_{sfx}", placeholder="none",
    )  # fmt: skip
    max_p95 = b.number_input(
        "SLO: maximum p95 latency (ms)", value=current.slo_max_p95_ms if current else None,
        step=10.0, key=f"ch_slo_p95_{sfx}", placeholder="none",
    )  # fmt: skip
    slots["slo_min_accuracy"], slots["slo_max_p95_ms"] = a.empty(), b.empty()
    rate = st.number_input(
        "Rate limit per API key (requests/s)", value=current.rate_limit_per_s if current else None,
        step=1.0, key=f"ch_rate_{sfx}", placeholder="unlimited",
    )  # fmt: skip
    slots["rate_limit_per_s"] = st.empty()
    return {
        "slo_min_accuracy": None if min_accuracy is None else min_accuracy / 100.0,
        "slo_max_p95_ms": max_p95,
        "rate_limit_per_s": rate,
    }


def settings_fields(current: ChannelInfo | None, slots: dict) -> dict:
    """Name, kind, dataset, model and SLOs; keys are per channel so each form keeps its values."""
    sfx = current.slug if current else "new"
    values: dict = {}
    if current is None:
        values["slug"] = st.text_input("Slug (used in API paths)", key="ch_slug", placeholder="web")
        slots["slug"] = st.empty()
    values["name"] = st.text_input(
        "Name", value=current.name if current else "", key=f"ch_name_{sfx}"
    )
    slots["name"] = st.empty()
    kind = current.kind if current else CHANNEL_KINDS[0]
    values["kind"] = ui.select(st, "Kind", CHANNEL_KINDS, f"ch_kind_{sfx}", default=kind)
    a, b = st.columns(2)
    datasets = {d.id: d.name for d in ui.read(list_datasets)}
    models = {m.id: m.name for m in ui.read(list_models)}
    values["dataset_id"] = _optional_select(
        a, "Dataset", datasets, current.dataset_id if current else None, f"ch_dataset_{sfx}"
    )
    values["model_id"] = _optional_select(
        b, "Model", models, current.model_id if current else None, f"ch_model_{sfx}"
    )
    slots["dataset"], slots["model"] = a.empty(), b.empty()
    return {**values, **slo_fields(current, slots, sfx)}


def show_refusal(exc: RegistryError, slots: dict) -> None:
    message = str(exc)
    field = next((f for word, f in FIELD_WORDS if word in message.lower() and f in slots), "_form")
    slots[field].error(message, icon=":material/error:")


def settings_form(current: ChannelInfo | None) -> None:
    with st.form(f"channel-{current.slug if current else NEW}"):
        slots: dict = {"_form": st.empty()}
        values = settings_fields(current, slots)
        submitted = st.form_submit_button(
            "Create channel" if current is None else "Save changes", type="primary", key="ch_save",
            **ui.gate("manager"),
        )  # fmt: skip
    if not submitted:
        return
    try:
        if current is None:
            slug = values.pop("slug")
            info, key = ui.perform(actions.create_channel, slug=slug, spec=ChannelSpec(**values))
            st.session_state["ch_new_key"] = (info.slug, key)
            st.query_params["channel"] = info.slug
        else:
            ui.perform(actions.update_channel, slug=current.slug, **values)
            ui.flash(f"Saved {current.slug}.")
    except RegistryError as exc:
        show_refusal(exc, slots)
        return
    st.rerun()


def status_and_key(c: ChannelInfo) -> None:
    left, right = st.columns(2)
    with left, st.container(border=True):
        st.markdown(
            f"**Status** {ui.badge(c.status)}"
            + (f" — {ui.md_text(c.status_reason)}" if c.status_reason else "")
        )
        if c.status == "active":
            reason = st.text_input("Reason shown to API clients", key="ch_pause_reason")
            if st.button("Pause channel", key="ch_pause", icon=":material/pause:",
                         **ui.gate("manager")):  # fmt: skip
                if ui.act(actions.pause_channel, slug=c.slug, reason=reason):
                    st.rerun()
        elif st.button("Resume channel", key="ch_resume", icon=":material/play_arrow:",
                       **ui.gate("manager")):  # fmt: skip
            if ui.act(actions.resume_channel, slug=c.slug):
                st.rerun()
    with right, st.container(border=True):
        st.markdown(f"**API key** `{c.api_key_prefix or 'none'}…`")
        st.caption(f"Last used {_when(c.api_key_last_used_at)}")
        if c.previous_key_expires_at and c.previous_key_expires_at > datetime.now(UTC):
            st.caption(f"The previous key works until {_when(c.previous_key_expires_at)}")
        shown = st.session_state.pop("ch_new_key", None)
        if shown and shown[0] == c.slug:
            st.warning("Copy this key now: it is shown once and stored only as a hash.")
            st.code(shown[1], language=None)
        grace = st.selectbox("Old key keeps working for", list(GRACE_CHOICES), index=1,
                             key="ch_rotate_grace")  # fmt: skip
        if st.button(
            "Rotate key",
            key="ch_rotate",
            disabled=not ui.allowed("admin"),
            icon=":material/key:",
            help="Clients move to the new key while the old one still works.",
        ):
            key = ui.act(
                actions.rotate_channel_key, slug=c.slug, grace_seconds=GRACE_CHOICES[grace]
            )
            if key:
                st.session_state["ch_new_key"] = (c.slug, key)
                st.rerun()


SERVING_CHOICES = ("ch_promote", "ch_candidate", "ch_share")


def start_from_what_it_serves(slug: str) -> None:
    """Opening another channel drops the serving choices made on the previous one, so the
    selectors start from what this channel serves."""
    if st.session_state.get("ch_choices_for") != slug:
        for key in SERVING_CHOICES:
            st.session_state.pop(key, None)
        st.session_state["ch_choices_for"] = slug


def serving_versions(c: ChannelInfo) -> None:
    if c.model_id is None:
        return
    options = timeline.other_versions(c)
    start_from_what_it_serves(c.slug)
    current = c.candidate_version_id if c.candidate_version_id in options else None
    current_share = round(c.candidate_traffic * 100) if current is not None else 10
    with st.container(border=True):
        st.markdown("**Serving versions**")
        a, b, d = st.columns([2, 2, 1])
        prod = ui.optional_select(a, "Promote to production", options, "ch_promote", "—")
        refused = ui.why_not("manager")
        # A real option for "no canary" (None would read back as the default, the running one).
        choice = ui.select(
            b, "Candidate (canary)", [ui.NO_CANARY, *options], "ch_candidate",
            default=ui.NO_CANARY if current is None else current,
            format_func=lambda v: "none (end the canary)" if v == ui.NO_CANARY else options[v],
        )  # fmt: skip
        cand = None if choice == ui.NO_CANARY else choice
        share = d.number_input(
            "Traffic %", min_value=1, max_value=100, value=max(1, current_share), key="ch_share"
        )
        # What the channel does now: nothing to judge, nothing to set.
        unchanged = cand == c.candidate_version_id and (cand is None or share == current_share)
        # The gate's evidence before either button is pressed (below the selectors).
        go_prod, prod_override = gate_view.gate_check(c, prod, "channel.promote", "ch_gp")
        go_cand, cand_override = gate_view.gate_check(
            c, None if unchanged else cand, "channel.start_canary", "ch_gc"
        )
        if a.button(
            "Promote" + (" (override)" if prod_override else ""),
            key="ch_promote_go",
            disabled=prod is None or bool(refused) or not go_prod,
            help=refused,
        ):
            if ui.act(
                actions.promote_version, slug=c.slug, version_id=prod, override_reason=prod_override
            ):
                st.rerun()
        ending = cand is None and c.candidate_version_id is not None
        if b.button(
            ("End canary" if ending else "Set candidate")
            + (" (override)" if cand_override else ""),
            key="ch_candidate_go",
            disabled=bool(refused) or unchanged or not go_cand,
            help=refused or ("This is what the channel serves now." if unchanged else None),
        ):
            if cand is None:
                done = ui.act(actions.end_canary, slug=c.slug)
            else:
                done = ui.act(
                    actions.start_canary, slug=c.slug, version_id=cand, traffic=share / 100.0,
                    override_reason=cand_override,
                )  # fmt: skip
            if done:
                st.rerun()


def channel_detail(c: ChannelInfo) -> None:
    st.subheader(f"{ui.md_text(c.name)} `{c.slug}` {ui.badge(c.status)}")
    if c.production_version_id:
        ui.version_link(
            c.production_version_id,
            f"Production: {version_labels().get(c.production_version_id, '?')}",
            ":material/verified:",
        )
    objectives.open_alerts(c)
    status_and_key(c)
    serving_versions(c)
    timeline.channel_timeline_section(c)
    with st.expander("Edit settings"):
        settings_form(c)
    with st.expander("Live objectives and alerting"):
        objectives.objectives_form(c)
    events = ui.read(list_events, object_type="channel", object_id=c.slug, limit=20)
    if events:
        with st.expander(f"History ({len(events)})"):
            for e in events:
                st.markdown(
                    f"{ui.when(e.created_at)} · **{e.actor}** {e.action}"
                    + (f" `{e.details}`" if e.details else "")
                )


def main() -> None:
    ui.page_header("Channels", "The paths by which a model reaches its users.")
    try:
        channels = ui.read(list_channels)
        by_slug = {c.slug: c for c in channels}
        if channels:
            channels_table(channels)
        wanted = st.query_params.get("channel")
        options = [NEW, *by_slug]
        if (
            "ch_select" not in st.session_state
            or wanted in by_slug
            and st.session_state.get("ch_param") != wanted
        ):
            st.session_state["ch_param"] = wanted
            st.session_state["ch_select"] = (
                wanted if wanted in by_slug else (options[1] if channels else NEW)
            )
        slug = ui.select(
            st,
            "Channel",
            options,
            "ch_select",
            format_func=lambda s: "➕ New channel" if s == NEW else f"{by_slug[s].name} ({s})",
        )
        if slug == NEW:
            st.subheader("New channel")
            settings_form(None)
        else:
            channel_detail(by_slug[slug])
    except Exception as exc:  # noqa: BLE001 - a message, never a traceback
        ui.show_failure("show the channels", exc)


main()
