"""What each `channelhub channel …` command does: one channel action each, or the list."""

from __future__ import annotations

import argparse
from datetime import datetime

from core.actions import channels as actions
from core.ops.commands import CommandError, cli_actor, command_for, run_and_say, table
from db.engine import session_scope
from db.queries import lookups
from db.repo.channels import ChannelSpec


def cmd_list(args: argparse.Namespace) -> int:
    with session_scope() as s:
        rows = lookups.list_channels(session=s)
    table(
        ["slug", "name", "kind", "status", "model", "production", "candidate", "key",
         "key last used", "rate limit"],
        [[c.slug, c.name, c.kind, c.status, c.model_name or "-",
          c.production_version_id or "-",
          f"{c.candidate_version_id} ({c.candidate_traffic:.0%})" if c.candidate_version_id
          else "-", f"{c.api_key_prefix}…", _when(c.api_key_last_used_at),
          f"{c.rate_limit_per_s:g}/s" if c.rate_limit_per_s else "-"] for c in rows],
    )  # fmt: skip
    return 0


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"


def _rate_limit(args: argparse.Namespace) -> dict[str, float | None]:
    """--rate-limit as given; 'none' removes the limit."""
    raw = getattr(args, "rate_limit", None)
    if raw is None:
        return {}
    if raw.strip().lower() == "none":
        return {"rate_limit_per_s": None}
    try:
        return {"rate_limit_per_s": float(raw)}
    except ValueError as exc:
        raise CommandError("--rate-limit must be requests per second or 'none'") from exc


GRACE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def grace_seconds(raw: str) -> float:
    """`90s`, `30m`, `24h`, `7d` or plain seconds, as seconds."""
    text = raw.strip().lower()
    unit = GRACE_UNITS.get(text[-1:], None)
    try:
        return float(text[:-1] if unit else text) * (unit or 1)
    except ValueError as exc:
        raise CommandError(f"--grace must look like 90s, 30m, 24h or 7d (got {raw!r})") from exc


def _ids(args: argparse.Namespace) -> dict[str, int | None]:
    """--dataset/--model names as ids (only those given)."""
    found: dict[str, int | None] = {}
    with session_scope() as s:
        if args.dataset is not None:
            found["dataset_id"] = lookups.get_dataset_by_name(session=s, name=args.dataset).id
        if args.model is not None:
            model = next((m for m in lookups.list_models(session=s) if m.name == args.model), None)
            if model is None:
                raise CommandError(f"model {args.model!r} does not exist")
            found["model_id"] = model.id
    return found


def _slos(args: argparse.Namespace) -> dict[str, float | None]:
    """--min-accuracy/--max-p95-ms as given; 'none' clears an objective."""
    slos: dict[str, float | None] = {}
    for option, field in (("min_accuracy", "slo_min_accuracy"), ("max_p95_ms", "slo_max_p95_ms")):
        value = getattr(args, option)
        if value is None:
            continue
        if value.strip().lower() == "none":
            slos[field] = None
            continue
        try:
            slos[field] = float(value)
        except ValueError as exc:
            raise CommandError(f"--{option.replace('_', '-')} must be a number or 'none'") from exc
    return slos


