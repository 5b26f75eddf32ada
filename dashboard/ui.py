"""Shared chrome for every page: the signed-in actor and what their role allows, cached reads,
actions with errors, badges, cards."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import streamlit as st

from core.actions.base import Actor
from dashboard import auth
from db.engine import session_scope
from db.errors import NotFoundError, RegistryError
from db.queries.lookups import ChannelInfo, list_channels
from db.settings import database_url

T = TypeVar("T")

# Paths relative to dashboard/app.py, as st.page_link and st.switch_page want them.
OVERVIEW = "views/overview.py"
LOOP = "views/loop.py"
MODELS = "views/models.py"
RETRAIN = "views/retrain.py"
JOBS = "views/jobs.py"
FEEDBACK = "views/feedback.py"
CHANNELS = "views/channels.py"
AUDIT = "views/audit.py"

READ_TTL_S = 15

STATUS_COLOURS = {
    "active": "green",
    "paused": "orange",
    "queued": "blue",
    "running": "violet",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "gray",
    "lost": "red",
    "pending": "blue",
    "confirmed": "green",
    "corrected": "orange",
    "rejected": "gray",
    "production": "green",
    "candidate": "violet",
    "archived": "gray",
    "online": "green",
    "unresponsive": "red",
    "stopped": "gray",
}


def page_header(title: str, caption: str = "") -> str:
    """Title, caption and the messages left by the last run; returns the signed-in user's name."""
    st.title(title)
    if caption:
        st.caption(caption)
    for kind, message in st.session_state.pop("flash", []):
        getattr(st, kind)(message)
    return acting_user()


def flash(message: str, kind: str = "success") -> None:
    """Show `message` at the top of the next run (survives st.rerun)."""
    st.session_state.setdefault("flash", []).append((kind, message))


def acting_user() -> str:
    return acting_actor().name


def acting_actor() -> Actor:
    """The signed-in user, with their role, as the actor of a change."""
    return auth.current_actor()


def allowed(role: str) -> bool:
    """Whether the signed-in user holds `role` (or a higher one). The action layer checks again:
    this only decides what a page offers."""
    return acting_actor().may(role)


def why_not(role: str) -> str | None:
    """None when the signed-in user may act with `role`, else the reason to show."""
    actor = acting_actor()
    if actor.may(role):
        return None
    return f"Needs the {role} role; you are signed in as {actor.name} ({actor.role})."


def gate(role: str) -> dict[str, Any]:
    """`disabled=` and `help=` for a button whose action needs `role`: `st.button(…, **gate(r))`."""
    reason = why_not(role)
    return {"disabled": reason is not None, "help": reason}


def role_note(role: str) -> bool:
    """Whether the user may act with `role`; when not, a caption says why (placed where the
    controls would be)."""
    reason = why_not(role)
    if reason:
        st.caption(f":material/lock: {reason}")
    return reason is None


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def _cached_read(_fn: Callable[..., Any], name: str, url: str, kwargs: dict[str, Any]) -> Any:
    with session_scope(url) as session:
        return _fn(session=session, **kwargs)


def read(fn: Callable[..., T], **kwargs: Any) -> T:
    """Run repository/query function `fn(session=…, **kwargs)`, cached for a few seconds
    per database and arguments."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    return _cached_read(fn, name, database_url(), kwargs)


def read_fresh(fn: Callable[..., T], **kwargs: Any) -> T:
    """Run `fn` uncached (live views that poll)."""
    with session_scope() as session:
        return fn(session=session, **kwargs)


def channels_or_note() -> list[ChannelInfo]:
    """Every channel; where there is none yet the page says so, and the caller, given an empty
    list, draws nothing more."""
    channels = read(list_channels)
    if not channels:
        st.info("No channels yet.")
    return channels


def read_found(fn: Callable[..., T], *, fresh: bool = False, **kwargs: Any) -> T | None:
    """`read` (or `read_fresh`) of one thing a link named (`?version=`, `?job=`); when it does
    not exist, the page shows why and gets None."""
    try:
        return (read_fresh if fresh else read)(fn, **kwargs)
    except NotFoundError as exc:
        st.error(str(exc))
        return None


def page_count(total: int, page_size: int) -> int:
    """How many pages `total` rows fill (at least one)."""
    return max(1, -(-total // page_size))


@dataclass(frozen=True)
class Paging:
    """How a page pages one table: the `page_input` key, the rows per page, what a row is
    called in the caption and the note shown where nothing matches."""

    key: str
    size: int
    noun: str
    empty: str


def read_page(
    fn: Callable[..., tuple[list[T], int]], filters: Any, sort: str, paging: Paging
) -> tuple[list[T], int, int]:
    """The page `st.session_state[paging.key]` (1-based) asks for of a paged query
    `fn(filters=…, sort=…, page=…, page_size=…) -> (rows, total)`, under a caption
    "N <noun> match · page p of P", or the `empty` note where no row matches. Returns the
    rows, the total and the page count."""
    page = int(st.session_state.get(paging.key, 1))
    rows, total = read(fn, filters=filters, sort=sort, page=page - 1, page_size=paging.size)
    pages = page_count(total, paging.size)
    st.caption(f"{total:,} {paging.noun} match · page {page} of {pages}")
    if not rows:
        st.info(paging.empty)
    return rows, total, pages


def page_input(pages: int, key: str) -> None:
    """The page number a paged table reads from `st.session_state[key]`."""
    st.number_input("Page", min_value=1, max_value=pages, step=1, key=key)


def perform(action_fn: Callable[..., T], **kwargs: Any) -> T:
    """Run a `core.actions` action as the signed-in user and drop cached reads; a refusal
    raises (forms that place the message next to a field catch it)."""
    result = action_fn(actor=acting_actor(), **kwargs)
    clear_reads()
    return result


def act(action_fn: Callable[..., T], **kwargs: Any) -> T | None:
    """Like `perform`, but a refused change is shown as an error and gives None."""
    try:
        return perform(action_fn, **kwargs)
    except RegistryError as exc:
        st.error(str(exc))
        return None


def clear_reads() -> None:
    _cached_read.clear()


# Markdown (and Streamlit's :color[…] and $math$) reads these; a backslash makes each literal.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'@])")


def md_text(value: object) -> str:
    """`value` as literal text inside an st.markdown string: end users' comments, class names,
    tags and notes never render as links, images, HTML or emphasis. Newlines become spaces."""
    return _MARKUP.sub(r"\\\1", " ".join(str(value).split()))


def badge(status: str) -> str:
    """Markdown for a coloured status badge."""
    return f":{STATUS_COLOURS.get(status, 'gray')}-badge[{status}]"


def int_param(name: str) -> int | None:
    """An integer query parameter (`?version=12`), None when absent or malformed."""
    value = st.query_params.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def share_of(value: float | None, n: int) -> str:
    """A share with the count it is of ("91% of 131"), or "—" when there is none."""
    return "—" if value is None else f"{value:.0%} of {n:,}"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def version_link(
    version_id: int, label: str, icon: str = ":material/open_in_new:", where: Any = st
) -> None:
    """A link to one version's detail (lineage, evaluation) on the Models page."""
    where.page_link(MODELS, query_params={"version": version_id}, label=label, icon=icon)


