"""Predictions page: the log of one channel, filtered by arm and class, paged newest first."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from db.engine import session_scope
from db.models import utcnow
from db.repo.channels import ChannelSpec, create_channel
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from tests.page_helpers import check_page, fresh_caches, open_page  # noqa: F401
from tests.registry_helpers import add_dataset, add_model_with_version


def _log(n: int) -> None:
    """n predictions, one a minute back from now: class i % 10, candidate arm every 4th."""
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", kind="web", dataset_id=dataset_id)
        )[0]
        now = utcnow()
        insert_predictions(session=s, records=[
            PredictionRecord(
                new_prediction_id(), channel.id, version.id,
                "candidate" if i % 4 == 0 else "production", i % 10, 0.5 + (i % 5) / 10,
                np.full(10, 0.1).tolist(), 3.0, None, now - timedelta(minutes=i),
            )
            for i in range(n)
        ])  # fmt: skip


def _times(at) -> list[str]:
    return list(at.dataframe[0].value["time (UTC)"])


def test_filters_and_pages(registry):
    _log(130)
    at = open_page("predictions", channel="web")
    assert "Page 1: 50 predictions, newest first." in [c.value for c in at.caption]
    first = _times(at)
    assert first == sorted(first, reverse=True)
    # Versions by model and number, as the other pages name them (not the row id).
    assert set(at.dataframe[0].value["version"]) == {"digits-classifier v1"}
    check_page(at.button(key="pl_older").click().run())
    second = _times(at)
    assert len(second) == 50 and second[0] < first[-1]
    check_page(at.button(key="pl_older").click().run())
    assert len(_times(at)) == 30 and at.button(key="pl_older").disabled
    check_page(at.selectbox(key="pl_arm").set_value("candidate").run())
    table = at.dataframe[0].value
    assert set(table["arm"]) == {"candidate"} and len(table) == 33  # i = 0, 4, …, 128
    check_page(at.selectbox(key="pl_class").set_value(4).run())
    table = at.dataframe[0].value
    assert set(table["predicted"]) == {"4"} and set(table["arm"]) == {"candidate"}
    assert len(table) == 7  # i ≡ 0 mod 4 and i ≡ 4 mod 10: 4, 24, …, 124


def test_no_match_says_so(registry):
    _log(5)
    at = open_page("predictions", channel="web")
    check_page(at.slider(key="pl_conf").set_value((0.95, 1.0)).run())
    assert "No prediction matches these filters." in [i.value for i in at.info]
