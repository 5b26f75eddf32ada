"""Screenshot every dashboard page with headless Chromium into docs/screenshots/<page>.png,
signed in as the demo's admin (its password from the demo users file, see core/ops/demo_users).

CHANNELHUB_HOME=var python docs/take_screenshots.py     # the registry the env points at
CHANNELHUB_HOME=var python docs/take_screenshots.py --url http://127.0.0.1:8501   # `make run`'s
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def page_paths() -> dict[str, str]:
    """Page name -> URL path, pointing detail pages at real rows of the registry."""
    from db.engine import session_scope
    from db.queries.registry import version_choices
    from db.repo.channels import list_channels
    from db.repo.jobs import list_jobs

    with session_scope() as s:
        channels = [c for c in list_channels(session=s) if c.production_version_id]
        jobs = list_jobs(session=s, limit=1)
        versions = version_choices(session=s, limit=2)
    paths = {"overview": "/", "loop": "/loop", "monitoring": "/monitoring",
             "predictions": "/predictions", "models": "/models", "retrain": "/retrain",
             "jobs": "/jobs", "feedback": "/feedback", "channels": "/channels",
             "audit": "/audit"}  # fmt: skip
    if channels:
        paths["version"] = f"/models?version={channels[-1].production_version_id}"
    if len(versions) >= 2:
        paths["compare"] = f"/models?compare={versions[1][0]},{versions[0][0]}"
    if jobs:
        paths["jobs"] = f"/jobs?job={jobs[0].id}"
    return paths


def start_dashboard() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.toolbarMode", "minimal"],  # as `make run` starts it
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the dashboard did not start")


def sign_in(page, url: str, user: str) -> None:
    """Through the sign-in form, as a manager would; the session cookie keeps later pages in."""
    import json

    from core.ops.demo_users import users_file

    if not users_file().is_file():
        raise SystemExit(f"no demo users in {users_file()}: run `channelhub demo` first")
    password = json.loads(users_file().read_text())[user]
    page.goto(url)
    page.get_by_label("User name", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {user}").wait_for(timeout=60_000)
    time.sleep(2)  # the session cookie is written by a component after the rerun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--user", default="demo-admin", help="a demo user (default demo-admin)")
    parser.add_argument(
        "--url", help="a running dashboard (e.g. from `make run`); default: start one"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = (None, args.url.rstrip("/")) if args.url else start_dashboard()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            sign_in(page, url, args.user)
            for name, path in page_paths().items():
                page.set_viewport_size({"width": 1440, "height": 1000})
                page.goto(url + path)
                page.get_by_test_id("stHeading").first.wait_for(timeout=60_000)
                time.sleep(4)  # charts and dataframes draw after the first element
                # The app scrolls inside its main block, so grow the window to fit it all.
                height = page.evaluate(
                    "document.querySelector('[data-testid=stMain]').scrollHeight"
                )
                page.set_viewport_size({"width": 1440, "height": min(max(height, 1000), 6000)})
                time.sleep(1)
                page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
                print(args.out / f"{name}.png")
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    os.environ.setdefault("CHANNELHUB_USER", "maria")
    main()
