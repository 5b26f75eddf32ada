"""`channelhub` command line: registry, training jobs, worker, serving, demo and `up`.

Every action of `core.actions` is a command (`ACTION_COMMANDS`). Nothing heavy is imported
until a command runs: handlers are named as "module:function", and the options of the commands
that start a process (serve, worker, …) are read from that process's module only when that
command is the one given, so `channelhub --help` answers at once and TensorFlow stays silent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from core.logs import configure_logging
from core.ops.canary_commands import add_canary_commands, add_channel_history_commands
from core.ops.gate_commands import add_gate_commands
from db.errors import RegistryError

# Each action's command words; tests check that every action has one and that it parses.
ACTION_COMMANDS = {
    "alert.open": "alerts open",
    "alert.clear": "alerts clear",
    "alert.acknowledge": "alerts acknowledge",
    "canary.start": "canary start",
    "canary.decide": "canary decide",
    "channel.create": "channel create",
    "channel.update": "channel update",
    "channel.pause": "channel pause",
    "channel.resume": "channel resume",
    "channel.rotate_key": "channel rotate-key",
    "channel.promote": "channel promote",
    "channel.start_canary": "channel canary-start",
    "channel.end_canary": "channel canary-end",
    "channel.set_objectives": "channel objectives",
    "channel.restore": "channel restore",
    "channel.set_gate": "channel gate-rules",
    "dataset.register": "datasets add",
    "dataset.set_flip_safe": "datasets set-flip",
    "dataset.register_builtin": "init",
    "feedback.submit": "feedback submit",
    "feedback.annotate": "feedback annotate",
    "feedback.bulk_annotate": "feedback bulk-annotate",
    "feedback.accept_suggestions": "feedback accept-suggestions",
    "job.enqueue": "enqueue",
    "job.cancel": "jobs cancel",
    "job.retry": "jobs retry",
    "job.reap_lost": "jobs list",
    "job.retrain_channel": "channel retrain",
    "model.create": "models create",
    "user.add": "user add",
    "user.set_password": "user passwd",
    "user.set_role": "user role",
    "user.disable": "user disable",
    "user.enable": "user enable",
}

# Commands that start a process: (module, help). The module of command NAME has
# `add_NAME_arguments(parser)` and `run_NAME(args)`.
PROCESS_COMMANDS = {
    "demo": ("core.ops.demo", "build the demo: channels, trained models, traffic"),
    "worker": ("core.training.worker", "run a training worker"),
    "up": ("core.ops.launcher", "start worker, API and dashboard; Ctrl-C stops all"),
    "serve": ("core.serving.api", "run the serving API (FastAPI)"),
    "simulate": ("core.ops.simulator", "send simulated traffic and feedback"),
    "controller": ("core.ops.controller", "evaluate SLOs, drift and alerts on a schedule"),
}

# `channel objectives` options and what each sets (the channel's LIVE_OBJECTIVES).
OBJECTIVE_OPTIONS = {
    "min-feedback": "annotated items needed before accuracy is judged",
    "max-error-rate": "largest share of failed requests, 0-1",
    "max-drift-psi": "largest PSI against the serving version's holdout",
    "alert-m": "breaching buckets that open an alert …",
    "alert-n": "… among the last N buckets",
    "drift-min-count": "requests a bucket needs for a drift verdict",
    "webhook-url": "JSON POST on alert open and clear",
}

COMMANDS = "core.ops.commands"
CHANNEL = "core.ops.channel_commands"
USERS = "core.ops.user_commands"
VERDICTS = ("confirmed", "corrected", "rejected")


class CommandError(RuntimeError):
    """A user mistake: printed as one line, exit status 2."""


def resolve(target: str) -> Callable[..., Any]:
    """The function named "module:function", imported now."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


class Builder:
    """Adds commands; `wanted` is the command given (None: all), whose lazy options are loaded."""

    def __init__(self, sub: Any, wanted: str | None) -> None:
        self.sub, self.wanted = sub, wanted

    def command(self, name: str, handler: str | None, help_text: str, sub: Any = None):
        p = (sub or self.sub).add_parser(name, help=help_text, description=help_text)
        if handler:
            p.set_defaults(handler=handler)
        return p

    def changes(
        self, verbs: Any, handler: str, subject: str, helps: dict[str, str], kind: type = str
    ) -> None:
        """One command per verb of `helps` that changes the `subject` it names and takes the
        reason the audit log keeps; `{verb}` in `handler` stands for the verb."""
        for verb, help_text in helps.items():
            q = self.command(verb, handler.format(verb=verb), help_text, verbs)
            q.add_argument(subject, type=kind)
            q.add_argument("--reason", default="", help="recorded in the audit log")

    def process(self, name: str) -> None:
        module, help_text = PROCESS_COMMANDS[name]
        p = self.command(name, f"{module}:run_{name}", help_text)
        if self.wanted in (None, name):
            resolve(f"{module}:add_{name}_arguments")(p)


