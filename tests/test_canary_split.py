"""The API's arm split follows the canary's steps: over 5,000 routing choices the candidate's
share is within ±3 points of each step's share (the real model cache, loaded from a registry
whose canary was started and advanced through the canary actions)."""

from __future__ import annotations

from core.actions.canary import decide_canary, start_canary_plan
from core.serving.model_cache import ModelCache

pytest_plugins = ["tests.serving_fixtures"]

REQUESTS = 5000


def _candidate_share(cache: ModelCache, slug: str) -> float:
    cache.refresh()
    state = cache.channel(slug)
    arms = [state.choose(cache.rng)[1] for _ in range(REQUESTS)]
    return arms.count("candidate") / REQUESTS


def test_split_within_three_points_of_every_step(serving_registry):
    v2 = serving_registry.version_ids[1]
    canary = start_canary_plan(
        actor="alice",
        slug="web",
        version_id=v2,
        override_reason="the split is tested, not the gate",
    )
    cache = ModelCache(serving_registry.database_url, seed=2026)
    try:
        seen = []
        for step, share in enumerate(canary.steps):
            observed = _candidate_share(cache, "web")
            seen.append(observed)
            assert abs(observed - share / 100) <= 0.03, (share, observed)
            if step < len(canary.steps) - 1:
                decide_canary(actor="alice", canary_id=canary.id, step_index=step,
                              decision="advance", reason="split test")  # fmt: skip
        assert seen[-1] == 1.0
        assert _candidate_share(cache, "mobile") == 0.0  # a channel without a canary
    finally:
        cache.close()
