"""Read a row into the frozen dataclass that mirrors it, instead of listing its columns again."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def info_of(cls: type[T], row: object, **converted: Any) -> T:
    """The dataclass `cls` filled from the same-named attributes of `row`; `converted` gives the
    fields whose value is not the attribute as it is (a JSON column copied, a flag made bool)."""
    same = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in converted}
    return cls(**same, **converted)
