"""Retrain: pick what to train, set hyperparameters, and queue a job through the job action."""

from __future__ import annotations

import streamlit as st

from core.actions.jobs import enqueue_retrain
from core.ml.catalog import ARCHITECTURE_NAMES, DEFAULT_ARCHITECTURE, augmentation_layers
from core.ml.hparams import LIMITS, OPTIMIZERS, PRECISIONS, SCHEDULES, Hyperparameters
from core.training.jobs import JobRequestError
from dashboard import ui
from db.errors import NotFoundError, RegistryError
from db.models import DEVICE_REQUESTS
from db.queries.lookups import (
    ChannelInfo,
    count_training_items,
    get_version,
    list_channels,
    list_datasets,
    list_models,
    list_workers,
    live_workers_for,
)
from db.queries.registry import version_choices

DEFAULTS = Hyperparameters()
# Number fields typed as text, so the one validator (Hyperparameters) names a bad entry.
TEXT_NUMBERS = {
    "learning_rate": ("Learning rate", "rt_learning_rate"),
    "weight_decay": ("Weight decay", "rt_weight_decay"),
    "label_smoothing": ("Label smoothing", "rt_label_smoothing"),
    "warmup_fraction": ("Warm-up (share of steps)", "rt_warmup_fraction"),
}
PREFILL_PARAMS = ("channel", "model", "base", "include_feedback")


def apply_query_prefill() -> None:
    """Fill the selections from ?channel= (slug or id), ?model=, ?base=, ?include_feedback=.

    They are applied when the page is entered and whenever they change, never on the page's
    own reruns (that would undo the manager's edits). Streamlit drops a page's widget state
    when another page runs, so a missing `rt_model` means the page is being entered afresh.
    """
    query = {name: st.query_params.get(name) for name in PREFILL_PARAMS}
    entering = "rt_model" not in st.session_state
    if not entering and st.session_state.get("rt_applied_query") == query:
        return
    st.session_state["rt_applied_query"] = query
    channel = _channel_named(query["channel"])
    if channel is not None:
        st.session_state["rt_channel"] = channel.id
        on_channel_change()
    model_id, base_id = ui.int_param("model"), ui.int_param("base")
    if model_id is not None:
        st.session_state["rt_model"] = model_id
    if base_id is not None:
        _prefill_base(base_id, model_given=model_id is not None)
    if query["include_feedback"] in ("1", "true"):
        st.session_state["rt_include_feedback"] = True


def _channel_named(value: str | None) -> ChannelInfo | None:
    if not value:
        return None
    channels = ui.read(list_channels)
    found = next((c for c in channels if value in (c.slug, str(c.id))), None)
    if found is None:
        st.warning(f"There is no channel {value!r}; pick one below.")
    return found


def _prefill_base(base_id: int, *, model_given: bool) -> None:
    try:
        base = ui.read(get_version, version_id=base_id)
    except NotFoundError:
        st.warning(f"Version id {base_id} does not exist; pick a base version below.")
        return
    st.session_state["rt_base"] = base.id
    if not model_given:
        st.session_state["rt_model"] = base.model_id


def on_channel_change() -> None:
    channel = {c.id: c for c in ui.read(list_channels)}.get(st.session_state.get("rt_channel"))
    if channel is not None:
        st.session_state["rt_model"] = channel.model_id
        st.session_state["rt_dataset"] = channel.dataset_id
        st.session_state["rt_base"] = channel.production_version_id


def target_selection() -> dict:
    """Channel, model, base version and dataset (outside the form: each narrows the next)."""
    channels = {c.id: c for c in ui.read(list_channels)}
    models = {m.id: m.name for m in ui.read(list_models)}
    datasets = {d.id: d.name for d in ui.read(list_datasets)}
    c1, c2, c3, c4 = st.columns(4)
    channel_names = {i: c.name for i, c in channels.items()}
    channel_id = ui.optional_select(
        c1, "Channel (optional)", channel_names, "rt_channel", "—", on_change=on_channel_change
    )
    if st.session_state.get("rt_model") not in models:
        st.session_state["rt_model"] = next(iter(models), None)
    model_id = ui.select(c2, "Model", models, "rt_model", format_func=models.get)
    bases = dict(ui.read(version_choices, model_id=model_id)) if model_id else {}
    if st.session_state.get("rt_base") not in (None, ui.NOTHING, *bases):
        st.session_state["rt_base"] = None
    base_id = ui.optional_select(c3, "Start from", bases, "rt_base", "scratch (new weights)")
    if st.session_state.get("rt_dataset") not in datasets:
        st.session_state["rt_dataset"] = next(iter(datasets), None)
    dataset_id = ui.select(c4, "Dataset", datasets, "rt_dataset", format_func=datasets.get)
    return {
        "channel_id": channel_id,
        "model_id": model_id,
        "base_version_id": base_id,
        "dataset_id": dataset_id,
    }


