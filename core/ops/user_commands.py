"""`channelhub user …`: who may sign in to the dashboard. The CLI acts as admin (see README)."""

from __future__ import annotations

import argparse
import getpass
import sys

from core.actions import users as user_actions
from core.ops.cli import CommandError
from core.ops.commands import command_for, run_and_say, table
from db.engine import session_scope
from db.queries.users import list_users


def read_password(args: argparse.Namespace) -> str:
    """The new password: generated and printed once, read from stdin, or asked twice."""
    if args.generate:
        password = user_actions.random_password()
        print(f"password for {args.name} (shown once): {password}")
        return password
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        raise CommandError("the two passwords differ")
    return password


def cmd_list(args: argparse.Namespace) -> int:
    with session_scope() as s:
        users = list_users(session=s)
    rows = [
        [
            u.name,
            u.role,
            "disabled" if u.disabled else ("locked" if u.locked() else "active"),
            "-" if u.last_sign_in_at is None else f"{u.last_sign_in_at:%Y-%m-%d %H:%M}",
        ]
        for u in users
    ]
    table(["name", "role", "state", "last sign-in (UTC)"], rows)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    password = read_password(args)
    return run_and_say(
        user_actions.add_user, lambda info: f"added {info.name} ({info.role})",
        name=args.name, role=args.role, password=password,
    )  # fmt: skip


def cmd_passwd(args: argparse.Namespace) -> int:
    password = read_password(args)
    said = f"new password set for {args.name}; their sessions ended"
    return run_and_say(user_actions.set_password, said, name=args.name, password=password)


def cmd_role(args: argparse.Namespace) -> int:
    return run_and_say(
        user_actions.set_role, lambda info: f"{info.name} is now {info.role}",
        name=args.name, role=args.role, reason=args.reason,
    )  # fmt: skip


cmd_disable = command_for(
    user_actions.disable_user, "{name} is disabled; their sessions ended", "name", "reason"
)
cmd_enable = command_for(user_actions.enable_user, "{name} may sign in again", "name", "reason")
