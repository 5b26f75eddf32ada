"""API keys operations can live with: rotation with a grace period, a per-key rate limit
answered 429 with Retry-After, the key's last use, and keys kept out of logs and messages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from core.actions import channels as channel_actions
from core.actions.base import Actor
from core.serving.api import create_app
from core.serving.keys import KeyUseRecorder, RateLimiter, redact
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.errors import RegistryError
from db.models import utcnow
from db.repo.audit import list_events
from db.repo.channels import ChannelSpec, create_channel, get_channel
from db.repo.serving_queries import channel_for_api_key, record_key_use
from tests.dashboard_fixtures import filled_registry_fixture  # noqa: F401
from tests.serving_helpers import REPO_ROOT, free_port, wait_for

ADMIN = Actor("ops", "admin")
PREDICT = "/v1/channels/{}/predict"
ACCEPTED = 503  # the channels here serve no model: past the key check a predict answers 503


@pytest.fixture
def keys(registry) -> dict[str, str]:
    """Channels `web` and `mobile` with no model: the key check is all that is exercised."""
    with session_scope(registry) as s:
        return {
            slug: create_channel(session=s, slug=slug, spec=ChannelSpec(name=slug))[1]
            for slug in ("web", "mobile")
        }


@pytest.fixture
def client(registry, keys):
    app = create_app(registry, settings=ServingSettings(refresh_seconds=0.1))
    with TestClient(app) as test_client:
        yield test_client


def predict(client, key: str, slug: str = "web") -> httpx.Response:
    return client.post(PREDICT.format(slug), headers={"X-API-Key": key}, json={"pixels": [[0]]})


def test_old_key_works_within_its_grace_period_and_is_refused_after(client, keys):
    old = keys["web"]
    new = channel_actions.rotate_channel_key(actor=ADMIN, slug="web", grace_seconds=1.5)
    assert predict(client, new).status_code == ACCEPTED  # the new key at once
    rotated_at = time.monotonic()
    assert predict(client, old).status_code == ACCEPTED  # the old one within the grace period
    time.sleep(0.3)  # the cache has polled the registry since: its routing honours the grace
    assert predict(client, old).status_code == ACCEPTED
    assert predict(client, old, "mobile").status_code == 401  # never for another channel
    time.sleep(max(0.0, 1.6 - (time.monotonic() - rotated_at)))
    response = predict(client, old)
    assert response.status_code == 401, response.text
    assert predict(client, new).status_code == ACCEPTED


def test_rotation_without_grace_stops_the_old_key_and_the_default_grace_is_a_day(client, keys):
    new = channel_actions.rotate_channel_key(actor=ADMIN, slug="web", grace_seconds=0)
    assert wait_for(lambda: predict(client, keys["web"]).status_code == 401, 2)
    channel_actions.rotate_channel_key(actor=ADMIN, slug="web")
    assert predict(client, new).status_code == ACCEPTED
    with session_scope() as s:
        expires = get_channel(session=s, slug="web").previous_key_expires_at
        assert channel_for_api_key(session=s, key=new, now=expires - timedelta(seconds=1))
        assert channel_for_api_key(session=s, key=new, now=expires) is None
    assert abs((expires - utcnow()) - timedelta(hours=24)) < timedelta(minutes=1)


def test_a_grace_period_out_of_range_is_refused_with_a_message(keys):
    for grace in (-1, 31 * 24 * 3600):
        with pytest.raises(RegistryError, match="grace period must be between 0 and"):
            channel_actions.rotate_channel_key(actor=ADMIN, slug="web", grace_seconds=grace)


def test_rate_limit_answers_429_with_retry_after_per_key(client, keys):
    services = client.app.state.services
    now = [1000.0]
    services.limiter.clock = lambda: now[0]  # no refill while the requests are sent
    channel_actions.update_channel(actor=Actor("m", "manager"), slug="web", rate_limit_per_s=3)
    assert wait_for(lambda: services.cache.channel("web").routing.rate_limit_per_s == 3)
    assert [predict(client, keys["web"]).status_code for _ in range(3)] == [ACCEPTED] * 3
    refused = predict(client, keys["web"])
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "rate limit of 3 requests per second" in refused.json()["detail"]
    feedback = client.post("/v1/feedback", headers={"X-API-Key": keys["web"]},
                           json={"prediction_id": "p", "rating": "up"})  # fmt: skip
    assert feedback.status_code == 429  # every route the key opens
    assert predict(client, keys["mobile"], "mobile").status_code == ACCEPTED  # other keys unlimited
    now[0] += 0.34  # one token back after a third of a second
    assert predict(client, keys["web"]).status_code == ACCEPTED
    assert predict(client, keys["web"]).status_code == 429


def test_token_bucket_refills_at_its_rate_and_bursts_to_it():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.retry_after("k", 2) for _ in range(3)] == [0, 0, pytest.approx(0.5)]
    now[0] = 0.5
    assert limiter.retry_after("k", 2) == 0
    assert limiter.retry_after("k", None) == 0  # no limit set
    limiter_half = RateLimiter(clock=lambda: now[0])
    assert limiter_half.retry_after("k", 0.5) == 0  # a burst of at least one
    assert limiter_half.retry_after("k", 0.5) == pytest.approx(2.0)


def test_rate_limit_is_validated_and_editable_back_to_unlimited(keys):
    manager = Actor("m", "manager")
    with pytest.raises(RegistryError, match="rate limit must be between 0 and"):
        channel_actions.update_channel(actor=manager, slug="web", rate_limit_per_s=-2)
    info = channel_actions.update_channel(actor=manager, slug="web", rate_limit_per_s=5)
    assert info.rate_limit_per_s == 5
    info = channel_actions.update_channel(actor=manager, slug="web", name="Web shop")
    assert info.rate_limit_per_s == 5  # other edits keep it
    info = channel_actions.update_channel(actor=manager, slug="web", rate_limit_per_s=None)
    assert info.rate_limit_per_s is None


def test_last_use_is_stored_on_the_channel_at_most_once_a_minute(registry, keys):
    app = create_app(registry, settings=ServingSettings(refresh_seconds=0.1))
    with TestClient(app) as client:
        assert predict(client, keys["web"]).status_code == ACCEPTED
    with session_scope() as s:  # closing the app wrote it
        used = get_channel(session=s, slug="web").api_key_last_used_at
        assert used is not None and utcnow() - used < timedelta(seconds=30)
        assert get_channel(session=s, slug="mobile").api_key_last_used_at is None
        web_id = get_channel(session=s, slug="web").id
        assert record_key_use(session=s, last_used={web_id: used + timedelta(seconds=59)}) == 0
        assert record_key_use(session=s, last_used={web_id: used + timedelta(seconds=61)}) == 1
    recorder = KeyUseRecorder(registry)
    recorder.seen(web_id)
    recorder.seen(web_id)
    assert len(recorder._pending) == 1
    recorder.flush()
    recorder.seen(web_id)  # within the minute: not even queued
    assert recorder._pending == {}


def test_keys_are_not_in_messages_audit_or_captured_logs(client, keys, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = keys["web"][:-3] + "xyz"
    answers = [predict(client, wrong), predict(client, keys["mobile"]),
               client.post(PREDICT.format("web") + f"?api_key={keys['web']}", json={})]  # fmt: skip
    new = channel_actions.rotate_channel_key(actor=ADMIN, slug="web", reason="leaked")
    with session_scope() as s:
        audit = json.dumps([e.details for e in list_events(session=s, action="channel")])
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    text = " ".join(server_lines) + audit + " ".join(a.text for a in answers)  # httpx: the client
    assert [a.status_code for a in answers] == [401, 401, 401]
    for key in (*keys.values(), wrong, new):
        assert key not in text
        assert key[8:] not in text  # not even the part after the prefix shown on the channel


def test_a_key_in_the_served_access_log_is_redacted(registry, keys, tmp_path):
    """A real `channelhub serve` with its access log on: a client that puts its key in the
    query string must not get it written to the log."""
    port = free_port()
    log_path = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "core.serving.api", "--port", str(port), "--access-log",
           "--log-level", "debug"]  # fmt: skip
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(base + "/healthz"), 90), log_path.read_text()[-2000:]
        key = keys["web"]
        httpx.post(f"{base}{PREDICT.format('web')}?api_key={key}", headers={"X-API-Key": key})
        httpx.post(f"{base}{PREDICT.format('web')}", headers={"Authorization": f"Bearer {key}"})
    finally:
        proc.terminate()
        proc.wait(30)
    log = log_path.read_text()
    assert "POST /v1/channels/web/predict?api_key=[redacted]" in log
    assert key not in log and key[8:] not in log


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_redact_replaces_keys_and_credential_parameters():
    assert redact("GET /x?api_key=abc&token=t1 chk_AbC-_12345678") == (
        "GET /x?api_key=[redacted]&token=[redacted] [redacted]"
    )


def test_cli_rotates_with_a_grace_sets_the_rate_limit_and_lists_the_last_use(registry, capsys):
    from core.ops.cli import main

    assert main(["channel", "create", "web", "--rate-limit", "5"]) == 0
    old = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert main(["channel", "rotate-key", "web", "--grace", "2h"]) == 0
    out = capsys.readouterr().out
    assert "the old one works for 2h more" in out
    new = out.strip().rsplit(" ", 1)[-1]
    with session_scope() as s:
        assert channel_for_api_key(session=s, key=old).slug == "web"
        expires = get_channel(session=s, slug="web").previous_key_expires_at
    assert abs((expires - utcnow()) - timedelta(hours=2)) < timedelta(minutes=1)
    assert main(["channel", "rotate-key", "web", "--grace", "soon"]) == 2
    assert "--grace must look like 90s, 30m, 24h or 7d" in capsys.readouterr().err
    assert main(["channel", "update", "web", "--rate-limit", "none"]) == 0
    assert "rate limit=none" in capsys.readouterr().out
    assert main(["channel", "update", "web", "--rate-limit", "fast"]) == 2
    assert "--rate-limit must be requests per second" in capsys.readouterr().err
    with session_scope() as s:
        record_key_use(session=s, last_used={get_channel(session=s, slug="web").id: utcnow()})
    assert main(["channel", "list"]) == 0
    listing = capsys.readouterr().out
    assert "key last used" in listing and utcnow().strftime("%Y-%m-%d") in listing
    assert old not in listing and new not in listing


def test_channels_page_rotates_with_a_grace_and_edits_the_rate_limit(filled_registry):
    from tests.page_helpers import check_page, open_page, texts

    at = open_page("channels", user="gil", channel="mobile")
    assert "Last used never" in texts(at)
    at.selectbox(key="ch_rotate_grace").set_value("1 hour")
    check_page(at.button(key="ch_rotate").click().run())
    assert at.code, "the new key is shown"
    with session_scope() as s:
        expires = get_channel(session=s, slug="mobile").previous_key_expires_at
    assert abs((expires - utcnow()) - timedelta(hours=1)) < timedelta(minutes=1)
    assert "The previous key works until" in texts(at)
    at.number_input(key="ch_rate_mobile").set_value(7.0)
    check_page(at.button(key="ch_save").click().run())
    with session_scope() as s:
        assert get_channel(session=s, slug="mobile").rate_limit_per_s == 7