def worker_notice() -> None:
    workers = [w for w in ui.read_fresh(list_workers) if w.alive]
    gpu = [w for w in workers if w.gpus]
    if not workers:
        st.warning(
            "No worker is online: a queued job will wait until one starts (`channelhub worker`).",
            icon=":material/warning:",
        )
    else:
        st.caption(f"{len(workers)} worker(s) online, {len(gpu)} with a GPU.")


def _base_defaults(base_id: int | None) -> tuple[dict, str]:
    if base_id is None:
        return DEFAULTS.to_dict(), DEFAULT_ARCHITECTURE
    base = ui.read(get_version, version_id=base_id)
    return {**DEFAULTS.to_dict(), **base.hyperparameters}, base.architecture


def _limits(name: str) -> str:
    low, high = LIMITS[name]
    return f"{low:g} to {high:g}"


def _number(slots: dict, hp: dict, name: str, label: str, key: str) -> int:
    value = st.number_input(label, value=int(hp[name]), step=1, key=key, help=_limits(name))
    slots[name] = st.empty()
    return value


def _text_number(slots: dict, hp: dict, name: str) -> str:
    label, key = TEXT_NUMBERS[name]
    value = st.text_input(label, value=f"{hp[name]:g}", key=key, help=_limits(name))
    slots[name] = st.empty()
    return value


def _choice(slots: dict, name: str, label: str, options: tuple, current: str, key: str) -> str:
    value = ui.select(st, label, options, key, default=current)
    slots[name] = st.empty()
    return value


def hyperparameter_fields(target: dict, slots: dict) -> dict:
    """The hyperparameter widgets, each with an empty slot below it for its message."""
    hp, architecture = _base_defaults(target["base_version_id"])
    a, b, c, d = st.columns(4)
    with a:
        values = {
            "architecture": _choice(
                slots,
                "architecture",
                "Architecture",
                ARCHITECTURE_NAMES,
                architecture,
                "rt_architecture",
            ),
            "epochs": _number(slots, hp, "epochs", "Epochs", "rt_epochs"),
        }
    with b:
        values["batch_size"] = _number(
            slots, hp, "batch_size", "Batch size (0 = for the device)", "rt_batch_size"
        )
        values["learning_rate"] = _text_number(slots, hp, "learning_rate")
    with c:
        values["optimizer"] = _choice(
            slots, "optimizer", "Optimizer", OPTIMIZERS, hp["optimizer"], "rt_optimizer"
        )
        values["early_stopping_patience"] = _number(
            slots, hp, "early_stopping_patience", "Early stopping patience (0 = off)", "rt_patience"
        )
    with d:
        values["seed"] = _number(slots, hp, "seed", "Seed", "rt_seed")
        values["augmentation"] = st.checkbox(
            "Augmentation", value=bool(hp["augmentation"]), key="rt_augmentation"
        )
    augmentation_notice(target["dataset_id"])
    return values | recipe_fields(hp, slots)


def augmentation_notice(dataset_id: int | None) -> None:
    """What the augmentation applies to the chosen dataset, and why flips are in or out."""
    dataset = next((d for d in ui.read(list_datasets) if d.id == dataset_id), None)
    if dataset is None:
        return
    keeps = "keep" if dataset.flip_safe else "do not keep"
    # core.ml.mirror: where mirrors keep the class, the saved model averages the two.
    averaged = " The model then answers with the mean for each image and its mirror."
    st.caption(
        f"Augmentation on {dataset.name}: {', '.join(augmentation_layers(dataset.flip_safe))} "
        f"(mirrored images {keeps} their class; change it with `channelhub datasets set-flip`)."
        + (averaged if dataset.flip_safe else "")
    )


