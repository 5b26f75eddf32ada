"""Jobs: the training queue and history, one job's live progress, and the workers panel."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.actions.jobs import cancel_job, reap_lost_jobs, retry_job
from dashboard import charts, ui
from dashboard.versions import holdout_label, holdout_refusal
from db.models import ACTIVE_JOB_STATUSES, JOB_STATUSES, utcnow
from db.queries.lookups import (
    RETRYABLE,
    JobInfo,
    count_jobs,
    get_job,
    get_version,
    job_epochs,
    job_logs,
    list_channels,
    list_jobs,
    list_workers,
)

PAGE_SIZE = 25
LIVE_REFRESH_S = 2.0


def workers_panel() -> None:
    workers = ui.read_fresh(list_workers)
    st.subheader("Workers")
    if not workers:
        st.warning(
            "No worker has reported in the last 24 hours: queued jobs wait until one "
            "starts (`channelhub worker`).",
            icon=":material/warning:",
        )
        return
    now = utcnow()
    st.dataframe(
        pd.DataFrame(
            {
                "worker": [w.name for w in workers],
                "host": [w.host for w in workers],
                "status": [w.status for w in workers],
                "GPUs": [", ".join(w.gpus) or "none (CPU)" for w in workers],
                "takes": [", ".join(w.accepts) for w in workers],
                "heartbeat": [
                    f"{(now - w.heartbeat_at).total_seconds():.0f} s ago" for w in workers
                ],
                "current job": [
                    f"#{w.current_job_id}" if w.current_job_id else "idle" for w in workers
                ],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def jobs_table() -> list[JobInfo]:
    statuses = st.multiselect("Status", JOB_STATUSES, key="jobs_status", placeholder="all")
    total = ui.read_fresh(count_jobs, statuses=tuple(statuses))
    pages = ui.page_count(total, PAGE_SIZE)
    page = st.session_state.get("jobs_page", 1)
    jobs = ui.read_fresh(
        list_jobs,
        statuses=tuple(statuses),
        limit=PAGE_SIZE,
        offset=(min(page, pages) - 1) * PAGE_SIZE,
    )
    st.caption(f"{total:,} jobs · page {min(page, pages)} of {pages}")
    if not jobs:
        st.info("No training job yet. Queue one on the Retrain page.")
        return []
    st.dataframe(
        pd.DataFrame(
            {
                "job": [f"jobs?job={j.id}" for j in jobs],
                "id": [j.id for j in jobs],
                "status": [j.status for j in jobs],
                "progress": [j.progress for j in jobs],
                "model": [j.model_name for j in jobs],
                "from": [f"v{j.base_version}" if j.base_version else "scratch" for j in jobs],
                "result": [f"v{j.result_version}" if j.result_version else "" for j in jobs],
                "channel": [j.channel_slug or "" for j in jobs],
                "who": [j.requested_by for j in jobs],
                "queued": [j.created_at for j in jobs],
                "device": [j.device or j.device_request for j in jobs],
                "worker": [j.worker_name or "" for j in jobs],
            }
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "job": st.column_config.LinkColumn("open", display_text="details"),
            "progress": st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent"),
            "queued": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    ui.page_input(pages, "jobs_page")
    return jobs


def progress_view(job: JobInfo) -> None:
    epochs = ui.read_fresh(job_epochs, job_id=job.id)
    label = f"epoch {job.current_epoch}/{job.total_epochs}" if job.total_epochs else job.status
    st.progress(min(max(job.progress, 0.0), 1.0), text=label)
    if epochs:
        st.plotly_chart(charts.training_curves({f"job #{job.id}": epochs}), key=f"live-{job.id}")
    logs = ui.read_fresh(job_logs, job_id=job.id, limit=12)
    if logs:
        st.code("\n".join(f"{t:%H:%M:%S} {lvl:5} {msg}" for t, lvl, msg in logs), language=None)


def mark_lost_jobs() -> None:
    """A job whose worker died shows as lost, not running, even with no controller or worker
    up: reading the queue is one of the places that notices (the action writes only then)."""
    if reap_lost_jobs(actor=ui.acting_actor()):
        ui.clear_reads()


def live_job(job_id: int) -> None:
    mark_lost_jobs()
    job = ui.read_fresh(get_job, job_id=job_id)
    if job.status not in ACTIVE_JOB_STATUSES:
        st.rerun()  # finished while we watched: redraw the whole page, which stops the polling
    st.markdown(
        f"{ui.badge(job.status)} on **{job.worker_name or 'no worker yet'}**"
        + (" · cancel requested" if job.cancel_requested else "")
    )
    progress_view(job)
    if not job.cancel_requested and st.button(
        "Cancel job", key="job_cancel", icon=":material/cancel:",
        **ui.gate("manager"),
    ):  # fmt: skip
        if ui.act(cancel_job, job_id=job.id):
            st.rerun()


def finished_job(job: JobInfo) -> None:
    if job.status == "succeeded" and job.result_version_id:
        st.success(f"Finished: produced {job.model_name} v{job.result_version}.")
        ui.version_link(job.result_version_id, f"Open {job.model_name} v{job.result_version}")
        against_production(job)
    elif job.status in RETRYABLE:
        st.error(f"Job {job.status}: {job.error or 'no error recorded'}")
        if st.button("Retry job", key="job_retry", icon=":material/replay:",
                     **ui.gate("manager")):  # fmt: skip
            new = ui.act(retry_job, job_id=job.id)
            if new:
                st.query_params["job"] = str(new.id)
                st.rerun()
    progress_view(job)


def against_production(job: JobInfo) -> None:
    channel = next((c for c in ui.read(list_channels) if c.slug == job.channel_slug), None)
    if channel is None or not channel.production_version_id:
        return
    if channel.production_version_id == job.result_version_id:
        st.markdown(f"This version is now **{channel.name}**'s production version.")
        return
    new = ui.read(get_version, version_id=job.result_version_id)
    prod = ui.read(get_version, version_id=channel.production_version_id)
    st.markdown(f"Against **{channel.name}**'s production version {prod.label}:")
    refusal = holdout_refusal([new, prod])
    if refusal:
        st.warning(refusal, icon=":material/block:")
        return
    st.caption(f"Both scored on {holdout_label(new)}")
    metrics = ("accuracy", "f1_macro", "loss")
    cols = st.columns(len(metrics))
    for col, m in zip(cols, metrics, strict=True):
        a, b = new.evaluation.get(m), prod.evaluation.get(m)
        delta = (
            None if a is None or b is None else f"{a - b:+.2%}" if m != "loss" else f"{a - b:+.4f}"
        )
        col.metric(
            m,
            ui.pct(a) if m != "loss" else f"{a:.4f}" if a is not None else "—",
            delta,
            delta_color="inverse" if m == "loss" else "normal",
        )
    st.page_link(
        ui.MODELS,
        query_params={"compare": f"{prod.id},{new.id}"},
        label="Compare in detail",
        icon=":material/compare:",
    )


def job_detail(job_id: int) -> None:
    job = ui.read_found(get_job, fresh=True, job_id=job_id)
    if job is None:
        return
    base = f"v{job.base_version}" if job.base_version else "scratch"
    st.subheader(f"Job #{job.id}: {job.model_name} {job.architecture} from {base}")
    st.caption(
        f"asked by {job.requested_by} on {ui.when(job.created_at)} · dataset "
        f"{job.dataset_name} · device {job.device or job.device_request}"
        + (" · with annotated feedback" if job.include_feedback else "")
        + (f" · note: {job.note}" if job.note else "")
    )
    if job.status in ACTIVE_JOB_STATUSES:
        st.fragment(live_job, run_every=LIVE_REFRESH_S)(job.id)
    else:
        finished_job(job)
    with st.expander("Hyperparameters"):
        st.dataframe(pd.DataFrame([job.hyperparameters]), hide_index=True)


def main() -> None:
    ui.page_header("Jobs", "Training queue and history, live progress, and workers.")
    try:
        mark_lost_jobs()
        jobs = jobs_table()
        chosen = ui.int_param("job")
        if chosen is None:
            chosen = next((j.id for j in jobs if j.status in ACTIVE_JOB_STATUSES), None)
        if chosen is not None:
            job_detail(chosen)
        workers_panel()
    except Exception as exc:  # noqa: BLE001 - a message, never a traceback
        ui.show_failure("show the jobs", exc)


main()
