"""Dashboard at scale: a SQLite registry with 10M predictions (30 days, five channels, two with
a candidate arm), 1M feedback items, 1,000 versions and the rollups the prediction log would
have kept for them; then each page's script timed with AppTest, every Streamlit cache cleared.
Every page that dashboard/app.py lists is timed. The last line printed is one JSON object.

    python bench/dashboard_scale.py [--predictions N] [--home DIR] [--rebuild]

The registry is kept under var/bench/ and reused while its row counts match (and it is under a
day old, so the 1 h and 24 h windows still hold traffic); filling 10M rows takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scale_fill  # noqa: E402  (beside this file)
from scale_base import CHANNELS, N_VERSIONS  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
DEFAULT_HOME = ROOT / "var" / "bench" / "dashboard_scale"
MAX_AGE_H = 24.0
BENCH_PASSWORD = "bench-password-not-secret"
SIGNED_IN: dict = {}
CANDIDATE_CHANNEL = next(c.slug for c in CHANNELS if c.candidate_version)
# page name -> (script, query parameters, session state); a page of app.py not named here is
# timed as it opens. The JSON line names each page's seconds `<page>_s`.
PAGES = {
    "overview": ("views/overview.py", {}, {}),
    "monitoring": ("views/monitoring.py", {"channel": CANDIDATE_CHANNEL}, {}),
    "monitoring_1h": ("views/monitoring.py", {"channel": CANDIDATE_CHANNEL},
                      {"monitor_window": "1 h"}),
    "monitoring_7d": ("views/monitoring.py", {"channel": CANDIDATE_CHANNEL},
                      {"monitor_window": "7 d"}),
    "monitoring_30d": ("views/monitoring.py", {"channel": CANDIDATE_CHANNEL},
                       {"monitor_window": "30 d"}),
    "models": ("views/models.py", {}, {}),
    "models_version": ("views/models.py", {"version": str(N_VERSIONS // 2)}, {}),
    "models_compare": ("views/models.py", {"compare": f"{N_VERSIONS - 1},{N_VERSIONS}"}, {}),
    "retrain": ("views/retrain.py", {}, {}),
    "jobs": ("views/jobs.py", {}, {}),
    "feedback": ("views/feedback.py", {}, {}),
    "channels": ("views/channels.py", {}, {}),
    "predictions": ("views/predictions.py", {"channel": CANDIDATE_CHANNEL}, {}),
    # 0.5 % of the channel's rows match: the newest 50 lie ~10,000 rows back.
    "predictions_filtered": ("views/predictions.py", {"channel": CANDIDATE_CHANNEL},
                             {"pl_arm": "candidate", "pl_conf": (0.0, 0.5)}),
}  # fmt: skip


def app_pages() -> list[str]:
    """The scripts dashboard/app.py hands to st.Page, in its order."""
    tree = ast.parse(APP.read_text())
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "Page"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


def pages_to_time() -> dict[str, tuple[str, dict, dict]]:
    """PAGES whose script the router lists, then the router's other pages."""
    listed = app_pages()
    pages = {name: page for name, page in PAGES.items() if page[0] in listed}
    for name in PAGES.keys() - pages.keys():
        print(f"not timed: {name} ({PAGES[name][0]} is not in {APP.name})", flush=True)
    timed = {script for script, _, _ in PAGES.values()}
    for script in listed:
        if script not in timed:
            pages[Path(script).stem] = (script, {}, {})
    return pages


def prepare(home: Path, n_predictions: int, n_feedback: int, rebuild: bool) -> dict:
    """Reuse the registry in `home` when it holds what was asked for; fill it otherwise."""
    db_path, meta_path = home / "channelhub.db", home / "fill.json"
    wanted = {"predictions": n_predictions, "feedback": n_feedback, "versions": N_VERSIONS}
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    filled_at = datetime.fromisoformat(meta["filled_at"]) if "filled_at" in meta else None
    age_h = (datetime.now(UTC) - filled_at).total_seconds() / 3600 if filled_at else None
    counts = scale_fill.row_counts(db_path) if not rebuild and age_h is not None else {}
    if counts == wanted and age_h < MAX_AGE_H:
        print(f"reusing {db_path} ({age_h:.1f} h old): {counts}", flush=True)
        return {**meta, "reused": True, "age_h": round(age_h, 2)}
    why = "--rebuild" if rebuild else f"found {counts or 'none'} (age {age_h}), want {wanted}"
    print(f"filling {db_path} ({why}) ...", flush=True)
    home.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    took = scale_fill.fill(db_path, n_predictions, n_feedback)
    meta = {"filled_at": datetime.now(UTC).isoformat(), **took}
    meta_path.write_text(json.dumps(meta))
    print(f"filled: {took}", flush=True)
    return {**meta, "reused": False, "age_h": 0.0}


def sign_in_state() -> dict:
    """Session state of a signed-in admin (the router shows only the sign-in page without one)."""
    try:
        from dashboard.auth import TOKEN
    except ImportError:  # a dashboard without sign-in
        return {}
    from core.actions.base import SYSTEM
    from core.actions.sign_in import sign_in
    from core.actions.users import add_user
    from db.engine import session_scope
    from db.queries.users import list_users

    with session_scope() as s:
        known = {u.name for u in list_users(session=s)}
    if "bench" not in known:
        add_user(actor=SYSTEM, name="bench", role="admin", password=BENCH_PASSWORD)
    return {TOKEN: sign_in("bench", BENCH_PASSWORD).token}


def time_page(script: str, params: dict, state: dict) -> float:
    """Seconds for one run of the page's script, every Streamlit cache cleared first."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    for name, value in SIGNED_IN.items():
        at.session_state[name] = value
    at.run()
    st.cache_data.clear()
    st.cache_resource.clear()
    at.switch_page(script)
    for name, value in params.items():
        at.query_params[name] = value
    for name, value in state.items():
        at.session_state[name] = value
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    if at.exception or at.error:
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        raise SystemExit(f"{script} {params} {state} failed: {problems}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000_000)
    parser.add_argument("--feedback", type=int, help="default: a tenth of --predictions")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help=f"default {DEFAULT_HOME}")
    parser.add_argument("--rebuild", action="store_true", help="fill again even if reusable")
    args = parser.parse_args()
    if args.predictions < 1_000:
        parser.error("--predictions must be at least 1,000")
    n_feedback = args.predictions // 10 if args.feedback is None else args.feedback
    if not 0 <= n_feedback <= args.predictions:
        parser.error("--feedback must lie between 0 and --predictions")
    fill = prepare(args.home, args.predictions, n_feedback, args.rebuild)
    os.environ["CHANNELHUB_HOME"] = str(args.home)
    os.environ["DATABASE_URL"] = f"sqlite:///{args.home / 'channelhub.db'}"
    SIGNED_IN.update(sign_in_state())
    pages = pages_to_time()
    for script, params, state in pages.values():  # warm-up: imports, not data, are paid here
        time_page(script, params, state)
    results: dict = {}
    for page, (script, params, state) in pages.items():
        results[f"{page}_s"] = round(time_page(script, params, state), 3)
        print(f"{page:20} {results[f'{page}_s']:.3f} s", flush=True)
    results["max_s"] = max(results.values())
    results.update(predictions=args.predictions, feedback=n_feedback, versions=N_VERSIONS)
    results.update(rollups=fill.get("rollup_rows"), data_age_h=fill["age_h"])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
