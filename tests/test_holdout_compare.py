"""Compare and a job's "against production" name the holdout they used and refuse to set
versions scored on different (or unknown) holdouts side by side."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import update

from db.engine import session_scope
from db.models import ModelVersion
from tests.dashboard_fixtures import HOLDOUT, FilledRegistry, filled_registry_fixture  # noqa: F401
from tests.page_helpers import fresh_caches, open_page, texts  # noqa: F401


def _set_holdout(version_id: int, fingerprint: str | None) -> None:
    with session_scope() as s:
        s.execute(
            update(ModelVersion)
            .where(ModelVersion.id == version_id)
            .values(holdout_fingerprint=fingerprint)
        )
    st.cache_data.clear()  # the pages cache their reads


def test_compare_names_the_shared_holdout(filled_registry: FilledRegistry):
    v1, v2 = filled_registry.version_ids[:2]
    at = open_page("models", compare=f"{v1},{v2}")
    assert f"All scored on holdout `{HOLDOUT[:12]}` of digits" in texts(at)
    assert "Per-class F1 change against digits v1" in texts(at)


def test_compare_refuses_versions_scored_on_different_holdouts(filled_registry: FilledRegistry):
    v1, v2 = filled_registry.version_ids[:2]
    _set_holdout(v2, "d" * 64)
    at = open_page("models", compare=f"{v1},{v2}", expected=["different holdouts"])
    assert f"digits v1: {HOLDOUT[:12]}; digits v2: {'d' * 12}" in at.error[0].value
    assert "Per-class F1 change" not in texts(at) and not at.dataframe


def test_compare_refuses_a_version_whose_holdout_is_unknown(filled_registry: FilledRegistry):
    v1, v2 = filled_registry.version_ids[:2]
    _set_holdout(v1, None)
    at = open_page("models", compare=f"{v1},{v2}", expected=["digits v1 was scored on an unknown"])
    assert "Per-class F1 change" not in texts(at)
    at = open_page("models", version=v1)
    assert "holdout unknown" in texts(at)


def test_against_production_says_its_holdout_and_refuses_another(filled_registry: FilledRegistry):
    job = filled_registry.job_ids["done"]  # its version v3 against web's production v2
    at = open_page("jobs", job=job)
    assert f"Both scored on holdout `{HOLDOUT[:12]}`" in texts(at)
    assert {m.label for m in at.metric} >= {"accuracy", "f1_macro", "loss"}
    _set_holdout(filled_registry.version_ids[1], "d" * 64)
    at = open_page("jobs", job=job)
    assert any("different holdouts" in w.value for w in at.warning)
    assert not {m.label for m in at.metric} & {"accuracy", "f1_macro", "loss"}
