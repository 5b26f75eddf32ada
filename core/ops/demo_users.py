"""The demo's dashboard users, one per role, with random passwords: the registry keeps only their
argon2 hashes; the plaintext lives in one private file (0600) so `make run` can print it."""

from __future__ import annotations

import json
from pathlib import Path

from core.actions.base import ROLES, SYSTEM
from core.actions.users import add_user, random_password
from db.engine import session_scope
from db.files import write_private_text
from db.queries.users import list_users
from db.settings import home_dir

DEMO_USERS = {f"demo-{role}": role for role in ROLES}


def users_file() -> Path:
    return home_dir() / "demo_users.json"


def ensure_demo_users() -> dict[str, str]:
    """Create the demo users that do not exist yet; {name: password} of those this call made
    (an earlier call's passwords stay in the users file)."""
    with session_scope() as s:
        existing = {u.name for u in list_users(session=s)}
    made = {}
    for name, role in DEMO_USERS.items():
        if name not in existing:
            made[name] = random_password()
            add_user(actor=SYSTEM, name=name, role=role, password=made[name])
    if made:
        known = json.loads(users_file().read_text()) if users_file().is_file() else {}
        write_private_text(users_file(), json.dumps({**known, **made}, indent=2))
    return made


def print_demo_users() -> None:
    if not users_file().is_file():
        return
    print("Dashboard sign-in (user, role, password; kept only in", users_file(), "):")
    for name, password in json.loads(users_file().read_text()).items():
        print(f"  {name:16} {DEMO_USERS.get(name, '?'):10} {password}")
