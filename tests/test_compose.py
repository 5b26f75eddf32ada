"""compose.yaml: valid for the Compose CLI where one is installed, and, everywhere, naming only
commands the image has, health checks on the endpoints that exist, and the pinned driver."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
SERVICES = {"postgres", "init", "api", "dashboard", "worker", "controller"}


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin), else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if done.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def run_compose(*args: str) -> subprocess.CompletedProcess:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI here (neither `docker compose` nor `docker-compose`)")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "POSTGRES_PASSWORD": "s3cret"}
    cmd = [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_compose_config_is_valid_and_names_every_part():
    done = run_compose("config")
    assert done.returncode == 0, done.stderr
    assert "postgresql+psycopg://channelhub:s3cret@postgres:5432/channelhub" in done.stdout
    services = run_compose("config", "--services").stdout.split()
    assert SERVICES <= set(services) <= SERVICES | {"worker-gpu"}  # v1 lists profiled ones
    with_gpu = run_compose("--profile", "gpu", "config", "--services").stdout.split()
    assert set(with_gpu) == SERVICES | {"worker-gpu"}


def test_compose_health_checks_hit_real_endpoints():
    text = COMPOSE.read_text()
    assert "pg_isready -U channelhub -d channelhub" in text
    assert "http://127.0.0.1:8000/healthz" in text
    assert "http://127.0.0.1:8501/_stcore/health" in text
    assert text.count("healthcheck:") == 3  # postgres, api, dashboard
    assert text.count("condition: service_healthy") >= 1
    assert text.count("condition: service_completed_successfully") == 1


def test_compose_commands_exist_in_the_cli_and_image(capsys):
    from core.ops.cli import build_parser

    text = COMPOSE.read_text()
    used = set(re.findall(r'\["channelhub", "([a-z-]+)"', text))
    assert used == {"init", "serve", "worker", "controller"}
    for command in used:
        argv = [command, "--help"]
        with pytest.raises(SystemExit) as exited:
            build_parser(argv).parse_args(argv)
        assert exited.value.code == 0, capsys.readouterr().err
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY dashboard ./dashboard" in dockerfile and "WORKDIR /app" in dockerfile
    assert "- dashboard/app.py" in text and (ROOT / "dashboard" / "app.py").is_file()


def test_compose_driver_is_the_pinned_one():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^psycopg\[binary\]==\d", requirements, re.M)
    assert "DATABASE_URL: postgresql+psycopg://" in COMPOSE.read_text()
