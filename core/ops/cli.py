"""`channelhub` command line: registry, training jobs, worker, serving, demo and `up`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from core.logs import configure_logging
from db.engine import get_engine, session_scope
from db.repo import channels as channel_repo
from db.repo import datasets as dataset_repo
from db.repo import jobs as job_repo
from db.repo import models as model_repo
from db.errors import RegistryError
from db.settings import artifact_dir, current_user, database_url


class CommandError(RuntimeError):
    """A user mistake: printed as one line, exit status 2."""


def cmd_init(args: argparse.Namespace) -> int:
    from core.datasets import register_builtin_dataset

    get_engine()
    artifact_dir().mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
    print(f"registry  {database_url()}")
    print(f"artifacts {artifact_dir()}")
    print(
        f"dataset   {dataset.name}: {dataset.num_samples} images, "
        f"{len(dataset.class_names)} classes"
    )
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    if args.action == "add":
        from core.datasets import register_loaded_dataset
        from core.ml.datasets import DatasetError, load_dataset

        if not args.name:
            raise CommandError("datasets add needs --name")
        try:
            data = load_dataset(args.source, args.location)
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        with session_scope() as s:
            info = register_loaded_dataset(
                session=s, name=args.name, source=args.source, location=args.location, data=data
            )
        print(f"registered dataset {info.name} ({info.num_samples} images)")
        return 0
    with session_scope() as s:
        rows = dataset_repo.list_datasets(session=s)
    _table(
        ["name", "source", "samples", "classes", "shape", "fingerprint"],
        [[d.name, d.source, d.num_samples, len(d.class_names), d.input_shape, d.fingerprint[:12]]
         for d in rows],
    )  # fmt: skip
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    with session_scope() as s:
        versions = model_repo.list_versions(session=s, limit=args.limit)
    _table(
        ["id", "model", "version", "architecture", "accuracy", "device", "serving", "created"],
        [[v.id, v.model_name, v.version, v.architecture, _pct(v.accuracy), v.device,
          ",".join(v.serving_channels) or "-", f"{v.created_at:%Y-%m-%d %H:%M}"]
         for v in versions],
    )  # fmt: skip
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    from core.training.jobs import JobRequestError, enqueue_job

    hp = {
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "learning_rate": args.learning_rate, "optimizer": args.optimizer,
        "augmentation": not args.no_augmentation, "early_stopping_patience": args.patience,
    }  # fmt: skip
    with session_scope() as s:
        model = model_repo.get_or_create_model(session=s, name=args.model, actor=current_user())
        dataset = dataset_repo.get_dataset_by_name(session=s, name=args.dataset)
        base_id = None
        if args.base_version is not None:
            base_id = model_repo.find_version(
                session=s, model_name=args.model, version=args.base_version
            ).id
        try:
            job = enqueue_job(
                session=s, model_id=model.id, dataset_id=dataset.id,
                architecture=args.architecture, hyperparameters=hp, base_version_id=base_id,
                include_feedback=args.include_feedback, device_request=args.device,
                requested_by=current_user(), note=args.note,
            )  # fmt: skip
        except JobRequestError as exc:
            raise CommandError(str(exc)) from exc
    print(f"queued job {job.id}: {job.model_name} {job.architecture} on {job.dataset_name}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    actions: dict[str, Callable] = {
        "cancel": job_repo.request_cancel,
        "retry": job_repo.retry_job,
    }
    if args.action in actions:
        if args.job_id is None:
            raise CommandError(f"jobs {args.action} needs a job id")
        with session_scope() as s:
            job = actions[args.action](session=s, job_id=args.job_id, actor=current_user())
        print(f"job {job.id}: {job.status}")
        return 0
    if args.action == "show":
        return _show_job(args.job_id)
    with session_scope() as s:
        job_repo.reap_lost_jobs(session=s)
        rows = job_repo.list_jobs(session=s, limit=args.limit)
    _table(
        ["id", "status", "model", "arch", "epoch", "device", "by", "created", "result/error"],
        [[j.id, j.status, j.model_name, j.architecture, f"{j.current_epoch}/{j.total_epochs}",
          j.device or j.device_request, j.requested_by, f"{j.created_at:%m-%d %H:%M}",
          f"v{j.result_version}" if j.result_version else (j.error or "")[:50]] for j in rows],
    )  # fmt: skip
    return 0


def _show_job(job_id: int | None) -> int:
    if job_id is None:
        raise CommandError("jobs show needs a job id")
    with session_scope() as s:
        job = job_repo.get_job(session=s, job_id=job_id)
        logs = job_repo.job_logs(session=s, job_id=job_id, limit=20)
    print(json.dumps({k: str(v) for k, v in job.__dict__.items()}, indent=2))
    for at, level, message in logs:
        print(f"{at:%H:%M:%S} {level:5} {message}")
    return 0


def cmd_channel(args: argparse.Namespace) -> int:
    actor = current_user()
    with session_scope() as s:
        if args.action == "list":
            rows = channel_repo.list_channels(session=s)
            _table(
                ["slug", "name", "kind", "status", "model", "production", "candidate", "key"],
                [[c.slug, c.name, c.kind, c.status, c.model_name or "-",
                  c.production_version_id or "-", c.candidate_version_id or "-",
                  f"{c.api_key_prefix}…"] for c in rows],
            )  # fmt: skip
            return 0
        if not args.slug:
            raise CommandError(f"channel {args.action} needs a channel slug")
        if args.action == "create":
            _, key = channel_repo.create_channel(
                session=s, slug=args.slug, name=args.name or args.slug, kind=args.kind, actor=actor
            )
            print(f"created channel {args.slug}; API key (shown once): {key}")
        elif args.action == "rotate-key":
            key = channel_repo.rotate_api_key(session=s, slug=args.slug, actor=actor)
            print(f"new API key for {args.slug} (shown once; the old one no longer works): {key}")
        elif args.action == "promote":
            if args.version_id is None:
                raise CommandError("channel promote needs --version-id")
            channel_repo.promote_version(
                session=s, slug=args.slug, version_id=args.version_id, actor=actor
            )
            print(f"{args.slug} now serves version {args.version_id}")
        elif args.action in ("pause", "resume"):
            status = "paused" if args.action == "pause" else "active"
            channel_repo.set_channel_status(
                session=s, slug=args.slug, status=status, reason=args.reason, actor=actor
            )
            print(f"{args.slug} is {status}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


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
    p.add_argument("--patience", type=int, default=d.early_stopping_patience, help="0 = off")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", choices=["auto", "gpu", "cpu"])
    p.add_argument("--include-feedback", action="store_true", help="add annotated feedback")
    p.add_argument("--note", default="")


def build_parser() -> argparse.ArgumentParser:
    from core.ml.catalog import DATASET_SOURCES
    from core.ops.demo import add_demo_arguments, run_demo
    from core.ops.launcher import add_up_arguments, run_up
    from core.training.worker import add_worker_arguments, run_worker

    parser = argparse.ArgumentParser(
        prog="channelhub", description="Run the channels of AI models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    command("init", cmd_init, "create or upgrade the registry and register the digits dataset")
    add_demo_arguments(
        command("demo", run_demo, "build the demo: channels, trained models, traffic")
    )
    add_worker_arguments(command("worker", run_worker, "run a training worker"))
    add_up_arguments(command("up", run_up, "start worker, API and dashboard; Ctrl-C stops all"))
    _add_serving_commands(command)
    p = command("datasets", cmd_datasets, "list or add datasets")
    p.add_argument("action", nargs="?", default="list", choices=["list", "add"])
    p.add_argument("--name")
    p.add_argument("--source", default="folder", choices=DATASET_SOURCES)
    p.add_argument("--location", help="folder, .npz file, or keras dataset name")
    p = command("models", cmd_models, "list model versions, newest first")
    p.add_argument("--limit", type=int, default=30)
    _add_enqueue_arguments(command("enqueue", cmd_enqueue, "queue a training job"))
    p = command("jobs", cmd_jobs, "list, show, cancel or retry training jobs")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "cancel", "retry"])
    p.add_argument("job_id", nargs="?", type=int)
    p.add_argument("--limit", type=int, default=30)
    p = command("channel", cmd_channel, "list, create, promote, pause/resume, rotate keys")
    p.add_argument("action", choices=["list", "create", "rotate-key", "promote", "pause", "resume"])
    p.add_argument("slug", nargs="?")
    p.add_argument("--name")
    p.add_argument("--kind", default="web", choices=["web", "mobile", "api", "batch"])
    p.add_argument("--version-id", type=int)
    p.add_argument("--reason", default="", help="why the channel is paused (shown to clients)")
    return parser


def _add_serving_commands(command: Callable) -> None:
    from core.ops.simulator import add_simulate_arguments, run_simulate
    from core.serving.api import add_serve_arguments, run_serve

    add_serve_arguments(command("serve", run_serve, "run the serving API (FastAPI)"))
    add_simulate_arguments(command("simulate", run_simulate, "send simulated traffic and feedback"))


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (CommandError, RegistryError) as exc:
        print(f"channelhub {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
