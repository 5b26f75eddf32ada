"""The manager flows end to end: a real Streamlit server driven by Chromium through Playwright."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard_fixtures import fill_registry

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def require_chromium() -> str:
    """The browser's path. In CI a missing browser is a failure; elsewhere the tests are skipped
    with the reason."""
    found = find_chromium()
    if found:
        return found
    message = f"no {', '.join(CHROMIUM_NAMES)} on PATH: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A filled registry in its own folder, and the environment that points at it."""
    from db.engine import dispose_engines

    home = tmp_path_factory.mktemp("browser") / "var"
    env = {
        **os.environ,
        "CHANNELHUB_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'channelhub.db'}",
        "CHANNELHUB_USER": "browser",
    }
    env.pop("CHANNELHUB_ARTIFACTS", None)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("CHANNELHUB_HOME", "DATABASE_URL"):
            mp.setenv(key, env[key])
        mp.delenv("CHANNELHUB_ARTIFACTS", raising=False)
        dispose_engines()
        fill_registry(home)
        dispose_engines()
    yield env


@pytest.fixture(scope="module")
def dashboard_url(registry_env: dict[str, str]) -> Iterator[str]:
    require_chromium()  # before the server starts: no browser, nothing to serve
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "dashboard" / "app.py"),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(
        cmd, env=registry_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(dashboard_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_overview_leads_to_a_version_detail(page, dashboard_url: str):
    page.goto(dashboard_url)
    page.get_by_text("Partner API").first.wait_for()
    assert page.get_by_text("misses SLO").first.is_visible()
    page.get_by_role("link", name=re.compile(r"^Production v2")).first.click()
    page.get_by_text("digits v2 · resnet-small").wait_for()
    assert "version=" in page.url
    page.get_by_role("tab", name="Lineage").click()
    page.get_by_text("Fingerprint at training").wait_for()


def test_annotating_feedback_is_counted(page, dashboard_url: str):
    page.goto(f"{dashboard_url}/feedback")
    counter = page.get_by_test_id("stMetric").filter(has_text="not yet used for training")
    counter.wait_for()
    before = int(counter.get_by_test_id("stMetricValue").inner_text().replace(",", ""))
    acting = page.get_by_label("Acting as", exact=True)
    acting.fill("browser-erin")
    acting.press("Enter")
    page.get_by_role("button", name="Correct (E)").click()
    page.get_by_text(re.compile(r"Stored corrected on feedback #\d+ as browser-erin")).wait_for()
    after = int(counter.get_by_test_id("stMetricValue").inner_text().replace(",", ""))
    assert after == before + 1


def test_a_missing_browser_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no chromium, chromium-browser"):
        require_chromium()
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/{name}" if "chrome" in name else None)
    assert require_chromium() == "/opt/google-chrome"


def current_item(page) -> int:
    label = page.get_by_text(re.compile(r"on this page · feedback #\d+")).first
    return int(label.inner_text().rsplit("#", 1)[-1])


def test_keyboard_shortcuts_move_through_the_queue_and_confirm(
    page, dashboard_url: str, registry_env: dict[str, str]
):
    from db.engine import session_scope
    from db.repo.feedback import annotation_history

    page.goto(f"{dashboard_url}/feedback")
    acting = page.get_by_label("Acting as", exact=True)
    acting.fill("browser-keys")
    acting.press("Enter")
    first = current_item(page)
    page.get_by_role("heading", name="Feedback").click()  # keys go to the page, not a field
    page.keyboard.press("j")
    page.get_by_text(
        re.compile(rf"Item 2 of \d+ on this page · feedback #(?!{first}\b)")
    ).first.wait_for()
    second = current_item(page)
    page.keyboard.press("k")
    page.get_by_text(
        re.compile(rf"Item 1 of \d+ on this page · feedback #{first}\b")
    ).first.wait_for()
    page.keyboard.press("j")
    page.get_by_text(re.compile(rf"feedback #{second}\b")).first.wait_for()
    page.get_by_role("heading", name="Feedback").click()
    page.keyboard.press("y")
    page.get_by_text(f"Stored confirmed on feedback #{second} as browser-keys").first.wait_for()
    with session_scope(registry_env["DATABASE_URL"]) as s:
        history = annotation_history(session=s, feedback_id=second)
        untouched = annotation_history(session=s, feedback_id=first)
    assert [(a.author, a.verdict) for a in history][-1] == ("browser-keys", "confirmed")
    assert all(a.author != "browser-keys" for a in untouched)


@pytest.mark.slow
def test_retrain_runs_to_a_new_version(page, dashboard_url: str, registry_env: dict[str, str]):
    command = [sys.executable, "-m", "core.training.worker", "--poll-interval", "0.5"]
    worker = subprocess.Popen(
        command, env=registry_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        page.goto(f"{dashboard_url}/retrain")
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.fill("1")
        epochs.press("Tab")
        page.get_by_label("Note", exact=True).fill("browser retrain")
        page.get_by_role("button", name="Queue retrain").click()
        page.get_by_text(re.compile(r"Queued job #\d+")).wait_for()
        page.get_by_role("link", name=re.compile(r"Watch job #\d+")).click()
        done = page.get_by_text(re.compile(r"Finished: produced digits v\d+"))
        done.wait_for(timeout=240_000)
        page.get_by_role("link", name=re.compile(r"^Open digits v\d+")).click()
        page.get_by_text(re.compile(r"digits v\d+ · resnet-small")).wait_for()
        page.get_by_text("Test samples").first.wait_for()
    finally:
        stop(worker)