def _add_enqueue_arguments(p: argparse.ArgumentParser) -> None:
    from core.ml.catalog import ARCHITECTURE_DESCRIPTIONS, DEFAULT_ARCHITECTURE
    from core.ml.hparams import OPTIMIZERS, Hyperparameters

    d = Hyperparameters()
    p.add_argument("--model", default="digits-classifier", help="model name (created if new)")
    p.add_argument("--dataset", default="digits", help="registered dataset name")
    p.add_argument(
        "--architecture", default=DEFAULT_ARCHITECTURE, help=", ".join(ARCHITECTURE_DESCRIPTIONS)
    )
    p.add_argument("--base-version", type=int, help="fine-tune from this version number")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--no-augmentation", action="store_true")
    p.add_argument(
        "--time-budget-minutes", type=float, default=d.time_budget_minutes,
        help="train for at most N minutes: the schedule's epochs are fitted to it (0 = none)",
    )  # fmt: skip
    p.add_argument("--patience", type=int, default=d.early_stopping_patience, help="0 = off")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", choices=["auto", "gpu", "cpu"])
    p.add_argument("--include-feedback", action="store_true", help="add annotated feedback")
    p.add_argument("--note", default="")


def _add_registry_commands(b: Builder) -> None:
    from core.ml.catalog import DATASET_SOURCES  # the one list (no numpy, no Keras)

    b.command("init", f"{COMMANDS}:cmd_init", "create or upgrade the registry; register digits")
    p = b.command("datasets", f"{COMMANDS}:cmd_datasets_list", "list or add datasets")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    b.command("list", f"{COMMANDS}:cmd_datasets_list", "list datasets", verbs)
    p = b.command("add", f"{COMMANDS}:cmd_datasets_add", "read and register a dataset", verbs)
    p.add_argument("--name")
    p.add_argument("--source", default="folder", choices=DATASET_SOURCES)
    p.add_argument("--location", help="folder, .npz file, or keras dataset name")
    p.add_argument(
        "--flip-safe", action=argparse.BooleanOptionalAction, default=None,
        help="a mirrored image keeps its class (default: by source; folders and .npz no)",
    )  # fmt: skip
    p = b.command(
        "set-flip", f"{COMMANDS}:cmd_datasets_set_flip",
        "say whether a mirrored image of a dataset keeps its class", verbs,
    )  # fmt: skip
    p.add_argument("name", help="dataset name")
    p.add_argument("--flip-safe", action=argparse.BooleanOptionalAction, required=True)
    p = b.command("models", f"{COMMANDS}:cmd_models_list", "list model versions or add a model")
    p.add_argument("--limit", type=int, default=30)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    q = b.command("list", f"{COMMANDS}:cmd_models_list", "model versions, newest first", verbs)
    q.add_argument("--limit", type=int, default=30)
    q = b.command("create", f"{COMMANDS}:cmd_models_create", "create a named model", verbs)
    q.add_argument("name")
    q.add_argument("--description", default="")
    p = b.command("enqueue", f"{COMMANDS}:cmd_enqueue", "queue a training job")
    if b.wanted in (None, "enqueue"):
        _add_enqueue_arguments(p)
    b.command("workers", f"{COMMANDS}:cmd_workers", "list training workers").add_argument(
        "--all", action="store_true", help="include stopped workers"
    )
    p = b.command("audit", f"{COMMANDS}:cmd_audit", "list audit events, newest first")
    p.add_argument("--object-type", help="channel, job, feedback, dataset, model, …")
    p.add_argument("--object-id")
    p.add_argument("--actor")
    p.add_argument("--action", help="an action (channel.promote) or a noun (channel)")
    p.add_argument("--limit", type=int, default=50)


