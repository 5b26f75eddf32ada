"""What each `channelhub` registry command does: collect the input, call one action (or read),
print the result. Imported only when such a command runs, so `channelhub --help` stays fast."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from core.actions import datasets as dataset_actions
from core.actions import feedback as feedback_actions
from core.actions import jobs as job_actions
from core.actions import models as model_actions
from core.actions.base import Actor
from core.ops.cli import CommandError
from db.engine import get_engine, session_scope
from db.queries import lookups
from db.queries.review import ReviewFilter, review_ids, review_page
from db.repo import models as model_repo
from db.repo.feedback import AnnotationInput, FeedbackInput
from db.settings import artifact_dir, current_user, database_url


def cli_actor() -> Actor:
    """Who acts from the command line: `CHANNELHUB_USER` or the OS user, as admin — a shell that
    can read the registry file could change anything in it anyway (README, "Sign-in and roles")."""
    return Actor(current_user(), "admin")


def run_and_say(change: Callable[..., Any], say: str | Callable[[Any], str], **fields: Any) -> int:
    """The whole of a command that only collects its input: run the action `change` as the
    CLI's user with `fields`, print `say` (or `say(result)`), exit status 0."""
    result = change(actor=cli_actor(), **fields)
    print(say(result) if callable(say) else say)
    return 0


def command_for(change: Callable[..., Any], said: str, *names: str) -> Callable[..., int]:
    """A command that passes its arguments `names` to the action `change` and prints `said`
    formatted with its arguments (`"{slug} is paused"`)."""

    def command(args: argparse.Namespace) -> int:
        fields = {name: getattr(args, name) for name in names}
        return run_and_say(change, said.format(**vars(args)), **fields)

    return command


def table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def cmd_init(args: argparse.Namespace) -> int:
    get_engine()
    artifact_dir().mkdir(parents=True, exist_ok=True)
    dataset = dataset_actions.register_builtin_dataset(actor=cli_actor())
    from sqlalchemy.engine import make_url

    # The URL may carry a PostgreSQL password: never print it.
    print(f"registry  {make_url(database_url()).render_as_string(hide_password=True)}")
    print(f"artifacts {artifact_dir()}")
    print(
        f"dataset   {dataset.name}: {dataset.num_samples} images, "
        f"{len(dataset.class_names)} classes"
    )
    return 0


def cmd_datasets_add(args: argparse.Namespace) -> int:
    if not args.name:
        raise CommandError("datasets add needs --name")
    info = dataset_actions.register_dataset(
        actor=cli_actor(),
        name=args.name,
        source=args.source,
        location=args.location,
        flip_safe=args.flip_safe,
    )
    flips = "mirror-safe" if info.flip_safe else "not mirror-safe"
    print(f"registered dataset {info.name} ({info.num_samples} images, {flips})")
    return 0


def cmd_datasets_set_flip(args: argparse.Namespace) -> int:
    with session_scope() as s:
        dataset = lookups.get_dataset_by_name(session=s, name=args.name)
    info = dataset_actions.set_dataset_flip_safe(
        actor=cli_actor(), dataset_id=dataset.id, flip_safe=args.flip_safe
    )
    print(
        f"dataset {info.name}: mirrored images {'keep' if info.flip_safe else 'change'} their class"
    )
    return 0


def cmd_datasets_list(args: argparse.Namespace) -> int:
    with session_scope() as s:
        rows = lookups.list_datasets(session=s)
    table(
        ["name", "source", "samples", "classes", "shape", "flips", "fingerprint"],
        [[d.name, d.source, d.num_samples, len(d.class_names), d.input_shape,
          "yes" if d.flip_safe else "no", d.fingerprint[:12]] for d in rows],
    )  # fmt: skip
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    with session_scope() as s:
        versions = model_repo.list_versions(session=s, limit=args.limit)
    table(
        ["id", "model", "version", "architecture", "accuracy", "device", "serving", "created"],
        [[v.id, v.model_name, v.version, v.architecture, _pct(v.accuracy), v.device,
          ",".join(v.serving_channels) or "-", f"{v.created_at:%Y-%m-%d %H:%M}"]
         for v in versions],
    )  # fmt: skip
    return 0


