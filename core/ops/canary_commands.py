"""`channelhub canary …` (start a stepped canary, its status, decide now) and `channelhub channel
timeline|restore`. The options are declared here without heavy imports (the CLI's --help stays
fast); each handler loads the actions and queries it needs when it runs."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HERE = "core.ops.canary_commands"
DECISIONS = ("advance", "hold", "rollback", "promote")


def add_canary_commands(b: Any) -> None:
    """`canary start|status|decide` on the CLI's Builder `b`."""
    p = b.command("canary", None, "stepped canaries: start one, see where it stands, decide now")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    q = b.command("start", f"{HERE}:cmd_start", "put a version in a stepped canary", verbs)
    q.add_argument("slug")
    q.add_argument("--version-id", type=int, required=True, help="candidate model version id")
    q.add_argument("--steps", help="traffic percents, ascending, ending at 100 (10,25,50,100)")
    q.add_argument("--min-requests", type=int, help="requests each arm needs per step (200)")
    q.add_argument("--min-minutes", type=float, help="minimum minutes per step (5)")
    q.add_argument("--max-error-increase", type=float, help="error-rate tolerance, 0-1 (0.02)")
    q.add_argument("--max-p95-increase", type=float, help="p95 tolerance, relative (0.5)")
    q.add_argument("--reason", default="", help="recorded in the audit log")
    q.add_argument("--override-reason", default="", help="pass a version the gate refuses")
    q = b.command("status", f"{HERE}:cmd_status", "the running canary and its decisions", verbs)
    q.add_argument("slug")
    q.add_argument("--limit", type=int, default=10, help="decisions shown")
    q = b.command("decide", f"{HERE}:cmd_decide", "judge the current step now, or decide", verbs)
    q.add_argument("slug")
    q.add_argument("--decision", choices=DECISIONS, help="decide by hand instead of the judge")
    q.add_argument("--reason", default="", help="why (needed with --decision)")


def add_channel_history_commands(b: Any, verbs: Any) -> None:
    """`channel timeline` and `channel restore` under the `channel` command's verbs."""
    q = b.command("timeline", f"{HERE}:cmd_timeline", "serving changes and decisions", verbs)
    q.add_argument("slug")
    q.add_argument("--limit", type=int, default=30)
    q = b.command("restore", f"{HERE}:cmd_restore", "serve an earlier version again", verbs)
    q.add_argument("slug")
    q.add_argument("--version-id", type=int, required=True, help="a version the timeline shows")
    q.add_argument("--reason", required=True, help="why (recorded with the restore)")


def cmd_start(args: argparse.Namespace) -> int:
    from core.actions import canary as actions
    from core.ops.commands import cli_actor

    limits = {
        name: value
        for name, value in (
            ("min_requests", args.min_requests),
            ("min_seconds", None if args.min_minutes is None else round(args.min_minutes * 60)),
            ("max_error_increase", args.max_error_increase),
            ("max_p95_increase", args.max_p95_increase),
        )
        if value is not None
    }
    plan = actions.start_canary_plan(
        actor=cli_actor(), slug=args.slug, version_id=args.version_id, steps=args.steps,
        reason=args.reason, override_reason=args.override_reason, **limits,
    )  # fmt: skip
    steps = " → ".join(f"{s:g}" for s in plan.steps)
    print(
        f"{plan.channel_slug}: version {plan.candidate_version_id} in a canary, steps {steps} %, "
        f"now {plan.traffic:.0%} of requests; each step needs {plan.min_requests} requests per "
        f"arm and {plan.min_seconds / 60:g} min"
    )
    return 0


@contextmanager
def _judge() -> Iterator[Any]:
    """The controller's canary judge (with its holdout references for drift), closed after use."""
    from core.ops.controller import Controller

    controller = Controller()
    try:
        yield controller.canaries
    finally:
        controller.webhooks.close()


def cmd_status(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from db.queries.lookups import get_channel
    from db.queries.timeline import canary_state
    from db.repo.canary import list_decisions

    with session_scope() as s:
        channel = get_channel(session=s, slug=args.slug)
        state = canary_state(session=s, slug=args.slug)
        decisions = list_decisions(session=s, channel_id=channel.id, limit=args.limit)
    if state is None:
        print(f"{args.slug}: no stepped canary running")
    else:
        plan = state.canary
        since = f"{plan.step_started_at:%Y-%m-%d %H:%M:%S} UTC"
        steps = " → ".join(f"{x:g}" for x in plan.steps)
        print(f"{args.slug}: canary of {state.candidate_label} (id {plan.candidate_version_id})")
        print(f"at {plan.step_label} since {since}; steps {steps} %")
        print(f"each step: {plan.min_requests} requests per arm, {plan.min_seconds / 60:g} min")
        with _judge() as canaries:
            verdict = canaries.evaluate(plan, channel, _now())
        print(f"now: {verdict.decision} — {verdict.reason}")
    for d in decisions:
        print(f"{d.created_at:%Y-%m-%d %H:%M:%S}  {d.decision:8} step {d.step_index + 1} "
              f"({d.traffic:.0%})  {d.actor}: {d.reason}")  # fmt: skip
    return 0


def _now():
    from db.models import utcnow

    return utcnow()


def cmd_decide(args: argparse.Namespace) -> int:
    from core.actions.canary import decide_canary
    from core.ops.commands import CommandError, cli_actor
    from db.engine import session_scope
    from db.queries.timeline import canary_state

    with session_scope() as s:
        state = canary_state(session=s, slug=args.slug)
    if state is None:
        raise CommandError(f"channel {args.slug!r} has no stepped canary running")
    if args.decision is None:
        with _judge() as canaries:
            lines = canaries.tick(_now(), slug=args.slug)
        print("\n".join(lines) or f"{args.slug}: nothing decided")
        return 0
    plan = state.canary
    d = decide_canary(actor=cli_actor(), canary_id=plan.id, step_index=plan.step_index,
                      decision=args.decision, reason=args.reason)  # fmt: skip
    print(f"{args.slug}: {d.decision} at step {d.step_index + 1} ({d.traffic:.0%}): {d.reason}")
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from db.engine import session_scope
    from db.queries.timeline import channel_timeline

    with session_scope() as s:
        entries = channel_timeline(session=s, slug=args.slug, limit=args.limit)
    for e in entries:
        reason = f" — {e.reason}" if e.reason else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor:12} {e.title}{reason}")
    if not entries:
        print("(none)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from core.actions.canary import restore_version
    from core.ops.commands import run_and_say

    return run_and_say(
        restore_version,
        lambda info: f"{info.slug}: version {info.production_version_id} serves production again",
        slug=args.slug, version_id=args.version_id, reason=args.reason,
    )  # fmt: skip