def _add_job_commands(b: Builder) -> None:
    p = b.command("jobs", f"{COMMANDS}:cmd_jobs_list", "list, show, cancel or retry jobs")
    p.add_argument("--limit", type=int, default=30)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    b.command("list", f"{COMMANDS}:cmd_jobs_list", "jobs, newest first", verbs).add_argument(
        "--limit", type=int, default=30
    )
    b.command("show", f"{COMMANDS}:cmd_jobs_show", "one job and its log", verbs).add_argument(
        "job_id", type=int
    )
    helps = {"cancel": "cancel a queued or running job", "retry": "queue a copy of a failed job"}
    b.changes(verbs, f"{COMMANDS}:cmd_jobs_change", "job_id", helps, int)


def _add_channel_commands(b: Builder) -> None:
    p = b.command("channel", None, "channels: list, create, update, serve versions, keys")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    b.command("list", f"{CHANNEL}:cmd_list", "list channels", verbs)
    for verb, help_text in (
        ("create", "create a channel (prints its API key once)"),
        ("update", "change a channel's settings and SLOs"),
    ):
        q = b.command(verb, f"{CHANNEL}:cmd_{verb}", help_text, verbs)
        q.add_argument("slug")
        q.add_argument("--name")
        q.add_argument("--kind", choices=["web", "mobile", "api", "batch"])
        q.add_argument("--dataset", help="default dataset name")
        q.add_argument("--model", help="model name")
        q.add_argument("--min-accuracy", help="SLO, 0-1 ('none' clears it)")
        q.add_argument("--max-p95-ms", help="SLO in ms ('none' clears it)")
        q.add_argument("--rate-limit", help="requests/s per API key ('none': unlimited)")
        q.add_argument("--reason", default="", help="recorded in the audit log")
    retrain_help = "fine-tune the production version with the annotated feedback"
    q = b.command("retrain", f"{CHANNEL}:cmd_retrain", retrain_help, verbs)
    q.add_argument("slug")
    q.add_argument("--no-canary", action="store_true", help="do not canary the new version")
    q.add_argument("--note", default="")
    objectives_help = "live objectives and alerting ('none' clears an optional one)"
    q = b.command("objectives", f"{CHANNEL}:cmd_objectives", objectives_help, verbs)
    q.add_argument("slug")
    for option, meaning in OBJECTIVE_OPTIONS.items():
        q.add_argument(f"--{option}", help=meaning)
    q.add_argument("--reason", default="", help="recorded in the audit log")
    for verb, name, help_text, version in (
        ("rotate-key", "rotate_key", "replace the channel's API key", False),
        ("promote", "promote", "make a version the channel's production", True),
        ("pause", "pause", "stop serving the channel", False),
        ("resume", "resume", "serve a paused channel again", False),
        ("canary-start", "canary_start", "send a share of requests to a candidate", True),
        ("canary-end", "canary_end", "send every request to production again", False),
    ):
        q = b.command(verb, f"{CHANNEL}:cmd_{name}", help_text, verbs)
        q.add_argument("slug")
        if version:
            q.add_argument("--version-id", type=int, required=True, help="model version id")
        q.add_argument("--reason", default="", help="why (shown to clients when pausing)")
        if version:
            q.add_argument(
                "--override-reason", default="", help="pass a version the gate refuses (recorded)"
            )
        if verb == "canary-start":
            q.add_argument("--traffic", type=float, required=True, help="share 0-1, or percent")
        if verb == "rotate-key":
            q.add_argument(
                "--grace",
                default="24h",
                help="old key works this long (90s, 30m, 24h, 7d; 0: stops now)",
            )
    add_channel_history_commands(b, verbs)  # timeline, restore
    add_gate_commands(b, verbs)  # gate, gate-rules


