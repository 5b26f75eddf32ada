"""One logging set-up for every ChannelHub process (CLI, worker, API)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

# Libraries whose INFO lines (one per HTTP request or migration step) drown our own.
NOISY_LOGGERS = ("httpx", "alembic")


def configure_logging(level: str | int = logging.INFO) -> None:
    """Called first by every process entry point (never on import): log format, quiet libraries,
    and TensorFlow's C++ start-up chatter off (it hides our own messages; errors still show)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if isinstance(level, str):
        level = level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_process(
    name: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """The `main` of a process module run on its own (`python -m core.training.worker`): logging
    set up first, then `channelhub NAME`'s options parsed and the process run with them."""
    configure_logging()
    parser = argparse.ArgumentParser(prog=f"channelhub {name}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))