def cmd_create(args: argparse.Namespace) -> int:
    _, key = actions.create_channel(
        actor=cli_actor(),
        slug=args.slug,
        spec=ChannelSpec(
            name=args.name or args.slug,
            kind=args.kind or "web",
            **_ids(args),
            **_slos(args),
            **_rate_limit(args),
        ),
    )
    print(f"created channel {args.slug}; API key (shown once): {key}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    changes = {**_ids(args), **_slos(args), **_rate_limit(args)}
    if args.name is not None:
        changes["name"] = args.name
    if args.kind is not None:
        changes["kind"] = args.kind
    if not changes:
        raise CommandError("channel update needs at least one setting to change (see --help)")
    info = actions.update_channel(actor=cli_actor(), slug=args.slug, reason=args.reason, **changes)
    print(
        f"{info.slug}: name={info.name!r} kind={info.kind} dataset={info.dataset_name or '-'} "
        f"model={info.model_name or '-'} min accuracy={info.slo_min_accuracy} "
        f"max p95 ms={info.slo_max_p95_ms} rate limit={info.rate_limit_per_s or 'none'}"
    )
    return 0


OBJECTIVE_FIELDS = {
    "min_feedback": "slo_min_feedback", "max_error_rate": "slo_max_error_rate",
    "max_drift_psi": "slo_max_drift_psi", "alert_m": "alert_m", "alert_n": "alert_n",
    "drift_min_count": "drift_min_count", "webhook_url": "webhook_url",
}  # fmt: skip


def _objective_value(option: str, raw: str) -> object:
    if raw.strip().lower() == "none":
        return None
    if option == "webhook_url":
        return raw
    try:
        return float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError as exc:
        raise CommandError(f"--{option.replace('_', '-')} must be a number or 'none'") from exc


def cmd_objectives(args: argparse.Namespace) -> int:
    values = {
        field: _objective_value(option, getattr(args, option))
        for option, field in OBJECTIVE_FIELDS.items()
        if getattr(args, option) is not None
    }
    if values:
        info = actions.set_objectives(
            actor=cli_actor(), slug=args.slug, reason=args.reason, **values
        )
    else:
        with session_scope() as s:
            info = lookups.get_channel(session=s, slug=args.slug)
    for field, value in info.objectives.items():
        print(f"{field:20} {'-' if value is None else value}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from core.actions.jobs import retrain_channel

    then = "; a canary follows when it succeeds" if not args.no_canary else ""
    return run_and_say(
        retrain_channel, lambda job: f"queued job {job.id}: {job.note}{then}",
        slug=args.slug, then_canary=not args.no_canary, note=args.note,
    )  # fmt: skip


def cmd_rotate_key(args: argparse.Namespace) -> int:
    grace = grace_seconds(args.grace)
    old = f"works for {args.grace} more" if grace > 0 else "no longer works"
    return run_and_say(
        actions.rotate_channel_key,
        lambda key: f"new API key for {args.slug} (shown once; the old one {old}): {key}",
        slug=args.slug, reason=args.reason, grace_seconds=grace,
    )  # fmt: skip


def cmd_promote(args: argparse.Namespace) -> int:
    return run_and_say(
        actions.promote_version, f"{args.slug} now serves version {args.version_id}",
        slug=args.slug, version_id=args.version_id, reason=args.reason,
        override_reason=args.override_reason,
    )  # fmt: skip


cmd_pause = command_for(actions.pause_channel, "{slug} is paused", "slug", "reason")
cmd_resume = command_for(actions.resume_channel, "{slug} is active", "slug", "reason")


def cmd_canary_start(args: argparse.Namespace) -> int:
    share = args.traffic / 100.0 if args.traffic > 1 else args.traffic
    return run_and_say(
        actions.start_canary,
        lambda info: f"{args.slug}: version {info.candidate_version_id} gets "
        f"{info.candidate_traffic:.0%} of requests",
        slug=args.slug, version_id=args.version_id, traffic=share,
        reason=args.reason, override_reason=args.override_reason,
    )  # fmt: skip


cmd_canary_end = command_for(
    actions.end_canary, "{slug}: canary ended; all requests go to production", "slug", "reason"
)


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from db.repo.alerts import list_alerts

    with session_scope() as s:
        channel_id = lookups.get_channel(session=s, slug=args.channel).id if args.channel else None
        rows = list_alerts(session=s, channel_id=channel_id, open_only=not args.all)
    table(
        ["id", "channel", "signal", "arm", "opened", "state", "message"],
        [[a.id, a.channel_slug, a.signal, a.arm, f"{a.opened_at:%m-%d %H:%M}",
          "open" if a.is_open else "cleared",
          a.message[:60]] for a in rows],
    )  # fmt: skip
    return 0


def cmd_alerts_open(args: argparse.Namespace) -> int:
    from core.actions.alerts import open_alert

    with session_scope() as s:
        channel_id = lookups.get_channel(session=s, slug=args.channel).id
    return run_and_say(
        open_alert, lambda info: f"alert {info.id} open on {info.channel_slug}: {info.signal}",
        channel_id=channel_id, signal=args.signal, message=args.message,
    )  # fmt: skip


def cmd_alerts_change(args: argparse.Namespace) -> int:
    from core.actions.alerts import acknowledge_alert, clear_alert

    change = {"clear": clear_alert, "acknowledge": acknowledge_alert}[args.verb]
    return run_and_say(
        change,
        lambda info: f"alert {info.id} on {info.channel_slug}: "
        f"{'open' if info.is_open else 'cleared'}, acknowledged by {info.acknowledged_by}",
        alert_id=args.alert_id, reason=args.reason,
    )  # fmt: skip
