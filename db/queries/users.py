"""Read-only views of dashboard users for pages and commands."""

from db.repo.users import UserInfo, count_enabled_users, get_user, list_users

__all__ = ["UserInfo", "count_enabled_users", "get_user", "list_users"]
