"""Serving API entry point: `channelhub serve` / `python -m core.serving.api` run the app factory
`core.serving.app:create_app` in one process or in `--workers N` processes sharing the port."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from core.serving.app import create_app
from core.serving.balance import shares_path
from core.serving.keys import redact_keys_in_logs
from core.serving.settings import ServingSettings, default_workers
from core.serving.shared_limiter import shared_limits_path

__all__ = [
    "APP_FACTORY",
    "add_serve_arguments",
    "create_app",
    "remove_stale_server_files",
    "run_serve",
    "run_server",
]

APP_FACTORY = "core.serving.app:create_app"
# How long the supervisor waits for a worker's answer before it replaces it: a worker importing
# TensorFlow on a busy machine can hold off uvicorn's 5 s default.
WORKER_HEALTHCHECK_S = 60
# The files a server of several workers shares between them, named by its supervisor's pid.
SERVER_FILES = (shared_limits_path, shares_path)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_server_files() -> list[Path]:
    """Remove the shared files of servers that are gone (a killed server cannot remove its own)
    and any left under this process's pid (a new server must not start from an old one's rate
    buckets or counts); returns what was removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob("channelhub-serve-*"):
        pid = path.name.removeprefix("channelhub-serve-").partition(".")[0]
        if not pid.isdigit() or path not in {f(int(pid)) for f in SERVER_FILES}:
            continue
        if int(pid) == os.getpid() or not _is_running(int(pid)):
            try:
                path.unlink(missing_ok=True)
            except OSError:  # another user's file in a shared folder: theirs to remove
                continue
            removed.append(path)
    return removed


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    database_url: str | None = None,
    settings: ServingSettings | None = None,
    log_level: str = "info",
    access_log: bool = False,
    app: str = APP_FACTORY,
    loop: str = "uvloop",
    http: str = "httptools",
) -> None:
    """Serve until SIGINT/SIGTERM; shutdown answers in-flight requests and writes the log.
    Workers are separate processes (each loads the models once) that build `app` from the
    environment, so the database URL and `settings` travel to them as variables. `loop` and
    `http` are uvicorn's (bench/serving_stack.py measures what uvloop and httptools give)."""
    import uvicorn

    from core.logs import configure_logging
    from db.engine import dispose_engines, get_engine
    from db.settings import database_url as default_database_url

    configure_logging(log_level)
    url = database_url or default_database_url()
    os.environ.update({"DATABASE_URL": url, **(settings or ServingSettings.from_env()).as_env()})
    if workers > 1:  # N TensorFlow thread pools of every core each would fight over the cores
        share = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    remove_stale_server_files()
    get_engine(url)  # create or upgrade the schema once, before the workers race to
    dispose_engines()
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, log_level=log_level,
        access_log=access_log, timeout_graceful_shutdown=30, loop=loop, http=http,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )  # fmt: skip  # configures uvicorn's loggers: the redaction goes on their handlers after it
    redact_keys_in_logs("uvicorn", "uvicorn.error", "uvicorn.access")
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # SIGINT is re-raised after the graceful shutdown, as uvicorn.run
        pass
    finally:
        for server_file in SERVER_FILES:
            server_file(os.getpid()).unlink(missing_ok=True)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `channelhub serve`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="serving processes sharing the port, each with its own copy of the models "
        "(default CHANNELHUB_WORKERS, else one per CPU core, at most 8)",
    )
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        default=None,
        help="body size limit (default CHANNELHUB_MAX_UPLOAD_BYTES or 10 MiB)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image accepted, in pixels (default 25,000,000)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def run_serve(args: argparse.Namespace) -> int:
    """Run `channelhub serve` with parsed `args`."""
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    settings = ServingSettings.from_env().with_overrides(
        max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels
    )
    run_server(
        args.host,
        args.port,
        workers=workers,
        database_url=args.database_url,
        settings=settings,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m core.serving.api", description=__doc__)
    add_serve_arguments(_parser)
    raise SystemExit(run_serve(_parser.parse_args()))