def cmd_models_create(args: argparse.Namespace) -> int:
    return run_and_say(
        model_actions.create_model, lambda info: f"created model {info.name} (id {info.id})",
        name=args.name, description=args.description,
    )  # fmt: skip


def cmd_enqueue(args: argparse.Namespace) -> int:
    from core.training.jobs import JobRequestError

    hp = {
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "learning_rate": args.learning_rate, "optimizer": args.optimizer,
        "augmentation": not args.no_augmentation, "early_stopping_patience": args.patience,
        "time_budget_minutes": args.time_budget_minutes,
    }  # fmt: skip
    actor = cli_actor()
    with session_scope() as s:
        model = model_actions.ensure_model(actor=actor, session=s, name=args.model)
        dataset = lookups.get_dataset_by_name(session=s, name=args.dataset)
        base_id = None
        if args.base_version is not None:
            base_id = model_repo.find_version(
                session=s, model_name=args.model, version=args.base_version
            ).id
        try:
            job = job_actions.enqueue_retrain(
                actor=actor, session=s, model_id=model.id, dataset_id=dataset.id,
                architecture=args.architecture, hyperparameters=hp, base_version_id=base_id,
                include_feedback=args.include_feedback, device_request=args.device,
                note=args.note,
            )  # fmt: skip
        except JobRequestError as exc:
            raise CommandError(str(exc)) from exc
    print(f"queued job {job.id}: {job.model_name} {job.architecture} on {job.dataset_name}")
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    job_actions.reap_lost_jobs(actor=cli_actor())
    with session_scope() as s:
        rows = lookups.list_jobs(session=s, limit=args.limit)
    table(
        ["id", "status", "model", "arch", "epoch", "device", "by", "created", "result/error"],
        [[j.id, j.status, j.model_name, j.architecture, f"{j.current_epoch}/{j.total_epochs}",
          j.device or j.device_request, j.requested_by, f"{j.created_at:%m-%d %H:%M}",
          f"v{j.result_version}" if j.result_version else (j.error or "")[:50]] for j in rows],
    )  # fmt: skip
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with session_scope() as s:
        job = lookups.get_job(session=s, job_id=args.job_id)
        logs = lookups.job_logs(session=s, job_id=args.job_id, limit=20)
    print(json.dumps({k: str(v) for k, v in job.__dict__.items()}, indent=2))
    for at, level, message in logs:
        print(f"{at:%H:%M:%S} {level:5} {message}")
    return 0


def cmd_jobs_change(args: argparse.Namespace) -> int:
    change = {"cancel": job_actions.cancel_job, "retry": job_actions.retry_job}[args.verb]
    return run_and_say(
        change, lambda job: f"job {job.id}: {job.status}", job_id=args.job_id, reason=args.reason
    )


def cmd_workers(args: argparse.Namespace) -> int:
    with session_scope() as s:
        rows = lookups.list_workers(session=s, include_stopped=args.all)
    table(
        ["id", "name", "host", "pid", "gpus", "accepts", "status", "job", "heartbeat"],
        [[w.id, w.name, w.host, w.pid, ",".join(w.gpus) or "-", ",".join(w.accepts),
          w.status if w.alive or w.status != "online" else "unresponsive",
          w.current_job_id or "-", f"{w.heartbeat_at:%m-%d %H:%M:%S}"] for w in rows],
    )  # fmt: skip
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    with session_scope() as s:
        rows = lookups.list_events(
            session=s, object_type=args.object_type, object_id=args.object_id,
            actor=args.actor, action=args.action, limit=args.limit,
        )  # fmt: skip
    table(
        ["id", "when", "actor", "action", "object", "details"],
        [[e.id, f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.actor, e.action,
          f"{e.object_type}:{e.object_id}", json.dumps(e.details, default=str)[:80]]
         for e in rows],
    )  # fmt: skip
    return 0