def _add_feedback_commands(b: Builder) -> None:
    p = b.command("feedback", f"{COMMANDS}:cmd_feedback_list", "review and annotate feedback")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    q = b.command("list", f"{COMMANDS}:cmd_feedback_list", "the review queue", verbs)
    q.add_argument("--limit", type=int, default=30)
    q = b.command("annotate", f"{COMMANDS}:cmd_feedback_annotate", "a verdict on one item", verbs)
    q.add_argument("feedback_id", type=int)
    q = b.command(
        "bulk-annotate", f"{COMMANDS}:cmd_feedback_bulk", "one verdict on many items", verbs
    )
    q.add_argument("ids", nargs="*", type=int, help="feedback ids (or filter with the options)")
    q.add_argument("--limit", type=int, default=500, help="at most this many filtered items")
    q = b.command("accept-suggestions", f"{COMMANDS}:cmd_feedback_accept",
                  "store each item's own suggested verdict", verbs)  # fmt: skip
    q.add_argument("ids", nargs="*", type=int, help="feedback ids (or filter with the options)")
    q.add_argument("--limit", type=int, default=500, help="at most this many filtered items")
    q.add_argument("--note", default="")
    for q in (verbs.choices["list"], verbs.choices["bulk-annotate"],
              verbs.choices["accept-suggestions"], p):  # fmt: skip
        q.add_argument("--channel", help="channel slug")
        q.add_argument("--rating", choices=["up", "down"])
        q.add_argument("--status", default="pending", help="pending, confirmed, …, or any")
    for q in (verbs.choices["annotate"], verbs.choices["bulk-annotate"]):
        q.add_argument("--verdict", required=True, choices=VERDICTS)
        q.add_argument("--true-class", type=int, help="the right class (for corrected)")
        q.add_argument("--tags", default="", help="comma-separated")
        q.add_argument("--note", default="")
    p.set_defaults(limit=30)
    q = b.command("submit", f"{COMMANDS}:cmd_feedback_submit", "a user's verdict", verbs)
    q.add_argument("prediction_id")
    q.add_argument("--channel", required=True, help="the prediction's channel slug")
    q.add_argument("--rating", required=True, choices=["up", "down"])
    q.add_argument("--claimed-class", type=int)
    q.add_argument("--comment", default="")


def _add_alert_commands(b: Builder) -> None:
    p = b.command("alerts", f"{CHANNEL}:cmd_alerts_list", "list, open, clear or acknowledge alerts")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    listing = b.command("list", f"{CHANNEL}:cmd_alerts_list", "open alerts, newest first", verbs)
    for q in (p, listing):
        q.add_argument("--channel", help="channel slug")
        q.add_argument("--all", action="store_true", help="include cleared alerts")
    q = b.command("open", f"{CHANNEL}:cmd_alerts_open", "open an alert by hand", verbs)
    q.add_argument("--channel", required=True, help="channel slug")
    q.add_argument("--signal", required=True, help="accuracy, p95_latency, error_rate, drift, …")
    q.add_argument("--message", required=True)
    helps = {"clear": "close an alert", "acknowledge": "say someone is looking at it"}
    b.changes(verbs, f"{CHANNEL}:cmd_alerts_change", "alert_id", helps, int)


def _add_user_commands(b: Builder) -> None:
    p = b.command("user", f"{USERS}:cmd_list", "dashboard users: list, add, passwd, role, disable")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    b.command("list", f"{USERS}:cmd_list", "users, their roles and lock-outs", verbs)
    for verb, help_text in (("add", "add a user (asks for the password)"),
                            ("passwd", "set a user's password (their sessions end)")):  # fmt: skip
        q = b.command(verb, f"{USERS}:cmd_{verb}", help_text, verbs)
        q.add_argument("name")
        q.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        q.add_argument("--generate", action="store_true", help="make a random one, print it once")
        if verb == "add":
            q.add_argument("--role", required=True, choices=["viewer", "annotator", "manager",
                                                             "admin"])  # fmt: skip
    b.changes(verbs, f"{USERS}:cmd_{{verb}}", "name", {
        "role": "change a user's role",
        "disable": "stop a user signing in (their sessions end)",
        "enable": "let a disabled or locked-out user sign in",
    })  # fmt: skip
    verbs.choices["role"].add_argument("role", choices=["viewer", "annotator", "manager", "admin"])


def _wanted(argv: list[str] | None) -> str | None:
    """The command word given, or None when building the whole parser."""
    if argv is None:
        return None
    return next((a for a in argv if not a.startswith("-")), "")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelhub", description="Run the channels of AI models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = Builder(sub, _wanted(argv))
    _add_registry_commands(b)
    for name in PROCESS_COMMANDS:
        b.process(name)
    _add_job_commands(b)
    _add_channel_commands(b)
    _add_feedback_commands(b)
    _add_alert_commands(b)
    add_canary_commands(b)
    _add_user_commands(b)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return resolve(args.handler)(args) or 0
    except (CommandError, RegistryError) as exc:
        print(f"channelhub {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