def job_link(
    job_id: int, label: str, icon: str = ":material/work_history:", where: Any = st
) -> None:
    """A link to one training job on the Jobs page."""
    where.page_link(JOBS, query_params={"job": job_id}, label=label, icon=icon)


def retrain_link(
    slug: str | None, production_version_id: int | None, label: str, where: Any = st
) -> None:
    """A link to the Retrain page filled in to fine-tune what channel `slug` serves in
    production, with the annotated feedback (only the feedback without a channel)."""
    where.page_link(
        RETRAIN,
        query_params={"include_feedback": 1}
        | ({"channel": slug, "base": production_version_id} if slug else {}),
        icon=":material/restart_alt:",
        label=label,
    )


# The Channels page's "none (end the canary)" option: never a version id (a None option would
# read back as the selectbox's default, the running canary).
NO_CANARY = 0


# The option `optional_select` shows for None. None itself is never an option: a selectbox
# sends a None value to the browser as "nothing chosen" (drawn as "Choose an option", not as
# the option's label) and reads "nothing chosen" back as its default option.
NOTHING = "<none>"


def select(
    where: Any, label: str, options: Any, key: str, *, default: Any = None, **kwargs: Any
) -> Any:
    """A keyed selectbox whose default is always the value it holds (`default` the first time,
    else the first option).

    Streamlit reads a select that comes back from the browser without a value as the widget's
    default option; with a fixed default, the Feedback filters were seen falling back to theirs
    after j/k (Status "any" instead of "pending"). So the default follows the value, also on a
    run where code set it (a link's filters). Streamlit would warn about a default next to a
    value set in code; `dashboard/.streamlit/config.toml` turns that warning off, as here they
    are equal."""
    options = list(options)
    held = st.session_state.get(key, default)
    index = options.index(held) if held in options else 0
    return where.selectbox(label, options, index=index, key=key, **kwargs)


def optional_select(
    where: Any,
    label: str,
    names: dict[Any, str],
    key: str,
    none: str = "any",
    *,
    default: Any = None,
    **kwargs: Any,
) -> Any:
    """A selectbox over `names` (value -> shown text) after a first option for None, shown as
    `none` ("any", "all", "—"): a filter or choice that may be left open. `default` is chosen
    the first time (None: the open option). Returns the value or None."""
    if key in st.session_state and st.session_state[key] is None:  # code that means "none"
        st.session_state[key] = NOTHING
    choice = select(
        where,
        label,
        [NOTHING, *names],
        key,
        default=NOTHING if default is None else default,
        format_func=lambda v: none if v == NOTHING else names[v],
        **kwargs,
    )
    return None if choice == NOTHING else choice


def metric_row(items: list[tuple[str, str]], *, border: bool = True) -> None:
    """A row of metric cards from (label, value) pairs."""
    for column, (label, value) in zip(st.columns(len(items)), items, strict=True):
        column.metric(label, value, border=border)


def field_errors(errors: dict[str, str], name: str) -> None:
    """Show the validation message for one form field, if any, right below it."""
    if name in errors:
        st.error(errors[name], icon=":material/error:")


def show_failure(what: str, exc: Exception) -> None:
    """A clear message instead of a traceback."""
    st.error(f"Could not {what}: {exc}")
