"""A representative subset of the serving API tests, run again on PostgreSQL.

The test functions are test_api.py's own, imported here so that pytest collects them a second
time in this module, where `serving_registry` is a PostgreSQL database (the `client` fixture,
and `errors_client`, imported too, build the app on whatever `serving_registry` and `registry`
are here)."""

from __future__ import annotations

import pytest

from tests.serving_helpers import build_registry
from tests.test_api import (  # noqa: F401  (collected again here, on PostgreSQL)
    client,
    errors_client,
    test_a_refused_request_writes_nothing,
    test_bad_uploads_are_refused_without_a_row,
    test_candidate_and_promotion_are_picked_up_live,
    test_feedback_on_a_fresh_prediction,
    test_feedback_refusals,
    test_health_and_readiness,
    test_key_rotation_invalidates_the_old_key,
    test_paused_channel_answers_503_with_the_reason,
    test_predict_json_base64_pixels_and_bearer,
    test_predict_upload_answers_and_logs_the_input,
    test_registry_error_kinds_map_to_statuses,
)

pytest_plugins = ["tests.serving_fixtures"]
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def serving_registry(tmp_path_factory, tiny_models, digits, postgres_server):
    """test_api's registry (channels web, mobile, empty; two versions) in a PostgreSQL database."""
    from db.engine import dispose_engines

    root = tmp_path_factory.mktemp("serving-pg")
    name = postgres_server.create_database(template=postgres_server.template)
    url = postgres_server.url(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("CHANNELHUB_HOME", str(root))
        mp.setenv("CHANNELHUB_ARTIFACTS", str(root / "artifacts"))
        yield build_registry(root, tiny_models, digits, url)
    dispose_engines()
    postgres_server.drop_database(name)


@pytest.fixture
def registry(pg_registry: str) -> str:
    """test_api's per-test registry, on PostgreSQL in this module."""
    return pg_registry