def cmd_feedback_list(args: argparse.Namespace) -> int:
    filters = _review_filter(args)
    with session_scope() as s:
        rows, total = review_page(session=s, filters=filters, page=0, page_size=args.limit)
    table(
        ["id", "channel", "version", "predicted", "conf", "rating", "claimed", "status", "at"],
        [[r.id, r.channel_slug, r.version_label, r.predicted_class, f"{r.confidence:.2f}",
          r.rating, "-" if r.claimed_class is None else r.claimed_class, r.review_status,
          f"{r.created_at:%m-%d %H:%M}"] for r in rows],
    )  # fmt: skip
    print(f"{len(rows)} of {total} matching items")
    return 0


def _review_filter(args: argparse.Namespace) -> ReviewFilter:
    channel_id = None
    if args.channel:
        with session_scope() as s:
            channel_id = lookups.get_channel(session=s, slug=args.channel).id
    status = None if args.status == "any" else args.status
    return ReviewFilter(channel_id=channel_id, rating=args.rating, status=status)


def _tags(text: str) -> list[str]:
    return [t for t in text.split(",") if t.strip()]


def cmd_feedback_annotate(args: argparse.Namespace) -> int:
    info = feedback_actions.annotate_feedback(
        actor=cli_actor(),
        feedback_id=args.feedback_id,
        annotation=AnnotationInput(
            verdict=args.verdict, true_class=args.true_class, tags=_tags(args.tags), note=args.note
        ),
    )
    label = "" if info.true_class is None else f" (class {info.true_class})"
    print(f"feedback {info.feedback_id}: {info.verdict}{label} by {info.author}")
    return 0


def _chosen_feedback(args: argparse.Namespace) -> list[int]:
    """The ids given, else the filtered queue's first --limit items."""
    ids = list(args.ids)
    if not ids:
        if not (args.channel or args.rating or args.status != "pending"):
            raise CommandError("name feedback ids, or filter with --channel/--rating/--status")
        with session_scope() as s:
            ids = review_ids(session=s, filters=_review_filter(args), limit=args.limit)
    return ids


def _on_chosen_feedback(
    args: argparse.Namespace, change: Callable[..., Any], say: Callable[[Any], str], **fields: Any
) -> int:
    """Run the annotating action `change` on the chosen feedback (see `_chosen_feedback`)."""
    ids = _chosen_feedback(args)
    if not ids:
        print("no feedback matches; nothing annotated")
        return 0
    return run_and_say(change, say, feedback_ids=ids, **fields)


def cmd_feedback_accept(args: argparse.Namespace) -> int:
    def say(result: Any) -> str:
        return (
            f"accepted the suggestion on {len(result.applied)} items; skipped {len(result.skipped)}"
        )

    return _on_chosen_feedback(args, feedback_actions.accept_suggestions, say, note=args.note)


def cmd_feedback_bulk(args: argparse.Namespace) -> int:
    def say(result: Any) -> str:
        stored = f"stored {args.verdict} on {len(result.applied)} items; "
        skips = [f"  skipped {reason}" for reason in result.skipped[:10]]
        return "\n".join([f"{stored}skipped {len(result.skipped)}", *skips])

    return _on_chosen_feedback(
        args, feedback_actions.bulk_annotate, say,
        annotation=AnnotationInput(
            verdict=args.verdict, true_class=args.true_class, tags=_tags(args.tags), note=args.note
        ),
    )  # fmt: skip


def cmd_feedback_submit(args: argparse.Namespace) -> int:
    with session_scope() as s:
        channel = lookups.get_channel(session=s, slug=args.channel)
        classes = (
            len(lookups.get_dataset(session=s, dataset_id=channel.dataset_id).class_names)
            if channel.dataset_id
            else None
        )
    feedback = FeedbackInput(
        args.prediction_id, channel.id, args.rating, args.claimed_class, args.comment, classes
    )
    info = feedback_actions.submit_feedback(actor=cli_actor(), feedback=feedback)
    print(f"feedback {info.id} on prediction {info.prediction_id}: {info.rating}")
    return 0
