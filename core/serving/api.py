"""Serving API entry point: `channelhub serve` / `python -m core.serving.api` run `create_app`."""

from __future__ import annotations

import argparse

from core.serving.app import create_app
from core.serving.keys import redact_keys_in_logs
from core.serving.settings import ServingSettings

__all__ = ["add_serve_arguments", "create_app", "run_serve", "run_server"]


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    database_url: str | None = None,
    settings: ServingSettings | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; shutdown answers in-flight requests and writes the log."""
    import uvicorn

    from core.logs import configure_logging

    configure_logging(log_level)
    app = create_app(database_url, settings=settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=30,
    )  # configures uvicorn's loggers, so the redaction goes on their handlers after it
    redact_keys_in_logs("uvicorn", "uvicorn.error", "uvicorn.access")
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # SIGINT is re-raised after the graceful shutdown, as uvicorn.run
        pass


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `channelhub serve`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
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
    settings = ServingSettings.from_env().with_overrides(
        max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels
    )
    run_server(
        args.host,
        args.port,
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