def recipe_fields(hp: dict, slots: dict) -> dict:
    """The schedule, regularisation, precision and time budget of the recipe."""
    a, b, c, d = st.columns(4)
    with a:
        values = {
            "time_budget_minutes": st.number_input(
                "Time budget, minutes (0 = none)",
                value=float(hp["time_budget_minutes"]),
                step=1.0,
                key="rt_time_budget",
                help="the epochs are fitted so the whole "
                "schedule ends within it; Epochs is then the most it may use",
            )  # fmt: skip
        }
        slots["time_budget_minutes"] = st.empty()
        values["schedule"] = _choice(
            slots, "schedule", "Schedule", SCHEDULES, hp["schedule"], "rt_schedule"
        )
    with b:
        values["warmup_fraction"] = _text_number(slots, hp, "warmup_fraction")
    with c:
        values["weight_decay"] = _text_number(slots, hp, "weight_decay")
        values["label_smoothing"] = _text_number(slots, hp, "label_smoothing")
    with d:
        values["precision"] = _choice(
            slots, "precision", "Precision", PRECISIONS, hp["precision"], "rt_precision"
        )
    return values


def _as_number(text: object) -> object:
    """The learning-rate box's text as a number; other text stays text, so the one
    validator (Hyperparameters) names it."""
    try:
        return float(str(text).strip())
    except ValueError:
        return text


def submit_job(target: dict, values: dict, slots: dict) -> None:
    """Queue through the job action; each refused field's message goes below that field."""
    hyperparameters = {name: values[name] for name in DEFAULTS.to_dict()}
    for name in TEXT_NUMBERS:
        hyperparameters[name] = _as_number(values[name])
    try:
        job = ui.perform(
            enqueue_retrain, **target, architecture=values["architecture"],
            hyperparameters=hyperparameters, include_feedback=values["include_feedback"],
            device_request=values["device_request"], note=values["note"],
        )  # fmt: skip
    except JobRequestError as exc:
        errors = exc.field_errors
    except RegistryError as exc:  # e.g. the acting user's role may not queue retrains
        errors = {"_form": str(exc)}
    else:
        return queued_message(job)
    for name, message in errors.items():
        (slots.get(name) or slots["_form"]).error(message, icon=":material/error:")


def queued_message(job) -> None:
    st.success(
        f"Queued job #{job.id}: {job.model_name}, {job.architecture}, "
        f"{job.hyperparameters.get('epochs')} epochs on {job.device_request}"
        + (
            f", within {job.hyperparameters['time_budget_minutes']:g} minutes."
            if job.hyperparameters.get("time_budget_minutes")
            else "."
        )
    )
    ui.job_link(job.id, f"Watch job #{job.id}", ":material/monitoring:")
    takers = ui.read_fresh(live_workers_for, device_request=job.device_request)
    if not takers:
        st.warning(
            f"No live worker takes {job.device_request!r} jobs right now, so this job "
            "waits in the queue. Start `channelhub worker`"
            + (" on a machine with a GPU." if job.device_request == "gpu" else "."),
            icon=":material/warning:",
        )


def retrain_form(target: dict) -> None:
    feedback_total = ui.read(count_training_items, model_id=target["model_id"])
    feedback_new = ui.read(count_training_items, model_id=target["model_id"], unused_only=True)
    with st.form("retrain", border=True):
        slots: dict = {"_form": st.empty()}
        values = hyperparameter_fields(target, slots)
        values["include_feedback"] = st.checkbox(
            f"Include annotated feedback: adds {feedback_total:,} items "
            f"({feedback_new:,} not trained on yet)",
            key="rt_include_feedback",
        )
        values["device_request"] = st.radio(
            "Device",
            DEVICE_REQUESTS,
            horizontal=True,
            key="rt_device",
            format_func={"auto": "auto (GPU if free)", "gpu": "GPU", "cpu": "CPU"}.get,
        )
        slots["device_request"] = st.empty()
        values["note"] = st.text_area("Note", key="rt_note", placeholder="Why this retrain?")
        refused = ui.why_not("manager")
        submitted = st.form_submit_button(
            "Queue retrain", type="primary", disabled=bool(refused), help=refused
        )
    if refused:
        st.caption(f":material/lock: {refused}")
    if submitted:
        submit_job(target, values, slots)


def main() -> None:
    ui.page_header("Retrain", "Queue a training job; a worker picks it up.")
    try:
        apply_query_prefill()
        target = target_selection()
    except Exception as exc:  # noqa: BLE001
        ui.show_failure("read the registry", exc)
        return
    if target["model_id"] is None or target["dataset_id"] is None:
        st.info("Register a model and a dataset first (`channelhub demo` creates both).")
        return
    worker_notice()
    retrain_form(target)


main()
